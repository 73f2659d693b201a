//! One contract, two ledgers: every test below runs against the embedded ledger and against
//! the DynamoDB ledger on the local AWS emulator (moto).
//!
//! The DynamoDB half needs the emulator:
//!
//! ```text
//! scripts/aws-emulator start && eval "$(scripts/aws-emulator env)"
//! cargo nextest run -p b2b-shared -E 'test(/ledger/)'
//! ```
//!
//! Without `AWS_ENDPOINT_URL` those tests fail, unless `B2B_SKIP_AWS_EMULATOR=1` skips them.

mod aws_emulator;

use std::sync::Arc;
use std::time::Duration;

use b2b::adapters::ledger::{DynamoLedger, EmbeddedLedger};
use b2b::domain::access::Access;
use b2b::ports::directory::Delivery;
use b2b::ports::ledger::{
    Checkpoint, Circuit, Claim, EventKey, EventRecord, EventStatus, GuestRecord, GuestState,
    InviteeOutcome, InviteeResult, Inviter, Ledger, Origin, PartnerRecord,
};
use time::OffsetDateTime;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);
const LEASE: Duration = Duration::from_secs(60);

fn secs(n: i64) -> time::Duration {
    time::Duration::seconds(n)
}

fn key(source: &str, id: &str) -> EventKey {
    EventKey::new("test", source, id)
}

fn record(key: &EventKey) -> EventRecord {
    EventRecord {
        key: key.clone(),
        event_type: "partner.signed".into(),
        status: EventStatus::Completed,
        reason: None,
        actor: Some("requester-oid".into()),
        outcomes: vec![
            InviteeOutcome {
                email: "sam@litware.com".into(),
                result: InviteeResult::Invited,
                user_id: Some("u-1".into()),
                granted: vec!["g-1".into(), "directoryRole:95e79109".into()],
                reason: None,
            },
            InviteeOutcome {
                email: "kim@litware.com".into(),
                result: InviteeResult::Rejected,
                user_id: None,
                granted: vec![],
                reason: Some("domain not allowed".into()),
            },
        ],
        trust: None,
        recorded_at: T0 + secs(5),
    }
}

fn guest(email: &str, reminders: u32) -> GuestRecord {
    GuestRecord {
        email: email.into(),
        user_id: format!("user-{email}"),
        origin: Origin::Partner("litware".into()),
        partner_id: Some("litware".into()),
        delivery: Delivery::Own,
        invited_at: T0,
        reminders,
        last_reminded_at: None,
        state: GuestState::Pending,
        mailed_at: Some(T0),
        missing_since: None,
        ended: None,
    }
}

fn partner(id: &str, name: &str) -> PartnerRecord {
    let mut access = Access::default();
    access.groups.insert("g-partners".into());
    PartnerRecord {
        id: id.into(),
        name: name.into(),
        domains: vec![format!("{id}.com")],
        inviters: vec![Inviter {
            email: format!("sam@{id}.com"),
            user_id: Some("u-sam".into()),
        }],
        access,
        sponsors: vec!["sponsor@contoso.com".into()],
        trust: None,
        updated_at: T0,
        ended_at: None,
    }
}

/// Runs `work` in `tasks` concurrent tasks and returns their answers.
async fn race<T, F, Fut>(ledger: &Arc<dyn Ledger>, tasks: usize, work: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Ledger>) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let fut = work(Arc::clone(ledger));
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task panicked"));
    }
    out
}

// ---- the contract ---------------------------------------------------------------------

