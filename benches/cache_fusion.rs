//! Cache Fusion throughput and latency: blocks written alternately by two instances, so that
//! every write first moves the block from the other instance's cache (a current-block transfer,
//! 2-way or 3-way), against the same writes by one instance that holds the block already, in the
//! same run.
//!
//! * `cache_fusion_{memory,disk}/local_write/{1,16}`, **the baseline**: a runtime with the four
//!   default RAC instances; each of 1 or 16 lanes writes its own block at `instance-1` over and
//!   over. After the first write the instance holds the block exclusive: each write is the
//!   actor's work and the redo commit (gathered with the other lanes' into one fsync on disk).
//! * `cache_fusion_{memory,disk}/transfer_write/{1,16}`: the same, but each lane's writes
//!   alternate between `instance-1` and `instance-2`: each write asks the block's master for an
//!   exclusive lock, the other instance ships the block (keeping a past image) and the writer
//!   commits its redo. One criterion iteration is one write; its latency runs from the send to
//!   the answer.
//!
//! The summary prints writes/s (median over samples), p50 and p99 per case, each transfer case's
//! rate against the baseline at the same number of lanes, and the receive time the instances
//! measured (`receive_micros_avg`, `receive_micros_p99` of `/cache-fusion/statistics`). About a
//! minute; `-- --quick` is shorter.

// Shared by the benches; each takes what it needs.
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_rt::{System, SystemRunner};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

use clusterd::actors::rac::Rac;
use clusterd::messages::rac::{GetInstance, WriteBlock};
use clusterd::model::rac::BlockId;
use clusterd::{Config, Runtime, RuntimeHandle};
use support::{fmt_time, median_rate, quantile, record, Client, Engine, Samples};

const LANES: [usize; 2] = [1, 16];

struct Cluster {
    runtime: RuntimeHandle,
    _dir: Option<tempfile::TempDir>,
}

impl Cluster {
    fn start(system: &SystemRunner, engine: Engine) -> Cluster {
        let mut config = Config::in_memory().without_replicas();
        let dir = engine.configure(&mut config);
        let runtime = system.block_on(async move { Runtime::start(config) }).expect("runtime starts");
        Cluster { runtime, _dir: dir }
    }

    /// `n` writes over `lanes` lanes (lane `j` writes block `1:j`); `alternate`: a lane's writes
    /// go to `instance-1` and `instance-2` in turn. Their latencies.
    fn run(&self, system: &SystemRunner, client: &Client, n: u64, lanes: usize, alternate: bool) -> Vec<Duration> {
        let rac = self.runtime.domain::<Rac>().expect("the RAC domain runs");
        let one = rac.instances["instance-1"].clone();
        let two = rac.instances["instance-2"].clone();
        client.run(system, move || async move {
            let lanes = (0..lanes as u64).map(|lane| {
                let (one, two) = (one.clone(), two.clone());
                async move {
                    let mut out = Vec::new();
                    let mut i = lane;
                    while i < n {
                        let at = if alternate && (i / lanes as u64) % 2 == 1 { &two } else { &one };
                        let t0 = Instant::now();
                        let write = WriteBlock { block: BlockId { file: 1, block: lane }, data: format!("write {i}").into_bytes() };
                        at.send(write).await.expect("instance answers").expect("written");
                        out.push(t0.elapsed());
                        i += lanes as u64;
                    }
                    out
                }
            });
            futures_util::future::join_all(lanes).await.into_iter().flatten().collect()
        })
    }

    /// (average, p99) receive micros `instance-1` and `instance-2` measured.
    fn receive_times(&self, system: &SystemRunner) -> Vec<(f64, u64)> {
        let rac = self.runtime.domain::<Rac>().expect("the RAC domain runs");
        let addrs = [rac.instances["instance-1"].clone(), rac.instances["instance-2"].clone()];
        system.block_on(async move {
            let mut out = Vec::new();
            for a in addrs {
                let v = a.send(GetInstance).await.expect("instance answers").expect("a view");
                out.push((v.statistics.receive_micros_avg, v.statistics.receive_micros_p99));
            }
            out
        })
    }
}

fn summary(samples: &Samples, receive: &BTreeMap<String, Vec<(f64, u64)>>) {
    println!();
    println!("Cache Fusion: writes/s (median over samples), latency p50 / p99 over every write, and the rate against");
    println!("the same writes by one instance holding the block (no transfer) at the same number of lanes:");
    for engine in ["memory", "disk"] {
        for lanes in LANES {
            let base = median_rate(samples, &format!("{engine}/local_write/{lanes}"));
            for case in ["local_write", "transfer_write"] {
                let id = format!("{engine}/{case}/{lanes}");
                let Some(rate) = median_rate(samples, &id) else { continue };
                let mut lat: Vec<f64> = samples[&id].iter().flat_map(|(_, l)| l.iter().map(|d| d.as_secs_f64())).collect();
                lat.sort_by(f64::total_cmp);
                let ratio = base.map(|b| format!("x{:.2}", rate / b)).unwrap_or_default();
                let received = receive.get(&id).map(|r| r.iter().map(|(avg, p99)| format!("{avg:.0}/{p99}")).collect::<Vec<_>>().join(" ")).unwrap_or_default();
                println!(
                    "  {engine:<6} {case:<14} lanes {lanes:>2}: {rate:>9.0}/s  p50 {:>9}  p99 {:>9}  {ratio:<6} {}",
                    fmt_time(Duration::from_secs_f64(quantile(&lat, 0.5))),
                    fmt_time(Duration::from_secs_f64(quantile(&lat, 0.99))),
                    if received.is_empty() || case == "local_write" { String::new() } else { format!("receive µs avg/p99 (instance-1, -2): {received}") },
                );
            }
        }
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let system = System::new();
    let client = Client::start();
    let mut samples = Samples::new();
    let mut receive = BTreeMap::new();

    for engine in [Engine::Memory, Engine::Disk] {
        let mut group = criterion.benchmark_group(format!("cache_fusion_{}", engine.name()));
        group.sampling_mode(SamplingMode::Flat);
        group.throughput(Throughput::Elements(1));
        for lanes in LANES {
            for (case, alternate) in [("local_write", false), ("transfer_write", true)] {
                // A fresh runtime per case: the other case's blocks and statistics do not carry over.
                let cluster = Cluster::start(&system, engine);
                let id = format!("{}/{case}/{lanes}", engine.name());
                group.bench_function(BenchmarkId::new(case, lanes), |b| {
                    b.iter_custom(|iters| {
                        let t0 = Instant::now();
                        let lat = cluster.run(&system, &client, iters, lanes, alternate);
                        record(&mut samples, &id, t0.elapsed(), lat)
                    })
                });
                receive.insert(id, cluster.receive_times(&system));
                let runtime = cluster.runtime.clone();
                system.block_on(async move { runtime.shutdown().await });
            }
        }
        group.finish();
    }

    criterion.final_summary();
    if support::measuring() {
        summary(&samples, &receive);
    }
    client.stop();
}
