//! `RacControlActor`: the RAC cluster's control (Oracle's clusterware and LMON in one). It keeps
//! the GRD configuration (which instances are live, which blocks are remastered), takes the
//! survivors' heartbeat suspicions and evicts the instance they all find silent, injects
//! crashes and restarts, and runs every reconfiguration, one at a time: freeze every live
//! instance and master (each instance reports what it holds), write the past images and the
//! failed instance's redo to disk (by a survivor), rebuild the masters of the new map from the
//! reports, resume. Remastering (affinity, by hand, load balancing), recovery and rejoin are all
//! that one sequence with a different map.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::instance::RacInstanceActor;
use super::master::GrdMasterActor;
use super::reconfig;
use crate::actors::net::{Destination, Link};
use crate::actors::registry::EventPublisher;
use crate::messages::errors::DomainError;
use crate::messages::events::{now_ms, Event, Severity};
use crate::messages::faults::*;
use crate::messages::rac::*;
use crate::messages::runtime::StopRuntimeActor;
use crate::model::master_ring::MasterMap;
use crate::model::rac::BlockId;

/// The control's endpoint on the link.
const CONTROL: &str = "rac-control";
/// How long one step of a reconfiguration waits for an actor's answer, and how often it asks.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
const ASK_ATTEMPTS: usize = 4;
/// A reconfiguration that failed (an actor did not answer) is run again after this: the GRD is
/// frozen meanwhile.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// Recoveries kept for `/recovery`.
const KEPT_RECOVERIES: usize = 64;

type Reply = oneshot::Sender<Result<RemasterOutcome, RacError>>;

enum Job {
    /// Recovers the failed instance of recovery record `id`.
    Recover { id: String },
    Rejoin { instance: String },
    Remaster { moves: Vec<(BlockId, String)>, reason: RemasterReason, reply: Option<Reply> },
}

/// What the actor needs to start the domain's control.
pub struct ControlSetup {
    pub instances: BTreeMap<String, Addr<RacInstanceActor>>,
    pub masters: BTreeMap<String, Addr<GrdMasterActor>>,
    pub map: Arc<MasterMap>,
    pub link: Link,
    pub events: EventPublisher,
    pub remaster_threshold: f64,
    pub remaster_window: Duration,
}

pub struct RacControlActor {
    instances: BTreeMap<String, Addr<RacInstanceActor>>,
    masters: BTreeMap<String, Addr<GrdMasterActor>>,
    map: Arc<MasterMap>,
    /// Every epoch handed out, attempts that failed included.
    last_epoch: u64,
    link: Link,
    events: EventPublisher,
    /// Crashed or evicted and not rejoined, since when (ms since the epoch, for the faults list).
    down: BTreeMap<String, i64>,
    /// Per live instance, the peers it last said were silent.
    suspects: BTreeMap<String, BTreeSet<String>>,
    jobs: VecDeque<Job>,
    running: bool,
    recoveries: VecDeque<RecoveryView>,
    next_recovery: u64,
    threshold: f64,
    window: Duration,
}

impl RacControlActor {
    pub fn new(setup: ControlSetup) -> RacControlActor {
        let ControlSetup { instances, masters, map, link, events, remaster_threshold, remaster_window } = setup;
        RacControlActor {
            instances,
            masters,
            last_epoch: map.epoch,
            map,
            link,
            events,
            down: BTreeMap::new(),
            suspects: BTreeMap::new(),
            jobs: VecDeque::new(),
            running: false,
            recoveries: VecDeque::new(),
            next_recovery: 0,
            threshold: remaster_threshold,
            window: remaster_window,
        }
    }

    fn publish(&self, event: RacEvent) {
        self.events.publish(Event::now(Severity::Info, "rac:control", event));
    }

    fn recovery_mut(&mut self, id: &str) -> Option<&mut RecoveryView> {
        self.recoveries.iter_mut().find(|r| r.recovery_id == id)
    }