async fn claim_complete_replay(ledger: Arc<dyn Ledger>) {
    let k = key("https://contracts.example/crm", "evt-1");
    assert_eq!(
        ledger.claim_event(&k, LEASE, T0).await.unwrap(),
        Claim::Acquired
    );
    assert_eq!(
        ledger.claim_event(&k, LEASE, T0 + secs(1)).await.unwrap(),
        Claim::InProgress {
            until: T0 + secs(60)
        },
        "a second claim while the lease runs must wait"
    );
    assert_eq!(
        ledger.event(&k).await.unwrap(),
        None,
        "in progress is not a record"
    );

    let done = record(&k);
    ledger.complete_event(&done).await.unwrap();
    assert_eq!(
        ledger.claim_event(&k, LEASE, T0 + secs(2)).await.unwrap(),
        Claim::Completed(Box::new(done.clone()))
    );
    // Long after any lease: a completed event stays completed.
    assert_eq!(
        ledger
            .claim_event(&k, LEASE, T0 + secs(86_400))
            .await
            .unwrap(),
        Claim::Completed(Box::new(done.clone()))
    );
    assert_eq!(ledger.event(&k).await.unwrap(), Some(done.clone()));

    // Releasing never undoes a recorded outcome.
    ledger.release_event(&k).await.unwrap();
    assert_eq!(ledger.event(&k).await.unwrap(), Some(done));

    let mut rejected = record(&key("hr", "evt-rejected"));
    rejected.status = EventStatus::Rejected;
    rejected.reason = Some("contacts[1].email: not a partner domain".into());
    rejected.outcomes.clear();
    ledger.complete_event(&rejected).await.unwrap();
    assert_eq!(ledger.event(&rejected.key).await.unwrap(), Some(rejected));
}

async fn release_lets_a_redelivery_claim(ledger: Arc<dyn Ledger>) {
    let k = key("hr", "evt-release");
    assert_eq!(
        ledger.claim_event(&k, LEASE, T0).await.unwrap(),
        Claim::Acquired
    );
    ledger.release_event(&k).await.unwrap();
    assert_eq!(
        ledger.claim_event(&k, LEASE, T0 + secs(1)).await.unwrap(),
        Claim::Acquired,
        "after a release the next delivery must get the event"
    );
    // Releasing what nobody holds is harmless.
    ledger
        .release_event(&key("hr", "never-seen"))
        .await
        .unwrap();
}

async fn expired_lease_can_be_taken(ledger: Arc<dyn Ledger>) {
    let k = key("partner", "evt-lease");
    assert_eq!(
        ledger.claim_event(&k, LEASE, T0).await.unwrap(),
        Claim::Acquired
    );
    assert_eq!(
        ledger.claim_event(&k, LEASE, T0 + secs(59)).await.unwrap(),
        Claim::InProgress {
            until: T0 + secs(60)
        }
    );
    assert_eq!(
        ledger.claim_event(&k, LEASE, T0 + secs(60)).await.unwrap(),
        Claim::Acquired,
        "a lease that ran out must be claimable"
    );
    assert_eq!(
        ledger.claim_event(&k, LEASE, T0 + secs(61)).await.unwrap(),
        Claim::InProgress {
            until: T0 + secs(120)
        },
        "the new holder's lease counts from its claim"
    );
}

async fn keys_do_not_collide(ledger: Arc<dyn Ledger>) {
    let a = key("a#b", "c");
    let b = key("a", "b#c");
    let long = key("s", &"x".repeat(2_000));
    let longer = key("s", &"x".repeat(2_001));
    for k in [&a, &b, &long, &longer] {
        assert_eq!(
            ledger.claim_event(k, LEASE, T0).await.unwrap(),
            Claim::Acquired,
            "{k} must be a key of its own"
        );
    }
    ledger.complete_event(&record(&long)).await.unwrap();
    assert_eq!(ledger.event(&long).await.unwrap(), Some(record(&long)));
    assert_eq!(ledger.event(&longer).await.unwrap(), None);
}

async fn concurrent_claims_have_one_winner(ledger: Arc<dyn Ledger>) {
    for round in 0..5 {
        let k = key("race", &format!("evt-{round}"));
        let answers = race(&ledger, 8, |l| {
            let k = k.clone();
            async move { l.claim_event(&k, LEASE, T0).await.unwrap() }
        })
        .await;
        let won = answers.iter().filter(|c| **c == Claim::Acquired).count();
        assert_eq!(
            won, 1,
            "round {round}: exactly one claim must win: {answers:?}"
        );
        assert!(
            answers
                .iter()
                .all(|c| matches!(c, Claim::Acquired | Claim::InProgress { .. })),
            "{answers:?}"
        );
    }
}

