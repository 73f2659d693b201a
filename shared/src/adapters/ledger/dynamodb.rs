//! The DynamoDB ledger: one table, single-table design (key schema in the module docs of
//! `adapters::ledger`).

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use serde::{Serialize, de::DeserializeOwned};
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;

use super::{
    COMPLETED_TTL, IN_PROGRESS_TTL_MARGIN, from_unix_millis, guest_key, key_part, lease_end,
    probe_due, unix_millis,
};
use crate::domain::email::mask;
use crate::ports::ledger::{
    Checkpoint, Circuit, Claim, EndRecord, EventKey, EventRecord, GuestRecord, Ledger, LedgerError,
    PartnerRecord, SourceGrants,
};

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) const PK: &str = "pk";
pub(super) const SK: &str = "sk";
pub(super) const TTL: &str = "ttl";
pub(super) const DOC: &str = "doc";
const STATE: &str = "state";
const LEASE_UNTIL: &str = "leaseUntil";
const REMINDERS: &str = "reminders";
const VERSION: &str = "version";
const STEPS: &str = "steps";
const PARTS_DONE: &str = "done";
/// The sort key of a split event's parts done, in its progress partition.
const PARTS_DONE_SK: &str = "PARTS";

const IN_PROGRESS: &str = "inProgress";
const DONE: &str = "done";

const PARTNER_PK: &str = "PARTNER";
const GUEST_PK: &str = "GUEST";
const CIRCUIT_KEY: &str = "CIRCUIT";
const CHECKPOINT_PK: &str = "CHECKPOINT";

/// Optimistic writes that lose to a concurrent writer re-read and try again this often
/// before reporting contention.
const ATTEMPTS: usize = 5;

/// The ledger in a DynamoDB table (`LEDGER_TABLE`).
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

