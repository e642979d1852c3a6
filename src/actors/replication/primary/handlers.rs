//! The primary's message handlers: each hands its message to the state, runs the storage work
//! it needs, and does what the state asked for. Writes of durable records (replicas, slots,
//! settings) answer with `exec::atomic`: no other message is handled between the check, the
//! write and the apply.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::load::{ReplicaRecord, REPLICAS};
use super::settings::{self, SETTINGS, SETTINGS_RECORD};
use super::slots::{self, slot_not_found, SlotRecord, MAX_SLOTS, SLOTS};
use super::snapshots::{self, SnapshotRecord};
use super::PrimaryActor;
use crate::exec;
use crate::messages::errors::DomainError;
use crate::messages::faults::*;
use crate::messages::runtime::StopRuntimeActor;
use crate::messages::replication::*;
use crate::model::{lsn_text, validate_id, ReplicaStatus, SlotType};
use crate::storage::{RecordTable, StorageError};

type Answer<T> = AtomicResponse<PrimaryActor, Result<T, ReplicationError>>;

impl PrimaryActor {
    /// Writes (`Some`) or deletes (`None`) durable record `key` of `table` off the arbiter, then
    /// `apply` on the actor, as one step.
    fn persist<T: 'static>(
        &mut self,
        table: RecordTable,
        key: String,
        record: Option<Vec<u8>>,
        apply: impl FnOnce(&mut Self, &mut Context<Self>) -> Result<T, ReplicationError> + 'static,
    ) -> Answer<T> {
        let store = self.store.clone();
        exec::atomic(
            move || match record {
                Some(bytes) => store.put_record(table, &key, &bytes),
                None => store.delete_record(table, &key),
            },
            move |res, act: &mut Self, ctx| {
                res?;
                let answer = apply(act, ctx);
                act.flush(ctx);
                answer
            },
        )
    }

    /// Makes settings `next` durable, then puts them in force.
    fn save_settings(&mut self, next: Result<ReplicationSettingsView, ReplicationError>) -> Answer<ReplicationSettingsView> {
        let next = match next {
            Ok(next) => next,
            Err(e) => return exec::atomic_now(Err(e)),
        };
        let bytes = match serde_json::to_vec(&next) {
            Ok(b) => b,
            Err(e) => return exec::atomic_now(Err(ReplicationError::Storage { message: e.to_string() })),
        };
        self.persist(SETTINGS, SETTINGS_RECORD.into(), Some(bytes), move |act, ctx| {
            if act.state.settings_saved(&next, &mut act.out) {
                act.restart_heartbeat_check(ctx);
            }
            Ok(act.state.settings.view())
        })
    }
}

fn encode<R: serde::Serialize>(record: &R) -> Result<Vec<u8>, ReplicationError> {
    serde_json::to_vec(record).map_err(|e| ReplicationError::Storage { message: e.to_string() })
}

impl Handler<ReplicateOps> for PrimaryActor {
    type Result = ResponseFuture<Result<ReplicateAck, ReplicationError>>;
    fn handle(&mut self, msg: ReplicateOps, ctx: &mut Self::Context) -> Self::Result {
        let arrived = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        if let Err((e, _)) = self.state.accept(msg.ops, reply) {
            return Box::pin(async move { Err(e) });
        }
        self.start_group(ctx);
        self.flush(ctx);
        let down = self.state.primary_down();
        let latency = self.metrics.commit_latency();
        Box::pin(async move {
            let answer = answer.await.unwrap_or(Err(down));
            if let Ok(ack) = &answer {
                latency.observe(ack.mode, arrived.elapsed());
            }
            answer
        })
    }
}

impl Handler<ReplicaReport> for PrimaryActor {
    type Result = ();
    fn handle(&mut self, msg: ReplicaReport, ctx: &mut Self::Context) {
        self.state.on_report(msg, &mut self.out);
        self.flush(ctx);
        if self.state.switchover_waits() {
            self.check_failover(ctx);
        }
    }
}

