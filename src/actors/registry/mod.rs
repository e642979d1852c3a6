//! The event registry: the one actor every event passes through. It stamps `seq` and `event_id`,
//! serializes each event once, keeps the last `events.retained` for replay, and hands the shared
//! bytes to every subscriber whose filter admits them, through each subscriber's bounded queue.
//!
//! `seq` is unique for the life of the data directory: the registry reserves blocks of sequence
//! numbers in the store ahead of use and starts past the last reservation after a restart.

mod filter;
mod interest;
mod metrics;
mod publisher;
mod subscribers;
#[cfg(test)]
mod tests;

pub use filter::CompiledFilter;
pub use interest::InterestTable;
pub use metrics::EventMetrics;
pub use publisher::EventPublisher;

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;

use crate::exec;
use crate::messages::events::{Event, EventFilter, PublishedEvent, SharedEvent};
use crate::messages::registry::*;
use crate::messages::runtime::StopRuntimeActor;
use crate::storage::Store;
use subscribers::Subscribers;

/// Meta key holding the highest sequence number the registry may use before reserving more.
pub const SEQ_RESERVATION_KEY: &str = "event_seq_reserved";
/// Sequence numbers reserved per durable write.
pub const SEQ_BLOCK: u64 = 65_536;

/// Settings the registry starts with.
pub struct RegistrySettings {
    pub retained: usize,
    pub session_queue: usize,
    /// The last sequence number that may have been used before this start.
    pub last_seq: u64,
    /// The highest sequence number already reserved in `store`.
    pub seq_reserved: u64,
}

pub struct EventRegistry {
    settings: RegistrySettings,
    store: Arc<Store>,
    metrics: Arc<EventMetrics>,
    last_seq: u64,
    seq_reserved: u64,
    reservation_in_flight: bool,
    retained: VecDeque<SharedEvent>,
    subscribers: Subscribers,
    next_subscription_id: u64,
    published: u64,
    delivered: u64,
    dropped: u64,
}

impl EventRegistry {
    pub fn new(
        settings: RegistrySettings,
        store: Arc<Store>,
        metrics: Arc<EventMetrics>,
        interest: Arc<InterestTable>,
    ) -> Self {
        EventRegistry {
            last_seq: settings.last_seq,
            seq_reserved: settings.seq_reserved,
            retained: VecDeque::with_capacity(settings.retained.min(65_536)),
            settings,
            store,
            metrics,
            reservation_in_flight: false,
            subscribers: Subscribers::new(interest),
            next_subscription_id: 1,
            published: 0,
            delivered: 0,
            dropped: 0,
        }
    }

    /// Reads the reservation left by the previous run and reserves the first block of this one.
    /// Blocks on one durable write: call it at startup, before actors run.
    pub fn reserve_first_block(store: &Store) -> Result<(u64, u64), crate::storage::StorageError> {
        let last = store.get_meta(SEQ_RESERVATION_KEY)?.unwrap_or(0);
        let reserved = last + SEQ_BLOCK;
        store.put_meta(SEQ_RESERVATION_KEY, reserved)?;
        Ok((last, reserved))
    }

    fn oldest_retained_seq(&self) -> u64 {
        self.retained.front().map(|e| e.seq).unwrap_or(0)
    }

    /// Retained events after `since_seq` that `compiled` admits, oldest first, at most `limit`.
    fn replay(&self, compiled: &CompiledFilter, since_seq: u64, limit: usize) -> (Vec<SharedEvent>, bool) {
        let start = self.retained.partition_point(|e| e.seq <= since_seq);
        let truncated = since_seq.saturating_add(1) < self.oldest_retained_seq()
            || (self.retained.is_empty() && since_seq < self.last_seq);
        let events = self
            .retained
            .range(start..)
            .filter(|e| compiled.admits_event(e))
            .take(limit)
            .cloned()
            .collect();
        (events, truncated)
    }

