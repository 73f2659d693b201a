//! The two ledgers: DynamoDB in the cloud, an embedded `redb` file locally.
//!
//! Both follow the idempotency pattern of the Powertools idempotency utility: claiming an
//! event writes an *in-progress* record that holds a lease; completing it replaces that with
//! the *completed* record; releasing it deletes the in-progress record. A lease that ran out
//! (its holder crashed or timed out) may be claimed again. Every write that decides who does
//! something (claims, reminders, probes) is conditional, so of two concurrent callers exactly
//! one wins.
//!
//! # DynamoDB table (single-table design)
//!
//! The infrastructure template declares the table with exactly this schema (and
//! [`DynamoLedger::create_table`] creates the same one for tests and local runs):
//!
//! | attribute | type | role |
//! |---|---|---|
//! | `pk` | S | partition key |
//! | `sk` | S | sort key |
//! | `ttl` | N | DynamoDB TTL attribute (unix seconds); on event and invitee progress records |
//!
//! Billing mode on-demand (`PAY_PER_REQUEST`), TTL enabled on `ttl`, no secondary index.
//!
//! | record | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | event (`scope`, `source`, `id`) | `EVENT#{scope}|{source}` | `EVENT#{id}` | `state` S (`inProgress`/`done`), `leaseUntil` N (unix ms, in progress), `doc` S (JSON [`EventRecord`](crate::ports::ledger::EventRecord), done), `ttl` |
//! | partner | `PARTNER` | `PARTNER#{id}` | `doc` S (JSON [`PartnerRecord`](crate::ports::ledger::PartnerRecord)) |
//! | guest | `GUEST` | `GUEST#{lower-case email}` | `doc` S (JSON [`GuestRecord`](crate::ports::ledger::GuestRecord)), `reminders` N |
//! | circuit | `CIRCUIT` | `CIRCUIT` | `doc` S (JSON [`Circuit`]), `version` S |
//! | checkpoint | `CHECKPOINT` | `CHECKPOINT#{name}` | `doc` S (JSON [`Checkpoint`](crate::ports::ledger::Checkpoint)) |
//! | write budget | `BUDGET` | `GRAPH_WRITES` | `tokens` N, `at` N (unix ms of the last draw), `pausedUntil` N (unix ms, Graph's Retry-After), `version` S |
//! | event outcomes too large for the event item | as the event | `EVENT#{id}#OUTCOMES#{nnnn}` | `doc` S (JSON array of outcomes), `ttl`; the event item then has `outcomePages` N |
//! | invitee progress | `PROGRESS#{scope}|{source}#{id}` | `INVITEE#{lower-case email}` | `steps` SS (what landed), `ttl` |
//! | parts done of a split event | `PROGRESS#{scope}|{source}#{id}` | `PARTS` | `done` NS (part numbers), `ttl` |
//! | what a source granted a guest (by guest) | `GRANTS#{lower-case email}` | `SOURCE#{source}` | `grants` SS, `userId` S, `source` S, `email` S |
//! | the same (by source) | `SOURCE#{source}` | `GUEST#{lower-case email}` | as above |
//! | end of a source | `END` | `END#{source}` | `doc` S (JSON [`EndRecord`](crate::ports::ledger::EndRecord)) |
//!
//! Partners and guests share one constant partition each, so listing them is a paginated
//! Query, never a Scan; both are written at invitation pace (Graph allows 20 writes a second),
//! far below one partition's limits. Events spread over one partition per source. A key part
//! longer than [`MAX_KEY_PART`] bytes is replaced by `H#` and its SHA-256 in hex, because
//! DynamoDB limits key sizes and event ids come from outside.
//!
//! `ttl` on an in-progress record is the lease end plus [`IN_PROGRESS_TTL_MARGIN`] (an
//! abandoned claim disappears by itself); on a completed record it is
//! [`COMPLETED_TTL`] after `recordedAt` (SQS keeps a message at most 14 days, so a
//! redelivery never outlives its record).
//!
//! # Embedded store
//!
//! One `ledger.redb` file in the configured directory, one table per record kind, JSON
//! values; write transactions make each conditional write atomic. redb locks the file, so the
//! embedded ledger serves **one process at a time**: share one [`EmbeddedLedger`] between the
//! tasks of a process. Opening a file held by another process waits briefly, then fails.

