//! Which API requester bearer tokens must be issued for (guest-inviter-request): the app
//! registration that exposes it, named by its client id and, optionally, its App ID URI.
//!
//! Two variables rather than one list, because the two names are accepted in different
//! tokens: Entra ID puts the client id in the `aud` of every v2.0 token, and the App ID URI
//! only in v1.0 tokens (requested as `api://.../.default`). A single list would let an
//! App ID URI pass as the audience of a v2.0 token, a combination Entra never issues.

use super::{ConfigError, Env};
use crate::adapters::entra_token::is_guid;

/// The API requesters' tokens are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAudience {
    /// `API_AUDIENCE`: the application (client) id, lowercase.
    pub client_id: String,
    /// `API_APP_ID_URI`: the App ID URI, e.g. `api://b2b-invites`.
    pub app_id_uri: Option<String>,
}

impl ApiAudience {
    /// `None` when `API_AUDIENCE` is unset (bearer tokens are then not accepted at all).
    pub fn from_env(env: &dyn Env) -> Result<Option<Self>, ConfigError> {
        let app_id_uri = env
            .var("API_APP_ID_URI")
            .map(|uri| app_id_uri(uri.trim()))
            .transpose()?;
        let Some(client_id) = env.var("API_AUDIENCE") else {
            if app_id_uri.is_some() {
                return Err(ConfigError::new(
                    "API_APP_ID_URI",
                    "needs API_AUDIENCE, the API's application (client) id",
                ));
            }
            return Ok(None);
        };
        let client_id = client_id.trim().to_ascii_lowercase();
        if !is_guid(&client_id) {
            let hint = if client_id.contains("://") {
                "; an App ID URI such as api://b2b-invites goes in API_APP_ID_URI"
            } else {
                ""
            };
            return Err(ConfigError::new(
                "API_AUDIENCE",
                format!(
                    "must be the API's application (client) id, a GUID: the aud of v2.0 tokens{hint}"
                ),
            ));
        }
        Ok(Some(ApiAudience {
            client_id,
            app_id_uri,
        }))
    }

    /// Whether `aud` names this API in a token of that version.
    pub fn accepts(&self, aud: &str, v1: bool) -> bool {
        aud.eq_ignore_ascii_case(&self.client_id)
            || (v1
                && self
                    .app_id_uri
                    .as_deref()
                    .is_some_and(|uri| aud.eq_ignore_ascii_case(uri)))
    }
}

fn app_id_uri(value: &str) -> Result<String, ConfigError> {
    let bad = |problem: &str| ConfigError::new("API_APP_ID_URI", problem.to_string());
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) || value.contains(',') {
        return Err(bad("must be one App ID URI, without spaces or commas"));
    }
    let url = url::Url::parse(value)
        .map_err(|_| bad("must be an App ID URI such as api://b2b-invites"))?;
    if !matches!(url.scheme(), "api" | "https") {
        return Err(bad(
            "must be an App ID URI such as api://b2b-invites (scheme api or https)",
        ));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "6a1f3e52-9c4d-4b8e-a7f0-2d5b8c9e1f34";

    fn load(pairs: &[(&str, &str)]) -> Result<Option<ApiAudience>, ConfigError> {
        ApiAudience::from_env(&crate::config::test_env(pairs))
    }

    #[test]
    fn client_id_and_optional_app_id_uri() {
        assert_eq!(load(&[]), Ok(None));
        let upper = CLIENT.to_ascii_uppercase();
        let a = load(&[("API_AUDIENCE", upper.as_str())]).unwrap().unwrap();
        assert_eq!(a.client_id, CLIENT);
        assert_eq!(a.app_id_uri, None);
        let a = load(&[
            ("API_AUDIENCE", CLIENT),
            ("API_APP_ID_URI", "api://b2b-invites"),
        ])
        .unwrap()
        .unwrap();
        assert!(a.accepts(CLIENT, false) && a.accepts(CLIENT, true));
        assert!(a.accepts("api://b2b-invites", true));
        assert!(!a.accepts("api://b2b-invites", false));
        assert!(!a.accepts("api://other", true));
    }

    #[test]
    fn an_app_id_uri_as_api_audience_fails_naming_the_variable() {
        let e = load(&[("API_AUDIENCE", "api://b2b-invites")]).unwrap_err();
        assert_eq!(e.variable, "API_AUDIENCE");
        assert!(e.to_string().contains("API_APP_ID_URI"), "{e}");
        assert!(!e.to_string().contains('\n'));
        let e = load(&[("API_AUDIENCE", "b2b")]).unwrap_err();
        assert_eq!(e.variable, "API_AUDIENCE");
        for uri in ["not a uri", "b2b-invites", "ftp://x", "api://a,api://b"] {
            let e = load(&[("API_AUDIENCE", CLIENT), ("API_APP_ID_URI", uri)]).unwrap_err();
            assert_eq!(e.variable, "API_APP_ID_URI", "{uri}");
        }
        let e = load(&[("API_APP_ID_URI", "api://b2b-invites")]).unwrap_err();
        assert_eq!(e.variable, "API_APP_ID_URI");
    }
}
