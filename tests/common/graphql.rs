//! A GraphQL client for the app on a real socket ([`Server`]): `POST /graphql`, and on a
//! [`WsConn`] the `graphql-transport-ws` steps (init, subscribe, the next item, the end of a
//! subscription); plus what the registry can tell about GraphQL subscriptions.

use serde_json::{json, Value};

use clusterd::messages::registry::Transport;

use super::server::{Server, WsConn};
use super::{poll_until, subscriptions, within};

impl Server {
    /// A query or mutation over `POST /graphql`, with a bearer token if given; the whole GraphQL
    /// response.
    pub async fn post(&self, query: &str, token: Option<&str>) -> Value {
        let mut req = awc::Client::new().post(self.url("http", "/graphql"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let mut res = within("POST /graphql", req.send_json(&json!({ "query": query }))).await.expect("POST /graphql");
        assert_eq!(res.status(), 200, "POST /graphql status");
        within("the GraphQL answer", res.json::<Value>().limit(16 << 20)).await.expect("a JSON answer")
    }

    /// A query or mutation without a token.
    pub async fn query(&self, query: &str) -> Value {
        self.post(query, None).await
    }

    /// How many GraphQL subscriptions the registry holds.
    pub async fn graphql_subscriptions(&self) -> usize {
        subscriptions(&self.runtime).await.iter().filter(|r| r.info.transport == Transport::GraphQl).count()
    }

    /// Waits until the registry lists a GraphQL subscription for `field`: the subscription is
    /// live, so events published from now on reach it.
    pub async fn wait_subscribed(&self, field: &str) {
        // Polled: the registration happens on a server worker, and the registry is the only place
        // that can tell when it is done.
        let row = poll_until("the GraphQL subscription to register", || async {
            let rows = subscriptions(&self.runtime).await;
            rows.into_iter().find(|r| r.info.transport == Transport::GraphQl && r.info.stream == field)
        })
        .await;
        assert!(row.info.peer.starts_with("127.0.0.1:"), "peer recorded: {}", row.info.peer);
    }
}

impl WsConn {
    /// `connection_init` with `payload`, expecting `connection_ack`.
    pub async fn init(&mut self, payload: Value) {
        self.send(json!({ "type": "connection_init", "payload": payload })).await;
        let ack = self.json().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }

    /// A `graphql-transport-ws` subscribe.
    pub async fn subscribe(&mut self, id: &str, query: &str) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query } })).await;
    }

    /// The next frame, which must be a `next` of subscription `id` without errors; its `field`.
    pub async fn next_of(&mut self, id: &str, field: &str) -> Value {
        let msg = self.json().await;
        assert_eq!(msg["type"], "next", "{msg}");
        assert_eq!(msg["id"], id, "{msg}");
        assert!(msg["payload"].get("errors").is_none(), "{msg}");
        msg["payload"]["data"][field].clone()
    }

    /// Reads until the `complete` of `id`, taking the `next`s and `complete`s of `also` on the way.
    pub async fn until_complete(&mut self, id: &str, also: &[&str]) {
        loop {
            let msg = self.json().await;
            let msg_id = msg["id"].as_str().unwrap_or_default();
            if msg_id == id && msg["type"] == "complete" {
                return;
            }
            assert!(
                also.contains(&msg_id) && (msg["type"] == "next" || msg["type"] == "complete"),
                "while waiting for the end of {id}: {msg}"
            );
        }
    }
}

/// The `extensions.code` of a GraphQL response's first error.
pub fn error_code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {response}"))
}
