//! Implementations of the ports.

pub mod graph;
pub mod http;
pub mod ledger;
