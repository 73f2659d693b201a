//! The handle tests and the `/_dev` routes use to seed, inspect and steer the tenant.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::crypto::{self, SigningKey};
use crate::directory::{ClientCertificate, Directory, FederatedCredential, FederatedKey};
use crate::mint::MintToken;
use crate::model::*;

/// Graph's documented identity write quota per app and tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteLimit {
    pub writes: u32,
    pub per: Duration,
}

impl WriteLimit {
    /// 3,000 writes per 150 seconds per app (reference section 10).
    pub const GRAPH: WriteLimit = WriteLimit {
        writes: 3000,
        per: Duration::from_secs(150),
    };

    /// No write limit at all.
    pub fn unlimited() -> WriteLimit {
        WriteLimit {
            writes: u32::MAX,
            per: Duration::ZERO,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.per.is_zero() || self.writes == u32::MAX
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultMatcher {
    /// HTTP method, any case; `None` matches every method.
    pub method: Option<String>,
    /// Path prefix such as `/v1.0/invitations`; `None` matches every path.
    pub path_prefix: Option<String>,
}

impl FaultMatcher {
    /// Requests with this method (any case; `None`: every method) whose path starts with
    /// `path_prefix` (`""` matches every path).
    pub fn on(method: Option<&str>, path_prefix: &str) -> FaultMatcher {
        FaultMatcher {
            method: method.map(str::to_string),
            path_prefix: Some(path_prefix.to_string()),
        }
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// 429 with Graph's body; `Retry-After` only when given (decimal seconds allowed).
    TooManyRequests { retry_after: Option<f64> },
    /// A bare 5xx (or any status) with Graph's error body.
    ServerError(u16),
    /// Wait, then answer normally.
    Slow(Duration),
    /// Close the connection without sending any response.
    DropConnection,
    /// Carry the request out completely (state changed, mail recorded, write counted),
    /// then close the connection without sending the response.
    AnswerLost,
    /// 403 `Authorization_RequestDenied` "Insufficient privileges…", as when the app's
    /// permission is missing or its consent was revoked. Graph routes only.
    PermissionDenied,
    /// 403 on `POST /invitations` until `clear_abuse_block`, whatever `times` says.
    AbuseBlock,
}

/// The shape `POST /_dev/faults` takes: `{"kind":"serverError","status":503}`,
/// `{"kind":"slow","delaySeconds":0.3}`, `{"kind":"tooManyRequests","retryAfter":2.5}`...
impl Serialize for FaultKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match self {
            FaultKind::TooManyRequests { retry_after } => {
                m.serialize_entry("kind", "tooManyRequests")?;
                if let Some(r) = retry_after {
                    m.serialize_entry("retryAfter", r)?;
                }
            }
            FaultKind::ServerError(status) => {
                m.serialize_entry("kind", "serverError")?;
                m.serialize_entry("status", status)?;
            }
            FaultKind::Slow(d) => {
                m.serialize_entry("kind", "slow")?;
                m.serialize_entry("delaySeconds", &d.as_secs_f64())?;
            }
            FaultKind::DropConnection => m.serialize_entry("kind", "dropConnection")?,
            FaultKind::AnswerLost => m.serialize_entry("kind", "answerLost")?,
            FaultKind::PermissionDenied => m.serialize_entry("kind", "permissionDenied")?,
            FaultKind::AbuseBlock => m.serialize_entry("kind", "abuseBlock")?,
        }
        m.end()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub matcher: FaultMatcher,
    pub kind: FaultKind,
    pub times: u32,
}

impl Fault {
    /// A fault that fires once on any request.
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            matcher: FaultMatcher::default(),
            kind,
            times: 1,
        }
    }

    pub fn on(mut self, method: &str, path_prefix: &str) -> Fault {
        self.matcher = FaultMatcher {
            method: Some(method.to_string()),
            path_prefix: Some(path_prefix.to_string()),
        };
        self
    }

    pub fn times(mut self, times: u32) -> Fault {
        self.times = times;
        self
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestLogEntry {
    pub method: String,
    pub path: String,
    /// The percent-decoded query string, if any.
    pub query: Option<String>,
    /// 0 when the connection was dropped without a response.
    pub status: u16,
    pub is_write: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Default)]
pub(crate) struct FaultState {
    pub queue: Vec<Fault>,
    pub abuse_block: bool,
    /// Random and windowed faults, with their generator; see `crate::chaos`.
    pub chaos: Option<crate::chaos::ChaosState>,
    /// What chaos fired since it was last set.
    pub fired: Vec<crate::chaos::FiredFault>,
}

pub(crate) struct Limiter {
    pub limit: WriteLimit,
    pub windows: HashMap<String, VecDeque<Instant>>,
}

impl Limiter {
    /// Admits one write for `app`, or says how long until the oldest write leaves the window.
    pub fn admit(&mut self, app: &str, now: Instant) -> Result<(), Duration> {
        if self.limit.is_unlimited() {
            return Ok(());
        }
        let window = self.windows.entry(app.to_string()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.limit.per)
        {
            window.pop_front();
        }
        if window.len() >= self.limit.writes as usize {
            let oldest = *window.front().unwrap_or(&now);
            return Err(self.limit.per.saturating_sub(now.duration_since(oldest)));
        }
        window.push_back(now);
        Ok(())
    }
}

/// Requests kept in the log; older ones are forgotten first.
const LOG_CAPACITY: usize = 200_000;

pub(crate) struct Inner {
    pub dir: Mutex<Directory>,
    pub clock_offset: Mutex<time::Duration>,
    /// Published signing keys; the first one signs.
    pub keys: RwLock<Vec<SigningKey>>,
    pub faults: Mutex<FaultState>,
    pub limiter: Mutex<Limiter>,
    pub log: Mutex<VecDeque<RequestLogEntry>>,
    /// Graph tokens this process issued: `uti` -> (real issue time, lifetime).
    pub issued: Mutex<HashMap<String, (Instant, Duration)>>,
    pub realities: crate::realities::Realities,
    pub authority: String,
    pub state_dir: PathBuf,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the whole emulator down with poisoned locks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    pub fn dir(&self) -> MutexGuard<'_, Directory> {
        lock(&self.dir)
    }

    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + *lock(&self.clock_offset)
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultState> {
        lock(&self.faults)
    }

    pub fn limiter(&self) -> MutexGuard<'_, Limiter> {
        lock(&self.limiter)
    }

