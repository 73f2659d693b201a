//! The soak's verdict, from the dev tenant's and the ledger's own records: nothing lost,
//! nobody invited or mailed twice, every poison message refused on record, every dead letter
//! explained by a fault the soak injected; and the figures of the run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use b2b::ports::ledger::{EventKey, EventRecord, EventStatus, InviteeResult};
use time::OffsetDateTime;

use super::Run;
use super::plan::{Group, Poison, Route};
use super::sqs::Outcome;
use crate::TestEnv;
use crate::checks::{group_id, user_id};

/// Room for the difference between the functions' clock and the soak's.
const CLOCK_SLACK: time::Duration = time::Duration::seconds(1);

#[derive(Debug, Default)]
pub struct Verdict {
    pub valid: usize,
    pub complete: usize,
    pub dead_lettered: usize,
    pub unexplained_dead_letters: usize,
    /// Acknowledged (deleted, or answered) before the event had a record.
    pub lost: usize,
    /// Valid events neither complete nor dead-lettered at the end.
    pub missing: usize,
    pub poison: usize,
    pub poison_rejected: usize,
    pub invitees: usize,
    pub second_emails: usize,
    pub duplicates_sent: usize,
    pub deliveries: usize,
    pub redeliveries: usize,
    pub kills: usize,
    pub faults: BTreeMap<String, usize>,
    pub seconds: f64,
    pub events_per_second: f64,
    pub writes_per_second: f64,
    pub share_429: f64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub peak_rss_mib: BTreeMap<&'static str, f64>,
    /// Every broken promise, one line each; empty when the soak passed.
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The verdict and the figures as a Markdown table.
    pub fn table(&self) -> String {
        let mut t = String::from("| | |\n|---|---|\n");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "| {k} | {v} |");
        };
        row("valid events", self.valid.to_string());
        row("complete", self.complete.to_string());
        row(
            "dead-lettered (explained by an injected fault)",
            format!(
                "{} ({} unexplained)",
                self.dead_lettered, self.unexplained_dead_letters
            ),
        );
        row(
            "lost (acknowledged without a record)",
            self.lost.to_string(),
        );
        row(
            "poison messages refused on record",
            format!("{} of {}", self.poison_rejected, self.poison),
        );
        row(
            "invitees checked (exist once, every grant)",
            self.invitees.to_string(),
        );
        row("second invitation emails", self.second_emails.to_string());
        row(
            "duplicate deliveries sent",
            self.duplicates_sent.to_string(),
        );
        row(
            "deliveries (of them redeliveries)",
            format!("{} ({})", self.deliveries, self.redeliveries),
        );
        row("environments killed mid-batch", self.kills.to_string());
        row(
            "faults injected",
            self.faults
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        row("duration", format!("{:.0} s", self.seconds));
        row("events/s", format!("{:.2}", self.events_per_second));
        row("Graph writes/s", format!("{:.2}", self.writes_per_second));
        row(
            "429 share of Graph requests",
            format!("{:.2}%", self.share_429 * 100.0),
        );
        row(
            "enqueue to complete p50 / p99",
            format!("{} ms / {} ms", self.p50_ms, self.p99_ms),
        );
        row(
            "peak RSS per environment",
            self.peak_rss_mib
                .iter()
                .map(|(f, m)| format!("{f} {m:.1} MiB"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        row(
            "verdict",
            if self.passed() {
                "passed".into()
            } else {
                format!("FAILED: {} problems", self.problems.len())
            },
        );
        t
    }
}

fn fault_name(kind: &b2b_dev_tenant::FaultKind) -> String {
    use b2b_dev_tenant::FaultKind::*;
    match kind {
        TooManyRequests {
            retry_after: Some(_),
        } => "429 with Retry-After".into(),
        TooManyRequests { retry_after: None } => "429 without Retry-After".into(),
        ServerError(s) => s.to_string(),
        Slow(_) => "slow past the timeout".into(),
        DropConnection => "dropped connection".into(),
        AnswerLost => "answer lost".into(),
        PermissionDenied => "permission denied".into(),
        AbuseBlock => "abuse block".into(),
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub async fn judge(env: &TestEnv, run: &Run) -> anyhow::Result<Verdict> {
    let ledger = env.ledger().await?;
    let control = env.control();
    let mut v = Verdict::default();
    let problem = |v: &mut Verdict, p: String| {
        if v.problems.len() < 50 {
            v.problems.push(p);
        } else if v.problems.len() == 50 {
            v.problems.push("… more problems left out".into());
        }
    };

    // Where each copy went, and what became of it.
    let deliveries = run.journal.all();
    let mut event_of_message: HashMap<&str, usize> = HashMap::new();
    let mut first_sent: HashMap<usize, OffsetDateTime> = HashMap::new();
    let mut copies: HashMap<usize, usize> = HashMap::new();
    for s in &run.sent {
        event_of_message.insert(&s.id, s.event);
        first_sent.entry(s.event).or_insert(s.at);
        *copies.entry(s.event).or_default() += 1;
    }
    v.duplicates_sent = copies.values().map(|n| n - 1).sum();
    let mut dead_letters: HashSet<String> = HashSet::new();
    for queue in run.queues.values() {
        for (id, _) in queue.dead_letters().await? {
            dead_letters.insert(id);
        }
    }
    let fired = control.fired_faults();
    for f in &fired {
        *v.faults.entry(fault_name(&f.kind)).or_default() += 1;
    }
    for (what, ..) in &run.windows {
        *v.faults.entry(what.clone()).or_default() += 1;
    }
    v.deliveries = deliveries.len() + run.calls.iter().map(|c| c.attempts.len()).sum::<usize>();
    v.redeliveries = deliveries.iter().filter(|d| d.receive_count > 1).count();
    v.kills = run.environments.iter().map(|e| e.kills).sum();

    // Records, by key.
    let key_of = |route: Route, source: &str, id: &str| EventKey::new(route.function(), source, id);
    let mut records: HashMap<EventKey, Option<EventRecord>> = HashMap::new();
    let mut record = async |key: EventKey| -> anyhow::Result<Option<EventRecord>> {
        if let Some(r) = records.get(&key) {
            return Ok(r.clone());
        }
        let r = ledger.event(&key).await?;
        records.insert(key, r.clone());
        Ok(r)
    };
    // The key a copy was recorded under: its own `(source, id)`, or the transport's.
    let queue_arn = |route: Route| run.queues.get(&route).map(|q| q.arn.clone());
    let mut keys_of_copies: HashMap<String, EventKey> = HashMap::new();
    for s in &run.sent {
        let event = &run.events[s.event];
        // Webhook calls are keyed below, by their request ids.
        let Some(arn) = queue_arn(event.route) else {
            continue;
        };
        let key = match &event.key {
            Some((source, id)) => key_of(event.route, source, id),
            None => key_of(event.route, &arn, &s.id),
        };
        keys_of_copies.insert(s.id.clone(), key);
    }
    for call in &run.calls {
        let event = &run.events[call.event];
        // A refused request is recorded under the HTTP request's own key.
        if event.key.is_none() || event.poison.is_some() {
            keys_of_copies.insert(
                format!("webhook-call-{}", call.request_id),
                key_of(
                    event.route,
                    &format!("webhook:{}", event.route.function()),
                    &call.request_id,
                ),
            );
        }
    }

    // Nothing acknowledged before its record existed.
    let explained = |started: OffsetDateTime, ended: OffsetDateTime| {
        run.windows
            .iter()
            .any(|(_, from, until)| *from <= ended && started <= *until)
            || fired
                .iter()
                .any(|f| f.at >= started - CLOCK_SLACK && f.at <= ended + CLOCK_SLACK)
    };
    for d in &deliveries {
        if d.recorded_when_acked == Some(false) {
            v.lost += 1;
            let key = keys_of_copies.get(&d.message_id);
            problem(
                &mut v,
                format!(
                    "{}: message {} acknowledged without a record",
                    key.map(ToString::to_string).unwrap_or_default(),
                    d.message_id
                ),
            );
        }
    }
    for call in &run.calls {
        if call.recorded_when_answered == Some(false) {
            v.lost += 1;
            let statuses: Vec<u16> = call.attempts.iter().map(|(.., s)| *s).collect();
            problem(
                &mut v,
                format!(
                    "request {} of event {}: answered {statuses:?} without a record",
                    call.request_id, call.event
                ),
            );
        }
    }

    // Each event: complete, refused (poison), or dead-lettered for a reason.
    let users = control.users();
    let by_email = |email: &str| {
        users
            .iter()
            .filter(|u| {
                u.mail
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(email))
                    || u.other_mails.iter().any(|m| m.eq_ignore_ascii_case(email))
            })
            .collect::<Vec<_>>()
    };
    let groups: HashMap<&str, (String, HashSet<String>)> = [
        ("Partners", Group::Partners),
        ("Project Falcon", Group::Falcon),
    ]
    .into_iter()
    .map(|(name, _)| {
        let id = group_id(&control, name).unwrap_or_default();
        let members = control.group_members(&id).into_iter().collect();
        (name, (id, members))
    })
    .collect();
    let mut latencies = Vec::new();
    let mut expected_emails: HashSet<String> = HashSet::new();
    for event in &run.events {
        if let Some(poison) = event.poison {
            v.poison += 1;
            let keys: Vec<EventKey> = match &event.key {
                Some((source, id)) if event.route != Route::GuestInviterRequest => {
                    vec![key_of(event.route, source, id)]
                }
                _ => run
                    .sent
                    .iter()
                    .filter(|s| s.event == event.index)
                    .filter_map(|s| keys_of_copies.get(&s.id).cloned())
                    .chain(
                        run.calls
                            .iter()
                            .filter(|c| c.event == event.index)
                            .filter_map(|c| {
                                keys_of_copies
                                    .get(&format!("webhook-call-{}", c.request_id))
                                    .cloned()
                            }),
                    )
                    .collect(),
            };
            let mut refused = !keys.is_empty();
            for key in keys {
                match record(key.clone()).await? {
                    Some(r) if r.status == EventStatus::Rejected => {}
                    other => {
                        refused = false;
                        let answers: Vec<Option<u16>> = run
                            .calls
                            .iter()
                            .filter(|c| c.event == event.index)
                            .map(|c| c.answered)
                            .collect();
                        problem(
                            &mut v,
                            format!(
                                "{key} ({poison:?}): not recorded as rejected: {:?} (webhook answers {answers:?})",
                                other.map(|r| r.status)
                            ),
                        );
                    }
                }
            }
            if refused {
                v.poison_rejected += 1;
            }
            continue;
        }
        v.valid += 1;
        let (source, id) = event.key.as_ref().expect("valid events have keys");
        let key = key_of(event.route, source, id);
        let done = record(key.clone()).await?;
        let Some(done) = done.filter(|r| r.status == EventStatus::Completed) else {
            let sent_ids: Vec<&str> = run
                .sent
                .iter()
                .filter(|s| s.event == event.index)
                .map(|s| s.id.as_str())
                .collect();
            let in_dead_letters: Vec<&str> = sent_ids
                .iter()
                .copied()
                .filter(|id| dead_letters.contains(*id))
                .collect();
            let gave_up = run
                .calls
                .iter()
                .filter(|c| c.event == event.index)
                .any(|c| c.answered.is_none());
            if in_dead_letters.is_empty() && !gave_up {
                v.missing += 1;
                problem(&mut v, format!("{key}: neither complete nor dead-lettered"));
                continue;
            }
            v.dead_lettered += 1;
            // Every failed try must coincide with a fault the soak injected.
            let unexplained = deliveries
                .iter()
                .filter(|d| in_dead_letters.contains(&d.message_id.as_str()))
                .filter(|d| d.outcome == Outcome::Failed)
                .any(|d| !explained(d.started, d.ended))
                || run
                    .calls
                    .iter()
                    .filter(|c| c.event == event.index && c.answered.is_none())
                    .flat_map(|c| &c.attempts)
                    .any(|(s, e, _)| !explained(*s, *e));
            if unexplained {
                v.unexplained_dead_letters += 1;
                let tries: Vec<String> = deliveries
                    .iter()
                    .filter(|d| in_dead_letters.contains(&d.message_id.as_str()))
                    .map(|d| {
                        format!(
                            "{} #{} {:?} {}..{}",
                            d.environment, d.receive_count, d.outcome, d.started, d.ended
                        )
                    })
                    .collect();
                problem(
                    &mut v,
                    format!(
                        "{key}: dead-lettered without an injected fault: {}",
                        tries.join("; ")
                    ),
                );
            }
            continue;
        };
        v.complete += 1;
        if let Some(sent) = first_sent.get(&event.index) {
            latencies.push((done.recorded_at - *sent).whole_milliseconds().max(0) as u64);
        }
        for invitee in &event.invitees {
            v.invitees += 1;
            expected_emails.insert(invitee.email.to_lowercase());
            let found = by_email(&invitee.email);
            let [user] = found.as_slice() else {
                problem(
                    &mut v,
                    format!("{key}: {} exists {} times", invitee.email, found.len()),
                );
                continue;
            };
            let outcome = done
                .outcomes
                .iter()
                .find(|o| o.email.eq_ignore_ascii_case(&invitee.email));
            match outcome {
                Some(o)
                    if matches!(o.result, InviteeResult::Invited | InviteeResult::Existed)
                        && o.user_id.as_deref() == Some(user.id.as_str()) => {}
                other => problem(
                    &mut v,
                    format!(
                        "{key}: the record of {} disagrees with the tenant: {other:?}",
                        invitee.email
                    ),
                ),
            }
            for group in &invitee.groups {
                let name = match group {
                    Group::Partners => "Partners",
                    Group::Falcon => "Project Falcon",
                };
                if !groups[name].1.contains(&user.id) {
                    problem(&mut v, format!("{key}: {} not in {name}", invitee.email));
                }
            }
            if let Some(sponsor) = &invitee.sponsor {
                let sponsor = user_id(&control, sponsor)?;
                if !control.sponsors(&user.id).contains(&sponsor) {
                    problem(&mut v, format!("{key}: {} has no sponsor", invitee.email));
                }
            }
        }
    }

    // One invitation email per address at most, Microsoft's and ours together.
    let mut mails: HashMap<String, usize> = HashMap::new();
    for m in control.sent_mail() {
        *mails.entry(m.to.to_lowercase()).or_default() += 1;
    }
    for m in env.outbox()? {
        for to in m.to()? {
            *mails.entry(to.to_lowercase()).or_default() += 1;
        }
    }
    for (to, n) in &mails {
        if *n > 1 {
            v.second_emails += n - 1;
            problem(&mut v, format!("{to} got {n} invitation emails"));
        }
    }
    // No guest the ledger does not know of.
    let inviters: HashSet<String> = (0..run.config.partners)
        .map(|k| format!("inviter@partner{k}.example"))
        .collect();
    for u in &users {
        let Some(mail) = u.mail.as_deref().map(str::to_lowercase) else {
            continue;
        };
        let ours = mail.contains("@contractor") || mail.contains("@partner");
        if ours && !inviters.contains(&mail) && !expected_emails.contains(&mail) {
            let dead = run.events.iter().any(|e| {
                e.invitees
                    .iter()
                    .any(|i| i.email.eq_ignore_ascii_case(&mail))
            });
            if !dead {
                problem(&mut v, format!("{mail}: a guest no event asked for"));
            }
        }
    }

    // Figures.
    let last = records
        .values()
        .flatten()
        .map(|r| r.recorded_at)
        .max()
        .unwrap_or(run.ended);
    v.seconds = ((last - run.started).as_seconds_f64()).max(0.001);
    v.events_per_second = v.complete as f64 / v.seconds;
    let requests: Vec<_> = control
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v1.0/"))
        .collect();
    let writes = requests
        .iter()
        .filter(|r| r.is_write && (200..300).contains(&r.status))
        .count();
    v.writes_per_second = writes as f64 / v.seconds;
    let throttled = requests.iter().filter(|r| r.status == 429).count();
    v.share_429 = throttled as f64 / requests.len().max(1) as f64;
    latencies.sort_unstable();
    v.p50_ms = percentile(&latencies, 0.50);
    v.p99_ms = percentile(&latencies, 0.99);
    for e in &run.environments {
        let mib = e.peak_rss_kib as f64 / 1024.0;
        let entry = v.peak_rss_mib.entry(e.function).or_default();
        *entry = entry.max(mib);
    }
    // Every kind of fault must have happened, or the soak proved less than it says.
    for kind in [
        "429 with Retry-After",
        "429 without Retry-After",
        "503",
        "slow past the timeout",
        "dropped connection",
        "answer lost",
        "token endpoint outage",
        "abuse block",
    ] {
        if !v.faults.contains_key(kind) {
            problem(&mut v, format!("no '{kind}' was injected"));
        }
    }
    if v.kills == 0 {
        problem(&mut v, "no environment was killed mid-batch".into());
    }
    if !poison_kinds_present(run) {
        problem(&mut v, "not every kind of poison was sent".into());
    }
    Ok(v)
}

fn poison_kinds_present(run: &Run) -> bool {
    let kinds: HashSet<Poison> = run.events.iter().filter_map(|e| e.poison).collect();
    kinds.len() == 4
}
