//! partner-signed and hr-record-added end to end (issue 3): the compiled binaries, driven
//! through the Lambda Runtime API with SQS batches, against the dev tenant.

use std::time::Duration;

use anyhow::{Context, ensure};
use b2b::ports::ledger::{EventKey, EventStatus, InviteeResult};
use b2b_dev_tenant::{Fault, FaultKind, GUEST_INVITER_ROLE, UserType};
use b2b_e2e::checks::{
    app_role, batch_failures, group_id, invitation_posts, logs_are_clean, user_id,
};
use b2b_e2e::events::{SqsMessage, cloud_event, sqs_batch, sqs_event};
use b2b_e2e::{LedgerKind, TestEnv};
use serde_json::{Value, json};

/// Long enough for a cold process to fetch its token and do a partner's work on 2 cores.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

const SOURCE: &str = "urn:contracts:crm";

fn partner_signed(id: &str, data: Value) -> String {
    cloud_event("partner.signed", SOURCE, id, data)
}

struct Litware {
    partners_group: String,
    falcon_group: String,
    portal: (String, String),
    sponsor: String,
}

impl Litware {
    fn seeded(env: &TestEnv) -> anyhow::Result<Litware> {
        let control = env.control();
        Ok(Litware {
            partners_group: group_id(&control, "Partners")?,
            falcon_group: group_id(&control, "Project Falcon")?,
            portal: app_role(&control, "Partner Portal", "Portal.Reader")?,
            sponsor: user_id(&control, "megan.bowen@contoso.com")?,
        })
    }

    fn data(&self, domains: &[&str]) -> Value {
        json!({
            "partner": { "id": "litware", "name": "Litware Inc.", "domains": domains },
            "contacts": [
                { "email": "sam@litware.com", "displayName": "Sam Lee", "inviter": true },
                { "email": "kim@litware.com", "displayName": "Kim Wu" },
            ],
            "access": {
                "groups": [self.partners_group, self.falcon_group],
                "appRoles": [ { "resourceId": self.portal.0, "appRoleId": self.portal.1 } ],
            },
            "sponsors": ["megan.bowen@contoso.com"],
        })
    }
}

#[tokio::test]
async fn partner_with_two_contacts_and_one_inviter_is_onboarded_once() -> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let control = env.control();
    let litware = Litware::seeded(&env)?;
    let function = env.spawn("partner-signed").await?;

    let first = partner_signed("contract-1", litware.data(&["litware.com"]));
    let answer = function
        .invoke(sqs_event(&[("m-1", &first)]), INVOKE_TIMEOUT)
        .await?;
    ensure!(
        batch_failures(&answer)?.is_empty(),
        "first signing failed: {answer}\n{}",
        function.output().text()
    );

    let invitations = invitation_posts(&control);
    ensure!(
        invitations.len() == 2,
        "expected 2 invitations, Graph saw {invitations:?}"
    );
    let sam = control
        .user("sam@litware.com")
        .context("Sam was not invited")?;
    let kim = control
        .user("kim@litware.com")
        .context("Kim was not invited")?;
    for guest in [&sam, &kim] {
        ensure!(
            guest.user_type == UserType::Guest,
            "{} is not a guest",
            guest.id
        );
        for group in [&litware.partners_group, &litware.falcon_group] {
            ensure!(
                control.group_members(group).contains(&guest.id),
                "{} is not in group {group}",
                guest.id
            );
        }
        let roles = control.app_role_assignments(&litware.portal.0);
        ensure!(
            roles
                .iter()
                .any(|a| a.principal_id == guest.id && a.app_role_id == litware.portal.1),
            "{} lacks the Portal.Reader app role: {roles:?}",
            guest.id
        );
        ensure!(
            control.sponsors(&guest.id) == vec![litware.sponsor.clone()],
            "{} has sponsors {:?}",
            guest.id,
            control.sponsors(&guest.id)
        );
    }
    let inviter_roles: Vec<_> = control
        .role_assignments()
        .into_iter()
        .filter(|r| r.role_definition_id == GUEST_INVITER_ROLE)
        .map(|r| r.principal_id)
        .collect();
    ensure!(
        inviter_roles == vec![sam.id.clone()],
        "Guest Inviter should be held by Sam only, holders: {inviter_roles:?}"
    );

    // The contract is signed again with one more domain: nobody is invited again.
    let second = partner_signed(
        "contract-2",
        litware.data(&["litware.com", "litware.co.uk"]),
    );
    let answer = function
        .invoke(sqs_event(&[("m-2", &second)]), INVOKE_TIMEOUT)
        .await?;
    ensure!(
        batch_failures(&answer)?.is_empty(),
        "second signing failed: {answer}"
    );
    ensure!(
        invitation_posts(&control).len() == 2,
        "the second signing invited again: {:?}",
        invitation_posts(&control)
    );
    ensure!(
        env.outbox()?.len() == 2,
        "expected one email per contact in the outbox"
    );

    let output = function.stop().await;
    let ledger = env.ledger().await?;
    let partner = ledger
        .partner("litware")
        .await?
        .context("partner not registered")?;
    ensure!(
        partner.domains == vec!["litware.com".to_string(), "litware.co.uk".to_string()],
        "partner domains: {:?}",
        partner.domains
    );
    ensure!(
        partner
            .inviters
            .iter()
            .map(|i| i.email.as_str())
            .collect::<Vec<_>>()
            == vec!["sam@litware.com"],
        "partner inviters: {:?}",
        partner.inviters
    );
    let record = ledger
        .event(&EventKey::new("partner-signed", SOURCE, "contract-2"))
        .await?
        .context("the second signing left no ledger record")?;
    ensure!(
        record.status == EventStatus::Completed,
        "second signing: {record:?}"
    );
    ensure!(
        record
            .outcomes
            .iter()
            .all(|o| o.result == InviteeResult::Existed),
        "second signing outcomes: {:?}",
        record.outcomes
    );
    logs_are_clean(
        &output,
        &[&control.client_secret()],
        &["sam@litware.com", "kim@litware.com"],
    )?;
    Ok(())
}