    /// Starts a recovery of `failed` (down already, or fenced by its job), recovered by
    /// `recovering`: the next reconfiguration recovers it.
    fn start_recovery(&mut self, failed: &str, recovering: String, detected_by: &str, ctx: &mut Context<Self>) -> RecoveryView {
        let view = self.record_recovery(failed, recovering, detected_by);
        if !self.jobs.iter().any(|j| matches!(j, Job::Recover { id } if *id == view.recovery_id)) {
            self.jobs.push_back(Job::Recover { id: view.recovery_id.clone() });
            self.next_job(ctx);
        }
        view
    }

    /// The running recovery of `failed`, or a new one (`recovery_started`).
    fn record_recovery(&mut self, failed: &str, recovering: String, detected_by: &str) -> RecoveryView {
        if let Some(r) = self.recoveries.iter().find(|r| r.failed_instance == failed && r.status == "running") {
            return r.clone();
        }
        self.next_recovery += 1;
        let view = RecoveryView {
            recovery_id: format!("recovery-{}", self.next_recovery),
            failed_instance: failed.to_string(),
            recovering_instance: recovering,
            detected_by: detected_by.to_string(),
            status: "running".into(),
            recovery_phase: "detect".into(),
            started_at_ms: now_ms(),
            duration_ms: None,
            redo_records_applied: 0,
            blocks_recovered: 0,
            resources_remastered: 0,
            error: None,
        };
        self.publish(RacEvent::RecoveryStarted(change(&view, 0.0, None)));
        if self.recoveries.len() == KEPT_RECOVERIES {
            self.recoveries.pop_front();
        }
        self.recoveries.push_back(view.clone());
        view
    }

    /// The first live instance that is up: it recovers what nobody detected.
    fn first_up(&self) -> Option<String> {
        self.map.live().iter().find(|i| self.is_open(i)).cloned()
    }

    /// Live in the configuration and not crashed: it answers.
    fn is_open(&self, instance: &str) -> bool {
        self.map.is_live(instance) && !self.down.contains_key(instance)
    }

