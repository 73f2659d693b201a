//! guest-inviter-request at library level: the handler and the self-service use case against
//! the dev tenant and the embedded ledger (bearer tokens, signatures, authorisation, sizes,
//! inline and queued work).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use b2b::app::circuit::CircuitGate;
use b2b::app::self_service::{Answer, Caller, PART_SIZE, PART_SOURCE, PartProcessed, SelfService};
use b2b::domain::access::Access;
use b2b::lambda::guest_inviter_request::GuestInviterRequest;
use b2b::lambda::serve::Handler;
use b2b::ports::ledger::{EventKey, EventStatus, InviteeResult, Inviter, PartnerRecord};
use b2b::ports::queue::{QueueError, QueuedPart, WorkQueue};
use b2b_dev_tenant::{
    DevTenant, DevTenantOptions, Fault, FaultKind, MintToken, NewUser, Seed, UserType, WriteLimit,
};
use base64::Engine;
use serde_json::{Value, json};
use tempfile::TempDir;
use time::OffsetDateTime;
use tokio::time::Instant;

/// The dev tenant's API registration: v2.0 tokens name its client id.
const AUDIENCE: &str = b2b_dev_tenant::API_CLIENT_ID;
const SECRET: &str = "whsec-self-service-4f1e2d3c";
const SOURCE: &str = "urn:partner-portal";

struct World {
    tenant: DevTenant,
    handler: GuestInviterRequest,
    sam: String,
    partners_group: String,
    falcon_group: String,
    megan: String,
    _dir: TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DevTenantOptions::new(dir.path().join("tenant"));
    options.seed = Seed::Demo;
    options.write_limit = Some(WriteLimit::unlimited());
    let tenant = DevTenant::start(options).await.unwrap();
    let control = tenant.control();
    let mut env: HashMap<String, String> = tenant.env().into_iter().collect();
    for (k, v) in [
        (
            "LEDGER_PATH",
            dir.path().join("ledger").display().to_string(),
        ),
        (
            "OUTBOX_DIR",
            dir.path().join("outbox").display().to_string(),
        ),
        ("MAIL_FROM", "Contoso IT <it@contoso.com>".to_string()),
        ("WEBHOOK_SECRETS", SECRET.to_string()),
        ("API_AUDIENCE", AUDIENCE.to_string()),
    ] {
        env.insert(k.into(), v);
    }
    let sam = control.add_user(NewUser {
        display_name: "Sam Lee".into(),
        mail: "sam@litware.com".into(),
        user_type: UserType::Guest,
        ..NewUser::default()
    });
    let group = |name: &str| {
        control
            .groups()
            .into_iter()
            .find(|g| g.display_name == name)
            .unwrap()
            .id
    };
    let partners_group = group("Partners");
    let falcon_group = group("Project Falcon");
    let megan = control.user("megan.bowen@contoso.com").unwrap().id;
    let handler = GuestInviterRequest::from_env(&env).await.unwrap();
    let mut access = Access::default();
    access.groups.insert(partners_group.clone());
    let ledger = &handler.runtime.ledger;
    ledger
        .put_partner(&PartnerRecord {
            id: "litware".into(),
            name: "Litware Inc.".into(),
            domains: vec!["litware.com".into()],
            inviters: vec![Inviter {
                email: "sam@litware.com".into(),
                user_id: None,
            }],
            access,
            sponsors: vec!["megan.bowen@contoso.com".into()],
            trust: None,
            updated_at: OffsetDateTime::now_utc(),
            ended_at: None,
        })
        .await
        .unwrap();
    ledger
        .put_partner(&PartnerRecord {
            id: "fabrikam".into(),
            name: "Fabrikam".into(),
            domains: vec!["fabrikam.com".into()],
            inviters: vec![],
            access: Access::default(),
            sponsors: vec![],
            trust: None,
            updated_at: OffsetDateTime::now_utc(),
            ended_at: None,
        })
        .await
        .unwrap();
    World {
        tenant,
        handler,
        sam: sam.id,
        partners_group,
        falcon_group,
        megan,
        _dir: dir,
    }
}

