//! The HTTP write path end to end, as a client sees it: requests/s and latency of
//! `POST /api/v1/replication/operations`, one insert per request, against the same requests to a
//! server that does not replicate, in the same run.
//!
//! * `http_write/baseline/N`, **the baseline every ratio is taken against**: the server with
//!   replication off (no replica, `mode = "async"`, memory engine). It measures HTTP, JSON, the
//!   hop to the primary and its in-memory commit; what the other cases add to it is replication.
//! * `http_write/memory_sync/N`: the memory engine, `mode = "sync"`, `replica-001` sync and
//!   `replica-002` async (the layout of `../shared/anchors/pg-sync-writes.sh`).
//! * `http_write/disk_sync/N`: the same on the disk engine (redb in a fresh temporary directory,
//!   every commit fsynced): the anchor's clusterd configuration.
//!
//! `N` is the requests in flight, 1 or 64: `N` keep-alive connections with one request
//! outstanding on each, the next sent as soon as the answer is read (a closed loop, as wrk drives
//! the anchor). Every request inserts a key unique in the process, with the anchor's body
//! (`{"ops":[{"op":"insert","table":"users","key":…,"value":{"name": "ada", "n": 123, "email":
//! "ada@example.com", "k": "v1"}}]}`). One criterion iteration is one request answered; a
//! request's latency runs from its first byte written to the last byte of its answer read. A
//! non-2xx answer (a sync timeout's 504, say) or a broken connection is counted and reported,
//! not counted as done.
//!
//! Servers: each case gets a fresh runtime and HTTP server ([`Runtime::start`], then
//! [`start_server`] on `127.0.0.1:0`, as `tests/common/server.rs` does) with the binary's
//! defaults: as many HTTP workers as cores; the actors on the system arbiter (here the bench's
//! main thread, which runs them while it waits for the client), their commits on its blocking
//! pool. Replicas are connected and in sync before the first request, and let catch up
//! (unclocked) before the server stops. Connections are opened, and reopened if the server's
//! keep-alive timeout closed them, before a sample's clock starts.
//!
//! The **paired baseline**: each replicated case also gets a second, fresh baseline server, and
//! every sample of the case is taken right beside a sample of the same size on it, every other
//! time first. Speeds on this shared 2-core machine drift by tens of percent within a minute
//! (two quick runs of the baseline at 1 in flight, a minute apart, measured 4.8k and 12.2k
//! requests/s); a baseline sampled at the same moments cancels that, so `pairs` (each sample's
//! requests/s ÷ that of the baseline sample beside it: median and interquartile range) is the
//! ratio to quote, and the paired p50 and p99 ratios compare latencies of requests sent at the
//! same moments. The ratios to the baseline case itself are shown beside them.
//!
//! The client is a minimal HTTP/1.1 client over `tokio::net::TcpStream`, on a thread of its own
//! (`support::Client`: `bench-client`, with an actix system, i.e. a current-thread tokio
//! runtime), apart from the server's arbiters as wrk is a separate process. A connection's
//! request bytes are built once and only the key's digits are rewritten in place; an answer is
//! read to the end of its headers (status line, `Content-Length`), then its body. Not awc: on
//! two cores the client's CPU is taken from the server, and awc's per-request work (a request
//! builder and header map, its pool, a response header map and body stream) made the client
//! cost about half as much again per request at 64 in flight and twice to three times as much
//! at 1, so that more of what was measured was the client. The client's CPU per request (its
//! thread's CPU time) is printed so that this stays checked; it includes the loopback's delivery
//! of each request to the server's socket, which the kernel does in the sender's call.
//!
//! After criterion, a summary per in-flight count over the measured samples: requests/s (2xx
//! answers ÷ time), p50, p99 and p99.9 (when there are at least [`P999_MIN_REQUESTS`]) over
//! every request, the ratios of requests/s, p50 and p99 to the baseline, errors, and the
//! client's CPU per request. Then, for each case, the mean of every write stage the server's
//! `/metrics` times (`*_write_stage_seconds{stage=…}`: `_sum ÷ _count` over the case, warm-up
//! included, and the count), scraped after its last sample; nothing when the server has no such
//! series.
//!
//! `cargo bench --bench http_write` (about 75 s); `-- --quick` for a short run (25 to 40 s:
//! criterion's quick mode, whose figures rest on the last two calls of each case only); a filter
//! such as `-- baseline` runs only the cases it names (the others start no server).

