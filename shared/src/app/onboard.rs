//! Carrying out an invitation plan: invite (once), mail, grant, sponsor, record.
//!
//! Every step is safe to repeat: the ledger and Graph are asked what already exists before
//! anything is created, and "already there" counts as done. A transient failure aborts the
//! unit so it is retried whole; a permanent one is recorded against the invitee it concerns.

use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use super::Abort;
use super::circuit::CircuitGate;
use super::mail::{InvitationMail, MailSender};
use super::replication::landed;
use crate::domain::email::mask;
use crate::domain::offboard::found_grant;
use crate::domain::plan::{InviteePlan, Plan};
use crate::error::{Classify, FailureClass};
use crate::ports::directory::{
    Applied, Delivery, Directory, DirectoryError, GROUP_BATCH, GUEST_INVITER_ROLE,
    InvitationRequest,
};
use crate::ports::ledger::{GuestRecord, GuestState, InviteeOutcome, InviteeResult, Ledger};
use crate::ports::progress::Progress;

/// How long after our invitation a guest counts as possibly not yet replicated.
const REPLICATION_HORIZON: time::Duration = time::Duration::hours(1);

/// Invitees handled at once. Writes are paced by the Graph client's limiter; this only
/// overlaps their latency.
const CONCURRENT_INVITEES: usize = 4;

/// The ports and facts one unit of work runs with.
pub struct Onboarding<'a> {
    pub directory: &'a dyn Directory,
    pub ledger: &'a dyn Ledger,
    /// Needed only for `own` delivery.
    pub mail: Option<&'a MailSender>,
    pub gate: &'a CircuitGate,
    pub now: OffsetDateTime,
    pub probe_after: Duration,
    /// The unit of work (an event, a part, an import row) whose progress per invitee is kept,
    /// so that a later attempt of it spends no write on what landed.
    pub unit: Option<&'a crate::ports::ledger::EventKey>,
    /// Names shown in our own invitation email.
    pub partner_name: Option<String>,
    pub inviter_name: Option<String>,
    /// Told how many invitees there are and as each is done (the CLI's progress bar).
    pub progress: Option<&'a dyn Progress>,
    /// Our tenant id when the partner's tenant is trusted with automatic redemption: the
    /// emails of its inviters tell their administrator to allow it on their side.
    pub trust_tenant_id: Option<&'a str>,
    /// Who grants (`partner:<id>`, `hr:<employee id>`, `import:<file>`): access that lands is
    /// recorded under it, so the end of the source takes away exactly what it gave.
    pub grant_source: Option<&'a str>,
}

impl Onboarding<'_> {
    /// Carries out every invitee of the plan; the outcomes are in plan order.
    pub async fn run(&self, plan: &Plan) -> Result<Vec<InviteeOutcome>, Abort> {
        if plan.invitees.is_empty() {
            return Ok(Vec::new());
        }
        self.gate
            .admit(self.ledger, self.now, self.probe_after)
            .await?;
        let run = Run {
            onboarding: self,
            invite_lock: Mutex::new(()),
            sponsors: Mutex::new(HashMap::new()),
        };
        // By index: a closure over `&InviteePlan` trips the compiler's Send check for
        // higher-ranked lifetimes inside async traits.
        let run = &run;
        let progress = self.progress;
        if let Some(p) = progress {
            p.planned(plan.invitees.len() as u64);
        }
        let mut onboarded: Vec<Onboarded> = stream::iter(0..plan.invitees.len())
            .map(|i| run.invitee(&plan.invitees[i]))
            .buffered(CONCURRENT_INVITEES)
            .inspect_ok(|_| {
                if let Some(p) = progress {
                    p.done(1);
                }
            })
            .try_collect()
            .await?;
        run.join_groups(&mut onboarded).await?;
        Ok(onboarded.into_iter().map(Onboarded::finish).collect())
    }
}

/// An invitee with everything done but group memberships, which go out together for the
/// whole unit: up to [`GROUP_BATCH`] members a write.
struct Onboarded {
    outcome: InviteeOutcome,
    problems: Vec<String>,
    /// Groups still to join (none recorded as landed for this unit).
    groups: Vec<String>,
    fresh: bool,
}

impl Onboarded {
    fn finish(mut self) -> InviteeOutcome {
        if !self.problems.is_empty() {
            tracing::warn!(invitee = %mask(&self.outcome.email), problems = ?self.problems, "some grants refused");
            self.outcome.reason = Some(self.problems.join("; "));
        }
        self.outcome
    }
}

