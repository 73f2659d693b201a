//! Partner self-service invitations (SPEC section 2, `guest.invite.requested`): an
//! authenticated requester asks for guests; the request is authorised whole against the
//! partners in the ledger, then done inline or split into parts on the function's own queue.
//!
//! Exactly once: the request is claimed in the ledger by its `(source, id)`, and each queued
//! part by its own key, so a redelivered request or part has one effect.
//!
//! Inline or queued: a request is done inline when at most [`INLINE_MAX_INVITEES`] invitees
//! and its estimated Graph writes fit [`INLINE_BUDGET`] at the function's write rate
//! (`GRAPH_MAX_WRITES_PER_SECOND`): an API Gateway HTTP API gives up after 30 s, so the
//! answer must come well before. With 2 writes per second (the deployed rate) and four
//! writes per invitee (invitation, properties, sponsor, one group) that is ten invitees.
//! Anything larger goes onto the queue in parts of [`PART_SIZE`], each of which fits a
//! queue invocation comfortably. Without a queue (local use) everything is done inline
//! within the invocation's deadline.

use sha2::{Digest, Sha256};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

mod parts;

pub use parts::PartProcessed;

use super::Abort;
use super::circuit::CircuitGate;
use super::events::{Rejection, claim, release};
use super::onboard::Onboarding;
use super::runtime::Runtime;
use crate::domain::access::Access;
use crate::domain::email::Email;
use crate::domain::event::{Event, EventError, EventErrorKind, parse_envelope, parse_event};
use crate::domain::offboard::grant_source_partner;
use crate::domain::plan::{Plan, plan_request};
use crate::domain::policy::{Refusal, Requester, authorise_request};
use crate::domain::request::{self, InviteRequest};
use crate::ports::directory::{Directory, DirectoryUser, GUEST_INVITER_ROLE};
use crate::ports::ledger::{
    EventKey, EventRecord, EventStatus, InviteeOutcome, InviteeResult, PartnerRecord,
};

/// The `source` of the parts this function queues for itself.
pub const PART_SOURCE: &str = "guest-inviter-request";
/// The `type` of a queued part.
pub const PART_TYPE: &str = "guest.invite.requested.part";
/// Invitees per queued part.
pub const PART_SIZE: usize = 20;
/// The most invitees done inline, whatever the write rate.
pub const INLINE_MAX_INVITEES: usize = 25;
/// Time the Graph writes of an inline request may take.
pub const INLINE_BUDGET: Duration = Duration::from_secs(20);
/// The whole of an inline request (reads, writes, ledger) must be done by then.
pub const INLINE_DEADLINE: Duration = Duration::from_secs(27);

/// Who is asking, as the handler authenticated them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A valid Entra ID bearer token: the requester is its `oid`.
    Token { oid: String },
    /// A valid webhook signature of a trusted internal system, which vouches for
    /// `requestedBy`.
    System,
}

/// What became of a request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Done inline; the record holds a result per invitee.
    Done(EventRecord),
    /// Queued in `parts` parts; their results land in the ledger under
    /// `(PART_SOURCE, "<request_id>/part-<n>")`.
    Accepted {
        record: EventRecord,
        request_id: String,
        parts: usize,
    },
    /// The same request came before: its recorded answer, nothing done again.
    Duplicate(EventRecord),
    /// Refused as a whole and recorded under the HTTP request's own key (`record.key`);
    /// nothing was done. `request` is the request's `(source, id)` when it could be read.
    Refused {
        record: EventRecord,
        request: Option<EventKey>,
        rejection: Rejection,
    },
    /// The request's id was used before by another requester: nothing done, nothing recorded.
    Conflict(String),
}

/// Why a request is refused, before anything is claimed or written.
struct Refused {
    request: Option<EventKey>,
    event_type: &'static str,
    actor: Option<String>,
    rejection: Rejection,
    outcomes: Vec<InviteeOutcome>,
}

impl Refused {
    fn new(
        request: Option<EventKey>,
        event_type: &'static str,
        actor: Option<String>,
        rejection: Rejection,
    ) -> Self {
        Refused {
            request,
            event_type,
            actor,
            rejection,
            outcomes: Vec::new(),
        }
    }
}

/// The id under which a queued request's parts are kept: derived from the request's
/// `(source, id)`, so that a resent request finds the same parts, and bounded in length,
/// so that the part ids fit every ledger key.
pub fn request_id(key: &EventKey) -> String {
    let digest = Sha256::digest(format!("{}\n{}", key.source, key.id).as_bytes());
    format!("req-{}", &hex::encode(digest)[..32])
}