/// A partner with one contact and the given groups.
fn one_contact_partner(partner: &str, email: &str, groups: &[&str]) -> Value {
    let domain = email.rsplit('@').next().unwrap_or_default();
    json!({
        "partner": { "id": partner, "name": format!("{partner} Ltd"), "domains": [domain] },
        "contacts": [ { "email": email, "displayName": "Contact Person" } ],
        "access": { "groups": groups },
    })
}

fn event_key(id: &str) -> EventKey {
    EventKey::new("partner-signed", SOURCE, id)
}

#[tokio::test]
async fn the_same_message_delivered_twice_invites_and_mails_once() -> anyhow::Result<()> {
    let env = TestEnv::builder()
        .var("DELIVERY", "microsoft")
        .start()
        .await?;
    let control = env.control();
    let function = env.spawn("partner-signed").await?;
    let body = partner_signed(
        "contract-7",
        one_contact_partner("adatum", "ray@adatum.com", &[]),
    );

    let first = SqsMessage::new("m-7", &body);
    let answer = function
        .invoke(sqs_batch(std::slice::from_ref(&first)), INVOKE_TIMEOUT)
        .await?;
    ensure!(
        batch_failures(&answer)?.is_empty(),
        "first delivery failed: {answer}"
    );
    // SQS delivers it again (a visibility timeout ran out, or at-least-once delivery).
    let answer = function
        .invoke(sqs_batch(&[first.redelivered()]), INVOKE_TIMEOUT)
        .await?;
    ensure!(
        batch_failures(&answer)?.is_empty(),
        "redelivery was not acknowledged: {answer}"
    );

    ensure!(
        invitation_posts(&control).len() == 1,
        "invitations: {:?}",
        invitation_posts(&control)
    );
    let mails = control.sent_mail();
    ensure!(
        mails.len() == 1 && mails[0].to.eq_ignore_ascii_case("ray@adatum.com"),
        "Graph's invitation emails: {mails:?}"
    );
    ensure!(
        env.outbox()?.is_empty(),
        "microsoft delivery wrote our own email"
    );
    let output = function.stop().await;
    let record = env.ledger().await?.event(&event_key("contract-7")).await?;
    ensure!(
        record.is_some_and(|r| r.status == EventStatus::Completed),
        "the event is not recorded as completed"
    );
    let redeem_urls: Vec<String> = mails.iter().map(|m| m.redeem_url.clone()).collect();
    let secrets: Vec<&str> = redeem_urls.iter().map(String::as_str).collect();
    logs_are_clean(&output, &secrets, &["ray@adatum.com"])?;
    Ok(())
}