async fn reminders_are_claimed_once(ledger: Arc<dyn Ledger>) {
    ledger
        .put_guest(&guest("jo@contractor.example", 0))
        .await
        .unwrap();
    let later = T0 + secs(3 * 86_400);
    assert!(
        ledger
            .claim_reminder("jo@contractor.example", 0, later)
            .await
            .unwrap()
    );
    assert!(
        !ledger
            .claim_reminder("jo@contractor.example", 0, later)
            .await
            .unwrap(),
        "a second sweep that saw 0 reminders must lose"
    );
    let g = ledger
        .guest("JO@Contractor.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.reminders, 1);
    assert_eq!(g.last_reminded_at, Some(later));
    assert!(
        ledger
            .claim_reminder("jo@contractor.example", 1, later + secs(60))
            .await
            .unwrap()
    );
    assert_eq!(
        ledger
            .guest("jo@contractor.example")
            .await
            .unwrap()
            .unwrap()
            .reminders,
        2
    );
    assert!(
        !ledger
            .claim_reminder("nobody@contractor.example", 0, later)
            .await
            .unwrap(),
        "no record, no reminder claim"
    );
}

async fn concurrent_reminders_have_one_winner(ledger: Arc<dyn Ledger>) {
    for round in 0..5u32 {
        let email = format!("guest{round}@litware.com");
        ledger.put_guest(&guest(&email, round)).await.unwrap();
        let answers = race(&ledger, 8, |l| {
            let email = email.clone();
            async move { l.claim_reminder(&email, round, T0).await.unwrap() }
        })
        .await;
        assert_eq!(
            answers.iter().filter(|won| **won).count(),
            1,
            "round {round}: exactly one sweep may remind: {answers:?}"
        );
        let g = ledger.guest(&email).await.unwrap().unwrap();
        assert_eq!(g.reminders, round + 1);
    }
}

async fn circuit_opens_probes_and_closes(ledger: Arc<dyn Ledger>) {
    let six_hours = Duration::from_secs(6 * 3600);
    assert_eq!(ledger.circuit().await.unwrap(), Circuit::default());
    assert!(
        !ledger.claim_probe(T0, six_hours).await.unwrap(),
        "a closed circuit needs no probe"
    );

    ledger
        .open_circuit("blocked: suspicious activity", T0)
        .await
        .unwrap();
    let open = ledger.circuit().await.unwrap();
    assert!(open.open);
    assert_eq!(open.reason.as_deref(), Some("blocked: suspicious activity"));
    assert_eq!(open.opened_at, Some(T0));
    assert_eq!(open.probe_at, None);

    // Another function hitting the block later keeps the first opening.
    ledger
        .open_circuit("blocked again", T0 + secs(600))
        .await
        .unwrap();
    assert_eq!(ledger.circuit().await.unwrap(), open);

    assert!(
        !ledger
            .claim_probe(T0 + secs(3600), six_hours)
            .await
            .unwrap()
    );
    let due = T0 + secs(6 * 3600);
    assert!(ledger.claim_probe(due, six_hours).await.unwrap());
    assert!(
        !ledger.claim_probe(due + secs(1), six_hours).await.unwrap(),
        "one probe per period"
    );
    assert_eq!(ledger.circuit().await.unwrap().probe_at, Some(due));
    assert!(
        !ledger
            .claim_probe(due + secs(6 * 3600 - 1), six_hours)
            .await
            .unwrap()
    );
    assert!(
        ledger
            .claim_probe(due + secs(6 * 3600), six_hours)
            .await
            .unwrap()
    );

    ledger.close_circuit().await.unwrap();
    assert_eq!(ledger.circuit().await.unwrap(), Circuit::default());
    assert!(
        !ledger
            .claim_probe(due + secs(86_400), six_hours)
            .await
            .unwrap()
    );

    // Reopening after a close starts a fresh period.
    let reopened = due + secs(86_400);
    ledger
        .open_circuit("blocked once more", reopened)
        .await
        .unwrap();
    let c = ledger.circuit().await.unwrap();
    assert_eq!(
        (c.open, c.opened_at, c.probe_at),
        (true, Some(reopened), None)
    );
    assert!(
        !ledger
            .claim_probe(reopened + secs(60), six_hours)
            .await
            .unwrap()
    );
}

async fn concurrent_probes_have_one_winner(ledger: Arc<dyn Ledger>) {
    let six_hours = Duration::from_secs(6 * 3600);
    ledger.open_circuit("blocked", T0).await.unwrap();
    for round in 1..=3i64 {
        let at = T0 + secs(round * 6 * 3600);
        let answers = race(&ledger, 8, move |l| async move {
            l.claim_probe(at, six_hours).await.unwrap()
        })
        .await;
        assert_eq!(
            answers.iter().filter(|won| **won).count(),
            1,
            "round {round}: exactly one probe: {answers:?}"
        );
    }
}

async fn checkpoints_round_trip(ledger: Arc<dyn Ledger>) {
    assert_eq!(ledger.checkpoint("resend-stale").await.unwrap(), None);
    let first = Checkpoint {
        next_link: Some("https://graph.example/v1.0/users?$skiptoken=abc".into()),
        started_at: T0,
        saved_at: T0 + secs(800),
    };
    ledger
        .put_checkpoint("resend-stale", Some(&first))
        .await
        .unwrap();
    assert_eq!(
        ledger.checkpoint("resend-stale").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(ledger.checkpoint("other").await.unwrap(), None);
    let second = Checkpoint {
        next_link: None,
        saved_at: T0 + secs(900),
        ..first
    };
    ledger
        .put_checkpoint("resend-stale", Some(&second))
        .await
        .unwrap();
    assert_eq!(
        ledger.checkpoint("resend-stale").await.unwrap(),
        Some(second)
    );
    ledger.put_checkpoint("resend-stale", None).await.unwrap();
    assert_eq!(ledger.checkpoint("resend-stale").await.unwrap(), None);
}

async fn partners_round_trip(ledger: Arc<dyn Ledger>) {
    assert_eq!(ledger.partners().await.unwrap(), vec![]);
    assert_eq!(ledger.partner("litware").await.unwrap(), None);
    let litware = partner("litware", "Litware Inc.");
    let fabrikam = partner("fabrikam", "Fabrikam");
    ledger.put_partner(&litware).await.unwrap();
    ledger.put_partner(&fabrikam).await.unwrap();
    assert_eq!(
        ledger.partner("litware").await.unwrap(),
        Some(litware.clone())
    );

    let mut renamed = litware;
    renamed.name = "Litware International".into();
    renamed.domains.push("litware.de".into());
    ledger.put_partner(&renamed).await.unwrap();
    let mut all = ledger.partners().await.unwrap();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(all, vec![fabrikam, renamed]);
}

async fn guests_round_trip(ledger: Arc<dyn Ledger>) {
    assert_eq!(ledger.guests().await.unwrap(), vec![]);
    let mut expected = Vec::new();
    for i in 0..25 {
        let mut g = guest(&format!("guest{i:02}@litware.com"), i % 3);
        if i % 2 == 0 {
            g.origin = Origin::Hr(format!("E-{i}"));
            g.partner_id = None;
            g.delivery = Delivery::Microsoft;
            g.last_reminded_at = Some(T0 + secs(i64::from(i)));
        }
        ledger.put_guest(&g).await.unwrap();
        expected.push(g);
    }
    let mut accepted = expected[3].clone();
    accepted.state = GuestState::Accepted;
    ledger.put_guest(&accepted).await.unwrap();
    expected[3] = accepted.clone();

    assert_eq!(
        ledger.guest("guest03@litware.com").await.unwrap(),
        Some(accepted)
    );
    assert_eq!(ledger.guest("nobody@litware.com").await.unwrap(), None);
    let mut all = ledger.guests().await.unwrap();
    all.sort_by(|a, b| a.email.cmp(&b.email));
    assert_eq!(all, expected);
}

async fn guests_come_page_by_page(ledger: Arc<dyn Ledger>) {
    for i in 0..23 {
        ledger
            .put_guest(&guest(&format!("page{i:02}@litware.com"), 0))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = ledger.guests_page(after.as_deref(), 5).await.unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 5);
        after = Some(last.email.clone());
        seen.extend(page.into_iter().map(|g| g.email));
        pages += 1;
    }
    assert_eq!(pages, 5, "5 + 5 + 5 + 5 + 3");
    let mut expected: Vec<String> = (0..23).map(|i| format!("page{i:02}@litware.com")).collect();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected, "every guest once");
    assert!(ledger.guests_page(None, 0).await.unwrap().is_empty());
}

