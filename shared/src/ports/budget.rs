//! The write budget port: Graph allows about 20 writes a second per app and tenant, one
//! budget for the whole deployment (SPEC 5.2). Every function, environment and the CLI
//! pointed at the deployed ledger draw from it.

use async_trait::async_trait;
use std::time::Duration;

use crate::ports::ledger::LedgerError;

/// What a draw on the budget gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Writes that may start now (at most what was asked for).
    pub tokens: u32,
    /// With no tokens: how long until the next one is due, or until Graph's pause ends.
    pub wait: Duration,
}

#[async_trait]
pub trait WriteBudget: Send + Sync {
    /// Takes up to `want` writes from the shared budget.
    async fn take(&self, want: u32) -> Result<Grant, LedgerError>;
    /// Graph answered 429 with Retry-After: nobody writes before `wait` has passed.
    async fn pause(&self, wait: Duration) -> Result<(), LedgerError>;
}
