//! A subscriber's filter, as clients write it (JSON text frames, GraphQL input) and as listings
//! echo it, and the checks every filter passes whichever face it came through. Compiling it for
//! matching is the registry's business; reading one from a query string is `http`'s.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::subjects::{serialize_ids, IdsByKind};
use super::{Category, EventType, Severity, SubjectKind};

/// One of the seed format's per-stream booleans, and the event types it stands for: `false` takes
/// them out of what a filter admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncludeFlag {
    pub name: &'static str,
    pub event_types: &'static [EventType],
}

const fn flag(name: &'static str, event_types: &'static [EventType]) -> IncludeFlag {
    IncludeFlag { name, event_types }
}

/// The seed format's booleans, in the order filters serialize them.
pub const INCLUDE_FLAGS: [IncludeFlag; 13] = [
    flag("include_lag_alerts", &[EventType::ReplicationLagAlert]),
    flag("include_status_changes", &[EventType::ReplicaStatusChange]),
    flag("include_conflicts", &[EventType::ConflictDetected, EventType::ConflictResolved]),
    flag(
        "include_health_changes",
        &[EventType::NodeHealthChange, EventType::QuorumLost, EventType::QuorumRestored],
    ),
    flag("include_failover_events", &[EventType::FailoverInitiated, EventType::FailoverCompleted]),
    flag("include_leader_elections", &[EventType::LeaderElected]),
    flag(
        "include_migrations",
        &[EventType::MigrationStarted, EventType::MigrationProgress, EventType::MigrationCompleted],
    ),
    flag("include_cache_fusion", &[EventType::BlockTransfer]),
    flag(
        "include_lock_events",
        &[EventType::LockGranted, EventType::LockReleased, EventType::LockConverted],
    ),
    flag(
        "include_recovery_events",
        &[EventType::RecoveryStarted, EventType::RecoveryProgress, EventType::RecoveryCompleted],
    ),
    flag(
        "include_parallel_query",
        &[EventType::QueryStarted, EventType::QueryCompleted],
    ),
    flag(
        "include_rebalance_events",
        &[EventType::RebalanceStarted, EventType::RebalanceProgress, EventType::RebalanceCompleted],
    ),
    flag(
        "include_shard_changes",
        &[EventType::ShardAdded, EventType::ShardRemoved, EventType::ShardStatusChange],
    ),
];

const FLAG_COUNT: usize = INCLUDE_FLAGS.len();

/// The most ids one list may hold: a filter is a query, not a data set.
pub const MAX_FILTER_IDS: usize = 1024;
/// The longest id a filter may name, in characters (as JSON Schema counts them).
pub const MAX_ID_LEN: usize = 256;

/// A subscriber's filter. Every field is optional; an absent or empty id list admits everything.
/// Id lists are ANDed with each other, ids within one list ORed; `event_types`, `categories` and
/// `min_severity` narrow further; the seed format's `include_*` flags, when false, take their event
/// types out.
///
/// In JSON every list may also be `null` (what serde clients send for `None`), meaning absent;
/// empty lists and absent values are left out when a filter is written back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Id lists by kind, indexed by [`SubjectKind::index`] (see [`EventFilter::ids`]).
    pub ids: IdsByKind,
    pub event_types: Vec<EventType>,
    pub categories: Vec<Category>,
    pub min_severity: Option<Severity>,
    pub since_seq: Option<u64>,
    /// The `include_*` flags, in the order of [`INCLUDE_FLAGS`] (see [`EventFilter::include`]).
    pub include: [Option<bool>; FLAG_COUNT],
}

/// Why a filter could not be understood: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FilterError {
    pub field: String,
    pub reason: String,
}

impl EventFilter {
    /// Parses a filter from a JSON text frame. Unknown fields, unknown event types, categories or
    /// severities are errors.
    pub fn from_json(text: &str) -> Result<EventFilter, FilterError> {
        let filter: EventFilter = serde_json::from_str(text).map_err(|e| {
            let msg = e.to_string();
            let field = msg
                .split('`')
                .nth(1)
                .filter(|_| msg.starts_with("unknown field"))
                .unwrap_or("filter")
                .to_string();
            FilterError { field, reason: msg }
        })?;
        filter.validate()?;
        Ok(filter)
    }

    /// The rules every filter obeys whichever face it came through: id lists of at most
    /// [`MAX_FILTER_IDS`] ids of 1 to [`MAX_ID_LEN`] characters.
    pub fn validate(&self) -> Result<(), FilterError> {
        for kind in SubjectKind::ALL {
            let ids = self.ids(*kind);
            if ids.len() > MAX_FILTER_IDS {
                return Err(FilterError {
                    field: kind.field().into(),
                    reason: format!("at most {MAX_FILTER_IDS} ids, got {}", ids.len()),
                });
            }
            if ids.iter().any(|id| id.is_empty() || id.chars().count() > MAX_ID_LEN) {
                return Err(FilterError {
                    field: kind.field().into(),
                    reason: format!("ids must be 1 to {MAX_ID_LEN} characters"),
                });
            }
        }
        Ok(())
    }

