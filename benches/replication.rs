//! Replication throughput and latency, against the same batches appended to the WAL with no
//! replication.
//!
//! * `replication_{memory,disk}/{async,semi_sync,sync}/B`: a runtime ([`Runtime::start`]) with
//!   the primary and two in-process replicas (`replica-001`, `replica-002`, both `mode = "sync"`;
//!   `semi_sync` waits for a quorum of 1, `sync` for both, `async` for none) on the storage engine
//!   named, `memory` or `disk` (redb in a fresh temporary directory, every commit fsynced); every
//!   other setting is the default (`sync_timeout_ms` 2000 among them). A client sends
//!   `ReplicateOps` messages straight to `runtime.primary()` (no HTTP), keeping [`IN_FLIGHT`]
//!   requests in flight so group commit can gather them. Every batch holds `B` inserts of unique
//!   keys with a small JSON value. One criterion iteration is one batch; a request's latency is
//!   the time from its send to its acknowledgement. A refused batch (a sync timeout, say) is
//!   counted and reported, and not counted as committed.
//! * `replication_{memory,disk}/wal_only/B`, **the baseline the targets are judged against**, in
//!   the same run: the "same ops appended to the WAL with no replication". The same
//!   runtime and client with replication off (no replica; `async`): the primary checks each batch,
//!   appends it to its WAL with group commit (one fsync per commit on disk), applies it to its
//!   table state and answers. The ratio to it is what replication costs.
//! * The **paired baseline**, in the same run: each replicated case gets a second runtime like
//!   `wal_only`'s (fresh, replication off), and every sample of the case is taken right beside a
//!   sample of the same size on it, every other time first. Two `wal_only` runs of one bench run
//!   have measured 256k and 318k ops/s on this kind of shared machine; a baseline sampled at the
//!   same moments cancels such drifts, so `vs paired` is the steadier ratio. Its caveat: the
//!   case's replicas may still be working off their backlog (at idle priority) while the paired
//!   sample runs, and on disk both runtimes' background writes share the device, so the two
//!   ratios are shown side by side and both are held to the targets. A third figure, `pairs`,
//!   divides each sample's ops/s by that of the baseline sample taken right beside it and gives
//!   the median and interquartile range of those ratios: a slow moment of the machine (one
//!   sample of the same case has measured half the speed of the next here) moves one pair, not
//!   the figure. It is the median the guide asks to quote; the other two show how far a mean
//!   over the samples strays from it.
//! * `replication_{memory,disk}/raw_wal/B`, a floor, also in the same run: the same batches,
//!   serialized the same way (`serde_json` of a [`WalRecord`] `{ committed_at_ms, ops }`), sent by
//!   the same client with the same requests in flight to a plain writer thread that gathers every
//!   queued batch (at most [`IN_FLIGHT`], all a client can have queued) into one [`LogCommit`] of
//!   their records plus the flushed-position meta key (no rows), commits it with
//!   [`Store::commit_log`] on a fresh store of the same engine (one transaction, one fsync on
//!   disk), then answers each batch: group commit with no actor, no checks and no table state,
//!   the bare cost of making records durable. The ratio to it is what the whole primary costs;
//!   it is reported, not held to a target.
//!
//! Threads: as in the server, the runtime's actors (primary and replicas) run on the system
//! arbiter (here the bench's main thread), their commits on its blocking pool, except a
//! replica's work no write waits for (all of it in `async`) and its checkpoints, which run on the
//! replicas' low-priority threads (`BackgroundPool`: `SCHED_IDLE`, niced on disk); the client runs on
//! a thread with an actix system of its own, as an HTTP worker would; the raw writer is a
//! plain thread. Samples are sized alike (criterion's flat sampling) so that every sample has
//! more batches than [`IN_FLIGHT`].
//!
//! Each (engine, case, batch) gets a fresh runtime on an empty store: one serving both batch
//! sizes carried the first's millions of rows (and the maintenance they cause) into the second,
//! and the memory baseline at batch 100 then measured either ~950k or ~450k ops/s from one run
//! to the next. Before it shuts down, the replicas are let catch up (unclocked). Within a case
//! they are not: in `async` mode the replicas' backlog from one sample is worked off during the
//! next, which is what a sustained load sees; the lag left at the end of each sample is
//! reported.
//!
//! Order, per engine: `wal_only`, `async`, `semi_sync`, `sync`, `wal_only_again` (the
//! baseline measured a second time), then `raw_wal`. Ratios are taken against the faster of the
//! two baseline runs: on this kind of shared machine one run of the same case has measured half
//! the ops/s of the next (page faults and reclaim while the process first grows its heap), and a
//! slow baseline must not make replication look cheap.
//!
//! After criterion, a summary: for each (engine, batch, case) ops/s (ops of the measured samples
//! ÷ their time), median and p99 latency over every request of the measured samples, the ratio of
//! ops/s to `wal_only` of the same engine and batch and to the paired baseline, both marked
//! against the targets (`async` at least 0.8, `sync` at least 0.5), the ratio to
//! `raw_wal`, the most bytes a replica was behind at the end of a sample, and the requests per
//! group commit of the primary.
//!
//! With `REPLICATION_BREAKDOWN=1`, a second table giving the CPU each group of threads used
//! (cores kept busy, µs per op), read from `/proc/self/task` (Linux) around every sample.
//!
//! `cargo bench --bench replication` (criterion options after `--`).