struct Run<'r, 'a> {
    onboarding: &'r Onboarding<'a>,
    /// Invitations go out one at a time, each after checking the circuit, so that once Graph
    /// blocks the tenant not a single further invitation is sent.
    invite_lock: Mutex<()>,
    /// Sponsor references (UPN or id) resolved to object ids, once per unit.
    sponsors: Mutex<HashMap<String, Option<String>>>,
}

/// The guest as found or created.
struct Guest {
    user_id: String,
    result: InviteeResult,
    /// Our record of a guest we created with `own` delivery but never mailed.
    unmailed: Option<GuestRecord>,
    /// Invited by us lately: Graph may not know the guest everywhere yet (replication), so
    /// "does not exist" is waited out rather than taken for an answer.
    fresh: bool,
}

impl Run<'_, '_> {
    async fn invitee(&self, p: &InviteePlan) -> Result<Onboarded, Abort> {
        let o = self.onboarding;
        let guest = match self.find_or_invite(p).await {
            Ok(g) => g,
            Err(Failure::Abort(a)) => return Err(a),
            Err(Failure::Unanswered(why)) => return Err(Abort::transient(why)),
            Err(Failure::Rejected(reason)) => {
                tracing::warn!(invitee = %mask(p.email.as_str()), reason, "invitee rejected");
                return Ok(Onboarded {
                    outcome: InviteeOutcome {
                        email: p.email.key(),
                        result: InviteeResult::Rejected,
                        user_id: None,
                        granted: Vec::new(),
                        reason: Some(reason),
                    },
                    problems: Vec::new(),
                    groups: Vec::new(),
                    fresh: false,
                });
            }
        };
        if let Some(record) = guest.unmailed {
            self.mail_redeem_url(p, record).await?;
        }
        let user = guest.user_id.as_str();
        let email = p.email.key();
        let done = match o.unit {
            Some(unit) => o.ledger.progress(unit, &email).await?,
            None => Vec::new(),
        };
        let mut g = Grants {
            email: &email,
            user,
            fresh: guest.fresh,
            done,
            granted: Vec::new(),
            problems: Vec::new(),
        };
        if !p.patch.is_empty() {
            self.grant(&mut g, "properties".into(), || {
                o.directory.update_user(user, &p.patch)
            })
            .await?;
        }
        for sponsor in &p.sponsors {
            match self.sponsor_id(sponsor).await? {
                Some(id) => {
                    self.grant(&mut g, format!("sponsor:{id}"), || {
                        o.directory.add_sponsor(user, &id)
                    })
                    .await?
                }
                None => g.problems.push(format!("sponsor {sponsor} does not exist")),
            }
        }
        let (joined, groups): (Vec<String>, Vec<String>) = p
            .access
            .groups
            .iter()
            .cloned()
            .partition(|group| g.done.contains(group));
        g.granted.extend(joined);
        for role in &p.access.app_roles {
            let what = format!("appRole:{}/{}", role.resource_id, role.app_role_id);
            self.grant(&mut g, what, || o.directory.assign_app_role(user, role))
                .await?;
        }
        if p.guest_inviter {
            self.grant(
                &mut g,
                format!("directoryRole:{GUEST_INVITER_ROLE}"),
                || o.directory.assign_directory_role(user, GUEST_INVITER_ROLE),
            )
            .await?;
        }
        let (granted, problems, fresh) = (g.granted, g.problems, g.fresh);
        Ok(Onboarded {
            outcome: InviteeOutcome {
                email,
                result: guest.result,
                user_id: Some(guest.user_id.clone()),
                granted,
                reason: None,
            },
            problems,
            groups,
            fresh,
        })
    }

