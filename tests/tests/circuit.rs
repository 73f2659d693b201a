//! The invitation circuit as an operator lives it, through the hr-record-added binary, the
//! CLI and SQS on the AWS emulator: while it is open, queued messages are held back until its
//! next probe instead of burning their receives; `b2b-invites circuit close` reopens
//! invitations and the next delivery invites.

use std::time::Duration;

use anyhow::{Context, ensure};
use aws_sdk_sqs::types::QueueAttributeName;
use b2b_e2e::checks::{batch_failures, invitation_posts};
use b2b_e2e::events::{cloud_event, sqs_event};
use b2b_e2e::queue::WorkQueue;
use b2b_e2e::{LedgerKind, Profile, TestEnv, binary_path};
use serde_json::{Value, json};

/// The message as Lambda's event source mapping hands it over, with its real receipt handle.
fn delivery(queue_arn: &str, m: &aws_sdk_sqs::types::Message) -> anyhow::Result<Value> {
    let mut event = sqs_event(&[(
        m.message_id().context("no message id")?,
        m.body().context("no body")?,
    )]);
    event["Records"][0]["receiptHandle"] = json!(m.receipt_handle().context("no handle")?);
    event["Records"][0]["eventSourceARN"] = json!(queue_arn);
    Ok(event)
}

async fn not_visible(queue: &WorkQueue) -> anyhow::Result<u64> {
    let attributes = queue
        .client
        .get_queue_attributes()
        .queue_url(&queue.url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await?;
    Ok(attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

#[tokio::test]
async fn an_open_circuit_holds_queued_messages_until_its_probe_and_closing_it_reopens_invitations()
-> anyhow::Result<()> {
    let env = TestEnv::builder()
        .ledger(LedgerKind::Dynamo)
        .start()
        .await?;
    let queue = WorkQueue::create(&env).await?;
    let queue_arn = queue
        .client
        .get_queue_attributes()
        .queue_url(&queue.url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("no queue ARN")?;
    let body = cloud_event(
        "hr.record.added",
        "https://hr.contoso.com",
        "hr-E-7",
        json!({ "employeeId": "E-7", "email": "kai@contractor.example", "manager": "alex.wilber@contoso.com" }),
    );
    queue
        .client
        .send_message()
        .queue_url(&queue.url)
        .message_body(&body)
        .send()
        .await?;
    env.ledger()
        .await?
        .open_circuit(
            "Graph refused invitations for the tenant",
            time::OffsetDateTime::now_utc(),
        )
        .await?;

    // Received as the event source mapping would, with a short visibility timeout.
    let received = queue
        .client
        .receive_message()
        .queue_url(&queue.url)
        .visibility_timeout(2)
        .send()
        .await?;
    let message = received
        .messages()
        .first()
        .context("nothing received")?
        .clone();
    let function = env.spawn("hr-record-added").await?;
    let answer = function
        .invoke(delivery(&queue_arn, &message)?, Duration::from_secs(30))
        .await?;
    ensure!(batch_failures(&answer)?.len() == 1, "{answer}");
    ensure!(
        invitation_posts(&env.control()).is_empty(),
        "invited through an open circuit"
    );
    // Past its own visibility timeout the message stays out of sight: held for the probe.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = queue
        .client
        .receive_message()
        .queue_url(&queue.url)
        .send()
        .await?;
    ensure!(
        again.messages().is_empty(),
        "the message came back before the probe"
    );
    ensure!(not_visible(&queue).await? == 1, "the message is not held");
    ensure!(
        function
            .output()
            .text()
            .contains("held back until its next probe"),
        "{}",
        function.output().text()
    );

    // The operator closes the circuit once the block is lifted.
    let output = tokio::process::Command::new(binary_path("b2b-invites", Profile::Debug)?)
        .env_clear()
        .envs(env.vars().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["circuit", "close", "--state"])
        .arg(env.root().join("cli"))
        .output()
        .await?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(!env.ledger().await?.circuit().await?.open, "still open");

    // The next delivery (here brought forward instead of waiting hours) invites.
    queue
        .client
        .change_message_visibility()
        .queue_url(&queue.url)
        .receipt_handle(message.receipt_handle().context("no handle")?)
        .visibility_timeout(0)
        .send()
        .await?;
    let received = queue
        .client
        .receive_message()
        .queue_url(&queue.url)
        .send()
        .await?;
    let message = received
        .messages()
        .first()
        .context("not redelivered")?
        .clone();
    let answer = function
        .invoke(delivery(&queue_arn, &message)?, Duration::from_secs(30))
        .await?;
    ensure!(batch_failures(&answer)?.is_empty(), "{answer}");
    ensure!(invitation_posts(&env.control()).len() == 1, "not invited");
    function.stop().await;
    queue.delete().await?;
    Ok(())
}
