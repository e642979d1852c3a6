//! The typed configuration of a clusterd process: TOML text -> [`Config`], with defaults for every
//! field, environment overrides (`CLUSTERD_<SECTION>__<KEY>`) and validation that names the key, the
//! line and the rule that was broken.
//!
//! Every domain's section parses and validates now, even for domains whose actors come later, so a
//! config file written today keeps working when they arrive.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use crate::model::{ConflictStrategy, ReplicaMode, ReplicationMode};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The text of `config/default.toml`, compiled in: `clusterd serve` with no `--config` runs it.
pub const EMBEDDED_DEFAULT: &str = include_str!("../config/default.toml");

/// The whole configuration, one field per TOML section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub events: EventsConfig,
    pub ws: WsConfig,
    pub cluster: ClusterConfig,
    pub replication: ReplicationConfig,
    pub rac: RacConfig,
    pub sharding: ShardingConfig,
}


#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `ADDR:PORT` the HTTP server listens on.
    pub bind: String,
    /// Empty: no auth. Otherwise every `/api`, `/graphql` and WebSocket route needs it as a bearer token.
    pub auth_token: String,
    /// Lets a non-loopback bind start without a token (an explicit, logged decision).
    pub allow_unauthenticated: bool,
    pub allow_fault_injection: bool,
    pub max_body_bytes: usize,
    /// 0: one worker per core.
    pub workers: usize,
    /// Origins allowed by CORS. Empty: CORS off (no CORS headers are sent). `["*"]`: any origin.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:8080".to_string(),
            auth_token: String::new(),
            allow_unauthenticated: false,
            allow_fault_injection: true,
            max_body_bytes: 1_048_576,
            workers: 0,
            cors_allowed_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageEngine {
    Disk,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// "" (or engine = "memory"): nothing survives a restart.
    pub data_dir: String,
    pub engine: StorageEngine,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { data_dir: "./data".to_string(), engine: StorageEngine::Disk }
    }
}

