//! The OpenAPI document tells the truth about the server that serves it: every path parameter is
//! declared, the routes the contract keeps open need no token, every error the app answers with
//! is documented where it can come, the limits the server checks are in the schema, and a 405
//! says what the path takes. The rest is schemathesis' job (README, "Checking the OpenAPI
//! document"); these are the truths it takes no fuzzer to check.

mod common;

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use common::api::start;
use common::server::Server;
use common::*;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Every (path, method, operation) of a document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                all.push((path.clone(), method.to_string(), op.clone()));
            }
        }
    }
    assert!(all.len() > 80, "the document lists the contract's routes: {}", all.len());
    all
}

/// The document as a server with (or without) a token serves it, fetched with that token.
async fn served(token: Option<&str>) -> Value {
    let config = TestConfig::memory().without_replicas().quiet();
    let config = match token {
        Some(t) => config.token(t),
        None => config,
    };
    let (_runtime, api) = start(config.build()).await;
    match token {
        Some(t) => api.with_token(t).get("/api/v1/openapi.json").await.expect(200),
        None => api.get("/api/v1/openapi.json").await.expect(200),
    }
}

fn is_open(path: &str) -> bool {
    path == "/health" || path.starts_with("/health/") || path == "/metrics"
}

#[actix_web::test]
async fn every_path_parameter_of_every_template_is_declared_and_only_those() {
    let doc = served(None).await;
    for (path, method, op) in operations(&doc) {
        let in_template: BTreeSet<String> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(String::from)
            .collect();
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap_or("").to_string()).collect())
            .unwrap_or_default();
        assert_eq!(declared, in_template, "{method} {path}: declared path parameters");
        for p in op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "path") {
            assert_eq!(p["required"], true, "{method} {path}: path parameter {} is required", p["name"]);
            assert!(p["schema"].is_object(), "{method} {path}: path parameter {} has a schema", p["name"]);
        }
    }
}

#[actix_web::test]
async fn with_a_token_every_route_but_health_and_metrics_requires_it_and_documents_401() {
    let doc = served(Some("s3cret")).await;
    assert!(doc.get("security").is_none(), "no document-wide requirement: {}", doc["security"]);
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for (path, method, op) in operations(&doc) {
        if is_open(&path) {
            assert!(op.get("security").is_none(), "{method} {path} stays open: {}", op["security"]);
            assert!(op["responses"].get("401").is_none(), "{method} {path} never answers 401");
        } else {
            assert_eq!(op["security"], json!([{"bearer": []}]), "{method} {path} needs the token");
            assert!(op["responses"].get("401").is_some(), "{method} {path} documents its 401");
        }
    }
    // Without a token nothing needs one, and nothing says so.
    let doc = served(None).await;
    for (path, method, op) in operations(&doc) {
        assert!(op.get("security").is_none(), "{method} {path}: no token is configured");
        assert!(op["responses"].get("401").is_none(), "{method} {path}: no 401 without a token");
    }
}

#[actix_web::test]
async fn every_error_the_app_answers_with_is_documented_with_the_error_shape() {
    let doc = served(Some("s3cret")).await;
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], json!(["error"]), "{error}");
    let mut bodies = 0;
    for (path, method, op) in operations(&doc) {
        let responses = op["responses"].as_object().expect("responses");
        let not_built = responses.contains_key("501");
        if op.get("requestBody").is_some() && !not_built {
            bodies += 1;
            for status in ["400", "413"] {
                assert!(responses.contains_key(status), "{method} {path} takes a body: documents {status}");
            }
        }
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        if params.iter().any(|p| p["in"] == "query") && !not_built {
            assert!(responses.contains_key("400"), "{method} {path} takes a query: documents 400");
        }
        if params.iter().any(|p| p["in"] == "path") && !not_built {
            assert!(responses.contains_key("404"), "{method} {path} names an id: documents 404");
        }
        for (status, response) in responses {
            if status.as_str() >= "400" {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                    "{method} {path} {status} has the error shape"
                );
            }
        }
    }
    assert!(bodies >= 10, "routes with a body: {bodies}");
    let not_allowed = &doc["components"]["responses"]["MethodNotAllowed"];
    assert!(not_allowed["headers"]["Allow"].is_object(), "a 405 is documented with Allow: {not_allowed}");
}

