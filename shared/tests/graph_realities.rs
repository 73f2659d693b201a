//! partner.signed against a dev tenant that behaves as Graph does in production: replication
//! delay after an invitation, and a partner refused by cross-tenant access settings.

use std::collections::HashMap;
use std::time::Duration;

use b2b::app::circuit::CircuitGate;
use b2b::app::events::{EventWork, Processed};
use b2b::app::runtime::Runtime;
use b2b::ports::ledger::{EventKey, EventRecord, InviteeResult};
use b2b_dev_tenant::{DevTenant, DevTenantOptions, GUEST_INVITER_ROLE, Seed, WriteLimit};
use serde_json::{Value, json};
use tokio::time::Instant;

struct World {
    tenant: DevTenant,
    runtime: Runtime,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DevTenantOptions::new(dir.path().join("tenant"));
    options.seed = Seed::Demo;
    options.write_limit = Some(WriteLimit::unlimited());
    let tenant = DevTenant::start(options).await.unwrap();
    let mut env: HashMap<String, String> = tenant.env().into_iter().collect();
    env.insert(
        "LEDGER_PATH".into(),
        dir.path().join("ledger").display().to_string(),
    );
    env.insert("DELIVERY".into(), "microsoft".into());
    let runtime = Runtime::from_env("partner-signed", &env).await.unwrap();
    World {
        tenant,
        runtime,
        _dir: dir,
    }
}

impl World {
    async fn signed(&self, id: &str, data: Value) -> EventRecord {
        let body = json!({
            "specversion": "1.0", "id": id, "source": "urn:contracts:crm",
            "type": "partner.signed", "data": data,
        })
        .to_string();
        let directory = self
            .runtime
            .directory(Instant::now() + Duration::from_secs(60));
        let gate = CircuitGate::new();
        let processed = EventWork {
            runtime: &self.runtime,
            directory: directory.as_ref(),
            gate: &gate,
            accepts: &["partner.signed"],
        }
        .process_body(body.as_bytes(), EventKey::new("partner-signed", "test", id))
        .await
        .expect("the event is carried out");
        match processed {
            Processed::Done(record) => record,
            other => panic!("{id}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn replication_delay_is_waited_out_and_every_grant_lands() {
    let w = world().await;
    let control = w.tenant.control();
    let group = control
        .groups()
        .into_iter()
        .find(|g| g.display_name == "Partners")
        .unwrap()
        .id;
    control.set_replication_delay(Some(Duration::from_secs(4)));
    let record = w
        .signed(
            "contract-r1",
            json!({
                "partner": { "id": "litware", "name": "Litware Inc.", "domains": ["litware.com"] },
                "contacts": [ { "email": "sam@litware.com", "displayName": "Sam Lee", "inviter": true } ],
                "access": { "groups": [group] },
                "sponsors": ["megan.bowen@contoso.com"],
            }),
        )
        .await;
    let sam = &record.outcomes[0];
    assert_eq!(sam.result, InviteeResult::Invited, "{sam:?}");
    assert_eq!(sam.reason, None, "nothing may be refused: {sam:?}");
    let user = sam.user_id.clone().unwrap();
    assert!(control.group_members(&group).contains(&user));
    assert_eq!(control.sponsors(&user).len(), 1);
    assert!(
        control
            .role_assignments()
            .iter()
            .any(|r| r.principal_id == user && r.role_definition_id == GUEST_INVITER_ROLE)
    );
    assert_eq!(control.sent_mail().len(), 1, "one email");
}

#[tokio::test]
async fn a_cross_tenant_block_refuses_that_invitee_and_opens_no_circuit() {
    let w = world().await;
    let control = w.tenant.control();
    control.block_cross_tenant("fabrikam.com");
    let contract = |id: &str, domain: &str| {
        json!({
            "partner": { "id": id, "name": id, "domains": [domain] },
            "contacts": [ { "email": format!("pat@{domain}") } ],
        })
    };
    let blocked = w
        .signed("contract-x1", contract("fabrikam", "fabrikam.com"))
        .await;
    assert_eq!(blocked.outcomes[0].result, InviteeResult::Rejected);
    assert!(
        blocked.outcomes[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("cross-tenant"),
        "{blocked:?}"
    );
    assert!(!w.runtime.ledger.circuit().await.unwrap().open);
    let next = w
        .signed("contract-x2", contract("litware", "litware.com"))
        .await;
    assert_eq!(next.outcomes[0].result, InviteeResult::Invited, "{next:?}");
}
