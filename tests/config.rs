//! The config files shipped under `config/` and the `clusterd` binary's config-facing command line
//! (`check-config`, `serve` refusing bad configs, `--version`), run as a real process.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clusterd::config::{Config, StorageEngine, EMBEDDED_DEFAULT};

use common::clusterd_command;

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let Output { status, stdout, stderr } = cmd.output().expect("run clusterd");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into(),
        String::from_utf8_lossy(&stderr).into(),
    )
}

fn temp_config(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp file");
    file.write_all(text.as_bytes()).expect("write temp config");
    file
}

fn load(path: &Path) -> Config {
    Config::load(Some(path), Vec::new())
        .unwrap_or_else(|e| panic!("{} is invalid: {e}", path.display()))
}

#[test]
fn every_shipped_config_validates() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(config_dir()).expect("read config/") {
        let path = entry.expect("config/ entry").path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            let config = load(&path);
            config
                .security_check()
                .unwrap_or_else(|e| panic!("{} fails the security check: {e}", path.display()));
            seen.push(path.file_name().unwrap_or_default().to_string_lossy().into_owned());
        }
    }
    seen.sort();
    assert_eq!(seen, ["default.toml", "production.toml", "rac-large.toml", "single-node.toml"]);
}

#[test]
fn shipped_configs_say_what_they_claim() {
    let default = load(&config_dir().join("default.toml"));
    assert_eq!(default, Config::default());
    assert_eq!(
        std::fs::read_to_string(config_dir().join("default.toml")).unwrap(),
        EMBEDDED_DEFAULT
    );

    let single = load(&config_dir().join("single-node.toml"));
    assert_eq!(single.cluster.nodes.len(), 1);
    assert_eq!(single.replication.replicas.len(), 1);
    assert_eq!(single.storage.engine, StorageEngine::Memory);

    let rac = load(&config_dir().join("rac-large.toml"));
    assert_eq!(rac.rac.instances.len(), 8);
    assert!(rac.rac.blocks > default.rac.blocks);

    let production = load(&config_dir().join("production.toml"));
    assert_eq!(production.server.bind, "0.0.0.0:8080");
    assert!(!production.server.auth_token.is_empty());
    assert_eq!(production.storage.data_dir, "/var/lib/clusterd");
    assert!(!production.server.allow_fault_injection);
}

#[test]
fn check_config_rejects_an_unknown_key_naming_it_and_its_line() {
    let file = temp_config("[server]\nbind = \"127.0.0.1:8080\"\nbnid = \"127.0.0.1:9090\"\n");
    let (code, stdout, stderr) =
        run(clusterd_command().arg("check-config").arg("--config").arg(file.path()));
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(stdout.is_empty(), "nothing printed on stdout on error: {stdout}");
    let expected = format!("{}:3: server.bnid: unknown key `bnid`", file.path().display());
    assert!(stderr.contains(&expected), "stderr {stderr:?} lacks {expected:?}");
}

#[test]
fn check_config_rejects_an_impossible_value_naming_the_rule() {
    let file = temp_config("[events]\n\nretained = 0\n");
    let (code, _, stderr) = run(clusterd_command().arg("check-config").arg("--config").arg(file.path()));
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(stderr.contains(":3: events.retained: must be between 1 and 10000000"), "{stderr}");
}

/// A file breaking five rules: an unknown key, a value of the wrong type, and three impossible
/// values (one of them a quorum the sync replicas cannot reach), each on its own line.
const FIVE_ERRORS: &str = "\
[server]
workers = 5000
bnid = \"x\"
[events]
retained = \"many\"
[ws]
max_sessions = 0
[replication]
sync_quorum = 2
";

/// The lines `error: <file>:<line>: <key>: <rule>` a run printed for [`FIVE_ERRORS`], in file
/// order, or a panic naming the one missing.
fn assert_every_error_reported(file: &Path, stderr: &str) {
    let file = file.display();
    let expected = [
        format!("error: {file}:2: server.workers: must be between 0 and 1024"),
        format!("error: {file}:3: server.bnid: unknown key `bnid`"),
        format!("error: {file}:5: events.retained: invalid type: string \"many\""),
        format!("error: {file}:7: ws.max_sessions: must be between 1 and 1000000"),
        format!("error: {file}:9: replication.sync_quorum: must be between 1 and the number of replicas with mode = \"sync\" (1)"),
    ];
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), expected.len(), "one line per error: {stderr}");
    for (line, expected) in errors.iter().zip(&expected) {
        assert!(line.starts_with(expected.as_str()), "{line:?} is not {expected:?}; all: {stderr}");
    }
}

#[test]
fn check_config_reports_every_error_with_its_key_line_and_rule() {
    let file = temp_config(FIVE_ERRORS);
    let (code, stdout, stderr) = run(clusterd_command().arg("check-config").arg("--config").arg(file.path()));
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(stdout.is_empty(), "nothing printed on stdout on error: {stdout}");
    assert_every_error_reported(file.path(), &stderr);
}

#[test]
fn serve_reports_every_error_of_a_bad_config_too() {
    let file = temp_config(FIVE_ERRORS);
    let (code, _, stderr) = run(clusterd_command().arg("serve").arg("--config").arg(file.path()));
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert_every_error_reported(file.path(), &stderr);
    assert!(stderr.contains("refusing to start"), "{stderr}");
}

#[test]
fn check_config_prints_the_effective_config() {
    let file = temp_config("[server]\nworkers = 3\n");
    let (code, stdout, stderr) = run(clusterd_command()
        .env("CLUSTERD_SHARDING__DEFAULT_SHARDS", "9")
        .arg("check-config")
        .arg("--config")
        .arg(file.path()));
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let printed = Config::from_toml_str(&stdout, "stdout").expect("the output is a valid config");
    let mut expected = Config::default();
    expected.server.workers = 3;
    expected.sharding.default_shards = 9;
    assert_eq!(printed, expected);
}

#[test]
fn check_config_refuses_unauthenticated_non_loopback() {
    let file = temp_config("[server]\nbind = \"0.0.0.0:8080\"\nauth_token = \"\"\n");
    let (code, stdout, stderr) =
        run(clusterd_command().arg("check-config").arg("--config").arg(file.path()));
    assert_eq!(code, Some(1), "stdout: {stdout}");
    assert!(
        stderr.contains(
            "refusing to serve unauthenticated on a non-loopback address; \
             set server.auth_token or server.allow_unauthenticated = true"
        ),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_bad_configs_with_exit_code_2() {
    let file = temp_config("[server]\nbnid = 1\n");
    let (code, _, stderr) = run(clusterd_command().arg("serve").arg("--config").arg(file.path()));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(":2: server.bnid: unknown key"), "{stderr}");

    // The embedded default is fine; the flag makes it unsafe.
    let (code, _, stderr) = run(clusterd_command().arg("serve").arg("--bind").arg("0.0.0.0:0"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--bind: server.bind: refusing to serve unauthenticated"), "{stderr}");

    let (code, _, stderr) = run(clusterd_command().arg("serve").arg("--bind").arg("nowhere"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--bind: server.bind: must be an IP address and port"), "{stderr}");
}

#[test]
fn version_prints_the_crate_version() {
    let (code, stdout, _) = run(clusterd_command().arg("--version"));
    assert_eq!(code, Some(0));
    assert_eq!(stdout.trim(), format!("clusterd {}", env!("CARGO_PKG_VERSION")));
}
