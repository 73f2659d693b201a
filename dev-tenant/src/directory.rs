//! The tenant's directory: users with lookup indexes, groups, apps, roles and domains,
//! and the rules Graph applies when they change.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::cross_tenant::CrossTenant;
use crate::error::{GraphError, GraphResult};
use crate::filter::{Expr, Field, Filterable, Literal};
use crate::model::*;

/// How a client proves it is the app at the token endpoint, besides its secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FederatedKey {
    /// A JWKS document (`{"keys":[...]}`); the assertion's `kid` picks the key.
    Jwks(serde_json::Value),
    /// An RSA or EC public key (or certificate) in PEM.
    PublicKeyPem(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedCredential {
    pub issuer: String,
    pub subject: String,
    pub key: FederatedKey,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificate {
    pub pem: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRegistration {
    pub client_id: String,
    pub client_secret: String,
    pub service_principal_id: String,
    pub display_name: String,
    pub certificates: Vec<ClientCertificate>,
    pub federated: Vec<FederatedCredential>,
}

/// The client id of the product's own API registration in every dev tenant. Fixed, unlike
/// the other ids, so that local runs can name it in `API_AUDIENCE` before the tenant exists.
pub const API_CLIENT_ID: &str = "6a1f3e52-9c4d-4b8e-a7f0-2d5b8c9e1f34";
/// The App ID URI ("Expose an API") of that registration.
pub const API_APP_ID_URI: &str = "api://b2b-invites";

/// The app registration that exposes guest-inviter-request's API: requesters' tokens are
/// issued for it (`aud` is its client id in v2.0 tokens, its App ID URI or client id in v1.0).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiRegistration {
    pub client_id: String,
    pub identifier_uri: String,
    /// The delegated scope requesters' apps ask for.
    pub scope: String,
}

impl Default for ApiRegistration {
    fn default() -> Self {
        ApiRegistration {
            client_id: API_CLIENT_ID.to_string(),
            identifier_uri: API_APP_ID_URI.to_string(),
            scope: "access_as_user".to_string(),
        }
    }
}

/// Application permissions the app holds; they appear as `roles` in its Graph tokens.
pub const APP_PERMISSIONS: &[&str] = &[
    "User.Invite.All",
    "User.ReadWrite.All",
    "GroupMember.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "Application.Read.All",
    "RoleManagement.ReadWrite.Directory",
    "Directory.Read.All",
    "CrossTenantInformation.ReadBasic.All",
    "Policy.ReadWrite.CrossTenantAccess",
];

/// The persisted form of the directory (state.json).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub tenant_id: String,
    pub initial_domain: String,
    pub app: AppRegistration,
    /// Absent from state written before the API registration existed.
    #[serde(default)]
    pub api: ApiRegistration,
    pub clock_offset_seconds: i64,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub service_principals: Vec<ServicePrincipal>,
    pub app_role_assignments: Vec<AppRoleAssignment>,
    pub role_assignments: Vec<RoleAssignment>,
    pub domains: Vec<Domain>,
    pub sent_mail: Vec<SentMail>,
    pub redeem_codes: HashMap<String, String>,
    /// Absent from state written before cross-tenant access was emulated.
    #[serde(default)]
    pub cross_tenant: CrossTenant,
}

pub struct Directory {
    pub tenant_id: String,
    pub initial_domain: String,
    pub app: AppRegistration,
    pub api: ApiRegistration,
    users: BTreeMap<u64, User>,
    next_seq: u64,
    by_id: HashMap<String, u64>,
    by_upn: HashMap<String, u64>,
    /// Lowercased mail, otherMails and SMTP proxy addresses -> users holding them.
    by_addr: HashMap<String, BTreeSet<u64>>,
    pub groups: Vec<Group>,
    pub service_principals: Vec<ServicePrincipal>,
    pub app_role_assignments: Vec<AppRoleAssignment>,
    pub role_assignments: Vec<RoleAssignment>,
    pub domains: Vec<Domain>,
    pub sent_mail: Vec<SentMail>,
    /// Opaque `rd` value of each redeem URL -> the invited user.
    pub redeem_codes: HashMap<String, String>,
    pub cross_tenant: CrossTenant,
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Graph's long opaque ids (app role assignments, role assignments).
pub fn opaque_id() -> String {
    let bytes: [u8; 32] = rand::random();
    crate::crypto::b64url(&bytes)
}

fn addr_keys(u: &User) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(m) = &u.mail {
        keys.push(m.to_lowercase());
    }
    keys.extend(u.other_mails.iter().map(|m| m.to_lowercase()));
    for p in &u.proxy_addresses {
        if let Some((scheme, addr)) = p.split_once(':')
            && scheme.eq_ignore_ascii_case("smtp")
        {
            keys.push(addr.to_lowercase());
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

impl Filterable for User {
    fn field(&self, prop: &str) -> Field<'_> {
        match prop {
            "id" => Field::Str(Some(&self.id)),
            "mail" => Field::Str(self.mail.as_deref()),
            "userPrincipalName" => Field::Str(Some(&self.user_principal_name)),
            "displayName" => Field::Str(self.display_name.as_deref()),
            "givenName" => Field::Str(self.given_name.as_deref()),
            "surname" => Field::Str(self.surname.as_deref()),
            "userType" => Field::Str(Some(self.user_type.as_str())),
            "creationType" => Field::Str(self.creation_type.as_deref()),
            "externalUserState" => Field::Str(self.external_user_state.map(|s| s.as_str())),
            "companyName" => Field::Str(self.company_name.as_deref()),
            "department" => Field::Str(self.department.as_deref()),
            "jobTitle" => Field::Str(self.job_title.as_deref()),
            "employeeId" => Field::Str(self.employee_id.as_deref()),
            "accountEnabled" => Field::Bool(Some(self.account_enabled)),
            "otherMails" => Field::Collection(&self.other_mails),
            "proxyAddresses" => Field::Collection(&self.proxy_addresses),
            _ => Field::Str(None),
        }
    }
}

impl Filterable for RoleAssignment {
    fn field(&self, prop: &str) -> Field<'_> {
        match prop {
            "id" => Field::Str(Some(&self.id)),
            "principalId" => Field::Str(Some(&self.principal_id)),
            "roleDefinitionId" => Field::Str(Some(&self.role_definition_id)),
            "directoryScopeId" => Field::Str(Some(&self.directory_scope_id)),
            _ => Field::Str(None),
        }
    }
}

impl Filterable for ServicePrincipal {
    fn field(&self, prop: &str) -> Field<'_> {
        match prop {
            "id" => Field::Str(Some(&self.id)),
            "appId" => Field::Str(Some(&self.app_id)),
            "displayName" => Field::Str(Some(&self.display_name)),
            _ => Field::Str(None),
        }
    }
}

impl Filterable for Group {
    fn field(&self, prop: &str) -> Field<'_> {
        match prop {
            "id" => Field::Str(Some(&self.id)),
            "displayName" => Field::Str(Some(&self.display_name)),
            _ => Field::Str(None),
        }
    }
}

