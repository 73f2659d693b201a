//! `--dry-run`: the function code runs as usual, but every Graph write, ledger write and
//! email is recorded instead of made. Reads go to the real directory and ledger, so the
//! plan is the one a real run would carry out now.

use b2b::domain::trust::{CrossTenantPartner, TrustSettings};
use b2b::ports::directory::{Removed, TenantInfo};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use b2b::adapters::mailer::templates::Templates;
use b2b::app::mail::MailSender;
use b2b::app::runtime::{Directories, Runtime};
use b2b::domain::email::mask;
use b2b::ports::directory::{
    AppRoleRef, Applied, Directory, DirectoryError, DirectoryUser, Group, GuestPage, Invitation,
    InvitationRequest, UserPatch, ensure_assignable,
};
use b2b::ports::ledger::{
    Checkpoint, Circuit, Claim, EndRecord, EventKey, EventRecord, GuestRecord, Ledger, LedgerError,
    PartnerRecord, SourceGrants,
};
use b2b::ports::mailer::{Mail, Mailer, MailerError};
use futures::stream::BoxStream;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::time::Instant;

/// One write a real run would make.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedWrite {
    /// `POST`, `PATCH`, `DELETE`, or `MAIL` for our own invitation email.
    pub method: String,
    /// The Graph path (relative to `GRAPH_BASE_URL`), or the recipient of a mail.
    pub target: String,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub body: Value,
}

/// What a dry run would have done, shared by every directory, ledger and mailer it hands out.
#[derive(Default)]
pub struct Recorder {
    writes: Mutex<Vec<PlannedWrite>>,
    /// Guests the dry run "invited", by lower-case address, so later steps find them.
    invited: Mutex<HashMap<String, DirectoryUser>>,
}

impl Recorder {
    fn record(&self, method: &str, target: String, body: Value) {
        self.writes
            .lock()
            .expect("recorder lock")
            .push(PlannedWrite {
                method: method.into(),
                target,
                body,
            });
    }

    pub fn writes(&self) -> Vec<PlannedWrite> {
        self.writes.lock().expect("recorder lock").clone()
    }

    /// The plan, one line per write.
    pub fn render(&self) -> String {
        let writes = self.writes();
        let mut out = format!(
            "dry run: {} write{} planned, none made\n",
            writes.len(),
            if writes.len() == 1 { "" } else { "s" }
        );
        for w in writes {
            if w.body.is_null() {
                out.push_str(&format!("  {:<6} {}\n", w.method, w.target));
            } else {
                out.push_str(&format!("  {:<6} {} {}\n", w.method, w.target, w.body));
            }
        }
        out
    }

    fn fake_user(&self, email: &str, display_name: Option<&str>) -> DirectoryUser {
        let mut invited = self.invited.lock().expect("recorder lock");
        let n = invited.len() + 1;
        invited
            .entry(email.to_lowercase())
            .or_insert_with(|| DirectoryUser {
                id: format!("dry-run-user-{n}"),
                display_name: display_name.map(String::from),
                mail: Some(email.to_string()),
                user_type: Some("Guest".into()),
                creation_type: Some("Invitation".into()),
                external_user_state: Some("PendingAcceptance".into()),
                account_enabled: Some(true),
                created_date_time: Some(OffsetDateTime::now_utc()),
                ..DirectoryUser::default()
            })
            .clone()
    }

    fn invited_by_email(&self, email: &str) -> Option<DirectoryUser> {
        self.invited
            .lock()
            .expect("recorder lock")
            .get(&email.to_lowercase())
            .cloned()
    }

    fn invited_by_id(&self, id: &str) -> Option<DirectoryUser> {
        self.invited
            .lock()
            .expect("recorder lock")
            .values()
            .find(|u| u.id == id)
            .cloned()
    }

