//! The faces of clusterd: REST (actix-web), WebSocket streams, GraphQL. They translate requests to
//! messages and replies back to JSON; no domain logic lives here.

use crate::config::Config;

/// Runs the HTTP server for `config` until SIGINT/SIGTERM, then shuts down cleanly.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let _ = config;
    anyhow::bail!("serve is being built")
}
