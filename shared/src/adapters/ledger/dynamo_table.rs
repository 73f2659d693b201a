//! The ledger table itself: created with the schema the infrastructure declares (module docs
//! of `adapters::ledger`), for tests and local runs against an AWS emulator.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use std::time::Duration;

use super::dynamodb::{DynamoLedger, PK, SK, TTL, classify};
use crate::ports::ledger::LedgerError;

impl DynamoLedger {
    /// Creates the table with the schema the infrastructure declares (on-demand billing,
    /// `pk`/`sk` strings, TTL on `ttl`) and waits until it is active. An existing table is
    /// left as it is, apart from enabling TTL when it is off.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), LedgerError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| {
            LedgerError::Unavailable(format!("ledger table {table}: {e}"))
        };
        let created = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(PK)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(SK)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(PK)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(SK)
                    .key_type(KeyType::Range)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await;
        if let Err(e) = created
            && e.code() != Some("ResourceInUseException")
        {
            return Err(classify(&e, table, "CreateTable"));
        }

        let mut waited = Duration::ZERO;
        loop {
            let described = client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| classify(&e, table, "DescribeTable"))?;
            let status = described.table().and_then(|t| t.table_status());
            if status == Some(&TableStatus::Active) {
                break;
            }
            if waited >= Duration::from_secs(120) {
                return Err(LedgerError::Unavailable(format!(
                    "ledger table {table} is not active after {waited:?} (status {status:?})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            waited += Duration::from_millis(500);
        }

        let ttl = client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|e| classify(&e, table, "DescribeTimeToLive"))?;
        let enabled = ttl
            .time_to_live_description()
            .and_then(|d| d.time_to_live_status())
            .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
        if !enabled {
            client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(TTL)
                        .enabled(true)
                        .build()
                        .map_err(build)?,
                )
                .send()
                .await
                .map_err(|e| classify(&e, table, "UpdateTimeToLive"))?;
        }
        Ok(())
    }
}
