//! Graph's response shapes and how a failed response is classified.

use serde::Deserialize;
use std::time::Duration;

use crate::ports::directory::DirectoryError;

/// `{"error":{"code","message","innerError":{...}}}`
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// A collection page.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
}

/// `Retry-After` in seconds; Graph has sent decimals (`2.128`).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

/// Classifies a non-success response. `inviting`: the abuse block only shows on invitations.
pub fn classify(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    inviting: bool,
) -> DirectoryError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        ),
    };
    match status {
        429 => DirectoryError::Throttled { retry_after },
        500 | 502 | 503 | 504 => match retry_after {
            // A 503 with Retry-After is Graph asking us to come back later, like a 429.
            Some(_) => DirectoryError::Throttled { retry_after },
            None => DirectoryError::Transient(format!("HTTP {status} {code}")),
        },
        // Graph documents no codes for these 403s; their text is the only signal. A refusal
        // by cross-tenant access settings or collaboration restrictions is about the invitee.
        403 if inviting && refuses_the_invitee(&message) => DirectoryError::Permanent {
            status,
            code: if code.is_empty() {
                "HTTP403".into()
            } else {
                code
            },
            message,
        },
        403 if inviting && is_abuse_block(&message) => DirectoryError::Blocked(message),
        401 => DirectoryError::access_denied(
            if code.is_empty() {
                "HTTP401".into()
            } else {
                code
            },
            message,
        ),
        403 if code == "Authorization_RequestDenied"
            || message
                .to_ascii_lowercase()
                .contains("insufficient privileges") =>
        {
            DirectoryError::access_denied(code, message)
        }
        _ => DirectoryError::Permanent {
            status,
            code: if code.is_empty() {
                format!("HTTP{status}")
            } else {
                code
            },
            message,
        },
    }
}

fn is_abuse_block(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("suspicious activity") || (m.contains("invitation") && m.contains("blocked"))
}

/// Refusals that concern the invitee's organisation, not our tenant as a whole.
fn refuses_the_invitee(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("cross-tenant access")
        || m.contains("collaboration restriction")
        || m.contains("domain of the user's email address is a verified domain")
        || m.contains("blocked-domain")
}

/// Graph's answers to "add what is already there" (reference sections 4-7). Graph documents
/// the 400 but not its text, so both the code and the words are required.
pub fn is_already_present(err: &DirectoryError) -> bool {
    match err {
        DirectoryError::Permanent {
            status: 400 | 409,
            code,
            message,
        } => {
            let m = message.to_ascii_lowercase();
            (code == "Request_BadRequest" || code == "Conflict" || code.starts_with("HTTP"))
                && (m.contains("already exist") || m.contains("conflicting object"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, FailureClass};

    #[test]
    fn classifies() {
        let body = br#"{"error":{"code":"TooManyRequests","message":"Please retry again later."}}"#;
        let e = classify(429, Some(Duration::from_secs(10)), body, false);
        assert_eq!(e.class(), FailureClass::Throttled);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(10)));
        assert_eq!(
            classify(503, None, b"", false).class(),
            FailureClass::Transient
        );
        let blocked = br#"{"error":{"code":"Authorization_RequestDenied","message":"Invitations are blocked for this tenant due to suspicious activity."}}"#;
        assert_eq!(
            classify(403, None, blocked, true).class(),
            FailureClass::Blocked
        );
        // Outside invitations the same words are a refused permission: our outage.
        assert!(matches!(
            classify(403, None, blocked, false),
            DirectoryError::AccessDenied { .. }
        ));
        let cross_tenant = br#"{"error":{"code":"Authorization_RequestDenied","message":"This invitation is blocked by cross-tenant access settings. Admins in both organizations must configure their cross-tenant access settings to allow the invitation."}}"#;
        assert!(matches!(
            classify(403, None, cross_tenant, true),
            DirectoryError::Permanent { status: 403, .. }
        ));
        let denied = br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}"#;
        let e = classify(403, None, denied, true);
        assert!(matches!(e, DirectoryError::AccessDenied { .. }), "{e:?}");
        assert_eq!(e.class(), FailureClass::Transient);
        assert!(e.to_string().contains("admin consent"), "{e}");
        let invite_api = br#"{"error":{"code":"Unauthorized","message":"Insufficient privileges to perform requested operation by the application '00000003-0000-0000-c000-000000000000'. ControllerName=MSGraphInviteAPI, ActionName=CreateInvite"}}"#;
        assert!(matches!(
            classify(403, None, invite_api, true),
            DirectoryError::AccessDenied { .. }
        ));
        assert!(matches!(
            classify(401, None, b"", false),
            DirectoryError::AccessDenied { .. }
        ));
        let dup = br#"{"error":{"code":"Request_BadRequest","message":"One or more added object references already exist for the following modified properties: 'members'."}}"#;
        let e = classify(400, None, dup, false);
        assert!(is_already_present(&e));
        let other =
            br#"{"error":{"code":"Request_BadRequest","message":"Invalid object identifier"}}"#;
        assert!(!is_already_present(&classify(400, None, other, false)));
    }

    #[test]
    fn retry_after_parses_decimals() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "2.128".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(2128)));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
