//! The RAC domain over GraphQL: queries for instances and GRD entries, mutations that read,
//! write and convert locks on blocks (the same calls as REST, on [`crate::actors::rac::Rac`]),
//! and the subscriptions `cacheFusionEvents` and `resourceLockEvents`.

mod mutation;
mod query;
mod subscription;
mod types;

pub use mutation::RacMutation;
pub use query::RacQuery;
pub use subscription::RacSubscription;