impl DynamoLedger {
    pub fn new(client: Client, table: String) -> Self {
        DynamoLedger { client, table }
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub(super) fn key(pk: String, sk: String) -> Item {
        HashMap::from([(PK.into(), s(pk)), (SK.into(), s(sk))])
    }

    fn event_key(key: &EventKey) -> Item {
        Self::key(
            format!("EVENT#{}", key_part(&key.stored_source())),
            format!("EVENT#{}", key_part(&key.id)),
        )
    }

    fn partner_key(id: &str) -> Item {
        Self::key(PARTNER_PK.into(), format!("PARTNER#{}", key_part(id)))
    }

    fn guest_key(email: &str) -> Item {
        Self::key(
            GUEST_PK.into(),
            format!("GUEST#{}", key_part(&guest_key(email))),
        )
    }

    fn circuit_key() -> Item {
        Self::key(CIRCUIT_KEY.into(), CIRCUIT_KEY.into())
    }

    fn progress_key(unit: &EventKey, email: &str) -> Item {
        Self::key(
            format!(
                "PROGRESS#{}#{}",
                key_part(&unit.stored_source()),
                key_part(&unit.id)
            ),
            format!("INVITEE#{}", key_part(&guest_key(email))),
        )
    }

    fn checkpoint_key(name: &str) -> Item {
        Self::key(
            CHECKPOINT_PK.into(),
            format!("CHECKPOINT#{}", key_part(name)),
        )
    }

    /// A strongly consistent read: every decision in the ledger depends on the latest write.
    pub(super) async fn get(&self, key: Item, op_what: &str) -> Result<Option<Item>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(&e, &self.table, op_what))?;
        Ok(out.item)
    }

    async fn get_doc<T: DeserializeOwned>(
        &self,
        key: Item,
        what: &str,
    ) -> Result<Option<T>, LedgerError> {
        self.get(key, what)
            .await?
            .map(|item| doc(&item, what))
            .transpose()
    }

    async fn put_doc<T: Serialize>(
        &self,
        key: Item,
        value: &T,
        what: &str,
    ) -> Result<(), LedgerError> {
        let mut item = key;
        item.insert(DOC.into(), s(encode(value)?));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify(&e, &self.table, what))?;
        Ok(())
    }

    async fn delete(&self, key: Item, what: &str) -> Result<(), LedgerError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .send()
            .await
            .map_err(|e| classify(&e, &self.table, what))?;
        Ok(())
    }

    /// Every item of one partition, page by page.
    async fn query_docs<T: DeserializeOwned>(
        &self,
        pk: &str,
        what: &str,
    ) -> Result<Vec<T>, LedgerError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(pk.to_string()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| classify(&e, &self.table, what))?;
            out.push(doc(&item, what)?);
        }
        Ok(out)
    }

    /// Writes `item` if the stored one still has `version` (or, with `None`, if there is
    /// none). `false`: another writer changed it first.
    pub(super) async fn put_versioned(
        &self,
        mut item: Item,
        version: Option<String>,
        what: &str,
    ) -> Result<bool, LedgerError> {
        item.insert(VERSION.into(), s(uuid::Uuid::new_v4().to_string()));
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let request = match version {
            Some(v) => request
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":v", s(v)),
            None => request
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed_put(&e) => Ok(false),
            Err(e) => Err(classify(&e, &self.table, what)),
        }
    }

    /// The circuit as stored, with the version a conditional write must match.
    async fn circuit_versioned(&self) -> Result<Option<(Circuit, String)>, LedgerError> {
        let Some(item) = self.get(Self::circuit_key(), "circuit record").await? else {
            return Ok(None);
        };
        let circuit: Circuit = doc(&item, "circuit record")?;
        let version = string_attr(&item, VERSION, "circuit record")?;
        Ok(Some((circuit, version)))
    }

    fn circuit_item(circuit: &Circuit) -> Result<Item, LedgerError> {
        let mut item = Self::circuit_key();
        item.insert(DOC.into(), s(encode(circuit)?));
        Ok(item)
    }

    /// Reads what made a claim lose: the completed record or the current holder's lease.
    async fn claim_from_item(
        &self,
        item: &Item,
        key: &EventKey,
    ) -> Result<Option<Claim>, LedgerError> {
        let what = format!("event record {key}");
        match string_attr(item, STATE, &what)?.as_str() {
            DONE => {
                let record = self
                    .with_outcome_pages(item, doc(item, &what)?, &what)
                    .await?;
                Ok(Some(Claim::Completed(Box::new(record))))
            }
            IN_PROGRESS => {
                let ms = number_attr(item, LEASE_UNTIL, &what)?;
                let until = from_unix_millis(ms).ok_or_else(|| {
                    LedgerError::Corrupt(format!("{what}: {LEASE_UNTIL} {ms} is out of range"))
                })?;
                Ok(Some(Claim::InProgress { until }))
            }
            other => Err(LedgerError::Corrupt(format!(
                "{what}: unknown {STATE} '{other}'"
            ))),
        }
    }
}

