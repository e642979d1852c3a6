//! RAC subscriptions, registry subscriptions like every other: Cache Fusion block transfers and
//! global lock changes, instance recoveries, parallel queries. Errors as for `events`.

use async_graphql::{Context, Subscription, ID};
use futures_util::Stream;

use super::types::{CacheFusionEvent, LockEvent, ParallelQueryEvent, RecoveryEvent};
use crate::http::graphql::streams::{subscribe, typed};
use crate::messages::events::{EventFilter, EventType, SubjectKind};

#[derive(Default)]
pub struct RacSubscription;

#[Subscription]
impl RacSubscription {
    /// Cache Fusion block transfers (to or from `instanceId` only, when given): `block_transfer`.
    async fn cache_fusion_events(
        &self,
        ctx: &Context<'_>,
        instance_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<CacheFusionEvent>>> {
        let filter = EventFilter { event_types: vec![EventType::BlockTransfer], ..EventFilter::default() }.with_ids(SubjectKind::Instance, instance_id.map(|id| id.0));
        let events = subscribe(ctx, "cacheFusionEvents", filter).await?;
        Ok(typed(events, |e| CacheFusionEvent::from_event(e).map(Ok)))
    }

    /// Global lock changes (of `resourceId` only, when given): `lock_granted`, `lock_released`,
    /// `lock_converted`.
    async fn resource_lock_events(
        &self,
        ctx: &Context<'_>,
        resource_id: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LockEvent>>> {
        let filter = EventFilter { event_types: vec![EventType::LockGranted, EventType::LockReleased, EventType::LockConverted], ..EventFilter::default() }
            .with_ids(SubjectKind::Resource, resource_id);
        let events = subscribe(ctx, "resourceLockEvents", filter).await?;
        Ok(typed(events, |e| LockEvent::from_event(e).map(Ok)))
    }

    /// Parallel queries (of `queryId` only, when given): `query_started`, `query_completed`.
    async fn parallel_query_events(
        &self,
        ctx: &Context<'_>,
        query_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ParallelQueryEvent>>> {
        let filter = EventFilter { event_types: vec![EventType::QueryStarted, EventType::QueryCompleted], ..EventFilter::default() }.with_ids(SubjectKind::Query, query_id.map(|id| id.0));
        let events = subscribe(ctx, "parallelQueryEvents", filter).await?;
        Ok(typed(events, |e| ParallelQueryEvent::from_event(e).map(Ok)))
    }

    /// Instance recoveries (of the failed or recovering `instanceId` only, when given):
    /// `recovery_started`, `recovery_progress`, `recovery_completed`.
    async fn instance_recovery_events(
        &self,
        ctx: &Context<'_>,
        instance_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<RecoveryEvent>>> {
        let types = vec![EventType::RecoveryStarted, EventType::RecoveryProgress, EventType::RecoveryCompleted];
        let filter = EventFilter { event_types: types, ..EventFilter::default() }.with_ids(SubjectKind::Instance, instance_id.map(|id| id.0));
        let events = subscribe(ctx, "instanceRecoveryEvents", filter).await?;
        Ok(typed(events, |e| RecoveryEvent::from_event(e).map(Ok)))
    }
}
