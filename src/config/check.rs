//! The rules a loaded [`Config`] must keep, and [`ConfigError`], which names the origin, the key,
//! the line and the rule that was broken ([`ConfigErrors`]: every one of them).

use std::collections::HashMap;
use std::net::SocketAddr;

use super::sections::{
    ClusterConfig, EventsConfig, RacConfig, ReplicationConfig, ServerConfig, ShardingConfig, StorageConfig,
    WsConfig,
};
use super::{Config, Section};
use crate::model::{ReplicaMode, ReplicationMode};

/// The origin of an error found in a [`Config`] value with no record of where its keys came from;
/// [`ConfigSources::locate`] replaces it with the file, variable or flag.
///
/// [`ConfigSources::locate`]: super::ConfigSources::locate
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
    /// A file path, [`EMBEDDED_ORIGIN`](super::EMBEDDED_ORIGIN), an environment variable or a
    /// command-line flag.
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
    /// An error about `path` whose origin is not known yet (see [`UNLOCATED`]).
    pub(super) fn at(path: impl Into<String>, rule: impl Into<String>) -> Self {
        ConfigError {
            origin: UNLOCATED.to_string(),
            path: path.into(),
            line: None,
            rule: rule.into(),
        }
    }
}

/// Every error a configuration has, one per line when displayed, so a reader fixes them all in
/// one pass rather than one run at a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Keeps the error of a rule that failed, so that every rule is tried.
pub(super) trait Keep {
    fn keep(&mut self, rule: Result<(), ConfigError>);
}

impl Keep for Vec<ConfigError> {
    fn keep(&mut self, rule: Result<(), ConfigError>) {
        if let Err(e) = rule {
            self.push(e);
        }
    }
}

impl Section for StorageConfig {}

impl Config {
    /// Rejects impossible values, naming the key and the rule: every error found, in the order
    /// of the sections, with origin "configuration";
    /// [`ConfigSources::report`](super::ConfigSources::report) adds the file and line.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        self.validate_sections(&mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The serve-time rule kept apart from [`Config::validate`]: a non-loopback bind needs a token
    /// or an explicit `allow_unauthenticated = true`, since anything that can reach the port could
    /// otherwise drive the cluster (including fault injection).
    pub fn security_check(&self) -> Result<(), ConfigError> {
        // A bind that does not parse is `validate`'s error, reported once.
        let Ok(addr) = parse_bind(&self.server.bind) else { return Ok(()) };
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
    errors: &mut Vec<ConfigError>,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, id) in ids.into_iter().enumerate() {
        errors.keep(check_id(&path_of(i), id));
        if let Some(first) = seen.insert(id, i) {
            errors.push(ConfigError::at(
                path_of(i),
                format!("duplicate id `{id}` (also at {})", path_of(first)),
            ));
        }
    }
}

impl Section for ServerConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        errors.keep(parse_bind(&self.bind).map(drop));
        errors.keep(at_least("server.max_body_bytes", self.max_body_bytes as u64, 1));
        if self.workers > 1024 {
            errors.push(ConfigError::at(
                "server.workers",
                format!(
                    "must be between 0 and 1024, 0 meaning one per core (got {})",
                    self.workers
                ),
            ));
        }
        for (i, origin) in self.cors_allowed_origins.iter().enumerate() {
            if !(origin == "*" || origin.starts_with("http://") || origin.starts_with("https://")) {
                errors.push(ConfigError::at(
                    format!("server.cors_allowed_origins[{i}]"),
                    format!("must be \"*\" or start with http:// or https:// (got `{origin}`)"),
                ));
            }
        }
    }
}

impl Section for EventsConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        errors.keep(between("events.retained", self.retained as u64, 1, 10_000_000));
        errors.keep(between("events.session_queue", self.session_queue as u64, 1, 1_000_000));
        errors.keep(at_least("events.wal_position_interval_ms", self.wal_position_interval_ms, 1));
    }
}