impl StorageConfig {
    /// The directory durable state lives in, or `None` when nothing is to survive a restart.
    pub fn durable_dir(&self) -> Option<std::path::PathBuf> {
        if self.engine == StorageEngine::Memory || self.data_dir.is_empty() {
            None
        } else {
            Some(std::path::PathBuf::from(&self.data_dir))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events kept for replay (`since_seq`, `GET /api/v1/events`).
    pub retained: usize,
    /// Per-subscriber bound before `lagged`.
    pub session_queue: usize,
    pub wal_position_interval_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig { retained: 10_000, session_queue: 1024, wal_position_interval_ms: 250 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    pub heartbeat_interval_ms: u64,
    pub client_timeout_ms: u64,
    pub max_frame_bytes: usize,
    pub max_sessions: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            heartbeat_interval_ms: 5000,
            client_timeout_ms: 15_000,
            max_frame_bytes: 65_536,
            max_sessions: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Nodes hosted by this process (Raft voters once Raft arrives).
    pub nodes: Vec<String>,
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    pub tick_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: vec!["node-1".into(), "node-2".into(), "node-3".into()],
            election_tick: 10,
            heartbeat_tick: 2,
            tick_ms: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    pub id: String,
    #[serde(default = "default_replica_mode")]
    pub mode: ReplicaMode,
}

fn default_replica_mode() -> ReplicaMode {
    ReplicaMode::Async
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    pub primary: String,
    pub mode: ReplicationMode,
    pub sync_quorum: usize,
    pub sync_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    pub lag_alert_bytes: u64,
    pub conflict_strategy: ConflictStrategy,
    pub replicas: Vec<ReplicaConfig>,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            primary: "primary".to_string(),
            mode: ReplicationMode::SemiSync,
            sync_quorum: 1,
            sync_timeout_ms: 2000,
            heartbeat_interval_ms: 500,
            heartbeat_timeout_ms: 3000,
            lag_alert_bytes: 262_144,
            conflict_strategy: ConflictStrategy::LastWriterWins,
            replicas: vec![
                ReplicaConfig { id: "replica-001".into(), mode: ReplicaMode::Sync },
                ReplicaConfig { id: "replica-002".into(), mode: ReplicaMode::Async },
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RacConfig {
    pub instances: Vec<String>,
    pub block_size: usize,
    pub blocks: u64,
    /// Share of accesses from one instance that moves mastership, in (0, 1].
    pub remaster_threshold: f64,
    pub remaster_window_ms: u64,
}

impl Default for RacConfig {
    fn default() -> Self {
        RacConfig {
            instances: (1..=4).map(|i| format!("instance-{i}")).collect(),
            block_size: 8192,
            blocks: 65_536,
            remaster_threshold: 0.8,
            remaster_window_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardingConfig {
    pub default_shards: usize,
}

impl Default for ShardingConfig {
    fn default() -> Self {
        ShardingConfig { default_shards: 4 }
    }
}

/// The origin named in errors about [`EMBEDDED_DEFAULT`].
pub const EMBEDDED_ORIGIN: &str = "embedded default";

/// The prefix of environment overrides: `CLUSTERD_<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "CLUSTERD_";

/// The origin of an error found in a [`Config`] value with no record of where its keys came from;
/// [`ConfigSources::locate`] replaces it with the file, variable or flag.
const UNLOCATED: &str = "configuration";

/// Longest node, replica or instance id, so that ids stay usable as URL path segments and log fields.
const MAX_ID_LEN: usize = 64;

/// A configuration that cannot be used: where it came from, which key, and which rule it breaks.
///
/// Displayed as `origin:line: key.path: rule` (the line and the key path are left out when not
/// known), the shape editors and terminals already turn into links.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_error(.origin, .path, .line, .rule))]
pub struct ConfigError {
    /// A file path, [`EMBEDDED_ORIGIN`], an environment variable or a command-line flag.
    pub origin: String,
    /// The key path, e.g. `server.bind` or `replication.replicas[1].mode`; empty for syntax errors.
    pub path: String,
    /// 1-based line in the origin file, when the origin is a file and the key is written in it.
    pub line: Option<usize>,
    /// The rule that was broken, e.g. "must be between 1 and 1000000".
    pub rule: String,
}

fn render_error(origin: &str, path: &str, line: &Option<usize>, rule: &str) -> String {
    let mut out = origin.to_string();
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
    }
    if !path.is_empty() {
        out.push_str(&format!(": {path}"));
    }
    out.push_str(&format!(": {rule}"));
    out
}

impl ConfigError {
    /// An error about `path` whose origin is not known yet (see [`ConfigSources::locate`]).
    fn at(path: impl Into<String>, rule: impl Into<String>) -> Self {
        ConfigError {
            origin: UNLOCATED.to_string(),
            path: path.into(),
            line: None,
            rule: rule.into(),
        }
    }
}

/// Where the keys of a loaded [`Config`] came from, so that errors found after loading
/// (validation, the security check, command-line flags) still name the file, variable or flag and
/// the line.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    origin: String,
    lines: HashMap<String, usize>,
    /// (key path, origin) of every value set after the file, in the order applied.
    overrides: Vec<(String, String)>,
}

impl ConfigSources {
    /// The file path or [`EMBEDDED_ORIGIN`].
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Records that `path` (e.g. `server.bind`) was set by `origin` (e.g. `--bind`) after loading.
    pub fn record_override(&mut self, path: impl Into<String>, origin: impl Into<String>) {
        self.overrides.push((path.into(), origin.into()));
    }

    /// Fills in the origin and line of an error from [`Config::validate`] or
    /// [`Config::security_check`]: the last override of the key (or of a key containing it) wins,
    /// else the file and the line the key is written on, if it is.
    pub fn locate(&self, mut err: ConfigError) -> ConfigError {
        let overridden = self.overrides.iter().rev().find(|(p, _)| path_covers(p, &err.path));
        match overridden {
            Some((_, origin)) => {
                err.origin = origin.clone();
                err.line = None;
            }
            None => {
                err.origin = self.origin.clone();
                err.line = err.line.or_else(|| self.lines.get(&err.path).copied());
            }
        }
        err
    }
}

/// Whether the key at `prefix` contains the key at `path` (`replication.replicas` contains
/// `replication.replicas[1].mode`).
fn path_covers(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

impl Config {
    /// Parses and validates TOML text; `origin` names it in errors. No environment overrides.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let (config, sources) = Self::load_text(text, origin, std::iter::empty())?;
        config.validate().map_err(|e| sources.locate(e))?;
        Ok(config)
    }

    /// Reads the file at `path` (or [`EMBEDDED_DEFAULT`] when `None`), applies the
    /// `CLUSTERD_<SECTION>__<KEY>` overrides found in `env`, and validates the result.
    ///
    /// [`Config::security_check`] is not applied: it is a serve-time rule.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (config, sources) = Self::load_with_sources(path, env)?;
        config.validate().map_err(|e| sources.locate(e))?;
        Ok(config)
    }

    /// Like [`Config::load`] but without validation, returning where each key came from: for
    /// callers that change the config further (command-line flags) before validating it, and want
    /// the errors located with [`ConfigSources::locate`].
    pub fn load_with_sources(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, ConfigSources), ConfigError> {
        match path {
            None => Self::load_text(EMBEDDED_DEFAULT, EMBEDDED_ORIGIN, env),
            Some(path) => {
                let origin = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    origin: origin.clone(),
                    path: String::new(),
                    line: None,
                    rule: format!("cannot read the file: {e}"),
                })?;
                Self::load_text(&text, &origin, env)
            }
        }
    }

    fn load_text(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, ConfigSources), ConfigError> {
        let syntax_error = |e: toml::de::Error| ConfigError {
            origin: origin.to_string(),
            path: String::new(),
            line: e.span().map(|span| line_of(text, span.start)),
            rule: format!("invalid TOML: {}", e.message().trim()),
        };
        // Parsed twice: once with spans, only to know the line of every key, and once into a plain
        // table that the environment can be merged into before deserializing.
        let spanned = toml::de::DeTable::parse(text).map_err(syntax_error)?;
        let mut sources = ConfigSources {
            origin: origin.to_string(),
            lines: HashMap::new(),
            overrides: Vec::new(),
        };
        collect_lines(spanned.get_ref(), "", text, &mut sources.lines);
        let mut table: toml::Table = toml::from_str(text).map_err(syntax_error)?;

        apply_env(&mut table, env, &mut sources)?;

        let mut errors = Vec::new();
        check_document(&table, &mut errors);
        // The table iterates in key order, not file order: report the error that comes first in
        // the file, as a reader fixing errors top to bottom expects.
        let first = errors
            .into_iter()
            .map(|e| sources.locate(e))
            .min_by_key(|e| e.line.unwrap_or(usize::MAX));
        if let Some(err) = first {
            return Err(err);
        }
        // Every key was checked above, so this can only fail on something the checks do not know
        // about; report it rather than assume.
        let config = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| sources.locate(ConfigError::at("", e.message().trim())))?;
        Ok((config, sources))
    }

    /// The effective configuration as TOML, every field written out.
    pub fn to_toml_string(&self) -> String {
        // Invariant: every field is a string, number, bool, enum or a sequence/struct of those, all
        // of which TOML can express, so serialization cannot fail.
        toml::to_string(self).expect("Config always serializes to TOML")
    }

    /// Rejects impossible values, naming the key and the rule. The first error found is returned,
    /// with origin "configuration"; [`ConfigSources::locate`] adds the file and line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.events.validate()?;
        self.ws.validate()?;
        self.cluster.validate()?;
        self.replication.validate()?;
        self.rac.validate()?;
        self.sharding.validate()?;
        Ok(())
    }

    /// The serve-time rule kept apart from [`Config::validate`]: a non-loopback bind needs a token
    /// or an explicit `allow_unauthenticated = true`, since anything that can reach the port could
    /// otherwise drive the cluster (including fault injection).
    pub fn security_check(&self) -> Result<(), ConfigError> {
        let addr = parse_bind(&self.server.bind)?;
        // `to_canonical` so that an IPv4-mapped 127.x address counts as the loopback it is.
        let loopback = addr.ip().to_canonical().is_loopback();
        if !loopback && self.server.auth_token.is_empty() && !self.server.allow_unauthenticated {
            return Err(ConfigError::at(
                "server.bind",
                "refusing to serve unauthenticated on a non-loopback address; set \
                 server.auth_token or server.allow_unauthenticated = true",
            ));
        }
        Ok(())
    }
}

// ----- parsing helpers ---------------------------------------------------------------------------

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|b| **b == b'\n').count() + 1
}

fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Records the line of every key and array element, by key path.
fn collect_lines(
    table: &toml::de::DeTable<'_>,
    prefix: &str,
    text: &str,
    out: &mut HashMap<String, usize>,
) {
    for (key, value) in table.iter() {
        let path = join_path(prefix, key.get_ref());
        out.entry(path.clone()).or_insert_with(|| line_of(text, key.span().start));
        collect_value_lines(value, &path, text, out);
    }
}

fn collect_value_lines(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    path: &str,
    text: &str,
    out: &mut HashMap<String, usize>,
) {
    match value.get_ref() {
        toml::de::DeValue::Table(table) => collect_lines(table, path, text, out),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                out.entry(item_path.clone()).or_insert_with(|| line_of(text, item.span().start));
                collect_value_lines(item, &item_path, text, out);
            }
        }
        _ => {}
    }
}

/// The field names `T` deserializes, in declaration order, read from what serde's derive passes
/// to `deserialize_struct`, so the lists of expected keys can never drift from the structs.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
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
fn section_fields(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "server" => field_names::<ServerConfig>(),
        "storage" => field_names::<StorageConfig>(),
        "events" => field_names::<EventsConfig>(),
        "ws" => field_names::<WsConfig>(),
        "cluster" => field_names::<ClusterConfig>(),
        "replication" => field_names::<ReplicationConfig>(),
        "rac" => field_names::<RacConfig>(),
        "sharding" => field_names::<ShardingConfig>(),
        _ => return None,
    })
}

