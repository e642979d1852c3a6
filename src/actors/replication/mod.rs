//! Replication: the primary (WAL, group commit, shipping, acknowledgement modes, lag) and one
//! supervised actor per replica (durable apply, position reports).

pub mod metrics;
pub mod primary;
pub mod replica;

pub use primary::{PrimaryActor, ReplicationSettings};
pub use replica::ReplicaActor;

impl From<crate::storage::StorageError> for crate::messages::replication::ReplicationError {
    fn from(e: crate::storage::StorageError) -> Self {
        crate::messages::replication::ReplicationError::Storage { message: e.to_string() }
    }
}
