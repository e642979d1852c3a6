//! Loading a [`Config`]: TOML text or a file (or the embedded default), then the
//! `CLUSTERD_<SECTION>__<KEY>` environment overrides, with [`ConfigSources`] remembering where each
//! key came from so that every error names its file, variable or flag and its line.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::check::{ConfigError, ConfigErrors};
use super::keys::{check_document, field_names, join_path, section_fields, unknown_rule};
use super::{Config, EMBEDDED_DEFAULT};

/// The origin named in errors about [`EMBEDDED_DEFAULT`].
pub const EMBEDDED_ORIGIN: &str = "embedded default";

/// The prefix of environment overrides: `CLUSTERD_<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "CLUSTERD_";

/// Where the keys of a loaded [`Config`] came from, so that errors found after loading
/// (validation, the security check, command-line flags) still name the file, variable or flag and
/// the line.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    origin: String,
    lines: HashMap<String, usize>,
    /// (key path, origin) of every value set after the file, in the order applied.
    overrides: Vec<(String, String)>,
    /// The keys refused while loading (unknown, of the wrong type, bad overrides), located. Their
    /// values were left out, so that the rest could still be checked; [`ConfigSources::report`]
    /// reports them.
    refused: Vec<ConfigError>,
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

    /// Every error of a config loaded from these sources: the keys refused while loading, and
    /// `found` (from [`Config::validate`], [`Config::security_check`], command-line flags), each
    /// located, in file order (errors with no line last). A rule about a refused key is not
    /// reported: the key was left at its default.
    pub fn report(&self, found: impl IntoIterator<Item = ConfigError>) -> Result<(), ConfigErrors> {
        let all = self.every_error(found);
        if all.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(all))
        }
    }

    /// What [`ConfigSources::report`] reports, in its order.
    fn every_error(&self, found: impl IntoIterator<Item = ConfigError>) -> Vec<ConfigError> {
        let mut all = self.refused.clone();
        for e in found {
            let e = self.locate(e);
            if !self.refused.iter().any(|r| !r.path.is_empty() && path_covers(&r.path, &e.path)) {
                all.push(e);
            }
        }
        // Stable: errors on one line, or with none, stay in the order they were found.
        all.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        all
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
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        let (config, sources) = Self::load_text(text, origin, std::iter::empty())?;
        sources.report(config.validate().err().map(|e| e.0).unwrap_or_default())?;
        Ok(config)
    }

    /// Reads the file at `path` (or [`EMBEDDED_DEFAULT`] when `None`), applies the
    /// `CLUSTERD_<SECTION>__<KEY>` overrides found in `env`, and validates the result: every
    /// error, located.
    ///
    /// [`Config::security_check`] is not applied: it is a serve-time rule.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let (config, sources) = Self::load_with_sources(path, env)?;
        sources.report(config.validate().err().map(|e| e.0).unwrap_or_default())?;
        Ok(config)
    }

    /// Like [`Config::load`] but without validation, returning where each key came from: for
    /// callers that change the config further (command-line flags) before validating it. Keys
    /// refused while loading are left at their defaults, so the rest can be validated too; the
    /// caller must pass what it finds to [`ConfigSources::report`], which reports those keys
    /// with it. `Err` only when nothing could be read (no file, a TOML syntax error).
    pub fn load_with_sources(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, ConfigSources), ConfigErrors> {
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

    /// Parses `text`, merges the overrides of `env` and checks every key, without validating;
    /// `origin` names the text in errors. Refused keys are taken out and kept in the sources.
    pub(super) fn load_text(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, ConfigSources), ConfigErrors> {
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
            refused: Vec::new(),
        };
        collect_lines(spanned.get_ref(), "", text, &mut sources.lines);
        let mut table: toml::Table = toml::from_str(text).map_err(syntax_error)?;

        // Overrides that name no key are located at their variable already.
        let mut refused = apply_env(&mut table, env, &mut sources);
        let mut unlocated = Vec::new();
        check_document(&table, &mut unlocated);
        // Each refused key is taken out, so the rest deserializes and its rules can be checked
        // too; a key that cannot be taken out alone (an array item) stops it there.
        let mut separable = true;
        for e in unlocated {
            separable &= remove_key(&mut table, &e.path);
            refused.push(sources.locate(e));
        }
        sources.refused = refused;
        if !separable {
            return Err(ConfigErrors(sources.every_error([])));
        }
        // Every key was checked above, so this can only fail on something the checks do not know
        // about; report it rather than assume.
        match Config::deserialize(toml::Value::Table(table)) {
            Ok(config) => Ok((config, sources)),
            Err(e) => {
                let unknown = ConfigError::at("", e.message().trim());
                Err(ConfigErrors(sources.every_error([unknown])))
            }
        }
    }
}

/// One step of a key path: a key of a table, or an item of an array.
enum Step<'a> {
    Key(&'a str),
    Item(usize),
}

