//! The Entra ID v2.0 token endpoint (client credentials), OpenID discovery and JWKS,
//! and the checks Graph makes on the bearer tokens it receives.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::control::Inner;
use crate::crypto;
use crate::directory::{APP_PERMISSIONS, FederatedKey};
use crate::server::{Ctx, graph_time};

pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// Seconds a Graph token lives, as Entra reports it, unless `set_token_lifetime` says otherwise.
const TOKEN_SECONDS: i64 = 3599;
/// Clock skew tolerated on client assertions.
const ASSERTION_LEEWAY: i64 = 300;

struct AadError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    text: String,
}

fn aad(status: StatusCode, error: &'static str, code: u32, text: impl Into<String>) -> AadError {
    AadError {
        status,
        error,
        code,
        text: text.into(),
    }
}

impl AadError {
    fn render(self, ctx: &Ctx, now: time::OffsetDateTime) -> Response {
        let ts = graph_time(now).replace('T', " ");
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {ts}",
                self.code, self.text, ctx.request_id, ctx.client_request_id),
            "error_codes": [self.code],
            "timestamp": ts,
            "trace_id": ctx.request_id,
            "correlation_id": ctx.client_request_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        (self.status, Json(body)).into_response()
    }
}

fn tenant_matches(inner: &Inner, segment: &str) -> bool {
    let dir = inner.dir();
    segment.eq_ignore_ascii_case(&dir.tenant_id)
        || dir
            .domains
            .iter()
            .any(|d| d.is_verified && d.id.eq_ignore_ascii_case(segment))
}

fn tenant_not_found(segment: &str) -> AadError {
    aad(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        format!(
            "Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

pub(crate) async fn token(
    State(inner): State<Arc<Inner>>,
    Path(tenant): Path<String>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = inner.now();
    match issue(&inner, &tenant, &headers, &body) {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => e.render(&ctx, now),
    }
}

fn missing(name: &str) -> AadError {
    aad(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

fn issue(inner: &Inner, tenant: &str, headers: &HeaderMap, body: &[u8]) -> Result<Value, AadError> {
    if !tenant_matches(inner, tenant) {
        return Err(tenant_not_found(tenant));
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            let dec = |x: &str| {
                url::form_urlencoded::parse(format!("v={x}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((dec(id)?, dec(secret)?))
        });

    let grant = field("grant_type").ok_or_else(|| missing("grant_type"))?;
    if grant != "client_credentials" {
        return Err(aad(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        ));
    }
    let client_id = field("client_id")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|(id, _)| id.clone()))
        .ok_or_else(|| missing("client_id"))?;
    let app = inner.dir().app.clone();
    let tenant_id = inner.dir().tenant_id.clone();
    if !client_id.eq_ignore_ascii_case(&app.client_id) {
        return Err(aad(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        ));
    }
    let scope = field("scope").ok_or_else(|| missing("scope"))?;
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let valid_scope = scopes.len() == 1
        && [
            "https://graph.microsoft.com/.default",
            "https://graph.microsoft.com//.default",
            "00000003-0000-0000-c000-000000000000/.default",
        ]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scopes[0]));
    if !valid_scope {
        return Err(aad(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI), and only one resource: https://graph.microsoft.com/.default."
            ),
        ));
    }

    let secret = field("client_secret")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|(_, s)| s.clone()));
    let acr = if let Some(secret) = secret {
        if !constant_time_eq(secret.as_bytes(), app.client_secret.as_bytes()) {
            return Err(aad(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                    app.client_id
                ),
            ));
        }
        // Entra checks the secret's value first: only a correct but expired secret earns 7000222.
        if inner.realities.secret_expired() {
            return Err(aad(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000222,
                format!(
                    "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                    app.client_id
                ),
            ));
        }
        "1"
    } else if let Some(assertion) = field("client_assertion") {
        if field("client_assertion_type") != Some(ASSERTION_TYPE) {
            return Err(aad(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_assertion_type'."
                    .to_string(),
            ));
        }
        verify_assertion(inner, tenant, &app, assertion)?
    } else {
        return Err(aad(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };

    let now = inner.now().unix_timestamp();
    let lifetime = inner
        .realities
        .token_lifetime()
        .map_or(TOKEN_SECONDS, |d| d.as_secs() as i64);
    let uti = crypto::b64url(&rand::random::<[u8; 16]>());
    let claims = json!({
        "aud": GRAPH_AUDIENCE,
        "iss": format!("https://sts.windows.net/{tenant_id}/"),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "aio": crypto::b64url(&rand::random::<[u8; 24]>()),
        "app_displayname": app.display_name,
        "appid": app.client_id,
        "appidacr": acr,
        "idp": format!("https://sts.windows.net/{tenant_id}/"),
        "idtyp": "app",
        "oid": app.service_principal_id,
        "rh": "0.AAAA.",
        "roles": APP_PERMISSIONS,
        "sub": app.service_principal_id,
        "tenant_region_scope": "EU",
        "tid": tenant_id,
        "uti": uti,
        "ver": "1.0",
        "wids": ["0997a1d0-0d1d-4acb-b408-d5ca73121e90"],
        "xms_tcdt": now - 86_400,
    });
    let token = inner.sign(true, &claims).map_err(|e| {
        aad(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            50000,
            format!("There was an error issuing a token: {e}"),
        )
    })?;
    {
        let mut issued = inner.issued();
        if issued.len() > 50_000 {
            let now = Instant::now();
            issued.retain(|_, (at, life)| now.duration_since(*at) < *life);
        }
        issued.insert(uti, (Instant::now(), Duration::from_secs(lifetime as u64)));
    }
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token,
    }))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