// Shared by the benches; each takes what it needs.
#[allow(dead_code)]
mod support;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_rt::{System, SystemRunner};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use clusterd::config::{Config, ReplicaConfig, StorageEngine};
use clusterd::http::{start_server, AppState};
use clusterd::model::{ReplicaMode, ReplicationMode};
use clusterd::{Runtime, RuntimeHandle};
use support::{fmt_time, quantile, Client};

/// The server binary's allocator (src/main.rs), so that both sides of every ratio run on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Requests in flight: one connection per request outstanding.
const IN_FLIGHT: [usize; 2] = [1, 64];
const SAMPLE_SIZE: usize = 20;
const ROUTE: &str = "/api/v1/replication/operations";
/// The anchor's value (64 bytes as text).
const VALUE: &str = r#"{"name": "ada", "n": 123, "email": "ada@example.com", "k": "v1"}"#;
/// Digits of a key: every request's body has the same length.
const KEY_DIGITS: usize = 16;
/// As wrk's `--timeout 10s` in the anchor: a request not answered by then is an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// p99.9 is shown from this many requests on (two or more beyond it).
const P999_MIN_REQUESTS: usize = 2_000;
/// The suffix of a replicated case's paired baseline samples.
const PAIRED: &str = "paired_baseline";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Baseline,
    MemorySync,
    DiskSync,
}

const CASES: [Case; 3] = [Case::Baseline, Case::MemorySync, Case::DiskSync];

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Baseline => "baseline",
            Case::MemorySync => "memory_sync",
            Case::DiskSync => "disk_sync",
        }
    }

    /// The server's configuration (the defaults, as the anchor's file leaves them), and the
    /// temporary directory a disk case keeps its store in.
    fn config(self) -> (Config, Option<tempfile::TempDir>) {
        let mut config = Config::in_memory();
        config.server.allow_fault_injection = false;
        if self == Case::Baseline {
            return (config.without_replicas(), None);
        }
        let r = &mut config.replication;
        r.mode = ReplicationMode::Sync;
        r.replicas = vec![
            ReplicaConfig { id: "replica-001".into(), mode: ReplicaMode::Sync },
            ReplicaConfig { id: "replica-002".into(), mode: ReplicaMode::Async },
        ];
        if self == Case::MemorySync {
            return (config, None);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        config.storage.engine = StorageEngine::Disk;
        config.storage.data_dir = dir.path().to_string_lossy().into_owned();
        (config, Some(dir))
    }
}

// ---- the client ---------------------------------------------------------------------------

/// Keys are unique in the whole process (each server's store is fresh anyway).
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

/// One keep-alive connection and the request it sends, prebuilt.
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    request: Vec<u8>,
    /// Where the key's digits are in `request`, if it has a key.
    key_at: Option<usize>,
    /// The last answer, headers and body.
    answer: Vec<u8>,
    body: Range<usize>,
}

impl Conn {
    /// A connection posting one insert per request, each with a key of its own.
    fn writer(addr: SocketAddr) -> Conn {
        let placeholder = "0".repeat(KEY_DIGITS);
        let body = format!(r#"{{"ops":[{{"op":"insert","table":"users","key":"w{placeholder}","value":{VALUE}}}]}}"#);
        let request = format!(
            "POST {ROUTE} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let key_at = request.find(&format!("\"w{placeholder}\"")).map(|at| at + 2);
        Conn::new(addr, request.into_bytes(), key_at)
    }

    fn get(addr: SocketAddr, path: &str) -> Conn {
        Conn::new(addr, format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes(), None)
    }

    fn new(addr: SocketAddr, request: Vec<u8>, key_at: Option<usize>) -> Conn {
        Conn { addr, stream: None, request, key_at, answer: Vec::with_capacity(4096), body: 0..0 }
    }

