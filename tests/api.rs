//! The cross-cutting HTTP surface, in-process and over a real socket: the error shape for every
//! bad request, auth (bearer token, what stays open), `/metrics`, the OpenAPI document and Swagger
//! UI, the routes of domains not built yet (501), and the GraphQL endpoint itself (GraphiQL,
//! introspection within the limits, enums for closed sets).
//!
//! Each test is a scenario told in its comments. Every wait is on an answer, bounded by
//! `common::TIMEOUT`.

mod common;

use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use serde_json::{json, Value};

use common::api::{metric, start, types};
use common::server::Server;
use common::*;

#[actix_web::test]
async fn every_bad_request_gets_the_error_shape_and_changes_nothing() {
    let config = TestConfig::memory().without_replicas().quiet().with(|c| c.server.max_body_bytes = 4096).build();
    let (_runtime, api) = start(config).await;
    let (ids_before, list_before) = api.nodes().await;
    assert_eq!(ids_before, vec!["node-1", "node-2", "node-3"]);
    let nodes = "/api/v1/cluster/nodes";

    // Bodies that are not what POST /nodes takes.
    api.raw(TestRequest::post().uri(nodes), r#"{"node_id": "node-9""#).await.expect_error(400, "invalid_json");
    api.raw(TestRequest::post().uri(nodes), "not json at all").await.expect_error(400, "invalid_json");
    let d = api.post(nodes, json!({"node_id": "node-9", "colour": "red"})).await.expect_error(400, "invalid_json");
    assert_eq!(d["field"], "colour", "the unknown field is named: {d}");
    api.post(nodes, json!({"node_id": 42})).await.expect_error(400, "invalid_json");
    api.post(nodes, json!({"node_id": "node-9", "metadata": [1, 2]})).await.expect_error(400, "invalid_json");
    api.post(nodes, json!(["node-9"])).await.expect_error(400, "invalid_json");
    let d = api.post(nodes, json!({"address": "10.0.0.9:7000"})).await.expect_error(400, "invalid_json");
    assert_eq!(d["field"], "node_id", "the missing field is named: {d}");

    // Ids the server does not accept.
    let d = api.post(nodes, json!({"node_id": "bad id!"})).await.expect_error(400, "invalid_request");
    assert_eq!(d["field"], "node_id");
    api.post(nodes, json!({"node_id": ""})).await.expect_error(400, "invalid_request");
    api.post(nodes, json!({"node_id": "n".repeat(65)})).await.expect_error(400, "invalid_request");
    api.post(nodes, json!({"node_id": "node/9"})).await.expect_error(400, "invalid_request");

    // A body over server.max_body_bytes, valid JSON or not.
    let huge = json!({"node_id": "node-9", "metadata": {"blob": "x".repeat(8192)}});
    let d = api.post(nodes, huge.clone()).await.expect_error(413, "payload_too_large");
    assert_eq!(d["limit"], 4096);
    api.patch("/api/v1/cluster/nodes/node-1", json!({"metadata": {"blob": "x".repeat(8192)}}))
        .await
        .expect_error(413, "payload_too_large");

    // PATCH bodies that are not a metadata patch.
    api.patch("/api/v1/cluster/nodes/node-1", json!({"metadata": 5})).await.expect_error(400, "invalid_json");
    api.patch("/api/v1/cluster/nodes/node-1", json!({"labels": {}})).await.expect_error(400, "invalid_json");
    api.raw(TestRequest::patch().uri("/api/v1/cluster/nodes/node-1"), "{").await.expect_error(400, "invalid_json");

    // Ids nobody has.
    for reply in [
        api.get("/api/v1/cluster/nodes/node-404").await,
        api.patch("/api/v1/cluster/nodes/node-404", json!({"metadata": {"a": 1}})).await,
        api.delete("/api/v1/cluster/nodes/node-404").await,
        api.get("/api/v1/cluster/health/node-404").await,
    ] {
        let d = reply.expect_error(404, "node_not_found");
        assert_eq!(d["node_id"], "node-404");
    }

    // An id that is taken.
    let d = api.post(nodes, json!({"node_id": "node-1"})).await.expect_error(409, "node_exists");
    assert_eq!(d["node_id"], "node-1");

    // Paths and methods that do not exist still answer with the shape, never an empty or HTML body.
    api.get("/api/v1/nope").await.expect_error(404, "route_not_found");
    api.get("/nope").await.expect_error(404, "route_not_found");
    api.get("/api/v1/cluster/nodes/node-1/nope").await.expect_error(404, "route_not_found");
    // A known path with a method it does not have.
    api.send(TestRequest::put().uri(nodes)).await.expect_error(405, "method_not_allowed");
    api.send(TestRequest::post().uri("/api/v1/cluster/nodes/node-1")).await.expect_error(405, "method_not_allowed");
    api.send(TestRequest::delete().uri("/api/v1/events")).await.expect_error(405, "method_not_allowed");

    // Filters GET /api/v1/events does not understand.
    for (query, field) in [
        ("bogus=1", "bogus"),
        ("nodes=node-1", "nodes"),
        ("since_seq=abc", "since_seq"),
        ("since_seq=-1", "since_seq"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=10001", "limit"),
        ("event_types=node_exploded", "event_types"),
        ("categories=weather", "categories"),
        ("min_severity=loud", "min_severity"),
        ("include_health_changes=maybe", "include_health_changes"),
    ] {
        let d = api.get(&format!("/api/v1/events?{query}")).await.expect_error(400, "invalid_request");
        assert_eq!(d["field"], field, "GET /api/v1/events?{query}: {d}");
    }

    // Fault bodies that make no sense.
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2", "mode": "explode"}))
        .await
        .expect_error(400, "invalid_request");
    api.post("/api/v1/cluster/faults/crash", json!({})).await.expect_error(400, "invalid_json");
    api.post("/api/v1/cluster/faults/crash", json!({"target": "node-2", "when": "now"}))
        .await
        .expect_error(400, "invalid_json");
    api.post("/api/v1/cluster/faults/restart", json!({"target": "node-2", "mode": "crash"}))
        .await
        .expect_error(400, "invalid_request");

    // None of it changed anything: same members, same metadata, nobody crashed, and the only
    // membership events are the bootstrap joins.
    let (ids_after, list_after) = api.nodes().await;
    assert_eq!(ids_after, ids_before);
    for (a, b) in list_before["nodes"].as_array().unwrap().iter().zip(list_after["nodes"].as_array().unwrap()) {
        assert_eq!(a["metadata"], b["metadata"]);
        assert_eq!(b["crashed"], false);
        assert_eq!(b["status"], "healthy");
    }
    assert!(api.get("/api/v1/cluster/faults").await.expect(200)["faults"].as_array().unwrap().is_empty());
    let events = api.events("event_types=node_joined,node_left,node_health_change").await;
    assert_eq!(types(&events), vec!["node_joined"; 3]);
}

#[actix_web::test]
async fn with_a_token_every_api_and_graphql_route_needs_it_and_health_and_metrics_stay_open() {
    let (_runtime, anonymous) = start(TestConfig::memory().without_replicas().quiet_with_leader().token("s3cret").build()).await;

    // No header, a wrong token, another scheme, or the token in the query string of a plain
    // request: 401 with the shape.
    anonymous.get("/api/v1/cluster/nodes").await.expect_error(401, "unauthorized");
    for header in ["Bearer nope", "Bearer s3cret2", "Basic s3cret", "s3cret", "Bearer "] {
        anonymous
            .send(TestRequest::get().uri("/api/v1/cluster/nodes").insert_header((AUTHORIZATION, header)))
            .await
            .expect_error(401, "unauthorized");
    }
    anonymous.get("/api/v1/cluster/nodes?token=s3cret").await.expect_error(401, "unauthorized");
    anonymous.get("/api/v1/events").await.expect_error(401, "unauthorized");
    anonymous.get("/api/v1/ws/status").await.expect_error(401, "unauthorized");
    anonymous.get("/api/v1/nope").await.expect_error(401, "unauthorized");
    anonymous
        .post("/graphql", json!({"query": "{ __typename }"}))
        .await
        .expect_error(401, "unauthorized");
    anonymous.get("/graphql").await.expect_error(401, "unauthorized");
    // An Upgrade header does not make a POST a WebSocket upgrade: a mutation sent that way
    // without the token is refused like any other request.
    for path in ["/graphql", "/graphql/ws"] {
        anonymous
            .send(
                TestRequest::post()
                    .uri(path)
                    .insert_header(("upgrade", "websocket"))
                    .insert_header(("connection", "upgrade"))
                    .insert_header((CONTENT_TYPE, "application/json"))
                    .set_payload(json!({"query": "mutation { removeNode(nodeId: \"node-1\") }"}).to_string()),
            )
            .await
            .expect_error(401, "unauthorized");
    }
    // A refused write changes nothing.
    anonymous.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect_error(401, "unauthorized");
    anonymous.post("/api/v1/cluster/faults/crash", json!({"target": "node-2"})).await.expect_error(401, "unauthorized");

    // Health and metrics stay open.
    let health = anonymous.get("/health").await.expect(200);
    assert_eq!(health["status"], "ok");
    assert!(health["version"].is_string());
    assert!(health["uptime_seconds"].is_u64());
    anonymous.metrics().await;
    assert_eq!(anonymous.get("/swagger-ui/").await.status, StatusCode::OK);
    anonymous.get("/api/v1/openapi.json").await.expect_error(401, "unauthorized");

    // The right token opens everything.
    let authed = anonymous.with_token("s3cret");
    let (ids, _) = authed.nodes().await;
    assert_eq!(ids, vec!["node-1", "node-2", "node-3"], "the refused POST added nothing");
    assert_eq!(authed.get("/api/v1/cluster/nodes/node-2").await.expect(200)["crashed"], false);
    authed.get("/api/v1/events").await.expect(200);
    authed.get("/api/v1/openapi.json").await.expect(200);
    let gql = authed.post("/graphql", json!({"query": "{ __typename }"})).await;
    assert_eq!(gql.status, StatusCode::OK, "{}", gql.text());
    assert!(gql.json()["data"]["__typename"].is_string(), "{}", gql.text());
    let lower = anonymous
        .send(TestRequest::get().uri("/api/v1/cluster/nodes").insert_header((AUTHORIZATION, "bearer s3cret")))
        .await;
    assert_eq!(lower.status, StatusCode::OK, "the scheme is case-insensitive: {}", lower.text());
    authed.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect(201);
}

#[actix_web::test]
async fn without_a_token_everything_is_open() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet_with_leader().build()).await;
    api.get("/api/v1/cluster/nodes").await.expect(200);
    api.get("/api/v1/events").await.expect(200);
    api.get("/api/v1/ws/status").await.expect(200);
    api.get("/api/v1/openapi.json").await.expect(200);
    let gql = api.post("/graphql", json!({"query": "{ __typename }"})).await;
    assert_eq!(gql.status, StatusCode::OK, "{}", gql.text());
    api.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect(201);
    // A stray Authorization header is harmless when no token is configured.
    api.send(TestRequest::get().uri("/api/v1/cluster/nodes").insert_header((AUTHORIZATION, "Bearer whatever")))
        .await
        .expect(200);
}

