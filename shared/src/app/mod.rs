//! Use cases: carrying out the core's plans through the ports.

pub mod circuit;
pub mod events;
pub mod mail;
pub mod onboard;
pub mod runtime;
pub mod self_service;
pub mod sweep;

use std::time::Duration;

use crate::error::{Classify, FailureClass};
use crate::ports::{DirectoryError, LedgerError, MailerError};

/// Why a unit of work (an event, a request part) stopped before it was done. It is never
/// permanent: permanent problems are recorded as rejections, not aborts.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Abort {
    pub class: FailureClass,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl Abort {
    pub fn transient(message: impl Into<String>) -> Self {
        Abort {
            class: FailureClass::Transient,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn blocked(reason: &str) -> Self {
        Abort {
            class: FailureClass::Blocked,
            message: format!("invitations are blocked for the tenant: {reason}"),
            retry_after: None,
        }
    }

    pub fn circuit_open() -> Self {
        Abort {
            class: FailureClass::Blocked,
            message: "the invitation circuit is open: Graph blocked invitations for the tenant; \
                      an operator must close the circuit, or a probe will after CIRCUIT_PROBE_AFTER"
                .into(),
            retry_after: None,
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
        }
    }
}

impl From<DirectoryError> for Abort {
    fn from(e: DirectoryError) -> Self {
        Abort {
            class: e.class(),
            retry_after: e.retry_after(),
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
        }
    }
}
