//! The stream to each replica: what is shipped next (from memory, or read back from the store
//! for a replica far behind, within a window of bytes not yet durable there), what the replica's
//! reports say, and the link to it lost and found again.

use std::sync::Arc;
use std::time::Instant;

use super::commit::replication_error;
use super::outbox::{Fetch, Outbox, ToReplica};
use super::settings::flush_awaited;
use super::state::Primary;
use crate::messages::events::*;
use crate::messages::replication::*;
use crate::model::{lsn_text, LogRecord, ReplicaStatus};
use crate::storage::StorageError;

/// Most bytes shipped to one replica and not yet reported durable there: the flow-control
/// window, which bounds what a replica holds in memory (received, not yet flushed) however slow
/// its storage is; past it, the replica catches up from what the primary keeps.
pub const SHIP_WINDOW: u64 = 4 << 20;

impl Primary {
    /// Ships what replica `id` is missing, within the window: from memory when the records are
    /// still there, otherwise it asks for them to be read back ([`Fetch`]).
    pub fn ship_more(&mut self, id: &str, out: &mut Outbox) {
        let (shippable, flush, timeline) = (self.log.shipped_end, self.log.flush_lsn, self.log.timeline);
        let awaited_mode = self.settings.mode;
        let Some(e) = self.replicas.get_mut(id) else { return };
        let s = &mut e.stream;
        if !s.streams(timeline) || s.fetch_in_flight || s.seeding.is_some() || s.shipped_lsn >= shippable {
            return;
        }
        if s.shipped_lsn.saturating_sub(e.pos.flush_lsn) >= SHIP_WINDOW {
            return;
        }
        let from = s.shipped_lsn;
        let awaited = flush_awaited(awaited_mode, e.mode);
        if let Some(records) = self.log.records_from(from, SHIP_WINDOW) {
            s.shipped_lsn = records.last().map(LogRecord::end_lsn).unwrap_or(from);
            s.confirmed_lsn = s.confirmed_lsn.max(flush);
            out.send(id, ToReplica::Ship(ShipWal { records, flush_awaited: awaited, timeline, durable_lsn: flush }));
            return;
        }
        // Older than what is kept in memory: read back (only durable records are stored).
        s.fetch_in_flight = true;
        out.fetches.push(Fetch { replica_id: id.to_string(), from, awaited, timeline, durable_lsn: flush });
    }

    /// WAL read back for `fetch` arrived: shipped if the replica still wants it from there;
    /// if the WAL it needs is gone, it is `failed` (a snapshot restore, or removing and adding
    /// it again, reseeds it).
    pub fn on_fetched(&mut self, fetch: Fetch, read: Result<Vec<LogRecord>, StorageError>, out: &mut Outbox) {
        let id = fetch.replica_id.as_str();
        let oldest_retained = self.oldest_retained;
        let Some(e) = self.replicas.get_mut(id) else { return };
        let s = &mut e.stream;
        s.fetch_in_flight = false;
        if !s.connected {
            // Cut off or restarted meanwhile: its next report says where to ship from.
            return;
        }
        let from = fetch.from;
        match read {
            Ok(records) if records.first().is_some_and(|r| r.lsn == from) && s.shipped_lsn == from && s.timeline == fetch.timeline => {
                if s.running.is_some() {
                    s.shipped_lsn = records.last().map(LogRecord::end_lsn).unwrap_or(from);
                    s.confirmed_lsn = s.confirmed_lsn.max(fetch.durable_lsn);
                    out.send(
                        id,
                        ToReplica::Ship(ShipWal { records, flush_awaited: fetch.awaited, timeline: fetch.timeline, durable_lsn: fetch.durable_lsn }),
                    );
                }
                self.ship_more(id, out);
            }
            Ok(records) if records.first().is_none_or(|r| r.lsn > from) && s.shipped_lsn == from => {
                let oldest = records.first().map(|r| r.lsn).unwrap_or(oldest_retained);
                let error = ReplicationError::WalGone { lsn: lsn_text(from), oldest: lsn_text(oldest), what: id.to_string() };
                self.set_status(id, ReplicaStatus::Failed, error.to_string(), out);
                out.publish_error(format!("replica:{id}"), replication_error(Severity::Error, vec![id.to_string()], "wal_gone", "ship_wal", error.to_string()));
            }
            Ok(_) => {}
            Err(err) => tracing::error!(replica_id = %id, error = %err, "cannot read WAL to ship"),
        }
    }