impl Handler<ReadRow> for PrimaryActor {
    type Result = ResponseFuture<Result<Option<RowView>, ReplicationError>>;
    fn handle(&mut self, msg: ReadRow, _ctx: &mut Self::Context) -> Self::Result {
        let id = match msg.from {
            ReadFrom::Primary => {
                let row = self.state.read(msg.table, msg.key);
                return Box::pin(async move { row });
            }
            ReadFrom::Replica(id) => id,
        };
        if let Err(e) = self.state.replica(&id) {
            return Box::pin(async move { Err(e) });
        }
        let Some((_, addr)) = self.replicas.get(&id).cloned() else {
            return Box::pin(async move { Err(ReplicationError::ReplicaDown { replica_id: id }) });
        };
        Box::pin(async move {
            let row = addr
                .send(ReadLocalRow { table: msg.table.clone(), key: msg.key.clone() })
                .await
                .map_err(|_| ReplicationError::ReplicaDown { replica_id: id.clone() })??;
            Ok(row.map(|(value, lsn)| RowView {
                table: msg.table,
                key: msg.key,
                value,
                from: id,
                replay_lsn: lsn_text(lsn),
                replay_lsn_u64: lsn,
            }))
        })
    }
}

impl Handler<AddReplica> for PrimaryActor {
    type Result = Answer<ReplicaView>;
    fn handle(&mut self, msg: AddReplica, _ctx: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.state.check_new_replica(&msg.replica_id) {
            return exec::atomic_now(Err(e));
        }
        let (id, mode) = (msg.replica_id, msg.mode);
        let record = match encode(&ReplicaRecord { mode }) {
            Ok(r) => r,
            Err(e) => return exec::atomic_now(Err(e)),
        };
        let Some(snapshot_id) = msg.from_snapshot else {
            return self.persist(REPLICAS, id.clone(), Some(record), move |act, ctx| {
                act.state.replica_added(&id, mode, "added by operator".into(), &mut act.out);
                act.start_replica(&id, ctx);
                act.state.seed_if_wal_gone(&id, &mut act.out);
                act.state.replica_view(&id)
            });
        };
        // Seeded from a snapshot: read and checked first, then registered like any replica,
        // then restored.
        let store = self.store.clone();
        let read = exec::blocking(move || snapshots::read(&store, snapshot_id));
        let store = self.store.clone();
        AtomicResponse::new(Box::pin(read.into_actor(self).then(move |res, act, _ctx| {
            let snap = match res.and_then(|s| act.state.check_restorable(&s, &id).map(|()| s)) {
                Ok(s) => s,
                Err(e) => return Box::pin(actix::fut::ready(Err(e))) as std::pin::Pin<Box<dyn ActorFuture<Self, Output = _>>>,
            };
            let target = id.clone();
            Box::pin(exec::then_on_actor(
                move || store.put_record(REPLICAS, &target, &record),
                move |res, act: &mut Self, ctx| {
                    res?;
                    let reason = format!("added by operator from snapshot {}", snap.snapshot_id);
                    act.state.replica_added(&id, mode, reason, &mut act.out);
                    act.start_replica(&id, ctx);
                    act.state.restore(&snap, &id, None, &mut act.out);
                    act.flush(ctx);
                    act.state.replica_view(&id)
                },
            ))
        })))
    }
}

impl Handler<RemoveReplica> for PrimaryActor {
    type Result = Answer<()>;
    fn handle(&mut self, msg: RemoveReplica, _ctx: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.state.check_removal(&msg.replica_id) {
            return exec::atomic_now(Err(e));
        }
        let id = msg.replica_id;
        self.persist(REPLICAS, id.clone(), None, move |act, _ctx| {
            act.state.replica_removed(&id, &mut act.out)?;
            if let Some((_, addr)) = act.replicas.remove(&id) {
                addr.do_send(StopReplica);
            }
            Ok(())
        })
    }
}

impl Handler<PauseReplica> for PrimaryActor {
    type Result = Result<ReplicaView, ReplicationError>;
    fn handle(&mut self, msg: PauseReplica, ctx: &mut Self::Context) -> Self::Result {
        let view = self.state.pause(&msg.replica_id, &mut self.out);
        self.flush(ctx);
        view
    }
}

impl Handler<ResumeReplica> for PrimaryActor {
    type Result = Result<ReplicaView, ReplicationError>;
    fn handle(&mut self, msg: ResumeReplica, ctx: &mut Self::Context) -> Self::Result {
        let view = self.state.resume(&msg.replica_id, &mut self.out);
        self.flush(ctx);
        view
    }
}

impl Handler<ListReplicas> for PrimaryActor {
    type Result = MessageResult<ListReplicas>;
    fn handle(&mut self, _: ListReplicas, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.state.replica_views())
    }
}

