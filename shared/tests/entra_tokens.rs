//! Requester bearer tokens as Entra ID issues them, against the dev tenant's keys and
//! metadata: v2.0 tokens only for the API's client id and the v2.0 issuer, v1.0 tokens only
//! for the App ID URI (or client id) and the v1.0 issuer, and delegated user tokens only.

use std::collections::HashMap;

use b2b::adapters::entra_token::{EntraTokenValidator, TokenError, TokenIdentity};
use b2b::adapters::http::build_client;
use b2b::config::ApiAudience;
use b2b_dev_tenant::{DevTenant, DevTenantOptions, MintToken, Seed, TokenVersion};
use serde_json::{Value, json};
use tempfile::TempDir;

struct World {
    tenant: DevTenant,
    /// A member of the demo seed: the requester.
    user: String,
    _dir: TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DevTenantOptions::new(dir.path().join("tenant"));
    options.seed = Seed::Demo;
    let tenant = DevTenant::start(options).await.unwrap();
    let user = tenant.control().users()[0].id.clone();
    World {
        tenant,
        user,
        _dir: dir,
    }
}

impl World {
    /// A validator configured as guest-inviter-request would be: `API_AUDIENCE` is the API's
    /// client id, `API_APP_ID_URI` (when given) its App ID URI.
    fn validator(&self, app_id_uri: Option<&str>) -> EntraTokenValidator {
        let mut env = HashMap::from([("API_AUDIENCE".to_string(), self.tenant.api_client_id())]);
        if let Some(uri) = app_id_uri {
            env.insert("API_APP_ID_URI".into(), uri.into());
        }
        let audience = ApiAudience::from_env(&env).unwrap().unwrap();
        let http = build_client(Some(&self.tenant.ca_pem_path())).unwrap();
        EntraTokenValidator::new(
            http,
            &self.tenant.authority_host(),
            &self.tenant.tenant_id(),
            &audience,
        )
    }

    fn mint(&self, request: MintToken) -> String {
        self.tenant.control().mint_token(request).unwrap()
    }

    /// A token of `request` with `claims` replaced (null removes one): a forgery signed
    /// with the tenant's own key, which Entra would never issue.
    fn forge(&self, request: MintToken, claims: Value) -> String {
        self.mint(MintToken {
            extra_claims: serde_json::from_value(claims).unwrap(),
            ..request
        })
    }

    async fn check(
        &self,
        validator: &EntraTokenValidator,
        token: &str,
    ) -> Result<TokenIdentity, TokenError> {
        validator.validate(token, self.tenant.control().now()).await
    }

    fn v2_issuer(&self) -> String {
        format!(
            "{}/{}/v2.0",
            self.tenant.authority_host(),
            self.tenant.tenant_id()
        )
    }

    fn v1_issuer(&self) -> String {
        format!("https://sts.windows.net/{}/", self.tenant.tenant_id())
    }
}

#[tokio::test]
async fn v2_token_for_the_api_client_id_is_accepted() {
    let w = world().await;
    let validator = w.validator(Some(&w.tenant.api_app_id_uri()));
    let token = w.mint(MintToken::new(&w.user, w.tenant.api_client_id()));
    let identity = w.check(&validator, &token).await.unwrap();
    assert_eq!(identity.oid, w.user);
    // Without an App ID URI configured as well.
    let identity = w.check(&w.validator(None), &token).await.unwrap();
    assert_eq!(identity.oid, w.user);
}

#[tokio::test]
async fn v2_token_naming_the_app_id_uri_is_refused() {
    let w = world().await;
    let uri = w.tenant.api_app_id_uri();
    // Entra never issues this: the dev tenant refuses to mint it unforged.
    assert!(
        w.tenant
            .control()
            .mint_token(MintToken::new(&w.user, &uri))
            .is_err()
    );
    let forged = w.forge(MintToken::new(&w.user, ""), json!({ "aud": uri }));
    let validator = w.validator(Some(&uri));
    assert_eq!(
        w.check(&validator, &forged).await,
        Err(TokenError::WrongAudience)
    );
    // A sound v2.0 token for another API is refused the same way.
    let other = w.mint(MintToken::new(
        &w.user,
        "0f9d4c1e-3a2b-4c5d-8e7f-6a5b4c3d2e1f",
    ));
    assert_eq!(
        w.check(&validator, &other).await,
        Err(TokenError::WrongAudience)
    );
}

