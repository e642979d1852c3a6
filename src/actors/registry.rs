//! The event registry: the one actor every event passes through. It stamps `seq` and `event_id`,
//! serializes each event once, keeps the last `events.retained` for replay, and hands the shared
//! bytes to every subscriber whose filter admits them, through each subscriber's bounded queue.
//!
//! Publishing costs in proportion to the subscribers an event can reach, not to all subscribers:
//! a subscriber whose filter names ids is indexed under those ids (of one kind, its *anchor*);
//! one whose filter names no ids is indexed under the event types it admits. A publish looks up
//! the event's subjects and its type, and checks the rest of the filter only on those candidates.
//!
//! Subscribers live in a dense slot table split in two: what every publish touches (sink, type
//! bitmask, severity floor, counters) in one small `Hot` entry per slot, and what only listings
//! and filter changes need in `Cold`. Indexes hold slot numbers, so the fan-out loop does no
//! hashing and touches about one cache line per candidate.
//!
//! `seq` is unique for the life of the data directory: the registry reserves blocks of sequence
//! numbers in the store ahead of use and starts past the last reservation after a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use crate::messages::events::{
    Category, CompiledFilter, Event, EventFilter, EventType, PublishedEvent, Severity, SharedEvent,
    SubjectKind, EVENT_TYPE_COUNT,
};
use crate::messages::registry::*;
use crate::exec;
use crate::metrics::Metrics;
use crate::storage::Store;

/// Meta key holding the highest sequence number the registry may use before reserving more.
pub const SEQ_RESERVATION_KEY: &str = "event_seq_reserved";
/// Sequence numbers reserved per durable write.
pub const SEQ_BLOCK: u64 = 65_536;

/// How many subscribers could want each event type: emitters of high-rate events check this
/// before building one. Written only by the registry, read by anyone.
#[derive(Debug)]
pub struct InterestTable {
    per_type: [AtomicUsize; EVENT_TYPE_COUNT],
}

impl Default for InterestTable {
    fn default() -> Self {
        InterestTable { per_type: std::array::from_fn(|_| AtomicUsize::new(0)) }
    }
}

impl InterestTable {
    /// Whether any subscriber's filter admits this event type (ids and severity aside).
    pub fn wants(&self, t: EventType) -> bool {
        self.per_type[t.index()].load(Ordering::Relaxed) > 0
    }

