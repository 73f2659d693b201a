//! The write budget port: Graph allows about 20 writes a second per app and tenant, one
//! budget for the whole deployment (SPEC 5.2). Every function, environment and the CLI
//! pointed at the deployed ledger draw from it.

use async_trait::async_trait;
use std::time::Duration;

use crate::ports::ledger::LedgerError;

/// What a draw on the budget gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Writes reserved (at most what was asked for); none when they could not start in time.
    pub tokens: u32,
    /// With tokens: how long to wait before they start (the deployment's writes queue in
    /// turn). Without: how long until the budget could serve, or until Graph's pause ends.
    pub wait: Duration,
}

#[async_trait]
pub trait WriteBudget: Send + Sync {
    /// Reserves up to `want` writes from the shared budget, in turn after the writes already
    /// reserved, provided they can start within `within`. A taker never polls an empty
    /// budget: it learns when its writes may start.
    async fn take(&self, want: u32, within: Duration) -> Result<Grant, LedgerError>;
    /// Graph answered 429 with Retry-After: nobody writes before `wait` has passed.
    async fn pause(&self, wait: Duration) -> Result<(), LedgerError>;
}