impl World {
    fn token(&self) -> String {
        self.tenant
            .control()
            .mint_token(MintToken::new(self.sam.clone(), AUDIENCE))
            .unwrap()
    }

    async fn call(&self, headers: &[(&str, &str)], body: &str) -> (u16, Value, Value) {
        let mut h = serde_json::Map::new();
        for (k, v) in headers {
            h.insert(k.to_string(), json!(v));
        }
        let payload = json!({
            "version": "2.0", "rawPath": "/", "headers": h,
            "requestContext": {"http": {"method": "POST"}, "requestId": uuid::Uuid::new_v4().to_string()},
            "body": body, "isBase64Encoded": false,
        });
        let answer = self
            .handler
            .handle(payload, Instant::now() + Duration::from_secs(120))
            .await
            .unwrap();
        let status = answer["statusCode"].as_u64().unwrap() as u16;
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        (status, answer["headers"].clone(), body)
    }

    async fn with_token(&self, token: &str, body: &str) -> (u16, Value, Value) {
        let auth = format!("Bearer {token}");
        self.call(
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            body,
        )
        .await
    }

    fn invitations(&self) -> usize {
        self.tenant
            .control()
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/invitations"))
            .count()
    }
}

fn request(id: &str, requested_by: &str, invitees: &[String], access: Option<Value>) -> String {
    let mut data = json!({
        "requestedBy": requested_by,
        "invitees": invitees.iter().map(|e| json!({"email": e})).collect::<Vec<_>>(),
    });
    if let Some(a) = access {
        data["access"] = a;
    }
    json!({"specversion": "1.0", "id": id, "source": SOURCE,
           "type": "guest.invite.requested", "data": data})
    .to_string()
}

fn colleagues(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("colleague{i}@litware.com"))
        .collect()
}

