//! The ledger port: what the product remembers between invocations.
//!
//! Every write that decides "who does this" is conditional, so that the same event processed
//! twice or by two processes at once has one effect.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

use crate::domain::access::Access;
use crate::domain::offboard::End;
use crate::domain::trust::TrustState;
use crate::error::{Classify, FailureClass};
use crate::ports::directory::Delivery;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("ledger throttled the request: {0}")]
    Throttled(String),
    #[error("ledger record is unreadable: {0}")]
    Corrupt(String),
}

impl Classify for LedgerError {
    fn class(&self) -> FailureClass {
        match self {
            LedgerError::Unavailable(_) => FailureClass::Transient,
            LedgerError::Throttled(_) => FailureClass::Throttled,
            LedgerError::Corrupt(_) => FailureClass::Permanent,
        }
    }
}

/// `(source, id)`: the idempotency key of an event, kept apart per `scope`.
///
/// The scope is the function that processes the event (and, for a self-service request
/// made with a bearer token, the requester too). `source` and `id` come from the caller, so
/// without it anyone who may call one function could take the key of another system's event
/// in another function, and that event would be answered as a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventKey {
    #[serde(default)]
    pub scope: String,
    pub source: String,
    pub id: String,
}

impl EventKey {
    pub fn new(scope: impl Into<String>, source: impl Into<String>, id: impl Into<String>) -> Self {
        EventKey {
            scope: scope.into(),
            source: source.into(),
            id: id.into(),
        }
    }

    /// The same `(source, id)` in `scope`.
    pub fn scoped(&self, scope: &str) -> EventKey {
        EventKey {
            scope: scope.to_string(),
            ..self.clone()
        }
    }

    /// What the stores key events by, with `id`: scope and source in one string. Scopes are
    /// function names (and object ids), which never hold the separator, so two different
    /// keys never meet.
    pub fn stored_source(&self) -> String {
        debug_assert!(!self.scope.is_empty(), "event key {self} has no scope");
        format!("{}|{}", self.scope, self.source)
    }
}

impl std::fmt::Display for EventKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.source, self.id)
    }
}

