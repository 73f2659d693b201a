//! The Lambda entry: start-up from the environment, then the runtime loop.

use async_trait::async_trait;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use tokio::time::Instant;

use super::{InvocationError, work_deadline};
use crate::app::runtime::{Runtime, StartupError};
use crate::ports::metrics::{Counts, Measure};

/// A function's handler: one payload in, one answer out.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, payload: Value, deadline: Instant) -> Result<Value, InvocationError>;

    /// What the handler works with: its function's name and where its counts go.
    fn runtime(&self) -> &Runtime;
}

/// Builds the handler, then serves invocations until the runtime stops. Bad configuration
/// ends the process at once with one line naming the variable.
pub async fn serve<H, F>(build: F) -> Result<(), lambda_runtime::Error>
where
    H: Handler,
    F: Future<Output = Result<H, StartupError>>,
{
    crate::telemetry::init();
    let handler = match build.await {
        Ok(h) => Arc::new(h),
        Err(e) => {
            eprintln!("{e}");
            tracing::error!(error = %e, "start-up failed");
            std::process::exit(2);
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = Arc::clone(&handler);
        async move {
            if crate::telemetry::invocation_started() {
                let runtime = handler.runtime();
                runtime
                    .metrics
                    .publish(runtime.function, &Counts::one(Measure::ColdStart));
            }
            let deadline = work_deadline(event.context.deadline);
            handler
                .handle(event.payload, deadline)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
