//! Raft over the cluster's nodes, through the runtime, REST and the event stream: the nodes elect
//! a leader; crashing it through the fault API elects another at a higher term, published as
//! `leader_elected`; the crashed node, restarted, follows with every committed entry; and a
//! whole runtime restarted on the same data directory comes back with its log and term.
//!
//! Every wait is on an event or on state polled within `common::TIMEOUT`.

mod common;

use clusterd::messages::cluster::*;
use clusterd::messages::events::*;
use serde_json::{json, Value};

use common::api::{start, Api};
use common::*;

/// The leader of the highest term `GET /api/v1/cluster/raft` shows, with the whole answer. A
/// leader cut off may still think it leads an older term until check-quorum demotes it; two
/// leaders of one term would be a bug.
async fn leader(api: &Api) -> Option<(String, Value)> {
    let raft = api.get("/api/v1/cluster/raft").await.expect(200);
    let nodes = raft["nodes"].as_array().expect("nodes").clone();
    let mut leaders: Vec<(u64, &Value)> =
        nodes.iter().filter(|n| n["role"] == "leader").map(|n| (n["term"].as_u64().expect("term"), n)).collect();
    leaders.sort_by_key(|(term, _)| *term);
    assert!(leaders.windows(2).all(|w| w[0].0 != w[1].0), "two leaders of one term: {raft}");
    leaders.last().map(|(_, n)| (n["node_id"].as_str().expect("node_id").to_string(), raft.clone()))
}

fn node<'a>(raft: &'a Value, id: &str) -> &'a Value {
    raft["nodes"].as_array().expect("nodes").iter().find(|n| n["node_id"] == id).expect("the node is listed")
}

#[actix_web::test]
async fn a_crashed_leader_is_replaced_at_a_higher_term_and_rejoins_as_a_follower() {
    let (runtime, api) = start(TestConfig::memory().without_replicas().build()).await;
    let mut elections = subscribe(&runtime, only_types(&[EventType::LeaderElected])).await;
    let mut failovers = subscribe(
        &runtime,
        only_types(&[EventType::FailoverInitiated, EventType::LeaderElected, EventType::FailoverCompleted]),
    )
    .await;

    // The three bootstrap nodes elect one leader; its view lists every voter and their progress,
    // and the cluster's status names it.
    let (first, raft) = poll_until("a leader", || leader(&api)).await;
    let first_term = node(&raft, &first)["term"].as_u64().expect("term");
    assert!(first_term >= 1);
    assert_eq!(node(&raft, &first)["voters"], json!(["node-1", "node-2", "node-3"]));
    poll_until("the status to name the leader", || async {
        let status = api.get("/api/v1/cluster/status").await.expect(200);
        (status["leader"] == first.as_str() && status["term"] == first_term).then_some(())
    })
    .await;

    // Crash it through the fault API: the others elect a new leader at a higher term, and the
    // winner publishes it.
    api.post("/api/v1/cluster/faults/crash", json!({"target": first})).await.expect(200);
    let e = next_event_matching(
        &mut elections,
        |e| matches!(&e.payload, EventPayload::Cluster(ClusterEvent::LeaderElected(p)) if p.term > first_term),
        TIMEOUT,
    )
    .await;
    let EventPayload::Cluster(ClusterEvent::LeaderElected(won)) = &e.payload else { unreachable!() };
    assert_ne!(won.leader_id, first);
    assert_eq!(won.total_voters, 3);
    assert!(won.votes_received.is_some_and(|v| (2..=3).contains(&v)), "a majority voted: {won:?}");
    assert_eq!(e.subjects.of(SubjectKind::Node), std::slice::from_ref(&won.leader_id));
    let (second, raft) = poll_until("the new leader in the view", || async {
        leader(&api).await.filter(|(id, _)| *id == won.leader_id)
    })
    .await;
    assert_eq!(node(&raft, &first)["role"], "down");

    // The failover, told in order: initiated (the old leader lost), elected, completed (with the
    // measured time from the first election started to the new leader).
    let mut told = Vec::new();
    while told.len() < 3 {
        let e = next_event_matching(&mut failovers, |_| true, TIMEOUT).await;
        match &e.payload {
            EventPayload::Cluster(ClusterEvent::LeaderElected(p)) if p.term <= first_term => continue,
            EventPayload::Cluster(c) => told.push(c.clone()),
            other => panic!("unexpected {other:?}"),
        }
    }
    let [ClusterEvent::FailoverInitiated(i), ClusterEvent::LeaderElected(l), ClusterEvent::FailoverCompleted(c)] = &told[..] else {
        panic!("out of order: {told:?}")
    };
    assert_eq!((i.failed_node.as_str(), i.scope.as_str()), (first.as_str(), "raft"));
    assert_eq!(l.leader_id, second);
    assert_eq!(c.failover_id, i.failover_id);
    assert_eq!(c.replacement_node.as_deref(), Some(second.as_str()));
    assert!(c.success && c.lost_writes == 0);
    assert!(c.duration_seconds > 0.0 && c.duration_seconds < 2.0, "took {} s", c.duration_seconds);
    assert_eq!(c.failover_id, format!("failover-t{first_term}"), "named by the term lost");

    // The history, read from the replicated state machine, records it.
    let history = poll_until("the failover in the history", || async {
        let h = api.get("/api/v1/cluster/failover/history").await.expect(200);
        (h["total"] == 1).then_some(h)
    })
    .await;
    let f = &history["failovers"][0];
    assert_eq!((f["failover_id"].as_str(), f["failed_node"].as_str()), (Some(c.failover_id.as_str()), Some(first.as_str())));
    assert_eq!((f["replacement_node"].as_str(), f["failover_type"].as_str()), (Some(second.as_str()), Some("automatic")));

    // Restarted, the old leader follows the new one and holds every committed entry.
    api.post("/api/v1/cluster/faults/restart", json!({"target": first})).await.expect(200);
    poll_until("the old leader to catch up as a follower", || async {
        let (_, raft) = leader(&api).await?;
        let (old, new) = (node(&raft, &first), node(&raft, &second));
        let caught_up = old["role"] == "follower"
            && old["leader_id"] == second.as_str()
            && old["term"] == new["term"]
            && old["commit_index"] == new["commit_index"]
            && old["last_index"] == new["last_index"];
        caught_up.then_some(())
    })
    .await;
}