// Shared by the benches; each takes what it needs.
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::oneshot;

use clusterd::config::{Config, ReplicaConfig, StorageEngine};
use clusterd::messages::events::now_ms;
use clusterd::messages::replication::{GetReplicationStatus, ReplicateOps};
use clusterd::model::{Op, OpKind, ReplicaMode, ReplicationMode, WalRecord};
use clusterd::storage::LogCommit;
use clusterd::{Runtime, RuntimeHandle};
use support::{fmt_time, quantile, Client, Engine};

/// The server binary's allocator (src/main.rs), so that both sides of every ratio run on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Requests a client keeps in flight.
const IN_FLIGHT: usize = 64;
/// Operations per batch.
const BATCHES: [usize; 2] = [1, 100];
const SAMPLE_SIZE: usize = 20;
const TABLE: &str = "bench";
/// The suffix of a replicated case's paired baseline samples.
const PAIRED: &str = "paired_wal_only";


/// What serves the batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// The floor: records appended to the WAL by a plain writer thread.
    RawWal,
    /// The baseline: the runtime with replication off (no replica, `async`).
    WalOnly,
    /// The baseline measured again, after the replicated cases.
    WalOnlyAgain,
    /// The runtime with two replicas in this mode.
    Replicated(ReplicationMode),
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::RawWal => "raw_wal",
            Case::WalOnly => "wal_only",
            Case::WalOnlyAgain => "wal_only_again",
            Case::Replicated(ReplicationMode::Async) => "async",
            Case::Replicated(ReplicationMode::SemiSync) => "semi_sync",
            Case::Replicated(ReplicationMode::Sync) => "sync",
        }
    }

    /// The target for ops/s against the WAL-only baseline.
    fn target(self) -> Option<f64> {
        match self {
            Case::Replicated(ReplicationMode::Async) => Some(0.8),
            Case::Replicated(ReplicationMode::Sync) => Some(0.5),
            _ => None,
        }
    }
}

const MODES: [ReplicationMode; 3] =
    [ReplicationMode::Async, ReplicationMode::SemiSync, ReplicationMode::Sync];

// ---- the client ---------------------------------------------------------------------------

/// Keys are unique in the whole process (each runtime and store is fresh anyway).
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

