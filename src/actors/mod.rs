//! The actors: one folder per domain, one file per actor. Each owns its state and is reached only
//! through the messages in [`crate::messages`].

pub mod cluster;
pub mod registry;
pub mod replication;
pub mod net;
