//! Access tokens for the product's own API (not for Graph), minted on request the way Entra
//! ID issues them: only the combinations of version, audience and issuer Entra produces, so
//! a validator tested against them is tested against reality. A token Entra would never
//! issue is made by overriding claims with [`MintToken::extra_claims`].

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::control::Inner;
use crate::crypto;
use crate::model::UserType;

/// The access token format, which the resource's `accessTokenAcceptedVersion` picks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenVersion {
    /// `ver` 1.0: issuer `https://sts.windows.net/{tid}/`; `aud` is the App ID URI or the
    /// client id, whichever the client asked for.
    #[serde(rename = "1.0")]
    V1,
    /// `ver` 2.0: issuer `{authority}/{tid}/v2.0`; `aud` is always the client id.
    #[default]
    #[serde(rename = "2.0")]
    V2,
}

/// Whose token it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TokenKind {
    /// Delegated: a signed-in user's token, with `scp`.
    #[default]
    User,
    /// App-only (client credentials) for the tenant's app: `idtyp` app, `roles`, no `scp`,
    /// and the app's service principal as `oid` and `sub`.
    App,
}

/// A request for an access token to the product's API.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MintToken {
    /// Id, UPN or mail of the user the token is about; empty for [`TokenKind::App`].
    pub user_id: String,
    /// Empty: the API registration's client id (v2.0) or App ID URI (v1.0). A v2.0 token's
    /// audience must be a client id (a GUID): Entra never puts an App ID URI there.
    pub audience: String,
    pub version: TokenVersion,
    pub kind: TokenKind,
    /// `roles` of an app-only token; Entra leaves the claim out when none was granted.
    pub roles: Vec<String>,
    /// `exp - iat`; negative makes an already expired token.
    #[serde(with = "seconds")]
    pub lifetime: time::Duration,
    /// Offset of `nbf` from `iat`; positive makes a token not yet valid.
    #[serde(with = "seconds")]
    pub not_before: time::Duration,
    /// Applied last, after every check above: a value replaces the claim, `null` removes it.
    /// The escape hatch for forged tokens (signed with the tenant's key all the same).
    pub extra_claims: Map<String, Value>,
}

impl Default for MintToken {
    fn default() -> Self {
        MintToken {
            user_id: String::new(),
            audience: String::new(),
            version: TokenVersion::default(),
            kind: TokenKind::default(),
            roles: Vec::new(),
            lifetime: time::Duration::hours(1),
            not_before: time::Duration::ZERO,
            extra_claims: Map::new(),
        }
    }
}

impl MintToken {
    /// A v2.0 user token; an empty `audience` is the API registration's client id.
    pub fn new(user_id: impl Into<String>, audience: impl Into<String>) -> MintToken {
        MintToken {
            user_id: user_id.into(),
            audience: audience.into(),
            ..MintToken::default()
        }
    }

    /// A v1.0 user token; an empty `audience` is the API registration's App ID URI.
    pub fn v1(user_id: impl Into<String>, audience: impl Into<String>) -> MintToken {
        MintToken {
            version: TokenVersion::V1,
            ..MintToken::new(user_id, audience)
        }
    }

    /// An app-only token of the tenant's app for the API, holding `roles`.
    pub fn app_only(version: TokenVersion, roles: &[&str]) -> MintToken {
        MintToken {
            version,
            kind: TokenKind::App,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..MintToken::default()
        }
    }
}

