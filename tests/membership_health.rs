//! Health is measured before it is claimed: a node is `healthy` only once it has answered a
//! heartbeat, at startup, when it joins and when it is restarted after a crash.

mod common;

use clusterd::messages::cluster::{CrashNode, GetNode, ListNodes, RestartNode};
use clusterd::messages::cluster::ClusterEvent;
use clusterd::messages::events::{EventPayload, EventType, SubjectKind};
use clusterd::model::NodeHealth;
use clusterd::Runtime;

use common::*;

#[actix_web::test]
async fn every_healthy_node_has_answered_a_heartbeat() {
    // Heartbeats every second: any answer seen below comes from the first, measuring probe.
    let runtime = Runtime::start(quiet_config()).expect("runtime starts");

    // At startup: every bootstrap node was probed before it was announced.
    for n in runtime.membership().send(ListNodes).await.expect("answers") {
        assert_eq!(n.status, NodeHealth::Healthy, "{n:?}");
        assert!(n.heartbeat_rtt_micros.is_some(), "{} is healthy without an answer", n.node_id);
    }

    // A joining node: healthy in the answer to AddNode, with its measured round trip.
    let view = add_node(&runtime, "node-4", Default::default()).await;
    assert_eq!(view.status, NodeHealth::Healthy);
    assert!(view.heartbeat_rtt_micros.is_some(), "node-4 is healthy without an answer");

    // A restarted node: failed -> healthy is published only after it answered.
    let mut sub = runtime
        .subscribe(only_types(&[EventType::NodeHealthChange]).with_ids(SubjectKind::Node, ["node-2"]))
        .await
        .expect("subscribe");
    runtime.membership().send(CrashNode { node_id: "node-2".into() }).await.expect("answers").expect("crash");
    let crashed = next_node_event(&mut sub, EventType::NodeHealthChange, "node-2").await;
    let restarted = runtime
        .membership()
        .send(RestartNode { node_id: "node-2".into() })
        .await
        .expect("answers")
        .expect("restart");
    assert_eq!(restarted.status, NodeHealth::Healthy);
    assert!(restarted.heartbeat_rtt_micros.is_some(), "restarted node-2 is healthy without an answer");
    let back = next_node_event(&mut sub, EventType::NodeHealthChange, "node-2").await;
    assert!(back.seq > crashed.seq);
    match &back.payload {
        EventPayload::Cluster(ClusterEvent::NodeHealthChange(p)) => {
            assert_eq!(p.old_status, NodeHealth::Failed);
            assert_eq!(p.new_status, NodeHealth::Healthy);
            assert!(p.metrics.contains_key("heartbeat_rtt_micros"), "{:?}", p.metrics);
        }
        other => panic!("expected a health change, got {other:?}"),
    }
    let view = runtime.membership().send(GetNode { node_id: "node-2".into() }).await.expect("answers");
    assert_eq!(view.expect("node-2").status, NodeHealth::Healthy);
}
