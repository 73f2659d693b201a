//! A function's own work queue on the local AWS emulator: created for one test, drained the
//! way Lambda's event source mapping would take its messages.

use anyhow::Context;

use crate::TestEnv;
use crate::events::SqsMessage;

pub struct WorkQueue {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
}

impl WorkQueue {
    /// A new queue on the emulator the environment's DynamoDB ledger runs on.
    pub async fn create(env: &TestEnv) -> anyhow::Result<WorkQueue> {
        let var = |name: &str| {
            env.var(name).map(String::from).with_context(|| {
                format!("{name} is not set (a DynamoDB ledger starts the emulator)")
            })
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
        let client = aws_sdk_sqs::Client::new(&config);
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
}