#[tokio::test]
async fn self_service_inviter_invites_three_colleagues_inline() {
    let w = world().await;
    let body = request("r-1", &w.sam, &colleagues(3), None);
    let (status, _, answer) = w.with_token(&w.token(), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "processed");
    let outcomes = answer["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 3, "{answer}");
    let control = w.tenant.control();
    for (o, email) in outcomes.iter().zip(colleagues(3)) {
        assert_eq!(o["result"], "invited", "{answer}");
        let guest = control.user(&email).expect("guest exists");
        assert_eq!(guest.user_type, UserType::Guest);
        assert!(control.group_members(&w.partners_group).contains(&guest.id));
        assert!(!control.group_members(&w.falcon_group).contains(&guest.id));
        assert_eq!(control.sponsors(&guest.id), vec![w.megan.clone()]);
    }
    assert_eq!(w.invitations(), 3);

    // The same request again: nothing done again, the recorded outcomes answered.
    let (status, _, again) = w.with_token(&w.token(), &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "duplicate");
    assert_eq!(w.invitations(), 3);

    let record = w
        .handler
        .runtime
        .ledger
        .event(&EventKey::new("guest-inviter-request", SOURCE, "r-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, EventStatus::Completed);
    assert_eq!(record.actor.as_deref(), Some(w.sam.as_str()));
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn entra_token_faults_are_401_and_invite_nobody() {
    let w = world().await;
    let control = w.tenant.control();
    let body = request("r-2", &w.sam, &colleagues(1), None);
    let mint = |f: &dyn Fn(&mut MintToken)| {
        let mut m = MintToken::new(w.sam.clone(), AUDIENCE);
        f(&mut m);
        control.mint_token(m).unwrap()
    };
    // Signed by a key the tenant does not publish (any more): refused although the
    // signature is sound. First, before the handler has seen the tenant's keys.
    let old = w.token();
    control.rotate_signing_key().unwrap();
    control.retire_old_keys();
    let (status, _, problem) = w.with_token(&old, &body).await;
    assert_eq!(status, 401, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("does not publish")
    );

    let valid = w.token();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(valid.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let kid = control.signing_key_ids()[0].clone();
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(&claims)
    );
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"a-guessable-shared-secret"),
    )
    .unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            mint(&|m| m.lifetime = time::Duration::minutes(-10)),
            "expired",
        ),
        (
            "not yet valid",
            mint(&|m| m.not_before = time::Duration::minutes(10)),
            "not valid before",
        ),
        (
            "another audience",
            // A sound token for another API (its client id).
            mint(&|m| m.audience = "0f9d4c1e-3a2b-4c5d-8e7f-6a5b4c3d2e1f".into()),
            "aud",
        ),
        (
            "another issuer",
            mint(&|m| {
                m.extra_claims.insert(
                    "iss".into(),
                    json!("https://login.microsoftonline.com/another-tenant/v2.0"),
                );
            }),
            "iss",
        ),
        ("alg none", none, "alg 'none'"),
        ("HS256", hs256, "alg 'HS256'"),
        ("garbage", "not-a-token".into(), "malformed"),
    ];
    for (what, token, reason) in cases {
        let (status, headers, problem) = w.with_token(&token, &body).await;
        assert_eq!(status, 401, "{what}: {problem}");
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{what}"
        );
        assert!(
            headers["www-authenticate"]
                .as_str()
                .unwrap()
                .starts_with("Bearer"),
            "{what}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains(reason),
            "{what}: {problem}"
        );
    }

    // No Authorization header at all.
    let (status, _, _) = w.call(&[("content-type", "application/json")], &body).await;
    assert_eq!(status, 401);
    assert_eq!(w.invitations(), 0);
    assert!(control.user("colleague0@litware.com").is_none());

    // A token signed by the current key is accepted.
    let (status, _, answer) = w.with_token(&w.token(), &body).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn entra_token_unknown_key_ids_refresh_at_most_once_a_minute() {
    let w = world().await;
    let control = w.tenant.control();
    let body = request("r-3", &w.sam, &colleagues(1), None);
    // Warm the cache.
    let (status, _, _) = w.with_token(&w.token(), &body).await;
    assert_eq!(status, 200);
    let key_fetches = || {
        control
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/discovery/v2.0/keys"))
            .count()
    };
    let before = key_fetches();
    let valid = w.token();
    let (_, rest) = valid.split_once('.').unwrap();
    for i in 0..20 {
        let header = b64(&json!({"alg": "RS256", "typ": "JWT", "kid": format!("made-up-{i}")}));
        let forged = format!("{header}.{rest}");
        let (status, _, problem) = w.with_token(&forged, &body).await;
        assert_eq!(status, 401, "{problem}");
    }
    assert_eq!(
        key_fetches() - before,
        1,
        "unknown key ids hammered the keys endpoint"
    );
}

