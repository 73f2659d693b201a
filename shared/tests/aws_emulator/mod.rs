//! The local AWS emulator (moto, started by `scripts/aws-emulator`) for the adapter tests.
//!
//! Tests that need it fail when `AWS_ENDPOINT_URL` is not set, saying how to start it,
//! unless `B2B_SKIP_AWS_EMULATOR=1` skips them on purpose. Credentials are fixed test
//! values, so these tests can never reach a real AWS account with someone's credentials.

#![allow(dead_code)]

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

/// The emulator's SDK configuration, or `None` when the emulator tests are skipped.
pub async fn config(test: &str) -> Option<SdkConfig> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let Some(endpoint) = endpoint else {
        if std::env::var("B2B_SKIP_AWS_EMULATOR").as_deref() == Ok("1") {
            eprintln!(
                "SKIPPED {test}: B2B_SKIP_AWS_EMULATOR=1 and AWS_ENDPOINT_URL is not set, so this \
                 adapter is not tested against the AWS emulator"
            );
            return None;
        }
        panic!(
            "{test}: AWS_ENDPOINT_URL is not set. This test needs the local AWS emulator: run \
             `scripts/aws-emulator start && eval \"$(scripts/aws-emulator env)\"` in the \
             repository root, then run the tests again (or set B2B_SKIP_AWS_EMULATOR=1 to skip \
             the emulator tests on purpose)"
        );
    };
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "eu-west-1".into());
    Some(with_endpoint(&endpoint, Region::new(region)).await)
}

/// The emulator's base URL, for its own inspection API (`/moto-api/...`).
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL")
}

/// A configuration pointing at a local port nothing listens on, without retries: for tests
/// of how an unreachable service is classified.
pub async fn unreachable() -> SdkConfig {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    with_endpoint(
        &format!("http://127.0.0.1:{port}"),
        Region::new("eu-west-1"),
    )
    .await
    .into_builder()
    .retry_config(aws_config::retry::RetryConfig::disabled())
    .build()
}

async fn with_endpoint(endpoint: &str, region: Region) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(region)
        .credentials_provider(Credentials::new(
            "testing", "testing", None, None, "emulator",
        ))
        .load()
        .await
}
