//! Typed messages, one file per domain, and the event types. No logic beyond validation of
//! what a message carries.

pub mod cluster;
pub mod events;
pub mod registry;
pub mod replication;
pub mod runtime;
pub mod system;
