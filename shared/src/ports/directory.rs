//! The directory port: the subset of Microsoft Graph the product needs.

use crate::domain::trust::{CrossTenantPartner, TrustSettings};
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

use crate::error::{Classify, FailureClass};

/// The most members Graph adds in one `members@odata.bind` request.
pub const GROUP_BATCH: usize = 20;

/// Template id of the Guest Inviter directory role.
pub const GUEST_INVITER_ROLE: &str = "95e79109-95c0-4d8e-aee3-d01accf2d47b";

/// A directory failure, classified.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory temporarily unavailable: {0}")]
    Transient(String),
    #[error("directory throttled the request (retry after {retry_after:?})")]
    Throttled { retry_after: Option<Duration> },
    /// Keeps Graph's own code and message so a rejection can name the real reason.
    #[error("directory refused the request ({status} {code}): {message}")]
    Permanent {
        status: u16,
        code: String,
        message: String,
    },
    #[error("invitations are blocked for the tenant: {0}")]
    Blocked(String),
    /// The caller's time budget ran out before the call could succeed.
    #[error("deadline reached before the directory call completed: {0}")]
    DeadlineExceeded(String),
    /// Entra or Graph refused this deployment's own access: a credential refused (expired or
    /// wrong secret, unknown app), a 401, or a 403 `Authorization_RequestDenied` (permission
    /// or consent missing). An outage to fix, never a refusal of an invitee: the work is
    /// retried, not recorded as rejected.
    #[error(
        "this deployment's access to Microsoft Graph was refused ({code}): {message}. Fix: {fix}"
    )]
    AccessDenied {
        code: String,
        message: String,
        fix: &'static str,
    },
    /// A write was sent and no answer came back (timeout, reset, 5xx): it may have been
    /// carried out. An invitation is never sent again before the guest is looked up.
    #[error("no answer from the directory; the write may have been carried out: {0}")]
    Unanswered(String),
}

impl DirectoryError {
    /// The deployment's own access was refused with this code (an `AADSTS…` code of the token
    /// endpoint, or Graph's error code); the fix an operator should make is derived from it.
    pub fn access_denied(code: impl Into<String>, message: impl Into<String>) -> Self {
        let code = code.into();
        let fix = match code.as_str() {
            "AADSTS7000222" => {
                "the client secret has expired: create a new one and store it in AZURE_CLIENT_SECRET or the secret AZURE_CLIENT_SECRET_ARN names"
            }
            "AADSTS7000215" => {
                "the client secret is wrong: store the secret's value (not its id) in AZURE_CLIENT_SECRET or the secret AZURE_CLIENT_SECRET_ARN names"
            }
            "AADSTS700016" | "AADSTS90002" => {
                "AZURE_CLIENT_ID or AZURE_TENANT_ID names no app registration of this tenant"
            }
            "AADSTS700027" | "AADSTS700024" | "AADSTS70021" => {
                "the certificate or federated credential is not accepted: check the app registration's credentials"
            }
            "Authorization_RequestDenied" | "Unauthorized" => {
                "grant the app registration the Graph application permissions README.md lists for this function, with admin consent"
            }
            _ => "check the app registration, its credential and its Graph permissions",
        };
        DirectoryError::AccessDenied {
            code,
            message: message.into(),
            fix,
        }
    }

    /// Whether the error says that the object a write names is not known (yet). Right after
    /// an invitation creates a guest, Graph answers so until the guest has replicated.
    pub fn names_unknown_object(&self, object_id: &str) -> bool {
        match self {
            DirectoryError::Permanent {
                status: 404,
                message,
                ..
            } => message.contains(object_id),
            DirectoryError::Permanent {
                status: 400,
                message,
                ..
            } => message.to_ascii_lowercase().contains("do not exist"),
            _ => false,
        }
    }

    pub fn permanent(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        DirectoryError::Permanent {
            status,
            code: code.into(),
            message: message.into(),
        }
    }
}

