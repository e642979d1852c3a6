//! Replication queries: status, replicas, lag, lag history, throughput, health, slots, and reading
//! a row where it lives. Each is one message to the primary actor.

use async_graphql::{Context, Object, ID};

use super::types::{
    LagHistoryObject, ReplicaLagObject, ReplicaObject, ReplicationHealthObject,
    ReplicationStatusObject, ReplicationThroughputObject, RowObject, SlotChangesObject, SlotObject,
};
use crate::http::graphql::schema::{runtime, to_gql};
use crate::messages::replication::{
    GetLagHistory, GetReplica, GetReplicationHealth, GetReplicationStatus, GetSlot, GetThroughput,
    ListReplicas, ListSlots, PeekSlotChanges, ReadFrom, ReadRow, ReplicationError,
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
    ) -> async_graphql::Result<ReplicationStatusObject> {
        let status = runtime(ctx)?
            .primary()
            .send(GetReplicationStatus)
            .await
            .map_err(to_gql)?;
        Ok(status.into())
    }

    /// Every replica.
    async fn replicas(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ReplicaObject>> {
        let replicas = runtime(ctx)?
            .primary()
            .send(ListReplicas)
            .await
            .map_err(to_gql)?;
        Ok(replicas.into_iter().map(ReplicaObject::from).collect())
    }

    /// One replica; null if there is none by that id.
    async fn replica(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<ReplicaObject>> {
        let answer = runtime(ctx)?
            .primary()
            .send(GetReplica { replica_id: id.0 })
            .await
            .map_err(to_gql)?;
        match answer {
            Ok(view) => Ok(Some(view.into())),
            Err(ReplicationError::ReplicaNotFound { .. }) => Ok(None),
            Err(e) => Err(to_gql(e)),
        }
    }

    /// Per replica: lag in bytes and seconds, and write/flush/replay lag.
    async fn replication_lag(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<ReplicaLagObject>> {
        let replicas = runtime(ctx)?
            .primary()
            .send(ListReplicas)
            .await
            .map_err(to_gql)?;
        Ok(replicas.into_iter().map(ReplicaLagObject::from).collect())
    }

    /// Real lag samples of the last `seconds` (default 300, at most 86400), one per heartbeat
    /// interval at most, oldest first; of `replicaId` only when given (an unknown one is
    /// `replica_not_found`).
    async fn lag_history(
        &self,
        ctx: &Context<'_>,
        replica_id: Option<ID>,
        seconds: Option<u64>,
    ) -> async_graphql::Result<Vec<LagHistoryObject>> {
        let history = runtime(ctx)?
            .primary()
            .send(GetLagHistory {
                replica_id: replica_id.map(|id| id.0),
                seconds: seconds.unwrap_or(DEFAULT_LAG_HISTORY_SECONDS),
            })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)?;
        Ok(history.into_iter().map(LagHistoryObject::from).collect())
    }

    /// Operations and bytes per second over the sliding window, on the primary and per replica.
    async fn replication_throughput(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<ReplicationThroughputObject> {
        let throughput = runtime(ctx)?
            .primary()
            .send(GetThroughput)
            .await
            .map_err(to_gql)?;
        Ok(throughput.into())
    }

    /// Every replication slot.
    async fn slots(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<SlotObject>> {
        let slots = runtime(ctx)?.primary().send(ListSlots).await.map_err(to_gql)?;
        Ok(slots.into_iter().map(SlotObject::from).collect())
    }

    /// One slot; null if there is none by that name.
    async fn slot(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Option<SlotObject>> {
        match runtime(ctx)?.primary().send(GetSlot { slot_name: name }).await.map_err(to_gql)? {
            Ok(view) => Ok(Some(view.into())),
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
    ) -> async_graphql::Result<SlotChangesObject> {
        if !(1..=10_000).contains(&limit) {
            return Err(to_gql(ReplicationError::InvalidField {
                field: "limit".into(),
                reason: format!("expected 1 to 10000, got {limit}"),
            }));
        }
        let changes = runtime(ctx)?
            .primary()
            .send(PeekSlotChanges { slot_name: name, limit })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)?;
        Ok(changes.into())
    }

    /// Per replica: healthy or not, and every reason it is not.
    async fn replication_health(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<ReplicationHealthObject> {
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
    ) -> async_graphql::Result<Option<RowObject>> {
        let from = if from == "primary" {
            ReadFrom::Primary
        } else {
            ReadFrom::Replica(from)
        };
        let row = runtime(ctx)?
            .primary()
            .send(ReadRow { table, key, from })
            .await
            .map_err(to_gql)?
            .map_err(to_gql)?;
        Ok(row.map(Into::into))
    }
}
