//! The event registry, over the runtime, REST and GraphQL: a subscriber gets only what its filter
//! admits; replay from `since_seq` then live, with no gap and no duplicate; a `since_seq` older
//! than the retained window is flagged; a subscriber that falls behind is told what it missed, then
//! closed if it stays behind; `GET /api/v1/events`; the WebSocket management routes; and GraphQL's
//! `events` query. (The WebSocket and GraphQL transports are in `event_streams.rs`.)
//!
//! Each test is a scenario told in its comments; every wait is on an event or an answer, bounded by
//! `common::TIMEOUT`.

mod common;

use std::collections::BTreeSet;

use clusterd::messages::cluster::*;
use clusterd::messages::events::*;
use clusterd::messages::registry::Delivery;
use clusterd::Runtime;
use serde_json::json;

use common::api::{seq, start};
use common::server::Server;
use common::*;

fn joined_node(e: &PublishedEvent) -> Option<&str> {
    match &e.payload {
        EventPayload::Cluster(ClusterEvent::NodeJoined(p)) => Some(p.node_id.as_str()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// In-process subscribers.

#[actix_web::test]
async fn a_joining_node_is_announced_only_to_subscribers_that_asked_about_it() {
    // A three-node cluster, and two watchers: one interested in node-4, one in node-5.
    let runtime = Runtime::start(TestConfig::memory().without_replicas().quiet_with_leader().build()).expect("runtime starts");
    settle(&runtime).await;
    let mut watches_4 = runtime.subscribe(node_filter(&["node-4"])).await.expect("subscribe");
    let mut watches_5 = runtime.subscribe(node_filter(&["node-5"])).await.expect("subscribe");

    // node-4 joins with some metadata.
    let view = add_node(&runtime, "node-4", metadata(json!({"rack": "r1"}))).await;
    assert_eq!(view.node_id, "node-4");
    assert_eq!(view.metadata.get("rack"), Some(&json!("r1")));

    // The node-4 watcher's first delivery is exactly that join, with a complete envelope.
    let e = match next_delivery(&mut watches_4).await {
        Some(Delivery::Event(e)) => e,
        other => panic!("expected node-4's join, got {other:?}"),
    };
    assert_eq!(e.event_type, EventType::NodeJoined);
    assert_eq!(e.category, Category::Clustering);
    assert_eq!(e.severity, Severity::Info);
    assert_eq!(e.source, "node:node-4");
    assert_eq!(e.subjects.of(SubjectKind::Node), vec!["node-4".to_string()]);
    assert_eq!(e.event_id, format!("evt_{:012}", e.seq));
    match &e.payload {
        EventPayload::Cluster(ClusterEvent::NodeJoined(p)) => {
            assert_eq!(p.node_id, "node-4");
            assert_eq!(p.cluster_size, 4, "the size after the join");
            assert!(p.has_quorum);
        }
        other => panic!("expected a node_joined payload, got {other:?}"),
    }
    let env: serde_json::Value = serde_json::from_str(e.json()).expect("the envelope is JSON");
    assert_eq!(env["payload"]["node_id"], "node-4");
    assert_eq!(env["payload"]["node_role"], "learner");
    assert_eq!(env["seq"], e.seq);
    // Caught up, it joined the voters: told the same way.
    let promoted = match next_delivery(&mut watches_4).await {
        Some(Delivery::Event(e)) => e,
        other => panic!("expected node-4's promotion, got {other:?}"),
    };
    assert_eq!(joined_node(&promoted), Some("node-4"), "{}", promoted.json());
    assert!(promoted.json().contains(r#""node_role":"voter""#), "{}", promoted.json());

    // Now node-5 joins. The node-5 watcher's queue is first-in first-out, so if node-4's join had
    // leaked into it, that would come out first. It does not: node-5's join is the first delivery.
    add_node(&runtime, "node-5", NodeMetadata::new()).await;
    let e5 = match next_delivery(&mut watches_5).await {
        Some(Delivery::Event(e)) => e,
        other => panic!("expected node-5's join, got {other:?}"),
    };
    assert_eq!(joined_node(&e5), Some("node-5"), "node-5's watcher saw {} first", e5.json());
    assert!(e5.seq > e.seq);

    // And nothing about node-5 reached the node-4 watcher: its next event is node-4's departure.
    within("RemoveNode", runtime.membership().send(RemoveNode { node_id: "node-4".into() }))
        .await
        .expect("membership answers")
        .expect("node-4 leaves");
    let left = match next_delivery(&mut watches_4).await {
        Some(Delivery::Event(e)) => e,
        other => panic!("expected node-4's departure, got {other:?}"),
    };
    assert_eq!(left.event_type, EventType::NodeLeft, "node-4's watcher got {}", left.json());
    assert_eq!(left.subjects.of(SubjectKind::Node), vec!["node-4".to_string()]);
}

#[actix_web::test]
async fn replay_then_live_has_no_gap_and_no_duplicate_while_nodes_keep_joining() {
    let runtime = Runtime::start(TestConfig::memory().without_replicas().quiet_with_leader().build()).expect("runtime starts");
    settle(&runtime).await;
    // Some history: node-1..3 joined at bootstrap, node-4..6 join now.
    for n in 4..=6 {
        add_node(&runtime, &format!("node-{n}"), NodeMetadata::new()).await;
    }

    // Twenty more nodes join one after another in the background. Once half of them are in, we
    // subscribe from the beginning while the other half are still joining.
    let (half_tx, half_rx) = tokio::sync::oneshot::channel();
    let adder = {
        let runtime = runtime.clone();
        actix_web::rt::spawn(async move {
            let mut half_tx = Some(half_tx);
            for n in 10..30 {
                add_node(&runtime, &format!("node-{n}"), NodeMetadata::new()).await;
                if n == 19 {
                    let _ = half_tx.take().map(|tx| tx.send(()));
                }
            }
        })
    };
    within("the first ten background joins", half_rx).await.expect("adder runs");
    let filter = EventFilter { since_seq: Some(0), ..only_types(&[EventType::NodeJoined]) };
    let mut sub = runtime.subscribe(filter).await.expect("subscribe");
    assert!(!sub.replay_truncated(), "nothing has left the retained window yet");

    // Everything that joined must come through once: 3 bootstrap joins, then 3 + 20 nodes each
    // joining as a learner and as a voter.
    let expected: BTreeSet<String> =
        (1..=6).chain(10..30).map(|n| format!("node-{n}")).collect();
    let mut seen: Vec<(u64, String)> = Vec::new();
    while seen.len() < 3 + 2 * (expected.len() - 3) {
        let e = next_event_matching(&mut sub, |_| true, TIMEOUT).await;
        let node = joined_node(&e).unwrap_or_else(|| panic!("the filter admits joins only: {}", e.json()));
        seen.push((e.seq, node.to_string()));
    }
    within("the background joins", adder).await.expect("adder finished");

    let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs are not strictly increasing: {seqs:?}");
    let mut joins_of: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, n) in &seen {
        *joins_of.entry(n.clone()).or_default() += 1;
    }
    assert_eq!(joins_of.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for (n, count) in &joins_of {
        let bootstrap = ["node-1", "node-2", "node-3"].contains(&n.as_str());
        assert_eq!(*count, if bootstrap { 1 } else { 2 }, "{n}'s joins, in {seen:?}");
    }

    // The replay was exactly the retained events the filter admits: what we got equals what the
    // registry holds, seq for seq.
    settle(&runtime).await;
    let held: Vec<u64> =
        retained(&runtime, only_types(&[EventType::NodeJoined])).await.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, held);

    // Nothing else is queued behind: the next delivery is the next join.
    add_node(&runtime, "node-99", NodeMetadata::new()).await;
    let next = next_event_matching(&mut sub, |_| true, TIMEOUT).await;
    assert_eq!(joined_node(&next), Some("node-99"), "a stray event followed the replay: {}", next.json());
    assert!(next.seq > *seqs.last().expect("events were seen"));
}

#[actix_web::test]
async fn a_since_seq_older_than_the_retained_window_is_reported_as_truncated() {
    // Only four events are kept.
    let runtime = Runtime::start(TestConfig::memory().without_replicas().quiet_with_leader().retained(4).build()).expect("runtime starts");
    settle(&runtime).await;
    for n in 4..=7 {
        add_node(&runtime, &format!("node-{n}"), NodeMetadata::new()).await;
    }
    let status = settle(&runtime).await;
    assert_eq!(status.retained, 4);
    assert!(status.current_seq >= 12, "3 bootstrap joins, a leader elected, and 4 nodes joining as learners, then voters: {status:?}");
    let oldest = status.oldest_retained_seq;
    assert_eq!(oldest, status.current_seq - 3);

    // Asking from the very start: events 1..oldest-1 are gone, and the subscriber is told so.
    // What is still retained is replayed, oldest first.
    let mut from_zero = runtime.subscribe(EventFilter { since_seq: Some(0), ..EventFilter::default() })
        .await
        .expect("subscribe");
    assert!(from_zero.replay_truncated());
    for expected in oldest..=status.current_seq {
        let e = next_event_matching(&mut from_zero, |_| true, TIMEOUT).await;
        assert_eq!(e.seq, expected);
    }

    // One short of the window is truncated too; the window's edge is not.
    let gap = runtime
        .subscribe(EventFilter { since_seq: Some(oldest - 2), ..EventFilter::default() })
        .await
        .expect("subscribe");
    assert!(gap.replay_truncated(), "event {} is gone", oldest - 1);
    let mut edge = runtime
        .subscribe(EventFilter { since_seq: Some(oldest - 1), ..EventFilter::default() })
        .await
        .expect("subscribe");
    assert!(!edge.replay_truncated(), "every event after {} is still retained", oldest - 1);
    assert_eq!(next_event_matching(&mut edge, |_| true, TIMEOUT).await.seq, oldest);

    // Resuming from the newest seq replays nothing and is not truncated: the next delivery is live.
    let mut live = runtime
        .subscribe(EventFilter { since_seq: Some(status.current_seq), ..EventFilter::default() })
        .await
        .expect("subscribe");
    assert!(!live.replay_truncated());
    add_node(&runtime, "node-8", NodeMetadata::new()).await;
    let e = next_event_matching(&mut live, |_| true, TIMEOUT).await;
    assert_eq!(joined_node(&e), Some("node-8"));
    assert_eq!(e.seq, status.current_seq + 1);
}

#[actix_web::test]
async fn a_subscriber_that_falls_behind_is_told_what_it_missed_then_closed_if_it_stays_behind() {
    // Queues hold eight deliveries.
    let runtime = Runtime::start(TestConfig::memory().without_replicas().quiet_with_leader().session_queue(8).build()).expect("runtime starts");
    settle(&runtime).await;
    let mut sub = runtime.subscribe(only_types(&[EventType::NodeJoined])).await.expect("subscribe");
    let id = sub.subscription_id();

    // Five nodes join (as learners, then as voters: ten events) while the subscriber reads
    // nothing: eight fit, two are dropped.
    for n in 10..15 {
        add_node(&runtime, &format!("node-{n}"), NodeMetadata::new()).await;
    }
    settle(&runtime).await;
    let rows = subscriptions(&runtime).await;
    let row = rows.iter().find(|r| r.subscription_id == id).expect("the subscriber is still registered");
    assert!(row.lagging);
    assert_eq!(row.dropped, 2);
    assert_eq!(row.delivered, 8);
    assert!(runtime.metrics().total("clusterd_events_dropped_total").unwrap_or(0) >= 2);

    // The subscriber catches up on the eight it has: node-10..13, twice each.
    let mut last_seen = 0;
    for n in [10, 10, 11, 11, 12, 12, 13, 13] {
        let e = match next_delivery(&mut sub).await {
            Some(Delivery::Event(e)) => e,
            other => panic!("expected node-{n}'s join, got {other:?}"),
        };
        assert_eq!(joined_node(&e), Some(format!("node-{n}").as_str()));
        last_seen = e.seq;
    }

    // With room again, it is told what it lost without waiting for another event (a quiet
    // stream must not hide a loss): two missed, resume after the last one delivered.
    match next_delivery(&mut sub).await {
        Some(Delivery::Lagged { missed, resume_from_seq }) => {
            assert_eq!(missed, 2);
            assert_eq!(resume_from_seq, last_seen);
        }
        other => panic!("expected a lagged notice, got {other:?}"),
    }
    // Live delivery goes on after the notice.
    add_node(&runtime, "node-20", NodeMetadata::new()).await;
    match next_delivery(&mut sub).await {
        Some(Delivery::Event(e)) => assert_eq!(joined_node(&e), Some("node-20"), "{}", e.json()),
        other => panic!("expected node-20's join, got {other:?}"),
    }
    // Resubscribing from the resume point replays exactly what it lost, then what followed.
    let mut resumed = runtime
        .subscribe(EventFilter { since_seq: Some(last_seen), ..only_types(&[EventType::NodeJoined]) })
        .await
        .expect("subscribe");
    assert!(!resumed.replay_truncated());
    for n in [14, 14, 20, 20] {
        let e = next_event_matching(&mut resumed, |_| true, TIMEOUT).await;
        assert_eq!(joined_node(&e), Some(format!("node-{n}").as_str()), "{}", e.json());
    }
    drop(resumed);

    // Now it stops reading for good: its queue fills (node-20's promotion is in it already), and
    // nine more missed in a row is more than a queue's worth. The registry gives up on it.
    let dropped_before = runtime.metrics().total("clusterd_events_dropped_total").unwrap_or(0);
    for n in 21..30 {
        add_node(&runtime, &format!("node-{n}"), NodeMetadata::new()).await;
    }
    settle(&runtime).await;
    let rows = subscriptions(&runtime).await;
    assert!(
        rows.iter().all(|r| r.subscription_id != id),
        "a subscriber that stayed behind is still registered"
    );
    assert!(runtime.metrics().total("clusterd_events_dropped_total").unwrap_or(0) > dropped_before);

    // What was queued is still readable; then the subscription ends.
    let mut drained = 0;
    loop {
        match next_delivery(&mut sub).await {
            Some(Delivery::Event(_)) => drained += 1,
            Some(Delivery::Lagged { .. }) => {}
            Some(Delivery::Close { .. }) | None => break,
        }
        assert!(drained <= 8, "more deliveries than the queue holds");
    }
    assert_eq!(drained, 8);
    assert!(sub.next_delivery().await.is_none(), "an ended subscription stays ended");
}

// ---------------------------------------------------------------------------------------------
// Over REST and GraphQL.

#[actix_web::test]
async fn since_seq_older_than_the_retained_window_is_flagged_in_get_events() {
    // Four events are kept; bootstrap publishes three joins, a leader is elected, and two more
    // nodes join (as learners, then as voters).
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet_with_leader().retained(4).build()).await;
    api.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect(201);
    api.post("/api/v1/cluster/nodes", json!({"node_id": "node-5"})).await.expect(201);

    let body = api.get("/api/v1/events?since_seq=0").await.expect(200);
    assert_eq!(body["replay_truncated"], true, "event 1 is gone: {body}");
    let current = body["current_seq"].as_u64().expect("current_seq");
    assert!(current >= 8, "{body}");
    assert_eq!(body["oldest_retained_seq"], current - 3);
    let seqs: Vec<u64> = body["events"].as_array().unwrap().iter().map(seq).collect();
    assert_eq!(seqs, (current - 3..=current).collect::<Vec<_>>());

    let body = api.get(&format!("/api/v1/events?since_seq={}", current - 4)).await.expect(200);
    assert_eq!(body["replay_truncated"], false, "everything after 1 is retained: {body}");
    assert_eq!(body["count"], 4);
    // Without since_seq nothing was asked to be resumed, so nothing is reported truncated.
    assert_eq!(api.get("/api/v1/events").await.expect(200)["replay_truncated"], false);
}

#[actix_web::test]
async fn the_largest_since_seq_is_an_empty_answer_not_a_dead_registry() {
    // A client may resume from any u64. The largest one has nothing after it: an empty answer.
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet_with_leader().build()).await;
    let max = u64::MAX;
    let body = api.get(&format!("/api/v1/events?since_seq={max}")).await.expect(200);
    assert_eq!(body["events"], json!([]), "{body}");
    assert_eq!(body["replay_truncated"], false, "nothing after u64::MAX was ever lost: {body}");

    // And the event registry is still there for everybody else.
    api.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect(201);
    let joins = api.events("event_types=node_joined&node_ids=node-4").await;
    assert_eq!(joins.len(), 2, "as a learner, then as a voter");
    api.get("/api/v1/ws/status").await.expect(200);
}

#[actix_web::test]
async fn websocket_management_shows_counters_sessions_and_in_process_subscriptions() {
    let (runtime, api) = start(TestConfig::memory().without_replicas().quiet_with_leader().build()).await;

    // No sessions yet; the counters are real.
    let status = api.get("/api/v1/ws/status").await.expect(200);
    for field in ["active_sessions", "events_published", "events_delivered", "events_dropped", "current_seq"] {
        assert!(status[field].is_number(), "{field} in {status}");
    }
    assert_eq!(status["active_sessions"], 0);
    assert_eq!(status["current_seq"], 3);
    assert_eq!(status["events_published"], 3);
    assert_eq!(status["events_delivered"], 0);
    let conns = api.get("/api/v1/ws/connections").await.expect(200);
    assert_eq!(conns["connections"], json!([]));
    assert_eq!(conns["total"], 0);
    assert_eq!(api.get("/api/v1/ws/subscriptions").await.expect(200)["subscriptions"], json!([]));

    // An in-process subscriber appears under subscriptions (not under WebSocket connections).
    let filter = only_types(&[EventType::NodeHealthChange]).with_ids(SubjectKind::Node, ["node-2"]);
    let mut sub = runtime.subscribe(filter).await.expect("subscribe");
    let subs = api.get("/api/v1/ws/subscriptions").await.expect(200);
    let rows = subs["subscriptions"].as_array().expect("subscriptions is an array");
    assert_eq!(rows.len(), 1, "{subs}");
    assert_eq!(rows[0]["id"], sub.subscription_id().to_string());
    assert_eq!(rows[0]["transport"], "in_process");
    assert_eq!(rows[0]["filter"], json!({"node_ids": ["node-2"], "event_types": ["node_health_change"]}));
    assert_eq!(api.get("/api/v1/ws/connections").await.expect(200)["connections"], json!([]));

    // It receives what it asked for, and the delivery is counted.
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2"})).await.expect(200);
    next_node_event(&mut sub, EventType::NodeHealthChange, "node-2").await;
    let status = api.get("/api/v1/ws/status").await.expect(200);
    assert_eq!(status["events_delivered"], 1, "{status}");
    assert_eq!(status["current_seq"], 4);
    let rows = api.get("/api/v1/ws/subscriptions").await.expect(200);
    assert_eq!(rows["subscriptions"][0]["delivered"], 1);

    // Closing a "connection" that is not a WebSocket session is a 404, and leaves the subscriber.
    api.delete(&format!("/api/v1/ws/connections/{}", sub.subscription_id()))
        .await
        .expect_error(404, "session_not_found");
    let d = api.delete("/api/v1/ws/connections/999").await.expect_error(404, "session_not_found");
    assert_eq!(d["session_id"], "999");
    api.delete("/api/v1/ws/connections/not-a-number").await.expect_error(404, "session_not_found");
    assert_eq!(api.get("/api/v1/ws/subscriptions").await.expect(200)["total"], 1);

    // Dropping the subscription unsubscribes it.
    drop(sub);
    let subs = api.get("/api/v1/ws/subscriptions").await.expect(200);
    assert_eq!(subs["subscriptions"], json!([]), "{subs}");
}

#[actix_web::test]
async fn null_lists_in_a_filter_are_absent() {
    let server = Server::start(TestConfig::memory().build());
    // The bootstrap members' joins are retained; `null` lists narrow nothing.
    let r = server
        .post(
            r#"{ events(filter: {replicaIds: null, nodeIds: ["node-1"], eventTypes: null, categories: null, includeConflicts: null}) { eventType subjects } }"#,
            None,
        )
        .await;
    let events = r["data"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("events: {r}"));
    assert!(
        events.iter().any(|e| e["eventType"] == "node_joined"),
        "{r}"
    );
    for e in events {
        assert_eq!(e["subjects"]["node_ids"], json!(["node-1"]), "{r}");
    }
}
