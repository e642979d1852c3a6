//! The key-by-key check of a TOML document against the config structs: every section and key
//! known, every value of the right type, each error naming its key path.

use serde::de::DeserializeOwned;

use super::check::ConfigError;
use super::sections::{ReplicaConfig, ReplicationConfig};
use super::Config;

/// `prefix.key`, or `key` at the top level.
pub(super) fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The field names `T` deserializes, in declaration order, read from what serde's derive passes
/// to `deserialize_struct`, so the lists of expected keys can never drift from the structs.
pub(super) fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor};

    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Self::Error::custom("field names probed"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // The probe always errors once it has the names; the error carries nothing.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// The keys of a section, or `None` for an unknown section.
pub(super) fn section_fields(section: &str) -> Option<&'static [&'static str]> {
    super::section_fields(section)
}

pub(super) fn unknown_rule(what: &str, key: &str, expected: &[&str]) -> String {
    format!("unknown {what} `{key}`; expected one of {}", expected.join(", "))
}

/// Checks every key of the document for being known and of the right type, one key at a time so
/// that each error names its key. Errors are pushed unlocated.
pub(super) fn check_document(doc: &toml::Table, errors: &mut Vec<ConfigError>) {
    let mut nested = Vec::new();
    for (name, value) in doc {
        let toml::Value::Table(section) = value else { continue };
        if !super::check_section(name, section, errors) {
            continue;
        }
        // Checked key by key above: a bad key must not be reported again as a bad section.
        nested.push(name.as_str());
    }
    check_keys::<Config>("", doc, &nested, None, errors);
}

/// The replication section's keys: its replicas are checked one table at a time.
pub(super) fn check_replication(section: &toml::Table, errors: &mut Vec<ConfigError>) {
    let mut nested: &[&str] = &[];
    if let Some(toml::Value::Array(items)) = section.get("replicas") {
        if items.iter().all(|item| item.is_table()) {
            nested = &["replicas"];
            for (i, item) in items.iter().enumerate() {
                let toml::Value::Table(replica) = item else { continue };
                let path = format!("replication.replicas[{i}]");
                // `id` is required, so each other key is tried beside a stand-in id.
                let filler = ("id", toml::Value::String("stand-in".to_string()));
                check_keys::<ReplicaConfig>(&path, replica, &[], Some(filler), errors);
                if !replica.contains_key("id") {
                    errors.push(ConfigError::at(path, "missing key `id`"));
                }
            }
        }
    }
    check_keys::<ReplicationConfig>("replication", section, nested, None, errors);
}

/// Checks each key of `table` against `T`: known, and deserializable on its own. Keys in `skip`
/// were checked deeper already. `filler` is a required key added beside each key tried.
pub(super) fn check_keys<T: DeserializeOwned>(
    prefix: &str,
    table: &toml::Table,
    skip: &[&str],
    filler: Option<(&str, toml::Value)>,
    errors: &mut Vec<ConfigError>,
) {
    let fields = field_names::<T>();
    let what = if prefix.is_empty() { "section" } else { "key" };
    for (key, value) in table {
        let path = join_path(prefix, key);
        if !fields.contains(&key.as_str()) {
            errors.push(ConfigError::at(path, unknown_rule(what, key, fields)));
            continue;
        }
        if skip.contains(&key.as_str()) {
            continue;
        }
        let mut single = toml::Table::new();
        if let Some((filler_key, filler_value)) = &filler {
            single.insert(filler_key.to_string(), filler_value.clone());
        }
        single.insert(key.clone(), value.clone());
        if let Err(e) = T::deserialize(toml::Value::Table(single)) {
            errors.push(ConfigError::at(path, e.message().trim()));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::check_input::check;

    #[test]
    fn unknown_key_names_key_line_and_expected_keys() {
        check(
            "[server]\nbind = \"127.0.0.1:1\"\nbnid = \"x\"\n",
            "test:3: server.bnid: unknown key `bnid`; expected one of bind, auth_token, allow_unauthenticated",
        );
        check(
            "[sever]\n",
            "test:1: sever: unknown section `sever`; expected one of server, storage",
        );
        check(
            "[replication]\n[[replication.replicas]]\nid = \"a\"\n[[replication.replicas]]\nid = \"b\"\nmoed = \"sync\"\n",
            "test:6: replication.replicas[1].moed: unknown key `moed`; expected one of id, mode",
        );
        check("server.bnid = 1\n", "test:1: server.bnid: unknown key");
    }

    #[test]
    fn wrong_types_name_key_and_line() {
        check(
            "[server]\n\nworkers = \"many\"\n",
            "test:3: server.workers: invalid type: string \"many\"",
        );
        check("[server]\nworkers = -1\n", "test:2: server.workers: invalid value");
        check("server = 5\n", "test:1: server: invalid type");
        check("[storage]\nengine = \"tape\"\n", "test:2: storage.engine: unknown variant `tape`");
        check("[replication]\nreplicas = [1]\n", "test:2: replication.replicas: invalid type");
        check(
            "[[replication.replicas]]\nmode = \"sync\"\n",
            "replication.replicas[0]: missing key `id`",
        );
        check(
            "[[replication.replicas]]\nid = \"r\"\nmode = \"semi_sync\"\n",
            "test:3: replication.replicas[0].mode: unknown variant",
        );
        check("[rac]\nremaster_threshold = 1\n", "");
    }

}
