//! `GET /metrics` as a Prometheus server and its users read it: valid text format (checked by
//! `promtool check metrics` when it is installed, and by a parser here always), the process
//! series, request durations by route template, replication commit latency by mode, and node
//! series that do not churn: `node_up` per node, its status as an info-style series, a crashed
//! node still there at 0.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use common::api::{metric, start, Api};
use common::replication::start_in_sync;
use common::*;

/// Checks the text against the exposition format: `# HELP` and `# TYPE` once per family, before
/// its samples; every sample `name{labels} value` of a declared family; histogram buckets
/// cumulative and ending at `+Inf` equal to `_count`. And, when `promtool` is installed, that
/// `promtool check metrics` finds nothing.
fn check_exposition(text: &str) {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut buckets: HashMap<String, f64> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line: {line}"));
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "TYPE twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "stray line: {line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap_or(series);
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|base| types.get(*base).is_some_and(|k| k == "histogram"))
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        if family != name && name.ends_with("_bucket") {
            // The row is the series without `le`.
            let row = series.split(",le=").next().unwrap_or(series).replace("{le=", "{");
            let previous = buckets.insert(row.clone(), value).unwrap_or(0.0);
            assert!(value >= previous, "buckets not cumulative: {line}");
            if series.contains("le=\"+Inf\"") {
                let count = row.replacen("_bucket", "_count", 1);
                let count = if count.ends_with('{') { count.trim_end_matches('{').to_string() } else { format!("{count}}}") };
                assert_eq!(metric(text, &count), Some(value), "+Inf bucket equals {count}");
                buckets.remove(&row);
            }
        }
    }
    assert!(buckets.is_empty(), "histograms without +Inf: {buckets:?}");

    let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: the format was checked by the parser only");
        return;
    };
    promtool.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool runs");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n{text}");
}

