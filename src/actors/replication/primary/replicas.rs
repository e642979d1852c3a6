//! A replica as the primary knows it: the stream to it (what was shipped and confirmed, whether it
//! is up and heard from), the positions it reported, and what is measured from them (status, lag,
//! alerts, samples, throughput), with the events each change publishes.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::log::{trim_window, THROUGHPUT_WINDOW};
use super::outbox::Outbox;
use crate::messages::events::*;
use crate::messages::replication::*;
use crate::model::{lsn_text, ReplicaMode, ReplicaStatus};

/// Lag samples kept per replica (one per heartbeat interval at most).
const LAG_SAMPLES: usize = 3600;

/// The stream of records to one replica.
#[derive(Debug, Default)]
pub struct Stream {
    /// The incarnation of its running actor; `None` while crashed (the actor's address, held by
    /// the primary's actor alone, is let go, so its supervisor does not restart it).
    pub running: Option<u64>,
    /// Heard from since it (re)started or since the link to it lost a message: until then
    /// nothing is shipped, and the first report says where to ship from.
    pub connected: bool,
    pub paused: bool,
    /// The timeline its last report named: records are shipped only once it is the primary's
    /// own (after a [`crate::messages::replication::Reconcile`]).
    pub timeline: u64,
    /// The durable position it was last told (by a shipment or a `PrimaryDurable`).
    pub confirmed_lsn: u64,
    /// Shipped up to here.
    pub shipped_lsn: u64,
    pub fetch_in_flight: bool,
    /// Being reseeded to this lsn: nothing is shipped until it reports having it.
    pub seeding: Option<u64>,
    /// When a crash was injected (while it waits for a restart).
    pub crashed_at_ms: Option<i64>,
}

impl Stream {
    /// Whether records are shipped to it now: it runs, reported since it (or the link) came
    /// back, is not paused, and is on the primary's timeline.
    pub fn streams(&self, timeline: u64) -> bool {
        self.running.is_some() && self.connected && !self.paused && self.timeline == timeline
    }
}

/// What is measured of a replica.
#[derive(Debug)]
pub struct Health {
    pub status: ReplicaStatus,
    pub reason: String,
    pub last_heard: Option<Instant>,
    pub write_lag: Option<Duration>,
    pub flush_lag: Option<Duration>,
    pub replay_lag: Option<Duration>,
    /// Wall-clock ms when the oldest record it has not replayed was committed.
    pub behind_since_ms: Option<i64>,
    pub caught_up_once: bool,
    pub catchup_started: Option<Instant>,
    pub lag_alert_active: bool,
    last_position_event: Option<(Instant, ReplicaPositions)>,
    /// Real lag measurements, oldest first, bounded by [`LAG_SAMPLES`].
    samples: VecDeque<LagSample>,
    last_sample_at: Option<Instant>,
    /// (when, bytes replayed since the previous report), over [`THROUGHPUT_WINDOW`].
    replayed: VecDeque<(Instant, u64)>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            status: ReplicaStatus::Starting,
            reason: "starting".into(),
            last_heard: None,
            write_lag: None,
            flush_lag: None,
            replay_lag: None,
            behind_since_ms: None,
            caught_up_once: false,
            catchup_started: None,
            lag_alert_active: false,
            last_position_event: None,
            samples: VecDeque::new(),
            last_sample_at: None,
            replayed: VecDeque::new(),
        }
    }
}

/// The thresholds measurements are judged by (from the settings in force).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub lag_alert_bytes: u64,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub wal_position_interval: Duration,
}

#[derive(Debug)]
pub struct ReplicaEntry {
    pub mode: ReplicaMode,
    pub stream: Stream,
    /// As it last reported them.
    pub pos: ReplicaPositions,
    pub health: Health,
}

impl ReplicaEntry {
    pub fn new(mode: ReplicaMode) -> Self {
        ReplicaEntry { mode, stream: Stream::default(), pos: ReplicaPositions::default(), health: Health::default() }
    }

    /// Bytes it has not replayed of what is durable on the primary.
    pub fn lag_bytes(&self, flush: u64) -> u64 {
        flush.saturating_sub(self.pos.replay_lsn)
    }

    pub fn lag_seconds(&self) -> f64 {
        self.health.behind_since_ms.map(|t| (now_ms() - t).max(0) as f64 / 1000.0).unwrap_or(0.0)
    }

    fn silent_past(&self, timeout: Duration) -> bool {
        self.health.last_heard.is_some_and(|t| t.elapsed() > timeout)
    }