#[tokio::test]
async fn self_service_signature_mode_vouches_for_requested_by() {
    let w = world().await;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let body = request("r-4", "sam@litware.com", &colleagues(2), None);
    let signed = |t: i64, secret: &str| b2b::domain::signature::sign(body.as_bytes(), secret, t);
    for (what, header) in [
        ("forged", Some(signed(now, "whsec-not-ours-at-all-0000"))),
        ("ten minutes old", Some(signed(now - 600, SECRET))),
        ("missing", None),
    ] {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(h) = &header {
            headers.push(("x-signature", h.as_str()));
        }
        let (status, _, problem) = w.call(&headers, &body).await;
        assert_eq!(status, 401, "{what}: {problem}");
    }
    assert_eq!(w.invitations(), 0);
    let sig = signed(now, SECRET);
    let (status, _, answer) = w
        .call(
            &[("content-type", "application/json"), ("x-signature", &sig)],
            &body,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(w.invitations(), 2);
}

#[tokio::test]
async fn self_service_refusals_are_403_recorded_and_change_nothing() {
    let w = world().await;
    let token = w.token();
    let privileged = w.falcon_group.clone();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "another partner's domain",
            request(
                "r-5",
                &w.sam,
                &["ann@litware.com".into(), "bob@fabrikam.com".into()],
                None,
            ),
            "bob@fabrikam.com",
        ),
        (
            "the tenant's own domain",
            request("r-6", &w.sam, &["pat@contoso.com".into()], None),
            "pat@contoso.com",
        ),
        (
            "a privileged group",
            request(
                "r-7",
                &w.sam,
                &["ann@litware.com".into()],
                Some(json!({"groups": [privileged]})),
            ),
            "group",
        ),
        (
            "requestedBy someone else",
            request("r-8", &w.megan, &["ann@litware.com".into()], None),
            "requestedBy",
        ),
    ];
    let mut refusals = Vec::new();
    for (what, body, names) in cases {
        let (status, _, problem) = w.with_token(&token, &body).await;
        refusals.push(problem.clone());
        assert_eq!(status, 403, "{what}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(names),
            "{what}: {problem}"
        );
    }
    assert_eq!(w.invitations(), 0);
    assert!(w.tenant.control().user("ann@litware.com").is_none());
    let ledger = &w.handler.runtime.ledger;
    let named = EventKey::new("guest-inviter-request", SOURCE, "r-5");
    assert!(
        ledger.event(&named).await.unwrap().is_none(),
        "the refusal took the request's key"
    );
    let problem = refusals
        .iter()
        .find(|p| p["request"] == named.to_string())
        .expect("a problem names r-5");
    let (source, id) = problem["record"].as_str().unwrap().split_once('#').unwrap();
    let record = ledger
        .event(&EventKey::new("guest-inviter-request", source, id))
        .await
        .unwrap()
        .expect("the refusal is recorded under the HTTP request's key");
    assert_eq!(record.status, EventStatus::Rejected);
    assert_eq!(record.actor.as_deref(), Some(w.sam.as_str()));
    assert_eq!(record.outcomes.len(), 2);
    assert!(record.reason.unwrap().contains("bob@fabrikam.com"));

    // A refused request never took its id: the corrected request with the same id is done.
    let body = request("r-5", &w.sam, &["ann@litware.com".into()], None);
    let (status, _, answer) = w.with_token(&token, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcomes"][0]["result"], "invited", "{answer}");
}

#[tokio::test]
async fn self_service_bodies_sizes_and_media_types() {
    let w = world().await;
    let token = w.token();
    let (status, _, problem) = w
        .with_token(&token, &request("r-9", &w.sam, &colleagues(501), None))
        .await;
    assert_eq!(status, 413, "{problem}");
    assert_eq!(problem["field"], "data.invitees");
    let (status, _, problem) = w.with_token(&token, "{\"specversion\": \"1.0\",").await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("not JSON"),
        "{problem}"
    );
    let auth = format!("Bearer {token}");
    let (status, _, problem) = w
        .call(
            &[("content-type", "text/plain"), ("authorization", &auth)],
            &request("r-10", &w.sam, &colleagues(1), None),
        )
        .await;
    assert_eq!(status, 415, "{problem}");
    assert_eq!(w.invitations(), 0);
}

/// Captures the parts instead of sending them to SQS.
#[derive(Default)]
struct CapturedQueue(Mutex<Vec<QueuedPart>>);

#[async_trait]
impl WorkQueue for CapturedQueue {
    async fn send(&self, parts: &[QueuedPart]) -> Result<(), QueueError> {
        self.0.lock().unwrap().extend_from_slice(parts);
        Ok(())
    }
}

