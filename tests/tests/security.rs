//! Security end to end: event keys nobody else can take, and members of the tenant that no
//! partner event or request can change. The compiled binaries, against the dev tenant.

use std::time::Duration;

use anyhow::{Context, ensure};
use b2b::ports::ledger::{EventKey, EventStatus, InviteeResult};
use b2b_dev_tenant::{API_CLIENT_ID, GUEST_INVITER_ROLE, MintToken, NewUser, User, UserType};
use b2b_e2e::checks::{app_role, batch_failures, group_id, http_answer, user_id};
use b2b_e2e::events::{cloud_event, sqs_event};
use b2b_e2e::{FunctionProcess, TestEnv};
use serde_json::{Value, json};

const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);
const CONTRACTS: &str = "urn:contracts:crm";

async fn environment() -> anyhow::Result<TestEnv> {
    TestEnv::builder()
        .var("API_AUDIENCE", API_CLIENT_ID)
        .start()
        .await
}

/// A v2.0 user token for the product's API, as Entra issues it.
fn bearer(env: &TestEnv, user: &str, body: &str) -> anyhow::Result<Value> {
    let token = env.control().mint_token(MintToken::new(user, ""))?;
    Ok(b2b_e2e::events::bearer_request(&token, body))
}

async fn call(function: &FunctionProcess, request: Value) -> anyhow::Result<(u16, Value)> {
    let answer = function.invoke(request, INVOKE_TIMEOUT).await?;
    let (status, _, body) = http_answer(&answer)?;
    Ok((status, body))
}

fn contract(id: &str, data: Value) -> String {
    cloud_event("partner.signed", CONTRACTS, id, data)
}

#[tokio::test]
async fn a_refused_request_cannot_take_the_key_of_another_systems_event() -> anyhow::Result<()> {
    let env = environment().await?;
    let control = env.control();
    let partners_group = group_id(&control, "Partners")?;
    let data = json!({
        "partner": { "id": "litware", "name": "Litware Inc.", "domains": ["litware.com"] },
        "contacts": [ { "email": "sam@litware.com", "displayName": "Sam Lee", "inviter": true } ],
        "access": { "groups": [partners_group] },
    });

    // A member who is no inviter takes the contract system's next key, twice: once as a
    // self-service request, once with the contract event's own type.
    let requester = env.spawn("guest-inviter-request").await?;
    let squat = cloud_event(
        "guest.invite.requested",
        CONTRACTS,
        "contract-2001",
        json!({
            "requestedBy": "megan.bowen@contoso.com",
            "invitees": [ { "email": "ann@litware.com" } ],
        }),
    );
    let (status, answer) =
        call(&requester, bearer(&env, "megan.bowen@contoso.com", &squat)?).await?;
    ensure!(status == 403, "the squatting request: {status} {answer}");
    let (status, answer) = call(
        &requester,
        bearer(
            &env,
            "megan.bowen@contoso.com",
            &contract("contract-2001", data.clone()),
        )?,
    )
    .await?;
    ensure!(status == 400, "a partner.signed body: {status} {answer}");
    requester.stop().await;

    // The contract system's real event with that key is carried out.
    let signed = env.spawn("partner-signed").await?;
    let real = contract("contract-2001", data);
    let answer = signed
        .invoke(sqs_event(&[("m-1", &real)]), INVOKE_TIMEOUT)
        .await?;
    ensure!(batch_failures(&answer)?.is_empty(), "{answer}");
    signed.stop().await;
    let sam = control
        .user("sam@litware.com")
        .context("the real event invited nobody")?;
    ensure!(
        control.group_members(&partners_group).contains(&sam.id),
        "Sam lacks the agreed access"
    );
    let record = env
        .ledger()
        .await?
        .event(&EventKey::new("partner-signed", CONTRACTS, "contract-2001"))
        .await?
        .context("the real event left no record")?;
    ensure!(
        record.status == EventStatus::Completed && record.outcomes.len() == 1,
        "{record:?}"
    );
    ensure!(
        record.outcomes[0].result == InviteeResult::Invited,
        "{record:?}"
    );
    Ok(())
}

