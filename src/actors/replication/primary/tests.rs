//! The primary's state driven without actix: batches in, group commits out, replicas' reports,
//! and what it asks its actor to send.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::load::LoadedPrimary;
use super::outbox::{Outbox, ToReplica};
use super::settings::ReplicationSettings;
use super::state::Primary;
use crate::actors::registry::InterestTable;
use crate::actors::replication::metrics::ReplicationMetrics;
use crate::config::ReplicationConfig;
use crate::messages::replication::*;
use crate::metrics::Metrics;
use crate::model::{Op, OpKind, ReplicaMode, ReplicationMode};
use crate::storage::table::{LoadedTable, TableState};

/// A primary in `mode` with replicas `r1` (sync) and `r2` (async), loaded empty on timeline 2,
/// both replicas' actors started (incarnations 1 and 2).
fn primary(mode: ReplicationMode) -> (Primary, Outbox) {
    let config = ReplicationConfig { mode, sync_quorum: 1, ..ReplicationConfig::default() };
    let stages = ReplicationMetrics::register(&Metrics::default()).stages();
    let mut p = Primary::new(ReplicationSettings::from_config(&config, 1000), Arc::new(InterestTable::default()), stages);
    let mut out = Outbox::default();
    let loaded = p.loaded(
        LoadedPrimary {
            table: LoadedTable { table: TableState::default(), shard_lsns: vec![0; crate::model::rows::SHARDS], epoch: 0, lsn: 0 },
            flush: 0,
            timeline: 2,
            timeline_ends: BTreeMap::from([(1, 0)]),
            replicas: vec![("r1".into(), ReplicaMode::Sync, true), ("r2".into(), ReplicaMode::Async, true)],
            settings: None,
            slots: BTreeMap::new(),
            oldest_retained: 0,
            newest_snapshot: None,
        },
        &mut out,
    );
    assert_eq!(loaded.start, vec!["r1", "r2"]);
    p.replica_started("r1", 1);
    p.replica_started("r2", 2);
    (p, Outbox::default())
}

fn report(id: &str, incarnation: u64, timeline: u64, lsn: u64, kind: ReportKind) -> ReplicaReport {
    ReplicaReport {
        replica_id: id.into(),
        incarnation,
        timeline,
        positions: ReplicaPositions { write_lsn: lsn, flush_lsn: lsn, replay_lsn: lsn },
        kind,
    }
}

fn insert(key: &str) -> Vec<Op> {
    vec![Op { op: OpKind::Insert, table: "t".into(), key: key.into(), value: Some(serde_json::json!(1).into()) }]
}

fn sent_to<'a>(out: &'a Outbox, id: &str) -> Vec<&'a ToReplica> {
    out.sends.iter().filter(|(to, _)| to == id).map(|(_, m)| m).collect()
}

#[test]
fn a_group_ships_to_streaming_replicas_as_it_starts_and_a_write_waits_for_the_sync_one() {
    let (mut p, mut out) = primary(ReplicationMode::Sync);
    p.on_report(report("r1", 1, 2, 0, ReportKind::Restarted), &mut out);
    p.on_report(report("r2", 2, 2, 0, ReportKind::Restarted), &mut out);
    out = Outbox::default();

    let (reply, mut answer) = oneshot::channel();
    p.accept(insert("a"), reply).map_err(|(e, _)| e).expect("accepted");
    let (group, commit) = p.start_group(&mut out).expect("a group starts");
    let end = commit.records[0].0 + commit.records[0].1.len() as u64;
    for id in ["r1", "r2"] {
        let shipped = sent_to(&out, id);
        assert!(matches!(shipped[..], [ToReplica::Ship(ShipWal { durable_lsn: 0, timeline: 2, .. })]), "{id}: {shipped:?}");
    }
    assert!(p.start_group(&mut out).is_none(), "one group commit at a time");

    p.group_done(group, Ok(()), &mut out);
    assert!(answer.try_recv().is_err(), "durable here, not yet on the sync replica");
    p.on_report(report("r1", 1, 2, end, ReportKind::Progress), &mut out);
    let ack = answer.try_recv().expect("answered").expect("acknowledged");
    assert_eq!((ack.lsn_u64, ack.acknowledged_by), (end, vec!["r1".to_string()]));
}

