//! b2b-invites: the domain core, the ports it talks through, and the adapters behind them.
//!
//! - [`domain`] decides: pure functions from events, configuration and what the ledger knows
//!   to plans of directory actions. It performs no I/O.
//! - [`ports`] are the traits for the outside world: the directory (Microsoft Graph), the
//!   ledger (DynamoDB or the embedded store) and the mailer (SES or a file outbox).
//! - [`adapters`] implement the ports.
//! - [`app`] carries out plans through the ports (the use cases).
//! - [`lambda`] translates Lambda events into use-case calls and outcomes back.

pub mod adapters;
pub mod app;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod lambda;
pub mod ports;
pub mod telemetry;
