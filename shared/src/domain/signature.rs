//! Webhook request signatures (SPEC section 4):
//! `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
//!
//! Several `v1=` values may be sent (a sender in the middle of rotating its secret signs with
//! both), and several secrets may be configured (we rotate ours): any pair that matches
//! admits the request. Unknown keys are ignored, so that a sender may add a newer scheme
//! alongside `v1` without breaking older receivers.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::error::{Classify, FailureClass};

/// How far the signed timestamp may be from our clock, either way.
pub const TOLERANCE_SECONDS: i64 = 300;
/// The name of the header carrying the signature.
pub const HEADER: &str = "X-Signature";

/// A header longer than this is not a signature header (guards the parser).
const MAX_HEADER: usize = 4096;
/// Hex characters in an HMAC-SHA256.
const V1_HEX: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature did not admit the request. Every variant is a 401; none says which
/// secret or value came close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Signature: missing")]
    Missing,
    #[error("X-Signature: malformed: {0}")]
    Malformed(String),
    /// `skew` = our clock minus the signed time, in seconds: positive for an old request
    /// (a replay), negative for one from the future.
    #[error("X-Signature: timestamp is {skew} s from now; at most {TOLERANCE_SECONDS} s accepted")]
    Stale { skew: i64 },
    #[error("X-Signature: no signature matches")]
    Mismatch,
}

impl Classify for SignatureError {
    fn class(&self) -> FailureClass {
        FailureClass::Permanent
    }
}

