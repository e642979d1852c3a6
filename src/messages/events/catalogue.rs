//! The catalogue: categories, severities and every event type of the contract, including those
//! whose domains come later, so that a filter naming any of them is valid today.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which part of the system an event comes from. WebSocket streams other than `/ws/events` are
/// restricted to one category.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, async_graphql::Enum,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Replication,
    Clustering,
    Rac,
    Sharding,
    /// Events about the runtime itself (supervised actor restarts).
    System,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Replication,
        Category::Clustering,
        Category::Rac,
        Category::Sharding,
        Category::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Replication => "replication",
            Category::Clustering => "clustering",
            Category::Rac => "rac",
            Category::Sharding => "sharding",
            Category::System => "system",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown category '{s}'"))
    }
}

/// `info` < `warning` < `error` < `critical`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, async_graphql::Enum,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] =
        [Severity::Info, Severity::Warning, Severity::Error, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown severity '{s}'; expected one of info, warning, error, critical"))
    }
}

/// Whether a catalogue line is marked `sample`.
macro_rules! is_sample {
    () => {
        false
    };
    (sample) => {
        true
    };
}

macro_rules! event_types {
    ($($variant:ident => ($name:literal, $category:ident $(, $kind:ident)?)),* $(,)?) => {
        /// The whole catalogue of event types, including those whose domains come later: a filter
        /// naming any of them is valid today.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType { $($variant),* }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name),* }
            }

            pub fn category(self) -> Category {
                match self { $(EventType::$variant => Category::$category),* }
            }

            /// Whether this is a sample kind (marked `sample` in the catalogue): a measurement
            /// taken on every heartbeat, whether or not anything changed. It reaches only filters
            /// that name it in `event_types`; a filter asking for everything would otherwise be
            /// flooded by it.
            pub fn is_sample(self) -> bool {
                match self { $(EventType::$variant => is_sample!($($kind)?)),* }
            }
        }
    };
}

event_types! {
    ReplicaAdded => ("replica_added", Replication),
    ReplicaRemoved => ("replica_removed", Replication),
    ReplicaStatusChange => ("replica_status_change", Replication),
    ReplicationLagAlert => ("replication_lag_alert", Replication),
    WalPositionUpdate => ("wal_position_update", Replication),
    ReplicationError => ("replication_error", Replication),
    SlotCreated => ("slot_created", Replication),
    SlotDropped => ("slot_dropped", Replication),
    SnapshotCreated => ("snapshot_created", Replication),
    SnapshotRestored => ("snapshot_restored", Replication),
    ConflictDetected => ("conflict_detected", Replication),
    ConflictResolved => ("conflict_resolved", Replication),
    NodeJoined => ("node_joined", Clustering),
    NodeLeft => ("node_left", Clustering),
    NodeHealthChange => ("node_health_change", Clustering),
    LeaderElected => ("leader_elected", Clustering),
    QuorumLost => ("quorum_lost", Clustering),
    QuorumRestored => ("quorum_restored", Clustering),
    FailoverInitiated => ("failover_initiated", Clustering),
    FailoverCompleted => ("failover_completed", Clustering),
    MigrationStarted => ("migration_started", Clustering),
    MigrationProgress => ("migration_progress", Clustering),
    MigrationCompleted => ("migration_completed", Clustering),
    BlockTransfer => ("block_transfer", Rac),
    LockGranted => ("lock_granted", Rac),
    LockReleased => ("lock_released", Rac),
    LockConverted => ("lock_converted", Rac),
    ResourceRemastered => ("resource_remastered", Rac),
    RecoveryStarted => ("recovery_started", Rac),
    RecoveryProgress => ("recovery_progress", Rac),
    RecoveryCompleted => ("recovery_completed", Rac),
    QueryStarted => ("query_started", Rac),
    QueryCompleted => ("query_completed", Rac),
    ShardAdded => ("shard_added", Sharding),
    ShardRemoved => ("shard_removed", Sharding),
    ShardStatusChange => ("shard_status_change", Sharding),
    RebalanceStarted => ("rebalance_started", Sharding),
    RebalanceProgress => ("rebalance_progress", Sharding),
    RebalanceCompleted => ("rebalance_completed", Sharding),
    ActorRestarted => ("actor_restarted", System),
    ReplicationLagSample => ("replication_lag_sample", Replication, sample),
}

impl EventType {
    /// Position in [`EventType::ALL`], for per-type tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The names the seed document uses for some RAC events, accepted wherever an event type is read
/// (filters), so that its clients' filters work unchanged.
const ALIASES: &[(&str, EventType)] = &[
    ("cache_fusion_transfer", EventType::BlockTransfer),
    ("lock_conversion", EventType::LockConverted),
    ("instance_recovery_started", EventType::RecoveryStarted),
    ("instance_recovery_completed", EventType::RecoveryCompleted),
    ("parallel_query_started", EventType::QueryStarted),
    ("parallel_query_completed", EventType::QueryCompleted),
];

impl FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .or_else(|| ALIASES.iter().find(|(alias, _)| *alias == s).map(|(_, t)| *t))
            .ok_or_else(|| format!("unknown event type '{s}'"))
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Number of event types in the catalogue.
pub const EVENT_TYPE_COUNT: usize = EventType::ALL.len();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_documents_names_read_as_the_catalogues() {
        assert_eq!("cache_fusion_transfer".parse::<EventType>(), Ok(EventType::BlockTransfer));
        assert_eq!("lock_conversion".parse::<EventType>(), Ok(EventType::LockConverted));
        assert_eq!("instance_recovery_started".parse::<EventType>(), Ok(EventType::RecoveryStarted));
        assert_eq!("parallel_query_completed".parse::<EventType>(), Ok(EventType::QueryCompleted));
        assert_eq!(EventType::QueryStarted.as_str(), "query_started");
        assert!("cache_fusion".parse::<EventType>().is_err());
    }

    #[test]
    fn every_event_type_round_trips_its_name() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(*t));
        }
    }

    #[test]
    fn only_the_lag_sample_is_a_sample_kind() {
        let samples: Vec<EventType> = EventType::ALL.iter().copied().filter(|t| t.is_sample()).collect();
        assert_eq!(samples, [EventType::ReplicationLagSample]);
    }
}
