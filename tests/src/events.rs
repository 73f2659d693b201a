//! AWS-shaped trigger payloads, modelled on the sample events in aws_lambda_events'
//! fixtures (`example-sqs-event.json`, `example-apigw-v2-request-no-authorizer.json`,
//! `example-eventbridge-schedule.json`), and the CloudEvents the functions read.

use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The queue the SQS events come from.
pub const QUEUE_ARN: &str = "arn:aws:sqs:eu-west-1:123456789012:b2b-invites-events";

/// The function URL host the HTTP events arrive on.
pub const FUNCTION_URL_HOST: &str = "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6.lambda-url.eu-west-1.on.aws";

/// One queue message.
#[derive(Debug, Clone)]
pub struct SqsMessage {
    pub message_id: String,
    pub body: String,
    /// 1 on the first delivery.
    pub receive_count: u32,
}

impl SqsMessage {
    pub fn new(message_id: impl Into<String>, body: impl Into<String>) -> SqsMessage {
        SqsMessage {
            message_id: message_id.into(),
            body: body.into(),
            receive_count: 1,
        }
    }

    /// The same message delivered again.
    pub fn redelivered(mut self) -> SqsMessage {
        self.receive_count += 1;
        self
    }
}

/// An SQS batch of first deliveries: `(messageId, body)` pairs.
pub fn sqs_event(messages: &[(&str, &str)]) -> Value {
    let messages: Vec<SqsMessage> = messages
        .iter()
        .map(|(id, body)| SqsMessage::new(*id, *body))
        .collect();
    sqs_batch(&messages)
}

/// An SQS batch as Lambda's event source mapping delivers it.
pub fn sqs_batch(messages: &[SqsMessage]) -> Value {
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).to_string();
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id,
                "receiptHandle": format!("AQEB{}", uuid::Uuid::new_v4().simple()),
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": m.receive_count.to_string(),
                    "SentTimestamp": now_ms,
                    "SenderId": "AROAIWPX5BD2BHG722MW4:sender",
                    "ApproximateFirstReceiveTimestamp": now_ms,
                },
                "messageAttributes": {},
                "md5OfBody": hex::encode(Md5::digest(m.body.as_bytes())),
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": "eu-west-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// A Lambda function URL request (payload format 2.0). `headers` are sent as given (the
/// function lower-cases names itself); the body is base64-encoded when `base64` is set, as
/// Lambda does for binary content types.
pub fn http_request(method: &str, headers: &[(&str, &str)], body: &[u8], base64: bool) -> Value {
    let now = OffsetDateTime::now_utc();
    let mut header_map = Map::new();
    header_map.insert("host".into(), json!(FUNCTION_URL_HOST));
    header_map.insert("x-forwarded-proto".into(), json!("https"));
    header_map.insert("x-forwarded-port".into(), json!("443"));
    header_map.insert("x-forwarded-for".into(), json!("203.0.113.7"));
    header_map.insert(
        "x-amzn-trace-id".into(),
        json!(format!(
            "Root=1-{:08x}-{}",
            now.unix_timestamp(),
            &uuid::Uuid::new_v4().simple().to_string()[..24]
        )),
    );
    header_map.insert("user-agent".into(), json!("contract-system/1.0"));
    header_map.insert("content-length".into(), json!(body.len().to_string()));
    for (name, value) in headers {
        header_map.insert((*name).to_string(), json!(value));
    }
    let body = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    let url_id = FUNCTION_URL_HOST.split('.').next().unwrap_or_default();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": header_map,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "domainName": FUNCTION_URL_HOST,
            "domainPrefix": url_id,
            "http": {
                "method": method,
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "contract-system/1.0",
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format(&time::macros::format_description!(
                "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
            )).unwrap_or_default(),
            "timeEpoch": now.unix_timestamp_nanos() / 1_000_000,
        },
        "body": body,
        "isBase64Encoded": base64,
    })
}

/// An EventBridge Scheduled Event.
pub fn scheduled_event() -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(OffsetDateTime::UNIX_EPOCH).format(&Rfc3339).unwrap_or_default(),
        "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/b2b-invites-resend-stale"],
        "detail": {},
    })
}

/// A CloudEvents 1.0 body in structured JSON mode.
pub fn cloud_event(event_type: &str, source: &str, id: &str, data: Value) -> String {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": event_type,
        "time": OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(OffsetDateTime::UNIX_EPOCH).format(&Rfc3339).unwrap_or_default(),
        "datacontenttype": "application/json",
        "data": data,
    })
    .to_string()
}

/// A webhook request carrying `body`, signed with `secret` at unix time `t`.
pub fn signed_webhook(body: &str, secret: &str, t: i64) -> Value {
    let signature = b2b::domain::signature::sign(body.as_bytes(), secret, t);
    http_request(
        "POST",
        &[
            (
                "content-type",
                "application/cloudevents+json; charset=utf-8",
            ),
            ("x-signature", &signature),
        ],
        body.as_bytes(),
        false,
    )
}

/// A function URL request carrying `body` with the bearer `token` (a user's Entra token).
pub fn bearer_request(token: &str, body: &str) -> Value {
    let auth = format!("Bearer {token}");
    http_request(
        "POST",
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        body.as_bytes(),
        false,
    )
}
