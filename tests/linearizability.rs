//! Linearizability of the Raft-replicated metadata KV (`/api/v1/cluster/kv/{key}`) under faults,
//! checked by stateright's `LinearizabilityTester` over a per-key `Register` spec.
//!
//! Each seed starts three nodes (memory engine, short Raft ticks), runs a few concurrent clients
//! doing random puts (unique values `c{client}-{n}`) and linearizable reads on three keys while a
//! fault task crashes and restarts nodes (or fails their actors), partitions them, drops messages
//! on links, moves leadership and heals, all from a seeded generator. Every invocation and answer is recorded in
//! real-time order; each key's history must then be linearizable. A write answered 504 (outcome
//! unknown), or given up by its client, is an operation that never returns: it may have taken
//! effect at any point after it was invoked, or never. A write answered 503 or 409 is taken at its
//! word (not applied) and left out; so is every read that answered nothing (it constrains
//! nothing).
//!
//! Seeds: `LINEARIZABILITY_SEEDS=N` runs seeds 1..=N (default 24); `LINEARIZABILITY_SEED=S` runs
//! exactly seed S, to reproduce a failure; `LINEARIZABILITY_PRINT=1` prints every key's history
//! (with `-- --nocapture`). Thousands, in a release build:
//!
//! ```text
//! LINEARIZABILITY_SEEDS=5000 cargo test --release --test linearizability
//! ```
//!
//! A seed fixes the choices (keys, values, which fault, which node, the pauses), not the timing
//! of the actors: a seed that failed once may need a few runs to fail again.
//!
//! Waits on the system's state are polls inside `common::TIMEOUT`; the only sleeps are the pauses
//! between a client's operations and between faults, which shape the load (how many operations
//! meet each fault) and synchronise nothing.

mod common;

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::test::TestRequest;
use futures_util::future::join_all;
use serde_json::json;
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

use common::api::{start, Api};
use common::*;

const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
const KEYS: [&str; 3] = ["lin-a", "lin-b", "lin-c"];
const CLIENTS: u32 = 4;
const OPS_PER_CLIENT: u32 = 40;
/// How long a client waits for an answer before it gives up on the operation (a write given up is
/// of unknown outcome). Far below the node's own 5 s: a read held by a leader cut off from its
/// peers would otherwise stall the seed.
const PATIENCE: Duration = Duration::from_millis(1_000);
const DEFAULT_SEEDS: u64 = 24;

// ---------------------------------------------------------------------------------------------
// The history.

type Val = Option<String>;
type Op = RegisterOp<Val>;
type Ret = RegisterRet<Val>;
/// A client and its incarnation: a client whose operation never returned carries on as a new
/// thread, since a thread has at most one operation in flight.
type Thread = (u32, u32);

/// How an invoked operation ended.
#[derive(Debug)]
enum Outcome {
    Returned(Ret),
    /// It certainly did not take effect (a write refused with 503 or 409), or it is a read that
    /// answered nothing: left out of the history.
    Failed(String),
    /// It may or may not have taken effect: it stays in flight forever.
    Unknown(String),
}

#[derive(Clone, Debug)]
enum Entry {
    Invoke { id: usize, thread: Thread, key: &'static str, op: Op },
    Return { id: usize, ret: Ret },
    Failed { id: usize, why: String },
    Unknown { id: usize, why: String },
    /// A fault applied, kept to read a failing history by.
    Fault(String),
}

/// Everything invoked, answered and injected, in the real order it happened.
#[derive(Default)]
struct History {
    entries: Vec<Entry>,
    next_id: usize,
}

/// The shared recorder: every client and the fault task go through one lock, so the order of the
/// entries is the real-time order of the calls.
#[derive(Default)]
struct Recorder(Mutex<History>);

impl Recorder {
    fn invoke(&self, thread: Thread, key: &'static str, op: Op) -> usize {
        let mut h = self.0.lock().expect("the history lock");
        let id = h.next_id;
        h.next_id += 1;
        h.entries.push(Entry::Invoke { id, thread, key, op });
        id
    }

    fn finish(&self, id: usize, outcome: Outcome) {
        let entry = match outcome {
            Outcome::Returned(ret) => Entry::Return { id, ret },
            Outcome::Failed(why) => Entry::Failed { id, why },
            Outcome::Unknown(why) => Entry::Unknown { id, why },
        };
        self.0.lock().expect("the history lock").entries.push(entry);
    }