#[async_trait]
impl Ledger for DynamoLedger {
    async fn claim_event(
        &self,
        key: &EventKey,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<Claim, LedgerError> {
        let until = lease_end(now, lease);
        for _ in 0..ATTEMPTS {
            let mut item = Self::event_key(key);
            item.insert(STATE.into(), s(IN_PROGRESS.into()));
            item.insert(LEASE_UNTIL.into(), n(unix_millis(until)));
            item.insert(TTL.into(), n(ttl_seconds(until, IN_PROGRESS_TTL_MARGIN)));
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(
                    "attribute_not_exists(#pk) OR (#state = :inProgress AND #lease <= :now)",
                )
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#state", STATE)
                .expression_attribute_names("#lease", LEASE_UNTIL)
                .expression_attribute_values(":inProgress", s(IN_PROGRESS.into()))
                .expression_attribute_values(":now", n(unix_millis(now)))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(Claim::Acquired),
                Err(e) => e,
            };
            if !is_condition_failed_put(&error) {
                return Err(classify(&error, &self.table, "claim of an event"));
            }
            let old = match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                _ => None,
            };
            let old = match old {
                Some(item) => Some(item),
                None => self.get(Self::event_key(key), "event record").await?,
            };
            // Gone in between (released): claim again.
            if let Some(item) = old
                && let Some(claim) = self.claim_from_item(&item, key).await?
            {
                return Ok(claim);
            }
        }
        Err(LedgerError::Unavailable(format!(
            "event {key}: the claim kept losing to concurrent writers"
        )))
    }

    async fn complete_event(&self, record: &EventRecord) -> Result<(), LedgerError> {
        let mut item = Self::event_key(&record.key);
        let ttl = ttl_seconds(record.recorded_at, COMPLETED_TTL);
        item.insert(STATE.into(), s(DONE.into()));
        self.put_outcome_pages(&mut item, record, ttl).await?;
        item.insert(TTL.into(), n(ttl));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify(&e, &self.table, "completion of an event"))?;
        Ok(())
    }

    async fn release_event(&self, key: &EventKey) -> Result<(), LedgerError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::event_key(key)))
            // A completed record stays: releasing never undoes a recorded outcome.
            .condition_expression("#state = :inProgress")
            .expression_attribute_names("#state", STATE)
            .expression_attribute_values(":inProgress", s(IN_PROGRESS.into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(classify(&e, &self.table, "release of an event")),
        }
    }

    async fn event(&self, key: &EventKey) -> Result<Option<EventRecord>, LedgerError> {
        let Some(item) = self.get(Self::event_key(key), "event record").await? else {
            return Ok(None);
        };
        match self.claim_from_item(&item, key).await? {
            Some(Claim::Completed(record)) => Ok(Some(*record)),
            _ => Ok(None),
        }
    }

    async fn partner(&self, id: &str) -> Result<Option<PartnerRecord>, LedgerError> {
        self.get_doc(Self::partner_key(id), &format!("partner record {id}"))
            .await
    }

    async fn put_partner(&self, partner: &PartnerRecord) -> Result<(), LedgerError> {
        self.put_doc(
            Self::partner_key(&partner.id),
            partner,
            &format!("partner record {}", partner.id),
        )
        .await
    }

    async fn partners(&self) -> Result<Vec<PartnerRecord>, LedgerError> {
        self.query_docs(PARTNER_PK, "partner record").await
    }

    async fn guest(&self, email: &str) -> Result<Option<GuestRecord>, LedgerError> {
        self.get_doc(
            Self::guest_key(email),
            &format!("guest record {}", mask(email)),
        )
        .await
    }

    async fn put_guest(&self, guest: &GuestRecord) -> Result<(), LedgerError> {
        let mut item = Self::guest_key(&guest.email);
        // Mirrored outside the JSON so that claim_reminder can condition on it.
        item.insert(REMINDERS.into(), n(i64::from(guest.reminders)));
        self.put_doc(item, guest, &format!("guest record {}", mask(&guest.email)))
            .await
    }

    async fn guests(&self) -> Result<Vec<GuestRecord>, LedgerError> {
        self.query_docs(GUEST_PK, "guest record").await
    }

    async fn guests_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<GuestRecord>, LedgerError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let what = "guest record";
        let mut start = after.map(Self::guest_key);
        let mut out = Vec::new();
        // A query stops at 1 MB as well as at its limit: go on until the page is full or
        // the partition ends.
        loop {
            let answer = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(GUEST_PK.to_string()))
                .consistent_read(true)
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify(&e, &self.table, what))?;
            for item in answer.items() {
                out.push(doc(item, what)?);
            }
            match answer.last_evaluated_key() {
                Some(last) if out.len() < limit => start = Some(last.clone()),
                _ => return Ok(out),
            }
        }
    }

    async fn claim_reminder(
        &self,
        email: &str,
        seen_reminders: u32,
        now: OffsetDateTime,
    ) -> Result<bool, LedgerError> {
        let what = format!("guest record {}", mask(email));
        let Some(mut guest) = self
            .get_doc::<GuestRecord>(Self::guest_key(email), &what)
            .await?
        else {
            return Ok(false);
        };
        if guest.reminders != seen_reminders {
            return Ok(false);
        }
        guest.reminders = seen_reminders.saturating_add(1);
        guest.last_reminded_at = Some(now);
        let mut item = Self::guest_key(email);
        item.insert(REMINDERS.into(), n(i64::from(guest.reminders)));
        item.insert(DOC.into(), s(encode(&guest)?));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("#r = :seen")
            .expression_attribute_names("#r", REMINDERS)
            .expression_attribute_values(":seen", n(i64::from(seen_reminders)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed_put(&e) => Ok(false),
            Err(e) => Err(classify(&e, &self.table, &what)),
        }
    }

    async fn circuit(&self) -> Result<Circuit, LedgerError> {
        Ok(self
            .circuit_versioned()
            .await?
            .map(|(c, _)| c)
            .unwrap_or_default())
    }

    async fn open_circuit(&self, reason: &str, now: OffsetDateTime) -> Result<(), LedgerError> {
        for _ in 0..ATTEMPTS {
            let current = self.circuit_versioned().await?;
            // Already open: keep when and why it first opened, and the probe schedule.
            if current.as_ref().is_some_and(|(c, _)| c.open) {
                return Ok(());
            }
            let item = Self::circuit_item(&Circuit {
                open: true,
                reason: Some(reason.to_string()),
                opened_at: Some(now),
                probe_at: None,
            })?;
            if self
                .put_versioned(item, current.map(|(_, v)| v), "opening of the circuit")
                .await?
            {
                return Ok(());
            }
        }
        Err(LedgerError::Unavailable(
            "circuit: opening kept losing to concurrent writers".into(),
        ))
    }

    async fn close_circuit(&self) -> Result<(), LedgerError> {
        self.delete(Self::circuit_key(), "closing of the circuit")
            .await
    }

    async fn claim_probe(
        &self,
        now: OffsetDateTime,
        probe_after: Duration,
    ) -> Result<bool, LedgerError> {
        let Some((mut circuit, version)) = self.circuit_versioned().await? else {
            return Ok(false);
        };
        if !probe_due(&circuit, now, probe_after) {
            return Ok(false);
        }
        circuit.probe_at = Some(now);
        self.put_versioned(
            Self::circuit_item(&circuit)?,
            Some(version),
            "claim of a circuit probe",
        )
        .await
    }

    async fn progress(&self, unit: &EventKey, email: &str) -> Result<Vec<String>, LedgerError> {
        let item = self
            .get(Self::progress_key(unit, email), "invitee progress")
            .await?;
        Ok(item
            .and_then(|i| i.get(STEPS).and_then(|v| v.as_ss().ok()).cloned())
            .unwrap_or_default())
    }

    /// One atomic `ADD` to a string set: no read, and concurrent steps never overwrite
    /// each other.
    async fn record_progress(
        &self,
        unit: &EventKey,
        email: &str,
        step: &str,
    ) -> Result<(), LedgerError> {
        let expires = ttl_seconds(OffsetDateTime::now_utc(), COMPLETED_TTL);
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::progress_key(unit, email)))
            .update_expression("ADD #steps :step SET #ttl = :ttl")
            .expression_attribute_names("#steps", STEPS)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":step", AttributeValue::Ss(vec![step.to_string()]))
            .expression_attribute_values(":ttl", n(expires))
            .send()
            .await
            .map_err(|e| classify(&e, &self.table, "invitee progress"))?;
        Ok(())
    }

    /// One atomic `ADD` to a number set beside the event's invitee progress; the updated set
    /// says how many parts are done.
    async fn record_part_done(&self, event: &EventKey, part: u32) -> Result<usize, LedgerError> {
        let expires = ttl_seconds(OffsetDateTime::now_utc(), COMPLETED_TTL);
        let mut key = Self::progress_key(event, "");
        key.insert(SK.into(), s(PARTS_DONE_SK.into()));
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression("ADD #done :part SET #ttl = :ttl")
            .expression_attribute_names("#done", PARTS_DONE)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":part", AttributeValue::Ns(vec![part.to_string()]))
            .expression_attribute_values(":ttl", n(expires))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| classify(&e, &self.table, "parts done"))?;
        Ok(output
            .attributes()
            .and_then(|a| a.get(PARTS_DONE))
            .and_then(|v| v.as_ns().ok())
            .map_or(0, Vec::len))
    }

    async fn record_grant(
        &self,
        source: &str,
        email: &str,
        user_id: &str,
        grant: &str,
    ) -> Result<(), LedgerError> {
        self.add_grant(source, email, user_id, grant).await
    }

    async fn grants_of(&self, email: &str) -> Result<Vec<SourceGrants>, LedgerError> {
        self.grants_of_guest(email).await
    }

    async fn granted_by(&self, source: &str) -> Result<Vec<SourceGrants>, LedgerError> {
        self.grants_by_source(source).await
    }

    async fn forget_grants(&self, source: &str, email: &str) -> Result<(), LedgerError> {
        self.drop_grants(source, email).await
    }

    async fn put_end(&self, end: &EndRecord) -> Result<(), LedgerError> {
        self.store_end(end).await
    }

    async fn end(&self, source: &str) -> Result<Option<EndRecord>, LedgerError> {
        self.stored_end(source).await
    }

    async fn ends(&self) -> Result<Vec<EndRecord>, LedgerError> {
        self.all_ends().await
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, LedgerError> {
        self.get_doc(Self::checkpoint_key(name), &format!("checkpoint {name}"))
            .await
    }

    async fn put_checkpoint(
        &self,
        name: &str,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), LedgerError> {
        let what = format!("checkpoint {name}");
        match checkpoint {
            Some(c) => self.put_doc(Self::checkpoint_key(name), c, &what).await,
            None => self.delete(Self::checkpoint_key(name), &what).await,
        }
    }
}

