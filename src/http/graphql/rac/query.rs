//! RAC queries: instances with their Cache Fusion statistics, GRD entries, recoveries.

use async_graphql::{Context, Object, ID};

use crate::actors::rac::Rac;
use crate::http::graphql::schema::{not_built, runtime, to_gql};
use crate::messages::rac::{InstanceView, RecoveryView, ResourceView};

/// The RAC domain, or the error saying it does not run.
pub(super) fn rac<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Rac> {
    runtime(ctx)?.domain::<Rac>().ok_or_else(|| not_built("rac"))
}

#[derive(Default)]
pub struct RacQuery;

#[Object]
impl RacQuery {
    /// Every RAC instance: cache, Lamport clock, mastered entries and Cache Fusion statistics.
    async fn rac_instances(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<InstanceView>> {
        rac(ctx)?.instance_views().await.map_err(to_gql)
    }

    /// A block's GRD entry: its master, holders and modes, past images.
    async fn grd_resource(&self, ctx: &Context<'_>, resource_id: String) -> async_graphql::Result<ResourceView> {
        rac(ctx)?.resource(&resource_id).await.map_err(to_gql)
    }

    /// GRD entries (mastered on `instanceId` only, when given), at most `limit` (default 100).
    async fn grd_resources(&self, ctx: &Context<'_>, instance_id: Option<ID>, #[graphql(default = 100, validator(minimum = 1, maximum = 10000))] limit: usize) -> async_graphql::Result<Vec<ResourceView>> {
        rac(ctx)?.resources(instance_id.as_ref().map(|i| i.as_str()), limit).await.map_err(to_gql)
    }

    /// Instance recoveries, newest first (of `recoveryId` only, when given).
    async fn rac_recoveries(&self, ctx: &Context<'_>, recovery_id: Option<ID>) -> async_graphql::Result<Vec<RecoveryView>> {
        rac(ctx)?.recoveries(recovery_id.map(|i| i.0)).await.map_err(to_gql)
    }
}
