//! An in-process subscriber of the event registry: what `RuntimeHandle::subscribe` hands back.

use actix::prelude::*;
use futures_util::Stream;

use crate::actors::registry::EventRegistry;
use crate::messages::events::SharedEvent;
use crate::messages::registry::*;

/// An in-process subscription: replayed events first, then live ones, with no gap and no
/// duplicate. Unsubscribes when dropped.
pub struct EventSubscription {
    registry: Addr<EventRegistry>,
    subscription_id: u64,
    replay_truncated: bool,
    replay: std::collections::VecDeque<SharedEvent>,
    last_seq: u64,
    rx: tokio::sync::mpsc::Receiver<Delivery>,
}

impl EventSubscription {
    /// A subscription the registry acknowledged with `ack`, fed by `rx`.
    pub(super) fn new(registry: Addr<EventRegistry>, ack: SubscribeAck, rx: tokio::sync::mpsc::Receiver<Delivery>) -> Self {
        EventSubscription {
            registry,
            subscription_id: ack.subscription_id,
            replay_truncated: ack.replay_truncated,
            replay: ack.replay.into_iter().collect(),
            last_seq: 0,
            rx,
        }
    }

    pub fn subscription_id(&self) -> u64 {
        self.subscription_id
    }

    /// Whether the requested `since_seq` was older than the retained window.
    pub fn replay_truncated(&self) -> bool {
        self.replay_truncated
    }

    /// The next delivery (`Event`, `Lagged` or `Close`); `None` once the subscription ended.
    pub async fn next_delivery(&mut self) -> Option<Delivery> {
        if let Some(e) = self.replay.pop_front() {
            self.last_seq = e.seq;
            return Some(Delivery::Event(e));
        }
        loop {
            let d = self.rx.recv().await?;
            if let Delivery::Event(e) = &d {
                // The registry registers and computes the replay in one step, so live events
                // never repeat replayed ones; this guard keeps it so if that ever changes.
                if e.seq <= self.last_seq {
                    continue;
                }
                self.last_seq = e.seq;
            }
            return Some(d);
        }
    }

    /// The next event, skipping `Lagged` notices; `None` once the subscription ended.
    pub async fn next_event(&mut self) -> Option<SharedEvent> {
        loop {
            match self.next_delivery().await? {
                Delivery::Event(e) => return Some(e),
                Delivery::Lagged { .. } => continue,
                Delivery::Close { .. } => return None,
            }
        }
    }

    /// The stream of events (for `async-graphql` subscriptions and tests).
    pub fn into_stream(self) -> impl Stream<Item = SharedEvent> {
        futures_util::stream::unfold(self, |mut s| async move { s.next_event().await.map(|e| (e, s)) })
    }
}

impl Drop for EventSubscription {
    fn drop(&mut self) {
        self.registry.do_send(Unsubscribe { subscription_id: self.subscription_id });
    }
}
