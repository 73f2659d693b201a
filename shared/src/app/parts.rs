//! Events too large for one invocation, in parts (SPEC 5.2).
//!
//! A `partner.signed` with more contacts than a part takes is split into parts on the
//! function's own queue (`WORK_QUEUE_URL`), which several environments work on at once.
//! Each part carries its contacts with the event's terms and is planned again against the
//! partner as registered when it runs. Progress per invitee is kept under the event, so a
//! redelivered part spends no write on what landed. The event's record says `accepted` until
//! every part is done; then the part that finishes last completes it with every invitee's
//! outcome.
//!
//! Who finishes: the split itself counts as part 0 once the event's `accepted` record is
//! written, and each part counts itself once its own record is. Whoever brings the count to
//! all of them assembles the event's record, so it is completed exactly when the last of
//! them lands, whichever order they land in.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Abort;
use super::events::{EventWork, Processed, Rejection, claim, release, with_inviter_ids};
use crate::domain::event::{Envelope, EventError, EventErrorKind};
use crate::domain::partner::{self, PartnerSigned};
use crate::domain::plan::{self, Plan};
use crate::domain::trust::TrustState;
use crate::ports::ledger::{EventKey, EventRecord, EventStatus, InviteeOutcome, InviteeResult};
use crate::ports::queue::QueuedPart;

/// The `type` of a queued part.
pub const PART_TYPE: &str = "partner.signed.part";
/// The most invitees in one part: a group grant for all of them is one write.
pub const MAX_PART_INVITEES: usize = 20;
/// Writes one part may need at the deployment's full write rate; shared by several
/// environments, a part still finishes well inside the function's 300 s.
const PART_WRITE_SECONDS: u64 = 30;
/// More parts than any valid event makes (500 contacts, one a part).
const MAX_PARTS: u32 = 500;

/// Invitees per part for this plan at `writes_per_second`.
pub fn part_size(plan: &Plan, writes_per_second: u32) -> usize {
    let invitees = plan.invitees.len().max(1) as u64;
    let per_invitee = plan.estimated_writes().div_ceil(invitees).max(1);
    let fits = u64::from(writes_per_second.max(1)) * PART_WRITE_SECONDS / per_invitee;
    usize::try_from(fits)
        .unwrap_or(MAX_PART_INVITEES)
        .clamp(1, MAX_PART_INVITEES)
}

/// The data of a queued part.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartData {
    /// The split event.
    event: EventKey,
    partner_id: String,
    part: u32,
    parts: u32,
    /// The event's `data` with this part's contacts only.
    data: Value,
}

/// The key of part `n` of `event`: derived from the event, so a split done again (after a
/// crash) queues the same parts, which are then processed once each.
fn part_key(event: &EventKey, n: u32) -> EventKey {
    EventKey::new(
        event.scope.clone(),
        event.scope.clone(),
        format!("{}/part-{n}", super::self_service::request_id(event)),
    )
}

/// Whether a body names the function's own parts: their type, or their reserved source.
pub fn is_part(envelope: &Envelope, function: &str) -> bool {
    envelope.event_type == PART_TYPE || envelope.key.source == function
}

