//! Replication subscriptions, registry subscriptions like every other: lag samples as the
//! primary measures them, and replica status changes. Lost events and the end of a subscription
//! come as error items (`lagged`, `subscription_closed`), and each counts against its
//! connection's cap, exactly as for the cluster subscriptions.

use async_graphql::{Context, Subscription, ID};
use futures_util::Stream;

use super::types::{ReplicaStatusEvent, ReplicationLagEvent};
use crate::http::graphql::streams::{subscribe, typed};
use crate::messages::events::{EventFilter, EventType, SubjectKind};

#[derive(Default)]
pub struct ReplicationSubscription;

#[Subscription]
impl ReplicationSubscription {
    /// A real lag sample each time the primary measures a replica's lag (once per heartbeat
    /// interval), of `replicaId` only when given, for samples whose `lagBytes` is at or above
    /// `threshold` bytes (default 0: every sample). Errors as for `events`.
    async fn replication_lag_updates(
        &self,
        ctx: &Context<'_>,
        replica_id: Option<ID>,
        threshold: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ReplicationLagEvent>>> {
        let threshold = threshold.unwrap_or(0);
        // Subscribing to the sample type is what makes the primary publish samples at all (it
        // checks the interest table before building one).
        let filter = EventFilter {
            event_types: vec![EventType::ReplicationLagSample],
            ..EventFilter::default()
        }
        .with_ids(SubjectKind::Replica, replica_id.map(|id| id.0));
        let events = subscribe(ctx, "replicationLagUpdates", filter).await?;
        Ok(typed(events, move |e| {
            // A sample below the threshold is left out; one that cannot be read is told.
            ReplicationLagEvent::from_event(e)
                .filter(|sample| !matches!(sample, Ok(s) if s.lag_bytes < threshold))
        }))
    }

    /// Status changes of replicas (of `replicaId` only, when given): `STARTING`, `CATCHING_UP`,
    /// `STREAMING`, `IN_SYNC`, `PAUSED`, `DISCONNECTED`, `FAILED`, `PROMOTED`. Errors as for
    /// `events`.
    async fn replica_status_changes(
        &self,
        ctx: &Context<'_>,
        replica_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ReplicaStatusEvent>>> {
        let filter = EventFilter {
            event_types: vec![EventType::ReplicaStatusChange],
            ..EventFilter::default()
        }
        .with_ids(SubjectKind::Replica, replica_id.map(|id| id.0));
        let events = subscribe(ctx, "replicaStatusChanges", filter).await?;
        Ok(typed(events, ReplicaStatusEvent::from_event))
    }
}