impl Section for WsConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        // Upper bounds keep durations far from overflow and catch a unit mistake (s for ms).
        errors.keep(between("ws.heartbeat_interval_ms", self.heartbeat_interval_ms, 1, 3_600_000));
        errors.keep(between("ws.client_timeout_ms", self.client_timeout_ms, 1, 86_400_000));
        errors.keep(greater_than(
            "ws.client_timeout_ms",
            self.client_timeout_ms,
            "ws.heartbeat_interval_ms",
            self.heartbeat_interval_ms,
        ));
        errors.keep(between("ws.max_frame_bytes", self.max_frame_bytes as u64, 256, 64 << 20));
        errors.keep(between("ws.max_sessions", self.max_sessions as u64, 1, 1_000_000));
    }
}

impl Section for ClusterConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        check_ids(self.nodes.iter().map(String::as_str), |i| format!("cluster.nodes[{i}]"), errors);
        errors.keep(between("cluster.heartbeat_tick", self.heartbeat_tick as u64, 1, 1_000));
        errors.keep(between("cluster.election_tick", self.election_tick as u64, 1, 10_000));
        errors.keep(greater_than(
            "cluster.election_tick",
            self.election_tick as u64,
            "cluster.heartbeat_tick",
            self.heartbeat_tick as u64,
        ));
        errors.keep(between("cluster.tick_ms", self.tick_ms, 1, 60_000));
        // A hosted node that is not one of `nodes` joins a running group: it starts empty and
        // takes part once a member's process is asked to add it (POST /api/v1/cluster/nodes).
        check_ids(self.host.iter().map(String::as_str), |i| format!("cluster.host[{i}]"), errors);
        let hosted = self.hosted();
        for (id, address) in &self.peers {
            let path = format!("cluster.peers.{id}");
            if !self.nodes.contains(id) {
                errors.push(ConfigError::at(path, format!("`{id}` is not one of cluster.nodes")));
            } else if hosted.contains(id) {
                errors.push(ConfigError::at(path, format!("`{id}` is hosted by this process (cluster.host); only other processes' nodes have a peer address")));
            } else if let Err(reason) = check_peer_address(address) {
                errors.push(ConfigError::at(path, reason));
            }
        }
        for id in self.nodes.iter().filter(|n| !hosted.contains(n) && !self.peers.contains_key(*n)) {
            errors.push(ConfigError::at("cluster.peers", format!("`{id}` is not hosted here (cluster.host) and has no address in cluster.peers")));
        }
    }
}

/// A peer process's address: `host:port`, the host a name or an IP (IPv6 in brackets).
pub fn check_peer_address(address: &str) -> Result<(), String> {
    let bad = || format!("`{address}` is not host:port");
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && (host.parse::<std::net::Ipv4Addr>().is_ok()
            || host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
            || host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(()),
        _ => Err(bad()),
    }
}

impl Section for ReplicationConfig {
    fn check_keys(_name: &str, section: &toml::Table, errors: &mut Vec<ConfigError>) {
        super::keys::check_replication(section, errors)
    }

    fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.primary.is_empty() {
            errors.push(ConfigError::at("replication.primary", "must not be empty"));
        }
        check_ids(self.replicas.iter().map(|r| r.id.as_str()), |i| format!("replication.replicas[{i}].id"), errors);
        if let Some(i) = self.replicas.iter().position(|r| r.id == self.primary) {
            errors.push(ConfigError::at(
                format!("replication.replicas[{i}].id"),
                format!("must differ from replication.primary (`{}`)", self.primary),
            ));
        }
        // Only sync replicas count toward the quorum (PostgreSQL's `ANY k (...)` counts only the
        // standbys it names): a larger quorum could never be reached.
        let sync_replicas = self.replicas.iter().filter(|r| r.mode == ReplicaMode::Sync).count();
        if self.mode == ReplicationMode::SemiSync && !(1..=sync_replicas).contains(&self.sync_quorum) {
            errors.push(ConfigError::at(
                "replication.sync_quorum",
                format!(
                    "must be between 1 and the number of replicas with mode = \"sync\" ({sync_replicas}) when mode = \"semi_sync\"; async replicas never count (got {})",
                    self.sync_quorum
                ),
            ));
        }
        errors.keep(at_least("replication.sync_timeout_ms", self.sync_timeout_ms, 1));
        errors.keep(at_least("replication.heartbeat_interval_ms", self.heartbeat_interval_ms, 1));
        errors.keep(greater_than(
            "replication.heartbeat_timeout_ms",
            self.heartbeat_timeout_ms,
            "replication.heartbeat_interval_ms",
            self.heartbeat_interval_ms,
        ));
    }
}

