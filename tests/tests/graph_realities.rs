//! Graph as it behaves in production (SPEC 5.1), end to end: the compiled binaries against a
//! dev tenant with replication delay, refused credentials and permissions, lost answers,
//! cross-tenant blocks and lagging listings switched on.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use b2b::ports::directory::Delivery;
use b2b::ports::ledger::{
    EventKey, EventRecord, EventStatus, GuestRecord, GuestState, InviteeResult, Origin,
};
use b2b_dev_tenant::{Fault, FaultKind, GUEST_INVITER_ROLE, NewUser, UserType};
use b2b_e2e::checks::{app_role, batch_failures, group_id, invitation_posts};
use b2b_e2e::events::{cloud_event, scheduled_event, sqs_event};
use b2b_e2e::{FunctionProcess, Output, TestEnv};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

const INVOKE_TIMEOUT: Duration = Duration::from_secs(90);
const SOURCE: &str = "urn:contracts:crm";

/// A partner with one inviter, the Partners group, the portal app role and a sponsor.
fn contract(env: &TestEnv, id: &str, partner: &str, contacts: &[&str]) -> anyhow::Result<String> {
    let control = env.control();
    let portal = app_role(&control, "Partner Portal", "Portal.Reader")?;
    let domain = contacts[0].split('@').nth(1).unwrap_or_default();
    let contacts: Vec<Value> = contacts
        .iter()
        .enumerate()
        .map(|(i, email)| json!({ "email": email, "displayName": email, "inviter": i == 0 }))
        .collect();
    Ok(cloud_event(
        "partner.signed",
        SOURCE,
        id,
        json!({
            "partner": { "id": partner, "name": partner, "domains": [domain] },
            "contacts": contacts,
            "access": {
                "groups": [group_id(&control, "Partners")?],
                "appRoles": [ { "resourceId": portal.0, "appRoleId": portal.1 } ],
            },
            "sponsors": ["megan.bowen@contoso.com"],
        }),
    ))
}

async fn deliver(
    function: &FunctionProcess,
    messages: &[(&str, &str)],
) -> anyhow::Result<Vec<String>> {
    let answer = function.invoke(sqs_event(messages), INVOKE_TIMEOUT).await?;
    batch_failures(&answer)
}

async fn record(env: &TestEnv, id: &str) -> anyhow::Result<Option<EventRecord>> {
    Ok(env
        .ledger()
        .await?
        .event(&EventKey::new("partner-signed", SOURCE, id))
        .await?)
}

/// Every grant of the contract landed on the guest, and nothing was refused.
fn fully_onboarded(env: &TestEnv, record: &EventRecord, email: &str) -> anyhow::Result<()> {
    let control = env.control();
    let outcome = record
        .outcomes
        .iter()
        .find(|o| o.email == email)
        .with_context(|| format!("no outcome for {email}: {record:?}"))?;
    // A redelivery finds the guest its first delivery invited: "existed" for this record.
    ensure!(
        matches!(
            outcome.result,
            InviteeResult::Invited | InviteeResult::Existed
        ) && outcome.reason.is_none(),
        "{email}: {outcome:?}"
    );
    let user = outcome.user_id.clone().context("no user id")?;
    ensure!(
        control
            .group_members(&group_id(&control, "Partners")?)
            .contains(&user),
        "{email}: no group"
    );
    let portal = app_role(&control, "Partner Portal", "Portal.Reader")?;
    ensure!(
        control
            .app_role_assignments(&portal.0)
            .iter()
            .any(|a| a.principal_id == user),
        "{email}: no app role"
    );
    ensure!(control.sponsors(&user).len() == 1, "{email}: no sponsor");
    Ok(())
}

fn invitations_to(env: &TestEnv) -> BTreeMap<String, usize> {
    let mut per = BTreeMap::new();
    for mail in env.control().sent_mail() {
        *per.entry(mail.to.to_lowercase()).or_insert(0) += 1;
    }
    per
}

fn own_mails_to(env: &TestEnv) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut per = BTreeMap::new();
    for mail in env.outbox()? {
        for to in mail.to()? {
            *per.entry(to.to_lowercase()).or_insert(0) += 1;
        }
    }
    Ok(per)
}

fn logged(output: &Output, text: &str) -> bool {
    output.text().contains(text)
}

