//! The RAC domain: instances that share one store of blocks and keep their buffer caches
//! coherent by shipping blocks to each other (Cache Fusion), under global locks mastered in a
//! Global Resource Directory. Each instance runs a [`RacInstanceActor`] (its cache, its
//! operations) and a [`GrdMasterActor`] (the directory of the blocks the ring gives it); they
//! talk only through the fault-injecting link.

pub mod cache;
pub mod directory;
pub mod instance;
pub mod interconnect;
pub mod master;
pub mod protocol;
pub mod query;
pub mod ring;
pub mod stats;
pub mod store;

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use actix::prelude::*;

pub use instance::RacInstanceActor;
pub use master::GrdMasterActor;
use ring::MasterRing;
use store::{BlockStore, RedoLog};

use crate::actors::domain::{self, Domain, DomainContext, DomainStartError, FaultTargets};
use crate::messages::errors::DomainError;
use crate::messages::faults::*;
use crate::messages::rac::*;
use crate::messages::runtime::StopRuntimeActor;
use crate::model::rac::{BlockId, LockMode};

/// Every instance's and master's address, by instance name: set once, after all have started.
pub struct RacPeers {
    pub instances: BTreeMap<String, Recipient<ToInstance>>,
    pub masters: BTreeMap<String, Recipient<ToMaster>>,
    pub heartbeats: BTreeMap<String, Recipient<Heartbeat>>,
}

/// The started RAC domain: what the faces address.
pub struct Rac {
    pub instances: BTreeMap<String, Addr<RacInstanceActor>>,
    pub queries: Addr<query::ParallelQueryActor>,
    pub masters: BTreeMap<String, Addr<GrdMasterActor>>,
    pub ring: Arc<MasterRing>,
    pub block_size: usize,
    pub blocks: u64,
    control: Addr<RacControlActor>,
    faults: FaultTargets,
}

impl Rac {
    pub fn instance(&self, id: &str) -> Result<&Addr<RacInstanceActor>, RacError> {
        self.instances.get(id).ok_or_else(|| RacError::InstanceNotFound { instance_id: id.to_string() })
    }

    /// Parses a block id and checks it is in the store (`file` 1, `block` below `rac.blocks`).
    pub fn block(&self, text: &str) -> Result<BlockId, RacError> {
        let block: BlockId = text.parse().map_err(|reason| RacError::BlockNotFound { block_id: text.to_string(), reason })?;
        if block.file != 1 || block.block >= self.blocks {
            let reason = format!("the shared store holds blocks 1:0 to 1:{}", self.blocks.saturating_sub(1));
            return Err(RacError::BlockNotFound { block_id: text.to_string(), reason });
        }
        Ok(block)
    }

    /// The master of `block`'s lock entry.
    pub fn master(&self, block: BlockId) -> Option<(&str, &Addr<GrdMasterActor>)> {
        let name = self.ring.master_of(block)?;
        self.masters.get(name).map(|a| (name, a))
    }

    /// Every instance's state and statistics, with the entries its master holds.
    pub async fn instance_views(&self) -> Result<Vec<InstanceView>, RacError> {
        let mut out = Vec::with_capacity(self.instances.len());
        for (name, addr) in &self.instances {
            let mut view = addr.send(GetInstance).await.map_err(|_| down(name))??;
            if let Some(m) = self.masters.get(name) {
                view.mastered_resources = m.send(CountResources).await.map_err(|_| down(name))?;
            }
            out.push(view);
        }
        Ok(out)
    }

    /// Reads `block` (text, `file:block`) at `instance`.
    pub async fn read(&self, instance: &str, block: &str) -> Result<BlockRead, RacError> {
        let block = self.block(block)?;
        self.instance(instance)?.send(ReadBlock { block }).await.map_err(|_| down(instance))?
    }

    /// Writes `data` into `block` at `instance`; refused if longer than a block.
    pub async fn write(&self, instance: &str, block: &str, data: String) -> Result<BlockWritten, RacError> {
        let block = self.block(block)?;
        let addr = self.instance(instance)?;
        if data.len() > self.block_size {
            return Err(RacError::InvalidField { field: "data".into(), reason: format!("{} bytes; a block holds {}", data.len(), self.block_size) });
        }
        addr.send(WriteBlock { block, data: data.into_bytes() }).await.map_err(|_| down(instance))?
    }

