//! Subscriptions, each one a registry subscription: the registry pushes the events its filter
//! admits as they are published, so nothing here polls or runs on a timer. Every subscription is
//! counted in `/metrics` while its stream lives.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use async_graphql::{Context, Subscription, ID};
use futures_util::{Stream, StreamExt};

use super::schema::{
    filter_of, runtime, to_gql, ClusterEventObject, ClusterHealthEvent, ConnectionInfo,
    EventFilterInput, NodeStatusEvent,
};
use crate::messages::events::{now_ms, EventFilter, EventType, SharedEvent};
use crate::messages::registry::{SubscriberInfo, Transport};
use crate::metrics::Metrics;

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Every event the filter admits, as the whole envelope. With `filter.sinceSeq`, retained
    /// events after it are replayed first, then live ones follow with no gap.
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilterInput>,
    ) -> async_graphql::Result<impl Stream<Item = ClusterEventObject>> {
        let filter = filter_of(filter)?;
        let events = subscribe(ctx, "events", filter).await?;
        Ok(events.map(ClusterEventObject))
    }

    /// Health changes of nodes (of `nodeId` only, when given).
    async fn node_status_changes(
        &self,
        ctx: &Context<'_>,
        node_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = NodeStatusEvent>> {
        let filter = EventFilter {
            event_types: vec![EventType::NodeHealthChange],
            node_ids: node_id.map(|id| vec![id.0]).unwrap_or_default(),
            ..EventFilter::default()
        };
        let events = subscribe(ctx, "nodeStatusChanges", filter).await?;
        Ok(events.filter_map(|e| std::future::ready(NodeStatusEvent::from_event(&e))))
    }

    /// Changes of overall cluster health: node health changes, quorum lost and restored.
    async fn cluster_health_changes(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = ClusterHealthEvent>> {
        let filter = EventFilter {
            event_types: ClusterHealthEvent::EVENT_TYPES.to_vec(),
            ..EventFilter::default()
        };
        let events = subscribe(ctx, "clusterHealthChanges", filter).await?;
        Ok(events.filter_map(|e| std::future::ready(ClusterHealthEvent::from_event(&e))))
    }
}

/// Registers with the registry as a GraphQL subscriber named after its field, and returns the
/// events as a stream that counts itself in the metrics while it lives.
async fn subscribe(
    ctx: &Context<'_>,
    field: &str,
    filter: EventFilter,
) -> async_graphql::Result<CountedStream> {
    let runtime = runtime(ctx)?;
    // Over WebSocket the transport puts the peer in the connection data; a schema executed some
    // other way (tests, in-process) has none, and says so.
    let (peer, connected_at_ms) = match ctx.data_opt::<ConnectionInfo>() {
        Some(info) => (info.peer.clone(), info.connected_at_ms),
        None => ("in-process".to_string(), now_ms()),
    };
    let info = SubscriberInfo {
        transport: Transport::GraphQl,
        stream: field.to_string(),
        peer,
        connected_at_ms,
    };
    let subscription = runtime
        .subscribe_as(filter, Vec::new(), info)
        .await
        .map_err(to_gql)?;
    tracing::debug!(
        field,
        subscription_id = subscription.subscription_id(),
        "graphql subscription started"
    );
    Ok(CountedStream::new(
        subscription.into_stream().boxed(),
        runtime.metrics().clone(),
    ))
}

/// A subscription's events, counted as an active GraphQL subscription from creation until drop
/// (the client completed it, the connection closed, or the registry ended it).
struct CountedStream {
    inner: Pin<Box<dyn Stream<Item = SharedEvent> + Send>>,
    metrics: Arc<Metrics>,
}

impl CountedStream {
    fn new(inner: Pin<Box<dyn Stream<Item = SharedEvent> + Send>>, metrics: Arc<Metrics>) -> Self {
        metrics.graphql_subscription_started();
        CountedStream { inner, metrics }
    }
}

impl Stream for CountedStream {
    type Item = SharedEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<SharedEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.metrics.graphql_subscription_ended();
    }
}
