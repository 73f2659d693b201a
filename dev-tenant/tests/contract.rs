//! Field-by-field comparison of the dev tenant's answers with the documented Graph shapes
//! in tests/fixtures (copied from the project's Graph contract notes).

mod common;

use b2b_dev_tenant::{GUEST_INVITER_ROLE, GroupKind, NewGroup, NewUser, UserType};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every documented field is present with the documented JSON type (null matches any
/// type, as optional values are null in the examples); nested objects are compared too.
fn assert_same_shape(expected: &Value, actual: &Value, path: &str) {
    let (Value::Object(e), Value::Object(a)) = (expected, actual) else {
        panic!("{path}: expected an object, got {actual}");
    };
    for (k, ev) in e {
        let av = a
            .get(k)
            .unwrap_or_else(|| panic!("{path}.{k} missing in {actual}"));
        match (ev, av) {
            (Value::Null, _) | (_, Value::Null) => {}
            (Value::Object(_), _) => assert_same_shape(ev, av, &format!("{path}.{k}")),
            _ => assert_eq!(kind(ev), kind(av), "{path}.{k}: {av}"),
        }
    }
    for k in a.keys() {
        assert!(
            e.contains_key(k) || k.starts_with("@odata."),
            "{path}.{k} is not in the documented shape"
        );
    }
}

#[tokio::test]
async fn invitation_matches_the_documented_response() {
    let env = common::start().await;
    let token = env.token().await;
    let doc = fixture("invitation-response.json");
    let (s, v) = env.invite(&token, "a@fabrikam.com").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_same_shape(&doc, &v, "invitation");
    assert_eq!(v["status"], doc["status"]);
    assert_eq!(v["invitedUserType"], doc["invitedUserType"]);
    assert_eq!(v["invitedUserEmailAddress"], doc["invitedUserEmailAddress"]);
    assert_eq!(v["sendInvitationMessage"], false);
    assert_eq!(v["resetRedemption"], false);
    assert!(
        v["inviteRedeemUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://login.microsoftonline.com/redeem?rd=")
    );
    assert_eq!(
        v["invitedUser"]["userPrincipalName"],
        "a_fabrikam.com#EXT#@b2bdev.onmicrosoft.com"
    );

    // The guest exists as Graph creates it.
    let id = v["invitedUser"]["id"].as_str().unwrap().to_string();
    let select = "id,displayName,mail,otherMails,proxyAddresses,userPrincipalName,userType,creationType,externalUserState,externalUserStateChangeDateTime,createdDateTime,accountEnabled";
    let (s, _, u) = env
        .graph(
            &token,
            Method::GET,
            &format!("/users/{id}?$select={select}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(u["userType"], "Guest");
    assert_eq!(u["creationType"], "Invitation");
    assert_eq!(u["externalUserState"], "PendingAcceptance");
    assert_eq!(u["mail"], "a@fabrikam.com");
    assert_eq!(u["otherMails"], json!(["a@fabrikam.com"]));
    assert_eq!(u["proxyAddresses"], json!(["SMTP:a@fabrikam.com"]));
    assert_eq!(u["displayName"], "a");
    assert_eq!(u["accountEnabled"], true);
    let created = u["createdDateTime"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
            .is_ok()
    );
    assert!(created.ends_with('Z'));

    // Inviting again returns the same user with a fresh redeem URL.
    let (s, again) = env.invite(&token, "A@Fabrikam.com").await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(again["invitedUser"]["id"], id);
    assert_ne!(again["inviteRedeemUrl"], v["inviteRedeemUrl"]);
    assert_eq!(again["status"], "PendingAcceptance");
    env.tenant.control().redeem("a@fabrikam.com").unwrap();
    let (_, done) = env.invite(&token, "a@fabrikam.com").await;
    assert_eq!(done["status"], "Completed");
    assert!(
        env.tenant.control().sent_mail().is_empty(),
        "sendInvitationMessage was false"
    );
}

#[tokio::test]
async fn invitation_rules_and_errors() {
    let env = common::start().await;
    let token = env.token().await;
    let c = env.tenant.control();
    let doc = fixture("error-body.json");

    let member = c
        .users()
        .into_iter()
        .find(|u| u.user_type == UserType::Member)
        .unwrap();
    let (s, v) = env.invite(&token, member.mail.as_deref().unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_same_shape(&doc, &v, "error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "The invited user already exists in the directory as objectID: {}.",
            member.id
        )),
        "{msg}"
    );

    let (s, v) = env.invite(&token, "new.person@contoso.com").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("verified domain of this directory")
    );

    for bad in [
        "a+b@x.com",
        "a#b@x.com",
        "a b@x.com",
        ".a@x.com",
        "a-@x.com",
        "a@x",
        "nobody",
        "a,b@x.com",
    ] {
        let (s, v) = env.invite(&token, bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "BadRequest", "{bad}");
    }
    let (s, v) = env.invite(&token, "o'brien@fabrikam.com").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // Missing required fields.
    let (s, _, v) = env
        .graph(
            &token,
            Method::POST,
            "/invitations",
            Some(json!({"invitedUserEmailAddress": "z@x.com"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    common::assert_graph_error(&v, "BadRequest");

    // Sending the message records an email; the message and one cc are kept.
    let sponsor = member.id.clone();
    let (s, _, v) = env
        .graph(
            &token,
            Method::POST,
            "/invitations",
            Some(json!({
                "invitedUserEmailAddress": "sam@litware.com",
                "inviteRedirectUrl": "https://portal.contoso.com",
                "invitedUserDisplayName": "Sam Lee",
                "sendInvitationMessage": true,
                "invitedUserMessageInfo": {"customizedMessageBody": "Welcome", "ccRecipients": [{"emailAddress": {"address": "pm@contoso.com"}}]},
                "invitedUserSponsors": [{"id": sponsor}],
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let guest_id = v["invitedUser"]["id"].as_str().unwrap().to_string();
    let mail = c.sent_mail();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].to, "sam@litware.com");
    assert_eq!(mail[0].invited_user_id, guest_id);
    assert_eq!(mail[0].redeem_url, v["inviteRedeemUrl"].as_str().unwrap());
    assert_eq!(mail[0].message.as_deref(), Some("Welcome"));
    assert_eq!(c.sponsors(&guest_id), vec![sponsor.clone()]);
    assert_eq!(
        c.user(&guest_id).unwrap().display_name.as_deref(),
        Some("Sam Lee")
    );

    // resetRedemption keeps the id; a directory role holder cannot be reset by an app.
    c.redeem(&guest_id).unwrap();
    let reset = json!({
        "invitedUserEmailAddress": "sam@litware.com", "inviteRedirectUrl": "https://portal.contoso.com",
        "resetRedemption": true, "invitedUser": {"id": guest_id},
    });
    let (s, _, v) = env
        .graph(&token, Method::POST, "/invitations", Some(reset.clone()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["invitedUser"]["id"], guest_id);
    assert_eq!(v["status"], "PendingAcceptance");
    assert_eq!(
        c.user(&guest_id).unwrap().external_user_state,
        Some(b2b_dev_tenant::ExternalUserState::PendingAcceptance)
    );
    let (s, _, _) = env
        .graph(&token, Method::POST, "/roleManagement/directory/roleAssignments",
            Some(json!({"@odata.type": "#microsoft.graph.unifiedRoleAssignment", "roleDefinitionId": GUEST_INVITER_ROLE, "principalId": guest_id, "directoryScopeId": "/"})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, v) = env
        .graph(&token, Method::POST, "/invitations", Some(reset))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    common::assert_graph_error(&v, "Authorization_RequestDenied");
}

#[tokio::test]
async fn users_page_and_errors_match_the_documented_shapes() {
    let env = common::start().await;
    let token = env.token().await;
    for i in 0..3 {
        env.invite(&token, &format!("g{i}@fabrikam.com")).await;
    }
    let doc = fixture("users-page.json");
    let select = "id,displayName,mail,otherMails,userPrincipalName,userType,creationType,externalUserState,externalUserStateChangeDateTime,createdDateTime";
    let (s, h, v) = env
        .graph(&token, Method::GET, &format!("/users?$filter=externalUserState%20eq%20'PendingAcceptance'&$select={select}&$top=2"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(h.get("request-id").is_some() && h.get("client-request-id").is_some());
    assert_eq!(v["@odata.context"], doc["@odata.context"]);
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    for (e, a) in doc["value"]
        .as_array()
        .unwrap()
        .iter()
        .cycle()
        .zip(v["value"].as_array().unwrap())
    {
        assert_same_shape(e, a, "user");
        assert_eq!(a["externalUserState"], "PendingAcceptance");
    }
    let next = v["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{}/users?", env.tenant.graph_base_url())),
        "{next}"
    );
    assert!(next.contains("$skiptoken="));
    let (s, _, v2) = env.graph_url(&token, Method::GET, next, None).await;
    assert_eq!(s, StatusCode::OK, "{v2}");
    assert_eq!(v2["value"].as_array().unwrap().len(), 1);
    assert!(v2.get("@odata.nextLink").is_none());

    // Without $select, Graph's default property set (no externalUserState).
    let (_, _, v) = env.graph(&token, Method::GET, "/users?$top=1", None).await;
    let keys: Vec<&String> = v["value"][0].as_object().unwrap().keys().collect();
    let mut expected = vec![
        "businessPhones",
        "displayName",
        "givenName",
        "id",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
    ];
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(
        v["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#users"
    );

    // Errors: not found, $top out of range, unknown $select, the client-request-id echo.
    let errors = fixture("error-body.json");
    let (s, _, v) = env
        .graph(&token, Method::GET, "/users/nobody@fabrikam.com", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_same_shape(&errors, &v, "error");
    assert_eq!(v["error"]["code"], "Request_ResourceNotFound");
    assert_eq!(
        v["error"]["message"],
        "Resource 'nobody@fabrikam.com' does not exist or one of its queried reference-property objects are not present."
    );
    let (s, _, v) = env
        .graph(&token, Method::GET, "/users?$top=1000", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["error"]["message"],
        "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."
    );
    let (s, _, _) = env
        .graph(&token, Method::GET, "/users?$select=nope", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let r = env
        .http
        .get(format!("{}/users/missing", env.tenant.graph_base_url()))
        .bearer_auth(&token)
        .header("client-request-id", "11111111-2222-3333-4444-555555555555")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["client-request-id"],
        "11111111-2222-3333-4444-555555555555"
    );
    let request_id = r.headers()["request-id"].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["innerError"]["client-request-id"],
        "11111111-2222-3333-4444-555555555555"
    );
    assert_eq!(v["error"]["innerError"]["request-id"], request_id);

    // Lookup by UPN (with #EXT#, sent as %23), then PATCH and DELETE.
    let upn = "g0_fabrikam.com%23EXT%23@b2bdev.onmicrosoft.com";
    let (s, _, u) = env
        .graph(&token, Method::GET, &format!("/users/{upn}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    let id = u["id"].as_str().unwrap().to_string();
    let (s, _, _) = env
        .graph(&token, Method::PATCH, &format!("/users/{id}"), Some(json!({"accountEnabled": false, "companyName": "Fabrikam", "department": "Sales", "jobTitle": "Buyer", "employeeId": "E1"})))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let user = env.tenant.control().user(&id).unwrap();
    assert!(!user.account_enabled);
    assert_eq!(user.company_name.as_deref(), Some("Fabrikam"));
    let (s, _, v) = env
        .graph(
            &token,
            Method::PATCH,
            &format!("/users/{id}"),
            Some(json!({"favouriteColour": "blue"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    common::assert_graph_error(&v, "BadRequest");
    let (s, _, _) = env
        .graph(&token, Method::DELETE, &format!("/users/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(env.tenant.control().user(&id).is_none());
}

#[tokio::test]
async fn groups_sponsors_app_roles_and_directory_roles() {
    let env = common::start().await;
    let token = env.token().await;
    let c = env.tenant.control();
    let (_, inv) = env.invite(&token, "kim@litware.com").await;
    let guest = inv["invitedUser"]["id"].as_str().unwrap().to_string();
    let groups = c.groups();
    let by_kind = |k: GroupKind| groups.iter().find(|g| g.kind == k).unwrap().id.clone();
    let assigned = by_kind(GroupKind::Assigned);
    let reference =
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{guest}")});

    let path = format!("/groups/{assigned}/members/$ref");
    let (s, _, _) = env
        .graph(&token, Method::POST, &path, Some(reference.clone()))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, v) = env
        .graph(&token, Method::POST, &path, Some(reference.clone()))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "Request_BadRequest");
    assert_eq!(
        v["error"]["message"],
        "One or more added object references already exist for the following modified properties: 'members'."
    );
    for k in [GroupKind::Dynamic, GroupKind::Synced] {
        let (s, _, v) = env
            .graph(
                &token,
                Method::POST,
                &format!("/groups/{}/members/$ref", by_kind(k)),
                Some(reference.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{k:?}");
        assert_eq!(v["error"]["code"], "Request_BadRequest");
    }
    let ghost = json!({"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/6f1c0b9e-0000-0000-0000-000000000000"});
    let (s, _, _) = env.graph(&token, Method::POST, &path, Some(ghost)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(c.group_members(&assigned), vec![guest.clone()]);
    let (_, _, g) = env
        .graph(
            &token,
            Method::GET,
            &format!("/groups/{}", by_kind(GroupKind::Dynamic)),
            None,
        )
        .await;
    assert_eq!(g["groupTypes"], json!(["DynamicMembership"]));
    assert!(g["membershipRule"].is_string());
    let (_, _, g) = env
        .graph(
            &token,
            Method::GET,
            &format!("/groups/{}", by_kind(GroupKind::Synced)),
            None,
        )
        .await;
    assert_eq!(g["onPremisesSyncEnabled"], true);
    let (_, _, m) = env
        .graph(
            &token,
            Method::GET,
            &format!("/groups/{assigned}/members"),
            None,
        )
        .await;
    assert_eq!(m["value"][0]["id"], guest);
    assert_eq!(m["value"][0]["@odata.type"], "#microsoft.graph.user");

    // Sponsors.
    let sponsor = c
        .users()
        .into_iter()
        .find(|u| u.user_type == UserType::Member)
        .unwrap()
        .id;
    let sref = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/users/{sponsor}")});
    let spath = format!("/users/{guest}/sponsors/$ref");
    let (s, _, _) = env
        .graph(&token, Method::POST, &spath, Some(sref.clone()))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, v) = env.graph(&token, Method::POST, &spath, Some(sref)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["error"]["message"],
        "One or more added object references already exist for the following modified properties: 'sponsors'."
    );
    let (_, _, v) = env
        .graph(
            &token,
            Method::GET,
            &format!("/users/{guest}/sponsors"),
            None,
        )
        .await;
    assert_eq!(v["value"][0]["id"], sponsor);

    // App roles.
    let sp = c.add_service_principal(
        "Docs",
        [("Docs.Read", "Read docs"), ("Docs.Write", "Write docs")],
    );
    let role = sp.role_id("Docs.Read").unwrap().to_string();
    let body = json!({"principalId": guest, "resourceId": sp.id, "appRoleId": role});
    let apath = format!("/servicePrincipals/{}/appRoleAssignedTo", sp.id);
    let (s, _, v) = env
        .graph(&token, Method::POST, &apath, Some(body.clone()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for k in [
        "id",
        "appRoleId",
        "createdDateTime",
        "principalDisplayName",
        "principalId",
        "principalType",
        "resourceDisplayName",
        "resourceId",
    ] {
        assert!(!v[k].is_null(), "{k} in {v}");
    }
    assert_eq!(v["principalType"], "User");
    let (s, _, v) = env.graph(&token, Method::POST, &apath, Some(body)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["error"]["message"],
        "Permission being assigned already exists on the object."
    );
    let (s, _, _) = env
        .graph(&token, Method::POST, &apath, Some(json!({"principalId": guest, "resourceId": sp.id, "appRoleId": "8c0d5f1e-0000-0000-0000-000000000000"})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(c.app_role_assignments(&sp.id).len(), 1);

    // Directory roles.
    let rbody = json!({"@odata.type": "#microsoft.graph.unifiedRoleAssignment", "roleDefinitionId": GUEST_INVITER_ROLE, "principalId": guest, "directoryScopeId": "/"});
    let rpath = "/roleManagement/directory/roleAssignments";
    let (s, _, v) = env
        .graph(&token, Method::POST, rpath, Some(rbody.clone()))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["roleDefinitionId"], GUEST_INVITER_ROLE);
    assert_eq!(v["directoryScopeId"], "/");
    let (s, _, v) = env.graph(&token, Method::POST, rpath, Some(rbody)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["error"]["message"],
        "A conflicting object with one or more of the specified property values is present in the directory."
    );
    let filter = format!(
        "$filter=principalId%20eq%20'{guest}'%20and%20roleDefinitionId%20eq%20'{GUEST_INVITER_ROLE}'"
    );
    let (_, _, v) = env
        .graph(&token, Method::GET, &format!("{rpath}?{filter}"), None)
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    let (_, _, v) = env
        .graph(
            &token,
            Method::GET,
            &format!("{rpath}?$filter=principalId%20eq%20'{sponsor}'"),
            None,
        )
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
    assert_eq!(c.role_assignments().len(), 1);

    // Domains.
    let (_, _, v) = env.graph(&token, Method::GET, "/domains", None).await;
    let names: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"b2bdev.onmicrosoft.com") && names.contains(&"contoso.com"));
    let initial = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["isInitial"] == true)
        .unwrap();
    assert_eq!(initial["isVerified"], true);
}

#[tokio::test]
async fn token_responses_match_the_documented_shapes() {
    let env = common::start().await;
    let ok: Value = env
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
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_same_shape(&fixture("token-response.json"), &ok, "token");
    let err: Value = env
        .http
        .post(env.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env.tenant.client_id()),
            ("client_secret", &env.tenant.client_secret()),
            ("scope", "User.Read"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let doc = fixture("token-error.json");
    for (k, v) in doc.as_object().unwrap() {
        assert_eq!(kind(v), kind(&err[k]), "{k}: {err}");
    }
    assert_eq!(err["error"], doc["error"]);
}

#[tokio::test]
async fn seeding_through_control_is_visible_in_graph() {
    let env = common::start_with(b2b_dev_tenant::Seed::Empty, None).await;
    let token = env.token().await;
    let c = env.tenant.control();
    let created = time::macros::datetime!(2024-03-01 10:00 UTC);
    let g = c.add_user(NewUser {
        display_name: "Old Guest".into(),
        mail: "old@partner.example".into(),
        user_type: UserType::Guest,
        created_date_time: Some(created),
        ..NewUser::default()
    });
    assert_eq!(
        g.user_principal_name,
        "old_partner.example#EXT#@b2bdev.onmicrosoft.com"
    );
    let grp = c.add_group(NewGroup {
        display_name: "Sales".into(),
        ..NewGroup::default()
    });
    let (_, _, v) = env
        .graph(
            &token,
            Method::GET,
            &format!("/users/{}?$select=createdDateTime,externalUserState", g.id),
            None,
        )
        .await;
    assert_eq!(v["createdDateTime"], "2024-03-01T10:00:00Z");
    assert_eq!(v["externalUserState"], "PendingAcceptance");
    let (s, _, _) = env
        .graph(&token, Method::GET, &format!("/groups/{}", grp.id), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, v) = env.graph(&token, Method::GET, "/domains", None).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
}
