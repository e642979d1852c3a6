//! Cluster subscriptions, registry subscriptions like every other: node health changes,
//! changes of overall cluster health, Raft leader elections and failovers. Lost events and the end of a subscription come as error
//! items (`lagged`, `subscription_closed`), as for `events`.

use async_graphql::{Context, Subscription, ID};
use futures_util::Stream;

use super::types::{ClusterHealthEvent, FailoverEvent, LeaderElectionEvent, NodeStatusEvent};
use crate::http::graphql::streams::{subscribe, typed};
use crate::messages::events::{EventFilter, EventType, SubjectKind};

#[derive(Default)]
pub struct ClusterSubscription;

#[Subscription]
impl ClusterSubscription {
    /// Health changes of nodes (of `nodeId` only, when given). Errors as for `events`.
    async fn node_status_changes(
        &self,
        ctx: &Context<'_>,
        node_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<NodeStatusEvent>>> {
        let filter = EventFilter {
            event_types: vec![EventType::NodeHealthChange],
            ..EventFilter::default()
        }
        .with_ids(SubjectKind::Node, node_id.map(|id| id.0));
        let events = subscribe(ctx, "nodeStatusChanges", filter).await?;
        Ok(typed(events, NodeStatusEvent::from_event))
    }

    /// Changes of overall cluster health: node health changes, quorum lost and restored. Errors
    /// as for `events`.
    async fn cluster_health_changes(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ClusterHealthEvent>>> {
        let filter = EventFilter {
            event_types: ClusterHealthEvent::EVENT_TYPES.to_vec(),
            ..EventFilter::default()
        };
        let events = subscribe(ctx, "clusterHealthChanges", filter).await?;
        Ok(typed(events, |e| ClusterHealthEvent::from_event(e).map(Ok)))
    }

    /// Raft leader elections: `leader_elected`. Errors as for `events`.
    async fn leader_elections(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LeaderElectionEvent>>> {
        let filter = EventFilter { event_types: vec![EventType::LeaderElected], ..EventFilter::default() };
        let events = subscribe(ctx, "leaderElections", filter).await?;
        Ok(typed(events, |e| LeaderElectionEvent::from_event(e).map(Ok)))
    }

    /// Failovers, Raft or replication: `failover_initiated`, `failover_completed`. Errors as for
    /// `events`.
    async fn failover_events(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<FailoverEvent>>> {
        let filter = EventFilter { event_types: FailoverEvent::EVENT_TYPES.to_vec(), ..EventFilter::default() };
        let events = subscribe(ctx, "failoverEvents", filter).await?;
        Ok(typed(events, |e| FailoverEvent::from_event(e).map(Ok)))
    }
}
