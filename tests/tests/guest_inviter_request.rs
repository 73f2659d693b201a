//! guest-inviter-request end to end (issue 4): the compiled binary, driven through the Lambda
//! Runtime API with function URL requests and SQS batches, against the dev tenant. The
//! partner and its inviter come from a partner.signed event processed first by the
//! partner-signed binary.

use std::time::Duration;

use anyhow::{Context, ensure};
use b2b::ports::ledger::{EventKey, EventStatus};
use b2b_dev_tenant::{API_APP_ID_URI, API_CLIENT_ID, MintToken, TokenVersion, UserType};
use b2b_e2e::checks::{
    batch_failures, group_id, http_answer, invitation_posts, logs_are_clean, user_id,
};
use b2b_e2e::events::{SqsMessage, cloud_event, http_request, sqs_batch, sqs_event};
use b2b_e2e::queue::WorkQueue;
use b2b_e2e::{FunctionProcess, LedgerKind, TestEnv, WEBHOOK_SECRETS};
use base64::Engine;
use serde_json::{Value, json};
use time::OffsetDateTime;

const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);
/// The dev tenant's API registration: v2.0 tokens name its client id, v1.0 tokens its App ID
/// URI ([`API_APP_ID_URI`], configured as well).
const AUDIENCE: &str = API_CLIENT_ID;
const PORTAL: &str = "urn:litware:partner-portal";
const FUNCTION: &str = "guest-inviter-request";

/// The registered partner: Litware, whose inviter is Sam, with the Partners group as its
/// access and Megan as its internal sponsor.
struct Litware {
    partners_group: String,
    falcon_group: String,
    megan: String,
    sam: String,
}

impl Litware {
    /// Registers the partner through the partner-signed binary and stops it (the embedded
    /// ledger serves one process at a time).
    async fn signed(env: &TestEnv) -> anyhow::Result<Litware> {
        let control = env.control();
        let partners_group = group_id(&control, "Partners")?;
        let falcon_group = group_id(&control, "Project Falcon")?;
        let contract = |id: &str, partner: &str, domain: &str, inviter: &str| {
            cloud_event(
                "partner.signed",
                "urn:contracts:crm",
                id,
                json!({
                    "partner": { "id": partner, "name": format!("{partner} Inc."), "domains": [domain] },
                    "contacts": [ { "email": inviter, "displayName": "Inviter", "inviter": true } ],
                    "access": { "groups": [partners_group] },
                    "sponsors": ["megan.bowen@contoso.com"],
                }),
            )
        };
        let litware = contract("contract-1", "litware", "litware.com", "sam@litware.com");
        let fabrikam = contract("contract-2", "fabrikam", "fabrikam.com", "fay@fabrikam.com");
        let function = env.spawn("partner-signed").await?;
        let answer = function
            .invoke(
                sqs_event(&[("m-1", &litware), ("m-2", &fabrikam)]),
                INVOKE_TIMEOUT,
            )
            .await?;
        ensure!(
            batch_failures(&answer)?.is_empty(),
            "partner.signed failed: {answer}\n{}",
            function.output().text()
        );
        function.stop().await;
        control.clear_requests();
        Ok(Litware {
            partners_group,
            falcon_group,
            megan: user_id(&control, "megan.bowen@contoso.com")?,
            sam: user_id(&control, "sam@litware.com")?,
        })
    }
}

fn request(id: &str, requested_by: &str, invitees: &[String], access: Option<Value>) -> String {
    let mut data = json!({
        "requestedBy": requested_by,
        "invitees": invitees.iter().map(|e| json!({ "email": e })).collect::<Vec<_>>(),
    });
    if let Some(access) = access {
        data["access"] = access;
    }
    cloud_event("guest.invite.requested", PORTAL, id, data)
}

fn colleagues(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("colleague{i}@litware.com"))
        .collect()
}

fn bearer(token: &str, body: &str) -> Value {
    b2b_e2e::events::bearer_request(token, body)
}

async fn call(function: &FunctionProcess, request: Value) -> anyhow::Result<(u16, String, Value)> {
    let answer = function.invoke(request, INVOKE_TIMEOUT).await?;
    http_answer(&answer)
}