impl Handler<GetReplica> for PrimaryActor {
    type Result = Result<ReplicaView, ReplicationError>;
    fn handle(&mut self, msg: GetReplica, _ctx: &mut Self::Context) -> Self::Result {
        self.state.replica_view(&msg.replica_id)
    }
}

impl Handler<GetReplicationStatus> for PrimaryActor {
    type Result = MessageResult<GetReplicationStatus>;
    fn handle(&mut self, _: GetReplicationStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.state.status())
    }
}

impl Handler<GetLagHistory> for PrimaryActor {
    type Result = Result<Vec<LagHistory>, ReplicationError>;
    fn handle(&mut self, msg: GetLagHistory, _ctx: &mut Self::Context) -> Self::Result {
        self.state.lag_history(msg.replica_id.as_deref(), msg.seconds)
    }
}

impl Handler<GetThroughput> for PrimaryActor {
    type Result = MessageResult<GetThroughput>;
    fn handle(&mut self, _: GetThroughput, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.state.throughput())
    }
}

impl Handler<GetReplicationHealth> for PrimaryActor {
    type Result = MessageResult<GetReplicationHealth>;
    fn handle(&mut self, _: GetReplicationHealth, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.state.health())
    }
}

impl Handler<SetReplicationConfig> for PrimaryActor {
    type Result = Answer<ReplicationSettingsView>;
    fn handle(&mut self, msg: SetReplicationConfig, _ctx: &mut Self::Context) -> Self::Result {
        let sync_replicas = self.state.sync_replicas();
        self.save_settings(settings::with_mode(self.state.settings.view(), msg, sync_replicas))
    }
}

impl Handler<SetConflictStrategy> for PrimaryActor {
    type Result = Answer<ReplicationSettingsView>;
    fn handle(&mut self, msg: SetConflictStrategy, _ctx: &mut Self::Context) -> Self::Result {
        self.save_settings(settings::with_conflict_strategy(self.state.settings.view(), msg))
    }
}

impl Handler<SetHeartbeat> for PrimaryActor {
    type Result = Answer<ReplicationSettingsView>;
    fn handle(&mut self, msg: SetHeartbeat, _ctx: &mut Self::Context) -> Self::Result {
        self.save_settings(settings::with_heartbeat(self.state.settings.view(), msg))
    }
}

impl Handler<GetWalStatus> for PrimaryActor {
    type Result = ResponseActFuture<Self, Result<WalStatus, ReplicationError>>;
    fn handle(&mut self, _: GetWalStatus, _ctx: &mut Self::Context) -> Self::Result {
        let (store, primary) = (self.store.clone(), self.state.id().to_string());
        Box::pin(exec::then_on_actor(move || store.log_bounds(&primary), |res, act: &mut Self, _| {
            Ok(act.state.wal_status(res?.map(|b| b.0)))
        }))
    }
}

impl Handler<TruncateWal> for PrimaryActor {
    type Result = ResponseFuture<Result<WalTruncated, ReplicationError>>;
    fn handle(&mut self, _: TruncateWal, ctx: &mut Self::Context) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        self.state.truncate_requested(reply);
        self.maintain(true, ctx);
        Box::pin(async move { answer.await.unwrap_or(Err(ReplicationError::Storage { message: "truncation was abandoned".into() })) })
    }
}

impl Handler<CreateSlot> for PrimaryActor {
    type Result = Answer<SlotView>;
    fn handle(&mut self, msg: CreateSlot, _ctx: &mut Self::Context) -> Self::Result {
        if let Err(reason) = validate_id(&msg.slot_name) {
            return exec::atomic_now(Err(ReplicationError::InvalidField { field: "slot_name".into(), reason }));
        }
        if self.state.slots.contains_key(&msg.slot_name) {
            return exec::atomic_now(Err(ReplicationError::SlotExists { slot_name: msg.slot_name }));
        }
        if self.state.slots.len() >= MAX_SLOTS {
            return exec::atomic_now(Err(ReplicationError::InvalidField {
                field: "slot_name".into(),
                reason: format!("at most {MAX_SLOTS} slots; drop one first"),
            }));
        }
        let flush = self.state.flush_lsn();
        let record = SlotRecord { slot_type: msg.slot_type, restart_lsn: flush, confirmed_flush_lsn: flush };
        let bytes = match encode(&record) {
            Ok(b) => b,
            Err(e) => return exec::atomic_now(Err(e)),
        };
        let name = msg.slot_name;
        self.persist(SLOTS, name.clone(), Some(bytes), move |act, _| {
            record.publish(true, &name, &mut act.out);
            let view = record.view(&name, act.state.flush_lsn());
            act.state.slots.insert(name, record);
            Ok(view)
        })
    }
}

