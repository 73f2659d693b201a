//! A function's own work queue on the local AWS emulator: created for one test, drained the
//! way Lambda's event source mapping would take its messages.

use std::time::Duration;

use anyhow::{Context, ensure};
use aws_sdk_sqs::types::MessageSystemAttributeName;

use crate::checks::batch_failures;
use crate::events::{SqsMessage, sqs_batch};
use crate::{FunctionProcess, TestEnv};

/// Receives before a message goes to the dead-letter queue (the template's `MaxReceiveCount`).
const MAX_RECEIVE_COUNT: u32 = 5;

/// SQS on the emulator the environment's DynamoDB ledger runs on.
pub async fn emulator_sqs(env: &TestEnv) -> anyhow::Result<aws_sdk_sqs::Client> {
    let var = |name: &str| {
        env.var(name)
            .map(String::from)
            .with_context(|| format!("{name} is not set (a DynamoDB ledger starts the emulator)"))
    };
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(var("AWS_ENDPOINT_URL")?)
        .region(aws_config::Region::new(var("AWS_REGION")?))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            var("AWS_ACCESS_KEY_ID")?,
            var("AWS_SECRET_ACCESS_KEY")?,
            None,
            None,
            "aws-emulator",
        ))
        .load()
        .await;
    Ok(aws_sdk_sqs::Client::new(&config))
}

pub struct WorkQueue {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
}

impl WorkQueue {
    /// A new queue on the emulator the environment's DynamoDB ledger runs on.
    pub async fn create(env: &TestEnv) -> anyhow::Result<WorkQueue> {
        let client = emulator_sqs(env).await?;
        let url = client
            .create_queue()
            .queue_name(format!("b2b-e2e-work-{}", uuid::Uuid::new_v4().simple()))
            .send()
            .await?
            .queue_url()
            .context("CreateQueue gave no URL")?
            .to_string();
        Ok(WorkQueue { client, url })
    }

    /// Every message waiting, each received and deleted once.
    pub async fn drain(&self) -> anyhow::Result<Vec<SqsMessage>> {
        let mut messages = Vec::new();
        loop {
            let received = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .send()
                .await?;
            let batch = received.messages();
            if batch.is_empty() {
                return Ok(messages);
            }
            for m in batch {
                messages.push(SqsMessage::new(
                    m.message_id().context("message without id")?,
                    m.body().context("message without body")?,
                ));
                self.client
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle().context("no receipt handle")?)
                    .send()
                    .await?;
            }
        }
    }

    pub async fn delete(&self) -> anyhow::Result<()> {
        self.client
            .delete_queue()
            .queue_url(&self.url)
            .send()
            .await?;
        Ok(())
    }

    /// Works the queue with `function` as Lambda's event source mapping does: batches of up to
    /// `batch` messages, the ones the function reports failed back on the queue after a
    /// second, the rest deleted; until the queue has stayed empty for `idle`. Fails when a
    /// message would have gone to the dead-letter queue. Answers the batches invoked.
    pub async fn work(
        &self,
        function: &FunctionProcess,
        batch: i32,
        idle: Duration,
    ) -> anyhow::Result<usize> {
        let mut batches = 0;
        let mut empty_since = tokio::time::Instant::now();
        loop {
            let received = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(batch)
                .visibility_timeout(300)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await?;
            let messages = received.messages();
            if messages.is_empty() {
                if empty_since.elapsed() >= idle {
                    return Ok(batches);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let mut delivered = Vec::with_capacity(messages.len());
            for m in messages {
                let mut message = SqsMessage::new(
                    m.message_id().context("message without id")?,
                    m.body().context("message without body")?,
                );
                message.receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                let handle = m.receipt_handle().context("no receipt handle")?.to_string();
                delivered.push((message, handle));
            }
            let payload: Vec<SqsMessage> = delivered.iter().map(|(m, _)| m.clone()).collect();
            let answer = function
                .invoke(sqs_batch(&payload), Duration::from_secs(900))
                .await?;
            batches += 1;
            let failed = batch_failures(&answer)?;
            for (message, handle) in &delivered {
                if failed.contains(&message.message_id) {
                    ensure!(
                        message.receive_count < MAX_RECEIVE_COUNT,
                        "message {} failed {} times: it would go to the dead-letter queue: {answer}",
                        message.message_id,
                        message.receive_count
                    );
                    self.client
                        .change_message_visibility()
                        .queue_url(&self.url)
                        .receipt_handle(handle)
                        .visibility_timeout(1)
                        .send()
                        .await?;
                } else {
                    self.client
                        .delete_message()
                        .queue_url(&self.url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
            empty_since = tokio::time::Instant::now();
        }
    }
}