    fn add(&self, f: &CompiledFilter, delta: isize) {
        for t in EventType::ALL {
            if f.wants_type(*t) {
                if delta > 0 {
                    self.per_type[t.index()].fetch_add(1, Ordering::Relaxed);
                } else {
                    self.per_type[t.index()].fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// How actors publish: the registry's address plus a count of what was sent, so `/metrics` can
/// show how many events wait in the registry's mailbox (actix does not expose mailbox lengths).
/// Every publisher in the runtime goes through one of these.
#[derive(Clone)]
pub struct EventPublisher {
    registry: Addr<EventRegistry>,
    metrics: Arc<Metrics>,
}

impl EventPublisher {
    pub fn new(registry: Addr<EventRegistry>, metrics: Arc<Metrics>) -> Self {
        EventPublisher { registry, metrics }
    }

    /// Publishes `event` (see [`Publish`] for why this may not be refused).
    pub fn publish(&self, event: Event) {
        self.metrics.event_enqueued();
        self.registry.do_send(Publish { event });
    }

    /// The process's counters (publishers count their own work there too).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The registry itself, for requests that wait for an answer.
    pub fn registry(&self) -> &Addr<EventRegistry> {
        &self.registry
    }
}

/// Where a subscriber is indexed.
#[derive(Debug, Clone)]
enum Anchor {
    Ids(SubjectKind, Vec<String>),
    Types(Vec<EventType>),
}

/// What a publish reads and writes for a candidate subscriber.
struct Hot {
    sink: Box<dyn EventSink>,
    /// Bit `t` set: the filter admits event type `t` (see [`EventType::index`]).
    types: u64,
    min_severity: Severity,
    /// The filter has id lists the index lookup does not prove, so they are checked.
    check_ids: bool,
    /// The publish that last looked at this subscriber, so an event with several matching ids is
    /// delivered once.
    last_visit: u64,
    /// Deliveries dropped since the last one that got through.
    missed_run: u64,
    first_missed_seq: Option<u64>,
    delivered: u64,
    dropped: u64,
}

/// What only listings, filter changes and the id check need.
struct Cold {
    subscription_id: u64,
    filter: EventFilter,
    compiled: CompiledFilter,
    stream: Vec<Category>,
    anchor: Anchor,
    info: SubscriberInfo,
}

/// Settings the registry starts with.
pub struct RegistrySettings {
    pub retained: usize,
    pub session_queue: usize,
    /// The last sequence number that may have been used before this start.
    pub last_seq: u64,
    /// The highest sequence number already reserved in `store`.
    pub seq_reserved: u64,
}

type Slot = u32;

pub struct EventRegistry {
    settings: RegistrySettings,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    interest: Arc<InterestTable>,
    last_seq: u64,
    seq_reserved: u64,
    reservation_in_flight: bool,
    retained: VecDeque<SharedEvent>,
    hot: Vec<Option<Hot>>,
    cold: Vec<Option<Cold>>,
    free_slots: Vec<Slot>,
    slot_of: HashMap<u64, Slot>,
    next_subscription_id: u64,
    by_id: [HashMap<String, Vec<Slot>>; SubjectKind::ALL.len()],
    by_type: Vec<Vec<Slot>>,
    visit: u64,
    /// Reused per publish to collect candidates without allocating.
    candidates: Vec<Slot>,
    published: u64,
    delivered: u64,
    dropped: u64,
}

fn type_mask(compiled: &CompiledFilter) -> u64 {
    EventType::ALL
        .iter()
        .filter(|t| compiled.wants_type(**t))
        .fold(0u64, |mask, t| mask | (1u64 << t.index()))
}

// The type bitmask needs one bit per event type.
const _: () = assert!(EVENT_TYPE_COUNT <= 64);

impl EventRegistry {
    pub fn new(
        settings: RegistrySettings,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        interest: Arc<InterestTable>,
    ) -> Self {
        EventRegistry {
            last_seq: settings.last_seq,
            seq_reserved: settings.seq_reserved,
            retained: VecDeque::with_capacity(settings.retained.min(65_536)),
            settings,
            store,
            metrics,
            interest,
            reservation_in_flight: false,
            hot: Vec::new(),
            cold: Vec::new(),
            free_slots: Vec::new(),
            slot_of: HashMap::new(),
            next_subscription_id: 1,
            by_id: Default::default(),
            by_type: vec![Vec::new(); EVENT_TYPE_COUNT],
            visit: 0,
            candidates: Vec::new(),
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

    fn index(&mut self, slot: Slot, anchor: &Anchor) {
        match anchor {
            Anchor::Ids(kind, ids) => {
                for i in ids {
                    self.by_id[kind.index()].entry(i.clone()).or_default().push(slot);
                }
            }
            Anchor::Types(types) => {
                for t in types {
                    self.by_type[t.index()].push(slot);
                }
            }
        }
    }

    fn unindex(&mut self, slot: Slot, anchor: &Anchor) {
        match anchor {
            Anchor::Ids(kind, ids) => {
                let map = &mut self.by_id[kind.index()];
                for i in ids {
                    if let Some(v) = map.get_mut(i) {
                        v.retain(|s| *s != slot);
                        if v.is_empty() {
                            map.remove(i);
                        }
                    }
                }
            }
            Anchor::Types(types) => {
                for t in types {
                    self.by_type[t.index()].retain(|s| *s != slot);
                }
            }
        }
    }

    /// The anchor of a filter, and whether ids must still be checked after an index hit.
    fn anchor_for(compiled: &CompiledFilter) -> (Anchor, bool) {
        // The id list with the fewest ids narrows the candidates most.
        match compiled.ids.iter().min_by_key(|(_, ids)| ids.len()) {
            Some((kind, ids)) => {
                let mut ids = ids.clone();
                ids.sort();
                ids.dedup();
                // An index hit proves the anchor's list; only other lists need checking.
                (Anchor::Ids(*kind, ids), compiled.ids.len() > 1)
            }
            None => (
                Anchor::Types(EventType::ALL.iter().copied().filter(|t| compiled.wants_type(*t)).collect()),
                false,
            ),
        }
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

    fn insert(&mut self, sink: Box<dyn EventSink>, cold: Cold, check_ids: bool) -> Slot {
        let hot = Hot {
            sink,
            types: type_mask(&cold.compiled),
            min_severity: cold.compiled.min_severity,
            check_ids,
            last_visit: 0,
            missed_run: 0,
            first_missed_seq: None,
            delivered: 0,
            dropped: 0,
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.hot[slot as usize] = Some(hot);
                slot
            }
            None => {
                self.hot.push(Some(hot));
                self.cold.push(None);
                (self.hot.len() - 1) as Slot
            }
        };
        self.interest.add(&cold.compiled, 1);
        self.slot_of.insert(cold.subscription_id, slot);
        let anchor = cold.anchor.clone();
        self.cold[slot as usize] = Some(cold);
        self.index(slot, &anchor);
        slot
    }

    /// Forgets a subscription; answers its sink so the caller can tell it why.
    fn remove_slot(&mut self, slot: Slot) -> Option<(Hot, Cold)> {
        let hot = self.hot.get_mut(slot as usize)?.take()?;
        let cold = self.cold.get_mut(slot as usize)?.take()?;
        self.unindex(slot, &cold.anchor);
        self.interest.add(&cold.compiled, -1);
        self.slot_of.remove(&cold.subscription_id);
        self.free_slots.push(slot);
        Some((hot, cold))
    }

    fn remove(&mut self, subscription_id: u64) -> Option<(Hot, Cold)> {
        let slot = *self.slot_of.get(&subscription_id)?;
        self.remove_slot(slot)
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

    fn publish(&mut self, event: Event, ctx: &mut Context<Self>) {
        let seq = self.last_seq + 1;
        let published = match PublishedEvent::stamp(seq, event) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                // A payload of plain fields cannot fail to serialize; if one ever does, the event
                // is lost loudly rather than delivered half-made.
                tracing::error!(error = %e, "event could not be serialized; dropped");
                return;
            }
        };
        self.last_seq = seq;
        self.keep_seq_reserved(ctx);
        self.published += 1;
        self.metrics.event_published(published.category);
        if self.retained.len() >= self.settings.retained {
            self.retained.pop_front();
        }
        self.retained.push_back(published.clone());
        self.fan_out(&published);
    }

    fn fan_out(&mut self, event: &SharedEvent) {
        self.visit += 1;
        let visit = self.visit;
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        for kind in SubjectKind::ALL {
            let index = &self.by_id[kind.index()];
            if index.is_empty() {
                continue;
            }
            for id in event.subjects.of(kind) {
                if let Some(slots) = index.get(id) {
                    candidates.extend_from_slice(slots);
                }
            }
        }
        candidates.extend_from_slice(&self.by_type[event.event_type.index()]);

        let type_bit = 1u64 << event.event_type.index();
        let (mut delivered, mut dropped) = (0u64, 0u64);
        let mut gone = Vec::new();
        let mut stayed_behind = Vec::new();
        for &slot in candidates.iter() {
            let Some(Some(sub)) = self.hot.get_mut(slot as usize) else { continue };
            if sub.last_visit == visit || sub.types & type_bit == 0 || event.severity < sub.min_severity {
                continue;
            }
            if sub.check_ids {
                let admitted = match self.cold.get(slot as usize) {
                    Some(Some(cold)) => cold.compiled.admits_event(event),
                    _ => false,
                };
                if !admitted {
                    continue;
                }
            }
            sub.last_visit = visit;
            match deliver(sub, event) {
                Outcome::Delivered => delivered += 1,
                Outcome::Dropped => {
                    dropped += 1;
                    // A subscriber that missed a whole queue's worth in a row is not catching up.
                    if sub.missed_run > self.settings.session_queue as u64 {
                        stayed_behind.push(slot);
                    }
                }
                Outcome::Gone => gone.push(slot),
            }
        }
        self.candidates = candidates;
        self.delivered += delivered;
        self.dropped += dropped;
        self.metrics.events_delivered(event.category, delivered);
        self.metrics.events_dropped(event.category, dropped);
        for slot in gone {
            self.remove_slot(slot);
        }
        for slot in stayed_behind {
            if let Some((hot, cold)) = self.remove_slot(slot) {
                self.metrics.subscriber_closed_lagging();
                tracing::warn!(
                    subscription_id = cold.subscription_id,
                    missed = hot.missed_run,
                    "closing a subscriber that stayed behind"
                );
                hot.sink.close(
                    CloseCode::StayedBehind,
                    format!("stayed behind: {} events missed in a row", hot.missed_run),
                );
            }
        }
    }

    /// Ends every subscription, telling each subscriber the server is going away.
    pub(crate) fn close_all(&mut self) {
        let slots: Vec<Slot> = self.slot_of.values().copied().collect();
        for slot in slots {
            if let Some((hot, _)) = self.remove_slot(slot) {
                hot.sink.close(CloseCode::Shutdown, "server shutting down".into());
            }
        }
    }

    fn flush_lagged_notices(&mut self) {
        let last_seq = self.last_seq;
        let mut gone = Vec::new();
        for (slot, sub) in self.hot.iter_mut().enumerate() {
            let Some(sub) = sub.as_mut().filter(|s| s.missed_run > 0) else { continue };
            let resume_from_seq = sub.first_missed_seq.unwrap_or(last_seq).saturating_sub(1);
            match sub.sink.try_deliver(Delivery::Lagged { missed: sub.missed_run, resume_from_seq }) {
                Ok(()) => {
                    sub.missed_run = 0;
                    sub.first_missed_seq = None;
                }
                Err(SinkError::Full) => {}
                Err(SinkError::Closed) => gone.push(slot as Slot),
            }
        }
        for slot in gone {
            self.remove_slot(slot);
        }
    }
}

/// How often pending `lagged` notices are retried for subscribers that got no event since.
const LAGGED_NOTICE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

enum Outcome {
    Delivered,
    Dropped,
    Gone,
}

fn deliver(sub: &mut Hot, event: &SharedEvent) -> Outcome {
    if sub.missed_run > 0 {
        let resume_from_seq = sub.first_missed_seq.unwrap_or(event.seq).saturating_sub(1);
        match sub.sink.try_deliver(Delivery::Lagged { missed: sub.missed_run, resume_from_seq }) {
            Ok(()) => {
                sub.missed_run = 0;
                sub.first_missed_seq = None;
            }
            Err(SinkError::Full) => return missed(sub, event),
            Err(SinkError::Closed) => return Outcome::Gone,
        }
    }
    match sub.sink.try_deliver(Delivery::Event(event.clone())) {
        Ok(()) => {
            sub.delivered += 1;
            Outcome::Delivered
        }
        Err(SinkError::Full) => missed(sub, event),
        Err(SinkError::Closed) => Outcome::Gone,
    }
}

fn missed(sub: &mut Hot, event: &SharedEvent) -> Outcome {
    sub.dropped += 1;
    sub.missed_run += 1;
    sub.first_missed_seq.get_or_insert(event.seq);
    Outcome::Dropped
}

impl Actor for EventRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Publishers use do_send (see `Publish`); this bound only applies to requests that wait
        // for an answer (subscribe, status), which come at human or session-setup rates.
        ctx.set_mailbox_capacity(4096);
        // A subscriber that lagged hears about it with its next event; if no event comes, this
        // tells it once its queue has room, so a quiet stream does not hide a loss.
        ctx.run_interval(LAGGED_NOTICE_INTERVAL, |act, _| act.flush_lagged_notices());
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        self.close_all();
        Running::Stop
    }
}

impl Handler<Publish> for EventRegistry {
    type Result = ();
    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) {
        self.publish(msg.event, ctx);
    }
}

impl Handler<Subscribe> for EventRegistry {
    type Result = MessageResult<Subscribe>;
    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        let subscription_id = self.next_subscription_id;
        self.next_subscription_id += 1;
        let compiled = msg.filter.compile(&msg.stream);
        let (anchor, check_ids) = Self::anchor_for(&compiled);
        let ack = self.ack(subscription_id, &msg.filter, &compiled);
        let cold = Cold { subscription_id, filter: msg.filter, compiled, stream: msg.stream, anchor, info: msg.info };
        self.insert(msg.sink, cold, check_ids);
        MessageResult(ack)
    }
}

impl Handler<UpdateFilter> for EventRegistry {
    type Result = Result<SubscribeAck, RegistryError>;
    fn handle(&mut self, msg: UpdateFilter, _ctx: &mut Self::Context) -> Self::Result {
        let id = msg.subscription_id;
        let not_found = RegistryError::SubscriptionNotFound { subscription_id: id };
        let slot = *self.slot_of.get(&id).ok_or(not_found.clone())?;
        let (hot, cold) = self.remove_slot(slot).ok_or(not_found)?;
        let compiled = msg.filter.compile(&cold.stream);
        let (anchor, check_ids) = Self::anchor_for(&compiled);
        let ack = self.ack(id, &msg.filter, &compiled);
        let new_cold = Cold { subscription_id: id, filter: msg.filter, compiled, anchor, ..cold };
        let new_slot = self.insert(hot.sink, new_cold, check_ids);
        // Counters and lag state belong to the subscription, not to its filter.
        if let Some(Some(new_hot)) = self.hot.get_mut(new_slot as usize) {
            new_hot.delivered = hot.delivered;
            new_hot.dropped = hot.dropped;
            new_hot.missed_run = hot.missed_run;
            new_hot.first_missed_seq = hot.first_missed_seq;
        }
        Ok(ack)
    }
}

impl Handler<Unsubscribe> for EventRegistry {
    type Result = ();
    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Self::Context) {
        self.remove(msg.subscription_id);
    }
}

impl Handler<CloseSubscription> for EventRegistry {
    type Result = Result<(), RegistryError>;
    fn handle(&mut self, msg: CloseSubscription, _ctx: &mut Self::Context) -> Self::Result {
        let (hot, _) = self
            .remove(msg.subscription_id)
            .ok_or(RegistryError::SubscriptionNotFound { subscription_id: msg.subscription_id })?;
        hot.sink.close(msg.code, msg.reason);
        Ok(())
    }
}

impl Handler<ReadRetained> for EventRegistry {
    type Result = MessageResult<ReadRetained>;
    fn handle(&mut self, msg: ReadRetained, _ctx: &mut Self::Context) -> Self::Result {
        let compiled = msg.filter.compile(&[]);
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
        let live = || self.cold.iter().flatten();
        MessageResult(RegistryStatus {
            active_subscriptions: self.slot_of.len(),
            websocket_sessions: live().filter(|c| c.info.transport == Transport::WebSocket).count(),
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
        let mut rows: Vec<SubscriptionRow> = self
            .hot
            .iter()
            .zip(self.cold.iter())
            .filter_map(|(h, c)| Some((h.as_ref()?, c.as_ref()?)))
            .map(|(h, c)| SubscriptionRow {
                subscription_id: c.subscription_id,
                info: c.info.clone(),
                filter: c.filter.clone(),
                delivered: h.delivered,
                dropped: h.dropped,
                lagging: h.missed_run > 0,
            })
            .collect();
        rows.sort_by_key(|r| r.subscription_id);
        MessageResult(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::events::*;

    fn registry(session_queue: usize) -> (Addr<EventRegistry>, Arc<InterestTable>) {
        let interest = Arc::new(InterestTable::default());
        let settings = RegistrySettings { retained: 100, session_queue, last_seq: 0, seq_reserved: u64::MAX };
        let addr = EventRegistry::new(
            settings,
            Arc::new(Store::memory()),
            Arc::new(Metrics::default()),
            interest.clone(),
        )
        .start();
        (addr, interest)
    }

    fn info() -> SubscriberInfo {
        SubscriberInfo { transport: Transport::InProcess, stream: "test".into(), peer: "test".into(), connected_at_ms: 0 }
    }

    fn restart_of(kind: &str, id: &str) -> Event {
        Event::now(
            Severity::Warning,
            "test",
            EventPayload::ActorRestarted(ActorRestart {
                actor_kind: kind.into(),
                actor_id: id.into(),
                reason: "test".into(),
                restart_count: 1,
            }),
        )
    }

    async fn subscribe(
        addr: &Addr<EventRegistry>,
        filter: EventFilter,
        queue: usize,
    ) -> (SubscribeAck, tokio::sync::mpsc::Receiver<Delivery>) {
        let (tx, rx) = tokio::sync::mpsc::channel(queue);
        let ack = addr
            .send(Subscribe { filter, stream: vec![], sink: Box::new(tx), info: info() })
            .await
            .expect("registry answers");
        (ack, rx)
    }

    #[actix_rt::test]
    async fn interest_table_follows_subscriptions() {
        let (addr, interest) = registry(8);
        assert!(!interest.wants(EventType::BlockTransfer));
        let filter = EventFilter { event_types: vec![EventType::BlockTransfer], ..Default::default() };
        let (ack, _rx) = subscribe(&addr, filter, 8).await;
        assert!(interest.wants(EventType::BlockTransfer));
        assert!(!interest.wants(EventType::NodeJoined));
        addr.send(Unsubscribe { subscription_id: ack.subscription_id }).await.expect("answers");
        assert!(!interest.wants(EventType::BlockTransfer));
    }

    #[actix_rt::test]
    async fn only_admitted_subscribers_receive_and_each_once() {
        let (addr, _) = registry(8);
        let (_a, mut node_2) =
            subscribe(&addr, EventFilter { node_ids: vec!["node-2".into(), "node-2".into()], ..Default::default() }, 8).await;
        let (_b, mut node_3) = subscribe(&addr, EventFilter { node_ids: vec!["node-3".into()], ..Default::default() }, 8).await;
        addr.send(Publish { event: restart_of("node", "node-2") }).await.expect("answers");
        addr.send(Publish { event: restart_of("node", "node-3") }).await.expect("answers");
        let first = node_2.recv().await.expect("delivery");
        let Delivery::Event(e) = first else { panic!("expected an event") };
        assert_eq!(e.subjects.node_ids, vec!["node-2"]);
        let Delivery::Event(e) = node_3.recv().await.expect("delivery") else { panic!("expected an event") };
        assert_eq!(e.subjects.node_ids, vec!["node-3"]);
        // Nothing else is queued for node-2's subscriber: node-3's event did not reach it, and
        // its own event came once although its filter named node-2 twice.
        assert!(node_2.try_recv().is_err());
    }

    #[actix_rt::test]
    async fn a_full_queue_drops_then_tells_lagged_with_where_to_resume() {
        // The channel holds 2; the registry closes a subscriber only after 8 misses in a row.
        let (addr, _) = registry(8);
        let (_ack, mut rx) = subscribe(&addr, EventFilter::default(), 2).await;
        for _ in 0..5 {
            addr.send(Publish { event: restart_of("node", "node-1") }).await.expect("answers");
        }
        // Two fit; seq 3, 4 and 5 were dropped.
        for expected in [1, 2] {
            let Some(Delivery::Event(e)) = rx.recv().await else { panic!("expected an event") };
            assert_eq!(e.seq, expected);
        }
        addr.send(Publish { event: restart_of("node", "node-1") }).await.expect("answers");
        match rx.recv().await {
            Some(Delivery::Lagged { missed, resume_from_seq }) => {
                assert_eq!(missed, 3);
                assert_eq!(resume_from_seq, 2);
            }
            other => panic!("expected lagged, got {other:?}"),
        }
        let Some(Delivery::Event(e)) = rx.recv().await else { panic!("expected an event") };
        assert_eq!(e.seq, 6);
    }

    #[actix_rt::test]
    async fn a_subscriber_that_misses_a_whole_queue_in_a_row_is_closed() {
        let (addr, interest) = registry(4);
        let filter = EventFilter { event_types: vec![EventType::ActorRestarted], ..Default::default() };
        let (_ack, mut rx) = subscribe(&addr, filter, 1).await;
        for _ in 0..6 {
            addr.send(Publish { event: restart_of("node", "node-1") }).await.expect("answers");
        }
        // One fit, then five misses in a row (> 4): the registry let go of the sender.
        assert!(matches!(rx.recv().await, Some(Delivery::Event(_))));
        assert!(rx.recv().await.is_none(), "the subscription should have ended");
        assert!(!interest.wants(EventType::ActorRestarted));
    }

    #[actix_rt::test]
    async fn replay_and_live_meet_with_no_gap_and_no_duplicate_on_the_raw_channel() {
        let (addr, _) = registry(64);
        for _ in 0..5 {
            addr.send(Publish { event: restart_of("node", "node-1") }).await.expect("answers");
        }
        let filter = EventFilter { since_seq: Some(2), ..Default::default() };
        let (ack, mut rx) = subscribe(&addr, filter, 64).await;
        let replayed: Vec<u64> = ack.replay.iter().map(|e| e.seq).collect();
        assert_eq!(replayed, vec![3, 4, 5]);
        assert_eq!(ack.current_seq, 5);
        for _ in 0..2 {
            addr.send(Publish { event: restart_of("node", "node-1") }).await.expect("answers");
        }
        // The channel carries exactly what came after the replay: no session-side guard here.
        for expected in [6, 7] {
            let Some(Delivery::Event(e)) = rx.recv().await else { panic!("expected an event") };
            assert_eq!(e.seq, expected);
        }
        assert!(rx.try_recv().is_err(), "nothing else was delivered");
    }
}
