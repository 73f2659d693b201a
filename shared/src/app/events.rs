//! Processing one event (queue message or webhook body) exactly once: claim it in the
//! ledger, validate it whole, plan, carry out the plan, record the outcome.

use std::time::Duration;
use time::OffsetDateTime;
use tracing::Instrument;

use super::Abort;
use super::circuit::CircuitGate;
use super::onboard::Onboarding;
use super::runtime::Runtime;
use crate::domain::event::{
    Envelope, Event, EventError, EventErrorKind, parse_envelope, parse_event,
};
use crate::domain::offboard::{grant_source_hr, grant_source_partner};
use crate::domain::plan::{self, Plan, PlanSettings};
use crate::domain::trust::TrustState;
use crate::ports::directory::Directory;
use crate::ports::ledger::{Claim, EventKey, EventRecord, EventStatus};

/// The longest a claim keeps other processes off an event: longer than any invocation (15 min).
pub(crate) const CLAIM_LEASE: Duration = Duration::from_secs(16 * 60);

/// Kept past the work's deadline: the claim holder's last ledger writes, and clock skew.
const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// How long a claim taken now keeps other processes off the event: until the work that took it
/// must have ended (`deadline`, after which its Graph calls stop and Lambda ends the
/// invocation), never longer than [`CLAIM_LEASE`]. An environment that died mid-batch so holds
/// its events no longer than its invocation could have run, and their redelivery after the
/// visibility timeout does them, instead of finding them claimed until the lease ran out.
pub(crate) fn claim_lease(deadline: tokio::time::Instant) -> Duration {
    (deadline.saturating_duration_since(tokio::time::Instant::now()) + LEASE_MARGIN)
        .min(CLAIM_LEASE)
}

/// Why an event was refused: never retried.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// It can never be valid (bad JSON, missing or wrong fields, unknown type).
    Invalid(EventError),
    /// Valid, but policy forbids it.
    NotAllowed(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Invalid(e) => write!(f, "{e}"),
            Rejection::NotAllowed(reason) => f.write_str(reason),
        }
    }
}

/// What became of an event.
#[derive(Debug, Clone)]
pub enum Processed {
    Done(EventRecord),
    /// Processed before: nothing was done again.
    Duplicate(EventRecord),
    Rejected(EventRecord, Rejection),
}

impl Processed {
    pub fn record(&self) -> &EventRecord {
        match self {
            Processed::Done(r) | Processed::Duplicate(r) | Processed::Rejected(r, _) => r,
        }
    }
}

/// One unit of event work.
pub struct EventWork<'a> {
    pub runtime: &'a Runtime,
    pub directory: &'a dyn Directory,
    pub gate: &'a CircuitGate,
    /// The event types this function handles.
    pub accepts: &'a [&'a str],
    /// Whether the body came from the function's own queue, where its parts wait.
    pub takes_parts: bool,
    /// When this unit's work must end: the claim it takes lasts no longer.
    pub deadline: tokio::time::Instant,
}