    /// Queues `moves` as one reconfiguration; the future answers when it has run (at once, if
    /// there is nothing to move).
    fn remaster(&mut self, moves: Vec<(BlockId, String)>, reason: RemasterReason, ctx: &mut Context<Self>) -> impl std::future::Future<Output = Result<RemasterOutcome, RacError>> + 'static {
        let epoch = self.map.epoch;
        let rx = (!moves.is_empty()).then(|| {
            let (reply, rx) = oneshot::channel();
            self.jobs.push_back(Job::Remaster { moves, reason, reply: Some(reply) });
            self.next_job(ctx);
            rx
        });
        async move {
            match rx {
                Some(rx) => rx.await.map_err(|_| unavailable("the RAC control"))?,
                None => Ok(RemasterOutcome { reason, epoch, remastered: Vec::new(), duration_ms: 0.0 }),
            }
        }
    }

    /// Runs the next job if none is running. Whatever the job, an instance down and still in the
    /// map is recovered by it: a configuration is never built without an instance's locks
    /// unless its redo is applied in it.
    fn next_job(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            return;
        }
        let Some(job) = self.jobs.pop_front() else { return };
        let rejoining = match &job {
            Job::Rejoin { instance } => Some(instance.clone()),
            _ => None,
        };
        if let Job::Recover { id } = &job {
            let pending = self.recoveries.iter().any(|r| r.recovery_id == *id && r.status == "running" && self.map.is_live(&r.failed_instance));
            if !pending {
                return self.next_job(ctx);
            }
        }
        let failed: Vec<String> = self.map.live().iter().filter(|i| self.down.contains_key(*i) && rejoining.as_ref() != Some(*i)).cloned().collect();
        let mut live: Vec<String> = self.map.live().iter().filter(|i| !failed.contains(i)).cloned().collect();
        let mut overrides = self.map.overrides().clone();
        let mut reason = RemasterReason::Recovery;
        match &job {
            Job::Recover { .. } => {}
            Job::Rejoin { instance } => {
                if !live.contains(instance) {
                    live.push(instance.clone());
                    live.sort();
                }
            }
            Job::Remaster { moves, reason: r, .. } => {
                reason = *r;
                overrides.extend(moves.iter().cloned());
            }
        }
        let first_up = live.iter().find(|i| !self.down.contains_key(*i)).cloned().unwrap_or_default();
        let recoveries: Vec<RecoveryView> = failed.iter().map(|f| self.record_recovery(f, first_up.clone(), "reconfiguration")).collect();
        self.last_epoch += 1;
        let map = Arc::new(MasterMap::new(self.last_epoch, &live, overrides));
        let up = |name: &String| map.is_live(name) && (!self.down.contains_key(name) || rejoining.as_ref() == Some(name));
        let plan = Plan {
            old: self.map.clone(),
            map: map.clone(),
            instances: self.instances.iter().filter(|(n, _)| up(n)).map(|(n, a)| (n.clone(), a.clone())).collect(),
            masters: self.masters.iter().filter(|(n, _)| up(n)).map(|(n, a)| (n.clone(), a.clone())).collect(),
            failed: failed.iter().filter_map(|f| self.instances.get(f).map(|a| (f.clone(), a.clone()))).collect(),
            recovering: recoveries.first().map(|r| r.recovering_instance.clone()),
            link: self.link.clone(),
        };
        let rejoin = rejoining.and_then(|i| self.instances.get(&i).cloned().zip(self.masters.get(&i).cloned()));
        self.running = true;
        let started = Instant::now();
        let progress = self.progress(recoveries.clone());
        let run = async move {
            if let Some((instance, master)) = rejoin {
                instance.send(RejoinInstance).await.map_err(|_| unavailable("the rejoining instance"))??;
                master.send(RejoinInstance).await.map_err(|_| unavailable("the rejoining instance's master"))??;
            }
            plan.run(progress).await
        };
        ctx.spawn(run.into_actor(self).map(move |result, act, ctx| {
            act.running = false;
            act.finish(job, map, reason, recoveries, started, result, ctx);
            act.next_job(ctx);
        }));
    }

    /// The progress events of the recoveries a reconfiguration runs.
    fn progress(&self, recoveries: Vec<RecoveryView>) -> Progress {
        let events = self.events.clone();
        Box::new(move |phase: &str, percent: f64, applied: Option<&RedoApplied>| {
            for view in &recoveries {
                let mut v = view.clone();
                v.recovery_phase = phase.to_string();
                if let Some(a) = applied {
                    v.redo_records_applied = a.redo_records;
                    v.blocks_recovered = a.blocks_recovered;
                }
                events.publish(Event::now(Severity::Info, "rac:control", RacEvent::RecoveryProgress(change(&v, percent, None))));
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        job: Job,
        map: Arc<MasterMap>,
        reason: RemasterReason,
        recoveries: Vec<RecoveryView>,
        started: Instant,
        result: Result<Done, RacError>,
        ctx: &mut Context<Self>,
    ) {
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let done = match result {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %e, epoch = map.epoch, "GRD reconfiguration failed; run again");
                // The GRD is frozen in an epoch that did not complete: the same job goes again,
                // in a new one.
                self.jobs.push_front(job);
                self.running = true;
                ctx.run_later(RETRY_AFTER, |act, ctx| {
                    act.running = false;
                    act.next_job(ctx);
                });
                return;
            }
        };
        self.map = map.clone();
        for r in &done.remastered {
            self.publish(RacEvent::ResourceRemastered(Remastered {
                resource_id: r.resource_id.clone(),
                old_master: r.old_master.clone(),
                new_master: r.new_master.clone(),
                reason,
                duration_ms,
                epoch: map.epoch,
            }));
        }
        for recovery in recoveries {
            let Some(view) = self.recovery_mut(&recovery.recovery_id) else { continue };
            view.status = "completed".into();
            view.recovery_phase = "done".into();
            view.duration_ms = Some(duration_ms);
            view.redo_records_applied = done.applied.redo_records;
            view.blocks_recovered = done.applied.blocks_recovered;
            view.resources_remastered = done.remastered.len() as u64;
            let completed = change(view, 100.0, Some(true));
            let failed = view.failed_instance.clone();
            self.publish(RacEvent::RecoveryCompleted(completed));
            self.suspects.remove(&failed);
            for s in self.suspects.values_mut() {
                s.remove(&failed);
            }
        }
        match job {
            Job::Recover { .. } => {}
            Job::Rejoin { instance } => {
                self.down.remove(&instance);
            }
            Job::Remaster { reply, .. } => {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(RemasterOutcome { reason, epoch: map.epoch, remastered: done.remastered, duration_ms }));
                }
            }
        }
    }

    /// Gathers every live instance's access counts, then queues the affinity pass's moves.
    fn affinity_pass(&mut self, only: Option<BlockId>) -> ResponseActFuture<Self, Result<RemasterOutcome, RacError>> {
        let asks: Vec<_> = self.instances.iter().filter(|(n, _)| self.is_open(n)).map(|(n, a)| (n.clone(), a.send(TakeAccessCounts))).collect();
        let gather = async move {
            let mut counts = Vec::with_capacity(asks.len());
            for (name, ask) in asks {
                if let Ok(c) = ask.await {
                    counts.push((name, c));
                }
            }
            counts
        };
        Box::pin(gather.into_actor(self).then(move |counts, act, ctx| {
            let moves = reconfig::affinity(&counts, act.threshold, &act.map, only);
            act.remaster(moves, RemasterReason::Affinity, ctx).into_actor(act)
        }))
    }
}

