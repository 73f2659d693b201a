//! Switches for what production Graph and Entra do that a consistent, always-answering
//! emulator hides: replication delay after an invitation, listings that lag behind the
//! directory, an expired client secret, short token lifetimes and cross-tenant access
//! blocks. All are off by default. Their times are real (std `Instant`), like the write
//! limit, because tests move the dev clock by days while a client waits in real time.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::control::{Control, Inner};
use crate::error::{GraphError, GraphResult};
use crate::model::{ExternalUserState, User};

#[derive(Clone, Default)]
struct Switches {
    replication_delay: Option<Duration>,
    listing_lag: Option<Duration>,
    token_lifetime: Option<Duration>,
    secret_expired: bool,
    /// Lowercased domains whose addresses cross-tenant access settings refuse.
    blocked_domains: BTreeSet<String>,
}

#[derive(Default)]
pub(crate) struct Realities {
    switches: Mutex<Switches>,
}

impl Realities {
    fn get(&self) -> MutexGuard<'_, Switches> {
        // A panic elsewhere must not poison every later request.
        self.switches.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn secret_expired(&self) -> bool {
        self.get().secret_expired
    }

    /// `None`: Entra's usual lifetime.
    pub fn token_lifetime(&self) -> Option<Duration> {
        self.get().token_lifetime
    }

    fn replication_delay(&self) -> Option<Duration> {
        self.get().replication_delay
    }

    fn listing_lag(&self) -> Option<Duration> {
        self.get().listing_lag
    }
}

// ---- bookkeeping kept on each user ----

/// The user properties a lagging listing shows from the past.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Listed {
    state: Option<ExternalUserState>,
    changed: Option<OffsetDateTime>,
    enabled: bool,
}

impl Listed {
    pub fn of(u: &User) -> Listed {
        Listed {
            state: u.external_user_state,
            changed: u.external_user_state_change_date_time,
            enabled: u.account_enabled,
        }
    }

    fn apply(self, u: &mut User) {
        u.external_user_state = self.state;
        u.external_user_state_change_date_time = self.changed;
        u.account_enabled = self.enabled;
    }
}

#[derive(Clone, Debug)]
struct Change {
    before: Listed,
    at: Instant,
}

/// More changes than this inside one lag window are unlikely; the oldest are forgotten.
const CHANGES_KEPT: usize = 8;

/// Real-time facts about a user that Graph never shows and `state.json` never keeps
/// (an `Instant` means nothing to another process).
#[derive(Clone, Debug, Default)]
pub(crate) struct UserHistory {
    /// When `POST /invitations` created the user, for the replication delay.
    invited_at: Option<Instant>,
    /// The listed properties as they were before each recent change, oldest first.
    changes: Vec<Change>,
}

impl UserHistory {
    pub fn invited_now() -> UserHistory {
        UserHistory {
            invited_at: Some(Instant::now()),
            changes: Vec::new(),
        }
    }
}

// Equality of users is about the directory object; this bookkeeping is not part of it,
// and a user read back from `/_dev/users` JSON must still equal the one in memory.
impl PartialEq for UserHistory {
    fn eq(&self, _: &UserHistory) -> bool {
        true
    }
}

/// Called after every change to a user with what the listed properties were before it.
pub(crate) fn note_change(before: Listed, u: &mut User) {
    if Listed::of(u) == before {
        return;
    }
    let changes = &mut u.history.changes;
    changes.push(Change {
        before,
        at: Instant::now(),
    });
    if changes.len() > CHANGES_KEPT {
        changes.remove(0);
    }
}

/// The user as a listing lagging `lag` behind shows it at `now`.
fn as_listed(u: &User, lag: Option<Duration>, now: Instant) -> Cow<'_, User> {
    let Some(lag) = lag else {
        return Cow::Borrowed(u);
    };
    let cutoff = now.checked_sub(lag);
    // The first change after the cutoff undid nothing yet: what it replaced is what the
    // listing still shows.
    let pending = u
        .history
        .changes
        .iter()
        .find(|c| cutoff.is_none_or(|t| c.at > t));
    match pending {
        None => Cow::Borrowed(u),
        Some(c) => {
            let mut lagged = u.clone();
            c.before.apply(&mut lagged);
            Cow::Owned(lagged)
        }
    }
}

