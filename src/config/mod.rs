//! The typed configuration of a clusterd process: TOML text -> [`Config`], with defaults for every
//! field, environment overrides (`CLUSTERD_<SECTION>__<KEY>`) and validation that names the key, the
//! line and the rule that was broken.
//!
//! Every domain's section parses and validates now, even for domains whose actors come later, so a
//! config file written today keeps working when they arrive. The parts: `sections` (one struct per
//! TOML section and its defaults), `load` (text, files and environment -> `Config`), `keys` (each key
//! of a TOML document known and of the right type), `check` (the rules, and `ConfigError`).

mod check;
mod keys;
mod load;
mod sections;

pub use check::{check_peer_address, ConfigError, ConfigErrors};
pub use load::{ConfigSources, EMBEDDED_ORIGIN, ENV_PREFIX};
pub use sections::{
    ClusterConfig, EventsConfig, RacConfig, ReplicaConfig, ReplicationConfig, ServerConfig,
    ShardingConfig, StorageConfig, StorageEngine, WsConfig,
};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::ReplicationMode;

/// The text of `config/default.toml`, compiled in: `clusterd serve` with no `--config` runs it.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

/// One TOML section: its rules, and how its keys are checked one by one in a document.
pub(crate) trait Section: DeserializeOwned {
    /// The section's rules (beyond types and known keys): pushes every one that is broken.
    fn validate(&self, _errors: &mut Vec<ConfigError>) {}

    /// Checks each key of the section `name` of a document, pushing what is wrong.
    fn check_keys(name: &str, section: &toml::Table, errors: &mut Vec<ConfigError>) {
        keys::check_keys::<Self>(name, section, &[], None, errors);
    }
}

/// The sections, each a field of [`Config`] named as in TOML: a new domain's section is one line.
macro_rules! config_sections {
    ($($name:ident: $section:ty),* $(,)?) => {
        /// The whole configuration, one field per TOML section.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Config {
            $(pub $name: $section),*
        }

        impl Config {
            /// Every section's rules, in the order of the sections.
            fn validate_sections(&self, errors: &mut Vec<ConfigError>) {
                $(Section::validate(&self.$name, errors);)*
            }
        }

        /// The keys of section `name`, or `None` for an unknown section.
        fn section_fields(name: &str) -> Option<&'static [&'static str]> {
            match name {
                $(stringify!($name) => Some(keys::field_names::<$section>()),)*
                _ => None,
            }
        }

        /// Checks the keys of section `name` of a document; false for an unknown section.
        fn check_section(name: &str, section: &toml::Table, errors: &mut Vec<ConfigError>) -> bool {
            match name {
                $(stringify!($name) => <$section as Section>::check_keys(name, section, errors),)*
                _ => return false,
            }
            true
        }
    };
}

config_sections! {
    server: ServerConfig,
    storage: StorageConfig,
    events: EventsConfig,
    ws: WsConfig,
    cluster: ClusterConfig,
    replication: ReplicationConfig,
    rac: RacConfig,
    sharding: ShardingConfig,
}

impl Config {
    /// The defaults with nothing on disk (memory engine, no data directory): the usual start of a
    /// test or an embedded runtime.
    pub fn in_memory() -> Config {
        Config {
            storage: StorageConfig { data_dir: String::new(), engine: StorageEngine::Memory },
            ..Config::default()
        }
    }

    /// This config with no replication replicas, in `async` mode (the default `semi_sync` needs a
    /// replica to reach its quorum), so the primary ships its WAL to nobody.
    pub fn without_replicas(mut self) -> Config {
        self.replication.replicas = Vec::new();
        self.replication.mode = ReplicationMode::Async;
        self
    }

    /// The effective configuration as TOML, every field written out.
    pub fn to_toml_string(&self) -> String {
        // Invariant: every field is a string, number, bool, enum or a sequence/struct of those, all
        // of which TOML can express, so serialization cannot fail.
        toml::to_string(self).expect("Config always serializes to TOML")
    }
}

/// The unit tests' one way to try an input: load it as `check-config` does and compare the outcome.
#[cfg(test)]
mod check_input {
    use super::Config;

    /// Loads `input` (origin "test") with the environment `env`, validates it and applies the
    /// security check, as `check-config` does. `expected` is a substring of the error, or "" for
    /// a valid config.
    pub(super) fn check_env(input: &str, env: &[(&str, &str)], expected: &str) -> Option<Config> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let result = Config::load_text(input, "test", env).and_then(|(config, sources)| {
            let mut found = config.validate().err().map(|e| e.0).unwrap_or_default();
            found.extend(config.security_check().err());
            sources.report(found)?;
            Ok(config)
        });
        match (result, expected) {
            (Ok(config), "") => Some(config),
            (Ok(_), _) => panic!("expected an error containing {expected:?} for:\n{input}"),
            (Err(e), "") => panic!("expected a valid config, got: {e}\nfor:\n{input}"),
            (Err(e), _) => {
                let shown = e.to_string();
                assert!(shown.contains(expected), "error {shown:?} lacks {expected:?}");
                None
            }
        }
    }

    pub(super) fn check(input: &str, expected: &str) -> Option<Config> {
        check_env(input, &[], expected)
    }
}

#[cfg(test)]
mod tests {
    use super::check_input::check;
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(check("", ""), Some(Config::default()));
    }

    #[test]
    fn embedded_default_is_valid_and_matches_the_struct_defaults() {
        assert_eq!(check(EMBEDDED_DEFAULT, ""), Some(Config::default()));
        let loaded = Config::load(None, Vec::new()).unwrap();
        assert_eq!(loaded, Config::default());
    }

    #[test]
    fn effective_config_round_trips() {
        let mut config = Config::default();
        config.server.cors_allowed_origins = vec!["https://example.com".into()];
        let text = config.to_toml_string();
        assert_eq!(check(&text, ""), Some(config));
    }


    #[test]
    fn in_memory_keeps_nothing_on_disk_and_is_valid() {
        let config = Config::in_memory();
        assert_eq!(config.storage.durable_dir(), None);
        assert_eq!(config.storage.engine, StorageEngine::Memory);
        config.validate().unwrap();
        config.security_check().unwrap();
        // Only the storage differs from the defaults.
        assert_eq!(Config { storage: StorageConfig::default(), ..config }, Config::default());
    }

    #[test]
    fn without_replicas_is_valid_and_async() {
        let config = Config::in_memory().without_replicas();
        assert!(config.replication.replicas.is_empty());
        assert_eq!(config.replication.mode, ReplicationMode::Async);
        config.validate().unwrap();
        // The same without the change of mode is refused: semi_sync needs a replica.
        let mut semi_sync = config.clone();
        semi_sync.replication.mode = ReplicationMode::SemiSync;
        assert!(semi_sync.validate().is_err());
    }
}