type Progress = Box<dyn Fn(&str, f64, Option<&RedoApplied>)>;

fn unavailable(what: &str) -> RacError {
    RacError::Unavailable { component: what.to_string() }
}

fn change(v: &RecoveryView, percent: f64, success: Option<bool>) -> RecoveryChange {
    RecoveryChange {
        recovery_id: v.recovery_id.clone(),
        failed_instance: v.failed_instance.clone(),
        recovering_instance: v.recovering_instance.clone(),
        recovery_phase: v.recovery_phase.clone(),
        progress_percent: percent,
        redo_logs_applied: u64::from(percent >= 60.0),
        total_redo_logs: 1,
        eta_seconds: None,
        blocks_recovered: v.blocks_recovered,
        redo_records_applied: v.redo_records_applied,
        success,
    }
}

/// One reconfiguration, as run.
struct Plan {
    old: Arc<MasterMap>,
    map: Arc<MasterMap>,
    instances: Vec<(String, Addr<RacInstanceActor>)>,
    masters: Vec<(String, Addr<GrdMasterActor>)>,
    /// The instances to recover, fenced first.
    failed: Vec<(String, Addr<RacInstanceActor>)>,
    recovering: Option<String>,
    link: Link,
}

struct Done {
    remastered: Vec<RemasteredResource>,
    applied: RedoApplied,
}