    fn ack(&self, subscription_id: u64, filter: &EventFilter, compiled: &CompiledFilter) -> SubscribeAck {
        let (replay, replay_truncated) = match filter.since_seq {
            Some(since) => self.replay(compiled, since, usize::MAX),
            None => (Vec::new(), false),
        };
        SubscribeAck {
            subscription_id,
            replay,
            replay_truncated,
            oldest_retained_seq: self.oldest_retained_seq(),
            current_seq: self.last_seq,
        }
    }

    /// Keeps the durable reservation ahead of `last_seq`. The write normally runs in the
    /// background half a block before it is needed.
    fn keep_seq_reserved(&mut self, ctx: &mut Context<Self>) {
        if !self.store.is_durable() {
            return;
        }
        if self.last_seq >= self.seq_reserved {
            // More than half a block was published while one fsync was in flight: block on
            // the write rather than hand out a sequence number that a restart could reuse.
            let next = self.seq_reserved + SEQ_BLOCK;
            match self.store.put_meta(SEQ_RESERVATION_KEY, next) {
                Ok(()) => self.seq_reserved = next,
                // Events stand for changes that already happened, so they still go out; but
                // after a restart their seqs could be handed out again, and operators must know.
                Err(e) => {
                    self.metrics.seq_reservation_failed();
                    tracing::error!(error = %e, "cannot reserve event sequence numbers; seqs may repeat after a restart");
                }
            }
            return;
        }
        if self.reservation_in_flight || self.seq_reserved - self.last_seq > SEQ_BLOCK / 2 {
            return;
        }
        self.reservation_in_flight = true;
        let store = self.store.clone();
        let next = self.seq_reserved + SEQ_BLOCK;
        ctx.spawn(exec::then_on_actor(
            move || store.put_meta(SEQ_RESERVATION_KEY, next),
            move |res, act: &mut Self, _| {
                act.reservation_in_flight = false;
                match res {
                    Ok(()) => act.seq_reserved = act.seq_reserved.max(next),
                    Err(e) => {
                        act.metrics.seq_reservation_failed();
                        tracing::error!(error = %e, "cannot reserve event sequence numbers");
                    }
                }
            },
        ));
    }

    /// Numbers and retains `event`: what [`Self::fan_out`] delivers.
    fn stamp(&mut self, event: Event, ctx: &mut Context<Self>) -> SharedEvent {
        let seq = self.last_seq + 1;
        let published = Arc::new(PublishedEvent::stamp(seq, event));
        self.last_seq = seq;
        self.keep_seq_reserved(ctx);
        self.published += 1;
        self.metrics.published(published.category);
        if self.retained.len() >= self.settings.retained {
            self.retained.pop_front();
        }
        self.retained.push_back(published.clone());
        published
    }

    fn fan_out(&mut self, published: &SharedEvent) {
        let outcome = self.subscribers.fan_out(published, self.settings.session_queue);
        self.delivered += outcome.delivered;
        self.dropped += outcome.dropped;
        self.metrics.delivered(published.category, outcome.delivered);
        self.metrics.dropped(published.category, outcome.dropped);
        self.metrics.subscribers_closed_lagging(outcome.closed_lagging);
    }
}

/// How often pending `lagged` notices are retried for subscribers that got no event since.
const LAGGED_NOTICE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

impl Actor for EventRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Publishers use do_send (see `Publish`); this bound only applies to requests that wait
        // for an answer (subscribe, status), which come at human or session-setup rates.
        ctx.set_mailbox_capacity(4096);
        // A subscriber that lagged hears about it with its next event; if no event comes, this
        // tells it once its queue has room, so a quiet stream does not hide a loss.
        ctx.run_interval(LAGGED_NOTICE_INTERVAL, |act, _| act.subscribers.flush_lagged_notices(act.last_seq));
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        self.subscribers.close_all();
        Running::Stop
    }
}

impl Handler<Publish> for EventRegistry {
    type Result = ();
    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) {
        let published = self.stamp(msg.event, ctx);
        self.fan_out(&published);
    }
}

