//! resend-stale's sweep (SPEC section 2, "resend-stale"): remind pending guests, expire the
//! ones pending too long, and record the ones who redeemed.
//!
//! Memory stays flat with tenant size: Graph's pending guests are read one page at a time and
//! each page is dropped before the next is read. Two things outlive a page: the filter of
//! ledger guests seen pending ([`SeenFilter`], a fixed megabyte whatever the tenant's size) and,
//! once the listing is done, the ledger's guest list, which the ledger port only hands out
//! whole ([`Ledger::guests`]); it is cut down at once to the pending guests not seen.
//!
//! Exactly-once reminders: a reminder is claimed in the ledger (`claim_reminder`, conditional
//! on the count this run read) before the invitation is sent, so concurrent runs, and a run
//! that reprocesses a page after resuming from a checkpoint, never remind a guest twice. A
//! claim whose invitation or email did not go out is given back, so that the count stays the
//! number of reminders the guest really received.

use futures::stream::{self, StreamExt};
use serde::Serialize;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::circuit::CircuitGate;
use super::mail::{InvitationMail, MailSender};
use crate::config::{ExpireAction, Scope, SweepConfig};
use crate::domain::email::{Email, mask};
use crate::domain::sweep::{Decision, GuestFacts, decide};
use crate::error::{Classify, FailureClass};
use crate::ports::directory::{
    Delivery, Directory, DirectoryError, DirectoryUser, Invitation, InvitationRequest,
};
use crate::ports::ledger::{Checkpoint, GuestRecord, GuestState, Ledger, LedgerError, Origin};

/// The ledger name of resend-stale's checkpoint.
pub const CHECKPOINT: &str = "resend-stale";

/// Guests decided at once. Invitations still go out one at a time (see `Sweep::invite`) and
/// writes are paced by the Graph client's limiter; this overlaps ledger reads and Graph
/// latency.
/// Ledger guests read at a time when looking for guests who redeemed.
const LEDGER_PAGE: usize = 500;
const CONCURRENT_GUESTS: usize = 8;

/// No guest is started with less time than this left: its reminder (claim, invitation,
/// email) must finish, and the checkpoint be saved, before the deadline.
const STOP_RESERVE: Duration = Duration::from_millis(750);

/// The summary lists at most this many actions (a Lambda answer is at most 6 MB).
const MAX_LISTED_ACTIONS: usize = 200;

/// The ledger origin of a guest this product did not invite but reminded under `SCOPE=all`.
/// Reminding needs a ledger record (the claim is conditional on it); the record makes the
/// guest's reminders count toward `MAX_REMINDERS`, but does not make it a guest this product
/// invited: `SCOPE=managed` still leaves it alone.
pub fn adopted_origin() -> Origin {
    Origin::Import(CHECKPOINT.into())
}

/// One sweep, as of `now`, to be done by `deadline`.
pub struct Sweep<'a> {
    pub directory: &'a dyn Directory,
    pub ledger: &'a dyn Ledger,
    /// Needed only to remind guests with `own` delivery.
    pub mail: Option<&'a MailSender>,
    pub gate: &'a CircuitGate,
    /// With a direct invocation's overrides already applied.
    pub config: &'a SweepConfig,
    /// `DELIVERY`: for guests the ledger does not know.
    pub delivery: Delivery,
    pub redirect_url: &'a str,
    pub probe_after: Duration,
    pub now: OffsetDateTime,
    pub deadline: Instant,
}

/// What a sweep did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Guests decided on: pending guests listed, and ledger guests found redeemed or gone.
    /// Equals reminded + expired + accepted + skipped + failed.
    pub scanned: u64,
    pub reminded: u64,
    pub expired: u64,
    pub accepted: u64,
    pub skipped: u64,
    /// Not done because of an error; tried again by the next run.
    pub failed: u64,
    pub dry_run: bool,
    pub scope: Scope,
    /// Every pending guest was decided on and the ledger's pending guests were checked. A run
    /// that stopped at its deadline is not complete: the next run resumes from its checkpoint.
    pub complete: bool,
    /// This run continued from a checkpoint an earlier run saved.
    pub resumed: bool,
    /// The tenant-wide invitation circuit is open: no reminder can go out.
    pub circuit_open: bool,
    /// Why the run stopped before it was complete, if it did not stop for its deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was done (or would be) per guest: every reminder, expiry, acceptance and failure,
    /// up to 200; skipped guests are only counted.
    pub actions: Vec<Action>,
    pub actions_truncated: bool,
    /// Ends of contracts and assignments whose date came (and HR records' `endDate`).
    pub ends: super::offboard::EndsSummary,
}

