//! Replication durability, driven through the runtime's messages, REST and GraphQL: WAL is kept
//! while a replica, a slot or the newest snapshot needs it and no longer; a logical slot decodes
//! what was written after it; snapshots seed replicas; concurrent writes share fsyncs; rows,
//! positions, replicas, slots, snapshots and settings survive a restart on disk and rows a crash.
//! And the log a replica receives ahead of its primary's fsync: applied only once confirmed,
//! dropped where a restarted primary never made it durable.
//!
//! Each test is a scenario told in its comments. Every wait is on an event, an answer, or (for
//! state that publishes no event of its own) a short poll inside `common::TIMEOUT`.
//!
//! Most scenarios run with one sync replica, `replica-001`, in sync mode.

mod common;

use clusterd::messages::events::{EventFilter, EventPayload, EventType};
use clusterd::messages::replication::*;
use clusterd::model::*;
use clusterd::{Runtime, RuntimeHandle};
use serde_json::json;

use common::replication::{acked_by, ids_of, start_in_sync, status_change, wait_in_sync};
use common::server::Server;
use common::graphql::error_code;
use common::*;

/// The starting point of most scenarios here: one sync replica, `replica-001`, in sync mode, with
/// replication heartbeats every 50 ms.
fn one_sync_replica() -> TestConfig {
    TestConfig::memory().mode(ReplicationMode::Sync).heartbeat_ms(50, 2000).replicas(&[("replica-001", ReplicaMode::Sync)])
}

async fn write(runtime: &RuntimeHandle, op: OpKind, key: &str, value: Option<serde_json::Value>) -> ReplicateAck {
    let ops = vec![Op { op, table: "t".into(), key: key.into(), value: value.map(Into::into) }];
    within("a write", runtime.primary().send(ReplicateOps { ops }))
        .await
        .expect("the primary answers")
        .expect("the write is acknowledged")
}

async fn wal(runtime: &RuntimeHandle) -> WalStatus {
    runtime.primary().send(GetWalStatus).await.expect("answers").expect("wal status")
}

