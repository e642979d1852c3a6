//! From a batch taken in to its answer: group commit (every batch accepted while one fsync runs
//! goes into the next), shipping a group's records as its fsync starts, applying a durable group
//! to the rows, confirming it to the replicas, and answering each batch once its mode is
//! satisfied (or 504 at its deadline).
//!
//! A group's records are shipped as its fsync starts, so the replicas' fsyncs run beside the
//! primary's; they apply the records only once told they are durable here (on the next shipment,
//! or by `PrimaryDurable`), so no replica shows a write its primary could still lose.

use std::time::Instant;

use super::intake::{Accepted, Reply};
use super::load::flush_key;
use super::outbox::{Outbox, ToReplica};
use super::settings::flush_awaited;
use super::state::Primary;
use super::stream::SHIP_WINDOW;
use crate::messages::events::*;
use crate::messages::replication::*;
use crate::model::{LogRecord, Op};
use crate::storage::LogCommit;

/// A group commit in flight: the batches it makes durable, up to `end`.
pub struct Group {
    batches: Vec<Accepted>,
    end: u64,
    started: Instant,
}

impl Group {
    pub fn batches(&self) -> usize {
        self.batches.len()
    }
}

impl Primary {
    /// Takes a batch in (it waits for the next group commit), or refuses it now.
    pub fn accept(&mut self, ops: Vec<Op>, reply: Reply) -> Result<(), (ReplicationError, Reply)> {
        if self.is_down() {
            return Err((self.primary_down(), reply));
        }
        self.intake.accept(&self.rows, ops, now_ms(), reply)
    }

    /// The next group commit, if none is in flight and a batch waits, and the commit to run off
    /// the arbiter: its WAL records and the flushed position in one transaction (the rows follow
    /// in a checkpoint). Its records are shipped now to every replica streaming right behind.
    pub fn start_group(&mut self, out: &mut Outbox) -> Option<(Group, LogCommit)> {
        if self.log.commit_in_flight || !self.intake.has_pending() || self.is_down() {
            return None;
        }
        let batches = self.intake.take_group();
        let end = batches.last().map(Accepted::end_lsn).unwrap_or(self.log.flush_lsn);
        let commit = LogCommit {
            records: batches.iter().map(|b| (b.lsn, b.bytes.clone())).collect(),
            meta: vec![(flush_key(&self.settings.primary), end)],
            truncate_before: None,
            truncate_from: None,
        };
        // No other commit is in flight: what was shipped before is durable.
        let start = self.log.shipped_end;
        let durable = self.log.flush_lsn;
        let records: Vec<LogRecord> = batches
            .iter()
            .map(|b| LogRecord { lsn: b.lsn, bytes: b.bytes.clone(), committed_at_ms: b.committed_at_ms, ops: b.ops.clone() })
            .collect();
        self.log.started(&records, end);
        let (mode, timeline) = (self.settings.mode, self.log.timeline);
        for (id, e) in self.replicas.iter_mut() {
            let s = &mut e.stream;
            if s.streams(timeline) && s.shipped_lsn == start && start.saturating_sub(e.pos.flush_lsn) < SHIP_WINDOW {
                out.send(
                    id,
                    ToReplica::Ship(ShipWal {
                        records: records.clone(),
                        flush_awaited: flush_awaited(mode, e.mode),
                        timeline,
                        durable_lsn: durable,
                    }),
                );
                s.confirmed_lsn = durable;
                s.shipped_lsn = end;
            }
        }
        Some((Group { batches, end, started: Instant::now() }, commit))
    }

    /// The group commit in flight ended. Durable: applied, answered or left waiting; failed: the
    /// primary goes down (a failed fsync leaves the log in doubt: like PostgreSQL, stop taking
    /// writes rather than guess; a restart reloads what is durable). Down meanwhile: the batches
    /// may be durable (a restart loads them) but were never acknowledged; their callers were
    /// told the primary is down.
    pub fn group_done(&mut self, group: Group, result: Result<(), String>, out: &mut Outbox) {
        self.log.commit_in_flight = false;
        if self.is_down() {
            return;
        }
        match result {
            Ok(()) => self.committed(group, out),
            Err(message) => self.commit_failed(group.batches, message, out),
        }
    }

