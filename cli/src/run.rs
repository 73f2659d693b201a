//! `run`: one event through the function that takes it, the outcome as JSON.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use b2b::domain::event::parse_envelope;
use b2b::domain::signature;
use b2b::ports::ledger::EventKey;
use clap::Args;
use serde_json::{Value, json};

use crate::context::{Context, LocalOptions};
use crate::functions::{self, Function};
use crate::progress::Bar;
use crate::{Global, aws};
use std::sync::Arc;

/// Exit status when the work should be sent again later (EX_TEMPFAIL).
pub const RETRY_LATER: u8 = 75;

/// The long help of the command.
pub const LONG_ABOUT: &str = "Feed one event to the function that takes it and print the outcome as JSON.\n\n\
        The input is a CloudEvents 1.0 JSON, an EventBridge envelope, or a whole Lambda \
        payload: an SQS event, a function URL (HTTP API v2) request, an EventBridge Scheduled \
        Event, or resend-stale's direct invocation ({\"dryRun\":..,\"scope\":..}). The \
        function is picked from the event type unless --function names it. Bare events go \
        to queue functions as an SQS batch of one, and to guest-inviter-request as a \
        webhook signed with the first WEBHOOK_SECRETS value (kept in <state>/webhook-secret \
        when unset). Function URL requests are signed afresh the same way, so saved \
        samples keep working.\n\n\
        Exit status: 0 when the function answered (a rejected event is an answer), 75 when \
        the work failed for a transient reason and should be sent again, 1 otherwise.";

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub state: crate::StateDir,
    /// The function to run (default: the one that takes the event's type).
    #[arg(long, value_enum)]
    function: Option<Function>,
    /// How a bare event reaches a function that takes both: as an SQS message or a signed webhook.
    #[arg(long, value_enum)]
    via: Option<Via>,
    /// Leave a function URL request's X-Signature header as it is.
    #[arg(long)]
    keep_signature: bool,
    /// A JSON file, or - for standard input.
    #[arg(value_name = "FILE|-")]
    input: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    Sqs,
    Webhook,
}

/// What the input is.
#[derive(Debug)]
pub enum Input {
    /// A CloudEvents or EventBridge envelope, not yet wrapped.
    Event {
        body: String,
        event_type: String,
    },
    Sqs(Value),
    Http(Value),
    Schedule(Value),
    Direct(Value),
}

