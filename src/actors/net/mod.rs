//! The fault-injecting link: the one way anything breaks communication between actors. Senders
//! hold a [`Link`] and send through it; the [`NetActor`] owns the rules (a partition, and per
//! link a drop rate and a delay), takes the fault-injection messages that change them, and
//! publishes them to the senders' shared table.

mod link;
pub mod peer;

pub use link::{Destination, Link, LinkFault, Sent};

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actix::prelude::*;

use crate::messages::errors::DomainError;
use crate::messages::events::now_ms;
use crate::messages::faults::*;

/// Most groups, endpoints and link rules one request may name: a partition is a drill, not a
/// data set.
const MAX_NAMES: usize = 1024;

pub struct NetActor {
    link: Link,
    partition: Vec<Vec<String>>,
    partitioned_since_ms: Option<i64>,
    links: BTreeMap<(String, String), LinkFault>,
}

impl NetActor {
    pub fn new(link: Link) -> Self {
        NetActor { link, partition: Vec::new(), partitioned_since_ms: None, links: BTreeMap::new() }
    }

    fn publish(&self) {
        let mut groups = HashMap::new();
        for (i, group) in self.partition.iter().enumerate() {
            for endpoint in group {
                groups.insert(endpoint.clone(), i);
            }
        }
        let links = self.links.iter().map(|(k, v)| (k.clone(), *v)).collect();
        self.link.set_rules(link::Rules { groups, links });
    }

    fn view(&self) -> LinkFaults {
        let (dropped, delayed) = self.link.counts();
        LinkFaults {
            partition: self.partition.clone(),
            partitioned_since_ms: self.partitioned_since_ms,
            links: self
                .links
                .iter()
                .map(|((from, to), f)| LinkFaultView {
                    from: from.clone(),
                    to: to.clone(),
                    drop_rate: f.drop_rate,
                    delay_ms: f.delay.as_millis() as u64,
                })
                .collect(),
            messages_dropped: dropped,
            messages_delayed: delayed,
        }
    }
}

impl Actor for NetActor {
    type Context = Context<Self>;
}

fn invalid(field: &str, reason: String) -> DomainError {
    FaultRefused::InvalidLinks { field: field.into(), reason }.into()
}

/// Checks a partition's shape: at least two groups, each endpoint in one group only.
fn check_partition(groups: &[Vec<String>]) -> Result<(), DomainError> {
    if groups.len() < 2 {
        return Err(invalid("groups", "a partition needs at least two groups".into()));
    }
    let names: usize = groups.iter().map(Vec::len).sum();
    if names > MAX_NAMES {
        return Err(invalid("groups", format!("at most {MAX_NAMES} endpoints")));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, group) in groups.iter().enumerate() {
        if group.is_empty() {
            return Err(invalid(&format!("groups[{i}]"), "a group names at least one endpoint".into()));
        }
        for endpoint in group {
            if !seen.insert(endpoint) {
                return Err(invalid(&format!("groups[{i}]"), format!("'{endpoint}' is in more than one group")));
            }
        }
    }
    Ok(())
}

impl Handler<PartitionLinks> for NetActor {
    type Result = Result<LinkFaults, DomainError>;
    fn handle(&mut self, msg: PartitionLinks, _ctx: &mut Self::Context) -> Self::Result {
        check_partition(&msg.groups)?;
        tracing::warn!(groups = ?msg.groups, "partition injected");
        self.partition = msg.groups;
        self.partitioned_since_ms = Some(now_ms());
        self.publish();
        Ok(self.view())
    }
}

impl Handler<HealLinks> for NetActor {
    type Result = MessageResult<HealLinks>;
    fn handle(&mut self, _: HealLinks, _ctx: &mut Self::Context) -> Self::Result {
        tracing::info!("links healed");
        self.partition.clear();
        self.partitioned_since_ms = None;
        self.links.clear();
        self.publish();
        MessageResult(self.view())
    }
}

impl Handler<SetLinkFault> for NetActor {
    type Result = Result<LinkFaults, DomainError>;
    fn handle(&mut self, msg: SetLinkFault, _ctx: &mut Self::Context) -> Self::Result {
        if !(0.0..=1.0).contains(&msg.drop_rate) {
            return Err(invalid("drop_rate", format!("must be between 0 and 1 (got {})", msg.drop_rate)));
        }
        if msg.delay_ms > 60_000 {
            return Err(invalid("delay_ms", format!("at most 60000 (got {})", msg.delay_ms)));
        }
        if msg.from == msg.to {
            return Err(invalid("to", "a link joins two different endpoints".into()));
        }
        let fault = LinkFault { drop_rate: msg.drop_rate, delay: Duration::from_millis(msg.delay_ms) };
        let mut pairs = vec![(msg.from.clone(), msg.to.clone())];
        if msg.both_ways {
            pairs.push((msg.to, msg.from));
        }
        for pair in pairs {
            if fault == LinkFault::default() {
                self.links.remove(&pair);
            } else if self.links.len() < MAX_NAMES || self.links.contains_key(&pair) {
                self.links.insert(pair, fault);
            } else {
                return Err(invalid("from", format!("at most {MAX_NAMES} faulty links")));
            }
        }
        self.publish();
        Ok(self.view())
    }
}

impl Handler<GetLinks> for NetActor {
    type Result = MessageResult<GetLinks>;
    fn handle(&mut self, _: GetLinks, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.view())
    }
}

#[cfg(test)]
mod tests;