#[tokio::test]
async fn replication_delay_every_grant_sponsor_and_role_lands_with_one_email_each()
-> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    env.control()
        .set_replication_delay(Some(Duration::from_secs(4)));
    let body = contract(
        &env,
        "contract-r1",
        "litware",
        &["sam@litware.com", "kim@litware.com"],
    )?;
    let function = env.spawn("partner-signed").await?;
    let failures = deliver(&function, &[("m-1", &body)]).await?;
    ensure!(
        failures.is_empty(),
        "{failures:?}\n{}",
        function.output().text()
    );
    function.stop().await;
    let record = record(&env, "contract-r1").await?.context("no record")?;
    for email in ["sam@litware.com", "kim@litware.com"] {
        fully_onboarded(&env, &record, email)?;
    }
    ensure!(
        record
            .outcomes
            .iter()
            .all(|o| o.result == InviteeResult::Invited),
        "{record:?}"
    );
    let control = env.control();
    let sam = control.user("sam@litware.com").context("no Sam")?;
    ensure!(
        control
            .role_assignments()
            .iter()
            .any(|r| r.principal_id == sam.id && r.role_definition_id == GUEST_INVITER_ROLE),
        "Sam is no Guest Inviter"
    );
    let mails = own_mails_to(&env)?;
    ensure!(
        mails.values().all(|n| *n == 1) && mails.len() == 2,
        "one email each: {mails:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_expired_secret_leaves_both_messages_for_redelivery_then_each_is_invited_once()
-> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let control = env.control();
    let litware = contract(&env, "contract-s1", "litware", &["sam@litware.com"])?;
    let fabrikam = contract(&env, "contract-s2", "fabrikam", &["fay@fabrikam.com"])?;
    let batch = [("m-1", litware.as_str()), ("m-2", fabrikam.as_str())];
    control.expire_client_secret();
    let function = env.spawn("partner-signed").await?;
    let failures = deliver(&function, &batch).await?;
    ensure!(failures == ["m-1", "m-2"], "both retried: {failures:?}");
    let output = function.stop().await;
    ensure!(logged(&output, "AADSTS7000222"), "the cause is not named");
    ensure!(logged(&output, "GraphAccessDenied"), "no metric line");
    for id in ["contract-s1", "contract-s2"] {
        ensure!(
            record(&env, id).await?.is_none(),
            "{id} recorded while failing"
        );
    }

    control.renew_client_secret();
    let function = env.spawn("partner-signed").await?;
    let failures = deliver(&function, &batch).await?;
    ensure!(failures.is_empty(), "{failures:?}");
    function.stop().await;
    ensure!(invitation_posts(&control).len() == 2, "one invitation each");
    fully_onboarded(
        &env,
        &record(&env, "contract-s1").await?.context("s1")?,
        "sam@litware.com",
    )?;
    fully_onboarded(
        &env,
        &record(&env, "contract-s2").await?.context("s2")?,
        "fay@fabrikam.com",
    )?;
    Ok(())
}

