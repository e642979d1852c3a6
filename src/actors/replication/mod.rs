//! Replication: the primary (WAL, group commit, shipping, acknowledgement modes, lag) and one
//! supervised actor per replica (durable apply, position reports).

pub mod background;
pub mod primary;
pub mod replica;
pub mod table;

pub use primary::{PrimaryActor, ReplicationSettings};
pub use replica::ReplicaActor;
