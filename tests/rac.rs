//! RAC's Cache Fusion as a client sees it, over HTTP and the RAC WebSocket stream on a real
//! socket: a block written on one instance and read on another comes 2-way or 3-way with the
//! written bytes and is counted; a stream filtered to one instance sees its transfers and nothing
//! of the others'; concurrent writers on every instance leave every read at the latest
//! acknowledged version; what was acknowledged survives a restart of the whole runtime, and a
//! crash of an instance (recovered by the survivors, with its events) or its eviction when the
//! others cannot hear it; a block hammered from one instance is remastered to it, by hand and to
//! balance the load too; bad input changes nothing.

mod common;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use common::server::Server;
use common::*;

impl Server {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        // Longer than the server's own 5 s wait for an operation, so its 504 is what comes back.
        let client = awc::Client::builder().timeout(std::time::Duration::from_secs(9)).finish();
        let req = match method {
            "GET" => client.get(self.url("http", path)),
            _ => client.post(self.url("http", path)),
        };
        let mut res = match body {
            Some(b) => within(path, req.send_json(&b)).await,
            None => within(path, req.send()).await,
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let bytes = within("the body", res.body()).await.expect("a body");
        (res.status().as_u16(), serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn write(&self, instance: &str, block: &str, data: &str) -> Value {
        let (status, body) = self.call("POST", &format!("/api/v1/rac/blocks/{block}/write"), Some(json!({ "instance_id": instance, "data": data }))).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn read(&self, instance: &str, block: &str) -> Value {
        let (status, body) = self.call("POST", &format!("/api/v1/rac/blocks/{block}/read"), Some(json!({ "instance_id": instance }))).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn stats(&self, instance: &str) -> Value {
        let (_, body) = self.call("GET", "/api/v1/rac/cache-fusion/statistics", None).await;
        body["instances"].as_array().and_then(|a| a.iter().find(|i| i["instance_id"] == instance).cloned()).expect("the instance's statistics")
    }
}

async fn next_event(ws: &mut common::server::WsConn) -> Value {
    loop {
        let v = ws.json().await;
        if v["type"] == "event" {
            return v;
        }
    }
}

#[actix_rt::test]
async fn a_block_written_on_one_instance_is_shipped_to_another_and_its_stream_sees_only_its_own() {
    let server = Server::start(TestConfig::memory().quiet().build());
    let mut ws = server.upgrade("/api/v1/ws/cluster/rac?instance_ids=instance-2", None, None).await.expect("upgrade");
    let welcome = ws.json().await;
    assert_eq!(welcome["type"], "welcome");

    // Traffic of instances 3 and 4 alone, which the stream must not show.
    server.write("instance-3", "1:7", "three").await;
    server.read("instance-4", "1:7").await;

    let written = server.write("instance-1", "1:42", "hello from instance-1").await;
    assert_eq!(written["data_version"].as_u64().map(|v| v > 0), Some(true));
    let read = server.read("instance-2", "1:42").await;
    assert_eq!(read["data"], "hello from instance-1");
    assert_eq!(read["data_version"], written["data_version"]);
    assert_eq!(read["source_instance"], "instance-1");
    let kind = read["transfer_kind"].as_str().expect("a kind").to_string();
    assert!(kind == "2-way" || kind == "3-way", "{read}");
    let stats = server.stats("instance-2").await;
    assert_eq!(stats["cr_block"], 1, "{stats}");
    assert_eq!(stats[if kind == "2-way" { "cr_2hop" } else { "cr_3hop" }], 1, "{stats}");
    assert!(stats["receive_micros_avg"].as_f64().is_some_and(|m| m > 0.0), "{stats}");
    assert_eq!(server.stats("instance-1").await["blocks_served"], 1);

    // The stream: instance-2's lock and transfer, none of the traffic on 1:7.
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &Value| e["event_type"] == "block_transfer") {
        let e = next_event(&mut ws).await;
        assert_eq!(e["payload"]["resource_id"].as_str().or(e["payload"]["block_id"].as_str()), Some("1:42"), "only instance-2's traffic: {e}");
        seen.push(e);
    }
    let transfer = seen.last().cloned().expect("a transfer");
    assert_eq!(transfer["payload"]["target_instance"], "instance-2");
    assert_eq!(transfer["payload"]["source_instance"], "instance-1");
    assert_eq!(transfer["payload"]["transfer_kind"], kind.as_str());
    assert_eq!(transfer["payload"]["block_mode"], "shared");

    // The GRD: both hold it shared now, mastered where the ring says.
    let (_, resource) = server.call("GET", "/api/v1/rac/grd/resources/1:42", None).await;
    let holders: Vec<(&str, &str)> =
        resource["holders"].as_array().expect("holders").iter().map(|h| (h["instance_id"].as_str().unwrap_or(""), h["lock_mode"].as_str().unwrap_or(""))).collect();
    assert_eq!(holders, vec![("instance-1", "shared"), ("instance-2", "shared")], "{resource}");
}

#[actix_rt::test]
async fn concurrent_writers_on_every_instance_leave_every_read_at_the_latest_acknowledged_write() {
    let server = Server::start(TestConfig::memory().quiet().build());
    let blocks = ["1:1", "1:2", "1:3"];
    let instances = ["instance-1", "instance-2", "instance-3", "instance-4"];
    // Each instance writes its own sequence to every block, all at once, reading between writes.
    let mut tasks = Vec::new();
    for (i, instance) in instances.iter().enumerate() {
        for block in blocks {
            let server = &server;
            tasks.push(async move {
                let mut last_seen = 0u64;
                for n in 0..15 {
                    let w = server.write(instance, block, &format!("{instance} #{n}")).await;
                    let version = w["data_version"].as_u64().expect("a version");
                    assert!(version > last_seen, "a write's version is past every version this client saw");
                    let r = server.read(instances[(i + 1) % 4], block).await;
                    let read_version = r["data_version"].as_u64().expect("a version");
                    assert!(read_version >= version, "a read after an acknowledged write sees it or a later one: {r} after {w}");
                    last_seen = read_version;
                }
            });
        }
    }
    futures_util::future::join_all(tasks).await;
    // Quiet now: every instance reads the same, latest version of each block.
    for block in blocks {
        let mut seen = BTreeMap::new();
        for instance in instances {
            let r = server.read(instance, block).await;
            seen.insert(r["data_version"].as_u64(), r["data"].clone());
        }
        assert_eq!(seen.len(), 1, "{block}: every instance reads one version: {seen:?}");
        // One exclusive holder at most, ever; quiet and all read: all shared.
        let (_, resource) = server.call("GET", &format!("/api/v1/rac/grd/resources/{block}"), None).await;
        assert!(resource["holders"].as_array().expect("holders").iter().all(|h| h["lock_mode"] == "shared"), "{resource}");
    }
}

#[actix_rt::test]
async fn acknowledged_writes_survive_a_restart_and_bad_input_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let server = Server::start(TestConfig::memory().quiet().disk(dir.path()).build());
        server.write("instance-1", "1:5", "first").await;
        server.write("instance-2", "1:5", "second").await;
        server.write("instance-3", "1:6", "only in redo").await;

        for (path, body, status, code) in [
            ("/api/v1/rac/blocks/1:5/write", json!({ "instance_id": "instance-9", "data": "x" }), 404, "instance_not_found"),
            ("/api/v1/rac/blocks/2:5/write", json!({ "instance_id": "instance-1", "data": "x" }), 404, "block_not_found"),
            ("/api/v1/rac/blocks/1:99999999/read", json!({ "instance_id": "instance-1" }), 404, "block_not_found"),
            ("/api/v1/rac/blocks/nope/read", json!({ "instance_id": "instance-1" }), 404, "block_not_found"),
            ("/api/v1/rac/blocks/1:5/write", json!({ "instance_id": "instance-1", "data": "x".repeat(8193) }), 400, "invalid_field"),
            ("/api/v1/rac/blocks/1:5/write", json!({ "instance_id": "instance-1", "data": 5 }), 400, "invalid_json"),
            ("/api/v1/rac/locks/1:5/convert", json!({ "instance_id": "instance-1", "to": "sideways" }), 400, "invalid_json"),
        ] {
            let (got, body) = server.call("POST", path, Some(body)).await;
            assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{path}: {body}");
        }
        let read = server.read("instance-4", "1:5").await;
        assert_eq!(read["data"], "second", "the refused writes changed nothing");
        // Released with its change not on disk: written back first.
        let (status, released) = server.call("POST", "/api/v1/rac/locks/1:5/release", Some(json!({ "instance_id": "instance-2" }))).await;
        assert_eq!((status, &released["lock_type"]), (200, &json!("null")), "{released}");
        server.runtime.shutdown().await;
    }
    // A new runtime on the same directory: caches empty, the store and the redo hold it all.
    let server = Server::start(TestConfig::memory().quiet().disk(dir.path()).build());
    assert_eq!(server.read("instance-1", "1:5").await["data"], "second");
    let read = server.read("instance-2", "1:6").await;
    assert_eq!((read["data"].as_str(), read["transfer_kind"].as_str()), (Some("only in redo"), Some("disk")));
}

#[actix_rt::test]
async fn a_cache_smaller_than_what_is_written_writes_back_what_it_evicts_and_loses_nothing() {
    let server = Server::start(TestConfig::memory().quiet().with(|c| c.rac.cache_blocks = 3).build());
    for b in 0..12 {
        server.write("instance-1", &format!("1:{b}"), &format!("value {b}")).await;
    }
    let (_, status) = server.call("GET", "/api/v1/rac/status", None).await;
    let one = status["instances"].as_array().and_then(|a| a.iter().find(|i| i["instance_id"] == "instance-1").cloned()).expect("instance-1");
    assert!(one["cached_blocks"].as_u64().is_some_and(|n| n <= 4), "evicted down to its capacity (one eviction may be under way): {one}");
    assert!(server.stats("instance-1").await["disk_writes"].as_u64().is_some_and(|n| n >= 8), "what it evicted was written back");
    for b in 0..12 {
        assert_eq!(server.read("instance-2", &format!("1:{b}")).await["data"], format!("value {b}"), "block 1:{b}");
    }
}

#[actix_rt::test]
async fn graphql_reads_writes_and_streams_transfers_and_locks_of_one_instance_and_one_block() {
    let server = Server::start(TestConfig::memory().quiet().build());
    let mut ws = server.ws("/graphql/ws", "graphql-transport-ws").await;
    ws.init(json!({})).await;
    ws.subscribe("t", r#"subscription { cacheFusionEvents(instanceId: "instance-3") { blockId sourceInstance targetInstance blockMode transferKind dataVersion seq } }"#).await;
    ws.subscribe("l", r#"subscription { resourceLockEvents(resourceId: "1:9") { eventType resourceId instanceId lockType previousLockType } }"#).await;
    server.wait_subscribed("cacheFusionEvents").await;
    server.wait_subscribed("resourceLockEvents").await;

    // Other traffic first: another block, another instance.
    server.write("instance-4", "1:8", "not watched").await;
    let written = server.query(r#"mutation { writeBlock(instanceId: "instance-1", blockId: "1:9", data: "via graphql") { dataVersion transferKind } }"#).await;
    let version = written["data"]["writeBlock"]["dataVersion"].as_u64().expect("a version");
    let read = server.query(r#"mutation { readBlock(instanceId: "instance-3", blockId: "1:9") { data dataVersion sourceInstance transferKind } }"#).await;
    assert_eq!(read["data"]["readBlock"]["data"], "via graphql", "{read}");
    assert_eq!(read["data"]["readBlock"]["dataVersion"].as_u64(), Some(version));

    // Three frames, the two subscriptions' interleaved as they come.
    let (mut transfers, mut locks) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let msg = ws.json().await;
        assert!(msg["type"] == "next" && msg["payload"].get("errors").is_none(), "{msg}");
        match msg["id"].as_str() {
            Some("t") => transfers.push(msg["payload"]["data"]["cacheFusionEvents"].clone()),
            _ => locks.push(msg["payload"]["data"]["resourceLockEvents"].clone()),
        }
    }
    assert_eq!((transfers.len(), locks.len()), (1, 2), "{transfers:?} {locks:?}");
    let transfer = transfers[0].clone();
    assert_eq!((transfer["blockId"].as_str(), transfer["targetInstance"].as_str(), transfer["sourceInstance"].as_str()), (Some("1:9"), Some("instance-3"), Some("instance-1")), "{transfer}");
    assert_eq!(transfer["blockMode"], "SHARED");
    assert!(transfer["transferKind"] == "TWO_WAY" || transfer["transferKind"] == "THREE_WAY", "{transfer}");
    // 1:9's locks in order: instance-1 exclusive, then instance-3 shared (instance-1 down to shared).
    let first = locks[0].clone();
    assert_eq!((first["eventType"].as_str(), first["instanceId"].as_str(), first["lockType"].as_str()), (Some("lock_granted"), Some("instance-1"), Some("EXCLUSIVE")), "{first}");
    let second = locks[1].clone();
    assert_eq!((second["instanceId"].as_str(), second["lockType"].as_str()), (Some("instance-3"), Some("SHARED")), "{second}");

    let instances = server.query("{ racInstances { instanceId cachedBlocks statistics { crBlock blocksServed } } }").await;
    let three = instances["data"]["racInstances"].as_array().and_then(|a| a.iter().find(|i| i["instanceId"] == "instance-3").cloned()).expect("instance-3");
    assert_eq!(three["statistics"]["crBlock"], 1, "{three}");
    let entry = server.query(r#"{ grdResource(resourceId: "1:9") { master holders { instanceId lockMode } } }"#).await;
    assert_eq!(entry["data"]["grdResource"]["holders"].as_array().map(Vec::len), Some(2), "{entry}");
    let bad = server.query(r#"mutation { readBlock(instanceId: "instance-7", blockId: "1:9") { data } }"#).await;
    assert_eq!(common::graphql::error_code(&bad), "instance_not_found", "{bad}");
}

#[actix_rt::test]
async fn a_partition_shows_on_the_interconnect_stalls_what_crosses_it_and_heals() {
    let server = Server::start(TestConfig::memory().quiet().build());
    let unreachable = |v: &Value| v["unreachable"].as_array().map(|a| a.len()).unwrap_or(0);
    // Every pair answers its heartbeats first.
    poll_until("every pair's heartbeats answered", || async {
        let (_, v) = server.call("GET", "/api/v1/rac/interconnect", None).await;
        let links = v["links"].as_array().cloned().unwrap_or_default();
        (links.len() == 12 && links.iter().all(|l| l["status"] == "up" && l["heartbeats_answered"].as_u64() > Some(0))).then_some(v)
    })
    .await;
    // A block mastered by instance-2, then instance-1 and instance-2 cut off from each other
    // (each still reaches the others: neither is evicted).
    let mut block = None;
    for b in 0..64 {
        let (_, r) = server.call("GET", &format!("/api/v1/rac/grd/resources/1:{b}"), None).await;
        if r["master"] == "instance-2" {
            block = Some(format!("1:{b}"));
            break;
        }
    }
    let block = block.expect("a block mastered by instance-2");
    let groups = json!({ "groups": [["instance-1"], ["instance-2"]] });
    let (status, body) = server.call("POST", "/api/v1/cluster/faults/partition", Some(groups)).await;
    assert_eq!(status, 200, "{body}");
    let cut = poll_until("the pair's links unreachable", || async {
        let (_, v) = server.call("GET", "/api/v1/rac/interconnect", None).await;
        (unreachable(&v) == 2).then_some(v)
    })
    .await;
    let pairs = cut["unreachable"].as_array().expect("pairs").clone();
    assert!(pairs.iter().all(|p| (p[0] == "instance-1" && p[1] == "instance-2") || (p[0] == "instance-2" && p[1] == "instance-1")), "{cut}");
    // What instance-1 asks of instance-2's master cannot get through: 504, the outcome unknown (the
    // write stays queued, its request sent again and counted lost).
    let (status, body) = server.call("POST", &format!("/api/v1/rac/blocks/{block}/write"), Some(json!({ "instance_id": "instance-1", "data": "cut off" }))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (504, Some("timed_out")), "{body}");
    assert!(server.stats("instance-1").await["lost"].as_u64() > Some(0), "its request was sent again, and counted lost");

    let (status, _) = server.call("POST", "/api/v1/cluster/faults/heal", Some(json!({}))).await;
    assert_eq!(status, 200);
    poll_until("every link up again", || async {
        let (_, v) = server.call("GET", "/api/v1/rac/interconnect", None).await;
        (unreachable(&v) == 0).then_some(v)
    })
    .await;
    // Healed, the queued write lands; a read elsewhere sees it.
    let read = poll_until("the write that waited", || async {
        let r = server.read("instance-2", &block).await;
        (r["data"] == "cut off").then_some(r)
    })
    .await;
    assert_eq!(read["data"], "cut off");
    let (_, recoveries) = server.call("GET", "/api/v1/rac/recovery", None).await;
    assert_eq!(recoveries["recoveries"], json!([]), "nobody was evicted: the others heard both");
}

#[actix_rt::test]
async fn filters_take_the_seed_documents_names_for_rac_events() {
    let server = Server::start(TestConfig::memory().quiet().build());
    let mut ws = server.upgrade("/api/v1/ws/cluster/rac?event_types=cache_fusion_transfer", None, None).await.expect("upgrade");
    assert_eq!(ws.json().await["type"], "welcome");
    let subscribed = ws.json().await;
    assert_eq!(subscribed["filter"]["event_types"], json!(["block_transfer"]), "{subscribed}");
    server.write("instance-1", "1:3", "x").await;
    server.read("instance-2", "1:3").await;
    let e = next_event(&mut ws).await;
    assert_eq!(e["event_type"], "block_transfer", "only the transfer, no lock event: {e}");
}

#[actix_rt::test]
async fn a_parallel_query_over_blocks_written_on_every_instance_counts_and_sums_what_was_written() {
    let server = Server::start(TestConfig::memory().quiet().build());
    let mut ws = server.upgrade("/api/v1/ws/cluster/rac?event_types=parallel_query_started,parallel_query_completed", None, None).await.expect("upgrade");
    assert_eq!(ws.json().await["type"], "welcome");
    // 40 blocks of three rows each, written on all four instances: 120 rows, amounts 0 to 119.
    let (mut eu_sum, mut total) = (0u64, 0u64);
    for b in 0..40u64 {
        let rows: Vec<String> = (0..3)
            .map(|r| {
                let n = b * 3 + r;
                let region = if n % 2 == 0 { "eu" } else { "us" };
                total += n;
                if region == "eu" {
                    eu_sum += n;
                }
                format!("region={region},amount={n}")
            })
            .collect();
        server.write(&format!("instance-{}", b % 4 + 1), &format!("1:{}", 100 + b), &rows.join("\n")).await;
    }
    let body = json!({ "blocks": "1:100-1:139", "aggregate": "count", "dop": 4 });
    let (status, count) = server.call("POST", "/api/v1/rac/parallel-query", Some(body)).await;
    assert_eq!(status, 200, "{count}");
    assert_eq!(count["rows"][0]["value"].as_f64(), Some(120.0), "{count}");
    let parts = count["instances"].as_array().expect("the parts");
    assert_eq!(parts.len(), 4);
    assert_eq!(parts.iter().map(|p| p["blocks_scanned"].as_u64().unwrap_or(0)).sum::<u64>(), 40);
    assert_eq!(parts.iter().map(|p| p["instance_id"].as_str().unwrap_or("")).collect::<std::collections::BTreeSet<_>>().len(), 4, "one instance a part");

    let body = json!({ "blocks": "1:100-1:139", "aggregate": "sum", "column": "amount", "group_by": "region", "dop": 3 });
    let (_, sums) = server.call("POST", "/api/v1/rac/parallel-query", Some(body)).await;
    let by_region: BTreeMap<String, f64> =
        sums["rows"].as_array().expect("rows").iter().map(|r| (r["group"].as_str().unwrap_or("").to_string(), r["value"].as_f64().unwrap_or(-1.0))).collect();
    assert_eq!(by_region.get("eu"), Some(&(eu_sum as f64)), "{sums}");
    assert_eq!(by_region.get("us"), Some(&((total - eu_sum) as f64)), "{sums}");
    let body = json!({ "blocks": "1:100-1:139", "aggregate": "avg", "column": "amount", "filter": { "column": "region", "equals": "eu" }, "dop": 2 });
    let (_, avg) = server.call("POST", "/api/v1/rac/parallel-query", Some(body)).await;
    assert_eq!(avg["rows"][0]["value"].as_f64(), Some(eu_sum as f64 / 60.0), "{avg}");

    // The events of the first query, in order; the statistics add up.
    let started = next_event(&mut ws).await;
    assert_eq!((started["event_type"].as_str(), started["payload"]["query_id"].as_str()), (Some("query_started"), count["query_id"].as_str()), "{started}");
    let completed = next_event(&mut ws).await;
    assert_eq!((completed["event_type"].as_str(), completed["payload"]["rows_processed"].as_u64(), completed["payload"]["success"].as_bool()), (Some("query_completed"), Some(120), Some(true)));
    let (_, stats) = server.call("GET", "/api/v1/rac/parallel-query/statistics", None).await;
    assert_eq!((stats["queries"].as_u64(), stats["rows_processed"].as_u64()), (Some(3), Some(360)), "{stats}");

    for (body, status, code) in [
        (json!({ "blocks": "1:5-1:2", "aggregate": "count" }), 400, "invalid_field"),
        (json!({ "blocks": "1:0-1:9", "aggregate": "sum" }), 400, "invalid_field"),
        (json!({ "blocks": "1:0-1:9", "aggregate": "count", "dop": 0 }), 400, "invalid_field"),
        (json!({ "blocks": "1:0-1:99999999", "aggregate": "count" }), 404, "block_not_found"),
        (json!({ "table": "orders", "aggregate": "count" }), 501, "not_implemented"),
        (json!({ "blocks": "1:0-1:9", "aggregate": "median" }), 400, "invalid_json"),
    ] {
        let (got, answer) = server.call("POST", "/api/v1/rac/parallel-query", Some(body.clone())).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{body}: {answer}");
    }
}

/// The events on a stream, up to the first of type `last`.
async fn events_until(ws: &mut common::server::WsConn, last: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let e = next_event(ws).await;
        let done = e["event_type"] == last;
        seen.push(e);
        if done {
            return seen;
        }
    }
}

#[actix_rt::test]
async fn a_crashed_instance_is_recovered_by_the_survivors_and_every_acknowledged_write_reads_back() {
    let server = Server::start(TestConfig::memory().quiet().build());
    let types = "recovery_started,recovery_progress,recovery_completed,resource_remastered";
    let mut ws = server.upgrade(&format!("/api/v1/ws/cluster/rac?event_types={types}"), None, None).await.expect("upgrade");
    assert_eq!(ws.json().await["type"], "welcome");
    // instance-1 writes blocks: some it keeps exclusive (only in its cache and redo), one it
    // ships to instance-2 and writes again, one instance-3 reads (shared copies elsewhere).
    let mut expected = BTreeMap::new();
    for b in 0..12 {
        let block = format!("1:{b}");
        server.write("instance-1", &block, &format!("first {b}")).await;
        expected.insert(block, format!("first {b}"));
    }
    server.read("instance-2", "1:3").await;
    server.write("instance-1", "1:3", "second 3").await;
    expected.insert("1:3".into(), "second 3".into());
    server.read("instance-3", "1:4").await;
    server.write("instance-2", "1:5", "by instance-2").await;
    expected.insert("1:5".into(), "by instance-2".into());
    server.write("instance-1", "1:5", "by instance-1 after").await;
    expected.insert("1:5".into(), "by instance-1 after".into());

    let (status, crash) = server.call("POST", "/api/v1/cluster/faults/crash", Some(json!({ "target": "instance-1" }))).await;
    assert_eq!((status, crash["status"].as_str()), (200, Some("failed")), "{crash}");
    let (status, down) = server.call("POST", "/api/v1/rac/blocks/1:0/read", Some(json!({ "instance_id": "instance-1" }))).await;
    assert_eq!((status, down["error"]["code"].as_str()), (503, Some("instance_down")), "{down}");
    let (status, again) = server.call("POST", "/api/v1/cluster/faults/crash", Some(json!({ "target": "instance-1" }))).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("already_crashed")), "{again}");

    // The survivors find it silent and recover it: started, its phases, completed.
    let events = events_until(&mut ws, "recovery_completed").await;
    let started = &events[0];
    assert_eq!(started["event_type"], "recovery_started", "{events:?}");
    assert_eq!(started["payload"]["failed_instance"], "instance-1");
    let recovering = started["payload"]["recovering_instance"].as_str().expect("a survivor").to_string();
    assert_ne!(recovering, "instance-1");
    let phases: Vec<&str> = events.iter().filter(|e| e["event_type"] == "recovery_progress").filter_map(|e| e["payload"]["recovery_phase"].as_str()).collect();
    assert_eq!(phases, vec!["freeze", "redo_apply", "rebuild", "resume"], "{events:?}");
    let completed = events.last().expect("completed");
    assert_eq!((completed["payload"]["success"].as_bool(), completed["payload"]["progress_percent"].as_f64()), (Some(true), Some(100.0)), "{completed}");
    assert!(completed["payload"]["redo_records_applied"].as_u64() >= Some(14), "every write of instance-1 was in its redo: {completed}");
    assert!(completed["payload"]["blocks_recovered"].as_u64() >= Some(10), "{completed}");
    for e in events.iter().filter(|e| e["event_type"] == "resource_remastered") {
        assert_eq!((e["payload"]["old_master"].as_str(), e["payload"]["reason"].as_str()), (Some("instance-1"), Some("recovery")), "{e}");
    }
    let (_, list) = server.call("GET", "/api/v1/rac/recovery", None).await;
    let recovery = list["recoveries"][0].clone();
    assert_eq!((recovery["status"].as_str(), recovery["detected_by"].as_str()), (Some("completed"), Some("heartbeat")), "{list}");
    let (status, one) = server.call("GET", &format!("/api/v1/rac/recovery/{}", recovery["recovery_id"].as_str().expect("an id")), None).await;
    assert_eq!((status, &one), (200, &recovery));

    // Every acknowledged write reads back on every survivor; nothing is mastered by the dead.
    for (block, data) in &expected {
        for instance in ["instance-2", "instance-3", "instance-4"] {
            assert_eq!(server.read(instance, block).await["data"], data.as_str(), "{block} at {instance}");
        }
        let (_, r) = server.call("GET", &format!("/api/v1/rac/grd/resources/{block}"), None).await;
        assert_ne!(r["master"], "instance-1", "{r}");
    }
    // Writes go on without it; a parallel query splits over the open instances only.
    server.write("instance-4", "1:3", "after the crash").await;
    let (status, q) = server.call("POST", "/api/v1/rac/parallel-query", Some(json!({ "blocks": "1:0-1:11", "aggregate": "count", "dop": 4 }))).await;
    assert_eq!((status, q["blocks_scanned"].as_u64(), q["rows_processed"].as_u64()), (200, Some(12), Some(12)), "{q}");
    assert!(q["instances"].as_array().expect("parts").iter().all(|w| w["instance_id"] != "instance-1"), "{q}");

    // Restarted: empty, rejoined, mastering its share again, and reading the latest.
    let (status, _) = server.call("POST", "/api/v1/cluster/faults/restart", Some(json!({ "target": "instance-1" }))).await;
    assert_eq!(status, 200);
    poll_until("instance-1 open again", || async {
        let (_, v) = server.call("GET", "/api/v1/rac/instances", None).await;
        v["instances"].as_array().and_then(|a| a.iter().find(|i| i["instance_id"] == "instance-1" && i["status"] == "open").cloned())
    })
    .await;
    assert_eq!(server.read("instance-1", "1:3").await["data"], "after the crash");
    assert_eq!(server.read("instance-1", "1:5").await["data"], "by instance-1 after");
    let (status, _) = server.call("POST", "/api/v1/cluster/faults/restart", Some(json!({ "target": "instance-1" }))).await;
    assert_eq!(status, 409, "not crashed");
    let (status, body) = server.call("POST", "/api/v1/rac/recovery", Some(json!({ "failed_instance": "instance-2" }))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("nothing_to_recover")), "{body}");
    let (status, _) = server.call("GET", "/api/v1/rac/recovery/recovery-99", None).await;
    assert_eq!(status, 404);
}

#[actix_rt::test]
async fn an_instance_nobody_hears_is_evicted_and_its_writes_survive_it() {
    let server = Server::start(TestConfig::memory().quiet().build());
    server.write("instance-4", "1:9", "before the cut").await;
    server.read("instance-1", "1:9").await;
    server.write("instance-4", "1:9", "latest, before the cut").await;
    let groups = json!({ "groups": [["instance-4"], ["instance-1", "instance-2", "instance-3"]] });
    let (status, _) = server.call("POST", "/api/v1/cluster/faults/partition", Some(groups)).await;
    assert_eq!(status, 200);
    let recovery = poll_until("instance-4 evicted and recovered", || async {
        let (_, v) = server.call("GET", "/api/v1/rac/recovery", None).await;
        v["recoveries"].as_array().and_then(|a| a.iter().find(|r| r["failed_instance"] == "instance-4" && r["status"] == "completed").cloned())
    })
    .await;
    assert_eq!(recovery["detected_by"], "heartbeat");
    assert_eq!(server.read("instance-2", "1:9").await["data"], "latest, before the cut");
    let (_, faults) = server.call("GET", "/api/v1/cluster/faults", None).await;
    assert!(faults["faults"].as_array().is_some_and(|f| f.iter().any(|f| f["target"] == "instance-4")), "fenced: down until restarted: {faults}");
    server.call("POST", "/api/v1/cluster/faults/heal", Some(json!({}))).await;
    let (status, _) = server.call("POST", "/api/v1/cluster/faults/restart", Some(json!({ "target": "instance-4" }))).await;
    assert_eq!(status, 200);
    let read = poll_until("instance-4 back", || async {
        let (status, v) = server.call("POST", "/api/v1/rac/blocks/1:9/read", Some(json!({ "instance_id": "instance-4" }))).await;
        (status == 200).then_some(v)
    })
    .await;
    assert_eq!(read["data"], "latest, before the cut");
}

#[actix_rt::test]
async fn a_block_hammered_from_one_instance_is_remastered_to_it_and_mastership_moves_by_hand_and_to_balance() {
    let server = Server::start(TestConfig::memory().quiet().with(|c| c.rac.remaster_window_ms = 300).build());
    let mut ws = server.upgrade("/api/v1/ws/cluster/rac?event_types=resource_remastered", None, None).await.expect("upgrade");
    assert_eq!(ws.json().await["type"], "welcome");
    // A block mastered away from instance-3.
    let mut block = None;
    for b in 0..64 {
        let (_, r) = server.call("GET", &format!("/api/v1/rac/grd/resources/1:{b}"), None).await;
        if r["master"] != "instance-3" {
            block = Some((format!("1:{b}"), r["master"].as_str().expect("a master").to_string()));
            break;
        }
    }
    let (block, home) = block.expect("a block mastered elsewhere");
    server.write("instance-1", &block, "v1").await;
    for n in 0..40 {
        server.read("instance-3", &block).await;
        if n % 10 == 0 {
            server.write("instance-3", &block, &format!("by instance-3 #{n}")).await;
        }
    }
    let moved = next_event(&mut ws).await;
    assert_eq!(moved["payload"]["resource_id"], block.as_str(), "{moved}");
    assert_eq!((moved["payload"]["old_master"].as_str(), moved["payload"]["new_master"].as_str()), (Some(home.as_str()), Some("instance-3")));
    assert_eq!(moved["payload"]["reason"], "affinity");
    let (_, r) = server.call("GET", &format!("/api/v1/rac/grd/resources/{block}"), None).await;
    assert_eq!(r["master"], "instance-3", "{r}");
    // Its later requests are granted by its own master: the data is intact through the move.
    let w = server.write("instance-3", &block, "after the move").await;
    assert_eq!(server.read("instance-2", &block).await["data"], "after the move", "{w}");

    // By hand, then bad input that changes nothing.
    let (status, out) = server.call("POST", "/api/v1/rac/grd/remaster", Some(json!({ "resource_id": block, "to_instance": "instance-4" }))).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["remastered"], json!([{ "resource_id": block, "old_master": "instance-3", "new_master": "instance-4" }]));
    assert_eq!(out["reason"], "manual");
    for (body, code) in [
        (json!({ "to_instance": "instance-1" }), 400),
        (json!({ "resource_id": block, "to_instance": "instance-9" }), 404),
        (json!({ "resource_id": "1:99999999", "to_instance": "instance-1" }), 404),
        (json!({ "resource_id": 42 }), 400),
    ] {
        let (status, e) = server.call("POST", "/api/v1/rac/grd/remaster", Some(body.clone())).await;
        assert_eq!(status, code, "{body}: {e}");
    }
    let (_, r) = server.call("GET", &format!("/api/v1/rac/grd/resources/{block}"), None).await;
    assert_eq!(r["master"], "instance-4", "{r}");
    assert_eq!(server.read("instance-1", &block).await["data"], "after the move");

    // Load balancing: blocks held, their entries spread evenly over the four masters.
    for b in 100..140 {
        server.write("instance-2", &format!("1:{b}"), "x").await;
    }
    let (status, out) = server.call("POST", "/api/v1/rac/grd/load-balance", None).await;
    assert_eq!((status, out["reason"].as_str()), (200, Some("load_balance")), "{out}");
    let (_, v) = server.call("GET", "/api/v1/rac/instances", None).await;
    let load: Vec<u64> = v["instances"].as_array().expect("instances").iter().filter_map(|i| i["mastered_resources"].as_u64()).collect();
    let (min, max) = (load.iter().min().copied().unwrap_or(0), load.iter().max().copied().unwrap_or(0));
    assert!(max - min <= 1, "balanced: {load:?}");
    for b in 100..140 {
        assert_eq!(server.read("instance-1", &format!("1:{b}")).await["data"], "x");
    }
}

#[actix_rt::test]
async fn operations_in_flight_across_remasters_and_a_crash_are_neither_lost_nor_granted_twice() {
    let server = Server::start(TestConfig::memory().quiet().build());
    let blocks = ["1:1", "1:2", "1:3", "1:4"];
    let writers = ["instance-1", "instance-2", "instance-3"];
    // Writers and readers on every block, while the GRD is reconfigured under them: each block
    // remastered by hand to every instance in turn, then balanced, then instance-4 crashed.
    let work = async {
        let mut tasks = Vec::new();
        for instance in writers {
            for block in blocks {
                let server = &server;
                tasks.push(async move {
                    let mut last = 0u64;
                    for n in 0..12 {
                        let w = server.write(instance, block, &format!("{instance} #{n}")).await;
                        let v = w["data_version"].as_u64().expect("a version");
                        assert!(v > last, "{block}: a write of {instance} took {v} after {last}");
                        last = v;
                        let r = server.read(instance, block).await;
                        assert!(r["data_version"].as_u64() >= Some(v), "{block} at {instance}: read {r} after writing {v}");
                    }
                });
            }
        }
        futures_util::future::join_all(tasks).await;
    };
    let reconfigure = async {
        for to in ["instance-1", "instance-2", "instance-3", "instance-4"] {
            for block in blocks {
                let (status, out) = server.call("POST", "/api/v1/rac/grd/remaster", Some(json!({ "resource_id": block, "to_instance": to }))).await;
                assert_eq!(status, 200, "{out}");
            }
        }
        let (status, out) = server.call("POST", "/api/v1/rac/grd/load-balance", None).await;
        assert_eq!(status, 200, "{out}");
        let (status, out) = server.call("POST", "/api/v1/cluster/faults/crash", Some(json!({ "target": "instance-4" }))).await;
        assert_eq!(status, 200, "{out}");
        let (status, out) = server.call("POST", "/api/v1/rac/recovery", Some(json!({ "failed_instance": "instance-4" }))).await;
        assert_eq!(status, 202, "{out}");
    };
    futures_util::future::join(work, reconfigure).await;
    // The last write of each writer on each block: every survivor reads a version at least the
    // newest acknowledged, with the bytes some writer wrote last.
    for block in blocks {
        let reads: Vec<Value> = futures_util::future::join_all(writers.iter().map(|i| server.read(i, block))).await;
        let v = reads[0]["data_version"].clone();
        assert!(reads.iter().all(|r| r["data_version"] == v && r["data"] == reads[0]["data"]), "{block}: {reads:?}");
        assert!(reads[0]["data"].as_str().is_some_and(|d| d.ends_with("#11")), "{block}: {reads:?}");
    }
}

#[actix_rt::test]
async fn two_instances_crashed_at_once_are_both_found_and_recovered() {
    let server = Server::start(TestConfig::memory().quiet().build());
    server.write("instance-2", "1:20", "by instance-2").await;
    server.write("instance-3", "1:21", "by instance-3").await;
    for target in ["instance-2", "instance-3"] {
        let (status, _) = server.call("POST", "/api/v1/cluster/faults/crash", Some(json!({ "target": target }))).await;
        assert_eq!(status, 200);
    }
    let done = poll_until("both recovered", || async {
        let (_, v) = server.call("GET", "/api/v1/rac/recovery", None).await;
        let r = v["recoveries"].as_array().cloned().unwrap_or_default();
        (r.len() == 2 && r.iter().all(|r| r["status"] == "completed")).then_some(r)
    })
    .await;
    assert!(done.iter().all(|r| r["detected_by"] == "heartbeat" || r["detected_by"] == "reconfiguration"), "{done:?}");
    assert_eq!(server.read("instance-4", "1:20").await["data"], "by instance-2");
    assert_eq!(server.read("instance-1", "1:21").await["data"], "by instance-3");
}

#[actix_rt::test]
async fn in_a_two_instance_cluster_a_restarted_instance_rejoins_without_evicting_the_other() {
    let two = TestConfig::memory().quiet().with(|c| c.rac.instances = vec!["instance-1".into(), "instance-2".into()]).build();
    let server = Server::start(two);
    server.write("instance-2", "1:30", "kept").await;
    let (status, _) = server.call("POST", "/api/v1/cluster/faults/crash", Some(json!({ "target": "instance-2" }))).await;
    assert_eq!(status, 200);
    poll_until("instance-2 recovered", || async {
        let (_, v) = server.call("GET", "/api/v1/rac/recovery", None).await;
        v["recoveries"].as_array().and_then(|r| r.iter().find(|r| r["status"] == "completed").cloned())
    })
    .await;
    let (status, _) = server.call("POST", "/api/v1/cluster/faults/restart", Some(json!({ "target": "instance-2" }))).await;
    assert_eq!(status, 200);
    // Both hear each other again; the rejoined instance's silence while down counted for
    // nothing, so nobody was evicted.
    poll_until("both links up, heartbeats answered since the rejoin", || async {
        let (_, v) = server.call("GET", "/api/v1/rac/interconnect", None).await;
        let links = v["links"].as_array().cloned().unwrap_or_default();
        (links.len() == 2 && links.iter().all(|l| l["status"] == "up" && l["last_heard_ms"].as_u64().is_some_and(|ms| ms < 600))).then_some(v)
    })
    .await;
    let (_, v) = server.call("GET", "/api/v1/rac/recovery", None).await;
    assert_eq!(v["recoveries"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(server.read("instance-2", "1:30").await["data"], "kept");
    assert_eq!(server.read("instance-1", "1:30").await["data"], "kept");
}
