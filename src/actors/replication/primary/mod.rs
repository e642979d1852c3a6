//! The replication primary: it takes batches of operations, group-commits them to its
//! write-ahead log, ships the records to its replicas, applies them to its rows and answers each
//! batch once its replication mode is satisfied. Each start is a new timeline, stored with where
//! the previous one ended, so replicas holding records an earlier start never made durable are
//! reconciled before anything new is shipped to them.
//!
//! [`PrimaryActor`] is the shell: it runs timers and storage work, starts and stops the replicas'
//! actors and routes messages, through the fault-injecting link, to them. What the primary knows
//! and decides is [`state::Primary`], which says what to do next in an [`outbox::Outbox`].

mod acks;
mod commit;
mod failover;
mod handlers;
mod intake;
mod load;
mod log;
mod membership;
mod outbox;
mod promotion;
mod replicas;
mod retention;
pub mod settings;
mod slots;
mod snapshots;
mod state;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use self::outbox::{Fetch, Outbox, ToReplica};
use self::state::Primary;
use crate::actors::domain::{ClusterMetadata, DomainContext};
use crate::actors::net::{Link, Sent};
use crate::actors::registry::EventPublisher;
use crate::actors::replication::metrics::ReplicationMetrics;
use crate::actors::replication::replica::ReplicaActor;
use crate::exec::{self, BackgroundPool, Lane, Priority};
use crate::messages::replication::*;
use crate::model::ReplicaMode;
use crate::storage::table::read_records;
use crate::storage::Store;

pub use self::failover::current_primary;
pub use self::settings::ReplicationSettings;

/// How often what was applied in memory since the last checkpoint is written to the store
/// (sooner when [`crate::storage::table::CHECKPOINT_OPS`] ops are pending).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// How often WAL nobody needs is dropped on its own (`/wal/truncate` does it at once).
const AUTO_TRUNCATE_EVERY: Duration = Duration::from_secs(10);
/// How often waiting batches are checked against their deadline: one sweep for all of them, as
/// a timer per batch would leave thousands of live timers that the actor polls on every wake.
const DEADLINE_SWEEP: Duration = Duration::from_millis(10);
/// The primary's mailbox bound: writes beyond it wait in their senders.
const MAILBOX: usize = 4096;

pub struct PrimaryActor {
    state: Primary,
    store: Arc<Store>,
    /// Where replicas run the storage work nobody waits for.
    background: Arc<BackgroundPool>,
    events: EventPublisher,
    metrics: ReplicationMetrics,
    link: Link,
    /// Each running replica's actor (incarnation, address). The primary's actor is the only
    /// holder of these addresses, so a crashed replica's supervisor has nobody to restart it for.
    replicas: HashMap<String, (u64, Addr<ReplicaActor>)>,
    next_incarnation: u64,
    bootstrap_replicas: Vec<(String, ReplicaMode)>,
    heartbeat_check: Option<SpawnHandle>,
    /// What the state asked for in the step being handled; emptied after every step.
    out: Outbox,
    /// Where its group commits run.
    lane: Lane,
    /// Where a failover records the new primary and itself.
    metadata: Option<ClusterMetadata>,
}

impl PrimaryActor {
    /// The primary of `settings`, on the shared pieces of `ctx`; `bootstrap_replicas` are
    /// taken on a fresh store only.
    pub fn new(settings: ReplicationSettings, bootstrap_replicas: Vec<(String, ReplicaMode)>, ctx: &DomainContext) -> Self {
        let events = ctx.publisher();
        let metrics = ReplicationMetrics::register(events.metrics());
        PrimaryActor {
            state: Primary::new(settings, ctx.interest.clone(), metrics.stages()),
            store: ctx.store.clone(),
            background: ctx.background.clone(),
            metrics,
            events,
            link: ctx.link.clone(),
            replicas: HashMap::new(),
            next_incarnation: 0,
            bootstrap_replicas,
            heartbeat_check: None,
            out: Outbox::default(),
            lane: Lane::start("wal-primary"),
            metadata: ctx.metadata.clone(),
        }
    }