/// The self-service use case for one invocation.
pub struct SelfService<'a> {
    pub runtime: &'a Runtime,
    pub gate: &'a CircuitGate,
}

/// The planned request and who it is for.
struct Authorised {
    /// The request's `(source, id)` in this function's scope.
    key: EventKey,
    plan: Plan,
    partner: PartnerRecord,
    requester: Requester,
    requester_name: Option<String>,
    access: Access,
}

impl SelfService<'_> {
    /// Handles an authenticated request body. `fallback` keys the record of a request that is
    /// refused. Work stops at `deadline` (inline requests sooner, see [`INLINE_DEADLINE`]).
    ///
    /// The request is validated and authorised before its `(source, id)` is claimed: a
    /// request that may not be made never occupies its key, so nobody can take the key of a
    /// request someone else will make. Its refusal is recorded under `fallback` (unique to the
    /// HTTP request), so it still leaves an audit record.
    pub async fn submit(
        &self,
        caller: &Caller,
        body: &[u8],
        fallback: EventKey,
        deadline: Instant,
    ) -> Result<Answer, Abort> {
        let now = self.runtime.settings.clock.now();
        let ledger = self.runtime.ledger.as_ref();
        let deadline = if self.runtime.queue.is_some() {
            deadline.min(Instant::now() + INLINE_DEADLINE)
        } else {
            deadline
        };
        let directory = self.runtime.directory(deadline);
        let (req, authorised) = match self.vet(caller, body, directory.as_ref()).await? {
            Ok(vetted) => vetted,
            Err(refused) => {
                let record = rejected(
                    fallback,
                    refused.event_type,
                    refused.actor,
                    &refused.rejection,
                    refused.outcomes,
                    now,
                );
                return self
                    .finish_refusal(record, refused.request, refused.rejection)
                    .await;
            }
        };
        let key = authorised.key.clone();
        if let Some(record) = claim(ledger, &key, now, deadline).await? {
            return Ok(seen_before(record, caller));
        }
        let fits = self.runtime.queue.is_none()
            || fits_inline(&authorised.plan, self.runtime.writes_per_second);
        let answer = if fits {
            self.inline(&key, &authorised, directory.as_ref(), now)
                .await
        } else {
            self.enqueue(&key, &req, &authorised, now).await
        };
        if answer.is_err() {
            release(ledger, &key).await;
        }
        answer
    }

    async fn finish_refusal(
        &self,
        record: EventRecord,
        request: Option<EventKey>,
        rejection: Rejection,
    ) -> Result<Answer, Abort> {
        self.runtime.ledger.complete_event(&record).await?;
        tracing::warn!(
            event = %record.key,
            request = request.as_ref().map(ToString::to_string),
            actor = record.actor.as_deref().unwrap_or("unknown"),
            reason = %rejection,
            "self-service request refused"
        );
        Ok(Answer::Refused {
            record,
            request,
            rejection,
        })
    }

    /// Reads, validates and authorises the request: the request and its plan, or why it is
    /// refused. Writes nothing.
    async fn vet(
        &self,
        caller: &Caller,
        body: &[u8],
        directory: &dyn Directory,
    ) -> Result<Result<(InviteRequest, Authorised), Refused>, Abort> {
        let token_actor = match caller {
            Caller::Token { oid } => Some(oid.clone()),
            Caller::System => None,
        };
        let envelope = match parse_envelope(body) {
            Ok(e) => e,
            Err(e) => {
                return Ok(Err(Refused::new(
                    None,
                    "unknown",
                    token_actor,
                    Rejection::Invalid(e),
                )));
            }
        };
        let key = envelope.key.scoped(self.runtime.function);
        let refuse = |actor: Option<String>, rejection: Rejection| {
            Refused::new(Some(key.clone()), request::EVENT_TYPE, actor, rejection)
        };
        let req = match parse_event(&envelope) {
            Ok(Event::InviteRequested(req)) => req,
            Ok(other) => {
                let e = EventError::new(
                    EventErrorKind::UnknownType,
                    "type",
                    format!(
                        "'{}' is not handled by {}; it takes {}",
                        other.event_type(),
                        self.runtime.function,
                        request::EVENT_TYPE
                    ),
                );
                return Ok(Err(refuse(token_actor, Rejection::Invalid(e))));
            }
            Err(e) => return Ok(Err(refuse(token_actor, Rejection::Invalid(e)))),
        };
        let user = match self.requester(caller, &req, directory).await? {
            Ok(user) => user,
            Err(reason) => {
                let mut refused = refuse(token_actor, Rejection::NotAllowed(reason));
                refused.outcomes = all_refused(&req, None);
                return Ok(Err(refused));
            }
        };
        match self.authorise(&req, &user, directory, key.clone()).await? {
            Ok(authorised) => Ok(Ok((req, authorised))),
            Err(refusal) => {
                let mut refused = refuse(
                    Some(user.id.clone()),
                    Rejection::NotAllowed(refusal.to_string()),
                );
                refused.outcomes = all_refused(&req, Some(&refusal));
                Ok(Err(refused))
            }
        }
    }

    /// The directory user the request is made by, or why nobody may be.
    async fn requester(
        &self,
        caller: &Caller,
        req: &InviteRequest,
        directory: &dyn Directory,
    ) -> Result<Result<DirectoryUser, String>, Abort> {
        let user = match caller {
            Caller::Token { oid } => match found(directory.get_user(oid).await)? {
                Some(user) => user,
                // Entra signed a token for this user, so the user exists: Graph has not caught
                // up with a user created moments ago (SPEC 5.1). Asked again, not refused.
                None => {
                    return Err(Abort::transient(format!(
                        "the token's user {oid} is not in Graph yet; send the request again"
                    )));
                }
            },
            Caller::System => match self.find_requester(&req.requested_by, directory).await? {
                Some(user) => user,
                None => {
                    return Ok(Err(format!(
                        "data.requestedBy: no user '{}' in the directory",
                        req.requested_by
                    )));
                }
            },
        };
        if let Caller::Token { oid } = caller {
            let named = &req.requested_by;
            let same = named.eq_ignore_ascii_case(oid)
                || [&user.user_principal_name, &user.mail]
                    .into_iter()
                    .flatten()
                    .any(|a| a.eq_ignore_ascii_case(named));
            if !same {
                return Ok(Err(
                    "data.requestedBy: names someone other than the bearer token's user".into(),
                ));
            }
        }
        if user.account_enabled == Some(false) {
            return Ok(Err(format!("the requester {} is disabled", user.id)));
        }
        Ok(Ok(user))
    }

    /// By object id or UPN; a guest, whose UPN is a made-up `#EXT#` name, by its mail.
    async fn find_requester(
        &self,
        reference: &str,
        directory: &dyn Directory,
    ) -> Result<Option<DirectoryUser>, Abort> {
        if let Some(user) = found(directory.get_user(reference).await)? {
            return Ok(Some(user));
        }
        if !reference.contains('@') {
            return Ok(None);
        }
        // Only a user whose own mail is the address: otherMails and proxy addresses may be
        // set by others and must not make someone a requester.
        Ok(
            found(directory.find_user_by_email(reference).await)?.filter(|u| {
                u.mail
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(reference))
            }),
        )
    }

    async fn authorise(
        &self,
        req: &InviteRequest,
        user: &DirectoryUser,
        directory: &dyn Directory,
        key: EventKey,
    ) -> Result<Result<Authorised, Refusal>, Abort> {
        let rt = self.runtime;
        let mut addresses: Vec<Email> = Vec::new();
        for address in [&user.mail, &user.user_principal_name]
            .into_iter()
            .flatten()
        {
            if let Ok(email) = Email::parse(address)
                && !addresses.iter().any(|a| a.key() == email.key())
            {
                addresses.push(email);
            }
        }
        let requester = Requester {
            user_id: user.id.clone(),
            addresses,
            guest_inviter: directory
                .has_directory_role(&user.id, GUEST_INVITER_ROLE)
                .await?,
        };
        // A partner whose contract ended registers nobody any more.
        let mut partners = rt.ledger.partners().await?;
        partners.retain(|p| p.ended_at.is_none());
        let emails = req.emails();
        let (partner, access) =
            match authorise_request(&requester, &partners, &emails, req.access.as_ref()) {
                Ok(a) => (a.partner.clone(), a.access),
                Err(refusal) => return Ok(Err(refusal)),
            };
        let settings = rt.plan_settings(directory).await?;
        let plan = plan_request(req, &partner, &requester, &settings);
        // All or nothing: a request with one invitee the policy refuses changes nothing.
        if let Some((_, refusal)) = plan.refused.first() {
            return Ok(Err(refusal.clone()));
        }
        Ok(Ok(Authorised {
            key,
            plan,
            partner,
            requester,
            requester_name: user.display_name.clone(),
            access,
        }))
    }

    async fn inline(
        &self,
        key: &EventKey,
        a: &Authorised,
        directory: &dyn Directory,
        now: OffsetDateTime,
    ) -> Result<Answer, Abort> {
        let source = grant_source_partner(&a.partner.id);
        let outcomes = self
            .onboarding(
                key,
                directory,
                &a.partner,
                &source,
                a.requester_name.clone(),
                now,
            )
            .run(&a.plan)
            .await?;
        let record = EventRecord {
            key: key.clone(),
            event_type: request::EVENT_TYPE.to_string(),
            status: EventStatus::Completed,
            reason: None,
            actor: Some(a.requester.user_id.clone()),
            outcomes,
            trust: None,
            recorded_at: now,
        };
        self.runtime.ledger.complete_event(&record).await?;
        tracing::info!(event = %key, actor = %a.requester.user_id, partner = %a.partner.id,
            invitees = record.outcomes.len(), "self-service request done inline");
        Ok(Answer::Done(record))
    }

    fn onboarding<'o>(
        &'o self,
        unit: &'o EventKey,
        directory: &'o dyn Directory,
        partner: &PartnerRecord,
        grant_source: &'o str,
        inviter_name: Option<String>,
        now: OffsetDateTime,
    ) -> Onboarding<'o> {
        let rt = self.runtime;
        Onboarding {
            directory,
            ledger: rt.ledger.as_ref(),
            mail: rt.mail.as_deref(),
            gate: self.gate,
            now,
            probe_after: rt.settings.circuit_probe_after,
            unit: Some(unit),
            partner_name: Some(partner.name.clone()),
            inviter_name,
            progress: rt.progress.as_deref(),
            trust_tenant_id: None,
            grant_source: Some(grant_source),
        }
    }
}

