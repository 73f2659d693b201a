//! Entra ID bearer tokens of requesters (SPEC section 2, guest.invite.requested): RS256
//! signatures checked against the signing keys the tenant publishes in its OpenID
//! configuration, then issuer and audience as Entra pairs them, lifetime, and that the token
//! speaks for a signed-in user.
//!
//! Entra issues two formats with the same keys, chosen by the API's
//! `accessTokenAcceptedVersion`: v2.0 (`ver` 2.0, issuer `.../{tid}/v2.0` from the metadata,
//! `aud` always the API's client id) and v1.0 (`ver` 1.0, issuer
//! `https://sts.windows.net/{tid}/`, `aud` the App ID URI or the client id). Each is
//! accepted only with its own issuer and audiences: a v2.0 token naming the App ID URI is
//! not one Entra issued. App-only tokens (`idtyp` app, `roles`, no `scp`) are refused, as
//! the requester must be a person.
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

use crate::config::ApiAudience;
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
    #[error(
        "bearer token: aud is not this API (v2.0 tokens name API_AUDIENCE, the client id; \
         v1.0 tokens API_AUDIENCE or API_APP_ID_URI)"
    )]
    WrongAudience,
    #[error("bearer token: iss is not this tenant's issuer for a v{0} token")]
    WrongIssuer(&'static str),
    #[error("bearer token: ver '{0}' is not an Entra ID access token version (1.0 or 2.0)")]
    UnknownVersion(String),
    #[error(
        "bearer token: app-only token (idtyp app, no scp); a signed-in user's token is required"
    )]
    AppOnly,
    #[error("bearer token: no scp claim; a signed-in user's delegated token is required")]
    NoScope,
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
    ver: Option<Value>,
    iss: Option<Value>,
    aud: Option<Value>,
    scp: Option<Value>,
    roles: Option<Value>,
    idtyp: Option<Value>,
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

/// The issuer of each token version, as the tenant's metadata names it.
#[derive(Clone)]
struct Issuers {
    v2: String,
    /// `None` when the v2.0 issuer does not name the tenant id: v1.0 tokens are then refused.
    v1: Option<String>,
}

impl Issuers {
    fn from_metadata(v2: String) -> Issuers {
        // The metadata's issuer is `{authority}/{tid}/v2.0` whether the tenant was named by
        // id or by domain; v1.0 tokens name the same tenant id under Entra's fixed STS name.
        let tid = url::Url::parse(&v2).ok().and_then(|url| {
            let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
            match segments.as_slice() {
                [tid, "v2.0"] if is_guid(tid) => Some(tid.to_ascii_lowercase()),
                _ => None,
            }
        });
        if tid.is_none() {
            tracing::warn!(
                issuer = %v2,
                "the v2.0 issuer names no tenant id: v1.0 tokens will be refused"
            );
        }
        Issuers {
            v1: tid.map(|tid| format!("https://sts.windows.net/{tid}/")),
            v2,
        }
    }
}

/// What was fetched last.
struct Keys {
    issuers: Issuers,
    by_kid: HashMap<String, DecodingKey>,
    fetched_at: Instant,
}

#[derive(Default)]
struct Cache {
    keys: Option<Keys>,
    /// The last fetch caused by an unknown key id, successful or not.
    last_unknown_refresh: Option<Instant>,
}

/// Validates requester tokens for one tenant and API.
pub struct EntraTokenValidator {
    http: reqwest::Client,
    metadata_url: String,
    audience: ApiAudience,
    cache: Mutex<Cache>,
}