// ---- the two ledgers ------------------------------------------------------------------

async fn emulator_client(test: &str) -> Option<aws_sdk_dynamodb::Client> {
    Some(aws_sdk_dynamodb::Client::new(
        &aws_emulator::config(test).await?,
    ))
}

async fn dynamo(test: &str) -> Option<Arc<dyn Ledger>> {
    let client = emulator_client(test).await?;
    let table = format!("ledger-test-{}", uuid::Uuid::new_v4().simple());
    DynamoLedger::create_table(&client, &table)
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot create table {table}: {e}"));
    Some(Arc::new(DynamoLedger::new(client, table)))
}

fn embedded() -> (tempfile::TempDir, Arc<dyn Ledger>) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = EmbeddedLedger::open(dir.path()).unwrap();
    (dir, Arc::new(ledger))
}

async fn progress_is_kept_per_unit_and_invitee(ledger: Arc<dyn Ledger>) {
    let unit = key("https://contracts.example/crm", "contract-9");
    let other = key("https://contracts.example/crm", "contract-10");
    assert!(
        ledger
            .progress(&unit, "ann@litware.com")
            .await
            .unwrap()
            .is_empty()
    );
    let steps = ["properties", "sponsor:s-1", "group-1", "group-1"];
    // At once, as the invitees of a unit land their grants concurrently.
    futures::future::join_all(steps.iter().map(|step| {
        let ledger = ledger.clone();
        let unit = unit.clone();
        async move {
            ledger
                .record_progress(&unit, "Ann@Litware.com", step)
                .await
                .unwrap()
        }
    }))
    .await;
    let mut got = ledger.progress(&unit, "ann@litware.com").await.unwrap();
    got.sort();
    assert_eq!(got, ["group-1", "properties", "sponsor:s-1"]);
    assert!(
        ledger
            .progress(&unit, "kim@litware.com")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        ledger
            .progress(&other, "ann@litware.com")
            .await
            .unwrap()
            .is_empty()
    );
    let elsewhere = EventKey::new("hr-record-added", unit.source.clone(), unit.id.clone());
    assert!(
        ledger
            .progress(&elsewhere, "ann@litware.com")
            .await
            .unwrap()
            .is_empty()
    );
}