fn assertion_error(code: u32, text: impl Into<String>) -> AadError {
    aad(StatusCode::UNAUTHORIZED, "invalid_client", code, text)
}

fn aud_list(claims: &Value) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn check_times(claims: &Value) -> Result<(), AadError> {
    // The client signs with its own (real) clock, so the dev clock does not apply here.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let exp = claims.get("exp").and_then(Value::as_i64);
    let nbf = claims.get("nbf").and_then(Value::as_i64);
    if exp.is_none_or(|e| e + ASSERTION_LEEWAY < now)
        || nbf.is_some_and(|n| n - ASSERTION_LEEWAY > now)
    {
        return Err(assertion_error(
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    Ok(())
}

fn unverified_parts(assertion: &str) -> Result<(jsonwebtoken::Header, Value), AadError> {
    let malformed = || {
        aad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.",
        )
    };
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| malformed())?;
    let payload = assertion.split('.').nth(1).ok_or_else(malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| malformed())?;
    let claims: Value = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    Ok((header, claims))
}

fn signature_ok(assertion: &str, alg: Algorithm, key: &DecodingKey) -> bool {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(assertion, key, &v).is_ok()
}

/// Checks a certificate or federated client assertion; returns the `appidacr` it earns.
fn verify_assertion(
    inner: &Inner,
    tenant: &str,
    app: &crate::directory::AppRegistration,
    assertion: &str,
) -> Result<&'static str, AadError> {
    let (header, claims) = unverified_parts(assertion)?;
    let thumb_s256 = header
        .x5t_s256
        .as_deref()
        .and_then(crypto::decode_thumbprint);
    let thumb_sha1 = header.x5t.as_deref().and_then(crypto::decode_thumbprint);

    if thumb_s256.is_some() || thumb_sha1.is_some() {
        let cert = app.certificates.iter().find(|c| {
            crypto::pem_cert_der(&c.pem).is_ok_and(|der| {
                thumb_s256.as_deref() == Some(Sha256::digest(&der).as_slice())
                    || thumb_sha1.as_deref() == Some(Sha1::digest(&der).as_slice())
            })
        });
        let Some(cert) = cert else {
            return Err(assertion_error(
                700027,
                format!(
                    "Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: '{}']",
                    header.x5t_s256.or(header.x5t).unwrap_or_default()
                ),
            ));
        };
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
            return Err(assertion_error(
                700027,
                "Client assertion failed signature validation. [Reason - The algorithm is not supported; use PS256 or RS256.]",
            ));
        }
        let key = DecodingKey::from_rsa_pem(cert.pem.as_bytes()).map_err(|_| {
            assertion_error(700027, "Client assertion failed signature validation.")
        })?;
        if !signature_ok(assertion, header.alg, &key) {
            return Err(assertion_error(
                700027,
                "Client assertion failed signature validation.",
            ));
        }
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
        if !iss.eq_ignore_ascii_case(&app.client_id) || !sub.eq_ignore_ascii_case(&app.client_id) {
            return Err(assertion_error(
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            ));
        }
        let tenant_id = inner.dir().tenant_id.clone();
        let endpoints = [
            format!("{}/{tenant}/oauth2/v2.0/token", inner.authority),
            format!("{}/{tenant_id}/oauth2/v2.0/token", inner.authority),
            inner.issuer(&tenant_id),
        ];
        let auds = aud_list(&claims);
        if !auds
            .iter()
            .any(|a| endpoints.iter().any(|e| e.eq_ignore_ascii_case(a)))
        {
            return Err(assertion_error(
                700016,
                format!(
                    "The audience '{}' of the client assertion is not the token endpoint '{}'.",
                    auds.join(","),
                    endpoints[1]
                ),
            ));
        }
        check_times(&claims)?;
        return Ok("2");
    }

    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    let auds = aud_list(&claims);
    let Some(cred) = app
        .federated
        .iter()
        .find(|f| f.issuer == iss && f.subject == sub)
    else {
        return Err(aad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            70021,
            format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'.",
                auds.join(",")
            ),
        ));
    };
    if !auds.iter().any(|a| a == EXCHANGE_AUDIENCE) {
        return Err(aad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            700212,
            format!(
                "No matching federated identity record found for presented assertion audience '{}'.",
                auds.join(",")
            ),
        ));
    }
    let keys = federated_keys(&cred.key)
        .map_err(|_| assertion_error(700027, "Client assertion failed signature validation."))?;
    let candidates: Vec<&(Option<String>, DecodingKey)> = keys
        .iter()
        .filter(|(kid, _)| header.kid.is_none() || kid.is_none() || *kid == header.kid)
        .collect();
    if !candidates
        .iter()
        .any(|(_, k)| signature_ok(assertion, header.alg, k))
    {
        return Err(assertion_error(
            700027,
            "Client assertion failed signature validation.",
        ));
    }
    check_times(&claims)?;
    Ok("2")
}

