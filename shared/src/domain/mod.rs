//! The domain core: pure decisions, no I/O.

pub mod access;
pub mod email;
