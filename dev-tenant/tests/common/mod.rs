//! Shared setup: a tenant in a temporary folder and a client that trusts only its CA.
#![allow(dead_code)]

use b2b_dev_tenant::{DevTenant, DevTenantOptions, Seed, WriteLimit};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct Env {
    pub tenant: DevTenant,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

pub fn client_for(ca_pem: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca_pem).unwrap();
    let ca = reqwest::Certificate::from_pem(&pem).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

pub async fn start_with(seed: Seed, write_limit: Option<WriteLimit>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let tenant = DevTenant::start(DevTenantOptions {
        state_dir: dir.path().to_path_buf(),
        seed,
        write_limit,
        ..DevTenantOptions::default()
    })
    .await
    .unwrap();
    let http = client_for(&tenant.ca_pem_path());
    Env { tenant, http, dir }
}

pub async fn start() -> Env {
    start_with(Seed::Demo, None).await
}

impl Env {
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.tenant.authority_host(),
            self.tenant.tenant_id()
        )
    }

    pub async fn token(&self) -> String {
        let resp = self
            .http
            .post(self.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &self.tenant.client_id()),
                ("client_secret", &self.tenant.client_secret()),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    /// Sends a Graph request; `path_and_query` is relative to /v1.0 and already encoded.
    pub async fn graph(
        &self,
        token: &str,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let url = format!("{}{}", self.tenant.graph_base_url(), path_and_query);
        self.graph_url(token, method, &url, body).await
    }

    pub async fn graph_url(
        &self,
        token: &str,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, v)
    }

    pub async fn invite(&self, token: &str, email: &str) -> (StatusCode, Value) {
        let (s, _, v) = self
            .graph(
                token,
                Method::POST,
                "/invitations",
                Some(serde_json::json!({
                    "invitedUserEmailAddress": email,
                    "inviteRedirectUrl": "https://myapplications.microsoft.com",
                })),
            )
            .await;
        (s, v)
    }
}

/// Asserts a Graph error body: code, and innerError with date and request ids.
pub fn assert_graph_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "body: {v}");
    assert!(v["error"]["message"].is_string(), "body: {v}");
    let inner = &v["error"]["innerError"];
    assert!(inner["date"].is_string(), "body: {v}");
    assert!(inner["request-id"].is_string(), "body: {v}");
    assert!(inner["client-request-id"].is_string(), "body: {v}");
}
