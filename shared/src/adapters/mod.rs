//! Implementations of the ports.

pub mod graph;
pub mod http;