mod budget;
mod dynamo_grants;
mod dynamo_table;
mod dynamodb;
mod embedded;
mod outcome_pages;

pub use budget::DynamoBudget;
pub use dynamodb::DynamoLedger;
pub use embedded::EmbeddedLedger;

use sha2::{Digest, Sha256};
use std::time::Duration;
use time::OffsetDateTime;

use crate::ports::ledger::Circuit;

/// An abandoned in-progress record lives this long past its lease in DynamoDB.
pub const IN_PROGRESS_TTL_MARGIN: Duration = Duration::from_secs(24 * 3600);
/// A completed event record lives this long in DynamoDB.
pub const COMPLETED_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Longest key part (source, id, email, name) stored as it is; longer ones are hashed.
pub const MAX_KEY_PART: usize = 512;

/// The end of a lease taken at `now`; saturates instead of overflowing on absurd leases.
fn lease_end(now: OffsetDateTime, lease: Duration) -> OffsetDateTime {
    time::Duration::try_from(lease)
        .ok()
        .and_then(|d| now.checked_add(d))
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
}

/// Whether a lease ending at `until` has run out at `now`.
fn lease_expired(until: OffsetDateTime, now: OffsetDateTime) -> bool {
    until <= now
}

/// Guests are keyed by lower-case address, whatever case the caller used.
fn guest_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Whether an open circuit may let a probe through at `now`.
fn probe_due(circuit: &Circuit, now: OffsetDateTime, probe_after: Duration) -> bool {
    if !circuit.open {
        return false;
    }
    let last = match (circuit.opened_at, circuit.probe_at) {
        (Some(a), Some(b)) => a.max(b),
        (Some(a), None) | (None, Some(a)) => a,
        // An open circuit with no time recorded: nothing to wait for.
        (None, None) => return true,
    };
    lease_end(last, probe_after) <= now
}

/// A key part as stored: itself when short, else a digest (see the module docs).
fn key_part(value: &str) -> String {
    if value.len() <= MAX_KEY_PART {
        value.to_string()
    } else {
        format!("H#{}", hex::encode(Sha256::digest(value.as_bytes())))
    }
}

fn unix_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_unix_millis(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn probe_waits_from_the_later_of_opening_and_last_probe() {
        let mut c = Circuit {
            open: true,
            reason: None,
            opened_at: Some(datetime!(2026-01-01 00:00 UTC)),
            probe_at: None,
        };
        let six_hours = Duration::from_secs(6 * 3600);
        assert!(!probe_due(&c, datetime!(2026-01-01 05:59 UTC), six_hours));
        assert!(probe_due(&c, datetime!(2026-01-01 06:00 UTC), six_hours));
        c.probe_at = Some(datetime!(2026-01-01 06:00 UTC));
        assert!(!probe_due(&c, datetime!(2026-01-01 11:00 UTC), six_hours));
        assert!(probe_due(&c, datetime!(2026-01-01 12:00 UTC), six_hours));
        c.open = false;
        assert!(!probe_due(&c, datetime!(2027-01-01 00:00 UTC), six_hours));
    }

    #[test]
    fn long_key_parts_are_hashed() {
        assert_eq!(key_part("litware"), "litware");
        let long = "x".repeat(MAX_KEY_PART + 1);
        let hashed = key_part(&long);
        assert!(hashed.starts_with("H#") && hashed.len() == 66);
        assert_ne!(hashed, key_part(&"x".repeat(MAX_KEY_PART + 2)));
    }

    #[test]
    fn absurd_leases_saturate() {
        let now = datetime!(2026-01-01 00:00 UTC);
        assert!(lease_end(now, Duration::from_secs(u64::MAX)) > now);
        assert_eq!(
            from_unix_millis(unix_millis(now)).unwrap(),
            now,
            "millisecond round trip"
        );
    }
}
