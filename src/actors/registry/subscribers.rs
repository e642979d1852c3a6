//! The registry's subscribers and the fan-out of one event to them.
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

use std::collections::HashMap;
use std::sync::Arc;

use super::{CompiledFilter, InterestTable};
use crate::messages::events::{Category, EventFilter, EventType, SharedEvent, Severity, SubjectKind, EVENT_TYPE_COUNT};
use crate::messages::registry::{
    CloseCode, Delivery, EventSink, RegistryError, SinkError, SubscriberInfo, SubscriptionRow, Transport,
};

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
    /// Boxed: read only by listings, and a filter is a few hundred bytes that the slot table
    /// (which grows by doubling) would otherwise hold for every slot, used or not.
    filter: Box<EventFilter>,
    compiled: CompiledFilter,
    stream: Vec<Category>,
    anchor: Anchor,
    info: SubscriberInfo,
}

type Slot = u32;

// The type bitmask needs one bit per event type.
const _: () = assert!(EVENT_TYPE_COUNT <= 64);

fn type_mask(compiled: &CompiledFilter) -> u64 {
    EventType::ALL
        .iter()
        .filter(|t| compiled.wants_type(**t))
        .fold(0u64, |mask, t| mask | (1u64 << t.index()))
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

/// What one fan-out did, for the registry's counters.
#[derive(Debug, Default)]
pub(super) struct FanOut {
    pub delivered: u64,
    pub dropped: u64,
    /// Subscribers let go of because they stayed behind.
    pub closed_lagging: u64,
}

/// Every live subscription, indexed for the fan-out.
pub(super) struct Subscribers {
    interest: Arc<InterestTable>,
    hot: Vec<Option<Hot>>,
    cold: Vec<Option<Cold>>,
    free_slots: Vec<Slot>,
    slot_of: HashMap<u64, Slot>,
    by_id: [HashMap<String, Vec<Slot>>; SubjectKind::COUNT],
    by_type: Vec<Vec<Slot>>,
    visit: u64,
    /// Reused per publish to collect candidates without allocating.
    candidates: Vec<Slot>,
}

impl Subscribers {
    pub fn new(interest: Arc<InterestTable>) -> Self {
        Subscribers {
            interest,
            hot: Vec::new(),
            cold: Vec::new(),
            free_slots: Vec::new(),
            slot_of: HashMap::new(),
            by_id: Default::default(),
            by_type: vec![Vec::new(); EVENT_TYPE_COUNT],
            visit: 0,
            candidates: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    /// Live subscriptions over `transport`.
    pub fn count(&self, transport: Transport) -> usize {
        self.cold.iter().flatten().filter(|c| c.info.transport == transport).count()
    }

    /// Adds a subscription. `compiled` is `filter` compiled for `stream`.
    pub fn add(
        &mut self,
        subscription_id: u64,
        filter: EventFilter,
        compiled: CompiledFilter,
        stream: Vec<Category>,
        sink: Box<dyn EventSink>,
        info: SubscriberInfo,
    ) {
        let (anchor, check_ids) = anchor_for(&compiled);
        let cold = Cold { subscription_id, filter: Box::new(filter), compiled, stream, anchor, info };
        self.insert(sink, cold, check_ids);
    }

    /// The categories a subscription's endpoint carries.
    pub fn stream_of(&self, subscription_id: u64) -> Option<&[Category]> {
        let slot = *self.slot_of.get(&subscription_id)?;
        self.cold.get(slot as usize)?.as_ref().map(|c| c.stream.as_slice())
    }

    /// Gives a subscription a new filter (`compiled` for its stream), keeping its sink, counters
    /// and lag state: they belong to the subscription, not to its filter.
    pub fn refilter(
        &mut self,
        subscription_id: u64,
        filter: EventFilter,
        compiled: CompiledFilter,
    ) -> Result<(), RegistryError> {
        let (hot, cold) = self
            .remove(subscription_id)
            .ok_or(RegistryError::SubscriptionNotFound { subscription_id })?;
        let (anchor, check_ids) = anchor_for(&compiled);
        let new_cold = Cold { filter: Box::new(filter), compiled, anchor, ..cold };
        let new_slot = self.insert(hot.sink, new_cold, check_ids);
        if let Some(Some(new_hot)) = self.hot.get_mut(new_slot as usize) {
            new_hot.delivered = hot.delivered;
            new_hot.dropped = hot.dropped;
            new_hot.missed_run = hot.missed_run;
            new_hot.first_missed_seq = hot.first_missed_seq;
        }
        Ok(())
    }

    /// Forgets a subscription without a word to it.
    pub fn unsubscribe(&mut self, subscription_id: u64) {
        self.remove(subscription_id);
    }

    /// Ends a subscription, telling the subscriber why.
    pub fn close(&mut self, subscription_id: u64, code: CloseCode, reason: String) -> Result<(), RegistryError> {
        let (hot, _) = self
            .remove(subscription_id)
            .ok_or(RegistryError::SubscriptionNotFound { subscription_id })?;
        hot.sink.close(code, reason);
        Ok(())
    }

    /// Ends every subscription, telling each subscriber the server is going away.
    pub fn close_all(&mut self) {
        let slots: Vec<Slot> = self.slot_of.values().copied().collect();
        for slot in slots {
            if let Some((hot, _)) = self.remove_slot(slot) {
                hot.sink.close(CloseCode::Shutdown, "server shutting down".into());
            }
        }
    }

    /// One row per live subscription, by id.
    pub fn rows(&self) -> Vec<SubscriptionRow> {
        let mut rows: Vec<SubscriptionRow> = self
            .hot
            .iter()
            .zip(self.cold.iter())
            .filter_map(|(h, c)| Some((h.as_ref()?, c.as_ref()?)))
            .map(|(h, c)| SubscriptionRow {
                subscription_id: c.subscription_id,
                info: c.info.clone(),
                filter: EventFilter::clone(&c.filter),
                delivered: h.delivered,
                dropped: h.dropped,
                lagging: h.missed_run > 0,
            })
            .collect();
        rows.sort_by_key(|r| r.subscription_id);
        rows
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

    /// Hands `event` to every subscriber whose filter admits it. A subscriber that missed more
    /// than `session_queue` deliveries in a row is closed: it is not catching up.
    pub fn fan_out(&mut self, event: &SharedEvent, session_queue: usize) -> FanOut {
        self.visit += 1;
        let visit = self.visit;
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        for kind in SubjectKind::ALL {
            let index = &self.by_id[kind.index()];
            if index.is_empty() {
                continue;
            }
            for id in event.subjects.of(*kind) {
                if let Some(slots) = index.get(id) {
                    candidates.extend_from_slice(slots);
                }
            }
        }
        candidates.extend_from_slice(&self.by_type[event.event_type.index()]);

        let type_bit = 1u64 << event.event_type.index();
        let mut outcome = FanOut::default();
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
                Outcome::Delivered => outcome.delivered += 1,
                Outcome::Dropped => {
                    outcome.dropped += 1;
                    if sub.missed_run > session_queue as u64 {
                        stayed_behind.push(slot);
                    }
                }
                Outcome::Gone => gone.push(slot),
            }
        }
        self.candidates = candidates;
        for slot in gone {
            self.remove_slot(slot);
        }
        for slot in stayed_behind {
            if let Some((hot, cold)) = self.remove_slot(slot) {
                outcome.closed_lagging += 1;
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
        outcome
    }

    /// Tells subscribers that lagged and got no event since, once their queue has room.
    /// `last_seq` is the newest published seq.
    pub fn flush_lagged_notices(&mut self, last_seq: u64) {
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