    /// Makes `runtime` plan instead of act: its directories, ledger and mail all record.
    pub fn apply(self: &Arc<Self>, runtime: &mut Runtime) -> anyhow::Result<()> {
        runtime.directories = Arc::new(DryDirectories {
            inner: Arc::clone(&runtime.directories),
            recorder: Arc::clone(self),
        });
        runtime.ledger = Arc::new(OverlayLedger::new(Arc::clone(&runtime.ledger)));
        if runtime.mail.is_some() {
            let mail = &runtime.settings.mail;
            let templates = Templates::load(mail.templates.as_deref())?;
            runtime.mail = Some(Arc::new(MailSender::new(
                Arc::new(RecordingMailer {
                    recorder: Arc::clone(self),
                }),
                templates,
                mail.from
                    .clone()
                    .unwrap_or_else(|| "b2b-invites@localhost.localdomain".into()),
                mail.organisation()
                    .unwrap_or_else(|| "our organisation".into()),
                mail.language.clone(),
            )));
        }
        Ok(())
    }
}

struct DryDirectories {
    inner: Arc<dyn Directories>,
    recorder: Arc<Recorder>,
}

impl Directories for DryDirectories {
    fn at(&self, deadline: Instant) -> Arc<dyn Directory> {
        Arc::new(RecordingDirectory {
            inner: self.inner.at(deadline),
            recorder: Arc::clone(&self.recorder),
        })
    }
}

/// A directory that reads through and records writes.
pub struct RecordingDirectory {
    inner: Arc<dyn Directory>,
    recorder: Arc<Recorder>,
}

fn is_fake(id: &str) -> bool {
    id.starts_with("dry-run-user-")
}

#[async_trait]
impl Directory for RecordingDirectory {
    async fn invite(&self, request: &InvitationRequest) -> Result<Invitation, DirectoryError> {
        let mut body = json!({
            "invitedUserEmailAddress": mask(&request.email),
            "inviteRedirectUrl": request.redirect_url,
            "sendInvitationMessage": request.send_invitation_message,
        });
        if let Some(name) = &request.display_name {
            body["invitedUserDisplayName"] = json!(name);
        }
        if let Some(id) = &request.reset_redemption_of {
            body["resetRedemption"] = json!(true);
            body["invitedUser"] = json!({ "id": id });
        }
        if request.message.is_some() {
            body["invitedUserMessageInfo"] = json!({ "customizedMessageBody": "…" });
        }
        self.recorder.record("POST", "/invitations".into(), body);
        let user = match &request.reset_redemption_of {
            Some(id) => DirectoryUser {
                id: id.clone(),
                ..DirectoryUser::default()
            },
            None => self
                .recorder
                .fake_user(&request.email, request.display_name.as_deref()),
        };
        Ok(Invitation {
            id: format!("dry-run-invitation-{}", user.id),
            user_id: user.id,
            redeem_url: "https://invitations.microsoft.com/redeem/dry-run".into(),
            status: "PendingAcceptance".into(),
        })
    }

    async fn find_user_by_email(
        &self,
        email: &str,
    ) -> Result<Option<DirectoryUser>, DirectoryError> {
        if let Some(user) = self.recorder.invited_by_email(email) {
            return Ok(Some(user));
        }
        self.inner.find_user_by_email(email).await
    }

    async fn get_user(&self, id_or_upn: &str) -> Result<Option<DirectoryUser>, DirectoryError> {
        if is_fake(id_or_upn) {
            return Ok(self.recorder.invited_by_id(id_or_upn));
        }
        self.inner.get_user(id_or_upn).await
    }

    async fn update_user(&self, user_id: &str, patch: &UserPatch) -> Result<(), DirectoryError> {
        let body = serde_json::to_value(patch).unwrap_or(Value::Null);
        self.recorder
            .record("PATCH", format!("/users/{user_id}"), body);
        Ok(())
    }

