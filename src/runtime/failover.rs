//! A manual failover of either scope, the one place REST and GraphQL start one: in the raft
//! scope a leadership transfer (to `target`, or to the most up-to-date voter), answered once
//! the new leader took office; in the replication scope a switchover, answered once started.

use super::RuntimeHandle;
use crate::messages::cluster::{ClusterError, DemoteNode, FailoverStarted, GetClusterStatus, PromoteNode};
use crate::messages::errors::DomainError;
use crate::messages::replication::Switchover;

impl RuntimeHandle {
    pub async fn failover(&self, scope: &str, target: Option<String>) -> Result<FailoverStarted, DomainError> {
        let unavailable = |_| DomainError::from(ClusterError::NoLeader);
        match scope {
            "raft" => {}
            "replication" => {
                let started = self.primary().send(Switchover { target }).await.map_err(unavailable)??;
                return Ok(FailoverStarted {
                    failover_id: started.failover_id,
                    scope: started.scope,
                    failed_node: started.failed_node,
                    replacement_node: started.replacement_node,
                    term: None,
                });
            }
            other => return Err(ClusterError::InvalidField { field: "scope".into(), reason: format!("`{other}` is not raft or replication") }.into()),
        }
        let before = self.membership().send(GetClusterStatus).await.map_err(unavailable)?;
        let (Some(old), Some(term)) = (before.leader.clone(), before.term) else { return Err(ClusterError::NoLeader.into()) };
        if target.as_deref() == Some(old.as_str()) {
            return Err(ClusterError::AlreadyLeader { node_id: old }.into());
        }
        let after = match target {
            Some(target) => self.membership().send(PromoteNode { node_id: target }).await.map_err(unavailable)??,
            None => self.membership().send(DemoteNode { node_id: old.clone() }).await.map_err(unavailable)??,
        };
        // The failover a transfer makes is named, as an unplanned one is, by the term it ended.
        Ok(FailoverStarted { failover_id: format!("failover-t{term}"), scope: "raft".into(), failed_node: old, replacement_node: after.leader, term: after.term })
    }
}
