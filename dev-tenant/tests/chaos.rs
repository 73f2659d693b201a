//! Seeded random faults and fault windows (chaos) over HTTP.

mod common;

use std::time::{Duration, Instant};

use b2b_dev_tenant::{Chaos, ChaosRule, Fault, FaultKind, FaultMatcher, FaultWindow};
use reqwest::{Method, StatusCode};
use serde_json::Value;

fn users_503(seed: u64, probability: f64) -> Chaos {
    Chaos {
        seed,
        rules: vec![ChaosRule {
            matcher: FaultMatcher::on(Some("GET"), "/v1.0/users"),
            kind: FaultKind::ServerError(503),
            probability,
        }],
        windows: Vec::new(),
    }
}

async fn statuses(env: &common::Env, token: &str, n: usize) -> Vec<StatusCode> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(env.graph(token, Method::GET, "/users", None).await.0);
    }
    out
}

#[tokio::test]
async fn a_seeded_rule_fires_about_as_often_as_asked_and_repeats() {
    let env = common::start().await;
    let c = env.tenant.control();
    let token = env.token().await;

    c.set_chaos(Some(users_503(20240601, 0.5)));
    let first = statuses(&env, &token, 200).await;
    let failed = first
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!((60..=140).contains(&failed), "{failed} of 200");
    assert!(
        first
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{first:?}"
    );
    let fired = c.fired_faults();
    assert_eq!(fired.len(), failed);
    assert!(
        fired.iter().all(|f| f.kind == FaultKind::ServerError(503)
            && f.method == "GET"
            && f.path == "/v1.0/users"),
        "{fired:?}"
    );
    assert!(fired.windows(2).all(|w| w[0].at <= w[1].at), "oldest first");
    // Real time, not the dev clock.
    let age = time::OffsetDateTime::now_utc() - fired[0].at;
    assert!(age >= time::Duration::ZERO && age < time::Duration::minutes(5));
    // Other routes are not drawn for.
    assert_eq!(
        env.graph(&token, Method::GET, "/domains", None).await.0,
        StatusCode::OK
    );
    assert_eq!(c.fired_faults().len(), failed);

    // Setting the same seed again restarts the generator (and the fired log).
    c.set_chaos(Some(users_503(20240601, 0.5)));
    assert!(c.fired_faults().is_empty());
    let second = statuses(&env, &token, 200).await;
    assert_eq!(first, second);
    assert_eq!(c.fired_faults().len(), failed);

    // Another seed draws otherwise; switching chaos off stops it and keeps the log.
    c.set_chaos(Some(users_503(7, 0.5)));
    assert_ne!(statuses(&env, &token, 200).await, first);
    let fired = c.fired_faults().len();
    c.set_chaos(None);
    assert!(
        statuses(&env, &token, 20)
            .await
            .iter()
            .all(|s| *s == StatusCode::OK)
    );
    assert_eq!(c.fired_faults().len(), fired);
}

#[tokio::test]
async fn a_window_takes_the_token_endpoint_down_for_its_length() {
    let env = common::start().await;
    let c = env.tenant.control();
    // A first token also opens the connection the window's requests reuse.
    env.token().await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", &env.tenant.client_id()),
        ("client_secret", &env.tenant.client_secret()),
        ("scope", "https://graph.microsoft.com/.default"),
    ];

    let window = FaultWindow::lasting(
        FaultMatcher::on(None, &format!("/{}/oauth2", env.tenant.tenant_id())),
        FaultKind::ServerError(503),
        Duration::from_millis(300),
    );
    let until = window.until;
    c.set_chaos(Some(Chaos {
        seed: 1,
        rules: Vec::new(),
        windows: vec![window],
    }));
    let mut failed = 0;
    loop {
        let r = env
            .http
            .post(env.token_url())
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        if Instant::now() >= until {
            break;
        }
        // Answered inside the window, so decided inside it.
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        assert_eq!(v["error"], "temporarily_unavailable", "{v}");
        assert!(v["error_codes"].is_array(), "{v}");
        failed += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        failed > 0,
        "the window was open when the first request came"
    );
    // After the window the token endpoint answers again (`token()` asserts 200); Graph was
    // never in the window.
    let token = env.token().await;
    assert_eq!(
        env.graph(&token, Method::GET, "/users", None).await.0,
        StatusCode::OK
    );
    for _ in 0..3 {
        env.token().await;
    }
    let fired = c.fired_faults();
    assert!(fired.len() >= failed, "{} < {failed}", fired.len());
    assert!(
        fired.iter().all(|f| f.method == "POST"
            && f.path.ends_with("/oauth2/v2.0/token")
            && f.kind == FaultKind::ServerError(503)),
        "{fired:?}"
    );
}

#[tokio::test]
async fn probability_zero_never_fires_and_queued_faults_come_first() {
    let env = common::start().await;
    let c = env.tenant.control();
    let token = env.token().await;

    c.set_chaos(Some(users_503(3, 0.0)));
    assert!(
        statuses(&env, &token, 50)
            .await
            .iter()
            .all(|s| *s == StatusCode::OK)
    );
    assert!(c.fired_faults().is_empty());

    // A queued fault wins over a rule that always fires; chaos is asked only without one.
    c.set_chaos(Some(users_503(3, 1.0)));
    c.inject(Fault::new(FaultKind::ServerError(500)).on("GET", "/v1.0/users"));
    let got = statuses(&env, &token, 3).await;
    assert_eq!(
        got,
        [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE
        ]
    );
    assert_eq!(c.fired_faults().len(), 2, "queued faults are not logged");

    // A window wins over the rules.
    c.set_chaos(Some(Chaos {
        windows: vec![FaultWindow::lasting(
            FaultMatcher::on(Some("GET"), "/v1.0/"),
            FaultKind::ServerError(504),
            Duration::from_secs(3600),
        )],
        ..users_503(3, 1.0)
    }));
    assert_eq!(
        env.graph(&token, Method::GET, "/users", None).await.0,
        StatusCode::GATEWAY_TIMEOUT
    );

    // PermissionDenied stays on Graph; AbuseBlock is never drawn.
    c.set_chaos(Some(Chaos {
        seed: 3,
        rules: vec![
            ChaosRule {
                matcher: FaultMatcher::default(),
                kind: FaultKind::AbuseBlock,
                probability: 1.0,
            },
            ChaosRule {
                matcher: FaultMatcher::on(Some("POST"), ""),
                kind: FaultKind::PermissionDenied,
                probability: 1.0,
            },
        ],
        windows: Vec::new(),
    }));
    let token = env.token().await;
    let (s, v) = env.invite(&token, "chaos@fabrikam.com").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    common::assert_graph_error(&v, "Authorization_RequestDenied");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Insufficient privileges"),
        "{v}"
    );
    let fired = c.fired_faults();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].path, "/v1.0/invitations");
    c.set_chaos(None);
    assert_eq!(
        env.invite(&token, "chaos@fabrikam.com").await.0,
        StatusCode::CREATED
    );
}
