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
        .event(&EventKey {
            source: SOURCE.into(),
            id: "contract-2".into(),
        })
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
