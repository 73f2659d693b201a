//! resend-stale end to end (issue 5): the compiled binary, driven through the Lambda Runtime
//! API with scheduled events and direct invocations, against the dev tenant's clock.
//!
//! Each run is a fresh process with `B2B_NOW` set, and the dev tenant's clock moved to the
//! same instant, as a daily schedule would find them.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use b2b::app::sweep::{CHECKPOINT, adopted_origin};
use b2b::ports::directory::Delivery;
use b2b::ports::ledger::{GuestRecord, GuestState, Ledger, Origin};
use b2b_dev_tenant::{Control, GUEST_INVITER_ROLE, NewUser, UserType};
use b2b_e2e::checks::{batch_failures, invitation_posts};
use b2b_e2e::events::{cloud_event, scheduled_event, sqs_event};
use b2b_e2e::{InvocationFailure, LedgerKind, Output, TestEnv};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-06-01 09:00 UTC);
const DAY: time::Duration = time::Duration::DAY;
const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);

/// The acceptance schedule: remind after 3 days, then every 7, at most twice.
fn world() -> b2b_e2e::TestEnvBuilder {
    TestEnv::builder()
        .now(NOW)
        .var("REMIND_AFTER", "3d")
        .var("REMIND_EVERY", "7d")
        .var("MAX_REMINDERS", "2")
}

/// A pending guest in the dev tenant, invited `days` before `NOW`.
struct Guest {
    email: String,
    user_id: String,
}

fn pending_guest(control: &Control, email: &str, days: i64) -> Guest {
    let user = control.add_user(NewUser {
        display_name: email.split('@').next().unwrap_or(email).to_string(),
        mail: email.to_string(),
        user_type: UserType::Guest,
        created_date_time: Some(NOW - time::Duration::days(days)),
        ..NewUser::default()
    });
    Guest {
        email: email.to_string(),
        user_id: user.id,
    }
}

/// The ledger's record of a guest this product invited `days` before `NOW`.
fn record(guest: &Guest, days: i64, delivery: Delivery) -> GuestRecord {
    GuestRecord {
        email: guest.email.to_lowercase(),
        user_id: guest.user_id.clone(),
        origin: Origin::Partner("litware".into()),
        partner_id: Some("litware".into()),
        delivery,
        invited_at: NOW - time::Duration::days(days),
        reminders: 0,
        last_reminded_at: None,
        state: GuestState::Pending,
        mailed_at: Some(NOW - time::Duration::days(days)),
        missing_since: None,
        ended: None,
    }
}

/// Guests this product invited 1, 5, 10 and 40 days ago, one who redeemed, and one pending
/// guest someone else invited 10 days ago. Keyed by a short name.
async fn acceptance_guests(env: &TestEnv) -> anyhow::Result<BTreeMap<&'static str, Guest>> {
    let control = env.control();
    let mut guests = BTreeMap::new();
    let ledger = env.ledger().await?;
    for (name, days) in [("d1", 1), ("d5", 5), ("d10", 10), ("d40", 40)] {
        let guest = pending_guest(&control, &format!("{name}@litware.com"), days);
        ledger
            .put_guest(&record(&guest, days, Delivery::Own))
            .await?;
        guests.insert(name, guest);
    }
    let redeemed = pending_guest(&control, "redeemed@litware.com", 12);
    ledger
        .put_guest(&record(&redeemed, 12, Delivery::Own))
        .await?;
    control.redeem(&redeemed.user_id)?;
    guests.insert("redeemed", redeemed);
    guests.insert(
        "foreign",
        pending_guest(&control, "foreign@fabrikam.com", 10),
    );
    Ok(guests)
}