    fn pending_guests(
        &self,
        resume_from: Option<String>,
    ) -> BoxStream<'_, Result<GuestPage, DirectoryError>> {
        self.inner.pending_guests(resume_from)
    }

    async fn get_group(&self, group_id: &str) -> Result<Option<Group>, DirectoryError> {
        self.inner.get_group(group_id).await
    }

    async fn add_group_member(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<Applied, DirectoryError> {
        // The same refusals a real run meets before it writes.
        ensure_assignable(self.inner.as_ref(), group_id).await?;
        self.recorder.record(
            "POST",
            format!("/groups/{group_id}/members/$ref"),
            json!({ "@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{user_id}") }),
        );
        Ok(Applied::Done)
    }

    async fn assign_app_role(
        &self,
        user_id: &str,
        role: &AppRoleRef,
    ) -> Result<Applied, DirectoryError> {
        self.recorder.record(
            "POST",
            format!("/servicePrincipals/{}/appRoleAssignedTo", role.resource_id),
            json!({ "principalId": user_id, "resourceId": role.resource_id, "appRoleId": role.app_role_id }),
        );
        Ok(Applied::Done)
    }

    async fn assign_directory_role(
        &self,
        user_id: &str,
        role_template_id: &str,
    ) -> Result<Applied, DirectoryError> {
        if !is_fake(user_id)
            && self
                .inner
                .has_directory_role(user_id, role_template_id)
                .await?
        {
            return Ok(Applied::AlreadyPresent);
        }
        self.recorder.record(
            "POST",
            "/roleManagement/directory/roleAssignments".into(),
            json!({ "principalId": user_id, "roleDefinitionId": role_template_id, "directoryScopeId": "/" }),
        );
        Ok(Applied::Done)
    }

    async fn has_directory_role(
        &self,
        user_id: &str,
        role_template_id: &str,
    ) -> Result<bool, DirectoryError> {
        if is_fake(user_id) {
            return Ok(false);
        }
        self.inner
            .has_directory_role(user_id, role_template_id)
            .await
    }

    async fn add_sponsor(
        &self,
        user_id: &str,
        sponsor_id: &str,
    ) -> Result<Applied, DirectoryError> {
        self.recorder.record(
            "POST",
            format!("/users/{user_id}/sponsors/$ref"),
            json!({ "@odata.id": format!("https://graph.microsoft.com/v1.0/users/{sponsor_id}") }),
        );
        Ok(Applied::Done)
    }

    async fn remove_group_member(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<Removed, DirectoryError> {
        self.recorder.record(
            "DELETE",
            format!("/groups/{group_id}/members/{user_id}/$ref"),
            Value::Null,
        );
        Ok(Removed::Done)
    }

    async fn remove_app_role(
        &self,
        user_id: &str,
        role: &AppRoleRef,
    ) -> Result<Removed, DirectoryError> {
        self.recorder.record(
            "DELETE",
            format!("/users/{user_id}/appRoleAssignments"),
            json!({ "resourceId": role.resource_id, "appRoleId": role.app_role_id }),
        );
        Ok(Removed::Done)
    }

    async fn remove_directory_role(
        &self,
        user_id: &str,
        role_template_id: &str,
    ) -> Result<Removed, DirectoryError> {
        self.recorder.record(
            "DELETE",
            "/roleManagement/directory/roleAssignments".into(),
            json!({ "principalId": user_id, "roleDefinitionId": role_template_id }),
        );
        Ok(Removed::Done)
    }

    async fn disable_user(&self, user_id: &str) -> Result<(), DirectoryError> {
        self.recorder.record(
            "PATCH",
            format!("/users/{user_id}"),
            json!({ "accountEnabled": false }),
        );
        Ok(())
    }

    async fn delete_user(&self, user_id: &str) -> Result<(), DirectoryError> {
        self.recorder
            .record("DELETE", format!("/users/{user_id}"), Value::Null);
        Ok(())
    }

    async fn verified_domains(&self) -> Result<Vec<String>, DirectoryError> {
        self.inner.verified_domains().await
    }

    async fn find_tenant_by_domain(
        &self,
        domain: &str,
    ) -> Result<Option<TenantInfo>, DirectoryError> {
        self.inner.find_tenant_by_domain(domain).await
    }

    async fn cross_tenant_partner(
        &self,
        tenant_id: &str,
    ) -> Result<Option<CrossTenantPartner>, DirectoryError> {
        self.inner.cross_tenant_partner(tenant_id).await
    }

    async fn create_cross_tenant_partner(
        &self,
        tenant_id: &str,
        settings: &TrustSettings,
    ) -> Result<Applied, DirectoryError> {
        self.recorder.record(
            "POST",
            "/policies/crossTenantAccessPolicy/partners".into(),
            json!({ "tenantId": tenant_id, "trust": settings }),
        );
        Ok(Applied::Done)
    }

    async fn update_cross_tenant_partner(
        &self,
        tenant_id: &str,
        settings: &TrustSettings,
    ) -> Result<(), DirectoryError> {
        self.recorder.record(
            "PATCH",
            format!("/policies/crossTenantAccessPolicy/partners/{tenant_id}"),
            json!({ "trust": settings }),
        );
        Ok(())
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.inner.deadline()
    }
}

