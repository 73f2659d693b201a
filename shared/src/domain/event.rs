//! Event envelopes (SPEC section 2): CloudEvents 1.0 in structured JSON mode, or EventBridge
//! envelopes, and the typed events they carry.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::fields::{Obj, invalid, kind_of, shorten};
use crate::domain::hr::{self, HrRecordAdded};
use crate::domain::offboard::{self, End};
use crate::domain::partner::{self, PartnerSigned};
use crate::domain::request::{self, InviteRequest};
use crate::error::{Classify, FailureClass};
use crate::ports::ledger::EventKey;

/// The largest body accepted (SQS's own message limit).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// `id` and `source` together key the ledger: bounded so that the key fits every store.
const MAX_KEY_PART: usize = 512;

/// Why an event was refused, naming the JSON path at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct EventError {
    /// JSON path (`data.contacts[1].email`), or `body` for the body as a whole.
    pub field: String,
    pub problem: String,
    pub kind: EventErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EventErrorKind {
    /// A missing field, a wrong type, a value that breaks a rule.
    Invalid,
    /// The body, or a list in it, is over its limit.
    TooLarge,
    /// The envelope's `type` is not one this product handles.
    UnknownType,
    /// The body is not JSON at all.
    NotJson,
}

impl EventErrorKind {
    /// The HTTP status a webhook answers with (SPEC section 4).
    pub fn http_status(self) -> u16 {
        match self {
            EventErrorKind::Invalid | EventErrorKind::UnknownType => 400,
            EventErrorKind::TooLarge => 413,
            EventErrorKind::NotJson => 415,
        }
    }
}

impl EventError {
    pub fn new(kind: EventErrorKind, field: impl Into<String>, problem: impl Into<String>) -> Self {
        EventError {
            field: field.into(),
            problem: problem.into(),
            kind,
        }
    }
}

impl Classify for EventError {
    /// An event that failed validation fails the same way every time.
    fn class(&self) -> FailureClass {
        FailureClass::Permanent
    }
}

/// What every accepted envelope carries, whatever its format.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub key: EventKey,
    pub event_type: String,
    pub time: Option<OffsetDateTime>,
    /// Always a JSON object.
    pub data: Value,
}

/// Parses a queue message or webhook body into its envelope.
///
/// A body with `specversion` is read as CloudEvents; one with `detail-type` as EventBridge.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, EventError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(EventError::new(
            EventErrorKind::TooLarge,
            "body",
            format!(
                "is {} bytes; at most {MAX_BODY_BYTES} (256 KiB) are accepted",
                body.len()
            ),
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        EventError::new(EventErrorKind::NotJson, "body", format!("is not JSON: {e}"))
    })?;
    let Value::Object(_) = &value else {
        return Err(invalid(
            "body",
            format!("expected a JSON object, found {}", kind_of(&value)),
        ));
    };
    let root = Obj::new(&value, "")?;
    if root.has("specversion") {
        cloud_event(&root)
    } else if root.has("detail-type") {
        eventbridge(&root)
    } else {
        Err(invalid(
            "specversion",
            "is required (a CloudEvents 1.0 envelope, or an EventBridge envelope with detail-type)",
        ))
    }
}

fn cloud_event(root: &Obj<'_>) -> Result<Envelope, EventError> {
    let version = root.string("specversion")?;
    if version != "1.0" {
        return Err(invalid(
            "specversion",
            format!("'{}' is not supported; expected \"1.0\"", shorten(version)),
        ));
    }
    if let Some(content_type) = root.opt_string("datacontenttype")?
        && !is_json_media_type(content_type)
    {
        return Err(invalid(
            "datacontenttype",
            format!(
                "'{}' is not JSON; expected application/json",
                shorten(content_type)
            ),
        ));
    }
    if !root.has("data") && root.has("data_base64") {
        return Err(invalid(
            "data",
            "is required as a JSON object (data_base64 is not accepted)",
        ));
    }
    finish(root, "type", "data")
}

