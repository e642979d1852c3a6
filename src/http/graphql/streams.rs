//! Registry subscriptions as GraphQL streams, for every domain's subscription fields: the
//! registry pushes the events a filter admits as they are published, so nothing here polls or
//! runs on a timer. Every stream is counted in `/metrics` while it lives, and against its
//! connection's [`MAX_SUBSCRIPTIONS_PER_CONNECTION`].
//!
//! Losses are never silent: when the registry dropped events because the client fell behind, the
//! stream yields an error item (`extensions.code = "lagged"`, with `missed` and
//! `resumeFromSeq`) and goes on; when the registry ends the subscription, it yields a last error
//! (`"subscription_closed"`, with the reason) and completes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use actix_web::http::StatusCode;
use async_graphql::{Context, ErrorExtensions};
use futures_util::{Stream, StreamExt};
use serde_json::json;

use super::schema::{gql_error, runtime, to_gql};
use crate::http::error::ApiError;
use crate::http::metrics::HttpMetrics;
use crate::messages::events::{now_ms, EventFilter, SharedEvent};
use crate::messages::registry::{Delivery, SubscriberInfo, Transport};
use crate::runtime::EventSubscription;

/// Most subscriptions one connection may run at once. `ws.max_sessions` bounds connections, not
/// what each carries, and every subscription is a registry subscriber with a queue of up to
/// `events.session_queue` events and a share of the fan-out work on every publish: without this,
/// one client could make the server's memory and publish cost grow without bound over a single
/// connection. A UI needs a handful (one per live view); 64 leaves ample room.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 64;

/// What a subscription stream yields: an event, or an error telling of lost events or the end.
pub(crate) type Item = async_graphql::Result<SharedEvent>;

/// Who is on the other end of a subscription connection, put in the connection data by the
/// transport so that `/api/v1/ws/subscriptions` can show it, and how many subscriptions the
/// connection runs (bounded by [`MAX_SUBSCRIPTIONS_PER_CONNECTION`]).
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Its row in the session table.
    pub session_id: u64,
    pub peer: String,
    pub connected_at_ms: i64,
    /// Subscription streams alive on this connection; every clone (one per connection) shares it.
    pub subscriptions: Arc<AtomicUsize>,
}

impl ConnectionInfo {
    /// Connection `session_id` from `peer`, connected now, with no subscription yet.
    pub fn new(session_id: u64, peer: String) -> Self {
        ConnectionInfo {
            session_id,
            peer,
            connected_at_ms: now_ms(),
            subscriptions: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// A typed subscription: each event as `view` sees it, events it does not know (`None`) left out,
/// and the stream's error items passed on as they are.
pub(crate) fn typed<T>(
    events: CountedStream,
    view: impl Fn(&SharedEvent) -> Option<async_graphql::Result<T>> + Send + 'static,
) -> impl Stream<Item = async_graphql::Result<T>> + Send + 'static
where
    T: Send + 'static,
{
    events.filter_map(move |item| {
        std::future::ready(match item {
            Ok(e) => view(&e),
            Err(e) => Some(Err(e)),
        })
    })
}

/// Registers with the registry as a GraphQL subscriber named after its field, and returns its
/// deliveries as a stream that counts itself in the metrics and against its connection's cap
/// while it lives. Every subscription field of every domain goes through here.
pub(crate) fn subscribe<'a>(
    ctx: &'a Context<'_>,
    field: &'a str,
    filter: EventFilter,
) -> Pin<Box<dyn Future<Output = async_graphql::Result<CountedStream>> + Send + 'a>> {
    // async-graphql keeps a field's future in the allocation of the stream it yields, for the
    // life of the subscription: boxed, the registration's state is freed once it is done.
    Box::pin(register(ctx, field, filter))
}

async fn register(ctx: &Context<'_>, field: &str, filter: EventFilter) -> async_graphql::Result<CountedStream> {
    let runtime = runtime(ctx)?;
    let metrics = ctx.data::<Arc<HttpMetrics>>()?;
    // Over WebSocket the transport puts the peer in the connection data; a schema executed some
    // other way (tests, in-process) has none, and says so.
    let connection = ctx.data_opt::<ConnectionInfo>();
    // Taken before registering, so concurrent subscribes on one connection cannot overshoot.
    let slot = connection
        .map(|c| ConnectionSlot::take(&c.subscriptions))
        .transpose()?;
    let (peer, connected_at_ms, session_id) = match connection {
        Some(info) => (info.peer.clone(), info.connected_at_ms, Some(info.session_id)),
        None => ("in-process".to_string(), now_ms(), None),
    };
    let info = SubscriberInfo {
        transport: Transport::GraphQl,
        stream: field.to_string(),
        peer,
        connected_at_ms,
        session_id,
    };
    let subscription = runtime
        .subscribe_as(filter, Vec::new(), info)
        .await
        .map_err(to_gql)?;
    tracing::debug!(
        field,
        subscription_id = subscription.subscription_id(),
        "graphql subscription started"
    );
    Ok(CountedStream::new(
        deliveries(subscription, runtime.shutdown_signal()).boxed(),
        metrics.clone(),
        slot,
    ))
}

/// A registry subscription as GraphQL stream items: events as they come, an error item for each
/// run of events the registry dropped (the client fell behind) after which the stream goes on,
/// and a last error item when the registry ends the subscription.
///
/// `shutdown` is the runtime's shutdown signal: an in-process subscription ends without a word
/// (the registry drops its sender), and the signal tells a shutdown apart from the other reasons.
pub(crate) fn deliveries(
    subscription: EventSubscription,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> impl Stream<Item = Item> + Send + 'static {
    struct State {
        subscription: EventSubscription,
        shutdown: tokio::sync::watch::Receiver<bool>,
        /// Seq of the last event yielded: where a client resumes after the end.
        last_seq: Option<u64>,
    }
    let state = State {
        subscription,
        shutdown,
        last_seq: None,
    };
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        let item = match state.subscription.next_delivery().await {
            Some(Delivery::Event(e)) => {
                state.last_seq = Some(e.seq);
                Ok(e)
            }
            Some(Delivery::Lagged {
                missed,
                resume_from_seq,
            }) => Err(lagged_error(missed, resume_from_seq)),
            // The reason says why (stayed behind, closed by an operator, shutdown).
            Some(Delivery::Close { reason, .. }) => {
                return Some((Err(closed_error(&reason, state.last_seq)), None));
            }
            None => {
                let reason = if *state.shutdown.borrow() {
                    "server shutting down"
                } else {
                    "the event registry ended the subscription: it stayed behind (a whole \
                     events.session_queue of events missed in a row) or an operator closed it"
                };
                return Some((Err(closed_error(reason, state.last_seq)), None));
            }
        };
        Some((item, Some(state)))
    })
}