    /// Changes its status, publishing `replica_status_change` if it is a change.
    pub fn set_status(&mut self, id: &str, new: ReplicaStatus, reason: String, mut metadata: BTreeMap<String, String>, flush: u64, out: &mut Outbox) {
        self.health.reason = reason.clone();
        if self.health.status == new {
            return;
        }
        let old = self.health.status;
        self.health.status = new;
        metadata.insert("wal_position".into(), lsn_text(self.pos.replay_lsn));
        metadata.insert("bytes_behind".into(), flush.saturating_sub(self.pos.replay_lsn).to_string());
        let severity = match new {
            ReplicaStatus::Failed | ReplicaStatus::Disconnected => Severity::Error,
            ReplicaStatus::CatchingUp | ReplicaStatus::Paused => Severity::Warning,
            _ => Severity::Info,
        };
        tracing::info!(replica_id = id, old = old.as_str(), new = new.as_str(), %reason, "replica status changed");
        out.publish(
            severity,
            format!("replica:{id}"),
            ReplicationEvent::ReplicaStatusChange(ReplicaStatusChange {
                replica_id: id.to_string(),
                old_status: old,
                new_status: new,
                reason,
                metadata,
            }),
        );
    }

    /// The status of a live, unpaused, connected replica from its measured lag.
    pub fn evaluate(&mut self, id: &str, flush: u64, t: &Thresholds, out: &mut Outbox) {
        if self.stream.running.is_none() || self.stream.paused || !self.stream.connected || self.silent_past(t.heartbeat_timeout) {
            return;
        }
        let lag = self.lag_bytes(flush);
        let threshold = t.lag_alert_bytes;
        let mut metadata = BTreeMap::new();
        let (status, reason) = if lag == 0 {
            if let Some(started) = self.health.catchup_started {
                metadata.insert("catchup_duration_seconds".into(), format!("{:.3}", started.elapsed().as_secs_f64()));
            }
            (ReplicaStatus::InSync, "replayed everything the primary has flushed".to_string())
        } else if !self.health.caught_up_once || lag > threshold {
            (ReplicaStatus::CatchingUp, format!("{lag} bytes behind"))
        } else {
            (ReplicaStatus::InSync, format!("{lag} bytes behind, within {threshold}"))
        };
        if lag == 0 {
            self.health.caught_up_once = true;
            self.health.catchup_started = None;
        } else if status == ReplicaStatus::CatchingUp && self.health.catchup_started.is_none() {
            self.health.catchup_started = Some(Instant::now());
        }
        self.set_status(id, status, reason, metadata, flush, out);
        self.check_lag_alert(id, flush, threshold, out);
    }

    /// Edge-triggered alert: once when lag rises above the threshold, once when it falls below
    /// half of it (hysteresis, so a lag hovering at the threshold does not flap).
    pub fn check_lag_alert(&mut self, id: &str, flush: u64, threshold: u64, out: &mut Outbox) {
        let lag = self.lag_bytes(flush);
        let active = self.health.lag_alert_active;
        let (raise, clear) = (!active && lag > threshold, active && lag < threshold / 2);
        if !raise && !clear {
            return;
        }
        self.health.lag_alert_active = raise;
        let severity = if clear {
            Severity::Info
        } else if lag > threshold.saturating_mul(4) {
            Severity::Error
        } else {
            Severity::Warning
        };
        let details = if clear {
            format!("recovered: {lag} bytes behind, below {} (half the threshold)", threshold / 2)
        } else {
            format!("{lag} bytes behind, above the threshold of {threshold}")
        };
        out.publish(
            severity,
            format!("replica:{id}"),
            ReplicationEvent::ReplicationLagAlert(ReplicationLagAlert {
                replica_id: id.to_string(),
                lag_bytes: lag,
                lag_seconds: self.lag_seconds(),
                threshold_bytes: threshold,
                severity,
                details,
            }),
        );
    }

    /// A sampled position report: at most one per `interval`, only when it moved; the caller
    /// asks only when someone listens.
    pub fn position_event(&mut self, id: &str, flush: u64, interval: Duration, out: &mut Outbox) {
        let now = Instant::now();
        let position = self.pos;
        if let Some((at, last)) = self.health.last_position_event {
            if now.duration_since(at) < interval || last == position {
                return;
            }
        }
        self.health.last_position_event = Some((now, position));
        let payload = WalPositionUpdate {
            replica_id: id.to_string(),
            write_lsn: lsn_text(position.write_lsn),
            flush_lsn: lsn_text(position.flush_lsn),
            replay_lsn: lsn_text(position.replay_lsn),
            bytes_behind: flush.saturating_sub(position.replay_lsn),
        };
        out.publish(Severity::Info, format!("replica:{id}"), ReplicationEvent::WalPositionUpdate(payload));
    }