#[tokio::test]
async fn a_secret_expiring_mid_batch_loses_no_event_and_invites_nobody_twice() -> anyhow::Result<()>
{
    let env = TestEnv::builder().start().await?;
    let control = env.control();
    // Short-lived tokens, so the function asks for a new one while the batch runs.
    control.set_token_lifetime(Some(Duration::from_secs(3)));
    control.inject(
        Fault::new(FaultKind::Slow(Duration::from_millis(1000)))
            .on("POST", "/v1.0/invitations")
            .times(3),
    );
    let bodies: Vec<(String, String)> = ["ann", "bo", "cy"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let id = format!("contract-m{i}");
            let body = contract(&env, &id, name, &[&format!("{name}@{name}.example")])?;
            Ok((format!("m-{i}"), body))
        })
        .collect::<anyhow::Result<_>>()?;
    let batch: Vec<(&str, &str)> = bodies
        .iter()
        .map(|(m, b)| (m.as_str(), b.as_str()))
        .collect();
    let function = env.spawn("partner-signed").await?;
    let expire = async {
        // The secret expires once the first invitation has been carried out.
        let first = async {
            while !invitation_posts(&control).iter().any(|r| r.status == 201) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let seen = tokio::time::timeout(INVOKE_TIMEOUT, first).await.is_ok();
        control.expire_client_secret();
        seen
    };
    let (failures, seen) = tokio::join!(deliver(&function, &batch), expire);
    let failures = failures?;
    ensure!(seen, "no invitation went through before the secret expired");
    ensure!(
        !failures.is_empty(),
        "nothing failed after the secret expired"
    );
    function.stop().await;

    control.renew_client_secret();
    let function = env.spawn("partner-signed").await?;
    let again: Vec<(&str, &str)> = batch
        .iter()
        .filter(|(m, _)| failures.iter().any(|f| f == m))
        .copied()
        .collect();
    let left = deliver(&function, &again).await?;
    ensure!(left.is_empty(), "{left:?}");
    function.stop().await;
    for (i, name) in ["ann", "bo", "cy"].iter().enumerate() {
        let email = format!("{name}@{name}.example");
        let record = record(&env, &format!("contract-m{i}"))
            .await?
            .with_context(|| format!("{email}: event lost"))?;
        ensure!(record.status == EventStatus::Completed, "{record:?}");
        fully_onboarded(&env, &record, &email)?;
    }
    let mails = own_mails_to(&env)?;
    ensure!(
        mails.len() == 3 && mails.values().all(|n| *n == 1),
        "one email each: {mails:?}"
    );
    ensure!(
        control
            .users()
            .iter()
            .filter(|u| u.user_type == UserType::Guest)
            .count()
            == 3,
        "a guest was created twice"
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_permission_is_retried_and_the_event_carried_out_after_consent()
-> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let control = env.control();
    control.inject(
        Fault::new(FaultKind::PermissionDenied)
            .on("POST", "/v1.0/invitations")
            .times(u32::MAX),
    );
    let body = contract(&env, "contract-p1", "litware", &["sam@litware.com"])?;
    let function = env.spawn("partner-signed").await?;
    ensure!(
        deliver(&function, &[("m-1", &body)]).await? == ["m-1"],
        "not retried"
    );
    let output = function.stop().await;
    ensure!(logged(&output, "admin consent"), "the fix is not named");
    ensure!(
        record(&env, "contract-p1").await?.is_none(),
        "recorded as done or refused"
    );

    control.clear_faults();
    let function = env.spawn("partner-signed").await?;
    ensure!(
        deliver(&function, &[("m-1", &body)]).await?.is_empty(),
        "after consent"
    );
    function.stop().await;
    let record = record(&env, "contract-p1").await?.context("no record")?;
    fully_onboarded(&env, &record, "sam@litware.com")?;
    ensure!(
        invitation_posts(&control)
            .iter()
            .filter(|r| r.status == 201)
            .count()
            == 1,
        "invited once"
    );
    Ok(())
}

#[tokio::test]
async fn an_invitation_whose_answer_is_lost_mails_once_and_grants() -> anyhow::Result<()> {
    let env = TestEnv::builder()
        .var("DELIVERY", "microsoft")
        .start()
        .await?;
    let control = env.control();
    control.inject(Fault::new(FaultKind::AnswerLost).on("POST", "/v1.0/invitations"));
    let body = contract(&env, "contract-l1", "litware", &["kim@litware.com"])?;
    let function = env.spawn("partner-signed").await?;
    let failures = deliver(&function, &[("m-1", &body)]).await?;
    if !failures.is_empty() {
        // Left for the redelivery, which looks the guest up before inviting.
        ensure!(
            deliver(&function, &[("m-1", &body)]).await?.is_empty(),
            "redelivery"
        );
    }
    function.stop().await;
    ensure!(
        invitations_to(&env) == BTreeMap::from([("kim@litware.com".to_string(), 1)]),
        "one Microsoft email: {:?}",
        invitations_to(&env)
    );
    let record = record(&env, "contract-l1").await?.context("no record")?;
    fully_onboarded(&env, &record, "kim@litware.com")?;
    Ok(())
}

#[tokio::test]
async fn a_cross_tenant_block_refuses_that_invitee_and_the_next_partner_is_invited()
-> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let control = env.control();
    control.block_cross_tenant("fabrikam.com");
    let fabrikam = contract(&env, "contract-x1", "fabrikam", &["fay@fabrikam.com"])?;
    let function = env.spawn("partner-signed").await?;
    ensure!(
        deliver(&function, &[("m-1", &fabrikam)]).await?.is_empty(),
        "fabrikam"
    );
    function.stop().await;
    let refused = record(&env, "contract-x1").await?.context("no record")?;
    let fay = &refused.outcomes[0];
    ensure!(
        fay.result == InviteeResult::Rejected
            && fay.reason.as_deref().unwrap_or("").contains("cross-tenant"),
        "{fay:?}"
    );
    ensure!(
        !env.ledger().await?.circuit().await?.open,
        "the circuit opened"
    );

    // The next partner, in a new invocation of a new environment.
    let litware = contract(&env, "contract-x2", "litware", &["sam@litware.com"])?;
    let function = env.spawn("partner-signed").await?;
    ensure!(
        deliver(&function, &[("m-2", &litware)]).await?.is_empty(),
        "litware"
    );
    function.stop().await;
    fully_onboarded(
        &env,
        &record(&env, "contract-x2").await?.context("x2")?,
        "sam@litware.com",
    )?;
    Ok(())
}

const NOW: OffsetDateTime = datetime!(2026-06-01 09:00 UTC);