    pub fn log(&self) -> MutexGuard<'_, VecDeque<RequestLogEntry>> {
        lock(&self.log)
    }

    pub fn issued(&self) -> MutexGuard<'_, HashMap<String, (Instant, Duration)>> {
        lock(&self.issued)
    }

    pub fn record(&self, entry: RequestLogEntry) {
        let mut log = self.log();
        if log.len() >= LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(entry);
    }

    pub fn issuer(&self, tenant_id: &str) -> String {
        format!("{}/{tenant_id}/v2.0", self.authority)
    }

    /// The issuer of v1.0 tokens: Entra's fixed STS name, whatever the authority host.
    pub fn issuer_v1(&self, tenant_id: &str) -> String {
        format!("https://sts.windows.net/{tenant_id}/")
    }

    pub fn sign(&self, header_typ: bool, claims: &Value) -> anyhow::Result<String> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = keys.first().ok_or_else(|| anyhow!("no signing key"))?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        header.x5t = Some(key.kid.clone());
        if !header_typ {
            header.typ = None;
        }
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let offset = lock(&self.clock_offset).whole_seconds();
        let json = {
            let dir = self.dir();
            serde_json::to_vec(&dir.snapshot(offset))?
        };
        let path = self.state_dir.join(crate::STATE_FILE);
        let tmp = self.state_dir.join(format!("{}.tmp", crate::STATE_FILE));
        std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        crypto::save_signing_keys(&self.state_dir, &keys)
    }
}

