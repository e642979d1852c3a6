//! The replication settings that can change at run time, the checks a change passes, and which
//! replicas a write in each mode waits for.

use std::time::Duration;

use crate::config::ReplicationConfig;
use crate::messages::replication::{ReplicationError, ReplicationSettingsView, SetConflictStrategy, SetHeartbeat, SetReplicationConfig};
use crate::model::{validate_id, ConflictStrategy, ReplicaMode, ReplicationMode};
use crate::storage::RecordTable;

/// Where settings changed at run time are kept, by domain.
pub const SETTINGS: RecordTable = RecordTable::named("settings");
/// The settings record's name in [`SETTINGS`].
pub const SETTINGS_RECORD: &str = "replication";

/// The replication settings in force.
#[derive(Debug, Clone)]
pub struct ReplicationSettings {
    pub primary: String,
    pub mode: ReplicationMode,
    pub sync_quorum: usize,
    pub sync_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub lag_alert_bytes: u64,
    pub wal_position_interval: Duration,
    pub conflict_strategy: ConflictStrategy,
    pub site_priority: Vec<String>,
}

impl ReplicationSettings {
    pub fn from_config(c: &ReplicationConfig, wal_position_interval_ms: u64) -> Self {
        ReplicationSettings {
            primary: c.primary.clone(),
            mode: c.mode,
            sync_quorum: c.sync_quorum,
            sync_timeout: Duration::from_millis(c.sync_timeout_ms),
            heartbeat_interval: Duration::from_millis(c.heartbeat_interval_ms),
            heartbeat_timeout: Duration::from_millis(c.heartbeat_timeout_ms),
            lag_alert_bytes: c.lag_alert_bytes,
            wal_position_interval: Duration::from_millis(wal_position_interval_ms),
            conflict_strategy: c.conflict_strategy,
            site_priority: Vec::new(),
        }
    }

    pub fn view(&self) -> ReplicationSettingsView {
        ReplicationSettingsView {
            mode: self.mode,
            sync_quorum: self.sync_quorum,
            sync_timeout_ms: self.sync_timeout.as_millis() as u64,
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
            heartbeat_timeout_ms: self.heartbeat_timeout.as_millis() as u64,
            conflict_strategy: self.conflict_strategy,
            site_priority: self.site_priority.clone(),
        }
    }

    /// Takes the settings changed at run time (they win over the config file, as PostgreSQL's
    /// ALTER SYSTEM does over postgresql.conf).
    pub fn apply(&mut self, v: &ReplicationSettingsView) {
        self.mode = v.mode;
        self.sync_quorum = v.sync_quorum;
        self.sync_timeout = Duration::from_millis(v.sync_timeout_ms);
        self.heartbeat_interval = Duration::from_millis(v.heartbeat_interval_ms);
        self.heartbeat_timeout = Duration::from_millis(v.heartbeat_timeout_ms);
        self.conflict_strategy = v.conflict_strategy;
        self.site_priority = v.site_priority.clone();
    }
}

/// Whether a write in `mode` may wait for the flush of a replica in `replica_mode`: the replicas
/// the acknowledgement rule counts ([`super::acks`]), sync replicas in `sync` and `semi_sync`.
/// Such a replica makes what it receives durable at once; the others may gather it for a moment.
pub fn flush_awaited(mode: ReplicationMode, replica_mode: ReplicaMode) -> bool {
    mode != ReplicationMode::Async && replica_mode == ReplicaMode::Sync
}

fn invalid(field: &str, reason: String) -> ReplicationError {
    ReplicationError::InvalidField { field: field.into(), reason }
}

/// `current` with the acknowledgement mode `msg` asks for, checked against the `sync_replicas`
/// replicas configured `sync`: the only ones semi_sync's quorum counts.
pub fn with_mode(mut next: ReplicationSettingsView, msg: SetReplicationConfig, sync_replicas: usize) -> Result<ReplicationSettingsView, ReplicationError> {
    next.mode = msg.mode;
    if let Some(q) = msg.sync_quorum {
        next.sync_quorum = q;
    }
    if let Some(t) = msg.sync_timeout_ms {
        if !(1..=3_600_000).contains(&t) {
            return Err(invalid("sync_timeout_ms", format!("must be between 1 and 3600000 (got {t})")));
        }
        next.sync_timeout_ms = t;
    }
    // A quorum of none is never valid (400); one larger than the sync replicas there are
    // conflicts with the cluster as it is (409).
    if next.mode == ReplicationMode::SemiSync && !(1..=sync_replicas).contains(&next.sync_quorum) {
        let reason = format!(
            "semi_sync needs a quorum between 1 and the number of sync replicas ({}; async replicas never count) (got {})",
            sync_replicas_text(sync_replicas),
            next.sync_quorum
        );
        return Err(match next.sync_quorum {
            0 => invalid("sync_quorum", reason),
            _ => ReplicationError::ConflictsWithState { field: "sync_quorum".into(), reason },
        });
    }
    Ok(next)
}

/// "1 sync replica", "2 sync replicas".
fn sync_replicas_text(n: usize) -> String {
    format!("{n} sync replica{}", if n == 1 { "" } else { "s" })
}

/// `current` with the conflict strategy `msg` asks for.
pub fn with_conflict_strategy(mut next: ReplicationSettingsView, msg: SetConflictStrategy) -> Result<ReplicationSettingsView, ReplicationError> {
    match (msg.strategy, msg.site_priority) {
        (ConflictStrategy::SitePriority, None) => {
            return Err(invalid("site_priority", "site_priority needs the list of sites, highest first".into()))
        }
        (ConflictStrategy::SitePriority, Some(sites)) => {
            if sites.is_empty() {
                return Err(invalid("site_priority", "at least one site".into()));
            }
            for (i, site) in sites.iter().enumerate() {
                if let Err(reason) = validate_id(site) {
                    return Err(invalid(&format!("site_priority[{i}]"), reason));
                }
                if sites[..i].contains(site) {
                    return Err(invalid(&format!("site_priority[{i}]"), format!("'{site}' is listed twice")));
                }
            }
            next.site_priority = sites;
        }
        (_, Some(_)) => return Err(invalid("site_priority", "only the site_priority strategy takes a site list".into())),
        (_, None) => next.site_priority = Vec::new(),
    }
    next.conflict_strategy = msg.strategy;
    Ok(next)
}

/// `current` with the heartbeat `msg` asks for.
pub fn with_heartbeat(mut next: ReplicationSettingsView, msg: SetHeartbeat) -> Result<ReplicationSettingsView, ReplicationError> {
    if !(1..=3_600_000).contains(&msg.interval_ms) {
        return Err(invalid("interval_ms", format!("must be between 1 and 3600000 (got {})", msg.interval_ms)));
    }
    if msg.timeout_ms <= msg.interval_ms || msg.timeout_ms > 86_400_000 {
        return Err(invalid(
            "timeout_ms",
            format!("must be greater than interval_ms ({}) and at most 86400000 (got {})", msg.interval_ms, msg.timeout_ms),
        ));
    }
    next.heartbeat_interval_ms = msg.interval_ms;
    next.heartbeat_timeout_ms = msg.timeout_ms;
    Ok(next)
}