#[actix_web::test]
async fn a_runtime_restarted_on_its_data_directory_keeps_its_raft_log_and_term() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TestConfig::memory().without_replicas().disk(dir.path()).build();
    let (term, last_index) = {
        let (runtime, api) = start(config.clone()).await;
        let (id, raft) = poll_until("a leader", || leader(&api)).await;
        let n = node(&raft, &id);
        let seen = (n["term"].as_u64().expect("term"), n["last_index"].as_u64().expect("last_index"));
        within("the runtime to shut down", runtime.shutdown()).await;
        seen
    };

    let (_runtime, api) = start(config).await;
    // Before any new election: every node reopened its log and hard state from disk.
    let raft = api.get("/api/v1/cluster/raft").await.expect(200);
    for n in raft["nodes"].as_array().expect("nodes") {
        if n["role"] == "down" {
            continue; // still opening
        }
        assert!(n["term"].as_u64().expect("term") >= term, "term went back: {n}");
        assert!(n["last_index"].as_u64().expect("last_index") >= last_index, "log lost entries: {n}");
    }
    let (_, raft) = poll_until("a leader after the restart", || leader(&api)).await;
    for id in ["node-1", "node-2", "node-3"] {
        assert!(node(&raft, id)["last_index"].as_u64().expect("last_index") >= last_index, "{id} lost entries");
    }
}

/// `PUT /api/v1/cluster/kv/{key}` until it is acknowledged: 503 (no leader yet, or it changed)
/// and 504 (outcome unknown) are retried, as a client would.
async fn put_acknowledged(api: &Api, key: &str, value: Value) -> Value {
    poll_until(&format!("PUT {key} to be acknowledged"), || async {
        let r = api.send(actix_web::test::TestRequest::put().uri(&format!("/api/v1/cluster/kv/{key}")).set_json(json!({"value": value.clone()}))).await;
        match r.status.as_u16() {
            200 => Some(r.json()),
            503 | 504 => None,
            other => panic!("PUT {key}: {other} {}", r.text()),
        }
    })
    .await
}