    /// Converts `instance`'s lock on `block` to `to` (null: a release).
    pub async fn convert(&self, instance: &str, block: &str, to: LockMode) -> Result<LockChanged, RacError> {
        let block = self.block(block)?;
        self.instance(instance)?.send(ConvertLock { block, to }).await.map_err(|_| down(instance))?
    }

    /// GRD entries: of the masters on `instance` only, if given; at most `limit`.
    pub async fn resources(&self, instance: Option<&str>, limit: usize) -> Result<Vec<ResourceView>, RacError> {
        let masters: Vec<(&String, &Addr<GrdMasterActor>)> = match instance {
            Some(id) => vec![self.masters.get_key_value(id).ok_or_else(|| RacError::InstanceNotFound { instance_id: id.to_string() })?],
            None => self.masters.iter().collect(),
        };
        let mut out = Vec::new();
        for (name, m) in masters {
            if out.len() >= limit {
                break;
            }
            out.extend(m.send(GetResources { block: None, limit: limit - out.len() }).await.map_err(|_| down(name))?);
        }
        Ok(out)
    }

    /// Every instance's links to its peers, as it measured them.
    pub async fn interconnect(&self) -> Result<Vec<PeerLinkView>, RacError> {
        let mut out = Vec::new();
        for (name, addr) in &self.instances {
            out.extend(addr.send(GetInterconnect).await.map_err(|_| down(name))?);
        }
        Ok(out)
    }

    /// Runs a parallel query over `blocks` (`file:block-file:block`, inclusive).
    #[allow(clippy::too_many_arguments)]
    pub async fn parallel_query(
        &self,
        blocks: &str,
        aggregate: Aggregate,
        column: Option<String>,
        group_by: Option<String>,
        filter: Option<(String, String)>,
        dop: usize,
    ) -> Result<QueryResult, RacError> {
        let invalid = |field: &str, reason: String| RacError::InvalidField { field: field.into(), reason };
        let (a, b) = blocks.split_once('-').ok_or_else(|| invalid("blocks", format!("'{blocks}': expected first-last, e.g. 1:0-1:99")))?;
        let (first, last) = (self.block(a.trim())?, self.block(b.trim())?);
        if last.block < first.block {
            return Err(invalid("blocks", format!("'{blocks}': the last block comes before the first")));
        }
        if last.block - first.block + 1 > query::MAX_SCAN_BLOCKS {
            return Err(invalid("blocks", format!("at most {} blocks a query", query::MAX_SCAN_BLOCKS)));
        }
        if dop == 0 || dop > query::MAX_DOP {
            return Err(invalid("dop", format!("must be 1 to {}", query::MAX_DOP)));
        }
        if aggregate != Aggregate::Count && column.is_none() {
            return Err(invalid("column", format!("{aggregate:?} needs the column it aggregates").to_lowercase()));
        }
        let query = ParallelQuery { first, last, aggregate, column, group_by, filter, dop };
        self.queries.send(RunParallelQuery { query }).await.map_err(|_| RacError::Unavailable { component: "the parallel query coordinator".into() })?
    }

    pub async fn parallel_query_stats(&self) -> Result<ParallelQueryStats, RacError> {
        self.queries.send(GetParallelQueryStats).await.map_err(|_| RacError::Unavailable { component: "the parallel query coordinator".into() })
    }

    /// `block`'s master and entry (no holders when nobody holds it).
    pub async fn resource(&self, block: &str) -> Result<ResourceView, RacError> {
        let block = self.block(block)?;
        let (name, master) = self.master(block).ok_or_else(|| RacError::Unavailable { component: "the GRD (no instance is configured)".into() })?;
        let entry = master.send(GetResources { block: Some(block), limit: 1 }).await.map_err(|_| down(name))?;
        Ok(entry.into_iter().next().unwrap_or_else(|| ResourceView {
            resource_id: block.to_string(),
            master: name.to_string(),
            holders: Vec::new(),
            past_images: Vec::new(),
            granting: None,
            waiting: 0,
        }))
    }
}

fn down(instance: &str) -> RacError {
    RacError::InstanceDown { instance_id: instance.to_string() }
}

