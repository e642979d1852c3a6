//! What RAC's actors send each other: the Cache Fusion protocol between instances and GRD
//! masters (through the link, stamped with their configuration's epoch), the interconnect's
//! heartbeats, and the steps of a GRD reconfiguration the control runs (freeze, rebuild,
//! resume, the redo a survivor applies, crash and rejoin, the survivors' suspicions).

use std::sync::Arc;

use actix::prelude::*;

use super::RacError;
use crate::model::master_ring::MasterMap;
use crate::model::rac::{BlockId, LockMode, Scn, TransferKind};

/// A block's bytes, shared between a cache, a shipment and a past image without copying.
pub type BlockData = Arc<[u8]>;

/// A version of a block as it moves: from a holder's cache, from disk, or into a redo record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockImage {
    pub scn: Scn,
    pub data: BlockData,
    /// Whether this version is on disk: a copy that is not must be written back before the last
    /// lock on it goes, or kept as a past image when it is given up.
    pub on_disk: bool,
}

/// An instance's request for a block in a mode, as it reaches the block's master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    /// Unique per requester, increasing: a repeated request is the same request.
    pub request_id: u64,
    pub requester: String,
    pub block: BlockId,
    /// Exclusive or shared, up from what the requester holds; shared or null, down (a downgrade,
    /// a release).
    pub mode: LockMode,
}

/// What a master tells an instance to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// `holder` sends its current copy of the block straight to the requester, then holds it in
    /// `holder_keeps` (keeping a past image if it goes to null with changes not yet on disk).
    /// `holder_grant`: the request the holder was granted its lock by; a directive for an
    /// earlier grant is stale (delayed, or sent again) and changes nothing.
    Ship { holder: String, holder_grant: u64, request: LockRequest, holder_keeps: LockMode, kind: TransferKind },
    /// The requester reads the block from the shared store: nobody holds it, so the store has
    /// its current version.
    GrantFromDisk { request: LockRequest },
    /// The requester's own copy is current: it holds it in the mode asked for now (a conversion
    /// up once the other shared copies are gone, or down).
    GrantLocal { request: LockRequest },
    /// `holder` drops its shared copy (keeping a past image if it has changes not yet on disk)
    /// and says so, before the block is granted exclusive to another; stale as `Ship` is.
    Invalidate { holder: String, holder_grant: u64, block: BlockId },
    /// `holder` drops its past image of the block if it is no newer than `up_to`: a version at
    /// least that new is on disk.
    DiscardPastImage { holder: String, block: BlockId, up_to: Scn },
}

impl Directive {
    /// The instance it is for.
    pub fn to(&self) -> &str {
        match self {
            Directive::Ship { holder, .. } | Directive::Invalidate { holder, .. } | Directive::DiscardPastImage { holder, .. } => holder,
            Directive::GrantFromDisk { request } | Directive::GrantLocal { request } => &request.requester,
        }
    }
}

/// What an instance tells a block's master.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum ToMaster {
    Request(LockRequest),
    /// The requester holds the block as granted; `past_image`: the holder that shipped it kept
    /// a past image of that version.
    Acquired { block: BlockId, request_id: u64, requester: String, past_image: Option<Scn> },
    Invalidated { block: BlockId, holder: String, past_image: Option<Scn> },
    /// Version `scn` of the block is on disk.
    WrittenToDisk { block: BlockId, scn: Scn },
}

/// What reaches an instance: its master's directives, and blocks shipped by other holders.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum ToInstance {
    Directive(Directive),
    /// `busy`: the holder made the request wait behind its own operation on the block.
    Shipped { request: LockRequest, from: String, kind: TransferKind, image: BlockImage, past_image: Option<Scn>, busy: bool },
}

/// An interconnect heartbeat between instances: a `Ping` is answered with a `Pong` of the same
/// `seq`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum Heartbeat {
    Ping { from: String, seq: u64 },
    Pong { from: String, seq: u64 },
}

/// A protocol message stamped with the GRD configuration (epoch) its sender was in: one of an
/// earlier configuration is dropped, since the state it was about was rebuilt since.
#[derive(Debug, Clone)]
pub struct Stamped<T> {
    pub epoch: u64,
    pub body: T,
}

impl<T> Message for Stamped<T> {
    type Result = ();
}

/// A lock an instance holds, as it reports it when the GRD is reconfigured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub block: BlockId,
    pub mode: LockMode,
    /// The request it was granted by: the master's directives name it.
    pub grant: u64,
}

/// A block and its holders, each with its lock, as a rebuilt master takes them.
pub type HeldBy = (BlockId, Vec<(String, Holding)>);

/// What an instance holds when frozen: the new masters' entries are rebuilt from these.
#[derive(Debug, Clone, Default)]
pub struct InstanceReport {
    pub instance: String,
    pub holdings: Vec<Holding>,
    /// Its past images, written to disk before the GRD resumes.
    pub past_images: Vec<(BlockId, BlockImage)>,
}

type Answer<T> = tokio::sync::oneshot::Sender<T>;

/// The GRD is reconfigured to `map`: the instance voids its lock requests under way, reports
/// what it holds, and asks for nothing until [`ResumeInstance`].
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FreezeInstance {
    pub map: Arc<MasterMap>,
    pub reply: Answer<InstanceReport>,
}

/// The masters of the configuration are rebuilt and `on_disk` versions (the past images
/// reported) are on disk: the instance asks again for what its operations wait on.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ResumeInstance {
    pub epoch: u64,
    pub on_disk: Arc<Vec<(BlockId, Scn)>>,
    pub reply: Answer<()>,
}

/// A master drops its directory and takes nothing until [`RebuildMaster`]; it answers the blocks
/// it had an entry for.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FreezeMaster {
    pub epoch: u64,
    pub reply: Answer<Vec<BlockId>>,
}

/// A master's directory for the configuration `map`: the holders of each block it masters now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RebuildMaster {
    pub map: Arc<MasterMap>,
    pub entries: Vec<HeldBy>,
    pub reply: Answer<()>,
}

/// A reconfiguration's disk work, by a survivor: write the past images reported to disk, then
/// apply the failed instances' redo (each block's newest version, if newer than disk) and empty
/// their logs.
#[derive(Debug, Message)]
#[rtype(result = "Result<RedoApplied, RacError>")]
pub struct ApplyRedo {
    pub failed: Vec<String>,
    pub past_images: Vec<(BlockId, BlockImage)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedoApplied {
    /// The past images' versions, on disk now.
    pub on_disk: Vec<(BlockId, Scn)>,
    pub redo_records: u64,
    /// Blocks whose version on disk the failed instance's redo made newer.
    pub blocks_recovered: u64,
}

/// Fault injection: the instance (its cache and its master) fails. Its operations under way
/// are answered as failed, its cache and directory are gone; its redo log stays, drained of the
/// commits under way before it answers.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CrashInstance;

/// The instance starts again, empty, with an empty redo log (recovery applied it), in the GRD
/// configuration that [`FreezeInstance`] brings.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RacError>")]
pub struct RejoinInstance;

/// An instance's view of which peers stopped answering its heartbeats, sent to the cluster's
/// control at every heartbeat.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Suspects {
    pub from: String,
    pub unreachable: Vec<String>,
}

/// The instance's accesses per block since the last call (operations asked of it, local hits
/// included), for remastering by affinity.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(BlockId, u64)>")]
pub struct TakeAccessCounts;
