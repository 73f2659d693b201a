//! Webhook secrets (SPEC section 4), from `WEBHOOK_SECRETS` or the Secrets Manager secret
//! `WEBHOOK_SECRETS_ARN` names.

use super::{ConfigError, Env, arn_of};

/// Webhook secrets (SPEC section 4): several, for rotation. `Debug` is written by hand: it
/// never shows the secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum WebhookSecrets {
    Values(Vec<String>),
    Arn(String),
}

impl WebhookSecrets {
    pub fn from_env(env: &dyn Env) -> Result<Option<Self>, ConfigError> {
        if let Some(values) = env.var("WEBHOOK_SECRETS") {
            return webhook_secrets("WEBHOOK_SECRETS", &values)
                .map(|secrets| Some(WebhookSecrets::Values(secrets)));
        }
        env.var("WEBHOOK_SECRETS_ARN")
            .map(|arn| arn_of("WEBHOOK_SECRETS_ARN", arn).map(WebhookSecrets::Arn))
            .transpose()
    }
}

/// Fewest characters of one webhook secret: a shorter one could be guessed.
pub const MIN_WEBHOOK_SECRET: usize = 16;

/// The secrets `variable` holds (itself, or the Secrets Manager secret it names), each at
/// least [`MIN_WEBHOOK_SECRET`] long wherever it was read from. Errors never quote a secret.
pub fn webhook_secrets(variable: &'static str, values: &str) -> Result<Vec<String>, ConfigError> {
    let secrets = split_secrets(values);
    if secrets.is_empty() {
        return Err(ConfigError::new(variable, "no secret given"));
    }
    if secrets.iter().any(|s| s.len() < MIN_WEBHOOK_SECRET) {
        return Err(ConfigError::new(
            variable,
            format!("each secret must be at least {MIN_WEBHOOK_SECRET} characters"),
        ));
    }
    Ok(secrets)
}

/// Comma-separated secrets, as stored in the variable or in Secrets Manager.
pub fn split_secrets(values: &str) -> Vec<String> {
    values
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_env as env;

    #[test]
    fn webhook_secrets_from_secrets_manager_meet_the_same_minimum() {
        let e = webhook_secrets("WEBHOOK_SECRETS_ARN", "too-short,long-enough-secret-0123")
            .unwrap_err();
        assert_eq!(e.variable, "WEBHOOK_SECRETS_ARN");
        let line = e.to_string();
        assert!(line.contains("at least 16 characters"), "{line}");
        assert!(
            !line.contains("too-short") && !line.contains('\n'),
            "{line}"
        );
        let e = webhook_secrets("WEBHOOK_SECRETS_ARN", " , ").unwrap_err();
        assert_eq!(e.variable, "WEBHOOK_SECRETS_ARN");
        assert_eq!(
            webhook_secrets(
                "WEBHOOK_SECRETS_ARN",
                "long-enough-secret-0123,exactly-16-chars"
            ),
            Ok(vec![
                "long-enough-secret-0123".to_string(),
                "exactly-16-chars".to_string()
            ])
        );
        let e = WebhookSecrets::from_env(&env(&[("WEBHOOK_SECRETS", "too-short")])).unwrap_err();
        assert_eq!(e.variable, "WEBHOOK_SECRETS");
    }
}