impl EventWork<'_> {
    /// Processes a raw body. `fallback` keys the rejection of a body too broken to name its
    /// own `(source, id)`, so that it too leaves a record. Logs one line per event with the
    /// function, the event, its outcome and the time it took.
    pub async fn process_body(&self, body: &[u8], fallback: EventKey) -> Result<Processed, Abort> {
        let started = std::time::Instant::now();
        let envelope = parse_envelope(body);
        let partner = envelope.as_ref().ok().and_then(partner_of);
        let span = event_span(envelope.as_ref().ok(), &fallback);
        let result = self
            .process(envelope, fallback)
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let function = self.runtime.function;
        match &result {
            Ok(processed) => {
                let record = processed.record();
                let outcome = match processed {
                    Processed::Done(_) => "processed",
                    Processed::Duplicate(_) => "duplicate",
                    Processed::Rejected(..) => "rejected",
                };
                tracing::info!(
                    function,
                    event = %record.key,
                    event_type = record.event_type,
                    outcome,
                    invitees = record.outcomes.len(),
                    elapsed_ms,
                    "event done"
                );
            }
            Err(abort) => {
                abort.report_outage(function);
                tracing::warn!(
                    function,
                    class = ?abort.class,
                    error = %abort,
                    elapsed_ms,
                    "event not done; it will be retried"
                )
            }
        }
        self.runtime.metrics.publish(
            function,
            &super::counting::of_event(&result, partner.as_deref()),
        );
        result
    }

    async fn process(
        &self,
        envelope: Result<Envelope, EventError>,
        fallback: EventKey,
    ) -> Result<Processed, Abort> {
        let now = self.runtime.settings.clock.now();
        let envelope = match envelope {
            Ok(e) => e,
            Err(e) => {
                return self
                    .reject(fallback, "unknown", Rejection::Invalid(e), now)
                    .await;
            }
        };
        if super::parts::is_part(&envelope, self.runtime.function) {
            if self.takes_parts {
                return self.process_part(envelope, fallback, now).await;
            }
            // Never under the body's own key: that would take the key of a real part.
            let e = EventError::new(
                EventErrorKind::Invalid,
                "source",
                format!(
                    "source '{}' and type {} are reserved for the parts the function queues                      for itself",
                    self.runtime.function,
                    super::parts::PART_TYPE
                ),
            );
            return self
                .reject(fallback, &envelope.event_type, Rejection::Invalid(e), now)
                .await;
        }
        let key = envelope.key.scoped(self.runtime.function);
        if let Some(record) = claim(self.runtime.ledger.as_ref(), &key, now, self.deadline).await? {
            return Ok(Processed::Duplicate(record));
        }
        let event_type = envelope.event_type.clone();
        let result = match parse_event(&envelope) {
            Err(e) => Err(Rejection::Invalid(e)),
            Ok(event) if !self.accepts.contains(&event.event_type()) => {
                Err(Rejection::Invalid(EventError::new(
                    EventErrorKind::UnknownType,
                    "type",
                    format!(
                        "'{}' is not handled by {}; it takes {}",
                        event.event_type(),
                        self.runtime.function,
                        self.accepts.join(", ")
                    ),
                )))
            }
            Ok(event) => Ok(event),
        };
        let event = match result {
            Ok(event) => event,
            Err(rejection) => return self.reject_claimed(key, &event_type, rejection, now).await,
        };
        match self.carry_out(&key, &event, &envelope.data, now).await {
            Ok(Ok(record)) => {
                // A split event's record is written before its parts can finish it.
                if record.status != EventStatus::Accepted {
                    self.runtime.ledger.complete_event(&record).await?;
                }
                Ok(Processed::Done(record))
            }
            Ok(Err(rejection)) => self.reject_claimed(key, &event_type, rejection, now).await,
            Err(abort) => {
                release(self.runtime.ledger.as_ref(), &key).await;
                Err(abort)
            }
        }
    }

    pub(super) async fn plan_settings(&self) -> Result<PlanSettings, Abort> {
        self.runtime.plan_settings(self.directory).await
    }

    /// The event's record: `accepted` when it was split into parts (and already recorded).
    async fn carry_out(
        &self,
        key: &EventKey,
        event: &Event,
        data: &serde_json::Value,
        now: OffsetDateTime,
    ) -> Result<Result<EventRecord, Rejection>, Abort> {
        let rt = self.runtime;
        let settings = self.plan_settings().await?;
        let mut trust = None;
        let (plan, partner_name) = match event {
            Event::PartnerSigned(ev) => {
                let existing = rt.ledger.partner(&ev.partner.id).await?;
                let mut plan =
                    match plan::plan_partner_signed(ev, existing.as_ref(), &settings, now) {
                        Ok(plan) => plan,
                        Err(refusal) => {
                            return Ok(Err(Rejection::NotAllowed(refusal.to_string())));
                        }
                    };
                // Before the invitations: with automatic redemption in place they are
                // added without a consent prompt.
                if let Some(asked) = ev.trust.filter(|t| !t.asks_nothing()) {
                    let earlier = existing.as_ref().and_then(|p| p.trust.as_ref());
                    let state =
                        super::trust::establish(self.directory, ev, &asked, earlier).await?;
                    if let Some(partner) = plan.partner.as_mut()
                        && matches!(state, TrustState::Trusted { .. })
                    {
                        partner.trust = Some(state.clone());
                    }
                    trust = Some(state);
                }
                if let Some(partner) = &plan.partner {
                    rt.ledger.put_partner(partner).await?;
                }
                if let Some(accepted) = self.split(key, ev, data, &plan, trust.clone(), now).await?
                {
                    return Ok(Ok(accepted));
                }
                (plan, Some(ev.partner.name.clone()))
            }
            Event::HrRecordAdded(ev) => {
                let plan = plan::plan_hr_record(ev, &rt.settings.access_rules, &settings, now);
                if let Some((_, refusal)) = plan.refused.first() {
                    return Ok(Err(Rejection::NotAllowed(refusal.to_string())));
                }
                self.schedule_record_end(key, ev, now).await?;
                (plan, None)
            }
            Event::PartnerEnded(end) | Event::HrRecordEnded(end) => {
                return self.end(key, event.event_type(), end, now).await;
            }
            Event::InviteRequested(_) => {
                return Ok(Err(Rejection::NotAllowed(
                    "guest.invite.requested is answered by guest-inviter-request".into(),
                )));
            }
        };
        let source = match event {
            Event::HrRecordAdded(ev) => Some(grant_source_hr(&ev.employee_id)),
            _ => plan.partner.as_ref().map(|p| grant_source_partner(&p.id)),
        };
        let outcomes = self
            .onboard(key, &plan, partner_name, source.as_deref(), now)
            .await?;
        if let Some(partner) = with_inviter_ids(plan.partner.as_ref(), &outcomes) {
            rt.ledger.put_partner(&partner).await?;
        }
        Ok(Ok(EventRecord {
            key: key.clone(),
            event_type: event.event_type().to_string(),
            status: EventStatus::Completed,
            reason: None,
            actor: None,
            outcomes,
            trust,
            recorded_at: now,
        }))
    }

    pub(super) async fn onboard(
        &self,
        key: &EventKey,
        plan: &Plan,
        partner_name: Option<String>,
        grant_source: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Vec<crate::ports::ledger::InviteeOutcome>, Abort> {
        let rt = self.runtime;
        Onboarding {
            directory: self.directory,
            ledger: rt.ledger.as_ref(),
            mail: rt.mail.as_deref(),
            gate: self.gate,
            now,
            probe_after: rt.settings.circuit_probe_after,
            unit: Some(key),
            partner_name,
            inviter_name: None,
            progress: rt.progress.as_deref(),
            trust_tenant_id: plan
                .partner
                .as_ref()
                .and_then(|p| p.trust.as_ref())
                .is_some_and(TrustState::redemption_trusted)
                .then_some(rt.tenant_id.as_str()),
            grant_source,
        }
        .run(plan)
        .await
    }

    pub(super) async fn reject(
        &self,
        key: EventKey,
        event_type: &str,
        rejection: Rejection,
        now: OffsetDateTime,
    ) -> Result<Processed, Abort> {
        if let Claim::Completed(record) = self
            .runtime
            .ledger
            .claim_event(&key, claim_lease(self.deadline), now)
            .await?
        {
            return Ok(Processed::Duplicate(*record));
        }
        self.reject_claimed(key, event_type, rejection, now).await
    }

    async fn reject_claimed(
        &self,
        key: EventKey,
        event_type: &str,
        rejection: Rejection,
        now: OffsetDateTime,
    ) -> Result<Processed, Abort> {
        let record = EventRecord {
            key,
            event_type: event_type.to_string(),
            status: EventStatus::Rejected,
            reason: Some(rejection.to_string()),
            actor: None,
            outcomes: Vec::new(),
            trust: None,
            recorded_at: now,
        };
        self.runtime.ledger.complete_event(&record).await?;
        tracing::warn!(event = %record.key, event_type, reason = %rejection, "event rejected");
        Ok(Processed::Rejected(record, rejection))
    }
}