/// The largest record the event schemas allow: 500 invitees with 100 grants each, megabytes
/// of outcomes, beyond one DynamoDB item.
async fn the_largest_event_record_round_trips(ledger: Arc<dyn Ledger>) {
    let k = key("https://contracts.example/crm", "contract-500");
    assert_eq!(
        ledger.claim_event(&k, LEASE, T0).await.unwrap(),
        Claim::Acquired
    );
    let mut big = record(&k);
    big.outcomes = (0..500)
        .map(|i| InviteeOutcome {
            email: format!("contact{i}@litware.com"),
            result: InviteeResult::Invited,
            user_id: Some(format!("{i:08}-0000-4000-8000-000000000000")),
            granted: (0..100)
                .map(|g| format!("{g:08}-1111-4000-8000-{i:012}"))
                .collect(),
            reason: None,
        })
        .collect();
    ledger.complete_event(&big).await.unwrap();
    assert_eq!(ledger.event(&k).await.unwrap(), Some(big.clone()));
    assert_eq!(
        ledger.claim_event(&k, LEASE, T0 + secs(2)).await.unwrap(),
        Claim::Completed(Box::new(big.clone()))
    );
    // Completed again smaller (the record of a split event, say): what it says now.
    let mut small = big.clone();
    small.outcomes.truncate(3);
    ledger.complete_event(&small).await.unwrap();
    assert_eq!(ledger.event(&k).await.unwrap(), Some(small));
}

async fn parts_done_are_counted_once_each(ledger: Arc<dyn Ledger>) {
    let event = key("https://contracts.example/crm", "contract-split");
    // At once, each part said twice, as concurrent redeliveries would.
    let counts = futures::future::join_all((0..8u32).map(|i| {
        let ledger = ledger.clone();
        let event = event.clone();
        async move { ledger.record_part_done(&event, i % 4).await.unwrap() }
    }))
    .await;
    assert_eq!(counts.iter().max(), Some(&4), "{counts:?}");
    assert_eq!(ledger.record_part_done(&event, 2).await.unwrap(), 4);
    assert_eq!(ledger.record_part_done(&event, 7).await.unwrap(), 5);
    let other = key("https://contracts.example/crm", "contract-other");
    assert_eq!(ledger.record_part_done(&other, 1).await.unwrap(), 1);
}

