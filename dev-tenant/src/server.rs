//! The HTTPS accept loop and the middleware every emulated endpoint goes through:
//! request ids, the request log, injected faults, Graph authentication and write limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::control::{FaultKind, Inner, RequestLogEntry};
use crate::error::GraphError;

/// Lets a handler close the connection its request arrived on.
#[derive(Clone)]
pub(crate) struct ConnKill(Arc<Notify>);

/// Ids Graph puts in every response and error body.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub request_id: String,
    pub client_request_id: String,
}

/// The app a Graph token was issued to.
#[derive(Clone)]
pub(crate) struct Caller {
    pub app_id: String,
}

pub(crate) fn spawn(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => break,
            };
            let Ok((stream, _)) = accepted else {
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let router = router.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let tls =
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        _ => return,
                    };
                let kill = Arc::new(Notify::new());
                let conn_kill = ConnKill(kill.clone());
                let svc =
                    hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(conn_kill.clone());
                        router.clone().oneshot(req.map(Body::new))
                    });
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tls), svc);
                // Dropping the connection future closes the socket with no response written.
                tokio::select! {
                    _ = conn => {}
                    _ = kill.notified() => {}
                    _ = shutdown.changed() => {}
                }
            });
        }
    })
}

/// Graph's date format in error bodies and timestamps: seconds, UTC, `Z`.
pub(crate) fn graph_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Decodes a query string the way Graph's front end does: `%XX` escapes, and `+` as a
/// space (form decoding), so a literal plus must be sent as `%2B`.
pub(crate) fn decode_component(raw: &str) -> Result<String, ()> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(())?;
                let s = std::str::from_utf8(hex).map_err(|_| ())?;
                out.push(u8::from_str_radix(s, 16).map_err(|_| ())?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

fn is_graph(path: &str) -> bool {
    path == "/v1.0" || path.starts_with("/v1.0/")
}

fn render_error(e: &GraphError, ctx: &Ctx, now: time::OffsetDateTime) -> Value {
    let mut inner = Map::new();
    for (k, v) in &e.inner_extra {
        inner.insert((*k).into(), Value::String(v.clone()));
    }
    inner.insert("date".into(), Value::String(graph_time(now)));
    inner.insert("request-id".into(), Value::String(ctx.request_id.clone()));
    inner.insert(
        "client-request-id".into(),
        Value::String(ctx.client_request_id.clone()),
    );
    json!({"error": {"code": e.code, "message": e.message, "innerError": inner}})
}

/// The token endpoint's shape for faults injected there.
fn render_aad_fault(status: StatusCode, ctx: &Ctx, now: time::OffsetDateTime) -> Value {
    json!({
        "error": "temporarily_unavailable",
        "error_description": format!(
            "AADSTS90033: A transient error has occurred. Please try again. (HTTP {})\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            status.as_u16(), ctx.request_id, ctx.client_request_id, graph_time(now)),
        "error_codes": [90033],
        "timestamp": graph_time(now).replace('T', " "),
        "trace_id": ctx.request_id,
        "correlation_id": ctx.client_request_id,
    })
}

pub(crate) async fn front(
    State(inner): State<Arc<Inner>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_dev") {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let query = req
        .uri()
        .query()
        .map(|q| decode_component(q).unwrap_or_else(|_| q.to_string()));
    let graph = is_graph(&path);
    let is_write = graph
        && matches!(
            method,
            Method::POST | Method::PATCH | Method::PUT | Method::DELETE
        );
    let ctx = Ctx {
        request_id: uuid::Uuid::new_v4().to_string(),
        client_request_id: req
            .headers()
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 200)
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    };
    req.extensions_mut().insert(ctx.clone());

    let fault = {
        let mut faults = inner.faults();
        let pos = faults.queue.iter().position(|f| {
            f.matcher
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
                && f.matcher
                    .path_prefix
                    .as_deref()
                    .is_none_or(|p| path.starts_with(p))
                && (graph || f.kind != FaultKind::PermissionDenied)
        });
        pos.map(|i| {
            let kind = faults.queue[i].kind.clone();
            faults.queue[i].times -= 1;
            if faults.queue[i].times == 0 {
                faults.queue.remove(i);
            }
            kind
        })
        .or_else(|| crate::chaos::draw(&mut faults, method.as_str(), &path, graph))
    };

    let mut log_entry = RequestLogEntry {
        method: method.to_string(),
        path: path.clone(),
        query,
        status: 0,
        is_write,
        at: inner.now(),
    };

    let kill = req.extensions().get::<ConnKill>().cloned();
    // Graph authenticates before it authorizes: a missing permission shows only to a
    // caller with a valid token.
    let deny = fault == Some(FaultKind::PermissionDenied);
    let lose_answer = fault == Some(FaultKind::AnswerLost);
    let early: Option<GraphError> = match fault {
        Some(FaultKind::DropConnection) => {
            inner.record(log_entry);
            return hang_up(kill).await;
        }
        Some(FaultKind::Slow(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(FaultKind::TooManyRequests { retry_after }) => {
            Some(GraphError::too_many_requests(retry_after.map(|s| {
                if s.fract() == 0.0 {
                    format!("{}", s as u64)
                } else {
                    format!("{s}")
                }
            })))
        }
        Some(FaultKind::ServerError(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let code = match status.as_u16() {
                503 => "serviceNotAvailable",
                504 => "gatewayTimeout",
                _ => "generalException",
            };
            Some(GraphError::new(
                status,
                code,
                "The service is temporarily unavailable. Please retry later.",
            ))
        }
        Some(FaultKind::AbuseBlock)
        | Some(FaultKind::AnswerLost)
        | Some(FaultKind::PermissionDenied)
        | None => None,
    };

    // The write admitted against the limit, to take back if the handler says it does not count.
    let mut admitted: Option<(String, Instant)> = None;

    let early = match early {
        Some(e) => Some(e),
        None if graph => match authenticate(&inner, &req) {
            Err(e) => Some(e),
            Ok(caller) => {
                let blocked = method == Method::POST
                    && path.trim_end_matches('/') == "/v1.0/invitations"
                    && inner.faults().abuse_block;
                if deny {
                    Some(GraphError::denied(
                        "Insufficient privileges to complete the operation.",
                    ))
                } else if blocked {
                    Some(GraphError::denied(
                        "Invitations are blocked for this tenant due to suspicious activity. Contact Microsoft support to have the block reviewed.",
                    ))
                } else {
                    let throttled = if is_write {
                        let at = Instant::now();
                        let refused = inner.limiter().admit(&caller.app_id, at).err();
                        if refused.is_none() {
                            admitted = Some((caller.app_id.clone(), at));
                        }
                        refused
                    } else {
                        None
                    };
                    let tenant_id = inner.dir().tenant_id.clone();
                    req.extensions_mut().insert(caller.clone());
                    throttled.map(|wait| {
                        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                        GraphError::too_many_requests(Some(secs.to_string()))
                            .header(
                                "x-ms-throttle-scope",
                                format!("Tenant_Application/Write/{}/{tenant_id}", caller.app_id),
                            )
                            .header("x-ms-throttle-information", "WriteLimitExceeded".into())
                    })
                }
            }
        },
        None => None,
    };

    let mut resp = match early {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    };
    if let Some((app, at)) = &admitted
        && resp
            .extensions()
            .get::<GraphError>()
            .is_some_and(|e| e.uncounted)
    {
        crate::realities::refund_write(&inner, app, *at);
    }

    let now = inner.now();
    if graph {
        let pending = resp.extensions_mut().remove::<GraphError>().or_else(|| {
            let status = resp.status();
            (status == StatusCode::METHOD_NOT_ALLOWED).then(|| {
                GraphError::new(
                    status,
                    "Request_BadRequest",
                    "Specified HTTP method is not allowed for the request target.",
                )
            })
        });
        if let Some(e) = pending {
            let body = render_error(&e, &ctx, now);
            let mut r = (e.status, axum::Json(body)).into_response();
            for (k, v) in &e.headers {
                if let Ok(v) = HeaderValue::from_str(v) {
                    r.headers_mut().insert(*k, v);
                }
            }
            resp = r;
        }
    } else if let Some(e) = resp.extensions_mut().remove::<GraphError>() {
        // Only injected faults reach here on the identity endpoints.
        let mut r = (e.status, axum::Json(render_aad_fault(e.status, &ctx, now))).into_response();
        for (k, v) in &e.headers {
            if let Ok(v) = HeaderValue::from_str(v) {
                r.headers_mut().insert(*k, v);
            }
        }
        resp = r;
    }
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        headers.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.client_request_id) {
        headers.insert("client-request-id", v);
    }
    if graph {
        headers.insert(
            "x-ms-ags-diagnostic",
            HeaderValue::from_static(
                "{\"ServerInfo\":{\"DataCenter\":\"Local\",\"Slice\":\"E\",\"Ring\":\"dev\",\"ScaleUnit\":\"000\",\"RoleInstance\":\"dev-tenant\"}}",
            ),
        );
    }
    if lose_answer {
        // The work is done; only the answer never reaches the client (status 0 in the log).
        inner.record(log_entry);
        return hang_up(kill).await;
    }
    log_entry.status = resp.status().as_u16();
    inner.record(log_entry);
    resp
}

/// Closes the connection the request arrived on without writing a response.
async fn hang_up(kill: Option<ConnKill>) -> Response {
    if let Some(kill) = kill {
        kill.0.notify_one();
    }
    // The connection task drops this future together with the connection.
    std::future::pending().await
}

fn authenticate(inner: &Inner, req: &Request) -> Result<Caller, GraphError> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .unwrap_or("");
    if token.is_empty() {
        return Err(GraphError::unauthenticated("Access token is empty."));
    }
    crate::token::verify_graph_token(inner, token).map_err(GraphError::unauthenticated)
}