/// A batch of `n` inserts of fresh keys, each with a small JSON value (~60 bytes serialized).
fn make_ops(n: usize) -> Vec<Op> {
    let first = NEXT_KEY.fetch_add(n as u64, Ordering::Relaxed);
    (first..first + n as u64)
        .map(|i| Op {
            op: OpKind::Insert,
            table: TABLE.into(),
            key: format!("key-{i:010}").into(),
            value: Some(serde_json::json!({ "seq": i, "name": "replication bench", "active": true }).into()),
        })
        .collect()
}

/// What one sample measured on the client.
struct Run {
    elapsed: Duration,
    /// Of the batches that were acknowledged.
    latencies: Vec<Duration>,
    failed: u64,
    first_error: Option<String>,
}

/// Sends `iters` batches of `batch` ops through `submit`, [`IN_FLIGHT`] at a time (a new one as
/// soon as one is answered); the time until the last is answered, and every acknowledged
/// request's latency. A batch's ops are built before its clock starts; `submit` (send, or
/// serialize and send) is on it. A refused batch (e.g. a sync timeout) is counted, not hidden.
async fn drive<F, Fut>(iters: u64, batch: usize, mut submit: F) -> Run
where
    F: FnMut(Vec<Op>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut in_flight = FuturesUnordered::new();
    let mut run = Run {
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(iters as usize),
        failed: 0,
        first_error: None,
    };
    let mut sent = 0u64;
    let start = Instant::now();
    loop {
        while sent < iters && in_flight.len() < IN_FLIGHT {
            let ops = make_ops(batch);
            let t = Instant::now();
            let request = submit(ops);
            in_flight.push(async move { request.await.map(|()| t.elapsed()) });
            sent += 1;
        }
        match in_flight.next().await {
            Some(Ok(latency)) => run.latencies.push(latency),
            Some(Err(e)) => {
                run.failed += 1;
                run.first_error.get_or_insert(e);
            }
            None => break,
        }
    }
    run.elapsed = start.elapsed();
    run
}

// ---- the replicated cases -----------------------------------------------------------------

struct Replicated {
    runtime: RuntimeHandle,
    _dir: Option<tempfile::TempDir>,
}

fn config(engine: Engine, mode: ReplicationMode, replicas: usize) -> (Config, Option<tempfile::TempDir>) {
    let mut config = Config::default();
    let dir = match engine {
        Engine::Memory => {
            config.storage.engine = StorageEngine::Memory;
            config.storage.data_dir = String::new();
            None
        }
        Engine::Disk => {
            let dir = tempfile::tempdir().expect("temp dir");
            config.storage.engine = StorageEngine::Disk;
            config.storage.data_dir = dir.path().to_string_lossy().into_owned();
            Some(dir)
        }
    };
    let r = &mut config.replication;
    r.mode = mode;
    r.sync_quorum = 1;
    r.replicas = ["replica-001", "replica-002"]
        .into_iter()
        .take(replicas)
        .map(|id| ReplicaConfig { id: id.into(), mode: ReplicaMode::Sync })
        .collect();
    (config, dir)
}

impl Replicated {
    fn start(system: &SystemRunner, engine: Engine, mode: ReplicationMode, replicas: usize) -> Replicated {
        let (config, dir) = config(engine, mode, replicas);
        let runtime = system.block_on(async move { Runtime::start(config) }).expect("runtime starts");
        let r = Replicated { runtime, _dir: dir };
        // Every replica connected and in sync before the first request.
        r.catch_up(system);
        r
    }

    /// The most bytes a replica is behind the primary's flushed position now.
    fn max_lag(&self, system: &SystemRunner) -> u64 {
        let status = system
            .block_on(self.runtime.primary().send(GetReplicationStatus))
            .expect("primary is running");
        status
            .replicas
            .iter()
            .map(|r| status.current_lsn_u64.saturating_sub(r.replay_lsn_u64))
            .max()
            .unwrap_or(0)
    }

    /// The primary's group commits so far.
    fn commits(&self) -> u64 {
        self.runtime.metrics().total("clusterd_replication_wal_commits_total").unwrap_or(0) as u64
    }