    /// The ids of `kind` the filter asks for; empty: any.
    pub fn ids(&self, kind: SubjectKind) -> &[String] {
        &self.ids[kind.index()]
    }

    pub fn ids_mut(&mut self, kind: SubjectKind) -> &mut Vec<String> {
        &mut self.ids[kind.index()]
    }

    /// This filter, asking for `ids` of `kind` (replacing any it asked for before).
    pub fn with_ids<I: Into<String>>(mut self, kind: SubjectKind, ids: impl IntoIterator<Item = I>) -> Self {
        self.ids[kind.index()] = ids.into_iter().map(Into::into).collect();
        self
    }

    /// The value of the `include_*` flag `name`; `None` when it is not set or no such flag exists.
    pub fn include(&self, name: &str) -> Option<bool> {
        flag_index(name).and_then(|i| self.include[i])
    }

    /// The slot of the `include_*` flag `name`, `None` if there is no such flag.
    pub fn include_mut(&mut self, name: &str) -> Option<&mut Option<bool>> {
        flag_index(name).map(|i| &mut self.include[i])
    }

    /// The event types the `include_*` flags set to false take out.
    pub fn excluded_types(&self) -> impl Iterator<Item = EventType> + '_ {
        INCLUDE_FLAGS
            .iter()
            .zip(self.include.iter())
            .filter(|(_, value)| **value == Some(false))
            .flat_map(|(flag, _)| flag.event_types.iter().copied())
    }
}

fn flag_index(name: &str) -> Option<usize> {
    INCLUDE_FLAGS.iter().position(|f| f.name == name)
}

impl Serialize for EventFilter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        serialize_ids(&mut map, &self.ids)?;
        if !self.event_types.is_empty() {
            map.serialize_entry("event_types", &self.event_types)?;
        }
        if !self.categories.is_empty() {
            map.serialize_entry("categories", &self.categories)?;
        }
        if let Some(min) = &self.min_severity {
            map.serialize_entry("min_severity", min)?;
        }
        if let Some(since) = &self.since_seq {
            map.serialize_entry("since_seq", since)?;
        }
        for (flag, value) in INCLUDE_FLAGS.iter().zip(self.include.iter()) {
            if let Some(value) = value {
                map.serialize_entry(flag.name, value)?;
            }
        }
        map.end()
    }
}

/// A field of the filter object.
#[derive(Clone, Copy)]
enum Field {
    Ids(SubjectKind),
    EventTypes,
    Categories,
    MinSeverity,
    SinceSeq,
    Include(usize),
}

const SCALAR_FIELDS: [(&str, Field); 4] = [
    ("event_types", Field::EventTypes),
    ("categories", Field::Categories),
    ("min_severity", Field::MinSeverity),
    ("since_seq", Field::SinceSeq),
];

impl Field {
    /// Every field, in the order filters serialize them.
    fn all() -> impl Iterator<Item = Field> {
        SubjectKind::ALL
            .iter()
            .map(|k| Field::Ids(*k))
            .chain(SCALAR_FIELDS.iter().map(|(_, f)| *f))
            .chain((0..FLAG_COUNT).map(Field::Include))
    }

    fn named(name: &str) -> Option<Field> {
        Field::all().find(|f| f.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Field::Ids(kind) => kind.field(),
            Field::EventTypes => "event_types",
            Field::Categories => "categories",
            Field::MinSeverity => "min_severity",
            Field::SinceSeq => "since_seq",
            Field::Include(i) => INCLUDE_FLAGS[i].name,
        }
    }

    /// A distinct bit per field, to notice a field given twice.
    fn bit(self) -> u64 {
        let position = match self {
            Field::Ids(kind) => kind.index(),
            Field::EventTypes => SubjectKind::COUNT,
            Field::Categories => SubjectKind::COUNT + 1,
            Field::MinSeverity => SubjectKind::COUNT + 2,
            Field::SinceSeq => SubjectKind::COUNT + 3,
            Field::Include(i) => SubjectKind::COUNT + SCALAR_FIELDS.len() + i,
        };
        1 << position
    }
}

// Every field needs its own bit in `Field::bit`.
const _: () = assert!(SubjectKind::COUNT + SCALAR_FIELDS.len() + FLAG_COUNT <= 64);

