//! What the primary reads back when it starts: its rows and durable position, a new timeline
//! (made durable before anything is shipped on it), its replicas (bootstrapped from the config on
//! a fresh store), the settings changed at run time, its slots and the newest snapshot.

use std::collections::BTreeMap;

use super::settings::{SETTINGS, SETTINGS_RECORD};
use super::slots::{SlotRecord, SLOTS};
use super::snapshots;
use crate::messages::replication::ReplicationSettingsView;
use crate::model::ReplicaMode;
use crate::storage::table::{load_table, LoadedTable};
use crate::storage::{LogCommit, RecordTable, StorageError, Store};

/// Where replicas' membership is kept, by id.
pub const REPLICAS: RecordTable = RecordTable::named("replicas");
/// The meta key saying the replica list was taken from the config once (a fresh store).
const REPLICAS_BOOTSTRAPPED: &str = "replicas_bootstrapped";

/// How many earlier timelines' ends a start reads back. A replica whose log comes from an
/// older one (it was away for that many restarts of the primary) keeps only what it applied.
pub(super) const TIMELINES_KEPT: u64 = 64;

/// The durable record of a replica's membership.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ReplicaRecord {
    pub mode: ReplicaMode,
}

impl ReplicaRecord {
    pub fn encode(mode: ReplicaMode) -> Result<Vec<u8>, StorageError> {
        serde_json::to_vec(&ReplicaRecord { mode }).map_err(|source| StorageError::Encode { what: "a replica record", source })
    }
}

/// The meta key of the primary's durable position.
pub fn flush_key(primary: &str) -> String {
    format!("primary:{primary}:flush_lsn")
}

/// The meta key of the primary's current timeline.
pub(super) fn timeline_key(primary: &str) -> String {
    format!("primary:{primary}:timeline")
}

/// The meta key of where timeline `timeline` ended: the durable end of the log when the next
/// one began.
pub(super) fn timeline_end_key(primary: &str, timeline: u64) -> String {
    format!("primary:{primary}:timeline:{timeline}:end")
}

/// A primary as read back from the store.
pub struct LoadedPrimary {
    pub table: LoadedTable,
    pub flush: u64,
    pub timeline: u64,
    pub timeline_ends: BTreeMap<u64, u64>,
    /// Every replica, and whether it was just taken from the config (a fresh store).
    pub replicas: Vec<(String, ReplicaMode, bool)>,
    pub settings: Option<ReplicationSettingsView>,
    pub slots: BTreeMap<String, SlotRecord>,
    /// Start of the oldest WAL record kept.
    pub oldest_retained: u64,
    pub newest_snapshot: Option<(String, u64)>,
}

/// Reads the primary `primary` back, starting a new timeline; `bootstrap` is the config's replica
/// list, taken only on a fresh store. Blocking.
pub fn load(store: &Store, primary: &str, bootstrap: &[(String, ReplicaMode)]) -> Result<LoadedPrimary, StorageError> {
    let bounds = store.log_bounds(primary)?;
    let end = match bounds {
        Some((_, last, len)) => last + len as u64,
        None => 0,
    };
    let flush = store.get_log_meta(primary, &flush_key(primary))?.unwrap_or(0).max(end);
    // A new timeline, durable before anything is shipped on it; the one before ends here.
    let previous = store.get_log_meta(primary, &timeline_key(primary))?.unwrap_or(0);
    let timeline = previous + 1;
    let mut timeline_ends = BTreeMap::new();
    for t in previous.saturating_sub(TIMELINES_KEPT - 1)..previous {
        if let Some(end) = store.get_log_meta(primary, &timeline_end_key(primary, t))? {
            timeline_ends.insert(t, end);
        }
    }
    timeline_ends.insert(previous, flush);
    store.commit_log(
        primary,
        LogCommit {
            meta: vec![(timeline_end_key(primary, previous), flush), (timeline_key(primary), timeline)],
            ..Default::default()
        },
    )?;
    let table = load_table(store, primary, flush)?;
    let mut replicas = Vec::new();
    if store.get_meta(REPLICAS_BOOTSTRAPPED)?.is_some() {
        for (id, bytes) in store.list_records(REPLICAS)? {
            if let Ok(r) = serde_json::from_slice::<ReplicaRecord>(&bytes) {
                replicas.push((id, r.mode, false));
            }
        }
    } else {
        for (id, mode) in bootstrap {
            store.put_record(REPLICAS, id, &ReplicaRecord::encode(*mode)?)?;
            replicas.push((id.clone(), *mode, true));
        }
        store.put_meta(REPLICAS_BOOTSTRAPPED, 1)?;
    }
    let settings = match store.get_record(SETTINGS, SETTINGS_RECORD)? {
        Some(bytes) => serde_json::from_slice::<ReplicationSettingsView>(&bytes).ok(),
        None => None,
    };
    let mut slots = BTreeMap::new();
    for (name, bytes) in store.list_records(SLOTS)? {
        if let Ok(slot) = serde_json::from_slice::<SlotRecord>(&bytes) {
            slots.insert(name, slot);
        }
    }
    Ok(LoadedPrimary {
        table,
        flush,
        timeline,
        timeline_ends,
        replicas,
        settings,
        slots,
        oldest_retained: bounds.map(|b| b.0).unwrap_or(flush),
        newest_snapshot: snapshots::newest(store)?,
    })
}