impl EventWork<'_> {
    /// Splits the event onto the work queue when it is larger than a part and a queue is
    /// configured: the event's `accepted` record, or `None` to do it here.
    pub(super) async fn split(
        &self,
        key: &EventKey,
        ev: &PartnerSigned,
        data: &Value,
        plan: &Plan,
        trust: Option<TrustState>,
        now: OffsetDateTime,
    ) -> Result<Option<EventRecord>, Abort> {
        let rt = self.runtime;
        let Some(queue) = rt.queue.as_deref() else {
            return Ok(None);
        };
        let size = part_size(plan, rt.writes_per_second);
        if ev.contacts.len() <= size {
            return Ok(None);
        }
        let chunks: Vec<_> = ev.contacts.chunks(size).collect();
        let total = u32::try_from(chunks.len()).unwrap_or(MAX_PARTS);
        let mut parts = Vec::with_capacity(chunks.len());
        for (n, chunk) in (1..).zip(chunks) {
            let mut part_data = data.clone();
            part_data["contacts"] = chunk
                .iter()
                .map(|c| {
                    let mut contact = json!({ "email": c.email.as_str(), "inviter": c.inviter });
                    if let Some(name) = &c.display_name {
                        contact["displayName"] = json!(name);
                    }
                    contact
                })
                .collect();
            let part = PartData {
                event: key.clone(),
                partner_id: ev.partner.id.clone(),
                part: n,
                parts: total,
                data: part_data,
            };
            let id = part_key(key, n).id;
            let body = json!({
                "specversion": "1.0",
                "id": id,
                "source": rt.function,
                "type": PART_TYPE,
                "time": now.format(&Rfc3339).unwrap_or_default(),
                "datacontenttype": "application/json",
                "data": part,
            })
            .to_string();
            parts.push(QueuedPart { id, body });
        }
        queue.send(&parts).await?;
        let record = EventRecord {
            key: key.clone(),
            event_type: partner::EVENT_TYPE.to_string(),
            status: EventStatus::Accepted,
            reason: Some(format!(
                "split into {total} parts of at most {size} contacts on the work queue; \
                 completed when every part is done"
            )),
            actor: None,
            outcomes: Vec::new(),
            trust,
            recorded_at: now,
        };
        rt.ledger.complete_event(&record).await?;
        tracing::info!(event = %key, contacts = ev.contacts.len(), parts = total, part_size = size,
            "event split into parts");
        self.part_done(key, &ev.partner.id, 0, total, now).await?;
        Ok(Some(record))
    }

    /// Processes one queued part exactly once.
    pub(super) async fn process_part(
        &self,
        envelope: Envelope,
        fallback: EventKey,
        now: OffsetDateTime,
    ) -> Result<Processed, Abort> {
        let function = self.runtime.function;
        let key = envelope.key.scoped(function);
        let part = match read_part(&envelope, function) {
            Ok(part) => part,
            // Under the message's own key, never the body's: a malformed body must not take
            // the key of a real part.
            Err(e) => {
                return self
                    .reject(fallback, PART_TYPE, Rejection::Invalid(e), now)
                    .await;
            }
        };
        let ledger = self.runtime.ledger.as_ref();
        if let Some(record) = claim(ledger, &key, now, self.deadline).await? {
            // An earlier attempt may have stopped between the part's record and the count.
            self.part_done(&part.event, &part.partner_id, part.part, part.parts, now)
                .await?;
            return Ok(Processed::Duplicate(record));
        }
        let result = match PartnerSigned::from_data(&part.data) {
            Err(e) => Ok(Err(Rejection::Invalid(e))),
            Ok(ev) => self.carry_out_part(&part, &ev, now).await,
        };
        let (status, reason, outcomes) = match result {
            Ok(Ok(outcomes)) => (EventStatus::Completed, None, outcomes),
            Ok(Err(rejection)) => {
                let outcomes = contacts_refused(&part.data, &rejection);
                (EventStatus::Rejected, Some(rejection.to_string()), outcomes)
            }
            Err(abort) => {
                release(ledger, &key).await;
                return Err(abort);
            }
        };
        let record = EventRecord {
            key,
            event_type: PART_TYPE.to_string(),
            status,
            reason,
            actor: None,
            outcomes,
            trust: None,
            recorded_at: now,
        };
        ledger.complete_event(&record).await?;
        self.part_done(&part.event, &part.partner_id, part.part, part.parts, now)
            .await?;
        Ok(if record.status == EventStatus::Rejected {
            let rejection = Rejection::NotAllowed(record.reason.clone().unwrap_or_default());
            Processed::Rejected(record, rejection)
        } else {
            Processed::Done(record)
        })
    }

    async fn carry_out_part(
        &self,
        part: &PartData,
        ev: &PartnerSigned,
        now: OffsetDateTime,
    ) -> Result<Result<Vec<InviteeOutcome>, Rejection>, Abort> {
        let rt = self.runtime;
        let Some(partner) = rt.ledger.partner(&part.partner_id).await? else {
            return Ok(Err(Rejection::NotAllowed(format!(
                "partner {} is not registered",
                part.partner_id
            ))));
        };
        let settings = self.plan_settings().await?;
        // Planned again against the partner as registered now and the policy as configured.
        let plan = match plan::plan_partner_signed(ev, Some(&partner), &settings, now) {
            Ok(plan) => plan,
            Err(refusal) => return Ok(Err(Rejection::NotAllowed(refusal.to_string()))),
        };
        let source = crate::domain::offboard::grant_source_partner(&partner.id);
        let outcomes = self
            .onboard(
                &part.event,
                &plan,
                Some(ev.partner.name.clone()),
                Some(&source),
                now,
            )
            .await?;
        Ok(Ok(outcomes))
    }

    /// Counts part `n` of `event` done; completes the event's record when every part is.
    async fn part_done(
        &self,
        event: &EventKey,
        partner_id: &str,
        n: u32,
        parts: u32,
        now: OffsetDateTime,
    ) -> Result<(), Abort> {
        let ledger = self.runtime.ledger.as_ref();
        let done = ledger.record_part_done(event, n).await?;
        if done <= parts as usize {
            return Ok(());
        }
        let Some(accepted) = ledger.event(event).await? else {
            return Ok(());
        };
        if accepted.status != EventStatus::Accepted {
            return Ok(());
        }
        let mut outcomes = Vec::new();
        for n in 1..=parts {
            match ledger.event(&part_key(event, n)).await? {
                Some(record) => outcomes.extend(record.outcomes),
                None => return Ok(()),
            }
        }
        let partner = ledger.partner(partner_id).await?;
        if let Some(partner) = with_inviter_ids(partner.as_ref(), &outcomes) {
            ledger.put_partner(&partner).await?;
        }
        let invited = outcomes
            .iter()
            .filter(|o| o.result != InviteeResult::Rejected)
            .count();
        let record = EventRecord {
            status: EventStatus::Completed,
            reason: Some(format!(
                "done in {parts} parts: {invited} of {} contacts onboarded",
                outcomes.len()
            )),
            outcomes,
            recorded_at: now,
            ..accepted
        };
        ledger.complete_event(&record).await?;
        tracing::info!(event = %event, parts, invitees = record.outcomes.len(),
            "every part done: event complete");
        Ok(())
    }
}

