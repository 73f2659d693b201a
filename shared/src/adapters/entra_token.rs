//! Entra ID bearer tokens of requesters (SPEC section 2, guest.invite.requested): RS256
//! signatures checked against the signing keys the tenant publishes in its OpenID
//! configuration, then issuer, audience and lifetime.
//!
//! The keys are fetched once and cached. A token naming a key id we do not hold triggers a
//! refresh (Entra rotates keys without notice), but at most once per
//! [`UNKNOWN_KEY_REFRESH`], so a flood of made-up key ids cannot hammer the endpoint.
//! Lifetimes are checked against the product clock (`B2B_NOW`), the same clock webhook
//! signatures are checked against.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::{Classify, FailureClass};

/// Allowed clock difference between Entra ID and us, either way, for `exp` and `nbf`.
pub const LEEWAY_SECONDS: i64 = 60;
/// Fewest seconds between two key refreshes caused by unknown key ids.
pub const UNKNOWN_KEY_REFRESH: Duration = Duration::from_secs(60);
/// Keys older than this are fetched again before use, so that a key the tenant stopped
/// publishing stops being accepted.
pub const KEY_MAX_AGE: Duration = Duration::from_secs(60 * 60);
/// A token longer than this is not one Entra ID issued (guards the decoder).
const MAX_TOKEN_LENGTH: usize = 16 * 1024;
/// How long one metadata or key request may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The only signature algorithm Entra ID uses for access tokens.
const ALGORITHM: &str = "RS256";

/// Why a token was not accepted. Every variant but [`TokenError::Unavailable`] is a 401.
/// Messages never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("bearer token: expired at {expired_at} (unix seconds)")]
    Expired { expired_at: i64 },
    #[error("bearer token: not valid before {not_before} (unix seconds)")]
    NotYetValid { not_before: i64 },
    #[error("bearer token: aud is not this API's audience (API_AUDIENCE)")]
    WrongAudience,
    #[error("bearer token: iss is not this tenant's issuer")]
    WrongIssuer,
    #[error("bearer token: signed by key '{0}', which the tenant does not publish")]
    UnknownKey(String),
    #[error("bearer token: alg '{0}' is not accepted; only RS256")]
    BadAlgorithm(String),
    #[error("bearer token: signature does not verify")]
    BadSignature,
    #[error("bearer token: malformed: {0}")]
    Malformed(String),
    /// The tenant's OpenID configuration or keys could not be fetched: try again later.
    #[error("bearer token: cannot fetch the tenant's signing keys: {0}")]
    Unavailable(String),
}