fn token(env: &TestEnv, user: &str) -> anyhow::Result<String> {
    env.control().mint_token(MintToken::new(user, AUDIENCE))
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn environment(ledger: LedgerKind) -> anyhow::Result<TestEnv> {
    TestEnv::builder()
        .ledger(ledger)
        .var("API_AUDIENCE", AUDIENCE)
        .var("API_APP_ID_URI", API_APP_ID_URI)
        .start()
        .await
}

#[tokio::test]
async fn guest_inviter_invites_three_colleagues_with_a_valid_token() -> anyhow::Result<()> {
    let env = environment(LedgerKind::Embedded).await?;
    let control = env.control();
    let litware = Litware::signed(&env).await?;
    let function = env.spawn(FUNCTION).await?;
    let sam_token = token(&env, "sam@litware.com")?;

    let body = request("req-1", "sam@litware.com", &colleagues(3), None);
    let (status, content_type, answer) = call(&function, bearer(&sam_token, &body)).await?;
    ensure!(
        status == 200,
        "status {status}: {answer}\n{}",
        function.output().text()
    );
    ensure!(content_type == "application/json", "{content_type}");
    let outcomes = answer["outcomes"]
        .as_array()
        .context("no outcomes in the answer")?;
    ensure!(outcomes.len() == 3, "outcomes: {answer}");
    for (outcome, email) in outcomes.iter().zip(colleagues(3)) {
        ensure!(
            outcome["email"] == email.as_str() && outcome["result"] == "invited",
            "{answer}"
        );
        let guest = control
            .user(&email)
            .with_context(|| format!("{email} was not invited"))?;
        ensure!(guest.user_type == UserType::Guest, "{email} is no guest");
        ensure!(
            control
                .group_members(&litware.partners_group)
                .contains(&guest.id),
            "{email} lacks the partner's default access"
        );
        ensure!(
            !control
                .group_members(&litware.falcon_group)
                .contains(&guest.id),
            "{email} got access beyond the partner's"
        );
        ensure!(
            control.sponsors(&guest.id) == vec![litware.megan.clone()],
            "{email}: sponsors {:?}",
            control.sponsors(&guest.id)
        );
    }
    ensure!(invitation_posts(&control).len() == 3, "invitations");
    ensure!(
        env.outbox()?.len() == 3 + 2,
        "one mail per guest (and the two inviters)"
    );

    let output = function.stop().await;
    let ledger = env.ledger().await?;
    let record = ledger
        .event(&EventKey::new("guest-inviter-request", PORTAL, "req-1"))
        .await?
        .context("the request left no record")?;
    ensure!(record.status == EventStatus::Completed, "{record:?}");
    ensure!(
        record.actor.as_deref() == Some(litware.sam.as_str()),
        "{record:?}"
    );
    let mut addresses = colleagues(3);
    addresses.push("sam@litware.com".into());
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    logs_are_clean(&output, &[&sam_token, &control.client_secret()], &addresses)?;
    Ok(())
}

#[tokio::test]
async fn guest_inviter_refuses_bad_tokens_with_401_and_invites_nobody() -> anyhow::Result<()> {
    let env = environment(LedgerKind::Embedded).await?;
    let control = env.control();
    Litware::signed(&env).await?;
    // Signed by a key the tenant has since retired: minted before the rotation.
    let stale_key = token(&env, "sam@litware.com")?;
    control.rotate_signing_key()?;
    control.retire_old_keys();
    let function = env.spawn(FUNCTION).await?;

    let mint = |f: &dyn Fn(&mut MintToken)| {
        let mut m = MintToken::new("sam@litware.com", AUDIENCE);
        f(&mut m);
        control.mint_token(m)
    };
    let valid = token(&env, "sam@litware.com")?;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(valid.split('.').nth(1).context("token without claims")?)?,
    )?;
    let kid = control.signing_key_ids()[0].clone();
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT", "kid": kid })),
        b64(&claims)
    );
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"a-guessable-shared-secret"),
    )?;
    let cases: Vec<(&str, String, &str)> = vec![
        ("signed by an unknown key", stale_key, "does not publish"),
        (
            "expired",
            mint(&|m| m.lifetime = time::Duration::minutes(-10))?,
            "expired",
        ),
        (
            "not yet valid",
            mint(&|m| m.not_before = time::Duration::minutes(10))?,
            "not valid before",
        ),
        (
            "for another API (its client id)",
            mint(&|m| m.audience = "0f9d4c1e-3a2b-4c5d-8e7f-6a5b4c3d2e1f".into())?,
            "aud",
        ),
        (
            // Entra never issues it; forged with the tenant's key.
            "v2.0 naming the App ID URI",
            mint(&|m| {
                m.extra_claims.insert("aud".into(), json!(API_APP_ID_URI));
            })?,
            "aud",
        ),
        (
            "v1.0 with the v2.0 issuer",
            mint(&|m| {
                m.version = TokenVersion::V1;
                m.audience = API_APP_ID_URI.into();
                let v2_issuer =
                    format!("{}/{}/v2.0", control.authority_host(), control.tenant_id());
                m.extra_claims.insert("iss".into(), json!(v2_issuer));
            })?,
            "iss",
        ),
        (
            "app-only",
            control.mint_token(MintToken::app_only(
                TokenVersion::V2,
                &["Invitations.Request.All"],
            ))?,
            "app-only",
        ),
        (
            "without scp",
            mint(&|m| {
                m.extra_claims.insert("scp".into(), Value::Null);
            })?,
            "no scp",
        ),
        (
            "from another issuer",
            mint(&|m| {
                m.extra_claims.insert(
                    "iss".into(),
                    json!("https://login.microsoftonline.com/another-tenant/v2.0"),
                );
            })?,
            "iss",
        ),
        ("alg none", alg_none, "alg 'none'"),
        ("HS256", hs256, "alg 'HS256'"),
    ];
    let body = request("req-2", "sam@litware.com", &colleagues(1), None);
    for (what, token, reason) in cases {
        let (status, content_type, problem) = call(&function, bearer(&token, &body)).await?;
        ensure!(status == 401, "{what}: status {status}: {problem}");
        ensure!(
            content_type == "application/problem+json" && problem["status"] == 401,
            "{what}: not an RFC 9457 problem: {content_type} {problem}"
        );
        ensure!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(reason),
            "{what}: {problem}"
        );
    }
    ensure!(
        control.requests().iter().all(|r| !r.is_write),
        "a refused token led to a Graph write: {:?}",
        control.requests()
    );
    ensure!(control.user("colleague1@litware.com").is_none(), "invited");

    // The same request with a sound token goes through: v2.0 for the client id...
    let (status, _, answer) = call(&function, bearer(&valid, &body)).await?;
    ensure!(status == 200, "status {status}: {answer}");
    ensure!(invitation_posts(&control).len() == 1, "invitations");
    // ...and v1.0 for the App ID URI.
    let v1 = control.mint_token(MintToken::v1("sam@litware.com", API_APP_ID_URI))?;
    let body = request(
        "req-2-v1",
        "sam@litware.com",
        &["colleague2@litware.com".into()],
        None,
    );
    let (status, _, answer) = call(&function, bearer(&v1, &body)).await?;
    ensure!(status == 200, "v1.0 token: status {status}: {answer}");
    ensure!(invitation_posts(&control).len() == 2, "invitations");
    let output = function.stop().await;
    logs_are_clean(
        &output,
        &[&valid, &v1],
        &["colleague1@litware.com", "colleague2@litware.com"],
    )?;
    Ok(())
}

