//! `circuit`: the tenant-wide invitation circuit, seen and closed. Graph's abuse block opens
//! it and every function stops inviting; once Microsoft lifts the block an operator closes it
//! here (or a probe does, after CIRCUIT_PROBE_AFTER).

use std::process::ExitCode;

use b2b::app::runtime::Runtime;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::Global;
use crate::context::{Context, LocalOptions};

/// The long help of the command.
pub const LONG_ABOUT: &str = "See or close the tenant-wide invitation circuit. When Graph blocks invitations \
        for the tenant (an abuse block), the circuit opens and no function invites until it is \
        closed: by a probe invitation every CIRCUIT_PROBE_AFTER, or by an operator here once \
        Microsoft has lifted the block. Works against the deployed ledger (LEDGER_TABLE) or the \
        local one. Prints the circuit as JSON.";

#[derive(Args, Debug)]
pub struct CircuitArgs {
    #[command(flatten)]
    pub state: crate::StateDir,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug, Clone, Copy)]
enum Action {
    /// Whether the circuit is open, since when, why, and when the last probe went out.
    Status,
    /// Close it: invitations resume with the next event.
    Close,
}

pub async fn run(global: &Global, args: CircuitArgs) -> anyhow::Result<ExitCode> {
    let ctx = Context::open(global, LocalOptions::default()).await?;
    let runtime = Runtime::from_env("circuit", &ctx.env).await?;
    let ledger = runtime.ledger.as_ref();
    let circuit = ledger.circuit().await?;
    if let Action::Close = args.action {
        if !circuit.open {
            eprintln!("the circuit is closed already: nothing to do");
        } else if ctx.recorder.is_some() {
            eprintln!("dry run: the circuit would be closed");
        } else {
            ledger.close_circuit().await?;
            eprintln!(
                "circuit closed: invitations resume with the next event; the alarm clears with \
                 the next resend-stale run"
            );
        }
    }
    let now = ledger.circuit().await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "circuit": now,
            "probeAfter": format!("{}s", runtime.settings.circuit_probe_after.as_secs()),
        }))?
    );
    Ok(ExitCode::SUCCESS)
}