    /// Waits until every replica has replayed everything the primary flushed and is in sync.
    fn catch_up(&self, system: &SystemRunner) {
        support::catch_up(system, &self.runtime);
    }

    fn run(&self, system: &SystemRunner, client: &Client, iters: u64, batch: usize) -> Run {
        let primary = self.runtime.primary().clone();
        client.run(system, move || {
            drive(iters, batch, move |ops| {
                let answer = primary.send(ReplicateOps { ops });
                async move {
                    match answer.await {
                        Ok(Ok(_ack)) => Ok(()),
                        Ok(Err(e)) => Err(format!("replicate: {e}")),
                        Err(e) => Err(format!("primary mailbox: {e}")),
                    }
                }
            })
        })
    }

    fn shutdown(self, system: &SystemRunner) {
        self.catch_up(system);
        system.block_on(self.runtime.shutdown());
    }
}

// ---- the baseline -------------------------------------------------------------------------

/// A batch for the writer: its serialized record, and where to answer.
struct Job {
    record: Vec<u8>,
    reply: oneshot::Sender<u64>,
}

/// The `raw_wal` writer: a plain thread that group-commits what is queued.
struct WalWriter {
    tx: mpsc::Sender<Job>,
    thread: std::thread::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl WalWriter {
    fn start(engine: Engine) -> WalWriter {
        let (store, dir) = engine.store();
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("wal-baseline".into())
            .spawn(move || {
                let mut next_lsn = 0u64;
                // Blocks for the first batch, then takes every other one already queued.
                while let Ok(first) = rx.recv() {
                    let jobs = support::gather(&rx, first, IN_FLIGHT);
                    let mut commit = LogCommit::default();
                    let mut replies = Vec::with_capacity(jobs.len());
                    for job in jobs {
                        let lsn = next_lsn;
                        next_lsn += job.record.len() as u64;
                        commit.records.push((lsn, job.record.into()));
                        replies.push((next_lsn, job.reply));
                    }
                    commit.meta = vec![("primary:baseline:flush_lsn".into(), next_lsn)];
                    store.commit_log("baseline", commit).expect("baseline commit");
                    for (end, reply) in replies {
                        let _ = reply.send(end);
                    }
                }
            })
            .expect("writer thread starts");
        WalWriter { tx, thread, _dir: dir }
    }

    fn run(&self, system: &SystemRunner, client: &Client, iters: u64, batch: usize) -> Run {
        let tx = self.tx.clone();
        client.run(system, move || {
            drive(iters, batch, move |ops| {
                // What the primary does to a batch before it commits: stamp and serialize.
                let record = WalRecord { committed_at_ms: now_ms(), ops };
                let bytes = serde_json::to_vec(&record).expect("record serializes");
                let (reply, answer) = oneshot::channel();
                let queued = tx.send(Job { record: bytes, reply });
                async move {
                    queued.map_err(|_| "the writer stopped".to_string())?;
                    answer.await.map(|_end| ()).map_err(|_| "the writer dropped a batch".to_string())
                }
            })
        })
    }

    fn stop(self) {
        drop(self.tx);
        self.thread.join().expect("writer thread");
    }
}

// ---- CPU time by thread (REPLICATION_BREAKDOWN) -------------------------------------------

/// A thread's CPU seconds so far, by thread id: (role, seconds).
type CpuSnapshot = BTreeMap<String, (&'static str, f64)>;

const ROLES: [&str; 6] = ["actors", "blocking", "background", "client", "writer", "other"];

/// Every thread's CPU time so far, from `/proc/self/task/*/stat` (Linux; empty elsewhere),
/// with its role: `actors` is the bench's main thread, the system arbiter that runs the primary,
/// the replicas and the membership actor; `blocking` the blocking pool that runs their commits
/// (and a replica's decoding); `background` the replicas' low-priority threads (their work no
/// write waits for, and checkpoints); `client` the client; `writer` the `raw_wal` writer; `other` the
/// rest (the event registry's arbiter). Ticks are taken as 1/100 s (`CLK_TCK` on Linux).
fn cpu_snapshot() -> CpuSnapshot {
    let mut out = CpuSnapshot::new();
    let pid = std::process::id().to_string();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = &stat[open + 1..close];
        // After the command come the fields from 3 (state) on; utime and stime are 14 and 15.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |field: usize| fields.get(field - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        let seconds = (ticks(14) + ticks(15)) as f64 / 100.0;
        let role = if tid == pid {
            "actors"
        } else if comm.starts_with("tokio") {
            "blocking"
        } else if comm.starts_with("replica-bg") {
            "background"
        } else if comm == "bench-client" {
            "client"
        } else if comm == "wal-baseline" {
            "writer"
        } else {
            "other"
        };
        out.insert(tid, (role, seconds));
    }
    out
}

/// CPU seconds by role between two snapshots (a thread that ended in between is not counted).
fn cpu_delta(before: &CpuSnapshot, after: &CpuSnapshot) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    for (tid, (role, seconds)) in after {
        let was = before.get(tid).map(|b| b.1).unwrap_or(0.0);
        *out.entry(*role).or_default() += (seconds - was).max(0.0);
    }
    out
}

