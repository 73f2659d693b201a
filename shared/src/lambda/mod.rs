//! Translation between Lambda events and use cases.