fn unknown_rule(what: &str, key: &str, expected: &[&str]) -> String {
    format!("unknown {what} `{key}`; expected one of {}", expected.join(", "))
}

/// Merges the `CLUSTERD_<SECTION>__<KEY>` variables of `env` into `table`.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    sources: &mut ConfigSources,
) -> Result<(), ConfigError> {
    // Sorted so that the outcome (and the error reported first) does not depend on the order the
    // process environment happens to list variables in.
    let mut vars: Vec<(String, String)> =
        env.into_iter().filter(|(name, _)| name.starts_with(ENV_PREFIX)).collect();
    vars.sort();
    // Only to tell string keys from others: a token or id that happens to look like a number
    // must still arrive as a string.
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();

    for (var, raw) in vars {
        let error = |path: String, rule: String| ConfigError {
            origin: var.clone(),
            path,
            line: None,
            rule,
        };
        let rest = &var[ENV_PREFIX.len()..];
        let Some((section, key)) = rest.split_once("__") else {
            return Err(error(
                String::new(),
                format!("not a config override; expected {ENV_PREFIX}<SECTION>__<KEY>, e.g. CLUSTERD_SERVER__BIND"),
            ));
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let Some(keys) = section_fields(&section) else {
            let rule = unknown_rule("section", &section, field_names::<Config>());
            return Err(error(section, rule));
        };
        let path = format!("{section}.{key}");
        if !keys.contains(&key.as_str()) {
            return Err(error(path, unknown_rule("key", &key, keys)));
        }
        let is_string =
            defaults.get(&section).and_then(|s| s.get(&key)).is_some_and(|v| v.is_str());
        let value = env_value(&raw, is_string);
        let section_table =
            table.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        // A section the file wrote as a non-table value is reported against the file by the
        // checks that follow; there is nothing to merge into.
        if let toml::Value::Table(section_table) = section_table {
            section_table.insert(key, value);
            sources.record_override(path, var.clone());
        }
    }
    Ok(())
}

/// An environment value as TOML when it parses as one (numbers, bools, arrays, quoted strings),
/// otherwise as the raw string; for string keys, unquoted text is always taken as it is.
fn env_value(raw: &str, is_string: bool) -> toml::Value {
    match raw.parse::<toml::Value>() {
        Ok(toml::Value::String(s)) => toml::Value::String(s),
        Ok(value) if !is_string => value,
        _ => toml::Value::String(raw.to_string()),
    }
}

/// Checks every key of the document for being known and of the right type, one key at a time so
/// that each error names its key. Errors are pushed unlocated.
fn check_document(doc: &toml::Table, errors: &mut Vec<ConfigError>) {
    let mut nested = Vec::new();
    for (name, value) in doc {
        let toml::Value::Table(section) = value else { continue };
        match name.as_str() {
            "server" => check_keys::<ServerConfig>(name, section, &[], None, errors),
            "storage" => check_keys::<StorageConfig>(name, section, &[], None, errors),
            "events" => check_keys::<EventsConfig>(name, section, &[], None, errors),
            "ws" => check_keys::<WsConfig>(name, section, &[], None, errors),
            "cluster" => check_keys::<ClusterConfig>(name, section, &[], None, errors),
            "replication" => check_replication(section, errors),
            "rac" => check_keys::<RacConfig>(name, section, &[], None, errors),
            "sharding" => check_keys::<ShardingConfig>(name, section, &[], None, errors),
            _ => continue,
        }
        // Checked key by key above: a bad key must not be reported again as a bad section.
        nested.push(name.as_str());
    }
    check_keys::<Config>("", doc, &nested, None, errors);
}

fn check_replication(section: &toml::Table, errors: &mut Vec<ConfigError>) {
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
fn check_keys<T: DeserializeOwned>(
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

// ----- validation --------------------------------------------------------------------------------

fn parse_bind(bind: &str) -> Result<SocketAddr, ConfigError> {
    bind.parse().map_err(|_| {
        ConfigError::at(
            "server.bind",
            format!("must be an IP address and port such as 127.0.0.1:8080 (got `{bind}`)"),
        )
    })
}

fn at_least(path: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::at(path, format!("must be at least {min} (got {value})")));
    }
    Ok(())
}

fn between(path: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::at(
            path,
            format!("must be between {min} and {max} (got {value})"),
        ));
    }
    Ok(())
}

fn greater_than(path: &str, value: u64, other_path: &str, other: u64) -> Result<(), ConfigError> {
    if value <= other {
        return Err(ConfigError::at(
            path,
            format!("must be greater than {other_path} ({other}) (got {value})"),
        ));
    }
    Ok(())
}

