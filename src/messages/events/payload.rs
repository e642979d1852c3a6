//! The typed payload of an event: one enum per domain, defined with that domain's messages by
//! [`domain_events!`], and [`EventPayload`], which holds one of them. A new domain writes its enum
//! and adds one line to the list at the bottom of this file.

use serde::{Deserialize, Serialize};

use super::{EventType, Subjects};
use crate::messages::cluster::ClusterEvent;
use crate::messages::rac::RacEvent;
use crate::messages::replication::ReplicationEvent;
use crate::messages::system::SystemEvent;

/// What every domain's event enum knows of each of its events: its type in the catalogue and the
/// ids it concerns.
pub trait DomainEvent {
    fn event_type(&self) -> EventType;
    /// Adds the ids this event concerns: the one place subjects are derived from a payload.
    fn add_subjects(&self, subjects: &mut Subjects);
}

/// Defines a domain's event enum: one variant per event type, named as in [`EventType`] and
/// serialized with that type's name in an `event_type` field among the payload's own fields, and
/// beside each the ids it concerns, as `|payload, subjects| …`.
///
/// ```text
/// domain_events! {
///     pub enum ClusterEvent {
///         NodeJoined(NodeMembershipChange) => |p, s| s.add(SubjectKind::Node, &p.node_id),
///         QuorumLost(QuorumChange) => |_, _| {},
///     }
/// }
/// ```
macro_rules! domain_events {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident($payload:ty) => |$p:pat_param, $s:pat_param| $subjects:expr
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "event_type", rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant($payload)),*
        }

        impl $crate::messages::events::DomainEvent for $name {
            fn event_type(&self) -> $crate::messages::events::EventType {
                match self {
                    $($name::$variant(_) => $crate::messages::events::EventType::$variant),*
                }
            }

            fn add_subjects(&self, subjects: &mut $crate::messages::events::Subjects) {
                match self {
                    $($name::$variant(payload) => {
                        let add = |$p: &$payload, $s: &mut $crate::messages::events::Subjects| $subjects;
                        add(payload, subjects)
                    }),*
                }
            }
        }
    };
}
pub(crate) use domain_events;

macro_rules! event_payload {
    ($($domain:ident($events:ty)),* $(,)?) => {
        /// The typed payload of an event: one variant per domain. Serialized as the domain's
        /// event alone (`{"event_type":"node_joined","node_id":…}`), with no trace of the domain.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(untagged)]
        pub enum EventPayload {
            $($domain($events)),*
        }

        impl EventPayload {
            fn domain(&self) -> &dyn DomainEvent {
                match self {
                    $(EventPayload::$domain(e) => e),*
                }
            }
        }

        $(
            impl From<$events> for EventPayload {
                fn from(e: $events) -> Self {
                    EventPayload::$domain(e)
                }
            }
        )*
    };
}

impl EventPayload {
    pub fn event_type(&self) -> EventType {
        self.domain().event_type()
    }

    /// The ids this event concerns, by kind.
    pub fn subjects(&self) -> Subjects {
        let mut subjects = Subjects::default();
        self.domain().add_subjects(&mut subjects);
        subjects
    }
}

// The domains whose events exist today.
event_payload! {
    Cluster(ClusterEvent),
    Replication(ReplicationEvent),
    Rac(RacEvent),
    System(SystemEvent),
}