/// The error item for events the registry dropped because the client did not keep up.
fn lagged_error(missed: u64, resume_from_seq: u64) -> async_graphql::Error {
    async_graphql::Error::new(format!(
        "{missed} events were dropped because the client fell behind; subscribe again with \
         filter.sinceSeq = {resume_from_seq} to replay those still retained"
    ))
    .extend_with(|_, ext| {
        ext.set("code", "lagged");
        ext.set("missed", missed);
        ext.set("resumeFromSeq", resume_from_seq);
    })
}

/// The last error item of a subscription the server ended.
fn closed_error(reason: &str, last_seq: Option<u64>) -> async_graphql::Error {
    async_graphql::Error::new(format!("subscription closed by the server: {reason}")).extend_with(
        |_, ext| {
            ext.set("code", "subscription_closed");
            ext.set("reason", reason);
            if let Some(seq) = last_seq {
                ext.set("resumeFromSeq", seq);
            }
        },
    )
}

/// One of a connection's [`MAX_SUBSCRIPTIONS_PER_CONNECTION`] slots, given back when dropped.
struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    fn take(count: &Arc<AtomicUsize>) -> async_graphql::Result<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_SUBSCRIPTIONS_PER_CONNECTION).then_some(n + 1)
            })
            .map_err(|_| {
                gql_error(
                    ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_subscriptions",
                        format!(
                            "this connection already runs {MAX_SUBSCRIPTIONS_PER_CONNECTION} \
                             subscriptions, the most one connection may; complete one first"
                        ),
                    )
                    .with_details(json!({ "limit": MAX_SUBSCRIPTIONS_PER_CONNECTION })),
                )
            })?;
        Ok(ConnectionSlot(count.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A subscription's deliveries, counted as an active GraphQL subscription (and holding its
/// connection slot) from creation until drop (the client completed it, the connection closed,
/// or the registry ended it).
pub(crate) struct CountedStream {
    inner: Pin<Box<dyn Stream<Item = Item> + Send>>,
    metrics: Arc<HttpMetrics>,
    /// `None` for a schema executed without a connection (in-process).
    _slot: Option<ConnectionSlot>,
}

impl CountedStream {
    fn new(
        inner: Pin<Box<dyn Stream<Item = Item> + Send>>,
        metrics: Arc<HttpMetrics>,
        slot: Option<ConnectionSlot>,
    ) -> Self {
        metrics.graphql_subscription_started();
        CountedStream {
            inner,
            metrics,
            _slot: slot,
        }
    }
}

impl Stream for CountedStream {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.metrics.graphql_subscription_ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageEngine;
    use crate::messages::events::{Event, EventType, Severity};
    use crate::messages::registry::Publish;
    use crate::messages::system::{ActorRestart, SystemEvent};
    use crate::{Config, Runtime, RuntimeHandle};
    use std::time::Duration;

    const QUEUE: usize = 4;

    fn start() -> RuntimeHandle {
        let mut config = Config::default();
        config.storage.engine = StorageEngine::Memory;
        config.events.session_queue = QUEUE;
        Runtime::start(config).expect("runtime starts")
    }

    /// Only this test's events, so nothing the cluster publishes on its own interferes.
    fn test_events() -> EventFilter {
        EventFilter {
            event_types: vec![EventType::ActorRestarted],
            ..EventFilter::default()
        }
    }

    /// Publishes `n` events and returns once the registry handled them all: each one is either
    /// queued for the subscriber or dropped by the time this returns.
    async fn publish(runtime: &RuntimeHandle, n: usize) {
        for _ in 0..n {
            let event = Event::now(
                Severity::Warning,
                "test",
                SystemEvent::ActorRestarted(ActorRestart {
                    actor_kind: "test".into(),
                    actor_id: "lag".into(),
                    reason: "test".into(),
                    restart_count: 1,
                }),
            );
            runtime
                .registry()
                .send(Publish { event })
                .await
                .expect("registry answers");
        }
    }

    async fn next<S: Stream<Item = Item> + Unpin>(stream: &mut S) -> Option<Item> {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the stream yields within the timeout")
    }

    async fn event<S: Stream<Item = Item> + Unpin>(stream: &mut S) -> SharedEvent {
        match next(stream).await {
            Some(Ok(e)) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn extensions(item: Option<Item>) -> (String, serde_json::Value) {
        let Some(Err(e)) = item else {
            panic!("expected an error item, got {item:?}")
        };
        let ext = serde_json::to_value(&e.extensions).expect("extensions serialize");
        (e.message, ext)
    }

    #[actix_rt::test]
    async fn dropped_events_are_told_then_staying_behind_ends_the_stream() {
        let runtime = start();
        let subscription = runtime.subscribe(test_events()).await.expect("subscribe");
        let mut stream = Box::pin(deliveries(subscription, runtime.shutdown_signal()));

        // The queue holds 4: two of six are dropped, fewer than a queue's worth, so the
        // subscription lives on.
        publish(&runtime, QUEUE + 2).await;
        let mut last = 0;
        for _ in 0..QUEUE {
            last = event(&mut stream).await.seq;
        }
        // The registry tells of the loss with the next event (or on its timer, once there is
        // room): either way the notice comes before the event.
        publish(&runtime, 1).await;
        let (message, ext) = extensions(next(&mut stream).await);
        assert!(message.contains("fell behind"), "{message}");
        assert_eq!(ext["code"], "lagged", "{ext}");
        assert_eq!(ext["missed"], 2, "{ext}");
        let resume = ext["resumeFromSeq"].as_u64().expect("resumeFromSeq");
        let after = event(&mut stream).await.seq;
        assert!(
            last <= resume && resume < after,
            "{last} <= {resume} < {after}"
        );

        // A full queue, then more than a queue's worth missed in a row: the registry lets go.
        publish(&runtime, QUEUE + QUEUE + 1).await;
        for _ in 0..QUEUE {
            last = event(&mut stream).await.seq;
        }
        let (message, ext) = extensions(next(&mut stream).await);
        assert_eq!(ext["code"], "subscription_closed", "{ext}");
        assert!(
            ext["reason"]
                .as_str()
                .is_some_and(|r| r.contains("stayed behind")),
            "{ext}"
        );
        assert!(message.contains("closed"), "{message}");
        assert_eq!(ext["resumeFromSeq"], last, "{ext}");
        assert!(
            next(&mut stream).await.is_none(),
            "the stream ends after the last word"
        );

        runtime.shutdown().await;
    }

    #[actix_rt::test]
    async fn a_shutdown_ends_the_stream_saying_so() {
        let runtime = start();
        let subscription = runtime.subscribe(test_events()).await.expect("subscribe");
        let mut stream = Box::pin(deliveries(subscription, runtime.shutdown_signal()));
        runtime.shutdown().await;
        let (_, ext) = extensions(next(&mut stream).await);
        assert_eq!(ext["code"], "subscription_closed", "{ext}");
        assert_eq!(ext["reason"], "server shutting down", "{ext}");
        assert!(
            ext.get("resumeFromSeq").is_none(),
            "no event was delivered: {ext}"
        );
        assert!(next(&mut stream).await.is_none());
    }

    #[test]
    fn a_connection_has_a_bounded_number_of_slots() {
        let count = Arc::new(AtomicUsize::new(0));
        let mut slots: Vec<_> = (0..MAX_SUBSCRIPTIONS_PER_CONNECTION)
            .map(|_| ConnectionSlot::take(&count).expect("a free slot"))
            .collect();
        let refused = ConnectionSlot::take(&count).err().expect("no slot left");
        let ext = serde_json::to_value(&refused.extensions).expect("extensions serialize");
        assert_eq!(ext["code"], "too_many_subscriptions", "{ext}");
        assert_eq!(
            count.load(Ordering::Acquire),
            MAX_SUBSCRIPTIONS_PER_CONNECTION
        );
        drop(slots.pop());
        slots.push(ConnectionSlot::take(&count).expect("a slot was given back"));
        assert!(ConnectionSlot::take(&count).is_err(), "and taken again");
        drop(slots);
        assert_eq!(count.load(Ordering::Acquire), 0);
    }
}