/// How the collection listings of `/users` see users right now.
pub(crate) fn listing_view(inner: &Inner) -> impl Fn(&User) -> Cow<'_, User> + use<> {
    let lag = inner.realities.listing_lag();
    let now = Instant::now();
    move |u| as_listed(u, lag, now)
}

// ---- replication delay ----

fn unreplicated(inner: &Inner, key: &str) -> bool {
    let Some(delay) = inner.realities.replication_delay() else {
        return false;
    };
    inner
        .dir()
        .user(key)
        .and_then(|u| u.history.invited_at)
        .is_some_and(|at| at.elapsed() < delay)
}

/// 404 for a request naming (by path or `principalId`) a user Graph has not replicated yet.
pub(crate) fn replicated(inner: &Inner, keys: &[&str]) -> GraphResult<()> {
    match keys.iter().find(|k| unreplicated(inner, k)) {
        Some(k) => Err(GraphError::not_found(k).not_counted()),
        None => Ok(()),
    }
}

/// Adding a not yet replicated user to a group: Graph's answer for a missing reference.
pub(crate) fn replicated_member(inner: &Inner, member: &str) -> GraphResult<()> {
    if unreplicated(inner, member) {
        return Err(GraphError::bad_request(
            "One or more added object references do not exist for the following modified properties: 'members'.",
        )
        .not_counted());
    }
    Ok(())
}

/// Takes back a write the front admitted when the handler's answer says it does not count.
pub(crate) fn refund_write(inner: &Inner, app: &str, at: Instant) {
    let mut limiter = inner.limiter();
    if let Some(window) = limiter.windows.get_mut(app)
        && let Some(i) = window.iter().rposition(|t| *t == at)
    {
        window.remove(i);
    }
}

// ---- cross-tenant access ----

pub(crate) fn cross_tenant(inner: &Inner, email: &str) -> GraphResult<()> {
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    if inner
        .realities
        .get()
        .blocked_domains
        .contains(&domain.to_lowercase())
    {
        return Err(GraphError::denied(
            "This invitation is blocked by cross-tenant access settings. Admins in both organizations must configure their cross-tenant access settings to allow the invitation.",
        ));
    }
    Ok(())
}

// ---- the switches on the control handle ----

impl Control {
    /// For `delay` after `POST /invitations` creates a user, Graph does not find it yet:
    /// `GET`/`PATCH`/`DELETE /users/{id}`, `POST /users/{id}/sponsors/$ref` and role or
    /// app role assignments naming it answer 404, adding it to a group answers 400.
    /// Listings and `$filter` already show it. `None` makes every user visible at once.
    pub fn set_replication_delay(&self, delay: Option<Duration>) {
        self.inner.realities.get().replication_delay = delay;
    }

    /// `GET /users` listings (filtered or not, every page) show each user's
    /// externalUserState, its change time and accountEnabled as they were `lag` ago;
    /// `GET /users/{id}` shows the truth. `None` switches the lag off.
    pub fn set_listing_lag(&self, lag: Option<Duration>) {
        self.inner.realities.get().listing_lag = lag;
    }

    /// The token endpoint refuses the client secret (AADSTS7000222) until
    /// [`renew_client_secret`](Control::renew_client_secret); tokens already issued
    /// stay valid until they expire.
    pub fn expire_client_secret(&self) {
        self.inner.realities.get().secret_expired = true;
    }

    /// Accepts the client secret again. Its value does not change, so a running client
    /// keeps its configuration (a real renewal issues a new value).
    pub fn renew_client_secret(&self) {
        self.inner.realities.get().secret_expired = false;
    }