/// Cheap to clone; every clone steers the same running tenant.
#[derive(Clone)]
pub struct Control {
    pub(crate) inner: Arc<Inner>,
}

impl Control {
    // ---- seeding ----

    pub fn add_user(&self, user: NewUser) -> User {
        let now = self.now();
        self.inner.dir().add_user(user, now)
    }

    pub fn add_group(&self, group: NewGroup) -> Group {
        let now = self.now();
        self.inner.dir().add_group(group, now)
    }

    /// A resource app with app roles given as (value, display name).
    pub fn add_service_principal<S: Into<String>>(
        &self,
        display_name: impl Into<String>,
        app_roles: impl IntoIterator<Item = (S, S)>,
    ) -> ServicePrincipal {
        let roles = app_roles
            .into_iter()
            .map(|(v, d)| (v.into(), d.into()))
            .collect();
        self.inner
            .dir()
            .add_service_principal(display_name.into(), None, roles)
    }

    pub fn add_domain(&self, name: &str, verified: bool) -> Domain {
        self.inner.dir().add_domain(name, verified)
    }

    /// Trusts a certificate (PEM) for client assertions; returns its SHA-1 thumbprint (hex).
    pub fn add_client_certificate(&self, pem: &str) -> anyhow::Result<String> {
        let der = crypto::pem_cert_der(pem)?;
        jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes())
            .context("the certificate must carry an RSA public key")?;
        use sha1::Digest;
        let thumb = sha1::Sha1::digest(&der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>();
        self.inner.dir().app.certificates.push(ClientCertificate {
            pem: pem.to_string(),
        });
        Ok(thumb)
    }

    /// Trusts assertions from `issuer` about `subject`, signed by `key`.
    pub fn add_federated_credential(
        &self,
        issuer: &str,
        subject: &str,
        key: FederatedKey,
    ) -> anyhow::Result<()> {
        crate::token::federated_keys(&key).context("unusable federated credential key")?;
        self.inner.dir().app.federated.push(FederatedCredential {
            issuer: issuer.to_string(),
            subject: subject.to_string(),
            key,
        });
        Ok(())
    }

    // ---- guests ----

    /// The guest redeems their invitation. Accepts an id, UPN, address or redeem URL.
    pub fn redeem(&self, user: &str) -> anyhow::Result<User> {
        let now = self.now();
        self.inner
            .dir()
            .redeem(user, now)
            .ok_or_else(|| anyhow!("no user '{user}' in the dev tenant"))
    }

    // ---- clock ----

    pub fn now(&self) -> OffsetDateTime {
        self.inner.now()
    }

    pub fn advance(&self, by: Duration) {
        *lock(&self.inner.clock_offset) += by;
    }

    pub fn set_now(&self, now: OffsetDateTime) {
        *lock(&self.inner.clock_offset) = now - OffsetDateTime::now_utc();
    }

    // ---- throttling and faults ----

    /// `None` restores Graph's limit; `Some(WriteLimit::unlimited())` switches it off.
    pub fn set_write_limit(&self, limit: Option<WriteLimit>) {
        let mut l = self.inner.limiter();
        l.limit = limit.unwrap_or(WriteLimit::GRAPH);
        l.windows.clear();
    }

    pub fn inject(&self, fault: Fault) {
        let mut f = self.inner.faults();
        if fault.kind == FaultKind::AbuseBlock {
            f.abuse_block = true;
        } else if fault.times > 0 {
            f.queue.push(fault);
        }
    }

    /// Removes pending faults and lifts the abuse block.
    pub fn clear_faults(&self) {
        let mut f = self.inner.faults();
        f.queue.clear();
        f.abuse_block = false;
    }

    pub fn clear_abuse_block(&self) {
        self.inner.faults().abuse_block = false;
    }

    // ---- logs ----

    pub fn requests(&self) -> Vec<RequestLogEntry> {
        self.inner.log().iter().cloned().collect()
    }

