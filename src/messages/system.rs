//! Events about the runtime itself, whichever domain's actor they concern.

use serde::{Deserialize, Serialize};

use crate::messages::events::{domain_events, SubjectKind};

domain_events! {
    /// What the runtime publishes about its own actors.
    pub enum SystemEvent {
        ActorRestarted(ActorRestart) => |p, s| {
            if let Some(kind) = p.subject_kind() {
                s.add(kind, &p.actor_id);
            }
        },
    }
}

/// `actor_restarted`: a supervised actor stopped on an internal fault and was started again
/// from its durable state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorRestart {
    /// `node`, later also `replica`, `instance`, `shard`.
    pub actor_kind: String,
    pub actor_id: String,
    pub reason: String,
    pub restart_count: u64,
}

impl ActorRestart {
    /// The kind of id `actor_id` is, for the actor kinds that have one.
    fn subject_kind(&self) -> Option<SubjectKind> {
        match self.actor_kind.as_str() {
            "node" => Some(SubjectKind::Node),
            "replica" => Some(SubjectKind::Replica),
            "instance" => Some(SubjectKind::Instance),
            "shard" => Some(SubjectKind::Shard),
            _ => None,
        }
    }
}