impl Plan {
    async fn run(self, progress: Progress) -> Result<Done, RacError> {
        let epoch = self.map.epoch;
        for (name, addr) in &self.failed {
            // Fenced: whatever it was doing stops, and its redo commits under way finish
            // before its log is read.
            addr.send(CrashInstance).await.map_err(|_| unavailable(name))?;
        }
        let masters = self.masters.iter().map(|(n, a)| ask(&self.link, n, a, |reply| FreezeMaster { epoch, reply }));
        let held_before: Vec<Vec<BlockId>> = try_all(masters).await?;
        let freezes = self.instances.iter().map(|(n, a)| ask(&self.link, n, a, |reply| FreezeInstance { map: self.map.clone(), reply }));
        let reports: Vec<InstanceReport> = try_all(freezes).await?;
        progress("freeze", 25.0, None);

        let recovering = self.recovering.as_ref().and_then(|r| self.instances.iter().find(|(n, _)| n == r)).or_else(|| self.instances.first());
        let (name, addr) = recovering.ok_or_else(|| unavailable("a live instance to run the reconfiguration on"))?;
        let past_images = reports.iter().flat_map(|r| r.past_images.iter().cloned()).collect();
        let apply = ApplyRedo { failed: self.failed.iter().map(|(n, _)| n.clone()).collect(), past_images };
        let applied = addr.send(apply).await.map_err(|_| unavailable(name))??;
        progress("redo_apply", 60.0, Some(&applied));

        let mut entries = reconfig::entries(&self.map, &reports);
        let map = &self.map;
        let rebuilds = self.masters.iter().map(|(n, a)| {
            let mine = entries.remove(n).unwrap_or_default();
            ask(&self.link, n, a, move |reply| RebuildMaster { map: map.clone(), entries: mine.clone(), reply })
        });
        try_all(rebuilds).await?;
        progress("rebuild", 80.0, Some(&applied));

        let on_disk = Arc::new(applied.on_disk.clone());
        let resumes = self.instances.iter().map(|(n, a)| ask(&self.link, n, a, |reply| ResumeInstance { epoch, on_disk: on_disk.clone(), reply }));
        try_all(resumes).await?;
        progress("resume", 100.0, Some(&applied));

        let mut blocks: BTreeSet<BlockId> = held_before.into_iter().flatten().collect();
        blocks.extend(reports.iter().flat_map(|r| r.holdings.iter().map(|h| h.block)));
        Ok(Done { remastered: reconfig::remastered(&self.old, &self.map, &blocks), applied })
    }
}

/// Sends what `make` builds through the link to `to` until it answers: a message the link drops
/// drops its reply with it, and is sent again.
async fn ask<M, T, D>(link: &Link, to: &str, addr: &D, make: impl Fn(oneshot::Sender<T>) -> M) -> Result<T, RacError>
where
    M: Message<Result = ()> + Send + 'static,
    D: Destination<M>,
{
    for _ in 0..ASK_ATTEMPTS {
        let (reply, rx) = oneshot::channel();
        link.deliver(CONTROL, to, addr, make(reply));
        match tokio::time::timeout(ASK_TIMEOUT, rx).await {
            Ok(Ok(answer)) => return Ok(answer),
            // Dropped unanswered (lost on the link, or its actor refused it): asked again soon.
            Ok(Err(_)) => tokio::time::sleep(ASK_TIMEOUT / 20).await,
            Err(_) => {}
        }
    }
    Err(RacError::Unavailable { component: format!("{to} (it did not answer the GRD reconfiguration)") })
}

async fn try_all<T>(asks: impl Iterator<Item = impl std::future::Future<Output = Result<T, RacError>>>) -> Result<Vec<T>, RacError> {
    futures_util::future::join_all(asks).await.into_iter().collect()
}

impl Actor for RacControlActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.window, |act, ctx| {
            if act.running || !act.jobs.is_empty() {
                return;
            }
            let pass = act.affinity_pass(None).map(|res, _, _| {
                if let Err(e) = res {
                    tracing::warn!(error = %e, "affinity remastering failed");
                }
            });
            ctx.spawn(pass);
        });
    }
}

impl Handler<Suspects> for RacControlActor {
    type Result = ();
    fn handle(&mut self, msg: Suspects, ctx: &mut Self::Context) {
        if self.down.contains_key(&msg.from) || !self.map.is_live(&msg.from) {
            return;
        }
        self.suspects.insert(msg.from, msg.unreachable.into_iter().collect());
        let recovering: BTreeSet<String> = self.recoveries.iter().filter(|r| r.status == "running").map(|r| r.failed_instance.clone()).collect();
        let live: Vec<String> = self.map.live().iter().filter(|i| !recovering.contains(*i)).cloned().collect();
        let down: BTreeSet<String> = self.down.keys().cloned().collect();
        if let Some((evicted, by)) = reconfig::to_evict(&live, &down, &self.suspects) {
            tracing::warn!(instance = %evicted, detected_by = %by, "RAC instance silent to every survivor: evicted and recovered");
            self.down.entry(evicted.clone()).or_insert_with(now_ms);
            self.start_recovery(&evicted, by, "heartbeat", ctx);
        }
    }
}

