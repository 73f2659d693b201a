//! Partner trust on signing (SPEC section 2, `partner.signed` `trust`), end to end through
//! the partner-signed binary and the dev tenant's cross-tenant access settings.

use std::time::Duration;

use anyhow::{Context, ensure};
use b2b::domain::trust::TrustState;
use b2b::ports::ledger::{EventKey, EventRecord, EventStatus, InviteeResult};
use b2b_dev_tenant::LITWARE_TENANT_ID;
use b2b_e2e::checks::{batch_failures, invitation_posts};
use b2b_e2e::events::{cloud_event, sqs_event};
use b2b_e2e::{FunctionProcess, TestEnv};
use serde_json::{Value, json};

const SOURCE: &str = "urn:contracts:crm";

fn signed(id: &str, domain: &str, trust: Value) -> String {
    cloud_event(
        "partner.signed",
        SOURCE,
        id,
        json!({
            "partner": { "id": "partner-1", "name": "Partner One", "domains": [domain] },
            "contacts": [
                { "email": format!("sam@{domain}"), "displayName": "Sam Lee", "inviter": true },
                { "email": format!("kim@{domain}"), "displayName": "Kim Wu" },
            ],
            "trust": trust,
        }),
    )
}

async fn deliver(function: &FunctionProcess, body: &str) -> anyhow::Result<()> {
    let answer = function
        .invoke(sqs_event(&[("m-1", body)]), Duration::from_secs(60))
        .await?;
    ensure!(
        batch_failures(&answer)?.is_empty(),
        "{answer}\n{}",
        function.output().text()
    );
    Ok(())
}

/// No policy written, both contacts invited: the event's record.
async fn untrusted_but_invited(env: &TestEnv, id: &str) -> anyhow::Result<EventRecord> {
    ensure!(
        policy_writes(env) == 0,
        "{} policy writes",
        policy_writes(env)
    );
    ensure!(
        invitation_posts(&env.control()).len() == 2,
        "contacts not invited"
    );
    env.ledger()
        .await?
        .event(&EventKey::new("partner-signed", SOURCE, id))
        .await?
        .context("no record")
}

fn policy_writes(env: &TestEnv) -> usize {
    env.control()
        .requests()
        .iter()
        .filter(|r| r.is_write && r.path.starts_with("/v1.0/policies/"))
        .count()
}

