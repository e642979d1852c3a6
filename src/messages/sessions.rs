//! Messages to the actors that hold a client connection (WebSocket event-stream sessions and
//! GraphQL subscription connections), from whoever administers them.

use actix::Message;

/// Close the connection with a normal close (1000) and this reason.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct CloseSession {
    pub reason: String,
}