impl<'de> Deserialize<'de> for EventFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FilterVisitor;
        impl<'de> Visitor<'de> for FilterVisitor {
            type Value = EventFilter;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a filter object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventFilter, A::Error> {
                let mut filter = EventFilter::default();
                let mut seen = 0u64;
                while let Some(key) = map.next_key::<String>()? {
                    let Some(field) = Field::named(&key) else {
                        // Worded as serde words it, so the field can be read back out of it.
                        let expected: Vec<String> = Field::all().map(|f| format!("`{}`", f.name())).collect();
                        return Err(de::Error::custom(format_args!(
                            "unknown field `{key}`, expected one of {}",
                            expected.join(", ")
                        )));
                    };
                    if seen & field.bit() != 0 {
                        return Err(de::Error::duplicate_field(field.name()));
                    }
                    seen |= field.bit();
                    // `null` is the same as an absent field, for every field.
                    match field {
                        Field::Ids(kind) => {
                            *filter.ids_mut(kind) = map.next_value::<Option<Vec<String>>>()?.unwrap_or_default()
                        }
                        Field::EventTypes => {
                            filter.event_types = map.next_value::<Option<_>>()?.unwrap_or_default()
                        }
                        Field::Categories => {
                            filter.categories = map.next_value::<Option<_>>()?.unwrap_or_default()
                        }
                        Field::MinSeverity => filter.min_severity = map.next_value()?,
                        Field::SinceSeq => filter.since_seq = map.next_value()?,
                        Field::Include(i) => filter.include[i] = map.next_value()?,
                    }
                }
                Ok(filter)
            }
        }
        d.deserialize_map(FilterVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filters_name_the_field() {
        let e = EventFilter::from_json(r#"{"nodes":["a"]}"#).unwrap_err();
        assert_eq!(e.field, "nodes");
        assert!(EventFilter::from_json(r#"{"event_types":["nope"]}"#).is_err());
        assert!(EventFilter::from_json(r#"{"min_severity":"loud"}"#).is_err());
        assert!(EventFilter::from_json("{not json").is_err());
    }

    #[test]
    fn errors_read_as_they_did() {
        let reason = |text: &str| EventFilter::from_json(text).unwrap_err().reason;
        assert_eq!(
            reason(r#"{"nodes":["a"]}"#),
            "unknown field `nodes`, expected one of `replica_ids`, `node_ids`, `instance_ids`, \
             `tables`, `shard_ids`, `resource_ids`, `query_ids`, `group_ids`, `event_types`, \
             `categories`, `min_severity`, `since_seq`, `include_lag_alerts`, \
             `include_status_changes`, `include_conflicts`, `include_health_changes`, \
             `include_failover_events`, `include_leader_elections`, `include_migrations`, \
             `include_cache_fusion`, `include_lock_events`, `include_recovery_events`, \
             `include_parallel_query`, `include_rebalance_events`, `include_shard_changes` at \
             line 1 column 8"
        );
        assert_eq!(reason(r#"{"event_types":["nope"]}"#), "unknown event type 'nope' at line 1 column 23");
        assert_eq!(
            reason(r#"{"min_severity":"loud"}"#),
            "unknown variant `loud`, expected one of `info`, `warning`, `error`, `critical` at line 1 column 22"
        );
        assert_eq!(reason(r#"{"node_ids":"x"}"#), "invalid type: string \"x\", expected a sequence at line 1 column 15");
        assert_eq!(reason(r#"{"since_seq":-1}"#), "invalid value: integer `-1`, expected u64 at line 1 column 15");
        assert_eq!(reason(r#"{"include_lag_alerts":3}"#), "invalid type: integer `3`, expected a boolean at line 1 column 23");
        assert_eq!(reason(r#"{"node_ids":[],"node_ids":[]}"#), "duplicate field `node_ids` at line 1 column 25");
        let e = EventFilter::from_json(r#"{"node_ids":[""]}"#).unwrap_err();
        assert_eq!((e.field.as_str(), e.reason.as_str()), ("node_ids", "ids must be 1 to 256 characters"));
    }

    #[test]
    fn null_is_absent_for_every_field() {
        let f = EventFilter::from_json(r#"{"replica_ids": null}"#).expect("null ids are absent");
        assert_eq!(f, EventFilter::default());
        let mut every = serde_json::Map::new();
        for field in Field::all() {
            every.insert(field.name().to_string(), serde_json::Value::Null);
        }
        let text = serde_json::Value::Object(every).to_string();
        assert_eq!(EventFilter::from_json(&text).expect("all null"), EventFilter::default());
    }

    #[test]
    fn a_filter_is_written_back_as_it_was_read() {
        let text = r#"{"group_ids":["g"],"replica_ids":["r1","r2"],"tables":["t"],"categories":["rac"],"event_types":["node_left","block_transfer"],"since_seq":4,"min_severity":"error","include_shard_changes":true,"include_lag_alerts":false,"node_ids":null}"#;
        let f = EventFilter::from_json(text).expect("valid");
        assert_eq!(
            serde_json::to_string(&f).expect("serializes"),
            r#"{"replica_ids":["r1","r2"],"tables":["t"],"group_ids":["g"],"event_types":["node_left","block_transfer"],"categories":["rac"],"min_severity":"error","since_seq":4,"include_lag_alerts":false,"include_shard_changes":true}"#
        );
        assert_eq!(serde_json::to_string(&EventFilter::default()).expect("serializes"), "{}");
        assert_eq!(f.include("include_lag_alerts"), Some(false));
        assert_eq!(f.include("include_conflicts"), None);
        assert_eq!(f.excluded_types().collect::<Vec<_>>(), vec![EventType::ReplicationLagAlert]);
    }
}
