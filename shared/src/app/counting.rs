//! What a piece of work counts for, in the measures dashboards and alarms watch.

use super::Abort;
use super::events::Processed;
use super::self_service::Answer;
use super::self_service::PartProcessed;
use crate::error::FailureClass;
use crate::ports::ledger::{EventRecord, InviteeResult};
use crate::ports::metrics::{Counts, Measure};

/// The counts of one event's processing.
pub fn of_event(result: &Result<Processed, Abort>, partner: Option<&str>) -> Counts {
    let mut counts = match result {
        Ok(Processed::Done(record)) => of_record(record),
        Ok(Processed::Duplicate(_)) => Counts::one(Measure::Duplicate),
        // An invalid event's partner is not a partner: never a dimension of its own.
        Ok(Processed::Rejected(..)) => return Counts::one(Measure::Rejected),
        Err(abort) => Counts::one(of_abort(abort)),
    };
    counts.partner = partner.map(str::to_string);
    counts
}

/// The counts of a self-service request.
pub fn of_answer(result: &Result<Answer, Abort>) -> Counts {
    match result {
        Ok(Answer::Done(record)) => of_record(record),
        // Counted as its parts are done.
        Ok(Answer::Accepted { .. }) => Counts::default(),
        Ok(Answer::Duplicate(_)) => Counts::one(Measure::Duplicate),
        Ok(Answer::Refused { .. } | Answer::Conflict(_)) => Counts::one(Measure::Rejected),
        Err(abort) => Counts::one(of_abort(abort)),
    }
}

/// The counts of one queued part of a self-service request.
pub fn of_part(result: &Result<PartProcessed, Abort>) -> Counts {
    match result {
        Ok(PartProcessed::Done(record)) => of_record(record),
        Ok(PartProcessed::Duplicate(_)) => Counts::one(Measure::Duplicate),
        Ok(PartProcessed::Rejected(_)) => Counts::one(Measure::Rejected),
        Err(abort) => Counts::one(of_abort(abort)),
    }
}

/// The invitees of a processed record: invited, and refused.
pub fn of_record(record: &EventRecord) -> Counts {
    let mut counts = Counts::default();
    let count = |result| {
        record
            .outcomes
            .iter()
            .filter(|o| o.result == result)
            .count() as u64
    };
    counts.add(Measure::Invited, count(InviteeResult::Invited));
    counts.add(Measure::Refused, count(InviteeResult::Rejected));
    counts
}

/// Why work was put back: our access refused, Graph's throttling, the circuit, or anything
/// else transient.
pub fn of_abort(abort: &Abort) -> Measure {
    if abort.access_denied {
        return Measure::OutageRetried;
    }
    match abort.class {
        FailureClass::Throttled => Measure::Throttled,
        FailureClass::Blocked => Measure::CircuitOpen,
        FailureClass::Transient | FailureClass::Permanent => Measure::Retried,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ledger::{EventKey, EventStatus, InviteeOutcome};

    fn record(results: &[InviteeResult]) -> EventRecord {
        EventRecord {
            key: EventKey::new("partner-signed", "crm", "1"),
            event_type: "partner.signed".into(),
            status: EventStatus::Completed,
            reason: None,
            actor: None,
            outcomes: results
                .iter()
                .enumerate()
                .map(|(i, r)| InviteeOutcome {
                    email: format!("u{i}@litware.com"),
                    result: *r,
                    user_id: None,
                    granted: vec![],
                    reason: None,
                })
                .collect(),
            trust: None,
            recorded_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_processed_event_counts_its_new_guests_and_its_refusals() {
        use InviteeResult::*;
        let counts = of_event(
            &Ok(Processed::Done(record(&[
                Invited, Invited, Existed, Rejected,
            ]))),
            Some("litware"),
        );
        assert_eq!(counts.get(Measure::Invited), 2);
        assert_eq!(counts.get(Measure::Refused), 1);
        assert_eq!(counts.get(Measure::Rejected), 0);
        assert_eq!(counts.partner.as_deref(), Some("litware"));
        let again = of_event(&Ok(Processed::Duplicate(record(&[Invited]))), None);
        assert_eq!(again.get(Measure::Invited), 0);
        assert_eq!(again.get(Measure::Duplicate), 1);
    }

    #[test]
    fn work_put_back_is_counted_by_its_cause() {
        let mut denied = Abort::transient("consent revoked");
        denied.access_denied = true;
        assert_eq!(of_abort(&denied), Measure::OutageRetried);
        assert_eq!(of_abort(&Abort::circuit_open()), Measure::CircuitOpen);
        assert_eq!(of_abort(&Abort::transient("503")), Measure::Retried);
        let mut throttled = Abort::transient("429");
        throttled.class = FailureClass::Throttled;
        assert_eq!(of_abort(&throttled), Measure::Throttled);
    }
}
