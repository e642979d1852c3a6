//! The cluster membership domain over GraphQL: queries for status, health and nodes; mutations
//! to add, update and remove members; subscriptions `nodeStatusChanges` and
//! `clusterHealthChanges`. Each resolver is one message to the membership actor or one registry
//! subscription.

mod mutation;
mod query;
mod subscription;
mod types;

pub use mutation::ClusterMutation;
pub use query::ClusterQuery;
pub use subscription::ClusterSubscription;
pub use types::{ClusterHealthEvent, NodeStatusEvent};
