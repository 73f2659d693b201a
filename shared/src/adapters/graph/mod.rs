//! The directory port over Microsoft Graph v1.0.

mod client;
mod credential;
mod cross_tenant;
mod directory;
pub mod limiter;
pub mod odata;
mod removals;
pub mod retry;
mod wire;

pub use client::{GraphClient, GraphDirectory, graph_scope};
pub use credential::{CredentialError, build_credential};
pub use retry::RetryPolicy;
