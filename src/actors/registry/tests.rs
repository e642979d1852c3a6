//! The registry on its own: who receives what, lag and closing, replay meeting live delivery.

use std::sync::Arc;

use actix::prelude::*;

use super::*;
use crate::messages::events::*;
use crate::messages::registry::*;
use crate::messages::system::{ActorRestart, SystemEvent};
use crate::metrics::Metrics;
use crate::storage::Store;

fn registry(session_queue: usize) -> (Addr<EventRegistry>, Arc<InterestTable>) {
    let interest = Arc::new(InterestTable::default());
    let settings = RegistrySettings { retained: 100, session_queue, last_seq: 0, seq_reserved: u64::MAX };
    let addr = EventRegistry::new(
        settings,
        Arc::new(Store::memory()),
        EventMetrics::register(&Metrics::default()),
        interest.clone(),
    )
    .start();
    (addr, interest)
}

fn info() -> SubscriberInfo {
    SubscriberInfo { transport: Transport::InProcess, stream: "test".into(), peer: "test".into(), connected_at_ms: 0, session_id: None }
}

fn restart_of(kind: &str, id: &str) -> Event {
    Event::now(
        Severity::Warning,
        "test",
        SystemEvent::ActorRestarted(ActorRestart {
            actor_kind: kind.into(),
            actor_id: id.into(),
            reason: "test".into(),
            restart_count: 1,
        }),
    )
}

async fn subscribe(
    addr: &Addr<EventRegistry>,
    filter: EventFilter,
    queue: usize,
) -> (SubscribeAck, tokio::sync::mpsc::Receiver<Delivery>) {
    let (tx, rx) = tokio::sync::mpsc::channel(queue);
    let ack = addr
        .send(Subscribe { filter, stream: vec![], sink: Box::new(tx), info: info() })
        .await
        .expect("registry answers");
    (ack, rx)
}

#[actix_rt::test]
async fn interest_table_follows_subscriptions() {
    let (addr, interest) = registry(8);
    assert!(!interest.wants(EventType::BlockTransfer));
    let filter = EventFilter { event_types: vec![EventType::BlockTransfer], ..Default::default() };
    let (ack, _rx) = subscribe(&addr, filter, 8).await;
    assert!(interest.wants(EventType::BlockTransfer));
    assert!(!interest.wants(EventType::NodeJoined));
    addr.send(Unsubscribe { subscription_id: ack.subscription_id }).await.expect("answers");
    assert!(!interest.wants(EventType::BlockTransfer));
}

#[actix_rt::test]
async fn only_admitted_subscribers_receive_and_each_once() {
    let (addr, _) = registry(8);
    let (_a, mut node_2) =
        subscribe(&addr, EventFilter::default().with_ids(SubjectKind::Node, ["node-2", "node-2"]), 8).await;
    let (_b, mut node_3) = subscribe(&addr, EventFilter::default().with_ids(SubjectKind::Node, ["node-3"]), 8).await;
    addr.send(Publish { event: restart_of("node", "node-2") }).await.expect("answers");
    addr.send(Publish { event: restart_of("node", "node-3") }).await.expect("answers");
    let first = node_2.recv().await.expect("delivery");
    let Delivery::Event(e) = first else { panic!("expected an event") };
    assert_eq!(e.subjects.of(SubjectKind::Node), vec!["node-2"]);
    let Delivery::Event(e) = node_3.recv().await.expect("delivery") else { panic!("expected an event") };
    assert_eq!(e.subjects.of(SubjectKind::Node), vec!["node-3"]);
    // Nothing else is queued for node-2's subscriber: node-3's event did not reach it, and
    // its own event came once although its filter named node-2 twice.
    assert!(node_2.try_recv().is_err());
}

#[actix_rt::test]
async fn a_full_queue_drops_then_tells_lagged_with_where_to_resume() {
    // The channel holds 2; the registry closes a subscriber only after 8 misses in a row.
    let (addr, _) = registry(8);
    let (_ack, mut rx) = subscribe(&addr, EventFilter::default(), 2).await;
    for _ in 0..5 {
        addr.send(Publish { event: restart_of("node", "node-1") }).await.expect("answers");
    }
    // Two fit; seq 3, 4 and 5 were dropped.
    for expected in [1, 2] {
        let Some(Delivery::Event(e)) = rx.recv().await else { panic!("expected an event") };
        assert_eq!(e.seq, expected);
    }
    addr.send(Publish { event: restart_of("node", "node-1") }).await.expect("answers");
    match rx.recv().await {
        Some(Delivery::Lagged { missed, resume_from_seq }) => {
            assert_eq!(missed, 3);
            assert_eq!(resume_from_seq, 2);
        }
        other => panic!("expected lagged, got {other:?}"),
    }
    let Some(Delivery::Event(e)) = rx.recv().await else { panic!("expected an event") };
    assert_eq!(e.seq, 6);
}

