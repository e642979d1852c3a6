//! The primary's log as the rest of the primary sees it: how far it is durable, how far it can be
//! shipped, its timeline, the records of its tail kept in memory for shipping and lag, and the
//! group commits of the last few seconds (throughput).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::messages::replication::Reconcile;
use crate::model::LogRecord;

/// Most bytes of records kept in memory for shipping; older ones are read back from the store.
const RECENT_BYTES: usize = 16 << 20;
/// The sliding window throughput is measured over.
pub const THROUGHPUT_WINDOW: Duration = Duration::from_secs(10);

/// A record of the log's tail kept in memory, and when it became durable here (`None` while its
/// commit runs: it was shipped as that commit started), for write/flush/replay lag.
struct RecentRecord {
    record: LogRecord,
    durable_at: Option<Instant>,
}

#[derive(Default)]
pub struct LogTail {
    /// Durable up to here.
    pub flush_lsn: u64,
    /// The end of what can be shipped: the durable log and the group commit in flight, whose
    /// records go out as its fsync starts.
    pub shipped_end: u64,
    /// This start's timeline (one more at every start of the primary), and where earlier ones
    /// ended (see [`Reconcile`]).
    pub timeline: u64,
    timeline_ends: BTreeMap<u64, u64>,
    /// A group commit is in flight (one at a time).
    pub commit_in_flight: bool,
    recent: VecDeque<RecentRecord>,
    recent_bytes: usize,
    /// (when, operations, WAL bytes) of each group commit, over [`THROUGHPUT_WINDOW`].
    commits: VecDeque<(Instant, u64, u64)>,
}

impl LogTail {
    /// Starts at a loaded log: durable to `flush`, timeline `timeline` begun after the earlier
    /// ones ended where `timeline_ends` says.
    pub fn loaded(&mut self, flush: u64, timeline: u64, timeline_ends: BTreeMap<u64, u64>) {
        self.flush_lsn = flush;
        self.shipped_end = flush;
        self.timeline = timeline;
        self.timeline_ends = timeline_ends;
    }

    /// Forgets the records kept in memory (the primary went down).
    pub fn forget_recent(&mut self) {
        self.recent.clear();
        self.recent_bytes = 0;
    }

    /// A group commit's records start their fsync: kept for shipping (up to [`RECENT_BYTES`]),
    /// and shippable up to `end`.
    pub fn started(&mut self, records: &[LogRecord], end: u64) {
        for r in records {
            self.recent_bytes += r.bytes.len();
            self.recent.push_back(RecentRecord { record: r.clone(), durable_at: None });
        }
        while self.recent_bytes > RECENT_BYTES {
            match self.recent.pop_front() {
                Some(r) => self.recent_bytes -= r.record.bytes.len(),
                None => break,
            }
        }
        self.shipped_end = end;
        self.commit_in_flight = true;
    }

    /// The group commit in flight is durable, up to `end`, with `ops` operations in it.
    pub fn durable(&mut self, end: u64, ops: u64, now: Instant) {
        let old_flush = self.flush_lsn;
        self.flush_lsn = end;
        for r in self.recent.iter_mut().rev() {
            if r.record.lsn < old_flush {
                break;
            }
            r.durable_at.get_or_insert(now);
        }
        self.commits.push_back((now, ops, end - old_flush));
        trim_window(&mut self.commits, now, |c| c.0);
    }

    /// The records from `from` on kept in memory, up to about `max_bytes` (at least one); `None`
    /// if the one at `from` is no longer (or not) there.
    pub fn records_from(&self, from: u64, max_bytes: u64) -> Option<Vec<LogRecord>> {
        if self.recent.front().is_none_or(|r| r.record.lsn > from) {
            return None;
        }
        let start = self.recent.partition_point(|r| r.record.lsn < from);
        if self.recent.get(start).is_none_or(|r| r.record.lsn != from) {
            return None;
        }
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        for r in self.recent.range(start..) {
            bytes += r.record.bytes.len() as u64;
            batch.push(r.record.clone());
            if bytes >= max_bytes {
                break;
            }
        }
        Some(batch)
    }

