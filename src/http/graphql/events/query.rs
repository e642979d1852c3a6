//! The registry's queries: retained events, one message to the event registry.

use async_graphql::{Context, Object};

use super::types::{filter_of, ClusterEventObject, EventFilterInput};
use crate::http::error::ApiError;
use crate::http::graphql::schema::{gql_error, runtime, to_gql};
use crate::messages::registry::ReadRetained;

/// Events one `events` query returns when no `limit` is given.
pub const DEFAULT_EVENTS_LIMIT: i32 = 100;
/// Most events one `events` query may return (the same bound as `GET /api/v1/events`).
pub const MAX_EVENTS_LIMIT: i32 = 10_000;

#[derive(Default)]
pub struct EventsQuery;

#[Object]
impl EventsQuery {
    /// Retained events the filter admits, oldest first. `sinceSeq` (or `filter.sinceSeq`): only
    /// events with a greater seq. `limit`: 1 to 10000, default 100.
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilterInput>,
        since_seq: Option<u64>,
        limit: Option<i32>,
    ) -> async_graphql::Result<Vec<ClusterEventObject>> {
        let limit = limit.unwrap_or(DEFAULT_EVENTS_LIMIT);
        if !(1..=MAX_EVENTS_LIMIT).contains(&limit) {
            return Err(gql_error(ApiError::invalid(
                "limit",
                format!("expected 1 to {MAX_EVENTS_LIMIT}, got {limit}"),
            )));
        }
        let mut filter = filter_of(filter)?;
        if since_seq.is_some() {
            filter.since_seq = since_seq;
        }
        let read = runtime(ctx)?
            .registry()
            .send(ReadRetained {
                filter,
                limit: limit as usize,
            })
            .await
            .map_err(to_gql)?;
        Ok(read.events.into_iter().map(ClusterEventObject).collect())
    }
}
