//! The replication domain over GraphQL: queries for status, replicas, lag, throughput, health,
//! slots and rows; mutations for the data path (`replicate`), the replica lifecycle and the
//! acknowledgement mode; subscriptions `replicationLagUpdates` and `replicaStatusChanges`, fed
//! from the event registry like every other subscription.
//!
//! Like the REST face (`crate::http::rest::replication`) it only translates: every resolver is one
//! message to the primary actor, and its errors go through the same `ApiError` conversion, so
//! `extensions.code` is the REST error code (`replica_not_found`, `duplicate_key`,
//! `replication_timeout` …) with the same `details`.

mod mutation;
mod query;
mod subscription;
mod types;

pub use mutation::ReplicationMutation;
pub use query::{ReplicationQuery, DEFAULT_LAG_HISTORY_SECONDS};
pub use subscription::ReplicationSubscription;
pub use types::{OpInput, ReplicaStatusEvent, ReplicationHealth, ReplicationLagEvent};