    /// How long ago the record ending at `lsn` became durable here, for lag measurement, if it
    /// is still in memory: zero if it is not durable here yet (the replica was the quicker).
    pub fn lag_since(&self, lsn: u64, now: Instant) -> Option<Duration> {
        let i = self.recent.partition_point(|r| r.record.end_lsn() <= lsn);
        if i == 0 {
            return None;
        }
        let record = self.recent.get(i - 1).filter(|r| r.record.end_lsn() == lsn)?;
        Some(record.durable_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t)))
    }

    /// The commit time of the oldest record that ends after `lsn`, if still in memory.
    pub fn first_after(&self, lsn: u64) -> Option<i64> {
        let i = self.recent.partition_point(|r| r.record.end_lsn() <= lsn);
        self.recent.get(i).map(|r| r.record.committed_at_ms)
    }

    /// What a replica on timeline `from` (having applied up to `applied`) is told after this
    /// primary started: keep what that timeline made durable.
    pub fn reconcile_for(&self, from: u64, applied: u64) -> Reconcile {
        let keep_until = self.timeline_ends.get(&from).copied().unwrap_or(applied);
        Reconcile { from_timeline: from, timeline: self.timeline, keep_until }
    }

    /// Whether a replica on timeline `from` applied past where that timeline ends in this
    /// primary's history: possible only for the primary a failover replaced, or a replica that
    /// applied what it had and the promoted replica lacked. It must be reseeded.
    pub fn applied_past_history(&self, from: u64, applied: u64) -> bool {
        from != self.timeline && self.timeline_ends.get(&from).is_some_and(|&end| applied > end)
    }

    /// Operations and WAL bytes made durable per second over [`THROUGHPUT_WINDOW`].
    pub fn throughput(&mut self, now: Instant) -> (f64, f64) {
        trim_window(&mut self.commits, now, |c| c.0);
        let window = THROUGHPUT_WINDOW.as_secs_f64();
        let (ops, bytes) = self.commits.iter().fold((0u64, 0u64), |(o, b), c| (o + c.1, b + c.2));
        (ops as f64 / window, bytes as f64 / window)
    }
}

/// Drops entries older than [`THROUGHPUT_WINDOW`] from the front of a time-ordered window.
pub fn trim_window<T>(window: &mut VecDeque<T>, now: Instant, at: impl Fn(&T) -> Instant) {
    while window.front().is_some_and(|x| now.duration_since(at(x)) > THROUGHPUT_WINDOW) {
        window.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn record(lsn: u64, len: usize) -> LogRecord {
        LogRecord { lsn, bytes: vec![0u8; len].into(), committed_at_ms: lsn as i64, ops: Arc::new(Vec::new()) }
    }

    #[test]
    fn records_are_served_from_memory_from_a_record_boundary_and_lag_counts_from_durability() {
        let mut log = LogTail::default();
        log.started(&[record(0, 10), record(10, 10)], 20);
        assert_eq!(log.shipped_end, 20);
        assert_eq!(log.flush_lsn, 0, "not durable until the commit ends");
        let now = Instant::now();
        assert_eq!(log.lag_since(10, now), Some(Duration::ZERO), "a replica ahead of the primary's fsync lags by nothing");
        log.durable(20, 2, now);
        assert_eq!(log.flush_lsn, 20);
        assert_eq!(log.records_from(10, 1).map(|r| r.len()), Some(1));
        assert_eq!(log.records_from(0, 100).map(|r| r.len()), Some(2));
        assert!(log.records_from(5, 100).is_none(), "not a record boundary");
        assert!(log.records_from(20, 100).is_none(), "nothing there yet");
        assert_eq!(log.first_after(10), Some(10));
        assert!(log.lag_since(20, now + Duration::from_millis(5)).is_some_and(|d| d >= Duration::from_millis(5)));
        assert!(log.lag_since(15, now).is_none(), "no record ends there");
    }

    #[test]
    fn a_replica_from_an_earlier_timeline_keeps_what_that_timeline_made_durable() {
        let mut log = LogTail::default();
        log.loaded(100, 3, BTreeMap::from([(1, 40), (2, 100)]));
        let r = log.reconcile_for(1, 10);
        assert_eq!((r.from_timeline, r.timeline, r.keep_until), (1, 3, 40));
        assert_eq!(log.reconcile_for(0, 10).keep_until, 10, "an end no longer known: what it applied");
    }
}
