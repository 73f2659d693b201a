//! Secrets Manager against the local AWS emulator (`scripts/aws-emulator`).

mod aws_emulator;

use aws_sdk_secretsmanager::Client;
use b2b::adapters::secrets::fetch_secret;
use b2b::error::{Classify, FailureClass};

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
