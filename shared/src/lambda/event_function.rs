//! The queue-and-webhook event functions (partner-signed, hr-record-added): SQS batches
//! with partial failures, and signed webhooks answered with JSON.

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::InvocationError;
use super::http::{HttpRequest, Problem, json_response};
use super::serve::Handler;
use super::sqs::{hold_while_circuit_open, process_batch};
use super::trigger::Trigger;
use crate::app::Abort;
use crate::app::circuit::CircuitGate;
use crate::app::events::{EventWork, Processed, Rejection};
use crate::app::runtime::{Runtime, StartupError};
use crate::config::{Env, WebhookSecrets, webhook_secrets};
use crate::domain::event::EventErrorKind;
use crate::domain::signature;
use crate::error::FailureClass;
use crate::ports::ledger::{EventKey, EventStatus};

pub struct EventFunction {
    pub runtime: Runtime,
    accepts: &'static [&'static str],
    /// Present when the function takes signed webhooks.
    webhook_secrets: Option<Vec<String>>,
}

impl EventFunction {
    pub async fn from_env(
        function: &'static str,
        accepts: &'static [&'static str],
        takes_webhooks: bool,
        env: &dyn Env,
    ) -> Result<Self, StartupError> {
        let runtime = Runtime::from_env(function, env).await?;
        let webhook_secrets = if takes_webhooks {
            resolve_webhook_secrets(&runtime, env).await?
        } else {
            None
        };
        Ok(EventFunction {
            runtime,
            accepts,
            webhook_secrets,
        })
    }

    fn work<'a>(
        &'a self,
        directory: &'a dyn crate::ports::Directory,
        gate: &'a CircuitGate,
        takes_parts: bool,
        deadline: Instant,
    ) -> EventWork<'a> {
        EventWork {
            runtime: &self.runtime,
            directory,
            gate,
            accepts: self.accepts,
            takes_parts,
            deadline,
        }
    }

    async fn webhook(&self, request: HttpRequest, deadline: Instant) -> Value {
        let Some(secrets) = &self.webhook_secrets else {
            return Problem::new(404, "Not found", "this function takes no webhooks").response();
        };
        let now = self.runtime.settings.clock.now();
        if let Err(e) =
            signature::verify(request.header("x-signature"), &request.body, secrets, now)
        {
            tracing::warn!(error = %e, "webhook refused: bad signature");
            return Problem::new(401, "Unauthenticated", e.to_string()).response();
        }
        if let Err(problem) = request.require_json_post() {
            return problem.response();
        }
        let directory = self.runtime.directory(deadline);
        let gate = CircuitGate::reporting(self.runtime.metrics.clone());
        let fallback = EventKey::new(
            self.runtime.function,
            format!("webhook:{}", self.runtime.function),
            request
                .request_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        );
        match self
            .work(directory.as_ref(), &gate, false, deadline)
            .process_body(&request.body, fallback)
            .await
        {
            Ok(Processed::Rejected(record, rejection)) => rejection_problem(&rejection)
                .with("event", record.key.to_string())
                .response(),
            Ok(processed) => {
                let record = processed.record();
                let status = match (&processed, record.status) {
                    (Processed::Duplicate(_), _) => "duplicate",
                    (_, EventStatus::Accepted) => "accepted",
                    _ => "processed",
                };
                // Split into parts: accepted, and done when the record says completed.
                if record.status == EventStatus::Accepted {
                    return json_response(
                        202,
                        &json!({
                            "event": record.key.to_string(),
                            "status": status,
                            "detail": record.reason,
                        }),
                    );
                }
                json_response(
                    200,
                    &json!({
                        "event": record.key.to_string(),
                        "status": status,
                        "outcomes": record.outcomes,
                    }),
                )
            }
            Err(abort) => abort_problem(&abort).response(),
        }
    }
}