struct RecordingMailer {
    recorder: Arc<Recorder>,
}

#[async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, mail: &Mail) -> Result<String, MailerError> {
        self.recorder
            .record("MAIL", mask(&mail.to), json!({ "subject": mail.subject }));
        Ok(format!("dry-run-{}", uuid::Uuid::new_v4()))
    }
}

/// A ledger that reads through to the real one and keeps its own writes in memory, so a
/// dry run sees its own progress and leaves the real ledger as it was.
pub struct OverlayLedger {
    inner: Arc<dyn Ledger>,
    state: Mutex<Overlay>,
}

#[derive(Default)]
struct Overlay {
    /// `None`: claimed by this run, not finished.
    events: HashMap<EventKey, Option<EventRecord>>,
    partners: HashMap<String, PartnerRecord>,
    guests: HashMap<String, GuestRecord>,
    circuit: Option<Circuit>,
    checkpoints: HashMap<String, Option<Checkpoint>>,
    progress: HashMap<(EventKey, String), Vec<String>>,
    parts_done: HashMap<EventKey, std::collections::BTreeSet<u32>>,
}

impl OverlayLedger {
    pub fn new(inner: Arc<dyn Ledger>) -> Self {
        OverlayLedger {
            inner,
            state: Mutex::new(Overlay::default()),
        }
    }

    fn overlay(&self) -> std::sync::MutexGuard<'_, Overlay> {
        self.state.lock().expect("overlay lock")
    }
}

#[async_trait]
impl Ledger for OverlayLedger {
    async fn claim_event(
        &self,
        key: &EventKey,
        _lease: Duration,
        _now: OffsetDateTime,
    ) -> Result<Claim, LedgerError> {
        if let Some(entry) = self.overlay().events.get(key) {
            return Ok(match entry {
                Some(record) => Claim::Completed(Box::new(record.clone())),
                None => Claim::InProgress {
                    until: OffsetDateTime::now_utc(),
                },
            });
        }
        if let Some(record) = self.inner.event(key).await? {
            return Ok(Claim::Completed(Box::new(record)));
        }
        self.overlay().events.insert(key.clone(), None);
        Ok(Claim::Acquired)
    }

    async fn complete_event(&self, record: &EventRecord) -> Result<(), LedgerError> {
        self.overlay()
            .events
            .insert(record.key.clone(), Some(record.clone()));
        Ok(())
    }

    async fn release_event(&self, key: &EventKey) -> Result<(), LedgerError> {
        self.overlay().events.remove(key);
        Ok(())
    }

    async fn event(&self, key: &EventKey) -> Result<Option<EventRecord>, LedgerError> {
        if let Some(entry) = self.overlay().events.get(key) {
            return Ok(entry.clone());
        }
        self.inner.event(key).await
    }

    async fn partner(&self, id: &str) -> Result<Option<PartnerRecord>, LedgerError> {
        if let Some(p) = self.overlay().partners.get(id) {
            return Ok(Some(p.clone()));
        }
        self.inner.partner(id).await
    }

    async fn put_partner(&self, partner: &PartnerRecord) -> Result<(), LedgerError> {
        self.overlay()
            .partners
            .insert(partner.id.clone(), partner.clone());
        Ok(())
    }

    async fn partners(&self) -> Result<Vec<PartnerRecord>, LedgerError> {
        let mut all = self.inner.partners().await?;
        let overlay = self.overlay();
        all.retain(|p| !overlay.partners.contains_key(&p.id));
        all.extend(overlay.partners.values().cloned());
        Ok(all)
    }

    async fn guest(&self, email: &str) -> Result<Option<GuestRecord>, LedgerError> {
        if let Some(g) = self.overlay().guests.get(email) {
            return Ok(Some(g.clone()));
        }
        self.inner.guest(email).await
    }

    async fn put_guest(&self, guest: &GuestRecord) -> Result<(), LedgerError> {
        self.overlay()
            .guests
            .insert(guest.email.clone(), guest.clone());
        Ok(())
    }

