//! `Debug` for the configuration types that hold secrets, written by hand so that a `{:?}`
//! in a log line or a panic message cannot leak a client secret or a webhook secret.
//! Where a secret comes from (an ARN, a file path) is not secret and stays visible.

use std::fmt;

use super::{CredentialSource, WebhookSecrets};

const REDACTED: &str = "<redacted>";

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Secret(_) => f.debug_tuple("Secret").field(&REDACTED).finish(),
            CredentialSource::SecretArn(arn) => f.debug_tuple("SecretArn").field(arn).finish(),
            CredentialSource::Certificate(path) => {
                f.debug_tuple("Certificate").field(path).finish()
            }
            CredentialSource::FederatedTokenFile(path) => {
                f.debug_tuple("FederatedTokenFile").field(path).finish()
            }
            CredentialSource::AwsWebIdentity => f.write_str("AwsWebIdentity"),
        }
    }
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookSecrets::Values(values) => f
                .debug_struct("Values")
                .field("count", &values.len())
                .field("secrets", &REDACTED)
                .finish(),
            WebhookSecrets::Arn(arn) => f.debug_tuple("Arn").field(arn).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AzureConfig, Env};
    use super::*;

    const CLIENT_SECRET: &str = "Xy18Q~client-secret-value-0123456789abcdef";
    const WEBHOOK_SECRET: &str = "whsec-do-not-log-me-0123456789";

    use crate::config::test_env as env;

    #[test]
    fn debug_output_never_shows_a_secret() {
        let vars = env(&[
            ("AZURE_TENANT_ID", "contoso.onmicrosoft.com"),
            ("AZURE_CLIENT_ID", "6a1f3e52-9c4d-4b8e-a7f0-2d5b8c9e1f34"),
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET),
            (
                "WEBHOOK_SECRETS",
                &format!("{WEBHOOK_SECRET},{WEBHOOK_SECRET}-previous"),
            ),
        ]);
        let azure = AzureConfig::require(&vars as &dyn Env).unwrap();
        let shown = format!("{azure:?} {azure:#?} {:?}", azure.credential);
        assert!(!shown.contains(CLIENT_SECRET), "{shown}");
        assert!(!shown.contains("client-secret-value"), "{shown}");
        assert!(shown.contains("Secret(\"<redacted>\")"), "{shown}");
        assert!(shown.contains("contoso.onmicrosoft.com"), "{shown}");

        let webhooks = WebhookSecrets::from_env(&vars).unwrap().unwrap();
        let shown = format!("{webhooks:?} {webhooks:#?} {:?}", Some(&webhooks));
        assert!(!shown.contains("do-not-log-me"), "{shown}");
        assert!(shown.contains("count: 2"), "{shown}");

        // Where a secret lives is not secret: the ARN stays visible for diagnosis.
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:b2b-abc";
        let shown = format!("{:?}", CredentialSource::SecretArn(arn.into()));
        assert!(shown.contains(arn), "{shown}");
    }
}
