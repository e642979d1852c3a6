//! The link on its own: what a partition, a lossy link and a slow link do to messages.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::*;

#[derive(Message)]
#[rtype(result = "()")]
struct Note(u32);

#[derive(Message)]
#[rtype(result = "Vec<u32>")]
struct Notes;

/// Keeps what it is sent, in order.
#[derive(Default)]
struct Inbox(Vec<u32>);

impl Actor for Inbox {
    type Context = Context<Self>;
}

impl Handler<Note> for Inbox {
    type Result = ();
    fn handle(&mut self, msg: Note, _: &mut Self::Context) {
        self.0.push(msg.0);
    }
}

impl Handler<Notes> for Inbox {
    type Result = MessageResult<Notes>;
    fn handle(&mut self, _: Notes, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.0.clone())
    }
}

fn start() -> (Link, Addr<NetActor>, Addr<Inbox>) {
    let link = Link::new(Arbiter::current());
    (link.clone(), NetActor::new(link).start(), Inbox::default().start())
}

#[actix_rt::test]
async fn a_partition_cuts_only_between_groups_and_heal_ends_it() {
    let (link, net, inbox) = start();
    let groups = vec![vec!["a".to_string(), "b".to_string()], vec!["c".to_string()]];
    let view = net.send(PartitionLinks { groups: groups.clone() }).await.expect("answers").expect("partitioned");
    assert_eq!(view.partition, groups);
    assert_eq!(link.deliver("c", "a", &inbox, Note(1)), Sent::Dropped);
    assert_eq!(link.deliver("a", "c", &inbox, Note(2)), Sent::Dropped);
    assert_eq!(link.deliver("a", "b", &inbox, Note(3)), Sent::Delivered, "same group");
    assert_eq!(link.deliver("d", "c", &inbox, Note(4)), Sent::Delivered, "not named: every link kept");
    let view = net.send(HealLinks).await.expect("answers");
    assert!(view.partition.is_empty());
    assert_eq!(view.messages_dropped, 2);
    assert_eq!(link.deliver("c", "a", &inbox, Note(5)), Sent::Delivered);
    assert_eq!(inbox.send(Notes).await.expect("answers"), vec![3, 4, 5]);
}

#[actix_rt::test]
async fn a_bad_partition_or_link_rule_is_refused_and_changes_nothing() {
    let (link, net, inbox) = start();
    for groups in [vec![vec!["a".to_string()]], vec![vec!["a".to_string()], vec!["a".to_string()]], vec![vec!["a".to_string()], vec![]]] {
        assert!(net.send(PartitionLinks { groups }).await.expect("answers").is_err());
    }
    let bad = |drop_rate, delay_ms| SetLinkFault { from: "a".into(), to: "b".into(), drop_rate, delay_ms, both_ways: true };
    assert!(net.send(bad(1.5, 0)).await.expect("answers").is_err());
    assert!(net.send(bad(0.0, 600_000)).await.expect("answers").is_err());
    assert_eq!(link.deliver("a", "b", &inbox, Note(1)), Sent::Delivered);
    assert_eq!(net.send(GetLinks).await.expect("answers"), LinkFaults::default());
}

#[actix_rt::test]
async fn a_lossy_link_drops_and_a_slow_link_delays_in_order() {
    let (link, net, inbox) = start();
    let set = |drop_rate, delay_ms| SetLinkFault { from: "a".into(), to: "b".into(), drop_rate, delay_ms, both_ways: false };
    net.send(set(1.0, 0)).await.expect("answers").expect("set");
    assert_eq!(link.deliver("a", "b", &inbox, Note(1)), Sent::Dropped);
    assert_eq!(link.deliver("b", "a", &inbox, Note(2)), Sent::Delivered, "one direction only");

    net.send(set(0.0, 50)).await.expect("answers").expect("set");
    let sent_at = Instant::now();
    for i in 10..20 {
        assert_eq!(link.deliver("a", "b", &inbox, Note(i)), Sent::Delayed);
    }
    // Lifted while messages wait: later ones queue behind them rather than overtake.
    net.send(set(0.0, 0)).await.expect("answers").expect("healthy again");
    assert_eq!(link.deliver("a", "b", &inbox, Note(20)), Sent::Delayed);
    let expected: Vec<u32> = [2].into_iter().chain(10..=20).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = inbox.send(Notes).await.expect("answers");
        if got.len() == expected.len() {
            assert_eq!(got, expected, "in the order sent");
            break;
        }
        assert!(Instant::now() < deadline, "the delayed notes never came: {got:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(sent_at.elapsed() >= Duration::from_millis(50), "delivered after the delay");
    assert_eq!(link.deliver("a", "b", &inbox, Note(21)), Sent::Delivered, "the queue drained: direct again");
}