/// A conservative alphabet, so that an id never needs quoting or escaping wherever it is shown or
/// used as a name.
fn check_id(path: &str, id: &str) -> Result<(), ConfigError> {
    if id.is_empty() {
        return Err(ConfigError::at(path, "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(ConfigError::at(path, format!("must be at most {MAX_ID_LEN} characters")));
    }
    if let Some(c) =
        id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ConfigError::at(
            path,
            format!("`{id}` contains {c:?}; ids may only use A-Z a-z 0-9 . _ -"),
        ));
    }
    Ok(())
}

/// Checks each id and that none repeats; `path_of(i)` is the key path of the i-th id.
fn check_ids<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    path_of: impl Fn(usize) -> String,
) -> Result<(), ConfigError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, id) in ids.into_iter().enumerate() {
        check_id(&path_of(i), id)?;
        if let Some(first) = seen.insert(id, i) {
            return Err(ConfigError::at(
                path_of(i),
                format!("duplicate id `{id}` (also at {})", path_of(first)),
            ));
        }
    }
    Ok(())
}

impl ServerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        parse_bind(&self.bind)?;
        at_least("server.max_body_bytes", self.max_body_bytes as u64, 1)?;
        if self.workers > 1024 {
            return Err(ConfigError::at(
                "server.workers",
                format!(
                    "must be between 0 and 1024, 0 meaning one per core (got {})",
                    self.workers
                ),
            ));
        }
        for (i, origin) in self.cors_allowed_origins.iter().enumerate() {
            if !(origin == "*" || origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(ConfigError::at(
                    format!("server.cors_allowed_origins[{i}]"),
                    format!("must be \"*\" or start with http:// or https:// (got `{origin}`)"),
                ));
            }
        }
        Ok(())
    }
}

impl EventsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        between("events.retained", self.retained as u64, 1, 10_000_000)?;
        between("events.session_queue", self.session_queue as u64, 1, 1_000_000)?;
        at_least("events.wal_position_interval_ms", self.wal_position_interval_ms, 1)?;
        Ok(())
    }
}

impl WsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        // Upper bounds keep durations far from overflow and catch a unit mistake (s for ms).
        between("ws.heartbeat_interval_ms", self.heartbeat_interval_ms, 1, 3_600_000)?;
        between("ws.client_timeout_ms", self.client_timeout_ms, 1, 86_400_000)?;
        greater_than(
            "ws.client_timeout_ms",
            self.client_timeout_ms,
            "ws.heartbeat_interval_ms",
            self.heartbeat_interval_ms,
        )?;
        between("ws.max_frame_bytes", self.max_frame_bytes as u64, 256, 64 << 20)?;
        between("ws.max_sessions", self.max_sessions as u64, 1, 1_000_000)?;
        Ok(())
    }
}

impl ClusterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_ids(self.nodes.iter().map(String::as_str), |i| format!("cluster.nodes[{i}]"))?;
        between("cluster.heartbeat_tick", self.heartbeat_tick as u64, 1, 1_000)?;
        between("cluster.election_tick", self.election_tick as u64, 1, 10_000)?;
        greater_than(
            "cluster.election_tick",
            self.election_tick as u64,
            "cluster.heartbeat_tick",
            self.heartbeat_tick as u64,
        )?;
        between("cluster.tick_ms", self.tick_ms, 1, 60_000)?;
        Ok(())
    }
}

impl ReplicationConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.primary.is_empty() {
            return Err(ConfigError::at("replication.primary", "must not be empty"));
        }
        check_ids(self.replicas.iter().map(|r| r.id.as_str()), |i| {
            format!("replication.replicas[{i}].id")
        })?;
        if let Some(i) = self.replicas.iter().position(|r| r.id == self.primary) {
            return Err(ConfigError::at(
                format!("replication.replicas[{i}].id"),
                format!("must differ from replication.primary (`{}`)", self.primary),
            ));
        }
        if self.mode == ReplicationMode::SemiSync
            && (self.sync_quorum == 0 || self.sync_quorum > self.replicas.len())
        {
            return Err(ConfigError::at(
                "replication.sync_quorum",
                format!(
                    "must be between 1 and the number of replicas ({}) when mode = \"semi_sync\" (got {})",
                    self.replicas.len(),
                    self.sync_quorum
                ),
            ));
        }
        at_least("replication.sync_timeout_ms", self.sync_timeout_ms, 1)?;
        at_least("replication.heartbeat_interval_ms", self.heartbeat_interval_ms, 1)?;
        greater_than(
            "replication.heartbeat_timeout_ms",
            self.heartbeat_timeout_ms,
            "replication.heartbeat_interval_ms",
            self.heartbeat_interval_ms,
        )?;
        Ok(())
    }
}