/// Checks the header against the raw body and every configured secret. With no secret
/// configured nothing can match.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    now: OffsetDateTime,
) -> Result<(), SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    if header.len() > MAX_HEADER {
        return Err(SignatureError::Malformed(format!(
            "longer than {MAX_HEADER} characters"
        )));
    }
    let mut timestamp: Option<&str> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, value) = part
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| SignatureError::Malformed("expected key=value pairs".into()))?;
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed("more than one t=".into()));
                }
                timestamp = Some(value);
            }
            "v1" => {
                if value.len() != V1_HEX {
                    return Err(SignatureError::Malformed(format!(
                        "v1= must be {V1_HEX} hex characters"
                    )));
                }
                let bytes = hex::decode(value)
                    .map_err(|_| SignatureError::Malformed("v1= is not hex".into()))?;
                signatures.push(bytes);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| SignatureError::Malformed("no t=".into()))?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed("no v1=".into()));
    }
    // Ten digits cover every time until the year 2286; more is not a timestamp we sign.
    if timestamp.is_empty()
        || timestamp.len() > 12
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SignatureError::Malformed("t= must be unix seconds".into()));
    }
    let t: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::Malformed("t= must be unix seconds".into()))?;
    let skew = now.unix_timestamp() - t;
    if skew.abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale { skew });
    }
    for secret in secrets {
        let mac = mac_of(timestamp, body, secret);
        // verify_slice compares in constant time.
        if signatures
            .iter()
            .any(|sig| mac.clone().verify_slice(sig).is_ok())
        {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// The `X-Signature` header value for `body` signed at unix time `t`.
pub fn sign(body: &[u8], secret: &str, t: i64) -> String {
    let tag = mac_of(&t.to_string(), body, secret).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

fn mac_of(timestamp: &str, body: &[u8], secret: &str) -> HmacSha256 {
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-05-01 10:00 UTC);
    const SECRET: &str = "a-shared-secret-of-some-length";
    const BODY: &[u8] = br#"{"specversion":"1.0"}"#;

    fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn known_answer() {
        // HMAC-SHA256(key "key", message "1700000000.hello"), computed with Python's hmac.
        assert_eq!(
            sign(b"hello", "key", 1_700_000_000),
            "t=1700000000,v1=4d583a269f4f276a3fa80ff31b5a01879a848096983222a17893d198418939aa"
        );
    }

    #[test]
    fn round_trip_and_rotation() {
        let t = NOW.unix_timestamp();
        let header = sign(BODY, SECRET, t);
        assert_eq!(
            verify(Some(&header), BODY, &secrets(&[SECRET]), NOW),
            Ok(())
        );
        // Our rotation: the old secret is still configured alongside the new.
        assert_eq!(
            verify(
                Some(&header),
                BODY,
                &secrets(&["a-newer-secret-value", SECRET]),
                NOW
            ),
            Ok(())
        );
        // Their rotation: two v1 values, one of them ours.
        let other = sign(BODY, "someone-elses-secret", t);
        let both = format!("{header},{}", other.split_once(',').unwrap().1);
        assert_eq!(verify(Some(&both), BODY, &secrets(&[SECRET]), NOW), Ok(()));
        let both = format!(
            "t={t}, v1={}, v0=legacy, {}",
            other.split_once("v1=").unwrap().1,
            header.split_once(',').unwrap().1
        );
        assert_eq!(verify(Some(&both), BODY, &secrets(&[SECRET]), NOW), Ok(()));
    }

    #[test]
    fn tampering_and_wrong_secrets_fail() {
        let t = NOW.unix_timestamp();
        let header = sign(BODY, SECRET, t);
        assert_eq!(
            verify(
                Some(&header),
                b"{\"specversion\":\"1.1\"}",
                &secrets(&[SECRET]),
                NOW
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                Some(&header),
                BODY,
                &secrets(&["not-the-secret-at-all"]),
                NOW
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), BODY, &[], NOW),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed too.
        let moved = header.replacen(&format!("t={t}"), &format!("t={}", t - 1), 1);
        assert_eq!(
            verify(Some(&moved), BODY, &secrets(&[SECRET]), NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn window_is_300_seconds_either_way() {
        let s = secrets(&[SECRET]);
        let at = |offset: i64| sign(BODY, SECRET, NOW.unix_timestamp() + offset);
        assert_eq!(verify(Some(&at(-300)), BODY, &s, NOW), Ok(()));
        assert_eq!(verify(Some(&at(300)), BODY, &s, NOW), Ok(()));
        assert_eq!(
            verify(Some(&at(-301)), BODY, &s, NOW),
            Err(SignatureError::Stale { skew: 301 })
        );
        assert_eq!(
            verify(Some(&at(301)), BODY, &s, NOW),
            Err(SignatureError::Stale { skew: -301 })
        );
    }

    #[test]
    fn malformed_headers_say_what() {
        let s = secrets(&[SECRET]);
        assert_eq!(verify(None, BODY, &s, NOW), Err(SignatureError::Missing));
        assert_eq!(
            verify(Some("  "), BODY, &s, NOW),
            Err(SignatureError::Missing)
        );
        let sig = "ab".repeat(32);
        for (header, what) in [
            (format!("v1={sig}"), "no t="),
            ("t=1777629600".to_string(), "no v1="),
            (
                format!("t=1777629600,t=1777629600,v1={sig}"),
                "more than one t=",
            ),
            (format!("t=soon,v1={sig}"), "t= must be unix seconds"),
            (format!("t=-5,v1={sig}"), "t= must be unix seconds"),
            (
                "t=1777629600,v1=abc".to_string(),
                "v1= must be 64 hex characters",
            ),
            (
                format!("t=1777629600,v1={}", "zz".repeat(32)),
                "v1= is not hex",
            ),
            ("sha256=abc".to_string(), "no t="),
            ("garbage".to_string(), "expected key=value pairs"),
        ] {
            assert_eq!(
                verify(Some(&header), BODY, &s, NOW),
                Err(SignatureError::Malformed(what.into())),
                "{header}"
            );
        }
        let long = format!("t=1,{}", "x=y,".repeat(2000));
        assert!(matches!(
            verify(Some(&long), BODY, &s, NOW),
            Err(SignatureError::Malformed(_))
        ));
    }
}
