//! Read-only Graph listings the directory port has no call for: which assigned groups each
//! user is in, for the report. Never writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use azure_core::credentials::TokenCredential;
use b2b::adapters::graph::{build_credential, graph_scope};
use b2b::adapters::http::build_client;
use b2b::app::runtime::Runtime;
use b2b::config::{AzureConfig, CredentialSource, Env};
use serde_json::Value;

pub struct GraphReader {
    http: reqwest::Client,
    base: String,
    scope: String,
    credential: Arc<dyn TokenCredential>,
}

impl GraphReader {
    /// `None` when the credential lives in Secrets Manager (the report then shows no groups).
    /// `runtime` lends its AWS configuration to the AWS STS federated credential.
    pub fn from_env(env: &dyn Env, runtime: &Runtime) -> anyhow::Result<Option<GraphReader>> {
        let azure = AzureConfig::require(env)?;
        if matches!(azure.credential, CredentialSource::SecretArn(_)) {
            return Ok(None);
        }
        let http = build_client(azure.extra_ca_certs.as_deref())?;
        let credential = build_credential(&azure, None, &http, runtime.aws.as_ref())?;
        let base = azure.graph_base_url.trim_end_matches('/').to_string();
        let scope = graph_scope(&base);
        Ok(Some(GraphReader {
            http,
            base,
            scope,
            credential,
        }))
    }

    /// Every item of a listing, following `@odata.nextLink`.
    async fn list(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut url = format!("{}{path}", self.base);
        loop {
            let page = self.get(&url).await?;
            if let Some(values) = page.get("value").and_then(Value::as_array) {
                items.extend(values.iter().cloned());
            }
            match page.get("@odata.nextLink").and_then(Value::as_str) {
                Some(next) => url = next.to_string(),
                None => return Ok(items),
            }
        }
    }

    async fn get(&self, url: &str) -> anyhow::Result<Value> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self
                .credential
                .get_token(&[&self.scope], None)
                .await
                .context("getting a Graph token")?;
            let response = self
                .http
                .get(url)
                .bearer_auth(token.token.secret())
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            let retry_in = match response {
                Ok(r) if r.status().is_success() => return Ok(r.json().await?),
                Ok(r)
                    if (r.status().as_u16() == 429 || r.status().is_server_error())
                        && attempt < 4 =>
                {
                    r.headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map_or(Duration::from_secs(attempt), Duration::from_secs)
                }
                Ok(r) => {
                    let path = url.split('?').next().unwrap_or_default();
                    bail!("GET {path} answered {}", r.status())
                }
                Err(e) if attempt < 4 => {
                    tracing::debug!(error = %e.without_url(), "graph read failed; retrying");
                    Duration::from_secs(attempt)
                }
                Err(e) => return Err(e.without_url().into()),
            };
            tokio::time::sleep(retry_in.min(Duration::from_secs(30))).await;
        }
    }

    /// Each user's assigned groups (by display name). Dynamic and synced groups are left
    /// out: the product never adds anyone to them.
    pub async fn memberships(&self) -> anyhow::Result<HashMap<String, Vec<String>>> {
        let groups = self
            .list("/groups?$select=id,displayName,groupTypes,onPremisesSyncEnabled&$top=999")
            .await?;
        let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
        for g in groups {
            let dynamic = g
                .get("groupTypes")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().any(|t| t == "DynamicMembership"));
            let synced = g.get("onPremisesSyncEnabled") == Some(&Value::Bool(true));
            let Some(id) = g.get("id").and_then(Value::as_str) else {
                continue;
            };
            if dynamic || synced {
                continue;
            }
            let name = g
                .get("displayName")
                .and_then(Value::as_str)
                .unwrap_or(id)
                .to_string();
            let members = self
                .list(&format!("/groups/{id}/members?$select=id&$top=999"))
                .await?;
            for m in members {
                if let Some(uid) = m.get("id").and_then(Value::as_str) {
                    by_user
                        .entry(uid.to_string())
                        .or_default()
                        .push(name.clone());
                }
            }
        }
        for names in by_user.values_mut() {
            names.sort();
        }
        Ok(by_user)
    }
}