fn read_part(envelope: &Envelope, function: &str) -> Result<PartData, EventError> {
    let wrong = |reason: String| EventError::new(EventErrorKind::Invalid, "data", reason);
    if envelope.event_type != PART_TYPE || envelope.key.source != function {
        return Err(EventError::new(
            EventErrorKind::UnknownType,
            "source",
            format!(
                "source '{function}' and type {PART_TYPE} are reserved for the parts this function queues for itself"
            ),
        ));
    }
    let part: PartData = serde_json::from_value(envelope.data.clone())
        .map_err(|e| wrong(format!("not a part of a split event: {e}")))?;
    if part.event.scope != function
        || part.parts == 0
        || part.parts > MAX_PARTS
        || part.part == 0
        || part.part > part.parts
        || envelope.key.id != part_key(&part.event, part.part).id
    {
        return Err(wrong(format!(
            "part {} of {} of event {} is not a part this function made",
            part.part, part.parts, part.event
        )));
    }
    Ok(part)
}

/// Every contact of a refused part, with the refusal.
fn contacts_refused(data: &Value, rejection: &Rejection) -> Vec<InviteeOutcome> {
    data.get("contacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("email").and_then(Value::as_str))
        .map(|email| InviteeOutcome {
            email: email.to_lowercase(),
            result: InviteeResult::Rejected,
            user_id: None,
            granted: Vec::new(),
            reason: Some(format!("not invited: the part was refused ({rejection})")),
        })
        .collect()
}
