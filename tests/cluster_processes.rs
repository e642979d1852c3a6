//! Three `clusterd` processes, one Raft node each, over the real transport between processes
//! (WebSocket, with the servers' token): they elect one leader; metadata written through any
//! process reads back through any other; SIGKILL of the leader's process leaves the other two to
//! elect a leader and take writes through either; the killed process, started again, catches up
//! with every committed entry; and SIGKILL of all three loses no acknowledged write. A fourth
//! process joins the group through Raft and leaves it again, told in every process.
//!
//! Waits are on state, polled within `common::binary::WAIT`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::binary::{request_as, signal, start_with, wait_exit, Server, WAIT};

const TOKEN: &str = "three-process-secret";

/// Four free loopback ports (bound, read, released: a race with other programs is unlikely).
fn free_ports() -> [u16; 4] {
    let socks: Vec<_> = (0..4).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    let ports: Vec<u16> = socks.iter().map(|s| s.local_addr().expect("addr").port()).collect();
    [ports[0], ports[1], ports[2], ports[3]]
}

/// Writes process `i`'s config (it hosts `node-{i+1}`; the bootstrap voters are node-1 to
/// node-3, so the fourth process hosts a node that joins later) under `dir` and returns its path.
fn config(dir: &Path, ports: [u16; 4], i: usize) -> String {
    let peers: Vec<String> =
        (0..3).filter(|j| *j != i).map(|j| format!("node-{} = \"127.0.0.1:{}\"", j + 1, ports[j])).collect();
    let text = format!(
        "[server]\nbind = \"127.0.0.1:{port}\"\nauth_token = \"{TOKEN}\"\n\n[storage]\ndata_dir = \"{data}\"\n\n\
         [cluster]\nnodes = [\"node-1\", \"node-2\", \"node-3\"]\nhost = [\"node-{n}\"]\npeers = {{ {peers} }}\n",
        port = ports[i],
        data = dir.join(format!("node-{}", i + 1)).display(),
        n = i + 1,
        peers = peers.join(", "),
    );
    let path = dir.join(format!("node-{}.toml", i + 1));
    std::fs::write(&path, text).expect("write config");
    path.to_string_lossy().into_owned()
}

fn call(server: &Server, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, body) = request_as(&server.addr, Some(TOKEN), method, path, body);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Polls `probe` every 20 ms until it gives a value, at most [`WAIT`].
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The leader and term every given process names, once they all name the same one, of a term
/// after `after`.
fn agreed_leader(servers: &[&Server], after: u64) -> (String, u64) {
    wait_for("the processes to agree on a leader", || {
        let seen: Vec<(Value, Value)> = servers
            .iter()
            .map(|s| {
                let (_, st) = call(s, "GET", "/api/v1/cluster/status", "");
                (st["leader"].clone(), st["term"].clone())
            })
            .collect();
        let (leader, term) = seen[0].clone();
        (leader.is_string() && term.as_u64() > Some(after) && seen.iter().all(|s| *s == (leader.clone(), term.clone())))
            .then(|| (leader.as_str().unwrap_or_default().to_string(), term.as_u64().unwrap_or_default()))
    })
}

fn put(server: &Server, key: &str, value: Value) {
    let (status, body) = call(server, "PUT", &format!("/api/v1/cluster/kv/{key}"), &json!({ "value": value }).to_string());
    assert_eq!(status, 200, "PUT {key} through {}: {body}", server.addr);
}

fn get(server: &Server, key: &str) -> Value {
    let (status, body) = call(server, "GET", &format!("/api/v1/cluster/kv/{key}"), "");
    assert_eq!(status, 200, "GET {key} through {}: {body}", server.addr);
    body["value"].clone()
}

fn index_of(name: &str) -> usize {
    name.trim_start_matches("node-").parse::<usize>().expect("node-N") - 1
}