#[actix_web::test]
async fn metrics_follow_what_happens() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet_with_leader().build()).await;
    let clustering = r#"clusterd_events_published_total{category="clustering"}"#;
    // Members change through the Raft leader: once there is one, settled.
    api.raft_leader().await;
    let before = api.metrics().await;
    assert_eq!(metric(&before, clustering), Some(4.0), "three bootstrap joins and the first leader_elected:\n{before}");
    assert_eq!(metric(&before, "clusterd_cluster_nodes"), Some(3.0));
    assert_eq!(metric(&before, "clusterd_cluster_has_quorum"), Some(1.0));
    let seq_before = metric(&before, "clusterd_events_current_seq").expect("current seq gauge");
    // Settled: nothing waits in the registry's mailbox.
    assert_eq!(metric(&before, "clusterd_registry_mailbox_depth"), Some(0.0), "{before}");

    // A join, reads of two nodes by id, a miss, and a request to nowhere.
    api.post("/api/v1/cluster/nodes", json!({"node_id": "node-4"})).await.expect(201);
    api.get("/api/v1/cluster/nodes/node-4").await.expect(200);
    api.get("/api/v1/cluster/nodes/node-1").await.expect(200);
    api.get("/api/v1/cluster/nodes/node-404").await.expect_error(404, "node_not_found");
    api.get("/api/v1/garbage/12345").await.expect_error(404, "route_not_found");

    let after = api.metrics().await;
    assert_eq!(metric(&after, clustering), Some(6.0), "node-4 joined as a learner, then as a voter: {after}");
    assert_eq!(metric(&after, "clusterd_cluster_nodes"), Some(4.0));
    assert_eq!(metric(&after, "clusterd_events_current_seq"), Some(seq_before + 2.0));
    // Requests are labelled by route pattern, not by raw path.
    let by_id = |status: u16| format!(r#"clusterd_http_requests_total{{route="/api/v1/cluster/nodes/{{id}}",method="GET",status="{status}"}}"#);
    assert_eq!(metric(&after, &by_id(200)), Some(2.0), "{after}");
    assert_eq!(metric(&after, &by_id(404)), Some(1.0), "{after}");
    assert_eq!(
        metric(&after, r#"clusterd_http_requests_total{route="/api/v1/cluster/nodes",method="POST",status="201"}"#),
        Some(1.0),
        "{after}"
    );
    for raw in ["node-1", "node-4", "node-404", "/api/v1/garbage/12345"] {
        assert!(!after.contains(&format!("route=\"/api/v1/cluster/nodes/{raw}\"")), "raw path in a label");
        assert!(!after.contains(&format!("route=\"{raw}\"")), "raw path {raw} in a label:\n{after}");
    }
    assert_eq!(
        metric(&after, r#"clusterd_http_requests_total{route="/metrics",method="GET",status="200"}"#),
        Some(1.0),
        "the first scrape is counted by the second"
    );

    // Made-up methods share one label instead of growing the series.
    for method in ["FROB", "BLAH"] {
        let m = actix_web::http::Method::from_bytes(method.as_bytes()).expect("a valid token");
        api.send(TestRequest::default().method(m).uri("/api/v1/cluster/nodes")).await;
    }
    let odd = api.metrics().await;
    assert!(!odd.contains("FROB") && !odd.contains("BLAH"), "{odd}");
    assert_eq!(
        metric(&odd, r#"clusterd_http_requests_total{route="/api/v1/cluster/nodes",method="OTHER",status="405"}"#),
        Some(2.0),
        "{odd}"
    );

    // A departure moves them again.
    assert_eq!(api.delete("/api/v1/cluster/nodes/node-4").await.status, StatusCode::NO_CONTENT);
    let last = api.metrics().await;
    assert_eq!(metric(&last, clustering), Some(7.0));
    assert_eq!(metric(&last, "clusterd_cluster_nodes"), Some(3.0));
    assert_eq!(
        metric(&last, r#"clusterd_http_requests_total{route="/api/v1/cluster/nodes/{id}",method="DELETE",status="204"}"#),
        Some(1.0)
    );
}

#[actix_web::test]
async fn the_openapi_document_lists_every_route_and_swagger_ui_serves_offline() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet().build()).await;
    let doc = api.get("/api/v1/openapi.json").await.expect(200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "OpenAPI 3: {}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths is an object");

    let has = |method: &str, path: &str| {
        let item = paths.get(path).unwrap_or_else(|| panic!("{path} missing from the OpenAPI paths"));
        assert!(item.get(method).is_some(), "{} {path} missing from the OpenAPI document", method.to_uppercase());
    };
    // Built routes.
    for (method, path) in [
        ("get", "/health"),
        ("get", "/metrics"),
        ("get", "/api/v1/events"),
        ("get", "/api/v1/ws/status"),
        ("get", "/api/v1/ws/connections"),
        ("get", "/api/v1/ws/subscriptions"),
        ("delete", "/api/v1/ws/connections/{session_id}"),
        ("post", "/api/v1/cluster/nodes"),
        ("get", "/api/v1/cluster/nodes"),
        ("get", "/api/v1/cluster/nodes/{id}"),
        ("patch", "/api/v1/cluster/nodes/{id}"),
        ("delete", "/api/v1/cluster/nodes/{id}"),
        ("get", "/api/v1/cluster/status"),
        ("get", "/api/v1/cluster/health"),
        ("get", "/api/v1/cluster/health/{node_id}"),
        ("get", "/api/v1/cluster/faults"),
        ("post", "/api/v1/cluster/faults/crash"),
        ("post", "/api/v1/cluster/faults/restart"),
    ] {
        has(method, path);
    }
    // Routes of domains not built yet, documented with their 501.
    for (method, path) in [
        ("post", "/api/v1/rac/blocks/{block_id}/read"),
        ("get", "/api/v1/rac/status"),
        ("post", "/api/v1/cluster/nodes/{id}/promote"),
        ("get", "/api/v1/replication/sharding/statistics"),
    ] {
        has(method, path);
    }
    for (method, path, _) in clusterd::http::rest::not_built::ROUTES {
        has(&method.to_lowercase(), path);
        assert!(
            paths[*path][method.to_lowercase()]["responses"].get("501").is_some(),
            "{method} {path} documents its 501"
        );
    }
    // The bearer scheme is documented.
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object(), "{}", doc["components"]);

    // Swagger UI: an HTML page and its assets, compiled in.
    let ui = api.get("/swagger-ui/").await;
    assert_eq!(ui.status, StatusCode::OK, "{}", ui.text());
    assert!(ui.content_type.starts_with("text/html"), "content-type {}", ui.content_type);
    assert!(ui.text().to_lowercase().contains("swagger"), "{}", ui.text());
    let asset = api.get("/swagger-ui/swagger-ui.css").await;
    assert_eq!(asset.status, StatusCode::OK, "the stylesheet is served from the binary");
    assert!(!asset.body.is_empty());
}

#[actix_web::test]
async fn routes_of_domains_not_built_yet_answer_501_naming_the_domain() {
    let (_runtime, api) = start(TestConfig::memory().without_replicas().quiet().build()).await;

    let d = api
        .post("/api/v1/replication/sharding/tables", json!({"table": "orders", "shard_key": "id", "strategy": "hash", "shards": 4}))
        .await
        .expect_error(501, "not_implemented");
    assert_eq!(d["domain"], "sharding");
    assert_eq!(api.post("/api/v1/cluster/query", json!({})).await.expect_error(501, "not_implemented")["domain"], "sharding");

    // Every one of them, with its own method.
    for (method, path, domain) in clusterd::http::rest::not_built::ROUTES {
        let uri = path.replace('{', "x-").replace('}', "");
        let req = TestRequest::default()
            .method(actix_web::http::Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(&uri);
        let req = if matches!(*method, "POST" | "PUT" | "PATCH") { req.set_json(json!({})) } else { req };
        let d = api.send(req).await.expect_error(501, "not_implemented");
        assert_eq!(d["domain"], *domain, "{method} {uri}");
    }
    // And none of them changed the cluster.
    assert_eq!(api.nodes().await.0, vec!["node-1", "node-2", "node-3"]);
}

/// With a token set, the browser pages (GraphiQL, Swagger UI) and everything they load before
/// they can ask for the token are served without it, from the binary; what they call stays
/// behind the token.
#[actix_web::test]
async fn with_a_token_the_pages_load_without_it_from_the_binary_and_the_api_stays_closed() {
    let (_runtime, anonymous) = start(TestConfig::memory().without_replicas().quiet().token("s3cret").build()).await;
    let html = actix_web::http::header::ACCEPT;

    // GraphiQL, as a browser asks for it.
    let page = anonymous.send(TestRequest::get().uri("/graphql").insert_header((html.clone(), "text/html,application/xhtml+xml"))).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(page.content_type.starts_with("text/html"), "{}", page.content_type);
    let text = page.text();
    for cdn in ["http://", "https://", "//unpkg", "//cdn", "jsdelivr"] {
        assert!(!text.contains(cdn), "the page loads nothing from elsewhere ({cdn}):\n{text}");
    }
    assert!(text.contains("localStorage") && text.contains("Authorization") && text.contains("authorization"), "it sends the token");
    // Every script and stylesheet it names is served, without a token.
    let assets: Vec<&str> = text
        .split(['"', '\''])
        .filter(|s| s.starts_with("/graphiql/") && (s.ends_with(".js") || s.ends_with(".css")))
        .collect();
    assert_eq!(assets.len(), 4, "{assets:?}");
    for asset in assets {
        let reply = anonymous.get(asset).await;
        assert_eq!(reply.status, StatusCode::OK, "{asset}");
        assert!(reply.body.len() > 1000, "{asset} is the real file");
        let kind = if asset.ends_with(".css") { "text/css" } else { "text/javascript" };
        assert!(reply.content_type.starts_with(kind), "{asset}: {}", reply.content_type);
    }
    anonymous.get("/graphiql/nope.js").await.expect_error(404, "route_not_found");

    // Swagger UI and the document it renders.
    let ui = anonymous.get("/swagger-ui/").await;
    assert_eq!(ui.status, StatusCode::OK);
    let init = anonymous.get("/swagger-ui/swagger-initializer.js").await;
    assert_eq!(init.status, StatusCode::OK);
    let init = init.text();
    assert!(init.contains("persistAuthorization: true"), "Authorize keeps the token:\n{init}");
    assert!(init.contains("/api/v1/openapi.json"), "{init}");
    assert!(init.contains("requestInterceptor"), "the page sends the token with its requests:\n{init}");
    // The document is an /api route like the others: the page fetches it with the token.
    anonymous.get("/api/v1/openapi.json").await.expect_error(401, "unauthorized");
    let doc = anonymous.with_token("s3cret").get("/api/v1/openapi.json").await.expect(200);
    assert_eq!(doc["paths"]["/api/v1/cluster/nodes"]["get"]["security"], json!([{"bearer": []}]));

    // What the pages call needs the token: queries, mutations, the API, GET /graphql asked for
    // anything but HTML.
    anonymous.post("/graphql", json!({"query": "{ __typename }"})).await.expect_error(401, "unauthorized");
    anonymous.get("/graphql").await.expect_error(401, "unauthorized");
    anonymous
        .send(TestRequest::post().uri("/graphql").insert_header((html.clone(), "text/html")).set_json(json!({"query": "{ __typename }"})))
        .await
        .expect_error(401, "unauthorized");
    anonymous.get("/api/v1/cluster/nodes").await.expect_error(401, "unauthorized");
    anonymous.get("/api/v1/events").await.expect_error(401, "unauthorized");
    let authed = anonymous.with_token("s3cret");
    let gql = authed.post("/graphql", json!({"query": "{ clusterStatus { members } }"})).await.expect(200);
    assert_eq!(gql["data"]["clusterStatus"]["members"], json!(["node-1", "node-2", "node-3"]), "{gql}");
}

// ---------------------------------------------------------------------------------------------
// The GraphQL endpoint.

#[actix_web::test]
async fn graphiql_introspection_and_depth_limit() {
    let server = Server::start(TestConfig::memory().build());

    let mut res = awc::Client::new()
        .get(server.url("http", "/graphql"))
        .send()
        .await
        .expect("GET /graphql");
    assert_eq!(res.status(), 200);
    let page = String::from_utf8(res.body().await.expect("page").to_vec()).expect("utf-8 page");
    assert!(
        page.contains("graphiql") && page.contains("/graphql/ws"),
        "GraphiQL page"
    );

    // The subscription endpoint answers plain requests with the error shape.
    let mut res = awc::Client::new()
        .get(server.url("http", "/graphql/ws"))
        .send()
        .await
        .expect("GET /graphql/ws");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("an error body");
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");

    // The introspection query GraphiQL sends fits the depth and complexity limits.
    let r = server.post(INTROSPECTION, None).await;
    assert!(r.get("errors").is_none(), "{r}");
    let types = r["data"]["__schema"]["types"].as_array().expect("types");
    for name in [
        "Node",
        "ClusterEvent",
        "NodeStatusEvent",
        "ClusterHealthEvent",
        "EventFilter",
        "JSON",
    ] {
        assert!(
            types.iter().any(|t| t["name"] == name),
            "type {name} in the schema"
        );
    }
    assert_eq!(
        r["data"]["__schema"]["subscriptionType"]["name"],
        "Subscription"
    );

    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType { ".repeat(20),
        "}".repeat(20)
    );
    let r = server.post(&deep, None).await;
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("deep")),
        "{r}"
    );
}

