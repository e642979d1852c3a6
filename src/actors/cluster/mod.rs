//! Cluster membership: the membership actor (members, health, quorum) and one supervised node
//! actor per member, and the faults injected into nodes.

mod faults;
pub mod leadership;
pub mod membership;
pub mod node;
pub mod peers;
mod routing;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use actix::prelude::*;

pub use membership::{MembershipActor, MembershipSettings};
pub use node::{NodeActor, RaftSetup};
pub use peers::RaftPeers;

use crate::actors::domain::{self, Domain, DomainContext, DomainStartError, FaultTargets};
use crate::actors::raft::core::{RaftSettings, SNAPSHOT_EVERY};
use crate::model::raft_node_id;

/// The cluster domain, started.
pub struct Cluster {
    pub membership: Addr<MembershipActor>,
    faults: FaultTargets,
}

/// Loads the durable membership (seeded from `cluster.nodes` on a fresh store) and starts it;
/// `cluster.nodes` are also the Raft group's voters at bootstrap.
pub fn start(ctx: &DomainContext) -> Result<Box<dyn Domain>, DomainStartError> {
    let c = &ctx.config.cluster;
    let peers = RaftPeers::default();
    for name in &c.nodes {
        peers.known(raft_node_id(name), name);
    }
    let raft = RaftSetup {
        store: ctx.store.clone(),
        link: ctx.link.clone(),
        peers,
        timing: RaftSettings { election_tick: c.election_tick, heartbeat_tick: c.heartbeat_tick, snapshot_every: SNAPSHOT_EVERY },
        tick: std::time::Duration::from_millis(c.tick_ms),
        bootstrap: c.nodes.iter().map(|n| raft_node_id(n)).collect(),
    };
    let membership = MembershipActor::load(
        MembershipSettings::from_config(&ctx.config.cluster),
        &ctx.config.cluster.nodes,
        ctx.store.clone(),
        ctx.publisher(),
        raft,
    )
    .map_err(|e| DomainStartError { domain: "cluster", reason: e.to_string() })?
    .start();
    let faults = FaultTargets::of(&membership);
    Ok(Box::new(Cluster { membership, faults }))
}

impl Domain for Cluster {
    fn name(&self) -> &'static str {
        "cluster"
    }
    fn faults(&self) -> &FaultTargets {
        &self.faults
    }
    fn stop(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        domain::stop(&self.membership)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl From<crate::storage::StorageError> for crate::messages::cluster::ClusterError {
    fn from(e: crate::storage::StorageError) -> Self {
        crate::messages::cluster::ClusterError::Storage { message: e.to_string() }
    }
}