#[actix_web::test]
async fn three_processes_elect_fail_over_on_sigkill_and_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports();
    let configs: Vec<String> = (0..3).map(|i| config(dir.path(), ports, i)).collect();
    let serve = |i: usize| start_with(&["serve", "--config", &configs[i]]);
    let mut servers: Vec<Option<Server>> = (0..3).map(|i| Some(serve(i))).collect();

    // One leader, the same for all three; each process hosts one node and shows the other two
    // as hosted elsewhere, healthy from its pings.
    let all: Vec<&Server> = servers.iter().flatten().collect();
    let (first, term) = agreed_leader(&all, 0);
    let (_, raft) = call(all[0], "GET", "/api/v1/cluster/raft", "");
    let roles: Vec<&str> = raft["nodes"].as_array().expect("nodes").iter().map(|n| n["role"].as_str().unwrap_or("")).collect();
    assert_eq!(roles.iter().filter(|r| **r == "remote").count(), 2, "{raft}");
    wait_for("every member healthy", || {
        let (_, st) = call(all[1], "GET", "/api/v1/cluster/status", "");
        (st["healthy_nodes"] == 3).then_some(())
    });
    // A node of another process turned healthy with that process's measured load, told with
    // its ping answers.
    let (_, events) = call(all[1], "GET", "/api/v1/events?event_types=node_health_change&node_ids=node-1", "");
    let healthy = events["events"].as_array().expect("events").iter().find(|e| e["payload"]["new_status"] == "healthy").cloned();
    let metrics = &healthy.expect("node-1 turned healthy")["payload"]["metrics"];
    for figure in ["cpu_usage", "memory_usage", "disk_usage", "active_connections", "queries_per_second"] {
        assert!(metrics[figure].as_f64().is_some_and(|v| v >= 0.0), "{figure} in {metrics}");
    }
    assert!(metrics["memory_usage"].as_f64().is_some_and(|v| v > 0.0 && v < 100.0), "{metrics}");

    // The transport is behind the token like the rest of the API.
    let (status, _) = request_as(&all[0].addr, None, "GET", "/api/v1/cluster/peer", "");
    assert_eq!(status, 401, "a peer connection without the token is refused");

    // Writes through every process (followers forward through Raft), reads through the others.
    for (i, server) in all.iter().enumerate() {
        put(server, &format!("k{i}"), json!(i));
    }
    for (i, server) in all.iter().enumerate() {
        assert_eq!(get(server, &format!("k{}", (i + 1) % 3)), json!((i + 1) % 3));
    }
    drop(all);

    // SIGKILL the leader's process: the other two elect a leader of a higher term and take writes
    // through either.
    let dead = index_of(&first);
    let mut killed = servers[dead].take().expect("running");
    signal(&killed.child, "KILL");
    wait_exit(&mut killed.child).await;
    drop(killed);
    let survivors: Vec<&Server> = servers.iter().flatten().collect();
    let (second, second_term) = agreed_leader(&survivors, term);
    assert_ne!(second, first);
    assert!(second_term > term);
    for (i, server) in survivors.iter().enumerate() {
        put(server, &format!("after-{i}"), json!({ "by": server.addr }));
    }
    drop(survivors);

    // Started again on its data directory, the killed process follows with every entry.
    servers[dead] = Some(serve(dead));
    let back = servers[dead].as_ref().expect("running");
    let commit = {
        let leader = servers[index_of(&second)].as_ref().expect("the leader runs");
        let (_, raft) = call(leader, "GET", "/api/v1/cluster/raft", "");
        raft["nodes"].as_array().expect("nodes").iter().find(|n| n["node_id"] == second).expect("leader")["commit_index"]
            .as_u64()
            .expect("commit")
    };
    wait_for("the restarted node to apply every committed entry", || {
        let (_, raft) = call(back, "GET", "/api/v1/cluster/raft", "");
        let me = raft["nodes"].as_array()?.iter().find(|n| n["node_id"] == first)?.clone();
        (me["role"] == "follower" && me["applied_index"].as_u64()? >= commit).then_some(())
    });
    assert!(get(back, "after-1")["by"].is_string());

    // SIGKILL all three, start all three: every acknowledged write reads back.
    for server in servers.iter_mut() {
        let mut server = server.take().expect("running");
        signal(&server.child, "KILL");
        wait_exit(&mut server.child).await;
    }
    let servers: Vec<Server> = (0..3).map(serve).collect();
    let all: Vec<&Server> = servers.iter().collect();
    agreed_leader(&all, 0);
    for i in 0..3 {
        assert_eq!(get(all[(i + 2) % 3], &format!("k{i}")), json!(i));
    }
    for (i, server) in all.iter().take(2).enumerate() {
        assert!(get(server, &format!("after-{i}"))["by"].is_string());
    }
}

