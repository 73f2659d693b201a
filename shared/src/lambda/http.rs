//! Webhook requests (function URL or HTTP API payload 2.0) and their answers: JSON, with
//! RFC 9457 problem details for errors (SPEC section 4).

use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::domain::event::MAX_BODY_BYTES;

/// The parts of a webhook request the product reads.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The raw bytes, base64-decoded when the payload says so: signatures cover these.
    pub body: Vec<u8>,
    pub request_id: Option<String>,
}

impl HttpRequest {
    pub fn from_payload(payload: &Value) -> Result<Self, String> {
        let text = |p: &str| payload.pointer(p).and_then(Value::as_str).map(String::from);
        let method = text("/requestContext/http/method")
            .ok_or("HTTP payload without requestContext.http.method")?;
        let headers = payload
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| {
                        v.as_str().map(|v| (k.to_ascii_lowercase(), v.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let raw = payload
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let body = if payload.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .map_err(|e| format!("isBase64Encoded body is not base64: {e}"))?
        } else {
            raw.as_bytes().to_vec()
        };
        Ok(HttpRequest {
            method,
            path: text("/rawPath").unwrap_or_else(|| "/".into()),
            headers,
            body,
            request_id: text("/requestContext/requestId"),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The checks every JSON webhook makes before reading the body.
    pub fn require_json_post(&self) -> Result<(), Problem> {
        if self.method != "POST" {
            return Err(Problem::new(
                405,
                "Method not allowed",
                "send the event with POST",
            ));
        }
        if self.body.len() > MAX_BODY_BYTES {
            return Err(Problem::new(
                413,
                "Body too large",
                format!(
                    "the body has {} bytes; at most {MAX_BODY_BYTES} are accepted",
                    self.body.len()
                ),
            ));
        }
        let content_type = self.header("content-type").unwrap_or_default();
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media != "application/json"
            && media != "application/cloudevents+json"
            && !media.ends_with("+json")
        {
            return Err(Problem::new(
                415,
                "Unsupported media type",
                format!(
                    "Content-Type must be application/json, not '{}'",
                    if media.is_empty() { "(none)" } else { &media }
                ),
            ));
        }
        Ok(())
    }
}

/// An RFC 9457 problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: u16,
    pub title: String,
    pub detail: String,
    pub retry_after: Option<Duration>,
    /// Extra members, e.g. the offending field.
    pub extra: BTreeMap<String, Value>,
}

impl Problem {
    pub fn new(status: u16, title: impl Into<String>, detail: impl Into<String>) -> Self {
        Problem {
            status,
            title: title.into(),
            detail: detail.into(),
            retry_after: None,
            extra: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn response(&self) -> Value {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        });
        for (k, v) in &self.extra {
            body[k] = v.clone();
        }
        let mut headers = json!({ "content-type": "application/problem+json" });
        if let Some(after) = self.retry_after {
            headers["retry-after"] = json!(after.as_secs().max(1).to_string());
        }
        json!({
            "statusCode": self.status,
            "headers": headers,
            "body": body.to_string(),
            "isBase64Encoded": false,
        })
    }
}

/// A JSON answer.
pub fn json_response(status: u16, body: &Value) -> Value {
    json!({
        "statusCode": status,
        "headers": { "content-type": "application/json" },
        "body": body.to_string(),
        "isBase64Encoded": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(content_type: &str, body: &str, b64: bool) -> Value {
        json!({
            "version": "2.0",
            "rawPath": "/",
            "headers": { "Content-Type": content_type, "X-Signature": "t=1,v1=00" },
            "requestContext": { "http": { "method": "POST" }, "requestId": "r1" },
            "body": if b64 { base64::engine::general_purpose::STANDARD.encode(body) } else { body.to_string() },
            "isBase64Encoded": b64,
        })
    }

    #[test]
    fn reads_function_url_payloads() {
        let r = HttpRequest::from_payload(&request("application/json", "{\"a\":1}", true)).unwrap();
        assert_eq!(r.body, b"{\"a\":1}");
        assert_eq!(r.header("x-signature"), Some("t=1,v1=00"));
        assert!(r.require_json_post().is_ok());
    }

    #[test]
    fn refuses_other_media_types_and_large_bodies() {
        let r = HttpRequest::from_payload(&request("text/plain", "hi", false)).unwrap();
        assert_eq!(r.require_json_post().unwrap_err().status, 415);
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        let r = HttpRequest::from_payload(&request("application/json", &big, false)).unwrap();
        assert_eq!(r.require_json_post().unwrap_err().status, 413);
    }

    #[test]
    fn problems_are_rfc9457() {
        let p = Problem::new(429, "Throttled", "later").retry_after(Duration::from_secs(7));
        let r = p.response();
        assert_eq!(r["statusCode"], 429);
        assert_eq!(r["headers"]["content-type"], "application/problem+json");
        assert_eq!(r["headers"]["retry-after"], "7");
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["status"], 429);
        assert_eq!(body["title"], "Throttled");
    }
}
