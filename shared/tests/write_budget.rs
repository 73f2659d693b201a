//! The deployment's shared Graph write budget in the ledger table, against the AWS emulator:
//! several environments drawing at once stay within the one rate, and Graph's Retry-After
//! pauses all of them.

mod aws_emulator;

use std::sync::Arc;
use std::time::Duration;

use b2b::adapters::ledger::{DynamoBudget, DynamoLedger};
use b2b::ports::budget::WriteBudget;
use tokio::time::Instant;

async fn budgets(test: &str, rate: u32, environments: usize) -> Option<Vec<Arc<DynamoBudget>>> {
    let client = aws_sdk_dynamodb::Client::new(&aws_emulator::config(test).await?);
    let table = format!("budget-test-{}", uuid::Uuid::new_v4().simple());
    DynamoLedger::create_table(&client, &table).await.unwrap();
    Some(
        (0..environments)
            .map(|_| Arc::new(DynamoBudget::new(client.clone(), table.clone(), rate)))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn environments_drawing_at_once_share_one_rate() {
    let Some(budgets) = budgets("environments_drawing_at_once_share_one_rate", 10, 3).await else {
        return;
    };
    let run_for = Duration::from_secs(3);
    let started = Instant::now();
    let draws = budgets.into_iter().map(|budget| {
        tokio::spawn(async move {
            let (mut granted, mut refused) = (0u32, 0u32);
            while started.elapsed() < run_for {
                let within = run_for.saturating_sub(started.elapsed());
                let grant = budget.take(2, within).await.unwrap();
                // Reserved writes start at their turn, which the caller waits for.
                tokio::time::sleep(grant.wait.max(Duration::from_millis(1))).await;
                granted += grant.tokens;
                refused += u32::from(grant.tokens == 0);
            }
            (granted, refused)
        })
    });
    let (per_environment, refused): (Vec<u32>, Vec<u32>) = futures::future::join_all(draws)
        .await
        .into_iter()
        .map(Result::unwrap)
        .unzip();
    let total: u32 = per_environment.iter().sum();
    let elapsed = started.elapsed().as_secs_f64();
    // The rate over the run, plus the saved-up burst (a quarter second) at the start.
    let allowed = 10.0 * elapsed + 2.5 + 1.0;
    assert!(
        f64::from(total) <= allowed,
        "{total} writes in {elapsed:.2}s at 10/s: {per_environment:?}"
    );
    assert!(
        f64::from(total) >= 10.0 * elapsed * 0.7,
        "the budget starved its takers: {total} in {elapsed:.2}s ({per_environment:?})"
    );
    assert!(
        per_environment.iter().all(|n| *n > 0),
        "an environment got nothing: {per_environment:?}"
    );
    // Waiting takers are told their turn; they do not poll the table for tokens. What is
    // refused is a reservation past the end of the run (one per environment), or a lost race.
    let refused: u32 = refused.iter().sum();
    assert!(
        refused <= 6,
        "{refused} draws came back empty for {total} writes: takers are polling"
    );
}

#[tokio::test]
async fn a_retry_after_pauses_every_environment() {
    let Some(budgets) = budgets("a_retry_after_pauses_every_environment", 10, 2).await else {
        return;
    };
    budgets[0].pause(Duration::from_secs(2)).await.unwrap();
    let grant = budgets[1].take(1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(grant.tokens, 0, "{grant:?}");
    assert!(grant.wait > Duration::from_millis(1500), "{grant:?}");
    // A shorter pause never shortens a longer one.
    budgets[1].pause(Duration::from_millis(10)).await.unwrap();
    assert_eq!(
        budgets[0]
            .take(1, Duration::from_secs(1))
            .await
            .unwrap()
            .tokens,
        0
    );
    // Within a longer time, the write is reserved for the end of the pause.
    let grant = budgets[0].take(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(grant.tokens, 1, "{grant:?}");
    assert!(grant.wait > Duration::from_millis(1500), "{grant:?}");
}