/// The node ids a process lists as members.
fn members(server: &Server) -> Vec<String> {
    let (_, list) = call(server, "GET", "/api/v1/cluster/nodes", "");
    list["nodes"].as_array().map(|a| a.iter().filter_map(|n| n["node_id"].as_str().map(String::from)).collect()).unwrap_or_default()
}

/// The roles of the `node_joined` and `node_left` events about `node` a process published.
fn told(server: &Server, node: &str) -> Vec<String> {
    let (_, events) = call(server, "GET", &format!("/api/v1/events?event_types=node_joined,node_left&node_ids={node}"), "");
    events["events"]
        .as_array()
        .map(|a| a.iter().map(|e| format!("{} {}", e["event_type"].as_str().unwrap_or(""), e["payload"]["node_role"].as_str().unwrap_or(""))).collect())
        .unwrap_or_default()
}

#[actix_web::test]
async fn a_fourth_process_joins_the_group_through_raft_and_leaves_it_and_every_process_tells_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports();
    let configs: Vec<String> = (0..4).map(|i| config(dir.path(), ports, i)).collect();
    let servers: Vec<Server> = (0..4).map(|i| start_with(&["serve", "--config", &configs[i]])).collect();
    let old: Vec<&Server> = servers.iter().take(3).collect();
    agreed_leader(&old, 0);
    put(old[0], "before-join", json!("kept"));
    assert_eq!(members(&servers[3]), ["node-1", "node-2", "node-3"], "node-4 waits to be added");

    // Added through the second process, with its process's address: it joins as a learner, is
    // sent the group's snapshot, catches up and is promoted.
    let join = json!({"node_id": "node-4", "address": format!("127.0.0.1:{}", ports[3]), "metadata": {"rack": "r4"}});
    let (status, created) = call(old[1], "POST", "/api/v1/cluster/nodes", &join.to_string());
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["role"], "voter", "{created}");
    let all: Vec<&Server> = servers.iter().collect();
    for s in &all {
        wait_for("every process to list node-4", || (members(s).len() == 4).then_some(()));
        wait_for("every process to tell node-4's join", || (told(s, "node-4") == ["node_joined learner", "node_joined voter"]).then_some(()));
    }
    assert_eq!(get(&servers[3], "before-join"), json!("kept"), "the joined process reads what was written before it joined");
    put(&servers[3], "after-join", json!(4));
    assert_eq!(get(old[2], "after-join"), json!(4));
    let (leader, _) = agreed_leader(&all, 0);
    let (_, raft) = call(all[index_of(&leader)], "GET", "/api/v1/cluster/raft", "");
    let me = raft["nodes"].as_array().expect("nodes").iter().find(|n| n["node_id"] == leader).expect("the leader").clone();
    assert_eq!(me["voters"], json!(["node-1", "node-2", "node-3", "node-4"]), "{raft}");

    // It leaves through the third process: every process that stays tells it, and lists three.
    let (status, body) = request_as(&old[2].addr, Some(TOKEN), "DELETE", "/api/v1/cluster/nodes/node-4", "");
    assert_eq!(status, 204, "{body}");
    for s in &old {
        wait_for("every process to tell node-4's departure", || (members(s).len() == 3 && told(s, "node-4").last().map(String::as_str) == Some("node_left voter")).then_some(()));
    }
    put(old[0], "after-leave", json!(3));

    // The fourth process applied its own removal: its node waits again, empty, and joins again.
    wait_for("the fourth process to tell its node's departure", || (told(&servers[3], "node-4").last().map(String::as_str) == Some("node_left voter")).then_some(()));
    let (status, again) = call(old[0], "POST", "/api/v1/cluster/nodes", &join.to_string());
    assert_eq!((status, again["role"].as_str()), (201, Some("voter")), "{again}");
    assert_eq!(get(&servers[3], "after-leave"), json!(3));
}