impl Handler<ListSlots> for PrimaryActor {
    type Result = MessageResult<ListSlots>;
    fn handle(&mut self, _: ListSlots, _ctx: &mut Self::Context) -> Self::Result {
        let flush = self.state.flush_lsn();
        MessageResult(self.state.slots.iter().map(|(n, s)| s.view(n, flush)).collect())
    }
}

impl Handler<GetSlot> for PrimaryActor {
    type Result = Result<SlotView, ReplicationError>;
    fn handle(&mut self, msg: GetSlot, _ctx: &mut Self::Context) -> Self::Result {
        match self.state.slots.get(&msg.slot_name) {
            Some(s) => Ok(s.view(&msg.slot_name, self.state.flush_lsn())),
            None => Err(slot_not_found(msg.slot_name)),
        }
    }
}

impl Handler<DropSlot> for PrimaryActor {
    type Result = Answer<()>;
    fn handle(&mut self, msg: DropSlot, _ctx: &mut Self::Context) -> Self::Result {
        if !self.state.slots.contains_key(&msg.slot_name) {
            return exec::atomic_now(Err(slot_not_found(msg.slot_name)));
        }
        let name = msg.slot_name;
        self.persist(SLOTS, name.clone(), None, move |act, _| {
            if let Some(record) = act.state.slots.remove(&name) {
                record.publish(false, &name, &mut act.out);
            }
            Ok(())
        })
    }
}

impl Handler<AdvanceSlot> for PrimaryActor {
    type Result = Answer<SlotView>;
    fn handle(&mut self, msg: AdvanceSlot, _ctx: &mut Self::Context) -> Self::Result {
        let Some(current) = self.state.slots.get(&msg.slot_name).cloned() else {
            return exec::atomic_now(Err(slot_not_found(msg.slot_name)));
        };
        let flush = self.state.flush_lsn();
        if msg.lsn > flush {
            return exec::atomic_now(Err(ReplicationError::ConflictsWithState {
                field: "lsn".into(),
                reason: format!("{} is past the flushed WAL ({})", lsn_text(msg.lsn), lsn_text(flush)),
            }));
        }
        if msg.lsn < current.confirmed_flush_lsn {
            return exec::atomic_now(Err(ReplicationError::ConflictsWithState {
                field: "lsn".into(),
                reason: format!(
                    "{} is before the slot's confirmed position {}: a slot only moves forward",
                    lsn_text(msg.lsn),
                    lsn_text(current.confirmed_flush_lsn)
                ),
            }));
        }
        let record = SlotRecord { slot_type: current.slot_type, restart_lsn: msg.lsn, confirmed_flush_lsn: msg.lsn };
        let bytes = match encode(&record) {
            Ok(b) => b,
            Err(e) => return exec::atomic_now(Err(e)),
        };
        let name = msg.slot_name;
        self.persist(SLOTS, name.clone(), Some(bytes), move |act, _| {
            let view = record.view(&name, act.state.flush_lsn());
            act.state.slots.insert(name, record);
            Ok(view)
        })
    }
}

impl Handler<PeekSlotChanges> for PrimaryActor {
    type Result = ResponseFuture<Result<SlotChanges, ReplicationError>>;
    fn handle(&mut self, msg: PeekSlotChanges, _ctx: &mut Self::Context) -> Self::Result {
        let Some(slot) = self.state.slots.get(&msg.slot_name).cloned() else {
            return Box::pin(async move { Err(slot_not_found(msg.slot_name)) });
        };
        if slot.slot_type != SlotType::Logical {
            return Box::pin(async move {
                Err(ReplicationError::ConflictsWithState {
                    field: "slot_name".into(),
                    reason: format!("'{}' is a physical slot: only logical slots decode changes", msg.slot_name),
                })
            });
        }
        let (store, primary) = (self.store.clone(), self.state.id().to_string());
        let (limit, from, name) = (msg.limit.max(1), slot.confirmed_flush_lsn, msg.slot_name);
        let decode = exec::blocking(move || slots::decode_changes(&store, &primary, from, limit));
        Box::pin(async move {
            let (changes, next) = decode.await.map_err(ReplicationError::from)?;
            Ok(SlotChanges { slot_name: name, confirmed_flush_lsn: lsn_text(from), changes, next_lsn: lsn_text(next), next_lsn_u64: next })
        })
    }
}

