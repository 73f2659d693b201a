//! The deployment's Graph write budget in the ledger table, so that every function and
//! environment draws from one budget (SPEC 5.2). It is a schedule, not a pile of tokens: the
//! item keeps the time from which the budget is free (GCRA's theoretical arrival time), and a
//! draw reserves the next writes in turn and says when they may start. Environments that find
//! the budget spent therefore wait once for their turn instead of polling the table: each
//! draw is one consistent read and one write conditional on the version read, so two
//! environments never reserve the same slot, and the table sees a few draws per second
//! however many environments wait.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;

use super::DynamoLedger;
use super::dynamodb::classify;
use crate::ports::budget::{Grant, WriteBudget};
use crate::ports::ledger::LedgerError;

/// Milliseconds since the epoch from which the budget is free. (Items written by the token
/// bucket this replaced keep `tokens` and `at`, which are ignored and overwritten.)
const FREE_FROM: &str = "freeFrom";
const PAUSED: &str = "pausedUntil";
const VERSION: &str = "version";
/// Draws that lose to concurrent ones try again this often, then wait a moment.
const ATTEMPTS: usize = 5;
const CONTENDED: Duration = Duration::from_millis(50);

/// The schedule: `rate` writes a second, with up to a quarter second's writes at once after
/// a quiet spell.
pub struct DynamoBudget {
    ledger: DynamoLedger,
    client: Client,
    table: String,
    /// Milliseconds per write.
    interval: f64,
    /// How far ahead of the schedule a write may start, in milliseconds: the burst.
    tolerance: f64,
}

impl DynamoBudget {
    pub fn new(client: Client, table: String, writes_per_second: u32) -> Self {
        let rate = f64::from(writes_per_second.max(1));
        let interval = 1000.0 / rate;
        DynamoBudget {
            ledger: DynamoLedger::new(client.clone(), table.clone()),
            client,
            table,
            interval,
            tolerance: (rate / 4.0).max(1.0) * interval,
        }
    }

    fn key() -> HashMap<String, AttributeValue> {
        DynamoLedger::key("BUDGET".into(), "GRAPH_WRITES".into())
    }
}

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<f64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn millis(ms: f64) -> Duration {
    Duration::from_millis(ms.max(0.0).ceil() as u64)
}

#[async_trait]
impl WriteBudget for DynamoBudget {
    async fn take(&self, want: u32, within: Duration) -> Result<Grant, LedgerError> {
        let want = want.max(1);
        for _ in 0..ATTEMPTS {
            let item = self.ledger.get(Self::key(), "write budget").await?;
            let now = now_ms() as f64;
            let (free_from, paused, version) = match &item {
                Some(item) => (
                    number(item, FREE_FROM).unwrap_or(0.0),
                    number(item, PAUSED).unwrap_or(0.0),
                    item.get(VERSION).and_then(|v| v.as_s().ok()).cloned(),
                ),
                None => (0.0, 0.0, None),
            };
            let free_from = free_from.max(now - self.tolerance);
            // The last of the writes must fit within the tolerance; none starts in a pause.
            let start = now
                .max(paused)
                .max(free_from + f64::from(want - 1) * self.interval - self.tolerance);
            let wait = millis(start - now);
            if wait > within {
                return Ok(Grant { tokens: 0, wait });
            }
            let mut new = Self::key();
            let reserved_until = free_from.max(start) + f64::from(want) * self.interval;
            new.insert(
                FREE_FROM.into(),
                AttributeValue::N(reserved_until.to_string()),
            );
            new.insert(PAUSED.into(), AttributeValue::N(paused.to_string()));
            if self
                .ledger
                .put_versioned(new, version, "write budget")
                .await?
            {
                return Ok(Grant { tokens: want, wait });
            }
        }
        Ok(Grant {
            tokens: 0,
            wait: CONTENDED,
        })
    }

    async fn pause(&self, wait: Duration) -> Result<(), LedgerError> {
        let until = now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key()))
            // A new version, so that a draw which read the bucket before the pause cannot
            // write the old pause back.
            .update_expression("SET #p = :p, #v = :v")
            .condition_expression("attribute_not_exists(#p) OR #p < :p")
            .expression_attribute_names("#p", PAUSED)
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":p", AttributeValue::N(until.to_string()))
            .expression_attribute_values(":v", AttributeValue::S(uuid::Uuid::new_v4().to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A longer pause is already in place.
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(classify(&e, &self.table, "write budget")),
        }
    }
}
