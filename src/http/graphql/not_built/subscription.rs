//! The not-built subscriptions themselves: every one refuses with [`not_built`] before any
//! registry subscription is made, so none costs anything or counts against its connection's cap.
//! Their arguments are the contract's, unused until the domain answers them.

use async_graphql::{Subscription, ID};
use futures_util::stream::Empty;

use super::types::{ConflictEvent, RebalanceProgressEvent};
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

}
