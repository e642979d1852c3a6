//! The event contract (`shared/spec/events.md`): the catalogue of event types, categories and
//! severities, the subjects an event concerns, the payload (one enum per domain, each defined with
//! its domain's messages), the envelope every transport shares, and the filter a subscriber gives.
//!
//! An [`Event`] is what an actor builds when its state changed; the registry turns it into a
//! [`PublishedEvent`] by stamping `seq` and `event_id` and serializing it once.

mod catalogue;
mod envelope;
mod filter;
mod payload;
mod subjects;

pub use catalogue::{Category, EventType, Severity, EVENT_TYPE_COUNT};
pub use envelope::{event_id, now_ms, Event, PublishedEvent, SharedEvent};
pub use filter::{EventFilter, FilterError, IncludeFlag, INCLUDE_FLAGS, MAX_FILTER_IDS, MAX_ID_LEN};
pub use payload::{DomainEvent, EventPayload};
pub(crate) use payload::domain_events;
pub use subjects::{IdsByKind, SubjectKind, Subjects};
