//! guest-offboard: a contract or an HR assignment ended. Takes away the access this product
//! granted for it, then disables or deletes the guests as the end asks (at once, or when its
//! date comes). Triggered by SQS and by signed webhooks.

use b2b::config::ProcessEnv;
use b2b::domain::offboard::{HR_RECORD_ENDED, PARTNER_ENDED};
use b2b::lambda::event_function::EventFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    b2b::lambda::serve::serve(EventFunction::from_env(
        "guest-offboard",
        &[PARTNER_ENDED, HR_RECORD_ENDED],
        true,
        &ProcessEnv,
    ))
    .await
}