impl Handler<CreateSnapshot> for PrimaryActor {
    type Result = Answer<SnapshotView>;
    fn handle(&mut self, _: CreateSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        if self.state.is_down() {
            return exec::atomic_now(Err(self.state.primary_down()));
        }
        // The rows in memory are exactly the committed state at the flushed lsn (accepted, not
        // yet durable batches are kept apart): a consistent snapshot without a pause.
        let (rows, lsn) = (self.state.rows.sorted_rows(), self.state.flush_lsn());
        let store = self.store.clone();
        exec::atomic(move || snapshots::write(&store, rows, lsn), |res: Result<SnapshotRecord, StorageError>, act: &mut Self, ctx| {
            let record = res?;
            act.state.snapshot_created(&record, &mut act.out);
            act.flush(ctx);
            Ok(record.view())
        })
    }
}

impl Handler<ListSnapshots> for PrimaryActor {
    type Result = ResponseFuture<Result<Vec<SnapshotView>, ReplicationError>>;
    fn handle(&mut self, _: ListSnapshots, _ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let list = exec::blocking(move || snapshots::list(&store));
        Box::pin(async move { list.await.map_err(ReplicationError::from) })
    }
}

impl Handler<RestoreSnapshot> for PrimaryActor {
    type Result = Answer<SnapshotView>;
    fn handle(&mut self, msg: RestoreSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.state.replica(&msg.target) {
            return exec::atomic_now(Err(e));
        }
        if !self.replicas.contains_key(&msg.target) {
            return exec::atomic_now(Err(ReplicationError::ReplicaDown { replica_id: msg.target }));
        }
        let (store, snapshot_id, target) = (self.store.clone(), msg.snapshot_id, msg.target);
        exec::atomic(move || snapshots::read(&store, snapshot_id), move |res, act: &mut Self, ctx| {
            let snap = res?;
            act.state.check_restorable(&snap, &target)?;
            act.state.restore(&snap, &target, Some(ReplicaStatus::CatchingUp), &mut act.out);
            act.flush(ctx);
            Ok(snap.view())
        })
    }
}

impl Handler<OwnsTarget> for PrimaryActor {
    type Result = bool;
    fn handle(&mut self, msg: OwnsTarget, _ctx: &mut Self::Context) -> bool {
        self.state.owns(&msg.target)
    }
}

impl Handler<CrashTarget> for PrimaryActor {
    type Result = Result<FaultApplied, DomainError>;
    fn handle(&mut self, msg: CrashTarget, ctx: &mut Self::Context) -> Self::Result {
        let target = msg.target;
        if msg.mode != CrashMode::Crash {
            return Err(FaultRefused::UnsupportedMode { target, reason: "the replication primary and replicas take mode crash only".into() }.into());
        }
        if target == self.state.id() {
            self.state.crash(&mut self.out)?;
        } else {
            self.state.crash_replica(&target, &mut self.out)?;
            if let Some((_, addr)) = self.replicas.remove(&target) {
                addr.do_send(CrashReplica);
            }
        }
        self.flush(ctx);
        Ok(FaultApplied { target, mode: "crash".into(), status: "failed".into(), crashed: true })
    }
}

impl Handler<RestartTarget> for PrimaryActor {
    type Result = Result<FaultApplied, DomainError>;
    fn handle(&mut self, msg: RestartTarget, ctx: &mut Self::Context) -> Self::Result {
        let target = msg.target;
        if target == self.state.id() {
            self.state.check_restart()?;
            // A new timeline: replicas are reconciled, then shipped again from what they have.
            self.state.restarting();
            self.load(ctx);
        } else {
            self.state.check_restart_replica(&target)?;
            let incarnation = self.start_replica(&target, ctx);
            self.state.replica_restarted(&target, incarnation, &mut self.out);
            self.flush(ctx);
        }
        Ok(FaultApplied { target, mode: "restart".into(), status: "starting".into(), crashed: false })
    }
}

impl Handler<ListInjectedFaults> for PrimaryActor {
    type Result = MessageResult<ListInjectedFaults>;
    fn handle(&mut self, _: ListInjectedFaults, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.state.injected_faults())
    }
}

impl Handler<StopRuntimeActor> for PrimaryActor {
    type Result = ();
    fn handle(&mut self, _: StopRuntimeActor, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
