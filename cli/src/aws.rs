//! The AWS-shaped payloads Lambda hands the functions: an SQS batch, a function URL request
//! (payload format 2.0) and an EventBridge Scheduled Event. The runner wraps bare events in
//! these so that the functions take exactly what they take in the cloud.

use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The queue local SQS events claim to come from.
pub const LOCAL_QUEUE_ARN: &str = "arn:aws:sqs:eu-west-1:000000000000:b2b-invites-local";

const LOCAL_URL_HOST: &str = "local.lambda-url.eu-west-1.on.aws";

fn millis(t: OffsetDateTime) -> String {
    (t.unix_timestamp_nanos() / 1_000_000).to_string()
}

/// An SQS batch holding `bodies`, one message each, as the event source mapping delivers it.
pub fn sqs_event(bodies: &[String]) -> Value {
    let now = millis(OffsetDateTime::now_utc());
    let records: Vec<Value> = bodies
        .iter()
        .map(|body| {
            json!({
                "messageId": uuid::Uuid::new_v4().to_string(),
                "receiptHandle": format!("AQEB{}", uuid::Uuid::new_v4().simple()),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now,
                    "SenderId": "b2b-invites-cli",
                    "ApproximateFirstReceiveTimestamp": now,
                },
                "messageAttributes": {},
                "md5OfBody": hex::encode(Md5::digest(body.as_bytes())),
                "eventSource": "aws:sqs",
                "eventSourceARN": LOCAL_QUEUE_ARN,
                "awsRegion": "eu-west-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// A function URL POST carrying `body` with the given extra headers.
pub fn function_url_request(body: &str, headers: &[(&str, String)]) -> Value {
    let now = OffsetDateTime::now_utc();
    let mut map = Map::new();
    map.insert("host".into(), json!(LOCAL_URL_HOST));
    map.insert("content-type".into(), json!("application/cloudevents+json"));
    map.insert("content-length".into(), json!(body.len().to_string()));
    for (name, value) in headers {
        map.insert(name.to_ascii_lowercase(), json!(value));
    }
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": map,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": LOCAL_URL_HOST,
            "domainPrefix": "local",
            "http": {
                "method": "POST",
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "b2b-invites-cli",
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": now.unix_timestamp_nanos() / 1_000_000,
        },
        "body": body,
        "isBase64Encoded": false,
    })
}

/// An EventBridge Scheduled Event at `now`.
pub fn scheduled_event(now: OffsetDateTime) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": now.replace_nanosecond(0).unwrap_or(now).format(&Rfc3339).unwrap_or_default(),
        "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:000000000000:rule/b2b-invites-resend-stale"],
        "detail": {},
    })
}

/// Replaces any `X-Signature` header of a function URL request with `signature`.
pub fn set_signature(request: &mut Value, signature: String) {
    if let Some(headers) = request.get_mut("headers").and_then(Value::as_object_mut) {
        headers.retain(|k, _| !k.eq_ignore_ascii_case("x-signature"));
        headers.insert("x-signature".into(), json!(signature));
    }
}

/// The raw body of a function URL request, decoded when the payload says base64.
pub fn request_body(request: &Value) -> Option<Vec<u8>> {
    use base64::Engine;
    let raw = request
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if request.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        base64::engine::general_purpose::STANDARD.decode(raw).ok()
    } else {
        Some(raw.as_bytes().to_vec())
    }
}
