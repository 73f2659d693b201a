//! Use cases: carrying out the core's plans through the ports.