#[actix_web::test]
async fn metadata_writes_go_through_the_log_and_survive_the_leader_crashing() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().build()).await;
    let (first, _) = poll_until("a leader", || leader(&api)).await;
    let mut last = 0;
    for i in 0..10 {
        let w = put_acknowledged(&api, &format!("k{i}"), json!({"n": i})).await;
        let index = w["index"].as_u64().expect("index");
        assert!(index > last, "each write is a later entry");
        last = index;
    }
    let got = api.get("/api/v1/cluster/kv/k3").await.expect(200);
    assert_eq!(got["value"], json!({"n": 3}));
    api.get("/api/v1/cluster/kv/nothing-here").await.expect_error(404, "key_not_found");

    // The leader crashes: writes are refused while no leader is known, then go to the new one;
    // every acknowledged write reads back.
    api.post("/api/v1/cluster/faults/crash", json!({"target": first})).await.expect(200);
    let w = put_acknowledged(&api, "after", json!("crash")).await;
    assert!(w["term"].as_u64().expect("term") > 1);
    for i in 0..10 {
        let got = api.get(&format!("/api/v1/cluster/kv/k{i}")).await.expect(200);
        assert_eq!(got["value"], json!({"n": i}), "k{i} after the failover");
    }

    // The old leader, restarted, catches up with every entry.
    api.post("/api/v1/cluster/faults/restart", json!({"target": first})).await.expect(200);
    poll_until("the old leader to catch up", || async {
        let (now, raft) = leader(&api).await?;
        (node(&raft, &first)["applied_index"] == node(&raft, &now)["applied_index"]
            && node(&raft, &first)["last_index"] == node(&raft, &now)["last_index"])
            .then_some(())
    })
    .await;
}

#[actix_web::test]
async fn acknowledged_metadata_writes_survive_a_restart_of_the_whole_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TestConfig::memory().without_replicas().disk(dir.path()).build();
    {
        let (runtime, api) = start(config.clone()).await;
        poll_until("a leader", || leader(&api)).await;
        for i in 0..5 {
            put_acknowledged(&api, &format!("durable-{i}"), json!(i)).await;
        }
        within("the runtime to shut down", runtime.shutdown()).await;
    }
    let (_runtime, api) = start(config).await;
    for i in 0..5 {
        let got = poll_until("a read once a leader is back", || async {
            let r = api.get(&format!("/api/v1/cluster/kv/durable-{i}")).await;
            match r.status.as_u16() {
                200 => Some(r.json()),
                503 | 504 => None,
                other => panic!("GET durable-{i}: {other} {}", r.text()),
            }
        })
        .await;
        assert_eq!(got["value"], json!(i));
    }
}

#[actix_web::test]
async fn leadership_moves_on_promote_and_demote_and_refuses_what_cannot_lead() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().build()).await;
    let (first, _) = poll_until("a leader", || leader(&api)).await;
    let other = ["node-1", "node-2", "node-3"].into_iter().find(|n| *n != first).expect("a follower");

    // Promote a follower: it leads when the answer comes, at a higher term.
    let status = api.post(&format!("/api/v1/cluster/nodes/{other}/promote"), json!({})).await.expect(200);
    assert_eq!(status["leader"], other);
    let (now, raft) = leader(&api).await.expect("a leader");
    assert_eq!(now, other);
    assert_eq!(node(&raft, other)["term"], status["term"]);

    // Demote: only the leader can be, and leadership goes to another voter that is up.
    api.post(&format!("/api/v1/cluster/nodes/{first}/demote"), json!({})).await.expect_error(409, "not_the_leader");
    let status = api.post(&format!("/api/v1/cluster/nodes/{other}/demote"), json!({})).await.expect(200);
    assert_ne!(status["leader"], other);

    // A crashed node cannot be promoted; an unknown one is not found.
    let down = ["node-1", "node-2", "node-3"].into_iter().find(|n| status["leader"] != *n).expect("a follower");
    api.post("/api/v1/cluster/faults/crash", json!({"target": down})).await.expect(200);
    api.post(&format!("/api/v1/cluster/nodes/{down}/promote"), json!({})).await.expect_error(409, "node_down");
    api.post("/api/v1/cluster/nodes/node-9/promote", json!({})).await.expect_error(404, "node_not_found");
}

