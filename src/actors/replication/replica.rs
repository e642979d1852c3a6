//! One replica, as a supervised actor. It receives WAL records shipped by the primary, makes them
//! durable in its own log together with the row changes they make (one fsynced transaction, off
//! the arbiter thread), applies them to its table state, and reports its write, flush and replay
//! positions to the primary after each step and on every heartbeat.
//!
//! Positions: `write` is what it has received (in memory), `flush` what is durable, `replay`
//! what its readable state shows. On start it loads its rows and flushed position from the store
//! and reports them with `restarted`, so the primary ships from there: a replica resumes from its
//! own flushed position, never from zero.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::messages::replication::*;
use crate::storage::{LogCommit, RowWrite, Store};

/// The meta key of a replica's durable (flushed) position.
pub fn flush_key(replica_id: &str) -> String {
    format!("replica:{replica_id}:flush_lsn")
}

/// Where a replica reports to: the primary.
pub type ProgressSink = Recipient<ReplicaReport>;

/// A replica's report: its positions, and whether it just (re)started (the primary then ships
/// from its flushed position).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ReplicaReport {
    pub progress: ReplicaProgress,
    pub restarted: bool,
    /// Which actor of the replica sent it; reports from an earlier one are ignored.
    pub incarnation: u64,
}

pub struct ReplicaActor {
    replica_id: String,
    incarnation: u64,
    store: Arc<Store>,
    primary: ProgressSink,
    heartbeat_interval: Duration,
    rows: HashMap<(String, String), serde_json::Value>,
    write_lsn: u64,
    flush_lsn: u64,
    replay_lsn: u64,
    /// Received, not yet durable.
    pending: Vec<ShippedRecord>,
    commit_in_flight: bool,
    loaded: bool,
    heartbeat: Option<SpawnHandle>,
    /// Set by an injected crash, so a restart by the supervisor keeps it down.
    crashed: bool,
}

impl ReplicaActor {
    pub fn new(
        replica_id: String,
        incarnation: u64,
        store: Arc<Store>,
        primary: ProgressSink,
        heartbeat_interval: Duration,
    ) -> Self {
        ReplicaActor {
            replica_id,
            incarnation,
            store,
            primary,
            heartbeat_interval,
            rows: HashMap::new(),
            write_lsn: 0,
            flush_lsn: 0,
            replay_lsn: 0,
            pending: Vec::new(),
            commit_in_flight: false,
            loaded: false,
            heartbeat: None,
            crashed: false,
        }
    }

    pub fn start_supervised(self) -> Addr<ReplicaActor> {
        actix::Supervisor::start(|_| self)
    }

    fn report(&self, restarted: bool) {
        self.primary.do_send(ReplicaReport {
            progress: ReplicaProgress {
                replica_id: self.replica_id.clone(),
                write_lsn: self.write_lsn,
                flush_lsn: self.flush_lsn,
                replay_lsn: self.replay_lsn,
            },
            restarted,
            incarnation: self.incarnation,
        });
    }

