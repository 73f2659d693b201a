//! The end of a contract or an assignment (SPEC section 2, `partner.ended` and
//! `hr.record.ended`): the access this product granted for the source goes, except what
//! another active source also gave; then, per the end's action, the account is disabled or
//! deleted, unless another source still stands behind the guest or the user is a Member.
//!
//! An end whose date is to come is recorded and carried out by the sweep (`resend-stale`)
//! when it comes; so is the `endDate` of an `hr.record.added`.
//!
//! Safe to repeat: grants are forgotten only once taken away, and taking away what is
//! already gone is done; an end recorded done is not carried out again.

use serde::Serialize;
use time::OffsetDateTime;

use super::Abort;
use super::events::{EventWork, Rejection};
use crate::domain::hr::HrRecordAdded;
use crate::domain::offboard::{
    End, EndAction, Subject, grant_source_hr, granted_access, to_remove,
};
use crate::domain::trust::{TrustSettings, TrustState};
use crate::error::{Classify, FailureClass};
use crate::ports::directory::{AppRoleRef, Directory, DirectoryError};
use crate::ports::ledger::{
    EndRecord, EndState, EventKey, EventRecord, EventStatus, GuestState, InviteeOutcome,
    InviteeResult, Ledger, SourceGrants,
};

/// One end carried out through the ports.
pub struct Offboarding<'a> {
    pub directory: &'a dyn Directory,
    pub ledger: &'a dyn Ledger,
    pub now: OffsetDateTime,
}

