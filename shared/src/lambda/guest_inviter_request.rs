//! guest-inviter-request: partner self-service invitations. HTTP requests (function URL or
//! HTTP API payload 2.0) authenticated by an Entra ID bearer token or a webhook signature,
//! and SQS batches of the parts it queued itself (SPEC sections 1, 2, 4, 5).

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::Instrument;

use super::InvocationError;
use super::event_function::{abort_problem, configured_webhook_secrets, rejection_problem};
use super::http::{HttpRequest, Problem, json_response};
use super::serve::Handler;
use super::sqs::{hold_while_circuit_open, process_batch};
use super::trigger::Trigger;
use crate::adapters::entra_token::{EntraTokenValidator, TokenError};
use crate::adapters::http::build_client;
use crate::app::Abort;
use crate::app::circuit::CircuitGate;
use crate::app::counting;
use crate::app::events::event_span;
use crate::app::runtime::{Runtime, StartupError};
use crate::app::self_service::{Answer, Caller, SelfService};
use crate::config::{ApiAudience, AzureConfig, ConfigError, Env};
use crate::domain::event::parse_envelope;
use crate::domain::signature;
use crate::error::Classify;
use crate::ports::ledger::{EventRecord, EventStatus};

pub const FUNCTION: &str = "guest-inviter-request";

pub struct GuestInviterRequest {
    pub runtime: Runtime,
    /// Present when `API_AUDIENCE` is set.
    tokens: Option<EntraTokenValidator>,
    /// Present when `WEBHOOK_SECRETS` or `WEBHOOK_SECRETS_ARN` is set.
    webhook_secrets: Option<Vec<String>>,
}

impl GuestInviterRequest {
    pub async fn from_env(env: &dyn Env) -> Result<Self, StartupError> {
        let runtime = Runtime::from_env(FUNCTION, env).await?;
        let azure = AzureConfig::require(env)?;
        let tokens = match ApiAudience::from_env(env)? {
            Some(audience) => {
                let http = build_client(azure.extra_ca_certs.as_deref())
                    .map_err(|e| StartupError::Other(e.to_string()))?;
                Some(EntraTokenValidator::new(
                    http,
                    &azure.authority_host,
                    &azure.tenant_id,
                    &audience,
                ))
            }
            None => None,
        };
        let webhook_secrets = configured_webhook_secrets(&runtime, env).await?;
        if tokens.is_none() && webhook_secrets.is_none() {
            return Err(ConfigError::new(
                "API_AUDIENCE",
                "required (or WEBHOOK_SECRETS / WEBHOOK_SECRETS_ARN): every request must be authenticated",
            )
            .into());
        }
        Ok(GuestInviterRequest {
            runtime,
            tokens,
            webhook_secrets,
        })
    }

    fn service<'a>(&'a self, gate: &'a CircuitGate) -> SelfService<'a> {
        SelfService {
            runtime: &self.runtime,
            gate,
        }
    }

    /// Who sent the request, or the 401 (503 when the signing keys cannot be fetched).
    async fn authenticate(&self, request: &HttpRequest) -> Result<Caller, Value> {
        let now = self.runtime.settings.clock.now();
        if let Some(authorization) = request.header("authorization") {
            let Some(tokens) = &self.tokens else {
                return Err(unauthenticated(
                    "Authorization: bearer tokens are not accepted here (API_AUDIENCE is not configured)",
                    None,
                ));
            };
            let token = match authorization.trim().split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
                _ => {
                    return Err(unauthenticated(
                        "Authorization: expected 'Bearer <token>'",
                        Some("invalid_request"),
                    ));
                }
            };
            return match tokens.validate(token, now).await {
                Ok(identity) => Ok(Caller::Token { oid: identity.oid }),
                Err(e @ TokenError::Unavailable(_)) => {
                    tracing::error!(error = %e, "cannot validate bearer tokens");
                    Err(abort_problem(&Abort::transient(e.to_string())).response())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "request refused: bearer token not accepted");
                    Err(unauthenticated(&e.to_string(), Some("invalid_token")))
                }
            };
        }
        let Some(header) = request.header("x-signature") else {
            return Err(unauthenticated(
                "Authorization: missing: send the requester's Entra ID bearer token \
                 (or an X-Signature from a trusted system)",
                None,
            ));
        };
        let Some(secrets) = &self.webhook_secrets else {
            return Err(unauthenticated(
                "X-Signature: signed requests are not accepted here (WEBHOOK_SECRETS is not configured)",
                None,
            ));
        };
        match signature::verify(Some(header), &request.body, secrets, now) {
            Ok(()) => Ok(Caller::System),
            Err(e) => {
                tracing::warn!(error = %e, "request refused: bad signature");
                Err(unauthenticated(&e.to_string(), None))
            }
        }
    }

    async fn http(&self, request: HttpRequest, deadline: Instant) -> Value {
        // Authentication first: an unauthenticated caller learns nothing about the body
        // and can write nothing to the ledger.
        let caller = match self.authenticate(&request).await {
            Ok(c) => c,
            Err(answer) => return answer,
        };
        if let Err(problem) = request.require_json_post() {
            return problem.response();
        }
        let fallback = crate::ports::ledger::EventKey::new(
            FUNCTION,
            format!("webhook:{FUNCTION}"),
            request
                .request_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        );
        let gate = CircuitGate::reporting(self.runtime.metrics.clone());
        let envelope = parse_envelope(&request.body).ok();
        let span = event_span(envelope.as_ref(), &fallback);
        let result = self
            .service(&gate)
            .submit(&caller, &request.body, fallback, deadline)
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        self.runtime
            .metrics
            .publish(FUNCTION, &counting::of_answer(&result));
        match result {
            Ok(answer) => answer_response(answer),
            Err(abort) => {
                abort.report_outage(FUNCTION);
                tracing::warn!(class = ?abort.class(), error = %abort, "self-service request stopped; the caller may retry");
                abort_problem(&abort).response()
            }
        }
    }
}

