//! Running work off the arbiter threads and bringing its result back to the actor: a [`Lane`]
//! (an owner's thread) for the commits a client waits for, the blocking pool for other work a
//! client waits for, the [`BackgroundPool`] for work nobody waits for.
//!
//! Every result comes back flat, `Result<T, E>`: a task that panicked or whose pool is gone is an
//! `E` too ([`TaskFailed`]), so the code that continues on the actor has one error arm.

pub mod background;
pub mod lane;

use std::future::Future;
use std::pin::Pin;

use actix::prelude::*;

pub use background::BackgroundPool;
pub use lane::Lane;

/// A task off the arbiter did not finish: it panicked, or its pool is gone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a task off the arbiter did not finish: {reason}")]
pub struct TaskFailed {
    pub reason: String,
}

/// Which threads run a piece of blocking work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// The blocking pool: a client may be waiting for it.
    Normal,
    /// The [`BackgroundPool`]'s threads: nobody waits for it.
    Background,
}

impl Priority {
    /// [`Priority::Normal`] when someone waits for the work, [`Priority::Background`] otherwise.
    pub fn waited_for(waited: bool) -> Priority {
        if waited {
            Priority::Normal
        } else {
            Priority::Background
        }
    }
}

/// Work handed to a pool, as a future of its result.
pub type Work<T, E> = Pin<Box<dyn Future<Output = Result<T, E>>>>;

/// Runs `work` on the blocking pool.
pub fn blocking<T, E, F>(work: F) -> Work<T, E>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<TaskFailed> + Send + 'static,
{
    let task = tokio::task::spawn_blocking(work);
    Box::pin(async move { task.await.unwrap_or_else(|e| Err(E::from(TaskFailed { reason: e.to_string() }))) })
}

/// Runs `work` on the blocking pool, then `then` on the actor with its result.
/// `ctx.spawn` it to go on meanwhile, `ctx.wait` it to hold the actor's other messages back.
pub fn then_on_actor<A, T, E, R, F, C>(work: F, then: C) -> impl ActorFuture<A, Output = R>
where
    A: Actor,
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<TaskFailed> + Send + 'static,
    C: FnOnce(Result<T, E>, &mut A, &mut A::Context) -> R + 'static,
{
    actix::fut::wrap_future::<_, A>(blocking(work)).map(then)
}

/// A handler's reply made on the blocking pool and finished on the actor, no other message of
/// the actor's handled in between: what a change to durable state answers with (check, write,
/// apply, as one step).
pub fn atomic<A, T, E, R, F, C>(work: F, then: C) -> AtomicResponse<A, R>
where
    A: Actor<Context = Context<A>>,
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<TaskFailed> + Send + 'static,
    C: FnOnce(Result<T, E>, &mut A, &mut Context<A>) -> R + 'static,
    R: 'static,
{
    AtomicResponse::new(Box::pin(then_on_actor(work, then)))
}

/// An [`AtomicResponse`] that is ready at once (a refusal before any work).
pub fn atomic_now<A, R>(reply: R) -> AtomicResponse<A, R>
where
    A: Actor<Context = Context<A>>,
    R: 'static,
{
    AtomicResponse::new(Box::pin(actix::fut::ready(reply)))
}