impl RacConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_ids(self.instances.iter().map(String::as_str), |i| format!("rac.instances[{i}]"))?;
        if !(512..=65_536).contains(&self.block_size) || !self.block_size.is_power_of_two() {
            return Err(ConfigError::at(
                "rac.block_size",
                format!("must be a power of two between 512 and 65536 (got {})", self.block_size),
            ));
        }
        at_least("rac.blocks", self.blocks, 1)?;
        // Written so that NaN fails too.
        if !(self.remaster_threshold > 0.0 && self.remaster_threshold <= 1.0) {
            return Err(ConfigError::at(
                "rac.remaster_threshold",
                format!("must be greater than 0 and at most 1 (got {})", self.remaster_threshold),
            ));
        }
        at_least("rac.remaster_window_ms", self.remaster_window_ms, 1)?;
        Ok(())
    }
}

impl ShardingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        between("sharding.default_shards", self.default_shards as u64, 1, 4096)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `input` (origin "test") with the environment `env`, validates it and applies the
    /// security check, as `check-config` does. `expected` is a substring of the error, or "" for
    /// a valid config.
    fn check_env(input: &str, env: &[(&str, &str)], expected: &str) -> Option<Config> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let result = Config::load_text(input, "test", env).and_then(|(config, sources)| {
            config.validate().map_err(|e| sources.locate(e))?;
            config.security_check().map_err(|e| sources.locate(e))?;
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

    fn check(input: &str, expected: &str) -> Option<Config> {
        check_env(input, &[], expected)
    }

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
    fn first_error_in_file_order_is_reported() {
        check("[ws]\nbogus = 1\n[cluster]\nbogus = 2\n", "test:2: ws.bogus");
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

    #[test]
    fn syntax_errors_name_the_line() {
        check("[server]\nbind = \n", "test:2: invalid TOML");
        check("[server]\nbind = \"a\"\nbind = \"b\"\n", "test:3: invalid TOML");
    }

    #[test]
    fn server_rules() {
        check(
            "[server]\nbind = \"localhost:8080\"\n",
            "test:2: server.bind: must be an IP address and port",
        );
        check("[server]\nbind = \"127.0.0.1\"\n", "server.bind: must be an IP address and port");
        check("[server]\nbind = \"[::1]:8080\"\n", "");
        check("[server]\nmax_body_bytes = 0\n", "server.max_body_bytes: must be at least 1");
        check("[server]\nworkers = 1025\n", "server.workers: must be between 0 and 1024");
        check("[server]\nworkers = 1024\n", "");
        check(
            "[server]\ncors_allowed_origins = [\"https://a.example\", \"ftp://b\"]\n",
            "test:2: server.cors_allowed_origins[1]: must be \"*\" or start with http:// or https://",
        );
        check("[server]\ncors_allowed_origins = [\"*\", \"http://localhost:3000\"]\n", "");
    }

    #[test]
    fn security_rule() {
        let refused = "server.bind: refusing to serve unauthenticated on a non-loopback address; set server.auth_token or server.allow_unauthenticated = true";
        check("[server]\nbind = \"0.0.0.0:8080\"\n", refused);
        check("[server]\nbind = \"[::]:8080\"\n", refused);
        check("[server]\nbind = \"10.1.2.3:8080\"\n", "test:2: server.bind: refusing");
        check("[server]\nbind = \"0.0.0.0:8080\"\nauth_token = \"s3cret\"\n", "");
        check("[server]\nbind = \"0.0.0.0:8080\"\nallow_unauthenticated = true\n", "");
        check("[server]\nbind = \"127.8.9.10:8080\"\n", "");
        check("[server]\nbind = \"[::ffff:127.0.0.1]:8080\"\n", "");
        // Separate from validate: the config itself is well formed.
        let config = Config::from_toml_str("[server]\nbind = \"0.0.0.0:8080\"\n", "test").unwrap();
        assert!(config.security_check().is_err());
    }

    #[test]
    fn storage_without_a_directory_is_allowed() {
        check("[storage]\nengine = \"disk\"\ndata_dir = \"\"\n", "");
        check("[storage]\nengine = \"memory\"\n", "");
    }

    #[test]
    fn events_rules() {
        check(
            "[events]\nretained = 0\n",
            "test:2: events.retained: must be between 1 and 10000000",
        );
        check("[events]\nretained = 10000001\n", "events.retained: must be between 1 and 10000000");
        check("[events]\nretained = 10000000\n", "");
        check(
            "[events]\nsession_queue = 0\n",
            "events.session_queue: must be between 1 and 1000000",
        );
        check(
            "[events]\nsession_queue = 1000001\n",
            "events.session_queue: must be between 1 and 1000000",
        );
        check(
            "[events]\nwal_position_interval_ms = 0\n",
            "events.wal_position_interval_ms: must be at least 1",
        );
    }

    #[test]
    fn ws_rules() {
        check("[ws]\nheartbeat_interval_ms = 0\n", "ws.heartbeat_interval_ms: must be between 1 and 3600000");
        check(
            "[ws]\nclient_timeout_ms = 5000\n",
            "test:2: ws.client_timeout_ms: must be greater than ws.heartbeat_interval_ms (5000)",
        );
        // The broken key is not in the file: no line, but still the file as origin.
        check(
            "[ws]\nheartbeat_interval_ms = 20000\n",
            "test: ws.client_timeout_ms: must be greater than",
        );
        check("[ws]\nmax_frame_bytes = 255\n", "ws.max_frame_bytes: must be between 256 and 67108864");
        check("[ws]\nmax_frame_bytes = 256\n", "");
        check("[ws]\nmax_sessions = 0\n", "ws.max_sessions: must be between 1 and 1000000");
    }

    #[test]
    fn cluster_rules() {
        check("[cluster]\nnodes = [\"a\", \"\"]\n", "test:2: cluster.nodes[1]: must not be empty");
        check(
            "[cluster]\nnodes = [\n  \"a\",\n  \"a\",\n]\n",
            "test:4: cluster.nodes[1]: duplicate id `a` (also at cluster.nodes[0])",
        );
        check("[cluster]\nnodes = [\"node 1\"]\n", "cluster.nodes[0]: `node 1` contains ' '");
        check("[cluster]\nnodes = [\"nödé\"]\n", "cluster.nodes[0]: `nödé` contains 'ö'");
        let long = "n".repeat(65);
        check(
            &format!("[cluster]\nnodes = [\"{long}\"]\n"),
            "cluster.nodes[0]: must be at most 64 characters",
        );
        check(&format!("[cluster]\nnodes = [\"{}\"]\n", "n".repeat(64)), "");
        check("[cluster]\nnodes = [\"A.b_c-9\"]\n", "");
        check(
            "[cluster]\nelection_tick = 2\n",
            "cluster.election_tick: must be greater than cluster.heartbeat_tick (2)",
        );
        check("[cluster]\nheartbeat_tick = 0\n", "cluster.heartbeat_tick: must be between 1 and 1000");
        check("[cluster]\ntick_ms = 0\n", "cluster.tick_ms: must be between 1 and 60000");
        check("[cluster]\ntick_ms = 600000\n", "cluster.tick_ms: must be between 1 and 60000");
        check("[cluster]\nelection_tick = 100000\n", "cluster.election_tick: must be between 1 and 10000");
    }

    #[test]
    fn replication_rules() {
        check("[replication]\nprimary = \"\"\n", "test:2: replication.primary: must not be empty");
        check(
            "[[replication.replicas]]\nid = \"r1\"\n[[replication.replicas]]\nid = \"r1\"\n",
            "test:4: replication.replicas[1].id: duplicate id `r1` (also at replication.replicas[0].id)",
        );
        check(
            "[[replication.replicas]]\nid = \"\"\n",
            "replication.replicas[0].id: must not be empty",
        );
        check(
            "[[replication.replicas]]\nid = \"r/1\"\n",
            "replication.replicas[0].id: `r/1` contains '/'",
        );
        check(
            "[replication]\nprimary = \"p\"\n[[replication.replicas]]\nid = \"p\"\n",
            "test:4: replication.replicas[0].id: must differ from replication.primary (`p`)",
        );
        check("[replication]\nsync_quorum = 3\n", "replication.sync_quorum: must be between 1 and the number of replicas (2) when mode = \"semi_sync\"");
        check("[replication]\nsync_quorum = 0\n", "replication.sync_quorum: must be between 1");
        check("[replication]\nsync_quorum = 2\n", "");
        check("[replication]\nmode = \"async\"\nsync_quorum = 0\n", "");
        check("[replication]\nmode = \"sync\"\nreplicas = []\n", "");
        check(
            "[replication]\nreplicas = []\n",
            "replication.sync_quorum: must be between 1 and the number of replicas (0)",
        );
        check(
            "[replication]\nsync_timeout_ms = 0\n",
            "replication.sync_timeout_ms: must be at least 1",
        );
        check(
            "[replication]\nheartbeat_interval_ms = 0\n",
            "replication.heartbeat_interval_ms: must be at least 1",
        );
        check("[replication]\nheartbeat_timeout_ms = 500\n", "replication.heartbeat_timeout_ms: must be greater than replication.heartbeat_interval_ms (500)");
    }

    #[test]
    fn rac_rules() {
        check("[rac]\ninstances = [\"i\", \"i\"]\n", "rac.instances[1]: duplicate id `i`");
        check("[rac]\ninstances = [\"i!\"]\n", "rac.instances[0]: `i!` contains '!'");
        for bad in [0, 256, 1000, 131_072] {
            check(
                &format!("[rac]\nblock_size = {bad}\n"),
                "rac.block_size: must be a power of two between 512 and 65536",
            );
        }
        for good in [512, 4096, 65_536] {
            check(&format!("[rac]\nblock_size = {good}\n"), "");
        }
        check("[rac]\nblocks = 0\n", "rac.blocks: must be at least 1");
        for bad in ["0.0", "-0.5", "1.01", "nan"] {
            check(
                &format!("[rac]\nremaster_threshold = {bad}\n"),
                "rac.remaster_threshold: must be greater than 0 and at most 1",
            );
        }
        check("[rac]\nremaster_threshold = 1.0\n", "");
        check("[rac]\nremaster_window_ms = 0\n", "rac.remaster_window_ms: must be at least 1");
    }

    #[test]
    fn sharding_rules() {
        check(
            "[sharding]\ndefault_shards = 0\n",
            "test:2: sharding.default_shards: must be between 1 and 4096",
        );
        check(
            "[sharding]\ndefault_shards = 4097\n",
            "sharding.default_shards: must be between 1 and 4096",
        );
        check("[sharding]\ndefault_shards = 4096\n", "");
    }

    #[test]
    fn env_overrides_the_file() {
        let config = check_env(
            "[server]\nbind = \"127.0.0.1:1\"\n",
            &[
                ("CLUSTERD_SERVER__BIND", "127.0.0.1:9000"),
                ("CLUSTERD_SERVER__WORKERS", "4"),
                ("CLUSTERD_SERVER__AUTH_TOKEN", "12345"),
                ("CLUSTERD_CLUSTER__NODES", r#"["a","b"]"#),
                ("CLUSTERD_STORAGE__ENGINE", "memory"),
                ("CLUSTERD_STORAGE__DATA_DIR", "./other"),
                ("CLUSTERD_RAC__REMASTER_THRESHOLD", "0.5"),
                ("CLUSTERD_WS__MAX_SESSIONS", "7"),
                ("CLUSTERD_REPLICATION__REPLICAS", r#"[{ id = "x", mode = "sync" }]"#),
                ("UNRELATED", "ignored"),
            ],
            "",
        )
        .unwrap();
        assert_eq!(config.server.bind, "127.0.0.1:9000");
        assert_eq!(config.server.workers, 4);
        assert_eq!(config.server.auth_token, "12345");
        assert_eq!(config.cluster.nodes, ["a", "b"]);
        assert_eq!(config.storage.engine, StorageEngine::Memory);
        assert_eq!(config.storage.data_dir, "./other");
        assert_eq!(config.rac.remaster_threshold, 0.5);
        assert_eq!(config.ws.max_sessions, 7);
        assert_eq!(
            config.replication.replicas,
            [ReplicaConfig { id: "x".into(), mode: ReplicaMode::Sync }]
        );
    }

    #[test]
    fn env_errors_name_the_variable() {
        check_env(
            "",
            &[("CLUSTERD_SERVER__BNID", "1")],
            "CLUSTERD_SERVER__BNID: server.bnid: unknown key `bnid`; expected one of bind",
        );
        check_env(
            "",
            &[("CLUSTERD_SEVER__BIND", "1")],
            "CLUSTERD_SEVER__BIND: sever: unknown section `sever`",
        );
        check_env(
            "",
            &[("CLUSTERD_SERVER_BIND", "1")],
            "CLUSTERD_SERVER_BIND: not a config override",
        );
        check_env(
            "",
            &[("CLUSTERD_SERVER__WORKERS", "many")],
            "CLUSTERD_SERVER__WORKERS: server.workers: invalid type",
        );
        check_env(
            "",
            &[("CLUSTERD_EVENTS__RETAINED", "0")],
            "CLUSTERD_EVENTS__RETAINED: events.retained: must be between 1",
        );
        check_env(
            "",
            &[("CLUSTERD_SERVER__BIND", "0.0.0.0:80")],
            "CLUSTERD_SERVER__BIND: server.bind: refusing",
        );
        check_env(
            "",
            &[("CLUSTERD_REPLICATION__REPLICAS", r#"[{ id = "x" }, { id = "x" }]"#)],
            "CLUSTERD_REPLICATION__REPLICAS: replication.replicas[1].id: duplicate id",
        );
    }

    #[test]
    fn flags_are_located_as_overrides() {
        let (mut config, mut sources) = Config::load_with_sources(None, Vec::new()).unwrap();
        config.server.bind = "nonsense".into();
        sources.record_override("server.bind", "--bind");
        let err = sources.locate(config.validate().unwrap_err());
        assert_eq!(err.to_string(), "--bind: server.bind: must be an IP address and port such as 127.0.0.1:8080 (got `nonsense`)");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err =
            Config::load(Some(Path::new("/nonexistent/clusterd.toml")), Vec::new()).unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/clusterd.toml: cannot read the file"),
            "{err}"
        );
    }
}