#[tokio::test]
async fn a_lagging_listing_never_deletes_or_resets_a_guest_who_redeemed() -> anyhow::Result<()> {
    let env = TestEnv::builder()
        .now(NOW)
        .var("DELIVERY", "microsoft")
        .var("REMIND_AFTER", "3d")
        .var("REMIND_EVERY", "7d")
        .var("EXPIRE_AFTER", "30d")
        .var("EXPIRE_ACTION", "delete")
        .start()
        .await?;
    let control = env.control();
    let ledger = env.ledger().await?;
    let mut ids = BTreeMap::new();
    for (name, days) in [("p41", 41), ("r41", 41), ("p6", 6), ("r6", 6)] {
        let email = format!("{name}@litware.com");
        let user = control.add_user(NewUser {
            display_name: name.into(),
            mail: email.clone(),
            user_type: UserType::Guest,
            created_date_time: Some(NOW - time::Duration::days(days)),
            ..NewUser::default()
        });
        ledger
            .put_guest(&GuestRecord {
                email,
                user_id: user.id.clone(),
                origin: Origin::Partner("litware".into()),
                partner_id: Some("litware".into()),
                delivery: Delivery::Microsoft,
                invited_at: NOW - time::Duration::days(days),
                reminders: 0,
                last_reminded_at: None,
                state: GuestState::Pending,
                mailed_at: Some(NOW - time::Duration::days(days)),
                missing_since: None,
                ended: None,
            })
            .await?;
        ids.insert(name, user.id);
    }
    drop(ledger);
    // Two guests redeem; the listing still shows them pending for a while.
    control.set_listing_lag(Some(Duration::from_secs(600)));
    control.redeem(&ids["r41"])?;
    control.redeem(&ids["r6"])?;
    control.clear_requests();

    let b2b_now = NOW.format(&Rfc3339)?;
    let function = env
        .spawn_with("resend-stale", &[("B2B_NOW", b2b_now.as_str())])
        .await?;
    let summary = function.invoke(scheduled_event(), INVOKE_TIMEOUT).await?;
    let output = function.stop().await;
    // Both were listed as pending, and read again before anything was done to them.
    ensure!(
        output
            .text()
            .matches("guest redeemed since the listing")
            .count()
            == 2,
        "{}",
        output.text()
    );
    let acted = |action: &str| -> Vec<String> {
        summary["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["action"] == action)
            .filter_map(|a| a["userId"].as_str().map(String::from))
            .collect()
    };
    ensure!(acted("delete") == [ids["p41"].clone()], "{summary:#}");
    ensure!(acted("remind") == [ids["p6"].clone()], "{summary:#}");
    ensure!(
        control.user(&ids["r41"]).is_some(),
        "the redeemed 41-day guest was deleted"
    );
    ensure!(
        control.user(&ids["p41"]).is_none(),
        "the pending 41-day guest is still there"
    );
    ensure!(
        invitation_posts(&control).len() == 1,
        "only the pending 6-day guest is invited again: {:?}",
        invitation_posts(&control)
    );
    ensure!(
        invitations_to(&env).keys().collect::<Vec<_>>() == ["p6@litware.com"],
        "{:?}",
        invitations_to(&env)
    );
    let ledger = env.ledger().await?;
    for name in ["r41", "r6"] {
        let guest = ledger
            .guest(&format!("{name}@litware.com"))
            .await?
            .context("no record")?;
        ensure!(guest.state == GuestState::Accepted, "{name}: {guest:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_guest_missing_once_is_recorded_deleted_only_when_the_next_run_misses_it_too()
-> anyhow::Result<()> {
    let env = TestEnv::builder().now(NOW).start().await?;
    let ledger = env.ledger().await?;
    let email = "gone@litware.com";
    ledger
        .put_guest(&GuestRecord {
            email: email.into(),
            user_id: "0b5e6f7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b".into(),
            origin: Origin::Partner("litware".into()),
            partner_id: Some("litware".into()),
            delivery: Delivery::Own,
            invited_at: NOW - time::Duration::days(2),
            reminders: 0,
            last_reminded_at: None,
            state: GuestState::Pending,
            mailed_at: Some(NOW - time::Duration::days(2)),
            missing_since: None,
            ended: None,
        })
        .await?;
    drop(ledger);
    let mut states = Vec::new();
    for now in [NOW, NOW + time::Duration::DAY] {
        env.control().set_now(now);
        let b2b_now = now.format(&Rfc3339)?;
        let function = env
            .spawn_with("resend-stale", &[("B2B_NOW", b2b_now.as_str())])
            .await?;
        function.invoke(scheduled_event(), INVOKE_TIMEOUT).await?;
        function.stop().await;
        let guest = env
            .ledger()
            .await?
            .guest(email)
            .await?
            .context("no record")?;
        states.push((guest.state, guest.missing_since.is_some()));
    }
    ensure!(
        states == [(GuestState::Pending, true), (GuestState::Deleted, true)],
        "{states:?}"
    );
    Ok(())
}
