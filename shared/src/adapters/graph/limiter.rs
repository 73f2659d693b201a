//! The writes of a process: a steady rate (`GRAPH_MAX_WRITES_PER_SECOND`) and a concurrency
//! window that halves on a 429 and regrows by one per window of successes (AIMD), so a bulk
//! job rides just under Graph's limit instead of bouncing off it.
//!
//! With a shared [`WriteBudget`] (the deployed ledger), the rate is the whole deployment's:
//! writes are reserved from the budget a few at a time, each environment waiting for its
//! turn, and Graph's Retry-After pauses every environment. Without one, the rate is this
//! process's own.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::ports::budget::WriteBudget;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug)]
struct Window {
    /// Writes allowed in flight; fractional so that growth is gradual.
    limit: f64,
    in_flight: u32,
    /// After a 429 with Retry-After, no write starts before this.
    paused_until: Option<Instant>,
}

pub struct WriteLimiter {
    rate: DefaultDirectRateLimiter,
    window: Mutex<Window>,
    max_in_flight: f64,
    released: Notify,
    budget: Option<Arc<dyn WriteBudget>>,
    /// Tokens taken from the shared budget and not yet spent.
    reservoir: Mutex<u32>,
    /// Tokens taken from the shared budget at a time.
    block: u32,
}

/// Returned when the deadline would pass before a write could start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoTimeLeft {
    /// Set when writes are held back by Graph's Retry-After: how long they still wait.
    pub throttled_for: Option<Duration>,
}

const NO_TIME_LEFT: NoTimeLeft = NoTimeLeft {
    throttled_for: None,
};

impl WriteLimiter {
    pub fn new(writes_per_second: u32, budget: Option<Arc<dyn WriteBudget>>) -> Arc<Self> {
        let per_second = NonZeroU32::new(writes_per_second.max(1)).expect("at least one");
        // In flight at most one second's budget: more would only queue at Graph.
        let max_in_flight = f64::from(per_second.get());
        Arc::new(WriteLimiter {
            rate: RateLimiter::direct(Quota::per_second(per_second).allow_burst(
                NonZeroU32::new((per_second.get() / 4).max(1)).expect("at least one"),
            )),
            window: Mutex::new(Window {
                limit: max_in_flight,
                in_flight: 0,
                paused_until: None,
            }),
            max_in_flight,
            released: Notify::new(),
            budget,
            reservoir: Mutex::new(0),
            block: (per_second.get() / 10).max(1),
        })
    }

    /// One write's token: from the shared budget when there is one, else from the local rate.
    async fn draw(&self, deadline: Instant) -> Result<(), NoTimeLeft> {
        if let Some(budget) = &self.budget {
            loop {
                {
                    let mut reservoir = self.reservoir.lock().expect("reservoir lock");
                    if *reservoir > 0 {
                        *reservoir -= 1;
                        return Ok(());
                    }
                }
                let within = deadline.saturating_duration_since(Instant::now());
                match budget.take(self.block, within).await {
                    Ok(grant) if grant.tokens > 0 => {
                        // Our turn in the deployment's schedule; the rest of the block after it.
                        tokio::time::sleep(grant.wait).await;
                        *self.reservoir.lock().expect("reservoir lock") += grant.tokens - 1;
                        return Ok(());
                    }
                    Ok(grant) => {
                        let at = Instant::now() + grant.wait.max(Duration::from_millis(5));
                        if at >= deadline {
                            return Err(NO_TIME_LEFT);
                        }
                        tokio::time::sleep_until(at).await;
                    }
                    Err(e) => {
                        // The ledger is down: pace by our own share rather than stop.
                        tracing::warn!(error = %e, "shared write budget unavailable; pacing writes locally");
                        break;
                    }
                }
            }
        }
        tokio::time::timeout_at(deadline, self.rate.until_ready())
            .await
            .map_err(|_| NO_TIME_LEFT)
    }

