//! A local Lambda Runtime API (2018-06-01): the HTTP interface a custom runtime polls for
//! invocations and answers. The function binaries run unchanged against it.
//!
//! Routes: `GET /2018-06-01/runtime/invocation/next` (long-polls until an invocation is
//! queued), `POST .../invocation/{id}/response`, `POST .../invocation/{id}/error` and
//! `POST .../init/error`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Lambda's limit on a synchronous response payload.
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Why an invocation produced no response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvocationFailure {
    /// The function posted to `/invocation/{id}/error`.
    #[error("the function reported an error: {error_type}: {message}")]
    Function { error_type: String, message: String },
    /// The function posted to `/init/error`: it could not start.
    #[error("the function failed to initialise: {error_type}: {message}")]
    Init { error_type: String, message: String },
    /// No answer within the invocation's timeout.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The process ended before answering.
    #[error("the function process exited ({status}) before answering; its output:\n{output}")]
    Exited { status: String, output: String },
}

struct Queued {
    id: String,
    payload: Value,
    deadline_ms: u64,
}

type Answer = Result<Value, InvocationFailure>;

struct Shared {
    function_arn: String,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Queued>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_error: Mutex<Option<InvocationFailure>>,
    first_poll: OnceLock<Instant>,
    polled: Notify,
}

impl Shared {
    fn answer(&self, id: &str, answer: Answer) -> StatusCode {
        let sender = lock(&self.pending).remove(id);
        match sender {
            Some(tx) => {
                // The caller may have given up (timed out); the answer is then dropped.
                let _ = tx.send(answer);
                StatusCode::ACCEPTED
            }
            None => StatusCode::NOT_FOUND,
        }
    }
}

/// A running Runtime API endpoint for one function process.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Queued>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RuntimeApi {
    /// Serves on 127.0.0.1 on a free port.
    pub async fn start(function_name: &str) -> anyhow::Result<RuntimeApi> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (queue, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            function_arn: format!("arn:aws:lambda:eu-west-1:123456789012:function:{function_name}"),
            queue: tokio::sync::Mutex::new(rx),
            pending: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
            first_poll: OnceLock::new(),
            polled: Notify::new(),
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .layer(DefaultBodyLimit::max(MAX_RESPONSE_BYTES))
            .with_state(shared.clone());
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
        });
        Ok(RuntimeApi {
            addr,
            shared,
            queue,
            stop,
            task,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// When the function first asked for an invocation: the moment it was ready.
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.first_poll.get().copied()
    }

    /// Waits until the function has asked for its first invocation.
    pub async fn wait_first_poll(&self, timeout: Duration) -> Option<Instant> {
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let notified = self.shared.polled.notified();
                if let Some(at) = self.first_poll() {
                    return at;
                }
                notified.await;
            }
        })
        .await;
        waited.ok()
    }

    /// The failure the function posted to `/init/error`, if any.
    pub fn init_error(&self) -> Option<InvocationFailure> {
        lock(&self.shared.init_error).clone()
    }

    /// Queues an invocation whose deadline is `timeout` from now, and waits for its answer
    /// (until the deadline and a second of grace, as Lambda would have stopped it by then).
    pub async fn invoke(&self, payload: Value, timeout: Duration) -> Answer {
        let rx = self.submit(payload, timeout)?;
        match tokio::time::timeout(timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(self
                .init_error()
                .unwrap_or(InvocationFailure::TimedOut(timeout))),
            Err(_) => Err(InvocationFailure::TimedOut(timeout)),
        }
    }

    /// Queues an invocation; the receiver yields its answer.
    pub fn submit(
        &self,
        payload: Value,
        timeout: Duration,
    ) -> Result<oneshot::Receiver<Answer>, InvocationFailure> {
        if let Some(failure) = self.init_error() {
            return Err(failure);
        }
        let id = uuid::Uuid::new_v4().to_string();
        let deadline = SystemTime::now() + timeout;
        let deadline_ms = deadline
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(id.clone(), tx);
        self.queue
            .send(Queued {
                id,
                payload,
                deadline_ms,
            })
            .map_err(|_| InvocationFailure::Exited {
                status: "runtime API stopped".into(),
                output: String::new(),
            })?;
        Ok(rx)
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    if shared.first_poll.set(Instant::now()).is_ok() {
        shared.polled.notify_waiters();
    }
    // One poller at a time, as in Lambda: a runtime polls again only after answering.
    let mut queue = shared.queue.lock().await;
    let Some(invocation) = queue.recv().await else {
        return (StatusCode::GONE, "runtime API stopped").into_response();
    };
    drop(queue);
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", &invocation.id);
    set(
        "lambda-runtime-deadline-ms",
        &invocation.deadline_ms.to_string(),
    );
    set("lambda-runtime-invoked-function-arn", &shared.function_arn);
    set(
        "lambda-runtime-trace-id",
        &format!(
            "Root=1-{:08x}-{};Parent={};Sampled=0",
            invocation.deadline_ms / 1000,
            &uuid::Uuid::new_v4().simple().to_string()[..24],
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        ),
    );
    set("content-type", "application/json");
    (StatusCode::OK, headers, invocation.payload.to_string()).into_response()
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> impl IntoResponse {
    let answer = if body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(&body).map_err(|e| InvocationFailure::Function {
            error_type: "Runtime.InvalidResponse".into(),
            message: format!("the response body is not JSON: {e}"),
        })
    };
    let status = shared.answer(&id, answer);
    (status, axum::Json(json!({ "status": "OK" })))
}

/// The error document a runtime posts: `{"errorType": "...", "errorMessage": "..."}`.
fn error_document(headers: &HeaderMap, body: &[u8]) -> (String, String) {
    let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error_type = doc
        .get("errorType")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| {
            headers
                .get("lambda-runtime-function-error-type")
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        })
        .unwrap_or_else(|| "Unknown".into());
    let message = doc
        .get("errorMessage")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    (error_type, message)
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let (error_type, message) = error_document(&headers, &body);
    let status = shared.answer(
        &id,
        Err(InvocationFailure::Function {
            error_type,
            message,
        }),
    );
    (status, axum::Json(json!({ "status": "OK" })))
}

async fn init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let (error_type, message) = error_document(&headers, &body);
    let failure = InvocationFailure::Init {
        error_type,
        message,
    };
    *lock(&shared.init_error) = Some(failure.clone());
    for (_, tx) in lock(&shared.pending).drain() {
        let _ = tx.send(Err(failure.clone()));
    }
    (StatusCode::ACCEPTED, axum::Json(json!({ "status": "OK" })))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
