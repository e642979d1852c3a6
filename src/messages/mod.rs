//! Typed messages, one file per domain, and the event types. No logic beyond validation of
//! what a message carries and how its errors describe themselves.

pub mod cluster;
pub mod errors;
pub mod events;
pub mod faults;
pub mod rac;
pub mod registry;
pub mod replication;
pub mod runtime;
pub mod sessions;
pub mod system;