// ---- samples and summary ------------------------------------------------------------------

/// One `iter_custom` call: criterion's warm-up calls come first, so the last [`SAMPLE_SIZE`] are
/// the measured samples.
struct Sample {
    elapsed: Duration,
    /// Acknowledged batches, and their latencies.
    latencies: Vec<Duration>,
    failed: u64,
    first_error: Option<String>,
    /// The most bytes a replica was behind when the sample ended (replicated cases).
    lag: Option<u64>,
    /// CPU seconds by thread role during the sample (breakdown only).
    cpu: Option<BTreeMap<&'static str, f64>>,
    /// The primary's group commits during the sample (the runtime's cases).
    commits: Option<u64>,
}

type Samples = BTreeMap<String, Vec<Sample>>;

fn key(engine: Engine, case: Case, batch: usize) -> String {
    format!("{}/{}/{batch}", engine.name(), case.name())
}

fn record(
    samples: &mut Samples,
    key: &str,
    run: Run,
    lag: Option<u64>,
    cpu: Option<BTreeMap<&'static str, f64>>,
    commits: Option<u64>,
) -> Duration {
    let elapsed = run.elapsed;
    samples.entry(key.to_string()).or_default().push(Sample {
        elapsed,
        latencies: run.latencies,
        failed: run.failed,
        first_error: run.first_error,
        lag,
        cpu,
        commits,
    });
    elapsed
}

fn measured<'a>(samples: &'a Samples, key: &str) -> Option<&'a [Sample]> {
    let all = samples.get(key)?;
    Some(&all[all.len().saturating_sub(SAMPLE_SIZE)..])
}

struct Figures {
    ops: u64,
    elapsed: Duration,
    ops_per_s: f64,
    median: Duration,
    p99: Duration,
    max_lag: Option<u64>,
    /// Requests per group commit of the primary (the runtime's cases).
    per_commit: Option<f64>,
    failed: u64,
    first_error: Option<String>,
}

