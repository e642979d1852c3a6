//! clusterd: the cluster layer of a distributed database, built as a supervised actix actor system.
//!
//! The public face for programs and tests that embed it: [`Config`] to describe a cluster,
//! [`Runtime::start`] to build the actor tree, and the typed messages and event types under
//! [`messages`] to drive it and watch what it does. The HTTP, WebSocket and GraphQL faces live in
//! [`http`] and only translate to and from those messages.

pub mod actors;
pub mod config;
pub mod exec;
pub mod http;
pub mod messages;
pub mod metrics;
pub mod model;
pub mod process;
pub mod runtime;
pub mod storage;

pub use config::Config;
pub use runtime::{Runtime, RuntimeHandle};

/// The version the server reports in `/health`, `welcome` frames and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
