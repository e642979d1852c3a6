//! Raft commit throughput and latency, against the same entries appended straight to one node's
//! storage engine.
//!
//! * `raft_{memory,disk}/{3,5}_nodes/{1,64}`: a runtime ([`Runtime::start`]) whose cluster has
//!   3 or 5 nodes in this process (no replication replicas), on the engine named (`disk`: redb in
//!   a fresh temporary directory, every Raft write fsynced). A client thread sends [`PutKv`]
//!   (a unique key, a small JSON value) to the membership actor, which hands it to the leader;
//!   it answers once the entry is committed by a majority and applied. 1 or 64 are kept in
//!   flight. One criterion iteration is one committed proposal; its latency runs from send to
//!   answer. A write refused because no leader can take it (an election under load) is sent again
//!   after 5 ms, inside its latency; the summary counts them.
//! * `raft_{memory,disk}/append_only/{1,64}`, **the baseline**, in the same run: the same entries
//!   (raft-rs's protobuf of the same JSON command) appended straight to one group's log in a
//!   fresh store of the same engine by a plain writer thread, which gathers every queued entry
//!   (at most as many as are in flight) into one [`RaftWrite`] with the hard state, one
//!   transaction (one fsync on disk), then answers each: what making the entries durable on one
//!   node costs, with no consensus, no messages and no actor.
//!
//! The summary prints committed proposals/s, p50 and p99 per case and the ratio of each Raft
//! case's rate to the baseline's at the same number in flight. About a minute; `-- --quick` is
//! shorter.

// Shared by the benches; each takes what it needs.
#[allow(dead_code)]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix_rt::{System, SystemRunner};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use protobuf::Message as _;
use tokio::sync::oneshot;

use clusterd::messages::cluster::{ClusterError, GetClusterStatus, PutKv};
use clusterd::storage::{RaftEntry, RaftHardState, RaftWrite};
use clusterd::{Config, Runtime, RuntimeHandle};
use support::{fmt_time, median_rate, quantile, record, Client, Engine, Samples};

const IN_FLIGHT: [usize; 2] = [1, 64];

/// Writes sent again because no leader could take them (counted over the whole run).
static RETRIES: AtomicU64 = AtomicU64::new(0);
const NODES: [usize; 2] = [3, 5];


fn value(i: u64) -> serde_json::Value {
    serde_json::json!({"n": i, "owner": "bench", "zone": "eu-west-1a"})
}

/// A cluster of `nodes` Raft nodes in one runtime, with a leader.
struct Cluster {
    runtime: RuntimeHandle,
    _dir: Option<tempfile::TempDir>,
}