#[tokio::test]
async fn self_service_large_requests_are_queued_and_done_exactly_once() {
    let w = world().await;
    let queue = std::sync::Arc::new(CapturedQueue::default());
    let gate = CircuitGate::new();
    let runtime = b2b::app::runtime::Runtime {
        queue: Some(queue.clone()),
        writes_per_second: 15,
        ..w.handler.runtime.clone()
    };
    let service = SelfService {
        runtime: &runtime,
        gate: &gate,
    };
    let body = request("r-11", &w.sam, &colleagues(60), None);
    let deadline = Instant::now() + Duration::from_secs(300);
    let caller = Caller::Token { oid: w.sam.clone() };
    let fallback = EventKey::new("guest-inviter-request", "test", "f");
    let answer = service
        .submit(&caller, body.as_bytes(), fallback.clone(), deadline)
        .await
        .unwrap();
    let Answer::Accepted {
        parts,
        request_id,
        record,
    } = answer
    else {
        panic!("not queued: {answer:?}");
    };
    assert_eq!(parts, 60usize.div_ceil(PART_SIZE));
    assert_eq!(record.status, EventStatus::Accepted);
    assert_eq!(w.invitations(), 0);
    let queued = queue.0.lock().unwrap().clone();
    assert_eq!(queued.len(), parts);
    // Delivered twice.
    for round in 0..2 {
        for part in &queued {
            let processed = service
                .process_part(part.body.as_bytes(), fallback.clone(), deadline)
                .await
                .unwrap();
            match (round, processed) {
                (0, PartProcessed::Done(r)) => {
                    assert!(
                        r.outcomes
                            .iter()
                            .all(|o| o.result == InviteeResult::Invited)
                    );
                }
                (1, PartProcessed::Duplicate(_)) => {}
                (_, other) => panic!("round {round}: {other:?}"),
            }
        }
    }
    assert_eq!(w.invitations(), 60);
    let part = w
        .handler
        .runtime
        .ledger
        .event(&EventKey::new(
            "guest-inviter-request",
            PART_SOURCE,
            format!("{request_id}/part-1"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(part.outcomes.len(), PART_SIZE);
    assert_eq!(part.actor.as_deref(), Some(w.sam.as_str()));

    // A message on the queue that is not one of our parts is rejected, under its own key.
    let foreign = request("r-12", &w.sam, &colleagues(1), None);
    let processed = service
        .process_part(
            foreign.as_bytes(),
            EventKey::new("guest-inviter-request", "queue", "m-1"),
            deadline,
        )
        .await
        .unwrap();
    assert!(matches!(processed, PartProcessed::Rejected(_)));
    assert_eq!(w.invitations(), 60);
}

#[tokio::test]
async fn self_service_throttling_is_waited_out_or_answered_429_and_left_open() {
    let w = world().await;
    let control = w.tenant.control();
    // A short storm within the time budget: the caller never sees it.
    control.inject(
        Fault::new(FaultKind::TooManyRequests {
            retry_after: Some(1.0),
        })
        .on("POST", "/v1.0/invitations")
        .times(3),
    );
    let body = request("r-13", &w.sam, &colleagues(2), None);
    let (status, _, answer) = w.with_token(&w.token(), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcomes"].as_array().unwrap().len(), 2);

    // Graph asks for a wait longer than the request may take: 429 with Retry-After, and
    // the request stays open, so sending it again finishes it.
    control.inject(
        Fault::new(FaultKind::TooManyRequests {
            retry_after: Some(600.0),
        })
        .on("POST", "/v1.0/invitations")
        .times(1),
    );
    let body = request(
        "r-14",
        &w.sam,
        &["late1@litware.com".into(), "late2@litware.com".into()],
        None,
    );
    let (status, headers, problem) = w.with_token(&w.token(), &body).await;
    assert_eq!(status, 429, "{problem}");
    assert!(headers["retry-after"].as_str().is_some(), "{headers}");
    // The claim was given back: the resent request is processed, not refused as a duplicate.
    // (This process itself honours Graph's wait for all its writes, so it is not resent
    // from here.)
    let claim = w
        .handler
        .runtime
        .ledger
        .claim_event(
            &EventKey::new("guest-inviter-request", SOURCE, "r-14"),
            Duration::from_secs(60),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    assert_eq!(claim, b2b::ports::ledger::Claim::Acquired);
    assert!(control.user("late1@litware.com").is_none());
}