fn answer_response(answer: Answer) -> Value {
    match answer {
        Answer::Done(record) => done(&record, "processed"),
        Answer::Accepted {
            record,
            request_id,
            parts,
        } => accepted(&record, &request_id, Some(parts), "accepted"),
        Answer::Duplicate(record) => match record.status {
            EventStatus::Accepted => {
                let rid = crate::app::self_service::request_id(&record.key);
                accepted(&record, &rid, None, "duplicate")
            }
            _ => done(&record, "duplicate"),
        },
        // Invalid: 400 naming the field (a body that is not JSON included), 413 over a
        // limit; not allowed: 403.
        Answer::Refused {
            record,
            request,
            rejection,
        } => {
            let mut problem = rejection_problem(&rejection).with("record", record.key.to_string());
            if let Some(request) = request {
                problem = problem.with("request", request.to_string());
            }
            problem.response()
        }
        Answer::Conflict(reason) => Problem::new(409, "Conflict", reason).response(),
    }
}

fn done(record: &EventRecord, status: &str) -> Value {
    json_response(
        200,
        &json!({
            "request": record.key.to_string(),
            "status": status,
            "outcomes": record.outcomes,
        }),
    )
}

fn accepted(record: &EventRecord, request_id: &str, parts: Option<usize>, status: &str) -> Value {
    let mut body = json!({
        "request": record.key.to_string(),
        "requestId": request_id,
        "status": status,
        "detail": record.reason,
    });
    if let Some(parts) = parts {
        body["parts"] = json!(parts);
    }
    json_response(202, &body)
}

/// A 401 with the challenge RFC 6750 asks for.
fn unauthenticated(detail: &str, error: Option<&str>) -> Value {
    let mut response = Problem::new(401, "Unauthenticated", detail).response();
    response["headers"]["www-authenticate"] = json!(match error {
        Some(code) => format!("Bearer error=\"{code}\""),
        None => "Bearer".to_string(),
    });
    response
}

#[async_trait]
impl Handler for GuestInviterRequest {
    fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    async fn handle(&self, payload: Value, deadline: Instant) -> Result<Value, InvocationError> {
        match Trigger::recognise(payload)? {
            Trigger::Http(request) => Ok(self.http(request, deadline).await),
            Trigger::Sqs(event) => {
                let gate = CircuitGate::reporting(self.runtime.metrics.clone());
                let service = self.service(&gate);
                let response = process_batch(&event, deadline, |m| {
                    let fallback =
                        crate::ports::ledger::EventKey::new(FUNCTION, m.queue_arn, m.message_id);
                    let service = &service;
                    async move {
                        let envelope = parse_envelope(m.body.as_bytes()).ok();
                        let span = event_span(envelope.as_ref(), &fallback);
                        let result = service
                            .process_part(m.body.as_bytes(), fallback, m.deadline)
                            .instrument(span)
                            .await;
                        self.runtime
                            .metrics
                            .publish(FUNCTION, &counting::of_part(&result));
                        result
                            .map(|_| ())
                            .inspect_err(|abort| abort.report_outage(FUNCTION))
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
            other => Err(other.unsupported(
                FUNCTION,
                "a webhook (function URL or HTTP API) or SQS batches from its own work queue",
            )),
        }
    }
}
