//! Sending one Graph call: token, write budget, per-attempt timeout, classification and
//! retries within the caller's deadline.

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use bytes::Bytes;
use reqwest::Method;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use super::limiter::WriteLimiter;
use super::retry::RetryPolicy;
use super::wire;
use crate::error::Classify;
use crate::ports::directory::DirectoryError;

/// No single attempt waits longer than this, however much time the caller has.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// A process-wide Graph client: one HTTP pool, one credential, one write budget.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    http: reqwest::Client,
    /// `https://graph.microsoft.com/v1.0`, without a trailing slash.
    pub(super) base: String,
    scope: String,
    credential: Arc<dyn TokenCredential>,
    writes: Arc<WriteLimiter>,
    retry: RetryPolicy,
    pub(super) verified_domains: tokio::sync::Mutex<Option<(Instant, Vec<String>)>>,
}

impl GraphClient {
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        credential: Arc<dyn TokenCredential>,
        writes_per_second: u32,
        budget: Option<Arc<dyn crate::ports::budget::WriteBudget>>,
        retry: RetryPolicy,
    ) -> Self {
        let base = base_url.trim_end_matches('/').to_string();
        GraphClient {
            inner: Arc::new(Inner {
                http,
                scope: graph_scope(&base),
                base,
                credential,
                writes: WriteLimiter::new(writes_per_second, budget),
                retry,
                verified_domains: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The directory for one unit of work that must finish by `deadline` (a Lambda's
    /// remaining time): no call waits or retries past it.
    pub fn directory(&self, deadline: Instant) -> GraphDirectory {
        GraphDirectory {
            inner: Arc::clone(&self.inner),
            deadline,
        }
    }

    pub fn write_limiter(&self) -> &Arc<WriteLimiter> {
        &self.inner.writes
    }
}

/// The token scope: the Graph resource of the configured cloud. Anything not named like a
/// Graph host (an emulator, a proxy) speaks for the public cloud's Graph.
pub fn graph_scope(base: &str) -> String {
    match url::Url::parse(base) {
        Ok(u) if u.host_str().is_some_and(|h| h.starts_with("graph.")) => {
            format!("{}/.default", u.origin().ascii_serialization())
        }
        _ => "https://graph.microsoft.com/.default".to_string(),
    }
}

/// The directory as seen by one unit of work.
#[derive(Clone)]
pub struct GraphDirectory {
    pub(super) inner: Arc<Inner>,
    deadline: Instant,
}

pub(super) struct Call<'a> {
    pub method: Method,
    /// Relative to the base (`/users?...`) or absolute (a nextLink).
    pub target: String,
    pub body: Option<&'a serde_json::Value>,
    pub inviting: bool,
}

impl<'a> Call<'a> {
    pub fn get(target: String) -> Self {
        Call {
            method: Method::GET,
            target,
            body: None,
            inviting: false,
        }
    }

    pub fn write(method: Method, target: String, body: Option<&'a serde_json::Value>) -> Self {
        Call {
            method,
            target,
            body,
            inviting: false,
        }
    }

    fn is_write(&self) -> bool {
        self.method != Method::GET
    }

    /// The path without its query, for logs: queries carry addresses.
    fn shown(&self) -> &str {
        let path = self.target.split('?').next().unwrap_or_default();
        path.strip_prefix("https://")
            .map_or(path, |p| p.find('/').map_or(p, |i| &p[i..]))
    }
}

impl GraphDirectory {
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub(super) fn url(&self, target: &str) -> String {
        if target.starts_with("https://") {
            target.to_string()
        } else {
            format!("{}{}", self.inner.base, target)
        }
    }

    /// Sends the call, retrying transient and throttled failures while time remains.
    pub(super) async fn send(&self, call: Call<'_>) -> Result<(u16, Bytes), DirectoryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let permit = if call.is_write() {
                Some(
                    self.inner
                        .writes
                        .acquire(self.deadline)
                        .await
                        .map_err(|e| match e.throttled_for {
                            // Graph asked for the wait: the caller hears it as throttling.
                            Some(wait) => DirectoryError::Throttled {
                                retry_after: Some(wait),
                            },
                            None => DirectoryError::DeadlineExceeded(format!(
                                "no write slot for {} {} in time",
                                call.method,
                                call.shown()
                            )),
                        })?,
                )
            } else {
                None
            };
            let err = match self.attempt(&call).await {
                Ok(ok) => {
                    if let Some(p) = &permit {
                        p.succeeded();
                    }
                    return Ok(ok);
                }
                Err(e) => e,
            };
            if permit.is_some()
                && let DirectoryError::Throttled { retry_after } = &err
            {
                self.inner.writes.throttled(*retry_after);
            }
            drop(permit);
            // Our own access stays refused for longer than any call waits; an invitation
            // that may have been carried out is looked up before it is sent again.
            let final_here = matches!(err, DirectoryError::AccessDenied { .. })
                || (call.inviting && matches!(err, DirectoryError::Unanswered(_)));
            if final_here || !err.class().is_retryable() {
                return Err(err);
            }
            match self.inner.retry.next_delay(
                attempt,
                err.retry_after(),
                Instant::now(),
                self.deadline,
            ) {
                Some(delay) => {
                    tracing::debug!(
                        method = %call.method,
                        path = call.shown(),
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        error = %err,
                        "graph call failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                None => return Err(err),
            }
        }
    }

    async fn attempt(&self, call: &Call<'_>) -> Result<(u16, Bytes), DirectoryError> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(DirectoryError::DeadlineExceeded(format!(
                "{} {}",
                call.method,
                call.shown()
            )));
        }
        let token = tokio::time::timeout(
            remaining,
            self.inner.credential.get_token(&[&self.inner.scope], None),
        )
        .await
        .map_err(|_| DirectoryError::Transient("token request timed out".into()))?
        .map_err(|e| classify_token_error(&e))?;
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), self.url(&call.target))
            .bearer_auth(token.token.secret())
            .header("client-request-id", &client_request_id)
            .timeout(remaining.min(ATTEMPT_TIMEOUT));
        if let Some(body) = call.body {
            request = request.json(body);
        }
        // A write whose request left us may have been carried out, whatever happened next.
        let lost = |e: reqwest::Error| {
            let connect = e.is_connect();
            let text = e.without_url().to_string();
            if call.is_write() && !connect {
                DirectoryError::Unanswered(text)
            } else {
                DirectoryError::Transient(text)
            }
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let err = lost(e);
                log_failure(call, None, None, &client_request_id, &err);
                return Err(err);
            }
        };
        let status = response.status().as_u16();
        let retry_after = wire::retry_after(response.headers());
        let request_id = response
            .headers()
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let err = match response.bytes().await {
            Ok(body) if (200..300).contains(&status) => return Ok((status, body)),
            Ok(body) => match wire::classify(status, retry_after, &body, call.inviting) {
                DirectoryError::Transient(text) if call.is_write() => {
                    DirectoryError::Unanswered(text)
                }
                other => other,
            },
            Err(e) => lost(e),
        };
        log_failure(
            call,
            Some(status),
            request_id.as_deref(),
            &client_request_id,
            &err,
        );
        Err(err)
    }

    /// GETs and decodes; a 404 is `None`.
    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        target: String,
    ) -> Result<Option<T>, DirectoryError> {
        match self.send(Call::get(target)).await {
            Ok((_, body)) => decode(&body).map(Some),
            Err(DirectoryError::Permanent { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

pub(super) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, DirectoryError> {
    serde_json::from_slice(body).map_err(|e| {
        DirectoryError::permanent(
            200,
            "UnexpectedResponse",
            format!("unreadable Graph answer: {e}"),
        )
    })
}

/// Every failed call with the ids Microsoft support asks for: Graph's `request-id` and our
/// `client-request-id`. A read that finds nothing is an answer, not a failure.
fn log_failure(
    call: &Call<'_>,
    status: Option<u16>,
    request_id: Option<&str>,
    client_request_id: &str,
    err: &DirectoryError,
) {
    let method = call.method.as_str();
    let path = call.shown();
    let status = status.unwrap_or(0);
    match err {
        DirectoryError::Permanent { status: 404, .. } if !call.is_write() => {
            tracing::debug!(
                method,
                path,
                status,
                request_id,
                client_request_id,
                "graph: not found"
            );
        }
        DirectoryError::Permanent { .. } => {
            tracing::info!(method, path, status, request_id, client_request_id, error = %err, "graph call refused");
        }
        DirectoryError::AccessDenied { .. } => {
            tracing::error!(method, path, status, request_id, client_request_id, error = %err, "graph refused this deployment's access");
        }
        _ => {
            tracing::warn!(method, path, status, request_id, client_request_id, error = %err, "graph call failed");
        }
    }
}

/// Token failures: the identity platform refusing our credential is an outage of this
/// deployment (retried, never a refusal of anyone); its own outages are transient.
fn classify_token_error(e: &azure_core::Error) -> DirectoryError {
    // Credentials wrap the cause in a `Credential` error of their own: classify the cause.
    let mut cause = e;
    while matches!(cause.kind(), ErrorKind::Credential)
        && let Some(inner) =
            std::error::Error::source(cause).and_then(|s| s.downcast_ref::<azure_core::Error>())
    {
        cause = inner;
    }
    match cause.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let status = u16::from(*status);
            match status {
                429 => DirectoryError::Throttled { retry_after: None },
                500..=599 => DirectoryError::Transient(format!("token endpoint HTTP {status}")),
                _ => DirectoryError::access_denied(
                    error_code
                        .as_ref()
                        .map(|c| format!("AADSTS{c}"))
                        .or_else(|| aadsts_code(&e.to_string()))
                        .unwrap_or_else(|| "TokenRequestFailed".into()),
                    format!("token request refused (HTTP {status}): {e}"),
                ),
            }
        }
        ErrorKind::Io => DirectoryError::Transient(format!("token request failed: {e}")),
        // azure_identity 1.0 cannot decode an Entra error whose description holds escapes
        // (Entra's "\r\nTrace ID: ..." does), so the AADSTS code survives only in the text.
        ErrorKind::Credential | ErrorKind::DataConversion => DirectoryError::access_denied(
            aadsts_code(&e.to_string()).unwrap_or_else(|| "CredentialUnavailable".into()),
            format!("no token: {e}"),
        ),
        _ => DirectoryError::Transient(format!("token request failed: {e}")),
    }
}

/// The first `AADSTS<digits>` in a message.
fn aadsts_code(message: &str) -> Option<String> {
    let at = message.find("AADSTS")?;
    let digits: String = message[at + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then(|| format!("AADSTS{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_aadsts_codes() {
        assert_eq!(
            aadsts_code("failed. invalid type: string \"AADSTS7000215: Invalid client secret")
                .as_deref(),
            Some("AADSTS7000215")
        );
        assert_eq!(aadsts_code("AADSTS without digits"), None);
    }

    #[test]
    fn scopes() {
        assert_eq!(
            graph_scope("https://graph.microsoft.com/v1.0"),
            "https://graph.microsoft.com/.default"
        );
        assert_eq!(
            graph_scope("https://graph.microsoft.us/v1.0"),
            "https://graph.microsoft.us/.default"
        );
        assert_eq!(
            graph_scope("https://127.0.0.1:8443/v1.0"),
            "https://graph.microsoft.com/.default"
        );
    }
}