    /// Opens the connection if it is closed, or if the server has closed it meanwhile (its
    /// keep-alive timeout): true if it had to be (re)opened.
    async fn ready(&mut self) -> std::io::Result<bool> {
        if let Some(stream) = &self.stream {
            // Readable with nothing to read means the peer has closed it; an open idle
            // connection has nothing to read and would block.
            match stream.try_read(&mut [0u8; 1]) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                _ => self.stream = None,
            }
        }
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        self.stream = Some(stream);
        Ok(true)
    }

    /// Sends the request (with `key`, if it has one) and reads the whole answer: its status.
    async fn exchange(&mut self, key: u64) -> Result<u16, String> {
        if let Some(at) = self.key_at {
            let mut k = key;
            for digit in self.request[at..at + KEY_DIGITS].iter_mut().rev() {
                *digit = b'0' + (k % 10) as u8;
                k /= 10;
            }
        }
        let stream = self.stream.as_mut().ok_or("the connection is closed")?;
        stream.write_all(&self.request).await.map_err(|e| format!("write: {e}"))?;
        self.answer.clear();
        let head_end = loop {
            if stream.read_buf(&mut self.answer).await.map_err(|e| format!("read: {e}"))? == 0 {
                return Err("the server closed the connection".into());
            }
            if let Some(at) = self.answer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = std::str::from_utf8(&self.answer[..head_end]).map_err(|_| "headers not UTF-8")?;
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| format!("no status line: {head:?}"))?;
        let mut length = None;
        let mut close = false;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        // The server writes every answer with its length; this client reads no chunked body.
        let length = length.ok_or_else(|| format!("no Content-Length: {head:?}"))?;
        while self.answer.len() < head_end + length {
            if stream.read_buf(&mut self.answer).await.map_err(|e| format!("read: {e}"))? == 0 {
                return Err("the server closed the connection mid-answer".into());
            }
        }
        self.body = head_end..head_end + length;
        if close {
            self.stream = None;
        }
        Ok(status)
    }

    fn body(&self) -> &[u8] {
        &self.answer[self.body.clone()]
    }
}

/// What one sample measured on the client.
#[derive(Default)]
struct Run {
    elapsed: Duration,
    /// Of the requests answered 2xx.
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
    /// Connections reopened on the clock after one broke.
    reopened: u64,
    /// The client thread's CPU time.
    client_cpu: Duration,
}

impl Run {
    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

/// Sends `iters` requests over the first `in_flight` connections (fewer if `iters` is smaller),
/// one outstanding on each, the next as soon as one is answered. The connections are made
/// ready before the clock starts.
async fn drive(conns: &mut [Conn], iters: u64, in_flight: usize) -> Run {
    let used = &mut conns[..in_flight.min(iters as usize)];
    for conn in used.iter_mut() {
        conn.ready().await.expect("connect to the server");
    }
    let remaining = Cell::new(iters);
    let cpu_before = thread_cpu();
    let start = Instant::now();
    let loops = used.iter_mut().map(|conn| {
        let remaining = &remaining;
        async move {
            let mut part = Run::default();
            while remaining.get() > 0 {
                remaining.set(remaining.get() - 1);
                let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
                if conn.stream.is_none() {
                    match conn.ready().await {
                        Ok(_) => part.reopened += 1,
                        Err(e) => {
                            part.error(format!("connect: {e}"));
                            continue;
                        }
                    }
                }
                let t = Instant::now();
                match tokio::time::timeout(REQUEST_TIMEOUT, conn.exchange(key)).await {
                    Ok(Ok(status)) if (200..300).contains(&status) => part.latencies.push(t.elapsed()),
                    Ok(Ok(status)) => part.error(format!("{status} {}", String::from_utf8_lossy(conn.body()))),
                    Ok(Err(e)) => {
                        conn.stream = None;
                        part.error(e);
                    }
                    Err(_) => {
                        conn.stream = None;
                        part.error(format!("no answer in {REQUEST_TIMEOUT:?}"));
                    }
                }
            }
            part
        }
    });
    let parts = futures_util::future::join_all(loops).await;
    let mut run = Run {
        elapsed: start.elapsed(),
        latencies: Vec::with_capacity(iters as usize),
        client_cpu: thread_cpu().saturating_sub(cpu_before),
        ..Run::default()
    };
    for part in parts {
        run.latencies.extend(part.latencies);
        run.errors += part.errors;
        run.reopened += part.reopened;
        if run.first_error.is_none() {
            run.first_error = part.first_error;
        }
    }
    run
}

/// The calling thread's CPU time so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill; the clock id is a constant.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    if ok {
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    } else {
        Duration::ZERO
    }
}

// ---- the server ---------------------------------------------------------------------------

/// A runtime and its HTTP server, and the client's connections to it.
struct Served {
    runtime: RuntimeHandle,
    server: actix_server::ServerHandle,
    addr: SocketAddr,
    /// Kept open between samples, as wrk keeps its connections for a whole run; with the client
    /// while it runs.
    conns: Option<Vec<Conn>>,
    _dir: Option<tempfile::TempDir>,
}

