//! The contract's subscriptions whose domains are not built yet (sharding, advanced replication), as `rest/not_built.rs` is for REST routes: each field exists with the contract's
//! arguments and result type, so clients and GraphiQL see the whole schema, and answers with an
//! error naming its domain (`extensions.code = "not_implemented"`, `extensions.domain`) instead of
//! "Unknown field". A domain's fields and types move into its own folder when it is built.

mod subscription;
mod types;

pub use subscription::NotBuiltSubscription;
pub use types::{ConflictEvent, ConflictType, RebalanceProgressEvent};
