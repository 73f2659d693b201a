//! Replication delay: right after an invitation creates a guest, Graph can answer writes
//! that name the guest with "does not exist" for seconds to a minute (SPEC 5.1).

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

use crate::ports::directory::{Directory, DirectoryError};

/// Replication takes seconds to a minute; no unit waits longer than this for it.
const MAX_REPLICATION_WAIT: Duration = Duration::from_secs(120);
const FIRST_REPLICATION_WAIT: Duration = Duration::from_millis(500);
const MAX_REPLICATION_STEP: Duration = Duration::from_secs(8);
/// Kept free before the unit's deadline for recording what was done.
const DEADLINE_MARGIN: Duration = Duration::from_secs(3);

/// Carries out `write`, waiting out replication: when the guest `user_id` was invited lately
/// (`fresh`) and Graph answers that it does not exist, the write is tried again with backoff
/// until shortly before the unit's deadline; then the unit is left for the redelivery, never
/// recorded as refused.
pub(crate) async fn landed<T, F, Fut>(
    directory: &dyn Directory,
    fresh: bool,
    user_id: &str,
    mut write: F,
) -> Result<T, DirectoryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DirectoryError>>,
{
    let started = Instant::now();
    let give_up = directory
        .deadline()
        .map(|d| d.checked_sub(DEADLINE_MARGIN).unwrap_or(d))
        .unwrap_or(started + MAX_REPLICATION_WAIT)
        .min(started + MAX_REPLICATION_WAIT);
    let mut wait = FIRST_REPLICATION_WAIT;
    loop {
        match write().await {
            Err(e) if fresh && e.names_unknown_object(user_id) => {
                if Instant::now() + wait > give_up {
                    return Err(DirectoryError::Transient(format!(
                        "guest {user_id} has not replicated after {}s; left for the redelivery",
                        started.elapsed().as_secs()
                    )));
                }
                tracing::info!(
                    user_id,
                    wait_ms = wait.as_millis() as u64,
                    "guest not replicated yet; waiting"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_REPLICATION_STEP);
            }
            other => return other,
        }
    }
}
