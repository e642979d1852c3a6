//! What WAL is kept and what is dropped: the holders (replicas, slots, the newest snapshot, the
//! stored rows), checkpoints that move the stored rows forward, and truncations (each one
//! checkpoints every changed shard first). One checkpoint or truncation at a time.

use tokio::sync::oneshot;

use super::state::Primary;
use crate::messages::replication::{ReplicationError, WalHolder, WalStatus, WalTruncated};
use crate::model::lsn_text;
use crate::storage::table::stored_shards;
use crate::storage::{RowImages, StorageError, Store};

type TruncateReply = oneshot::Sender<Result<WalTruncated, ReplicationError>>;

/// Checkpoints and truncations: whether one runs, and the `/wal/truncate` callers waiting.
#[derive(Default)]
pub struct Maintenance {
    in_flight: bool,
    waiting: Vec<TruncateReply>,
}

impl Maintenance {
    pub fn refuse_all(&mut self, error: impl Fn() -> ReplicationError) {
        for reply in self.waiting.drain(..) {
            let _ = reply.send(Err(error()));
        }
    }
}

/// A checkpoint and/or truncation to run off the arbiter.
pub struct MaintenanceJob {
    /// The changed shards to write, with the lsn they reflect.
    images: Option<RowImages>,
    /// Drop the WAL before this lsn (capped at what every stored shard reflects), after writing.
    truncate: Option<u64>,
}

/// The same checkpoint or truncation as the state waits for it to end.
pub struct MaintenanceWork {
    /// The lsn and shards the checkpoint stores, to mark them stored when it succeeds.
    written: Option<(u64, Vec<u16>)>,
    replies: Vec<TruncateReply>,
}

impl MaintenanceJob {
    /// Runs it: the checkpoint, then the truncation; (records removed, oldest record kept) if it
    /// truncated. Blocking.
    pub fn run(self, store: &Store, owner: &str) -> Result<Option<(usize, u64)>, StorageError> {
        if let Some(images) = self.images {
            if !store.write_row_images(owner, images)? {
                return Err(StorageError::RowsReplaced { owner: owner.to_string() });
            }
        }
        let Some(before) = self.truncate else { return Ok(None) };
        // Up to what every shard stored reflects: all of them, after the full checkpoint.
        let before = before.min(store.rows_lsn(owner)?);
        let removed = store.truncate_log(owner, before)?;
        let oldest = store.log_bounds(owner)?.map(|b| b.0).unwrap_or(before);
        Ok(Some((removed, oldest)))
    }
}

impl Primary {
    /// What holds WAL back: every replica (from its replayed position, or the lsn it is being
    /// reseeded to), every slot (from its restart position), the stored rows (the WAL after
    /// them is replayed at a start), and the newest snapshot.
    pub fn holders(&self) -> Vec<WalHolder> {
        let flush = self.log.flush_lsn;
        let holder = |kind: &str, name: &str, lsn: u64| WalHolder {
            kind: kind.into(),
            name: name.into(),
            needs_from_lsn: lsn_text(lsn),
            needs_from_lsn_u64: lsn,
            retained_bytes: flush.saturating_sub(lsn),
        };
        let mut out: Vec<WalHolder> = self
            .replicas
            .iter()
            .map(|(id, e)| holder("replica", id, e.stream.seeding.map_or(e.pos.replay_lsn, |seed| seed.min(e.pos.replay_lsn))))
            .collect();
        out.extend(self.slots.iter().map(|(name, s)| holder("slot", name, s.restart_lsn)));
        out.push(holder("checkpoint", &self.settings.primary, self.checkpoint.needs_from()));
        if let Some((id, lsn)) = &self.newest_snapshot {
            out.push(holder("snapshot", id, *lsn));
        }
        out
    }

    /// WAL before this lsn goes at the next truncation: what no replica, slot or snapshot needs.
    /// The stored rows' own need is left out: a truncation checkpoints first.
    pub fn truncatable_before(&self) -> u64 {
        let flush = self.log.flush_lsn;
        self.holders().iter().filter(|h| h.kind != "checkpoint").map(|h| h.needs_from_lsn_u64).min().unwrap_or(flush).min(flush)
    }