/// Everything about a user that a partner event could change.
fn footprint(env: &TestEnv, user: &User, groups: &[&str], app: &str) -> Value {
    let control = env.control();
    json!({
        "user": control.user(&user.id),
        "groups": groups.iter().filter(|g| control.group_members(g).contains(&user.id)).collect::<Vec<_>>(),
        "appRoles": control.app_role_assignments(app).into_iter().filter(|a| a.principal_id == user.id).count(),
        "directoryRoles": control.role_assignments().into_iter().filter(|r| r.principal_id == user.id).count(),
        "sponsors": control.sponsors(&user.id),
    })
}

#[tokio::test]
async fn a_member_listing_a_partner_address_is_never_changed() -> anyhow::Result<()> {
    let env = environment().await?;
    let control = env.control();
    let partners_group = group_id(&control, "Partners")?;
    let portal = app_role(&control, "Partner Portal", "Portal.Reader")?;
    // Members may add addresses to their own profile.
    let bob = control.add_user(NewUser {
        display_name: "Bob Member".into(),
        mail: "bob@contoso.com".into(),
        user_type: UserType::Member,
        other_mails: vec!["ann@litware.com".into()],
        ..NewUser::default()
    });
    let before = footprint(&env, &bob, &[&partners_group], &portal.0);
    ensure!(
        before["groups"] == json!([]) && before["directoryRoles"] == 0,
        "{before}"
    );

    let signed = env.spawn("partner-signed").await?;
    let event = contract(
        "contract-3001",
        json!({
            "partner": { "id": "litware", "name": "Litware Inc.", "domains": ["litware.com"] },
            "contacts": [
                { "email": "sam@litware.com", "displayName": "Sam Lee", "inviter": true },
                { "email": "ann@litware.com", "displayName": "Ann Partner", "inviter": true },
            ],
            "access": {
                "groups": [partners_group],
                "appRoles": [ { "resourceId": portal.0, "appRoleId": portal.1 } ],
            },
            "sponsors": ["megan.bowen@contoso.com"],
        }),
    );
    let answer = signed
        .invoke(sqs_event(&[("m-1", &event)]), INVOKE_TIMEOUT)
        .await?;
    ensure!(batch_failures(&answer)?.is_empty(), "{answer}");
    signed.stop().await;
    ensure!(
        footprint(&env, &bob, &[&partners_group], &portal.0) == before,
        "partner.signed changed the member"
    );
    let record = env
        .ledger()
        .await?
        .event(&EventKey::new("partner-signed", CONTRACTS, "contract-3001"))
        .await?
        .context("no record of the contract")?;
    let ann = record
        .outcomes
        .iter()
        .find(|o| o.email == "ann@litware.com")
        .context("no outcome for Ann")?;
    ensure!(
        ann.result == InviteeResult::Rejected && ann.user_id.is_none(),
        "{ann:?}"
    );
    let reason = ann.reason.as_deref().unwrap_or("");
    ensure!(
        reason.contains(&bob.id),
        "the reason must name the user: {reason}"
    );
    let sam = user_id(&control, "sam@litware.com")?;
    ensure!(
        control
            .role_assignments()
            .iter()
            .any(|r| r.principal_id == sam && r.role_definition_id == GUEST_INVITER_ROLE),
        "the other inviter was onboarded"
    );

    // Litware's inviter asks for the same address through self-service.
    let requester = env.spawn("guest-inviter-request").await?;
    let request = cloud_event(
        "guest.invite.requested",
        "urn:litware:portal",
        "req-3001",
        json!({
            "requestedBy": "sam@litware.com",
            "invitees": [ { "email": "ann@litware.com", "displayName": "Ann Partner" } ],
        }),
    );
    let (status, answer) = call(&requester, bearer(&env, "sam@litware.com", &request)?).await?;
    requester.stop().await;
    ensure!(status == 200, "{status} {answer}");
    ensure!(
        answer["outcomes"][0]["result"] == "rejected",
        "self-service answer: {answer}"
    );
    ensure!(
        footprint(&env, &bob, &[&partners_group], &portal.0) == before,
        "self-service changed the member"
    );
    Ok(())
}
