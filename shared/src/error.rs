//! How every failure is classified, so that each caller can decide the same way whether to
//! retry, wait, reject or stop.

use std::time::Duration;

/// What a failure means for the work that hit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureClass {
    /// A passing fault (5xx, timeout, dropped connection): retry.
    Transient,
    /// The service asked us to slow down: retry after the given time.
    Throttled,
    /// The request can never succeed as it is: reject with the reason.
    Permanent,
    /// The tenant's invitations are blocked: stop all inviting until an operator acts.
    Blocked,
}

impl FailureClass {
    /// Whether retrying the same request later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, FailureClass::Transient | FailureClass::Throttled)
    }
}

/// Implemented by every error type that can cross a port.
pub trait Classify {
    fn class(&self) -> FailureClass;

    /// The wait the service asked for, when it named one.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}