/// Whether the plan can be done before an HTTP caller gives up (module docs).
pub fn fits_inline(plan: &Plan, writes_per_second: u32) -> bool {
    plan.invitees.len() <= INLINE_MAX_INVITEES
        && plan.estimated_writes() <= u64::from(writes_per_second) * INLINE_BUDGET.as_secs()
}

/// The answer to a request seen before, for this caller.
fn seen_before(record: EventRecord, caller: &Caller) -> Answer {
    if let Caller::Token { oid } = caller
        && !record
            .actor
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(oid))
    {
        return Answer::Conflict(format!(
            "request {} was made before by another requester: send a new id",
            record.key
        ));
    }
    match record.status {
        EventStatus::Rejected => Answer::Conflict(format!(
            "request {} was refused before ({}): send a corrected request with a new id",
            record.key,
            record.reason.as_deref().unwrap_or("no reason recorded")
        )),
        _ => Answer::Duplicate(record),
    }
}

fn rejected(
    key: EventKey,
    event_type: &str,
    actor: Option<String>,
    rejection: &Rejection,
    outcomes: Vec<InviteeOutcome>,
    now: OffsetDateTime,
) -> EventRecord {
    EventRecord {
        key,
        event_type: event_type.to_string(),
        status: EventStatus::Rejected,
        reason: Some(rejection.to_string()),
        actor,
        outcomes,
        trust: None,
        recorded_at: now,
    }
}