    /// A message to replica `id` was lost on the link (cut, or dropped): nothing more is shipped
    /// until it is heard from again, and then from what it reports having.
    pub fn link_lost(&mut self, id: &str) {
        if let Some(e) = self.replicas.get_mut(id) {
            e.stream.connected = false;
        }
    }

    /// A replica's report: its positions (which only a restart report moves back), lag, status,
    /// and what to ship or tell it next.
    pub fn on_report(&mut self, msg: ReplicaReport, out: &mut Outbox) {
        let id = msg.replica_id.clone();
        let restarted = msg.kind == ReportKind::Restarted;
        let mut p = msg.positions;
        // Only a restart (a load, a reconcile, a reseed, a gap) moves a position back: a store
        // task's early report and a heartbeat sent meanwhile may arrive in either order.
        if let Some(e) = self.replicas.get(&id).filter(|e| !restarted && e.stream.running == Some(msg.incarnation)) {
            p.write_lsn = p.write_lsn.max(e.pos.write_lsn);
            p.flush_lsn = p.flush_lsn.max(e.pos.flush_lsn);
            p.replay_lsn = p.replay_lsn.max(e.pos.replay_lsn);
        }
        let now = Instant::now();
        let flush = self.log.flush_lsn;
        let (write_lag, flush_lag, replay_lag) =
            (self.log.lag_since(p.write_lsn, now), self.log.lag_since(p.flush_lsn, now), self.log.lag_since(p.replay_lsn, now));
        let first_unreplayed = if p.replay_lsn < flush { self.log.first_after(p.replay_lsn) } else { None };
        let down = self.is_down();
        // A replica holding nothing past what it applied has nothing to drop: it takes this
        // timeline with the next message it gets.
        // Judged on what the replica says it applied, not on positions kept from earlier reports.
        let diverged = self.log.applied_past_history(msg.timeline, msg.positions.replay_lsn);
        let on_timeline = !diverged && (msg.timeline == self.log.timeline || p.write_lsn == p.replay_lsn);
        let reconcile = (!on_timeline).then(|| self.log.reconcile_for(msg.timeline, p.replay_lsn));
        let timeline = self.log.timeline;
        let confirm = PrimaryDurable { lsn: flush, timeline };
        let report_every = self.settings.heartbeat_interval;
        let t = self.thresholds();
        let Some(e) = self.replicas.get_mut(&id) else { return };
        if e.stream.running != Some(msg.incarnation) {
            return;
        }
        e.health.last_heard = Some(now);
        let s = &mut e.stream;
        if let Some(seed_lsn) = s.seeding {
            if restarted && p.flush_lsn == seed_lsn {
                s.seeding = None;
            } else {
                // Still loading its old state; the reseed comes next.
                s.connected = true;
                return;
            }
        }
        if diverged {
            // Its rows hold writes this primary's history lacks: only a base copy repairs that
            // (what pg_rewind does for a former primary).
            if !down {
                tracing::warn!(replica_id = %id, replay_lsn = msg.positions.replay_lsn, "replica applied past this primary's history; reseeding it");
                let (rows, lsn) = (Arc::new(self.rows.sorted_rows()), self.log.flush_lsn);
                self.reseed(&id, rows, lsn, out);
            }
            return;
        }
        s.timeline = if on_timeline { timeline } else { msg.timeline };
        if let Some(reconcile) = reconcile {
            // Its log comes from an earlier start of the primary: nothing is shipped to it until
            // it has dropped what that start may never have made durable (and says so).
            out.send(&id, ToReplica::Reconcile(reconcile));
            return;
        }
        let was_connected = s.connected;
        s.connected = true;
        if restarted || !was_connected {
            if !down {
                // What it holds that is durable here may be applied (a tail it kept over its
                // restart, or what arrived before the link was lost).
                out.send(&id, ToReplica::Durable(confirm));
                s.confirmed_lsn = confirm.lsn;
            }
            if !was_connected && !restarted {
                // The link lost messages: a change of report interval may have been one.
                out.send(&id, ToReplica::ReportEvery(report_every));
            }
            s.shipped_lsn = p.write_lsn;
            s.fetch_in_flight = false;
            e.health.catchup_started = Some(now);
            // In sync again only once it has replayed everything, not merely within the threshold.
            e.health.caught_up_once = false;
        }
        let h = &mut e.health;
        if p.write_lsn > e.pos.write_lsn && write_lag.is_some() {
            h.write_lag = write_lag;
        }
        if p.flush_lsn > e.pos.flush_lsn && flush_lag.is_some() {
            h.flush_lag = flush_lag;
        }
        if p.replay_lsn > e.pos.replay_lsn && replay_lag.is_some() {
            h.replay_lag = replay_lag;
        }
        if p.replay_lsn > e.pos.replay_lsn && !restarted {
            e.replayed(now, p.replay_lsn - e.pos.replay_lsn);
        }
        e.pos = p;
        let h = &mut e.health;
        if !down {
            h.behind_since_ms = first_unreplayed.or(h.behind_since_ms.filter(|_| p.replay_lsn < flush));
        }
        if e.stream.shipped_lsn < p.write_lsn {
            e.stream.shipped_lsn = p.write_lsn;
        }
        if e.stream.paused {
            // A paused replica that (re)started is still paused: say so, not `starting`.
            e.set_status(&id, ReplicaStatus::Paused, "paused by operator".into(), Default::default(), flush, out);
        } else {
            e.evaluate(&id, flush, &t, out);
        }
        if self.interest.wants(EventType::WalPositionUpdate) {
            e.position_event(&id, flush, t.wal_position_interval, out);
        }
        if let Some(sample) = e.sample_lag(flush, t.heartbeat_interval) {
            if self.interest.wants(EventType::ReplicationLagSample) {
                out.publish(
                    Severity::Info,
                    format!("replica:{id}"),
                    ReplicationEvent::ReplicationLagSample(ReplicationLagSample {
                        replica_id: id.clone(),
                        lag_bytes: sample.lag_bytes,
                        lag_seconds: sample.lag_seconds,
                        threshold_bytes: t.lag_alert_bytes,
                        status: e.health.status,
                    }),
                );
            }
        }
        self.settle_waiters();
        self.ship_more(&id, out);
    }

    /// Sends replica `id` a base copy at `lsn`; nothing is shipped to it until it reports having it.
    pub fn reseed(&mut self, id: &str, rows: Arc<Vec<(String, String, serde_json::Value)>>, lsn: u64, out: &mut Outbox) {
        let timeline = self.log.timeline;
        let Some(e) = self.replicas.get_mut(id) else { return };
        e.stream.seeding = Some(lsn);
        e.stream.shipped_lsn = lsn;
        if e.stream.running.is_some() {
            out.send(id, ToReplica::Reseed(Reseed { rows, lsn, timeline }));
        }
    }

    /// Replicas silent past the heartbeat timeout turn `disconnected`.
    pub fn check_heartbeats(&mut self, out: &mut Outbox) {
        let timeout = self.settings.heartbeat_timeout;
        let silent: Vec<(String, u128)> =
            self.replicas.iter().filter_map(|(id, e)| e.silent_for(timeout).map(|ms| (id.clone(), ms))).collect();
        for (id, ms) in silent {
            self.set_status(&id, ReplicaStatus::Disconnected, format!("no heartbeat for {ms} ms"), out);
        }
    }
}
