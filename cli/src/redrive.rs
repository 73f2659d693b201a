//! `redrive`: dead-lettered messages sent back to the queue they came from, once the cause is
//! fixed (consent restored, a partner's domain allowed, the circuit closed). SQS moves them
//! itself (a message move task); this waits for it and says how many were moved.

use std::process::ExitCode;
use std::time::Duration;

use b2b::adapters::dead_letters::{RedriveError, SqsDeadLetters};
use clap::Args;
use serde_json::json;

use crate::EX_USAGE;

/// The long help of the command.
pub const LONG_ABOUT: &str = "Send the messages of a dead-letter queue back to the queue they came from, \
        with SQS's message move task, and say how many were moved. Give the dead-letter queue's \
        URL, ARN or name (e.g. the stack's PartnerSignedDeadLetterQueue). Uses the AWS \
        credentials and region of the environment. Each event is still processed once: \
        the ledger answers a message whose event was done before as a duplicate. Prints the \
        result as JSON.";

/// How often the task's progress is read.
const POLL: Duration = Duration::from_secs(2);

#[derive(Args, Debug)]
pub struct RedriveArgs {
    /// The dead-letter queue: URL, ARN or name.
    queue: String,
    /// Start the move and return at once, without waiting for SQS to finish it.
    #[arg(long)]
    no_wait: bool,
}

pub async fn run(args: RedriveArgs) -> anyhow::Result<ExitCode> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dead_letters = SqsDeadLetters::new(aws_sdk_sqs::Client::new(&aws));
    let queue = match dead_letters.find(&args.queue).await {
        Ok(q) => q,
        Err(e @ (RedriveError::NoSuchQueue(_) | RedriveError::NotDeadLetters(_))) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EX_USAGE));
        }
        Err(e) => return Err(e.into()),
    };
    let mut result = json!({ "queue": queue.arn, "sources": queue.sources });
    if queue.waiting == 0 {
        eprintln!("{}: no messages waiting; nothing was moved", args.queue);
        result["status"] = json!("EMPTY");
        result["moved"] = json!(0);
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "moving about {} message(s) from {} back to {}",
        queue.waiting,
        args.queue,
        queue.sources.join(", ")
    );
    dead_letters.start_move(&queue).await?;
    let task = loop {
        let task = dead_letters.latest_move(&queue).await?;
        match task {
            Some(t) if args.no_wait || !t.is_running() => break t,
            Some(t) => eprintln!("{}: {} moved so far", t.status, t.moved),
            None if args.no_wait => {
                result["status"] = json!("STARTED");
                println!("{}", serde_json::to_string_pretty(&result)?);
                return Ok(ExitCode::SUCCESS);
            }
            None => {}
        }
        tokio::time::sleep(POLL).await;
    };
    result["status"] = json!(task.status);
    result["moved"] = json!(task.moved);
    if let Some(n) = task.to_move {
        result["toMove"] = json!(n);
    }
    if let Some(reason) = &task.failure {
        result["failure"] = json!(reason);
    }
    println!("{}", serde_json::to_string_pretty(&result)?);
    match task.status.as_str() {
        "COMPLETED" => {
            eprintln!("{} message(s) moved back", task.moved);
            Ok(ExitCode::SUCCESS)
        }
        "RUNNING" => Ok(ExitCode::SUCCESS),
        other => {
            eprintln!(
                "the move ended {other} after {} message(s){}",
                task.moved,
                task.failure
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            Ok(ExitCode::from(crate::run::RETRY_LATER))
        }
    }
}