/// The verification keys of a federated credential, with their key ids where known.
pub(crate) fn federated_keys(
    key: &FederatedKey,
) -> anyhow::Result<Vec<(Option<String>, DecodingKey)>> {
    match key {
        FederatedKey::Jwks(doc) => {
            let set: jsonwebtoken::jwk::JwkSet = if doc.get("keys").is_some() {
                serde_json::from_value(doc.clone())?
            } else {
                jsonwebtoken::jwk::JwkSet {
                    keys: vec![serde_json::from_value(doc.clone())?],
                }
            };
            let keys = set
                .keys
                .iter()
                .map(|k| Ok((k.common.key_id.clone(), DecodingKey::from_jwk(k)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if keys.is_empty() {
                bail!("the JWKS has no keys");
            }
            Ok(keys)
        }
        FederatedKey::PublicKeyPem(pem) => {
            let key = DecodingKey::from_rsa_pem(pem.as_bytes())
                .or_else(|_| DecodingKey::from_ec_pem(pem.as_bytes()))
                .or_else(|_| DecodingKey::from_ed_pem(pem.as_bytes()))
                .map_err(|_| anyhow!("not an RSA, EC or Ed25519 public key in PEM"))?;
            Ok(vec![(None, key)])
        }
    }
}

/// Accepts tokens this tenant issued for Graph. A token the running process issued
/// expires by real elapsed time, so moving the dev clock does not invalidate the
/// token a client has cached; other tokens (minted ones) expire by the dev clock.
pub(crate) fn verify_graph_token(
    inner: &Inner,
    token: &str,
) -> Result<crate::server::Caller, String> {
    let malformed = "IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or JWE Compact Serialization Format.";
    if token.split('.').count() != 3 {
        return Err(malformed.to_string());
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| malformed.to_string())?;
    let invalid_sig = "Access token validation failure. Invalid signature.";
    if header.alg != Algorithm::RS256 {
        return Err(invalid_sig.to_string());
    }
    let claims = {
        let keys = inner.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = keys
            .iter()
            .find(|k| Some(&k.kid) == header.kid.as_ref())
            .ok_or_else(|| invalid_sig.to_string())?;
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &key.decoding, &v)
            .map_err(|_| invalid_sig.to_string())?
            .claims
    };
    let tenant_id = inner.dir().tenant_id.clone();
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if iss != format!("https://sts.windows.net/{tenant_id}/") && iss != inner.issuer(&tenant_id) {
        return Err("Access token validation failure. Invalid issuer.".into());
    }
    let auds = aud_list(&claims);
    if !auds
        .iter()
        .any(|a| a == GRAPH_AUDIENCE || a == GRAPH_APP_ID || a == "https://graph.microsoft.com/")
    {
        return Err("Access token validation failure. Invalid audience.".into());
    }
    let expired = "Lifetime validation failed, the token is expired.";
    let uti = claims.get("uti").and_then(Value::as_str).unwrap_or("");
    let known = inner.issued().get(uti).copied();
    match known {
        Some((at, life)) => {
            if at.elapsed() >= life {
                return Err(expired.into());
            }
        }
        None => {
            let now = inner.now().unix_timestamp();
            let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
            let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
            if exp <= now {
                return Err(expired.into());
            }
            if nbf > now + ASSERTION_LEEWAY {
                return Err("Lifetime validation failed, the token is not yet valid.".into());
            }
        }
    }
    let app_id = claims
        .get("appid")
        .or_else(|| claims.get("azp"))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    Ok(crate::server::Caller { app_id })
}

pub(crate) async fn openid(
    State(inner): State<Arc<Inner>>,
    Path(tenant): Path<String>,
    axum::Extension(ctx): axum::Extension<Ctx>,
) -> Response {
    if !tenant_matches(&inner, &tenant) {
        return tenant_not_found(&tenant).render(&ctx, inner.now());
    }
    let tid = inner.dir().tenant_id.clone();
    let a = &inner.authority;
    Json(json!({
        "token_endpoint": format!("{a}/{tid}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{a}/{tid}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": inner.issuer(&tid),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{a}/{tid}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{a}/{tid}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{a}/{tid}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{a}/{tid}/kerberos"),
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }))
    .into_response()
}

pub(crate) async fn jwks(
    State(inner): State<Arc<Inner>>,
    Path(tenant): Path<String>,
    axum::Extension(ctx): axum::Extension<Ctx>,
) -> Response {
    if !tenant_matches(&inner, &tenant) {
        return tenant_not_found(&tenant).render(&ctx, inner.now());
    }
    let issuer = inner.issuer(&inner.dir().tenant_id.clone());
    let keys = inner.keys.read().unwrap_or_else(|e| e.into_inner());
    let keys: Vec<Value> = keys.iter().map(|k| k.jwk(&issuer)).collect();
    Json(json!({ "keys": keys })).into_response()
}
