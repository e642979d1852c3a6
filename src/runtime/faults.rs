//! Fault injection routed by target: a crash or restart goes to the domain that owns the target,
//! asked in turn; partitions and lossy or slow links go to the fault-injecting link once every
//! endpoint named is known to some domain.

use crate::messages::errors::DomainError;
use crate::messages::faults::*;

use super::RuntimeHandle;

/// Fault injection on a running runtime.
pub struct Faults<'a> {
    runtime: &'a RuntimeHandle,
}

impl<'a> Faults<'a> {
    pub(super) fn new(runtime: &'a RuntimeHandle) -> Self {
        Faults { runtime }
    }

    /// The domain that owns `target`, by its fault recipients; or why there is none.
    async fn owner(&self, target: &str) -> Result<&crate::actors::domain::FaultTargets, DomainError> {
        for domain in self.runtime.domains() {
            let faults = domain.faults();
            if faults.owns.send(OwnsTarget { target: target.to_string() }).await.unwrap_or(false) {
                return Ok(faults);
            }
        }
        Err(self.unowned(target))
    }

    /// Why no domain owns `target`: it belongs to a domain not built yet (a configured RAC
    /// instance), or it is unknown.
    fn unowned(&self, target: &str) -> DomainError {
        if self.runtime.config().rac.instances.iter().any(|i| i == target) {
            return FaultRefused::NotBuilt { domain: "rac".into(), target: target.into() }.into();
        }
        FaultRefused::UnknownTarget { target: target.into() }.into()
    }

    pub async fn crash(&self, target: String, mode: CrashMode) -> Result<FaultApplied, DomainError> {
        let owner = self.owner(&target).await?;
        owner.crash.send(CrashTarget { target, mode }).await.map_err(unavailable)?
    }

    pub async fn restart(&self, target: String) -> Result<FaultApplied, DomainError> {
        let owner = self.owner(&target).await?;
        owner.restart.send(RestartTarget { target }).await.map_err(unavailable)?
    }

    /// Every crash held in place, over all domains.
    pub async fn injected(&self) -> Vec<InjectedFault> {
        let mut all = Vec::new();
        for domain in self.runtime.domains() {
            all.extend(domain.faults().list.send(ListInjectedFaults).await.unwrap_or_default());
        }
        all
    }

    /// Cuts the links between `groups` (each endpoint must be known to a domain).
    pub async fn partition(&self, groups: Vec<Vec<String>>) -> Result<LinkFaults, DomainError> {
        for endpoint in groups.iter().flatten() {
            self.known(endpoint).await?;
        }
        self.runtime.net().send(PartitionLinks { groups }).await.map_err(unavailable)?
    }

    pub async fn heal(&self) -> Result<LinkFaults, DomainError> {
        self.runtime.net().send(HealLinks).await.map_err(unavailable)
    }

    /// Makes one link lossy or slow (or healthy again).
    pub async fn set_link(&self, fault: SetLinkFault) -> Result<LinkFaults, DomainError> {
        self.known(&fault.from).await?;
        self.known(&fault.to).await?;
        self.runtime.net().send(fault).await.map_err(unavailable)?
    }

    pub async fn links(&self) -> Result<LinkFaults, DomainError> {
        self.runtime.net().send(GetLinks).await.map_err(unavailable)
    }

    /// An endpoint nobody owns is an unknown id (404), as a crash's unknown target is; one of a
    /// domain not built yet is refused as not built (501).
    async fn known(&self, endpoint: &str) -> Result<(), DomainError> {
        self.owner(endpoint).await.map(|_| ())
    }
}

/// An actor that did not answer: the runtime is stopping.
fn unavailable(e: actix::MailboxError) -> DomainError {
    FaultRefused::Unavailable { reason: e.to_string() }.into()
}
