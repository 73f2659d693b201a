//! Own delivery when the ledger fails right after the invitation: Graph created the guest, our
//! record of it was lost, and the retry must still mail the redeem URL, once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use b2b::app::circuit::CircuitGate;
use b2b::app::events::{EventWork, Processed};
use b2b::app::runtime::Runtime;
use b2b::ports::ledger::{
    Checkpoint, Circuit, Claim, EndRecord, EventKey, EventRecord, GuestRecord, GuestState, Ledger,
    LedgerError, PartnerRecord, SourceGrants,
};
use b2b_dev_tenant::{DevTenant, DevTenantOptions, Seed, WriteLimit};
use serde_json::json;
use time::OffsetDateTime;
use tokio::time::Instant;

/// The embedded ledger, but the first write of a guest with its object id (the record made
/// right after the invitation) fails as an outage would.
struct FailsAfterInvitation {
    inner: Arc<dyn Ledger>,
    failures_left: AtomicUsize,
    failed: AtomicUsize,
}

#[async_trait]
impl Ledger for FailsAfterInvitation {
    async fn put_guest(&self, guest: &GuestRecord) -> Result<(), LedgerError> {
        let invited = !guest.user_id.is_empty();
        if invited
            && self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(LedgerError::Unavailable("injected outage".into()));
        }
        self.inner.put_guest(guest).await
    }

    async fn claim_event(
        &self,
        key: &EventKey,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<Claim, LedgerError> {
        self.inner.claim_event(key, lease, now).await
    }
    async fn complete_event(&self, record: &EventRecord) -> Result<(), LedgerError> {
        self.inner.complete_event(record).await
    }
    async fn release_event(&self, key: &EventKey) -> Result<(), LedgerError> {
        self.inner.release_event(key).await
    }
    async fn event(&self, key: &EventKey) -> Result<Option<EventRecord>, LedgerError> {
        self.inner.event(key).await
    }
    async fn partner(&self, id: &str) -> Result<Option<PartnerRecord>, LedgerError> {
        self.inner.partner(id).await
    }
    async fn put_partner(&self, partner: &PartnerRecord) -> Result<(), LedgerError> {
        self.inner.put_partner(partner).await
    }
    async fn partners(&self) -> Result<Vec<PartnerRecord>, LedgerError> {
        self.inner.partners().await
    }
    async fn guest(&self, email: &str) -> Result<Option<GuestRecord>, LedgerError> {
        self.inner.guest(email).await
    }
    async fn guests(&self) -> Result<Vec<GuestRecord>, LedgerError> {
        self.inner.guests().await
    }
    async fn claim_reminder(
        &self,
        email: &str,
        seen_reminders: u32,
        now: OffsetDateTime,
    ) -> Result<bool, LedgerError> {
        self.inner.claim_reminder(email, seen_reminders, now).await
    }
    async fn circuit(&self) -> Result<Circuit, LedgerError> {
        self.inner.circuit().await
    }
    async fn open_circuit(&self, reason: &str, now: OffsetDateTime) -> Result<(), LedgerError> {
        self.inner.open_circuit(reason, now).await
    }
    async fn close_circuit(&self) -> Result<(), LedgerError> {
        self.inner.close_circuit().await
    }
    async fn claim_probe(
        &self,
        now: OffsetDateTime,
        probe_after: Duration,
    ) -> Result<bool, LedgerError> {
        self.inner.claim_probe(now, probe_after).await
    }
    async fn progress(&self, unit: &EventKey, email: &str) -> Result<Vec<String>, LedgerError> {
        self.inner.progress(unit, email).await
    }
    async fn record_progress(
        &self,
        unit: &EventKey,
        email: &str,
        step: &str,
    ) -> Result<(), LedgerError> {
        self.inner.record_progress(unit, email, step).await
    }
    async fn record_part_done(&self, event: &EventKey, part: u32) -> Result<usize, LedgerError> {
        self.inner.record_part_done(event, part).await
    }
    async fn record_grant(
        &self,
        source: &str,
        email: &str,
        user_id: &str,
        grant: &str,
    ) -> Result<(), LedgerError> {
        self.inner.record_grant(source, email, user_id, grant).await
    }
    async fn grants_of(&self, email: &str) -> Result<Vec<SourceGrants>, LedgerError> {
        self.inner.grants_of(email).await
    }
    async fn granted_by(&self, source: &str) -> Result<Vec<SourceGrants>, LedgerError> {
        self.inner.granted_by(source).await
    }
    async fn forget_grants(&self, source: &str, email: &str) -> Result<(), LedgerError> {
        self.inner.forget_grants(source, email).await
    }
    async fn put_end(&self, end: &EndRecord) -> Result<(), LedgerError> {
        self.inner.put_end(end).await
    }
    async fn end(&self, source: &str) -> Result<Option<EndRecord>, LedgerError> {
        self.inner.end(source).await
    }
    async fn ends(&self) -> Result<Vec<EndRecord>, LedgerError> {
        self.inner.ends().await
    }
    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, LedgerError> {
        self.inner.checkpoint(name).await
    }
    async fn put_checkpoint(
        &self,
        name: &str,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), LedgerError> {
        self.inner.put_checkpoint(name, checkpoint).await
    }
}

