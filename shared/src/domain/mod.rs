//! The domain core: pure decisions, no I/O.

pub mod access;
pub mod email;
pub mod event;
mod fields;
pub mod hr;
pub mod offboard;
pub mod partner;
pub mod plan;
pub mod policy;
pub mod request;
pub mod signature;
pub mod sweep;
pub mod trust;