#[actix_web::test]
async fn the_limits_the_server_checks_are_in_the_schema_and_hold_at_their_edges() {
    let (_runtime, api) = start(TestConfig::memory().replicas(&[("replica-001", clusterd::model::ReplicaMode::Async)]).mode(clusterd::model::ReplicationMode::Async).quiet_with_leader().build()).await;
    let doc = api.get("/api/v1/openapi.json").await.expect(200);
    let schemas = &doc["components"]["schemas"];
    let node_id = &schemas["AddNodeBody"]["properties"]["node_id"];
    assert_eq!((node_id["minLength"].as_u64(), node_id["maxLength"].as_u64()), (Some(1), Some(64)), "{node_id}");
    assert_eq!(node_id["pattern"], "^[A-Za-z0-9._-]+$");
    let ops = &schemas["OperationsBody"]["properties"]["ops"];
    assert_eq!((ops["minItems"].as_u64(), ops["maxItems"].as_u64()), (Some(1), Some(10_000)), "{ops}");
    let heartbeat = &schemas["HeartbeatBody"]["properties"];
    assert_eq!(heartbeat["interval_ms"]["minimum"], 1, "{heartbeat}");
    let events = doc["paths"]["/api/v1/events"]["get"]["parameters"].as_array().expect("parameters").clone();
    let limit = events.iter().find(|p| p["name"] == "limit").expect("limit");
    assert_eq!((limit["schema"]["minimum"].as_u64(), limit["schema"]["maximum"].as_u64()), (Some(1), Some(10_000)));
    for name in ["node_ids", "replica_ids", "event_types", "categories", "min_severity", "include_lag_alerts", "since_seq"] {
        assert!(events.iter().any(|p| p["name"] == name), "filter field {name} is a documented parameter");
    }
    let changes = doc["paths"]["/api/v1/replication/slots/{name}/changes"]["get"]["parameters"].as_array().expect("parameters").clone();
    let limit = changes.iter().find(|p| p["name"] == "limit").expect("limit");
    assert_eq!((limit["schema"]["minimum"].as_u64(), limit["schema"]["maximum"].as_u64()), (Some(1), Some(10_000)));

    // At each edge, what the schema admits is accepted and what it does not is refused with 400.
    let nodes = "/api/v1/cluster/nodes";
    api.raft_leader().await;
    api.post(nodes, json!({"node_id": "n".repeat(64)})).await.expect(201);
    api.post(nodes, json!({"node_id": "n".repeat(65)})).await.expect_error(400, "invalid_request");
    api.post(nodes, json!({"node_id": ""})).await.expect_error(400, "invalid_request");
    api.get("/api/v1/events?limit=10000").await.expect(200);
    api.get("/api/v1/events?limit=1").await.expect(200);
    api.get("/api/v1/events?limit=0").await.expect_error(400, "invalid_request");
    api.get("/api/v1/events?limit=10001").await.expect_error(400, "invalid_request");
    api.get("/api/v1/events?event_types=%20node_joined%20,,").await.expect(200);
    api.post("/api/v1/replication/operations", json!({"ops": []})).await.expect_error(400, "invalid_request");
    let key = "k".repeat(256);
    api.post("/api/v1/replication/operations", json!({"ops": [{"op": "insert", "table": "t", "key": key, "value": 1}]})).await.expect(200);
    // 256 characters of more than one byte each: the limit counts characters, as JSON Schema does.
    let wide = "é".repeat(256);
    api.post("/api/v1/replication/operations", json!({"ops": [{"op": "insert", "table": "t", "key": wide, "value": 1}]})).await.expect(200);
    let long = "k".repeat(257);
    api.post("/api/v1/replication/operations", json!({"ops": [{"op": "insert", "table": "t", "key": long, "value": 1}]}))
        .await
        .expect_error(400, "invalid_request");
    let hb = "/api/v1/replication/heartbeat";
    api.send(actix_web::test::TestRequest::put().uri(hb).set_json(json!({"interval_ms": 0, "timeout_ms": 100})))
        .await
        .expect_error(400, "invalid_request");
    api.send(actix_web::test::TestRequest::put().uri(hb).set_json(json!({"interval_ms": 50, "timeout_ms": 3000}))).await.expect(200);
    // An integer written with a zero fraction is an integer to JSON Schema, so to the server.
    api.send(actix_web::test::TestRequest::put().uri(hb).set_json(json!({"interval_ms": 100.0, "timeout_ms": 3000})))
        .await
        .expect(200);
    api.send(actix_web::test::TestRequest::put().uri(hb).set_json(json!({"interval_ms": 100.5, "timeout_ms": 3000})))
        .await
        .expect_error(400, "invalid_json");
    // A semi_sync quorum larger than the replicas there are conflicts with the cluster (409); a
    // quorum of none is invalid (400).
    let config = "/api/v1/replication/config";
    api.send(actix_web::test::TestRequest::put().uri(config).set_json(json!({"mode": "semi_sync", "sync_quorum": 5})))
        .await
        .expect_error(409, "conflicts_with_state");
    api.send(actix_web::test::TestRequest::put().uri(config).set_json(json!({"mode": "semi_sync", "sync_quorum": 0})))
        .await
        .expect_error(400, "invalid_request");
    // A partition naming an endpoint nobody has: an unknown id.
    api.post("/api/v1/cluster/faults/partition", json!({"groups": [["primary"], ["nobody"]]}))
        .await
        .expect_error(404, "node_not_found");
}

