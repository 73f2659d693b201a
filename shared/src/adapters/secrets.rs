//! Secrets Manager: the client secret (`AZURE_CLIENT_SECRET_ARN`) and the webhook secrets
//! (`WEBHOOK_SECRETS_ARN`) are read at start. Errors name the ARN, never the value.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};

use crate::error::{Classify, FailureClass};

#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    #[error("secret {arn}: {code}: {message}")]
    Refused {
        arn: String,
        code: String,
        message: String,
    },
    #[error("secret {arn}: Secrets Manager unavailable: {detail}")]
    Unavailable { arn: String, detail: String },
    #[error("secret {arn}: throttled: {detail}")]
    Throttled { arn: String, detail: String },
    #[error("secret {arn}: {problem}")]
    Unusable { arn: String, problem: String },
}

impl Classify for SecretError {
    fn class(&self) -> FailureClass {
        match self {
            SecretError::Unavailable { .. } => FailureClass::Transient,
            SecretError::Throttled { .. } => FailureClass::Throttled,
            SecretError::Refused { .. } | SecretError::Unusable { .. } => FailureClass::Permanent,
        }
    }
}

/// The secret's `SecretString`, as stored.
pub async fn fetch_secret(client: &Client, arn: &str) -> Result<String, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            let status = e.raw_response().map(|r| r.status().as_u16());
            match (e.code(), status) {
                (Some("ThrottlingException" | "TooManyRequestsException"), _) | (_, Some(429)) => {
                    SecretError::Throttled {
                        arn: arn.to_string(),
                        detail: e.message().unwrap_or("slow down").to_string(),
                    }
                }
                (Some(code), Some(status)) if status < 500 => SecretError::Refused {
                    arn: arn.to_string(),
                    code: code.to_string(),
                    message: e.message().unwrap_or("no message").to_string(),
                },
                _ => SecretError::Unavailable {
                    arn: arn.to_string(),
                    detail: DisplayErrorContext(&e).to_string(),
                },
            }
        })?;
    match out.secret_string() {
        Some(value) if !value.trim().is_empty() => Ok(value.to_string()),
        Some(_) => Err(SecretError::Unusable {
            arn: arn.to_string(),
            problem: "the SecretString is empty".into(),
        }),
        None => Err(SecretError::Unusable {
            arn: arn.to_string(),
            problem: "has no SecretString (binary secrets are not supported)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Secrets Manager client for the local AWS emulator; `None` when skipped on purpose.
    async fn emulator_client(test: &str) -> Option<Client> {
        let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())
        else {
            if std::env::var("B2B_SKIP_AWS_EMULATOR").as_deref() == Ok("1") {
                eprintln!(
                    "SKIPPED {test}: B2B_SKIP_AWS_EMULATOR=1 and AWS_ENDPOINT_URL is not set, \
                     so Secrets Manager is not tested"
                );
                return None;
            }
            panic!(
                "{test}: AWS_ENDPOINT_URL is not set. This test needs the local AWS emulator: run \
                 `scripts/aws-emulator start && eval \"$(scripts/aws-emulator env)\"` in the \
                 repository root, then run the tests again (or set B2B_SKIP_AWS_EMULATOR=1 to \
                 skip them on purpose)"
            );
        };
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new(
                std::env::var("AWS_REGION").unwrap_or_else(|_| "eu-west-1".into()),
            ))
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "testing", "testing", None, None, "emulator",
            ))
            .load()
            .await;
        Some(Client::new(&config))
    }

    #[tokio::test]
    async fn secret_fetched_and_errors_name_the_arn_not_the_value() {
        let Some(client) = emulator_client("secret_fetched_and_errors_name_the_arn").await else {
            return;
        };
        let name = format!("b2b-test-{}", uuid::Uuid::new_v4().simple());
        let value = "s3cr3t-value,second-secret-value";
        let created = client
            .create_secret()
            .name(&name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
        let arn = created.arn().unwrap().to_string();
        assert_eq!(fetch_secret(&client, &arn).await.unwrap(), value);

        let missing = arn.replace(&name, &format!("{name}-missing"));
        let err = fetch_secret(&client, &missing).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&missing), "{msg}");
        assert!(msg.contains("ResourceNotFoundException"), "{msg}");
        assert!(!msg.contains("s3cr3t"), "{msg}");
        assert_eq!(err.class(), FailureClass::Permanent);

        let binary = format!("{name}-binary");
        let created = client
            .create_secret()
            .name(&binary)
            .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(vec![1, 2, 3]))
            .send()
            .await
            .unwrap();
        let err = fetch_secret(&client, created.arn().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no SecretString"), "{err}");
    }

    #[tokio::test]
    async fn secret_service_unreachable_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:b2b-abc";
        let err = fetch_secret(&Client::new(&config), arn).await.unwrap_err();
        assert_eq!(err.class(), FailureClass::Transient, "{err}");
        assert!(err.to_string().contains(arn), "{err}");
    }
}