impl EntraTokenValidator {
    /// `authority_host` as `AZURE_AUTHORITY_HOST`, `tenant` as `AZURE_TENANT_ID`,
    /// `audience` from `API_AUDIENCE` and `API_APP_ID_URI`. `http` should be the shared client
    /// (`http::build_client`), so the same extra roots are trusted.
    pub fn new(
        http: reqwest::Client,
        authority_host: &str,
        tenant: &str,
        audience: &ApiAudience,
    ) -> EntraTokenValidator {
        EntraTokenValidator {
            http,
            metadata_url: format!(
                "{}/{tenant}/v2.0/.well-known/openid-configuration",
                authority_host.trim_end_matches('/')
            ),
            audience: audience.clone(),
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
        let (key, issuers) = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        // Issuer and audience depend on the token's version, and lifetimes on the product
        // clock: all are checked below.
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
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
        self.check_issuer_and_audience(&claims, &issuers)?;
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
        check_delegated(&claims)?;
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

    /// Entra's pairs only: a v2.0 token with the v2.0 issuer and the client id, a v1.0 token
    /// with the v1.0 issuer and the App ID URI or the client id.
    fn check_issuer_and_audience(
        &self,
        claims: &Claims,
        issuers: &Issuers,
    ) -> Result<(), TokenError> {
        let ver = match claims.ver.as_ref() {
            Some(Value::String(v)) => v.as_str(),
            Some(_) => return Err(TokenError::Malformed("ver is not a string".into())),
            None => return Err(TokenError::Malformed("no ver claim".into())),
        };
        let (version, issuer) = match ver {
            "2.0" => ("2.0", Some(issuers.v2.as_str())),
            "1.0" => ("1.0", issuers.v1.as_deref()),
            other => return Err(TokenError::UnknownVersion(shorten(other))),
        };
        let iss = claims.iss.as_ref().and_then(Value::as_str);
        if iss.is_none() || iss != issuer {
            return Err(TokenError::WrongIssuer(version));
        }
        // Entra writes `aud` as one string; a list is not a token it issued.
        match claims.aud.as_ref().and_then(Value::as_str) {
            Some(aud) if self.audience.accepts(aud, version == "1.0") => Ok(()),
            _ => Err(TokenError::WrongAudience),
        }
    }

    /// The key for `kid` and the issuers it was published with; refreshes the cache when
    /// it is stale, or when `kid` is unknown and the last such refresh is a minute old.
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Issuers), TokenError> {
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
            issuers: Issuers::from_metadata(config.issuer),
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

fn lookup(keys: Option<&Keys>, kid: &str) -> Option<(DecodingKey, Issuers)> {
    let keys = keys?;
    keys.by_kid
        .get(kid)
        .map(|k| (k.clone(), keys.issuers.clone()))
}

/// The token must speak for a signed-in user: delegated scopes in `scp`, and no `idtyp`
/// other than `user`. App-only tokens carry `roles` instead of `scp`, and `idtyp` app when
/// the API asked for that optional claim, so either sign names them.
fn check_delegated(claims: &Claims) -> Result<(), TokenError> {
    match claims.idtyp.as_ref() {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "user" => {}
        Some(Value::String(t)) if t == "app" => return Err(TokenError::AppOnly),
        Some(_) => {
            return Err(TokenError::Malformed(
                "idtyp is neither user nor app".into(),
            ));
        }
    }
    match claims.scp.as_ref().and_then(Value::as_str) {
        Some(scp) if !scp.trim().is_empty() => Ok(()),
        _ if claims.roles.as_ref().is_some_and(|r| !r.is_null()) => Err(TokenError::AppOnly),
        _ => Err(TokenError::NoScope),
    }
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

/// A GUID in its 8-4-4-4-12 form, as Entra writes object, tenant and client ids.
pub(crate) fn is_guid(s: &str) -> bool {
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
    fn v1_issuer_names_the_tenant_id_of_the_v2_issuer() {
        let issuers = Issuers::from_metadata(
            "https://login.microsoftonline.com/72F988BF-86F1-41AF-91AB-2D7CD011DB47/v2.0".into(),
        );
        assert_eq!(
            issuers.v1.as_deref(),
            Some("https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/")
        );
        for unusable in [
            "https://login.microsoftonline.com/contoso.com/v2.0",
            "https://login.microsoftonline.com/{tenantid}/v2.0",
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/",
        ] {
            assert_eq!(
                Issuers::from_metadata(unusable.into()).v1,
                None,
                "{unusable}"
            );
        }
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(seconds(Some(&serde_json::json!(5)), "exp"), Ok(Some(5)));
        assert_eq!(seconds(Some(&serde_json::json!(5.9)), "exp"), Ok(Some(5)));
        assert_eq!(seconds(None, "nbf"), Ok(None));
        assert!(seconds(Some(&serde_json::json!("5")), "exp").is_err());
    }
}
