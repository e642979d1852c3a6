//! One struct per TOML section of the configuration, with the default of every field (the same
//! values `config/default.toml` writes out).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::{ConflictStrategy, ReplicaMode, ReplicationMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `ADDR:PORT` the HTTP server listens on.
    pub bind: String,
    /// Empty: no auth. Otherwise every `/api`, `/graphql` and WebSocket route needs it as a bearer token.
    pub auth_token: String,
    /// Lets a non-loopback bind start without a token (an explicit, logged decision).
    pub allow_unauthenticated: bool,
    pub allow_fault_injection: bool,
    pub max_body_bytes: usize,
    /// 0: one worker per core.
    pub workers: usize,
    /// Origins allowed by CORS. Empty: CORS off (no CORS headers are sent). `["*"]`: any origin.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:8080".to_string(),
            auth_token: String::new(),
            allow_unauthenticated: false,
            allow_fault_injection: true,
            max_body_bytes: 1_048_576,
            workers: 0,
            cors_allowed_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageEngine {
    Disk,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// "" (or engine = "memory"): nothing survives a restart.
    pub data_dir: String,
    pub engine: StorageEngine,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { data_dir: "./data".to_string(), engine: StorageEngine::Disk }
    }
}

impl StorageConfig {
    /// The directory durable state lives in, or `None` when nothing is to survive a restart.
    pub fn durable_dir(&self) -> Option<PathBuf> {
        if self.engine == StorageEngine::Memory || self.data_dir.is_empty() {
            None
        } else {
            Some(PathBuf::from(&self.data_dir))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events kept for replay (`since_seq`, `GET /api/v1/events`).
    pub retained: usize,
    /// Per-subscriber bound before `lagged`.
    pub session_queue: usize,
    pub wal_position_interval_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig { retained: 10_000, session_queue: 1024, wal_position_interval_ms: 250 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    pub heartbeat_interval_ms: u64,
    pub client_timeout_ms: u64,
    pub max_frame_bytes: usize,
    pub max_sessions: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            heartbeat_interval_ms: 5000,
            client_timeout_ms: 15_000,
            max_frame_bytes: 65_536,
            max_sessions: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The Raft group's voters at bootstrap.
    pub nodes: Vec<String>,
    /// The nodes this process hosts; empty: all of `nodes` (the one-process form).
    pub host: Vec<String>,
    /// Node id -> `host:port` of the process hosting it, for the nodes not hosted here.
    pub peers: BTreeMap<String, String>,
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    pub tick_ms: u64,
}

impl ClusterConfig {
    /// The nodes this process runs.
    pub fn hosted(&self) -> &[String] {
        if self.host.is_empty() {
            &self.nodes
        } else {
            &self.host
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: vec!["node-1".into(), "node-2".into(), "node-3".into()],
            host: Vec::new(),
            peers: BTreeMap::new(),
            election_tick: 10,
            heartbeat_tick: 2,
            tick_ms: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    pub id: String,
    #[serde(default = "default_replica_mode")]
    pub mode: ReplicaMode,
}

fn default_replica_mode() -> ReplicaMode {
    ReplicaMode::Async
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    pub primary: String,
    pub mode: ReplicationMode,
    pub sync_quorum: usize,
    pub sync_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    pub lag_alert_bytes: u64,
    pub conflict_strategy: ConflictStrategy,
    pub replicas: Vec<ReplicaConfig>,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            primary: "primary".to_string(),
            mode: ReplicationMode::SemiSync,
            sync_quorum: 1,
            sync_timeout_ms: 2000,
            heartbeat_interval_ms: 500,
            heartbeat_timeout_ms: 3000,
            lag_alert_bytes: 262_144,
            conflict_strategy: ConflictStrategy::LastWriterWins,
            replicas: vec![
                ReplicaConfig { id: "replica-001".into(), mode: ReplicaMode::Sync },
                ReplicaConfig { id: "replica-002".into(), mode: ReplicaMode::Async },
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RacConfig {
    pub instances: Vec<String>,
    pub block_size: usize,
    pub blocks: u64,
    /// Share of accesses from one instance that moves mastership, in (0, 1].
    pub remaster_threshold: f64,
    pub remaster_window_ms: u64,
    /// Blocks each instance's buffer cache holds at most (past images apart).
    pub cache_blocks: usize,
}

impl Default for RacConfig {
    fn default() -> Self {
        RacConfig {
            instances: (1..=4).map(|i| format!("instance-{i}")).collect(),
            block_size: 8192,
            blocks: 65_536,
            remaster_threshold: 0.8,
            remaster_window_ms: 5000,
            cache_blocks: 4096,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardingConfig {
    pub default_shards: usize,
}

impl Default for ShardingConfig {
    fn default() -> Self {
        ShardingConfig { default_shards: 4 }
    }
}
