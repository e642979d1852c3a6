//! The GraphQL face: `POST /graphql` for queries and mutations, `GET /graphql` for the GraphiQL
//! page, and subscriptions over WebSocket at `/graphql/ws` (and at `/graphql` for upgrades), in
//! both the `graphql-transport-ws` and the legacy `graphql-ws` protocols.
//!
//! Like every face it only translates: queries and mutations become messages to the domains'
//! actors and the event registry, subscriptions are registry subscriptions. No domain logic here.
//! Each domain is a folder with its part of the `Query`, `Mutation` and `Subscription` roots and
//! the types only GraphQL has; the views of `messages` are GraphQL objects themselves. A new
//! domain is a new folder and one line in each root below.

pub mod cluster;
pub mod events;
mod graphiql;
pub mod not_built;
pub mod rac;
mod protocol;
pub mod replication;
mod schema;
mod streams;
mod transport;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use async_graphql::{MergedObject, MergedSubscription, Schema};
use async_graphql_actix_web::GraphQLResponse;

pub use graphiql::GRAPHIQL_ASSETS;
pub use schema::{MAX_COMPLEXITY, MAX_DEPTH};
pub use streams::{ConnectionInfo, MAX_SUBSCRIPTIONS_PER_CONNECTION};

use crate::http::metrics::HttpMetrics;
use crate::http::ws::sessions::SessionTable;
use crate::runtime::RuntimeHandle;

/// The `Query` root: every domain's queries side by side.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    cluster::ClusterQuery,
    replication::ReplicationQuery,
    rac::RacQuery,
    events::EventsQuery,
);

/// The `Mutation` root: every domain's mutations side by side.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(cluster::ClusterMutation, replication::ReplicationMutation, rac::RacMutation);

/// The `Subscription` root: every domain's subscriptions side by side.
#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(
    events::EventsSubscription,
    cluster::ClusterSubscription,
    replication::ReplicationSubscription,
    rac::RacSubscription,
    not_built::NotBuiltSubscription,
);

pub type ClusterSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Builds the schema on a running runtime: every resolver reaches the actors through the
/// [`RuntimeHandle`] in the schema data; subscriptions count themselves in `metrics`.
pub fn schema(runtime: RuntimeHandle, metrics: Arc<HttpMetrics>) -> ClusterSchema {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .data(runtime)
    .data(metrics)
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .extension(protocol::CheckOnly)
    .finish()
}

/// Registers the GraphQL routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/graphql")
            .route(web::post().to(execute))
            .route(web::get().to(graphiql_or_subscriptions)),
    )
    .service(web::resource("/graphql/ws").route(web::get().to(transport::subscriptions)));
    graphiql::configure(cfg);
}

/// `POST /graphql`: one query or mutation. The body goes through the app's JSON extractor so that
/// its size limit and error shape (413 / 400 `invalid_json`) are the same as for REST.
async fn execute(
    schema: web::Data<ClusterSchema>,
    request: web::Json<async_graphql::Request>,
) -> GraphQLResponse {
    schema.execute(request.into_inner()).await.into()
}

/// `GET /graphql`: the GraphiQL page, or the subscription transport when the request is a
/// WebSocket upgrade (the contract serves subscriptions at `/graphql` for upgrades too).
async fn graphiql_or_subscriptions(
    req: HttpRequest,
    schema: web::Data<ClusterSchema>,
    runtime: web::Data<RuntimeHandle>,
    sessions: web::Data<SessionTable>,
) -> Result<HttpResponse, actix_web::Error> {
    if transport::is_websocket_upgrade(&req) {
        return transport::subscriptions(req, schema, runtime, sessions).await;
    }
    Ok(graphiql::page())
}
