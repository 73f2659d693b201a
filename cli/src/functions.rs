//! The five functions, built from the same handler code the Lambda binaries serve, with the
//! command's environment (and, under `--dry-run`, a recording directory, ledger and mailer).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use b2b::app::runtime::Runtime;
use b2b::lambda::InvocationError;
use b2b::lambda::event_function::EventFunction;
use b2b::lambda::guest_inviter_request::GuestInviterRequest;
use b2b::lambda::resend_stale::{self, Overrides, ResendStale};
use b2b::lambda::serve::Handler;
use b2b::lambda::trigger::Trigger;
use b2b::ports::ledger::Ledger;
use b2b::ports::progress::Progress;
use serde_json::Value;
use tokio::time::Instant;

use crate::context::Context;

/// How long one local invocation may take: Lambda's longest timeout.
pub const INVOCATION_TIME: Duration = Duration::from_secs(15 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Function {
    PartnerSigned,
    HrRecordAdded,
    GuestInviterRequest,
    ResendStale,
    GuestOffboard,
}

impl Function {
    pub fn name(self) -> &'static str {
        match self {
            Function::PartnerSigned => "partner-signed",
            Function::HrRecordAdded => "hr-record-added",
            Function::GuestInviterRequest => "guest-inviter-request",
            Function::ResendStale => "resend-stale",
            Function::GuestOffboard => "guest-offboard",
        }
    }

    /// The function that handles a CloudEvents `type`.
    pub fn for_event_type(event_type: &str) -> Option<Function> {
        match event_type {
            t if t == b2b::domain::partner::EVENT_TYPE => Some(Function::PartnerSigned),
            t if t == b2b::domain::hr::EVENT_TYPE => Some(Function::HrRecordAdded),
            t if t == b2b::domain::request::EVENT_TYPE => Some(Function::GuestInviterRequest),
            t if t == b2b::domain::offboard::PARTNER_ENDED
                || t == b2b::domain::offboard::HR_RECORD_ENDED =>
            {
                Some(Function::GuestOffboard)
            }
            _ => None,
        }
    }

    /// Whether its events normally arrive through a queue (else a webhook).
    pub fn queue_first(self) -> bool {
        matches!(
            self,
            Function::PartnerSigned | Function::HrRecordAdded | Function::GuestOffboard
        )
    }
}

/// A function ready to take invocations, with the ledger it writes to.
pub struct Built {
    pub function: Function,
    pub handler: Box<dyn Handler>,
    pub ledger: Arc<dyn Ledger>,
}

impl Built {
    pub async fn invoke(&self, payload: Value) -> anyhow::Result<Value> {
        self.handler
            .handle(payload, Instant::now() + INVOCATION_TIME)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.function.name()))
    }
}

/// Puts the dry-run recorder (when asked for) in front of the runtime's directory and
/// ledger, and returns the ledger the function will write to.
fn prepare(
    ctx: &Context,
    runtime: &mut Runtime,
    progress: Option<Arc<dyn Progress>>,
) -> anyhow::Result<Arc<dyn Ledger>> {
    if let Some(recorder) = &ctx.recorder {
        recorder.apply(runtime)?;
    }
    runtime.progress = progress;
    Ok(Arc::clone(&runtime.ledger))
}

/// Builds a function's handler. The embedded ledger serves one holder at a time: drop the
/// result before building the next.
pub async fn build(ctx: &Context, function: Function) -> anyhow::Result<Built> {
    build_with(ctx, function, None).await
}

/// [`build`], telling `progress` how far each unit of work got.
pub async fn build_with(
    ctx: &Context,
    function: Function,
    progress: Option<Arc<dyn Progress>>,
) -> anyhow::Result<Built> {
    let start = |f: Function| format!("starting {}", f.name());
    match function {
        Function::PartnerSigned | Function::HrRecordAdded | Function::GuestOffboard => {
            let (accepts, webhooks): (&'static [&'static str], bool) = match function {
                Function::PartnerSigned => (&[b2b::domain::partner::EVENT_TYPE], true),
                Function::GuestOffboard => (
                    &[
                        b2b::domain::offboard::PARTNER_ENDED,
                        b2b::domain::offboard::HR_RECORD_ENDED,
                    ],
                    true,
                ),
                _ => (&[b2b::domain::hr::EVENT_TYPE], false),
            };
            let mut handler = EventFunction::from_env(function.name(), accepts, webhooks, &ctx.env)
                .await
                .with_context(|| start(function))?;
            let ledger = prepare(ctx, &mut handler.runtime, progress.clone())?;
            Ok(Built {
                function,
                handler: Box::new(handler),
                ledger,
            })
        }
        Function::ResendStale => {
            let mut inner = ResendStale::from_env(&ctx.env)
                .await
                .with_context(|| start(function))?;
            let ledger = prepare(ctx, &mut inner.runtime, progress.clone())?;
            Ok(Built {
                function,
                handler: Box::new(LocalSweep(inner)),
                ledger,
            })
        }
        Function::GuestInviterRequest => {
            let mut handler = GuestInviterRequest::from_env(&ctx.env)
                .await
                .with_context(|| start(function))?;
            let ledger = prepare(ctx, &mut handler.runtime, progress.clone())?;
            Ok(Built {
                function,
                handler: Box::new(handler),
                ledger,
            })
        }
    }
}

/// resend-stale's handler as the Lambda runs it (trigger, overrides, sweep), except that
/// the summary is answered even when the sweep stopped early (the command reports it and
/// exits 75), and no CloudWatch metrics record is written to standard output, which here
/// carries the command's JSON.
struct LocalSweep(ResendStale);

#[async_trait::async_trait]
impl Handler for LocalSweep {
    fn runtime(&self) -> &Runtime {
        &self.0.runtime
    }

    async fn handle(&self, payload: Value, deadline: Instant) -> Result<Value, InvocationError> {
        let overrides = match Trigger::recognise(payload)? {
            Trigger::Schedule(_) => Overrides::default(),
            Trigger::Direct(payload) => Overrides::parse(&payload)?,
            other => {
                return Err(other.unsupported(
                    resend_stale::FUNCTION,
                    "an EventBridge schedule, or a direct invocation with \
                     {\"dryRun\":bool,\"scope\":\"managed\"|\"all\"}",
                ));
            }
        };
        let config = overrides.apply(&self.0.config);
        let summary = self.0.sweep(&config, deadline).await;
        serde_json::to_value(&summary)
            .map_err(|e| InvocationError::Failed(format!("cannot encode the summary: {e}")))
    }
}
