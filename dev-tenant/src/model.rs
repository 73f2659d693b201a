//! The directory objects the tenant holds, in the shape callers assert on.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Guest Inviter directory role template id (reference section 6).
pub const GUEST_INVITER_ROLE: &str = "95e79109-95c0-4d8e-aee3-d01accf2d47b";

/// Built-in role definitions the tenant knows, as (template id, display name).
pub const ROLE_DEFINITIONS: &[(&str, &str)] = &[
    (GUEST_INVITER_ROLE, "Guest Inviter"),
    (
        "62e90394-69f5-4237-9190-012177145e10",
        "Global Administrator",
    ),
    ("fe930be7-5e62-47db-91af-98c3a49a38b1", "User Administrator"),
    (
        "729827e3-9c14-49f7-bb1b-9608f156bbb8",
        "Helpdesk Administrator",
    ),
    ("9360feb5-f418-4baa-8175-e2a00bac4301", "Directory Writers"),
    ("88d8e3e3-8f55-4a1e-953a-9b9898b8876b", "Directory Readers"),
];

/// The default-access app role id Graph accepts when an app declares no roles.
pub const DEFAULT_ACCESS_ROLE: &str = "00000000-0000-0000-0000-000000000000";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UserType {
    #[default]
    Member,
    Guest,
}

impl UserType {
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::Member => "Member",
            UserType::Guest => "Guest",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExternalUserState {
    PendingAcceptance,
    Accepted,
}

impl ExternalUserState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExternalUserState::PendingAcceptance => "PendingAcceptance",
            ExternalUserState::Accepted => "Accepted",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub mail: Option<String>,
    pub user_principal_name: String,
    pub other_mails: Vec<String>,
    pub proxy_addresses: Vec<String>,
    pub user_type: UserType,
    /// `Invitation` for invited guests, `None` for ordinary members, as Graph reports it.
    pub creation_type: Option<String>,
    pub external_user_state: Option<ExternalUserState>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub external_user_state_change_date_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_date_time: OffsetDateTime,
    pub account_enabled: bool,
    pub company_name: Option<String>,
    pub department: Option<String>,
    pub job_title: Option<String>,
    pub employee_id: Option<String>,
    pub business_phones: Vec<String>,
    pub mobile_phone: Option<String>,
    pub office_location: Option<String>,
    pub preferred_language: Option<String>,
    /// Object ids (users or groups) of this user's sponsors, in the order added.
    pub sponsors: Vec<String>,
    #[serde(skip)]
    pub(crate) history: crate::realities::UserHistory,
}

/// What `Control::add_user` needs; everything else gets Graph's defaults.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NewUser {
    pub display_name: String,
    /// Empty means the user has no `mail`.
    pub mail: String,
    pub user_type: UserType,
    /// Defaults to the mail for members on a tenant domain, to
    /// `local@<tenant>.onmicrosoft.com` for other members and to the `#EXT#` form for guests.
    pub upn: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub company_name: Option<String>,
    pub employee_id: Option<String>,
    /// Guests default to `PendingAcceptance`; members to none.
    pub external_user_state: Option<ExternalUserState>,
    /// Backdates `createdDateTime` (and the state change time); defaults to the dev clock.
    #[serde(with = "time::serde::rfc3339::option")]
    pub created_date_time: Option<OffsetDateTime>,
    /// Defaults to enabled.
    pub account_enabled: Option<bool>,
    /// Further addresses, as users may add to their own profile; a guest's mail is always one.
    pub other_mails: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupKind {
    /// Members are added by hand.
    #[default]
    Assigned,
    /// `groupTypes` contains `DynamicMembership`; members come from a rule.
    Dynamic,
    /// Mastered on-premises (`onPremisesSyncEnabled`); read-only in the cloud.
    Synced,
    /// A distribution list (`mailEnabled`, not `securityEnabled`): Exchange owns its members.
    Distribution,
    /// A mail-enabled security group: Exchange owns its members too.
    MailEnabledSecurity,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: String,
    pub display_name: String,
    pub kind: GroupKind,
    pub membership_rule: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_date_time: OffsetDateTime,
    pub members: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NewGroup {
    pub display_name: String,
    pub kind: GroupKind,
    /// Only meaningful for dynamic groups; a plausible rule is used when absent.
    pub membership_rule: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRole {
    pub id: String,
    pub value: String,
    pub display_name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    pub id: String,
    pub app_id: String,
    pub display_name: String,
    pub app_roles: Vec<AppRole>,
}

impl ServicePrincipal {
    /// The id of the app role with this `value`, for tests that seed by name.
    pub fn role_id(&self, value: &str) -> Option<&str> {
        self.app_roles
            .iter()
            .find(|r| r.value == value)
            .map(|r| r.id.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRoleAssignment {
    pub id: String,
    pub app_role_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_date_time: OffsetDateTime,
    pub principal_display_name: Option<String>,
    pub principal_id: String,
    pub principal_type: String,
    pub resource_display_name: String,
    pub resource_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignment {
    pub id: String,
    pub role_definition_id: String,
    pub principal_id: String,
    pub directory_scope_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    pub id: String,
    pub is_verified: bool,
    pub is_default: bool,
    pub is_initial: bool,
}

/// An invitation email Graph would have sent (only when `sendInvitationMessage` is true).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMail {
    pub to: String,
    pub cc: Vec<String>,
    pub invited_user_id: String,
    pub redeem_url: String,
    /// The `customizedMessageBody` the caller asked for. Real Graph leaves it out of the
    /// email when an application invites; it is kept here so tests can see what was asked.
    pub message: Option<String>,
    pub message_language: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}