/// One run of resend-stale as of `now`, in a fresh process.
async fn sweep(
    env: &TestEnv,
    now: OffsetDateTime,
    payload: Value,
    extra: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<(Value, Output)> {
    env.control().set_now(now);
    let b2b_now = now.format(&Rfc3339)?;
    let mut vars = vec![("B2B_NOW", b2b_now.as_str())];
    vars.extend_from_slice(extra);
    let function = env.spawn_with("resend-stale", &vars).await?;
    let answer = function.invoke(payload, timeout).await;
    let output = function.stop().await;
    match answer {
        Ok(summary) => Ok((summary, output)),
        Err(e) => Err(anyhow!("resend-stale failed: {e}\n{}", output.text())),
    }
}

fn count(summary: &Value, field: &str) -> u64 {
    summary
        .get(field)
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
}

/// The user ids the summary lists with `action`.
fn acted_on(summary: &Value, action: &str) -> Vec<String> {
    let mut ids: Vec<String> = summary["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["action"] == action)
        .filter_map(|a| a["userId"].as_str().map(String::from))
        .collect();
    ids.sort();
    ids
}

fn ids(guests: &BTreeMap<&str, Guest>, names: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = names.iter().map(|n| guests[n].user_id.clone()).collect();
    ids.sort();
    ids
}

/// The Embedded Metric Format record the run printed.
fn emf(output: &Output) -> anyhow::Result<Value> {
    output
        .stdout
        .iter()
        .filter(|l| l.contains("\"_aws\""))
        .map(|l| serde_json::from_str::<Value>(l))
        .next_back()
        .context("no EMF record on stdout")?
        .context("the EMF line is not JSON")
}

/// Reminder mails in the outbox, per recipient.
fn mails_per_recipient(env: &TestEnv) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut per = BTreeMap::new();
    for mail in env.outbox()? {
        for to in mail.to()? {
            *per.entry(to.to_lowercase()).or_insert(0) += 1;
        }
    }
    Ok(per)
}

async fn ledger_guest(ledger: &dyn Ledger, email: &str) -> anyhow::Result<GuestRecord> {
    ledger
        .guest(email)
        .await?
        .with_context(|| format!("no ledger record for {email}"))
}

#[tokio::test]
async fn resend_reminds_due_guests_once_per_interval_and_never_a_third_time() -> anyhow::Result<()>
{
    let env = world().start().await?;
    let control = env.control();
    let guests = acceptance_guests(&env).await?;

    // Day 0: the 5-, 10- and 40-day guests, once each; the redeemed one is recorded.
    let (summary, output) = sweep(&env, NOW, scheduled_event(), &[], INVOKE_TIMEOUT).await?;
    ensure!(
        acted_on(&summary, "remind") == ids(&guests, &["d5", "d10", "d40"]),
        "day 0 should remind d5, d10 and d40: {summary:#}"
    );
    ensure!(
        (
            count(&summary, "reminded"),
            count(&summary, "accepted"),
            count(&summary, "failed")
        ) == (3, 1, 0),
        "{summary:#}"
    );
    // Six listed (the foreign guest and d1 skipped) plus the redeemed guest from the ledger.
    ensure!(
        count(&summary, "scanned") == 6 && count(&summary, "skipped") == 2,
        "{summary:#}"
    );
    ensure!(
        summary["complete"] == true && summary["dryRun"] == false,
        "{summary:#}"
    );
    ensure!(summary["scope"] == "managed", "{summary:#}");
    let posts = invitation_posts(&control);
    ensure!(posts.len() == 3, "3 invitations expected: {posts:?}");
    let mails = mails_per_recipient(&env)?;
    ensure!(
        mails.keys().cloned().collect::<Vec<_>>()
            == ["d10@litware.com", "d40@litware.com", "d5@litware.com"]
            && mails.values().all(|n| *n == 1),
        "one reminder mail each to d5, d10, d40: {mails:?}"
    );
    ensure!(
        control.sent_mail().is_empty(),
        "own delivery: Graph must send nothing"
    );
    let metrics = emf(&output)?;
    ensure!(
        metrics["Reminded"] == 3.0
            && metrics["Accepted"] == 1.0
            && metrics["Function"] == "resend-stale"
            && metrics["InvitationCircuitOpen"] == 0.0
            && metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "B2BInvites",
        "EMF record: {metrics}"
    );
    b2b_e2e::checks::logs_are_clean(
        &output,
        &[],
        &guests
            .values()
            .map(|g| g.email.as_str())
            .collect::<Vec<_>>(),
    )?;
    {
        let ledger = env.ledger().await?;
        for name in ["d5", "d10", "d40"] {
            let r = ledger_guest(ledger.as_ref(), &guests[name].email).await?;
            ensure!(
                r.reminders == 1 && r.last_reminded_at == Some(NOW),
                "{name}: {r:?}"
            );
        }
        let r = ledger_guest(ledger.as_ref(), &guests["d1"].email).await?;
        ensure!(r.reminders == 0, "d1: {r:?}");
        let r = ledger_guest(ledger.as_ref(), &guests["redeemed"].email).await?;
        ensure!(r.state == GuestState::Accepted, "redeemed: {r:?}");
        ensure!(
            ledger.guest(&guests["foreign"].email).await?.is_none(),
            "SCOPE=managed must not record the foreign guest"
        );
        ensure!(ledger.checkpoint(CHECKPOINT).await?.is_none());
    }

    // The same day, later: nobody.
    control.clear_requests();
    let (summary, _) = sweep(
        &env,
        NOW + time::Duration::hours(6),
        scheduled_event(),
        &[],
        INVOKE_TIMEOUT,
    )
    .await?;
    ensure!(
        count(&summary, "reminded") == 0 && count(&summary, "accepted") == 0,
        "{summary:#}"
    );
    ensure!(invitation_posts(&control).is_empty());

    // Seven days later: d5, d10, d40 again, and d1 (now 8 days) for the first time.
    let (summary, _) = sweep(&env, NOW + DAY * 7, scheduled_event(), &[], INVOKE_TIMEOUT).await?;
    ensure!(
        acted_on(&summary, "remind") == ids(&guests, &["d1", "d5", "d10", "d40"]),
        "day 7: {summary:#}"
    );
    // Day 14: only d1 (its second); the others have had two.
    let (summary, _) = sweep(&env, NOW + DAY * 14, scheduled_event(), &[], INVOKE_TIMEOUT).await?;
    ensure!(
        acted_on(&summary, "remind") == ids(&guests, &["d1"]),
        "day 14: {summary:#}"
    );
    // Never a third time.
    control.clear_requests();
    for day in [21, 28, 60] {
        let (summary, _) = sweep(
            &env,
            NOW + DAY * day,
            scheduled_event(),
            &[],
            INVOKE_TIMEOUT,
        )
        .await?;
        ensure!(count(&summary, "reminded") == 0, "day {day}: {summary:#}");
    }
    ensure!(invitation_posts(&control).is_empty());
    let mails = mails_per_recipient(&env)?;
    ensure!(
        mails.len() == 4 && mails.values().all(|n| *n == 2),
        "two reminder mails each, to d1, d5, d10, d40 only: {mails:?}"
    );
    let ledger = env.ledger().await?;
    for name in ["d1", "d5", "d10", "d40"] {
        let r = ledger_guest(ledger.as_ref(), &guests[name].email).await?;
        ensure!(r.reminders == 2, "{name}: {r:?}");
    }
    Ok(())
}

#[tokio::test]
async fn resend_dry_run_writes_nothing_and_lists_what_it_would_do() -> anyhow::Result<()> {
    let env = world()
        .var("EXPIRE_AFTER", "30d")
        .var("EXPIRE_ACTION", "delete")
        .start()
        .await?;
    let control = env.control();
    let guests = acceptance_guests(&env).await?;
    control.clear_requests();

    // DRY_RUN from the environment, and from a direct invocation over a normal configuration.
    let (by_env, _) = sweep(
        &env,
        NOW,
        scheduled_event(),
        &[("DRY_RUN", "true")],
        INVOKE_TIMEOUT,
    )
    .await?;
    let (by_payload, output) = sweep(
        &env,
        NOW,
        json!({"dryRun": true, "note": "ignored"}),
        &[],
        INVOKE_TIMEOUT,
    )
    .await?;
    for summary in [&by_env, &by_payload] {
        ensure!(summary["dryRun"] == true, "{summary:#}");
        ensure!(
            acted_on(summary, "remind") == ids(&guests, &["d5", "d10"])
                && acted_on(summary, "delete") == ids(&guests, &["d40"])
                && acted_on(summary, "markAccepted") == ids(&guests, &["redeemed"]),
            "would remind d5 and d10, delete d40, record the redeemed guest: {summary:#}"
        );
        ensure!(
            (
                count(summary, "reminded"),
                count(summary, "expired"),
                count(summary, "accepted")
            ) == (2, 1, 1),
            "{summary:#}"
        );
    }
    let writes: Vec<_> = control
        .requests()
        .into_iter()
        .filter(|r| r.is_write)
        .collect();
    ensure!(writes.is_empty(), "a dry run wrote to Graph: {writes:?}");
    ensure!(env.outbox()?.is_empty(), "a dry run sent mail");
    ensure!(
        control.user(&guests["d40"].user_id).is_some(),
        "d40 deleted"
    );
    let metrics = emf(&output)?;
    ensure!(metrics["Reminded"] == 2.0, "{metrics}");
    let ledger = env.ledger().await?;
    for name in ["d5", "d10", "d40", "redeemed"] {
        let r = ledger_guest(ledger.as_ref(), &guests[name].email).await?;
        ensure!(
            r.reminders == 0 && r.state == GuestState::Pending,
            "{name} changed in the ledger: {r:?}"
        );
    }
    ensure!(ledger.checkpoint(CHECKPOINT).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn resend_expires_only_guests_past_expire_after_disable() -> anyhow::Result<()> {
    let env = world().var("EXPIRE_AFTER", "30d").start().await?;
    let control = env.control();
    let guests = acceptance_guests(&env).await?;
    let (summary, _) = sweep(&env, NOW, scheduled_event(), &[], INVOKE_TIMEOUT).await?;
    ensure!(
        acted_on(&summary, "disable") == ids(&guests, &["d40"])
            && acted_on(&summary, "remind") == ids(&guests, &["d5", "d10"]),
        "disable d40 only, and do not remind it: {summary:#}"
    );
    for (name, g) in &guests {
        let user = control.user(&g.user_id).context("user gone")?;
        ensure!(
            user.account_enabled == (*name != "d40"),
            "{name}: accountEnabled {}",
            user.account_enabled
        );
    }
    ensure!(!mails_per_recipient(&env)?.contains_key("d40@litware.com"));
    {
        let ledger = env.ledger().await?;
        let r = ledger_guest(ledger.as_ref(), &guests["d40"].email).await?;
        ensure!(r.state == GuestState::Disabled && r.reminders == 0, "{r:?}");
    }
    // A disabled guest is left alone afterwards: no second PATCH, no reminder.
    control.clear_requests();
    let (summary, _) = sweep(&env, NOW + DAY * 7, scheduled_event(), &[], INVOKE_TIMEOUT).await?;
    ensure!(count(&summary, "expired") == 0, "{summary:#}");
    ensure!(
        !acted_on(&summary, "remind").contains(&guests["d40"].user_id),
        "{summary:#}"
    );
    ensure!(
        control
            .requests()
            .iter()
            .all(|r| !(r.method == "PATCH" && r.path.contains(&guests["d40"].user_id))),
        "d40 patched again"
    );
    Ok(())
}

#[tokio::test]
async fn resend_expiry_delete_holds_the_per_run_cap() -> anyhow::Result<()> {
    let env = world()
        .var("EXPIRE_AFTER", "30d")
        .var("EXPIRE_ACTION", "delete")
        .var("EXPIRE_MAX_PER_RUN", "1")
        .start()
        .await?;
    let control = env.control();
    let mut guests = acceptance_guests(&env).await?;
    {
        let ledger = env.ledger().await?;
        let d45 = pending_guest(&control, "d45@litware.com", 45);
        ledger.put_guest(&record(&d45, 45, Delivery::Own)).await?;
        guests.insert("d45", d45);
    }
    let (summary, _) = sweep(&env, NOW, scheduled_event(), &[], INVOKE_TIMEOUT).await?;
    let deleted = acted_on(&summary, "delete");
    ensure!(
        deleted.len() == 1 && count(&summary, "expired") == 1,
        "the cap is one per run: {summary:#}"
    );
    let old = ids(&guests, &["d40", "d45"]);
    ensure!(old.contains(&deleted[0]), "{summary:#}");
    ensure!(
        acted_on(&summary, "remind") == ids(&guests, &["d5", "d10"]),
        "the capped guest is not reminded instead: {summary:#}"
    );
    ensure!(control.user(&deleted[0]).is_none(), "not deleted");
    let other = old
        .iter()
        .find(|id| **id != deleted[0])
        .cloned()
        .unwrap_or_default();
    ensure!(control.user(&other).is_some(), "over the cap, yet deleted");
    // The next run takes the other.
    let (summary, _) = sweep(
        &env,
        NOW + time::Duration::hours(1),
        scheduled_event(),
        &[],
        INVOKE_TIMEOUT,
    )
    .await?;
    ensure!(
        acted_on(&summary, "delete") == vec![other.clone()],
        "{summary:#}"
    );
    ensure!(control.user(&other).is_none());
    for name in ["d1", "d5", "d10"] {
        ensure!(
            control.user(&guests[name].user_id).is_some(),
            "{name} deleted"
        );
    }
    let ledger = env.ledger().await?;
    for name in ["d40", "d45"] {
        let r = ledger_guest(ledger.as_ref(), &guests[name].email).await?;
        ensure!(r.state == GuestState::Deleted, "{name}: {r:?}");
    }
    Ok(())
}

#[tokio::test]
async fn resend_scope_all_reminds_guests_others_invited_and_managed_does_not() -> anyhow::Result<()>
{
    let env = world().start().await?;
    let control = env.control();
    let foreign = pending_guest(&control, "ana@fabrikam.com", 10);
    let young = pending_guest(&control, "bo@fabrikam.com", 2);

    let (summary, _) = sweep(&env, NOW, scheduled_event(), &[], INVOKE_TIMEOUT).await?;
    ensure!(
        count(&summary, "reminded") == 0 && count(&summary, "skipped") == 2,
        "{summary:#}"
    );
    ensure!(invitation_posts(&control).is_empty());

    let (summary, _) = sweep(&env, NOW, json!({"scope": "all"}), &[], INVOKE_TIMEOUT).await?;
    ensure!(summary["scope"] == "all", "{summary:#}");
    ensure!(
        acted_on(&summary, "remind") == vec![foreign.user_id.clone()],
        "SCOPE=all reminds the 10-day guest by createdDateTime: {summary:#}"
    );
    ensure!(mails_per_recipient(&env)?.get("ana@fabrikam.com") == Some(&1));
    {
        let ledger = env.ledger().await?;
        let r = ledger_guest(ledger.as_ref(), &foreign.email).await?;
        ensure!(
            r.origin == adopted_origin()
                && r.reminders == 1
                && r.invited_at == NOW - DAY * 10
                && r.user_id == foreign.user_id,
            "{r:?}"
        );
        ensure!(ledger.guest(&young.email).await?.is_none());
    }
    // The reminder record does not make the guest one this product invited.
    control.clear_requests();
    let (summary, _) = sweep(&env, NOW + DAY * 7, scheduled_event(), &[], INVOKE_TIMEOUT).await?;
    ensure!(count(&summary, "reminded") == 0, "{summary:#}");
    ensure!(invitation_posts(&control).is_empty());
    // SCOPE=all counts its earlier reminder: the second goes out a week later.
    let (summary, _) = sweep(
        &env,
        NOW + DAY * 7,
        json!({"scope": "all"}),
        &[],
        INVOKE_TIMEOUT,
    )
    .await?;
    let mut both = vec![foreign.user_id.clone(), young.user_id.clone()];
    both.sort();
    ensure!(acted_on(&summary, "remind") == both, "{summary:#}");
    let ledger = env.ledger().await?;
    ensure!(
        ledger_guest(ledger.as_ref(), &foreign.email)
            .await?
            .reminders
            == 2
    );
    Ok(())
}

#[tokio::test]
async fn resend_microsoft_delivery_resets_redemption_and_reinvites_role_holders_plainly()
-> anyhow::Result<()> {
    let env = world().var("DELIVERY", "microsoft").start().await?;
    let control = env.control();
    // Invited through partner-signed ten days ago; Sam holds the Guest Inviter role.
    let then = NOW - DAY * 10;
    control.set_now(then);
    let then_text = then.format(&Rfc3339)?;
    let partner = env
        .spawn_with("partner-signed", &[("B2B_NOW", then_text.as_str())])
        .await?;
    let event = cloud_event(
        "partner.signed",
        "urn:contracts:crm",
        "contract-1",
        json!({
            "partner": { "id": "litware", "name": "Litware Inc.", "domains": ["litware.com"] },
            "contacts": [
                { "email": "sam@litware.com", "displayName": "Sam Lee", "inviter": true },
                { "email": "kim@litware.com", "displayName": "Kim Wu" },
            ],
            "delivery": "microsoft",
        }),
    );
    let answer = partner
        .invoke(sqs_event(&[("m-1", &event)]), INVOKE_TIMEOUT)
        .await?;
    let partner_output = partner.stop().await;
    ensure!(
        batch_failures(&answer)?.is_empty(),
        "onboarding failed: {answer}\n{}",
        partner_output.text()
    );
    let sam = control.user("sam@litware.com").context("sam")?;
    ensure!(
        control
            .role_assignments()
            .iter()
            .any(|a| a.principal_id == sam.id && a.role_definition_id == GUEST_INVITER_ROLE),
        "sam should hold the Guest Inviter role"
    );
    let mails_before = control.sent_mail().len();
    control.clear_requests();

    let (summary, _) = sweep(&env, NOW, scheduled_event(), &[], INVOKE_TIMEOUT).await?;
    ensure!(
        count(&summary, "reminded") == 2 && count(&summary, "failed") == 0,
        "{summary:#}"
    );
    let posts = invitation_posts(&control);
    let statuses: Vec<u16> = posts.iter().map(|p| p.status).collect();
    ensure!(
        statuses.iter().filter(|s| **s == 201).count() == 2
            && statuses.iter().filter(|s| **s == 403).count() == 1,
        "kim reset (201), sam's reset refused (403) then invited plainly (201): {posts:?}"
    );
    let sent = control.sent_mail();
    ensure!(
        sent.len() == mails_before + 2,
        "Graph should mail both again: {} -> {}",
        mails_before,
        sent.len()
    );
    ensure!(
        env.outbox()?.is_empty(),
        "microsoft delivery: we mail nothing"
    );
    Ok(())
}

#[tokio::test]
async fn resend_stops_at_its_deadline_and_the_next_run_finishes_without_repeating()
-> anyhow::Result<()> {
    // Graph pages hold 999 guests: 1,100 pending guests are two pages. Five are due on the
    // first, sixty on the second.
    let env = world()
        .var("GRAPH_MAX_WRITES_PER_SECOND", "10")
        .start()
        .await?;
    let control = env.control();
    let mut due = Vec::new();
    {
        let ledger = env.ledger().await?;
        for i in 0..1100 {
            let is_due = (i < 999 && i % 200 == 0) || (1000..1060).contains(&i);
            let days = if is_due { 5 } else { 1 };
            let guest = pending_guest(&control, &format!("g{i:04}@litware.com"), days);
            ledger
                .put_guest(&record(&guest, days, Delivery::Own))
                .await?;
            if is_due {
                due.push(guest.user_id);
            }
        }
    }
    due.sort();
    ensure!(due.len() == 65);

    // A five-second invocation: 3.5 s of work after Lambda's margin, at 10 writes a second.
    let (first, _) = sweep(&env, NOW, scheduled_event(), &[], Duration::from_secs(5)).await?;
    let first_reminded = acted_on(&first, "remind");
    ensure!(
        first["complete"] == false
            && !first_reminded.is_empty()
            && first_reminded.len() < due.len()
            && count(&first, "failed") == 0,
        "the first run should stop midway, cleanly: {first:#}"
    );
    {
        let ledger = env.ledger().await?;
        let checkpoint = ledger
            .checkpoint(CHECKPOINT)
            .await?
            .context("no checkpoint saved")?;
        ensure!(
            checkpoint
                .next_link
                .as_deref()
                .is_some_and(|l| l.contains("/users?")),
            "the checkpoint should hold the second page's link: {checkpoint:?}"
        );
    }
    let (second, _) = sweep(
        &env,
        NOW + time::Duration::minutes(30),
        scheduled_event(),
        &[],
        INVOKE_TIMEOUT,
    )
    .await?;
    ensure!(
        second["complete"] == true && second["resumed"] == true,
        "{second:#}"
    );
    let mut all: Vec<String> = first_reminded.clone();
    all.extend(acted_on(&second, "remind"));
    all.sort();
    ensure!(
        all == due,
        "every due guest reminded exactly once across the runs ({} + {} of {})",
        first_reminded.len(),
        count(&second, "reminded"),
        due.len()
    );
    ensure!(invitation_posts(&control).len() == due.len());
    let mails = mails_per_recipient(&env)?;
    ensure!(
        mails.len() == due.len() && mails.values().all(|n| *n == 1),
        "{mails:?}"
    );
    let ledger = env.ledger().await?;
    ensure!(
        ledger.checkpoint(CHECKPOINT).await?.is_none(),
        "checkpoint not cleared"
    );
    let twice: Vec<_> = ledger
        .guests()
        .await?
        .into_iter()
        .filter(|g| g.reminders > 1)
        .collect();
    ensure!(twice.is_empty(), "reminded twice: {twice:?}");
    Ok(())
}

#[tokio::test]
async fn resend_concurrent_runs_on_dynamodb_never_remind_a_guest_twice() -> anyhow::Result<()> {
    let env = world()
        .ledger(LedgerKind::Dynamo)
        .var("GRAPH_MAX_WRITES_PER_SECOND", "50")
        .start()
        .await?;
    let control = env.control();
    let mut due = Vec::new();
    {
        let ledger = env.ledger().await?;
        for i in 0..40 {
            let guest = pending_guest(&control, &format!("c{i:02}@litware.com"), 5);
            ledger.put_guest(&record(&guest, 5, Delivery::Own)).await?;
            due.push(guest.user_id);
        }
    }
    due.sort();
    let now = NOW.format(&Rfc3339)?;
    let a = env.spawn_with("resend-stale", &[("B2B_NOW", &now)]).await?;
    let b = env.spawn_with("resend-stale", &[("B2B_NOW", &now)]).await?;
    let (ra, rb) = tokio::join!(
        a.invoke(scheduled_event(), INVOKE_TIMEOUT),
        b.invoke(scheduled_event(), INVOKE_TIMEOUT)
    );
    let (oa, ob) = (a.stop().await, b.stop().await);
    let ra = ra.map_err(|e| anyhow!("{e}\n{}", oa.text()))?;
    let rb = rb.map_err(|e| anyhow!("{e}\n{}", ob.text()))?;
    let mut all = acted_on(&ra, "remind");
    all.extend(acted_on(&rb, "remind"));
    all.sort();
    ensure!(
        all == due,
        "each guest reminded by exactly one of the runs ({} + {})",
        count(&ra, "reminded"),
        count(&rb, "reminded")
    );
    ensure!(invitation_posts(&control).len() == due.len());
    let mails = mails_per_recipient(&env)?;
    ensure!(
        mails.len() == due.len() && mails.values().all(|n| *n == 1),
        "{mails:?}"
    );
    Ok(())
}

#[tokio::test]
async fn resend_with_the_circuit_open_sends_nothing_and_says_so() -> anyhow::Result<()> {
    let env = world().start().await?;
    let guests = acceptance_guests(&env).await?;
    env.ledger()
        .await?
        .open_circuit("Invitations are blocked (test)", NOW)
        .await?;
    let (summary, output) = sweep(&env, NOW, scheduled_event(), &[], INVOKE_TIMEOUT).await?;
    ensure!(
        summary["circuitOpen"] == true
            && count(&summary, "reminded") == 0
            && acted_on(&summary, "fail") == ids(&guests, &["d5", "d10", "d40"]),
        "{summary:#}"
    );
    ensure!(invitation_posts(&env.control()).is_empty());
    ensure!(emf(&output)?["InvitationCircuitOpen"] == 1.0);
    // Not claimed: the guests are still due once the circuit closes.
    let ledger = env.ledger().await?;
    ensure!(
        ledger_guest(ledger.as_ref(), &guests["d5"].email)
            .await?
            .reminders
            == 0
    );
    Ok(())
}

#[tokio::test]
async fn resend_refuses_other_triggers_and_bad_overrides_by_name() -> anyhow::Result<()> {
    let env = world().start().await?;
    let function = env.spawn("resend-stale").await?;
    for (payload, expect) in [
        (sqs_event(&[("m-1", "{}")]), "SQS batch"),
        (json!({"dryRun": "yes"}), "dryRun"),
        (json!({"scope": "everyone"}), "scope"),
        (json!([1, 2]), "not a JSON object"),
    ] {
        match function.invoke(payload.clone(), INVOKE_TIMEOUT).await {
            Err(InvocationFailure::Function { message, .. }) if message.contains(expect) => {}
            other => bail!("{payload} should be refused naming '{expect}', got {other:?}"),
        }
    }
    let output = function.stop().await;
    ensure!(
        env.control().requests().iter().all(|r| !r.is_write),
        "a refused invocation reached Graph\n{}",
        output.text()
    );
    Ok(())
}

#[tokio::test]
async fn resend_bad_sweep_configuration_stops_the_start_naming_the_variable() -> anyhow::Result<()>
{
    let env = world().start().await?;
    let mut vars = env.vars().to_vec();
    vars.push(("EXPIRE_AFTER".into(), "30".into()));
    let function = b2b_e2e::FunctionProcess::spawn("resend-stale", &vars).await?;
    if function.ready(Duration::from_secs(30)).await.is_ok() {
        bail!("resend-stale started with EXPIRE_AFTER=30");
    }
    let output = function.stop().await;
    ensure!(
        output
            .stderr
            .iter()
            .any(|l| l.starts_with("configuration: EXPIRE_AFTER")),
        "{}",
        output.text()
    );
    Ok(())
}

/// `B2B_NOW` moves the clock that tokens and signatures are checked against: without the
/// explicit local switch the function refuses to start rather than act as of another time.
#[tokio::test]
async fn resend_b2b_now_without_the_clock_switch_stops_the_start() -> anyhow::Result<()> {
    let env = world().start().await?;
    let mut vars: Vec<(String, String)> = env
        .vars()
        .iter()
        .filter(|(name, _)| name != b2b::clock::CLOCK_OVERRIDE_SWITCH)
        .cloned()
        .collect();
    vars.push(("B2B_NOW".into(), "2027-01-02T03:04:05Z".into()));
    let function = b2b_e2e::FunctionProcess::spawn("resend-stale", &vars).await?;
    if function.ready(Duration::from_secs(30)).await.is_ok() {
        bail!("resend-stale started with B2B_NOW but without the clock switch");
    }
    let output = function.stop().await;
    ensure!(
        output
            .stderr
            .iter()
            .any(|l| l.starts_with("configuration: B2B_NOW")
                && l.contains(b2b::clock::CLOCK_OVERRIDE_SWITCH)),
        "{}",
        output.text()
    );
    Ok(())
}

/// The sweep benchmark (bench/sweep runs it; not part of the test run). Two scenarios per
/// size, on the DynamoDB ledger (the local AWS emulator) as deployed, under Graph's write
/// limit: `managed`, every pending guest invited by the product (a ledger record each), and
/// `all`, `SCOPE=all` over pending guests the ledger does not know. Either way every 50th guest
/// is due a reminder and the rest were invited a day ago; in `managed` every 1000th redeemed.
/// Prints one Markdown table row per run.
#[tokio::test]
#[ignore = "benchmark: run through bench/sweep"]
async fn bench_sweep() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::var("BENCH_SWEEP_SIZES")
        .unwrap_or_else(|_| "5000,50000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("BENCH_SWEEP_SIZES: comma-separated guest counts")?;
    let profile = match std::env::var("BENCH_SWEEP_PROFILE").as_deref() {
        Ok("debug") => b2b_e2e::Profile::Debug,
        Ok("release") | Err(_) => b2b_e2e::Profile::Release,
        Ok(other) => bail!("BENCH_SWEEP_PROFILE: '{other}': expected release or debug"),
    };
    println!(
        "| scope | guests | ledger records | reminded | accepted | sweep time | guests/s | Graph calls | calls per guest | Graph writes | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for size in sizes {
        for managed in [false, true] {
            // The client paces writes at GRAPH_MAX_WRITES_PER_SECOND (default 15), as deployed.
            let env = world()
                .ledger(LedgerKind::Dynamo)
                .profile(profile)
                .var("RUST_LOG", "warn")
                .var("SCOPE", if managed { "managed" } else { "all" })
                .start()
                .await?;
            let control = env.control();
            let (mut due, mut redeemed) = (0u64, 0u64);
            {
                let ledger = env.ledger().await?;
                for i in 0..size {
                    let days = if i % 50 == 0 { 5 } else { 1 };
                    let guest =
                        pending_guest(&control, &format!("guest{i:06}@bench.example"), days);
                    if managed {
                        ledger
                            .put_guest(&record(&guest, days, Delivery::Own))
                            .await?;
                    }
                    if managed && i % 1000 == 999 {
                        control.redeem(&guest.user_id)?;
                        redeemed += 1;
                    } else if days == 5 {
                        due += 1;
                    }
                }
            }
            control.clear_requests();
            let now = NOW.format(&Rfc3339)?;
            let function = env.spawn_with("resend-stale", &[("B2B_NOW", &now)]).await?;
            let started = std::time::Instant::now();
            let answer = function
                .invoke(scheduled_event(), Duration::from_secs(15 * 60))
                .await;
            let took = started.elapsed();
            let peak_kib = function.peak_rss_kib()?;
            let output = function.stop().await;
            let summary = answer.map_err(|e| anyhow!("{e}\n{}", output.text()))?;
            ensure!(
                summary["complete"] == true
                    && count(&summary, "reminded") == due
                    && count(&summary, "accepted") == redeemed
                    && count(&summary, "failed") == 0,
                "{summary:#}"
            );
            // Graph calls only: the token endpoint is not Graph.
            let requests: Vec<_> = control
                .requests()
                .into_iter()
                .filter(|r| r.path.starts_with("/v1.0/"))
                .collect();
            let writes = requests.iter().filter(|r| r.is_write).count();
            println!(
                "| {} | {size} | {} | {due} | {redeemed} | {:.1} s | {:.0} | {} | {:.3} | {writes} | {:.1} MiB |",
                if managed { "managed" } else { "all" },
                if managed { size } else { 0 },
                took.as_secs_f64(),
                size as f64 / took.as_secs_f64(),
                requests.len(),
                requests.len() as f64 / size as f64,
                peak_kib as f64 / 1024.0,
            );
        }
    }
    Ok(())
}