impl Served {
    fn start(system: &SystemRunner, case: Case, in_flight: usize) -> Served {
        let (config, dir) = case.config();
        // As `clusterd serve` does.
        let workers = match config.server.workers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        };
        let (runtime, server, addr) = system.block_on(async move {
            let runtime = Runtime::start(config).expect("runtime starts");
            let (server, addrs) =
                start_server(AppState::new(runtime.clone()), workers, "127.0.0.1:0").expect("bind a free port");
            let handle = server.handle();
            actix_rt::spawn(server);
            (runtime, handle, addrs[0])
        });
        let conns = Some((0..in_flight).map(|_| Conn::writer(addr)).collect());
        let served = Served { runtime, server, addr, conns, _dir: dir };
        served.catch_up(system);
        served
    }

    fn catch_up(&self, system: &SystemRunner) {
        support::catch_up(system, &self.runtime);
    }

    fn run(&mut self, system: &SystemRunner, client: &Client, iters: u64, in_flight: usize) -> Run {
        let mut conns = self.conns.take().expect("the connections are back from the client");
        let (run, conns) = client.run(system, move || async move {
            let run = drive(&mut conns, iters, in_flight).await;
            (run, conns)
        });
        self.conns = Some(conns);
        run
    }

    /// `GET /metrics`, on a connection of its own.
    fn scrape(&self, system: &SystemRunner, client: &Client) -> Result<String, String> {
        let addr = self.addr;
        client.run(system, move || async move {
            let mut conn = Conn::get(addr, "/metrics");
            conn.ready().await.map_err(|e| format!("connect: {e}"))?;
            match conn.exchange(0).await? {
                200 => Ok(String::from_utf8_lossy(conn.body()).into_owned()),
                status => Err(format!("/metrics answered {status}")),
            }
        })
    }

    fn stop(mut self, system: &SystemRunner) {
        self.catch_up(system);
        self.conns = None;
        system.block_on(self.server.stop(true));
        system.block_on(self.runtime.shutdown());
    }
}

// ---- the write-stage breakdown ------------------------------------------------------------

/// (series, stage) → (mean per write, writes).
type StageMeans = BTreeMap<(String, String), (Duration, u64)>;

/// The mean of each write stage the server times: for every `*_write_stage_seconds` histogram in
/// the `/metrics` text, `_sum ÷ _count` per `stage` label, with the count, as (series, stage) →
/// (mean, count). Empty when the server has no such series. The server's is
/// `clusterd_replication_write_stage_seconds` (issue 16, point 1); any other is read alike.
fn write_stage_means(metrics: &str) -> StageMeans {
    let mut sums: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let (base, is_sum) = match (name.strip_suffix("_sum"), name.strip_suffix("_count")) {
            (Some(base), _) => (base, true),
            (_, Some(base)) => (base, false),
            _ => continue,
        };
        if !base.ends_with("_write_stage_seconds") {
            continue;
        }
        let stage = labels
            .split(',')
            .find_map(|l| l.strip_prefix("stage=\""))
            .map_or("", |s| s.trim_end_matches('}').trim_end_matches('"'));
        let entry = sums.entry((base.to_string(), stage.to_string())).or_default();
        if is_sum {
            entry.0 += value;
        } else {
            entry.1 += value;
        }
    }
    sums.into_iter()
        .filter(|(_, (_, count))| *count > 0.0)
        .map(|(k, (sum, count))| (k, (Duration::from_secs_f64(sum / count), count as u64)))
        .collect()
}

// ---- samples and summary ------------------------------------------------------------------

type Samples = BTreeMap<String, Vec<Run>>;

fn key(case: Case, in_flight: usize) -> String {
    format!("{}/{in_flight}", case.name())
}

/// How many of a case's last calls are criterion's measured samples: its warm-up calls come
/// first; in quick mode only the last two calls are measured.
fn measured_calls(args: &[String]) -> usize {
    if args.iter().any(|a| a == "--quick") {
        return 2;
    }
    let given = args.iter().enumerate().find_map(|(i, a)| match a.strip_prefix("--sample-size") {
        Some("") => args.get(i + 1).cloned(),
        Some(rest) => rest.strip_prefix('=').map(str::to_string),
        None => None,
    });
    given.and_then(|n| n.parse().ok()).unwrap_or(SAMPLE_SIZE)
}

