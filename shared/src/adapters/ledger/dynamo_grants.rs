//! What each source granted each guest, and the ends of sources, in the DynamoDB ledger.
//!
//! A grant is written twice, into the guest's partition (`GRANTS#{email}`: what every source
//! gave this guest, read when deciding what another source still holds) and into the
//! source's (`SOURCE#{source}`: the guests an ending source reaches), each an atomic `ADD` to
//! a string set, so concurrent grants never overwrite each other.

use aws_sdk_dynamodb::types::AttributeValue;

use super::dynamodb::{DynamoLedger, Item, PK, classify, doc, encode, s};
use super::{guest_key, key_part};
use crate::ports::ledger::{EndRecord, LedgerError, SourceGrants};

const GRANTS: &str = "grants";
const USER_ID: &str = "userId";
const SOURCE: &str = "source";
const EMAIL: &str = "email";
const END_PK: &str = "END";

fn by_guest(email: &str, source: &str) -> Item {
    DynamoLedger::key(
        format!("GRANTS#{}", key_part(&guest_key(email))),
        format!("SOURCE#{}", key_part(source)),
    )
}

fn by_source(source: &str, email: &str) -> Item {
    DynamoLedger::key(
        format!("SOURCE#{}", key_part(source)),
        format!("GUEST#{}", key_part(&guest_key(email))),
    )
}

fn end_key(source: &str) -> Item {
    DynamoLedger::key(END_PK.into(), format!("END#{}", key_part(source)))
}

fn source_grants(item: &Item) -> Result<SourceGrants, LedgerError> {
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| LedgerError::Corrupt(format!("grant record without {name}")))
    };
    let mut grants: Vec<String> = item
        .get(GRANTS)
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default();
    grants.sort();
    Ok(SourceGrants {
        source: text(SOURCE)?,
        email: text(EMAIL)?,
        user_id: text(USER_ID)?,
        grants,
    })
}

impl DynamoLedger {
    pub(super) async fn add_grant(
        &self,
        source: &str,
        email: &str,
        user_id: &str,
        grant: &str,
    ) -> Result<(), LedgerError> {
        for key in [by_guest(email, source), by_source(source, email)] {
            self.client()
                .update_item()
                .table_name(self.table())
                .set_key(Some(key))
                .update_expression(
                    "ADD #grants :grant SET #user = :user, #source = :source, #email = :email",
                )
                .expression_attribute_names("#grants", GRANTS)
                .expression_attribute_names("#user", USER_ID)
                .expression_attribute_names("#source", SOURCE)
                .expression_attribute_names("#email", EMAIL)
                .expression_attribute_values(":grant", AttributeValue::Ss(vec![grant.to_string()]))
                .expression_attribute_values(":user", s(user_id.to_string()))
                .expression_attribute_values(":source", s(source.to_string()))
                .expression_attribute_values(":email", s(guest_key(email)))
                .send()
                .await
                .map_err(|e| classify(&e, self.table(), "grant record"))?;
        }
        Ok(())
    }

    async fn query_items(&self, pk: String, what: &str) -> Result<Vec<Item>, LedgerError> {
        let mut pages = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            out.push(item.map_err(|e| classify(&e, self.table(), what))?);
        }
        Ok(out)
    }

    pub(super) async fn grants_of_guest(
        &self,
        email: &str,
    ) -> Result<Vec<SourceGrants>, LedgerError> {
        self.query_items(
            format!("GRANTS#{}", key_part(&guest_key(email))),
            "grant records",
        )
        .await?
        .iter()
        .map(source_grants)
        .collect()
    }

    pub(super) async fn grants_by_source(
        &self,
        source: &str,
    ) -> Result<Vec<SourceGrants>, LedgerError> {
        self.query_items(format!("SOURCE#{}", key_part(source)), "grant records")
            .await?
            .iter()
            .map(source_grants)
            .collect()
    }

    pub(super) async fn drop_grants(&self, source: &str, email: &str) -> Result<(), LedgerError> {
        for key in [by_guest(email, source), by_source(source, email)] {
            self.client()
                .delete_item()
                .table_name(self.table())
                .set_key(Some(key))
                .send()
                .await
                .map_err(|e| classify(&e, self.table(), "grant record"))?;
        }
        Ok(())
    }

    pub(super) async fn stored_end(&self, source: &str) -> Result<Option<EndRecord>, LedgerError> {
        self.get(end_key(source), "end record")
            .await?
            .map(|item| doc(&item, "end record"))
            .transpose()
    }

    pub(super) async fn store_end(&self, end: &EndRecord) -> Result<(), LedgerError> {
        let mut item = end_key(&end.end.subject.source());
        item.insert(super::dynamodb::DOC.into(), s(encode(end)?));
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify(&e, self.table(), "end record"))?;
        Ok(())
    }

    pub(super) async fn all_ends(&self) -> Result<Vec<EndRecord>, LedgerError> {
        self.query_items(END_PK.into(), "end records")
            .await?
            .iter()
            .map(|item| doc(item, "end record"))
            .collect()
    }
}