    /// Takes one lag measurement, at most once per heartbeat interval, into its history; returns
    /// it when one was taken.
    pub fn sample_lag(&mut self, flush: u64, interval: Duration) -> Option<LagSample> {
        let now = Instant::now();
        if self.health.last_sample_at.is_some_and(|t| now.duration_since(t) < interval) {
            return None;
        }
        self.health.last_sample_at = Some(now);
        let sample = LagSample {
            timestamp_ms: now_ms(),
            lag_bytes: flush.saturating_sub(self.pos.replay_lsn),
            lag_seconds: self.lag_seconds(),
            replay_lsn_u64: self.pos.replay_lsn,
        };
        if self.health.samples.len() >= LAG_SAMPLES {
            self.health.samples.pop_front();
        }
        self.health.samples.push_back(sample.clone());
        Some(sample)
    }

    /// Lag samples taken at or after `since_ms`.
    pub fn samples_since(&self, since_ms: i64) -> Vec<LagSample> {
        self.health.samples.iter().filter(|s| s.timestamp_ms >= since_ms).cloned().collect()
    }

    /// `bytes` more replayed now, for throughput.
    pub fn replayed(&mut self, now: Instant, bytes: u64) {
        self.health.replayed.push_back((now, bytes));
        trim_window(&mut self.health.replayed, now, |r| r.0);
    }

    /// WAL bytes replayed per second over the throughput window.
    pub fn replayed_per_second(&mut self, now: Instant) -> f64 {
        trim_window(&mut self.health.replayed, now, |r| r.0);
        self.health.replayed.iter().map(|r| r.1).sum::<u64>() as f64 / THROUGHPUT_WINDOW.as_secs_f64()
    }

    /// Whether it has been silent past the timeout while up and not yet called disconnected;
    /// how long, if so.
    pub fn silent_for(&self, timeout: Duration) -> Option<u128> {
        if self.stream.running.is_none() || self.health.status == ReplicaStatus::Disconnected {
            return None;
        }
        let t = self.health.last_heard?;
        (t.elapsed() > timeout).then(|| t.elapsed().as_millis())
    }

    pub fn view(&self, id: &str, flush: u64) -> ReplicaView {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        ReplicaView {
            replica_id: id.to_string(),
            mode: self.mode,
            status: self.health.status,
            status_reason: self.health.reason.clone(),
            write_lsn: lsn_text(self.pos.write_lsn),
            write_lsn_u64: self.pos.write_lsn,
            flush_lsn: lsn_text(self.pos.flush_lsn),
            flush_lsn_u64: self.pos.flush_lsn,
            replay_lsn: lsn_text(self.pos.replay_lsn),
            replay_lsn_u64: self.pos.replay_lsn,
            lag_bytes: self.lag_bytes(flush),
            lag_seconds: self.lag_seconds(),
            write_lag_ms: ms(self.health.write_lag),
            flush_lag_ms: ms(self.health.flush_lag),
            replay_lag_ms: ms(self.health.replay_lag),
            last_heartbeat_ms: self.health.last_heard.map(|t| t.elapsed().as_millis() as u64),
        }
    }

    /// Healthy or not, with every reason it is not.
    pub fn health_report(&self, id: &str, flush: u64, t: &Thresholds) -> ReplicaHealth {
        let lag = self.lag_bytes(flush);
        let threshold = t.lag_alert_bytes;
        let mut reasons = Vec::new();
        if self.stream.running.is_none() {
            reasons.push("down: crashed, waiting for a restart".to_string());
        }
        if self.stream.paused {
            reasons.push("paused by operator: nothing is shipped to it".to_string());
        }
        match self.health.last_heard {
            None => reasons.push("has not reported yet".to_string()),
            Some(at) if at.elapsed() > t.heartbeat_timeout => reasons.push(format!(
                "no heartbeat for {} ms (timeout {} ms)",
                at.elapsed().as_millis(),
                t.heartbeat_timeout.as_millis()
            )),
            _ => {}
        }
        if lag > threshold {
            reasons.push(format!("{lag} bytes behind, above the alert threshold of {threshold}"));
        }
        if reasons.is_empty() && self.health.status != ReplicaStatus::InSync {
            reasons.push(format!("status is {}", self.health.status.as_str()));
        }
        ReplicaHealth {
            replica_id: id.to_string(),
            healthy: reasons.is_empty(),
            reasons,
            status: self.health.status,
            lag_bytes: lag,
            last_heartbeat_ms: self.health.last_heard.map(|at| at.elapsed().as_millis() as u64),
        }
    }
}