/// One guest's action in the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// Masked address.
    pub guest: String,
    pub user_id: String,
    pub action: ActionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ActionKind {
    Remind,
    Disable,
    Delete,
    MarkAccepted,
    Fail,
}

/// How one guest ended.
enum Outcome {
    Reminded,
    Expired(ExpireAction),
    Accepted,
    Skipped,
    Failed(String),
    /// Not decided: the deadline came first. The page is not finished.
    NotDone,
    /// Checked and nothing to do (a ledger guest still pending): not counted.
    Unchanged,
}

/// Counts and the listed actions, shared by the guests decided at once. Never held across an
/// await.
#[derive(Default)]
struct Tally {
    scanned: u64,
    reminded: u64,
    expired: u64,
    accepted: u64,
    skipped: u64,
    failed: u64,
    actions: Vec<Action>,
    truncated: bool,
}

/// What one run shares between its guests.
struct Run {
    tally: Mutex<Tally>,
    stopping: AtomicBool,
    expire_slots: AtomicU32,
    seen: Mutex<SeenFilter>,
    /// Invitations go out one at a time, each after checking the circuit, so that once Graph
    /// blocks the tenant not one more is sent; `true` once this run was admitted.
    invite_lock: tokio::sync::Mutex<bool>,
    /// Dry runs read the circuit once instead of going through the gate (which writes).
    circuit_open_at_start: bool,
}

impl Run {
    fn record(&self, user: &DirectoryUser, email: Option<&str>, outcome: Outcome) -> bool {
        let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        let (kind, reason) = match outcome {
            Outcome::NotDone => return false,
            Outcome::Unchanged => return true,
            Outcome::Skipped => {
                t.scanned += 1;
                t.skipped += 1;
                return true;
            }
            Outcome::Reminded => {
                t.reminded += 1;
                (ActionKind::Remind, None)
            }
            Outcome::Expired(action) => {
                t.expired += 1;
                (
                    match action {
                        ExpireAction::Disable => ActionKind::Disable,
                        ExpireAction::Delete => ActionKind::Delete,
                    },
                    None,
                )
            }
            Outcome::Accepted => {
                t.accepted += 1;
                (ActionKind::MarkAccepted, None)
            }
            Outcome::Failed(reason) => {
                t.failed += 1;
                (ActionKind::Fail, Some(reason))
            }
        };
        t.scanned += 1;
        if t.actions.len() < MAX_LISTED_ACTIONS {
            t.actions.push(Action {
                guest: email.map(mask).unwrap_or_else(|| "(no address)".into()),
                user_id: user.id.clone(),
                action: kind,
                reason,
            });
        } else {
            t.truncated = true;
        }
        true
    }

    /// Takes one of the run's expiries; `false` once `EXPIRE_MAX_PER_RUN` are taken.
    fn take_expiry(&self) -> bool {
        self.expire_slots
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn give_back_expiry(&self) {
        self.expire_slots.fetch_add(1, Ordering::SeqCst);
    }
}

/// Remembers which ledger guests the listing returned as pending, so that only the others are
/// looked up in Graph afterwards. A fixed-size bit set (1 MiB, three bits per guest, seeded
/// afresh each run): memory does not grow with the tenant. A false "seen" only delays marking
/// a redeemed guest accepted to a later run (about 1 in 100,000 at 50,000 guests, 3 in 100
/// at a million); it never reminds or expires anyone.
struct SeenFilter {
    bits: Vec<u64>,
    hasher: RandomState,
}

impl SeenFilter {
    const BITS: u64 = 1 << 23;

    fn new() -> Self {
        SeenFilter {
            bits: vec![0; (Self::BITS / 64) as usize],
            hasher: RandomState::new(),
        }
    }

