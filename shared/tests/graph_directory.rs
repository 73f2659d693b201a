//! The Graph directory adapter against the dev tenant: tokens through azure_identity over
//! TLS, every directory operation, OData safety, failure classes and retries, and a bulk run
//! under Graph's write limit.

use std::collections::HashMap;
use std::time::Duration;

use b2b::adapters::graph::{GraphClient, GraphDirectory, RetryPolicy, build_credential};
use b2b::adapters::http::build_client;
use b2b::config::AzureConfig;
use b2b::error::{Classify, FailureClass};
use b2b::ports::directory::{
    AppRoleRef, Applied, Directory, DirectoryError, GUEST_INVITER_ROLE, InvitationRequest,
    UserPatch,
};
use b2b_dev_tenant::{
    DevTenant, DevTenantOptions, Fault, FaultKind, GroupKind, NewGroup, NewUser, UserType,
    WriteLimit,
};
use futures::StreamExt;
use tokio::time::Instant;

struct Setup {
    tenant: DevTenant,
    _state: tempfile::TempDir,
}

async fn start(limit: Option<WriteLimit>) -> Setup {
    let state = tempfile::tempdir().unwrap();
    let mut options = DevTenantOptions::new(state.path());
    options.write_limit = Some(limit.unwrap_or_else(WriteLimit::unlimited));
    let tenant = DevTenant::start(options).await.unwrap();
    Setup {
        tenant,
        _state: state,
    }
}

fn azure_config(tenant: &DevTenant, overrides: &[(&str, &str)]) -> AzureConfig {
    let mut env: HashMap<String, String> = tenant.env().into_iter().collect();
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    AzureConfig::require(&env).unwrap()
}

fn client_for(cfg: &AzureConfig, retry: RetryPolicy) -> GraphClient {
    let http = build_client(cfg.extra_ca_certs.as_deref()).unwrap();
    let credential = build_credential(cfg, None, &http, None).unwrap();
    GraphClient::new(
        http,
        &cfg.graph_base_url,
        credential,
        cfg.max_writes_per_second,
        None,
        retry,
    )
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(400),
    }
}

impl Setup {
    fn directory(&self, budget: Duration) -> GraphDirectory {
        client_for(&azure_config(&self.tenant, &[]), fast_retries())
            .directory(Instant::now() + budget)
    }
}

fn invitation(email: &str) -> InvitationRequest {
    InvitationRequest {
        email: email.to_string(),
        display_name: None,
        redirect_url: "https://myapplications.microsoft.com".into(),
        send_invitation_message: false,
        message: None,
        reset_redemption_of: None,
    }
}

fn invitation_posts(setup: &Setup) -> usize {
    setup
        .tenant
        .control()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/invitations"))
        .count()
}

#[tokio::test]
async fn token_over_tls_trusted_only_through_extra_ca() {
    let setup = start(None).await;
    let cfg = azure_config(&setup.tenant, &[]);
    let domains = setup
        .directory(Duration::from_secs(10))
        .verified_domains()
        .await
        .unwrap();
    assert!(!domains.is_empty());

    // Without the extra root the dev tenant's certificate is not trusted.
    let mut untrusted = cfg.clone();
    untrusted.extra_ca_certs = None;
    let err = client_for(
        &untrusted,
        RetryPolicy {
            max_attempts: 1,
            ..fast_retries()
        },
    )
    .directory(Instant::now() + Duration::from_secs(5))
    .verified_domains()
    .await
    .unwrap_err();
    assert_eq!(err.class(), FailureClass::Transient, "{err}");
}

