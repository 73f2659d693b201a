//! The embedded ledger: one `redb` file, for local use by one process at a time.

use async_trait::async_trait;
use redb::{Database, DatabaseError, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

use super::{guest_key, lease_end, lease_expired, probe_due};
use crate::domain::email::mask;
use crate::ports::ledger::{
    Checkpoint, Circuit, Claim, EndRecord, EventKey, EventRecord, GuestRecord, Ledger, LedgerError,
    PartnerRecord, SourceGrants,
};

/// `(source, id)` -> `StoredEvent`.
const EVENTS: TableDefinition<(&str, &str), &str> = TableDefinition::new("events");
/// Partner id -> [`PartnerRecord`].
const PARTNERS: TableDefinition<&str, &str> = TableDefinition::new("partners");
/// Lower-case email -> [`GuestRecord`].
const GUESTS: TableDefinition<&str, &str> = TableDefinition::new("guests");
/// `CIRCUIT_KEY` -> [`Circuit`].
const STATE: TableDefinition<&str, &str> = TableDefinition::new("state");
/// Checkpoint name -> [`Checkpoint`].
const CHECKPOINTS: TableDefinition<&str, &str> = TableDefinition::new("checkpoints");
/// `{scope}|{source}#{id}\n{lower-case email}` -> JSON list of the steps that landed.
const PROGRESS: TableDefinition<&str, &str> = TableDefinition::new("progress");
/// `source\nemail` -> JSON [`SourceGrants`]. Listed whole and filtered: the embedded ledger
/// serves local use, where sources and guests are few.
const GRANTS: TableDefinition<&str, &str> = TableDefinition::new("grants");
/// Source -> JSON [`EndRecord`].
const ENDS: TableDefinition<&str, &str> = TableDefinition::new("ends");
/// Split event (`scope|source#id`) -> JSON list of the part numbers done.
const PARTS: TableDefinition<&str, &str> = TableDefinition::new("parts");

const CIRCUIT_KEY: &str = "circuit";

const OPEN_RETRY_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
enum StoredEvent {
    InProgress {
        #[serde(rename = "leaseUntil", with = "time::serde::rfc3339")]
        lease_until: OffsetDateTime,
    },
    Done {
        record: Box<EventRecord>,
    },
}

struct Inner {
    db: Database,
    path: PathBuf,
}

/// The ledger in a local `redb` file (`LEDGER_PATH`). Cheap to clone; clones share the
/// open database. One process at a time: see the module docs of `adapters::ledger`.
#[derive(Clone)]
pub struct EmbeddedLedger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLedger")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl EmbeddedLedger {
    /// The database file's name inside the ledger directory.
    pub const FILE_NAME: &'static str = "ledger.redb";

    /// How long [`EmbeddedLedger::open`] waits for another process to let go of the file.
    pub const OPEN_WAIT: Duration = Duration::from_secs(5);

    /// Opens (creating when missing) the ledger in `dir`, waiting up to [`Self::OPEN_WAIT`] for
    /// another process that holds the file.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        Self::open_with_wait(dir, Self::OPEN_WAIT)
    }

    /// [`EmbeddedLedger::open`] with a chosen wait for a file held by another process.
    pub fn open_with_wait(dir: &Path, wait: Duration) -> Result<Self, LedgerError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            LedgerError::Unavailable(format!(
                "LEDGER_PATH {}: cannot create the directory: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(Self::FILE_NAME);
        let started = Instant::now();
        let db = loop {
            match Database::create(&path) {
                Ok(db) => break db,
                Err(DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < wait => {
                    std::thread::sleep(OPEN_RETRY_EVERY);
                }
                Err(DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(LedgerError::Unavailable(format!(
                        "embedded ledger {} is in use by another process (waited {:?}); the \
                         embedded ledger serves one process at a time",
                        path.display(),
                        wait
                    )));
                }
                Err(DatabaseError::UpgradeRequired(version)) => {
                    return Err(LedgerError::Corrupt(format!(
                        "embedded ledger {} has file format {version}, which this build \
                         cannot read",
                        path.display()
                    )));
                }
                Err(e) => {
                    return Err(LedgerError::Unavailable(format!(
                        "embedded ledger {}: {e}",
                        path.display()
                    )));
                }
            }
        };
        let inner = Inner { db, path };
        // Creating every table up front lets readers assume they exist.
        inner.write(|txn| {
            txn.open_table(EVENTS).map_err(|e| inner.storage(e))?;
            for table in [
                PARTNERS,
                GUESTS,
                STATE,
                CHECKPOINTS,
                PROGRESS,
                PARTS,
                GRANTS,
                ENDS,
            ] {
                txn.open_table(table).map_err(|e| inner.storage(e))?;
            }
            Ok(())
        })?;
        Ok(EmbeddedLedger {
            inner: Arc::new(inner),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs blocking database work off the async executor.
    async fn run<T, F>(&self, work: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, LedgerError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| LedgerError::Unavailable(format!("embedded ledger task failed: {e}")))?
    }
}

impl Inner {
    fn storage(&self, e: impl Into<redb::Error>) -> LedgerError {
        LedgerError::Unavailable(format!(
            "embedded ledger {}: {}",
            self.path.display(),
            e.into()
        ))
    }

    /// One write transaction: committed when `work` succeeds, rolled back when it fails.
    fn write<T>(
        &self,
        work: impl FnOnce(&WriteTransaction) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        let result = work(&txn)?;
        txn.commit().map_err(|e| self.storage(e))?;
        Ok(result)
    }

    fn get<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &str>,
        key: &str,
        what: &str,
    ) -> Result<Option<T>, LedgerError> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = txn.open_table(table).map_err(|e| self.storage(e))?;
        let value = table.get(key).map_err(|e| self.storage(e))?;
        value.map(|v| decode(v.value(), what)).transpose()
    }

    fn all<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &str>,
        what: &str,
    ) -> Result<Vec<T>, LedgerError> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = txn.open_table(table).map_err(|e| self.storage(e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.storage(e))? {
            let (key, value) = entry.map_err(|e| self.storage(e))?;
            out.push(decode(value.value(), &format!("{what} {}", key.value()))?);
        }
        Ok(out)
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &str>,
        key: &str,
        value: &T,
    ) -> Result<(), LedgerError> {
        let json = encode(value)?;
        self.write(|txn| {
            let mut table = txn.open_table(table).map_err(|e| self.storage(e))?;
            table
                .insert(key, json.as_str())
                .map_err(|e| self.storage(e))?;
            Ok(())
        })
    }

    fn remove(&self, table: TableDefinition<&str, &str>, key: &str) -> Result<(), LedgerError> {
        self.write(|txn| {
            let mut table = txn.open_table(table).map_err(|e| self.storage(e))?;
            table.remove(key).map_err(|e| self.storage(e))?;
            Ok(())
        })
    }
}

