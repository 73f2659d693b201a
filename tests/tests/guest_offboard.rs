//! The other end of the lifecycle (SPEC section 2, `partner.ended` and `hr.record.ended`),
//! end to end through the guest-offboard, partner-signed, hr-record-added,
//! guest-inviter-request and resend-stale binaries.

use std::time::Duration;

use anyhow::{Context, ensure};
use b2b::ports::directory::GUEST_INVITER_ROLE;
use b2b::ports::ledger::{EventKey, EventStatus, InviteeResult};
use b2b_dev_tenant::{API_CLIENT_ID, Control, MintToken};
use b2b_e2e::checks::{app_role, batch_failures, group_id, http_answer, user_id};
use b2b_e2e::events::{cloud_event, scheduled_event, sqs_event};
use b2b_e2e::{FunctionProcess, LedgerKind, Profile, TestEnv, binary_path};
use serde_json::{Value, json};

const CONTRACTS: &str = "urn:contracts:crm";
const HR: &str = "https://hr.contoso.com";
const T: Duration = Duration::from_secs(60);

async fn deliver(function: &FunctionProcess, id: &str, body: &str) -> anyhow::Result<()> {
    let answer = function.invoke(sqs_event(&[(id, body)]), T).await?;
    ensure!(
        batch_failures(&answer)?.is_empty(),
        "{answer}\n{}",
        function.output().text()
    );
    Ok(())
}

fn signed(
    control: &Control,
    partner: &str,
    contract: &str,
    contacts: &[(&str, bool)],
) -> anyhow::Result<String> {
    let portal = app_role(control, "Partner Portal", "Portal.Reader")?;
    let contacts: Vec<Value> = contacts
        .iter()
        .map(|(email, inviter)| json!({ "email": email, "inviter": inviter }))
        .collect();
    Ok(cloud_event(
        "partner.signed",
        CONTRACTS,
        contract,
        json!({
            "partner": { "id": partner, "name": partner, "domains": ["litware.com"] },
            "contacts": contacts,
            "access": {
                "groups": [group_id(control, "Partners")?],
                "appRoles": [ { "resourceId": portal.0, "appRoleId": portal.1 } ],
            },
            "sponsors": ["megan.bowen@contoso.com"],
        }),
    ))
}

fn ended(partner: &str, action: &str) -> String {
    cloud_event(
        "partner.ended",
        CONTRACTS,
        &format!("{partner}-end"),
        json!({ "partner": { "id": partner }, "action": action }),
    )
}

struct Access {
    group: bool,
    app_role: bool,
    inviter: bool,
    sponsors: usize,
    enabled: bool,
}

fn access(control: &Control, email: &str) -> anyhow::Result<Access> {
    let user = control.user(email).context("no such user")?;
    let portal = app_role(control, "Partner Portal", "Portal.Reader")?;
    Ok(Access {
        group: control
            .group_members(&group_id(control, "Partners")?)
            .contains(&user.id),
        app_role: control
            .app_role_assignments(&portal.0)
            .iter()
            .any(|a| a.principal_id == user.id && a.app_role_id == portal.1),
        inviter: control
            .role_assignments()
            .iter()
            .any(|r| r.principal_id == user.id && r.role_definition_id == GUEST_INVITER_ROLE),
        sponsors: control.sponsors(&user.id).len(),
        enabled: user.account_enabled,
    })
}

fn self_service(env: &TestEnv, id: &str) -> anyhow::Result<Value> {
    let token = env
        .control()
        .mint_token(MintToken::new("sam@litware.com", API_CLIENT_ID))?;
    let body = cloud_event(
        "guest.invite.requested",
        "https://portal.litware.com",
        id,
        json!({ "requestedBy": "sam@litware.com", "invitees": [ { "email": format!("{id}@litware.com") } ] }),
    );
    Ok(b2b_e2e::events::bearer_request(&token, &body))
}

