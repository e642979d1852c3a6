//! The actor's side of a replication failover: the steps between the state's decisions
//! ([`super::failover`]). It records the new primary in the cluster's metadata (no promotion
//! without that record, as Patroni takes its leader key first), stops the replica once its own
//! storage work is done, prepares the store and loads the replica's log and rows as the
//! primary's, on a new timeline; then every replica restarts streaming from it.

use actix::prelude::*;

use super::failover::{self, FailoverPlan, FailoverStep, PRIMARY_KEY};
use super::load;
use super::state::Primary;
use super::PrimaryActor;
use crate::exec;
use crate::messages::cluster::{ClusterError, PutKv, RecordFailover};
use crate::messages::replication::*;
use crate::model::{FailoverChange, FailoverRecord};

impl PrimaryActor {
    /// Starts the failover the state says is due, if one is.
    pub(super) fn check_failover(&mut self, ctx: &mut Context<Self>) {
        let due = self.state.failover_due(std::time::Instant::now(), &mut self.out);
        self.flush(ctx);
        match due {
            Some(FailoverStep::Start(plan)) => self.fail_over(plan, ctx),
            Some(FailoverStep::Abandon(plan, why)) => self.failover_failed(&plan, &why, ctx),
            None => {}
        }
    }

    /// Records `plan.candidate` as the primary, then relinquishes its actor. Messages wait
    /// meanwhile: writes go to the new primary once it is loaded.
    fn fail_over(&mut self, plan: FailoverPlan, ctx: &mut Context<Self>) {
        let candidate = self.replicas.get(&plan.candidate).map(|(_, addr)| addr.clone());
        let metadata = self.metadata.clone();
        let value = serde_json::json!({ "primary": plan.candidate, "replaced": plan.failed, "failover_id": plan.id });
        let steps = async move {
            let candidate = candidate.ok_or("the replica to promote is not running")?;
            if let Some(m) = metadata {
                m.put.send(PutKv { key: PRIMARY_KEY.into(), value }).await.map_err(|e| e.to_string())?.map_err(|e| {
                    format!("the new primary could not be recorded in the cluster's metadata: {e}")
                })?;
            }
            candidate.send(Relinquish).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())
        };
        ctx.wait(steps.into_actor(self).map(move |res, act, ctx| match res {
            Ok(relinquished) => act.take_over(plan, relinquished, ctx),
            Err(e) => act.failover_failed(&plan, &e, ctx),
        }));
    }

    /// Prepares the store and loads the relinquished candidate as the primary.
    fn take_over(&mut self, plan: FailoverPlan, relinquished: Relinquished, ctx: &mut Context<Self>) {
        let roles = self.state.roles_after(&plan);
        let (store, failed, candidate) = (self.store.clone(), plan.failed.clone(), plan.candidate.clone());
        let work = move || {
            failover::prepare(&store, &failed, &candidate, &roles, relinquished)?;
            load::load(&store, &candidate, &[])
        };
        ctx.wait(exec::then_on_actor(work, move |res, act: &mut Self, ctx| match res {
            Ok(loaded) => {
                let mut settings = act.state.settings.clone();
                settings.primary = plan.candidate.clone();
                let fresh = Primary::new(settings, act.state.interest.clone(), act.metrics.stages());
                let previous = std::mem::replace(&mut act.state, fresh);
                let loaded = act.state.loaded(loaded, &mut act.out);
                let change = act.state.promoted(&previous, &plan, &mut act.out);
                // Every replica (the old primary too, after a switchover) restarts pointed at
                // the new primary, from its own durable state.
                for (_, (_, addr)) in act.replicas.drain() {
                    addr.do_send(StopReplica);
                }
                for id in loaded.start.iter().filter(|id| plan.manual || **id != plan.failed) {
                    act.start_replica(id, ctx);
                }
                act.restart_heartbeat_check(ctx);
                act.flush(ctx);
                tracing::info!(failover_id = %plan.id, primary = %plan.candidate, lost_writes = change.lost_writes, "replica promoted to primary");
                act.record_failover(change);
            }
            Err(e) => {
                act.failover_failed(&plan, &e.to_string(), ctx);
                // Its actor stopped when relinquished: it streams again, from the old primary.
                if act.state.replicas.contains_key(&plan.candidate) {
                    let incarnation = act.start_replica(&plan.candidate, ctx);
                    act.state.replica_restarted(&plan.candidate, incarnation, &mut act.out);
                    act.flush(ctx);
                }
            }
        }));
    }

    /// A failover that did not complete: a switchover's primary comes back up as it was.
    fn failover_failed(&mut self, plan: &FailoverPlan, error: &str, ctx: &mut Context<Self>) {
        self.state.failover_failed(plan, error, &mut self.out);
        self.flush(ctx);
        if plan.manual {
            self.state.restarting();
            self.load(ctx);
        }
    }

    /// Writes the failover to the replicated history.
    fn record_failover(&self, change: FailoverChange) {
        let Some(m) = self.metadata.clone() else { return };
        let id = change.failover_id.clone();
        let record = FailoverRecord { failover: change, completed_at_ms: crate::messages::events::now_ms() };
        actix::spawn(async move {
            if let Ok(Err(error)) | Err(error) = m.record_failover.send(RecordFailover { record }).await.map_err(|_| ClusterError::NoLeader) {
                tracing::warn!(failover_id = %id, %error, "replication failover not recorded in the history");
            }
        });
    }
}

impl Handler<Switchover> for PrimaryActor {
    type Result = Result<FailoverChange, ReplicationError>;
    fn handle(&mut self, msg: Switchover, ctx: &mut Self::Context) -> Self::Result {
        let change = self.state.switchover(msg.target.as_deref(), &mut self.out);
        self.flush(ctx);
        if change.is_ok() {
            self.check_failover(ctx);
        }
        change
    }
}