    fn positions(&self, id: &str) -> [u64; 3] {
        let h = self.hasher.hash_one(id);
        let (a, b) = (h & 0xffff_ffff, (h >> 32) | 1);
        [0, 1, 2].map(|i| a.wrapping_add(i * b) % Self::BITS)
    }

    fn insert(&mut self, id: &str) {
        for p in self.positions(id) {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.positions(id)
            .iter()
            .all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }
}

/// Why a reminder did not go out.
enum NotSent {
    /// Count the guest as failed, with this reason.
    Failed(String),
    /// The deadline came first.
    Deadline,
}

impl From<LedgerError> for NotSent {
    fn from(e: LedgerError) -> Self {
        NotSent::Failed(format!("ledger: {e}"))
    }
}

impl From<DirectoryError> for NotSent {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::DeadlineExceeded(_) => NotSent::Deadline,
            other => NotSent::Failed(other.to_string()),
        }
    }
}

/// A guest of the listing, joined with what the ledger knows of it.
struct Listed {
    user: DirectoryUser,
    /// Lower-case `mail`: the ledger key.
    key: Option<String>,
    /// Our record of this very user (same object id), unless we recorded it deleted.
    record: Option<GuestRecord>,
    /// The ledger could not be read: deciding without it would take the guest for one this
    /// product did not invite.
    ledger_failed: bool,
}

