//! SQS as the soak plays it: real queues on the AWS emulator, each with a dead-letter queue
//! after `maxReceiveCount` receives, worked the way Lambda's event source mapping works them:
//! batches received with the queue's visibility timeout, the function's partial batch
//! response honoured (the failed messages are left to come back, the rest deleted), and
//! nothing touched when the environment died mid-batch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use rand::Rng;
use serde_json::json;
use tokio::time::Instant;

use crate::checks::batch_failures;
use crate::events::{SqsMessage, sqs_batch};
use crate::{FunctionProcess, Output, TestEnv};
use b2b::ports::ledger::EventKey;

/// Receives before SQS moves a message to the dead-letter queue (the template's).
pub const MAX_RECEIVE_COUNT: u32 = 5;

pub struct SoakQueue {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    pub arn: String,
    pub dead_letter_url: String,
}

async fn arn_of(client: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<String> {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("no QueueArn")
}

impl SoakQueue {
    pub async fn create(
        client: &aws_sdk_sqs::Client,
        name: &str,
        visibility: Duration,
    ) -> anyhow::Result<SoakQueue> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let dead_letter_url = client
            .create_queue()
            .queue_name(format!("soak-{name}-dlq-{suffix}"))
            .send()
            .await?
            .queue_url()
            .context("no dead-letter queue URL")?
            .to_string();
        let dead_letter_arn = arn_of(client, &dead_letter_url).await?;
        let url = client
            .create_queue()
            .queue_name(format!("soak-{name}-{suffix}"))
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility.as_secs().to_string(),
            )
            .attributes(
                QueueAttributeName::RedrivePolicy,
                json!({ "deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": MAX_RECEIVE_COUNT.to_string() })
                    .to_string(),
            )
            .send()
            .await?
            .queue_url()
            .context("no queue URL")?
            .to_string();
        let arn = arn_of(client, &url).await?;
        Ok(SoakQueue {
            client: client.clone(),
            url,
            arn,
            dead_letter_url,
        })
    }

    /// Sends `body`; answers its message id.
    pub async fn send(&self, body: &str) -> anyhow::Result<String> {
        Ok(self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await?
            .message_id()
            .context("no message id")?
            .to_string())
    }

    /// Messages visible or in flight.
    pub async fn outstanding(&self) -> anyhow::Result<u64> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?;
        let count = |name| {
            attributes
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(count(QueueAttributeName::ApproximateNumberOfMessages)
            + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }

    /// Every message of the dead-letter queue (message id, body), left in place.
    pub async fn dead_letters(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut found: HashMap<String, String> = HashMap::new();
        let mut quiet = 0;
        while quiet < 3 {
            let received = self
                .client
                .receive_message()
                .queue_url(&self.dead_letter_url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .send()
                .await?;
            let before = found.len();
            for m in received.messages() {
                found.insert(
                    m.message_id().context("no id")?.to_string(),
                    m.body().unwrap_or_default().to_string(),
                );
            }
            quiet = if found.len() == before { quiet + 1 } else { 0 };
        }
        Ok(found.into_iter().collect())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or refused for good): deleted from the queue.
    Acked,
    /// Reported failed: left to come back after its visibility timeout.
    Failed,
    /// Its environment died mid-batch: nothing was said, it comes back.
    Killed,
    /// The soak's own planted fault: reported failed, deleted anyway.
    AckedDespiteFailure,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub message_id: String,
    pub environment: String,
    pub started: time::OffsetDateTime,
    pub ended: time::OffsetDateTime,
    pub receive_count: u32,
    pub outcome: Outcome,
    /// For an acknowledged message: whether its event had a record when it was deleted.
    pub recorded_when_acked: Option<bool>,
}

/// Every delivery of every message, in the order they ended.
#[derive(Default)]
pub struct Journal {
    pub deliveries: Mutex<Vec<Delivery>>,
}

impl Journal {
    fn add(&self, delivery: Delivery) {
        self.deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(delivery);
    }

    pub fn all(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What one environment did, for the figures.
#[derive(Debug, Default)]
pub struct EnvironmentReport {
    pub name: String,
    pub function: &'static str,
    pub batches: usize,
    pub kills: usize,
    /// The highest peak RSS of its processes, in KiB.
    pub peak_rss_kib: u64,
    pub outputs: Vec<Output>,
}

/// One execution environment of a queue function, polled as the event source mapping does.
pub struct Poller<'a> {
    pub env: &'a TestEnv,
    pub function: &'static str,
    pub name: String,
    pub vars: Vec<(String, String)>,
    pub queue: &'a SoakQueue,
    pub batch: i32,
    pub invoke_timeout: Duration,
    /// When to kill the process in the middle of a batch (then start a new one).
    pub kills: Vec<Instant>,
    pub journal: &'a Journal,
    /// Set once every message was sent and the queue has drained.
    pub stop: &'a AtomicBool,
    /// The planted fault: the first failed message is deleted as if it had succeeded.
    pub ack_one_failed: Option<&'a AtomicBool>,
}

impl Poller<'_> {
    async fn spawn(&self) -> anyhow::Result<FunctionProcess> {
        let vars: Vec<(&str, &str)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.env.spawn_with(self.function, &vars).await
    }

    /// Whether the message's event has a record (done or refused) now: under its own
    /// `(source, id)`, or under the queue's ARN and the message id when the body names none.
    async fn recorded(&self, m: &SqsMessage) -> anyhow::Result<bool> {
        let envelope = serde_json::from_str::<serde_json::Value>(&m.body).unwrap_or_default();
        let key = match (envelope["source"].as_str(), envelope["id"].as_str()) {
            (Some(source), Some(id)) => EventKey::new(self.function, source, id),
            _ => EventKey::new(self.function, &self.queue.arn, &m.message_id),
        };
        Ok(self.env.ledger().await?.event(&key).await?.is_some())
    }

    pub async fn run(mut self) -> anyhow::Result<EnvironmentReport> {
        let mut report = EnvironmentReport {
            name: self.name.clone(),
            function: self.function,
            ..EnvironmentReport::default()
        };
        let mut process = self.spawn().await?;
        while !self.stop.load(Ordering::SeqCst) {
            let received = self
                .queue
                .client
                .receive_message()
                .queue_url(&self.queue.url)
                .max_number_of_messages(self.batch)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await?;
            let messages = received.messages();
            if messages.is_empty() {
                continue;
            }
            let mut batch = Vec::new();
            let mut handles = Vec::new();
            for m in messages {
                let mut message = SqsMessage::new(
                    m.message_id().context("no message id")?,
                    m.body().context("no body")?,
                );
                message.receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                batch.push(message);
                handles.push(m.receipt_handle().context("no receipt handle")?.to_string());
            }
            let mut event = sqs_batch(&batch);
            for (record, handle) in event["Records"]
                .as_array_mut()
                .context("records")?
                .iter_mut()
                .zip(&handles)
            {
                record["receiptHandle"] = json!(handle);
                record["eventSourceARN"] = json!(self.queue.arn);
            }
            let started = time::OffsetDateTime::now_utc();
            let kill_now = self.kills.first().is_some_and(|at| Instant::now() >= *at);
            let journal = |outcome: Outcome, m: &SqsMessage| Delivery {
                message_id: m.message_id.clone(),
                environment: self.name.clone(),
                started,
                ended: time::OffsetDateTime::now_utc(),
                receive_count: m.receive_count,
                outcome,
                recorded_when_acked: None,
            };
            report.batches += 1;
            let answer = if kill_now {
                let planned = self.kills.remove(0);
                let pid = process.pid();
                let wait = Duration::from_millis(rand::rng().random_range(5..60));
                let (answer, rss) =
                    tokio::join!(process.invoke(event, self.invoke_timeout), async {
                        tokio::time::sleep(wait).await;
                        let rss = process.peak_rss_kib().unwrap_or(0);
                        let _ = std::process::Command::new("kill")
                            .args(["-9", &pid.to_string()])
                            .status();
                        rss
                    });
                report.peak_rss_kib = report.peak_rss_kib.max(rss);
                report.outputs.push(process.stop().await);
                process = self.spawn().await?;
                if answer.is_err() {
                    report.kills += 1;
                    for m in &batch {
                        self.journal.add(journal(Outcome::Killed, m));
                    }
                    continue;
                }
                // The batch was answered before the kill landed: try again on the next one.
                self.kills.insert(0, planned);
                answer
            } else {
                process.invoke(event, self.invoke_timeout).await
            };
            let failed = match answer {
                Ok(answer) => batch_failures(&answer)?,
                // A failed invocation fails its whole batch.
                Err(_) => batch.iter().map(|m| m.message_id.clone()).collect(),
            };
            for (m, handle) in batch.iter().zip(&handles) {
                let planted = failed.contains(&m.message_id)
                    && self
                        .ack_one_failed
                        .is_some_and(|f| !f.load(Ordering::SeqCst))
                    && !self.recorded(m).await?
                    && self
                        .ack_one_failed
                        .is_some_and(|flag| !flag.swap(true, Ordering::SeqCst));
                let outcome = if planted {
                    Outcome::AckedDespiteFailure
                } else if failed.contains(&m.message_id) {
                    Outcome::Failed
                } else {
                    Outcome::Acked
                };
                let mut delivery = journal(outcome, m);
                if outcome != Outcome::Failed {
                    // Deleting is acknowledging: the event must be on record by now.
                    delivery.recorded_when_acked = Some(self.recorded(m).await?);
                    self.queue
                        .client
                        .delete_message()
                        .queue_url(&self.queue.url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
                self.journal.add(delivery);
            }
        }
        report.peak_rss_kib = report.peak_rss_kib.max(process.peak_rss_kib().unwrap_or(0));
        report.outputs.push(process.stop().await);
        Ok(report)
    }
}
