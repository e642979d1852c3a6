//! The cross-domain subscription: every event a filter admits, as the whole envelope.

use async_graphql::{Context, Subscription};
use futures_util::{Stream, StreamExt};

use super::types::{filter_of, ClusterEventObject, EventFilterInput};
use crate::http::graphql::streams::subscribe;

#[derive(Default)]
pub struct EventsSubscription;

#[Subscription]
impl EventsSubscription {
    /// Every event the filter admits, as the whole envelope. With `filter.sinceSeq`, retained
    /// events after it are replayed first, then live ones follow with no gap. Dropped events
    /// (the client fell behind) come as an error with code `lagged`; the end of the subscription
    /// by the server as a last error with code `subscription_closed`.
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilterInput>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ClusterEventObject>>> {
        let filter = filter_of(filter)?;
        let events = subscribe(ctx, "events", filter).await?;
        Ok(events.map(|item| item.map(ClusterEventObject)))
    }
}