    /// Where the WAL stands, its oldest record kept being at `oldest` (`None`: it is empty).
    pub fn wal_status(&self, oldest: Option<u64>) -> WalStatus {
        let (next, flush) = (self.intake.next_lsn, self.log.flush_lsn);
        let oldest = oldest.unwrap_or(flush);
        WalStatus {
            current_lsn: lsn_text(next),
            current_lsn_u64: next,
            flushed_lsn: lsn_text(flush),
            flushed_lsn_u64: flush,
            oldest_retained_lsn: lsn_text(oldest),
            oldest_retained_lsn_u64: oldest,
            retained_bytes: flush.saturating_sub(oldest),
            retained_by: self.holders(),
            truncatable_before_u64: self.truncatable_before(),
        }
    }

    /// A `/wal/truncate` caller waits for the next truncation.
    pub fn truncate_requested(&mut self, reply: TruncateReply) {
        if self.is_down() {
            let _ = reply.send(Err(self.primary_down()));
            return;
        }
        self.maintenance.waiting.push(reply);
    }

    /// The next checkpoint: the shards changed since the last one (about as many rows as were
    /// applied since), and when `truncate` (or a `/wal/truncate` caller waits) every changed
    /// shard and then the truncation of the WAL nobody needs. `None` if one runs already or
    /// there is nothing to do. The rows are captured here, on the actor: sharing pointers, not
    /// copying values.
    pub fn start_maintenance(&mut self, truncate: bool) -> Option<(MaintenanceJob, MaintenanceWork)> {
        if self.is_down() {
            let primary = self.settings.primary.clone();
            self.maintenance.refuse_all(|| ReplicationError::PrimaryDown { primary: primary.clone() });
            return None;
        }
        if self.maintenance.in_flight {
            return None;
        }
        let replies = std::mem::take(&mut self.maintenance.waiting);
        let truncate = truncate || !replies.is_empty();
        let images = match self.checkpoint.start(truncate, false) {
            Some(plan) => {
                let images = self.rows.capture(&plan, self.log.flush_lsn);
                if images.is_none() {
                    self.checkpoint.finished(None);
                }
                images
            }
            None => None,
        };
        if images.is_none() && !truncate {
            return None;
        }
        self.maintenance.in_flight = true;
        let written = images.as_ref().map(|i| (i.lsn, stored_shards(i)));
        let before = truncate.then(|| self.truncatable_before());
        Some((MaintenanceJob { images, truncate: before }, MaintenanceWork { written, replies }))
    }

    /// A checkpoint or truncation ended; whether another should start now (one is waiting or
    /// due). A failed checkpoint loses nothing: the WAL from its shards' older lsn is kept and
    /// replayed at the next start, and a later checkpoint writes the shards again.
    pub fn maintenance_done(&mut self, work: MaintenanceWork, result: Result<Option<(usize, u64)>, StorageError>) -> bool {
        self.maintenance.in_flight = false;
        if self.checkpoint.in_flight() {
            match (&result, &work.written) {
                (Ok(_), Some((lsn, shards))) => self.checkpoint.finished(Some((*lsn, shards))),
                _ => {
                    if let Some((_, shards)) = &work.written {
                        self.rows.mark_dirty(shards.iter().map(|&s| usize::from(s)));
                    }
                    self.checkpoint.finished(None);
                }
            }
        }
        let answer = match result {
            Ok(Some((removed, oldest))) => {
                self.oldest_retained = oldest;
                if removed > 0 {
                    tracing::info!(removed, oldest_retained_lsn = %lsn_text(oldest), "WAL truncated");
                }
                Ok(WalTruncated { records_removed: removed, oldest_retained_lsn: lsn_text(oldest), oldest_retained_lsn_u64: oldest })
            }
            Ok(None) => return self.maintenance_due(),
            Err(e) => {
                tracing::error!(error = %e, "checkpoint or WAL truncation failed");
                Err(ReplicationError::from(e))
            }
        };
        for reply in work.replies {
            let _ = reply.send(answer.clone());
        }
        self.maintenance_due()
    }

    /// Whether a checkpoint or truncation should start now.
    pub fn maintenance_due(&self) -> bool {
        !self.maintenance.waiting.is_empty() || self.checkpoint.due()
    }
}
