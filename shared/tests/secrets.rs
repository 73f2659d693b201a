//! Secrets Manager against the local AWS emulator (`scripts/aws-emulator`).

mod aws_emulator;

use std::collections::HashMap;

use aws_sdk_secretsmanager::Client;
use b2b::adapters::secrets::fetch_secret;
use b2b::error::{Classify, FailureClass};
use b2b::lambda::event_function::EventFunction;

#[tokio::test]
async fn secret_fetched_and_errors_name_the_arn_not_the_value() {
    let Some(config) = aws_emulator::config("secret_fetched_and_errors_name_the_arn").await else {
        return;
    };
    let client = Client::new(&config);
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

    let binary = client
        .create_secret()
        .name(format!("{name}-binary"))
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(vec![1, 2, 3]))
        .send()
        .await
        .unwrap();
    let err = fetch_secret(&client, binary.arn().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no SecretString"), "{err}");
    assert_eq!(err.class(), FailureClass::Permanent);
}

#[tokio::test]
async fn secret_service_unreachable_is_transient() {
    let client = Client::new(&aws_emulator::unreachable().await);
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:b2b-abc";
    let err = fetch_secret(&client, arn).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Transient, "{err}");
    assert!(err.to_string().contains(arn), "{err}");
}

/// Start-up of a webhook function with `secret_string` behind `WEBHOOK_SECRETS_ARN`: the
/// error line, if any.
async fn start_with_webhook_secret(client: &Client, secret_string: &str) -> Option<String> {
    let name = format!("b2b-test-{}", uuid::Uuid::new_v4().simple());
    let created = client
        .create_secret()
        .name(&name)
        .secret_string(secret_string)
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |p: &str| dir.path().join(p).display().to_string();
    let env: HashMap<String, String> = [
        ("AZURE_TENANT_ID", "contoso.onmicrosoft.com".to_string()),
        (
            "AZURE_CLIENT_ID",
            "6a1f3e52-9c4d-4b8e-a7f0-2d5b8c9e1f34".to_string(),
        ),
        (
            "AZURE_CLIENT_SECRET",
            "unused-client-secret-0123456789".into(),
        ),
        ("LEDGER_PATH", path("ledger")),
        ("OUTBOX_DIR", path("outbox")),
        ("WEBHOOK_SECRETS_ARN", created.arn().unwrap().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    EventFunction::from_env("partner-signed", &["partner.signed"], true, &env)
        .await
        .err()
        .map(|e| e.to_string())
}

#[tokio::test]
async fn a_short_webhook_secret_behind_the_arn_fails_start_up_naming_the_variable() {
    let Some(config) = aws_emulator::config("a_short_webhook_secret_behind_the_arn").await else {
        return;
    };
    let client = Client::new(&config);
    assert_eq!(
        start_with_webhook_secret(&client, "long-enough-secret-0123,whsec-previous-0a9b8c7d").await,
        None
    );
    let line = start_with_webhook_secret(&client, "long-enough-secret-0123,short-secret")
        .await
        .expect("a 12-character secret was accepted");
    assert!(line.contains("WEBHOOK_SECRETS_ARN"), "{line}");
    assert!(line.contains("at least 16 characters"), "{line}");
    assert!(
        !line.contains("short-secret") && !line.contains('\n'),
        "{line}"
    );
}