/// `http_request_duration_seconds_count` of one row.
fn requests(text: &str, method: &str, route: &str, status: &str) -> Option<f64> {
    let series = format!(r#"http_request_duration_seconds_count{{method="{method}",route="{route}",status="{status}"}}"#);
    metric(text, &series)
}

async fn scrape(api: &Api) -> String {
    let text = api.metrics().await;
    check_exposition(&text);
    text
}

#[actix_web::test]
async fn request_durations_are_counted_by_route_template() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet().build()).await;
    api.get("/api/v1/cluster/nodes/node-1").await.expect(200);
    api.get("/api/v1/cluster/nodes/node-2").await.expect(200);
    api.get("/api/v1/cluster/nodes/node-404").await.expect_error(404, "node_not_found");
    api.get("/no/such/path/123").await.expect_error(404, "route_not_found");
    api.get("/api/v1/cluster/status").await.expect(200);

    let text = scrape(&api).await;
    let by_id = "/api/v1/cluster/nodes/{id}";
    assert_eq!(requests(&text, "GET", by_id, "2xx"), Some(2.0), "{text}");
    assert_eq!(requests(&text, "GET", by_id, "4xx"), Some(1.0), "{text}");
    assert_eq!(requests(&text, "GET", "/api/v1/cluster/status", "2xx"), Some(1.0), "{text}");
    assert_eq!(requests(&text, "GET", "unmatched", "4xx"), Some(1.0), "{text}");
    let bucket = format!(r#"http_request_duration_seconds_bucket{{method="GET",route="{by_id}",status="2xx",le="+Inf"}}"#);
    assert_eq!(metric(&text, &bucket), Some(2.0), "{text}");
    let sum = format!(r#"http_request_duration_seconds_sum{{method="GET",route="{by_id}",status="2xx"}}"#);
    assert!(metric(&text, &sum).is_some_and(|s| s > 0.0), "measured durations: {text}");
    let routes: Vec<&str> = text.lines().filter_map(|l| l.split("route=\"").nth(1)).collect();
    for raw in ["node-1", "node-404", "/no/such/path/123"] {
        assert!(!routes.iter().any(|r| r.contains(raw)), "raw path {raw} in a route label:\n{text}");
    }
}

#[actix_web::test]
async fn process_series_are_measured() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet().build()).await;
    let text = scrape(&api).await;
    let value = |name: &str| metric(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
    assert!(value("process_cpu_seconds_total") > 0.0);
    let resident = value("process_resident_memory_bytes");
    assert!(resident > 1_048_576.0, "resident {resident}");
    assert!(value("process_virtual_memory_bytes") >= resident);
    let (open, max) = (value("process_open_fds"), value("process_max_fds"));
    assert!(open >= 3.0 && open <= max, "open {open}, max {max}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    let started = value("process_start_time_seconds");
    assert!(started <= now + 1.0 && started > now - 3600.0, "started {started}, now {now}");

    // Read at scrape time: CPU spent in between shows.
    let busy_until = std::time::Instant::now() + std::time::Duration::from_millis(30);
    while std::time::Instant::now() < busy_until {
        std::hint::black_box(0u64);
    }
    let later = scrape(&api).await;
    assert!(metric(&later, "process_cpu_seconds_total") > metric(&text, "process_cpu_seconds_total"));
}

#[actix_web::test]
async fn node_series_keep_their_labels_and_a_crashed_node_shows_zero() {
    let (runtime, api) = start(TestConfig::memory().without_replicas().quiet().build()).await;
    let text = scrape(&api).await;
    let statuses = ["healthy", "degraded", "unreachable", "failed"];
    for node in ["node-1", "node-2", "node-3"] {
        assert_eq!(metric(&text, &format!(r#"clusterd_cluster_node_up{{node_id="{node}"}}"#)), Some(1.0), "{text}");
        for status in statuses {
            let info = format!(r#"clusterd_cluster_node_status{{node_id="{node}",status="{status}"}}"#);
            assert_eq!(metric(&text, &info), Some(f64::from(u8::from(status == "healthy"))), "{info}:\n{text}");
        }
    }
    assert!(
        !text.lines().any(|l| l.starts_with("clusterd_cluster_node_up{") && l.contains("status=")),
        "node_up carries no status label:\n{text}"
    );

    api.post("/api/v1/cluster/faults/crash", json!({ "target": "node-2" })).await.expect(200);
    crash_seen(&runtime).await;
    let text = scrape(&api).await;
    assert_eq!(metric(&text, r#"clusterd_cluster_node_up{node_id="node-2"}"#), Some(0.0), "{text}");
    for status in statuses {
        let info = format!(r#"clusterd_cluster_node_status{{node_id="node-2",status="{status}"}}"#);
        assert_eq!(metric(&text, &info), Some(f64::from(u8::from(status == "failed"))), "{info}:\n{text}");
    }
    assert_eq!(metric(&text, r#"clusterd_cluster_node_up{node_id="node-1"}"#), Some(1.0), "{text}");
}

/// Waits until membership reports node-2 failed.
async fn crash_seen(runtime: &clusterd::RuntimeHandle) {
    poll_until("node-2 to be reported failed", || async {
        let node = get_node(runtime, "node-2").await.ok()?;
        (node.status == clusterd::model::NodeHealth::Failed).then_some(())
    })
    .await
}

#[actix_web::test]
async fn commit_latency_counts_acknowledged_writes_by_mode() {
    let (_runtime, api) = start_in_sync(TestConfig::replication().build()).await;
    let series = |suffix: &str| format!(r#"clusterd_replication_commit_latency_seconds_{suffix}{{mode="semi_sync"}}"#);
    let before = scrape(&api).await;
    let count_before = metric(&before, &series("count")).unwrap_or_else(|| panic!("latency histogram missing:\n{before}"));
    for key in ["a", "b", "c"] {
        api.insert("t", key, json!({ "v": key })).await;
    }
    let after = scrape(&api).await;
    assert_eq!(metric(&after, &series("count")), Some(count_before + 3.0), "{after}");
    assert!(
        metric(&after, &series("sum")) > metric(&before, &series("sum")),
        "measured latencies:\n{after}"
    );
    for mode in ["sync", "async"] {
        let other = format!(r#"clusterd_replication_commit_latency_seconds_count{{mode="{mode}"}}"#);
        assert_eq!(metric(&after, &other), Some(0.0), "every mode has its series: {after}");
    }
}

#[actix_web::test]
async fn each_write_is_timed_stage_by_stage() {
    let (_runtime, api) = start_in_sync(TestConfig::replication().build()).await;
    let series = |stage: &str, suffix: &str| format!(r#"clusterd_replication_write_stage_seconds_{suffix}{{stage="{stage}"}}"#);
    let before = scrape(&api).await;
    for key in ["a", "b", "c"] {
        api.insert("t", key, json!({ "v": key })).await;
    }
    let after = scrape(&api).await;
    for stage in ["queued", "primary_commit", "replicas"] {
        let count = |text: &str| metric(text, &series(stage, "count")).unwrap_or_else(|| panic!("no {stage} stage:\n{text}"));
        assert_eq!(count(&after), count(&before) + 3.0, "one observation per write in {stage}:\n{after}");
    }
    // Every write waited for a replica's commit, and the primary's commit took time.
    let replica_commits = |text: &str| metric(text, &series("replica_commit", "count")).unwrap_or(0.0);
    assert!(replica_commits(&after) > replica_commits(&before), "{after}");
    assert!(metric(&after, &series("primary_commit", "sum")) > metric(&before, &series("primary_commit", "sum")), "{after}");
}
