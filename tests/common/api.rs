//! The app driven in-process (`actix_web::test`): the one way to start it for REST tests, a small
//! client (requests by method, the token header, assertions on the status and the error shape),
//! and readers of what several areas check: the node list, `GET /api/v1/events` and `/metrics`.
//! Replication's requests are in `common/replication.rs`; a file's own requests stay in its own
//! `impl Api` block.

use std::rc::Rc;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::web::Bytes;
use futures_util::future::LocalBoxFuture;
use clusterd::{Config, Runtime, RuntimeHandle};
use serde_json::Value;

use super::{settle, within};

/// Starts a runtime for `config` and the app on it; returns once bootstrap events are published.
pub async fn start(config: Config) -> (RuntimeHandle, Api) {
    let runtime = Runtime::start(config).expect("runtime starts");
    let app = test::init_service(clusterd::http::app(clusterd::http::AppState::new(runtime.clone()))).await;
    settle(&runtime).await;
    (runtime, Api::new(app, TestRequest::to_request))
}

pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("expected JSON ({e}), got {}: {}", self.status, self.text()))
    }

    /// Asserts the status and returns the JSON body.
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text());
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts the status and the error shape `{"error":{"code","message","details"}}` with `code`;
    /// returns `details`.
    pub fn expect_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text());
        assert!(
            self.content_type.starts_with("application/json"),
            "an error is JSON, got content-type '{}': {}",
            self.content_type,
            self.text()
        );
        let v = self.json();
        let obj = v.as_object().unwrap_or_else(|| panic!("error body is not an object: {v}"));
        assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["error"], "only `error` at the top: {v}");
        let err = &v["error"];
        assert_eq!(err["code"], code, "error code; body: {v}");
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error.message is a non-empty string: {v}"
        );
        assert!(err["details"].is_object(), "error.details is an object: {v}");
        err["details"].clone()
    }
}

pub type Call = Rc<dyn Fn(TestRequest) -> LocalBoxFuture<'static, Reply>>;

/// The app under test, with an optional bearer token added to every request.
pub struct Api {
    call: Call,
    token: Option<String>,
}

impl Api {
    /// `to_request` is `TestRequest::to_request`; passing it names the request type for us.
    pub fn new<S, R, B>(app: S, to_request: fn(TestRequest) -> R) -> Api
    where
        S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
        B: MessageBody + 'static,
        R: 'static,
    {
        let app = Rc::new(app);
        Api {
            call: Rc::new(move |req: TestRequest| {
                let app = app.clone();
                let req = to_request(req);
                Box::pin(async move {
                    let res = match app.call(req).await {
                        Ok(res) => res,
                        Err(e) => panic!("the app answered with an error instead of a response: {e}"),
                    };
                    let status = res.status();
                    let content_type = res
                        .headers()
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let body = test::read_body(res).await;
                    Reply { status, content_type, body }
                })
            }),
            token: None,
        }
    }

    /// The same app, sending `Authorization: Bearer <token>` with every request.
    pub fn with_token(&self, token: &str) -> Api {
        Api { call: self.call.clone(), token: Some(token.to_string()) }
    }

    pub async fn send(&self, mut req: TestRequest) -> Reply {
        if let Some(t) = &self.token {
            req = req.insert_header((AUTHORIZATION, format!("Bearer {t}")));
        }
        within("the app to answer", (self.call)(req)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(TestRequest::get().uri(path)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(TestRequest::delete().uri(path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(TestRequest::post().uri(path).set_json(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(TestRequest::patch().uri(path).set_json(body)).await
    }

    /// A request with a raw body sent as JSON (for malformed and oversized bodies).
    pub async fn raw(&self, req: TestRequest, body: impl Into<Bytes>) -> Reply {
        self.send(req.insert_header((CONTENT_TYPE, "application/json")).set_payload(body.into())).await
    }

    /// The node ids, in order, and the whole list.
    /// Waits until the cluster's status names a Raft leader, and names it.
    pub async fn raft_leader(&self) -> String {
        super::poll_until("a Raft leader", || async { self.get("/api/v1/cluster/status").await.json()["leader"].as_str().map(String::from) }).await
    }

    pub async fn nodes(&self) -> (Vec<String>, Value) {
        let list = self.get("/api/v1/cluster/nodes").await.expect(200);
        let ids = list["nodes"]
            .as_array()
            .expect("nodes is an array")
            .iter()
            .map(|n| n["node_id"].as_str().expect("node_id").to_string())
            .collect();
        (ids, list)
    }

    /// `GET /api/v1/events?<query>`: the events array (and checks the body's other fields).
    pub async fn events(&self, query: &str) -> Vec<Value> {
        let body = self.get(&format!("/api/v1/events?{query}")).await.expect(200);
        let events = body["events"].as_array().expect("events is an array").clone();
        assert_eq!(body["count"], events.len(), "count matches; body: {body}");
        assert!(body["current_seq"].is_u64());
        assert!(body["oldest_retained_seq"].is_u64());
        assert!(body["replay_truncated"].is_boolean());
        events
    }

    /// `GET /metrics`, which must answer 200 with Prometheus text.
    pub async fn metrics(&self) -> String {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.content_type.starts_with("text/plain"), "content-type {}", r.content_type);
        r.text()
    }
}

/// The value of one Prometheus series (`name{labels}` exactly as rendered), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        if name == series {
            value.parse().ok()
        } else {
            None
        }
    })
}

/// An event envelope's `seq`.
pub fn seq(e: &Value) -> u64 {
    e["seq"].as_u64().unwrap_or_else(|| panic!("seq is a u64: {e}"))
}

/// The `event_type` of each envelope, in order.
pub fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["event_type"].as_str().expect("event_type").to_string()).collect()
}
