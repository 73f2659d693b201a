//! Seeded random faults and faults that hold for a window of time, for reliability soaks.
//!
//! Chaos is asked only when no queued fault (`Control::inject`) matched the request, so
//! queued faults win; among chaos, a window in force wins over the random rules. The
//! generator lives in the fault state behind its mutex, so a given seed and a given
//! sequence of requests always draw the same faults.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use time::OffsetDateTime;

use crate::control::{Control, FaultKind, FaultMatcher, FaultState};

/// Random faults, drawn per request from a seeded generator, and faults that hold for a window of time.
///
/// Every kind but [`FaultKind::AbuseBlock`] may be used. The abuse block is a tenant-wide
/// flag the test driver toggles itself (`inject(Fault::new(FaultKind::AbuseBlock))`,
/// `clear_abuse_block()`), so rules and windows of that kind are ignored: `set_chaos` drops
/// them with a warning. [`FaultKind::PermissionDenied`] applies to Graph routes only, as
/// queued: on other routes such a rule or window does not match (and draws nothing).
/// Chaos never touches `/_dev`.
#[derive(Clone, Debug)]
pub struct Chaos {
    pub seed: u64,
    /// Per request, in order: the first rule whose matcher matches and whose draw hits fires.
    /// Every rule that matches the request draws once (until one hits), whatever its probability.
    pub rules: Vec<ChaosRule>,
    /// Every matching request inside the window gets the fault (e.g. a token endpoint outage of a minute).
    pub windows: Vec<FaultWindow>,
}

#[derive(Clone, Debug)]
pub struct ChaosRule {
    pub matcher: FaultMatcher,
    pub kind: FaultKind,
    /// Chance per matching request: 0 (or less, or NaN) never fires, 1 (or more) always does.
    pub probability: f64,
}

/// A fault every matching request gets from `from` (inclusive) to `until` (exclusive), in
/// real time (`Instant`), whatever the tenant's virtual clock says.
#[derive(Clone, Debug)]
pub struct FaultWindow {
    pub matcher: FaultMatcher,
    pub kind: FaultKind,
    pub from: std::time::Instant,
    pub until: std::time::Instant,
}

impl FaultWindow {
    /// A window that opens now and lasts `duration`.
    pub fn lasting(matcher: FaultMatcher, kind: FaultKind, duration: Duration) -> FaultWindow {
        let from = Instant::now();
        FaultWindow {
            matcher,
            kind,
            from,
            until: from + duration,
        }
    }
}

/// A fault chaos injected: when (real UTC time), which, on which request.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FiredFault {
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    pub kind: FaultKind,
    pub method: String,
    pub path: String,
}

/// Chaos in force, with its generator.
pub(crate) struct ChaosState {
    rules: Vec<ChaosRule>,
    windows: Vec<FaultWindow>,
    rng: StdRng,
}

impl ChaosState {
    fn new(chaos: Chaos) -> ChaosState {
        let drawable = |kind: &FaultKind| {
            let ok = *kind != FaultKind::AbuseBlock;
            if !ok {
                tracing::warn!(
                    "chaos ignores AbuseBlock; inject it with Control::inject and lift it with clear_abuse_block"
                );
            }
            ok
        };
        ChaosState {
            rules: chaos
                .rules
                .into_iter()
                .filter(|r| drawable(&r.kind))
                .collect(),
            windows: chaos
                .windows
                .into_iter()
                .filter(|w| drawable(&w.kind))
                .collect(),
            rng: StdRng::seed_from_u64(chaos.seed),
        }
    }
}

/// The fault chaos has for this request, if any; recorded in the fired log.
/// Called with the fault state locked, after no queued fault matched.
pub(crate) fn draw(
    faults: &mut FaultState,
    method: &str,
    path: &str,
    graph: bool,
) -> Option<FaultKind> {
    let chaos = faults.chaos.as_mut()?;
    let applies = |m: &FaultMatcher, kind: &FaultKind| {
        m.matches(method, path) && (graph || *kind != FaultKind::PermissionDenied)
    };
    let now = Instant::now();
    let kind = match chaos
        .windows
        .iter()
        .find(|w| w.from <= now && now < w.until && applies(&w.matcher, &w.kind))
    {
        Some(w) => w.kind.clone(),
        None => {
            let mut hit = None;
            for rule in &chaos.rules {
                if applies(&rule.matcher, &rule.kind)
                    && chaos.rng.random::<f64>() < rule.probability
                {
                    hit = Some(rule.kind.clone());
                    break;
                }
            }
            hit?
        }
    };
    faults.fired.push(FiredFault {
        at: OffsetDateTime::now_utc(),
        kind: kind.clone(),
        method: method.to_string(),
        path: path.to_string(),
    });
    Some(kind)
}