    fn fault(&self, what: String) {
        self.0.lock().expect("the history lock").entries.push(Entry::Fault(what));
    }

    fn entries(&self) -> Vec<Entry> {
        self.0.lock().expect("the history lock").entries.clone()
    }
}

/// Checks `key`'s part of `entries` with stateright's `LinearizabilityTester` over a register
/// that starts absent (`None`). Returns a linearization, or the history as text.
///
/// Operations left out: failed ones, and writes of unknown outcome whose value no read returned.
/// Leaving those out is sound and complete: such a write may be linearized nowhere (it never
/// returned), and any linearization that places it stays one without it, since no read took its
/// value. It spares the tester's search, which tries every place for each write in flight.
fn check_key(entries: &[Entry], key: &str) -> Result<Vec<(Op, Ret)>, String> {
    let mut ours = HashSet::new();
    let mut failed = HashSet::new();
    let mut returned = HashSet::new();
    let mut read = HashSet::new();
    for e in entries {
        match e {
            Entry::Invoke { id, key: k, .. } if *k == key => {
                ours.insert(*id);
            }
            Entry::Failed { id, .. } => {
                failed.insert(*id);
            }
            Entry::Return { id, ret } if ours.contains(id) => {
                returned.insert(*id);
                if let RegisterRet::ReadOk(Some(v)) = ret {
                    read.insert(v.clone());
                }
            }
            _ => {}
        }
    }
    let mut tester = LinearizabilityTester::<Thread, Register<Val>>::new(Register(None));
    let mut included: HashMap<usize, Thread> = Default::default();
    for e in entries {
        let result = match e {
            Entry::Invoke { id, thread, key: k, op } if *k == key && !failed.contains(id) => {
                let unread_unknown_write =
                    !returned.contains(id) && matches!(op, RegisterOp::Write(Some(v)) if !read.contains(v));
                let unknown_read = !returned.contains(id) && matches!(op, RegisterOp::Read);
                if unread_unknown_write || unknown_read {
                    continue;
                }
                included.insert(*id, *thread);
                tester.on_invoke(*thread, op.clone()).map(|_| ())
            }
            Entry::Return { id, ret } => match included.get(id) {
                Some(thread) => tester.on_return(*thread, ret.clone()).map(|_| ()),
                None => continue,
            },
            _ => continue,
        };
        result.map_err(|e| format!("the recorded history is malformed: {e}\n{}", render(entries, key)))?;
    }
    tester.serialized_history().ok_or_else(|| render(entries, key))
}

/// `key`'s history (and the faults between), one entry a line, for a failure message.
fn render(entries: &[Entry], key: &str) -> String {
    let mut ours = HashSet::new();
    let mut out = format!("history of {key} (register starts absent):\n");
    for (i, e) in entries.iter().enumerate() {
        let line = match e {
            Entry::Invoke { id, thread, key: k, op } if *k == key => {
                ours.insert(*id);
                format!("invoke  #{id} {thread:?} {op:?}")
            }
            Entry::Return { id, ret } if ours.contains(id) => format!("return  #{id} {ret:?}"),
            Entry::Failed { id, why } if ours.contains(id) => format!("failed  #{id} (left out) {why}"),
            Entry::Unknown { id, why } if ours.contains(id) => format!("unknown #{id} (in flight forever) {why}"),
            Entry::Fault(what) => format!("fault   {what}"),
            _ => continue,
        };
        let _ = writeln!(out, "  {i:5} {line}");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The random schedule.

/// SplitMix64: enough randomness for a schedule, and the same schedule for the same seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// A pause that shapes the load (how many operations meet each fault); it waits for nothing.
async fn pause(d: Duration) {
    tokio::time::sleep(d).await;
}

// ---------------------------------------------------------------------------------------------
// Clients.

async fn put(api: &Api, key: &str, value: &str) -> Outcome {
    let req = TestRequest::put().uri(&format!("/api/v1/cluster/kv/{key}")).set_json(json!({"value": value}));
    let Ok(r) = tokio::time::timeout(PATIENCE, api.send(req)).await else {
        return Outcome::Unknown(format!("no answer within {PATIENCE:?}"));
    };
    match r.status.as_u16() {
        200 => Outcome::Returned(RegisterRet::WriteOk),
        503 | 409 => Outcome::Failed(format!("{} {}", r.status.as_u16(), r.text())),
        504 => Outcome::Unknown(format!("504 {}", r.text())),
        other => panic!("PUT {key}: unexpected {other} {}", r.text()),
    }
}

async fn get(api: &Api, key: &str) -> Outcome {
    let Ok(r) = tokio::time::timeout(PATIENCE, api.get(&format!("/api/v1/cluster/kv/{key}"))).await else {
        return Outcome::Failed(format!("no answer within {PATIENCE:?}"));
    };
    match r.status.as_u16() {
        200 => {
            let v = &r.json()["value"];
            let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            Outcome::Returned(RegisterRet::ReadOk(Some(v)))
        }
        404 => Outcome::Returned(RegisterRet::ReadOk(None)),
        503 | 409 | 504 => Outcome::Failed(format!("{} {}", r.status.as_u16(), r.text())),
        other => panic!("GET {key}: unexpected {other} {}", r.text()),
    }
}

/// One client: random puts and gets, one at a time, until `OPS_PER_CLIENT` of them answered or
/// were left in flight. One that failed (no leader, say) does not count: the client backs off and
/// tries another, at most `3 * OPS_PER_CLIENT` in all.
async fn client(api: &Api, rec: &Recorder, client: u32, mut rng: Rng) {
    let (mut incarnation, mut counted) = (0, 0);
    for n in 0..3 * OPS_PER_CLIENT {
        if counted == OPS_PER_CLIENT {
            break;
        }
        let key = rng.pick(&KEYS);
        let thread = (client, incarnation);
        let outcome = if rng.below(2) == 0 {
            let value = format!("c{client}-{n}");
            let id = rec.invoke(thread, key, RegisterOp::Write(Some(value.clone())));
            let outcome = put(api, key, &value).await;
            let counts = (!matches!(outcome, Outcome::Failed(_)), matches!(outcome, Outcome::Unknown(_)));
            rec.finish(id, outcome);
            counts
        } else {
            let id = rec.invoke(thread, key, RegisterOp::Read);
            let outcome = get(api, key).await;
            let counts = (!matches!(outcome, Outcome::Failed(_)), false);
            rec.finish(id, outcome);
            counts
        };
        match outcome {
            (true, in_flight) => {
                counted += 1;
                if in_flight {
                    incarnation += 1;
                }
                pause(rng.millis(2, 20)).await;
            }
            (false, _) => pause(rng.millis(10, 40)).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Faults.

/// The leader of the highest term, if any.
async fn leader(api: &Api) -> Option<String> {
    let raft = api.get("/api/v1/cluster/raft").await.expect(200);
    raft["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["role"] == "leader")
        .max_by_key(|n| n["term"].as_u64().expect("term"))
        .map(|n| n["node_id"].as_str().expect("node_id").to_string())
}

/// A fault request, bounded by `PATIENCE`; returns the status (0 when it took longer).
async fn fault(api: &Api, path: &str, body: serde_json::Value) -> u16 {
    match tokio::time::timeout(PATIENCE, api.post(&format!("/api/v1/cluster/{path}"), body)).await {
        Ok(r) => r.status.as_u16(),
        Err(_) => 0,
    }
}

/// Applies random faults, paced, until `done` is set; then heals everything and restarts what is
/// crashed.
async fn nemesis(api: &Api, rec: &Recorder, done: &Cell<bool>, mut rng: Rng) {
    let mut crashed: Option<&str> = None;
    while !done.get() {
        pause(rng.millis(30, 120)).await;
        if done.get() {
            break;
        }
        let what = match rng.below(8) {
            0 | 1 => match crashed.take() {
                Some(node) => {
                    let s = fault(api, "faults/restart", json!({"target": node})).await;
                    if s != 200 {
                        crashed = Some(node); // not back (yet): try again later
                    }
                    format!("restart {node}: {s}")
                }
                None => {
                    let node = match leader(api).await {
                        Some(l) if rng.below(2) == 0 => NODES.into_iter().find(|n| *n == l).expect("a known node"),
                        _ => rng.pick(&NODES),
                    };
                    // One crash in three is an internal fault: the supervisor restarts the node
                    // at once, from what its store holds.
                    let mode = if rng.below(3) == 0 { "internal_fault" } else { "crash" };
                    let s = fault(api, "faults/crash", json!({"target": node, "mode": mode})).await;
                    if s == 200 && mode == "crash" {
                        crashed = Some(node);
                    }
                    format!("{mode} {node}: {s}")
                }
            },
            2 | 3 => {
                let groups = if rng.below(4) == 0 {
                    json!([["node-1"], ["node-2"], ["node-3"]])
                } else {
                    let alone = rng.pick(&NODES);
                    let rest: Vec<&str> = NODES.into_iter().filter(|n| *n != alone).collect();
                    json!([[alone], rest])
                };
                let s = fault(api, "faults/partition", json!({ "groups": groups })).await;
                format!("partition {groups}: {s}")
            }
            4 | 5 => format!("heal: {}", fault(api, "faults/heal", json!({})).await),
            6 => {
                let from = rng.pick(&NODES);
                let to = NODES.into_iter().filter(|n| *n != from).nth(rng.below(2) as usize).expect("another node");
                let rate = rng.pick(&[0.2, 0.5, 0.8]);
                let s = fault(api, "faults/link", json!({"from": from, "to": to, "drop_rate": rate})).await;
                format!("drop {rate} {from}<->{to}: {s}")
            }
            _ => {
                let node = rng.pick(&NODES);
                let s = fault(api, &format!("nodes/{node}/promote"), json!({})).await;
                format!("promote {node}: {s}")
            }
        };
        rec.fault(what);
    }
    rec.fault(format!("heal: {}", fault(api, "faults/heal", json!({})).await));
    if let Some(node) = crashed {
        let r = api.post("/api/v1/cluster/faults/restart", json!({"target": node})).await;
        rec.fault(format!("restart {node}: {}", r.status.as_u16()));
    }
}

// ---------------------------------------------------------------------------------------------
// One seed.

struct SeedRun {
    entries: Vec<Entry>,
    ops: usize,
    failed: usize,
    unknown: usize,
}

async fn run_seed(seed: u64) -> SeedRun {
    let config = TestConfig::memory()
        .without_replicas()
        .with(|c| {
            c.cluster.tick_ms = 10;
            c.cluster.heartbeat_tick = 2;
            c.cluster.election_tick = 10;
        })
        .build();
    let (runtime, api) = start(config).await;
    poll_until("a leader", || leader(&api)).await;

    let rec = Recorder::default();
    let done = Cell::new(false);
    let mut rng = Rng::new(seed);
    let clients = join_all((0..CLIENTS).map(|c| client(&api, &rec, c, Rng::new(rng.next()))));
    let clients = async {
        clients.await;
        done.set(true);
    };
    futures_util::future::join(clients, nemesis(&api, &rec, &done, Rng::new(rng.next()))).await;

    // Healed and whole again: a last read of every key, retried until it answers, must see every
    // acknowledged write.
    let last = (CLIENTS, 0);
    for key in KEYS {
        poll_until(&format!("a final read of {key}"), || async {
            let id = rec.invoke(last, key, RegisterOp::Read);
            let outcome = get(&api, key).await;
            let answered = matches!(outcome, Outcome::Returned(_));
            rec.finish(id, outcome);
            answered.then_some(())
        })
        .await;
    }
    within("the runtime to shut down", runtime.shutdown()).await;

    let entries = rec.entries();
    let ops = entries.iter().filter(|e| matches!(e, Entry::Invoke { .. })).count();
    let failed = entries.iter().filter(|e| matches!(e, Entry::Failed { .. })).count();
    let unknown = entries.iter().filter(|e| matches!(e, Entry::Unknown { .. })).count();
    SeedRun { entries, ops, failed, unknown }
}

fn seeds() -> Vec<u64> {
    let var = |name: &str| {
        std::env::var(name).ok().map(|v| v.trim().parse::<u64>().unwrap_or_else(|e| panic!("{name}={v}: {e}")))
    };
    match var("LINEARIZABILITY_SEED") {
        Some(seed) => vec![seed],
        None => (1..=var("LINEARIZABILITY_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect(),
    }
}

#[actix_web::test]
async fn the_metadata_kv_is_linearizable_under_crashes_partitions_and_lossy_links() {
    let started = Instant::now();
    let mut failures = Vec::new();
    let (mut ops, mut unknown) = (0, 0);
    let seeds = seeds();
    for &seed in &seeds {
        let t = Instant::now();
        let run = run_seed(seed).await;
        ops += run.ops;
        unknown += run.unknown;
        if std::env::var_os("LINEARIZABILITY_PRINT").is_some() {
            for key in KEYS {
                eprintln!("seed {seed}: {}", render(&run.entries, key));
            }
        }
        let checked = Instant::now();
        for key in KEYS {
            if let Err(history) = check_key(&run.entries, key) {
                eprintln!(
                    "seed {seed}: not linearizable ({key})\n{history}\nreproduce: LINEARIZABILITY_SEED={seed} cargo test --test linearizability -- --nocapture"
                );
                failures.push(seed);
            }
        }
        eprintln!(
            "seed {seed}: {} ops ({} failed, {} of unknown outcome) in {:?}, checked in {:?}",
            run.ops,
            run.failed,
            run.unknown,
            checked - t,
            checked.elapsed()
        );
    }
    eprintln!("{} seeds, {ops} operations ({unknown} of unknown outcome) in {:?}", seeds.len(), started.elapsed());
    assert!(failures.is_empty(), "not linearizable: seeds {failures:?} (histories above)");
}

// ---------------------------------------------------------------------------------------------
// The checker can fail.

/// A history from (thread, invoke or return) steps, in order.
fn history(steps: &[(u32, &str, Option<&str>)]) -> Vec<Entry> {
    let rec = Recorder::default();
    let mut open: HashMap<u32, usize> = Default::default();
    for (thread, step, v) in steps {
        let v = v.map(str::to_string);
        match *step {
            "write" => {
                open.insert(*thread, rec.invoke((*thread, 0), "k", RegisterOp::Write(v)));
            }
            "read" => {
                open.insert(*thread, rec.invoke((*thread, 0), "k", RegisterOp::Read));
            }
            "ok" => rec.finish(open[thread], Outcome::Returned(RegisterRet::WriteOk)),
            "got" => rec.finish(open[thread], Outcome::Returned(RegisterRet::ReadOk(v))),
            "unknown" => rec.finish(open[thread], Outcome::Unknown("timeout".into())),
            "failed" => rec.finish(open[thread], Outcome::Failed("503".into())),
            other => panic!("{other}"),
        }
    }
    rec.entries()
}

#[test]
fn the_checker_accepts_concurrent_and_unknown_writes_read_in_a_possible_order() {
    // Thread 1's write overlaps thread 2's read, which may see either value; a write of unknown
    // outcome read later took effect; one never read may not have.
    let h = history(&[
        (1, "write", Some("a")),
        (1, "ok", None),
        (1, "write", Some("b")),
        (2, "read", None),
        (2, "got", Some("a")),
        (1, "ok", None),
        (3, "write", Some("c")),
        (3, "unknown", None),
        (2, "read", None),
        (2, "got", Some("c")),
        (4, "write", Some("d")),
        (4, "unknown", None),
        (2, "read", None),
        (2, "got", Some("c")),
    ]);
    check_key(&h, "k").expect("linearizable");
}

#[test]
fn the_checker_rejects_a_stale_read_a_value_never_written_and_a_failed_write_seen() {
    // A read that starts after a write of "b" returned still sees "a".
    let stale = history(&[
        (1, "write", Some("a")),
        (1, "ok", None),
        (1, "write", Some("b")),
        (1, "ok", None),
        (2, "read", None),
        (2, "got", Some("a")),
    ]);
    let e = check_key(&stale, "k").expect_err("a stale read");
    assert!(e.contains("ReadOk(Some(\"a\"))"), "{e}");

    // A read of a value nobody wrote.
    let invented = history(&[(1, "write", Some("a")), (1, "ok", None), (2, "read", None), (2, "got", Some("z"))]);
    check_key(&invented, "k").expect_err("a value never written");

    // A read of absent after a write returned.
    let lost = history(&[(1, "write", Some("a")), (1, "ok", None), (2, "read", None), (2, "got", None)]);
    check_key(&lost, "k").expect_err("a lost write");

    // A write refused (503: not applied) that a read then sees.
    let refused = history(&[(1, "write", Some("a")), (1, "failed", None), (2, "read", None), (2, "got", Some("a"))]);
    check_key(&refused, "k").expect_err("a refused write seen");

    // Two reads in sequence that see the writes in opposite orders (both writes in flight).
    let flip = history(&[
        (1, "write", Some("a")),
        (2, "write", Some("b")),
        (3, "read", None),
        (3, "got", Some("a")),
        (3, "read", None),
        (3, "got", Some("b")),
        (3, "read", None),
        (3, "got", Some("a")),
    ]);
    check_key(&flip, "k").expect_err("a value that came back");
}
