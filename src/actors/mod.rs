//! The actors: one folder per domain, one file per actor (or a shell and the state it drives).
//! Each owns its state and is reached only through the messages in [`crate::messages`].

pub mod cluster;
pub mod domain;
pub mod net;
pub mod registry;
pub mod replication;