impl Classify for DirectoryError {
    fn class(&self) -> FailureClass {
        match self {
            DirectoryError::Transient(_)
            | DirectoryError::DeadlineExceeded(_)
            | DirectoryError::AccessDenied { .. }
            | DirectoryError::Unanswered(_) => FailureClass::Transient,
            DirectoryError::Throttled { .. } => FailureClass::Throttled,
            DirectoryError::Permanent { .. } => FailureClass::Permanent,
            DirectoryError::Blocked(_) => FailureClass::Blocked,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            DirectoryError::Throttled { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// Who sends the invitation email (SPEC section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Graph sends its own email.
    Microsoft,
    /// Graph sends nothing; we mail the redeem URL ourselves.
    #[default]
    Own,
    /// Nobody is emailed.
    None,
}

impl std::str::FromStr for Delivery {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "microsoft" => Ok(Delivery::Microsoft),
            "own" => Ok(Delivery::Own),
            "none" => Ok(Delivery::None),
            other => Err(format!(
                "unknown delivery '{other}': expected microsoft, own or none"
            )),
        }
    }
}

/// A request to `POST /invitations`.
#[derive(Debug, Clone, PartialEq)]
pub struct InvitationRequest {
    pub email: String,
    pub display_name: Option<String>,
    pub redirect_url: String,
    /// Graph sends its own email (only with [`Delivery::Microsoft`]).
    pub send_invitation_message: bool,
    pub message: Option<String>,
    /// Re-invite an existing guest: Graph's documented re-invitation (`resetRedemption`).
    pub reset_redemption_of: Option<String>,
}

/// What `POST /invitations` answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    pub id: String,
    pub user_id: String,
    /// Never logged: whoever holds it can redeem the invitation.
    pub redeem_url: String,
    pub status: String,
}

/// The user properties the product reads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryUser {
    pub id: String,
    pub display_name: Option<String>,
    pub mail: Option<String>,
    #[serde(default)]
    pub other_mails: Vec<String>,
    pub user_principal_name: Option<String>,
    pub user_type: Option<String>,
    pub creation_type: Option<String>,
    pub external_user_state: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub external_user_state_change_date_time: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub created_date_time: Option<OffsetDateTime>,
    pub account_enabled: Option<bool>,
}

impl DirectoryUser {
    pub fn is_pending(&self) -> bool {
        self.external_user_state.as_deref() == Some("PendingAcceptance")
    }
}

/// Properties the product writes onto a guest (`PATCH /users/{id}`); `None` leaves a
/// property as it is.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub employee_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_enabled: Option<bool>,
}

impl UserPatch {
    pub fn is_empty(&self) -> bool {
        self == &UserPatch::default()
    }
}

/// A group as far as membership is concerned.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: String,
    pub display_name: Option<String>,
    #[serde(default)]
    pub group_types: Vec<String>,
    pub on_premises_sync_enabled: Option<bool>,
    pub mail_enabled: Option<bool>,
    pub security_enabled: Option<bool>,
}

impl Group {
    /// Members of dynamic groups come from a rule, of synced groups from on-premises, and of
    /// distribution lists and mail-enabled security groups from Exchange: none accepts a
    /// member added through Graph.
    pub fn refuses_manual_members(&self) -> Option<&'static str> {
        if self.group_types.iter().any(|t| t == "DynamicMembership") {
            Some("dynamic membership group: members come from its rule")
        } else if self.on_premises_sync_enabled == Some(true) {
            Some("group is synced from on-premises and cannot take guests")
        } else if self.mail_enabled == Some(true)
            && !self.group_types.iter().any(|t| t == "Unified")
        {
            // Microsoft 365 groups are mail-enabled too, and Graph manages their members.
            Some(if self.security_enabled == Some(true) {
                "mail-enabled security group: Exchange manages its members, Graph cannot add any"
            } else {
                "distribution list: Exchange manages its members, Graph cannot add any"
            })
        } else {
            None
        }
    }
}

/// Refuses, before any write, a group that does not exist or does not take members added
/// through Graph (dynamic or synced).
pub async fn ensure_assignable<D: Directory + ?Sized>(
    directory: &D,
    group_id: &str,
) -> Result<(), DirectoryError> {
    let group = directory.get_group(group_id).await?.ok_or_else(|| {
        DirectoryError::permanent(
            404,
            "GroupNotFound",
            format!("group {group_id} does not exist"),
        )
    })?;
    match group.refuses_manual_members() {
        Some(why) => Err(DirectoryError::permanent(
            400,
            "GroupRefusesMembers",
            // The caller names the group: the message says only why.
            why.to_string(),
        )),
        None => Ok(()),
    }
}

/// Adds members one request each: a refusal concerns its member, anything retryable stops.
pub async fn add_one_by_one<D: Directory + ?Sized>(
    directory: &D,
    group_id: &str,
    user_ids: &[String],
) -> Result<Vec<Result<Applied, DirectoryError>>, DirectoryError> {
    let mut results = Vec::with_capacity(user_ids.len());
    for user_id in user_ids {
        match directory.add_group_member(group_id, user_id).await {
            Err(e) if e.class() != FailureClass::Permanent => return Err(e),
            other => results.push(other),
        }
    }
    Ok(results)
}

/// An app role on a resource service principal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRoleRef {
    pub resource_id: String,
    pub app_role_id: String,
}