fn decode<T: DeserializeOwned>(json: &str, what: &str) -> Result<T, LedgerError> {
    serde_json::from_str(json).map_err(|e| LedgerError::Corrupt(format!("{what}: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<String, LedgerError> {
    serde_json::to_string(value)
        .map_err(|e| LedgerError::Corrupt(format!("cannot encode a ledger record: {e}")))
}

fn progress_key(unit: &EventKey, email: &str) -> String {
    format!("{}#{}\n{}", unit.stored_source(), unit.id, guest_key(email))
}

fn event_what(key: &EventKey) -> String {
    format!("event record {key}")
}

#[async_trait]
impl Ledger for EmbeddedLedger {
    async fn claim_event(
        &self,
        key: &EventKey,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<Claim, LedgerError> {
        let key = key.clone();
        self.run(move |inner| {
            inner.write(|txn| {
                let mut table = txn.open_table(EVENTS).map_err(|e| inner.storage(e))?;
                let source = key.stored_source();
                let k = (source.as_str(), key.id.as_str());
                let existing = table
                    .get(k)
                    .map_err(|e| inner.storage(e))?
                    .map(|v| decode::<StoredEvent>(v.value(), &event_what(&key)))
                    .transpose()?;
                match existing {
                    Some(StoredEvent::Done { record }) => return Ok(Claim::Completed(record)),
                    Some(StoredEvent::InProgress { lease_until })
                        if !lease_expired(lease_until, now) =>
                    {
                        return Ok(Claim::InProgress { until: lease_until });
                    }
                    _ => {}
                }
                let json = encode(&StoredEvent::InProgress {
                    lease_until: lease_end(now, lease),
                })?;
                table
                    .insert(k, json.as_str())
                    .map_err(|e| inner.storage(e))?;
                Ok(Claim::Acquired)
            })
        })
        .await
    }

    async fn complete_event(&self, record: &EventRecord) -> Result<(), LedgerError> {
        let json = encode(&StoredEvent::Done {
            record: Box::new(record.clone()),
        })?;
        let key = record.key.clone();
        self.run(move |inner| {
            inner.write(|txn| {
                let mut table = txn.open_table(EVENTS).map_err(|e| inner.storage(e))?;
                table
                    .insert(
                        (key.stored_source().as_str(), key.id.as_str()),
                        json.as_str(),
                    )
                    .map_err(|e| inner.storage(e))?;
                Ok(())
            })
        })
        .await
    }

    async fn release_event(&self, key: &EventKey) -> Result<(), LedgerError> {
        let key = key.clone();
        self.run(move |inner| {
            inner.write(|txn| {
                let mut table = txn.open_table(EVENTS).map_err(|e| inner.storage(e))?;
                let source = key.stored_source();
                let k = (source.as_str(), key.id.as_str());
                let in_progress = match table.get(k).map_err(|e| inner.storage(e))? {
                    // An unreadable record is dropped too: releasing must unblock the event.
                    Some(v) => !matches!(
                        decode::<StoredEvent>(v.value(), &event_what(&key)),
                        Ok(StoredEvent::Done { .. })
                    ),
                    None => false,
                };
                // A completed record stays: releasing never undoes a recorded outcome.
                if in_progress {
                    table.remove(k).map_err(|e| inner.storage(e))?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn event(&self, key: &EventKey) -> Result<Option<EventRecord>, LedgerError> {
        let key = key.clone();
        self.run(move |inner| {
            let txn = inner.db.begin_read().map_err(|e| inner.storage(e))?;
            let table = txn.open_table(EVENTS).map_err(|e| inner.storage(e))?;
            let stored = table
                .get((key.stored_source().as_str(), key.id.as_str()))
                .map_err(|e| inner.storage(e))?
                .map(|v| decode::<StoredEvent>(v.value(), &event_what(&key)))
                .transpose()?;
            Ok(match stored {
                Some(StoredEvent::Done { record }) => Some(*record),
                _ => None,
            })
        })
        .await
    }

    async fn partner(&self, id: &str) -> Result<Option<PartnerRecord>, LedgerError> {
        let id = id.to_string();
        self.run(move |inner| inner.get(PARTNERS, &id, &format!("partner record {id}")))
            .await
    }

    async fn put_partner(&self, partner: &PartnerRecord) -> Result<(), LedgerError> {
        let partner = partner.clone();
        self.run(move |inner| inner.put(PARTNERS, &partner.id, &partner))
            .await
    }

    async fn partners(&self) -> Result<Vec<PartnerRecord>, LedgerError> {
        self.run(|inner| inner.all(PARTNERS, "partner record"))
            .await
    }

    async fn guest(&self, email: &str) -> Result<Option<GuestRecord>, LedgerError> {
        let key = guest_key(email);
        self.run(move |inner| inner.get(GUESTS, &key, &format!("guest record {}", mask(&key))))
            .await
    }

    async fn put_guest(&self, guest: &GuestRecord) -> Result<(), LedgerError> {
        let guest = guest.clone();
        self.run(move |inner| inner.put(GUESTS, &guest_key(&guest.email), &guest))
            .await
    }

    async fn guests(&self) -> Result<Vec<GuestRecord>, LedgerError> {
        self.run(|inner| inner.all(GUESTS, "guest record")).await
    }

    async fn guests_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<GuestRecord>, LedgerError> {
        let after = after.map(guest_key);
        self.run(move |inner| {
            let txn = inner.db.begin_read().map_err(|e| inner.storage(e))?;
            let table = txn.open_table(GUESTS).map_err(|e| inner.storage(e))?;
            let range = match after.as_deref() {
                Some(a) => table.range::<&str>((Bound::Excluded(a), Bound::Unbounded)),
                None => table.range::<&str>(..),
            }
            .map_err(|e| inner.storage(e))?;
            let mut out = Vec::new();
            for entry in range.take(limit) {
                let (key, value) = entry.map_err(|e| inner.storage(e))?;
                out.push(decode(
                    value.value(),
                    &format!("guest record {}", mask(key.value())),
                )?);
            }
            Ok(out)
        })
        .await
    }

    async fn claim_reminder(
        &self,
        email: &str,
        seen_reminders: u32,
        now: OffsetDateTime,
    ) -> Result<bool, LedgerError> {
        let key = guest_key(email);
        self.run(move |inner| {
            inner.write(|txn| {
                let mut table = txn.open_table(GUESTS).map_err(|e| inner.storage(e))?;
                let guest = table
                    .get(key.as_str())
                    .map_err(|e| inner.storage(e))?
                    .map(|v| {
                        decode::<GuestRecord>(v.value(), &format!("guest record {}", mask(&key)))
                    })
                    .transpose()?;
                let Some(mut guest) = guest.filter(|g| g.reminders == seen_reminders) else {
                    return Ok(false);
                };
                guest.reminders = seen_reminders.saturating_add(1);
                guest.last_reminded_at = Some(now);
                let json = encode(&guest)?;
                table
                    .insert(key.as_str(), json.as_str())
                    .map_err(|e| inner.storage(e))?;
                Ok(true)
            })
        })
        .await
    }

    async fn circuit(&self) -> Result<Circuit, LedgerError> {
        self.run(|inner| {
            Ok(inner
                .get(STATE, CIRCUIT_KEY, "circuit record")?
                .unwrap_or_default())
        })
        .await
    }

    async fn open_circuit(&self, reason: &str, now: OffsetDateTime) -> Result<(), LedgerError> {
        let reason = reason.to_string();
        self.run(move |inner| {
            inner.write(|txn| {
                let mut table = txn.open_table(STATE).map_err(|e| inner.storage(e))?;
                let current: Circuit = table
                    .get(CIRCUIT_KEY)
                    .map_err(|e| inner.storage(e))?
                    .map(|v| decode(v.value(), "circuit record"))
                    .transpose()?
                    .unwrap_or_default();
                // Already open: keep when and why it first opened, and the probe schedule.
                if current.open {
                    return Ok(());
                }
                let json = encode(&Circuit {
                    open: true,
                    reason: Some(reason),
                    opened_at: Some(now),
                    probe_at: None,
                })?;
                table
                    .insert(CIRCUIT_KEY, json.as_str())
                    .map_err(|e| inner.storage(e))?;
                Ok(())
            })
        })
        .await
    }

    async fn close_circuit(&self) -> Result<(), LedgerError> {
        self.run(|inner| inner.remove(STATE, CIRCUIT_KEY)).await
    }

    async fn claim_probe(
        &self,
        now: OffsetDateTime,
        probe_after: Duration,
    ) -> Result<bool, LedgerError> {
        self.run(move |inner| {
            inner.write(|txn| {
                let mut table = txn.open_table(STATE).map_err(|e| inner.storage(e))?;
                let current: Option<Circuit> = table
                    .get(CIRCUIT_KEY)
                    .map_err(|e| inner.storage(e))?
                    .map(|v| decode(v.value(), "circuit record"))
                    .transpose()?;
                let Some(mut circuit) = current.filter(|c| probe_due(c, now, probe_after)) else {
                    return Ok(false);
                };
                circuit.probe_at = Some(now);
                let json = encode(&circuit)?;
                table
                    .insert(CIRCUIT_KEY, json.as_str())
                    .map_err(|e| inner.storage(e))?;
                Ok(true)
            })
        })
        .await
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, LedgerError> {
        let name = name.to_string();
        self.run(move |inner| inner.get(CHECKPOINTS, &name, &format!("checkpoint {name}")))
            .await
    }

    async fn progress(&self, unit: &EventKey, email: &str) -> Result<Vec<String>, LedgerError> {
        let key = progress_key(unit, email);
        self.run(move |inner| {
            Ok(inner
                .get::<Vec<String>>(PROGRESS, &key, "invitee progress")?
                .unwrap_or_default())
        })
        .await
    }

    async fn record_progress(
        &self,
        unit: &EventKey,
        email: &str,
        step: &str,
    ) -> Result<(), LedgerError> {
        let key = progress_key(unit, email);
        let step = step.to_string();
        self.run(move |inner| {
            inner.write(|txn| {
                let mut table = txn.open_table(PROGRESS).map_err(|e| inner.storage(e))?;
                let mut steps: Vec<String> = match table.get(key.as_str()) {
                    Ok(Some(v)) => decode(v.value(), "invitee progress")?,
                    Ok(None) => Vec::new(),
                    Err(e) => return Err(inner.storage(e)),
                };
                if !steps.contains(&step) {
                    steps.push(step);
                    let json = encode(&steps)?;
                    table
                        .insert(key.as_str(), json.as_str())
                        .map_err(|e| inner.storage(e))?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn record_grant(
        &self,
        source: &str,
        email: &str,
        user_id: &str,
        grant: &str,
    ) -> Result<(), LedgerError> {
        let email = guest_key(email);
        let key = format!("{source}\n{email}");
        let (source, user_id, grant) = (source.to_string(), user_id.to_string(), grant.to_string());
        self.run(move |inner| {
            inner.write(|txn| {
                let mut table = txn.open_table(GRANTS).map_err(|e| inner.storage(e))?;
                let mut record: SourceGrants = match table.get(key.as_str()) {
                    Ok(Some(v)) => decode(v.value(), "grant record")?,
                    Ok(None) => SourceGrants {
                        source,
                        email,
                        user_id: user_id.clone(),
                        grants: Vec::new(),
                    },
                    Err(e) => return Err(inner.storage(e)),
                };
                record.user_id = user_id;
                if !record.grants.contains(&grant) {
                    record.grants.push(grant);
                    record.grants.sort();
                }
                let json = encode(&record)?;
                table
                    .insert(key.as_str(), json.as_str())
                    .map_err(|e| inner.storage(e))?;
                Ok(())
            })
        })
        .await
    }

    async fn grants_of(&self, email: &str) -> Result<Vec<SourceGrants>, LedgerError> {
        let email = guest_key(email);
        self.run(move |inner| {
            Ok(inner
                .all::<SourceGrants>(GRANTS, "grant record")?
                .into_iter()
                .filter(|g| g.email == email)
                .collect())
        })
        .await
    }

    async fn granted_by(&self, source: &str) -> Result<Vec<SourceGrants>, LedgerError> {
        let source = source.to_string();
        self.run(move |inner| {
            Ok(inner
                .all::<SourceGrants>(GRANTS, "grant record")?
                .into_iter()
                .filter(|g| g.source == source)
                .collect())
        })
        .await
    }

    async fn forget_grants(&self, source: &str, email: &str) -> Result<(), LedgerError> {
        let key = format!("{source}\n{}", guest_key(email));
        self.run(move |inner| inner.remove(GRANTS, &key)).await
    }

    async fn put_end(&self, end: &EndRecord) -> Result<(), LedgerError> {
        let end = end.clone();
        self.run(move |inner| inner.put(ENDS, &end.end.subject.source(), &end))
            .await
    }

    async fn end(&self, source: &str) -> Result<Option<EndRecord>, LedgerError> {
        let source = source.to_string();
        self.run(move |inner| inner.get(ENDS, &source, "end record"))
            .await
    }

    async fn ends(&self) -> Result<Vec<EndRecord>, LedgerError> {
        self.run(|inner| inner.all(ENDS, "end record")).await
    }

    async fn record_part_done(&self, event: &EventKey, part: u32) -> Result<usize, LedgerError> {
        let key = format!("{}#{}", event.stored_source(), event.id);
        self.run(move |inner| {
            inner.write(|txn| {
                let mut table = txn.open_table(PARTS).map_err(|e| inner.storage(e))?;
                let mut done: Vec<u32> = match table.get(key.as_str()) {
                    Ok(Some(v)) => decode(v.value(), "parts done")?,
                    Ok(None) => Vec::new(),
                    Err(e) => return Err(inner.storage(e)),
                };
                if !done.contains(&part) {
                    done.push(part);
                    let json = encode(&done)?;
                    table
                        .insert(key.as_str(), json.as_str())
                        .map_err(|e| inner.storage(e))?;
                }
                Ok(done.len())
            })
        })
        .await
    }

    async fn put_checkpoint(
        &self,
        name: &str,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), LedgerError> {
        let name = name.to_string();
        let checkpoint = checkpoint.cloned();
        self.run(move |inner| match checkpoint {
            Some(c) => inner.put(CHECKPOINTS, &name, &c),
            None => inner.remove(CHECKPOINTS, &name),
        })
        .await
    }
}
