//! Fault injection. Each domain answers [`OwnsTarget`], [`CrashTarget`], [`RestartTarget`] and
//! [`ListInjectedFaults`] for the targets it owns (nodes, replicas, later instances and shards);
//! the runtime routes a target to its owner. Links between actors are cut, made lossy or slow by
//! the fault-injecting link ([`PartitionLinks`], [`HealLinks`], [`SetLinkFault`], [`GetLinks`]).

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::messages::errors::{DescribedError, DomainError, ErrorKind};

/// How a crash is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashMode {
    /// The target stops as a crash would and stays down until restarted.
    Crash,
    /// The target's actor fails and its supervisor restarts it at once.
    InternalFault,
}

impl CrashMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CrashMode::Crash => "crash",
            CrashMode::InternalFault => "internal_fault",
        }
    }
}

/// Whether the domain that receives it owns `target`.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct OwnsTarget {
    pub target: String,
}

/// Crashes `target` (see [`CrashMode`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<FaultApplied, DomainError>")]
pub struct CrashTarget {
    pub target: String,
    pub mode: CrashMode,
}

/// Starts a crashed `target` again from its durable state.
#[derive(Debug, Message)]
#[rtype(result = "Result<FaultApplied, DomainError>")]
pub struct RestartTarget {
    pub target: String,
}

/// What fault injection holds down in the domain now.
#[derive(Debug, Message)]
#[rtype(result = "Vec<InjectedFault>")]
pub struct ListInjectedFaults;

/// A crash held in place.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct InjectedFault {
    /// `crash`.
    pub kind: String,
    pub target: String,
    pub since_ms: i64,
}

/// A fault took effect: the target and where it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FaultApplied {
    pub target: String,
    /// `crash`, `internal_fault` or `restart`.
    pub mode: String,
    /// The target's status after it, in its domain's words (`failed`, `healthy`, `starting` …).
    pub status: String,
    /// Whether it is down, waiting for a restart.
    pub crashed: bool,
}

/// Splits the endpoints named into groups that cannot reach each other; endpoints not named
/// keep every link. Replaces the partition in force.
#[derive(Debug, Message)]
#[rtype(result = "Result<LinkFaults, DomainError>")]
pub struct PartitionLinks {
    pub groups: Vec<Vec<String>>,
}

/// Ends the partition and every per-link fault.
#[derive(Debug, Message)]
#[rtype(result = "LinkFaults")]
pub struct HealLinks;

/// Makes the link from `from` to `to` lose a share of its messages and delay the rest (both
/// directions when `both_ways`). A drop rate of 0 and no delay make it healthy again.
#[derive(Debug, Clone, Message, Deserialize, Serialize)]
#[rtype(result = "Result<LinkFaults, DomainError>")]
pub struct SetLinkFault {
    pub from: String,
    pub to: String,
    pub drop_rate: f64,
    pub delay_ms: u64,
    pub both_ways: bool,
}

/// The faults the link holds now.
#[derive(Debug, Message)]
#[rtype(result = "LinkFaults")]
pub struct GetLinks;

/// The partition and the per-link faults in force, and what they did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LinkFaults {
    /// The groups of the partition in force (empty: none).
    pub partition: Vec<Vec<String>>,
    pub partitioned_since_ms: Option<i64>,
    pub links: Vec<LinkFaultView>,
    /// Messages the link has lost since the process started (cut or dropped).
    pub messages_dropped: u64,
    pub messages_delayed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LinkFaultView {
    pub from: String,
    pub to: String,
    pub drop_rate: f64,
    pub delay_ms: u64,
}

/// Why fault injection refused before any domain took the request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultRefused {
    /// No domain owns the target.
    #[error("no node, replica or other target named '{target}'")]
    UnknownTarget { target: String },
    /// The target belongs to a domain not built yet.
    #[error("faults on {domain} targets are not built yet; '{target}' cannot take one until they are")]
    NotBuilt { domain: String, target: String },
    /// The target does not take this kind of fault.
    #[error("mode: {reason}")]
    UnsupportedMode { target: String, reason: String },
    /// A partition or link names an endpoint nobody owns, or is malformed.
    #[error("{field}: {reason}")]
    InvalidLinks { field: String, reason: String },
    /// The actor that owns the target did not answer (the runtime is stopping).
    #[error("fault injection could not reach its target: {reason}")]
    Unavailable { reason: String },
}

impl DescribedError for FaultRefused {
    fn kind(&self) -> ErrorKind {
        match self {
            FaultRefused::UnknownTarget { .. } => ErrorKind::NotFound,
            FaultRefused::NotBuilt { .. } => ErrorKind::NotBuilt,
            FaultRefused::UnsupportedMode { .. } | FaultRefused::InvalidLinks { .. } => ErrorKind::Invalid,
            FaultRefused::Unavailable { .. } => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            // The code an unknown fault target has always been answered with.
            FaultRefused::UnknownTarget { .. } => "node_not_found",
            FaultRefused::NotBuilt { .. } => "not_implemented",
            FaultRefused::UnsupportedMode { .. } | FaultRefused::InvalidLinks { .. } => "invalid_request",
            FaultRefused::Unavailable { .. } => "component_unavailable",
        }
    }

    fn details(&self) -> serde_json::Value {
        match self {
            FaultRefused::UnknownTarget { target } => serde_json::json!({ "node_id": target, "target": target }),
            FaultRefused::NotBuilt { domain, target } => serde_json::json!({ "domain": domain, "target": target }),
            FaultRefused::UnsupportedMode { reason, .. } => serde_json::json!({ "field": "mode", "reason": reason }),
            FaultRefused::InvalidLinks { field, reason } => serde_json::json!({ "field": field, "reason": reason }),
            FaultRefused::Unavailable { .. } => serde_json::json!({ "component": "fault injection" }),
        }
    }
}