fn eventbridge(root: &Obj<'_>) -> Result<Envelope, EventError> {
    finish(root, "detail-type", "detail")
}

fn finish(root: &Obj<'_>, type_key: &str, data_key: &str) -> Result<Envelope, EventError> {
    let id = key_part(root, "id")?;
    let source = key_part(root, "source")?;
    let event_type = root.string(type_key)?;
    let time = root
        .opt_string("time")?
        .map(|t| {
            OffsetDateTime::parse(t, &Rfc3339).map_err(|_| {
                invalid(
                    "time",
                    format!("'{}' is not an RFC 3339 timestamp", shorten(t)),
                )
            })
        })
        .transpose()?;
    let data = root.required(data_key)?;
    Obj::new(data, data_key)?;
    Ok(Envelope {
        key: EventKey::new(String::new(), source, id),
        event_type: event_type.to_string(),
        time,
        data: data.clone(),
    })
}

fn key_part(root: &Obj<'_>, key: &str) -> Result<String, EventError> {
    let value = root.string(key)?;
    if value.chars().count() > MAX_KEY_PART {
        return Err(invalid(
            key,
            format!("is longer than {MAX_KEY_PART} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(key, "has control characters"));
    }
    Ok(value.to_string())
}

/// `application/json`, or any `+json` type, with or without parameters.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence == "text/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The events this product handles.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    PartnerSigned(PartnerSigned),
    HrRecordAdded(HrRecordAdded),
    InviteRequested(InviteRequest),
    PartnerEnded(End),
    HrRecordEnded(End),
}

impl Event {
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::PartnerSigned(_) => partner::EVENT_TYPE,
            Event::HrRecordAdded(_) => hr::EVENT_TYPE,
            Event::InviteRequested(_) => request::EVENT_TYPE,
            Event::PartnerEnded(_) => offboard::PARTNER_ENDED,
            Event::HrRecordEnded(_) => offboard::HR_RECORD_ENDED,
        }
    }
}