impl Handler<Remaster> for RacControlActor {
    type Result = ResponseFuture<Result<RemasterOutcome, RacError>>;
    fn handle(&mut self, msg: Remaster, ctx: &mut Self::Context) -> Self::Result {
        for (_, to) in &msg.moves {
            if !self.instances.contains_key(to) {
                return Box::pin(std::future::ready(Err(RacError::InstanceNotFound { instance_id: to.clone() })));
            }
            if !self.is_open(to) {
                return Box::pin(std::future::ready(Err(RacError::InstanceDown { instance_id: to.clone() })));
            }
        }
        Box::pin(self.remaster(msg.moves, msg.reason, ctx))
    }
}

impl Handler<RunAffinityPass> for RacControlActor {
    type Result = ResponseActFuture<Self, Result<RemasterOutcome, RacError>>;
    fn handle(&mut self, msg: RunAffinityPass, _ctx: &mut Self::Context) -> Self::Result {
        self.affinity_pass(msg.block)
    }
}

impl Handler<LoadBalance> for RacControlActor {
    type Result = ResponseActFuture<Self, Result<RemasterOutcome, RacError>>;
    fn handle(&mut self, _: LoadBalance, _ctx: &mut Self::Context) -> Self::Result {
        let asks: Vec<_> = self
            .masters
            .iter()
            .filter(|(n, _)| self.is_open(n))
            .map(|(n, a)| (n.clone(), a.send(GetResources { block: None, limit: usize::MAX })))
            .collect();
        let gather = async move {
            let mut load = BTreeMap::new();
            for (name, ask) in asks {
                let views = ask.await.map_err(|_| unavailable(&name))?;
                load.insert(name, views.iter().filter_map(|v| v.resource_id.parse().ok()).collect::<Vec<BlockId>>());
            }
            Ok::<_, RacError>(load)
        };
        Box::pin(gather.into_actor(self).then(|load, act, ctx| {
            let next = load.map(|load| act.remaster(reconfig::balance(&load), RemasterReason::LoadBalance, ctx));
            async move { next?.await }.into_actor(act)
        }))
    }
}

impl Handler<GetMasterMap> for RacControlActor {
    type Result = MessageResult<GetMasterMap>;
    fn handle(&mut self, _: GetMasterMap, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.map.clone())
    }
}

impl Handler<GetOpenInstances> for RacControlActor {
    type Result = Vec<String>;
    fn handle(&mut self, _: GetOpenInstances, _ctx: &mut Self::Context) -> Self::Result {
        self.map.live().iter().filter(|i| self.is_open(i)).cloned().collect()
    }
}

impl Handler<StartRecovery> for RacControlActor {
    type Result = Result<RecoveryView, RacError>;
    fn handle(&mut self, msg: StartRecovery, ctx: &mut Self::Context) -> Self::Result {
        let failed = msg.failed;
        if !self.instances.contains_key(&failed) {
            return Err(RacError::InstanceNotFound { instance_id: failed });
        }
        if let Some(r) = self.recoveries.iter().find(|r| r.failed_instance == failed && r.status == "running") {
            return Ok(r.clone());
        }
        if !self.down.contains_key(&failed) {
            return Err(RacError::NothingToRecover { instance_id: failed, reason: "it is open; crash it first (POST /api/v1/cluster/faults/crash)".into() });
        }
        if !self.map.is_live(&failed) {
            return Err(RacError::NothingToRecover { instance_id: failed, reason: "it was recovered already; restart brings it back".into() });
        }
        let Some(recovering) = self.first_up() else { return Err(unavailable("a live instance to recover it")) };
        Ok(self.start_recovery(&failed, recovering, "manual", ctx))
    }
}