/// Claims `key` for this invocation: `Ok(None)` when it is ours to process, `Ok(Some(record))`
/// when it was processed before (nothing is to be done again). Held elsewhere: a transient
/// abort, so the redelivery finds it finished or free.
pub(crate) async fn claim(
    ledger: &dyn crate::ports::ledger::Ledger,
    key: &EventKey,
    now: OffsetDateTime,
    deadline: tokio::time::Instant,
) -> Result<Option<EventRecord>, Abort> {
    match ledger.claim_event(key, claim_lease(deadline), now).await? {
        Claim::Completed(record) => {
            tracing::info!(event = %key, "event already processed: nothing done again");
            Ok(Some(*record))
        }
        Claim::InProgress { until } => Err(Abort::transient(format!(
            "event {key} is being processed by another invocation (claimed until {until})"
        ))),
        Claim::Acquired => Ok(None),
    }
}

/// Gives a claim back after a transient failure, so the redelivery can do the rest at once.
pub(crate) async fn release(ledger: &dyn crate::ports::ledger::Ledger, key: &EventKey) {
    if let Err(e) = ledger.release_event(key).await {
        tracing::warn!(event = %key, error = %e, "could not release the claim; it expires with its lease");
    }
}

/// The partner record with the object ids of inviters who were just found or invited, so
/// that a self-service request can match its requester by `oid`. `None` when nothing changed.
pub(super) fn with_inviter_ids(
    partner: Option<&crate::ports::ledger::PartnerRecord>,
    outcomes: &[crate::ports::ledger::InviteeOutcome],
) -> Option<crate::ports::ledger::PartnerRecord> {
    let mut partner = partner?.clone();
    let mut changed = false;
    for inviter in partner.inviters.iter_mut().filter(|i| i.user_id.is_none()) {
        if let Some(id) = outcomes
            .iter()
            .find(|o| o.email.eq_ignore_ascii_case(&inviter.email))
            .and_then(|o| o.user_id.clone())
        {
            inviter.user_id = Some(id);
            changed = true;
        }
    }
    changed.then_some(partner)
}