impl Handler<PublishAll> for EventRegistry {
    type Result = ();
    fn handle(&mut self, msg: PublishAll, ctx: &mut Self::Context) {
        // All stamped first, then delivered back to back: a subscriber is woken once for them,
        // not once per event while the next one is stamped.
        let published: Vec<_> = msg.events.into_iter().map(|e| self.stamp(e, ctx)).collect();
        for p in &published {
            self.fan_out(p);
        }
    }
}

impl Handler<Subscribe> for EventRegistry {
    type Result = MessageResult<Subscribe>;
    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        let subscription_id = self.next_subscription_id;
        self.next_subscription_id += 1;
        let compiled = CompiledFilter::compile(&msg.filter, &msg.stream);
        let ack = self.ack(subscription_id, &msg.filter, &compiled);
        self.subscribers.add(subscription_id, msg.filter, compiled, msg.stream, msg.sink, msg.info);
        MessageResult(ack)
    }
}

impl Handler<UpdateFilter> for EventRegistry {
    type Result = Result<SubscribeAck, RegistryError>;
    fn handle(&mut self, msg: UpdateFilter, _ctx: &mut Self::Context) -> Self::Result {
        let id = msg.subscription_id;
        let stream = self
            .subscribers
            .stream_of(id)
            .ok_or(RegistryError::SubscriptionNotFound { subscription_id: id })?;
        let compiled = CompiledFilter::compile(&msg.filter, stream);
        let ack = self.ack(id, &msg.filter, &compiled);
        self.subscribers.refilter(id, msg.filter, compiled)?;
        Ok(ack)
    }
}

impl Handler<Unsubscribe> for EventRegistry {
    type Result = ();
    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Self::Context) {
        self.subscribers.unsubscribe(msg.subscription_id);
    }
}

impl Handler<CloseSubscription> for EventRegistry {
    type Result = Result<(), RegistryError>;
    fn handle(&mut self, msg: CloseSubscription, _ctx: &mut Self::Context) -> Self::Result {
        self.subscribers.close(msg.subscription_id, msg.code, msg.reason)
    }
}

impl Handler<CloseAllSubscriptions> for EventRegistry {
    type Result = ();
    fn handle(&mut self, _: CloseAllSubscriptions, _ctx: &mut Self::Context) {
        self.subscribers.close_all();
    }
}

impl Handler<StopRuntimeActor> for EventRegistry {
    type Result = ();
    fn handle(&mut self, _: StopRuntimeActor, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<ReadRetained> for EventRegistry {
    type Result = MessageResult<ReadRetained>;
    fn handle(&mut self, msg: ReadRetained, _ctx: &mut Self::Context) -> Self::Result {
        let compiled = CompiledFilter::compile(&msg.filter, &[]);
        let (events, replay_truncated) =
            self.replay(&compiled, msg.filter.since_seq.unwrap_or(0), msg.limit);
        MessageResult(RetainedEvents {
            events,
            replay_truncated: msg.filter.since_seq.is_some() && replay_truncated,
            oldest_retained_seq: self.oldest_retained_seq(),
            current_seq: self.last_seq,
        })
    }
}

impl Handler<GetRegistryStatus> for EventRegistry {
    type Result = MessageResult<GetRegistryStatus>;
    fn handle(&mut self, _: GetRegistryStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(RegistryStatus {
            active_subscriptions: self.subscribers.len(),
            websocket_sessions: self.subscribers.count(Transport::WebSocket),
            events_published: self.published,
            events_delivered: self.delivered,
            events_dropped: self.dropped,
            current_seq: self.last_seq,
            oldest_retained_seq: self.oldest_retained_seq(),
            retained: self.retained.len(),
        })
    }
}

impl Handler<ListSubscriptions> for EventRegistry {
    type Result = MessageResult<ListSubscriptions>;
    fn handle(&mut self, _: ListSubscriptions, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.subscribers.rows())
    }
}
