//! The tenant-wide invitation circuit (SPEC section 5): once Graph blocks invitations, no
//! function invites again until an operator closes the circuit or a probe succeeds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use time::OffsetDateTime;

use super::Abort;
use crate::ports::ledger::{Circuit, Ledger};
use crate::ports::metrics::Metrics;

/// What one process knows about the circuit while it works through a batch.
#[derive(Default)]
pub struct CircuitGate {
    /// Set the moment this process sees the block, so no later call needs the ledger to know.
    blocked: AtomicBool,
    /// This process holds the probe: its next invitation decides.
    probing: AtomicBool,
    /// Told the circuit's state whenever this process finds it open or closes it.
    metrics: Option<Arc<dyn Metrics>>,
}

impl CircuitGate {
    pub fn new() -> Self {
        Self::default()
    }

    /// A gate that reports the circuit's state: open with every refusal, closed when its
    /// probe closes it, so the alarm on it clears only then.
    pub fn reporting(metrics: Arc<dyn Metrics>) -> Self {
        CircuitGate {
            metrics: Some(metrics),
            ..Self::default()
        }
    }

    fn report(&self, open: bool) {
        if let Some(m) = &self.metrics {
            m.circuit(open);
        }
    }

    /// Whether inviting may proceed. Reads the ledger; an open circuit lets one probe
    /// through every `probe_after`.
    pub async fn admit(
        &self,
        ledger: &dyn Ledger,
        now: OffsetDateTime,
        probe_after: Duration,
    ) -> Result<(), Abort> {
        if self.blocked.load(Ordering::SeqCst) {
            self.report(true);
            return Err(refused_while_open());
        }
        let circuit = ledger.circuit().await?;
        if !circuit.open {
            return Ok(());
        }
        if ledger.claim_probe(now, probe_after).await? {
            tracing::warn!("invitation circuit open: letting one probe invitation through");
            self.probing.store(true, Ordering::SeqCst);
            return Ok(());
        }
        self.blocked.store(true, Ordering::SeqCst);
        self.report(true);
        Err(refused_while_open())
    }

    /// Checked right before each invitation.
    pub fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::SeqCst)
    }

    /// Graph refused with the abuse block: stop here and everywhere.
    pub async fn trip(&self, ledger: &dyn Ledger, reason: &str, now: OffsetDateTime) -> Abort {
        self.blocked.store(true, Ordering::SeqCst);
        self.probing.store(false, Ordering::SeqCst);
        self.report(true);
        tracing::error!(
            reason,
            metric = "InvitationCircuitOpen",
            "Graph blocked invitations for the tenant: opening the invitation circuit"
        );
        if let Err(e) = ledger.open_circuit(reason, now).await {
            // The block is still honoured in this process; other processes learn of it from
            // their own first refused invitation.
            tracing::error!(error = %e, "could not record the open invitation circuit");
        }
        Abort::blocked(reason)
    }

    /// An invitation went through: a probe that succeeds closes the circuit.
    pub async fn invitation_succeeded(&self, ledger: &dyn Ledger) -> Result<(), Abort> {
        if self.probing.swap(false, Ordering::SeqCst) {
            ledger.close_circuit().await?;
            self.report(false);
            tracing::warn!("probe invitation succeeded: invitation circuit closed");
        }
        Ok(())
    }
}

/// SQS keeps a message out of sight for at most 12 hours from its receive; a little less, so
/// the change is never refused.
const MAX_HOLD: Duration = Duration::from_secs(12 * 3600 - 300);

/// How long work waits for an open circuit: until its next probe (at least a minute), within
/// SQS's limit on a message's visibility.
pub fn until_probe(circuit: &Circuit, now: OffsetDateTime, probe_after: Duration) -> Duration {
    let since = circuit.probe_at.or(circuit.opened_at).unwrap_or(now);
    let next = since + time::Duration::try_from(probe_after).unwrap_or(time::Duration::MAX);
    let wait = Duration::try_from(next - now).unwrap_or(Duration::ZERO);
    wait.clamp(Duration::from_secs(60), MAX_HOLD)
}

/// A unit refused by the open circuit. The metric goes out with every refusal, not only when
/// the circuit trips, so the alarm stays in alarm for as long as invitations are held back.
fn refused_while_open() -> Abort {
    tracing::error!(
        metric = "InvitationCircuitOpen",
        "invitation refused: the tenant-wide invitation circuit is open"
    );
    Abort::circuit_open()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn work_waits_until_the_next_probe_within_sqs_limit() {
        let opened = datetime!(2026-12-04 10:00 UTC);
        let circuit = Circuit {
            open: true,
            reason: None,
            opened_at: Some(opened),
            probe_at: None,
        };
        let six_hours = Duration::from_secs(6 * 3600);
        let an_hour_later = opened + time::Duration::hours(1);
        assert_eq!(
            until_probe(&circuit, an_hour_later, six_hours),
            Duration::from_secs(5 * 3600)
        );
        // A probe is due (or overdue): the next look within a minute.
        let later = opened + time::Duration::hours(7);
        assert_eq!(
            until_probe(&circuit, later, six_hours),
            Duration::from_secs(60)
        );
        // Probes a day apart: no longer than SQS allows.
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(until_probe(&circuit, opened, day), MAX_HOLD);
        let probed = Circuit {
            probe_at: Some(opened + time::Duration::hours(6)),
            ..circuit
        };
        assert_eq!(
            until_probe(&probed, opened + time::Duration::hours(7), six_hours),
            Duration::from_secs(5 * 3600)
        );
    }
}