#[test]
fn a_replica_reporting_from_an_earlier_timeline_is_reconciled_before_anything_is_shipped() {
    let (mut p, mut out) = primary(ReplicationMode::Async);
    // r1 holds 50 bytes of timeline 1, which ended (durably) at 0.
    p.on_report(
        ReplicaReport { positions: ReplicaPositions { write_lsn: 50, flush_lsn: 50, replay_lsn: 0 }, ..report("r1", 1, 1, 0, ReportKind::Restarted) },
        &mut out,
    );
    let sent = sent_to(&out, "r1");
    assert!(matches!(sent[..], [ToReplica::Reconcile(Reconcile { from_timeline: 1, timeline: 2, keep_until: 0 })]), "{sent:?}");
    out = Outbox::default();
    let (reply, _answer) = oneshot::channel();
    p.accept(insert("a"), reply).map_err(|(e, _)| e).expect("accepted");
    p.start_group(&mut out).expect("a group starts");
    assert!(sent_to(&out, "r1").is_empty(), "nothing shipped before the reconcile is done");
}

#[test]
fn a_replica_the_link_lost_a_message_to_is_resynchronised_from_its_next_report() {
    let (mut p, mut out) = primary(ReplicationMode::Async);
    p.on_report(report("r2", 2, 2, 0, ReportKind::Restarted), &mut out);
    let (reply, _answer) = oneshot::channel();
    p.accept(insert("a"), reply).map_err(|(e, _)| e).expect("accepted");
    let (group, commit) = p.start_group(&mut out).expect("a group starts");
    let end = commit.records[0].0 + commit.records[0].1.len() as u64;
    p.group_done(group, Ok(()), &mut out);
    // The shipment was dropped on the way: nothing more goes out until r2 is heard from.
    p.link_lost("r2");
    out = Outbox::default();
    p.confirm_durable(&mut out);
    assert!(sent_to(&out, "r2").is_empty(), "no confirmation into a lost link");
    // Its heartbeat says it has nothing: it is confirmed what is durable, and shipped from 0.
    p.on_report(report("r2", 2, 2, 0, ReportKind::Progress), &mut out);
    let sent = sent_to(&out, "r2");
    assert!(sent.iter().any(|m| matches!(m, ToReplica::Durable(PrimaryDurable { lsn, .. }) if *lsn == end)), "{sent:?}");
    assert!(sent.iter().any(|m| matches!(m, ToReplica::Ship(ShipWal { records, .. }) if records[0].lsn == 0)), "{sent:?}");
}

#[test]
fn only_a_restart_report_moves_a_replicas_positions_back() {
    let (mut p, mut out) = primary(ReplicationMode::Async);
    p.on_report(report("r1", 1, 2, 0, ReportKind::Restarted), &mut out);
    let (reply, _answer) = oneshot::channel();
    p.accept(insert("a"), reply).map_err(|(e, _)| e).expect("accepted");
    let (group, commit) = p.start_group(&mut out).expect("a group starts");
    let end = commit.records[0].0 + commit.records[0].1.len() as u64;
    p.group_done(group, Ok(()), &mut out);
    p.on_report(report("r1", 1, 2, end, ReportKind::Progress), &mut out);
    p.on_report(report("r1", 1, 2, 0, ReportKind::Progress), &mut out);
    assert_eq!(p.replica_view("r1").expect("r1").replay_lsn_u64, end, "a crossing report moves nothing back");
    p.on_report(report("r1", 1, 2, 0, ReportKind::Restarted), &mut out);
    assert_eq!(p.replica_view("r1").expect("r1").replay_lsn_u64, 0);
    p.on_report(report("r1", 7, 2, end, ReportKind::Progress), &mut out);
    assert_eq!(p.replica_view("r1").expect("r1").replay_lsn_u64, 0, "an earlier or other actor's report is ignored");
}
