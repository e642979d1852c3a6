//! The cluster's metadata as the Raft log carries it: the commands an entry holds.

use serde::{Deserialize, Serialize};

/// A change to the cluster's metadata; one per normal Raft entry, encoded as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MetaCommand {
    /// Sets a key of the metadata key-value space.
    Put { key: String, value: serde_json::Value },
}