    pub fn clear_requests(&self) {
        self.inner.log().clear();
    }

    pub fn sent_mail(&self) -> Vec<SentMail> {
        self.inner.dir().sent_mail.clone()
    }

    // ---- tokens and keys ----

    /// An access token for the product's API, as Entra ID would issue it (see [`MintToken`]).
    pub fn mint_token(&self, req: MintToken) -> anyhow::Result<String> {
        crate::mint::mint(&self.inner, req)
    }

    /// Publishes a new signing key and signs with it; older keys stay published.
    pub fn rotate_signing_key(&self) -> anyhow::Result<String> {
        let key = SigningKey::generate()?;
        let kid = key.kid.clone();
        self.inner
            .keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(0, key);
        Ok(kid)
    }

    /// Stops publishing every key but the current one.
    pub fn retire_old_keys(&self) {
        self.inner
            .keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .truncate(1);
    }

    pub fn signing_key_ids(&self) -> Vec<String> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|k| k.kid.clone())
            .collect()
    }

    // ---- readers ----

    pub fn users(&self) -> Vec<User> {
        self.inner.dir().users().cloned().collect()
    }

    /// A user by id, UPN or any address it holds.
    pub fn user(&self, id: &str) -> Option<User> {
        self.inner.dir().resolve_user(id).cloned()
    }

    pub fn groups(&self) -> Vec<Group> {
        self.inner.dir().groups.clone()
    }

    /// Adds a member as an administrator would, outside Graph's request log and limits.
    pub fn add_group_member(&self, group_id: &str, member_id: &str) -> anyhow::Result<()> {
        self.inner
            .dir()
            .add_group_member(group_id, member_id)
            .map_err(|e| anyhow!("{}", e.message))
    }

    /// Object ids of the group's members.
    pub fn group_members(&self, group_id: &str) -> Vec<String> {
        self.inner
            .dir()
            .group(group_id)
            .map(|g| g.members.clone())
            .unwrap_or_default()
    }

    pub fn service_principals(&self) -> Vec<ServicePrincipal> {
        self.inner.dir().service_principals.clone()
    }

    pub fn app_role_assignments(&self, sp_id: &str) -> Vec<AppRoleAssignment> {
        self.inner
            .dir()
            .app_role_assignments
            .iter()
            .filter(|a| a.resource_id.eq_ignore_ascii_case(sp_id))
            .cloned()
            .collect()
    }

    pub fn role_assignments(&self) -> Vec<RoleAssignment> {
        self.inner.dir().role_assignments.clone()
    }

    /// Object ids of the user's sponsors.
    pub fn sponsors(&self, user_id: &str) -> Vec<String> {
        self.inner
            .dir()
            .resolve_user(user_id)
            .map(|u| u.sponsors.clone())
            .unwrap_or_default()
    }

    pub fn domains(&self) -> Vec<Domain> {
        self.inner.dir().domains.clone()
    }

    /// Writes the state snapshot now (it is also written on shutdown).
    pub fn save(&self) -> anyhow::Result<()> {
        self.inner.save()
    }

    pub fn tenant_id(&self) -> String {
        self.inner.dir().tenant_id.clone()
    }

    pub fn client_id(&self) -> String {
        self.inner.dir().app.client_id.clone()
    }

    pub fn client_secret(&self) -> String {
        self.inner.dir().app.client_secret.clone()
    }

    /// The client id of the API requesters' tokens are issued for (`API_AUDIENCE`).
    pub fn api_client_id(&self) -> String {
        self.inner.dir().api.client_id.clone()
    }

    /// The App ID URI of that API (`API_APP_ID_URI`): the `aud` of its v1.0 tokens.
    pub fn api_app_id_uri(&self) -> String {
        self.inner.dir().api.identifier_uri.clone()
    }

    pub fn authority_host(&self) -> String {
        self.inner.authority.clone()
    }
}