/// Whether a removal took anything away. "Already gone" is success, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Removed {
    Done,
    AlreadyGone,
}

/// A tenant as `findTenantInformationByDomainName` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantInfo {
    pub tenant_id: String,
    pub display_name: Option<String>,
}

/// Whether a write changed anything. "Already there" is success, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Applied {
    Done,
    AlreadyPresent,
}

/// Microsoft Graph, as far as the product is concerned.
#[async_trait]
pub trait Directory: Send + Sync {
    async fn invite(&self, request: &InvitationRequest) -> Result<Invitation, DirectoryError>;
    /// Looks a user up by address in `mail`, `otherMails` and `proxyAddresses`.
    async fn find_user_by_email(
        &self,
        email: &str,
    ) -> Result<Option<DirectoryUser>, DirectoryError>;
    /// By object id or user principal name.
    async fn get_user(&self, id_or_upn: &str) -> Result<Option<DirectoryUser>, DirectoryError>;
    async fn update_user(&self, user_id: &str, patch: &UserPatch) -> Result<(), DirectoryError>;
    /// Every guest whose invitation is pending, page by page.
    fn pending_guests(
        &self,
        resume_from: Option<String>,
    ) -> BoxStream<'_, Result<GuestPage, DirectoryError>>;
    async fn get_group(&self, group_id: &str) -> Result<Option<Group>, DirectoryError>;
    /// Refuses dynamic and synced groups before calling Graph.
    async fn add_group_member(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<Applied, DirectoryError>;
    /// Adds up to [`GROUP_BATCH`] members in as few writes as Graph allows: an outer error
    /// concerns the whole request (the group, an outage); otherwise one result per member,
    /// in order. The default adds them one by one.
    async fn add_group_members(
        &self,
        group_id: &str,
        user_ids: &[String],
    ) -> Result<Vec<Result<Applied, DirectoryError>>, DirectoryError> {
        add_one_by_one(self, group_id, user_ids).await
    }
    async fn assign_app_role(
        &self,
        user_id: &str,
        role: &AppRoleRef,
    ) -> Result<Applied, DirectoryError>;
    async fn assign_directory_role(
        &self,
        user_id: &str,
        role_template_id: &str,
    ) -> Result<Applied, DirectoryError>;
    async fn has_directory_role(
        &self,
        user_id: &str,
        role_template_id: &str,
    ) -> Result<bool, DirectoryError>;
    async fn add_sponsor(&self, user_id: &str, sponsor_id: &str)
    -> Result<Applied, DirectoryError>;
    /// Takes a group membership away.
    async fn remove_group_member(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<Removed, DirectoryError>;
    async fn remove_app_role(
        &self,
        user_id: &str,
        role: &AppRoleRef,
    ) -> Result<Removed, DirectoryError>;
    async fn remove_directory_role(
        &self,
        user_id: &str,
        role_template_id: &str,
    ) -> Result<Removed, DirectoryError>;
    async fn disable_user(&self, user_id: &str) -> Result<(), DirectoryError>;
    async fn delete_user(&self, user_id: &str) -> Result<(), DirectoryError>;
    /// The tenant's verified domains, lower-case.
    async fn verified_domains(&self) -> Result<Vec<String>, DirectoryError>;

    /// The Entra tenant a domain belongs to; `None` when it has none (personal or unmanaged).
    async fn find_tenant_by_domain(
        &self,
        domain: &str,
    ) -> Result<Option<TenantInfo>, DirectoryError>;
    /// Our cross-tenant access settings for a partner tenant; `None` when it has no
    /// configuration of its own (the defaults apply).
    async fn cross_tenant_partner(
        &self,
        tenant_id: &str,
    ) -> Result<Option<CrossTenantPartner>, DirectoryError>;
    /// Creates the partner configuration with `settings`; `AlreadyPresent` when one exists.
    async fn create_cross_tenant_partner(
        &self,
        tenant_id: &str,
        settings: &TrustSettings,
    ) -> Result<Applied, DirectoryError>;
    /// Sets the settings given (`Some`) on the existing configuration; the rest stay.
    async fn update_cross_tenant_partner(
        &self,
        tenant_id: &str,
        settings: &TrustSettings,
    ) -> Result<(), DirectoryError>;
    /// When the unit of work this directory serves must be done; `None` when unbounded.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        None
    }
}

/// One page of pending guests, with where the next one starts (to checkpoint a sweep).
#[derive(Debug, Clone, PartialEq)]
pub struct GuestPage {
    pub users: Vec<DirectoryUser>,
    /// `@odata.nextLink`, absent on the last page.
    pub next: Option<String>,
}
