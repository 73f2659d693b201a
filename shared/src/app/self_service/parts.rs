//! Large self-service requests in parts: queued on the function's own queue, each part
//! processed exactly once by its own key and planned again against the partner as it is.

use super::{
    Answer, Authorised, PART_SIZE, PART_SOURCE, PART_TYPE, SelfService, all_refused,
    refused_outcome, rejected, request_id,
};
use crate::app::Abort;
use crate::app::events::{Rejection, claim, release};
use crate::domain::access::Access;
use crate::domain::email::Email;
use crate::domain::event::{EventError, EventErrorKind, parse_envelope};
use crate::domain::offboard::grant_source_partner;
use crate::domain::plan::plan_request;
use crate::domain::policy::{Refusal, Requester};
use crate::domain::request::{self, InviteRequest};
use crate::ports::directory::Directory;
use crate::ports::ledger::{EventKey, EventRecord, EventStatus};
use crate::ports::queue::QueuedPart;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

impl SelfService<'_> {
    pub(super) async fn enqueue(
        &self,
        key: &EventKey,
        req: &InviteRequest,
        a: &Authorised,
        now: OffsetDateTime,
    ) -> Result<Answer, Abort> {
        let queue = self
            .runtime
            .queue
            .as_deref()
            .ok_or_else(|| Abort::transient("no work queue configured (WORK_QUEUE_URL)"))?;
        let rid = request_id(key);
        let chunks: Vec<_> = req.invitees.chunks(PART_SIZE).collect();
        let total = chunks.len();
        let mut parts = Vec::with_capacity(total);
        for (i, chunk) in chunks.into_iter().enumerate() {
            let data = PartData {
                request: key.to_string(),
                request_id: rid.clone(),
                part: i + 1,
                parts: total,
                partner_id: a.partner.id.clone(),
                requested_by: a.requester.user_id.clone(),
                requester: PartRequester {
                    user_id: a.requester.user_id.clone(),
                    addresses: a
                        .requester
                        .addresses
                        .iter()
                        .map(|e| e.to_string())
                        .collect(),
                    guest_inviter: a.requester.guest_inviter,
                    display_name: a.requester_name.clone(),
                },
                invitees: chunk
                    .iter()
                    .map(|i| PartInvitee {
                        email: i.email.to_string(),
                        display_name: i.display_name.clone(),
                    })
                    .collect(),
                access: (!a.access.is_empty()).then(|| a.access.clone()),
                delivery: req.delivery,
                message: req.message.clone(),
            };
            let id = format!("{rid}/part-{}", i + 1);
            let body = json!({
                "specversion": "1.0",
                "id": id,
                "source": PART_SOURCE,
                "type": PART_TYPE,
                "time": now.format(&Rfc3339).unwrap_or_default(),
                "datacontenttype": "application/json",
                "data": data,
            })
            .to_string();
            parts.push(QueuedPart { id, body });
        }
        queue.send(&parts).await?;
        let record = EventRecord {
            key: key.clone(),
            event_type: request::EVENT_TYPE.to_string(),
            status: EventStatus::Accepted,
            reason: Some(format!(
                "queued as request {rid} in {total} parts of at most {PART_SIZE} invitees; \
                 per-invitee results are recorded under {PART_SOURCE} {rid}/part-<n>"
            )),
            actor: Some(a.requester.user_id.clone()),
            outcomes: Vec::new(),
            trust: None,
            recorded_at: now,
        };
        self.runtime.ledger.complete_event(&record).await?;
        tracing::info!(event = %key, request_id = %rid, actor = %a.requester.user_id,
            partner = %a.partner.id, invitees = req.invitees.len(), parts = total,
            "self-service request queued");
        Ok(Answer::Accepted {
            record,
            request_id: rid,
            parts: total,
        })
    }

    /// Processes one queued part exactly once. `fallback` keys the record of a message that
    /// is not one of our parts, so that it can never take the key of a real event.
    pub async fn process_part(
        &self,
        body: &[u8],
        fallback: EventKey,
        deadline: Instant,
    ) -> Result<PartProcessed, Abort> {
        let now = self.runtime.settings.clock.now();
        let ledger = self.runtime.ledger.as_ref();
        let parsed = parse_envelope(body).and_then(|env| {
            if env.key.source != PART_SOURCE || env.event_type != PART_TYPE {
                return Err(EventError::new(
                    EventErrorKind::UnknownType,
                    "type",
                    format!("the work queue takes only {PART_TYPE} parts from {PART_SOURCE}"),
                ));
            }
            let data: PartData = serde_json::from_value(env.data.clone()).map_err(|e| {
                EventError::new(
                    EventErrorKind::Invalid,
                    "data",
                    format!("not a request part: {e}"),
                )
            })?;
            let req = InviteRequest::from_data(&env.data)?;
            Ok((env, data, req))
        });
        let (envelope, data, req) = match parsed {
            Ok(p) => p,
            Err(e) => {
                if let Some(record) = claim(ledger, &fallback, now, deadline).await? {
                    return Ok(PartProcessed::Duplicate(record));
                }
                let rejection = Rejection::Invalid(e);
                let record = rejected(fallback, PART_TYPE, None, &rejection, Vec::new(), now);
                ledger.complete_event(&record).await?;
                tracing::error!(event = %record.key, reason = %rejection, "work queue message rejected");
                return Ok(PartProcessed::Rejected(record));
            }
        };
        let key = envelope.key.scoped(self.runtime.function);
        if let Some(record) = claim(ledger, &key, now, deadline).await? {
            return Ok(PartProcessed::Duplicate(record));
        }
        let directory = self.runtime.directory(deadline);
        match self.part(&key, &data, &req, directory.as_ref(), now).await {
            Ok(record) => {
                ledger.complete_event(&record).await?;
                tracing::info!(event = %key, part = data.part, parts = data.parts,
                    outcomes = record.outcomes.len(), "request part processed");
                Ok(if record.status == EventStatus::Rejected {
                    PartProcessed::Rejected(record)
                } else {
                    PartProcessed::Done(record)
                })
            }
            Err(abort) => {
                release(ledger, &key).await;
                Err(abort)
            }
        }
    }

    async fn part(
        &self,
        key: &EventKey,
        data: &PartData,
        req: &InviteRequest,
        directory: &dyn Directory,
        now: OffsetDateTime,
    ) -> Result<EventRecord, Abort> {
        let rt = self.runtime;
        let actor = Some(data.requester.user_id.clone());
        let record = |status, reason, outcomes| EventRecord {
            key: key.clone(),
            event_type: PART_TYPE.to_string(),
            status,
            reason,
            actor: actor.clone(),
            outcomes,
            trust: None,
            recorded_at: now,
        };
        let registered = rt.ledger.partner(&data.partner_id).await?;
        let Some(partner) = registered.filter(|p| p.ended_at.is_none()) else {
            let refusal = Refusal::new(
                format!("partner {}", data.partner_id),
                "is no longer registered",
            );
            return Ok(record(
                EventStatus::Rejected,
                Some(refusal.to_string()),
                all_refused(req, Some(&refusal)),
            ));
        };
        let requester = Requester {
            user_id: data.requester.user_id.clone(),
            addresses: data
                .requester
                .addresses
                .iter()
                .filter_map(|a| Email::parse(a).ok())
                .collect(),
            guest_inviter: data.requester.guest_inviter,
        };
        let settings = rt.plan_settings(directory).await?;
        // Planned again against the partner as registered now: a part never grants more
        // than the partner may, even if the partner changed since the request was accepted.
        let plan = plan_request(req, &partner, &requester, &settings);
        let source = grant_source_partner(&partner.id);
        let done = self
            .onboarding(
                key,
                directory,
                &partner,
                &source,
                data.requester.display_name.clone(),
                now,
            )
            .run(&plan)
            .await?;
        // In the order the request named them.
        let mut outcomes = Vec::with_capacity(req.invitees.len());
        for invitee in &req.invitees {
            let key = invitee.email.key();
            if let Some(o) = done.iter().find(|o| o.email == key) {
                outcomes.push(o.clone());
            } else if let Some((_, r)) = plan.refused.iter().find(|(e, _)| e.key() == key) {
                outcomes.push(refused_outcome(&invitee.email, r.to_string()));
            }
        }
        Ok(record(EventStatus::Completed, None, outcomes))
    }
}

/// What became of a queued part.
#[derive(Debug, Clone)]
pub enum PartProcessed {
    Done(EventRecord),
    Duplicate(EventRecord),
    Rejected(EventRecord),
}

/// The data of a queued part: a `guest.invite.requested` for its invitees (so the same
/// validation reads it), plus the authorisation it was given.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartData {
    /// The request's `source#id`.
    request: String,
    request_id: String,
    part: usize,
    parts: usize,
    partner_id: String,
    /// The requester's object id.
    requested_by: String,
    requester: PartRequester,
    invitees: Vec<PartInvitee>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access: Option<Access>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delivery: Option<crate::ports::directory::Delivery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartRequester {
    user_id: String,
    addresses: Vec<String>,
    guest_inviter: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartInvitee {
    email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
}
