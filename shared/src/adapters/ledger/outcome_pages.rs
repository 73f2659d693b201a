//! Event records larger than a DynamoDB item: the outcomes of a big event (500 invitees with
//! 100 grants each run to megabytes) go into pages of their own, beside the record in its
//! partition, and are read back with it. DynamoDB refuses items over 400 KB, and that refusal
//! would otherwise look like an outage and be retried forever.

use aws_sdk_dynamodb::types::AttributeValue;

use super::dynamodb::{DynamoLedger, Item, classify, doc, encode, n, number_attr, s};
use crate::ports::ledger::{EventRecord, InviteeOutcome, LedgerError};

/// Below DynamoDB's 400 KB item limit with room for keys and attributes.
const PAGE_BYTES: usize = 300 * 1024;
/// The record's attribute naming how many outcome pages it has.
pub(super) const OUTCOME_PAGES: &str = "outcomePages";

impl DynamoLedger {
    /// The record's `doc` (and `outcomePages`) for `item`, writing the outcome pages first
    /// when the record does not fit one item, so a record never names a page not yet written.
    pub(super) async fn put_outcome_pages(
        &self,
        item: &mut Item,
        record: &EventRecord,
        ttl: i64,
    ) -> Result<(), LedgerError> {
        let whole = encode(record)?;
        if whole.len() <= PAGE_BYTES {
            item.insert(super::dynamodb::DOC.into(), s(whole));
            return Ok(());
        }
        let pages = paginate(&record.outcomes)?;
        for (i, page) in pages.iter().enumerate() {
            let mut page_item = self.page_key(item, i)?;
            page_item.insert(super::dynamodb::DOC.into(), s(page.clone()));
            page_item.insert(super::dynamodb::TTL.into(), n(ttl));
            self.client()
                .put_item()
                .table_name(self.table())
                .set_item(Some(page_item))
                .send()
                .await
                .map_err(|e| classify(&e, self.table(), "page of event outcomes"))?;
        }
        let head = EventRecord {
            outcomes: Vec::new(),
            ..record.clone()
        };
        item.insert(super::dynamodb::DOC.into(), s(encode(&head)?));
        item.insert(OUTCOME_PAGES.into(), n(pages.len() as i64));
        Ok(())
    }

    /// The record in `item` with the outcomes of its pages, if it has any.
    pub(super) async fn with_outcome_pages(
        &self,
        item: &Item,
        mut record: EventRecord,
        what: &str,
    ) -> Result<EventRecord, LedgerError> {
        if !item.contains_key(OUTCOME_PAGES) {
            return Ok(record);
        }
        let pages = number_attr(item, OUTCOME_PAGES, what)?;
        for i in 0..usize::try_from(pages).unwrap_or_default() {
            let page = self
                .get(self.page_key(item, i)?, "page of event outcomes")
                .await?
                .ok_or_else(|| {
                    LedgerError::Corrupt(format!("{what}: outcome page {i} is missing"))
                })?;
            let outcomes: Vec<InviteeOutcome> = doc(&page, what)?;
            record.outcomes.extend(outcomes);
        }
        Ok(record)
    }

    fn page_key(&self, item: &Item, page: usize) -> Result<Item, LedgerError> {
        let attr = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .ok_or_else(|| LedgerError::Corrupt(format!("event item without {name}")))
        };
        let pk = attr(super::dynamodb::PK)?;
        let sk = attr(super::dynamodb::SK)?;
        Ok(Item::from([
            (super::dynamodb::PK.to_string(), AttributeValue::S(pk)),
            (
                super::dynamodb::SK.to_string(),
                AttributeValue::S(format!("{sk}#OUTCOMES#{page:04}")),
            ),
        ]))
    }
}

/// The outcomes as JSON arrays of at most [`PAGE_BYTES`] each.
fn paginate(outcomes: &[InviteeOutcome]) -> Result<Vec<String>, LedgerError> {
    let mut pages = Vec::new();
    let mut page: Vec<&InviteeOutcome> = Vec::new();
    let mut bytes = 2;
    for outcome in outcomes {
        let size = encode(outcome)?.len() + 1;
        if !page.is_empty() && bytes + size > PAGE_BYTES {
            pages.push(encode(&page)?);
            page.clear();
            bytes = 2;
        }
        page.push(outcome);
        bytes += size;
    }
    if !page.is_empty() {
        pages.push(encode(&page)?);
    }
    Ok(pages)
}