fn figures(samples: &Samples, key: &str, batch: usize) -> Option<Figures> {
    let measured = measured(samples, key)?;
    let elapsed: Duration = measured.iter().map(|s| s.elapsed).sum();
    let mut latencies: Vec<Duration> = measured.iter().flat_map(|s| s.latencies.iter().copied()).collect();
    if latencies.is_empty() || elapsed.is_zero() {
        return None;
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let ops = latencies.len() as u64 * batch as u64;
    Some(Figures {
        ops,
        elapsed,
        ops_per_s: ops as f64 / elapsed.as_secs_f64(),
        median: at(0.5),
        p99: at(0.99),
        max_lag: measured.iter().filter_map(|s| s.lag).max(),
        per_commit: measured
            .iter()
            .map(|s| s.commits)
            .sum::<Option<u64>>()
            .filter(|&c| c > 0)
            .map(|c| latencies.len() as f64 / c as f64),
        failed: measured.iter().map(|s| s.failed).sum(),
        first_error: measured.iter().find_map(|s| s.first_error.clone()),
    })
}

/// A sample's acknowledged ops per second.
fn sample_rate(s: &Sample, batch: usize) -> Option<f64> {
    let secs = s.elapsed.as_secs_f64();
    (secs > 0.0 && !s.latencies.is_empty()).then(|| (s.latencies.len() * batch) as f64 / secs)
}

/// The ratio of each measured sample of case `id` to the paired baseline's sample taken right
/// beside it (both are recorded once per criterion call, so they pair up by position), sorted.
fn pair_ratios(samples: &Samples, id: &str, batch: usize) -> Vec<f64> {
    let (Some(case), Some(paired)) = (measured(samples, id), measured(samples, &format!("{id}/{PAIRED}"))) else {
        return Vec::new();
    };
    let mut ratios: Vec<f64> = case
        .iter()
        .zip(paired)
        .filter_map(|(c, p)| Some(sample_rate(c, batch)? / sample_rate(p, batch)?))
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios
}

fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else {
        format!("{:.1} k/s", per_s / 1e3)
    }
}

fn fmt_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

fn summary(samples: &Samples, cases: &[Case]) {
    println!();
    println!("== replication summary: {IN_FLIGHT} requests in flight; 2 replicas, both mode sync; measured samples only ==");
    println!(
        "{:<7} {:>5}  {:<14} {:>12} {:>10} {:>10}  {:>12}  {:>12}  {:>22}  {:>10}  {:>10}  {:>10}",
        "engine", "batch", "case", "ops/s", "median", "p99", "vs wal_only", "vs paired", "pairs: median (IQR)", "vs raw_wal", "max lag", "per commit"
    );
    let mut failures = Vec::new();
    for engine in [Engine::Memory, Engine::Disk] {
        for batch in BATCHES {
            // The faster of the two baseline runs: a slow moment of the machine during one of
            // them must not flatter the ratios.
            let base = [Case::WalOnly, Case::WalOnlyAgain]
                .iter()
                .filter_map(|&c| figures(samples, &key(engine, c, batch), batch))
                .max_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
            let floor = figures(samples, &key(engine, Case::RawWal, batch), batch);
            for &case in cases {
                let id = key(engine, case, batch);
                let Some(f) = figures(samples, &id, batch) else { continue };
                let ratio = match (&base, case) {
                    (Some(b), Case::WalOnly | Case::WalOnlyAgain) => format!("{:.2}", f.ops_per_s / b.ops_per_s),
                    (Some(b), _) => {
                        let r = f.ops_per_s / b.ops_per_s;
                        match case.target() {
                            // Shown rounded down, so a ratio just under its target never reads as it.
                            Some(t) => format!("{:.2} {}", (r * 100.0).floor() / 100.0, if r >= t { "ok" } else { "LOW" }),
                            None => format!("{r:.2}"),
                        }
                    }
                    (None, _) => "-".to_string(),
                };
                let to_floor = floor.as_ref().map_or("-".to_string(), |b| format!("{:.2}", f.ops_per_s / b.ops_per_s));
                let paired = figures(samples, &format!("{id}/{PAIRED}"), batch).map_or("-".to_string(), |p| {
                    let r = f.ops_per_s / p.ops_per_s;
                    let rounded = (r * 100.0).floor() / 100.0;
                    match case.target() {
                        Some(t) => format!("{rounded:.2} {}", if r >= t { "ok" } else { "LOW" }),
                        None => format!("{rounded:.2}"),
                    }
                });
                let ratios = pair_ratios(samples, &id, batch);
                let pairs = if ratios.is_empty() {
                    "-".to_string()
                } else {
                    let median = quantile(&ratios, 0.5);
                    let mark = case.target().map_or("", |t| if median >= t { " ok" } else { " LOW" });
                    format!(
                        "{:.2}{mark} ({:.2}-{:.2})",
                        (median * 100.0).floor() / 100.0,
                        quantile(&ratios, 0.25),
                        quantile(&ratios, 0.75)
                    )
                };
                let lag = f.max_lag.map(fmt_bytes).unwrap_or_else(|| "-".into());
                let per_commit = f.per_commit.map_or("-".to_string(), |c| format!("{c:.1}"));
                println!(
                    "{:<7} {:>5}  {:<14} {:>12} {:>10} {:>10}  {:>12}  {:>12}  {:>22}  {:>10}  {:>10}  {:>10}",
                    engine.name(),
                    batch,
                    case.name(),
                    fmt_rate(f.ops_per_s),
                    fmt_time(f.median),
                    fmt_time(f.p99),
                    ratio,
                    paired,
                    pairs,
                    to_floor,
                    lag,
                    per_commit,
                );
                if f.failed > 0 {
                    failures.push(format!(
                        "{id}: {} batches refused (not counted as committed); first: {}",
                        f.failed,
                        f.first_error.unwrap_or_default()
                    ));
                }
            }
        }
    }
    println!("  (ops/s: acknowledged ops ÷ time; vs wal_only: ops/s ÷ the baseline's (the primary with replication off),");
    println!("   same engine and batch, targets async >= 0.80, sync >= 0.50; vs paired: ÷ the paired baseline's, a runtime like");
    println!("   wal_only's sampled right beside each sample (same targets); pairs: each sample's ops/s ÷ its paired");
    println!("   baseline sample's, median and interquartile range over the samples (same targets); vs raw_wal: ÷ the");
    println!("   bare WAL writer's, no target;");
    println!("   max lag: most bytes a replica was behind at the end of a sample; per commit: requests per group commit)");
    for f in &failures {
        println!("  FAILED {f}");
    }
}