pub(crate) fn mint(inner: &Inner, req: MintToken) -> anyhow::Result<String> {
    let (tenant_id, app, api, user) = {
        let dir = inner.dir();
        let user = match req.kind {
            TokenKind::User => Some(
                dir.resolve_user(&req.user_id)
                    .cloned()
                    .ok_or_else(|| anyhow!("no user '{}' in the dev tenant", req.user_id))?,
            ),
            TokenKind::App if req.user_id.is_empty() => None,
            TokenKind::App => bail!("an app-only token is about no user: leave userId empty"),
        };
        (
            dir.tenant_id.clone(),
            dir.app.clone(),
            dir.api.clone(),
            user,
        )
    };
    let audience = match (req.audience.trim(), req.version) {
        ("", TokenVersion::V2) => api.client_id.clone(),
        ("", TokenVersion::V1) => api.identifier_uri.clone(),
        (aud, TokenVersion::V2) if aud.len() != 36 || uuid::Uuid::try_parse(aud).is_err() => bail!(
            "Entra ID issues v2.0 access tokens with the resource's client id as aud, never \
             '{aud}' (an App ID URI is the aud of v1.0 tokens only); ask for version 1.0, or \
             forge the claim through extraClaims"
        ),
        (aud, _) => aud.to_string(),
    };
    let now = inner.now().unix_timestamp();
    let v1 = req.version == TokenVersion::V1;
    let issuer = if v1 {
        inner.issuer_v1(&tenant_id)
    } else {
        inner.issuer(&tenant_id)
    };
    let mut claims = json!({
        "aud": audience,
        "iss": issuer,
        "iat": now,
        "nbf": now + req.not_before.whole_seconds(),
        "exp": now + req.lifetime.whole_seconds(),
        "aio": crypto::b64url(&rand::random::<[u8; 24]>()),
        "rh": "0.AAAA.",
        "tid": tenant_id,
        "uti": crypto::b64url(&rand::random::<[u8; 16]>()),
        "ver": if v1 { "1.0" } else { "2.0" },
    });
    let Value::Object(map) = &mut claims else {
        unreachable!("a JSON object literal")
    };
    // v1.0 names the client `appid`/`appidacr`, v2.0 `azp`/`azpacr`.
    let (client, client_acr) = if v1 {
        ("appid", "appidacr")
    } else {
        ("azp", "azpacr")
    };
    map.insert(client.into(), json!(app.client_id));
    match user {
        Some(user) => {
            map.insert(client_acr.into(), json!("0"));
            let username = match user.user_type {
                UserType::Guest => user
                    .mail
                    .clone()
                    .unwrap_or(user.user_principal_name.clone()),
                UserType::Member => user.user_principal_name.clone(),
            };
            use sha2::Digest;
            // Pairwise, as Entra's: the same user has another sub for another audience.
            let sub = crypto::b64url(&sha2::Sha256::digest(
                format!("{}|{audience}", user.id).as_bytes(),
            ));
            map.insert("name".into(), json!(user.display_name));
            map.insert("oid".into(), json!(user.id));
            map.insert("scp".into(), json!(api.scope));
            map.insert("sub".into(), json!(sub));
            map.insert("upn".into(), json!(user.user_principal_name));
            if v1 {
                map.insert("acr".into(), json!("1"));
                map.insert("amr".into(), json!(["pwd"]));
                map.insert("family_name".into(), json!(user.surname));
                map.insert("given_name".into(), json!(user.given_name));
                map.insert("unique_name".into(), json!(username));
            } else {
                map.insert("preferred_username".into(), json!(username));
            }
        }
        None => {
            map.insert(client_acr.into(), json!("1"));
            map.insert("idtyp".into(), json!("app"));
            map.insert("oid".into(), json!(app.service_principal_id));
            map.insert("sub".into(), json!(app.service_principal_id));
            if v1 {
                map.insert("idp".into(), json!(inner.issuer_v1(&tenant_id)));
            }
            if !req.roles.is_empty() {
                map.insert("roles".into(), json!(req.roles));
            }
        }
    }
    for (k, v) in req.extra_claims {
        if v.is_null() {
            map.remove(&k);
        } else {
            map.insert(k, v);
        }
    }
    inner.sign(true, &claims)
}

mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_seconds_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<time::Duration, D::Error> {
        Ok(time::Duration::seconds_f64(f64::deserialize(d)?))
    }
}
