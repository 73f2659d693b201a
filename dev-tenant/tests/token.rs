//! The token endpoint, OpenID discovery and Graph's bearer-token checks.

mod common;

use b2b_dev_tenant::{FederatedKey, MintToken};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn post_form(env: &common::Env, url: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = env.http.post(url).form(form).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

fn assert_aad_error(v: &Value, error: &str, code: u64) {
    assert_eq!(v["error"], error, "{v}");
    assert_eq!(v["error_codes"], json!([code]), "{v}");
    let desc = v["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}: ")), "{desc}");
    for k in ["timestamp", "trace_id", "correlation_id"] {
        assert!(v[k].is_string(), "{k} missing in {v}");
    }
    uuid_like(v["trace_id"].as_str().unwrap());
}

fn uuid_like(s: &str) {
    assert_eq!(s.len(), 36, "{s}");
    assert_eq!(s.matches('-').count(), 4, "{s}");
}

#[tokio::test]
async fn client_secret_grants_a_graph_token() {
    let env = common::start().await;
    let (status, v) = post_form(
        &env,
        &env.token_url(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &env.tenant.client_id()),
            ("client_secret", &env.tenant.client_secret()),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    assert_eq!(v["ext_expires_in"], 3599);
    let token = v["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    let claims: Value = {
        use base64::Engine;
        let part = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert_eq!(claims["appid"], env.tenant.client_id());
    assert_eq!(claims["tid"], env.tenant.tenant_id());
    assert!(
        claims["roles"]
            .as_array()
            .unwrap()
            .contains(&json!("User.Invite.All"))
    );

    // The token works against Graph.
    let (s, _, _) = env.graph(token, Method::GET, "/domains", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn http_basic_client_authentication_is_accepted() {
    let env = common::start().await;
    let r = env
        .http
        .post(env.token_url())
        .basic_auth(env.tenant.client_id(), Some(env.tenant.client_secret()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_requests_get_entra_errors() {
    let env = common::start().await;
    let id = env.tenant.client_id();
    let secret = env.tenant.client_secret();
    let url = env.token_url();
    let graph = "https://graph.microsoft.com/.default";

    let (s, v) = post_form(
        &env,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", "wrong"),
            ("scope", graph),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_aad_error(&v, "invalid_client", 7000215);
    assert!(
        !v.to_string().contains(&secret),
        "the real secret must not leak"
    );

    let (s, v) = post_form(
        &env,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "00000000-1111-2222-3333-444444444444"),
            ("client_secret", &secret),
            ("scope", graph),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_aad_error(&v, "unauthorized_client", 700016);

    let (s, v) = post_form(
        &env,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "https://graph.microsoft.com/User.Read"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_aad_error(&v, "invalid_scope", 70011);

    let (s, v) = post_form(
        &env,
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            (
                "scope",
                "https://graph.microsoft.com/.default https://management.azure.com/.default",
            ),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_aad_error(&v, "invalid_scope", 70011);

    let (s, v) = post_form(
        &env,
        &url,
        &[
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", graph),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_aad_error(&v, "invalid_request", 900144);
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("'grant_type'")
    );

    let other = format!(
        "{}/no-such-tenant.example/oauth2/v2.0/token",
        env.tenant.authority_host()
    );
    let (s, v) = post_form(
        &env,
        &other,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", graph),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_aad_error(&v, "invalid_request", 90002);

    // A verified domain names the tenant as well as its id does.
    let by_name = format!(
        "{}/contoso.com/oauth2/v2.0/token",
        env.tenant.authority_host()
    );
    let (s, _) = post_form(
        &env,
        &by_name,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", graph),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn graph_rejects_missing_foreign_and_expired_tokens() {
    let env = common::start().await;
    let (s, _, v) = env.graph("", Method::GET, "/users", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    common::assert_graph_error(&v, "InvalidAuthenticationToken");

    let (s, _, v) = env.graph("not-a-jwt", Method::GET, "/users", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    common::assert_graph_error(&v, "InvalidAuthenticationToken");

    // A token signed by someone else's key.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = env.tenant.control().signing_key_ids().first().cloned();
    let forged = jsonwebtoken::encode(
        &h,
        &json!({"aud": "https://graph.microsoft.com", "iss": format!("https://sts.windows.net/{}/", env.tenant.tenant_id()), "exp": 4_000_000_000u64}),
        &EncodingKey::from_rsa_pem(key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let (s, _, _) = env.graph(&forged, Method::GET, "/users", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // A tenant-signed token for another audience (the product's API), and one already
    // expired on the dev clock.
    let c = env.tenant.control();
    let member = c.users()[0].id.clone();
    let wrong_aud = c.mint_token(MintToken::new(&member, "")).unwrap();
    let (s, _, v) = env.graph(&wrong_aud, Method::GET, "/users", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["error"]["message"].as_str().unwrap().contains("audience"));
    let expired = c
        .mint_token(MintToken {
            lifetime: time::Duration::seconds(-60),
            // Graph's delegated tokens are v1.0, named by its resource URI.
            ..MintToken::v1(&member, "https://graph.microsoft.com")
        })
        .unwrap();
    let (s, _, _) = env.graph(&expired, Method::GET, "/users", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // A token the endpoint issued survives a dev-clock jump (clients cache by real time).
    let token = env.token().await;
    c.advance(std::time::Duration::from_secs(10 * 86_400));
    let (s, _, _) = env.graph(&token, Method::GET, "/users", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn discovery_publishes_keys_that_verify_minted_tokens_and_rotation() {
    let env = common::start().await;
    let c = env.tenant.control();
    let tid = env.tenant.tenant_id();
    let base = env.tenant.authority_host();
    let cfg: Value = env
        .http
        .get(format!(
            "{base}/{tid}/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["issuer"], format!("{base}/{tid}/v2.0"));
    assert_eq!(
        cfg["token_endpoint"],
        format!("{base}/{tid}/oauth2/v2.0/token")
    );
    let jwks_url = cfg["jwks_uri"].as_str().unwrap().to_string();
    let fetch = || async {
        let v: Value = env
            .http
            .get(&jwks_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(v).unwrap()
    };
    let set = fetch().await;
    assert_eq!(set.keys.len(), 1);

    let user = c.users()[0].clone();
    let token = c
        .mint_token(MintToken {
            extra_claims: serde_json::from_value(json!({"roles": ["Inviter"]})).unwrap(),
            ..MintToken::new(&user.id, "")
        })
        .unwrap();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let jwk = set.find(&kid).unwrap();
    let mut val = jsonwebtoken::Validation::new(Algorithm::RS256);
    val.set_audience(&[env.tenant.api_client_id()]);
    val.set_issuer(&[format!("{base}/{tid}/v2.0")]);
    // The dev clock starts at real time, so the library's own exp check applies.
    let data = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &val,
    )
    .unwrap();
    assert_eq!(data.claims["oid"], user.id);
    assert_eq!(data.claims["tid"], tid);
    assert_eq!(data.claims["roles"], json!(["Inviter"]));
    assert_eq!(data.claims["preferred_username"], user.user_principal_name);

    let new_kid = c.rotate_signing_key().unwrap();
    let set = fetch().await;
    assert_eq!(set.keys.len(), 2);
    assert!(set.find(&new_kid).is_some() && set.find(&kid).is_some());
    let token2 = c.mint_token(MintToken::new(&user.id, "")).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&token2).unwrap().kid.unwrap(),
        new_kid
    );
    c.retire_old_keys();
    let set = fetch().await;
    assert_eq!(set.keys.len(), 1);
    assert!(set.find(&kid).is_none());
}

/// The claims of a minted token, signature unchecked (the test above checks signatures).
fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn minted_tokens_are_only_the_kinds_entra_issues() {
    let env = common::start().await;
    let c = env.tenant.control();
    let tid = env.tenant.tenant_id();
    let v2_issuer = format!("{}/{tid}/v2.0", env.tenant.authority_host());
    let v1_issuer = format!("https://sts.windows.net/{tid}/");
    let api = env.tenant.api_client_id();
    assert_eq!(api, b2b_dev_tenant::API_CLIENT_ID);
    assert_eq!(env.tenant.api_app_id_uri(), "api://b2b-invites");
    let user = c.users()[0].clone();

    // v2.0: always the API's client id, the v2.0 issuer, a delegated scope.
    let v2 = claims_of(&c.mint_token(MintToken::new(&user.id, "")).unwrap());
    assert_eq!(v2["ver"], "2.0");
    assert_eq!(v2["aud"], api);
    assert_eq!(v2["iss"], v2_issuer);
    assert_eq!(v2["scp"], "access_as_user");
    assert_eq!(v2["oid"], user.id);
    assert!(
        v2.get("idtyp").is_none() && v2.get("roles").is_none(),
        "{v2}"
    );

    // v1.0: the App ID URI (or the client id) and the STS issuer.
    let v1 = claims_of(&c.mint_token(MintToken::v1(&user.id, "")).unwrap());
    assert_eq!(v1["ver"], "1.0");
    assert_eq!(v1["aud"], "api://b2b-invites");
    assert_eq!(v1["iss"], v1_issuer);
    assert_eq!(v1["scp"], "access_as_user");
    assert_eq!(v1["appid"], env.tenant.client_id());
    assert!(v1.get("preferred_username").is_none(), "{v1}");
    let v1 = claims_of(&c.mint_token(MintToken::v1(&user.id, &api)).unwrap());
    assert_eq!(v1["aud"], api);

    // App-only: the app's service principal, roles, no scope, no user.
    let sp = c
        .service_principals()
        .into_iter()
        .find(|s| s.app_id == env.tenant.client_id())
        .unwrap();
    for (version, issuer) in [
        (b2b_dev_tenant::TokenVersion::V2, &v2_issuer),
        (b2b_dev_tenant::TokenVersion::V1, &v1_issuer),
    ] {
        let app = claims_of(
            &c.mint_token(MintToken::app_only(version, &["Invitations.Request.All"]))
                .unwrap(),
        );
        assert_eq!(&app["iss"], issuer);
        assert_eq!(app["idtyp"], "app");
        assert_eq!(app["roles"], json!(["Invitations.Request.All"]));
        assert_eq!(app["oid"], sp.id);
        assert_eq!(app["sub"], sp.id);
        for user_claim in ["scp", "name", "upn", "preferred_username", "unique_name"] {
            assert!(app.get(user_claim).is_none(), "{user_claim} in {app}");
        }
    }

    // Combinations Entra never issues are refused...
    for audience in ["api://b2b-invites", "https://graph.microsoft.com", "b2b"] {
        let e = c
            .mint_token(MintToken::new(&user.id, audience))
            .unwrap_err();
        assert!(e.to_string().contains("v2.0"), "{audience}: {e}");
    }
    let e = c
        .mint_token(MintToken {
            user_id: user.id.clone(),
            ..MintToken::app_only(b2b_dev_tenant::TokenVersion::V2, &[])
        })
        .unwrap_err();
    assert!(e.to_string().contains("app-only"), "{e}");
    // ...unless forged on purpose: extraClaims replace claims, null removes one.
    let forged = claims_of(
        &c.mint_token(MintToken {
            extra_claims: serde_json::from_value(json!({"aud": "api://b2b-invites", "scp": null}))
                .unwrap(),
            ..MintToken::new(&user.id, "")
        })
        .unwrap(),
    );
    assert_eq!(forged["aud"], "api://b2b-invites");
    assert_eq!(forged["ver"], "2.0");
    assert!(forged.get("scp").is_none(), "{forged}");

    // The same rules through the control route.
    let base = env.tenant.authority_host();
    let mint = |body: Value| {
        let http = env.http.clone();
        let url = format!("{base}/_dev/tokens");
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = mint(json!({"userId": user.id, "version": "1.0"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(claims_of(v["token"].as_str().unwrap())["iss"], v1_issuer);
    let (status, v) = mint(json!({"kind": "app", "roles": ["Invitations.Request.All"]})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(claims_of(v["token"].as_str().unwrap())["idtyp"], "app");
    let (status, v) = mint(json!({"userId": user.id, "audience": "api://b2b-invites"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let info: Value = env
        .http
        .get(format!("{base}/_dev/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["apiClientId"], api);
    assert_eq!(info["apiAppIdUri"], "api://b2b-invites");
}

fn assertion(header: Header, claims: &Value, key_pem: &str) -> String {
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test]
async fn certificate_and_federated_assertions() {
    use sha2::Digest;
    let env = common::start().await;
    let c = env.tenant.control();
    let id = env.tenant.client_id();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["b2b-invites".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    c.add_client_certificate(&cert.pem()).unwrap();
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let mut h = Header::new(Algorithm::PS256);
    h.x5t_s256 = Some(b64(&sha2::Sha256::digest(cert.der())));
    let claims = json!({"aud": env.token_url(), "iss": id, "sub": id, "jti": "1", "nbf": now(), "exp": now() + 600});
    let form = |a: String| {
        vec![
            ("grant_type".to_string(), "client_credentials".to_string()),
            ("client_id".into(), id.clone()),
            (
                "scope".into(),
                "https://graph.microsoft.com/.default".into(),
            ),
            (
                "client_assertion_type".into(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ),
            ("client_assertion".into(), a),
        ]
    };
    let send = |a: String| {
        let req = env.http.post(env.token_url()).form(&form(a));
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = send(assertion(h.clone(), &claims, &key.serialize_pem())).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Wrong audience, expired, and a key that is not the certificate's.
    let mut bad = claims.clone();
    bad["aud"] = json!("https://example.com/token");
    let (s, v) = send(assertion(h.clone(), &bad, &key.serialize_pem())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let mut old = claims.clone();
    old["exp"] = json!(now() - 3600);
    let (s, v) = send(assertion(h.clone(), &old, &key.serialize_pem())).await;
    assert_eq!(v["error_codes"], json!([700024]), "{v}");
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let (s, v) = send(assertion(h, &claims, &other.serialize_pem())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error_codes"], json!([700027]), "{v}");

    // Federated: a workload identity token from a trusted issuer.
    let fed_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let public_pem = {
        let der = fed_key.public_key_der();
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(der);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            b.as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    c.add_federated_credential(
        "https://oidc.example.com",
        "system:serviceaccount:b2b:invites",
        FederatedKey::PublicKeyPem(public_pem),
    )
    .unwrap();
    let fed_claims = json!({"aud": "api://AzureADTokenExchange", "iss": "https://oidc.example.com", "sub": "system:serviceaccount:b2b:invites", "nbf": now(), "exp": now() + 600});
    let (s, v) = send(assertion(
        Header::new(Algorithm::RS256),
        &fed_claims,
        &fed_key.serialize_pem(),
    ))
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut wrong_sub = fed_claims.clone();
    wrong_sub["sub"] = json!("someone-else");
    let (s, v) = send(assertion(
        Header::new(Algorithm::RS256),
        &wrong_sub,
        &fed_key.serialize_pem(),
    ))
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error_codes"], json!([70021]), "{v}");
    let mut wrong_aud = fed_claims.clone();
    wrong_aud["aud"] = json!(env.token_url());
    let (s, _) = send(assertion(
        Header::new(Algorithm::RS256),
        &wrong_aud,
        &fed_key.serialize_pem(),
    ))
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