#[tokio::test]
async fn a_trusted_partner_gets_automatic_redemption_and_mfa_trust_once() -> anyhow::Result<()> {
    let env = TestEnv::builder().var("DELIVERY", "own").start().await?;
    let function = env.spawn("partner-signed").await?;
    let body = signed(
        "contract-trust-1",
        "litware.com",
        json!({ "automaticRedemption": true, "mfa": true }),
    );
    deliver(&function, &body).await?;
    let config = env
        .control()
        .cross_tenant_partner(LITWARE_TENANT_ID)
        .context("no partner configuration for Litware's tenant")?;
    ensure!(
        config["automaticUserConsentSettings"]["inboundAllowed"] == true
            && config["inboundTrust"]["isMfaAccepted"] == true
            && config["inboundTrust"]["isCompliantDeviceAccepted"] != true,
        "{config}"
    );
    let writes = policy_writes(&env);
    ensure!(writes == 1, "{writes} policy writes");

    // Redelivered, and the same contract sent again as a new event: nothing changes.
    let again = signed(
        "contract-trust-2",
        "litware.com",
        json!({ "automaticRedemption": true, "mfa": true }),
    );
    deliver(&function, &body).await?;
    deliver(&function, &again).await?;
    ensure!(
        policy_writes(&env) == 1,
        "{} policy writes",
        policy_writes(&env)
    );
    ensure!(
        env.control().cross_tenant_partner(LITWARE_TENANT_ID) == Some(config),
        "changed"
    );
    // The inviter's email tells the partner's administrator what to allow on their side.
    let tenant = env.control().tenant_id();
    let mails = env.outbox()?;
    let to_sam: Vec<_> = mails
        .iter()
        .filter(|m| {
            m.to()
                .unwrap_or_default()
                .iter()
                .any(|t| t.starts_with("sam@"))
        })
        .collect();
    ensure!(to_sam.len() == 1, "{} emails to the inviter", to_sam.len());
    ensure!(
        to_sam[0].bodies()?.contains(&tenant),
        "the inviter's email does not name our tenant"
    );
    let to_kim = mails
        .iter()
        .find(|m| {
            m.to()
                .unwrap_or_default()
                .iter()
                .any(|t| t.starts_with("kim@"))
        })
        .context("no email to kim")?;
    ensure!(
        !to_kim.bodies()?.contains(&tenant),
        "a non-inviter was told"
    );
    function.stop().await;

    let ledger = env.ledger().await?;
    let partner = ledger.partner("partner-1").await?.context("no partner")?;
    match partner.trust {
        Some(TrustState::Trusted {
            tenant_id,
            set,
            before,
            created,
        }) => {
            ensure!(
                tenant_id == LITWARE_TENANT_ID && created,
                "{tenant_id} {created}"
            );
            ensure!(
                set.automatic_redemption == Some(true) && set.mfa_accepted == Some(true),
                "{set:?}"
            );
            ensure!(before.automatic_redemption.is_none(), "{before:?}");
        }
        other => anyhow::bail!("trust recorded as {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_partner_blocked_inbound_stays_blocked_and_its_contacts_are_still_handled()
-> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let blocked = json!({
        "b2bCollaborationInbound": {
            "usersAndGroups": { "accessType": "blocked", "targets": [ { "target": "AllUsers", "targetType": "user" } ] },
            "applications": { "accessType": "blocked", "targets": [ { "target": "AllApplications", "targetType": "application" } ] }
        }
    });
    env.control()
        .set_cross_tenant_partner(LITWARE_TENANT_ID, blocked.clone());
    let before = env.control().cross_tenant_partner(LITWARE_TENANT_ID);
    let function = env.spawn("partner-signed").await?;
    deliver(
        &function,
        &signed(
            "contract-blocked",
            "litware.com",
            json!({ "automaticRedemption": true, "mfa": true, "compliantDevice": true }),
        ),
    )
    .await?;
    function.stop().await;
    ensure!(
        env.control().cross_tenant_partner(LITWARE_TENANT_ID) == before,
        "the blocked configuration changed"
    );
    let record = untrusted_but_invited(&env, "contract-blocked").await?;
    ensure!(record.status == EventStatus::Completed, "{record:?}");
    ensure!(
        record
            .outcomes
            .iter()
            .all(|o| o.result == InviteeResult::Invited),
        "{:?}",
        record.outcomes
    );
    match &record.trust {
        Some(TrustState::NotSet { tenant_id, reason }) => ensure!(
            tenant_id.as_deref() == Some(LITWARE_TENANT_ID) && reason.contains("block"),
            "{reason}"
        ),
        other => anyhow::bail!("trust recorded as {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_partner_domain_without_an_entra_tenant_skips_trust_and_invites_its_contacts()
-> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let function = env.spawn("partner-signed").await?;
    deliver(
        &function,
        &signed(
            "contract-unmanaged",
            "northwind.example",
            json!({ "automaticRedemption": true }),
        ),
    )
    .await?;
    function.stop().await;
    let record = untrusted_but_invited(&env, "contract-unmanaged").await?;
    match &record.trust {
        Some(TrustState::NotSet {
            tenant_id: None,
            reason,
        }) => ensure!(
            reason.contains("northwind.example") && reason.contains("no Entra tenant"),
            "{reason}"
        ),
        other => anyhow::bail!("trust recorded as {other:?}"),
    }
    ensure!(record.outcomes.len() == 2, "{:?}", record.outcomes);
    Ok(())
}

#[tokio::test]
async fn the_end_of_the_contract_puts_the_tenant_trust_back() -> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    // MFA was trusted before the contract; automatic redemption was not.
    env.control().set_cross_tenant_partner(
        LITWARE_TENANT_ID,
        json!({ "inboundTrust": { "isMfaAccepted": true, "isCompliantDeviceAccepted": false } }),
    );
    let function = env.spawn("partner-signed").await?;
    deliver(
        &function,
        &signed(
            "contract-restore",
            "litware.com",
            json!({ "automaticRedemption": true, "mfa": true, "compliantDevice": true }),
        ),
    )
    .await?;
    function.stop().await;
    let trusted = env
        .control()
        .cross_tenant_partner(LITWARE_TENANT_ID)
        .context("no configuration")?;
    ensure!(
        trusted["automaticUserConsentSettings"]["inboundAllowed"] == true
            && trusted["inboundTrust"]["isCompliantDeviceAccepted"] == true,
        "{trusted}"
    );
    let offboard = env.spawn("guest-offboard").await?;
    let end = cloud_event(
        "partner.ended",
        SOURCE,
        "contract-restore-end",
        json!({ "partner": { "id": "partner-1" }, "action": "revoke" }),
    );
    deliver(&offboard, &end).await?;
    offboard.stop().await;
    let restored = env
        .control()
        .cross_tenant_partner(LITWARE_TENANT_ID)
        .context("the configuration is gone")?;
    ensure!(
        restored["automaticUserConsentSettings"]["inboundAllowed"] == false
            && restored["inboundTrust"]["isCompliantDeviceAccepted"] == false
            && restored["inboundTrust"]["isMfaAccepted"] == true,
        "not what it was before the contract: {restored}"
    );
    Ok(())
}