pub fn start(ctx: &DomainContext) -> Result<Box<dyn Domain>, DomainStartError> {
    let config = &ctx.config.rac;
    let fail = |reason: String| DomainStartError { domain: "rac", reason };
    let ring = Arc::new(MasterRing::new(&config.instances));
    let peers: Arc<OnceLock<RacPeers>> = Arc::new(OnceLock::new());
    let blocks = Arc::new(BlockStore::new(ctx.store.clone()));
    let mut logs = config.instances.iter().map(|name| RedoLog::open(ctx.store.clone(), name)).collect::<Result<Vec<_>, _>>().map_err(|e| fail(e.to_string()))?;
    // Every cache starts empty: what only redo held goes to disk first.
    let recovered = store::recover_all(&blocks, &mut logs).map_err(|e| fail(e.to_string()))?;
    if recovered > 0 {
        tracing::info!(blocks = recovered, "RAC blocks recovered from redo at start");
    }
    let counts = Arc::new(interconnect::PairCounts::new(&config.instances));
    let mut instances = BTreeMap::new();
    let mut masters = BTreeMap::new();
    for (name, redo) in config.instances.iter().zip(logs) {
        let setup = instance::InstanceSetup {
            name: name.clone(),
            cache_blocks: config.cache_blocks,
            ring: ring.clone(),
            peers: peers.clone(),
            link: ctx.link.clone(),
            blocks: blocks.clone(),
            redo,
            events: ctx.publisher(),
            interest: ctx.interest.clone(),
            background: ctx.background.clone(),
            instances: config.instances.clone(),
            counts: counts.clone(),
        };
        let instance = Supervisor::start(move |_| RacInstanceActor::new(setup));
        let (n, p, l, c) = (name.clone(), peers.clone(), ctx.link.clone(), counts.clone());
        let master = Supervisor::start(move |_| GrdMasterActor::new(n, p, l, c));
        instances.insert(name.clone(), instance);
        masters.insert(name.clone(), master);
    }
    let wiring = RacPeers {
        instances: instances.iter().map(|(n, a)| (n.clone(), a.clone().recipient())).collect(),
        masters: masters.iter().map(|(n, a)| (n.clone(), a.clone().recipient())).collect(),
        heartbeats: instances.iter().map(|(n, a)| (n.clone(), a.clone().recipient())).collect(),
    };
    // Set once here, before any message can reach the actors that read it.
    let _ = peers.set(wiring);
    let queries = query::ParallelQueryActor::new(instances.clone(), ctx.publisher()).start();
    let control = RacControlActor { instances: instances.values().cloned().collect(), names: config.instances.clone() }.start();
    let faults = FaultTargets::of(&control);
    Ok(Box::new(Rac { instances, queries, masters, ring, block_size: config.block_size, blocks: config.blocks, control, faults }))
}

impl Domain for Rac {
    fn name(&self) -> &'static str {
        "rac"
    }
    fn faults(&self) -> &FaultTargets {
        &self.faults
    }
    fn stop(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        domain::stop(&self.control)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The domain's control: fault injection on instances (crash and recovery are not built yet:
/// refused as such, 501).
pub struct RacControlActor {
    instances: Vec<Addr<RacInstanceActor>>,
    names: Vec<String>,
}

impl Actor for RacControlActor {
    type Context = Context<Self>;
}

impl Handler<OwnsTarget> for RacControlActor {
    type Result = bool;
    fn handle(&mut self, msg: OwnsTarget, _ctx: &mut Self::Context) -> bool {
        self.names.contains(&msg.target)
    }
}

impl Handler<CrashTarget> for RacControlActor {
    type Result = Result<FaultApplied, DomainError>;
    fn handle(&mut self, msg: CrashTarget, _ctx: &mut Self::Context) -> Self::Result {
        Err(FaultRefused::NotBuilt { domain: "rac".into(), target: msg.target }.into())
    }
}

impl Handler<RestartTarget> for RacControlActor {
    type Result = Result<FaultApplied, DomainError>;
    fn handle(&mut self, msg: RestartTarget, _ctx: &mut Self::Context) -> Self::Result {
        Err(FaultRefused::NotBuilt { domain: "rac".into(), target: msg.target }.into())
    }
}

impl Handler<ListInjectedFaults> for RacControlActor {
    type Result = Vec<InjectedFault>;
    fn handle(&mut self, _: ListInjectedFaults, _ctx: &mut Self::Context) -> Self::Result {
        Vec::new()
    }
}

impl Handler<StopRuntimeActor> for RacControlActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: StopRuntimeActor, _ctx: &mut Self::Context) -> Self::Result {
        // The instances first, their redo drained, so the runtime closes the store under nobody.
        let stops: Vec<_> = self.instances.iter().map(|a| a.send(StopRuntimeActor)).collect();
        Box::pin(futures_util::future::join_all(stops).into_actor(self).map(|_, _, ctx| ctx.stop()))
    }
}

#[cfg(test)]
mod tests;