impl Section for RacConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        check_ids(self.instances.iter().map(String::as_str), |i| format!("rac.instances[{i}]"), errors);
        if !(512..=65_536).contains(&self.block_size) || !self.block_size.is_power_of_two() {
            errors.push(ConfigError::at(
                "rac.block_size",
                format!("must be a power of two between 512 and 65536 (got {})", self.block_size),
            ));
        }
        errors.keep(at_least("rac.blocks", self.blocks, 1));
        // Written so that NaN fails too.
        if !(self.remaster_threshold > 0.0 && self.remaster_threshold <= 1.0) {
            errors.push(ConfigError::at(
                "rac.remaster_threshold",
                format!("must be greater than 0 and at most 1 (got {})", self.remaster_threshold),
            ));
        }
        errors.keep(at_least("rac.remaster_window_ms", self.remaster_window_ms, 1));
        errors.keep(at_least("rac.cache_blocks", self.cache_blocks as u64, 1));
    }
}

impl Section for ShardingConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        errors.keep(between("sharding.default_shards", self.default_shards as u64, 1, 4096));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::check_input::check;
    use crate::config::Config;

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
        let three = "[cluster]\nnodes = [\"n1\", \"n2\", \"n3\"]\n";
        check(&format!("{three}host = [\"n1\"]\npeers = {{ n2 = \"127.0.0.1:8082\", n3 = \"db-3.example:8083\" }}\n"), "");
        check(&format!("{three}host = [\"n4\"]\npeers = {{ n1 = \"a:1\", n2 = \"a:2\", n3 = \"a:3\" }}\n"), "");
        check(&format!("{three}host = [\"n4\"]\n"), "cluster.peers: `n1` is not hosted here");
        check(&format!("{three}host = [\"n1\"]\npeers = {{ n2 = \"a:2\" }}\n"), "cluster.peers: `n3` is not hosted here (cluster.host) and has no address in cluster.peers");
        check(&format!("{three}host = [\"n1\"]\npeers = {{ n1 = \"a:1\", n2 = \"a:2\", n3 = \"a:3\" }}\n"), "cluster.peers.n1: `n1` is hosted by this process");
        check(&format!("{three}host = [\"n1\"]\npeers = {{ n2 = \"a:2\", n3 = \"a\" }}\n"), "cluster.peers.n3: `a` is not host:port");
        check(&format!("{three}host = [\"n1\"]\npeers = {{ n2 = \"a:2\", n3 = \"a:0\" }}\n"), "cluster.peers.n3: `a:0` is not host:port");
        check(&format!("{three}peers = {{ n2 = \"a:2\" }}\n"), "cluster.peers.n2: `n2` is hosted by this process");
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
        let unreachable = "replication.sync_quorum: must be between 1 and the number of replicas with mode = \"sync\" (1) when mode = \"semi_sync\"";
        check("[replication]\nsync_quorum = 3\n", unreachable);
        // Two replicas, one of them sync: a quorum of two would need the async one.
        check("[replication]\nsync_quorum = 2\n", unreachable);
        check("[replication]\nsync_quorum = 0\n", "replication.sync_quorum: must be between 1");
        check(
            "[replication]\nsync_quorum = 2\n[[replication.replicas]]\nid = \"a\"\nmode = \"sync\"\n[[replication.replicas]]\nid = \"b\"\nmode = \"sync\"\n",
            "",
        );
        check(
            "[replication]\n[[replication.replicas]]\nid = \"a\"\nmode = \"async\"\n",
            "with mode = \"sync\" (0) when mode = \"semi_sync\"",
        );
        check("[replication]\nmode = \"async\"\nsync_quorum = 0\n", "");
        check("[replication]\nmode = \"sync\"\nreplicas = []\n", "");
        check(
            "[replication]\nreplicas = []\n",
            "replication.sync_quorum: must be between 1 and the number of replicas with mode = \"sync\" (0)",
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
        check("[rac]\ncache_blocks = 0\n", "rac.cache_blocks: must be at least 1");
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

}