/// CPU by thread role over the measured samples: cores kept busy, and µs of CPU per op.
fn cpu_summary(samples: &Samples, cases: &[Case]) {
    println!();
    println!("== CPU by thread over the measured samples: cores busy (µs of CPU per op) ==");
    print!("{:<7} {:>5}  {:<14}", "engine", "batch", "case");
    for role in ROLES {
        print!(" {role:>16}");
    }
    println!(" {:>10}", "total/op");
    for engine in [Engine::Memory, Engine::Disk] {
        for batch in BATCHES {
            for &case in cases {
                let id = key(engine, case, batch);
                let (Some(f), Some(measured)) = (figures(samples, &id, batch), measured(samples, &id)) else { continue };
                let mut cpu: BTreeMap<&str, f64> = BTreeMap::new();
                for s in measured {
                    for (role, seconds) in s.cpu.iter().flatten() {
                        *cpu.entry(role).or_default() += seconds;
                    }
                }
                let wall = f.elapsed.as_secs_f64();
                let per_op = |s: f64| s * 1e6 / f.ops.max(1) as f64;
                print!("{:<7} {:>5}  {:<14}", engine.name(), batch, case.name());
                for role in ROLES {
                    let s = cpu.get(role).copied().unwrap_or(0.0);
                    print!(" {:>16}", format!("{:.2} ({:.1})", s / wall, per_op(s)));
                }
                println!(" {:>10.1}", per_op(cpu.values().sum()));
            }
        }
    }
    println!("  (actors: the system arbiter running the primary, the replicas and membership; blocking: its blocking");
    println!("   pool (commits, replica decoding, replica work a write waits for); background: the replicas'");
    println!("   low-priority threads (work no write waits for, checkpoints); client: the request sender;");
    println!("   writer: raw_wal's; other: registry)");
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let breakdown = std::env::var_os("REPLICATION_BREAKDOWN").is_some();

    let system = System::new();
    let client = Client::start();
    let mut samples = Samples::new();

    // The baseline first, the floor last: the raw writer's memory store retains every record it
    // is sent (a gigabyte in a memory run), and a baseline run after it was freed measured up
    // to 40% slower (the allocator and the kernel handing the pages back). Whatever the earlier
    // cases leave behind now weighs on the replicated cases, never on the baseline.
    let mut cases = vec![Case::WalOnly];
    cases.extend(MODES.map(Case::Replicated));
    cases.push(Case::WalOnlyAgain);
    cases.push(Case::RawWal);

    for engine in [Engine::Memory, Engine::Disk] {
        let mut group = criterion.benchmark_group(format!("replication_{}", engine.name()));
        // Every sample the same size: enough batches per sample for IN_FLIGHT to be reached.
        group.sampling_mode(SamplingMode::Flat);
        for &case in &cases {
            match case {
                Case::RawWal => {
                    for batch in BATCHES {
                        let writer = WalWriter::start(engine);
                        let id = key(engine, case, batch);
                        group.throughput(Throughput::Elements(batch as u64));
                        group.bench_function(BenchmarkId::new(case.name(), batch), |b| {
                            b.iter_custom(|iters| {
                                let before = breakdown.then(cpu_snapshot);
                                let run = writer.run(&system, &client, iters, batch);
                                let cpu = before.map(|b| cpu_delta(&b, &cpu_snapshot()));
                                record(&mut samples, &id, run, None, cpu, None)
                            })
                        });
                        writer.stop();
                    }
                }
                Case::WalOnly | Case::WalOnlyAgain | Case::Replicated(_) => {
                    let (mode, replicas) = match case {
                        Case::Replicated(mode) => (mode, 2),
                        _ => (ReplicationMode::Async, 0),
                    };
                    for batch in BATCHES {
                        let runtime = Replicated::start(&system, engine, mode, replicas);
                        // The paired baseline: a second runtime with replication off, as
                        // `wal_only`, sampled right beside each sample of a replicated case.
                        let paired = (replicas > 0).then(|| Replicated::start(&system, engine, ReplicationMode::Async, 0));
                        let id = key(engine, case, batch);
                        let paired_id = format!("{id}/{PAIRED}");
                        let mut calls = 0u64;
                        group.throughput(Throughput::Elements(batch as u64));
                        group.bench_function(BenchmarkId::new(case.name(), batch), |b| {
                            b.iter_custom(|iters| {
                                calls += 1;
                                // Every other sample the baseline goes first, so that a drift of
                                // the machine's speed weighs on both sides alike.
                                let paired_first = calls % 2 == 0;
                                let run_paired = |samples: &mut Samples| {
                                    if let Some(p) = &paired {
                                        let run = p.run(&system, &client, iters, batch);
                                        record(samples, &paired_id, run, None, None, None);
                                    }
                                };
                                if paired_first {
                                    run_paired(&mut samples);
                                }
                                let before = breakdown.then(cpu_snapshot);
                                let commits_before = runtime.commits();
                                let run = runtime.run(&system, &client, iters, batch);
                                let commits = runtime.commits() - commits_before;
                                let cpu = before.map(|b| cpu_delta(&b, &cpu_snapshot()));
                                let lag = (replicas > 0).then(|| runtime.max_lag(&system));
                                let elapsed = record(&mut samples, &id, run, lag, cpu, Some(commits));
                                if !paired_first {
                                    run_paired(&mut samples);
                                }
                                elapsed
                            })
                        });
                        runtime.catch_up(&system);
                        runtime.shutdown(&system);
                        if let Some(p) = paired {
                            p.shutdown(&system);
                        }
                    }
                }
            }
        }
        group.finish();
    }

    criterion.final_summary();
    // `cargo test --benches` and `cargo bench -- --test` run every bench once: no figures.
    let measuring = support::measuring();
    if measuring {
        summary(&samples, &cases);
        if breakdown {
            cpu_summary(&samples, &cases);
        }
    }
    client.stop();
}
