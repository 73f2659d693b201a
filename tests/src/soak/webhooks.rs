//! Self-service requests as their callers send them: over the function URL, with the
//! inviter's token or a trusted system's signature, sent again after a 429 or a 5xx (with the
//! answer's `Retry-After`), and given up after a few tries; that is a webhook's dead letter.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use b2b::ports::ledger::EventKey;
use b2b_dev_tenant::MintToken;
use serde_json::{Value, json};

use super::SoakConfig;
use super::plan::{Auth, PlannedEvent, Route};
use super::sqs::EnvironmentReport;
use crate::checks::http_answer;
use crate::events::{bearer_request, signed_webhook};
use crate::{TestEnv, WEBHOOK_SECRETS};

/// Tries before a caller gives up.
const ATTEMPTS: usize = 6;

/// One request, as its caller saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub event: usize,
    /// The request id (`requestContext.requestId`) of the last attempt.
    pub request_id: String,
    /// (start, end, HTTP status; 0 when the invocation itself failed) of each attempt.
    pub attempts: Vec<(time::OffsetDateTime, time::OffsetDateTime, u16)>,
    /// The answer the caller kept: a success or a refusal; `None` when it gave up.
    pub answered: Option<u16>,
    /// Whether the request was on record when it was answered.
    pub recorded_when_answered: Option<bool>,
}

pub struct Webhooks<'a> {
    env: &'a TestEnv,
    config: &'a SoakConfig,
    events: &'a [PlannedEvent],
    pending: Mutex<VecDeque<usize>>,
    closed: AtomicBool,
    tokens: Mutex<HashMap<String, String>>,
}

fn retryable(status: u16) -> bool {
    matches!(status, 0 | 429 | 500 | 502 | 503 | 504)
}

impl<'a> Webhooks<'a> {
    pub fn new(env: &'a TestEnv, config: &'a SoakConfig, events: &'a [PlannedEvent]) -> Self {
        Webhooks {
            env,
            config,
            events,
            pending: Mutex::new(VecDeque::new()),
            closed: AtomicBool::new(false),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Queues a call of `event`; answers a label for the producer's log.
    pub fn submit(&self, event: usize) -> String {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(event);
        format!("webhook-{event}")
    }

    /// No more calls will be submitted.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    fn request(&self, event: &PlannedEvent, request_id: &str) -> anyhow::Result<Value> {
        let mut request = match &event.auth {
            Some(Auth::Token { inviter_email }) => {
                let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
                let token = match tokens.get(inviter_email) {
                    Some(t) => t.clone(),
                    None => {
                        let t = self.env.control().mint_token(MintToken::new(
                            inviter_email,
                            b2b_dev_tenant::API_CLIENT_ID,
                        ))?;
                        tokens.insert(inviter_email.clone(), t.clone());
                        t
                    }
                };
                bearer_request(&token, &event.body)
            }
            _ => signed_webhook(
                &event.body,
                WEBHOOK_SECRETS[0],
                time::OffsetDateTime::now_utc().unix_timestamp(),
            ),
        };
        request["requestContext"]["requestId"] = json!(request_id);
        Ok(request)
    }

    /// Serves the calls with `environments` processes of guest-inviter-request until closed and
    /// done.
    pub async fn work(&self) -> anyhow::Result<(Vec<Call>, Vec<EnvironmentReport>)> {
        let workers = (0..self.config.environments).map(|n| self.worker(n));
        let mut calls = Vec::new();
        let mut reports = Vec::new();
        for result in futures::future::join_all(workers).await {
            let (c, r) = result?;
            calls.extend(c);
            reports.push(r);
        }
        Ok((calls, reports))
    }

    async fn worker(&self, n: usize) -> anyhow::Result<(Vec<Call>, EnvironmentReport)> {
        let function = Route::GuestInviterRequest.function();
        let process = self.env.spawn(function).await?;
        let mut calls = Vec::new();
        loop {
            let next = self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some(index) = next else {
                if self.closed.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let event = &self.events[index];
            let mut call = Call {
                event: index,
                request_id: String::new(),
                attempts: Vec::new(),
                answered: None,
                recorded_when_answered: None,
            };
            for attempt in 0..ATTEMPTS {
                call.request_id = uuid::Uuid::new_v4().to_string();
                let started = time::OffsetDateTime::now_utc();
                let answer = process
                    .invoke(
                        self.request(event, &call.request_id)?,
                        self.config.invoke_timeout,
                    )
                    .await;
                let (status, wait) = match answer
                    .ok()
                    .and_then(|a| http_answer(&a).ok().map(|h| (a, h)))
                {
                    Some((raw, (status, _, _))) => {
                        let wait = raw
                            .pointer("/headers/retry-after")
                            .and_then(Value::as_str)
                            .and_then(|s| s.parse::<f64>().ok())
                            .map(Duration::from_secs_f64);
                        (status, wait)
                    }
                    None => (0, None),
                };
                call.attempts
                    .push((started, time::OffsetDateTime::now_utc(), status));
                if !retryable(status) {
                    call.answered = Some(status);
                    // Done under the request's `(source, id)`; refused under its request id.
                    let key = match (status, &event.key) {
                        (200, Some((source, id))) => EventKey::new(function, source, id),
                        _ => {
                            EventKey::new(function, format!("webhook:{function}"), &call.request_id)
                        }
                    };
                    call.recorded_when_answered =
                        Some(self.env.ledger().await?.event(&key).await?.is_some());
                    break;
                }
                let backoff = Duration::from_millis(500 << attempt.min(4));
                let wait = wait.unwrap_or(backoff).min(Duration::from_secs(5));
                tokio::time::sleep(wait).await;
            }
            calls.push(call);
        }
        let report = EnvironmentReport {
            name: format!("{function}#{n}"),
            function,
            batches: calls.iter().map(|c| c.attempts.len()).sum(),
            kills: 0,
            peak_rss_kib: process.peak_rss_kib().unwrap_or(0),
            outputs: vec![process.stop().await],
        };
        Ok((calls, report))
    }
}