#[tokio::test]
async fn a_partner_ending_with_revoke_takes_its_access_and_its_inviters_right_to_invite()
-> anyhow::Result<()> {
    let env = TestEnv::builder()
        .var("API_AUDIENCE", API_CLIENT_ID)
        .start()
        .await?;
    let control = env.control();
    let partner = env.spawn("partner-signed").await?;
    let contacts = [
        ("sam@litware.com", true),
        ("kim@litware.com", false),
        ("ann@litware.com", false),
    ];
    deliver(
        &partner,
        "m-1",
        &signed(&control, "litware", "c-1", &contacts)?,
    )
    .await?;
    partner.stop().await;
    let before = access(&control, "sam@litware.com")?;
    ensure!(
        before.group && before.app_role && before.inviter,
        "not granted"
    );

    // The inviter may invite while the contract stands.
    let requests = env.spawn("guest-inviter-request").await?;
    let (status, _, answer) =
        http_answer(&requests.invoke(self_service(&env, "first")?, T).await?)?;
    ensure!(status == 200, "{status}: {answer}");
    requests.stop().await;

    let offboard = env.spawn("guest-offboard").await?;
    deliver(&offboard, "m-2", &ended("litware", "revoke")).await?;
    offboard.stop().await;
    for (email, _) in contacts {
        let a = access(&control, email)?;
        ensure!(
            !a.group && !a.app_role && !a.inviter,
            "{email} keeps access"
        );
        ensure!(
            a.sponsors == 1 && a.enabled,
            "{email}: sponsors kept, account enabled"
        );
    }
    // The guest the inviter brought in for the partner lost the partner's access too.
    ensure!(
        !access(&control, "first@litware.com")?.group,
        "self-service guest keeps the group"
    );

    let requests = env.spawn("guest-inviter-request").await?;
    let (status, _, answer) =
        http_answer(&requests.invoke(self_service(&env, "second")?, T).await?)?;
    ensure!(status == 403, "{status}: {answer}");
    requests.stop().await;

    let ledger = env.ledger().await?;
    let record = ledger
        .event(&EventKey::new("guest-offboard", CONTRACTS, "litware-end"))
        .await?
        .context("no record")?;
    ensure!(
        record.status == EventStatus::Completed && record.outcomes.len() == 4,
        "{record:?}"
    );
    let sam = record
        .outcomes
        .iter()
        .find(|o| o.email == "sam@litware.com")
        .context("sam not in the record")?;
    ensure!(
        sam.result == InviteeResult::Ended && sam.granted.len() == 3,
        "{sam:?}"
    );
    let guest = ledger.guest("kim@litware.com").await?.context("no guest")?;
    ensure!(
        guest.ended.as_ref().is_some_and(|e| e.removed.len() == 2),
        "{guest:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_hr_end_in_the_future_waits_for_the_sweep_on_its_date() -> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let control = env.control();
    let group = group_id(&control, "Partners")?;
    let hr = env.spawn("hr-record-added").await?;
    let added = cloud_event(
        "hr.record.added",
        HR,
        "hr-E-1042",
        json!({
            "employeeId": "E-1042", "email": "jo@contractor.example", "displayName": "Jo Park",
            "manager": "alex.wilber@contoso.com", "access": { "groups": [group] },
        }),
    );
    deliver(&hr, "m-1", &added).await?;
    hr.stop().await;
    let jo = user_id(&control, "jo@contractor.example")?;
    ensure!(control.group_members(&group).contains(&jo), "not granted");

    let offboard = env.spawn("guest-offboard").await?;
    let end = cloud_event(
        "hr.record.ended",
        HR,
        "hr-E-1042-end",
        json!({ "employeeId": "E-1042", "email": "jo@contractor.example", "effective": "2027-06-30", "action": "disable" }),
    );
    deliver(&offboard, "m-2", &end).await?;
    offboard.stop().await;
    let still = access(&control, "jo@contractor.example")?;
    ensure!(still.group && still.enabled, "ended before its date");

    // The day before: nothing. On the day: disabled, and the group is gone.
    for (now, due) in [
        ("2027-06-29T08:00:00Z", false),
        ("2027-06-30T08:00:00Z", true),
    ] {
        let sweep = env.spawn_with("resend-stale", &[("B2B_NOW", now)]).await?;
        let answer = sweep.invoke(scheduled_event(), T).await?;
        sweep.stop().await;
        ensure!(
            answer["ends"]["carriedOut"] == u64::from(due),
            "{now}: {answer}"
        );
        let a = access(&control, "jo@contractor.example")?;
        ensure!(
            a.group != due && a.enabled != due,
            "{now}: group {} enabled {}",
            a.group,
            a.enabled
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_group_two_partners_gave_stays_when_one_ends() -> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let control = env.control();
    let partner = env.spawn("partner-signed").await?;
    deliver(
        &partner,
        "m-1",
        &signed(&control, "litware", "c-1", &[("sam@litware.com", false)])?,
    )
    .await?;
    deliver(
        &partner,
        "m-2",
        &signed(
            &control,
            "litware-holding",
            "c-2",
            &[("sam@litware.com", false)],
        )?,
    )
    .await?;
    partner.stop().await;
    let offboard = env.spawn("guest-offboard").await?;
    deliver(&offboard, "m-3", &ended("litware", "disable")).await?;
    offboard.stop().await;
    let a = access(&control, "sam@litware.com")?;
    // Both partners gave the group and the app role (the first added them, the second found
    // them there): they stay, and so does the account the other partner stands behind.
    ensure!(
        a.group && a.app_role,
        "what the other partner also gave was taken away"
    );
    ensure!(
        a.enabled,
        "disabled although another partner stands behind the guest"
    );

    // When that one ends too, they go: they were this product's.
    let offboard = env.spawn("guest-offboard").await?;
    deliver(&offboard, "m-4", &ended("litware-holding", "revoke")).await?;
    offboard.stop().await;
    let a = access(&control, "sam@litware.com")?;
    ensure!(
        !a.group && !a.app_role,
        "left behind after both partners ended"
    );
    Ok(())
}

#[tokio::test]
async fn duplicate_and_concurrent_ends_have_one_effect_and_a_dry_run_changes_nothing()
-> anyhow::Result<()> {
    let env = TestEnv::builder()
        .ledger(LedgerKind::Dynamo)
        .start()
        .await?;
    let control = env.control();
    let partner = env.spawn("partner-signed").await?;
    let contacts: Vec<(String, bool)> = (1..=6)
        .map(|i| (format!("c{i}@litware.com"), false))
        .collect();
    let contacts: Vec<(&str, bool)> = contacts.iter().map(|(e, i)| (e.as_str(), *i)).collect();
    deliver(
        &partner,
        "m-1",
        &signed(&control, "litware", "c-1", &contacts)?,
    )
    .await?;
    partner.stop().await;
    let group = group_id(&control, "Partners")?;
    ensure!(control.group_members(&group).len() == 6, "not granted");

    // A dry run through the CLI, against the same ledger and tenant: the plan, no change.
    let file = env.root().join("end.json");
    std::fs::write(&file, ended("litware", "disable"))?;
    let output = tokio::process::Command::new(binary_path("b2b-invites", Profile::Debug)?)
        .env_clear()
        .envs(env.vars().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--dry-run")
        .arg("run")
        .arg("--state")
        .arg(env.root().join("cli"))
        .arg(&file)
        .output()
        .await?;
    let out = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcome: Value = serde_json::from_str(&out)?;
    let planned = outcome["dryRun"]["plannedWrites"]
        .as_array()
        .context("no planned writes")?;
    let deletes = planned.iter().filter(|w| w["method"] == "DELETE").count();
    ensure!(deletes == 12, "{deletes} planned removals: {out}");
    ensure!(
        control.group_members(&group).len() == 6,
        "the dry run changed the tenant"
    );
    ensure!(
        control.users().iter().all(|u| u.account_enabled),
        "the dry run disabled"
    );

    // Two environments at once, then a redelivery.
    control.clear_requests();
    let (a, b) = tokio::try_join!(env.spawn("guest-offboard"), env.spawn("guest-offboard"))?;
    let body = ended("litware", "disable");
    let (ra, rb) = tokio::join!(
        a.invoke(sqs_event(&[("m-2", &body)]), T),
        b.invoke(sqs_event(&[("m-3", &body)]), T)
    );
    let failed = batch_failures(&ra?)?.len() + batch_failures(&rb?)?.len();
    // One of them may have found the other holding the event: its redelivery finds it done.
    for _ in 0..failed {
        tokio::time::sleep(Duration::from_secs(1)).await;
        deliver(&a, "m-4", &body).await?;
    }
    deliver(&b, "m-5", &body).await?;
    a.stop().await;
    b.stop().await;
    let writes: Vec<_> = control
        .requests()
        .into_iter()
        .filter(|r| r.is_write)
        .collect();
    let removals = writes.iter().filter(|r| r.method == "DELETE").count();
    let disables = writes.iter().filter(|r| r.method == "PATCH").count();
    ensure!(
        removals == 12 && disables == 6,
        "{removals} removals, {disables} disables"
    );
    ensure!(control.group_members(&group).is_empty(), "members left");
    Ok(())
}
