//! `/_dev/...`: the control API over HTTP, so another process can drive the tenant.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::control::{Control, Fault, FaultKind, FaultMatcher, Inner, WriteLimit};
use crate::directory::FederatedKey;
use crate::mint::MintToken;
use crate::model::{NewGroup, NewUser};

pub(crate) fn router() -> Router<Arc<Inner>> {
    Router::new()
        .route("/info", get(info))
        .route("/users", get(users).post(add_user))
        .route("/users/{id}", get(user))
        .route("/users/{id}/sponsors", get(sponsors))
        .route("/users/{id}/redeem", post(redeem))
        .route("/groups", get(groups).post(add_group))
        .route("/groups/{id}/members", get(group_members))
        .route(
            "/servicePrincipals",
            get(service_principals).post(add_service_principal),
        )
        .route(
            "/servicePrincipals/{id}/appRoleAssignments",
            get(app_role_assignments),
        )
        .route("/roleAssignments", get(role_assignments))
        .route("/domains", get(domains).post(add_domain))
        .route("/clock", get(clock).put(set_clock))
        .route("/clock/advance", post(advance))
        .route("/writeLimit", put(set_write_limit))
        .route("/faults", post(inject).delete(clear_faults))
        .route("/abuseBlock", delete(clear_abuse_block))
        .route("/requests", get(requests).delete(clear_requests))
        .route("/mail", get(mail))
        .route("/tokens", post(mint))
        .route("/keys/rotate", post(rotate))
        .route("/keys/retire", post(retire))
        .route("/clientCertificates", post(add_certificate))
        .route("/federatedCredentials", post(add_federated))
        .route("/save", post(save))
        .merge(crate::realities::dev_routes())
}

fn control(inner: Arc<Inner>) -> Control {
    Control { inner }
}

fn problem(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

fn found<T: serde::Serialize>(v: Option<T>, what: &str) -> Response {
    match v {
        Some(v) => Json(v).into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("no {what}")),
    }
}

async fn info(State(inner): State<Arc<Inner>>) -> Json<Value> {
    let c = control(inner.clone());
    Json(json!({
        "tenantId": c.tenant_id(),
        "clientId": c.client_id(),
        "clientSecret": c.client_secret(),
        "apiClientId": c.api_client_id(),
        "apiAppIdUri": c.api_app_id_uri(),
        "authorityHost": inner.authority,
        "graphBaseUrl": format!("{}/v1.0", inner.authority),
        "caPemPath": inner.state_dir.join(crate::crypto::CA_FILE),
        "signingKeyIds": c.signing_key_ids(),
        "now": crate::server::graph_time(c.now()),
    }))
}

async fn users(State(i): State<Arc<Inner>>) -> Response {
    Json(control(i).users()).into_response()
}

async fn add_user(State(i): State<Arc<Inner>>, Json(n): Json<NewUser>) -> Response {
    (StatusCode::CREATED, Json(control(i).add_user(n))).into_response()
}

async fn user(State(i): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    found(control(i).user(&id), "such user")
}

async fn sponsors(State(i): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    Json(control(i).sponsors(&id)).into_response()
}

async fn redeem(State(i): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    match control(i).redeem(&id) {
        Ok(u) => Json(u).into_response(),
        Err(e) => problem(StatusCode::NOT_FOUND, e),
    }
}

async fn groups(State(i): State<Arc<Inner>>) -> Response {
    Json(control(i).groups()).into_response()
}

async fn add_group(State(i): State<Arc<Inner>>, Json(n): Json<NewGroup>) -> Response {
    (StatusCode::CREATED, Json(control(i).add_group(n))).into_response()
}

