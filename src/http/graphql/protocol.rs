//! The protocol rules async-graphql's WebSocket state machine does not keep, applied to the
//! messages between the client and it ([`Operations`]; the transport hands it every client
//! message before the state machine, and every text the state machine answers):
//!
//! - a `subscribe` (legacy: `start`) that fails before execution (parse error, validation error,
//!   unknown operation, a depth or complexity limit) gets an `error` message with the list of
//!   GraphQL errors and nothing else, as both protocols' documents say; the state machine would
//!   send them as a result (`next`/`data`) followed by `complete`, which clients take for data.
//!   Errors of execution (a resolver refusing) stay results, as the reference servers send them;
//! - `graphql-transport-ws`: a `subscribe` with an id still in use closes the socket with
//!   `4409: Subscriber for <id> already exists` (the state machine would silently replace the
//!   running operation), and one before the connection is acknowledged with `4401: Unauthorized`.
//!
//! Checking a `subscribe` needs an acknowledged connection (nothing is answered to a client that
//! has not authenticated), so the messages a client sends after `connection_init` without waiting
//! for the ack (legacy clients do) are held here until the ack, then checked in order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix_web::web::Bytes;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::http::{ClientMessage, WebSocketProtocols as Protocols};
use async_graphql::{Request, Response, ServerError};
use futures_util::FutureExt;
use serde_json::json;

use super::ClusterSchema;

/// `graphql-transport-ws` close codes for the rules kept here.
const CLOSE_UNAUTHORIZED: u16 = 4401;
const CLOSE_SUBSCRIBER_EXISTS: u16 = 4409;

/// Where `connection_ack` and `complete` texts start: the state machine serializes its messages
/// with serde's internally tagged enum, which writes the tag first.
const ACK_PREFIX: &str = r#"{"type":"connection_ack""#;
const COMPLETE_PREFIX: &str = r#"{"type":"complete""#;

/// What to do with a client message.
pub(super) enum Inbound {
    /// Pass it on to the state machine.
    Forward(Bytes),
    /// Answer the client with this text; the message goes no further.
    Answer(String),
    /// Close the socket with this code and reason.
    Close(u16, String),
    /// Held until the connection is acknowledged.
    Held,
}

/// One connection's operations as the protocol rules see them.
pub(super) struct Operations {
    schema: ClusterSchema,
    protocol: Protocols,
    /// Most messages held while `connection_init` is answered.
    max_held: usize,
    /// The state machine answered `connection_ack`.
    acknowledged: bool,
    /// Client messages that came after `connection_init`, before its answer; `None` when not
    /// waiting for one.
    held: Option<Vec<Bytes>>,
    /// Ids of operations running in the state machine (`graphql-transport-ws` only: the legacy
    /// protocol lets a `start` replace a running operation).
    running: HashSet<String>,
    /// Per id, how many `complete` answers to the client's own `complete` the state machine has
    /// still to send: those do not end an operation started since under the same id.
    echoes: HashMap<String, u32>,
}

impl Operations {
    pub(super) fn new(schema: ClusterSchema, protocol: Protocols, max_held: usize) -> Self {
        Operations {
            schema,
            protocol,
            max_held,
            acknowledged: false,
            held: None,
            running: HashSet::new(),
            echoes: HashMap::new(),
        }
    }

    /// What to do with a message from the client.
    pub(super) fn inbound(&mut self, message: Bytes) -> Inbound {
        if let Some(held) = &mut self.held {
            if held.len() >= self.max_held {
                return Inbound::Close(1008, "too many messages before connection_ack".into());
            }
            held.push(message);
            return Inbound::Held;
        }
        // A message that does not parse goes on: the state machine closes the connection for it.
        let Ok(parsed) = ClientMessage::from_bytes(&message) else {
            return Inbound::Forward(message);
        };
        let transport_ws = self.protocol == Protocols::GraphQLWS;
        match parsed {
            ClientMessage::ConnectionInit { .. } if !self.acknowledged => {
                self.held = Some(Vec::new());
            }
            ClientMessage::Start { id, .. } if transport_ws && self.running.contains(&id) => {
                return Inbound::Close(
                    CLOSE_SUBSCRIBER_EXISTS,
                    format!("Subscriber for {id} already exists"),
                );
            }
            ClientMessage::Start { .. } if transport_ws && !self.acknowledged => {
                return Inbound::Close(CLOSE_UNAUTHORIZED, "Unauthorized".into());
            }
            // Legacy: the state machine refuses a `start` before the handshake itself.
            ClientMessage::Start { .. } if !self.acknowledged => {}
            ClientMessage::Start { id, payload } => {
                if let Err(errors) = check(&self.schema, &payload) {
                    return Inbound::Answer(error_message(&id, &errors));
                }
                if transport_ws {
                    self.running.insert(id);
                }
            }
            ClientMessage::Stop { id } if self.running.remove(&id) => {
                *self.echoes.entry(id).or_default() += 1;
            }
            _ => {}
        }
        Inbound::Forward(message)
    }

    /// Takes note of a text the state machine sends the client. After `connection_ack`, the
    /// messages held until it are returned, to go through [`Operations::inbound`] in order.
    pub(super) fn outbound(&mut self, text: &str) -> Vec<Bytes> {
        if text.starts_with(ACK_PREFIX) {
            self.acknowledged = true;
            return self.held.take().unwrap_or_default();
        }
        if self.protocol == Protocols::GraphQLWS && text.starts_with(COMPLETE_PREFIX) {
            if let Ok(ClientMessage::Stop { id }) = ClientMessage::from_bytes(text) {
                self.completed(id);
            }
        }
        Vec::new()
    }

    /// The state machine completed operation `id`: its answer to the client's `complete`, or the
    /// end of its stream.
    fn completed(&mut self, id: String) {
        match self.echoes.get_mut(&id) {
            Some(pending) if *pending > 1 => *pending -= 1,
            Some(_) => {
                self.echoes.remove(&id);
            }
            None => {
                self.running.remove(&id);
            }
        }
    }
}

/// Parses and validates `request` against the schema without running it: the errors it would
/// fail with before execution, if any.
fn check(schema: &ClusterSchema, request: &Request) -> Result<(), Vec<ServerError>> {
    let mut probe = Request::new(request.query.clone())
        .variables(request.variables.clone())
        .data(CheckOnly);
    probe.operation_name = request.operation_name.clone();
    // Parsing and validation are synchronous work in async clothing: with no extension that
    // waits (the schema has none), the future completes on its first poll. Were one added, the
    // subscribe goes on unchecked and the state machine reports the same errors as a result.
    match schema.execute(probe).now_or_never() {
        Some(response) if !response.errors.is_empty() => Err(response.errors),
        _ => Ok(()),
    }
}

/// `{"id","type":"error","payload":[GraphQLError…]}`: the same in both protocols (the legacy
/// client takes a list of errors as its `error` payload as it is).
fn error_message(id: &str, errors: &[ServerError]) -> String {
    json!({ "id": id, "type": "error", "payload": errors }).to_string()
}

/// Request data marking a request to be parsed and validated only: [`CheckOnly`] as a schema
/// extension then stops it before execution, so that no resolver runs.
pub(super) struct CheckOnly;

impl ExtensionFactory for CheckOnly {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(CheckOnlyExtension)
    }
}

struct CheckOnlyExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for CheckOnlyExtension {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if ctx.data_opt::<CheckOnly>().is_some() {
            return Response::default();
        }
        next.run(ctx, operation_name).await
    }
}