    async fn guests(&self) -> Result<Vec<GuestRecord>, LedgerError> {
        let mut all = self.inner.guests().await?;
        let overlay = self.overlay();
        all.retain(|g| !overlay.guests.contains_key(&g.email));
        all.extend(overlay.guests.values().cloned());
        Ok(all)
    }

    async fn claim_reminder(
        &self,
        email: &str,
        seen_reminders: u32,
        now: OffsetDateTime,
    ) -> Result<bool, LedgerError> {
        let Some(mut guest) = self.guest(email).await? else {
            return Ok(false);
        };
        if guest.reminders != seen_reminders {
            return Ok(false);
        }
        guest.reminders += 1;
        guest.last_reminded_at = Some(now);
        self.put_guest(&guest).await?;
        Ok(true)
    }

    async fn circuit(&self) -> Result<Circuit, LedgerError> {
        if let Some(c) = &self.overlay().circuit {
            return Ok(c.clone());
        }
        self.inner.circuit().await
    }

    async fn open_circuit(&self, reason: &str, now: OffsetDateTime) -> Result<(), LedgerError> {
        self.overlay().circuit = Some(Circuit {
            open: true,
            reason: Some(reason.into()),
            opened_at: Some(now),
            probe_at: None,
        });
        Ok(())
    }

    async fn close_circuit(&self) -> Result<(), LedgerError> {
        self.overlay().circuit = Some(Circuit::default());
        Ok(())
    }

    async fn claim_probe(
        &self,
        now: OffsetDateTime,
        probe_after: Duration,
    ) -> Result<bool, LedgerError> {
        let mut circuit = self.circuit().await?;
        if !circuit.open {
            return Ok(false);
        }
        let since = circuit.probe_at.or(circuit.opened_at).unwrap_or(now);
        let due = time::Duration::try_from(probe_after).is_ok_and(|d| now - since >= d);
        if due {
            circuit.probe_at = Some(now);
            self.overlay().circuit = Some(circuit);
        }
        Ok(due)
    }

    async fn progress(&self, unit: &EventKey, email: &str) -> Result<Vec<String>, LedgerError> {
        let mut steps = self.inner.progress(unit, email).await?;
        if let Some(mine) = self
            .overlay()
            .progress
            .get(&(unit.clone(), email.to_lowercase()))
        {
            steps.extend(
                mine.iter()
                    .filter(|s| !steps.contains(s))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
        Ok(steps)
    }

    // What a dry run would grant or take away is in its planned writes; the real ledger's
    // record of grants and ends is only read.
    async fn record_grant(
        &self,
        _source: &str,
        _email: &str,
        _user_id: &str,
        _grant: &str,
    ) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn grants_of(&self, email: &str) -> Result<Vec<SourceGrants>, LedgerError> {
        self.inner.grants_of(email).await
    }

    async fn granted_by(&self, source: &str) -> Result<Vec<SourceGrants>, LedgerError> {
        self.inner.granted_by(source).await
    }

    async fn forget_grants(&self, _source: &str, _email: &str) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn put_end(&self, _end: &EndRecord) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn end(&self, source: &str) -> Result<Option<EndRecord>, LedgerError> {
        self.inner.end(source).await
    }

    async fn ends(&self) -> Result<Vec<EndRecord>, LedgerError> {
        self.inner.ends().await
    }

    async fn record_part_done(&self, event: &EventKey, part: u32) -> Result<usize, LedgerError> {
        let mut overlay = self.overlay();
        let done = overlay.parts_done.entry(event.clone()).or_default();
        done.insert(part);
        Ok(done.len())
    }

    async fn record_progress(
        &self,
        unit: &EventKey,
        email: &str,
        step: &str,
    ) -> Result<(), LedgerError> {
        self.overlay()
            .progress
            .entry((unit.clone(), email.to_lowercase()))
            .or_default()
            .push(step.to_string());
        Ok(())
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, LedgerError> {
        if let Some(c) = self.overlay().checkpoints.get(name) {
            return Ok(c.clone());
        }
        self.inner.checkpoint(name).await
    }

    async fn put_checkpoint(
        &self,
        name: &str,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), LedgerError> {
        self.overlay()
            .checkpoints
            .insert(name.to_string(), checkpoint.cloned());
        Ok(())
    }
}