/// The span every line of one event's work is logged in: the event's `(source, id)` as
/// `correlation_id` (`fallback` when the body names none), and its partner where it names one.
pub fn event_span(envelope: Option<&Envelope>, fallback: &EventKey) -> tracing::Span {
    let correlation = envelope.map_or(fallback, |e| &e.key).to_string();
    let partner = envelope.and_then(partner_of);
    tracing::info_span!(
        "event",
        correlation_id = correlation.as_str(),
        partner = partner.as_deref()
    )
}

/// The partner an event is for, where it names one (`data.partner.id`).
fn partner_of(envelope: &Envelope) -> Option<String> {
    envelope
        .data
        .pointer("/partner/id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod lease_tests {
    use super::*;

    #[tokio::test]
    async fn a_claim_lasts_until_the_work_must_have_ended_and_never_past_lambdas_longest() {
        let now = tokio::time::Instant::now();
        let lease = claim_lease(now + Duration::from_secs(20));
        assert!(
            lease > Duration::from_secs(25) && lease <= Duration::from_secs(30),
            "{lease:?}"
        );
        assert_eq!(claim_lease(now + Duration::from_secs(3600)), CLAIM_LEASE);
        // Work past its deadline still keeps others off for the margin.
        assert_eq!(claim_lease(now), LEASE_MARGIN);
    }
}
