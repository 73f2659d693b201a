//! Harness for the end-to-end tests: the real function binaries run as child processes
//! against a local Lambda Runtime API, with AWS-shaped trigger events, a dev tenant for
//! Microsoft Graph, and a ledger (embedded, or DynamoDB on the local AWS emulator).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use b2b_e2e::{TestEnv, events};
//! use std::time::Duration;
//! let env = TestEnv::builder().start().await?;
//! let function = env.spawn("hr-record-added").await?;
//! let answer = function
//!     .invoke(events::sqs_event(&[("m1", "{}")]), Duration::from_secs(30))
//!     .await?;
//! # let _ = answer; Ok(()) }
//! ```

pub mod checks;
pub mod env;
pub mod events;
pub mod process;
pub mod queue;
pub mod runtime_api;
pub mod soak;

pub use env::{LedgerKind, MAIL_FROM, OutboxMail, TestEnv, TestEnvBuilder, WEBHOOK_SECRETS};
pub use process::{FunctionProcess, Output, Profile, binary_path, target_dir};
pub use runtime_api::{InvocationFailure, RuntimeApi};