/// Statuses, severities, roles, modes and health are GraphQL enums (the contract's
/// `severity: WARNING`, `newStatus: CATCHING_UP`), in queries and typed events alike.
#[actix_web::test]
async fn closed_sets_of_values_are_enums() {
    let server = Server::start(TestConfig::memory().build());
    let fields = "fields { name type { kind name ofType { kind name } } }";
    let types = [
        "Replica",
        "ReplicationStatus",
        "Node",
        "ClusterStatus",
        "ClusterEvent",
        "ReplicaStatusEvent",
        "ClusterHealthEvent",
    ];
    let query = types
        .iter()
        .map(|t| format!(r#"{t}: __type(name: "{t}") {{ {fields} }}"#))
        .collect::<Vec<_>>()
        .join(" ");
    let r = server
        .post(
            &format!(
                r#"{{ {query} statuses: __type(name: "ReplicaStatus") {{ kind enumValues {{ name }} }} severities: __type(name: "Severity") {{ kind enumValues {{ name }} }} }}"#
            ),
            None,
        )
        .await;
    assert!(r.get("errors").is_none(), "{r}");
    // The named type of a field, non-null or not, as (kind, name).
    let field_type = |ty: &str, field: &str| -> (String, String) {
        let fields = r["data"][ty]["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("fields of {ty}: {r}"));
        let f = fields
            .iter()
            .find(|f| f["name"] == field)
            .unwrap_or_else(|| panic!("{ty}.{field}: {r}"));
        let t = if f["type"]["kind"] == "NON_NULL" { &f["type"]["ofType"] } else { &f["type"] };
        (t["kind"].as_str().unwrap_or_default().to_string(), t["name"].as_str().unwrap_or_default().to_string())
    };
    for (ty, field, enum_name) in [
        ("Replica", "status", "ReplicaStatus"),
        ("Replica", "mode", "ReplicaMode"),
        ("ReplicationStatus", "mode", "ReplicationMode"),
        ("ReplicationStatus", "health", "ClusterHealthStatus"),
        ("Node", "status", "NodeHealth"),
        ("Node", "role", "NodeRole"),
        ("ClusterStatus", "health", "ClusterHealthStatus"),
        ("ClusterEvent", "severity", "Severity"),
        ("ClusterEvent", "category", "Category"),
        ("ReplicaStatusEvent", "newStatus", "ReplicaStatus"),
        ("ReplicaStatusEvent", "severity", "Severity"),
        ("ClusterHealthEvent", "newStatus", "NodeHealth"),
    ] {
        assert_eq!(
            field_type(ty, field),
            ("ENUM".to_string(), enum_name.to_string()),
            "{ty}.{field}"
        );
    }
    let names = |ty: &str| -> Vec<String> {
        assert_eq!(r["data"][ty]["kind"], "ENUM", "{r}");
        r["data"][ty]["enumValues"]
            .as_array()
            .unwrap_or_else(|| panic!("{ty}: {r}"))
            .iter()
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect()
    };
    assert!(names("statuses").contains(&"CATCHING_UP".to_string()), "{r}");
    assert_eq!(names("severities"), ["INFO", "WARNING", "ERROR", "CRITICAL"], "{r}");

    // And a value reads as the enum's name.
    let r = server.post("{ nodes { role status } clusterStatus { health } }", None).await;
    assert_eq!(r["data"]["nodes"][0]["role"], "VOTER", "{r}");
    assert_eq!(r["data"]["clusterStatus"]["health"], "HEALTHY", "{r}");
}

/// The introspection query GraphiQL sends (graphql-js `getIntrospectionQuery`).
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description
    args { ...InputValue }
    type { ...TypeRef }
    isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name description
  type { ...TypeRef }
  defaultValue
}
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}
"#;
