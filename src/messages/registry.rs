//! Messages to and from the event registry: publish, subscribe with a filter, change the filter,
//! unsubscribe, read retained events, end every subscription at shutdown, and what a subscriber
//! receives.

use actix::prelude::*;

use crate::messages::events::{Category, Event, EventFilter, SharedEvent};

/// What a subscriber receives from the registry.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum Delivery {
    /// An event the subscriber's filter admits.
    Event(SharedEvent),
    /// Events were dropped because the subscriber's queue was full. Resubscribing with
    /// `since_seq = resume_from_seq` replays what is still retained.
    Lagged { missed: u64, resume_from_seq: u64 },
    /// The registry ends this subscription (it stayed behind, or an operator closed it). A WebSocket
    /// session closes with `code`. (A boxed `str` keeps a delivery at 24 bytes: a subscriber's
    /// channel holds its slots in blocks of 32.)
    Close { code: CloseCode, reason: Box<str> },
}

const _: () = assert!(std::mem::size_of::<Delivery>() <= 24);

/// Why a subscription was ended by the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// The subscriber stayed behind past its queue bound (WebSocket 1008, policy violation).
    StayedBehind,
    /// An operator closed it (`DELETE /api/v1/ws/connections/{id}`; WebSocket 1000).
    ClosedByOperator,
    /// The server is shutting down (WebSocket 1001, going away).
    Shutdown,
}

/// Why a delivery could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkError {
    /// The subscriber's queue is at its bound.
    Full,
    /// The subscriber is gone.
    Closed,
}

/// Where the registry puts what a subscriber receives: an actor's bounded mailbox or a bounded
/// channel. Both bounds come from `events.session_queue`.
pub trait EventSink: Send + 'static {
    /// Puts `delivery` in the subscriber's queue if there is room.
    fn try_deliver(&self, delivery: Delivery) -> Result<(), SinkError>;
    /// Tells the subscriber it is being closed, past the queue bound: one message per
    /// subscription, sent once, so the bound still holds.
    fn close(&self, code: CloseCode, reason: String);
}

impl EventSink for Recipient<Delivery> {
    fn try_deliver(&self, delivery: Delivery) -> Result<(), SinkError> {
        self.try_send(delivery).map_err(|e| match e {
            SendError::Full(_) => SinkError::Full,
            SendError::Closed(_) => SinkError::Closed,
        })
    }

    fn close(&self, code: CloseCode, reason: String) {
        // do_send ignores the mailbox bound on purpose: this is the single last message.
        self.do_send(Delivery::Close { code, reason: reason.into() });
    }
}

impl EventSink for tokio::sync::mpsc::Sender<Delivery> {
    fn try_deliver(&self, delivery: Delivery) -> Result<(), SinkError> {
        self.try_send(delivery).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => SinkError::Full,
            tokio::sync::mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
        })
    }

    fn close(&self, _code: CloseCode, _reason: String) {
        // Dropping the sender (the registry forgets the subscription right after) ends the
        // receiving stream; a channel has no room past its bound for a last word.
    }
}

/// How a subscriber is connected, for `/api/v1/ws/connections` and `/api/v1/ws/subscriptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    GraphQl,
    InProcess,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::GraphQl => "graphql",
            Transport::InProcess => "in_process",
        }
    }
}

/// Who a subscriber is, as operators see it.
#[derive(Debug, Clone)]
pub struct SubscriberInfo {
    pub transport: Transport,
    /// The stream (`events`, `cluster/nodes`, …) or GraphQL subscription field name.
    pub stream: String,
    pub peer: String,
    pub connected_at_ms: i64,
    /// The WebSocket connection it belongs to (`/api/v1/ws/connections`); `None` in-process.
    pub session_id: Option<u64>,
}

/// Registers a subscriber. The registry answers with the events to replay (if the filter has
/// `since_seq`) and, in the same step, starts live delivery: no gap and no duplicate between them.
#[derive(Message)]
#[rtype(result = "SubscribeAck")]
pub struct Subscribe {
    pub filter: EventFilter,
    /// Categories the endpoint carries; empty: all.
    pub stream: Vec<Category>,
    pub sink: Box<dyn EventSink>,
    pub info: SubscriberInfo,
}

/// The answer to [`Subscribe`] and [`UpdateFilter`].
#[derive(Debug, Clone)]
pub struct SubscribeAck {
    pub subscription_id: u64,
    /// Retained events with `seq > since_seq` that the filter admits, oldest first.
    pub replay: Vec<SharedEvent>,
    /// The requested `since_seq` is older than the retained window: events in between are gone.
    pub replay_truncated: bool,
    /// Seq of the oldest retained event, 0 when none is retained.
    pub oldest_retained_seq: u64,
    /// Seq of the newest event published so far.
    pub current_seq: u64,
}

/// Replaces a subscription's filter; replays again if the new filter has `since_seq`.
#[derive(Debug, Message)]
#[rtype(result = "Result<SubscribeAck, RegistryError>")]
pub struct UpdateFilter {
    pub subscription_id: u64,
    pub filter: EventFilter,
}

#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub subscription_id: u64,
}

/// Ends a subscription from outside (an operator): the subscriber is told, then forgotten.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct CloseSubscription {
    pub subscription_id: u64,
    pub code: CloseCode,
    pub reason: String,
}

/// Publishes an event. Actors send this with `do_send`: every event stands for a change of state
/// that already happened, so it must not be refused for a full mailbox; the registry handles each
/// in microseconds and publishers emit at the rate of state changes, so the mailbox drains.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub event: Event,
}

/// Publishes events in order, as [`Publish`] each: what a publisher gathered in one turn of its
/// thread ([`crate::actors::registry::EventPublisher`]).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PublishAll {
    pub events: Vec<Event>,
}

/// Ends every subscription with "server shutting down": the first step of a clean shutdown.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CloseAllSubscriptions;

/// Retained events admitted by `filter` with `seq > filter.since_seq`, oldest first, at most `limit`.
#[derive(Debug, Message)]
#[rtype(result = "RetainedEvents")]
pub struct ReadRetained {
    pub filter: EventFilter,
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub struct RetainedEvents {
    pub events: Vec<SharedEvent>,
    pub replay_truncated: bool,
    pub oldest_retained_seq: u64,
    pub current_seq: u64,
}

/// Counters and the current position of the registry.
#[derive(Debug, Message)]
#[rtype(result = "RegistryStatus")]
pub struct GetRegistryStatus;

#[derive(Debug, Clone, Default)]
pub struct RegistryStatus {
    pub active_subscriptions: usize,
    pub websocket_sessions: usize,
    pub events_published: u64,
    pub events_delivered: u64,
    pub events_dropped: u64,
    pub current_seq: u64,
    pub oldest_retained_seq: u64,
    pub retained: usize,
}

/// One row per live subscription.
#[derive(Debug, Message)]
#[rtype(result = "Vec<SubscriptionRow>")]
pub struct ListSubscriptions;

#[derive(Debug, Clone)]
pub struct SubscriptionRow {
    pub subscription_id: u64,
    pub info: SubscriberInfo,
    pub filter: EventFilter,
    pub delivered: u64,
    pub dropped: u64,
    pub lagging: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("no subscription with id {subscription_id}")]
    SubscriptionNotFound { subscription_id: u64 },
}
