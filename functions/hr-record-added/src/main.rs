//! hr-record-added: an HR record for an external worker was added. Invites the worker with
//! the manager as sponsor and grants access by rule. Triggered by SQS.

use b2b::config::ProcessEnv;
use b2b::domain::hr::EVENT_TYPE;
use b2b::lambda::event_function::EventFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    b2b::lambda::serve::serve(EventFunction::from_env(
        "hr-record-added",
        &[EVENT_TYPE],
        false,
        &ProcessEnv,
    ))
    .await
}