impl Sweep<'_> {
    /// Runs the sweep. Saves a checkpoint when it stops before the end of the listing, and
    /// clears it when the listing is done; a dry run writes nothing at all.
    pub async fn run(&self) -> Summary {
        let dry = self.config.dry_run;
        let circuit_open_at_start = match self.ledger.circuit().await {
            Ok(c) => c.open,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the invitation circuit");
                false
            }
        };
        let run = Run {
            tally: Mutex::new(Tally::default()),
            stopping: AtomicBool::new(false),
            expire_slots: AtomicU32::new(self.config.expire_max_per_run),
            seen: Mutex::new(SeenFilter::new()),
            invite_lock: tokio::sync::Mutex::new(false),
            circuit_open_at_start,
        };
        // A dry run forecasts a whole sweep: it starts at the beginning, whatever was saved.
        let saved = if dry {
            None
        } else {
            match self.ledger.checkpoint(CHECKPOINT).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the sweep checkpoint; starting from the beginning");
                    None
                }
            }
        };
        let resumed = saved.as_ref().is_some_and(|c| c.next_link.is_some());
        let started_at = saved.as_ref().map_or(self.now, |c| c.started_at);
        let listing = self.list(&run, saved.and_then(|c| c.next_link)).await;
        let mut error = listing.error;
        let mut complete = false;
        if listing.done {
            match self.check_ledger_guests(&run).await {
                Ok(done) => complete = done,
                Err(e) => error = Some(format!("ledger: {e}")),
            }
        }
        if !dry {
            let checkpoint = (!listing.done).then_some(Checkpoint {
                next_link: listing.unfinished,
                started_at,
                saved_at: self.now,
            });
            if let Err(e) = self
                .ledger
                .put_checkpoint(CHECKPOINT, checkpoint.as_ref())
                .await
            {
                tracing::error!(error = %e, "could not save the sweep checkpoint");
                error.get_or_insert_with(|| format!("checkpoint: {e}"));
            }
        }
        let circuit_open = self.gate.is_blocked()
            || match self.ledger.circuit().await {
                Ok(c) => c.open,
                Err(_) => run.circuit_open_at_start,
            };
        let t = run.tally.into_inner().unwrap_or_else(|e| e.into_inner());
        Summary {
            scanned: t.scanned,
            reminded: t.reminded,
            expired: t.expired,
            accepted: t.accepted,
            skipped: t.skipped,
            failed: t.failed,
            dry_run: dry,
            scope: self.config.scope,
            complete,
            resumed,
            circuit_open,
            error,
            actions: t.actions,
            actions_truncated: t.truncated,
            ends: Default::default(),
        }
    }

    fn near_deadline(&self, run: &Run) -> bool {
        if run.stopping.load(Ordering::SeqCst) {
            return true;
        }
        if Instant::now() + STOP_RESERVE >= self.deadline {
            run.stopping.store(true, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// Reads the pending guests page by page from `resume_from` and decides on each.
    async fn list(&self, run: &Run, resume_from: Option<String>) -> Listing {
        let mut resuming = resume_from.is_some();
        // The link of the page being worked on; `None` is the first page.
        let mut current = resume_from.clone();
        let mut pages = self.directory.pending_guests(resume_from);
        loop {
            if self.near_deadline(run) {
                return Listing::stopped(current, None);
            }
            let page = match pages.next().await {
                None => return Listing::finished(),
                Some(Ok(page)) => page,
                Some(Err(DirectoryError::DeadlineExceeded(_))) => {
                    return Listing::stopped(current, None);
                }
                Some(Err(e)) if resuming && e.class() == FailureClass::Permanent => {
                    // Page links expire, and a saved one may no longer be accepted: start over
                    // (reminders already sent are in the ledger and are not repeated).
                    tracing::warn!(error = %e, "the saved page link was refused; starting the sweep from the beginning");
                    resuming = false;
                    current = None;
                    pages = self.directory.pending_guests(None);
                    continue;
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "reading the pending guests failed");
                    return Listing::stopped(current, Some(format!("listing pending guests: {e}")));
                }
            };
            resuming = false;
            let listed = self.join(page.users, run).await;
            let finished = stream::iter(listed)
                .map(|guest| async move {
                    let outcome = self.listed_guest(&guest, run).await;
                    run.record(&guest.user, guest.key.as_deref(), outcome)
                })
                .buffer_unordered(CONCURRENT_GUESTS)
                .fold(true, |all, done| async move { all && done })
                .await;
            if !finished {
                return Listing::stopped(current, None);
            }
            current = page.next;
        }
    }

    /// Looks the page's guests up in the ledger, and notes the ledger guests seen pending.
    async fn join(&self, users: Vec<DirectoryUser>, run: &Run) -> Vec<Listed> {
        let ledger = self.ledger;
        let listed: Vec<Listed> = stream::iter(users)
            .map(|user| async move {
                let key = user
                    .mail
                    .as_deref()
                    .map(|m| m.trim().to_lowercase())
                    .filter(|m| !m.is_empty());
                let record = match &key {
                    Some(k) => ledger.guest(k).await,
                    None => Ok(None),
                };
                (user, key, record)
            })
            .buffered(CONCURRENT_GUESTS)
            .map(|(user, key, record)| {
                let record = match record {
                    Ok(r) => {
                        Ok(r.filter(|r| r.user_id == user.id && r.state != GuestState::Deleted))
                    }
                    Err(e) => Err(e),
                };
                (user, key, record)
            })
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|(user, key, record)| match record {
                Ok(record) => Listed {
                    user,
                    key,
                    record,
                    ledger_failed: false,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "ledger lookup failed");
                    Listed {
                        user,
                        key,
                        record: None,
                        ledger_failed: true,
                    }
                }
            })
            .collect();
        let mut seen = run.seen.lock().unwrap_or_else(|e| e.into_inner());
        for guest in &listed {
            if let Some(r) = &guest.record
                && r.state == GuestState::Pending
            {
                seen.insert(&r.user_id);
            }
        }
        drop(seen);
        listed
    }

    async fn listed_guest(&self, guest: &Listed, run: &Run) -> Outcome {
        if self.near_deadline(run) {
            return Outcome::NotDone;
        }
        let user = &guest.user;
        if guest.ledger_failed {
            return Outcome::Failed("the ledger could not be read".into());
        }
        if user.account_enabled == Some(false) {
            // Disabled (by an earlier expiry or an administrator): neither reminded nor
            // expired again.
            return Outcome::Skipped;
        }
        let record = guest.record.as_ref();
        let facts = GuestFacts {
            user_id: user.id.clone(),
            email: user.mail.clone(),
            pending: true,
            // A guest of unknown age is never due.
            first_invited_at: record
                .map(|r| r.invited_at)
                .or(user.created_date_time)
                .unwrap_or(self.now),
            reminders: record.map_or(0, |r| r.reminders),
            last_reminded_at: record.and_then(|r| r.last_reminded_at),
            managed: record.is_some_and(|r| r.origin != adopted_origin()),
        };
        match decide(&facts, self.config, self.now) {
            Decision::Skip(reason) => {
                tracing::debug!(user_id = %user.id, reason = reason.describe(), "skipped");
                Outcome::Skipped
            }
            // The listing holds pending guests only.
            Decision::MarkAccepted => Outcome::Skipped,
            Decision::Expire(action) => self.expire(guest, action, run).await,
            Decision::Remind => self.remind(guest, &facts, run).await,
        }
    }

    /// Listings lag behind reads: before a destructive or resetting action, the guest is read
    /// again. `Some(outcome)` when the action must not happen: the guest redeemed meanwhile
    /// (marked accepted), is not found (replication; the next run looks again), or cannot
    /// be read now.
    async fn no_longer_pending(&self, guest: &Listed) -> Option<Outcome> {
        let user = &guest.user;
        match self.directory.get_user(&user.id).await {
            Ok(Some(now)) if now.is_pending() => None,
            Ok(Some(_)) => {
                tracing::info!(user_id = %user.id, "guest redeemed since the listing; left alone and marked accepted");
                if let Some(key) = &guest.key
                    && guest.record.is_some()
                    && let Err(e) = self.set_state(key, &user.id, GuestState::Accepted).await
                {
                    return Some(Outcome::Failed(format!("ledger: {e}")));
                }
                Some(Outcome::Accepted)
            }
            Ok(None) => {
                tracing::info!(user_id = %user.id, "listed guest not found on reading it again; the next run looks again");
                Some(Outcome::Skipped)
            }
            Err(DirectoryError::DeadlineExceeded(_)) => Some(Outcome::NotDone),
            Err(e) => Some(Outcome::Failed(e.to_string())),
        }
    }

    async fn expire(&self, guest: &Listed, action: ExpireAction, run: &Run) -> Outcome {
        let user = &guest.user;
        if !run.take_expiry() {
            tracing::info!(user_id = %user.id, "pending past EXPIRE_AFTER, but EXPIRE_MAX_PER_RUN guests were already expired in this run");
            return Outcome::Skipped;
        }
        if self.config.dry_run {
            return Outcome::Expired(action);
        }
        if let Some(outcome) = self.no_longer_pending(guest).await {
            run.give_back_expiry();
            return outcome;
        }
        let result = match action {
            ExpireAction::Disable => self.directory.disable_user(&user.id).await,
            ExpireAction::Delete => self.directory.delete_user(&user.id).await,
        };
        if let Err(e) = result {
            run.give_back_expiry();
            return match e {
                DirectoryError::DeadlineExceeded(_) => Outcome::NotDone,
                e => {
                    tracing::warn!(user_id = %user.id, error = %e, "expiring the guest failed");
                    Outcome::Failed(e.to_string())
                }
            };
        }
        tracing::info!(user_id = %user.id, guest = %mask(user.mail.as_deref().unwrap_or("")), action = ?action, "guest expired");
        if let (Some(key), Some(_)) = (&guest.key, &guest.record)
            && let Err(e) = self.set_state(key, &user.id, expired_state(action)).await
        {
            // Graph is the truth; the next run sees the guest disabled (or gone).
            tracing::warn!(user_id = %user.id, error = %e, "could not record the expiry in the ledger");
        }
        Outcome::Expired(action)
    }

    async fn remind(&self, guest: &Listed, facts: &GuestFacts, run: &Run) -> Outcome {
        let user = &guest.user;
        let (Some(key), Some(address)) = (&guest.key, user.mail.as_deref()) else {
            return Outcome::Skipped;
        };
        let delivery = guest.record.as_ref().map_or(self.delivery, |r| r.delivery);
        if delivery == Delivery::None {
            tracing::debug!(user_id = %user.id, "delivery none: nobody is emailed, so there is nothing to resend");
            return Outcome::Skipped;
        }
        if self.config.dry_run {
            return if run.circuit_open_at_start {
                Outcome::Failed("the invitation circuit is open".into())
            } else {
                Outcome::Reminded
            };
        }
        // Graph's re-invitation resets the redemption: never for a guest who has redeemed.
        if delivery == Delivery::Microsoft
            && let Some(outcome) = self.no_longer_pending(guest).await
        {
            return outcome;
        }
        match self
            .send_reminder(guest, key, address, delivery, facts, run)
            .await
        {
            Ok(true) => {
                tracing::info!(user_id = %user.id, guest = %mask(address), reminder = facts.reminders + 1, ?delivery, "guest reminded");
                Outcome::Reminded
            }
            Ok(false) => Outcome::Skipped,
            Err(NotSent::Deadline) => Outcome::NotDone,
            Err(NotSent::Failed(reason)) => {
                tracing::warn!(user_id = %user.id, guest = %mask(address), reason, "reminder failed");
                Outcome::Failed(reason)
            }
        }
    }

    /// Claims the reminder, invites again and (own delivery) mails the redeem URL. `Ok(false)`:
    /// another run claimed it first.
    async fn send_reminder(
        &self,
        guest: &Listed,
        key: &str,
        address: &str,
        delivery: Delivery,
        facts: &GuestFacts,
        run: &Run,
    ) -> Result<bool, NotSent> {
        let user = &guest.user;
        let own_mail = match delivery {
            Delivery::Own => Some((
                self.mail.ok_or_else(|| {
                    NotSent::Failed(
                        "own delivery needs a mailer: set MAIL_FROM or OUTBOX_DIR".into(),
                    )
                })?,
                Email::parse(address).map_err(|e| {
                    NotSent::Failed(format!(
                        "the guest's mail is not an address we can email: {e}"
                    ))
                })?,
            )),
            _ => None,
        };
        let invitation = {
            let mut admitted = run.invite_lock.lock().await;
            if self.gate.is_blocked() {
                return Err(NotSent::Failed("the invitation circuit is open".into()));
            }
            if !*admitted {
                self.gate
                    .admit(self.ledger, self.now, self.probe_after)
                    .await
                    .map_err(|a| NotSent::Failed(a.message))?;
                *admitted = true;
            }
            if guest.record.is_none() {
                self.adopt(user, key, delivery).await?;
                // Listed pending: the ledger pass need not look it up.
                run.seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(&user.id);
            }
            if !self
                .ledger
                .claim_reminder(key, facts.reminders, self.now)
                .await?
            {
                tracing::info!(user_id = %user.id, "reminder already claimed by another run");
                return Ok(false);
            }
            match self.invite(user, address, delivery).await {
                Ok(invitation) => invitation,
                Err(e) => {
                    self.give_back_claim(key, facts).await;
                    return Err(e);
                }
            }
        };
        if let Some((sender, to)) = own_mail {
            if invitation.redeem_url.is_empty() {
                self.give_back_claim(key, facts).await;
                return Err(NotSent::Failed("Graph returned no redeem URL".into()));
            }
            let partner = match guest.record.as_ref().and_then(|r| r.partner_id.as_deref()) {
                Some(id) => self.ledger.partner(id).await.ok().flatten().map(|p| p.name),
                None => None,
            };
            if let Err(e) = sender
                .send_invitation(&InvitationMail {
                    to: &to,
                    guest_name: user.display_name.as_deref(),
                    redeem_url: &invitation.redeem_url,
                    partner_name: partner.as_deref(),
                    inviter_name: None,
                    message: None,
                    trust_tenant_id: None,
                })
                .await
            {
                self.give_back_claim(key, facts).await;
                return Err(NotSent::Failed(format!("mail: {e}")));
            }
        }
        Ok(true)
    }

    /// Graph has no resend (reference section 1): invite the address again. Called under the
    /// invitation lock.
    async fn invite(
        &self,
        user: &DirectoryUser,
        address: &str,
        delivery: Delivery,
    ) -> Result<Invitation, NotSent> {
        let plain = |send: bool| InvitationRequest {
            email: address.to_string(),
            display_name: user.display_name.clone(),
            redirect_url: self.redirect_url.to_string(),
            send_invitation_message: send,
            message: None,
            reset_redemption_of: None,
        };
        let first = if delivery == Delivery::Microsoft {
            // The documented re-invitation: Graph mails the guest a fresh invitation.
            InvitationRequest {
                reset_redemption_of: Some(user.id.clone()),
                ..plain(true)
            }
        } else {
            // Own delivery: a fresh redeem URL without Graph's email; we mail it.
            plain(false)
        };
        let answer = match self.directory.invite(&first).await {
            // Graph words it as missing privileges, but it concerns this guest alone.
            Err(e @ (DirectoryError::Permanent { .. } | DirectoryError::AccessDenied { .. }))
                if first.reset_redemption_of.is_some() =>
            {
                // App-only calls cannot reset a guest holding a directory role: invite the
                // address plainly, which mails the pending guest again.
                tracing::info!(user_id = %user.id, error = %e, "Graph refused to reset the redemption; inviting the address again plainly");
                self.directory.invite(&plain(true)).await
            }
            other => other,
        };
        match answer {
            Ok(invitation) => {
                self.gate
                    .invitation_succeeded(self.ledger)
                    .await
                    .map_err(|a| NotSent::Failed(a.message))?;
                Ok(invitation)
            }
            Err(DirectoryError::Blocked(reason)) => {
                let abort = self.gate.trip(self.ledger, &reason, self.now).await;
                Err(NotSent::Failed(abort.message))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records an unmanaged guest (`SCOPE=all`) so its reminder can be claimed.
    async fn adopt(
        &self,
        user: &DirectoryUser,
        key: &str,
        delivery: Delivery,
    ) -> Result<(), NotSent> {
        // Not conditional (the port has no create-if-absent): two runs adopting the same guest
        // in the same instant could each claim a reminder. Re-reading first narrows that to
        // the two writes racing.
        if let Some(existing) = self.ledger.guest(key).await?
            && existing.user_id == user.id
            && existing.state != GuestState::Deleted
        {
            return Err(NotSent::Failed(
                "the ledger record changed during the sweep; the next run reminds".into(),
            ));
        }
        let invited_at = user.created_date_time.unwrap_or(self.now);
        self.ledger
            .put_guest(&GuestRecord {
                email: key.to_string(),
                user_id: user.id.clone(),
                origin: adopted_origin(),
                partner_id: None,
                delivery,
                invited_at,
                reminders: 0,
                last_reminded_at: None,
                state: GuestState::Pending,
                // Someone invited and mailed the guest before us: never "unmailed".
                mailed_at: Some(invited_at),
                missing_since: None,
                ended: None,
            })
            .await?;
        Ok(())
    }

    /// Gives a claimed reminder back when nothing reached the guest, so the count stays true
    /// and the next run tries again.
    async fn give_back_claim(&self, key: &str, facts: &GuestFacts) {
        let result = async {
            if let Some(mut record) = self.ledger.guest(key).await?
                && record.reminders == facts.reminders + 1
                && record.last_reminded_at == Some(self.now)
            {
                record.reminders = facts.reminders;
                record.last_reminded_at = facts.last_reminded_at;
                self.ledger.put_guest(&record).await?;
            }
            Ok::<(), LedgerError>(())
        }
        .await;
        if let Err(e) = result {
            // The reminder stays counted: the guest gets the next one a REMIND_EVERY later.
            tracing::error!(guest = %mask(key), error = %e, "could not give back a reminder that was not sent");
        }
    }

    /// A ledger guest Graph does not know: noted the first time, recorded deleted when an
    /// earlier run missed it too.
    async fn missing(&self, key: &str, user_id: &str) -> Result<(), LedgerError> {
        let Some(mut record) = self.ledger.guest(key).await? else {
            return Ok(());
        };
        if record.user_id != user_id {
            return Ok(());
        }
        match record.missing_since {
            Some(since) if since < self.now => {
                tracing::info!(
                    user_id,
                    "guest still missing from the directory; recording it deleted"
                );
                record.state = GuestState::Deleted;
            }
            Some(_) => return Ok(()),
            None => {
                tracing::info!(
                    user_id,
                    "guest missing from the directory; the next run looks again"
                );
                record.missing_since = Some(self.now);
            }
        }
        self.ledger.put_guest(&record).await
    }

    async fn set_state(
        &self,
        key: &str,
        user_id: &str,
        state: GuestState,
    ) -> Result<(), LedgerError> {
        if let Some(mut record) = self.ledger.guest(key).await?
            && record.user_id == user_id
            && record.state != state
        {
            record.state = state;
            self.ledger.put_guest(&record).await?;
        }
        Ok(())
    }

    /// Guests who redeemed leave the pending listing: the ledger's pending guests the listing
    /// did not return are looked up one by one. `Ok(false)`: the deadline came first.
    async fn check_ledger_guests(&self, run: &Run) -> Result<bool, LedgerError> {
        let mut after: Option<String> = None;
        let mut all_done = true;
        // Page by page, so memory stays flat however many guests the ledger holds.
        loop {
            let records = self
                .ledger
                .guests_page(after.as_deref(), LEDGER_PAGE)
                .await?;
            let Some(last) = records.last() else {
                return Ok(all_done);
            };
            after = Some(last.email.clone());
            let unseen: Vec<(String, String)> = {
                let seen = run.seen.lock().unwrap_or_else(|e| e.into_inner());
                records
                    .into_iter()
                    .filter(|r| r.state == GuestState::Pending && !seen.contains(&r.user_id))
                    .map(|r| (r.email, r.user_id))
                    .collect()
            };
            let done = stream::iter(unseen)
                .map(|(key, user_id)| async move {
                    let (user, outcome) = self.unlisted_guest(&key, &user_id, run).await;
                    run.record(&user, Some(&key), outcome)
                })
                .buffer_unordered(CONCURRENT_GUESTS)
                .fold(true, |all, done| async move { all && done })
                .await;
            all_done &= done;
        }
    }

    async fn unlisted_guest(
        &self,
        key: &str,
        user_id: &str,
        run: &Run,
    ) -> (DirectoryUser, Outcome) {
        let placeholder = || DirectoryUser {
            id: user_id.to_string(),
            ..DirectoryUser::default()
        };
        if self.near_deadline(run) {
            return (placeholder(), Outcome::NotDone);
        }
        let user = match self.directory.get_user(user_id).await {
            Ok(Some(user)) => user,
            Ok(None) => {
                // Deleted in the directory, or not replicated to where we read: recorded
                // deleted only when a later run still misses it.
                if !self.config.dry_run
                    && let Err(e) = self.missing(key, user_id).await
                {
                    return (placeholder(), Outcome::Failed(format!("ledger: {e}")));
                }
                return (placeholder(), Outcome::Skipped);
            }
            Err(DirectoryError::DeadlineExceeded(_)) => return (placeholder(), Outcome::NotDone),
            Err(e) => return (placeholder(), Outcome::Failed(e.to_string())),
        };
        let facts = GuestFacts {
            user_id: user.id.clone(),
            email: user.mail.clone(),
            pending: user.is_pending(),
            first_invited_at: self.now,
            reminders: 0,
            last_reminded_at: None,
            managed: true,
        };
        if decide(&facts, self.config, self.now) != Decision::MarkAccepted {
            // Still pending (invited after the listing began, or listed by an earlier run).
            return (user, Outcome::Unchanged);
        }
        if !self.config.dry_run
            && let Err(e) = self.set_state(key, user_id, GuestState::Accepted).await
        {
            return (user, Outcome::Failed(format!("ledger: {e}")));
        }
        tracing::info!(user_id, guest = %mask(key), "guest redeemed; marked accepted");
        (user, Outcome::Accepted)
    }
}

fn expired_state(action: ExpireAction) -> GuestState {
    match action {
        ExpireAction::Disable => GuestState::Disabled,
        ExpireAction::Delete => GuestState::Deleted,
    }
}

/// How the listing ended.
struct Listing {
    /// Every page was read and decided on.
    done: bool,
    /// The link of the first page not finished (`None`: the first page).
    unfinished: Option<String>,
    error: Option<String>,
}

impl Listing {
    fn finished() -> Self {
        Listing {
            done: true,
            unfinished: None,
            error: None,
        }
    }

    fn stopped(unfinished: Option<String>, error: Option<String>) -> Self {
        Listing {
            done: false,
            unfinished,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_filter_remembers_and_rarely_confuses() {
        let mut seen = SeenFilter::new();
        for i in 0..50_000 {
            seen.insert(&format!("user-{i}"));
        }
        assert!((0..50_000).all(|i| seen.contains(&format!("user-{i}"))));
        let confused = (0..50_000)
            .filter(|i| seen.contains(&format!("other-{i}")))
            .count();
        // Expected about 0.3 at three bits per guest in 8 Mi bits.
        assert!(confused < 10, "{confused} false positives");
    }
}