pub(super) fn s(value: String) -> AttributeValue {
    AttributeValue::S(value)
}

pub(super) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Unix seconds `after` past `t`, for the `ttl` attribute.
fn ttl_seconds(t: OffsetDateTime, after: Duration) -> i64 {
    lease_end(t, after).unix_timestamp()
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<String, LedgerError> {
    serde_json::to_string(value)
        .map_err(|e| LedgerError::Corrupt(format!("cannot encode a ledger record: {e}")))
}

pub(super) fn doc<T: DeserializeOwned>(item: &Item, what: &str) -> Result<T, LedgerError> {
    let json = string_attr(item, DOC, what)?;
    serde_json::from_str(&json).map_err(|e| LedgerError::Corrupt(format!("{what}: {e}")))
}

fn string_attr(item: &Item, name: &str, what: &str) -> Result<String, LedgerError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        Some(_) => Err(LedgerError::Corrupt(format!(
            "{what}: attribute {name} is not a string"
        ))),
        None => Err(LedgerError::Corrupt(format!(
            "{what}: attribute {name} is missing"
        ))),
    }
}

pub(super) fn number_attr(item: &Item, name: &str, what: &str) -> Result<i64, LedgerError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| {
            LedgerError::Corrupt(format!("{what}: attribute {name} '{v}' is not an integer"))
        }),
        Some(_) => Err(LedgerError::Corrupt(format!(
            "{what}: attribute {name} is not a number"
        ))),
        None => Err(LedgerError::Corrupt(format!(
            "{what}: attribute {name} is missing"
        ))),
    }
}

fn is_condition_failed_put<R>(e: &SdkError<PutItemError, R>) -> bool {
    matches!(
        e.as_service_error(),
        Some(PutItemError::ConditionalCheckFailedException(_))
    )
}

/// Error codes with which DynamoDB asks the caller to slow down.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

/// Classifies a failed call. Everything that is not throttling counts as unavailable: a
/// missing table or a denied permission needs an operator, and until one acts the work must
/// stay queued rather than be rejected for good.
pub(super) fn classify<E>(
    e: &SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    table: &str,
    what: &str,
) -> LedgerError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let Some(code) = e.code()
        && THROTTLING_CODES.contains(&code)
    {
        return LedgerError::Throttled(format!(
            "ledger table {table}, {what}: {code}: {}",
            e.message().unwrap_or("slow down")
        ));
    }
    let detail = match (e.code(), e.raw_response()) {
        (Some(code), Some(raw)) => format!(
            "{code} (HTTP {}): {}",
            raw.status().as_u16(),
            e.message().unwrap_or("no message")
        ),
        _ => DisplayErrorContext(e).to_string(),
    };
    LedgerError::Unavailable(format!("ledger table {table}, {what}: {detail}"))
}
