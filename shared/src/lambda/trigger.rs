//! Which trigger sent a payload, told from its shape.

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::Value;

use super::InvocationError;
use super::http::HttpRequest;

pub enum Trigger {
    Sqs(SqsEvent),
    /// A Lambda function URL or an API Gateway HTTP API (payload format 2.0).
    Http(HttpRequest),
    /// An EventBridge Scheduled Event.
    Schedule(Value),
    /// Anything else: a direct invocation.
    Direct(Value),
}

impl Trigger {
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::Sqs(_) => "SQS batch",
            Trigger::Http(_) => "HTTP request",
            Trigger::Schedule(_) => "EventBridge scheduled event",
            Trigger::Direct(_) => "direct invocation",
        }
    }

    pub fn recognise(payload: Value) -> Result<Trigger, InvocationError> {
        if is_sqs(&payload) {
            return serde_json::from_value(payload)
                .map(Trigger::Sqs)
                .map_err(|e| {
                    InvocationError::UnsupportedTrigger(format!("malformed SQS event: {e}"))
                });
        }
        if payload.pointer("/requestContext/http/method").is_some() {
            return HttpRequest::from_payload(&payload)
                .map(Trigger::Http)
                .map_err(InvocationError::UnsupportedTrigger);
        }
        if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
            && payload.get("source").and_then(Value::as_str) == Some("aws.events")
        {
            return Ok(Trigger::Schedule(payload));
        }
        Ok(Trigger::Direct(payload))
    }

    /// The error a function gives for a trigger it does not take.
    pub fn unsupported(&self, function: &str, accepted: &str) -> InvocationError {
        InvocationError::UnsupportedTrigger(format!(
            "{function} does not take a {}: it is triggered by {accepted}",
            self.name()
        ))
    }
}

fn is_sqs(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}