#[async_trait]
impl Handler for EventFunction {
    fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    async fn handle(&self, payload: Value, deadline: Instant) -> Result<Value, InvocationError> {
        match Trigger::recognise(payload)? {
            Trigger::Sqs(event) => {
                // One gate for the batch: a block seen by one message stops the rest.
                let gate = CircuitGate::reporting(self.runtime.metrics.clone());
                let response = process_batch(&event, deadline, |m| {
                    let fallback = EventKey::new(self.runtime.function, m.queue_arn, m.message_id);
                    let gate = &gate;
                    async move {
                        let directory = self.runtime.directory(m.deadline);
                        self.work(directory.as_ref(), gate, true, m.deadline)
                            .process_body(m.body.as_bytes(), fallback)
                            .await
                            .map(|_| ())
                    }
                })
                .await;
                if gate.is_blocked() {
                    hold_while_circuit_open(&event, &response, &self.runtime).await;
                }
                serde_json::to_value(response).map_err(|e| {
                    InvocationError::Failed(format!("cannot encode the batch response: {e}"))
                })
            }
            Trigger::Http(request) if self.webhook_secrets.is_some() => {
                Ok(self.webhook(request, deadline).await)
            }
            other => Err(other.unsupported(
                self.runtime.function,
                if self.webhook_secrets.is_some() {
                    "SQS or a signed webhook"
                } else {
                    "SQS"
                },
            )),
        }
    }
}

/// The HTTP answer to a rejected event.
pub fn rejection_problem(rejection: &Rejection) -> Problem {
    match rejection {
        Rejection::Invalid(e) => {
            let status = match e.kind {
                EventErrorKind::TooLarge => 413,
                _ => 400,
            };
            Problem::new(status, "Invalid event", e.to_string()).with("field", e.field.clone())
        }
        Rejection::NotAllowed(reason) => Problem::new(403, "Not allowed", reason.clone()),
    }
}

/// The HTTP answer to work that stopped and should be sent again later.
pub fn abort_problem(abort: &Abort) -> Problem {
    let wait = abort
        .retry_after
        .unwrap_or(std::time::Duration::from_secs(30));
    match abort.class {
        FailureClass::Throttled => {
            Problem::new(429, "Too many requests", abort.message.clone()).retry_after(wait)
        }
        // The caller learns nothing of our credentials or permissions; the log has the cause.
        _ if abort.access_denied => Problem::new(
            503,
            "Temporarily unavailable",
            "the service cannot reach Microsoft Graph at the moment; send the request again later",
        )
        .retry_after(wait),
        _ => Problem::new(503, "Temporarily unavailable", abort.message.clone()).retry_after(wait),
    }
}

async fn resolve_webhook_secrets(
    runtime: &Runtime,
    env: &dyn Env,
) -> Result<Option<Vec<String>>, StartupError> {
    match configured_webhook_secrets(runtime, env).await? {
        Some(secrets) => Ok(Some(secrets)),
        None => Err(StartupError::Config(crate::config::ConfigError::new(
            "WEBHOOK_SECRETS",
            "required (or WEBHOOK_SECRETS_ARN): this function takes signed webhooks",
        ))),
    }
}

/// The webhook secrets from `WEBHOOK_SECRETS`, or fetched from `WEBHOOK_SECRETS_ARN`;
/// `None` when neither is set.
pub(crate) async fn configured_webhook_secrets(
    runtime: &Runtime,
    env: &dyn Env,
) -> Result<Option<Vec<String>>, StartupError> {
    match WebhookSecrets::from_env(env)? {
        Some(WebhookSecrets::Values(v)) => Ok(Some(v)),
        Some(WebhookSecrets::Arn(arn)) => {
            let aws = runtime.aws.as_ref().ok_or_else(|| {
                StartupError::Other("WEBHOOK_SECRETS_ARN: AWS configuration not loaded".into())
            })?;
            let value = crate::adapters::secrets::fetch_secret(
                &aws_sdk_secretsmanager::Client::new(aws),
                &arn,
            )
            .await
            .map_err(|e| StartupError::Other(format!("WEBHOOK_SECRETS_ARN: {e}")))?;
            // The same minimum as WEBHOOK_SECRETS: where a secret is stored does not make a
            // short one harder to guess.
            Ok(Some(webhook_secrets("WEBHOOK_SECRETS_ARN", &value)?))
        }
        None => Ok(None),
    }
}
