//! `sweep`: resend-stale, once, as its schedule would run it.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::Global;
use crate::aws;
use crate::context::{Context, LocalOptions};
use crate::functions::{self, Function};

/// The long help of the command.
pub const LONG_ABOUT: &str = "Run resend-stale once: guests pending longer than REMIND_AFTER are invited \
        again (at most MAX_REMINDERS times, REMIND_EVERY apart), guests pending longer than \
        EXPIRE_AFTER are disabled or deleted (EXPIRE_ACTION), and guests who redeemed are \
        marked accepted. Prints the function's summary as JSON. With --dry-run the sweep runs \
        in full but every write is listed instead of made.";

#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub state: crate::StateDir,
    /// Which pending guests to touch (default: SCOPE, else managed).
    #[arg(long, value_enum)]
    scope: Option<ScopeArg>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScopeArg {
    /// Only guests this product invited.
    Managed,
    /// Every pending guest of the tenant.
    All,
}

pub async fn run(global: &Global, args: SweepArgs) -> anyhow::Result<ExitCode> {
    let ctx = Context::open(global, LocalOptions::default()).await?;
    eprintln!("sweeping {}", ctx.describe());
    let payload = match args.scope {
        // A direct invocation carries the override, as an operator's would.
        Some(scope) => json!({
            "scope": match scope { ScopeArg::Managed => "managed", ScopeArg::All => "all" },
        }),
        None => aws::scheduled_event(ctx.now()?),
    };
    let built = functions::build(&ctx, Function::ResendStale).await?;
    let summary = built.invoke(payload).await;
    drop(built);
    if let Some(recorder) = &ctx.recorder {
        // Standard output carries the summary as JSON.
        eprint!("{}", recorder.render());
    }
    let summary = summary?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(if crate::run::needs_retry(&summary) {
        ExitCode::from(crate::run::RETRY_LATER)
    } else {
        ExitCode::SUCCESS
    })
}
