//! Health as the cluster domain measures it: one node's, and the cluster's as a whole. Each is a
//! snake_case string in JSON and a GraphQL enum (`UNREACHABLE`, `CRITICAL`).

use serde::{Deserialize, Serialize};

/// Health of one cluster node, as `node_health_change` reports it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum,
)]
#[serde(rename_all = "snake_case")]
pub enum NodeHealth {
    Healthy,
    Degraded,
    Unreachable,
    Failed,
}

impl NodeHealth {
    pub const ALL: [NodeHealth; 4] =
        [NodeHealth::Healthy, NodeHealth::Degraded, NodeHealth::Unreachable, NodeHealth::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeHealth::Healthy => "healthy",
            NodeHealth::Degraded => "degraded",
            NodeHealth::Unreachable => "unreachable",
            NodeHealth::Failed => "failed",
        }
    }

    /// Whether the node counts towards quorum: it answers, perhaps slowly.
    pub fn is_up(self) -> bool {
        matches!(self, NodeHealth::Healthy | NodeHealth::Degraded)
    }
}

/// Overall cluster health: `healthy` when every node is, `degraded` while a quorum is up,
/// `critical` without one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum,
)]
#[serde(rename_all = "snake_case")]
pub enum ClusterHealthStatus {
    Healthy,
    Degraded,
    Critical,
}

impl ClusterHealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterHealthStatus::Healthy => "healthy",
            ClusterHealthStatus::Degraded => "degraded",
            ClusterHealthStatus::Critical => "critical",
        }
    }
}

/// A process's load, as it measures it over its last window of a second or more and as its
/// nodes' `node_health_change` carries it: the figures the seed's clients read. `None` where the
/// platform does not tell (or, for disk, the process keeps nothing on disk).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessLoad {
    /// CPU time over wall time, as a share (percent) of the machine's cores.
    pub cpu_usage: Option<f64>,
    /// Resident memory, percent of the machine's.
    pub memory_usage: Option<f64>,
    /// Used share (percent) of the file system holding the data directory.
    pub disk_usage: Option<f64>,
    /// Open HTTP connections and WebSocket sessions.
    pub active_connections: Option<f64>,
    /// HTTP requests answered per second.
    pub queries_per_second: Option<f64>,
    /// Their mean time to the response head, in ms.
    pub avg_response_time_ms: Option<f64>,
}

impl ProcessLoad {
    /// The figures as `metrics` entries, by their names, leaving out those not known.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, f64)> {
        [
            ("cpu_usage", self.cpu_usage),
            ("memory_usage", self.memory_usage),
            ("disk_usage", self.disk_usage),
            ("active_connections", self.active_connections),
            ("queries_per_second", self.queries_per_second),
            ("avg_response_time_ms", self.avg_response_time_ms),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (name, v)))
    }

    /// The figures in 24 bytes (`NaN` for one not known), small enough for a WebSocket pong.
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        let values = [self.cpu_usage, self.memory_usage, self.disk_usage, self.active_connections, self.queries_per_second, self.avg_response_time_ms];
        for (chunk, v) in out.chunks_exact_mut(4).zip(values) {
            chunk.copy_from_slice(&(v.unwrap_or(f64::NAN) as f32).to_le_bytes());
        }
        out
    }

    /// Reads what [`ProcessLoad::to_bytes`] wrote; `None` unless given exactly 24 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<ProcessLoad> {
        if bytes.len() != 24 {
            return None;
        }
        let mut v = bytes.chunks_exact(4).map(|c| {
            let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            x.is_finite().then_some(f64::from(x))
        });
        Some(ProcessLoad {
            cpu_usage: v.next()?,
            memory_usage: v.next()?,
            disk_usage: v.next()?,
            active_connections: v.next()?,
            queries_per_second: v.next()?,
            avg_response_time_ms: v.next()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ProcessLoad;

    #[test]
    fn a_load_survives_its_pong_bytes_and_other_lengths_are_refused() {
        let load = ProcessLoad { cpu_usage: Some(12.5), memory_usage: Some(3.25), disk_usage: None, active_connections: Some(4.0), queries_per_second: Some(1000.0), avg_response_time_ms: Some(0.5) };
        assert_eq!(ProcessLoad::from_bytes(&load.to_bytes()), Some(load));
        assert_eq!(load.entries().map(|(n, _)| n).collect::<Vec<_>>(), ["cpu_usage", "memory_usage", "active_connections", "queries_per_second", "avg_response_time_ms"]);
        assert_eq!(ProcessLoad::from_bytes(&[0u8; 23]), None);
        assert_eq!(ProcessLoad::from_bytes(&[]), None);
    }
}