    /// Does what the last step of the state asked for.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        loop {
            let out = std::mem::take(&mut self.out);
            if out.is_empty() {
                return;
            }
            for (id, msg) in out.sends {
                self.send(&id, msg);
            }
            for event in out.events {
                self.events.publish(event);
            }
            for fetch in out.fetches {
                self.fetch(fetch, ctx);
            }
            if out.checkpoint_due {
                self.maintain(false, ctx);
            }
        }
    }

    /// Sends `msg` to replica `id` through the link; a message the link loses makes the state
    /// resynchronise that replica from its next report.
    fn send(&mut self, id: &str, msg: ToReplica) {
        let Some((_, addr)) = self.replicas.get(id) else { return };
        let (link, from) = (&self.link, self.state.id());
        let sent = match msg {
            ToReplica::Ship(m) => link.deliver(from, id, addr, m),
            ToReplica::Durable(m) => link.deliver(from, id, addr, m),
            ToReplica::Reconcile(m) => link.deliver(from, id, addr, m),
            ToReplica::Reseed(m) => link.deliver(from, id, addr, m),
            ToReplica::ReportEvery(interval) => link.deliver(from, id, addr, SetReportInterval { interval }),
        };
        if sent == Sent::Dropped {
            self.state.link_lost(id);
        }
    }

    /// Starts the next group commit if one can start: its records go out to the replicas as its
    /// fsync starts.
    fn start_group(&mut self, ctx: &mut Context<Self>) {
        let Some((group, commit)) = self.state.start_group(&mut self.out) else { return };
        let (store, primary) = (self.store.clone(), self.state.id().to_string());
        let commit = self.lane.run(move || store.commit_log(&primary, commit));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(commit).map(move |res, act, ctx| {
            if res.is_ok() {
                act.metrics.wal_committed(group.batches() as u64);
            }
            act.state.group_done(group, res.map_err(|e| e.to_string()), &mut act.out);
            act.start_group(ctx);
            act.state.confirm_durable(&mut act.out);
            act.flush(ctx);
        }));
    }

    /// Reads back WAL a replica needs that is no longer in memory, decoded off the arbiter. A
    /// replica no write waits for catches up at the background's priority.
    fn fetch(&mut self, fetch: Fetch, ctx: &mut Context<Self>) {
        let (store, primary, from) = (self.store.clone(), self.state.id().to_string(), fetch.from);
        let read = self.background.run_at(Priority::waited_for(fetch.awaited), move || {
            read_records(&store, &primary, from, u64::MAX, stream::SHIP_WINDOW as usize)
        });
        ctx.spawn(actix::fut::wrap_future::<_, Self>(read).map(move |res, act, ctx| {
            act.state.on_fetched(fetch, res, &mut act.out);
            act.flush(ctx);
        }));
    }

    /// Starts a checkpoint (and, when `truncate`, a truncation) if one can start.
    fn maintain(&mut self, truncate: bool, ctx: &mut Context<Self>) {
        let Some((job, work)) = self.state.start_maintenance(truncate) else { return };
        let (store, primary) = (self.store.clone(), self.state.id().to_string());
        ctx.spawn(exec::then_on_actor(move || job.run(&store, &primary), move |res, act: &mut Self, ctx| {
            if act.state.maintenance_done(work, res) {
                act.maintain(false, ctx);
            }
        }));
    }

    /// Loads the primary's state, holding messages back until done; a new timeline starts.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let (store, primary, bootstrap) = (self.store.clone(), self.state.id().to_string(), self.bootstrap_replicas.clone());
        ctx.wait(exec::then_on_actor(move || load::load(&store, &primary, &bootstrap), |res, act: &mut Self, ctx| match res {
            Ok(loaded) => {
                let loaded = act.state.loaded(loaded, &mut act.out);
                if loaded.settings_restored {
                    act.restart_heartbeat_check(ctx);
                }
                for id in loaded.start {
                    act.start_replica(&id, ctx);
                }
                act.flush(ctx);
            }
            Err(e) => tracing::error!(error = %e, "replication primary cannot load its state; it stays down"),
        }));
    }

    /// Starts an actor for replica `id` (a new incarnation).
    fn start_replica(&mut self, id: &str, ctx: &mut Context<Self>) -> u64 {
        self.next_incarnation += 1;
        let incarnation = self.next_incarnation;
        let actor = ReplicaActor::new(
            id.to_string(),
            incarnation,
            self.store.clone(),
            self.background.clone(),
            self.link.clone(),
            self.state.id().to_string(),
            ctx.address().recipient(),
            self.state.settings.heartbeat_interval,
            self.metrics.stages().replica_commit,
        );
        self.replicas.insert(id.to_string(), (incarnation, actor.start_supervised()));
        self.state.replica_started(id, incarnation);
        incarnation
    }

    fn restart_heartbeat_check(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.heartbeat_check.take() {
            ctx.cancel_future(h);
        }
        self.heartbeat_check = Some(ctx.run_interval(self.state.settings.heartbeat_interval, |act, ctx| {
            act.state.check_heartbeats(&mut act.out);
            act.flush(ctx);
            act.check_failover(ctx);
        }));
    }
}

impl Actor for PrimaryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.load(ctx);
        self.restart_heartbeat_check(ctx);
        ctx.run_interval(DEADLINE_SWEEP, |act, ctx| {
            act.state.expire_waiters(&mut act.out);
            act.flush(ctx);
        });
        ctx.run_interval(CHECKPOINT_EVERY, |act, ctx| act.maintain(false, ctx));
        ctx.run_interval(AUTO_TRUNCATE_EVERY, |act, ctx| act.maintain(true, ctx));
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        for (_, (_, addr)) in self.replicas.drain() {
            addr.do_send(StopReplica);
        }
        Running::Stop
    }
}
