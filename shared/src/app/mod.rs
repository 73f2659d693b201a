//! Use cases: carrying out the core's plans through the ports.

pub mod circuit;
pub mod counting;
pub mod events;
pub mod mail;
pub mod offboard;
pub mod onboard;
pub mod parts;
mod replication;
pub mod runtime;
pub mod self_service;
pub mod sweep;
pub mod trust;

use std::time::Duration;

use crate::error::{Classify, FailureClass};
use crate::ports::queue::QueueError;
use crate::ports::{DirectoryError, LedgerError, MailerError};

/// Why a unit of work (an event, a request part) stopped before it was done. It is never
/// permanent: permanent problems are recorded as rejections, not aborts.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Abort {
    pub class: FailureClass,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// This deployment's own access to Graph was refused: an outage an operator must fix
    /// (the log line names the fix, a metric raises the alarm).
    pub access_denied: bool,
}

impl Abort {
    pub fn transient(message: impl Into<String>) -> Self {
        Abort {
            class: FailureClass::Transient,
            message: message.into(),
            retry_after: None,
            access_denied: false,
        }
    }

    pub fn blocked(reason: &str) -> Self {
        Abort {
            class: FailureClass::Blocked,
            message: format!("invitations are blocked for the tenant: {reason}"),
            retry_after: None,
            access_denied: false,
        }
    }

    pub fn circuit_open() -> Self {
        Abort {
            class: FailureClass::Blocked,
            message: "the invitation circuit is open: Graph blocked invitations for the tenant; \
                      an operator must close the circuit, or a probe will after CIRCUIT_PROBE_AFTER"
                .into(),
            retry_after: None,
            access_denied: false,
        }
    }
}

impl Abort {
    /// Logs an outage of this deployment's own access once per unit, with the metric the
    /// `GraphAccessDenied` alarm counts. Nothing else is logged at that level for it.
    pub fn report_outage(&self, function: &str) {
        if self.access_denied {
            tracing::error!(
                metric = "GraphAccessDenied",
                function,
                error = %self.message,
                "this deployment's access to Microsoft Graph is refused; the work is retried until it is fixed"
            );
        }
    }
}

impl Classify for Abort {
    fn class(&self) -> FailureClass {
        self.class
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl From<LedgerError> for Abort {
    fn from(e: LedgerError) -> Self {
        Abort {
            class: match e.class() {
                FailureClass::Throttled => FailureClass::Throttled,
                _ => FailureClass::Transient,
            },
            message: format!("ledger: {e}"),
            retry_after: None,
            access_denied: false,
        }
    }
}

impl From<DirectoryError> for Abort {
    fn from(e: DirectoryError) -> Self {
        Abort {
            class: e.class(),
            retry_after: e.retry_after(),
            access_denied: matches!(e, DirectoryError::AccessDenied { .. }),
            message: e.to_string(),
        }
    }
}

impl From<MailerError> for Abort {
    fn from(e: MailerError) -> Self {
        Abort {
            class: match e.class() {
                FailureClass::Throttled => FailureClass::Throttled,
                _ => FailureClass::Transient,
            },
            message: format!("mail: {e}"),
            retry_after: None,
            access_denied: false,
        }
    }
}

impl From<QueueError> for Abort {
    fn from(e: QueueError) -> Self {
        Abort::transient(e.to_string())
    }
}