    fn committed(&mut self, group: Group, out: &mut Outbox) {
        let old_flush = self.log.flush_lsn;
        let now = Instant::now();
        let ops: u64 = group.batches.iter().map(|b| b.ops.len() as u64).sum();
        self.log.durable(group.end, ops, now);
        let first_committed_ms = group.batches.first().map(|b| b.committed_at_ms);
        let mut replies = Vec::with_capacity(group.batches.len());
        let stages = &self.stages;
        for b in group.batches {
            stages.queued.observe(group.started.saturating_duration_since(b.arrived));
            stages.primary_commit.observe(now.saturating_duration_since(group.started));
            self.rows.apply(&b.ops);
            self.intake.committed(b.lsn, &b.ops);
            self.checkpoint.applied(b.ops.len());
            replies.push((b.end_lsn(), b.reply));
        }
        out.checkpoint_due |= self.checkpoint.due();
        // Ship to the replicas catching up (the shipment confirms `end` to them); the others
        // learn it with the next group's records, or from `confirm_durable`.
        let ids: Vec<String> = self.replicas.keys().cloned().collect();
        let threshold = self.settings.lag_alert_bytes;
        let flush = self.log.flush_lsn;
        for id in &ids {
            if let Some(e) = self.replicas.get_mut(id) {
                if e.pos.replay_lsn >= old_flush && e.health.behind_since_ms.is_none() {
                    e.health.behind_since_ms = first_committed_ms;
                }
            }
            self.ship_more(id, out);
            if let Some(e) = self.replicas.get_mut(id) {
                e.check_lag_alert(id, flush, threshold, out);
            }
        }
        let rule = self.rule();
        for (end_lsn, reply) in replies {
            self.waiters.settle_or_wait(&rule, &self.replicas, end_lsn, self.settings.sync_timeout, now, reply);
        }
    }

    fn commit_failed(&mut self, batches: Vec<Accepted>, message: String, out: &mut Outbox) {
        tracing::error!(error = %message, "WAL commit failed; the primary goes down");
        for b in batches {
            let _ = b.reply.send(Err(ReplicationError::Storage { message: message.clone() }));
        }
        self.go_down("WAL commit failed", None);
        out.publish_error(self.source(), replication_error(Severity::Critical, vec![self.id().to_string()], "wal_commit_failed", "replicate_operations", message));
    }

    /// Tells every connected replica on this timeline that has not heard it yet (no shipment
    /// carried it) what is durable here: it may apply what it holds up to there.
    pub fn confirm_durable(&mut self, out: &mut Outbox) {
        if self.is_down() {
            return;
        }
        let confirm = PrimaryDurable { lsn: self.log.flush_lsn, timeline: self.log.timeline };
        for (id, e) in self.replicas.iter_mut() {
            let s = &mut e.stream;
            if s.running.is_some() && s.connected && s.timeline == confirm.timeline && s.confirmed_lsn < confirm.lsn {
                out.send(id, ToReplica::Durable(confirm));
                s.confirmed_lsn = confirm.lsn;
            }
        }
    }

    /// Answers waiting batches the replicas' positions now satisfy.
    pub fn settle_waiters(&mut self) {
        let rule = self.rule();
        self.waiters.settle(&rule, &self.replicas);
    }

    /// Answers 504 to every waiting batch past its deadline, publishing a `replication_error`
    /// for each.
    pub fn expire_waiters(&mut self, out: &mut Outbox) {
        let rule = self.rule();
        let timeout_ms = self.settings.sync_timeout.as_millis() as u64;
        for t in self.waiters.expire(&rule, &self.replicas, timeout_ms, Instant::now()) {
            // The replicas that missed the write; none only if the rule changed meanwhile.
            let about = if t.missing.is_empty() { vec![self.id().to_string()] } else { t.missing };
            out.publish_error(self.source(), replication_error(Severity::Error, about, "sync_timeout", "replicate_operations", t.error.to_string()));
        }
    }

    /// The `source` of events about the primary itself.
    pub(super) fn source(&self) -> String {
        format!("primary:{}", self.settings.primary)
    }

}

/// A `replication_error` about `about` (the replicas it concerns, or the primary's id for an
/// error of the primary; never empty), `code`, met while doing `operation`.
pub(super) fn replication_error(severity: Severity, about: Vec<String>, code: &str, operation: &str, message: String) -> ReplicationErrorEvent {
    ReplicationErrorEvent {
        replica_id: about.first().cloned().unwrap_or_default(),
        replica_ids: about,
        error_code: code.into(),
        error_message: message,
        severity,
        failed_operation: operation.into(),
        retry_count: 0,
    }
}