    /// Every pending group membership of the unit, a batch per group and 20 members.
    async fn join_groups(&self, onboarded: &mut [Onboarded]) -> Result<(), Abort> {
        let o = self.onboarding;
        let mut by_group: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
        for (i, invitee) in onboarded.iter().enumerate() {
            for group in &invitee.groups {
                by_group.entry(group.clone()).or_default().push(i);
            }
        }
        for (group, members) in by_group {
            for chunk in members.chunks(GROUP_BATCH) {
                let ids: Vec<String> = chunk
                    .iter()
                    .filter_map(|&i| onboarded[i].outcome.user_id.clone())
                    .collect();
                let fresh = chunk.iter().any(|&i| onboarded[i].fresh);
                let answer = landed(o.directory, fresh, &ids[0], || {
                    o.directory.add_group_members(&group, &ids)
                })
                .await;
                let results = match answer {
                    Ok(results) => results,
                    // The group itself refuses: a refusal for each of them.
                    Err(DirectoryError::Permanent { code, message, .. }) => {
                        for &i in chunk {
                            onboarded[i]
                                .problems
                                .push(format!("{group}: {code}: {message}"));
                        }
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                for (&i, result) in chunk.iter().zip(results) {
                    let invitee = &mut onboarded[i];
                    if let (Ok(applied), Some(user)) = (&result, invitee.outcome.user_id.clone()) {
                        let added = *applied == Applied::Done;
                        self.record_grant(&invitee.outcome.email, &user, &group, added)
                            .await?;
                    }
                    let invitee = &mut onboarded[i];
                    let done = result.is_ok();
                    note(
                        result,
                        &group,
                        &mut invitee.outcome.granted,
                        &mut invitee.problems,
                    )?;
                    if done && let Some(unit) = o.unit {
                        o.ledger
                            .record_progress(unit, &invitee.outcome.email, &group)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// One grant: skipped without a write when an earlier attempt of this unit recorded it,
    /// else written (replication waited out) and recorded the moment it lands.
    async fn grant<T, F, Fut>(
        &self,
        g: &mut Grants<'_>,
        what: String,
        write: F,
    ) -> Result<(), Abort>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, DirectoryError>>,
        T: Added,
    {
        if g.done.contains(&what) {
            g.granted.push(what);
            return Ok(());
        }
        let result = landed(self.onboarding.directory, g.fresh, g.user, write).await;
        let added = result.as_ref().ok().map(Added::added);
        note(result, &what, &mut g.granted, &mut g.problems)?;
        // The grant before the progress: a retry after a crash between them would find the
        // access there and must not lose that it was ours.
        if let Some(added) = added {
            self.record_grant(g.email, g.user, &what, added).await?;
        }
        let done = added.is_some();
        if done && let Some(unit) = self.onboarding.unit {
            self.onboarding
                .ledger
                .record_progress(unit, g.email, &what)
                .await?;
        }
        Ok(())
    }

    /// Access the unit's source gave: `added` by this write, or found there (someone else's,
    /// or another source's). The end of the source takes away only what it added and no other
    /// source also gave (see `domain::offboard`).
    async fn record_grant(
        &self,
        email: &str,
        user_id: &str,
        what: &str,
        added: bool,
    ) -> Result<(), Abort> {
        let o = self.onboarding;
        if let Some(source) = o.grant_source
            && revocable(what)
        {
            let grant = if added {
                what.to_string()
            } else {
                found_grant(what)
            };
            o.ledger
                .record_grant(source, email, user_id, &grant)
                .await?;
        }
        Ok(())
    }

    /// The ledger first (our own guests), then Graph (anyone else), then an invitation.
    ///
    /// The intent to invite is recorded before the invitation, so that when the invitation is
    /// carried out but its answer or our record of it is lost, the retry knows the guest Graph
    /// holds is ours: it is recorded and, with `own` delivery, mailed.
    async fn find_or_invite(&self, p: &InviteePlan) -> Result<Guest, Failure> {
        let o = self.onboarding;
        let key = p.email.key();
        let recorded = o.ledger.guest(&key).await.map_err(Abort::from)?;
        let intent = match recorded {
            Some(record) if record.state == GuestState::Inviting => Some(record),
            Some(record) if record.state != GuestState::Deleted => {
                let unmailed = (p.delivery == Delivery::Own && record.mailed_at.is_none())
                    .then(|| record.clone());
                return Ok(Guest {
                    fresh: o.now - record.invited_at < REPLICATION_HORIZON,
                    user_id: record.user_id,
                    result: InviteeResult::Existed,
                    unmailed,
                });
            }
            _ => None,
        };
        if let Some(user) = o
            .directory
            .find_user_by_email(p.email.as_str())
            .await
            .map_err(Failure::from_directory)?
        {
            if user.user_type.as_deref() != Some("Guest") {
                return Err(Failure::Rejected(format!(
                    "the address belongs to user {}, a member of this tenant: members are never \
                     changed by this product",
                    user.id
                )));
            }
            let Some(intent) = intent else {
                return Ok(Guest {
                    user_id: user.id,
                    result: InviteeResult::Existed,
                    unmailed: None,
                    fresh: false,
                });
            };
            // Our earlier invitation created this guest; its answer or its record was lost.
            return self.invited_before(p, intent, user.id).await;
        }
        let intent = GuestRecord {
            email: key.clone(),
            user_id: String::new(),
            origin: p.origin.clone(),
            partner_id: p.partner_id.clone(),
            delivery: p.delivery,
            invited_at: o.now,
            reminders: 0,
            last_reminded_at: None,
            state: GuestState::Inviting,
            // Graph mails with the invitation itself; ours goes out after it.
            mailed_at: (p.delivery == Delivery::Microsoft).then_some(o.now),
            missing_since: None,
            ended: None,
        };
        o.ledger.put_guest(&intent).await.map_err(Abort::from)?;
        let request = InvitationRequest {
            email: p.email.as_str().to_string(),
            display_name: p.display_name.clone(),
            redirect_url: p.redirect_url.clone(),
            send_invitation_message: p.delivery == Delivery::Microsoft,
            message: p.message.clone(),
            reset_redemption_of: None,
        };
        let invitation = match self.invite(&request).await {
            Ok(invitation) => invitation,
            Err(Failure::Unanswered(why)) => {
                // The invitation may have been carried out: look before inviting again.
                let found = o
                    .directory
                    .find_user_by_email(p.email.as_str())
                    .await
                    .map_err(Failure::from_directory)?
                    .filter(|u| u.user_type.as_deref() == Some("Guest"));
                match found {
                    Some(user) => return self.invited_before(p, intent, user.id).await,
                    // Graph's email may be on its way: never a second one in this unit.
                    None if p.delivery == Delivery::Microsoft => {
                        return Err(Failure::Abort(Abort::transient(format!(
                            "the invitation got no answer ({why}) and no guest is found yet; \
                             the redelivery looks again before inviting"
                        ))));
                    }
                    // Graph sends nothing: posting again costs no email.
                    None => self.invite(&request).await.map_err(Failure::settled)?,
                }
            }
            Err(other) => return Err(other),
        };
        let record = GuestRecord {
            user_id: invitation.user_id.clone(),
            state: GuestState::Pending,
            ..intent
        };
        o.ledger.put_guest(&record).await.map_err(Abort::from)?;
        tracing::info!(invitee = %mask(p.email.as_str()), user_id = %invitation.user_id, "guest invited");
        if p.delivery == Delivery::Own {
            self.send_mail(p, &record, &invitation.redeem_url).await?;
        }
        Ok(Guest {
            user_id: invitation.user_id,
            result: InviteeResult::Invited,
            unmailed: None,
            fresh: true,
        })
    }

    /// A guest an earlier attempt of ours invited, whose answer or record was lost: recorded
    /// now, and mailed when delivery is ours.
    async fn invited_before(
        &self,
        p: &InviteePlan,
        intent: GuestRecord,
        user_id: String,
    ) -> Result<Guest, Failure> {
        let record = GuestRecord {
            user_id: user_id.clone(),
            state: GuestState::Pending,
            ..intent
        };
        self.onboarding
            .ledger
            .put_guest(&record)
            .await
            .map_err(Abort::from)?;
        let unmailed =
            (p.delivery == Delivery::Own && record.mailed_at.is_none()).then_some(record);
        Ok(Guest {
            user_id,
            result: InviteeResult::Invited,
            unmailed,
            fresh: true,
        })
    }

    async fn invite(
        &self,
        request: &InvitationRequest,
    ) -> Result<crate::ports::directory::Invitation, Failure> {
        let o = self.onboarding;
        let _one_at_a_time = self.invite_lock.lock().await;
        if o.gate.is_blocked() {
            return Err(Failure::Abort(Abort::circuit_open()));
        }
        match o.directory.invite(request).await {
            Ok(invitation) if invitation.status.eq_ignore_ascii_case("Error") => Err(
                Failure::Rejected("Graph answered the invitation with status Error".into()),
            ),
            Ok(invitation) => {
                o.gate.invitation_succeeded(o.ledger).await?;
                Ok(invitation)
            }
            Err(DirectoryError::Unanswered(why)) => Err(Failure::Unanswered(why)),
            Err(DirectoryError::Blocked(reason)) => {
                Err(Failure::Abort(o.gate.trip(o.ledger, &reason, o.now).await))
            }
            Err(e) => Err(Failure::from_directory(e)),
        }
    }

    /// A guest we created but never mailed (the mail failed, or the process died between
    /// the two): invite the address again for a fresh redeem URL and mail that.
    async fn mail_redeem_url(&self, p: &InviteePlan, record: GuestRecord) -> Result<(), Abort> {
        let invitation = match self
            .invite(&InvitationRequest {
                email: p.email.as_str().to_string(),
                display_name: p.display_name.clone(),
                redirect_url: p.redirect_url.clone(),
                send_invitation_message: false,
                message: None,
                reset_redemption_of: None,
            })
            .await
        {
            Ok(i) => i,
            Err(Failure::Abort(a)) => return Err(a),
            Err(Failure::Unanswered(why)) => return Err(Abort::transient(why)),
            Err(Failure::Rejected(reason)) => {
                return Err(Abort::transient(format!(
                    "could not renew the redeem URL to mail it: {reason}"
                )));
            }
        };
        self.send_mail(p, &record, &invitation.redeem_url).await
    }

    async fn send_mail(
        &self,
        p: &InviteePlan,
        record: &GuestRecord,
        redeem_url: &str,
    ) -> Result<(), Abort> {
        let o = self.onboarding;
        let sender = o.mail.ok_or_else(|| {
            Abort::transient("own delivery needs a mailer: set MAIL_FROM or OUTBOX_DIR")
        })?;
        sender
            .send_invitation(&InvitationMail {
                to: &p.email,
                guest_name: p.display_name.as_deref(),
                redeem_url,
                partner_name: o.partner_name.as_deref(),
                inviter_name: o.inviter_name.as_deref(),
                message: p.message.as_deref(),
                trust_tenant_id: o.trust_tenant_id.filter(|_| p.guest_inviter),
            })
            .await?;
        let mut mailed = record.clone();
        mailed.mailed_at = Some(o.now);
        o.ledger.put_guest(&mailed).await?;
        Ok(())
    }

    async fn sponsor_id(&self, reference: &str) -> Result<Option<String>, Abort> {
        if let Some(known) = self.sponsors.lock().await.get(reference) {
            return Ok(known.clone());
        }
        let id = match self.onboarding.directory.get_user(reference).await {
            Ok(user) => user.map(|u| u.id),
            Err(e) if e.class() == FailureClass::Permanent => None,
            Err(e) => return Err(e.into()),
        };
        self.sponsors
            .lock()
            .await
            .insert(reference.to_string(), id.clone());
        Ok(id)
    }
}

/// The grants of one invitee as they are carried out.
struct Grants<'g> {
    email: &'g str,
    user: &'g str,
    fresh: bool,
    /// Recorded by earlier attempts of this unit.
    done: Vec<String>,
    granted: Vec<String>,
    problems: Vec<String>,
}

/// Why one invitee could not be brought in.
enum Failure {
    /// Stop the unit; it is retried whole.
    Abort(Abort),
    /// This invitee can never be invited as asked; the others go on.
    Rejected(String),
    /// The invitation got no answer: it may have been carried out.
    Unanswered(String),
}

impl Failure {
    /// A second attempt's failure: no longer ambiguous enough to look again in this unit.
    fn settled(self) -> Self {
        match self {
            Failure::Unanswered(why) => Failure::Abort(Abort::transient(why)),
            other => other,
        }
    }

    fn from_directory(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Permanent { code, message, .. } => {
                Failure::Rejected(format!("{code}: {message}"))
            }
            other => Failure::Abort(other.into()),
        }
    }
}

impl From<Abort> for Failure {
    fn from(a: Abort) -> Self {
        Failure::Abort(a)
    }
}

/// Records a grant's result: done or already there goes to `granted`, a permanent refusal to
/// `problems`, anything retryable aborts the unit.
fn note<T>(
    result: Result<T, DirectoryError>,
    what: &str,
    granted: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Result<(), Abort> {
    match result {
        Ok(_) => {
            granted.push(what.to_string());
            Ok(())
        }
        Err(DirectoryError::Permanent { code, message, .. }) => {
            // The grant first, in words; Graph's code last, for whoever searches logs by it.
            problems.push(format!("{what}: {message} ({code})"));
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Grants the end of a source takes away: groups, app roles, directory roles. Sponsors stay
/// (someone inside still answers for the guest) and properties are the guest's own.
fn revocable(what: &str) -> bool {
    !(what == "properties" || what.starts_with("sponsor:"))
}

/// Whether a write added something, rather than finding it there.
trait Added {
    fn added(&self) -> bool;
}

impl Added for Applied {
    fn added(&self) -> bool {
        *self == Applied::Done
    }
}

impl Added for () {
    fn added(&self) -> bool {
        true
    }
}
