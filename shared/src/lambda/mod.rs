//! Translation between Lambda events and use cases. Each function's handler lives here, so
//! the local CLI runs exactly the code the Lambda binaries run.

pub mod event_function;
pub mod guest_inviter_request;
pub mod http;
pub mod resend_stale;
pub mod serve;
pub mod sqs;
pub mod trigger;

use std::time::Duration;
use tokio::time::Instant;

/// Time kept back from the Lambda deadline to answer and flush logs.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(1500);

/// The instant work must be done by, from the invocation's deadline (ms since the epoch).
pub fn work_deadline(deadline_epoch_ms: u64) -> Instant {
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let remaining = Duration::from_millis((deadline_epoch_ms as i128 - now_ms).max(0) as u64);
    Instant::now() + remaining.saturating_sub(DEADLINE_MARGIN)
}

/// A failure of the invocation itself (not of one message or request, which are answered).
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// The payload is not one of the function's triggers.
    #[error("{0}")]
    UnsupportedTrigger(String),
    /// Work that must be retried as a whole (a direct invocation, a schedule).
    #[error("{0}")]
    Failed(String),
}
