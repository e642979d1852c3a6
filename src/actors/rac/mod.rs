//! The RAC domain: instances that share one store of blocks and keep their buffer caches
//! coherent by shipping blocks to each other (Cache Fusion), under global locks mastered in a
//! Global Resource Directory. Each instance runs a [`RacInstanceActor`] (its cache, its
//! operations) and a [`GrdMasterActor`] (the directory of the blocks the ring gives it); they
//! talk only through the fault-injecting link.

pub mod cache;
pub mod control;
pub mod directory;
pub mod instance;
pub mod interconnect;
pub mod master;
pub mod protocol;
pub mod query;
pub mod reconfig;
pub mod stats;
pub mod store;

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use actix::prelude::*;

pub use control::RacControlActor;
pub use instance::RacInstanceActor;
pub use master::GrdMasterActor;
use crate::model::master_ring::MasterMap;
use store::{BlockStore, RedoLog};

use crate::actors::domain::{self, Domain, DomainContext, DomainStartError, FaultTargets};
use crate::messages::rac::*;
use crate::model::rac::{BlockId, LockMode};

/// Every instance's and master's address, by instance name: set once, after all have started.
pub struct RacPeers {
    pub instances: BTreeMap<String, Recipient<Stamped<ToInstance>>>,
    pub masters: BTreeMap<String, Recipient<Stamped<ToMaster>>>,
    pub heartbeats: BTreeMap<String, Recipient<Heartbeat>>,
    pub control: Recipient<Suspects>,
}

/// The started RAC domain: what the faces address.
pub struct Rac {
    pub instances: BTreeMap<String, Addr<RacInstanceActor>>,
    pub queries: Addr<query::ParallelQueryActor>,
    pub masters: BTreeMap<String, Addr<GrdMasterActor>>,
    pub block_size: usize,
    pub blocks: u64,
    pub control: Addr<RacControlActor>,
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

    /// The GRD configuration in force.
    pub async fn master_map(&self) -> Result<Arc<MasterMap>, RacError> {
        self.control.send(GetMasterMap).await.map_err(|_| control_down())
    }

    /// Moves `block`'s mastership to `to` (a manual remaster); with no `to`, runs the affinity
    /// pass on `block`; with neither, on every block.
    pub async fn remaster(&self, block: Option<&str>, to: Option<&str>) -> Result<RemasterOutcome, RacError> {
        let block = block.map(|b| self.block(b)).transpose()?;
        match (block, to) {
            (Some(block), Some(to)) => {
                self.instance(to)?;
                self.control.send(Remaster { moves: vec![(block, to.to_string())], reason: RemasterReason::Manual }).await.map_err(|_| control_down())?
            }
            (None, Some(_)) => Err(RacError::InvalidField { field: "to_instance".into(), reason: "names where a resource goes: give resource_id too".into() }),
            (block, None) => self.control.send(RunAffinityPass { block }).await.map_err(|_| control_down())?,
        }
    }

    pub async fn load_balance(&self) -> Result<RemasterOutcome, RacError> {
        self.control.send(LoadBalance).await.map_err(|_| control_down())?
    }

    pub async fn recoveries(&self, id: Option<String>) -> Result<Vec<RecoveryView>, RacError> {
        self.control.send(GetRecoveries { id }).await.map_err(|_| control_down())
    }

    pub async fn start_recovery(&self, failed: String) -> Result<RecoveryView, RacError> {
        self.control.send(StartRecovery { failed }).await.map_err(|_| control_down())?
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
        let open = self.control.send(GetOpenInstances).await.map_err(|_| control_down())?;
        self.queries.send(RunParallelQuery { query, open }).await.map_err(|_| RacError::Unavailable { component: "the parallel query coordinator".into() })?
    }

    pub async fn parallel_query_stats(&self) -> Result<ParallelQueryStats, RacError> {
        self.queries.send(GetParallelQueryStats).await.map_err(|_| RacError::Unavailable { component: "the parallel query coordinator".into() })
    }

    /// `block`'s master and entry (no holders when nobody holds it).
    pub async fn resource(&self, block: &str) -> Result<ResourceView, RacError> {
        let block = self.block(block)?;
        let map = self.master_map().await?;
        let name = map.master_of(block).ok_or_else(|| RacError::Unavailable { component: "the GRD (no instance is live)".into() })?;
        let master = self.masters.get(name).ok_or_else(|| down(name))?;
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

fn control_down() -> RacError {
    RacError::Unavailable { component: "the RAC control".into() }
}

fn down(instance: &str) -> RacError {
    RacError::InstanceDown { instance_id: instance.to_string() }
}

pub fn start(ctx: &DomainContext) -> Result<Box<dyn Domain>, DomainStartError> {
    let config = &ctx.config.rac;
    let fail = |reason: String| DomainStartError { domain: "rac", reason };
    let map = Arc::new(MasterMap::new(1, &config.instances, BTreeMap::new()));
    let peers: Arc<OnceLock<RacPeers>> = Arc::new(OnceLock::new());
    let blocks = Arc::new(BlockStore::new(ctx.store.clone()));
    let mut logs = config.instances.iter().map(|name| RedoLog::open(ctx.store.clone(), name)).collect::<Result<Vec<_>, _>>().map_err(|e| fail(e.to_string()))?;
    // Every cache starts empty: what only redo held goes to disk first.
    let recovered = store::recover_all(&blocks, &mut logs).map_err(|e| fail(e.to_string()))?;
    if recovered.blocks > 0 {
        tracing::info!(blocks = recovered.blocks, "RAC blocks recovered from redo at start");
    }
    let counts = Arc::new(interconnect::PairCounts::new(&config.instances));
    let mut instances = BTreeMap::new();
    let mut masters = BTreeMap::new();
    for (name, redo) in config.instances.iter().zip(logs) {
        let setup = instance::InstanceSetup {
            name: name.clone(),
            cache_blocks: config.cache_blocks,
            map: map.clone(),
            store: ctx.store.clone(),
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
        let (n, m, p, l, c) = (name.clone(), map.clone(), peers.clone(), ctx.link.clone(), counts.clone());
        let master = Supervisor::start(move |_| GrdMasterActor::new(n, m, p, l, c));
        instances.insert(name.clone(), instance);
        masters.insert(name.clone(), master);
    }
    let control = RacControlActor::new(control::ControlSetup {
        instances: instances.clone(),
        masters: masters.clone(),
        map,
        link: ctx.link.clone(),
        events: ctx.publisher(),
        remaster_threshold: config.remaster_threshold,
        remaster_window: std::time::Duration::from_millis(config.remaster_window_ms),
    })
    .start();
    let wiring = RacPeers {
        instances: instances.iter().map(|(n, a)| (n.clone(), a.clone().recipient())).collect(),
        masters: masters.iter().map(|(n, a)| (n.clone(), a.clone().recipient())).collect(),
        heartbeats: instances.iter().map(|(n, a)| (n.clone(), a.clone().recipient())).collect(),
        control: control.clone().recipient(),
    };
    // Set once here, before any message can reach the actors that read it.
    let _ = peers.set(wiring);
    let queries = query::ParallelQueryActor::new(instances.clone(), ctx.publisher()).start();
    let faults = FaultTargets::of(&control);
    Ok(Box::new(Rac { instances, queries, masters, block_size: config.block_size, blocks: config.blocks, control, faults }))
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

#[cfg(test)]
mod tests;
