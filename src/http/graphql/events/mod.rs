//! The event registry over GraphQL, across domains: the `events` query (retained events the
//! filter admits) and the `events` subscription (the whole envelope, live), the `ClusterEvent`
//! type, the `EventFilter` input, and the stamp every domain's typed event objects carry.

mod query;
mod subscription;
mod types;

pub use query::{EventsQuery, DEFAULT_EVENTS_LIMIT, MAX_EVENTS_LIMIT};
pub use subscription::EventsSubscription;
pub use types::{ClusterEventObject, EventFilterInput, EventStamp};