struct Figures {
    req_per_s: f64,
    p50: Duration,
    p99: Duration,
    p999: Option<Duration>,
    errors: u64,
    first_error: Option<String>,
    reopened: u64,
    client_cpu_per_req: Duration,
}

fn figures(measured: &[Run]) -> Option<Figures> {
    let elapsed: Duration = measured.iter().map(|r| r.elapsed).sum();
    let mut latencies: Vec<Duration> = measured.iter().flat_map(|r| r.latencies.iter().copied()).collect();
    if latencies.is_empty() || elapsed.is_zero() {
        return None;
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let requests = measured.iter().map(|r| r.latencies.len() as u64 + r.errors).sum::<u64>().max(1);
    Some(Figures {
        req_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
        p999: (latencies.len() >= P999_MIN_REQUESTS).then(|| at(0.999)),
        errors: measured.iter().map(|r| r.errors).sum(),
        first_error: measured.iter().find_map(|r| r.first_error.clone()),
        reopened: measured.iter().map(|r| r.reopened).sum(),
        client_cpu_per_req: measured.iter().map(|r| r.client_cpu).sum::<Duration>().div_f64(requests as f64),
    })
}

fn rate(run: &Run) -> Option<f64> {
    let secs = run.elapsed.as_secs_f64();
    (secs > 0.0 && !run.latencies.is_empty()).then(|| run.latencies.len() as f64 / secs)
}

/// Each sample's requests/s ÷ that of the paired baseline sample taken right beside it (both
/// are recorded once per criterion call, so they pair up by position), sorted.
fn pair_ratios(case: &[Run], paired: &[Run]) -> Vec<f64> {
    let mut ratios: Vec<f64> = case.iter().zip(paired).filter_map(|(c, p)| Some(rate(c)? / rate(p)?)).collect();
    ratios.sort_by(f64::total_cmp);
    ratios
}

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}", a / b)
}

fn summary(samples: &Samples, calls: usize, stages: &[(String, StageMeans)]) {
    let measured = |id: &str| samples.get(id).map(|all| &all[all.len().saturating_sub(calls)..]);
    println!();
    println!("== http_write summary: POST {ROUTE}, one insert per request, keep-alive; measured samples only ==");
    println!(
        "{:<12} {:>4}  {:>9} {:>9} {:>9} {:>9}  {:>24}  {:>28}  {:>6}  {:>10}",
        "case",
        "n",
        "req/s",
        "p50",
        "p99",
        "p99.9",
        "÷baseline req/s p50 p99",
        "paired: req/s (IQR) p50 p99",
        "errors",
        "client/req"
    );
    let mut notes = Vec::new();
    for in_flight in IN_FLIGHT {
        let base = measured(&key(Case::Baseline, in_flight)).and_then(figures);
        for case in CASES {
            let id = key(case, in_flight);
            let Some(runs) = measured(&id) else { continue };
            let Some(f) = figures(runs) else {
                notes.push(format!("{id}: no request answered 2xx"));
                continue;
            };
            let vs_base = match (&base, case) {
                (Some(b), Case::MemorySync | Case::DiskSync) => format!(
                    "{} {} {}",
                    ratio(f.req_per_s, b.req_per_s),
                    ratio(f.p50.as_secs_f64(), b.p50.as_secs_f64()),
                    ratio(f.p99.as_secs_f64(), b.p99.as_secs_f64())
                ),
                _ => "-".into(),
            };
            let paired_runs = measured(&format!("{id}/{PAIRED}"));
            let paired = match (paired_runs, paired_runs.and_then(figures)) {
                (Some(p_runs), Some(p)) => {
                    let ratios = pair_ratios(runs, p_runs);
                    let pairs = if ratios.is_empty() {
                        "-".to_string()
                    } else {
                        format!(
                            "{:.2} ({:.2}-{:.2})",
                            quantile(&ratios, 0.5),
                            quantile(&ratios, 0.25),
                            quantile(&ratios, 0.75)
                        )
                    };
                    format!(
                        "{pairs} {} {}",
                        ratio(f.p50.as_secs_f64(), p.p50.as_secs_f64()),
                        ratio(f.p99.as_secs_f64(), p.p99.as_secs_f64())
                    )
                }
                _ => "-".into(),
            };
            println!(
                "{:<12} {:>4}  {:>9.0} {:>9} {:>9} {:>9}  {:>24}  {:>28}  {:>6}  {:>10}",
                case.name(),
                in_flight,
                f.req_per_s,
                fmt_time(f.p50),
                fmt_time(f.p99),
                f.p999.map_or("-".into(), fmt_time),
                vs_base,
                paired,
                f.errors,
                fmt_time(f.client_cpu_per_req),
            );
            if f.errors > 0 {
                let first = f.first_error.unwrap_or_default();
                notes.push(format!("{id}: {} errors, not counted as done; first: {first}", f.errors));
            }
            if f.reopened > 0 {
                notes.push(format!("{id}: {} connections reopened on the clock after one broke", f.reopened));
            }
        }
    }
    println!("  (n: requests in flight, one per keep-alive connection; req/s: 2xx answers ÷ time; latencies from the");
    println!("   first byte sent to the last byte of the answer, over every request; ÷baseline: req/s, p50 and p99 ÷ the");
    println!("   baseline case's of the same n; paired: ÷ the paired baseline server sampled beside each sample: req/s");
    println!("   as the median (interquartile range) of the per-sample ratios, then p50 and p99 of the requests;");
    println!("   client/req: the client thread's CPU per request)");
    for note in &notes {
        println!("  {note}");
    }
    write_stages(stages);
}

