//! partner-signed's signed webhook (SPEC section 4) end to end: function URL requests to the
//! compiled binary, against the dev tenant.

use std::time::Duration;

use anyhow::{Context, ensure};
use b2b::ports::ledger::EventKey;
use b2b_e2e::checks::{http_answer, invitation_posts, logs_are_clean};
use b2b_e2e::events::{cloud_event, http_request, signed_webhook};
use b2b_e2e::{FunctionProcess, TestEnv, WEBHOOK_SECRETS};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);
const SOURCE: &str = "urn:contracts:crm";

fn contract(id: &str, email: &str) -> String {
    let domain = email.rsplit('@').next().unwrap_or_default();
    cloud_event(
        "partner.signed",
        SOURCE,
        id,
        json!({
            "partner": { "id": "adatum", "name": "Adatum Corp.", "domains": [domain] },
            "contacts": [ { "email": email, "displayName": "Ray Chen" } ],
        }),
    )
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

async fn call(function: &FunctionProcess, request: Value) -> anyhow::Result<(u16, String, Value)> {
    let answer = function.invoke(request, INVOKE_TIMEOUT).await?;
    http_answer(&answer)
}

#[tokio::test]
async fn a_signed_webhook_is_processed_with_either_rotation_secret() -> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let control = env.control();
    let function = env.spawn("partner-signed").await?;

    let body = contract("contract-50", "ray@adatum.com");
    let (status, content_type, answer) =
        call(&function, signed_webhook(&body, WEBHOOK_SECRETS[0], now())).await?;
    ensure!(status == 200, "status {status}: {answer}");
    ensure!(
        content_type == "application/json",
        "content type {content_type}"
    );
    ensure!(
        answer["outcomes"][0]["result"] == "invited",
        "outcomes: {answer}"
    );

    // The secret being retired still signs, and a base64-encoded body is verified as the
    // raw bytes it decodes to.
    let body = contract("contract-51", "ann@adatum.com");
    let signature = b2b::domain::signature::sign(body.as_bytes(), WEBHOOK_SECRETS[1], now());
    let request = http_request(
        "POST",
        &[
            ("content-type", "application/json"),
            ("x-signature", &signature),
        ],
        body.as_bytes(),
        true,
    );
    let (status, _, answer) = call(&function, request).await?;
    ensure!(status == 200, "status {status}: {answer}");
    ensure!(
        invitation_posts(&control).len() == 2,
        "invitations: {:?}",
        invitation_posts(&control)
    );

    let output = function.stop().await;
    logs_are_clean(
        &output,
        &[
            WEBHOOK_SECRETS[0],
            WEBHOOK_SECRETS[1],
            &control.client_secret(),
        ],
        &["ray@adatum.com", "ann@adatum.com"],
    )?;
    Ok(())
}

#[tokio::test]
async fn forged_and_replayed_signatures_are_refused_with_401_and_change_nothing()
-> anyhow::Result<()> {
    let env = TestEnv::builder().start().await?;
    let control = env.control();
    let function = env.spawn("partner-signed").await?;
    let body = contract("contract-60", "ray@adatum.com");
    let other = contract("contract-61", "eve@adatum.com");

    let forged: Vec<(&str, Value)> = vec![
        (
            "no signature",
            http_request(
                "POST",
                &[("content-type", "application/json")],
                body.as_bytes(),
                false,
            ),
        ),
        (
            "a secret we do not hold",
            signed_webhook(&body, "whsec-attacker-guess-0000000000", now()),
        ),
        ("a signature over another body", {
            let signature =
                b2b::domain::signature::sign(other.as_bytes(), WEBHOOK_SECRETS[0], now());
            http_request(
                "POST",
                &[
                    ("content-type", "application/json"),
                    ("x-signature", &signature),
                ],
                body.as_bytes(),
                false,
            )
        }),
        (
            "a replay from ten minutes ago",
            signed_webhook(&body, WEBHOOK_SECRETS[0], now() - 600),
        ),
        (
            "a timestamp ten minutes ahead",
            signed_webhook(&body, WEBHOOK_SECRETS[0], now() + 600),
        ),
    ];
    for (what, request) in forged {
        let (status, content_type, problem) = call(&function, request).await?;
        ensure!(status == 401, "{what}: status {status}: {problem}");
        ensure!(
            content_type == "application/problem+json" && problem["status"] == 401,
            "{what}: not an RFC 9457 problem: {content_type} {problem}"
        );
    }
    ensure!(
        control.requests().iter().all(|r| !r.is_write),
        "a refused webhook wrote to Graph: {:?}",
        control.requests()
    );
    ensure!(
        control.user("ray@adatum.com").is_none(),
        "a refused webhook invited"
    );

    // The genuine request goes through, once.
    let genuine = signed_webhook(&body, WEBHOOK_SECRETS[0], now());
    let (status, _, answer) = call(&function, genuine.clone()).await?;
    ensure!(
        status == 200,
        "the genuine request failed: {status} {answer}"
    );
    ensure!(
        invitation_posts(&control).len() == 1,
        "invitations: {:?}",
        invitation_posts(&control)
    );
    let first = function.stop().await;

    // The same captured request, sent again ten minutes later, is a replay.
    let later = OffsetDateTime::now_utc() + time::Duration::minutes(10);
    let function = env
        .spawn_with("partner-signed", &[("B2B_NOW", &later.format(&Rfc3339)?)])
        .await?;
    let (status, _, problem) = call(&function, genuine).await?;
    ensure!(
        status == 401,
        "the replayed request was accepted: {status} {problem}"
    );
    let second = function.stop().await;

    ensure!(
        invitation_posts(&control).len() == 1,
        "invitations: {:?}",
        invitation_posts(&control)
    );
    let ledger = env.ledger().await?;
    let forged_effect = ledger
        .event(&EventKey::new("partner-signed", SOURCE, "contract-61"))
        .await?;
    ensure!(
        forged_effect.is_none(),
        "a forged request left a ledger record"
    );
    ensure!(
        ledger
            .event(&EventKey::new("partner-signed", SOURCE, "contract-60"))
            .await?
            .context("the genuine request left no record")?
            .outcomes
            .len()
            == 1,
        "the genuine request's record"
    );
    for output in [first, second] {
        logs_are_clean(
            &output,
            &[
                WEBHOOK_SECRETS[0],
                WEBHOOK_SECRETS[1],
                &control.client_secret(),
            ],
            &["ray@adatum.com", "eve@adatum.com"],
        )?;
    }
    Ok(())
}