#[actix_rt::test]
async fn a_subscriber_that_misses_a_whole_queue_in_a_row_is_closed() {
    let (addr, interest) = registry(4);
    let filter = EventFilter { event_types: vec![EventType::ActorRestarted], ..Default::default() };
    let (_ack, mut rx) = subscribe(&addr, filter, 1).await;
    for _ in 0..6 {
        addr.send(Publish { event: restart_of("node", "node-1") }).await.expect("answers");
    }
    // One fit, then five misses in a row (> 4): the registry let go of the sender.
    assert!(matches!(rx.recv().await, Some(Delivery::Event(_))));
    assert!(rx.recv().await.is_none(), "the subscription should have ended");
    assert!(!interest.wants(EventType::ActorRestarted));
}

#[actix_rt::test]
async fn replay_and_live_meet_with_no_gap_and_no_duplicate_on_the_raw_channel() {
    let (addr, _) = registry(64);
    for _ in 0..5 {
        addr.send(Publish { event: restart_of("node", "node-1") }).await.expect("answers");
    }
    let filter = EventFilter { since_seq: Some(2), ..Default::default() };
    let (ack, mut rx) = subscribe(&addr, filter, 64).await;
    let replayed: Vec<u64> = ack.replay.iter().map(|e| e.seq).collect();
    assert_eq!(replayed, vec![3, 4, 5]);
    assert_eq!(ack.current_seq, 5);
    for _ in 0..2 {
        addr.send(Publish { event: restart_of("node", "node-1") }).await.expect("answers");
    }
    // The channel carries exactly what came after the replay: no session-side guard here.
    for expected in [6, 7] {
        let Some(Delivery::Event(e)) = rx.recv().await else { panic!("expected an event") };
        assert_eq!(e.seq, expected);
    }
    assert!(rx.try_recv().is_err(), "nothing else was delivered");
}

/// Takes `n` events: each after the last's seq; their actor ids into `received`.
async fn take(rx: &mut tokio::sync::mpsc::Receiver<Delivery>, n: usize, last_seq: &mut u64, received: &mut Vec<String>) {
    for _ in 0..n {
        let d = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await.expect("delivered in time").expect("open");
        let Delivery::Event(e) = d else { panic!("an event, not {d:?}") };
        assert!(e.seq > *last_seq, "seq {} after {last_seq}", e.seq);
        *last_seq = e.seq;
        let json: serde_json::Value = serde_json::from_str(e.json()).expect("json");
        received.push(json["payload"]["actor_id"].as_str().expect("actor_id").to_string());
    }
}

/// A publisher's events arrive once each and in the order published: gathered on a runtime
/// (one `PublishAll` after its ready tasks), from a plain thread while a flush is pending
/// (they join it), and from a plain thread with none pending (sent at once).
#[actix_rt::test]
async fn published_events_arrive_in_order_whether_gathered_or_sent_at_once() {
    let (addr, _) = registry(512);
    let (_ack, mut rx) = subscribe(&addr, EventFilter::default(), 512).await;
    let metrics = Metrics::default();
    let publisher = EventPublisher::new(addr.clone(), EventMetrics::register(&metrics), Arc::new(Metrics::default()));
    let from_thread = |prefix: &'static str, p: EventPublisher| {
        std::thread::spawn(move || (0..50).for_each(|i| p.publish(restart_of("node", &format!("{prefix}-{i}"))))).join().expect("joins")
    };
    (0..50).for_each(|i| publisher.publish(restart_of("node", &format!("runtime-{i}"))));
    // This runtime's flush has not run yet (this task has not yielded): these join it.
    from_thread("pending", publisher.clone());
    let mut expected: Vec<String> = ["runtime", "pending"].iter().flat_map(|p| (0..50).map(move |i| format!("{p}-{i}"))).collect();
    let (mut received, mut last_seq) = (Vec::new(), 0);
    take(&mut rx, 100, &mut last_seq, &mut received).await;
    // Nothing pending now: a plain thread's events go at once, with no runtime to flush them.
    from_thread("alone", publisher.clone());
    take(&mut rx, 50, &mut last_seq, &mut received).await;
    expected.extend((0..50).map(|i| format!("alone-{i}")));
    assert_eq!(received, expected);
}