/// The typed event an envelope carries, validated in full.
pub fn parse_event(env: &Envelope) -> Result<Event, EventError> {
    match env.event_type.as_str() {
        partner::EVENT_TYPE => PartnerSigned::from_data(&env.data).map(Event::PartnerSigned),
        hr::EVENT_TYPE => HrRecordAdded::from_data(&env.data).map(Event::HrRecordAdded),
        request::EVENT_TYPE => InviteRequest::from_data(&env.data).map(Event::InviteRequested),
        offboard::PARTNER_ENDED => End::partner_ended(&env.data).map(Event::PartnerEnded),
        offboard::HR_RECORD_ENDED => End::hr_record_ended(&env.data).map(Event::HrRecordEnded),
        other => Err(EventError::new(
            EventErrorKind::UnknownType,
            "type",
            format!(
                "'{}' is not handled; expected {}, {}, {}, {} or {}",
                shorten(other),
                partner::EVENT_TYPE,
                hr::EVENT_TYPE,
                request::EVENT_TYPE,
                offboard::PARTNER_ENDED,
                offboard::HR_RECORD_ENDED
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn hr_data() -> Value {
        json!({"employeeId": "E-1042", "email": "jo@contractor.example",
               "manager": "pat@contoso.com"})
    }

    #[test]
    fn reads_cloud_events() {
        let env = parse_envelope(&body(json!({
            "specversion": "1.0", "id": "e-1", "source": "urn:hr", "type": "hr.record.added",
            "time": "2026-05-01T10:00:00Z", "datacontenttype": "application/json; charset=utf-8",
            "data": hr_data(), "extension": {"ignored": true}
        })))
        .unwrap();
        assert_eq!(env.key, EventKey::new("", "urn:hr", "e-1"));
        assert_eq!(env.event_type, "hr.record.added");
        assert_eq!(env.time.unwrap().unix_timestamp(), 1_777_629_600);
        assert!(matches!(
            parse_event(&env).unwrap(),
            Event::HrRecordAdded(_)
        ));
    }

    #[test]
    fn reads_eventbridge() {
        let env = parse_envelope(&body(json!({
            "version": "0", "id": "eb-1", "source": "contracts", "detail-type": "hr.record.added",
            "account": "123456789012", "time": "2026-05-01T10:00:00Z", "region": "eu-west-1",
            "resources": [], "detail": hr_data()
        })))
        .unwrap();
        assert_eq!(env.key.id, "eb-1");
        assert_eq!(env.event_type, "hr.record.added");
        assert_eq!(env.data, hr_data());
    }

    #[test]
    fn refuses_bad_envelopes_naming_the_field() {
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        let e = parse_envelope(&big).unwrap_err();
        assert_eq!(e.kind, EventErrorKind::TooLarge);
        assert_eq!(e.kind.http_status(), 413);
        let e = parse_envelope(b"<xml/>").unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_str()),
            (EventErrorKind::NotJson, "body")
        );
        let e = parse_envelope(b"[1]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "body: expected a JSON object, found an array"
        );
        assert_eq!(e.kind, EventErrorKind::Invalid);
        let e = parse_envelope(b"{}").unwrap_err();
        assert_eq!(e.field, "specversion");

        let ce = |patch: Value| {
            let mut v = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t",
                               "data": {}});
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            parse_envelope(&body(v)).unwrap_err().to_string()
        };
        assert_eq!(
            ce(json!({"specversion": "0.3"})),
            "specversion: '0.3' is not supported; expected \"1.0\""
        );
        assert_eq!(ce(json!({"id": null})), "id: is required");
        assert_eq!(
            ce(json!({"source": 7})),
            "source: expected a string, found a number"
        );
        assert_eq!(ce(json!({"type": ""})), "type: must not be empty");
        assert_eq!(
            ce(json!({"time": "yesterday"})),
            "time: 'yesterday' is not an RFC 3339 timestamp"
        );
        assert_eq!(
            ce(json!({"data": "x"})),
            "data: expected an object, found a string"
        );
        assert_eq!(
            ce(json!({"datacontenttype": "application/xml"})),
            "datacontenttype: 'application/xml' is not JSON; expected application/json"
        );
        assert_eq!(
            ce(json!({"id": "x".repeat(MAX_KEY_PART + 1)})),
            format!("id: is longer than {MAX_KEY_PART} characters")
        );
        let mut v = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t",
                           "data_base64": "e30="});
        assert!(
            parse_envelope(&body(v.clone()))
                .unwrap_err()
                .to_string()
                .contains("data_base64")
        );
        v["datacontenttype"] = json!("application/cloudevents+json");
        v["data"] = json!({});
        assert!(parse_envelope(&body(v)).is_ok());
        let e = parse_envelope(&body(json!({"detail-type": "t", "id": "1", "source": "s"})))
            .unwrap_err();
        assert_eq!(e.to_string(), "detail: is required");
    }

    #[test]
    fn unknown_types_are_named() {
        let env = parse_envelope(&body(json!({
            "specversion": "1.0", "id": "1", "source": "s", "type": "partner.unsigned", "data": {}
        })))
        .unwrap();
        let e = parse_event(&env).unwrap_err();
        assert_eq!(e.kind, EventErrorKind::UnknownType);
        assert_eq!(e.field, "type");
        assert!(e.problem.contains("partner.unsigned"));
    }

    #[test]
    fn data_errors_carry_the_data_path() {
        let env = parse_envelope(&body(json!({
            "specversion": "1.0", "id": "1", "source": "s", "type": "hr.record.added",
            "data": {"employeeId": "E-1", "email": "nobody", "manager": "pat@contoso.com"}
        })))
        .unwrap();
        assert_eq!(
            parse_event(&env).unwrap_err().to_string(),
            "data.email: has no '@'"
        );
    }
}
