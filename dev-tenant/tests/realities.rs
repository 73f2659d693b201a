//! The production-reality switches: replication delay, lost answers, expired secrets and
//! short token lifetimes, missing permissions, cross-tenant blocks and lagging listings.

mod common;

use std::time::Duration;

use b2b_dev_tenant::{Fault, FaultKind, GUEST_INVITER_ROLE, NewUser, Seed, UserType, WriteLimit};
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const NOT_FOUND: &str =
    "does not exist or one of its queried reference-property objects are not present.";

fn id_of(v: &Value) -> String {
    v["invitedUser"]["id"].as_str().unwrap().to_string()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn token_response(env: &common::Env) -> (StatusCode, Value) {
    token_response_with(env, &env.tenant.client_secret()).await
}

async fn token_response_with(env: &common::Env, secret: &str) -> (StatusCode, Value) {
    let r = env
        .http
        .post(env.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env.tenant.client_id()),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn dev(env: &common::Env, method: Method, route: &str, body: Option<Value>) -> StatusCode {
    let mut req = env.http.request(
        method,
        format!("{}/_dev{route}", env.tenant.authority_host()),
    );
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap().status()
}

async fn dev_get(env: &common::Env, route: &str) -> Value {
    env.http
        .get(format!("{}/_dev{route}", env.tenant.authority_host()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_fresh_guest_is_not_replicated_yet() {
    let env = common::start().await;
    let c = env.tenant.control();
    // Seven writes succeed below; the refusals in between must not use up any of them.
    c.set_write_limit(Some(WriteLimit {
        writes: 7,
        per: Duration::from_secs(600),
    }));
    let token = env.token().await;
    let megan = c.user("megan.bowen@contoso.com").unwrap().id;
    let partners = c
        .groups()
        .into_iter()
        .find(|g| g.display_name == "Partners")
        .unwrap()
        .id;
    let portal = c
        .service_principals()
        .into_iter()
        .find(|s| s.display_name == "Partner Portal")
        .unwrap();
    let reader = portal.role_id("Portal.Reader").unwrap().to_string();

    assert_eq!(
        dev(
            &env,
            Method::PUT,
            "/replicationDelay",
            Some(json!({"seconds": 600}))
        )
        .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        dev_get(&env, "/realities").await["replicationDelaySeconds"],
        600.0
    );
    let (s, v) = env.invite(&token, "fresh@fabrikam.com").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let guest = id_of(&v);

    let (s, h, v) = env
        .graph(&token, Method::GET, &format!("/users/{guest}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    common::assert_graph_error(&v, "Request_ResourceNotFound");
    assert_eq!(
        v["error"]["message"],
        format!("Resource '{guest}' {NOT_FOUND}")
    );
    assert!(h.contains_key("request-id") && h.contains_key("client-request-id"));

    let (s, _, v) = env
        .graph(
            &token,
            Method::PATCH,
            &format!("/users/{guest}"),
            Some(json!({"companyName": "Fabrikam"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    common::assert_graph_error(&v, "Request_ResourceNotFound");

    let sponsor_ref =
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/users/{megan}")});
    let (s, _, v) = env
        .graph(
            &token,
            Method::POST,
            &format!("/users/{guest}/sponsors/$ref"),
            Some(sponsor_ref.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    common::assert_graph_error(&v, "Request_ResourceNotFound");

    let member_ref =
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{guest}")});
    let (s, _, v) = env
        .graph(
            &token,
            Method::POST,
            &format!("/groups/{partners}/members/$ref"),
            Some(member_ref.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    common::assert_graph_error(&v, "Request_BadRequest");
    assert_eq!(
        v["error"]["message"],
        "One or more added object references do not exist for the following modified properties: 'members'."
    );

    let assignment = json!({"principalId": guest, "resourceId": portal.id, "appRoleId": reader});
    let (s, _, v) = env
        .graph(
            &token,
            Method::POST,
            &format!("/servicePrincipals/{}/appRoleAssignedTo", portal.id),
            Some(assignment.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    common::assert_graph_error(&v, "Request_ResourceNotFound");

    let role = json!({"roleDefinitionId": GUEST_INVITER_ROLE, "principalId": guest, "directoryScopeId": "/"});
    let (s, _, v) = env
        .graph(
            &token,
            Method::POST,
            "/roleManagement/directory/roleAssignments",
            Some(role.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    common::assert_graph_error(&v, "Request_ResourceNotFound");

    // The client that created the guest can still find it by listing.
    let (s, _, v) = env
        .graph(
            &token,
            Method::GET,
            "/users?$filter=mail%20eq%20'fresh@fabrikam.com'",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["value"][0]["id"], guest.as_str());
    // Users seeded directly are replicated already.
    let (s, _, _) = env
        .graph(&token, Method::GET, &format!("/users/{megan}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(c.sponsors(&guest).is_empty() && c.group_members(&partners).is_empty());

    // Replication is measured in real time: a short delay that has passed lets everything through.
    c.set_replication_delay(Some(Duration::from_millis(300)));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, _, _) = env
        .graph(&token, Method::GET, &format!("/users/{guest}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let writes = [
        (
            Method::PATCH,
            format!("/users/{guest}"),
            json!({"companyName": "Fabrikam"}),
            StatusCode::NO_CONTENT,
        ),
        (
            Method::POST,
            format!("/users/{guest}/sponsors/$ref"),
            sponsor_ref,
            StatusCode::NO_CONTENT,
        ),
        (
            Method::POST,
            format!("/groups/{partners}/members/$ref"),
            member_ref,
            StatusCode::NO_CONTENT,
        ),
        (
            Method::POST,
            format!("/servicePrincipals/{}/appRoleAssignedTo", portal.id),
            assignment,
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            "/roleManagement/directory/roleAssignments".to_string(),
            role,
            StatusCode::CREATED,
        ),
    ];
    for (method, path, body, want) in writes {
        let (s, _, v) = env.graph(&token, method, &path, Some(body)).await;
        assert_eq!(s, want, "{path}: {v}");
    }

    // A delay set through the control handle; switching it off shows the user at once.
    c.set_replication_delay(Some(Duration::from_secs(600)));
    let (s, v) = env.invite(&token, "second@fabrikam.com").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let second = id_of(&v);
    let path = format!("/users/{second}");
    assert_eq!(
        env.graph(&token, Method::GET, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        dev(&env, Method::PUT, "/replicationDelay", Some(json!({}))).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        env.graph(&token, Method::GET, &path, None).await.0,
        StatusCode::OK
    );
    // Seven writes were admitted (two invitations, five after replication): the eighth is
    // over the limit, so none of the five refusals counted.
    let (s, _, _) = env
        .graph(
            &token,
            Method::PATCH,
            &path,
            Some(json!({"companyName": "Fabrikam"})),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn an_answer_lost_after_the_work_was_done() {
    let env = common::start().await;
    let c = env.tenant.control();
    c.set_write_limit(Some(WriteLimit {
        writes: 3,
        per: Duration::from_secs(600),
    }));
    let token = env.token().await;
    c.inject(Fault::new(FaultKind::AnswerLost).on("POST", "/v1.0/invitations"));
    let err = env
        .http
        .post(format!("{}/invitations", env.tenant.graph_base_url()))
        .bearer_auth(&token)
        .json(&json!({
            "invitedUserEmailAddress": "lost@fabrikam.com",
            "inviteRedirectUrl": "https://myapplications.microsoft.com",
            "sendInvitationMessage": true,
        }))
        .send()
        .await
        .expect_err("the answer never arrives");
    assert!(!err.is_status() && !err.is_decode(), "{err:?}");

    let guest = c.user("lost@fabrikam.com").expect("the guest was created");
    assert_eq!(c.sent_mail().len(), 1, "the invitation mail was recorded");
    let log = c.requests();
    assert!(
        log.iter()
            .any(|e| e.path == "/v1.0/invitations" && e.status == 0 && e.is_write),
        "{log:?}"
    );

    // The retry finds the guest the lost answer created.
    let (s, v) = env.invite(&token, "lost@fabrikam.com").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(id_of(&v), guest.id);
    assert_eq!(c.users().iter().filter(|u| u.mail == guest.mail).count(), 1);

    // Over HTTP, on a PATCH: the change is made.
    assert_eq!(
        dev(
            &env,
            Method::POST,
            "/faults",
            Some(json!({"kind": "answerLost", "method": "PATCH", "pathPrefix": "/v1.0/users/"}))
        )
        .await,
        StatusCode::NO_CONTENT
    );
    let err = env
        .http
        .patch(format!(
            "{}/users/{}",
            env.tenant.graph_base_url(),
            guest.id
        ))
        .bearer_auth(&token)
        .json(&json!({"department": "Sales"}))
        .send()
        .await
        .expect_err("the answer never arrives");
    assert!(!err.is_status(), "{err:?}");
    assert_eq!(
        c.user(&guest.id).unwrap().department.as_deref(),
        Some("Sales")
    );

    // Both lost answers counted as writes: with the retry that is three, the limit.
    let (s, _) = env.invite(&token, "another@fabrikam.com").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn an_expired_client_secret() {
    let env = common::start().await;
    let c = env.tenant.control();
    let token = env.token().await;
    c.expire_client_secret();

    let (s, v) = token_response(&env).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"], "invalid_client");
    assert_eq!(v["error_codes"], json!([7000222]));
    let d = v["error_description"].as_str().unwrap();
    let want = format!(
        "AADSTS7000222: The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret",
        env.tenant.client_id()
    );
    assert!(d.starts_with(&want), "{d}");
    for k in ["timestamp", "trace_id", "correlation_id"] {
        assert!(v[k].is_string(), "{k}: {v}");
    }
    // A wrong secret is still a wrong secret.
    let (s, v) = token_response_with(&env, "not-the-secret").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error_codes"], json!([7000215]));
    // The token issued before stays valid.
    assert_eq!(
        env.graph(&token, Method::GET, "/users", None).await.0,
        StatusCode::OK
    );

    c.renew_client_secret();
    assert_eq!(token_response(&env).await.0, StatusCode::OK);

    assert_eq!(
        dev(&env, Method::POST, "/clientSecret/expire", None).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        dev_get(&env, "/realities").await["clientSecretExpired"],
        true
    );
    assert_eq!(token_response(&env).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        dev(&env, Method::POST, "/clientSecret/renew", None).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(token_response(&env).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_short_token_lifetime_expires_in_real_time() {
    let env = common::start().await;
    let c = env.tenant.control();
    c.set_token_lifetime(Some(Duration::from_secs(1)));
    let (s, v) = token_response(&env).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["expires_in"], 1);
    assert_eq!(v["ext_expires_in"], 1);
    let token = v["access_token"].as_str().unwrap().to_string();
    let cl = claims(&token);
    assert_eq!(cl["exp"].as_i64().unwrap() - cl["iat"].as_i64().unwrap(), 1);
    assert_eq!(
        env.graph(&token, Method::GET, "/users", None).await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, h, v) = env.graph(&token, Method::GET, "/users", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    common::assert_graph_error(&v, "InvalidAuthenticationToken");
    assert_eq!(
        v["error"]["message"],
        "Lifetime validation failed, the token is expired."
    );
    assert!(h.contains_key("request-id") && h.contains_key("client-request-id"));

    // Moving the dev clock does not matter to tokens the endpoint issued.
    assert_eq!(
        dev(
            &env,
            Method::PUT,
            "/tokenLifetime",
            Some(json!({"seconds": 60}))
        )
        .await,
        StatusCode::NO_CONTENT
    );
    let (_, v) = token_response(&env).await;
    assert_eq!(v["expires_in"], 60);
    c.advance(Duration::from_secs(2 * 86_400));
    let token = v["access_token"].as_str().unwrap();
    assert_eq!(
        env.graph(token, Method::GET, "/users", None).await.0,
        StatusCode::OK
    );

    assert_eq!(
        dev(&env, Method::PUT, "/tokenLifetime", Some(json!({}))).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(token_response(&env).await.1["expires_in"], 3599);
    c.set_token_lifetime(Some(Duration::from_secs(120)));
    assert_eq!(token_response(&env).await.1["expires_in"], 120);
    c.set_token_lifetime(None);
    assert_eq!(token_response(&env).await.1["expires_in"], 3599);
}

#[tokio::test]
async fn a_missing_permission() {
    let env = common::start().await;
    let c = env.tenant.control();
    let token = env.token().await;
    c.inject(
        Fault::new(FaultKind::PermissionDenied)
            .on("POST", "/v1.0/invitations")
            .times(2),
    );
    for _ in 0..2 {
        let (s, v) = env.invite(&token, "denied@fabrikam.com").await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        common::assert_graph_error(&v, "Authorization_RequestDenied");
        assert_eq!(
            v["error"]["message"],
            "Insufficient privileges to complete the operation."
        );
    }
    assert!(c.user("denied@fabrikam.com").is_none());
    assert_eq!(
        env.invite(&token, "denied@fabrikam.com").await.0,
        StatusCode::CREATED
    );

    // Until consent is restored: every Graph request, but not the token endpoint, and a
    // caller without a valid token learns only that.
    c.inject(Fault::new(FaultKind::PermissionDenied).times(u32::MAX));
    let (s, _, v) = env.graph("not-a-token", Method::GET, "/users", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let token = env.token().await;
    let (s, h, v) = env.graph(&token, Method::GET, "/users", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    common::assert_graph_error(&v, "Authorization_RequestDenied");
    assert!(h.contains_key("request-id") && h.contains_key("client-request-id"));
    c.clear_faults();
    assert_eq!(
        env.graph(&token, Method::GET, "/users", None).await.0,
        StatusCode::OK
    );

    assert_eq!(
        dev(
            &env,
            Method::POST,
            "/faults",
            Some(
                json!({"kind": "permissionDenied", "method": "GET", "pathPrefix": "/v1.0/groups"})
            )
        )
        .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        env.graph(&token, Method::GET, "/groups", None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.graph(&token, Method::GET, "/groups", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_cross_tenant_block() {
    let env = common::start().await;
    let c = env.tenant.control();
    let token = env.token().await;
    c.block_cross_tenant("Fabrikam.com");
    for address in ["someone@fabrikam.com", "SomeOne@FABRIKAM.COM"] {
        let (s, v) = env.invite(&token, address).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        common::assert_graph_error(&v, "Authorization_RequestDenied");
        assert_eq!(
            v["error"]["message"],
            "This invitation is blocked by cross-tenant access settings. Admins in both organizations must configure their cross-tenant access settings to allow the invitation."
        );
    }
    assert!(
        c.user("someone@fabrikam.com").is_none(),
        "nothing is created"
    );
    assert_eq!(
        env.invite(&token, "someone@tailspin.example").await.0,
        StatusCode::CREATED
    );
    c.unblock_cross_tenant("fabrikam.com");
    assert_eq!(
        env.invite(&token, "someone@fabrikam.com").await.0,
        StatusCode::CREATED
    );

    assert_eq!(
        dev(
            &env,
            Method::PUT,
            "/crossTenantBlocks/Tailspin.example",
            None
        )
        .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        dev_get(&env, "/crossTenantBlocks").await,
        json!(["tailspin.example"])
    );
    // An existing guest's domain is blocked too: the policy is checked on every invitation.
    assert_eq!(
        env.invite(&token, "someone@tailspin.example").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        dev(
            &env,
            Method::DELETE,
            "/crossTenantBlocks/tailspin.example",
            None
        )
        .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        env.invite(&token, "someone@tailspin.example").await.0,
        StatusCode::CREATED
    );
}

/// The guest's listed `(externalUserState, externalUserStateChangeDateTime, accountEnabled)`
/// in an unfiltered listing read one user per page, following every nextLink.
async fn listed(env: &common::Env, token: &str, id: &str) -> (Value, Value, Value) {
    let mut url = format!(
        "{}/users?$select=id,externalUserState,externalUserStateChangeDateTime,accountEnabled&$top=1",
        env.tenant.graph_base_url()
    );
    let mut found = None;
    loop {
        let (s, _, v) = env.graph_url(token, Method::GET, &url, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for u in v["value"].as_array().unwrap() {
            if u["id"] == id {
                found = Some((
                    u["externalUserState"].clone(),
                    u["externalUserStateChangeDateTime"].clone(),
                    u["accountEnabled"].clone(),
                ));
            }
        }
        match v["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    found.expect("the user is listed")
}

async fn filtered(env: &common::Env, token: &str, filter: &str) -> Vec<String> {
    let (s, _, v) = env
        .graph(
            token,
            Method::GET,
            &format!("/users?$filter={filter}&$select=id"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_lagging_listing() {
    let env = common::start_with(Seed::Demo, None).await;
    let c = env.tenant.control();
    let token = env.token().await;
    let guest = c.add_user(NewUser {
        display_name: "Lagging".into(),
        mail: "lagging@fabrikam.com".into(),
        user_type: UserType::Guest,
        ..NewUser::default()
    });
    let (_, pending_at, _) = listed(&env, &token, &guest.id).await;
    assert!(pending_at.is_string());
    c.set_listing_lag(Some(Duration::from_secs(600)));
    // A day on the dev clock is not the lag: the lag runs in real time.
    c.advance(Duration::from_secs(86_400));
    c.redeem(&guest.id).unwrap();
    let (s, _, v) = env
        .graph(
            &token,
            Method::PATCH,
            &format!("/users/{}", guest.id),
            Some(json!({"accountEnabled": false})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");

    let (s, _, truth) = env
        .graph(
            &token,
            Method::GET,
            &format!(
                "/users/{}?$select=id,externalUserState,accountEnabled",
                guest.id
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(truth["externalUserState"], "Accepted");
    assert_eq!(truth["accountEnabled"], false);

    let (state, changed, enabled) = listed(&env, &token, &guest.id).await;
    assert_eq!(state, "PendingAcceptance");
    assert_eq!(changed, pending_at);
    assert_eq!(enabled, true);
    let pending = "externalUserState%20eq%20'PendingAcceptance'";
    let accepted = "externalUserState%20eq%20'Accepted'";
    assert!(filtered(&env, &token, pending).await.contains(&guest.id));
    assert!(!filtered(&env, &token, accepted).await.contains(&guest.id));
    let (_, _, v) = env
        .graph_url(
            &token,
            Method::GET,
            &format!(
                "{}/users?$filter=accountEnabled%20eq%20false&$count=true",
                env.tenant.graph_base_url()
            ),
            None,
        )
        .await;
    assert_eq!(
        v["error"]["code"], "Request_BadRequest",
        "needs ConsistencyLevel"
    );
    let r = env
        .http
        .get(format!(
            "{}/users?$filter=accountEnabled%20eq%20false&$count=true",
            env.tenant.graph_base_url()
        ))
        .bearer_auth(&token)
        .header("ConsistencyLevel", "eventual")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["@odata.count"], 0, "{v}");

    // Once the lag has passed in real time, the listing catches up.
    c.set_listing_lag(Some(Duration::from_millis(200)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (state, changed, enabled) = listed(&env, &token, &guest.id).await;
    assert_eq!(state, "Accepted");
    assert_ne!(changed, pending_at);
    assert_eq!(enabled, false);
    assert!(filtered(&env, &token, accepted).await.contains(&guest.id));

    // Over HTTP.
    assert_eq!(
        dev(
            &env,
            Method::PUT,
            "/listingLag",
            Some(json!({"seconds": 600}))
        )
        .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        dev_get(&env, "/realities").await["listingLagSeconds"],
        600.0
    );
    let (s, _, _) = env
        .graph(
            &token,
            Method::PATCH,
            &format!("/users/{}", guest.id),
            Some(json!({"accountEnabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Ten minutes ago, all three changes were still to come.
    let (state, _, enabled) = listed(&env, &token, &guest.id).await;
    assert_eq!((state, enabled), (json!("PendingAcceptance"), json!(true)));
    assert_eq!(
        dev(
            &env,
            Method::PUT,
            "/listingLag",
            Some(json!({"seconds": null}))
        )
        .await,
        StatusCode::NO_CONTENT
    );
    let (state, _, enabled) = listed(&env, &token, &guest.id).await;
    assert_eq!((state, enabled), (json!("Accepted"), json!(true)));
}

#[tokio::test]
async fn graph_errors_carry_request_ids() {
    let env = common::start_with(
        Seed::Empty,
        Some(WriteLimit {
            writes: 1,
            per: Duration::from_secs(600),
        }),
    )
    .await;
    let c = env.tenant.control();
    let token = env.token().await;
    let mine = "3f0c5f2e-6a57-4c3e-9d0e-5a1b2c3d4e5f";
    let send = |t: &str, method: Method, path: &str| {
        env.http
            .request(method, format!("{}{path}", env.tenant.graph_base_url()))
            .bearer_auth(t)
            .header("client-request-id", mine)
            .json(&json!({"invitedUserEmailAddress": "ids@fabrikam.com", "inviteRedirectUrl": "https://app"}))
            .send()
    };
    let check = |r: &reqwest::Response, status: StatusCode| {
        assert_eq!(r.status(), status);
        let h = r.headers();
        assert_eq!(h["client-request-id"], mine);
        assert!(!h["request-id"].to_str().unwrap().is_empty());
    };
    // Authentication, an unknown user, an injected fault, an unknown segment and the
    // write limit: every one is answered with both ids.
    let r = send("bad", Method::GET, "/users").await.unwrap();
    check(&r, StatusCode::UNAUTHORIZED);
    let r = send(&token, Method::GET, "/users/nobody@b2bdev.onmicrosoft.com")
        .await
        .unwrap();
    check(&r, StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["innerError"]["client-request-id"], mine);
    c.inject(Fault::new(FaultKind::ServerError(503)));
    check(
        &send(&token, Method::GET, "/users").await.unwrap(),
        StatusCode::SERVICE_UNAVAILABLE,
    );
    check(
        &send(&token, Method::GET, "/nothing").await.unwrap(),
        StatusCode::BAD_REQUEST,
    );
    check(
        &send(&token, Method::POST, "/invitations").await.unwrap(),
        StatusCode::CREATED,
    );
    check(
        &send(&token, Method::POST, "/invitations").await.unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
    );
}
