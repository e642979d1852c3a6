//! Cluster membership: the membership actor (members, health, quorum) and one supervised node
//! actor per member.

pub mod membership;
pub mod node;

pub use membership::{MembershipActor, MembershipSettings};
pub use node::NodeActor;

impl From<crate::storage::StorageError> for crate::messages::cluster::ClusterError {
    fn from(e: crate::storage::StorageError) -> Self {
        crate::messages::cluster::ClusterError::Storage { message: e.to_string() }
    }
}
