//! Dead-lettered messages sent back to the queue they came from, after the cause is fixed,
//! by SQS's message move task: SQS moves them itself, at its own pace, keeping their bodies.

use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;
use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError;
use aws_sdk_sqs::types::QueueAttributeName;

/// A dead-letter queue and the queues whose failures land in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterQueue {
    pub url: String,
    pub arn: String,
    /// Messages waiting in it (approximate, as SQS counts).
    pub waiting: u64,
    /// The URLs of the queues that send it their failures.
    pub sources: Vec<String>,
}

/// How far a move task got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveTask {
    /// RUNNING, COMPLETED, CANCELLING, CANCELLED or FAILED.
    pub status: String,
    pub moved: u64,
    pub to_move: Option<u64>,
    pub failure: Option<String>,
}

impl MoveTask {
    pub fn is_running(&self) -> bool {
        matches!(self.status.as_str(), "RUNNING" | "CANCELLING")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("no queue '{0}' (give its URL, ARN or name)")]
    NoSuchQueue(String),
    #[error(
        "'{0}' is not the dead-letter queue of any queue: nothing to send its messages back to"
    )]
    NotDeadLetters(String),
    #[error("SQS refused: {0}")]
    Sqs(String),
}

fn sqs<E: std::error::Error + Send + Sync + 'static>(
    e: aws_sdk_sqs::error::SdkError<E>,
) -> RedriveError {
    RedriveError::Sqs(format!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))
}

/// SQS's answer about `queue` as an error: `NoSuchQueue` when `missing` says so.
fn about<E: std::error::Error + Send + Sync + 'static>(
    queue: &str,
    missing: fn(&E) -> bool,
) -> impl FnOnce(aws_sdk_sqs::error::SdkError<E>) -> RedriveError + '_ {
    move |e| match e.as_service_error() {
        Some(s) if missing(s) => RedriveError::NoSuchQueue(queue.to_string()),
        _ => sqs(e),
    }
}

pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
}

impl SqsDeadLetters {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        SqsDeadLetters { client }
    }

    /// The dead-letter queue `queue` names: a URL, an ARN or a name in this account.
    pub async fn find(&self, queue: &str) -> Result<DeadLetterQueue, RedriveError> {
        let url = if queue.starts_with("https://") || queue.starts_with("http://") {
            queue.to_string()
        } else {
            // arn:aws:sqs:<region>:<account>:<name>
            let parts: Vec<&str> = queue.split(':').collect();
            let (name, owner) = match parts.as_slice() {
                ["arn", _, "sqs", _, account, name] => (*name, Some(*account)),
                _ => (queue, None),
            };
            let found = self
                .client
                .get_queue_url()
                .queue_name(name)
                .set_queue_owner_aws_account_id(owner.map(str::to_string))
                .send()
                .await
                .map_err(about(queue, GetQueueUrlError::is_queue_does_not_exist))?;
            found
                .queue_url()
                .ok_or_else(|| RedriveError::NoSuchQueue(queue.to_string()))?
                .to_string()
        };
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(about(
                queue,
                GetQueueAttributesError::is_queue_does_not_exist,
            ))?;
        let attribute = |name| attributes.attributes().and_then(|a| a.get(&name)).cloned();
        let arn = attribute(QueueAttributeName::QueueArn)
            .ok_or_else(|| RedriveError::Sqs(format!("{url}: no QueueArn attribute")))?;
        let waiting = attribute(QueueAttributeName::ApproximateNumberOfMessages)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let sources = self
            .client
            .list_dead_letter_source_queues()
            .queue_url(&url)
            .send()
            .await
            .map_err(sqs)?
            .queue_urls()
            .to_vec();
        if sources.is_empty() {
            return Err(RedriveError::NotDeadLetters(queue.to_string()));
        }
        Ok(DeadLetterQueue {
            url,
            arn,
            waiting,
            sources,
        })
    }

    /// Starts moving every message of `queue` back to the queue it came from.
    pub async fn start_move(&self, queue: &DeadLetterQueue) -> Result<(), RedriveError> {
        self.client
            .start_message_move_task()
            .source_arn(&queue.arn)
            .send()
            .await
            .map_err(sqs)?;
        Ok(())
    }

    /// The newest move task of `queue`, if it ever had one.
    pub async fn latest_move(
        &self,
        queue: &DeadLetterQueue,
    ) -> Result<Option<MoveTask>, RedriveError> {
        let listed = self
            .client
            .list_message_move_tasks()
            .source_arn(&queue.arn)
            .max_results(1)
            .send()
            .await
            .map_err(sqs)?;
        Ok(listed.results().first().map(|t| MoveTask {
            status: t.status().unwrap_or("UNKNOWN").to_string(),
            moved: u64::try_from(t.approximate_number_of_messages_moved()).unwrap_or(0),
            to_move: t
                .approximate_number_of_messages_to_move()
                .and_then(|n| u64::try_from(n).ok()),
            failure: t.failure_reason().map(str::to_string),
        }))
    }
}
