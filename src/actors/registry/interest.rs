//! Which event types any subscriber could want: emitters of high-rate events check it before
//! they build one, so an event nobody wants costs next to nothing.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::CompiledFilter;
use crate::messages::events::{EventType, EVENT_TYPE_COUNT};

/// How many subscribers could want each event type. Written only by the registry, read by anyone.
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

    /// Counts a subscriber with filter `f` in (`delta` > 0) or out.
    pub(super) fn add(&self, f: &CompiledFilter, delta: isize) {
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