async fn grants_are_kept_per_source_and_guest(ledger: Arc<dyn Ledger>) {
    let (a, b) = ("partner:litware", "hr:E-1");
    // At once, as a unit's invitees land their grants concurrently.
    futures::future::join_all(
        [
            (a, "g-1"),
            (a, "g-2"),
            (a, "g-1"),
            (b, "g-1"),
            (a, "found:g-3"),
        ]
        .into_iter()
        .map(|(source, grant)| {
            let ledger = ledger.clone();
            async move {
                ledger
                    .record_grant(source, "Sam@Litware.com", "u-1", grant)
                    .await
                    .unwrap()
            }
        }),
    )
    .await;
    ledger
        .record_grant(a, "kim@litware.com", "u-2", "g-1")
        .await
        .unwrap();
    let mut of_sam = ledger.grants_of("sam@litware.com").await.unwrap();
    of_sam.sort_by(|x, y| x.source.cmp(&y.source));
    assert_eq!(of_sam.len(), 2, "{of_sam:?}");
    assert_eq!(of_sam[0].source, b);
    assert_eq!(of_sam[0].grants, ["g-1"]);
    assert_eq!(of_sam[1].grants, ["found:g-3", "g-1", "g-2"]);
    assert_eq!(of_sam[1].user_id, "u-1");
    let mut by_a = ledger.granted_by(a).await.unwrap();
    by_a.sort_by(|x, y| x.email.cmp(&y.email));
    assert_eq!(
        by_a.iter().map(|g| g.email.as_str()).collect::<Vec<_>>(),
        ["kim@litware.com", "sam@litware.com"]
    );
    ledger.forget_grants(a, "sam@litware.com").await.unwrap();
    assert_eq!(ledger.granted_by(a).await.unwrap().len(), 1);
    assert_eq!(ledger.grants_of("sam@litware.com").await.unwrap().len(), 1);
}

async fn ends_are_recorded_once_per_source(ledger: Arc<dyn Ledger>) {
    use b2b::domain::offboard::{End, EndAction, Subject};
    use b2b::ports::ledger::{EndRecord, EndState};
    let end = |state| EndRecord {
        end: End {
            subject: Subject::Partner("litware".into()),
            email: None,
            effective: Some(time::macros::date!(2027 - 03 - 31)),
            action: EndAction::Disable,
        },
        event: key("https://contracts.example/crm", "end-1"),
        state,
        recorded_at: T0,
    };
    assert!(ledger.ends().await.unwrap().is_empty());
    ledger.put_end(&end(EndState::Scheduled)).await.unwrap();
    ledger.put_end(&end(EndState::Done)).await.unwrap();
    assert_eq!(ledger.ends().await.unwrap(), vec![end(EndState::Done)]);
    assert_eq!(
        ledger.end("partner:litware").await.unwrap(),
        Some(end(EndState::Done))
    );
    assert_eq!(ledger.end("partner:other").await.unwrap(), None);
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod ledger_embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let (_dir, ledger) = super::embedded();
                    super::$test(ledger).await;
                }
            )*
        }
        mod ledger_dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let name = concat!("ledger_dynamodb::", stringify!($test));
                    if let Some(ledger) = super::dynamo(name).await {
                        super::$test(ledger).await;
                    }
                }
            )*
        }
    };
}

contract!(
    claim_complete_replay,
    release_lets_a_redelivery_claim,
    expired_lease_can_be_taken,
    keys_do_not_collide,
    concurrent_claims_have_one_winner,
    reminders_are_claimed_once,
    concurrent_reminders_have_one_winner,
    circuit_opens_probes_and_closes,
    concurrent_probes_have_one_winner,
    checkpoints_round_trip,
    partners_round_trip,
    guests_round_trip,
    guests_come_page_by_page,
    progress_is_kept_per_unit_and_invitee,
    the_largest_event_record_round_trips,
    parts_done_are_counted_once_each,
    grants_are_kept_per_source_and_guest,
    ends_are_recorded_once_per_source,
);

// ---- adapter specifics ----------------------------------------------------------------