#[tokio::test]
async fn guest_inviter_signature_mode_refuses_forged_stale_and_missing_signatures()
-> anyhow::Result<()> {
    let env = environment(LedgerKind::Embedded).await?;
    let control = env.control();
    Litware::signed(&env).await?;
    let function = env.spawn(FUNCTION).await?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let body = request("req-3", "sam@litware.com", &colleagues(2), None);
    let signed = |secret: &str, t: i64| {
        let signature = b2b::domain::signature::sign(body.as_bytes(), secret, t);
        http_request(
            "POST",
            &[
                ("content-type", "application/json"),
                ("x-signature", &signature),
            ],
            body.as_bytes(),
            false,
        )
    };
    let cases = vec![
        ("forged", signed("whsec-attacker-guess-0000000000", now)),
        ("ten minutes old", signed(WEBHOOK_SECRETS[0], now - 600)),
        (
            "missing",
            http_request(
                "POST",
                &[("content-type", "application/json")],
                body.as_bytes(),
                false,
            ),
        ),
    ];
    for (what, req) in cases {
        let (status, _, problem) = call(&function, req).await?;
        ensure!(status == 401, "{what}: status {status}: {problem}");
    }
    ensure!(
        invitation_posts(&control).is_empty(),
        "a refused request invited"
    );

    // Genuine: the system vouches for Sam.
    let (status, _, answer) = call(&function, signed(WEBHOOK_SECRETS[1], now)).await?;
    ensure!(status == 200, "status {status}: {answer}");
    ensure!(invitation_posts(&control).len() == 2, "invitations");
    function.stop().await;
    let ledger = env.ledger().await?;
    ensure!(
        ledger
            .event(&EventKey::new("guest-inviter-request", PORTAL, "req-3"))
            .await?
            .context("no record")?
            .actor
            .is_some(),
        "the signed request's record names no requester"
    );
    Ok(())
}

