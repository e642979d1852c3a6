//! The `clusterd` command line: `serve` runs a cluster from a config file (or the embedded
//! default), `check-config` validates a file and prints the effective config, `--version` says
//! which build this is.
//!
//! Exit codes: 0 success; 1 `check-config` found an error, or the server failed while running;
//! 2 `serve` refused to start (bad config, unsafe config, or bad arguments, as clap does).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// See Cargo.toml: cross-thread frees on the replication path are slow under glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clusterd::config::{Config, ConfigErrors, ConfigSources};

#[derive(Debug, Parser)]
#[command(name = "clusterd", version = clusterd::VERSION, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the cluster until SIGINT/SIGTERM.
    Serve {
        /// TOML config file; without it, the embedded default (a small cluster on 127.0.0.1:8080).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Overrides server.bind.
        #[arg(long, value_name = "ADDR:PORT")]
        bind: Option<String>,
        /// Overrides storage.data_dir.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<String>,
        /// Log lines as human-readable text or as one JSON object per line. Filter with RUST_LOG.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate a config file and print the effective config (file plus CLUSTERD_* overrides).
    CheckConfig {
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { config, bind, data_dir, log_format } => {
            serve(config.as_deref(), bind, data_dir, log_format)
        }
        Command::CheckConfig { config } => check_config(&config),
    }
}

/// The process environment as strings. `std::env::vars` would panic on a variable that is not
/// UTF-8, even one that has nothing to do with clusterd.
fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect()
}

/// Loads, validates and security-checks the config: every error, each located in the file,
/// variable or flag it came from.
fn load_checked(
    path: Option<&Path>,
    bind: Option<String>,
    data_dir: Option<String>,
) -> Result<Config, ConfigErrors> {
    let (mut config, mut sources): (Config, ConfigSources) =
        Config::load_with_sources(path, process_env())?;
    if let Some(bind) = bind {
        config.server.bind = bind;
        sources.record_override("server.bind", "--bind");
    }
    if let Some(data_dir) = data_dir {
        config.storage.data_dir = data_dir;
        sources.record_override("storage.data_dir", "--data-dir");
    }
    let mut found = config.validate().err().map(|e| e.0).unwrap_or_default();
    found.extend(config.security_check().err());
    sources.report(found)?;
    Ok(config)
}

/// Prints each error on a line of its own.
fn print_errors(errors: &ConfigErrors) {
    for err in &errors.0 {
        eprintln!("error: {err}");
    }
}

fn check_config(path: &Path) -> ExitCode {
    match load_checked(Some(path), None, None) {
        Ok(config) => {
            print!("{}", config.to_toml_string());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_errors(&errors);
            ExitCode::from(1)
        }
    }
}

fn serve(
    path: Option<&Path>,
    bind: Option<String>,
    data_dir: Option<String>,
    log_format: LogFormat,
) -> ExitCode {
    let config = match load_checked(path, bind, data_dir) {
        Ok(config) => config,
        Err(errors) => {
            print_errors(&errors);
            eprintln!("clusterd: refusing to start");
            return ExitCode::from(2);
        }
    };

    init_tracing(log_format);
    tracing::info!(version = clusterd::VERSION, "starting clusterd");
    if config.server.allow_unauthenticated && config.server.auth_token.is_empty() {
        // The spec makes this an explicit decision; the log is where it stays visible.
        tracing::warn!(
            bind = %config.server.bind,
            "serving without authentication (server.allow_unauthenticated = true)"
        );
    }

    match actix_web::rt::System::new().block_on(clusterd::http::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "clusterd stopped on an error");
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;

    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) => EnvFilter::try_new(&spec).unwrap_or_else(|err| {
            // Logging is not up yet, and a typo in RUST_LOG should not stop the server.
            eprintln!("warning: ignoring RUST_LOG={spec:?} ({err}); logging at info");
            EnvFilter::new("info")
        }),
        Err(_) => EnvFilter::new("info"),
    };
    // Colour only on a terminal: log files and collectors get plain text.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    // `try_init` fails only if a global subscriber is already set, which nothing here does; the
    // server is still worth running without logs, so the error is not fatal.
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(err) = result {
        eprintln!("warning: logging not initialised: {err}");
    }
}
