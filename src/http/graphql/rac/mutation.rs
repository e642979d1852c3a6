//! RAC mutations: a block read or written at an instance through Cache Fusion, a lock converted
//! or released, a block remastered, mastership balanced, a recovery started; each answered as
//! REST answers it.

use async_graphql::{Context, Object, ID};

use super::query::rac;
use crate::http::graphql::schema::to_gql;
use crate::messages::rac::{BlockRead, BlockWritten, LockChanged, RecoveryView, RemasterOutcome};
use crate::model::rac::LockMode;

#[derive(Default)]
pub struct RacMutation;

#[Object]
impl RacMutation {
    /// Reads `blockId` (`file:block`) at `instanceId`, under a shared lock.
    async fn read_block(&self, ctx: &Context<'_>, instance_id: ID, block_id: String) -> async_graphql::Result<BlockRead> {
        rac(ctx)?.read(&instance_id, &block_id).await.map_err(to_gql)
    }

    /// Writes `data` into `blockId` at `instanceId`, under an exclusive lock; answered once its
    /// redo is durable.
    async fn write_block(&self, ctx: &Context<'_>, instance_id: ID, block_id: String, data: String) -> async_graphql::Result<BlockWritten> {
        rac(ctx)?.write(&instance_id, &block_id, data).await.map_err(to_gql)
    }

    /// Converts `instanceId`'s lock on `resourceId` to `to` (`NULL` releases it).
    async fn convert_lock(&self, ctx: &Context<'_>, instance_id: ID, resource_id: String, to: LockMode) -> async_graphql::Result<LockChanged> {
        rac(ctx)?.convert(&instance_id, &resource_id, to).await.map_err(to_gql)
    }

    /// Releases `instanceId`'s lock on `resourceId`, writing its changes back first.
    async fn release_lock(&self, ctx: &Context<'_>, instance_id: ID, resource_id: String) -> async_graphql::Result<LockChanged> {
        rac(ctx)?.convert(&instance_id, &resource_id, LockMode::Null).await.map_err(to_gql)
    }

    /// Moves `resourceId`'s mastership to `toInstance`; without `toInstance`, runs the affinity
    /// pass on it; with neither, on every block.
    async fn remaster(&self, ctx: &Context<'_>, resource_id: Option<String>, to_instance: Option<ID>) -> async_graphql::Result<RemasterOutcome> {
        rac(ctx)?.remaster(resource_id.as_deref(), to_instance.as_ref().map(|i| i.as_str())).await.map_err(to_gql)
    }

    /// Spreads the mastership of the blocks with an entry evenly over the live instances.
    async fn load_balance_grd(&self, ctx: &Context<'_>) -> async_graphql::Result<RemasterOutcome> {
        rac(ctx)?.load_balance().await.map_err(to_gql)
    }

    /// Recovers the crashed `failedInstance` now, without waiting for the survivors to find it.
    async fn start_recovery(&self, ctx: &Context<'_>, failed_instance: ID) -> async_graphql::Result<RecoveryView> {
        rac(ctx)?.start_recovery(failed_instance.0).await.map_err(to_gql)
    }
}
