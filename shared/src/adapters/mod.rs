//! Implementations of the ports.

pub mod dead_letters;
pub mod emf;
pub mod entra_token;
pub mod graph;
pub mod http;
pub mod ledger;
pub mod mailer;
pub mod queue;
pub mod secrets;
