//! Write limits, injected faults, paging, the request log, persistence and scale.

mod common;

use std::time::{Duration, Instant};

use b2b_dev_tenant::{
    DevTenant, DevTenantOptions, Fault, FaultKind, NewUser, Seed, UserType, WriteLimit,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn write_limit_answers_429_with_retry_after() {
    let limit = WriteLimit {
        writes: 3,
        per: Duration::from_secs(60),
    };
    let env = common::start_with(Seed::Demo, Some(limit)).await;
    let token = env.token().await;
    for i in 0..3 {
        let (s, v) = env.invite(&token, &format!("w{i}@fabrikam.com")).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, h, v) = env
        .graph(&token, Method::POST, "/invitations", Some(json!({"invitedUserEmailAddress": "w9@fabrikam.com", "inviteRedirectUrl": "https://app"})))
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let scope = format!(
        "Tenant_Application/Write/{}/{}",
        env.tenant.client_id(),
        env.tenant.tenant_id()
    );
    assert_eq!(h["x-ms-throttle-scope"], scope.as_str());
    assert_eq!(h["x-ms-throttle-information"], "WriteLimitExceeded");
    let doc = fixture("throttled-429.json");
    assert_eq!(v["error"]["code"], doc["body"]["error"]["code"]);
    assert_eq!(v["error"]["message"], doc["body"]["error"]["message"]);
    for k in ["code", "message", "status", "date", "request-id"] {
        assert!(v["error"]["innerError"][k].is_string(), "{k}: {v}");
    }
    assert!(
        env.tenant.control().user("w9@fabrikam.com").is_none(),
        "a throttled write does nothing"
    );
    // Reads are not writes.
    let (s, _, _) = env.graph(&token, Method::GET, "/users", None).await;
    assert_eq!(s, StatusCode::OK);
    env.tenant
        .control()
        .set_write_limit(Some(WriteLimit::unlimited()));
    for i in 10..20 {
        let (s, _) = env.invite(&token, &format!("w{i}@fabrikam.com")).await;
        assert_eq!(s, StatusCode::CREATED);
    }
}

#[tokio::test]
async fn the_write_window_slides() {
    let env = common::start_with(
        Seed::Empty,
        Some(WriteLimit {
            writes: 1,
            per: Duration::from_millis(400),
        }),
    )
    .await;
    let token = env.token().await;
    assert_eq!(
        env.invite(&token, "s1@fabrikam.com").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        env.invite(&token, "s2@fabrikam.com").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        env.invite(&token, "s2@fabrikam.com").await.0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn each_fault_kind() {
    let env = common::start().await;
    let c = env.tenant.control();
    let token = env.token().await;

    c.inject(
        Fault::new(FaultKind::TooManyRequests {
            retry_after: Some(2.5),
        })
        .on("POST", "/v1.0/invitations")
        .times(2),
    );
    for _ in 0..2 {
        let (s, h, v) = env.graph(&token, Method::POST, "/invitations", Some(json!({"invitedUserEmailAddress": "f@fabrikam.com", "inviteRedirectUrl": "https://app"}))).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(h["retry-after"], "2.5");
        common::assert_graph_error(&v, "TooManyRequests");
    }
    assert_eq!(
        env.invite(&token, "f@fabrikam.com").await.0,
        StatusCode::CREATED
    );

    c.inject(Fault::new(FaultKind::TooManyRequests { retry_after: None }));
    let (s, h, _) = env.graph(&token, Method::GET, "/users", None).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(h.get("retry-after").is_none());

    for status in [500u16, 503, 504] {
        c.inject(Fault::new(FaultKind::ServerError(status)).on("GET", "/v1.0/users"));
        let (s, _, v) = env.graph(&token, Method::GET, "/users", None).await;
        assert_eq!(s.as_u16(), status);
        assert!(
            v["error"]["code"].is_string() && v["error"]["innerError"]["request-id"].is_string(),
            "{v}"
        );
        assert_eq!(
            env.graph(&token, Method::GET, "/users", None).await.0,
            StatusCode::OK
        );
    }

    c.inject(Fault::new(FaultKind::Slow(Duration::from_millis(300))).on("GET", "/v1.0/domains"));
    let started = Instant::now();
    let (s, _, _) = env.graph(&token, Method::GET, "/domains", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    c.inject(Fault::new(FaultKind::DropConnection).on("GET", "/v1.0/domains"));
    let err = env
        .http
        .get(format!("{}/domains", env.tenant.graph_base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect_err("the connection is closed without a response");
    assert!(!err.is_status() && !err.is_decode(), "{err:?}");
    assert_eq!(
        env.graph(&token, Method::GET, "/domains", None).await.0,
        StatusCode::OK
    );

    c.inject(Fault::new(FaultKind::AbuseBlock));
    for _ in 0..3 {
        let (s, v) = env.invite(&token, "blocked@fabrikam.com").await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        common::assert_graph_error(&v, "Authorization_RequestDenied");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("blocked") && msg.contains("suspicious activity"),
            "{msg}"
        );
    }
    assert_eq!(
        env.graph(&token, Method::GET, "/users", None).await.0,
        StatusCode::OK
    );
    c.clear_abuse_block();
    assert_eq!(
        env.invite(&token, "blocked@fabrikam.com").await.0,
        StatusCode::CREATED
    );

    // Faults on the token endpoint look like the identity platform's errors.
    c.inject(
        Fault::new(FaultKind::ServerError(503))
            .on("POST", &format!("/{}/oauth2", env.tenant.tenant_id())),
    );
    let r = env
        .http
        .post(env.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env.tenant.client_id()),
            ("client_secret", &env.tenant.client_secret()),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = r.json().await.unwrap();
    assert!(v["error_codes"].is_array(), "{v}");

    c.inject(Fault::new(FaultKind::ServerError(500)).times(5));
    c.clear_faults();
    assert_eq!(
        env.graph(&token, Method::GET, "/users", None).await.0,
        StatusCode::OK
    );

    // The log records method, path, decoded query and status, and never a secret.
    let log = c.requests();
    assert!(
        log.iter()
            .any(|e| e.status == 0 && e.path == "/v1.0/domains"),
        "dropped connection logged"
    );
    assert!(log.iter().any(|e| e.status == 403 && e.is_write));
    assert!(!format!("{log:?}").contains(&env.tenant.client_secret()));
    c.clear_requests();
    env.graph(
        &token,
        Method::GET,
        "/users?$filter=mail%20eq%20'x%23y@z.com'",
        None,
    )
    .await;
    let log = c.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].query.as_deref(), Some("$filter=mail eq 'x#y@z.com'"));
    assert!(!log[0].is_write);
}

#[tokio::test]
async fn a_three_page_listing() {
    let env = common::start_with(Seed::Empty, None).await;
    let c = env.tenant.control();
    for i in 0..250 {
        c.add_user(NewUser {
            display_name: format!("Guest {i}"),
            mail: format!("p{i}@partner.example"),
            user_type: UserType::Guest,
            ..NewUser::default()
        });
    }
    let token = env.token().await;
    let mut url = format!(
        "{}/users?$filter=userType%20eq%20'Guest'&$select=id,mail&$top=100",
        env.tenant.graph_base_url()
    );
    let mut sizes = Vec::new();
    let mut seen = std::collections::HashSet::new();
    loop {
        let (s, _, v) = env.graph_url(&token, Method::GET, &url, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let page = v["value"].as_array().unwrap();
        sizes.push(page.len());
        for u in page {
            assert!(
                seen.insert(u["id"].as_str().unwrap().to_string()),
                "no duplicates across pages"
            );
        }
        match v["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    assert_eq!(sizes, vec![100, 100, 50]);
    assert_eq!(seen.len(), 250);
    let (s, _, _) = env
        .graph(&token, Method::GET, "/users?$skiptoken=garbage", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn control_over_http() {
    let env = common::start().await;
    let base = env.tenant.authority_host();
    let info: Value = env
        .http
        .get(format!("{base}/_dev/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["tenantId"], env.tenant.tenant_id());
    let r = env
        .http
        .post(format!("{base}/_dev/users"))
        .json(&json!({"displayName": "Pat", "mail": "pat@partner.example", "userType": "Guest"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let user: Value = r.json().await.unwrap();
    let id = user["id"].as_str().unwrap();
    let redeemed: Value = env
        .http
        .post(format!("{base}/_dev/users/{id}/redeem"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(redeemed["externalUserState"], "Accepted");
    let r = env
        .http
        .post(format!("{base}/_dev/faults"))
        .json(&json!({"kind": "serverError", "status": 503, "method": "GET", "pathPrefix": "/v1.0/users"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let token = env.token().await;
    assert_eq!(
        env.graph(&token, Method::GET, "/users", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let r = env
        .http
        .post(format!("{base}/_dev/clock/advance"))
        .json(&json!({"seconds": 86400}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let now = env.tenant.control().now();
    assert!(now - time::OffsetDateTime::now_utc() > time::Duration::hours(23));
    let minted: Value = env
        .http
        .post(format!("{base}/_dev/tokens"))
        .json(&json!({"userId": id, "version": "1.0", "audience": "api://b2b-invites", "lifetime": 600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(minted["token"].as_str().unwrap().split('.').count() == 3);
    let log: Value = env
        .http
        .get(format!("{base}/_dev/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .all(|e| !e["path"].as_str().unwrap().starts_with("/_dev"))
    );
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DevTenantOptions {
        state_dir: dir.path().to_path_buf(),
        seed: Seed::Demo,
        ..DevTenantOptions::default()
    };
    let first = DevTenant::start(opts.clone()).await.unwrap();
    let http = common::client_for(&first.ca_pem_path());
    let ca = std::fs::read(first.ca_pem_path()).unwrap();
    let c = first.control();
    let guest = c.add_user(NewUser {
        display_name: "Kept".into(),
        mail: "kept@partner.example".into(),
        user_type: UserType::Guest,
        ..NewUser::default()
    });
    c.advance(Duration::from_secs(3 * 86_400));
    let kid = c.signing_key_ids();
    let (tenant_id, secret) = (first.tenant_id(), first.client_secret());
    first.shutdown().await;

    let second = DevTenant::start(opts).await.unwrap();
    assert_eq!(second.tenant_id(), tenant_id);
    assert_eq!(second.client_secret(), secret);
    assert_eq!(
        std::fs::read(second.ca_pem_path()).unwrap(),
        ca,
        "the CA is reused"
    );
    let c = second.control();
    assert_eq!(c.signing_key_ids(), kid, "the signing key is reused");
    assert_eq!(
        c.user(&guest.id).unwrap().mail.as_deref(),
        Some("kept@partner.example")
    );
    assert!(
        c.now() - time::OffsetDateTime::now_utc() > time::Duration::days(2),
        "the dev clock is kept"
    );
    // A client that trusted the first run's CA still connects.
    let r = http
        .get(format!(
            "{}/{}/discovery/v2.0/keys",
            second.authority_host(),
            tenant_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn fifty_thousand_guests_page_quickly() {
    let env = common::start_with(Seed::Empty, Some(WriteLimit::unlimited())).await;
    let c = env.tenant.control();
    for i in 0..50_000 {
        c.add_user(NewUser {
            display_name: format!("G{i}"),
            mail: format!("guest{i}@partner.example"),
            user_type: UserType::Guest,
            ..NewUser::default()
        });
    }
    let token = env.token().await;
    let select = "id,displayName,mail,otherMails,userPrincipalName,userType,creationType,externalUserState,externalUserStateChangeDateTime,createdDateTime";
    let mut url = format!(
        "{}/users?$filter=externalUserState%20eq%20'PendingAcceptance'&$select={select}&$top=999",
        env.tenant.graph_base_url()
    );
    let (mut pages, mut total, mut slowest) = (0, 0, Duration::ZERO);
    loop {
        let started = Instant::now();
        let (s, _, v) = env.graph_url(&token, Method::GET, &url, None).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(s, StatusCode::OK);
        total += v["value"].as_array().unwrap().len();
        pages += 1;
        match v["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    assert_eq!(total, 50_000);
    assert_eq!(pages, 51);
    // Generous for an unoptimised build on a shared machine; release pages take milliseconds.
    assert!(slowest < Duration::from_secs(2), "slowest page {slowest:?}");
    let started = Instant::now();
    let (_, _, v) = env
        .graph(
            &token,
            Method::GET,
            "/users?$filter=mail%20eq%20'guest49999@partner.example'",
            None,
        )
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    assert!(started.elapsed() < Duration::from_millis(500));
}