#[tokio::test]
async fn the_same_message_delivered_to_two_processes_at_once_invites_and_mails_once()
-> anyhow::Result<()> {
    let env = TestEnv::builder()
        .ledger(LedgerKind::Dynamo)
        .start()
        .await?;
    let control = env.control();
    let (one, two) = tokio::try_join!(env.spawn("partner-signed"), env.spawn("partner-signed"))?;
    let body = partner_signed(
        "contract-8",
        one_contact_partner("adatum", "eve@adatum.com", &[]),
    );
    let batch = sqs_batch(&[SqsMessage::new("m-8", &body)]);
    // A slow invitation keeps the first process inside the event while the second arrives.
    control.inject(
        Fault::new(FaultKind::Slow(Duration::from_millis(800))).on("POST", "/v1.0/invitations"),
    );

    let (a, b) = tokio::join!(
        one.invoke(batch.clone(), INVOKE_TIMEOUT),
        two.invoke(batch.clone(), INVOKE_TIMEOUT)
    );
    // The process that found the event claimed by the other reports it for redelivery; SQS
    // brings it back after the visibility timeout, and it is then acknowledged as done.
    let (a, b) = (a?, b?);
    let retried: Vec<bool> = [&a, &b]
        .iter()
        .map(|answer| batch_failures(answer).map(|f| f == vec!["m-8".to_string()]))
        .collect::<anyhow::Result<_>>()?;
    ensure!(
        retried.iter().filter(|r| **r).count() == 1,
        "exactly one process should have carried the event out while the other waited: {a} {b}"
    );
    let waiting = if retried[0] { &one } else { &two };
    let again = sqs_batch(&[SqsMessage::new("m-8", &body).redelivered()]);
    let answer = waiting.invoke(again, INVOKE_TIMEOUT).await?;
    ensure!(
        batch_failures(&answer)?.is_empty(),
        "the redelivery after the other process finished failed: {answer}"
    );

    ensure!(
        invitation_posts(&control).len() == 1,
        "invitations: {:?}",
        invitation_posts(&control)
    );
    let outbox = env.outbox()?;
    ensure!(
        outbox.len() == 1,
        "expected one email, the outbox has {}",
        outbox.len()
    );
    ensure!(
        control.sent_mail().is_empty(),
        "Graph sent an email with own delivery"
    );
    let record = env.ledger().await?.event(&event_key("contract-8")).await?;
    ensure!(
        record.is_some_and(|r| r.status == EventStatus::Completed),
        "the event is not recorded as completed"
    );
    for process in [one, two] {
        logs_are_clean(
            &process.stop().await,
            &[&control.client_secret()],
            &["eve@adatum.com"],
        )?;
    }
    Ok(())
}

#[tokio::test]
async fn in_a_batch_only_the_valid_message_acts_and_the_others_are_recorded_as_rejected()
-> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let control = env.control();
    let function = env.spawn("partner-signed").await?;
    let valid = partner_signed(
        "contract-10",
        one_contact_partner("adatum", "ann@adatum.com", &[]),
    );
    let malformed = r#"{"specversion":"1.0","id":"contract-11","source":"#;
    let bad_address = partner_signed(
        "contract-12",
        one_contact_partner("fabrikam", "bob@@fabrikam.com", &[]),
    );

    let answer = function
        .invoke(
            sqs_event(&[
                ("m-10", &valid),
                ("m-11", malformed),
                ("m-12", &bad_address),
            ]),
            INVOKE_TIMEOUT,
        )
        .await?;
    ensure!(
        batch_failures(&answer)?.is_empty(),
        "rejected messages must be acknowledged, not retried: {answer}"
    );
    let invitations = invitation_posts(&control);
    ensure!(invitations.len() == 1, "invitations: {invitations:?}");
    ensure!(
        control.user("ann@adatum.com").is_some(),
        "the valid message did not invite"
    );

    let output = function.stop().await;
    let ledger = env.ledger().await?;
    let done = ledger
        .event(&event_key("contract-10"))
        .await?
        .context("no record of the valid event")?;
    ensure!(
        done.status == EventStatus::Completed,
        "valid event: {done:?}"
    );
    // A body too broken to name its event is recorded under the queue and message id.
    let broken = ledger
        .event(&EventKey::new(
            "partner-signed",
            b2b_e2e::events::QUEUE_ARN,
            "m-11",
        ))
        .await?
        .context("the malformed message left no record")?;
    ensure!(
        broken.status == EventStatus::Rejected
            && broken.reason.as_deref().is_some_and(|r| !r.is_empty()),
        "malformed message: {broken:?}"
    );
    let refused = ledger
        .event(&event_key("contract-12"))
        .await?
        .context("the invalid-address message left no record")?;
    ensure!(
        refused.status == EventStatus::Rejected
            && refused
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("contacts[0].email")),
        "the rejection should name the field: {refused:?}"
    );
    ensure!(
        output.text().contains("event rejected"),
        "rejections are not logged:\n{}",
        output.text()
    );
    logs_are_clean(
        &output,
        &[&control.client_secret()],
        &["ann@adatum.com", "bob@@fabrikam.com"],
    )?;
    Ok(())
}