/// A directory object a reference can point at.
pub enum ObjectRef<'a> {
    User(&'a User),
    Group(&'a Group),
    ServicePrincipal(&'a ServicePrincipal),
}

/// Characters Graph refuses anywhere in an invited address (reference section 1).
const FORBIDDEN: &str = "~!#$%^&*()+=[]{}\\/|;:\"<>?,";

/// Graph's rules for `invitedUserEmailAddress`; an apostrophe is allowed.
pub fn valid_invite_address(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || domain.is_empty() || local.contains('@') {
        return false;
    }
    if addr
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || FORBIDDEN.contains(c))
    {
        return false;
    }
    let edge = |c: char| c == '.' || c == '-';
    if local.starts_with(edge) || local.ends_with(edge) || local.contains("..") {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

pub struct InviteRequest {
    pub email: String,
    pub display_name: Option<String>,
    pub user_type: UserType,
    pub send_message: bool,
    pub message: Option<String>,
    pub message_language: Option<String>,
    pub cc: Vec<String>,
    pub reset_redemption: bool,
    pub invited_user_id: Option<String>,
    pub sponsors: Vec<String>,
}

pub struct InviteOutcome {
    pub user: User,
    pub redeem_url: String,
    pub status: &'static str,
}

impl Directory {
    pub fn new(tenant_id: String, initial_domain: String, app: AppRegistration) -> Directory {
        Directory {
            tenant_id,
            initial_domain,
            app,
            api: ApiRegistration::default(),
            users: BTreeMap::new(),
            next_seq: 1,
            by_id: HashMap::new(),
            by_upn: HashMap::new(),
            by_addr: HashMap::new(),
            groups: Vec::new(),
            service_principals: Vec::new(),
            app_role_assignments: Vec::new(),
            role_assignments: Vec::new(),
            domains: Vec::new(),
            sent_mail: Vec::new(),
            redeem_codes: HashMap::new(),
            cross_tenant: CrossTenant::default(),
        }
    }

    pub fn from_snapshot(s: Snapshot) -> Directory {
        let mut d = Directory::new(s.tenant_id, s.initial_domain, s.app);
        d.api = s.api;
        for u in s.users {
            d.insert_user(u);
        }
        d.groups = s.groups;
        d.service_principals = s.service_principals;
        d.app_role_assignments = s.app_role_assignments;
        d.role_assignments = s.role_assignments;
        d.domains = s.domains;
        d.sent_mail = s.sent_mail;
        d.redeem_codes = s.redeem_codes;
        d.cross_tenant = s.cross_tenant;
        d
    }

    pub fn snapshot(&self, clock_offset_seconds: i64) -> Snapshot {
        Snapshot {
            tenant_id: self.tenant_id.clone(),
            initial_domain: self.initial_domain.clone(),
            app: self.app.clone(),
            api: self.api.clone(),
            clock_offset_seconds,
            users: self.users.values().cloned().collect(),
            groups: self.groups.clone(),
            service_principals: self.service_principals.clone(),
            app_role_assignments: self.app_role_assignments.clone(),
            role_assignments: self.role_assignments.clone(),
            domains: self.domains.clone(),
            sent_mail: self.sent_mail.clone(),
            redeem_codes: self.redeem_codes.clone(),
            cross_tenant: self.cross_tenant.clone(),
        }
    }

    // ---- users and their indexes ----

    fn index(&mut self, seq: u64, u: &User) {
        self.by_id.insert(u.id.to_lowercase(), seq);
        self.by_upn
            .insert(u.user_principal_name.to_lowercase(), seq);
        for k in addr_keys(u) {
            self.by_addr.entry(k).or_default().insert(seq);
        }
    }

    fn unindex(&mut self, seq: u64, u: &User) {
        self.by_id.remove(&u.id.to_lowercase());
        if self.by_upn.get(&u.user_principal_name.to_lowercase()) == Some(&seq) {
            self.by_upn.remove(&u.user_principal_name.to_lowercase());
        }
        for k in addr_keys(u) {
            if let Some(set) = self.by_addr.get_mut(&k) {
                set.remove(&seq);
                if set.is_empty() {
                    self.by_addr.remove(&k);
                }
            }
        }
    }

    fn insert_user(&mut self, u: User) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index(seq, &u);
        self.users.insert(seq, u);
        seq
    }

    /// Applies a change to one user, keeping the indexes in step.
    fn update_user<R>(&mut self, seq: u64, f: impl FnOnce(&mut User) -> R) -> R {
        let mut u = self.users.remove(&seq).expect("indexed user exists");
        self.unindex(seq, &u);
        let before = crate::realities::Listed::of(&u);
        let r = f(&mut u);
        crate::realities::note_change(before, &mut u);
        self.index(seq, &u);
        self.users.insert(seq, u);
        r
    }

    fn seq_of(&self, key: &str) -> Option<u64> {
        let k = key.to_lowercase();
        self.by_id.get(&k).or_else(|| self.by_upn.get(&k)).copied()
    }

    /// A user by object id or userPrincipalName, as `/users/{id|upn}` resolves it.
    pub fn user(&self, key: &str) -> Option<&User> {
        self.seq_of(key).and_then(|s| self.users.get(&s))
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    fn seqs_by_address(&self, addr: &str) -> Vec<u64> {
        self.by_addr
            .get(&addr.to_lowercase())
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// A user by id, UPN, or any address it holds (for the control API).
    pub fn resolve_user(&self, key: &str) -> Option<&User> {
        self.user(key).or_else(|| {
            self.seqs_by_address(key)
                .first()
                .and_then(|s| self.users.get(s))
        })
    }

    fn unique_upn(&self, wanted: String) -> String {
        if !self.by_upn.contains_key(&wanted.to_lowercase()) {
            return wanted;
        }
        let (local, domain) = wanted.rsplit_once('@').unwrap_or((wanted.as_str(), ""));
        let mut n = 1u32;
        loop {
            let candidate = format!("{local}{n}@{domain}");
            if !self.by_upn.contains_key(&candidate.to_lowercase()) {
                return candidate;
            }
            n += 1;
        }
    }

    pub fn guest_upn(&self, email: &str) -> String {
        let ext = format!(
            "{}#EXT#@{}",
            email.replacen('@', "_", 1).replace('@', "_"),
            self.initial_domain
        );
        self.unique_upn(ext)
    }

    pub fn is_verified_domain(&self, domain: &str) -> bool {
        self.domains
            .iter()
            .any(|d| d.is_verified && d.id.eq_ignore_ascii_case(domain))
    }

    pub fn add_user(&mut self, n: NewUser, now: OffsetDateTime) -> User {
        let mail = (!n.mail.trim().is_empty()).then(|| n.mail.trim().to_string());
        let created = n.created_date_time.unwrap_or(now);
        let upn = match (&n.upn, n.user_type, &mail) {
            (Some(upn), _, _) => upn.clone(),
            (None, UserType::Guest, Some(m)) => self.guest_upn(m),
            (None, UserType::Member, Some(m))
                if m.rsplit_once('@')
                    .is_some_and(|(_, d)| self.is_verified_domain(d)) =>
            {
                m.clone()
            }
            (None, _, Some(m)) => {
                let local = m.split('@').next().unwrap_or("user");
                format!("{local}@{}", self.initial_domain)
            }
            (None, _, None) => {
                let local: String = n
                    .display_name
                    .chars()
                    .filter(|c| c.is_alphanumeric())
                    .collect::<String>()
                    .to_lowercase();
                let local = if local.is_empty() {
                    "user".into()
                } else {
                    local
                };
                format!("{local}@{}", self.initial_domain)
            }
        };
        let upn = self.unique_upn(upn);
        let state = match n.user_type {
            UserType::Guest => Some(
                n.external_user_state
                    .unwrap_or(ExternalUserState::PendingAcceptance),
            ),
            UserType::Member => n.external_user_state,
        };
        let user = User {
            id: new_id(),
            display_name: Some(if n.display_name.is_empty() {
                mail.as_deref()
                    .and_then(|m| m.split('@').next())
                    .unwrap_or("user")
                    .to_string()
            } else {
                n.display_name
            }),
            given_name: n.given_name,
            surname: n.surname,
            other_mails: if n.user_type == UserType::Guest {
                mail.iter().cloned().chain(n.other_mails).collect()
            } else {
                n.other_mails
            },
            proxy_addresses: mail.iter().map(|m| format!("SMTP:{m}")).collect(),
            mail,
            user_principal_name: upn,
            user_type: n.user_type,
            creation_type: (n.user_type == UserType::Guest).then(|| "Invitation".to_string()),
            external_user_state: state,
            external_user_state_change_date_time: state.map(|_| created),
            created_date_time: created,
            account_enabled: n.account_enabled.unwrap_or(true),
            company_name: n.company_name,
            department: n.department,
            job_title: n.job_title,
            employee_id: n.employee_id,
            business_phones: Vec::new(),
            mobile_phone: None,
            office_location: None,
            preferred_language: None,
            sponsors: Vec::new(),
            history: Default::default(),
        };
        self.insert_user(user.clone());
        user
    }

    pub fn delete_user(&mut self, key: &str) -> GraphResult<()> {
        let seq = self.seq_of(key).ok_or_else(|| GraphError::not_found(key))?;
        let u = self.users.remove(&seq).expect("indexed user exists");
        self.unindex(seq, &u);
        let id = u.id;
        for g in &mut self.groups {
            g.members.retain(|m| *m != id);
        }
        self.app_role_assignments.retain(|a| a.principal_id != id);
        self.role_assignments.retain(|a| a.principal_id != id);
        let sponsored: Vec<u64> = self
            .users
            .iter()
            .filter(|(_, u)| u.sponsors.contains(&id))
            .map(|(s, _)| *s)
            .collect();
        for s in sponsored {
            self.update_user(s, |u| u.sponsors.retain(|x| *x != id));
        }
        self.redeem_codes.retain(|_, v| *v != id);
        Ok(())
    }

    /// Users matching `filter`, in directory order, after the `after` cursor, each as
    /// `view` shows it. Returns the page and the cursor to continue from when more remain.
    pub fn list_users<'a>(
        &'a self,
        filter: Option<&Expr>,
        after: u64,
        top: usize,
        view: impl Fn(&'a User) -> Cow<'a, User>,
    ) -> (Vec<Cow<'a, User>>, Option<u64>) {
        let candidates = filter.and_then(|f| self.candidates(f));
        let range = (Bound::Excluded(after), Bound::Unbounded);
        let iter: Box<dyn Iterator<Item = (u64, &User)> + '_> = match &candidates {
            Some(set) => Box::new(set.range(range).map(|s| (*s, &self.users[s]))),
            None => Box::new(self.users.range(range).map(|(s, u)| (*s, u))),
        };
        let mut out = Vec::with_capacity(top.min(1000));
        let mut last = after;
        let mut more = false;
        for (seq, u) in iter {
            let u = view(u);
            if filter.is_none_or(|f| f.matches(u.as_ref())) {
                if out.len() == top {
                    more = true;
                    break;
                }
                last = seq;
                out.push(u);
            }
        }
        (out, more.then_some(last))
    }

    /// A superset of the users a filter can match, from the indexes, when the filter
    /// pins an address, UPN or id; `None` means every user must be examined.
    fn candidates(&self, e: &Expr) -> Option<BTreeSet<u64>> {
        let by_value = |prop: &str, v: &str| -> Option<BTreeSet<u64>> {
            match prop {
                "mail" | "otherMails" => Some(self.seqs_by_address(v).into_iter().collect()),
                "proxyAddresses" => {
                    let (scheme, addr) = v.split_once(':')?;
                    scheme
                        .eq_ignore_ascii_case("smtp")
                        .then(|| self.seqs_by_address(addr).into_iter().collect())
                }
                "userPrincipalName" => Some(self.by_upn.get(v).copied().into_iter().collect()),
                "id" => Some(self.by_id.get(v).copied().into_iter().collect()),
                _ => None,
            }
        };
        match e {
            Expr::Eq(p, Literal::Str(v)) => by_value(p, v),
            Expr::Any(p, v) => by_value(p, v),
            Expr::In(p, vs) => {
                let mut all = BTreeSet::new();
                for v in vs {
                    let Literal::Str(v) = v else { return None };
                    all.extend(by_value(p, v)?);
                }
                Some(all)
            }
            Expr::Or(a, b) => {
                let mut l = self.candidates(a)?;
                l.extend(self.candidates(b)?);
                Some(l)
            }
            Expr::And(a, b) => self.candidates(a).or_else(|| self.candidates(b)),
            _ => None,
        }
    }

    pub fn redeem(&mut self, key: &str, now: OffsetDateTime) -> Option<User> {
        let seq = self.seq_of(key).or_else(|| {
            let code = key.split("rd=").nth(1).unwrap_or(key);
            self.redeem_codes
                .get(code)
                .and_then(|id| self.seq_of(id))
                .or_else(|| self.seqs_by_address(key).first().copied())
        })?;
        Some(self.update_user(seq, |u| {
            u.external_user_state = Some(ExternalUserState::Accepted);
            u.external_user_state_change_date_time = Some(now);
            u.clone()
        }))
    }

    fn new_redeem_url(&mut self, user_id: &str) -> String {
        let bytes: [u8; 24] = rand::random();
        let code = crate::crypto::b64url(&bytes);
        self.redeem_codes.insert(code.clone(), user_id.to_string());
        format!("https://login.microsoftonline.com/redeem?rd={code}")
    }

    pub fn object(&self, id: &str) -> Option<ObjectRef<'_>> {
        if let Some(u) = self.user(id) {
            return Some(ObjectRef::User(u));
        }
        if let Some(g) = self.groups.iter().find(|g| g.id.eq_ignore_ascii_case(id)) {
            return Some(ObjectRef::Group(g));
        }
        self.service_principals
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(id))
            .map(ObjectRef::ServicePrincipal)
    }

    fn holds_directory_role(&self, user_id: &str) -> bool {
        self.role_assignments
            .iter()
            .any(|r| r.principal_id == user_id)
    }

    // ---- invitations ----

    pub fn invite(
        &mut self,
        req: InviteRequest,
        now: OffsetDateTime,
    ) -> GraphResult<InviteOutcome> {
        if !valid_invite_address(&req.email) {
            return Err(GraphError::invalid(format!(
                "The specified email address '{}' is invalid. The address contains a character that is not allowed or is not a valid email address.",
                req.email
            )));
        }
        for sponsor in &req.sponsors {
            match self.object(sponsor) {
                Some(ObjectRef::User(_)) | Some(ObjectRef::Group(_)) => {}
                _ => {
                    return Err(GraphError::invalid(format!(
                        "Invalid sponsor: the directory object '{sponsor}' does not exist or is not a user or group."
                    )));
                }
            }
        }
        let email_lc = req.email.to_lowercase();
        if req.reset_redemption {
            let Some(id) = req.invited_user_id.as_deref() else {
                return Err(GraphError::invalid(
                    "invitedUser.id is required when resetRedemption is true.",
                ));
            };
            let seq = self.seq_of(id).ok_or_else(|| GraphError::not_found(id))?;
            let user = &self.users[&seq];
            let holds = user.mail.as_deref().map(str::to_lowercase) == Some(email_lc.clone())
                || user
                    .other_mails
                    .iter()
                    .any(|m| m.to_lowercase() == email_lc);
            if !holds {
                return Err(GraphError::invalid(format!(
                    "The invited user email address '{}' must be present in the mail or otherMails property of user '{id}' to reset its redemption.",
                    req.email
                )));
            }
            if self.holds_directory_role(&user.id) {
                return Err(GraphError::denied(
                    "Insufficient privileges to complete the operation. An application cannot reset the redemption of a user who holds a directory role.",
                ));
            }
            let user = self.update_user(seq, |u| {
                u.external_user_state = Some(ExternalUserState::PendingAcceptance);
                u.external_user_state_change_date_time = Some(now);
                if u.creation_type.is_none() {
                    u.creation_type = Some("Invitation".into());
                }
                for s in &req.sponsors {
                    if !u.sponsors.contains(s) {
                        u.sponsors.push(s.clone());
                    }
                }
                u.clone()
            });
            let redeem_url = self.new_redeem_url(&user.id);
            self.mail(&req, &user, &redeem_url, now);
            return Ok(InviteOutcome {
                user,
                redeem_url,
                status: "PendingAcceptance",
            });
        }

        if let Some(seq) = self.seqs_by_address(&req.email).first().copied() {
            let existing = &self.users[&seq];
            let invited = existing.creation_type.as_deref() == Some("Invitation")
                || existing.external_user_state.is_some();
            if !invited {
                return Err(GraphError::invalid(format!(
                    "The invited user already exists in the directory as objectID: {}. They can use that account to sign in to shared apps and resources.",
                    existing.id
                )));
            }
            let user = self.update_user(seq, |u| {
                for s in &req.sponsors {
                    if !u.sponsors.contains(s) {
                        u.sponsors.push(s.clone());
                    }
                }
                u.clone()
            });
            let redeem_url = self.new_redeem_url(&user.id);
            let accepted = user.external_user_state == Some(ExternalUserState::Accepted);
            if !accepted {
                self.mail(&req, &user, &redeem_url, now);
            }
            return Ok(InviteOutcome {
                user,
                redeem_url,
                status: if accepted {
                    "Completed"
                } else {
                    "PendingAcceptance"
                },
            });
        }

        let domain = req.email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if self.is_verified_domain(domain) {
            return Err(GraphError::invalid(
                "This user cannot be invited because the domain of the user's email address is a verified domain of this directory.",
            ));
        }

        let upn = self.guest_upn(&req.email);
        let user = User {
            id: new_id(),
            display_name: Some(
                req.display_name
                    .clone()
                    .filter(|d| !d.trim().is_empty())
                    .unwrap_or_else(|| req.email.split('@').next().unwrap_or("").to_string()),
            ),
            given_name: None,
            surname: None,
            mail: Some(req.email.clone()),
            user_principal_name: upn,
            other_mails: vec![req.email.clone()],
            proxy_addresses: vec![format!("SMTP:{}", req.email)],
            user_type: req.user_type,
            creation_type: Some("Invitation".into()),
            external_user_state: Some(ExternalUserState::PendingAcceptance),
            external_user_state_change_date_time: Some(now),
            created_date_time: now,
            account_enabled: true,
            company_name: None,
            department: None,
            job_title: None,
            employee_id: None,
            business_phones: Vec::new(),
            mobile_phone: None,
            office_location: None,
            preferred_language: None,
            sponsors: req.sponsors.clone(),
            history: crate::realities::UserHistory::invited_now(),
        };
        self.insert_user(user.clone());
        let redeem_url = self.new_redeem_url(&user.id);
        self.mail(&req, &user, &redeem_url, now);
        Ok(InviteOutcome {
            user,
            redeem_url,
            status: "PendingAcceptance",
        })
    }

    fn mail(&mut self, req: &InviteRequest, user: &User, redeem_url: &str, now: OffsetDateTime) {
        if req.send_message {
            self.sent_mail.push(SentMail {
                to: req.email.clone(),
                cc: req.cc.clone(),
                invited_user_id: user.id.clone(),
                redeem_url: redeem_url.to_string(),
                message: req.message.clone(),
                message_language: req.message_language.clone(),
                at: now,
            });
        }
    }

    // ---- user updates ----

    pub fn patch_user(
        &mut self,
        key: &str,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> GraphResult<()> {
        use serde_json::Value;
        let seq = self.seq_of(key).ok_or_else(|| GraphError::not_found(key))?;
        let opt_string = |name: &str, v: &Value| -> GraphResult<Option<String>> {
            match v {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s.clone())),
                _ => Err(GraphError::invalid(format!(
                    "Cannot convert the literal '{v}' to the expected type 'Edm.String' of property '{name}'."
                ))),
            }
        };
        let string_list = |name: &str, v: &Value| -> GraphResult<Vec<String>> {
            match v {
                Value::Null => Ok(Vec::new()),
                Value::Array(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str().map(str::to_string).ok_or_else(|| {
                            GraphError::invalid(format!(
                                "Cannot convert a value in '{name}' to the expected type 'Edm.String'."
                            ))
                        })
                    })
                    .collect(),
                _ => Err(GraphError::invalid(format!(
                    "The property '{name}' expects a collection of strings."
                ))),
            }
        };
        // Validate everything first so a bad property leaves the user untouched.
        let mut changes: Vec<(String, Value)> = Vec::new();
        for (k, v) in body {
            match k.as_str() {
                "accountEnabled" => {
                    if !v.is_boolean() {
                        return Err(GraphError::invalid(format!(
                            "Cannot convert the literal '{v}' to the expected type 'Edm.Boolean' of property 'accountEnabled'."
                        )));
                    }
                }
                "companyName" | "department" | "jobTitle" | "employeeId" | "givenName"
                | "surname" | "mobilePhone" | "officeLocation" | "preferredLanguage" => {
                    opt_string(k, v)?;
                }
                "displayName" => {
                    if opt_string(k, v)?.is_none_or(|s| s.trim().is_empty()) {
                        return Err(GraphError::bad_request(
                            "Invalid value specified for property 'displayName' of resource 'User'.",
                        ));
                    }
                }
                "userType" => match v.as_str() {
                    Some("Guest") | Some("Member") => {}
                    _ => {
                        return Err(GraphError::bad_request(
                            "Invalid value specified for property 'userType' of resource 'User'.",
                        ));
                    }
                },
                "mail" => {
                    if let Some(m) = opt_string(k, v)? {
                        if !m.contains('@') {
                            return Err(GraphError::bad_request(
                                "Invalid value specified for property 'mail' of resource 'User'.",
                            ));
                        }
                        let taken = self.seqs_by_address(&m).into_iter().any(|s| s != seq);
                        if taken {
                            return Err(GraphError::bad_request(
                                "Another object with the same value for property proxyAddresses already exists.",
                            ));
                        }
                    }
                }
                "otherMails" | "businessPhones" => {
                    let list = string_list(k, v)?;
                    if k == "otherMails" && list.len() > 250 {
                        return Err(GraphError::bad_request(
                            "Invalid value specified for property 'otherMails' of resource 'User'.",
                        ));
                    }
                }
                "id"
                | "userPrincipalName"
                | "createdDateTime"
                | "creationType"
                | "externalUserState"
                | "externalUserStateChangeDateTime"
                | "proxyAddresses" => {
                    return Err(GraphError::bad_request(format!(
                        "Property '{k}' is read-only and cannot be set."
                    )));
                }
                _ => {
                    return Err(GraphError::invalid(format!(
                        "Property '{k}' does not exist as a declared property or extension property."
                    )));
                }
            }
            changes.push((k.clone(), v.clone()));
        }
        self.update_user(seq, |u| {
            for (k, v) in changes {
                let s = v.as_str().map(str::to_string);
                let list = || {
                    v.as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                match k.as_str() {
                    "accountEnabled" => u.account_enabled = v.as_bool().unwrap_or(true),
                    "companyName" => u.company_name = s,
                    "department" => u.department = s,
                    "jobTitle" => u.job_title = s,
                    "employeeId" => u.employee_id = s,
                    "givenName" => u.given_name = s,
                    "surname" => u.surname = s,
                    "mobilePhone" => u.mobile_phone = s,
                    "officeLocation" => u.office_location = s,
                    "preferredLanguage" => u.preferred_language = s,
                    "displayName" => u.display_name = s,
                    "userType" => {
                        u.user_type = if s.as_deref() == Some("Guest") {
                            UserType::Guest
                        } else {
                            UserType::Member
                        }
                    }
                    "mail" => {
                        // Entra keeps the old primary address as a secondary proxy address.
                        for p in &mut u.proxy_addresses {
                            if p.starts_with("SMTP:") {
                                *p = format!("smtp:{}", &p[5..]);
                            }
                        }
                        if let Some(m) = &s {
                            let lc = m.to_lowercase();
                            u.proxy_addresses
                                .retain(|p| p.get(5..).map(str::to_lowercase) != Some(lc.clone()));
                            u.proxy_addresses.insert(0, format!("SMTP:{m}"));
                        }
                        u.mail = s;
                    }
                    "otherMails" => u.other_mails = list(),
                    "businessPhones" => u.business_phones = list(),
                    _ => {}
                }
            }
        });
        Ok(())
    }

    pub fn add_sponsor(&mut self, user_key: &str, sponsor_id: &str) -> GraphResult<()> {
        let seq = self
            .seq_of(user_key)
            .ok_or_else(|| GraphError::not_found(user_key))?;
        let sponsor = match self.object(sponsor_id) {
            Some(ObjectRef::User(u)) => u.id.clone(),
            Some(ObjectRef::Group(g)) => g.id.clone(),
            _ => return Err(GraphError::not_found(sponsor_id)),
        };
        if self.users[&seq].sponsors.contains(&sponsor) {
            return Err(GraphError::bad_request(
                "One or more added object references already exist for the following modified properties: 'sponsors'.",
            ));
        }
        self.update_user(seq, |u| u.sponsors.push(sponsor));
        Ok(())
    }

    pub fn remove_sponsor(&mut self, user_key: &str, sponsor_id: &str) -> GraphResult<()> {
        let seq = self
            .seq_of(user_key)
            .ok_or_else(|| GraphError::not_found(user_key))?;
        let pos = self.users[&seq]
            .sponsors
            .iter()
            .position(|s| s.eq_ignore_ascii_case(sponsor_id))
            .ok_or_else(|| GraphError::not_found(sponsor_id))?;
        self.update_user(seq, |u| u.sponsors.remove(pos));
        Ok(())
    }

    // ---- groups ----

    pub fn add_group(&mut self, n: NewGroup, now: OffsetDateTime) -> Group {
        let rule = match n.kind {
            GroupKind::Dynamic => Some(
                n.membership_rule
                    .unwrap_or_else(|| "(user.userType -eq \"Member\")".to_string()),
            ),
            _ => None,
        };
        let g = Group {
            id: new_id(),
            display_name: n.display_name,
            kind: n.kind,
            membership_rule: rule,
            created_date_time: now,
            members: Vec::new(),
        };
        self.groups.push(g.clone());
        g
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.id.eq_ignore_ascii_case(id))
    }

    pub fn add_group_member(&mut self, group_id: &str, member_id: &str) -> GraphResult<()> {
        self.add_group_members(group_id, &[member_id.to_string()])
    }

    /// Adds every member or none (Graph's `members@odata.bind`): one that does not exist, or
    /// is a member already, fails the whole request.
    pub fn add_group_members(&mut self, group_id: &str, member_ids: &[String]) -> GraphResult<()> {
        let gi = self
            .groups
            .iter()
            .position(|g| g.id.eq_ignore_ascii_case(group_id))
            .ok_or_else(|| GraphError::not_found(group_id))?;
        let mut members = Vec::with_capacity(member_ids.len());
        for member_id in member_ids {
            let member = match self.object(member_id) {
                Some(ObjectRef::User(u)) => u.id.clone(),
                Some(ObjectRef::Group(g)) => g.id.clone(),
                Some(ObjectRef::ServicePrincipal(s)) => s.id.clone(),
                None if member_ids.len() == 1 => return Err(GraphError::not_found(member_id)),
                None => {
                    return Err(GraphError::bad_request(
                        "One or more added object references do not exist for the following modified properties: 'members'.",
                    ));
                }
            };
            members.push(member);
        }
        let g = &mut self.groups[gi];
        match g.kind {
            GroupKind::Dynamic => {
                return Err(GraphError::bad_request(
                    "Members of a group with dynamic membership (groupTypes contains 'DynamicMembership') are computed from its membershipRule and cannot be added or removed manually.",
                ));
            }
            GroupKind::Synced => {
                return Err(GraphError::bad_request(
                    "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.",
                ));
            }
            GroupKind::Distribution | GroupKind::MailEnabledSecurity => {
                return Err(GraphError::bad_request(
                    "Cannot Update a mail-enabled security groups and or distribution list.",
                ));
            }
            GroupKind::Assigned => {}
        }
        let repeated = members
            .iter()
            .enumerate()
            .any(|(i, m)| members[..i].contains(m));
        if repeated || members.iter().any(|m| g.members.contains(m)) {
            return Err(GraphError::bad_request(
                "One or more added object references already exist for the following modified properties: 'members'.",
            ));
        }
        g.members.extend(members);
        Ok(())
    }

    pub fn remove_group_member(&mut self, group_id: &str, member_id: &str) -> GraphResult<()> {
        let g = self
            .groups
            .iter_mut()
            .find(|g| g.id.eq_ignore_ascii_case(group_id))
            .ok_or_else(|| GraphError::not_found(group_id))?;
        if g.kind != GroupKind::Assigned {
            return Err(GraphError::bad_request(
                "Members of this group are not managed in the cloud and cannot be removed manually.",
            ));
        }
        let pos = g
            .members
            .iter()
            .position(|m| m.eq_ignore_ascii_case(member_id))
            .ok_or_else(|| GraphError::not_found(member_id))?;
        g.members.remove(pos);
        Ok(())
    }

    // ---- apps and roles ----

    pub fn add_service_principal(
        &mut self,
        display_name: String,
        app_id: Option<String>,
        roles: Vec<(String, String)>,
    ) -> ServicePrincipal {
        let sp = ServicePrincipal {
            id: new_id(),
            app_id: app_id.unwrap_or_else(new_id),
            display_name,
            app_roles: roles
                .into_iter()
                .map(|(value, display_name)| AppRole {
                    id: new_id(),
                    value,
                    display_name,
                })
                .collect(),
        };
        self.service_principals.push(sp.clone());
        sp
    }

    pub fn service_principal(&self, id: &str) -> Option<&ServicePrincipal> {
        self.service_principals
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(id))
    }

    pub fn assign_app_role(
        &mut self,
        sp_id: &str,
        principal_id: &str,
        resource_id: &str,
        app_role_id: &str,
        now: OffsetDateTime,
    ) -> GraphResult<AppRoleAssignment> {
        let sp = self
            .service_principal(sp_id)
            .ok_or_else(|| GraphError::not_found(sp_id))?
            .clone();
        if !resource_id.eq_ignore_ascii_case(&sp.id) {
            return Err(GraphError::bad_request(format!(
                "The resourceId '{resource_id}' does not match the service principal '{sp_id}' in the request URL."
            )));
        }
        let (principal_id, principal_name, principal_type) = match self.object(principal_id) {
            Some(ObjectRef::User(u)) => (u.id.clone(), u.display_name.clone(), "User"),
            Some(ObjectRef::Group(g)) => (g.id.clone(), Some(g.display_name.clone()), "Group"),
            Some(ObjectRef::ServicePrincipal(s)) => (
                s.id.clone(),
                Some(s.display_name.clone()),
                "ServicePrincipal",
            ),
            None => return Err(GraphError::not_found(principal_id)),
        };
        let known = sp
            .app_roles
            .iter()
            .any(|r| r.id.eq_ignore_ascii_case(app_role_id))
            || (app_role_id == DEFAULT_ACCESS_ROLE && sp.app_roles.is_empty());
        if !known {
            return Err(GraphError::bad_request(format!(
                "Permission being assigned was not found on application '{}'.",
                sp.app_id
            )));
        }
        if self.app_role_assignments.iter().any(|a| {
            a.resource_id == sp.id
                && a.principal_id == principal_id
                && a.app_role_id.eq_ignore_ascii_case(app_role_id)
        }) {
            return Err(GraphError::bad_request(
                "Permission being assigned already exists on the object.",
            ));
        }
        let a = AppRoleAssignment {
            id: opaque_id(),
            app_role_id: app_role_id.to_lowercase(),
            created_date_time: now,
            principal_display_name: principal_name,
            principal_id,
            principal_type: principal_type.to_string(),
            resource_display_name: sp.display_name.clone(),
            resource_id: sp.id.clone(),
        };
        self.app_role_assignments.push(a.clone());
        Ok(a)
    }

    pub fn assign_directory_role(
        &mut self,
        role_definition_id: &str,
        principal_id: &str,
        scope: &str,
    ) -> GraphResult<RoleAssignment> {
        let role = ROLE_DEFINITIONS
            .iter()
            .find(|(id, _)| id.eq_ignore_ascii_case(role_definition_id))
            .map(|(id, _)| *id)
            .ok_or_else(|| {
                GraphError::bad_request(format!(
                    "The role definition '{role_definition_id}' does not exist."
                ))
            })?;
        let principal = match self.object(principal_id) {
            Some(ObjectRef::User(u)) => u.id.clone(),
            Some(ObjectRef::Group(g)) => g.id.clone(),
            Some(ObjectRef::ServicePrincipal(s)) => s.id.clone(),
            None => return Err(GraphError::not_found(principal_id)),
        };
        if self.role_assignments.iter().any(|r| {
            r.role_definition_id == role
                && r.principal_id == principal
                && r.directory_scope_id == scope
        }) {
            return Err(GraphError::bad_request(
                "A conflicting object with one or more of the specified property values is present in the directory.",
            ));
        }
        let r = RoleAssignment {
            id: opaque_id(),
            role_definition_id: role.to_string(),
            principal_id: principal,
            directory_scope_id: scope.to_string(),
        };
        self.role_assignments.push(r.clone());
        Ok(r)
    }

    pub fn add_domain(&mut self, name: &str, verified: bool) -> Domain {
        if let Some(d) = self
            .domains
            .iter_mut()
            .find(|d| d.id.eq_ignore_ascii_case(name))
        {
            d.is_verified = verified;
            return d.clone();
        }
        let d = Domain {
            id: name.to_lowercase(),
            is_verified: verified,
            is_default: false,
            is_initial: false,
        };
        self.domains.push(d.clone());
        d
    }

    pub fn make_default_domain(&mut self, name: &str) {
        for d in &mut self.domains {
            d.is_default = d.id.eq_ignore_ascii_case(name);
        }
    }
}

/// Status codes used where Graph's OData layer, not the directory, answers.
pub fn payload_error() -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
    )
}
