//! The tenant-wide invitation circuit (SPEC section 5): once Graph blocks invitations, no
//! function invites again until an operator closes the circuit or a probe succeeds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use time::OffsetDateTime;

use super::Abort;
use crate::ports::ledger::Ledger;

/// What one process knows about the circuit while it works through a batch.
#[derive(Debug, Default)]
pub struct CircuitGate {
    /// Set the moment this process sees the block, so no later call needs the ledger to know.
    blocked: AtomicBool,
    /// This process holds the probe: its next invitation decides.
    probing: AtomicBool,
}

impl CircuitGate {
    pub fn new() -> Self {
        Self::default()
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
            tracing::warn!("probe invitation succeeded: invitation circuit closed");
        }
        Ok(())
    }
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