#[tokio::test]
async fn ledger_embedded_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let k = key("hr", "persist");
    {
        let ledger = EmbeddedLedger::open(dir.path()).unwrap();
        assert_eq!(
            ledger.claim_event(&k, LEASE, T0).await.unwrap(),
            Claim::Acquired
        );
        ledger.complete_event(&record(&k)).await.unwrap();
        ledger
            .put_guest(&guest("ann@litware.com", 1))
            .await
            .unwrap();
    }
    let ledger = EmbeddedLedger::open(dir.path()).unwrap();
    assert_eq!(ledger.event(&k).await.unwrap(), Some(record(&k)));
    assert_eq!(
        ledger.guests().await.unwrap(),
        vec![guest("ann@litware.com", 1)]
    );
    assert!(ledger.path().ends_with(EmbeddedLedger::FILE_NAME));
}

#[tokio::test]
async fn ledger_embedded_is_one_holder_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let held = EmbeddedLedger::open(dir.path()).unwrap();
    let started = std::time::Instant::now();
    let err = EmbeddedLedger::open_with_wait(dir.path(), Duration::from_millis(300)).unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it must wait before failing"
    );
    let message = err.to_string();
    assert!(message.contains("in use by another process"), "{message}");
    assert!(message.contains(EmbeddedLedger::FILE_NAME), "{message}");

    // Once the holder lets go, the wait ends in success.
    let path = dir.path().to_path_buf();
    let opener =
        std::thread::spawn(move || EmbeddedLedger::open_with_wait(&path, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    opener
        .join()
        .unwrap()
        .expect("open must succeed after the holder closed");
}

#[tokio::test]
async fn ledger_dynamodb_table_schema_and_ttl() {
    let name = "ledger_dynamodb_table_schema_and_ttl";
    let Some(client) = emulator_client(name).await else {
        return;
    };
    let table = format!("ledger-test-{}", uuid::Uuid::new_v4().simple());
    DynamoLedger::create_table(&client, &table).await.unwrap();
    // Creating it again (a second local run) is fine.
    DynamoLedger::create_table(&client, &table).await.unwrap();

    let described = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let t = described.table().unwrap();
    let keys: Vec<_> = t
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_string(),
                k.key_type().as_str().to_string(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ("pk".to_string(), "HASH".to_string()),
            ("sk".to_string(), "RANGE".to_string())
        ]
    );
    assert_eq!(
        t.billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|m| m.as_str()),
        Some("PAY_PER_REQUEST")
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("ttl"));
    assert_eq!(
        ttl.time_to_live_status().map(|s| s.as_str()),
        Some("ENABLED")
    );

    let ledger = DynamoLedger::new(client.clone(), table.clone());
    let k = key("https://contracts.example/crm", "evt-ttl");
    let item_ttl = |item: &std::collections::HashMap<
        String,
        aws_sdk_dynamodb::types::AttributeValue,
    >| { item["ttl"].as_n().unwrap().parse::<i64>().unwrap() };
    let get = || async {
        client
            .get_item()
            .table_name(&table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(
                    "EVENT#test|https://contracts.example/crm".into(),
                ),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S("EVENT#evt-ttl".into()),
            )
            .send()
            .await
            .unwrap()
            .item
            .expect("the event item must be stored under the documented key")
    };
    ledger.claim_event(&k, LEASE, T0).await.unwrap();
    let lease_end = (T0 + secs(60)).unix_timestamp();
    assert_eq!(
        item_ttl(&get().await),
        lease_end + 86_400,
        "in progress: lease end plus a day"
    );
    ledger.complete_event(&record(&k)).await.unwrap();
    assert_eq!(
        item_ttl(&get().await),
        record(&k).recorded_at.unix_timestamp() + 90 * 86_400,
        "completed: 90 days"
    );

    // Guests and partners live under constant partitions, listed by Query.
    ledger
        .put_guest(&guest("Ann@Litware.com", 0))
        .await
        .unwrap();
    let guests = client
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S("GUEST".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(guests.count(), 1);
    assert_eq!(
        guests.items()[0]["sk"].as_s().unwrap(),
        "GUEST#ann@litware.com",
        "guests are keyed by lower-case address"
    );
}

#[tokio::test]
async fn ledger_dynamodb_unreachable_is_transient() {
    use b2b::error::{Classify, FailureClass};
    let client = aws_sdk_dynamodb::Client::new(&aws_emulator::unreachable().await);
    let ledger = DynamoLedger::new(client, "absent".into());
    let err = ledger.circuit().await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Transient, "{err}");
    assert!(err.to_string().contains("ledger table absent"), "{err}");
}
