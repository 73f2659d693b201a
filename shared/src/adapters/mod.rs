//! Implementations of the ports.

pub mod http;