    /// The lifetime (`expires_in`, `exp`) of Graph tokens the token endpoint issues from
    /// now on, in whole seconds (at least one); `None` restores Entra's 3599 seconds.
    pub fn set_token_lifetime(&self, lifetime: Option<Duration>) {
        let lifetime = lifetime.map(|d| Duration::from_secs(d.as_secs().max(1)));
        self.inner.realities.get().token_lifetime = lifetime;
    }

    /// `POST /invitations` for an address in `domain` answers 403
    /// `Authorization_RequestDenied`, as cross-tenant access settings make Graph do.
    pub fn block_cross_tenant(&self, domain: &str) {
        let domain = domain.trim().to_lowercase();
        self.inner.realities.get().blocked_domains.insert(domain);
    }

    pub fn unblock_cross_tenant(&self, domain: &str) {
        let domain = domain.trim().to_lowercase();
        self.inner.realities.get().blocked_domains.remove(&domain);
    }
}

// ---- the switches over HTTP (`/_dev`) ----

pub(crate) fn dev_routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/realities", get(show))
        .route("/replicationDelay", put(set_replication_delay))
        .route("/listingLag", put(set_listing_lag))
        .route("/tokenLifetime", put(set_token_lifetime))
        .route("/clientSecret/expire", post(expire_secret))
        .route("/clientSecret/renew", post(renew_secret))
        .route("/crossTenantBlocks", get(blocks))
        .route("/crossTenantBlocks/{domain}", put(block).delete(unblock))
}

fn control(inner: Arc<Inner>) -> Control {
    Control { inner }
}

/// `{"seconds": n}`; absent or null switches the setting off (or back to its default).
#[derive(Deserialize)]
struct Seconds {
    #[serde(default)]
    seconds: Option<f64>,
}

impl Seconds {
    /// Hands the duration to `set` and answers 204, or answers 400 for a bad value.
    fn apply(&self, set: impl FnOnce(Option<Duration>)) -> Response {
        match self.seconds {
            Some(s) if !(s.is_finite() && s >= 0.0) => (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "seconds must be a non-negative number or null"})),
            )
                .into_response(),
            s => {
                set(s.map(Duration::from_secs_f64));
                StatusCode::NO_CONTENT.into_response()
            }
        }
    }
}

fn seconds(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_secs_f64()))
}

async fn show(State(inner): State<Arc<Inner>>) -> Json<Value> {
    let s = inner.realities.get().clone();
    Json(json!({
        "replicationDelaySeconds": seconds(s.replication_delay),
        "listingLagSeconds": seconds(s.listing_lag),
        "tokenLifetimeSeconds": seconds(s.token_lifetime),
        "clientSecretExpired": s.secret_expired,
        "crossTenantBlocks": s.blocked_domains,
    }))
}

async fn set_replication_delay(State(i): State<Arc<Inner>>, Json(b): Json<Seconds>) -> Response {
    b.apply(|d| control(i).set_replication_delay(d))
}

async fn set_listing_lag(State(i): State<Arc<Inner>>, Json(b): Json<Seconds>) -> Response {
    b.apply(|d| control(i).set_listing_lag(d))
}

async fn set_token_lifetime(State(i): State<Arc<Inner>>, Json(b): Json<Seconds>) -> Response {
    b.apply(|d| control(i).set_token_lifetime(d))
}

async fn expire_secret(State(i): State<Arc<Inner>>) -> StatusCode {
    control(i).expire_client_secret();
    StatusCode::NO_CONTENT
}

async fn renew_secret(State(i): State<Arc<Inner>>) -> StatusCode {
    control(i).renew_client_secret();
    StatusCode::NO_CONTENT
}

async fn blocks(State(i): State<Arc<Inner>>) -> Json<Value> {
    Json(json!(i.realities.get().blocked_domains))
}

async fn block(State(i): State<Arc<Inner>>, Path(domain): Path<String>) -> StatusCode {
    control(i).block_cross_tenant(&domain);
    StatusCode::NO_CONTENT
}

async fn unblock(State(i): State<Arc<Inner>>, Path(domain): Path<String>) -> StatusCode {
    control(i).unblock_cross_tenant(&domain);
    StatusCode::NO_CONTENT
}
