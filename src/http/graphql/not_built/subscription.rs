//! The not-built subscriptions themselves: every one refuses with [`not_built`] before any
//! registry subscription is made, so none costs anything or counts against its connection's cap.
//! Their arguments are the contract's, unused until the domain answers them.

use async_graphql::{Subscription, ID};
use futures_util::stream::Empty;

use super::types::{
    CacheFusionEvent, ConflictEvent, LockEvent,
    ParallelQueryEvent, RebalanceProgressEvent, RecoveryEvent,
};
use crate::http::graphql::schema::not_built;

#[derive(Default)]
pub struct NotBuiltSubscription;

#[Subscription]
impl NotBuiltSubscription {
    /// Conflicts detected and resolved in a multi-master replication group (of `groupId` only,
    /// when given): `conflict_detected`, `conflict_resolved`.
    async fn replication_conflicts(
        &self,
        #[graphql(name = "groupId")] _group_id: Option<ID>,
    ) -> async_graphql::Result<Empty<ConflictEvent>> {
        Err(not_built("advanced_replication"))
    }

    /// Progress of shard rebalancing (of the table `tableId` only, when given):
    /// `rebalance_started`, `rebalance_progress`, `rebalance_completed`.
    async fn shard_rebalance_progress(
        &self,
        #[graphql(name = "tableId")] _table_id: Option<ID>,
    ) -> async_graphql::Result<Empty<RebalanceProgressEvent>> {
        Err(not_built("sharding"))
    }

    /// RAC Cache Fusion block transfers (to or from `instanceId` only, when given):
    /// `block_transfer`.
    async fn cache_fusion_events(
        &self,
        #[graphql(name = "instanceId")] _instance_id: Option<ID>,
    ) -> async_graphql::Result<Empty<CacheFusionEvent>> {
        Err(not_built("rac"))
    }

    /// RAC global lock changes (of `resourceId` only, when given): `lock_granted`,
    /// `lock_released`, `lock_converted`.
    async fn resource_lock_events(
        &self,
        #[graphql(name = "resourceId")] _resource_id: Option<String>,
    ) -> async_graphql::Result<Empty<LockEvent>> {
        Err(not_built("rac"))
    }

    /// RAC instance recoveries: `recovery_started`, `recovery_progress`, `recovery_completed`.
    async fn instance_recovery_events(&self) -> async_graphql::Result<Empty<RecoveryEvent>> {
        Err(not_built("rac"))
    }

    /// RAC parallel queries (of `queryId` only, when given): `parallel_query_started`,
    /// `parallel_query_completed`.
    async fn parallel_query_events(
        &self,
        #[graphql(name = "queryId")] _query_id: Option<ID>,
    ) -> async_graphql::Result<Empty<ParallelQueryEvent>> {
        Err(not_built("rac"))
    }
}