#[tokio::test]
async fn guest_inviter_refuses_what_the_partner_may_not_ask_and_bad_bodies() -> anyhow::Result<()> {
    let env = environment(LedgerKind::Embedded).await?;
    let control = env.control();
    let litware = Litware::signed(&env).await?;
    let function = env.spawn(FUNCTION).await?;
    let sam = token(&env, "sam@litware.com")?;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "an invitee in another partner's domain",
            request(
                "req-4",
                "sam@litware.com",
                &["ann@litware.com".into(), "bob@fabrikam.com".into()],
                None,
            ),
            403,
            "bob@fabrikam.com",
        ),
        (
            "an invitee in the tenant's own domain",
            request(
                "req-5",
                "sam@litware.com",
                &["pat@contoso.com".into()],
                None,
            ),
            403,
            "pat@contoso.com",
        ),
        (
            "a privileged group",
            request(
                "req-6",
                "sam@litware.com",
                &["ann@litware.com".into()],
                Some(json!({ "groups": [litware.falcon_group] })),
            ),
            403,
            &litware.falcon_group,
        ),
        (
            "requestedBy naming someone else",
            request("req-7", &litware.megan, &["ann@litware.com".into()], None),
            403,
            "requestedBy",
        ),
        (
            "501 invitees",
            request("req-8", "sam@litware.com", &colleagues(501), None),
            413,
            "at most 500",
        ),
        (
            "malformed JSON",
            "{\"specversion\": \"1.0\", \"id\": ".to_string(),
            400,
            "not JSON",
        ),
    ];
    let mut refusals = Vec::new();
    for (what, body, expected, names) in &cases {
        let (status, content_type, problem) = call(&function, bearer(&sam, body)).await?;
        refusals.push(problem.clone());
        ensure!(status == *expected, "{what}: status {status}: {problem}");
        ensure!(
            content_type == "application/problem+json",
            "{what}: {content_type}"
        );
        ensure!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(names),
            "{what}: the problem does not name '{names}': {problem}"
        );
    }
    let auth = format!("Bearer {sam}");
    let body = request("req-9", "sam@litware.com", &colleagues(1), None);
    let (status, _, problem) = call(
        &function,
        http_request(
            "POST",
            &[("content-type", "text/plain"), ("authorization", &auth)],
            body.as_bytes(),
            false,
        ),
    )
    .await?;
    ensure!(status == 415, "text/plain: status {status}: {problem}");
    ensure!(
        control.requests().iter().all(|r| !r.is_write),
        "a refused request wrote to Graph"
    );
    ensure!(control.user("ann@litware.com").is_none(), "ann was invited");
    function.stop().await;

    // Every refusal is recorded with its requester and reason, under the HTTP request's own
    // key (the problem's `record`), never under the key the request named.
    let ledger = env.ledger().await?;
    for id in ["req-4", "req-5", "req-6", "req-8"] {
        let named = EventKey::new(FUNCTION, PORTAL, id);
        ensure!(
            ledger.event(&named).await?.is_none(),
            "{id}: a refusal took the request's key"
        );
        let problem = refusals
            .iter()
            .find(|p| p["request"] == named.to_string())
            .with_context(|| format!("{id}: no problem names the request"))?;
        let (source, record_id) = problem["record"]
            .as_str()
            .and_then(|r| r.split_once('#'))
            .with_context(|| format!("{id}: no record in {problem}"))?;
        let record = ledger
            .event(&EventKey::new(FUNCTION, source, record_id))
            .await?
            .with_context(|| format!("{id} left no record"))?;
        ensure!(record.status == EventStatus::Rejected, "{id}: {record:?}");
        ensure!(record.reason.is_some(), "{id}: no reason");
        ensure!(
            record.actor.as_deref() == Some(litware.sam.as_str()),
            "{id}: actor {:?}",
            record.actor
        );
    }
    Ok(())
}