impl Cluster {
    fn start(system: &SystemRunner, engine: Engine, nodes: usize) -> Cluster {
        let mut config = Config::in_memory().without_replicas();
        config.cluster.nodes = (1..=nodes).map(|i| format!("node-{i}")).collect();
        let dir = engine.configure(&mut config);
        let runtime = system.block_on(async move { Runtime::start(config) }).expect("runtime starts");
        let membership = runtime.membership().clone();
        system.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while membership.send(GetClusterStatus).await.expect("membership answers").leader.is_none() {
                assert!(Instant::now() < deadline, "no leader in 30 s");
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Cluster { runtime, _dir: dir }
    }

    /// Commits `n` proposals with `in_flight` outstanding; their latencies.
    fn run(&self, system: &SystemRunner, client: &Client, n: u64, in_flight: usize, first: u64) -> Vec<Duration> {
        let membership = self.runtime.membership().clone();
        client.run(system, move || {
            timed_lanes(n, in_flight, move |i| {
                let membership = membership.clone();
                async move {
                    // As a client would: a write refused for want of a leader (an election under
                    // load) is sent again; the wait counts in its latency.
                    loop {
                        let put = PutKv { key: format!("k{}", first + i), value: value(i) };
                        match membership.send(put).await.expect("membership answers") {
                            Ok(_) => return,
                            Err(ClusterError::NoLeader | ClusterError::NotLeader { .. } | ClusterError::OutcomeUnknown { .. }) => {
                                RETRIES.fetch_add(1, Ordering::Relaxed);
                                actix_rt::time::sleep(Duration::from_millis(5)).await;
                            }
                            Err(e) => panic!("write refused: {e}"),
                        }
                    }
                }
            })
        })
    }
}

/// `n` requests, `in_flight` at a time (request `i` sent by lane `i % in_flight`, one after
/// another), each timed from its send to its answer.
async fn timed_lanes<F, Fut>(n: u64, in_flight: usize, request: F) -> Vec<Duration>
where
    F: Fn(u64) -> Fut + Clone,
    Fut: std::future::Future<Output = ()>,
{
    let lanes = (0..in_flight as u64).map(|lane| {
        let request = request.clone();
        async move {
            let mut out = Vec::new();
            let mut i = lane;
            while i < n {
                let t0 = Instant::now();
                request(i).await;
                out.push(t0.elapsed());
                i += in_flight as u64;
            }
            out
        }
    });
    futures_util::future::join_all(lanes).await.into_iter().flatten().collect()
}

type Job = (RaftEntry, oneshot::Sender<()>);

/// The baseline: a plain thread appending entries to one group's log, gathering what is queued.
struct Appender {
    jobs: mpsc::Sender<Job>,
    thread: std::thread::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl Appender {
    fn start(engine: Engine, in_flight: usize) -> Appender {
        let (store, dir) = engine.store();
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("raft-baseline".into())
            .spawn(move || {
                let mut next = 1u64;
                while let Ok(first) = rx.recv() {
                    let batch = support::gather(&rx, first, in_flight);
                    let mut write = RaftWrite::default();
                    let mut replies = Vec::with_capacity(batch.len());
                    for (mut entry, reply) in batch {
                        entry.index = next;
                        next += 1;
                        write.entries.push(entry);
                        replies.push(reply);
                    }
                    write.hard_state = Some(RaftHardState { term: 1, vote: 1, commit: next - 1 });
                    store.commit_raft("baseline", write).expect("append");
                    for r in replies {
                        let _ = r.send(());
                    }
                }
            })
            .expect("baseline thread starts");
        Appender { jobs, thread, _dir: dir }
    }

    fn run(&self, system: &SystemRunner, client: &Client, n: u64, in_flight: usize, first: u64) -> Vec<Duration> {
        let jobs = self.jobs.clone();
        client.run(system, move || {
            timed_lanes(n, in_flight, move |i| {
                let jobs = jobs.clone();
                async move {
                    let cmd = clusterd::model::MetaCommand::Put { key: format!("k{}", first + i), value: value(i) };
                    let entry = raft::eraftpb::Entry { term: 1, data: serde_json::to_vec(&cmd).expect("json").into(), ..Default::default() };
                    let bytes = entry.write_to_bytes().expect("protobuf");
                    let (tx, rx) = oneshot::channel();
                    jobs.send((RaftEntry { index: 0, term: 1, bytes }, tx)).expect("baseline runs");
                    rx.await.expect("appended");
                }
            })
        })
    }

    fn stop(self) {
        drop(self.jobs);
        self.thread.join().expect("baseline thread");
    }
}

fn summary(samples: &Samples) {
    println!();
    println!("Raft commits: committed proposals/s (median over samples), latency p50 / p99 over every proposal, and");
    println!("the rate against appending the same entries straight to one node's engine at the same number in flight:");
    for engine in ["memory", "disk"] {
        for in_flight in IN_FLIGHT {
            let base = median_rate(samples, &format!("{engine}/append_only/{in_flight}"));
            for case in ["append_only", "3_nodes", "5_nodes"] {
                let id = format!("{engine}/{case}/{in_flight}");
                let Some(rate) = median_rate(samples, &id) else { continue };
                let mut lat: Vec<f64> = samples[&id].iter().flat_map(|(_, l)| l.iter().map(|d| d.as_secs_f64())).collect();
                lat.sort_by(f64::total_cmp);
                let ratio = base.map(|b| format!("x{:.2}", rate / b)).unwrap_or_default();
                println!(
                    "  {engine:<6} {case:<11} in flight {in_flight:>2}: {rate:>9.0}/s  p50 {:>9}  p99 {:>9}  {ratio}",
                    fmt_time(Duration::from_secs_f64(quantile(&lat, 0.5))),
                    fmt_time(Duration::from_secs_f64(quantile(&lat, 0.99))),
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
    let mut next_key = 0u64;

    for engine in [Engine::Memory, Engine::Disk] {
        let mut group = criterion.benchmark_group(format!("raft_{}", engine.name()));
        group.sampling_mode(SamplingMode::Flat);
        group.throughput(Throughput::Elements(1));
        for in_flight in IN_FLIGHT {
            let appender = Appender::start(engine, in_flight);
            let id = format!("{}/append_only/{in_flight}", engine.name());
            group.bench_function(BenchmarkId::new("append_only", in_flight), |b| {
                b.iter_custom(|iters| {
                    let t0 = Instant::now();
                    let lat = appender.run(&system, &client, iters, in_flight, next_key);
                    next_key += iters;
                    record(&mut samples, &id, t0.elapsed(), lat)
                })
            });
            appender.stop();
            for nodes in NODES {
                let cluster = Cluster::start(&system, engine, nodes);
                let id = format!("{}/{nodes}_nodes/{in_flight}", engine.name());
                group.bench_function(BenchmarkId::new(format!("{nodes}_nodes"), in_flight), |b| {
                    b.iter_custom(|iters| {
                        let t0 = Instant::now();
                        let lat = cluster.run(&system, &client, iters, in_flight, next_key);
                        next_key += iters;
                        record(&mut samples, &id, t0.elapsed(), lat)
                    })
                });
                let runtime = cluster.runtime.clone();
                system.block_on(async move { runtime.shutdown().await });
            }
        }
        group.finish();
    }

    criterion.final_summary();
    if support::measuring() {
        summary(&samples);
        println!("  writes sent again for want of a leader (elections under load): {}", RETRIES.load(Ordering::Relaxed));
    }
    client.stop();
}