#[actix_web::test]
async fn a_manual_failover_moves_leadership_and_is_recorded_as_manual() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().build()).await;
    let (first, raft) = poll_until("a leader", || leader(&api)).await;
    let term = node(&raft, &first)["term"].as_u64().expect("term");

    let done = api.post("/api/v1/cluster/failover", json!({"scope": "raft"})).await.expect(202);
    assert_eq!(done["failover_id"], format!("failover-t{term}"));
    assert_eq!(done["failed_node"], first.as_str());
    let second = done["replacement_node"].as_str().expect("a new leader").to_string();
    assert_ne!(second, first);
    let history = poll_until("the manual failover in the history", || async {
        let h = api.get("/api/v1/cluster/failover/history").await.expect(200);
        (h["total"] == 1).then_some(h)
    })
    .await;
    assert_eq!(history["failovers"][0]["failover_type"], "manual");
    assert_eq!(history["failovers"][0]["replacement_node"], second.as_str());

    // To a named voter; not to the leader itself; a replication switchover with no replica to
    // promote is refused, and an unknown scope.
    let target = ["node-1", "node-2", "node-3"].into_iter().find(|n| *n != second).expect("a follower");
    let done = api.post("/api/v1/cluster/failover", json!({"scope": "raft", "target_node": target})).await.expect(202);
    assert_eq!(done["replacement_node"], target);
    api.post("/api/v1/cluster/failover", json!({"scope": "raft", "target_node": target})).await.expect_error(409, "already_leader");
    api.post("/api/v1/cluster/failover", json!({"scope": "replication"})).await.expect_error(409, "conflicts_with_state");
    api.post("/api/v1/cluster/failover", json!({"scope": "both"})).await.expect_error(400, "invalid_request");
}