/// Sends `method` to `path` over a real socket: the status, `Allow`, and the body.
async fn probe(server: &Server, method: &str, path: &str) -> (StatusCode, Option<String>, Value) {
    let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut res = within("an answer", awc::Client::new().request(method, server.url("http", path)).send())
        .await
        .expect("the request is answered");
    let allow = res.headers().get("allow").and_then(|v| v.to_str().ok()).map(String::from);
    let body = within("the body", res.body()).await.expect("a body");
    (res.status(), allow, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn method_set(text: &str) -> BTreeSet<String> {
    text.split(',').map(|m| m.trim().to_lowercase()).filter(|m| !m.is_empty()).collect()
}

#[actix_web::test]
async fn a_405_lists_what_the_path_takes_in_allow_for_every_path() {
    let server = Server::start(TestConfig::memory().without_replicas().quiet().build());
    let mut res = within("the document", awc::Client::new().get(server.url("http", "/api/v1/openapi.json")).send())
        .await
        .expect("the document is served");
    let doc: Value = within("the document", res.json().limit(1 << 22)).await.expect("a JSON document");
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let documented: BTreeSet<String> = METHODS.iter().filter(|m| item.get(**m).is_some()).map(|m| m.to_string()).collect();
        let uri = path.replace('{', "x-").replace('}', "");
        let (status, allow, body) = probe(&server, "TRACE", &uri).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "TRACE {uri}: {body}");
        assert_eq!(body["error"]["code"], "method_not_allowed", "TRACE {uri}: {body}");
        let allow = allow.unwrap_or_else(|| panic!("TRACE {uri}: a 405 without Allow"));
        assert_eq!(method_set(&allow), documented, "TRACE {uri}: Allow '{allow}' against the document");
    }
    // Routes outside the document too.
    for (method, path, expected) in [
        ("PUT", "/graphql", "GET, POST"),
        ("POST", "/graphql/ws", "GET"),
        ("DELETE", "/api/v1/ws/events", "GET"),
        ("POST", "/api/v1/ws/cluster/nodes", "GET"),
        ("POST", "/api/v1/openapi.json", "GET"),
        ("PUT", "/api/v1/cluster/nodes", "GET, POST"),
    ] {
        let (status, allow, _) = probe(&server, method, path).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(allow.as_deref().map(method_set), Some(method_set(expected)), "{method} {path}");
    }
    // A path nobody has is a 404, with no Allow.
    let (status, allow, _) = probe(&server, "GET", "/api/v1/nope").await;
    assert_eq!((status, allow), (StatusCode::NOT_FOUND, None));
}