async fn group_members(State(i): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    Json(control(i).group_members(&id)).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewSp {
    display_name: String,
    #[serde(default)]
    app_roles: Vec<NewRole>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewRole {
    value: String,
    display_name: Option<String>,
}

async fn service_principals(State(i): State<Arc<Inner>>) -> Response {
    Json(control(i).service_principals()).into_response()
}

async fn add_service_principal(State(i): State<Arc<Inner>>, Json(n): Json<NewSp>) -> Response {
    let roles: Vec<(String, String)> = n
        .app_roles
        .into_iter()
        .map(|r| {
            let display = r.display_name.unwrap_or_else(|| r.value.clone());
            (r.value, display)
        })
        .collect();
    (
        StatusCode::CREATED,
        Json(control(i).add_service_principal(n.display_name, roles)),
    )
        .into_response()
}

async fn app_role_assignments(State(i): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    Json(control(i).app_role_assignments(&id)).into_response()
}

async fn role_assignments(State(i): State<Arc<Inner>>) -> Response {
    Json(control(i).role_assignments()).into_response()
}

#[derive(Deserialize)]
struct NewDomain {
    name: String,
    #[serde(default)]
    verified: bool,
}

async fn domains(State(i): State<Arc<Inner>>) -> Response {
    Json(control(i).domains()).into_response()
}

async fn add_domain(State(i): State<Arc<Inner>>, Json(d): Json<NewDomain>) -> Response {
    (
        StatusCode::CREATED,
        Json(control(i).add_domain(&d.name, d.verified)),
    )
        .into_response()
}

async fn clock(State(i): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({"now": crate::server::graph_time(control(i).now())}))
}

#[derive(Deserialize)]
struct SetClock {
    #[serde(with = "time::serde::rfc3339")]
    now: time::OffsetDateTime,
}

async fn set_clock(State(i): State<Arc<Inner>>, Json(c): Json<SetClock>) -> Json<Value> {
    let c2 = control(i);
    c2.set_now(c.now);
    Json(json!({"now": crate::server::graph_time(c2.now())}))
}

#[derive(Deserialize)]
struct Advance {
    seconds: f64,
}

async fn advance(State(i): State<Arc<Inner>>, Json(a): Json<Advance>) -> Response {
    if !(a.seconds.is_finite() && a.seconds >= 0.0) {
        return problem(
            StatusCode::BAD_REQUEST,
            "seconds must be a non-negative number",
        );
    }
    let c = control(i);
    c.advance(Duration::from_secs_f64(a.seconds));
    Json(json!({"now": crate::server::graph_time(c.now())})).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetLimit {
    /// Absent or null: Graph's limit.
    writes: Option<u32>,
    per_seconds: Option<f64>,
    #[serde(default)]
    unlimited: bool,
}

async fn set_write_limit(State(i): State<Arc<Inner>>, Json(l): Json<SetLimit>) -> Response {
    let limit = if l.unlimited {
        Some(WriteLimit::unlimited())
    } else {
        match (l.writes, l.per_seconds) {
            (Some(writes), Some(per)) if per.is_finite() && per > 0.0 => Some(WriteLimit {
                writes,
                per: Duration::from_secs_f64(per),
            }),
            (None, None) => None,
            _ => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "give writes and perSeconds (> 0), or unlimited: true, or neither for Graph's limit",
                );
            }
        }
    };
    control(i).set_write_limit(limit);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FaultBody {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path_prefix: Option<String>,
    kind: String,
    #[serde(default)]
    retry_after: Option<f64>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    delay_seconds: Option<f64>,
    #[serde(default)]
    times: Option<u32>,
}

async fn inject(State(i): State<Arc<Inner>>, Json(f): Json<FaultBody>) -> Response {
    let kind = match f.kind.as_str() {
        "tooManyRequests" => FaultKind::TooManyRequests {
            retry_after: f.retry_after,
        },
        "serverError" => FaultKind::ServerError(f.status.unwrap_or(503)),
        "slow" => match f.delay_seconds {
            Some(s) if s.is_finite() && s >= 0.0 => FaultKind::Slow(Duration::from_secs_f64(s)),
            _ => return problem(StatusCode::BAD_REQUEST, "slow needs delaySeconds"),
        },
        "dropConnection" => FaultKind::DropConnection,
        "answerLost" => FaultKind::AnswerLost,
        "permissionDenied" => FaultKind::PermissionDenied,
        "abuseBlock" => FaultKind::AbuseBlock,
        other => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("unknown fault kind '{other}'"),
            );
        }
    };
    control(i).inject(Fault {
        matcher: FaultMatcher {
            method: f.method,
            path_prefix: f.path_prefix,
        },
        kind,
        times: f.times.unwrap_or(1),
    });
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_faults(State(i): State<Arc<Inner>>) -> StatusCode {
    control(i).clear_faults();
    StatusCode::NO_CONTENT
}

async fn clear_abuse_block(State(i): State<Arc<Inner>>) -> StatusCode {
    control(i).clear_abuse_block();
    StatusCode::NO_CONTENT
}

async fn requests(State(i): State<Arc<Inner>>) -> Response {
    Json(control(i).requests()).into_response()
}

async fn clear_requests(State(i): State<Arc<Inner>>) -> StatusCode {
    control(i).clear_requests();
    StatusCode::NO_CONTENT
}

async fn mail(State(i): State<Arc<Inner>>) -> Response {
    Json(control(i).sent_mail()).into_response()
}

async fn mint(State(i): State<Arc<Inner>>, Json(m): Json<MintToken>) -> Response {
    match control(i).mint_token(m) {
        Ok(t) => Json(json!({"token": t})).into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, e),
    }
}

async fn rotate(State(i): State<Arc<Inner>>) -> Response {
    match control(i).rotate_signing_key() {
        Ok(kid) => Json(json!({"kid": kid})).into_response(),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn retire(State(i): State<Arc<Inner>>) -> StatusCode {
    control(i).retire_old_keys();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct CertBody {
    pem: String,
}

async fn add_certificate(State(i): State<Arc<Inner>>, Json(c): Json<CertBody>) -> Response {
    match control(i).add_client_certificate(&c.pem) {
        Ok(thumb) => Json(json!({"thumbprint": thumb})).into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FederatedBody {
    issuer: String,
    subject: String,
    jwks: Option<Value>,
    public_key_pem: Option<String>,
}

async fn add_federated(State(i): State<Arc<Inner>>, Json(f): Json<FederatedBody>) -> Response {
    let key = match (f.jwks, f.public_key_pem) {
        (Some(j), None) => FederatedKey::Jwks(j),
        (None, Some(p)) => FederatedKey::PublicKeyPem(p),
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "give exactly one of jwks or publicKeyPem",
            );
        }
    };
    match control(i).add_federated_credential(&f.issuer, &f.subject, key) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}

async fn save(State(i): State<Arc<Inner>>) -> Response {
    match control(i).save() {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}
