//! Replication queries: status, replicas, lag, lag history, throughput, health, slots, and reading
//! a row where it lives. Each is one message to the primary actor.

use async_graphql::{Context, Object, ID};

use super::types::ReplicationHealth;
use crate::http::graphql::schema::{runtime, to_gql};
use crate::messages::replication::{
    GetLagHistory, GetReplica, GetReplicationHealth, GetReplicationStatus, GetSlot, GetThroughput,
    LagHistory, ListReplicas, ListSlots, PeekSlotChanges, ReadFrom, ReadRow, ReplicaView,
    ReplicationError, ReplicationStatus, RowView, SlotChanges, SlotView, Throughput,
};

/// How far back `lagHistory` looks when no `seconds` is given (as REST).
pub const DEFAULT_LAG_HISTORY_SECONDS: u64 = 300;

#[derive(Default)]
pub struct ReplicationQuery;

#[Object]
impl ReplicationQuery {
    /// Primary, mode, current LSN, every replica, and overall replication health.
    async fn replication_status(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<ReplicationStatus> {
        runtime(ctx)?
            .primary()
            .send(GetReplicationStatus)
            .await
            .map_err(to_gql)
    }

    /// Every replica.
    async fn replicas(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ReplicaView>> {
        runtime(ctx)?
            .primary()
            .send(ListReplicas)
            .await
            .map_err(to_gql)
    }

    /// One replica; null if there is none by that id.
    async fn replica(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<ReplicaView>> {
        let answer = runtime(ctx)?
            .primary()
            .send(GetReplica { replica_id: id.0 })
            .await
            .map_err(to_gql)?;
        match answer {
            Ok(view) => Ok(Some(view)),
            Err(ReplicationError::ReplicaNotFound { .. }) => Ok(None),
            Err(e) => Err(to_gql(e)),
        }
    }

    /// Per replica: lag in bytes and seconds, and write/flush/replay lag. The answer is the
    /// replicas themselves; select their lag fields.
    async fn replication_lag(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ReplicaView>> {
        self.replicas(ctx).await
    }

    /// Real lag samples of the last `seconds` (default 300, at most 86400), one per heartbeat
    /// interval at most, oldest first; of `replicaId` only when given (an unknown one is
    /// `replica_not_found`).
    async fn lag_history(
        &self,
        ctx: &Context<'_>,
        replica_id: Option<ID>,
        seconds: Option<u64>,
    ) -> async_graphql::Result<Vec<LagHistory>> {
        runtime(ctx)?
            .primary()
            .send(GetLagHistory {
                replica_id: replica_id.map(|id| id.0),
                seconds: seconds.unwrap_or(DEFAULT_LAG_HISTORY_SECONDS),
            })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)
    }

    /// Operations and bytes per second over the sliding window, on the primary and per replica.
    async fn replication_throughput(&self, ctx: &Context<'_>) -> async_graphql::Result<Throughput> {
        runtime(ctx)?
            .primary()
            .send(GetThroughput)
            .await
            .map_err(to_gql)
    }

    /// Every replication slot.
    async fn slots(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<SlotView>> {
        runtime(ctx)?
            .primary()
            .send(ListSlots)
            .await
            .map_err(to_gql)
    }

    /// One slot; null if there is none by that name.
    async fn slot(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<Option<SlotView>> {
        let answer = runtime(ctx)?
            .primary()
            .send(GetSlot { slot_name: name })
            .await
            .map_err(to_gql)?;
        match answer {
            Ok(view) => Ok(Some(view)),
            Err(ReplicationError::SlotNotFound { .. }) => Ok(None),
            Err(e) => Err(to_gql(e)),
        }
    }

    /// A logical slot's changes after its confirmed position, decoded from the WAL (not
    /// consumed: advance the slot over REST once they are used). `limit` defaults to 100.
    async fn slot_changes(
        &self,
        ctx: &Context<'_>,
        name: String,
        #[graphql(default = 100)] limit: usize,
    ) -> async_graphql::Result<SlotChanges> {
        if !(1..=10_000).contains(&limit) {
            return Err(to_gql(ReplicationError::InvalidField {
                field: "limit".into(),
                reason: format!("expected 1 to 10000, got {limit}"),
            }));
        }
        runtime(ctx)?
            .primary()
            .send(PeekSlotChanges {
                slot_name: name,
                limit,
            })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)
    }

    /// Per replica: healthy or not, and every reason it is not.
    async fn replication_health(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<ReplicationHealth> {
        let replicas = runtime(ctx)?
            .primary()
            .send(GetReplicationHealth)
            .await
            .map_err(to_gql)?;
        Ok(replicas.into())
    }

    /// One row where it lives now: on the primary (`from: "primary"`, the default) or on the
    /// replica `from` names. Null if there is no such row there; an unknown replica is
    /// `replica_not_found`.
    async fn row(
        &self,
        ctx: &Context<'_>,
        table: String,
        key: String,
        #[graphql(default_with = "String::from(\"primary\")")] from: String,
    ) -> async_graphql::Result<Option<RowView>> {
        let from = if from == "primary" {
            ReadFrom::Primary
        } else {
            ReadFrom::Replica(from)
        };
        runtime(ctx)?
            .primary()
            .send(ReadRow { table, key, from })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)
    }
}