#[tokio::test]
async fn v1_token_for_the_app_id_uri_with_the_v1_issuer_is_accepted() {
    let w = world().await;
    let uri = w.tenant.api_app_id_uri();
    let validator = w.validator(Some(&uri));
    let token = w.mint(MintToken::v1(&w.user, &uri));
    let identity = w.check(&validator, &token).await.unwrap();
    assert_eq!(identity.oid, w.user);
    // v1.0 tokens requested by client id name it instead.
    let by_client_id = w.mint(MintToken::v1(&w.user, w.tenant.api_client_id()));
    assert_eq!(
        w.check(&validator, &by_client_id).await.map(|i| i.oid),
        Ok(w.user.clone())
    );
    // The App ID URI is accepted only when configured.
    assert_eq!(
        w.check(&w.validator(None), &token).await,
        Err(TokenError::WrongAudience)
    );
    // Another API's App ID URI is not this API.
    let other = w.mint(MintToken::v1(&w.user, "api://another-api"));
    assert_eq!(
        w.check(&validator, &other).await,
        Err(TokenError::WrongAudience)
    );
}

#[tokio::test]
async fn each_version_is_accepted_only_with_its_own_issuer() {
    let w = world().await;
    let uri = w.tenant.api_app_id_uri();
    let validator = w.validator(Some(&uri));
    let v1_with_v2_issuer = w.forge(
        MintToken::v1(&w.user, &uri),
        json!({ "iss": w.v2_issuer() }),
    );
    assert_eq!(
        w.check(&validator, &v1_with_v2_issuer).await,
        Err(TokenError::WrongIssuer("1.0"))
    );
    let v2_with_v1_issuer = w.forge(MintToken::new(&w.user, ""), json!({ "iss": w.v1_issuer() }));
    assert_eq!(
        w.check(&validator, &v2_with_v1_issuer).await,
        Err(TokenError::WrongIssuer("2.0"))
    );
    // A v1.0 issuer naming another tenant.
    let other_tenant = w.forge(
        MintToken::v1(&w.user, &uri),
        json!({ "iss": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/" }),
    );
    assert_eq!(
        w.check(&validator, &other_tenant).await,
        Err(TokenError::WrongIssuer("1.0"))
    );
    // Only the two versions Entra issues.
    let v3 = w.forge(MintToken::new(&w.user, ""), json!({ "ver": "3.0" }));
    assert_eq!(
        w.check(&validator, &v3).await,
        Err(TokenError::UnknownVersion("3.0".into()))
    );
    let unversioned = w.forge(MintToken::new(&w.user, ""), json!({ "ver": null }));
    assert!(matches!(
        w.check(&validator, &unversioned).await,
        Err(TokenError::Malformed(_))
    ));
}

#[tokio::test]
async fn app_only_tokens_are_refused() {
    let w = world().await;
    let validator = w.validator(Some(&w.tenant.api_app_id_uri()));
    for version in [TokenVersion::V2, TokenVersion::V1] {
        let token = w.mint(MintToken::app_only(version, &["Invitations.Request.All"]));
        assert_eq!(
            w.check(&validator, &token).await,
            Err(TokenError::AppOnly),
            "{version:?}"
        );
    }
    // Without the optional idtyp claim, its roles and missing scp still give it away.
    let without_idtyp = w.forge(
        MintToken::app_only(TokenVersion::V2, &["Invitations.Request.All"]),
        json!({ "idtyp": null }),
    );
    assert_eq!(
        w.check(&validator, &without_idtyp).await,
        Err(TokenError::AppOnly)
    );
    // idtyp app wins over a scope slipped in beside it.
    let app_with_scp = w.forge(
        MintToken::app_only(TokenVersion::V2, &[]),
        json!({ "scp": "access_as_user" }),
    );
    assert_eq!(
        w.check(&validator, &app_with_scp).await,
        Err(TokenError::AppOnly)
    );
}

#[tokio::test]
async fn token_without_scp_is_refused() {
    let w = world().await;
    let validator = w.validator(None);
    for scp in [
        Value::Null,
        json!(""),
        json!("  "),
        json!(["access_as_user"]),
    ] {
        let token = w.forge(MintToken::new(&w.user, ""), json!({ "scp": scp }));
        assert_eq!(
            w.check(&validator, &token).await,
            Err(TokenError::NoScope),
            "scp {scp}"
        );
    }
    // oid stays required.
    let no_oid = w.forge(MintToken::new(&w.user, ""), json!({ "oid": null }));
    assert!(matches!(
        w.check(&validator, &no_oid).await,
        Err(TokenError::Malformed(_))
    ));
}