#[tokio::test]
async fn wrong_secret_is_our_outage_named_with_its_fix_and_fast() {
    let setup = start(None).await;
    let cfg = azure_config(&setup.tenant, &[("AZURE_CLIENT_SECRET", "not-the-secret")]);
    let started = std::time::Instant::now();
    let err = client_for(&cfg, RetryPolicy::default())
        .directory(Instant::now() + Duration::from_secs(60))
        .verified_domains()
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Never a refusal of anyone: the unit is retried once the credential is fixed.
    assert_eq!(err.class(), FailureClass::Transient, "{err}");
    match &err {
        DirectoryError::AccessDenied { code, message, fix } => {
            assert_eq!(code, "AADSTS7000215", "{message}");
            assert!(fix.contains("secret"), "{fix}");
            assert!(!message.contains("not-the-secret"));
        }
        other => panic!("expected our access refused, got {other:?}"),
    }
}

#[tokio::test]
async fn invitations_and_users() {
    let setup = start(None).await;
    let d = setup.directory(Duration::from_secs(20));
    let first = d.invite(&invitation("sam@litware.com")).await.unwrap();
    assert!(first.redeem_url.starts_with("https://"));
    assert_eq!(first.status, "PendingAcceptance");
    // Inviting the same address again is the same guest.
    let again = d.invite(&invitation("sam@litware.com")).await.unwrap();
    assert_eq!(again.user_id, first.user_id);

    let found = d
        .find_user_by_email("sam@litware.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, first.user_id);
    assert!(found.is_pending());
    assert_eq!(found.user_type.as_deref(), Some("Guest"));
    assert!(
        d.find_user_by_email("nobody@litware.com")
            .await
            .unwrap()
            .is_none()
    );

    let by_id = d.get_user(&first.user_id).await.unwrap().unwrap();
    let upn = by_id.user_principal_name.clone().unwrap();
    assert!(upn.contains("#EXT#"), "{upn}");
    // A UPN with '#' must reach Graph encoded, or it is cut at the fragment.
    assert_eq!(d.get_user(&upn).await.unwrap().unwrap().id, first.user_id);
    assert!(
        d.get_user("00000000-0000-0000-0000-000000000001")
            .await
            .unwrap()
            .is_none()
    );

    d.update_user(
        &first.user_id,
        &UserPatch {
            company_name: Some("Litware Inc.".into()),
            department: Some("Sales".into()),
            ..UserPatch::default()
        },
    )
    .await
    .unwrap();
    let user = setup.tenant.control().user(&first.user_id).unwrap();
    assert_eq!(user.company_name.as_deref(), Some("Litware Inc."));
    assert_eq!(user.department.as_deref(), Some("Sales"));

    // Re-invitation with reset redemption keeps the user.
    let mut reset = invitation("sam@litware.com");
    reset.reset_redemption_of = Some(first.user_id.clone());
    assert_eq!(d.invite(&reset).await.unwrap().user_id, first.user_id);

    d.disable_user(&first.user_id).await.unwrap();
    assert!(
        !setup
            .tenant
            .control()
            .user(&first.user_id)
            .unwrap()
            .account_enabled
    );
    d.delete_user(&first.user_id).await.unwrap();
    assert!(setup.tenant.control().user(&first.user_id).is_none());
    // Deleting what is gone is done.
    d.delete_user(&first.user_id).await.unwrap();
}

#[tokio::test]
async fn refusals_keep_graphs_code_and_are_not_retried() {
    let setup = start(None).await;
    let d = setup.directory(Duration::from_secs(20));
    let domain = d.verified_domains().await.unwrap()[0].clone();
    let before = invitation_posts(&setup);
    let err = d
        .invite(&invitation(&format!("someone@{domain}")))
        .await
        .unwrap_err();
    match &err {
        DirectoryError::Permanent {
            status: 400,
            message,
            ..
        } => {
            assert!(message.contains("verified domain"), "{message}")
        }
        other => panic!("expected a permanent 400, got {other:?}"),
    }
    assert_eq!(
        invitation_posts(&setup),
        before + 1,
        "a permanent 400 is not retried"
    );
}

#[tokio::test]
async fn grants_and_their_already_there_cases() {
    let setup = start(None).await;
    let control = setup.tenant.control();
    let d = setup.directory(Duration::from_secs(20));
    let guest = d
        .invite(&invitation("kim@litware.com"))
        .await
        .unwrap()
        .user_id;
    let sponsor = control.add_user(NewUser {
        display_name: "Ada Sponsor".into(),
        mail: "ada@contoso.com".into(),
        user_type: UserType::Member,
        ..NewUser::default()
    });
    let assigned = control.add_group(NewGroup {
        display_name: "Partners".into(),
        kind: GroupKind::Assigned,
        membership_rule: None,
    });
    let dynamic = control.add_group(NewGroup {
        display_name: "All guests".into(),
        kind: GroupKind::Dynamic,
        membership_rule: None,
    });
    let synced = control.add_group(NewGroup {
        display_name: "On-prem".into(),
        kind: GroupKind::Synced,
        membership_rule: None,
    });
    let distribution = control.add_group(NewGroup {
        display_name: "Newsletter".into(),
        kind: GroupKind::Distribution,
        membership_rule: None,
    });
    let mail_security = control.add_group(NewGroup {
        display_name: "Finance mail".into(),
        kind: GroupKind::MailEnabledSecurity,
        membership_rule: None,
    });
    let app = control.add_service_principal("Portal", [("Reader", "Reader")]);
    let role = AppRoleRef {
        resource_id: app.id.clone(),
        app_role_id: app.role_id("Reader").unwrap().to_string(),
    };

    assert_eq!(
        d.add_group_member(&assigned.id, &guest).await.unwrap(),
        Applied::Done
    );
    assert_eq!(
        d.add_group_member(&assigned.id, &guest).await.unwrap(),
        Applied::AlreadyPresent
    );
    assert_eq!(control.group_members(&assigned.id), vec![guest.clone()]);

    control.clear_requests();
    for group in [&dynamic.id, &synced.id, &distribution.id, &mail_security.id] {
        let err = d.add_group_member(group, &guest).await.unwrap_err();
        assert!(
            matches!(&err, DirectoryError::Permanent { code, .. } if code == "GroupRefusesMembers"),
            "{err:?}"
        );
    }
    assert!(
        control.requests().iter().all(|r| !r.is_write),
        "refused before calling Graph"
    );
    let missing = d
        .add_group_member("00000000-0000-0000-0000-00000000abcd", &guest)
        .await
        .unwrap_err();
    assert_eq!(missing.class(), FailureClass::Permanent);

    assert_eq!(
        d.assign_app_role(&guest, &role).await.unwrap(),
        Applied::Done
    );
    assert_eq!(
        d.assign_app_role(&guest, &role).await.unwrap(),
        Applied::AlreadyPresent
    );
    assert_eq!(control.app_role_assignments(&app.id).len(), 1);

    assert!(
        !d.has_directory_role(&guest, GUEST_INVITER_ROLE)
            .await
            .unwrap()
    );
    assert_eq!(
        d.assign_directory_role(&guest, GUEST_INVITER_ROLE)
            .await
            .unwrap(),
        Applied::Done
    );
    assert!(
        d.has_directory_role(&guest, GUEST_INVITER_ROLE)
            .await
            .unwrap()
    );
    assert_eq!(
        d.assign_directory_role(&guest, GUEST_INVITER_ROLE)
            .await
            .unwrap(),
        Applied::AlreadyPresent
    );
    assert_eq!(control.role_assignments().len(), 1);

    assert_eq!(
        d.add_sponsor(&guest, &sponsor.id).await.unwrap(),
        Applied::Done
    );
    assert_eq!(
        d.add_sponsor(&guest, &sponsor.id).await.unwrap(),
        Applied::AlreadyPresent
    );
    assert_eq!(control.sponsors(&guest), vec![sponsor.id.clone()]);
}

#[tokio::test]
async fn pending_guests_come_page_by_page() {
    let setup = start(None).await;
    let control = setup.tenant.control();
    for i in 0..2100 {
        control.add_user(NewUser {
            display_name: format!("Guest {i}"),
            mail: format!("guest{i}@fabrikam.com"),
            user_type: UserType::Guest,
            ..NewUser::default()
        });
    }
    let accepted = control.add_user(NewUser {
        display_name: "Redeemed".into(),
        mail: "done@fabrikam.com".into(),
        user_type: UserType::Guest,
        ..NewUser::default()
    });
    control.redeem(&accepted.id).unwrap();
    let d = setup.directory(Duration::from_secs(30));
    let pages: Vec<_> = d.pending_guests(None).collect().await;
    assert_eq!(pages.len(), 3, "999 + 999 + 102");
    let mut ids = std::collections::HashSet::new();
    for page in &pages {
        let page = page.as_ref().unwrap();
        for u in &page.users {
            assert!(u.is_pending());
            assert!(u.created_date_time.is_some());
            assert!(ids.insert(u.id.clone()), "no guest twice");
        }
    }
    assert_eq!(ids.len(), 2100);
    assert!(pages[2].as_ref().unwrap().next.is_none());

    // Resuming from a saved link reads the rest only.
    let link = pages[0].as_ref().unwrap().next.clone().unwrap();
    let rest: Vec<_> = d.pending_guests(Some(link)).collect().await;
    assert_eq!(rest.len(), 2);
    // A link pointing elsewhere is refused, so the token never leaves for another host.
    let forged: Vec<_> = d
        .pending_guests(Some("https://evil.example/v1.0/users?$skiptoken=x".into()))
        .collect()
        .await;
    assert_eq!(forged.len(), 1);
    assert_eq!(
        forged[0].as_ref().unwrap_err().class(),
        FailureClass::Permanent
    );
}

#[tokio::test]
async fn hostile_addresses_never_change_the_filter() {
    let setup = start(None).await;
    let control = setup.tenant.control();
    let d = setup.directory(Duration::from_secs(20));
    let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(252));
    assert!(long.len() >= 320);
    let hostile = [
        "o'brien@litware.com",
        "x' or mail eq 'sam@litware.com",
        "a%b@litware.com",
        "a&b=c@litware.com",
        "a+b#c@litware.com",
        "jö@bücher.example",
        "')/any(x:x eq '",
        long.as_str(),
    ];
    control.add_user(NewUser {
        display_name: "Sam".into(),
        mail: "sam@litware.com".into(),
        user_type: UserType::Guest,
        ..NewUser::default()
    });
    for address in hostile {
        control.clear_requests();
        let found = d.find_user_by_email(address).await.unwrap();
        assert!(found.is_none(), "{address} matched {found:?}");
        let query = control
            .requests()
            .into_iter()
            .find(|r| r.path == "/v1.0/users")
            .and_then(|r| r.query)
            .unwrap();
        let quoted = address.replace('\'', "''");
        let expected = match quoted.rsplit_once('@') {
            Some((local, domain)) => format!(
                "$filter=mail eq '{quoted}' or startswith(userPrincipalName,'{local}_{domain}#EXT#@')"
            ),
            None => format!("$filter=mail eq '{quoted}'"),
        };
        assert!(
            query.starts_with(&expected),
            "the filter Graph received differs:\n{query}\n{expected}"
        );
    }
    // The apostrophe address itself is found when it exists.
    control.add_user(NewUser {
        display_name: "O'Brien".into(),
        mail: "o'brien@litware.com".into(),
        user_type: UserType::Guest,
        ..NewUser::default()
    });
    assert!(
        d.find_user_by_email("o'brien@litware.com")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn throttling_with_retry_after_is_waited_out() {
    let setup = start(None).await;
    let d = setup.directory(Duration::from_secs(20));
    setup.tenant.control().inject(
        Fault::new(FaultKind::TooManyRequests {
            retry_after: Some(1.5),
        })
        .on("POST", "/v1.0/invitations"),
    );
    let started = std::time::Instant::now();
    d.invite(&invitation("wait@litware.com")).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(invitation_posts(&setup), 2);

    // A Retry-After longer than the deadline is not waited for: the caller gets it back.
    setup.tenant.control().inject(
        Fault::new(FaultKind::TooManyRequests {
            retry_after: Some(30.0),
        })
        .on("POST", "/v1.0/invitations"),
    );
    let short = setup.directory(Duration::from_secs(2));
    let started = std::time::Instant::now();
    let err = short
        .invite(&invitation("late@litware.com"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), FailureClass::Throttled);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn throttling_without_retry_after_backs_off() {
    let setup = start(None).await;
    let d = setup.directory(Duration::from_secs(20));
    setup.tenant.control().inject(
        Fault::new(FaultKind::TooManyRequests { retry_after: None })
            .on("POST", "/v1.0/invitations")
            .times(3),
    );
    d.invite(&invitation("backoff@litware.com")).await.unwrap();
    let times: Vec<_> = setup
        .tenant
        .control()
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/invitations"))
        .map(|r| (r.status, r.at))
        .collect();
    assert_eq!(
        times.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![429, 429, 429, 201]
    );
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_retried_but_no_invitation_is_sent_twice() {
    let setup = start(None).await;
    let d = setup.directory(Duration::from_secs(20));
    let control = setup.tenant.control();
    let a = d.invite(&invitation("a@litware.com")).await.unwrap();
    // Reads and idempotent writes are sent again.
    control.inject(Fault::new(FaultKind::ServerError(503)).on("GET", "/v1.0/users/"));
    assert!(d.get_user(&a.user_id).await.unwrap().is_some());
    control.inject(Fault::new(FaultKind::DropConnection).on("PATCH", "/v1.0/users/"));
    let patch = UserPatch {
        department: Some("Engineering".into()),
        ..UserPatch::default()
    };
    d.update_user(&a.user_id, &patch).await.unwrap();
    // An invitation that may have been carried out is the caller's to look up first.
    control.inject(Fault::new(FaultKind::ServerError(503)).on("POST", "/v1.0/invitations"));
    let err = d.invite(&invitation("b@litware.com")).await.unwrap_err();
    assert!(matches!(err, DirectoryError::Unanswered(_)), "{err:?}");
    control.inject(Fault::new(FaultKind::AnswerLost).on("POST", "/v1.0/invitations"));
    let err = d.invite(&invitation("c@litware.com")).await.unwrap_err();
    assert!(matches!(err, DirectoryError::Unanswered(_)), "{err:?}");
    assert!(
        control.user("c@litware.com").is_some(),
        "carried out all the same"
    );
    let statuses: Vec<u16> = control
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/invitations"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![201, 503, 0]);
}

#[tokio::test]
async fn abuse_block_is_blocked_and_never_retried() {
    let setup = start(None).await;
    let d = setup.directory(Duration::from_secs(20));
    setup
        .tenant
        .control()
        .inject(Fault::new(FaultKind::AbuseBlock));
    let err = d.invite(&invitation("c@litware.com")).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Blocked, "{err:?}");
    assert_eq!(invitation_posts(&setup), 1);
}

#[tokio::test]
async fn bulk_invitations_ride_the_write_limit() {
    let setup = start(Some(WriteLimit {
        writes: 20,
        per: Duration::from_secs(1),
    }))
    .await;
    let cfg = azure_config(&setup.tenant, &[("GRAPH_MAX_WRITES_PER_SECOND", "20")]);
    let client = client_for(&cfg, RetryPolicy::default());
    let d = client.directory(Instant::now() + Duration::from_secs(120));
    let results: Vec<_> = futures::stream::iter(0..400)
        .map(|i| {
            let d = d.clone();
            async move {
                d.invite(&invitation(&format!("bulk{i}@fabrikam.com")))
                    .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    let guests: Vec<_> = setup
        .tenant
        .control()
        .users()
        .into_iter()
        .filter(|u| u.mail.as_deref().is_some_and(|m| m.starts_with("bulk")))
        .collect();
    assert_eq!(guests.len(), 400, "each exactly once");
    let mut mails: Vec<_> = guests.iter().map(|u| u.mail.clone().unwrap()).collect();
    mails.sort();
    mails.dedup();
    assert_eq!(mails.len(), 400);
}
