//! Cluster membership: the membership actor (members, health, quorum) and one supervised node
//! actor per member.

pub mod membership;
pub mod node;

pub use membership::{MembershipActor, MembershipSettings};
pub use node::NodeActor;