impl Classify for TokenError {
    fn class(&self) -> FailureClass {
        match self {
            TokenError::Unavailable(_) => FailureClass::Transient,
            _ => FailureClass::Permanent,
        }
    }
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// The user's object id: the requester.
    pub oid: String,
    /// `preferred_username`, for logs and mails only; never trusted for authorisation.
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    oid: Option<String>,
    exp: Option<Value>,
    nbf: Option<Value>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct OpenIdConfiguration {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<Value>,
}

/// What was fetched last.
struct Keys {
    issuer: String,
    by_kid: HashMap<String, DecodingKey>,
    fetched_at: Instant,
}

#[derive(Default)]
struct Cache {
    keys: Option<Keys>,
    /// The last fetch caused by an unknown key id, successful or not.
    last_unknown_refresh: Option<Instant>,
}

/// Validates requester tokens for one tenant and audience.
pub struct EntraTokenValidator {
    http: reqwest::Client,
    metadata_url: String,
    audience: String,
    cache: Mutex<Cache>,
}

impl EntraTokenValidator {
    /// `authority_host` as `AZURE_AUTHORITY_HOST`, `tenant` as `AZURE_TENANT_ID`,
    /// `audience` as `API_AUDIENCE`. `http` should be the shared client (`http::build_client`),
    /// so the same extra roots are trusted.
    pub fn new(
        http: reqwest::Client,
        authority_host: &str,
        tenant: &str,
        audience: &str,
    ) -> EntraTokenValidator {
        EntraTokenValidator {
            http,
            metadata_url: format!(
                "{}/{tenant}/v2.0/.well-known/openid-configuration",
                authority_host.trim_end_matches('/')
            ),
            audience: audience.to_string(),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Validates `token` (without the `Bearer ` prefix) as of `now`.
    pub async fn validate(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<TokenIdentity, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Malformed("empty".into()));
        }
        if token.len() > MAX_TOKEN_LENGTH {
            return Err(TokenError::Malformed(format!(
                "longer than {MAX_TOKEN_LENGTH} characters"
            )));
        }
        // The algorithm is read from the raw header before anything else, so that `none`,
        // HMAC and every other algorithm are refused without a key being looked up.
        let kid = check_header(token)?;
        let (key, issuer) = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&issuer]);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        // Lifetimes are checked below against the product clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                TokenError::BadAlgorithm("(unreadable)".into())
            }
            ErrorKind::MissingRequiredClaim(claim) => {
                TokenError::Malformed(format!("no {claim} claim"))
            }
            ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
                TokenError::UnknownKey(kid.clone())
            }
            other => TokenError::Malformed(describe(other)),
        })?;
        let claims = data.claims;
        let exp = seconds(claims.exp.as_ref(), "exp")?
            .ok_or_else(|| TokenError::Malformed("no exp claim".into()))?;
        let nbf = seconds(claims.nbf.as_ref(), "nbf")?;
        let now = now.unix_timestamp();
        if now > exp.saturating_add(LEEWAY_SECONDS) {
            return Err(TokenError::Expired { expired_at: exp });
        }
        if let Some(nbf) = nbf
            && now < nbf.saturating_sub(LEEWAY_SECONDS)
        {
            return Err(TokenError::NotYetValid { not_before: nbf });
        }
        let oid = claims
            .oid
            .map(|o| o.trim().to_ascii_lowercase())
            .filter(|o| is_guid(o))
            .ok_or_else(|| TokenError::Malformed("no oid claim holding an object id".into()))?;
        Ok(TokenIdentity {
            oid,
            name: claims.name,
        })
    }

    /// The key for `kid` and the issuer it was published with; refreshes the cache when
    /// it is stale, or when `kid` is unknown and the last such refresh is a minute old.
    async fn key(&self, kid: &str) -> Result<(DecodingKey, String), TokenError> {
        let mut cache = self.cache.lock().await;
        let fresh = cache
            .keys
            .as_ref()
            .is_some_and(|k| k.fetched_at.elapsed() < KEY_MAX_AGE);
        if !fresh {
            match self.fetch().await {
                Ok(keys) => cache.keys = Some(keys),
                // Stale keys beat none while the endpoint is down; no keys at all is a 503.
                Err(e) if cache.keys.is_none() => return Err(e),
                Err(e) => tracing::warn!(error = %e, "using cached signing keys"),
            }
        }
        if let Some(found) = lookup(cache.keys.as_ref(), kid) {
            return Ok(found);
        }
        let may_refresh = cache
            .last_unknown_refresh
            .is_none_or(|at| at.elapsed() >= UNKNOWN_KEY_REFRESH);
        if fresh && may_refresh {
            cache.last_unknown_refresh = Some(Instant::now());
            tracing::info!(
                kid,
                "token signed by an unknown key: fetching the signing keys again"
            );
            cache.keys = Some(self.fetch().await?);
            if let Some(found) = lookup(cache.keys.as_ref(), kid) {
                return Ok(found);
            }
        }
        Err(TokenError::UnknownKey(shorten(kid)))
    }

    async fn fetch(&self) -> Result<Keys, TokenError> {
        let config: OpenIdConfiguration = self.get_json(&self.metadata_url).await?;
        let jwks_uri = url::Url::parse(&config.jwks_uri)
            .ok()
            .filter(|u| u.scheme() == "https")
            .ok_or_else(|| {
                TokenError::Unavailable("the OpenID configuration's jwks_uri is not https".into())
            })?;
        let set: KeySet = self.get_json(jwks_uri.as_str()).await?;
        let mut by_kid = HashMap::new();
        for key in set.keys {
            // Keys of other types or uses are skipped, not fatal: the set may hold keys
            // for purposes we do not serve.
            let Ok(jwk) = serde_json::from_value::<Jwk>(key) else {
                continue;
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let signing = jwk
                .common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature);
            if !signing
                || !matches!(
                    jwk.algorithm,
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
                )
            {
                continue;
            }
            if let Ok(key) = DecodingKey::from_jwk(&jwk) {
                by_kid.insert(kid, key);
            }
        }
        if by_kid.is_empty() {
            return Err(TokenError::Unavailable(
                "the tenant publishes no RSA signing key".into(),
            ));
        }
        tracing::info!(keys = by_kid.len(), "signing keys fetched");
        Ok(Keys {
            issuer: config.issuer,
            by_kid,
            fetched_at: Instant::now(),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, TokenError> {
        let response = self
            .http
            .get(url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(format!("{url}: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(TokenError::Unavailable(format!("{url}: HTTP {status}")));
        }
        response
            .json::<T>()
            .await
            .map_err(|e| TokenError::Unavailable(format!("{url}: unreadable answer: {e}")))
    }
}

fn lookup(keys: Option<&Keys>, kid: &str) -> Option<(DecodingKey, String)> {
    let keys = keys?;
    keys.by_kid
        .get(kid)
        .map(|k| (k.clone(), keys.issuer.clone()))
}

/// Reads the token's header: refuses every algorithm but RS256, returns the key id.
fn check_header(token: &str) -> Result<String, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed("header is not base64url".into()))?;
    let header: Value = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Malformed("header is not JSON".into()))?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if alg != ALGORITHM {
        return Err(TokenError::BadAlgorithm(if alg.is_empty() {
            "(none given)".into()
        } else {
            shorten(alg)
        }));
    }
    header
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .map(String::from)
        .ok_or_else(|| TokenError::Malformed("header has no kid".into()))
}

/// A NumericDate claim: integer or fractional seconds.
fn seconds(value: Option<&Value>, claim: &str) -> Result<Option<i64>, TokenError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| TokenError::Malformed(format!("{claim} is not a number"))),
    }
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidToken => "not a JWT".into(),
        ErrorKind::Base64(_) => "not base64url".into(),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => "claims are not a JSON object".into(),
        ErrorKind::InvalidClaimFormat(c) => format!("claim {c} has the wrong type"),
        _ => "cannot be decoded".into(),
    }
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Untrusted header values are quoted at most this long.
fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    let clean: String = s.chars().filter(|c| !c.is_control()).take(MAX).collect();
    if s.chars().count() > MAX {
        format!("{clean}…")
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn header_refuses_every_algorithm_but_rs256() {
        let token = |h: Value| format!("{}.e30.sig", b64(&h));
        for (alg, shown) in [
            (serde_json::json!("none"), "none"),
            (serde_json::json!("HS256"), "HS256"),
            (serde_json::json!("PS256"), "PS256"),
            (serde_json::json!("rs256"), "rs256"),
        ] {
            assert_eq!(
                check_header(&token(serde_json::json!({"alg": alg, "kid": "k"}))),
                Err(TokenError::BadAlgorithm(shown.into()))
            );
        }
        assert_eq!(
            check_header(&token(serde_json::json!({"kid": "k"}))),
            Err(TokenError::BadAlgorithm("(none given)".into()))
        );
        assert_eq!(
            check_header(&token(serde_json::json!({"alg": "RS256", "kid": "k1"}))),
            Ok("k1".into())
        );
        assert!(matches!(
            check_header(&token(serde_json::json!({"alg": "RS256"}))),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(check_header("a.b"), Err(TokenError::Malformed(_))));
        assert!(matches!(
            check_header("!!!.e30.x"),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(seconds(Some(&serde_json::json!(5)), "exp"), Ok(Some(5)));
        assert_eq!(seconds(Some(&serde_json::json!(5.9)), "exp"), Ok(Some(5)));
        assert_eq!(seconds(None, "nbf"), Ok(None));
        assert!(seconds(Some(&serde_json::json!("5")), "exp").is_err());
    }
}
