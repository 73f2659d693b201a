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