#[tokio::test]
async fn graph_503_fails_only_its_message_and_the_redelivery_succeeds() -> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let control = env.control();
    let partners = group_id(&control, "Partners")?;
    let falcon = group_id(&control, "Project Falcon")?;
    let function = env.spawn("partner-signed").await?;
    let healthy = partner_signed(
        "contract-20",
        one_contact_partner("adatum", "ann@adatum.com", &[&partners]),
    );
    let flaky = partner_signed(
        "contract-21",
        one_contact_partner("fabrikam", "ola@fabrikam.com", &[&falcon]),
    );
    // Graph answers 503 to everything that touches the second message's group, for longer
    // than the client retries within the invocation's deadline.
    control.inject(
        Fault::new(FaultKind::ServerError(503))
            .on("POST", &format!("/v1.0/groups/{falcon}/members"))
            .times(1000),
    );

    let answer = function
        .invoke(
            sqs_event(&[("m-20", &healthy), ("m-21", &flaky)]),
            Duration::from_secs(12),
        )
        .await?;
    ensure!(
        batch_failures(&answer)? == vec!["m-21".to_string()],
        "only the message Graph failed should be retried: {answer}\n{}",
        function.output().text()
    );
    ensure!(
        control.group_members(&partners).len() == 1,
        "the healthy message was not carried out"
    );

    control.clear_faults();
    let answer = function
        .invoke(
            sqs_batch(&[SqsMessage::new("m-21", &flaky).redelivered()]),
            INVOKE_TIMEOUT,
        )
        .await?;
    ensure!(
        batch_failures(&answer)?.is_empty(),
        "the redelivery failed: {answer}"
    );
    let ola = control
        .user("ola@fabrikam.com")
        .context("Ola was not invited")?;
    ensure!(
        control.group_members(&falcon) == vec![ola.id.clone()],
        "Ola is not in the group"
    );
    ensure!(
        invitation_posts(&control).len() == 2,
        "each guest is invited once, even across the redelivery: {:?}",
        invitation_posts(&control)
    );
    ensure!(env.outbox()?.len() == 2, "each guest is mailed once");
    Ok(())
}