/// Waits until `replica` has replayed `lsn`.
async fn replayed(runtime: &RuntimeHandle, replica: &str, lsn: u64) {
    // In sync too: after a restart the primary shows the last positions it heard until the new
    // actor reports (`starting` meanwhile), and that actor applies what it kept only once the
    // primary confirms it.
    poll_until("the replica replays", || async {
        let view = runtime.primary().send(GetReplica { replica_id: replica.into() }).await.ok()?.ok()?;
        (view.replay_lsn_u64 >= lsn && view.status == ReplicaStatus::InSync).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn a_logical_slot_lists_the_changes_written_after_it_and_holds_wal_until_advanced() {
    let runtime = Runtime::start(one_sync_replica().build()).expect("runtime starts");
    let mut events = runtime
        .subscribe(only_types(&[EventType::SlotCreated, EventType::SlotDropped]))
        .await
        .expect("subscribe");
    write(&runtime, OpKind::Insert, "before", Some(serde_json::json!(0))).await;

    // A slot created now starts at the flushed lsn: what came before is not its business.
    let slot = runtime
        .primary()
        .send(CreateSlot { slot_name: "cdc".into(), slot_type: SlotType::Logical })
        .await
        .expect("answers")
        .expect("created");
    let created = within("slot_created", events.next_event()).await.expect("an event");
    assert!(matches!(&created.payload, EventPayload::Replication(ReplicationEvent::SlotCreated(p)) if p.slot_name == "cdc" && p.slot_type == "logical"));

    write(&runtime, OpKind::Insert, "a", Some(serde_json::json!(1))).await;
    write(&runtime, OpKind::Update, "before", Some(serde_json::json!(2))).await;
    let last = write(&runtime, OpKind::Delete, "a", None).await;

    let changes = runtime
        .primary()
        .send(PeekSlotChanges { slot_name: "cdc".into(), limit: 100 })
        .await
        .expect("answers")
        .expect("changes");
    let seen: Vec<(OpKind, &str)> = changes.changes.iter().map(|c| (c.op, c.key.as_str())).collect();
    assert_eq!(seen, vec![(OpKind::Insert, "a"), (OpKind::Update, "before"), (OpKind::Delete, "a")]);
    assert_eq!(changes.changes[0].lsn_u64, slot.confirmed_flush_lsn_u64);
    assert_eq!(changes.next_lsn_u64, last.lsn_u64);
    // Peeking consumes nothing.
    let again = runtime.primary().send(PeekSlotChanges { slot_name: "cdc".into(), limit: 1 }).await.expect("answers").expect("changes");
    assert_eq!(again.changes.len(), 1, "a limit cuts at whole records");

    // The slot holds the WAL since its position, and says how much.
    let status = wal(&runtime).await;
    let holder = status.retained_by.iter().find(|h| h.kind == "slot").expect("the slot holds WAL");
    assert_eq!(holder.needs_from_lsn_u64, slot.restart_lsn_u64);
    assert_eq!(status.truncatable_before_u64, slot.restart_lsn_u64);
    let view = runtime.primary().send(GetSlot { slot_name: "cdc".into() }).await.expect("answers").expect("slot");
    assert_eq!(view.retained_bytes, last.lsn_u64 - slot.restart_lsn_u64);
    let truncated = runtime.primary().send(TruncateWal).await.expect("answers").expect("truncated");
    assert_eq!(truncated.oldest_retained_lsn_u64, slot.restart_lsn_u64, "nothing the slot needs is dropped");

    // Moving backwards or past the WAL is refused (a conflict with the slot and the WAL as they
    // are: 409 over REST, issue 15); moving forward releases the WAL.
    let back = runtime.primary().send(AdvanceSlot { slot_name: "cdc".into(), lsn: 0 }).await.expect("answers");
    assert!(matches!(back, Err(ReplicationError::ConflictsWithState { .. })), "{back:?}");
    let past = runtime.primary().send(AdvanceSlot { slot_name: "cdc".into(), lsn: last.lsn_u64 + 1 }).await.expect("answers");
    assert!(matches!(past, Err(ReplicationError::ConflictsWithState { .. })), "{past:?}");
    let advanced = runtime
        .primary()
        .send(AdvanceSlot { slot_name: "cdc".into(), lsn: changes.next_lsn_u64 })
        .await
        .expect("answers")
        .expect("advanced");
    assert_eq!(advanced.retained_bytes, 0);
    let empty = runtime.primary().send(PeekSlotChanges { slot_name: "cdc".into(), limit: 100 }).await.expect("answers").expect("changes");
    assert!(empty.changes.is_empty());
    replayed(&runtime, "replica-001", last.lsn_u64).await;
    let truncated = runtime.primary().send(TruncateWal).await.expect("answers").expect("truncated");
    assert_eq!(truncated.oldest_retained_lsn_u64, last.lsn_u64, "WAL nobody needs is gone");

    runtime.primary().send(DropSlot { slot_name: "cdc".into() }).await.expect("answers").expect("dropped");
    let dropped = within("slot_dropped", events.next_event()).await.expect("an event");
    assert_eq!(dropped.event_type, EventType::SlotDropped);
    let gone = runtime.primary().send(GetSlot { slot_name: "cdc".into() }).await.expect("answers");
    assert_eq!(gone, Err(ReplicationError::SlotNotFound { slot_name: "cdc".into() }));
}

#[actix_web::test]
async fn a_physical_slot_decodes_nothing_and_duplicate_names_are_refused() {
    let runtime = Runtime::start(one_sync_replica().build()).expect("runtime starts");
    runtime
        .primary()
        .send(CreateSlot { slot_name: "standby".into(), slot_type: SlotType::Physical })
        .await
        .expect("answers")
        .expect("created");
    let again = runtime.primary().send(CreateSlot { slot_name: "standby".into(), slot_type: SlotType::Logical }).await.expect("answers");
    assert_eq!(again.map(|_| ()), Err(ReplicationError::SlotExists { slot_name: "standby".into() }));
    let bad = runtime.primary().send(CreateSlot { slot_name: "no spaces".into(), slot_type: SlotType::Logical }).await.expect("answers");
    assert!(matches!(bad, Err(ReplicationError::InvalidField { .. })));
    let peek = runtime.primary().send(PeekSlotChanges { slot_name: "standby".into(), limit: 10 }).await.expect("answers");
    assert!(matches!(peek, Err(ReplicationError::ConflictsWithState { .. })), "{peek:?}");
}

#[actix_web::test]
async fn a_paused_replica_holds_wal_and_resumes_from_where_it_stopped() {
    let runtime = Runtime::start(one_sync_replica().build()).expect("runtime starts");
    runtime
        .primary()
        .send(SetReplicationConfig { mode: ReplicationMode::Async, sync_quorum: None, sync_timeout_ms: None })
        .await
        .expect("answers")
        .expect("async now");
    let first = write(&runtime, OpKind::Insert, "k0", Some(serde_json::json!(0))).await;
    replayed(&runtime, "replica-001", first.lsn_u64).await;
    runtime.primary().send(PauseReplica { replica_id: "replica-001".into() }).await.expect("answers").expect("paused");
    let mut last = first.clone();
    for i in 1..20 {
        last = write(&runtime, OpKind::Insert, &format!("k{i}"), Some(serde_json::json!(i))).await;
    }
    // The paused replica holds the WAL from its flushed position: truncation keeps it.
    let truncated = runtime.primary().send(TruncateWal).await.expect("answers").expect("truncated");
    assert!(truncated.oldest_retained_lsn_u64 <= first.lsn_u64, "{truncated:?}");
    let status = wal(&runtime).await;
    let holder = status.retained_by.iter().find(|h| h.name == "replica-001").expect("held by the replica");
    assert_eq!(holder.retained_bytes, last.lsn_u64 - first.lsn_u64);

    runtime.primary().send(ResumeReplica { replica_id: "replica-001".into() }).await.expect("answers").expect("resumed");
    replayed(&runtime, "replica-001", last.lsn_u64).await;
    let row = runtime
        .primary()
        .send(ReadRow { table: "t".into(), key: "k19".into(), from: ReadFrom::Replica("replica-001".into()) })
        .await
        .expect("answers")
        .expect("read");
    assert_eq!(row.map(|r| r.value), Some(serde_json::json!(19)));
}

#[actix_web::test]
async fn snapshots_seed_new_replicas_and_a_base_copy_replaces_wal_that_is_gone() {
    let runtime = Runtime::start(one_sync_replica().build()).expect("runtime starts");
    let mut events = runtime
        .subscribe(only_types(&[EventType::SnapshotCreated, EventType::SnapshotRestored]))
        .await
        .expect("subscribe");
    write(&runtime, OpKind::Insert, "a", Some(serde_json::json!(1))).await;
    let snapshot = runtime.primary().send(CreateSnapshot).await.expect("answers").expect("snapshot");
    assert_eq!(snapshot.rows, 1);
    let created = within("snapshot_created", events.next_event()).await.expect("an event");
    assert_eq!(created.event_type, EventType::SnapshotCreated);
    let after = write(&runtime, OpKind::Insert, "b", Some(serde_json::json!(2))).await;

    // A replica seeded from the snapshot has `a` from it and `b` streamed after its lsn.
    runtime
        .primary()
        .send(AddReplica { replica_id: "replica-003".into(), mode: ReplicaMode::Async, from_snapshot: Some(snapshot.snapshot_id.clone()) })
        .await
        .expect("answers")
        .expect("added");
    replayed(&runtime, "replica-003", after.lsn_u64).await;
    for (key, value) in [("a", 1), ("b", 2)] {
        let row = runtime
            .primary()
            .send(ReadRow { table: "t".into(), key: key.into(), from: ReadFrom::Replica("replica-003".into()) })
            .await
            .expect("answers")
            .expect("read");
        assert_eq!(row.map(|r| r.value), Some(serde_json::json!(value)), "{key} on replica-003");
    }
    let restored = within("snapshot_restored", events.next_event()).await.expect("an event");
    assert!(matches!(&restored.payload, EventPayload::Replication(ReplicationEvent::SnapshotRestored(p)) if p.target.as_deref() == Some("replica-003")));

    // The newest snapshot holds the WAL since it, so restoring it still works after truncation.
    runtime.primary().send(TruncateWal).await.expect("answers").expect("truncated");
    let status = wal(&runtime).await;
    assert!(status.retained_by.iter().any(|h| h.kind == "snapshot" && h.needs_from_lsn_u64 == snapshot.lsn_u64));
    runtime
        .primary()
        .send(RestoreSnapshot { snapshot_id: snapshot.snapshot_id.clone(), target: "replica-003".into() })
        .await
        .expect("answers")
        .expect("restored");

    // A newer snapshot moves that point: the old one's WAL can go, and restoring it is refused.
    let newer = runtime.primary().send(CreateSnapshot).await.expect("answers").expect("snapshot");
    replayed(&runtime, "replica-003", newer.lsn_u64).await;
    replayed(&runtime, "replica-001", newer.lsn_u64).await;
    runtime.primary().send(TruncateWal).await.expect("answers").expect("truncated");
    let refused = runtime
        .primary()
        .send(RestoreSnapshot { snapshot_id: snapshot.snapshot_id.clone(), target: "replica-003".into() })
        .await
        .expect("answers");
    assert!(matches!(refused, Err(ReplicationError::WalGone { .. })), "{refused:?}");
    let unknown = runtime
        .primary()
        .send(RestoreSnapshot { snapshot_id: "snap_999999".into(), target: "replica-003".into() })
        .await
        .expect("answers");
    assert!(matches!(unknown, Err(ReplicationError::SnapshotNotFound { .. })));

    // With the WAL from the start gone, a new replica gets a base copy and then streams.
    let latest = write(&runtime, OpKind::Insert, "c", Some(serde_json::json!(3))).await;
    runtime
        .primary()
        .send(AddReplica { replica_id: "replica-004".into(), mode: ReplicaMode::Async, from_snapshot: None })
        .await
        .expect("answers")
        .expect("added");
    replayed(&runtime, "replica-004", latest.lsn_u64).await;
    for key in ["a", "b", "c"] {
        let row = runtime
            .primary()
            .send(ReadRow { table: "t".into(), key: key.into(), from: ReadFrom::Replica("replica-004".into()) })
            .await
            .expect("answers")
            .expect("read");
        assert!(row.is_some(), "{key} on replica-004");
    }
}

#[actix_web::test]
async fn slots_snapshots_and_settings_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = one_sync_replica().disk(dir.path()).build();

    let runtime = Runtime::start(c.clone()).expect("runtime starts");
    runtime.primary().send(CreateSlot { slot_name: "cdc".into(), slot_type: SlotType::Logical }).await.expect("answers").expect("slot");
    let ack = write(&runtime, OpKind::Insert, "a", Some(serde_json::json!(1))).await;
    let snapshot = runtime.primary().send(CreateSnapshot).await.expect("answers").expect("snapshot");
    runtime
        .primary()
        .send(SetHeartbeat { interval_ms: 60, timeout_ms: 3000 })
        .await
        .expect("answers")
        .expect("heartbeat set");
    runtime.shutdown().await;

    let runtime = Runtime::start(c).expect("runtime restarts");
    let changes = within(
        "the slot after a restart",
        runtime.primary().send(PeekSlotChanges { slot_name: "cdc".into(), limit: 10 }),
    )
    .await
    .expect("answers")
    .expect("changes");
    assert_eq!(changes.changes.len(), 1, "the slot kept its position and the WAL it needs");
    assert_eq!(changes.next_lsn_u64, ack.lsn_u64);
    let snapshots = runtime.primary().send(ListSnapshots).await.expect("answers").expect("snapshots");
    assert_eq!(snapshots.iter().map(|s| s.snapshot_id.as_str()).collect::<Vec<_>>(), vec![snapshot.snapshot_id.as_str()]);
    let status = runtime.primary().send(GetReplicationStatus).await.expect("answers");
    assert_eq!(status.current_lsn_u64, ack.lsn_u64);
    let settings = runtime
        .primary()
        .send(SetReplicationConfig { mode: ReplicationMode::Sync, sync_quorum: None, sync_timeout_ms: None })
        .await
        .expect("answers")
        .expect("settings");
    assert_eq!(settings.heartbeat_interval_ms, 60, "a setting changed at run time outlives the restart");
    // Subscribing proves the registry is alive after the restart too.
    let _ = runtime.subscribe(EventFilter::default()).await.expect("subscribe");
}

#[actix_web::test]
async fn concurrent_writes_share_fsyncs() {
    // Group commit: while one WAL fsync runs, every batch that arrives waits for the next one,
    // which takes them all. On disk, 64 concurrent writers need far fewer than 64 fsyncs.
    let dir = tempfile::tempdir().expect("temp dir");
    let c = one_sync_replica().mode(ReplicationMode::Async).disk(dir.path()).build();
    let runtime = Runtime::start(c).expect("runtime starts");
    let wal_commits = |runtime: &RuntimeHandle| {
        let total = |name| runtime.metrics().total(name).unwrap_or(0);
        (total("clusterd_replication_wal_commits_total"), total("clusterd_replication_wal_batches_total"))
    };
    let (commits_before, batches_before) = wal_commits(&runtime);
    let writes: Vec<_> = (0..64)
        .map(|i| {
            runtime.primary().send(ReplicateOps {
                ops: vec![Op { op: OpKind::Insert, table: "t".into(), key: format!("k{i}").into(), value: Some(serde_json::json!(i).into()) }],
            })
        })
        .collect();
    for w in futures_util::future::join_all(writes).await {
        w.expect("answers").expect("acknowledged");
    }
    let (commits, batches) = wal_commits(&runtime);
    assert_eq!(batches - batches_before, 64, "every batch was committed once");
    assert!(commits - commits_before < 64, "{} fsyncs for 64 concurrent batches", commits - commits_before);
}

/// The scheduling policy and nice value of each of this process's threads named `replica-bg-*`
/// (the `BackgroundPool`'s), from `/proc/self/task/*/stat` (fields 41 and 19).
#[cfg(target_os = "linux")]
fn background_thread_priorities() -> Vec<(u32, i32)> {
    let mut priorities = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the command, which is in parentheses: field 3 onwards.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let field = |n: usize| rest.split_whitespace().nth(n - 3).map(str::to_owned).unwrap_or_default();
        if comm.starts_with("replica-bg-") {
            priorities.extend(field(41).parse::<u32>().ok().zip(field(19).parse::<i32>().ok()));
        }
    }
    priorities
}

#[cfg(target_os = "linux")]
#[actix_web::test]
async fn background_threads_give_way_to_every_other_thread_only_when_they_write_no_files() {
    // A SCHED_IDLE thread that did not run in the middle of its fsync held up the primary's; so a
    // runtime on disk only nices its background threads, and one in memory makes them
    // SCHED_IDLE. Other tests' runtimes may have such threads too, of both kinds: each check
    // looks for one of the kind that only a correct runtime of its engine starts.
    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;
    let dir = tempfile::tempdir().expect("temp dir");
    let on_disk = Runtime::start(one_sync_replica().mode(ReplicationMode::Async).disk(dir.path()).build()).expect("runtime starts");
    let niced = background_thread_priorities().into_iter().any(|(policy, nice)| policy == SCHED_OTHER && nice >= 10);
    assert!(niced, "a disk runtime's background threads are niced, not SCHED_IDLE: {:?}", background_thread_priorities());
    drop(on_disk);
    let in_memory = Runtime::start(one_sync_replica().build()).expect("runtime starts");
    let idle = background_thread_priorities().into_iter().any(|(policy, _)| policy == SCHED_IDLE);
    assert!(idle, "a memory runtime's background threads are SCHED_IDLE");
    drop(in_memory);
}

/// Asserts each (key, value) on the primary and on replica-001 (`None`: the row is absent).
async fn expect_rows(runtime: &RuntimeHandle, rows: &[(&str, Option<i64>)]) {
    for from in [ReadFrom::Primary, ReadFrom::Replica("replica-001".into())] {
        for (key, value) in rows {
            assert_eq!(read(runtime, key, from.clone()).await, value.map(|v| serde_json::json!(v)), "{key} from {from:?}");
        }
    }
}

async fn read(runtime: &RuntimeHandle, key: &str, from: ReadFrom) -> Option<serde_json::Value> {
    runtime
        .primary()
        .send(ReadRow { table: "t".into(), key: key.into(), from })
        .await
        .expect("answers")
        .expect("read")
        .map(|r| r.value)
}

async fn crash_and_restart(runtime: &RuntimeHandle, target: &str) {
    use clusterd::messages::faults::{CrashMode, CrashTarget, RestartTarget};
    runtime.primary().send(CrashTarget { target: target.into(), mode: CrashMode::Crash }).await.expect("answers").expect("crashed");
    runtime.primary().send(RestartTarget { target: target.into() }).await.expect("answers").expect("restarted");
}

#[actix_web::test]
async fn rows_from_checkpoints_and_from_wal_replay_both_survive_a_crash_and_truncation_keeps_what_replay_needs() {
    let runtime = Runtime::start(one_sync_replica().build()).expect("runtime starts");
    let mut last = write(&runtime, OpKind::Insert, "k0", Some(serde_json::json!(0))).await;
    for i in 1..30 {
        last = write(&runtime, OpKind::Insert, &format!("k{i}"), Some(serde_json::json!(i))).await;
    }
    // A truncation checkpoints first: the stored rows reach the flushed lsn, and the WAL before
    // it (nobody else needs it: the sync replica has it all) goes.
    let truncated = runtime.primary().send(TruncateWal).await.expect("answers").expect("truncated");
    assert!(truncated.records_removed > 0, "{truncated:?}");
    let status = wal(&runtime).await;
    let checkpoint = status.retained_by.iter().find(|h| h.kind == "checkpoint").expect("the checkpoint is listed");
    assert_eq!(checkpoint.needs_from_lsn_u64, last.lsn_u64);
    assert_eq!(truncated.oldest_retained_lsn_u64, last.lsn_u64);
    // The replica checkpoints on its own; wait until its stored rows hold all of it.
    let store = runtime.store().clone();
    poll_until("the replica's checkpoint", || {
        let store = store.clone();
        async move { (store.rows_lsn("replica-001").ok()? >= last.lsn_u64).then_some(()) }
    })
    .await;

    // Then changes that only the WAL has (until the next checkpoint), including ones to rows
    // the checkpoint wrote.
    for i in 30..40 {
        write(&runtime, OpKind::Insert, &format!("k{i}"), Some(serde_json::json!(i))).await;
    }
    write(&runtime, OpKind::Update, "k0", Some(serde_json::json!(100))).await;
    let last = write(&runtime, OpKind::Delete, "k1", None).await;
    replayed(&runtime, "replica-001", last.lsn_u64).await;

    crash_and_restart(&runtime, "replica-001").await;
    crash_and_restart(&runtime, "primary").await;
    replayed(&runtime, "replica-001", last.lsn_u64).await;
    expect_rows(&runtime, &[("k0", Some(100)), ("k1", None), ("k2", Some(2)), ("k39", Some(39))]).await;
    // Writes go on from where the log ends.
    let next = write(&runtime, OpKind::Insert, "k1", Some(serde_json::json!(1))).await;
    assert!(next.lsn_u64 > last.lsn_u64);

    // What the restarts replayed was checkpointed too: after another checkpoint, truncation and
    // crash, nothing written before the first crash is missing.
    runtime.primary().send(TruncateWal).await.expect("answers").expect("truncated");
    replayed(&runtime, "replica-001", next.lsn_u64).await;
    poll_until("the replica's checkpoint", || {
        let store = store.clone();
        async move { (store.rows_lsn("replica-001").ok()? >= next.lsn_u64).then_some(()) }
    })
    .await;
    crash_and_restart(&runtime, "replica-001").await;
    crash_and_restart(&runtime, "primary").await;
    replayed(&runtime, "replica-001", next.lsn_u64).await;
    expect_rows(&runtime, &[("k0", Some(100)), ("k1", Some(1)), ("k35", Some(35))]).await;
}

// ---- a replica's unconfirmed tail and the primary's timelines ------------------------------
// (How a replica applies only what its primary confirmed, and drops what an earlier primary
// lost, is tested on its state alone: `src/actors/replication/replica/tests.rs`.)

use clusterd::storage::Store;

#[actix_web::test]
async fn after_a_restart_a_replica_drops_records_its_primary_never_made_durable_and_follows_the_new_log() {
    use clusterd::actors::replication::replica::flush_key;
    use clusterd::storage::LogCommit;
    let dir = tempfile::tempdir().expect("temp dir");
    let c = one_sync_replica().disk(dir.path()).build();

    let end = {
        let runtime = Runtime::start(c.clone()).expect("runtime starts");
        let mut last = write(&runtime, OpKind::Insert, "k0", Some(serde_json::json!(0))).await;
        for i in 1..5 {
            last = write(&runtime, OpKind::Insert, &format!("k{i}"), Some(serde_json::json!(i))).await;
        }
        replayed(&runtime, "replica-001", last.lsn_u64).await;
        runtime.shutdown().await;
        last.lsn_u64
    };
    // What a crash in the middle of a group commit can leave: the records reached the replica's
    // log (shipped as the primary's fsync started) but never the primary's.
    {
        let store = Store::open_dir(dir.path()).expect("store");
        assert_eq!(store.log_bounds("primary").expect("bounds").map(|(_, last, len)| last + len as u64), Some(end));
        let ops = vec![Op { op: OpKind::Insert, table: "t".into(), key: "ghost".into(), value: Some(serde_json::json!(666).into()) }];
        let bytes = serde_json::to_vec(&WalRecord { committed_at_ms: 0, ops }).expect("serializes");
        let ghost_end = end + bytes.len() as u64;
        store
            .commit_log(
                "replica-001",
                LogCommit { records: vec![(end, bytes.into())], meta: vec![(flush_key("replica-001"), ghost_end)], ..Default::default() },
            )
            .expect("the ghost record");
        store.close();
    }

    let runtime = Runtime::start(c).expect("runtime starts again");
    replayed(&runtime, "replica-001", end).await;
    let view = runtime.primary().send(GetReplica { replica_id: "replica-001".into() }).await.expect("answers").expect("view");
    assert_eq!(view.flush_lsn_u64, end, "the replica's log ends where the primary's does: {view:?}");
    assert_eq!(read(&runtime, "ghost", ReadFrom::Replica("replica-001".into())).await, None);
    // The new primary's next record takes the lsn the ghost had; the replica follows it.
    let next = write(&runtime, OpKind::Insert, "real", Some(serde_json::json!(1))).await;
    assert_eq!(next.acknowledged_by, vec!["replica-001".to_string()]);
    assert_eq!(read(&runtime, "real", ReadFrom::Replica("replica-001".into())).await, Some(serde_json::json!(1)));
    assert_eq!(read(&runtime, "ghost", ReadFrom::Replica("replica-001".into())).await, None);
    assert_eq!(read(&runtime, "k4", ReadFrom::Replica("replica-001".into())).await, Some(serde_json::json!(4)));
    runtime.shutdown().await;
}

/// A store task reports the replay it did from its own thread while the actor's heartbeat may be
/// on its way, so reports can cross: the primary never takes a report that is not a restart as
/// moving a replica back (a write waiting for it would otherwise wait again), and a restart
/// report does move it back (a restarted replica is shipped from where it says it is).
#[actix_web::test]
async fn only_a_restart_report_moves_a_replicas_positions_back() {
    let runtime = Runtime::start(one_sync_replica().build()).expect("runtime starts");
    let ack = write(&runtime, OpKind::Insert, "a", Some(serde_json::json!(1))).await;
    replayed(&runtime, "replica-001", ack.lsn_u64).await;
    let view = || async { runtime.primary().send(GetReplica { replica_id: "replica-001".into() }).await.expect("answers").expect("known") };
    // The runtime's only replica actor is its first, incarnation 1. A report from nowhere:
    // everything at zero, as a heartbeat sent before the replica applied anything.
    let stale = |restarted: bool| ReplicaReport {
        replica_id: "replica-001".into(),
        positions: ReplicaPositions { write_lsn: 0, flush_lsn: 0, replay_lsn: 0 },
        kind: if restarted { ReportKind::Restarted } else { ReportKind::Progress },
        incarnation: 1,
        timeline: 0,
    };
    runtime.primary().send(stale(false)).await.expect("handled");
    let v = view().await;
    assert_eq!((v.write_lsn_u64, v.flush_lsn_u64, v.replay_lsn_u64), (ack.lsn_u64, ack.lsn_u64, ack.lsn_u64), "a crossing report moves nothing back");
    runtime.primary().send(stale(true)).await.expect("handled");
    assert_eq!(view().await.replay_lsn_u64, 0, "a restart report is taken as it is (so the one above was heard, not ignored)");
    // The replica's own next report puts it back where it is, and writes are acknowledged again.
    replayed(&runtime, "replica-001", ack.lsn_u64).await;
    let next = write(&runtime, OpKind::Insert, "b", Some(serde_json::json!(2))).await;
    assert_eq!(next.acknowledged_by, vec!["replica-001".to_string()]);
    runtime.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Over REST and GraphQL.

#[actix_web::test]
async fn rows_positions_and_replicas_survive_a_restart_on_disk() {
    const N: usize = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = TestConfig::replication().mode(ReplicationMode::Sync).disk(dir.path()).build();

    // First life: a replica added at run time, N rows (one updated, one deleted), every replica
    // caught up.
    let old_lsn = {
        let (runtime, api) = start_in_sync(config.clone()).await;
        api.post("/api/v1/replication/replicas", json!({"replica_id": "replica-003", "mode": "async"})).await.expect(201);
        for i in 0..N {
            let ack = api.insert("kv", &format!("k{i:02}"), json!({"i": i})).await;
            assert!(acked_by(&ack).contains(&"replica-001".to_string()));
        }
        api.write(json!([{"op": "update", "table": "kv", "key": "k00", "value": {"i": "updated"}}])).await.expect(200);
        api.write(json!([{"op": "delete", "table": "kv", "key": "k01"}])).await.expect(200);
        let lsn = api.wait_caught_up(&["replica-001", "replica-002", "replica-003"]).await;
        runtime.shutdown().await;
        lsn
    };

    // Second life on the same directory. Heartbeats every millisecond: a replica's restart
    // announcement waits for its kept tail to be applied (a sync replica always keeps one, the
    // last commit's, which the primary confirmed only after the replica stored it), and a
    // heartbeat must not send it early (it did: the first change was then catching_up).
    config.replication.heartbeat_interval_ms = 1;
    let (runtime, api) = common::api::start(config.clone()).await;
    // Every replica comes back in sync straight away: its first status change goes from starting
    // to in_sync at the old position, so it resumed from its own flushed position (one that
    // restarted from zero would go through catching_up at 0/0 first).
    let first = wait_in_sync(&runtime, &["replica-001", "replica-002", "replica-003"]).await;
    let changes = retained(&runtime, EventFilter { since_seq: Some(0), ..only_types(&[EventType::ReplicaStatusChange]) }).await;
    for id in ["replica-001", "replica-002", "replica-003"] {
        let firsts: Vec<&ReplicaStatusChange> =
            changes.iter().filter_map(|e| status_change(e)).filter(|p| p.replica_id == id).collect();
        let p = firsts.first().unwrap_or_else(|| panic!("{id} published a status change"));
        assert_eq!((p.old_status.as_str(), p.new_status.as_str()), ("starting", "in_sync"), "{id}: {p:?}");
        assert_eq!(p.metadata.get("wal_position"), Some(&lsn_text(old_lsn)), "{id}: {p:?}");
        assert!(first.contains_key(id));
    }
    // Restarting is not adding: no replica_added in the second life.
    let added = retained(&runtime, EventFilter { since_seq: Some(0), ..only_types(&[EventType::ReplicaAdded]) }).await;
    assert!(added.is_empty(), "replicas restored from disk are not announced as added: {:?}", added.iter().map(|e| e.json()).collect::<Vec<_>>());

    // The primary's position is where it was, and each replica has flushed exactly that.
    let s = api.status().await;
    assert_eq!(s["current_lsn_u64"], old_lsn, "{s}");
    assert_eq!(ids_of(&s["replicas"]), vec!["replica-001", "replica-002", "replica-003"], "the added replica survived");
    for r in s["replicas"].as_array().unwrap() {
        assert_eq!(r["flush_lsn_u64"], old_lsn, "{r}");
    }
    assert_eq!(api.replica("replica-003").await["mode"], "async");

    // Every row is where it was, with the update and the delete.
    for from in ["primary", "replica-001", "replica-002", "replica-003"] {
        assert_eq!(api.value_at("kv", "k00", from).await, json!({"i": "updated"}), "{from}");
        api.read("kv", "k01", from).await.expect_error(404, "row_not_found");
        for i in 2..N {
            assert_eq!(api.value_at("kv", &format!("k{i:02}"), from).await, json!({"i": i}), "{from}");
        }
    }

    // A new write continues the log past the old end, and reaches the sync replica.
    let ack = api.insert("kv", "new", json!("after restart")).await;
    assert!(ack["lsn_u64"].as_u64().unwrap() > old_lsn, "{ack} after {old_lsn}");
    assert!(acked_by(&ack).contains(&"replica-001".to_string()), "{ack}");
    assert_eq!(api.value_at("kv", "new", "replica-001").await, json!("after restart"));
    runtime.shutdown().await;
}

#[actix_web::test]
async fn slots_are_queryable_and_a_logical_slot_shows_what_was_written_after_it() {
    let server = Server::start(TestConfig::memory().mode(ReplicationMode::Async).heartbeat_ms(50, 3000).build());
    let runtime = &server.runtime;
    runtime
        .primary()
        .send(clusterd::messages::replication::CreateSlot {
            slot_name: "cdc".into(),
            slot_type: clusterd::model::SlotType::Logical,
        })
        .await
        .expect("answers")
        .expect("slot created");
    let r = server
        .query(r#"mutation { replicate(ops: [{op: INSERT, table: "t", key: "a", value: {x: 1}}]) { lsnU64 } }"#)
        .await;
    let written = r["data"]["replicate"]["lsnU64"].as_u64().unwrap_or_else(|| panic!("{r}"));

    let r = server
        .query(r#"{ slots { slotName slotType retainedBytes } slot(name: "cdc") { confirmedFlushLsnU64 } none: slot(name: "nope") { slotName } slotChanges(name: "cdc") { changes { op table key value } nextLsnU64 } }"#)
        .await;
    assert_eq!(r["data"]["slots"][0]["slotName"], "cdc", "{r}");
    assert_eq!(r["data"]["slots"][0]["slotType"], "LOGICAL");
    assert_eq!(r["data"]["slots"][0]["retainedBytes"], written);
    assert_eq!(r["data"]["slot"]["confirmedFlushLsnU64"], 0);
    assert!(r["data"]["none"].is_null());
    let changes = &r["data"]["slotChanges"];
    assert_eq!(changes["changes"][0]["op"], "INSERT");
    assert_eq!(changes["changes"][0]["key"], "a");
    assert_eq!(changes["changes"][0]["value"]["x"], 1);
    assert_eq!(changes["nextLsnU64"], written);

    let r = server.query(r#"{ slotChanges(name: "nope") { nextLsn } }"#).await;
    assert_eq!(error_code(&r), "slot_not_found", "{r}");
}
