//! resend-stale: reminds guests who have not redeemed their invitation, expires the ones
//! pending too long, and records the ones who redeemed. Triggered by an EventBridge schedule;
//! operators may invoke it directly with `{"dryRun":true}` or a scope.

use b2b::config::ProcessEnv;
use b2b::lambda::resend_stale::ResendStale;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    b2b::lambda::serve::serve(ResendStale::from_env(&ProcessEnv)).await
}