impl Handler<GetRecoveries> for RacControlActor {
    type Result = MessageResult<GetRecoveries>;
    fn handle(&mut self, msg: GetRecoveries, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.recoveries.iter().rev().filter(|r| msg.id.as_ref().is_none_or(|id| *id == r.recovery_id)).cloned().collect())
    }
}

impl Handler<OwnsTarget> for RacControlActor {
    type Result = bool;
    fn handle(&mut self, msg: OwnsTarget, _ctx: &mut Self::Context) -> bool {
        self.instances.contains_key(&msg.target)
    }
}

impl Handler<CrashTarget> for RacControlActor {
    type Result = ResponseActFuture<Self, Result<FaultApplied, DomainError>>;
    fn handle(&mut self, msg: CrashTarget, _ctx: &mut Self::Context) -> Self::Result {
        let target = msg.target;
        let refuse = |reason: String, target: String| -> Self::Result { Box::pin(actix::fut::ready(Err(FaultRefused::UnsupportedMode { target, reason }.into()))) };
        if msg.mode != CrashMode::Crash {
            return refuse("RAC instances take mode crash only (the instance's cache and locks are lost; survivors recover it)".into(), target);
        }
        if self.down.contains_key(&target) {
            return Box::pin(actix::fut::ready(Err(RacError::AlreadyCrashed { instance_id: target }.into())));
        }
        let (Some(instance), Some(master)) = (self.instances.get(&target).cloned(), self.masters.get(&target).cloned()) else {
            return Box::pin(actix::fut::ready(Err(FaultRefused::UnknownTarget { target }.into())));
        };
        self.down.insert(target.clone(), now_ms());
        self.suspects.remove(&target);
        master.do_send(CrashInstance);
        // Survivors find it silent by their heartbeats and evict it: that starts its recovery.
        Box::pin(instance.send(CrashInstance).into_actor(self).map(move |_, _, _| Ok(FaultApplied { target, mode: "crash".into(), status: "failed".into(), crashed: true })))
    }
}

impl Handler<RestartTarget> for RacControlActor {
    type Result = Result<FaultApplied, DomainError>;
    fn handle(&mut self, msg: RestartTarget, ctx: &mut Self::Context) -> Self::Result {
        let target = msg.target;
        if !self.down.contains_key(&target) {
            return Err(RacError::NotCrashed { instance_id: target }.into());
        }
        // Not recovered yet: recovered first (the jobs run in order), then rejoined.
        let recovering = self.recoveries.iter().any(|r| r.failed_instance == target && r.status == "running");
        if self.map.is_live(&target) && !recovering {
            if let Some(by) = self.first_up() {
                self.start_recovery(&target, by, "restart", ctx);
            }
        }
        if !self.jobs.iter().any(|j| matches!(j, Job::Rejoin { instance } if *instance == target)) {
            self.jobs.push_back(Job::Rejoin { instance: target.clone() });
            self.next_job(ctx);
        }
        Ok(FaultApplied { target, mode: "restart".into(), status: "starting".into(), crashed: false })
    }
}

impl Handler<ListInjectedFaults> for RacControlActor {
    type Result = Vec<InjectedFault>;
    fn handle(&mut self, _: ListInjectedFaults, _ctx: &mut Self::Context) -> Self::Result {
        self.down.iter().map(|(target, since)| InjectedFault { kind: "crash".into(), target: target.clone(), since_ms: *since }).collect()
    }
}

impl Handler<StopRuntimeActor> for RacControlActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: StopRuntimeActor, _ctx: &mut Self::Context) -> Self::Result {
        // The instances first, their redo drained, so the runtime closes the store under nobody.
        let stops: Vec<_> = self.instances.values().map(|a| a.send(StopRuntimeActor)).collect();
        Box::pin(futures_util::future::join_all(stops).into_actor(self).map(|_, _, ctx| ctx.stop()))
    }
}