/// The answer to "may I process this event?".
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Yours: process it, then complete or release it.
    Acquired,
    /// Another process holds it until `until`; try again later.
    InProgress { until: OffsetDateTime },
    /// Done before: answer with the recorded outcome, do nothing again.
    Completed(Box<EventRecord>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventStatus {
    /// Processed; per-invitee outcomes say what happened to each.
    Completed,
    /// Refused as a whole (invalid, not allowed); never retried.
    Rejected,
    /// Queued onto the function's own queue in parts (large self-service requests).
    Accepted,
}

/// What was done for one invitee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteeOutcome {
    pub email: String,
    pub result: InviteeResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Group ids, `appRole:<resource>/<role>`, `directoryRole:<template>`, `sponsor:<id>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum InviteeResult {
    Invited,
    Existed,
    Rejected,
    /// Access taken away at the end of a contract or an assignment: `granted` lists what
    /// was taken away, `reason` what was kept and what became of the account.
    Ended,
}

/// The record every processed event leaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub key: EventKey,
    /// The CloudEvents type, e.g. `partner.signed`.
    pub event_type: String,
    pub status: EventStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked, for self-service requests (audit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default)]
    pub outcomes: Vec<InviteeOutcome>,
    /// What became of the partner trust the event asked for (`partner.signed` `trust`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustState>,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

/// A registered inviter of a partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inviter {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// A partner as registered by its signed contracts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartnerRecord {
    pub id: String,
    pub name: String,
    /// Lower-case, IDNA-normalised.
    pub domains: Vec<String>,
    #[serde(default)]
    pub inviters: Vec<Inviter>,
    /// What the partner's guests may be granted; also the default for self-service requests.
    #[serde(default)]
    pub access: Access,
    /// Internal sponsors (object ids or UPNs) from the contract.
    #[serde(default)]
    pub sponsors: Vec<String>,
    /// The partner tenant's trust in our cross-tenant access settings: what we set and what
    /// it was before, so the end of the contract can put it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustState>,
    /// When its contract ended: its inviters' requests are refused from then on.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub ended_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Where a guest we invited came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "ref")]
pub enum Origin {
    Partner(String),
    Hr(String),
    Request(String),
    Import(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GuestState {
    /// About to be invited: the intent is recorded before the invitation, the guest's id after
    /// it. A guest found in this state was (perhaps) invited by an attempt that did not finish.
    Inviting,
    Pending,
    Accepted,
    Disabled,
    Deleted,
}

/// A guest this product invited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestRecord {
    /// Lower-case address: the key.
    pub email: String,
    pub user_id: String,
    pub origin: Origin,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<String>,
    pub delivery: Delivery,
    #[serde(with = "time::serde::rfc3339")]
    pub invited_at: OffsetDateTime,
    #[serde(default)]
    pub reminders: u32,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_reminded_at: Option<OffsetDateTime>,
    pub state: GuestState,
    /// When the invitation email went out (ours or Graph's). `None` with `own` delivery
    /// means the guest exists but was never mailed: a redelivery mails a fresh redeem URL.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub mailed_at: Option<OffsetDateTime>,
    /// When a sweep first found the guest missing from the directory. One miss may be
    /// replication; a later run that misses it too records the guest deleted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub missing_since: Option<OffsetDateTime>,
    /// Access taken away when a contract or an assignment ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<GuestEnded>,
}

/// What an end took away from a guest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestEnded {
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
    pub removed: Vec<String>,
}

/// What one source (`partner:<id>`, `hr:<employee id>`, `import:<file>`) granted one guest:
/// the access the end of that source takes away again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceGrants {
    pub source: String,
    /// Lower-case address.
    pub email: String,
    pub user_id: String,
    /// Group ids, `appRole:<resource>/<role>`, `directoryRole:<template>`.
    pub grants: Vec<String>,
}

/// Where an end stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EndState {
    /// Its date has not come: the sweep carries it out when it does.
    Scheduled,
    Done,
}

/// An end of a contract or an assignment, as recorded (one per source: a later end event
/// for the same source replaces a scheduled one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndRecord {
    pub end: End,
    /// The event that asked for it.
    pub event: EventKey,
    pub state: EndState,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

/// The tenant-wide invitation circuit (SPEC section 5).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Circuit {
    pub open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub opened_at: Option<OffsetDateTime>,
    /// When the last probe invitation was let through.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub probe_at: Option<OffsetDateTime>,
}

/// Where an interrupted sweep resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// The `@odata.nextLink` of the first page not finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub saved_at: OffsetDateTime,
}

#[async_trait]
pub trait Ledger: Send + Sync {
    /// Claims an event for processing. `lease` bounds how long a crashed holder blocks others.
    async fn claim_event(
        &self,
        key: &EventKey,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<Claim, LedgerError>;
    /// Records the outcome and ends the claim.
    async fn complete_event(&self, record: &EventRecord) -> Result<(), LedgerError>;
    /// Gives a claim back after a transient failure, so a redelivery can process it.
    async fn release_event(&self, key: &EventKey) -> Result<(), LedgerError>;
    async fn event(&self, key: &EventKey) -> Result<Option<EventRecord>, LedgerError>;

    async fn partner(&self, id: &str) -> Result<Option<PartnerRecord>, LedgerError>;
    async fn put_partner(&self, partner: &PartnerRecord) -> Result<(), LedgerError>;
    /// Every partner (a tenant has tens to hundreds).
    async fn partners(&self) -> Result<Vec<PartnerRecord>, LedgerError>;

    async fn guest(&self, email: &str) -> Result<Option<GuestRecord>, LedgerError>;
    async fn put_guest(&self, guest: &GuestRecord) -> Result<(), LedgerError>;
    async fn guests(&self) -> Result<Vec<GuestRecord>, LedgerError>;
    /// Up to `limit` guests in key order, after the guest `after` (exclusive): a sweep walks
    /// the ledger page by page, so its memory does not grow with the tenant. An empty page
    /// is the end. The default reads every guest; the stores override it.
    async fn guests_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<GuestRecord>, LedgerError> {
        let mut all = self.guests().await?;
        all.sort_by(|a, b| a.email.cmp(&b.email));
        Ok(all
            .into_iter()
            .filter(|g| after.is_none_or(|a| g.email.as_str() > a))
            .take(limit)
            .collect())
    }
    /// Records a reminder only if the guest still has `seen_reminders` reminders, so two
    /// concurrent sweeps never remind the same guest twice. `false`: someone else did.
    async fn claim_reminder(
        &self,
        email: &str,
        seen_reminders: u32,
        now: OffsetDateTime,
    ) -> Result<bool, LedgerError>;

    async fn circuit(&self) -> Result<Circuit, LedgerError>;
    async fn open_circuit(&self, reason: &str, now: OffsetDateTime) -> Result<(), LedgerError>;
    async fn close_circuit(&self) -> Result<(), LedgerError>;
    /// Lets one probe invitation through an open circuit once `probe_after` has passed since
    /// the circuit opened or the last probe; `false` when another process has the probe.
    async fn claim_probe(
        &self,
        now: OffsetDateTime,
        probe_after: Duration,
    ) -> Result<bool, LedgerError>;

    /// The steps (grants, sponsors, roles, properties) that already landed for `email` in the
    /// unit of work `unit` (an event, or a part of one): a later attempt of the same unit skips
    /// them without a Graph write. Kept as an item per invitee, so an event of any size fits.
    async fn progress(&self, unit: &EventKey, email: &str) -> Result<Vec<String>, LedgerError>;
    /// Records that `step` landed for `email` in `unit`, as soon as it has.
    async fn record_progress(
        &self,
        unit: &EventKey,
        email: &str,
        step: &str,
    ) -> Result<(), LedgerError>;

    /// Records that part `part` of the split event `event` is done, once however often it is
    /// said, and answers how many of the event's parts are: the part that sees them all
    /// completes the event's record.
    async fn record_part_done(&self, event: &EventKey, part: u32) -> Result<usize, LedgerError>;

    /// Records that `source` granted `grant` (a group, an app role, a directory role) to the
    /// guest `email`, the moment it lands: what the end of the source may take away.
    async fn record_grant(
        &self,
        source: &str,
        email: &str,
        user_id: &str,
        grant: &str,
    ) -> Result<(), LedgerError>;
    /// What every source granted the guest.
    async fn grants_of(&self, email: &str) -> Result<Vec<SourceGrants>, LedgerError>;
    /// What the source granted, guest by guest.
    async fn granted_by(&self, source: &str) -> Result<Vec<SourceGrants>, LedgerError>;
    /// Forgets what `source` granted `email`, once it is taken away.
    async fn forget_grants(&self, source: &str, email: &str) -> Result<(), LedgerError>;
    /// Records an end (replacing the source's earlier one).
    async fn put_end(&self, end: &EndRecord) -> Result<(), LedgerError>;
    /// The end recorded for a source, if any.
    async fn end(&self, source: &str) -> Result<Option<EndRecord>, LedgerError>;
    /// Every recorded end (a tenant has as many as partners and HR records that ended).
    async fn ends(&self) -> Result<Vec<EndRecord>, LedgerError>;

    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, LedgerError>;
    async fn put_checkpoint(
        &self,
        name: &str,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), LedgerError>;
}