impl Offboarding<'_> {
    /// Takes away what the end's source granted, guest by guest; the outcomes list, per
    /// guest, what was taken away (`granted`) and what became of the account (`reason`).
    pub async fn carry_out(&self, end: &End) -> Result<Vec<InviteeOutcome>, Abort> {
        let source = end.subject.source();
        if let Subject::Partner(id) = &end.subject
            && let Some(mut partner) = self.ledger.partner(id).await?
            && (partner.ended_at.is_none() || partner.trust.is_some())
        {
            // From now on its inviters' requests are refused.
            partner.ended_at.get_or_insert(self.now);
            if let Some(TrustState::Trusted {
                tenant_id,
                set,
                before,
                ..
            }) = &partner.trust
            {
                self.restore_trust(tenant_id, set, before).await?;
            }
            partner.trust = None;
            self.ledger.put_partner(&partner).await?;
        }
        let mut guests = self.ledger.granted_by(&source).await?;
        // A partner's guests it granted nothing to (a contract without access) still have
        // accounts the end's action concerns.
        if let Subject::Partner(id) = &end.subject {
            for record in self.ledger.guests().await? {
                if record.partner_id.as_deref() == Some(id.as_str())
                    && record.state != GuestState::Deleted
                    && !guests.iter().any(|g| g.email == record.email)
                {
                    guests.push(SourceGrants {
                        source: source.clone(),
                        email: record.email,
                        user_id: record.user_id,
                        grants: Vec::new(),
                    });
                }
            }
        }
        // A worker granted nothing beyond the invitation still has an account to act on.
        if let Some(email) = &end.email
            && !guests.iter().any(|g| &g.email == email)
            && let Some(user_id) = self.user_of(email).await?
        {
            guests.push(SourceGrants {
                source: source.clone(),
                email: email.clone(),
                user_id,
                grants: Vec::new(),
            });
        }
        let mut outcomes = Vec::with_capacity(guests.len());
        for guest in &guests {
            outcomes.push(self.guest(&source, end.action, guest).await?);
        }
        Ok(outcomes)
    }

    /// Puts back what the partner's signing set in our cross-tenant access settings: each
    /// setting we turned on goes back to what it was (off when it was not set).
    async fn restore_trust(
        &self,
        tenant_id: &str,
        set: &TrustSettings,
        before: &TrustSettings,
    ) -> Result<(), Abort> {
        let back = |ours: Option<bool>, was: Option<bool>| ours.map(|_| was.unwrap_or(false));
        let restore = TrustSettings {
            automatic_redemption: back(set.automatic_redemption, before.automatic_redemption),
            mfa_accepted: back(set.mfa_accepted, before.mfa_accepted),
            compliant_device_accepted: back(
                set.compliant_device_accepted,
                before.compliant_device_accepted,
            ),
        };
        if restore == TrustSettings::default() {
            return Ok(());
        }
        match self
            .directory
            .update_cross_tenant_partner(tenant_id, &restore)
            .await
        {
            // Removed by an administrator meanwhile: nothing of ours is left to restore.
            Ok(()) | Err(DirectoryError::Permanent { status: 404, .. }) => {
                tracing::info!(tenant = tenant_id, restored = ?restore, "partner tenant trust restored");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn user_of(&self, email: &str) -> Result<Option<String>, Abort> {
        if let Some(record) = self.ledger.guest(email).await? {
            return Ok(Some(record.user_id));
        }
        Ok(self
            .directory
            .find_user_by_email(email)
            .await?
            .filter(|u| {
                u.mail
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(email))
            })
            .map(|u| u.id))
    }

    async fn guest(
        &self,
        source: &str,
        action: EndAction,
        guest: &SourceGrants,
    ) -> Result<InviteeOutcome, Abort> {
        let all = self.ledger.grants_of(&guest.email).await?;
        let others: Vec<&SourceGrants> = all.iter().filter(|s| s.source != source).collect();
        let held_elsewhere: Vec<String> = others
            .iter()
            .flat_map(|s| s.grants.iter().cloned())
            .collect();
        let (remove, keep) = to_remove(&guest.grants, &held_elsewhere);
        // What stays because another source also gave it is that source's to take away now.
        for what in &keep {
            for other in others
                .iter()
                .filter(|s| s.grants.iter().any(|g| granted_access(g) == *what))
            {
                self.ledger
                    .record_grant(&other.source, &guest.email, &guest.user_id, what)
                    .await?;
            }
        }
        let mut removed = Vec::new();
        let mut notes = Vec::new();
        for what in remove {
            match self.take_away(&guest.user_id, what).await {
                Ok(()) => removed.push(what.to_string()),
                Err(e) if e.class() == FailureClass::Permanent => {
                    notes.push(format!("{what}: not taken away: {e}"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !keep.is_empty() {
            notes.push(format!(
                "kept {} (also given by {})",
                keep.join(", "),
                others
                    .iter()
                    .map(|s| s.source.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let account = self.account(action, guest, !others.is_empty()).await?;
        notes.extend(account.clone());
        if notes.iter().all(|n| !n.contains("not taken away")) {
            self.ledger.forget_grants(source, &guest.email).await?;
        }
        self.record_on_guest(guest, action, &removed, &account)
            .await?;
        tracing::info!(guest = %crate::domain::email::mask(&guest.email), source,
            removed = removed.len(), kept = keep.len(), "guest's access ended");
        Ok(InviteeOutcome {
            email: guest.email.clone(),
            result: InviteeResult::Ended,
            user_id: Some(guest.user_id.clone()),
            granted: removed,
            reason: (!notes.is_empty()).then(|| notes.join("; ")),
        })
    }

    async fn take_away(&self, user_id: &str, what: &str) -> Result<(), DirectoryError> {
        let d = self.directory;
        if let Some(role) = what.strip_prefix("appRole:") {
            let (resource_id, app_role_id) = role.split_once('/').unwrap_or((role, ""));
            let role = AppRoleRef {
                resource_id: resource_id.to_string(),
                app_role_id: app_role_id.to_string(),
            };
            d.remove_app_role(user_id, &role).await.map(|_| ())
        } else if let Some(template) = what.strip_prefix("directoryRole:") {
            d.remove_directory_role(user_id, template).await.map(|_| ())
        } else {
            d.remove_group_member(what, user_id).await.map(|_| ())
        }
    }

    /// What becomes of the account: only a guest no other source stands behind is disabled
    /// or deleted, and never a Member.
    async fn account(
        &self,
        action: EndAction,
        guest: &SourceGrants,
        other_sources: bool,
    ) -> Result<Option<String>, Abort> {
        if action == EndAction::Revoke {
            return Ok(None);
        }
        if other_sources {
            return Ok(Some(
                "account kept: another partner or record still stands behind the guest".into(),
            ));
        }
        let Some(user) = self.directory.get_user(&guest.user_id).await? else {
            return Ok(Some("account already gone".into()));
        };
        if !user
            .user_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("Guest"))
        {
            return Ok(Some(
                "account kept: a Member is never disabled or deleted".into(),
            ));
        }
        Ok(Some(match action {
            EndAction::Delete => {
                self.directory.delete_user(&user.id).await?;
                "account deleted".into()
            }
            _ => {
                self.directory.disable_user(&user.id).await?;
                "account disabled".into()
            }
        }))
    }

    async fn record_on_guest(
        &self,
        guest: &SourceGrants,
        action: EndAction,
        removed: &[String],
        account: &Option<String>,
    ) -> Result<(), Abort> {
        let Some(mut record) = self.ledger.guest(&guest.email).await? else {
            return Ok(());
        };
        let done = |what: &str| account.as_deref() == Some(what);
        if action == EndAction::Disable && done("account disabled") {
            record.state = GuestState::Disabled;
        }
        if action == EndAction::Delete && done("account deleted") {
            record.state = GuestState::Deleted;
        }
        let mut ended = record.ended.take().unwrap_or_default();
        ended.at = Some(self.now);
        for what in removed {
            if !ended.removed.contains(what) {
                ended.removed.push(what.clone());
            }
        }
        record.ended = Some(ended);
        self.ledger.put_guest(&record).await?;
        Ok(())
    }
}

impl EventWork<'_> {
    /// An end event: recorded for the sweep when its date is to come, else carried out now.
    pub(super) async fn end(
        &self,
        key: &EventKey,
        event_type: &str,
        end: &End,
        now: OffsetDateTime,
    ) -> Result<Result<EventRecord, Rejection>, Abort> {
        let ledger = self.runtime.ledger.as_ref();
        if let Subject::Partner(id) = &end.subject
            && ledger.partner(id).await?.is_none()
        {
            return Ok(Err(Rejection::NotAllowed(format!(
                "partner {id} is not registered: nothing to end"
            ))));
        }
        let mut recorded = EndRecord {
            end: end.clone(),
            event: key.clone(),
            state: EndState::Scheduled,
            recorded_at: now,
        };
        let record = |reason: String, outcomes: Vec<InviteeOutcome>| EventRecord {
            key: key.clone(),
            event_type: event_type.to_string(),
            status: EventStatus::Completed,
            reason: Some(reason),
            actor: None,
            outcomes,
            trust: None,
            recorded_at: now,
        };
        if !end.is_due(now.date()) {
            ledger.put_end(&recorded).await?;
            let date = end.effective.map(|d| d.to_string()).unwrap_or_default();
            return Ok(Ok(record(
                format!("scheduled for {date}: the sweep carries it out then"),
                Vec::new(),
            )));
        }
        let outcomes = Offboarding {
            directory: self.directory,
            ledger,
            now,
        }
        .carry_out(end)
        .await?;
        recorded.state = EndState::Done;
        ledger.put_end(&recorded).await?;
        Ok(Ok(record(summary_line(end, &outcomes), outcomes)))
    }

    /// The `endDate` of an HR record, for the sweep; an end already recorded for the worker
    /// (an explicit `hr.record.ended`) stands.
    pub(super) async fn schedule_record_end(
        &self,
        key: &EventKey,
        ev: &HrRecordAdded,
        now: OffsetDateTime,
    ) -> Result<(), Abort> {
        let Some(end_date) = ev.end_date else {
            return Ok(());
        };
        let ledger = self.runtime.ledger.as_ref();
        let source = grant_source_hr(&ev.employee_id);
        if ledger.end(&source).await?.is_some_and(|e| e.event != *key) {
            return Ok(());
        }
        ledger
            .put_end(&EndRecord {
                end: End {
                    subject: Subject::Hr(ev.employee_id.clone()),
                    email: Some(ev.email.key()),
                    effective: Some(end_date),
                    action: self.runtime.settings.hr_end_action,
                },
                event: key.clone(),
                state: EndState::Scheduled,
                recorded_at: now,
            })
            .await?;
        Ok(())
    }
}

/// The record's one-line summary of an end carried out.
pub fn summary_line(end: &End, outcomes: &[InviteeOutcome]) -> String {
    let removed: usize = outcomes.iter().map(|o| o.granted.len()).sum();
    format!(
        "{} ended ({}): {} guests, {removed} grants taken away",
        end.subject.source(),
        end.action.as_str(),
        outcomes.len()
    )
}

/// What a sweep did about ends whose date came.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndsSummary {
    /// Ends whose date had come.
    pub due: u64,
    pub carried_out: u64,
    /// Guests whose access ended in this run.
    pub guests: u64,
    /// Left for the next run: more guests than `OFFBOARD_MAX_PER_RUN` allows.
    pub held_back: u64,
    /// Not done because of an error; tried again by the next run.
    pub failed: u64,
    /// A dry run: what each due end would do.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<String>,
}

impl Offboarding<'_> {
    /// Carries out the ends whose date has come, up to `max_guests` guests; a dry run only
    /// says what each would do.
    pub async fn carry_out_due(&self, dry_run: bool, max_guests: u32) -> EndsSummary {
        let mut summary = EndsSummary::default();
        let ends = match self.ledger.ends().await {
            Ok(ends) => ends,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the recorded ends; the next run tries again");
                summary.failed = 1;
                return summary;
            }
        };
        let today = self.now.date();
        let mut budget = u64::from(max_guests);
        for mut recorded in ends
            .into_iter()
            .filter(|e| e.state == EndState::Scheduled && e.end.is_due(today))
        {
            summary.due += 1;
            let source = recorded.end.subject.source();
            let guests = match self.ledger.granted_by(&source).await {
                Ok(g) => g.len().max(usize::from(recorded.end.email.is_some())) as u64,
                Err(_) => {
                    summary.failed += 1;
                    continue;
                }
            };
            if dry_run {
                summary.planned.push(format!(
                    "{source}: {}, {guests} guests",
                    recorded.end.action.as_str()
                ));
                continue;
            }
            if guests > budget {
                summary.held_back += 1;
                continue;
            }
            match self.carry_out(&recorded.end).await {
                Ok(outcomes) => {
                    budget = budget.saturating_sub(outcomes.len() as u64);
                    summary.guests += outcomes.len() as u64;
                    recorded.state = EndState::Done;
                    match self.ledger.put_end(&recorded).await {
                        Ok(()) => summary.carried_out += 1,
                        Err(_) => summary.failed += 1,
                    }
                    tracing::info!(source, summary = %summary_line(&recorded.end, &outcomes), "end carried out");
                }
                Err(abort) => {
                    tracing::warn!(source, error = %abort, "end not carried out; the next run tries again");
                    summary.failed += 1;
                }
            }
        }
        summary
    }
}