    /// Waits for a write slot, or gives up when `deadline` would pass first.
    pub async fn acquire(self: &Arc<Self>, deadline: Instant) -> Result<WritePermit, NoTimeLeft> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before looking, so a slot freed in between still wakes us.
            released.as_mut().enable();
            let wake_at = {
                let mut w = self.window.lock().expect("limiter lock");
                match w.paused_until {
                    Some(until) if until > Instant::now() => {
                        if until >= deadline {
                            return Err(NoTimeLeft {
                                throttled_for: Some(until - Instant::now()),
                            });
                        }
                        until
                    }
                    _ => {
                        w.paused_until = None;
                        if f64::from(w.in_flight) < w.limit.floor().max(1.0) {
                            w.in_flight += 1;
                            break;
                        }
                        deadline
                    }
                }
            };
            let _ = tokio::time::timeout_at(wake_at, released).await;
            if Instant::now() >= deadline {
                return Err(NO_TIME_LEFT);
            }
        }
        let permit = WritePermit {
            limiter: Arc::clone(self),
        };
        self.draw(deadline).await.map(|()| permit)
    }

    /// Graph said 429: halve the window, and hold every write until `retry_after` passes.
    pub fn throttled(&self, retry_after: Option<Duration>) {
        let mut w = self.window.lock().expect("limiter lock");
        w.limit = (w.limit / 2.0).max(1.0);
        if let Some(wait) = retry_after {
            let until = Instant::now() + wait;
            w.paused_until = Some(w.paused_until.map_or(until, |u| u.max(until)));
            if let Some(budget) = self.budget.clone() {
                // Graph's pause holds for every environment of the deployment.
                tokio::spawn(async move {
                    if let Err(e) = budget.pause(wait).await {
                        tracing::warn!(error = %e, "could not share Graph's Retry-After");
                    }
                });
            }
        }
    }

    fn succeeded(&self) {
        let mut w = self.window.lock().expect("limiter lock");
        w.limit = (w.limit + 1.0 / w.limit).min(self.max_in_flight);
    }

    /// The current window, for tests and metrics.
    pub fn window(&self) -> f64 {
        self.window.lock().expect("limiter lock").limit
    }
}

/// A write slot; dropping it frees the slot.
pub struct WritePermit {
    limiter: Arc<WriteLimiter>,
}

impl WritePermit {
    /// The write went through: let the window grow.
    pub fn succeeded(&self) {
        self.limiter.succeeded();
    }
}

impl Drop for WritePermit {
    fn drop(&mut self) {
        let mut w = self.limiter.window.lock().expect("limiter lock");
        w.in_flight = w.in_flight.saturating_sub(1);
        drop(w);
        self.limiter.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn window_halves_and_regrows() {
        let l = WriteLimiter::new(16, None);
        assert_eq!(l.window(), 16.0);
        l.throttled(None);
        assert_eq!(l.window(), 8.0);
        l.throttled(None);
        assert_eq!(l.window(), 4.0);
        let deadline = Instant::now() + Duration::from_secs(5);
        for _ in 0..8 {
            let p = l.acquire(deadline).await.unwrap();
            p.succeeded();
        }
        assert!(l.window() > 5.0 && l.window() < 7.0, "{}", l.window());
    }

    #[tokio::test]
    async fn window_bounds_concurrency() {
        let l = WriteLimiter::new(4, None);
        l.throttled(None);
        l.throttled(None); // window 1
        let deadline = Instant::now() + Duration::from_millis(300);
        let first = l.acquire(deadline).await.unwrap();
        assert_eq!(l.acquire(deadline).await.err(), Some(NO_TIME_LEFT));
        drop(first);
        assert!(
            l.acquire(Instant::now() + Duration::from_secs(2))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn retry_after_pauses_writes() {
        let l = WriteLimiter::new(10, None);
        l.throttled(Some(Duration::from_secs(60)));
        let r = l.acquire(Instant::now() + Duration::from_millis(200)).await;
        let wait = r.err().and_then(|e| e.throttled_for).unwrap();
        assert!(wait > Duration::from_secs(59), "{wait:?}");
    }
}
