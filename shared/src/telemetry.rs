//! Structured logs: JSON in Lambda, readable text locally.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once. JSON when running in Lambda, so CloudWatch Logs
/// Insights can query fields; text otherwise.
pub fn init() {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if in_lambda {
        builder
            .json()
            .flatten_event(true)
            .without_time()
            .with_current_span(false)
            .try_init()
    } else {
        builder.with_writer(std::io::stderr).try_init()
    };
    // A second init (tests, the CLI calling into a function) keeps the first subscriber.
    let _ = result;
}