/// Removes the key at `path` (`server.bnid`, `replication.replicas[1].mode`) from `table`: false
/// if the path does not end in a key found there.
fn remove_key(table: &mut toml::Table, path: &str) -> bool {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let mut pieces = part.split('[');
        steps.push(Step::Key(pieces.next().unwrap_or_default()));
        for item in pieces {
            match item.strip_suffix(']').and_then(|i| i.parse().ok()) {
                Some(i) => steps.push(Step::Item(i)),
                None => return false,
            }
        }
    }
    let mut root = toml::Value::Table(std::mem::take(table));
    let removed = remove_at(&mut root, &steps);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    removed
}

fn remove_at(value: &mut toml::Value, steps: &[Step<'_>]) -> bool {
    match (steps, value) {
        ([Step::Key(key)], toml::Value::Table(t)) => t.remove(*key).is_some(),
        ([Step::Key(key), rest @ ..], toml::Value::Table(t)) => t.get_mut(*key).is_some_and(|v| remove_at(v, rest)),
        ([Step::Item(i), rest @ ..], toml::Value::Array(items)) if !rest.is_empty() => {
            items.get_mut(*i).is_some_and(|v| remove_at(v, rest))
        }
        _ => false,
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|b| **b == b'\n').count() + 1
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

/// Merges the `CLUSTERD_<SECTION>__<KEY>` variables of `env` into `table`; what names no key is
/// refused, each error located at its variable.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    sources: &mut ConfigSources,
) -> Vec<ConfigError> {
    // Sorted so that the outcome (and the order errors are reported in) does not depend on the
    // order the process environment happens to list variables in.
    let mut vars: Vec<(String, String)> =
        env.into_iter().filter(|(name, _)| name.starts_with(ENV_PREFIX)).collect();
    vars.sort();
    // Only to tell string keys from others: a token or id that happens to look like a number
    // must still arrive as a string.
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();

    let mut errors = Vec::new();
    for (var, raw) in vars {
        let error = |path: String, rule: String| ConfigError {
            origin: var.clone(),
            path,
            line: None,
            rule,
        };
        let rest = &var[ENV_PREFIX.len()..];
        let Some((section, key)) = rest.split_once("__") else {
            errors.push(error(
                String::new(),
                format!("not a config override; expected {ENV_PREFIX}<SECTION>__<KEY>, e.g. CLUSTERD_SERVER__BIND"),
            ));
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let Some(keys) = section_fields(&section) else {
            let rule = unknown_rule("section", &section, field_names::<Config>());
            errors.push(error(section, rule));
            continue;
        };
        let path = format!("{section}.{key}");
        if !keys.contains(&key.as_str()) {
            errors.push(error(path, unknown_rule("key", &key, keys)));
            continue;
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
    errors
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::check_input::{check, check_env};
    use crate::config::{Config, ReplicaConfig, StorageEngine};
    use crate::model::ReplicaMode;

    #[test]
    fn syntax_errors_name_the_line() {
        check("[server]\nbind = \n", "test:2: invalid TOML");
        check("[server]\nbind = \"a\"\nbind = \"b\"\n", "test:3: invalid TOML");
    }

    #[test]
    fn every_error_is_reported_in_file_order() {
        check("[ws]\nbogus = 1\n[cluster]\nbogus = 2\n", "test:2: ws.bogus: unknown key `bogus`; expected one of heartbeat_interval_ms, client_timeout_ms, max_frame_bytes, max_sessions\ntest:4: cluster.bogus");
        // Refused keys are left out, and the rest is still checked against its rules.
        check(
            "[events]\nretained = 0\nbogus = 1\n[ws]\nmax_sessions = \"all\"\n[rac]\nblocks = 0\n",
            "test:2: events.retained: must be between 1 and 10000000 (got 0)\ntest:3: events.bogus: unknown key",
        );
        let err = Config::from_toml_str(
            "[events]\nretained = 0\nbogus = 1\n[ws]\nmax_sessions = \"all\"\n[rac]\nblocks = 0\n",
            "test",
        )
        .unwrap_err();
        let shown: Vec<String> = err.0.iter().map(|e| format!("{} {} {}", e.line.unwrap_or(0), e.path, e.rule)).collect();
        assert_eq!(shown.len(), 4, "{shown:?}");
        assert!(shown[0].starts_with("2 events.retained must be between"), "{shown:?}");
        assert!(shown[1].starts_with("3 events.bogus unknown key"), "{shown:?}");
        assert!(shown[2].starts_with("5 ws.max_sessions invalid type"), "{shown:?}");
        assert!(shown[3].starts_with("7 rac.blocks must be at least 1"), "{shown:?}");
        // A rule about a refused key (left at its default) is not reported: only the type of
        // client_timeout_ms, not that its default is below the heartbeat interval.
        let err = Config::from_toml_str("[ws]\nclient_timeout_ms = \"x\"\nheartbeat_interval_ms = 20000\n", "test").unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(err.to_string().starts_with("test:2: ws.client_timeout_ms: invalid type"), "{err}");
        // An array item that cannot be left out alone stops the check at the keys.
        check("[[replication.replicas]]\nmode = \"sync\"\n[events]\nretained = 0\n", "replication.replicas[0]: missing key `id`");
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
        let err = sources.report(config.validate().unwrap_err().0).unwrap_err();
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