impl Input {
    pub fn recognise(payload: Value) -> anyhow::Result<Input> {
        let first_record_source = payload
            .pointer("/Records/0/eventSource")
            .and_then(Value::as_str);
        if first_record_source == Some("aws:sqs") {
            return Ok(Input::Sqs(payload));
        }
        if payload.pointer("/requestContext/http/method").is_some() {
            return Ok(Input::Http(payload));
        }
        let detail_type = payload.get("detail-type").and_then(Value::as_str);
        if detail_type == Some("Scheduled Event")
            && payload.get("source").and_then(Value::as_str) == Some("aws.events")
        {
            return Ok(Input::Schedule(payload));
        }
        if payload.get("specversion").is_some() || detail_type.is_some() {
            let event_type = payload
                .get("type")
                .or_else(|| payload.get("detail-type"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            return Ok(Input::Event {
                body: serde_json::to_string(&payload)?,
                event_type,
            });
        }
        if payload.is_object() {
            return Ok(Input::Direct(payload));
        }
        bail!("the input is not a JSON object")
    }

    /// The function the input is for, when the input says.
    fn function(&self) -> Option<Function> {
        let type_of_body = |body: &[u8]| {
            serde_json::from_slice::<Value>(body).ok().and_then(|v| {
                v.get("type")
                    .or_else(|| v.get("detail-type"))
                    .and_then(Value::as_str)
                    .and_then(Function::for_event_type)
            })
        };
        match self {
            Input::Event { event_type, .. } => Function::for_event_type(event_type),
            Input::Sqs(p) => p
                .pointer("/Records/0/body")
                .and_then(Value::as_str)
                .and_then(|b| type_of_body(b.as_bytes())),
            Input::Http(p) => aws::request_body(p).and_then(|b| type_of_body(&b)),
            Input::Schedule(_) => Some(Function::ResendStale),
            Input::Direct(p) => (p.get("dryRun").is_some() || p.get("scope").is_some())
                .then_some(Function::ResendStale),
        }
    }

    /// The event keys inside the input, to look their records up afterwards.
    fn event_keys(&self) -> Vec<EventKey> {
        let key = |body: &[u8]| parse_envelope(body).ok().map(|e| e.key);
        match self {
            Input::Event { body, .. } => key(body.as_bytes()).into_iter().collect(),
            Input::Sqs(p) => p
                .get("Records")
                .and_then(Value::as_array)
                .map(|records| {
                    records
                        .iter()
                        .filter_map(|r| r.get("body").and_then(Value::as_str))
                        .filter_map(|b| key(b.as_bytes()))
                        .collect()
                })
                .unwrap_or_default(),
            Input::Http(p) => aws::request_body(p)
                .and_then(|b| key(&b))
                .into_iter()
                .collect(),
            Input::Schedule(_) | Input::Direct(_) => Vec::new(),
        }
    }
}

/// Signs a webhook body as a trusted system would, at the time the functions act as of.
pub fn sign(ctx: &Context, body: &[u8]) -> anyhow::Result<String> {
    let secret = ctx.signing_secret().context(
        "WEBHOOK_SECRETS: needed to sign the webhook (with only WEBHOOK_SECRETS_ARN set, send \
         the event through --via sqs or set WEBHOOK_SECRETS too)",
    )?;
    Ok(signature::sign(body, &secret, ctx.now()?.unix_timestamp()))
}

/// The Lambda payload for `input` and the function it goes to.
pub fn payload_for(
    ctx: &Context,
    input: Input,
    function: Function,
    via: Option<Via>,
    keep_signature: bool,
) -> anyhow::Result<(Value, &'static str)> {
    Ok(match input {
        Input::Event { body, .. } => {
            let via = via.unwrap_or(if function.queue_first() {
                Via::Sqs
            } else {
                Via::Webhook
            });
            match via {
                Via::Sqs => (aws::sqs_event(&[body]), "SQS batch"),
                Via::Webhook => {
                    let signature = sign(ctx, body.as_bytes())?;
                    (
                        aws::function_url_request(&body, &[("x-signature", signature)]),
                        "function URL request",
                    )
                }
            }
        }
        Input::Sqs(p) => (p, "SQS batch"),
        Input::Http(mut p) => {
            if !keep_signature
                && ctx.signing_secret().is_some()
                && matches!(
                    function,
                    Function::PartnerSigned
                        | Function::GuestInviterRequest
                        | Function::GuestOffboard
                )
            {
                let body = aws::request_body(&p)
                    .context("the request's isBase64Encoded body is not base64")?;
                aws::set_signature(&mut p, sign(ctx, &body)?);
            }
            (p, "function URL request")
        }
        Input::Schedule(p) => (p, "scheduled event"),
        Input::Direct(p) => (p, "direct invocation"),
    })
}

pub async fn run(global: &Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    let text = if args.input.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(&args.input)
            .with_context(|| format!("reading {}", args.input.display()))?
    };
    let payload: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not JSON", args.input.display()))?;
    let input = Input::recognise(payload)?;
    let function = match (args.function, input.function()) {
        (Some(f), _) | (None, Some(f)) => f,
        (None, None) => bail!(
            "cannot tell which function takes this input: its type is not one of \
             partner.signed, hr.record.added, guest.invite.requested, partner.ended, \
             hr.record.ended; name one with --function"
        ),
    };
    let ctx = Context::open(global, LocalOptions::default()).await?;
    eprintln!("running {} against {}", function.name(), ctx.describe());
    let keys = input.event_keys();
    let (payload, trigger) = payload_for(&ctx, input, function, args.via, args.keep_signature)?;
    let bar = Arc::new(Bar::new(0));
    let built = functions::build_with(&ctx, function, Some(bar.clone())).await?;
    // Recorded before this run: the function answers from the record and does nothing.
    let mut seen_before = Vec::new();
    for key in &keys {
        if let Some(record) = built.ledger.event(&key.scoped(function.name())).await? {
            seen_before.push(record.key.to_string());
        }
    }
    let answer = built.invoke(payload).await;
    bar.finish();
    let (response, code) = match answer {
        Ok(response) => {
            let retry = needs_retry(&response);
            (response, if retry { RETRY_LATER } else { 0 })
        }
        Err(e) => (json!({ "error": format!("{e:#}") }), 1),
    };
    let mut events = Vec::new();
    for key in &keys {
        if let Some(record) = built.ledger.event(&key.scoped(function.name())).await? {
            events.push(serde_json::to_value(record)?);
        }
    }
    drop(built);
    let mut outcome = json!({
        "function": function.name(),
        "trigger": trigger,
        "response": response,
    });
    if !events.is_empty() {
        outcome["events"] = Value::Array(events);
    }
    if !seen_before.is_empty() {
        for key in &seen_before {
            eprintln!(
                "{key}: processed before; nothing was done again (the record is its first run's)"
            );
        }
        outcome["duplicate"] = json!(seen_before);
    }
    if let Some(recorder) = &ctx.recorder {
        outcome["dryRun"] = json!({ "plannedWrites": recorder.writes() });
    }
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    Ok(ExitCode::from(code))
}

/// Whether the function's answer asks for the work to be sent again.
pub fn needs_retry(response: &Value) -> bool {
    let sweep_stopped = response.get("error").is_some_and(|e| !e.is_null())
        && response.get("complete") == Some(&Value::Bool(false));
    let failed_items = response
        .get("batchItemFailures")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    let status = response.get("statusCode").and_then(Value::as_u64);
    sweep_stopped || failed_items || matches!(status, Some(429 | 503))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_inputs() {
        let ce =
            json!({"specversion":"1.0","id":"1","source":"s","type":"hr.record.added","data":{}});
        let input = Input::recognise(ce).unwrap();
        assert_eq!(input.function(), Some(Function::HrRecordAdded));
        let eb = json!({"id":"1","source":"s","detail-type":"partner.signed","detail":{}});
        assert_eq!(
            Input::recognise(eb).unwrap().function(),
            Some(Function::PartnerSigned)
        );
        let sched = aws::scheduled_event(time::OffsetDateTime::now_utc());
        assert!(matches!(
            Input::recognise(sched).unwrap(),
            Input::Schedule(_)
        ));
        let sqs = aws::sqs_event(&[
            json!({"specversion":"1.0","id":"1","source":"s","type":"partner.signed","data":{}})
                .to_string(),
        ]);
        let input = Input::recognise(sqs).unwrap();
        assert_eq!(input.function(), Some(Function::PartnerSigned));
        assert_eq!(input.event_keys().len(), 1);
        let direct = Input::recognise(json!({"dryRun": true})).unwrap();
        assert_eq!(direct.function(), Some(Function::ResendStale));
        assert_eq!(Input::recognise(json!({"x": 1})).unwrap().function(), None);
        assert!(Input::recognise(json!([1])).is_err());
    }

    #[test]
    fn retry_is_asked_by_failed_items_and_throttling() {
        assert!(needs_retry(
            &json!({"batchItemFailures":[{"itemIdentifier":"a"}]})
        ));
        assert!(!needs_retry(&json!({"batchItemFailures":[]})));
        assert!(needs_retry(&json!({"statusCode": 503})));
        assert!(!needs_retry(&json!({"statusCode": 403})));
    }
}
