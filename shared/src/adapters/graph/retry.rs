//! When to try a failed Graph call again: exponential backoff with full jitter, the
//! server's Retry-After when it gives one, never past the caller's deadline.

use rand::Rng;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1), or `None` when the
    /// attempts are spent or the wait would end past `deadline`.
    pub fn next_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        now: Instant,
        deadline: Instant,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let delay = match retry_after {
            // The server knows when its window reopens; waiting less only earns another 429.
            Some(given) => given,
            None => {
                let ceiling = self
                    .base_delay
                    .saturating_mul(1u32 << attempt.min(16))
                    .min(self.max_delay);
                rand::rng().random_range(Duration::ZERO..=ceiling)
            }
        };
        (now + delay < deadline).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honours_retry_after_and_deadline() {
        let p = RetryPolicy::default();
        let now = Instant::now();
        let far = now + Duration::from_secs(600);
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(7)), now, far),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            p.next_delay(
                1,
                Some(Duration::from_secs(7)),
                now,
                now + Duration::from_secs(5)
            ),
            None
        );
        assert_eq!(p.next_delay(p.max_attempts, None, now, far), None);
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let p = RetryPolicy::default();
        let now = Instant::now();
        let far = now + Duration::from_secs(600);
        for attempt in 1..p.max_attempts {
            let d = p.next_delay(attempt, None, now, far).unwrap();
            let ceiling = p.base_delay * (1 << attempt);
            assert!(d <= ceiling.min(p.max_delay), "attempt {attempt}: {d:?}");
        }
    }
}
