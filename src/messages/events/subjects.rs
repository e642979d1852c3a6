//! The ids an event concerns, by kind. Each domain's events add theirs; filters and the registry's
//! index only ever see them through [`Subjects`], so neither knows any payload layout.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! subject_kinds {
    ($($kind:ident => $field:literal),* $(,)?) => {
        /// The kinds of id an event can concern. A new kind is one line here: subjects, filters
        /// and the registry's index are all kept per kind.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum SubjectKind { $($kind),* }

        impl SubjectKind {
            pub const ALL: &'static [SubjectKind] = &[$(SubjectKind::$kind),*];
            const FIELDS: &'static [&'static str] = &[$($field),*];
        }
    };
}

subject_kinds! {
    Replica => "replica_ids",
    Node => "node_ids",
    Instance => "instance_ids",
    Table => "tables",
    Shard => "shard_ids",
    Resource => "resource_ids",
    Query => "query_ids",
    Group => "group_ids",
}

impl SubjectKind {
    pub const COUNT: usize = SubjectKind::ALL.len();

    /// The field name in `subjects` and in filters.
    pub fn field(self) -> &'static str {
        Self::FIELDS[self.index()]
    }

    /// The kind whose field is `name`.
    pub fn from_field(name: &str) -> Option<SubjectKind> {
        SubjectKind::ALL.iter().copied().find(|k| k.field() == name)
    }

    /// Position in [`SubjectKind::ALL`], for per-kind tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One list of ids per [`SubjectKind`], in the order of [`SubjectKind::ALL`].
pub type IdsByKind = [Vec<String>; SubjectKind::COUNT];

/// The ids an event concerns, by kind. Serialized as an object of the non-empty kinds, in
/// [`SubjectKind`] order (`{"node_ids":["node-2"]}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subjects {
    ids: IdsByKind,
}

impl Subjects {
    pub fn of(&self, kind: SubjectKind) -> &[String] {
        &self.ids[kind.index()]
    }

    /// Adds `id` under `kind`, once; an empty id concerns nothing and is left out.
    pub fn add(&mut self, kind: SubjectKind, id: &str) {
        if id.is_empty() {
            return;
        }
        let ids = &mut self.ids[kind.index()];
        if !ids.iter().any(|existing| existing == id) {
            ids.push(id.to_string());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ids.iter().all(Vec::is_empty)
    }
}

/// Serializes per-kind id lists as an object, leaving out the empty kinds. Filters use it too.
pub(crate) fn serialize_ids<M: SerializeMap>(map: &mut M, ids: &IdsByKind) -> Result<(), M::Error> {
    for kind in SubjectKind::ALL {
        let list = &ids[kind.index()];
        if !list.is_empty() {
            map.serialize_entry(kind.field(), list)?;
        }
    }
    Ok(())
}

impl Serialize for Subjects {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        serialize_ids(&mut map, &self.ids)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Subjects {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SubjectsVisitor;
        impl<'de> Visitor<'de> for SubjectsVisitor {
            type Value = Subjects;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of id lists by kind")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Subjects, A::Error> {
                let mut subjects = Subjects::default();
                while let Some(key) = map.next_key::<String>()? {
                    match SubjectKind::from_field(&key) {
                        Some(kind) => {
                            subjects.ids[kind.index()] =
                                map.next_value::<Option<Vec<String>>>()?.unwrap_or_default()
                        }
                        // Kinds a later version adds are not this version's business.
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(subjects)
            }
        }
        d.deserialize_map(SubjectsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_serialize_non_empty_kinds_in_kind_order_and_read_back() {
        let mut s = Subjects::default();
        assert_eq!(serde_json::to_string(&s).expect("serializes"), "{}");
        s.add(SubjectKind::Group, "g");
        s.add(SubjectKind::Replica, "r1");
        s.add(SubjectKind::Replica, "r1");
        s.add(SubjectKind::Node, "");
        let text = serde_json::to_string(&s).expect("serializes");
        assert_eq!(text, r#"{"replica_ids":["r1"],"group_ids":["g"]}"#);
        assert_eq!(serde_json::from_str::<Subjects>(&text).expect("reads back"), s);
    }

    #[test]
    fn every_kind_has_its_own_field() {
        for kind in SubjectKind::ALL {
            assert_eq!(SubjectKind::from_field(kind.field()), Some(*kind));
        }
    }
}