fn eml_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_guest_whose_record_was_lost_after_the_invitation_is_mailed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DevTenantOptions::new(dir.path().join("tenant"));
    options.seed = Seed::Demo;
    options.write_limit = Some(WriteLimit::unlimited());
    let tenant = DevTenant::start(options).await.unwrap();
    let control = tenant.control();
    let outbox = dir.path().join("outbox");
    let mut env: HashMap<String, String> = tenant.env().into_iter().collect();
    env.insert(
        "LEDGER_PATH".into(),
        dir.path().join("ledger").display().to_string(),
    );
    env.insert("OUTBOX_DIR".into(), outbox.display().to_string());
    env.insert("MAIL_FROM".into(), "Contoso IT <it@contoso.com>".into());
    env.insert("DELIVERY".into(), "own".into());

    let runtime = Runtime::from_env("partner-signed", &env).await.unwrap();
    let ledger = Arc::new(FailsAfterInvitation {
        inner: runtime.ledger.clone(),
        failures_left: AtomicUsize::new(1),
        failed: AtomicUsize::new(0),
    });
    let runtime = Runtime {
        ledger: ledger.clone(),
        ..runtime
    };
    let body = json!({
        "specversion": "1.0", "id": "contract-own-1", "source": "urn:contracts:crm",
        "type": "partner.signed",
        "data": {
            "partner": { "id": "litware", "name": "Litware Inc.", "domains": ["litware.com"] },
            "contacts": [ { "email": "kim@litware.com", "displayName": "Kim Wu" } ],
            "delivery": "own"
        }
    })
    .to_string();
    let fallback = EventKey::new("partner-signed", "test", "fallback");
    let deliver = || async {
        let deadline = Instant::now() + Duration::from_secs(60);
        let directory = runtime.directory(deadline);
        let gate = CircuitGate::new();
        EventWork {
            runtime: &runtime,
            directory: directory.as_ref(),
            gate: &gate,
            accepts: &["partner.signed"],
            takes_parts: true,
            deadline,
        }
        .process_body(body.as_bytes(), fallback.clone())
        .await
    };

    let first = deliver().await;
    assert!(
        first.is_err(),
        "the lost record must fail the delivery: {first:?}"
    );
    assert_eq!(
        ledger.failed.load(Ordering::SeqCst),
        1,
        "no outage injected"
    );
    let kim = control
        .user("kim@litware.com")
        .expect("the invitation was carried out before the outage");
    assert!(
        eml_files(&outbox).is_empty(),
        "mailed before it was recorded"
    );

    let second = deliver().await.expect("the redelivery succeeds");
    let Processed::Done(record) = &second else {
        panic!("redelivery: {second:?}");
    };
    assert_eq!(record.outcomes.len(), 1, "{record:?}");
    assert_eq!(record.outcomes[0].user_id.as_deref(), Some(kim.id.as_str()));
    let third = deliver().await.expect("a third delivery is a duplicate");
    assert!(matches!(third, Processed::Duplicate(_)), "{third:?}");

    let mails = eml_files(&outbox);
    assert_eq!(mails.len(), 1, "one email to Kim: {mails:?}");
    let text = std::fs::read_to_string(&mails[0]).unwrap();
    assert!(text.contains("kim@litware.com"), "mail to someone else");
    assert!(
        control.sent_mail().is_empty(),
        "Graph mailed although delivery is own"
    );
    let guest = runtime
        .ledger
        .guest("kim@litware.com")
        .await
        .unwrap()
        .expect("the guest is recorded");
    assert_eq!(guest.user_id, kim.id);
    assert_eq!(guest.state, GuestState::Pending);
    assert!(guest.mailed_at.is_some(), "{guest:?}");
    assert_eq!(
        control
            .users()
            .into_iter()
            .filter(|u| u.mail.as_deref() == Some("kim@litware.com"))
            .count(),
        1,
        "Kim exists once"
    );
}
