//! The runtime's lifecycle messages, which every actor it starts answers.

use actix::prelude::*;

/// Asks an actor of the runtime to stop (used by shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopRuntimeActor;
