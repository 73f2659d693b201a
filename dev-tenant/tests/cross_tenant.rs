//! Tenant lookup by domain and cross-tenant access partner configurations, over HTTPS.

mod common;

use std::time::Duration;

use b2b_dev_tenant::{
    DevTenant, DevTenantOptions, FABRIKAM_TENANT_ID, Fault, FaultKind, LITWARE_TENANT_ID, Seed,
    WriteLimit,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PARTNERS: &str = "/policies/crossTenantAccessPolicy/partners";

fn lookup(domain_literal: &str) -> String {
    format!("/tenantRelationships/findTenantInformationByDomainName(domainName={domain_literal})")
}

#[tokio::test]
async fn finds_the_tenant_behind_a_domain() {
    let env = common::start().await;
    let token = env.token().await;

    let (s, _, v) = env
        .graph(&token, Method::GET, &lookup("'litware.com'"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.tenantInformation",
            "tenantId": LITWARE_TENANT_ID,
            "displayName": "Litware Inc.",
            "defaultDomainName": "litware.com",
            "federationBrandName": null,
        })
    );

    // Any case, and the quotes percent-encoded.
    let (s, _, v) = env
        .graph(&token, Method::GET, &lookup("%27FABRIKAM.com%27"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tenantId"], FABRIKAM_TENANT_ID);
    assert_eq!(v["displayName"], "Fabrikam, Inc.");

    // Our own verified domains are ours.
    let (s, _, v) = env
        .graph(
            &token,
            Method::GET,
            &lookup("'b2bdev.onmicrosoft.com'"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tenantId"], env.tenant.tenant_id());
    assert_eq!(v["defaultDomainName"], "contoso.com");

    let id = env
        .tenant
        .control()
        .add_external_tenant("Northwind.example", "Northwind Traders");
    let (s, _, v) = env
        .graph(&token, Method::GET, &lookup("'northwind.example'"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tenantId"], id.as_str());
    assert_eq!(v["displayName"], "Northwind Traders");
    assert_eq!(v["defaultDomainName"], "northwind.example");

    let log = env.tenant.control().requests();
    assert!(log.iter().all(|e| !e.is_write), "lookups are reads");
}

#[tokio::test]
async fn an_unknown_domain_is_not_found_and_a_malformed_call_is_refused() {
    let env = common::start().await;
    let token = env.token().await;
    for domain in ["gmail.com", "nobody.example"] {
        let (s, _, v) = env
            .graph(&token, Method::GET, &lookup(&format!("'{domain}'")), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        common::assert_graph_error(&v, "Request_ResourceNotFound");
        assert!(v["error"]["message"].as_str().unwrap().contains(domain));
    }
    // An unverified domain of ours proves nothing.
    env.tenant.control().add_domain("unproven.example", false);
    let (s, _, _) = env
        .graph(&token, Method::GET, &lookup("'unproven.example'"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    for malformed in [lookup("litware.com"), lookup("'a'b.com'")] {
        let (s, _, v) = env.graph(&token, Method::GET, &malformed, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{malformed}: {v}");
        common::assert_graph_error(&v, "BadRequest");
    }
}

#[tokio::test]
async fn partner_configurations_are_created_read_replaced_and_deleted() {
    let env = common::start().await;
    let token = env.token().await;
    let one = format!("{PARTNERS}/{LITWARE_TENANT_ID}");

    let body = json!({
        "tenantId": LITWARE_TENANT_ID.to_uppercase(),
        "inboundTrust": {"isMfaAccepted": false, "isCompliantDeviceAccepted": true},
        "automaticUserConsentSettings": {"inboundAllowed": true},
    });
    let (s, _, v) = env
        .graph(&token, Method::POST, PARTNERS, Some(body.clone()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["tenantId"], LITWARE_TENANT_ID);
    assert_eq!(v["inboundTrust"]["isCompliantDeviceAccepted"], true);
    for key in [
        "b2bCollaborationInbound",
        "b2bCollaborationOutbound",
        "b2bDirectConnectInbound",
        "b2bDirectConnectOutbound",
        "isServiceProvider",
        "isInMultiTenantOrganization",
    ] {
        assert_eq!(v.get(key), Some(&Value::Null), "{key}: {v}");
    }

    let (s, _, v) = env.graph(&token, Method::POST, PARTNERS, Some(body)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    common::assert_graph_error(&v, "Conflict");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(LITWARE_TENANT_ID)
    );

    let (s, _, v) = env.graph(&token, Method::GET, &one, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["automaticUserConsentSettings"]["inboundAllowed"], true);

    // A complex property sent replaces the stored one whole; others stay.
    let (s, _, v) = env
        .graph(
            &token,
            Method::PATCH,
            &one,
            Some(json!({"inboundTrust": {"isMfaAccepted": true}})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (_, _, v) = env.graph(&token, Method::GET, &one, None).await;
    assert_eq!(v["inboundTrust"]["isMfaAccepted"], true);
    assert!(
        v["inboundTrust"]["isCompliantDeviceAccepted"].is_null(),
        "{v}"
    );
    assert_eq!(v["automaticUserConsentSettings"]["inboundAllowed"], true);

    let (s, _, v) = env
        .graph(
            &token,
            Method::PATCH,
            &one,
            Some(json!({"tenantId": FABRIKAM_TENANT_ID})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    common::assert_graph_error(&v, "Request_BadRequest");

    let (s, _, v) = env.graph(&token, Method::GET, PARTNERS, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#policies/crossTenantAccessPolicy/partners"
    );
    assert_eq!(v["value"].as_array().unwrap().len(), 1, "{v}");

    let (s, _, _) = env.graph(&token, Method::DELETE, &one, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::DELETE] {
        let (s, _, v) = env.graph(&token, method, &one, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        common::assert_graph_error(&v, "Request_ResourceNotFound");
    }
    let (s, _, v) = env
        .graph(
            &token,
            Method::PATCH,
            &one,
            Some(json!({"isServiceProvider": true})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        env.tenant
            .control()
            .cross_tenant_partner(LITWARE_TENANT_ID)
            .is_none()
    );
}

#[tokio::test]
async fn bad_partner_bodies_are_refused() {
    let env = common::start().await;
    let token = env.token().await;
    for (body, code) in [
        (
            json!({"inboundTrust": {"isMfaAccepted": true}}),
            "Request_BadRequest",
        ),
        (json!({"tenantId": "litware.com"}), "Request_BadRequest"),
        (
            json!({"tenantId": LITWARE_TENANT_ID, "colour": "blue"}),
            "BadRequest",
        ),
        (
            json!({"tenantId": LITWARE_TENANT_ID, "inboundTrust": "yes"}),
            "BadRequest",
        ),
    ] {
        let (s, _, v) = env
            .graph(&token, Method::POST, PARTNERS, Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        common::assert_graph_error(&v, code);
    }
    assert!(
        env.tenant
            .control()
            .cross_tenant_partner(LITWARE_TENANT_ID)
            .is_none()
    );
}

#[tokio::test]
async fn partner_writes_are_logged_limited_and_faulted_like_other_writes() {
    let env = common::start_with(
        Seed::Demo,
        Some(WriteLimit {
            writes: 2,
            per: Duration::from_secs(60),
        }),
    )
    .await;
    let c = env.tenant.control();
    let token = env.token().await;
    let one = format!("{PARTNERS}/{FABRIKAM_TENANT_ID}");

    let (s, _, _) = env
        .graph(
            &token,
            Method::POST,
            PARTNERS,
            Some(json!({"tenantId": FABRIKAM_TENANT_ID})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let log = c.requests();
    let create = log
        .iter()
        .find(|e| e.method == "POST" && e.path == format!("/v1.0{PARTNERS}"))
        .expect("the create is logged");
    assert!(create.is_write);
    assert_eq!(create.status, 201);

    let (s, _, _) = env
        .graph(
            &token,
            Method::PATCH,
            &one,
            Some(json!({"isServiceProvider": true})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, h, v) = env.graph(&token, Method::DELETE, &one, None).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    common::assert_graph_error(&v, "TooManyRequests");
    assert_eq!(h["x-ms-throttle-information"], "WriteLimitExceeded");
    assert!(
        c.cross_tenant_partner(FABRIKAM_TENANT_ID).is_some(),
        "a throttled delete does nothing"
    );
    // Reads are not writes.
    let (s, _, v) = env.graph(&token, Method::GET, &one, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["isServiceProvider"], true);
    let log = c.requests();
    assert_eq!(log.iter().filter(|e| e.is_write).count(), 3);
    assert!(
        log.iter()
            .any(|e| e.method == "DELETE" && e.status == 429 && e.is_write)
    );

    c.set_write_limit(Some(WriteLimit::unlimited()));
    c.inject(Fault::new(FaultKind::ServerError(503)).on("DELETE", &format!("/v1.0{PARTNERS}")));
    let (s, _, v) = env.graph(&token, Method::DELETE, &one, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(c.cross_tenant_partner(FABRIKAM_TENANT_ID).is_some());
    let (s, _, _) = env.graph(&token, Method::DELETE, &one, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn seeded_configurations_are_served_and_everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DevTenantOptions {
        state_dir: dir.path().to_path_buf(),
        seed: Seed::Empty,
        ..DevTenantOptions::default()
    };
    let first = DevTenant::start(opts.clone()).await.unwrap();
    let c = first.control();
    let tenant = c.add_external_tenant("tailspin.example", "Tailspin Toys");
    let blocked = json!({
        "usersAndGroups": {"accessType": "blocked", "targets": [{"target": "AllUsers", "targetType": "user"}]},
        "applications": {"accessType": "blocked", "targets": [{"target": "AllApplications", "targetType": "application"}]},
    });
    c.set_cross_tenant_partner(&tenant, json!({"b2bCollaborationInbound": blocked}));
    first.shutdown().await;

    let second = DevTenant::start(opts).await.unwrap();
    let http = common::client_for(&second.ca_pem_path());
    let env = common::Env {
        tenant: second,
        http,
        dir,
    };
    let token = env.token().await;
    let (s, _, v) = env
        .graph(&token, Method::GET, &lookup("'Tailspin.example'"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tenantId"], tenant.as_str());
    // The empty seed knows no other organization.
    let (s, _, _) = env
        .graph(&token, Method::GET, &lookup("'litware.com'"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, _, v) = env
        .graph(&token, Method::GET, &format!("{PARTNERS}/{tenant}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tenantId"], tenant.as_str());
    assert_eq!(v["b2bCollaborationInbound"], blocked);
    assert_eq!(v.get("inboundTrust"), Some(&Value::Null));
}

#[tokio::test]
async fn state_written_before_cross_tenant_access_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DevTenantOptions {
        state_dir: dir.path().to_path_buf(),
        seed: Seed::Demo,
        ..DevTenantOptions::default()
    };
    let first = DevTenant::start(opts.clone()).await.unwrap();
    let tenant_id = first.tenant_id();
    first.shutdown().await;
    let path = dir.path().join("state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(
        state
            .as_object_mut()
            .unwrap()
            .remove("crossTenant")
            .is_some()
    );
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();

    let second = DevTenant::start(opts).await.unwrap();
    assert_eq!(second.tenant_id(), tenant_id);
    let c = second.control();
    assert!(c.cross_tenant_partner(LITWARE_TENANT_ID).is_none());
    c.set_cross_tenant_partner(LITWARE_TENANT_ID, json!({"isServiceProvider": true}));
    assert_eq!(
        c.cross_tenant_partner(LITWARE_TENANT_ID).unwrap()["isServiceProvider"],
        true
    );
}