impl Control {
    /// Switches chaos on (replacing any earlier chaos and its generator) or off.
    ///
    /// Switching on also empties the fired log; switching off keeps it for reading.
    /// `clear_faults` leaves chaos alone.
    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        let mut f = self.inner.faults();
        match chaos {
            Some(c) => {
                f.chaos = Some(ChaosState::new(c));
                f.fired.clear();
            }
            None => f.chaos = None,
        }
    }

    /// Every fault chaos fired since it was set, oldest first.
    ///
    /// Fired means chosen for the request: a `PermissionDenied` still loses to a 401 for a
    /// caller without a valid token, as it does when queued.
    pub fn fired_faults(&self) -> Vec<FiredFault> {
        self.inner.faults().fired.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(chaos: Chaos) -> FaultState {
        FaultState {
            chaos: Some(ChaosState::new(chaos)),
            ..FaultState::default()
        }
    }

    fn rule(method: &str, prefix: &str, kind: FaultKind, probability: f64) -> ChaosRule {
        ChaosRule {
            matcher: FaultMatcher::on(Some(method), prefix),
            kind,
            probability,
        }
    }

    fn run(seed: u64, n: usize) -> Vec<Option<FaultKind>> {
        let mut f = state(Chaos {
            seed,
            rules: vec![rule("GET", "/v1.0/users", FaultKind::ServerError(503), 0.5)],
            windows: Vec::new(),
        });
        (0..n)
            .map(|_| draw(&mut f, "GET", "/v1.0/users", true))
            .collect()
    }

    #[test]
    fn a_seed_draws_the_same_faults_every_time() {
        let a = run(7, 1000);
        assert_eq!(a, run(7, 1000));
        assert_ne!(a, run(8, 1000), "another seed, other draws");
        let hits = a.iter().flatten().count();
        assert!((400..=600).contains(&hits), "{hits}");
    }

    #[test]
    fn only_matching_applicable_requests_draw() {
        let mut f = state(Chaos {
            seed: 1,
            rules: vec![
                rule("get", "/v1.0/users", FaultKind::ServerError(503), 1.0),
                rule("POST", "", FaultKind::PermissionDenied, 1.0),
                rule("POST", "/v1.0/invitations", FaultKind::AbuseBlock, 1.0),
            ],
            windows: Vec::new(),
        });
        assert_eq!(
            draw(&mut f, "GET", "/v1.0/users/abc", true),
            Some(FaultKind::ServerError(503))
        );
        assert_eq!(draw(&mut f, "GET", "/v1.0/groups", true), None);
        // Permission denied is for Graph only; the abuse block is never drawn.
        assert_eq!(draw(&mut f, "POST", "/t/oauth2/v2.0/token", false), None);
        assert_eq!(
            draw(&mut f, "POST", "/v1.0/invitations", true),
            Some(FaultKind::PermissionDenied)
        );
        assert_eq!(f.fired.len(), 2);
        assert_eq!(f.fired[0].path, "/v1.0/users/abc");
        assert_eq!(f.fired[1].kind, FaultKind::PermissionDenied);
    }

    #[test]
    fn a_window_wins_over_rules_while_it_holds() {
        let now = Instant::now();
        let mut f = state(Chaos {
            seed: 1,
            rules: vec![rule("GET", "/v1.0", FaultKind::ServerError(503), 1.0)],
            windows: vec![
                FaultWindow {
                    matcher: FaultMatcher::on(None, "/v1.0"),
                    kind: FaultKind::ServerError(504),
                    from: now,
                    until: now + Duration::from_secs(3600),
                },
                FaultWindow {
                    matcher: FaultMatcher::on(None, "/v1.0/domains"),
                    kind: FaultKind::DropConnection,
                    from: now - Duration::from_secs(20),
                    until: now - Duration::from_secs(10),
                },
            ],
        });
        assert_eq!(
            draw(&mut f, "GET", "/v1.0/domains", true),
            Some(FaultKind::ServerError(504))
        );
        f.chaos.as_mut().unwrap().windows.remove(0);
        assert_eq!(
            draw(&mut f, "GET", "/v1.0/domains", true),
            Some(FaultKind::ServerError(503)),
            "a window that ended no longer holds"
        );
    }

    #[test]
    fn fired_faults_serialize_like_the_dev_routes() {
        let fired = FiredFault {
            at: time::macros::datetime!(2025-01-02 03:04:05 UTC),
            kind: FaultKind::Slow(Duration::from_millis(250)),
            method: "GET".into(),
            path: "/v1.0/users".into(),
        };
        assert_eq!(
            serde_json::to_value(&fired).unwrap(),
            serde_json::json!({
                "at": "2025-01-02T03:04:05Z",
                "kind": {"kind": "slow", "delaySeconds": 0.25},
                "method": "GET",
                "path": "/v1.0/users",
            })
        );
        assert_eq!(
            serde_json::to_value(FaultKind::ServerError(503)).unwrap(),
            serde_json::json!({"kind": "serverError", "status": 503})
        );
    }
}
