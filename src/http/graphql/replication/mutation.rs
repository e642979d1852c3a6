//! Replication mutations: the data path (`replicate`), the replica lifecycle (add, remove, pause,
//! resume) and the acknowledgement mode. Each is one message to the primary actor, answered once
//! the change is durable; domain errors carry the REST error codes and details.

use async_graphql::{Context, Object, ID};

use super::types::OpInput;
use crate::http::graphql::schema::{runtime, to_gql};
use crate::messages::replication::{
    AddReplica, PauseReplica, RemoveReplica, ReplicaView, ReplicateAck, ReplicateOps,
    ReplicationSettingsView, ResumeReplica, SetReplicationConfig,
};
use crate::model::{ReplicaMode, ReplicationMode};

#[derive(Default)]
pub struct ReplicationMutation;

#[Object]
impl ReplicationMutation {
    /// Applies a batch of operations atomically on the primary and answers once it is durable as
    /// the replication mode requires. An insert of an existing row is `duplicate_key`, an update
    /// or delete of a missing one `row_not_found`; when the replicas the mode waits for do not
    /// flush in time, `replication_timeout` (the write is durable on the primary; `details` says
    /// which replicas acknowledged and which are missing).
    async fn replicate(
        &self,
        ctx: &Context<'_>,
        ops: Vec<OpInput>,
    ) -> async_graphql::Result<ReplicateAck> {
        runtime(ctx)?
            .primary()
            .send(ReplicateOps {
                ops: ops.into_iter().map(Into::into).collect(),
            })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)
    }

    /// Adds a replica; it starts empty (or from the snapshot `fromSnapshot`) and catches up from
    /// the WAL.
    async fn add_replica(
        &self,
        ctx: &Context<'_>,
        replica_id: ID,
        #[graphql(default_with = "ReplicaMode::Async")] mode: ReplicaMode,
        from_snapshot: Option<String>,
    ) -> async_graphql::Result<ReplicaView> {
        runtime(ctx)?
            .primary()
            .send(AddReplica {
                replica_id: replica_id.0,
                mode,
                from_snapshot,
            })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)
    }

    /// Removes a replica (its actor stops). True once durable.
    async fn remove_replica(
        &self,
        ctx: &Context<'_>,
        replica_id: ID,
    ) -> async_graphql::Result<bool> {
        runtime(ctx)?
            .primary()
            .send(RemoveReplica {
                replica_id: replica_id.0,
            })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)?;
        Ok(true)
    }

    /// Stops shipping to a replica; it keeps what it has and its WAL is retained for it. Pausing
    /// a paused replica is `wrong_state`.
    async fn pause_replica(
        &self,
        ctx: &Context<'_>,
        replica_id: ID,
    ) -> async_graphql::Result<ReplicaView> {
        runtime(ctx)?
            .primary()
            .send(PauseReplica {
                replica_id: replica_id.0,
            })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)
    }

    /// Ships to a paused replica again, from where it stopped. Resuming a replica that is not
    /// paused is `wrong_state`.
    async fn resume_replica(
        &self,
        ctx: &Context<'_>,
        replica_id: ID,
    ) -> async_graphql::Result<ReplicaView> {
        runtime(ctx)?
            .primary()
            .send(ResumeReplica {
                replica_id: replica_id.0,
            })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)
    }

    /// Changes the acknowledgement mode at run time; durable (it survives a restart and wins over
    /// the config file). `syncQuorum` (for `SEMI_SYNC`) and `syncTimeoutMs` keep their values
    /// when not given.
    async fn set_replication_mode(
        &self,
        ctx: &Context<'_>,
        mode: ReplicationMode,
        sync_quorum: Option<usize>,
        sync_timeout_ms: Option<u64>,
    ) -> async_graphql::Result<ReplicationSettingsView> {
        runtime(ctx)?
            .primary()
            .send(SetReplicationConfig {
                mode,
                sync_quorum,
                sync_timeout_ms,
            })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)
    }
}