/// Every invitee of a refused request, the offender with the refusal (audit).
fn all_refused(req: &InviteRequest, refusal: Option<&Refusal>) -> Vec<InviteeOutcome> {
    req.invitees
        .iter()
        .map(|i| {
            let reason = match refusal {
                Some(r) if r.subject.eq_ignore_ascii_case(i.email.as_str()) => r.reason.clone(),
                Some(r) => format!("not invited: the request was refused ({r})"),
                None => "not invited: the request was refused".into(),
            };
            refused_outcome(&i.email, reason)
        })
        .collect()
}

fn refused_outcome(email: &Email, reason: String) -> InviteeOutcome {
    InviteeOutcome {
        email: email.key(),
        result: InviteeResult::Rejected,
        user_id: None,
        granted: Vec::new(),
        reason: Some(reason),
    }
}

/// A lookup Graph refused outright (a malformed id, say) finds nobody; anything retryable
/// stays an abort.
fn found(
    lookup: Result<Option<DirectoryUser>, crate::ports::DirectoryError>,
) -> Result<Option<DirectoryUser>, Abort> {
    match lookup {
        Ok(user) => Ok(user),
        Err(crate::ports::DirectoryError::Permanent { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_stable_and_short() {
        let key = EventKey::new("guest-inviter-request", "urn:portal", "x".repeat(512));
        let id = request_id(&key);
        assert_eq!(id, request_id(&key.clone()));
        assert_eq!(id.len(), 36);
        assert_ne!(
            id,
            request_id(&EventKey::new(
                "guest-inviter-request",
                "urn:portal2",
                key.id.clone()
            ))
        );
    }
}