#[tokio::test]
async fn the_abuse_block_stops_every_invitation_in_this_and_other_functions() -> anyhow::Result<()>
{
    let env = TestEnv::builder()
        .ledger(LedgerKind::Dynamo)
        .start()
        .await?;
    let control = env.control();
    let partners = group_id(&control, "Partners")?;
    let partner_fn = env.spawn("partner-signed").await?;
    let batch = sqs_event(&[
        (
            "m-30",
            &partner_signed(
                "contract-30",
                one_contact_partner("adatum", "ann@adatum.com", &[&partners]),
            ),
        ),
        (
            "m-31",
            &partner_signed(
                "contract-31",
                one_contact_partner("fabrikam", "ola@fabrikam.com", &[]),
            ),
        ),
        (
            "m-32",
            &partner_signed(
                "contract-32",
                one_contact_partner("litware", "sam@litware.com", &[]),
            ),
        ),
    ]);
    // The first message's group grant is slow, so the test can block the tenant right after
    // that message's invitation and before the next message starts.
    control.inject(
        Fault::new(FaultKind::Slow(Duration::from_millis(1500)))
            .on("POST", &format!("/v1.0/groups/{partners}/members")),
    );
    let pending = partner_fn.invoke(batch, INVOKE_TIMEOUT);
    let block = async {
        let waited = tokio::time::timeout(INVOKE_TIMEOUT, async {
            while !invitation_posts(&control).iter().any(|r| r.status == 201) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        control.inject(Fault::new(FaultKind::AbuseBlock));
        waited
    };
    let (answer, waited) = tokio::join!(pending, block);
    let answer = answer?;
    waited.context("the first message never invited")?;
    ensure!(
        batch_failures(&answer)? == vec!["m-31".to_string(), "m-32".to_string()],
        "the blocked and the remaining message must be retried later: {answer}\n{}",
        partner_fn.output().text()
    );
    let statuses: Vec<u16> = invitation_posts(&control)
        .iter()
        .map(|r| r.status)
        .collect();
    ensure!(
        statuses == vec![201, 403],
        "one invitation before the block, one refused, none after: {statuses:?}"
    );
    let circuit = env.ledger().await?.circuit().await?;
    ensure!(
        circuit.open,
        "the invitation circuit is not open in the ledger: {circuit:?}"
    );

    // Graph lifts the block, but the circuit stays open until an operator closes it: neither
    // this function nor another one started now invites.
    control.clear_abuse_block();
    let answer = partner_fn
        .invoke(
            sqs_batch(&[SqsMessage::new(
                "m-32",
                partner_signed(
                    "contract-32",
                    one_contact_partner("litware", "sam@litware.com", &[]),
                ),
            )
            .redelivered()]),
            INVOKE_TIMEOUT,
        )
        .await?;
    ensure!(
        batch_failures(&answer)? == vec!["m-32".to_string()],
        "partner-signed invited through the open circuit: {answer}"
    );
    let hr_fn = env.spawn("hr-record-added").await?;
    let record = cloud_event(
        "hr.record.added",
        "urn:hr:workday",
        "E-2001",
        json!({ "employeeId": "E-2001", "email": "jo@contractor.example", "displayName": "Jo Park",
                "manager": "alex.wilber@contoso.com" }),
    );
    let answer = hr_fn
        .invoke(sqs_event(&[("h-1", &record)]), INVOKE_TIMEOUT)
        .await?;
    ensure!(
        batch_failures(&answer)? == vec!["h-1".to_string()],
        "hr-record-added must fail transiently while the circuit is open: {answer}\n{}",
        hr_fn.output().text()
    );
    let statuses: Vec<u16> = invitation_posts(&control)
        .iter()
        .map(|r| r.status)
        .collect();
    ensure!(
        statuses == vec![201, 403],
        "an invitation went out after the block: {statuses:?}"
    );
    ensure!(
        control.user("jo@contractor.example").is_none(),
        "Jo was invited through the open circuit"
    );
    Ok(())
}

/// Where the dev tenant's redeem URLs start.
const REDEEM_URL_PREFIX: &str = "https://login.microsoftonline.com/redeem";

#[tokio::test]
async fn own_delivery_asks_graph_not_to_mail_and_mails_the_redeem_url_once() -> anyhow::Result<()> {
    // Graph's email is the configured default; the event asks for our own.
    let env = TestEnv::builder()
        .var("DELIVERY", "microsoft")
        .start()
        .await?;
    let control = env.control();
    let function = env.spawn("partner-signed").await?;
    let mut data = one_contact_partner("adatum", "Ray.Chen@Adatum.com", &[]);
    data["delivery"] = json!("own");
    let answer = function
        .invoke(
            sqs_event(&[("m-40", &partner_signed("contract-40", data))]),
            INVOKE_TIMEOUT,
        )
        .await?;
    ensure!(
        batch_failures(&answer)?.is_empty(),
        "own delivery failed: {answer}"
    );

    ensure!(
        invitation_posts(&control).len() == 1,
        "invitations: {:?}",
        invitation_posts(&control)
    );
    // The dev tenant logs an email only when asked with sendInvitationMessage: true.
    ensure!(
        control.sent_mail().is_empty(),
        "Graph was asked to send its own email: {:?}",
        control.sent_mail()
    );
    let outbox = env.outbox()?;
    ensure!(
        outbox.len() == 1,
        "expected one email, the outbox has {}",
        outbox.len()
    );
    let mail = &outbox[0];
    ensure!(
        mail.to()? == vec!["Ray.Chen@adatum.com".to_string()],
        "addressed to {:?}",
        mail.to()?
    );
    let urls = mail.urls(REDEEM_URL_PREFIX)?;
    ensure!(
        urls.len() == 1,
        "the email should carry one redeem URL, found {urls:?}"
    );
    // The URL is the invitation's: redeeming it accepts the guest.
    let guest = control.redeem(&urls[0])?;
    ensure!(
        guest.mail.as_deref() == Some("Ray.Chen@adatum.com")
            && guest.external_user_state == Some(b2b_dev_tenant::ExternalUserState::Accepted),
        "redeeming the mailed URL did not accept the guest: {guest:?}"
    );

    let output = function.stop().await;
    let recorded = env.ledger().await?.guest("ray.chen@adatum.com").await?;
    ensure!(
        recorded.is_some_and(|g| g.mailed_at.is_some() && g.user_id == guest.id),
        "the ledger does not remember the guest as mailed"
    );
    logs_are_clean(
        &output,
        &[&urls[0], &control.client_secret()],
        &["ray.chen@adatum.com"],
    )?;
    Ok(())
}

#[tokio::test]
async fn hr_record_invites_the_worker_with_manager_details_and_rule_access() -> anyhow::Result<()> {
    let now = time::macros::datetime!(2026-11-20 09:00 UTC);
    let env = TestEnv::builder().now(now).start().await?;
    let control = env.control();
    let partners = group_id(&control, "Partners")?;
    let falcon = group_id(&control, "Project Falcon")?;
    let rules = json!([
        { "match": { "department": "engineering" }, "access": { "groups": [falcon] } },
        { "match": { "company": "Someone Else" }, "access": { "groups": [partners] } },
    ]);
    let function = env
        .spawn_with("hr-record-added", &[("ACCESS_RULES", &rules.to_string())])
        .await?;
    let record = cloud_event(
        "hr.record.added",
        "urn:hr:workday",
        "E-1042",
        json!({
            "employeeId": "E-1042", "email": "jo@contractor.example", "displayName": "Jo Park",
            "company": "Contractor Ltd", "department": "Engineering", "jobTitle": "Engineer",
            "manager": "alex.wilber@contoso.com", "startDate": "2026-12-01", "endDate": "2027-06-30",
            "access": { "groups": [], "appRoles": [] },
        }),
    );
    let answer = function
        .invoke(sqs_event(&[("h-1042", &record)]), INVOKE_TIMEOUT)
        .await?;
    ensure!(
        batch_failures(&answer)?.is_empty(),
        "the HR record failed: {answer}\n{}",
        function.output().text()
    );

    ensure!(
        invitation_posts(&control).len() == 1,
        "invitations: {:?}",
        invitation_posts(&control)
    );
    let jo = control
        .user("jo@contractor.example")
        .context("Jo was not invited")?;
    ensure!(jo.user_type == UserType::Guest, "Jo is not a guest");
    ensure!(
        jo.company_name.as_deref() == Some("Contractor Ltd")
            && jo.department.as_deref() == Some("Engineering")
            && jo.job_title.as_deref() == Some("Engineer")
            && jo.employee_id.as_deref() == Some("E-1042")
            && jo.display_name.as_deref() == Some("Jo Park"),
        "the record's details are not on the guest: {jo:?}"
    );
    let manager = user_id(&control, "alex.wilber@contoso.com")?;
    ensure!(
        control.sponsors(&jo.id) == vec![manager],
        "sponsors: {:?}",
        control.sponsors(&jo.id)
    );
    ensure!(
        control.group_members(&falcon) == vec![jo.id.clone()],
        "the department rule's group was not granted"
    );
    ensure!(
        control.group_members(&partners).is_empty(),
        "a rule that does not match granted access"
    );
    let outbox = env.outbox()?;
    ensure!(
        outbox.len() == 1,
        "expected one email, the outbox has {}",
        outbox.len()
    );
    let urls = outbox[0].urls(REDEEM_URL_PREFIX)?;

    let output = function.stop().await;
    let event = env
        .ledger()
        .await?
        .event(&EventKey::new(
            "hr-record-added",
            "urn:hr:workday",
            "E-1042",
        ))
        .await?
        .context("the HR record left no ledger record")?;
    ensure!(
        event.status == EventStatus::Completed
            && event.outcomes.len() == 1
            && event.outcomes[0].result == InviteeResult::Invited
            && event.outcomes[0].user_id.as_deref() == Some(jo.id.as_str()),
        "ledger record: {event:?}"
    );
    let client_secret = control.client_secret();
    let secrets: Vec<&str> = urls
        .iter()
        .map(String::as_str)
        .chain([client_secret.as_str()])
        .collect();
    logs_are_clean(&output, &secrets, &["jo@contractor.example"])?;
    Ok(())
}
