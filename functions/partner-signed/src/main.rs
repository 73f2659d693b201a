//! partner-signed: a contract with a partner was signed. Registers the partner, invites its
//! contacts, grants the agreed access. Triggered by SQS and by signed webhooks.

use b2b::config::ProcessEnv;
use b2b::domain::partner::EVENT_TYPE;
use b2b::lambda::event_function::EventFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    b2b::lambda::serve::serve(EventFunction::from_env(
        "partner-signed",
        &[EVENT_TYPE],
        true,
        &ProcessEnv,
    ))
    .await
}