#[tokio::test]
async fn guest_inviter_queues_300_invitees_and_invites_each_exactly_once() -> anyhow::Result<()> {
    let env = TestEnv::builder()
        .ledger(LedgerKind::Dynamo)
        .var("API_AUDIENCE", AUDIENCE)
        .var("GRAPH_MAX_WRITES_PER_SECOND", "40")
        .start()
        .await?;
    let control = env.control();
    let queue = WorkQueue::create(&env).await?;
    let queue_url = queue.url.clone();
    let litware = Litware::signed(&env).await?;
    let function = env
        .spawn_with(FUNCTION, &[("WORK_QUEUE_URL", &queue_url)])
        .await?;
    let sam = token(&env, "sam@litware.com")?;

    let invitees = colleagues(300);
    let body = request("req-300", "sam@litware.com", &invitees, None);
    let (status, _, answer) = call(&function, bearer(&sam, &body)).await?;
    ensure!(
        status == 202,
        "status {status}: {answer}\n{}",
        function.output().text()
    );
    let request_id = answer["requestId"]
        .as_str()
        .context("202 without a requestId")?
        .to_string();
    ensure!(
        invitation_posts(&control).is_empty(),
        "invited before queueing"
    );
    // The same request sent again queues nothing more.
    let (status, _, again) = call(&function, bearer(&sam, &body)).await?;
    ensure!(
        status == 202 && again["status"] == "duplicate",
        "{status}: {again}"
    );

    // The parts, as SQS holds them.
    let messages = queue.drain().await?;
    ensure!(
        messages.len() == answer["parts"].as_u64().unwrap_or_default() as usize,
        "{} messages on the queue for {answer}",
        messages.len()
    );

    // Delivered in batches of five, then every batch delivered again.
    for round in 0..2 {
        for chunk in messages.chunks(5) {
            let chunk: Vec<SqsMessage> = chunk
                .iter()
                .cloned()
                .map(|m| if round == 0 { m } else { m.redelivered() })
                .collect();
            let answer = function.invoke(sqs_batch(&chunk), INVOKE_TIMEOUT).await?;
            ensure!(
                batch_failures(&answer)?.is_empty(),
                "round {round}: {answer}\n{}",
                function.output().text()
            );
        }
    }
    let posts = invitation_posts(&control);
    ensure!(
        posts.len() == 300,
        "{} invitations for 300 invitees",
        posts.len()
    );
    for email in &invitees {
        let guest = control
            .user(email)
            .with_context(|| format!("{email} was not invited"))?;
        ensure!(
            control
                .group_members(&litware.partners_group)
                .contains(&guest.id),
            "{email} lacks the partner's access"
        );
    }
    let output = function.stop().await;

    let ledger = env.ledger().await?;
    let mut recorded = 0;
    for n in 1..=messages.len() {
        let part = ledger
            .event(&EventKey::new(
                "guest-inviter-request",
                "guest-inviter-request",
                format!("{request_id}/part-{n}"),
            ))
            .await?
            .with_context(|| format!("part {n} left no record"))?;
        ensure!(part.status == EventStatus::Completed, "part {n}: {part:?}");
        recorded += part.outcomes.len();
    }
    ensure!(recorded == 300, "{recorded} per-invitee results recorded");
    let request = ledger
        .event(&EventKey::new("guest-inviter-request", PORTAL, "req-300"))
        .await?
        .context("the request left no record")?;
    ensure!(request.status == EventStatus::Accepted, "{request:?}");
    logs_are_clean(
        &output,
        &[&sam],
        &["colleague1@litware.com", "colleague300@litware.com"],
    )?;
    queue.delete().await?;
    Ok(())
}

/// The inviter's token is Entra's word that the user exists: a user Graph does not show yet
/// (created moments ago) is a 503 to send again, not a refusal, and nothing is recorded.
#[tokio::test]
async fn an_inviter_graph_does_not_show_yet_is_asked_to_retry_not_refused() -> anyhow::Result<()> {
    let env = environment(LedgerKind::Embedded).await?;
    let control = env.control();
    Litware::signed(&env).await?;
    // Sam was invited a moment ago; Graph answers 404 for him for the next minute.
    control.set_replication_delay(Some(Duration::from_secs(60)));
    let function = env.spawn(FUNCTION).await?;
    let sam_token = token(&env, "sam@litware.com")?;
    let body = request("req-lag", "sam@litware.com", &colleagues(1), None);

    let (status, _, answer) = call(&function, bearer(&sam_token, &body)).await?;
    ensure!(status == 503, "status {status}: {answer}");
    ensure!(
        invitation_posts(&control).is_empty(),
        "invited while refused"
    );

    control.set_replication_delay(None);
    let (status, _, answer) = call(&function, bearer(&sam_token, &body)).await?;
    ensure!(status == 200, "status {status}: {answer}");
    function.stop().await;
    let record = env
        .ledger()
        .await?
        .event(&EventKey::new(FUNCTION, PORTAL, "req-lag"))
        .await?
        .context("no record")?;
    ensure!(record.status == EventStatus::Completed, "{record:?}");
    Ok(())
}