    /// Loads rows and the flushed position (blocking, so in `spawn_blocking`), holding messages
    /// back until done.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let id = self.replica_id.clone();
        let load = actix_web::rt::task::spawn_blocking(move || {
            let flush = store.get_meta(&flush_key(&id))?.unwrap_or(0);
            let rows = store.load_rows(&id)?;
            Ok::<_, crate::storage::StorageError>((flush, rows))
        });
        ctx.wait(load.into_actor(self).map(|res, act, ctx| match res {
            Ok(Ok((flush, rows))) => {
                act.rows = rows
                    .into_iter()
                    .filter_map(|(t, k, v)| serde_json::from_slice(&v).ok().map(|v| ((t, k), v)))
                    .collect();
                act.write_lsn = flush;
                act.flush_lsn = flush;
                act.replay_lsn = flush;
                act.loaded = true;
                act.report(true);
            }
            Ok(Err(e)) => {
                tracing::error!(replica_id = %act.replica_id, error = %e, "replica cannot load its state; stopping");
                ctx.stop();
            }
            Err(e) => {
                tracing::error!(replica_id = %act.replica_id, error = %e, "replica load task failed; stopping");
                ctx.stop();
            }
        }));
    }

    /// Makes everything received durable, in one transaction, then applies it.
    fn commit(&mut self, ctx: &mut Context<Self>) {
        if self.commit_in_flight || self.pending.is_empty() {
            return;
        }
        self.commit_in_flight = true;
        let records = std::mem::take(&mut self.pending);
        let end = records.last().map(ShippedRecord::end_lsn).unwrap_or(self.flush_lsn);
        let store = self.store.clone();
        let id = self.replica_id.clone();
        let work = actix_web::rt::task::spawn_blocking(move || {
            // Decoding is CPU work too: it stays off the arbiter with the fsync.
            let mut writes: Vec<RowWrite> = Vec::new();
            let mut applied: Vec<(String, String, Option<serde_json::Value>)> = Vec::new();
            for r in &records {
                let record: WalRecord = serde_json::from_slice(&r.bytes)
                    .map_err(|e| crate::storage::StorageError::Backend(format!("WAL record at {} unreadable: {e}", r.lsn)))?;
                for op in record.ops {
                    let value = match op.op {
                        OpKind::Delete => None,
                        OpKind::Insert | OpKind::Update => op.value,
                    };
                    writes.push(RowWrite {
                        table: op.table.clone(),
                        key: op.key.clone(),
                        value: value.as_ref().map(|v| v.to_string().into_bytes()),
                    });
                    applied.push((op.table, op.key, value));
                }
            }
            // The received log is a durable receive buffer: once the rows it carries are durable
            // in the same transaction, older records are not needed, so they go too.
            let first = records.first().map(|r| r.lsn);
            let commit = LogCommit {
                records: records.iter().map(|r| (r.lsn, r.bytes.to_vec())).collect(),
                rows: writes,
                meta: vec![(flush_key(&id), end)],
                truncate_before: first,
            };
            store.commit_log(&id, &commit)?;
            Ok::<_, crate::storage::StorageError>(applied)
        });
        ctx.spawn(work.into_actor(self).map(move |res, act, ctx| {
            act.commit_in_flight = false;
            match res {
                Ok(Ok(applied)) => {
                    act.flush_lsn = end;
                    for (table, key, value) in applied {
                        match value {
                            Some(v) => {
                                act.rows.insert((table, key), v);
                            }
                            None => {
                                act.rows.remove(&(table, key));
                            }
                        }
                    }
                    act.replay_lsn = end;
                    act.report(false);
                    act.commit(ctx);
                }
                Ok(Err(e)) => {
                    // What was received is not durable; the supervisor restarts the actor from
                    // its durable state and the primary ships the rest again.
                    tracing::error!(replica_id = %act.replica_id, error = %e, "replica could not make WAL durable; restarting");
                    ctx.stop();
                }
                Err(e) => {
                    tracing::error!(replica_id = %act.replica_id, error = %e, "replica commit task failed; restarting");
                    ctx.stop();
                }
            }
        }));
    }
}

impl ReplicaActor {
    fn start_heartbeat(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.heartbeat.take() {
            ctx.cancel_future(h);
        }
        self.heartbeat = Some(ctx.run_interval(self.heartbeat_interval, |act, _| {
            if act.loaded {
                act.report(false);
            }
        }));
    }
}

impl Handler<SetReportInterval> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, msg: SetReportInterval, ctx: &mut Self::Context) {
        self.heartbeat_interval = msg.interval;
        self.start_heartbeat(ctx);
    }
}

impl Actor for ReplicaActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.crashed {
            return;
        }
        // Shipping is flow-controlled by the primary (a window of bytes in flight), so the
        // mailbox stays small; this bound only guards against a bug there.
        ctx.set_mailbox_capacity(4096);
        self.load(ctx);
        self.start_heartbeat(ctx);
    }
}

impl actix::Supervised for ReplicaActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // In-memory state is rebuilt from the store in `started`, never assumed.
        self.pending.clear();
        self.commit_in_flight = false;
        self.loaded = false;
        self.rows.clear();
    }
}

