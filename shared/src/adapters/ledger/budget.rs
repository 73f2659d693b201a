//! The deployment's Graph write budget as a token bucket in the ledger table, so that every
//! function and environment draws from one budget (SPEC 5.2). Each draw is a consistent read
//! and a write conditional on the version read, so two environments never spend the same
//! token; callers take a few tokens at a time, so the table is far from its own limits.

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

const TOKENS: &str = "tokens";
const AT: &str = "at";
const PAUSED: &str = "pausedUntil";
const VERSION: &str = "version";
/// Draws that lose to concurrent ones try again this often, then wait a moment.
const ATTEMPTS: usize = 5;
const CONTENDED: Duration = Duration::from_millis(50);

/// The bucket: `rate` writes a second, at most `burst` saved up.
pub struct DynamoBudget {
    ledger: DynamoLedger,
    client: Client,
    table: String,
    rate: f64,
    burst: f64,
}

impl DynamoBudget {
    pub fn new(client: Client, table: String, writes_per_second: u32) -> Self {
        let rate = f64::from(writes_per_second.max(1));
        DynamoBudget {
            ledger: DynamoLedger::new(client.clone(), table.clone()),
            client,
            table,
            rate,
            burst: (rate / 4.0).max(1.0),
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
    async fn take(&self, want: u32) -> Result<Grant, LedgerError> {
        for _ in 0..ATTEMPTS {
            let item = self.ledger.get(Self::key(), "write budget").await?;
            let now = now_ms() as f64;
            let (tokens, at, paused, version) = match &item {
                Some(item) => (
                    number(item, TOKENS).unwrap_or(self.burst),
                    number(item, AT).unwrap_or(now),
                    number(item, PAUSED).unwrap_or(0.0),
                    item.get(VERSION).and_then(|v| v.as_s().ok()).cloned(),
                ),
                None => (self.burst, now, 0.0, None),
            };
            if paused > now {
                return Ok(Grant {
                    tokens: 0,
                    wait: millis(paused - now),
                });
            }
            let tokens = (tokens + self.rate * (now - at).max(0.0) / 1000.0).min(self.burst);
            let taken = (want as f64).min(tokens.floor());
            if taken < 1.0 {
                return Ok(Grant {
                    tokens: 0,
                    wait: millis((1.0 - tokens) / self.rate * 1000.0),
                });
            }
            let mut new = Self::key();
            new.insert(
                TOKENS.into(),
                AttributeValue::N((tokens - taken).to_string()),
            );
            new.insert(AT.into(), AttributeValue::N(now.to_string()));
            new.insert(PAUSED.into(), AttributeValue::N(paused.to_string()));
            if self
                .ledger
                .put_versioned(new, version, "write budget")
                .await?
            {
                return Ok(Grant {
                    tokens: taken as u32,
                    wait: Duration::ZERO,
                });
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