/// The write stages each case's server timed: one line per case and series, each stage's mean
/// with its count.
fn write_stages(stages: &[(String, StageMeans)]) {
    let series: std::collections::BTreeSet<&str> =
        stages.iter().flat_map(|(_, means)| means.keys().map(|(series, _)| series.as_str())).collect();
    if series.is_empty() {
        return;
    }
    println!();
    println!("== write stages from /metrics: mean (sum ÷ count) over each case, warm-up included; (count) ==");
    for name in &series {
        for (id, means) in stages {
            let line: Vec<String> = means
                .iter()
                .filter(|((s, _), _)| s == name)
                .map(|((_, stage), (mean, count))| format!("{stage} {} ({count})", fmt_time(*mean)))
                .collect();
            if !line.is_empty() {
                println!("{id:<15} {name}: {}", line.join(", "));
            }
        }
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let args: Vec<String> = std::env::args().collect();

    let system = System::new();
    let client = Client::start();
    let mut samples = Samples::new();
    let mut stages = Vec::new();

    let mut group = criterion.benchmark_group("http_write");
    // Every sample the same size, so that each holds many more requests than are in flight.
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(1));
    for case in CASES {
        for in_flight in IN_FLIGHT {
            let id = key(case, in_flight);
            let paired_id = format!("{id}/{PAIRED}");
            // Started on criterion's first call, so a filter that skips the case starts nothing.
            let mut servers: Option<(Served, Option<Served>)> = None;
            let mut calls = 0u64;
            group.bench_function(BenchmarkId::new(case.name(), in_flight), |b| {
                let (served, paired) = servers.get_or_insert_with(|| {
                    let paired = (case != Case::Baseline).then(|| Served::start(&system, Case::Baseline, in_flight));
                    (Served::start(&system, case, in_flight), paired)
                });
                b.iter_custom(|iters| {
                    calls += 1;
                    // Every other sample the baseline goes first, so that a drift of the
                    // machine's speed weighs on both sides alike.
                    let paired_first = calls % 2 == 0;
                    let mut run_paired = |samples: &mut Samples| {
                        if let Some(p) = paired.as_mut() {
                            let run = p.run(&system, &client, iters, in_flight);
                            samples.entry(paired_id.clone()).or_default().push(run);
                        }
                    };
                    if paired_first {
                        run_paired(&mut samples);
                    }
                    let run = served.run(&system, &client, iters, in_flight);
                    let elapsed = run.elapsed;
                    samples.entry(id.clone()).or_default().push(run);
                    if !paired_first {
                        run_paired(&mut samples);
                    }
                    elapsed
                })
            });
            if let Some((served, paired)) = servers {
                match served.scrape(&system, &client) {
                    Ok(metrics) => {
                        stages.push((id.clone(), write_stage_means(&metrics)));
                    }
                    Err(e) => eprintln!("{id}: cannot scrape /metrics: {e}"),
                }
                served.stop(&system);
                if let Some(p) = paired {
                    p.stop(&system);
                }
            }
        }
    }
    group.finish();

    criterion.final_summary();
    // `cargo test --benches` and `cargo bench -- --test` run every bench once: no figures.
    let measuring = support::measuring();
    if measuring {
        summary(&samples, measured_calls(&args), &stages);
    }
    client.stop();
}