impl Handler<ShipWal> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, msg: ShipWal, ctx: &mut Self::Context) {
        if self.crashed || !self.loaded {
            return;
        }
        let mut accepted = false;
        for record in msg.records {
            if record.lsn == self.write_lsn {
                self.write_lsn = record.end_lsn();
                self.pending.push(record);
                accepted = true;
            } else if record.end_lsn() <= self.write_lsn {
                // Shipped again after a restart of the stream: already have it.
            } else {
                // A gap: say where we are; the primary ships from there.
                tracing::warn!(replica_id = %self.replica_id, expected = self.write_lsn, got = record.lsn, "gap in shipped WAL");
                self.report(true);
                break;
            }
        }
        if accepted {
            self.report(false);
            self.commit(ctx);
        }
    }
}

impl Handler<GetReplicaPositions> for ReplicaActor {
    type Result = Result<ReplicaPositions, ReplicationError>;
    fn handle(&mut self, _: GetReplicaPositions, _ctx: &mut Self::Context) -> Self::Result {
        if self.crashed {
            return Err(ReplicationError::ReplicaDown { replica_id: self.replica_id.clone() });
        }
        Ok(ReplicaPositions { write_lsn: self.write_lsn, flush_lsn: self.flush_lsn, replay_lsn: self.replay_lsn })
    }
}

impl Handler<ReadLocalRow> for ReplicaActor {
    type Result = Result<Option<(serde_json::Value, u64)>, ReplicationError>;
    fn handle(&mut self, msg: ReadLocalRow, _ctx: &mut Self::Context) -> Self::Result {
        if self.crashed || !self.loaded {
            return Err(ReplicationError::ReplicaDown { replica_id: self.replica_id.clone() });
        }
        Ok(self.rows.get(&(msg.table, msg.key)).map(|v| (v.clone(), self.replay_lsn)))
    }
}

impl Handler<Reseed> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, msg: Reseed, ctx: &mut Self::Context) {
        if self.crashed {
            return;
        }
        let store = self.store.clone();
        let id = self.replica_id.clone();
        let rows = msg.rows.clone();
        let lsn = msg.lsn;
        let write = actix_web::rt::task::spawn_blocking(move || {
            let encoded: Vec<(String, String, Vec<u8>)> =
                rows.iter().map(|(t, k, v)| (t.clone(), k.clone(), v.to_string().into_bytes())).collect();
            store.replace_rows(&id, &encoded, &[(flush_key(&id), lsn)])
        });
        // ctx.wait: nothing shipped may be applied on top of the old state meanwhile.
        ctx.wait(write.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Ok(())) => {
                act.rows = msg.rows.iter().map(|(t, k, v)| ((t.clone(), k.clone()), v.clone())).collect();
                act.pending.clear();
                act.write_lsn = lsn;
                act.flush_lsn = lsn;
                act.replay_lsn = lsn;
                act.loaded = true;
                tracing::info!(replica_id = %act.replica_id, lsn, rows = act.rows.len(), "replica reseeded");
                act.report(true);
            }
            Ok(Err(e)) => {
                tracing::error!(replica_id = %act.replica_id, error = %e, "replica could not be reseeded; restarting");
                ctx.stop();
            }
            Err(e) => {
                tracing::error!(replica_id = %act.replica_id, error = %e, "reseed task failed; restarting");
                ctx.stop();
            }
        }));
    }
}

/// Fault injection: stops as a crash would (what was received but not flushed is lost).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CrashReplica;

impl Handler<CrashReplica> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, _: CrashReplica, ctx: &mut Self::Context) {
        tracing::warn!(replica_id = %self.replica_id, "replica crashed by fault injection");
        self.crashed = true;
        ctx.stop();
    }
}

impl Handler<StopReplica> for ReplicaActor {
    type Result = ();
    fn handle(&mut self, _: StopReplica, ctx: &mut Self::Context) {
        self.crashed = true;
        ctx.stop();
    }
}