#[actix_web::test]
async fn graphql_streams_elections_and_failovers_and_serves_raft_and_the_metadata() {
    use common::server::Server;

    let server = Server::start(TestConfig::memory().without_replicas().build());
    let status = poll_until("a leader", || async {
        let s = server.runtime.membership().send(GetClusterStatus).await.expect("answers");
        s.leader.clone().map(|l| (l, s.term.unwrap_or(0)))
    })
    .await;
    let (first, term) = status;
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.init(json!({})).await;
    ws.send(json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { leaderElections { leaderId previousLeader term votesReceived totalVoters seq } }"}})).await;
    server.wait_subscribed("leaderElections").await;
    ws.send(json!({"id": "2", "type": "subscribe", "payload": {"query": "subscription { failoverEvents { eventType failoverId scope failedNode replacementNode failoverType durationSeconds success lostWrites } }"}})).await;
    server.wait_subscribed("failoverEvents").await;

    crash_node(&server.runtime, &first).await;
    let (mut elected, mut failover) = (None, Vec::new());
    while elected.is_none() || failover.len() < 2 {
        let msg = ws.json().await;
        assert_eq!(msg["type"], "next", "{msg}");
        match msg["id"].as_str() {
            Some("1") => elected = Some(msg["payload"]["data"]["leaderElections"].clone()),
            Some("2") => failover.push(msg["payload"]["data"]["failoverEvents"].clone()),
            _ => panic!("{msg}"),
        }
    }
    let elected = elected.expect("an election");
    assert!(elected["term"].as_u64().expect("term") > term);
    assert_ne!(elected["leaderId"], first.as_str());
    assert_eq!(elected["totalVoters"], 3);
    assert_eq!(failover[0]["eventType"], "failover_initiated");
    assert_eq!(failover[0]["failedNode"], first.as_str());
    assert_eq!((failover[0]["scope"].as_str(), failover[0]["failoverType"].as_str()), (Some("RAFT"), Some("AUTOMATIC")));
    assert_eq!(failover[1]["eventType"], "failover_completed");
    assert_eq!(failover[1]["replacementNode"], elected["leaderId"]);
    assert_eq!((failover[1]["success"].as_bool(), failover[1]["lostWrites"].as_u64()), (Some(true), Some(0)));

    // Queries and mutations over POST.
    let put = server.query(r#"mutation { putKv(key: "owner", value: {team: "db"}) { key index term } }"#).await;
    assert_eq!(put["data"]["putKv"]["key"], "owner", "{put}");
    let read = server.query(r#"{ kv(key: "owner") { value } missing: kv(key: "nope") { key } raftNodes { nodeId role } }"#).await;
    assert_eq!(read["data"]["kv"]["value"], json!({"team": "db"}), "{read}");
    assert_eq!(read["data"]["missing"], Value::Null);
    let roles: Vec<&str> = read["data"]["raftNodes"].as_array().expect("nodes").iter().map(|n| n["role"].as_str().expect("role")).collect();
    assert_eq!(roles.iter().filter(|r| **r == "leader").count(), 1, "{read}");
    assert!(roles.contains(&"down"), "the crashed node shows as down: {read}");
    let history = poll_until("the failover in the history", || async {
        let h = server.query("{ failoverHistory { failoverId failedNode replacementNode failoverType completedAtMs } }").await;
        (h["data"]["failoverHistory"].as_array().is_some_and(|a| a.len() == 1)).then_some(h)
    })
    .await;
    let f = &history["data"]["failoverHistory"][0];
    assert_eq!((f["failedNode"].as_str(), f["replacementNode"].clone()), (Some(first.as_str()), elected["leaderId"].clone()));
    assert_eq!(f["failoverType"], "automatic");

    // A manual failover through the mutation: leadership moves to the named voter.
    let target = ["node-1", "node-2", "node-3"]
        .into_iter()
        .find(|n| *n != first && Some(*n) != elected["leaderId"].as_str())
        .expect("the third node");
    restart_node(&server.runtime, &first).await;
    let moved = server.query(&format!(r#"mutation {{ failover(scope: "raft", targetNode: "{target}") {{ failoverId scope failedNode replacementNode term }} }}"#)).await;
    let moved = &moved["data"]["failover"];
    assert_eq!((moved["scope"].as_str(), moved["replacementNode"].as_str()), (Some("raft"), Some(target)), "{moved}");
    assert_eq!(moved["failedNode"], elected["leaderId"]);
    let again = server.query(&format!(r#"mutation {{ failover(scope: "raft", targetNode: "{target}") {{ failoverId }} }}"#)).await;
    assert_eq!(again["errors"][0]["extensions"]["code"], "already_leader", "{again}");
}

#[actix_web::test]
async fn the_raft_log_of_a_node_reads_back_what_was_written() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().build()).await;
    let (l, _) = poll_until("a leader", || leader(&api)).await;
    let w = put_acknowledged(&api, "region", json!("eu-west")).await;
    let index = w["index"].as_u64().expect("index");
    let log = api.get(&format!("/api/v1/cluster/raft/log?node={l}&from={index}&limit=1")).await.expect(200);
    assert_eq!(log["entries"], json!([{"index": index, "term": w["term"], "kind": "command", "summary": "put region", "bytes": log["entries"][0]["bytes"]}]), "{log}");
    assert!(log["first_index"].as_u64().expect("first") <= index && log["last_index"].as_u64().expect("last") >= index);
    let all = api.get(&format!("/api/v1/cluster/raft/log?node={l}")).await.expect(200);
    assert_eq!(all["entries"][0]["kind"], "empty", "a leader's first entry: {all}");
    api.get("/api/v1/cluster/raft/log?node=node-9").await.expect_error(404, "node_not_found");
    api.get(&format!("/api/v1/cluster/raft/log?node={l}&limit=0")).await.expect_error(400, "invalid_request");
    api.get("/api/v1/cluster/raft/log").await.expect_error(400, "invalid_request");
}

#[actix_web::test]
async fn many_writes_in_flight_all_commit() {
    let (runtime, api) = start(TestConfig::memory().without_replicas().build()).await;
    poll_until("a leader", || leader(&api)).await;
    let lanes = (0..64).map(|lane| {
        let membership = runtime.membership().clone();
        async move {
            for i in 0..20 {
                let put = PutKv { key: format!("k{lane}-{i}"), value: json!(i) };
                membership.send(put).await.expect("membership answers").unwrap_or_else(|e| panic!("k{lane}-{i}: {e}"));
            }
        }
    });
    within("1,280 writes", futures_util::future::join_all(lanes)).await;
    let got = api.get("/api/v1/cluster/kv/k63-19").await.expect(200);
    assert_eq!(got["value"], 19);
}

#[actix_web::test]
async fn a_partitioned_leader_steps_down_without_disturbing_the_majority_and_rejoins_when_healed() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().build()).await;
    let (old, raft) = poll_until("a leader", || leader(&api)).await;
    let old_term = node(&raft, &old)["term"].as_u64().expect("term");
    let others: Vec<&str> = ["node-1", "node-2", "node-3"].into_iter().filter(|n| *n != old).collect();

    // Cut the leader off (through the link every Raft message takes): the majority elects another
    // at a higher term, and writes go to it.
    api.post("/api/v1/cluster/faults/partition", json!({"groups": [[old.clone()], others.clone()]})).await.expect(200);
    let (new, _) = poll_until("a leader in the majority", || async {
        leader(&api).await.filter(|(id, raft)| *id != old && node(raft, id)["term"].as_u64() > Some(old_term))
    })
    .await;
    put_acknowledged(&api, "during", json!("partition")).await;
    // The old leader stepped down (check-quorum), and pre-vote kept it from raising its term.
    poll_until("the old leader to step down", || async {
        let raft = api.get("/api/v1/cluster/raft").await.expect(200);
        (node(&raft, &old)["role"] != "leader").then_some(())
    })
    .await;
    let raft = api.get("/api/v1/cluster/raft").await.expect(200);
    assert_eq!(node(&raft, &old)["term"].as_u64(), Some(old_term), "pre-vote: no term raised in isolation");

    // Healed: it follows the new leader with every entry, and the majority's leader stays.
    api.post("/api/v1/cluster/faults/heal", json!({})).await.expect(200);
    poll_until("the old leader to follow and catch up", || async {
        let (now, raft) = leader(&api).await?;
        (now == new && node(&raft, &old)["leader_id"] == new.as_str() && node(&raft, &old)["commit_index"] == node(&raft, &new)["commit_index"])
            .then_some(())
    })
    .await;
}

#[actix_web::test]
async fn a_joined_node_catches_up_by_snapshot_votes_leads_and_starts_empty_when_added_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TestConfig::memory().without_replicas().disk(dir.path()).build();
    let (runtime, api) = start(config.clone()).await;
    poll_until("a leader", || leader(&api)).await;
    put_acknowledged(&api, "before", json!("kept")).await;

    // node-4 joins: a learner sent the group's snapshot, then a voter.
    let created = api.post("/api/v1/cluster/nodes", json!({"node_id": "node-4", "metadata": {"rack": "r4"}})).await.expect(201);
    assert_eq!(created["role"], "voter", "{created}");
    let log = api.get("/api/v1/cluster/raft/log?node=node-4").await.expect(200);
    assert!(log["first_index"].as_u64().expect("first_index") > 1, "it started from a snapshot, not from entry 1: {log}");
    let (lead, raft) = poll_until("a leader", || leader(&api)).await;
    assert_eq!(node(&raft, &lead)["voters"], json!(["node-1", "node-2", "node-3", "node-4"]), "{raft}");
    let entries = api.get(&format!("/api/v1/cluster/raft/log?node={lead}&limit=1000")).await.expect(200).to_string();
    // The join's entry went into the snapshot taken as it applied; the promotion came after.
    assert!(entries.contains("node-4 becomes a voter"), "{entries}");

    // It can lead, and serves what was written before it joined.
    api.post("/api/v1/cluster/nodes/node-4/promote", json!({})).await.expect(200);
    assert_eq!(api.get("/api/v1/cluster/kv/before").await.expect(200)["value"], "kept");
    put_acknowledged(&api, "led-by-4", json!(4)).await;

    // Removed (leading: it hands over first), then added again: it starts from an empty log and
    // catches up with everything, old and new.
    assert_eq!(api.delete("/api/v1/cluster/nodes/node-4").await.status.as_u16(), 204);
    let (now, raft) = poll_until("a leader", || leader(&api)).await;
    assert_ne!(now, "node-4");
    assert_eq!(node(&raft, &now)["voters"], json!(["node-1", "node-2", "node-3"]), "{raft}");
    put_acknowledged(&api, "while-gone", json!("w")).await;
    let again = api.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect(201);
    assert_eq!(again["role"], "voter", "{again}");
    assert_eq!(again["metadata"], json!({}), "a new member, not the old record");
    api.post("/api/v1/cluster/nodes/node-4/promote", json!({})).await.expect(200);
    for (key, value) in [("before", json!("kept")), ("led-by-4", json!(4)), ("while-gone", json!("w"))] {
        assert_eq!(api.get(&format!("/api/v1/cluster/kv/{key}")).await.expect(200)["value"], value, "{key}");
    }

    // Every change of members was told, in order, as its entry applied.
    let told: Vec<String> = api
        .events("node_ids=node-4&event_types=node_joined,node_left")
        .await
        .iter()
        .map(|e| format!("{} {}", e["event_type"].as_str().unwrap_or(""), e["payload"]["node_role"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(told, ["node_joined learner", "node_joined voter", "node_left voter", "node_joined learner", "node_joined voter"]);

    // A restart on the same data directory keeps the members and the Raft voters.
    within("the runtime to shut down", runtime.shutdown()).await;
    let (_runtime, api) = start(config).await;
    let (lead, raft) = poll_until("a leader after the restart", || leader(&api)).await;
    assert_eq!(node(&raft, &lead)["voters"], json!(["node-1", "node-2", "node-3", "node-4"]), "{raft}");
    assert_eq!(api.nodes().await.0, ["node-1", "node-2", "node-3", "node-4"]);
}
