//! An instance's Cache Fusion statistics, counted as blocks arrive, as Oracle's
//! `V$INSTANCE_CACHE_TRANSFER` shows them, with the receive times behind their average and p99.

use std::collections::VecDeque;

use crate::messages::rac::CacheTransferStats;
use crate::model::rac::{LockMode, TransferKind};

/// Receive times kept for the p99: the latest this many.
const RECENT: usize = 4096;

/// The latest `cap` measurements (micros): their mean and p99.
#[derive(Debug)]
pub struct RecentSamples {
    cap: usize,
    recent: VecDeque<u64>,
    sum: u64,
}

impl RecentSamples {
    pub fn new(cap: usize) -> RecentSamples {
        RecentSamples { cap: cap.max(1), recent: VecDeque::new(), sum: 0 }
    }

    pub fn push(&mut self, v: u64) {
        if self.recent.len() == self.cap {
            self.sum -= self.recent.pop_front().unwrap_or(0);
        }
        self.recent.push_back(v);
        self.sum += v;
    }

    /// 0 with no sample.
    pub fn mean(&self) -> f64 {
        if self.recent.is_empty() { 0.0 } else { self.sum as f64 / self.recent.len() as f64 }
    }

    /// 0 with no sample.
    pub fn p99(&self) -> u64 {
        let mut sorted: Vec<u64> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        sorted.get((sorted.len() * 99).div_ceil(100).saturating_sub(1)).copied().unwrap_or(0)
    }
}

#[derive(Debug)]
pub struct TransferStats {
    counts: CacheTransferStats,
    pub grants_without_transfer: u64,
    pub disk_reads: u64,
    pub disk_writes: u64,
    pub invalidations: u64,
    pub blocks_served: u64,
    pub lost: u64,
    receive_total_micros: u64,
    received: u64,
    recent: RecentSamples,
}

impl Default for TransferStats {
    fn default() -> Self {
        TransferStats {
            counts: CacheTransferStats::default(),
            grants_without_transfer: 0,
            disk_reads: 0,
            disk_writes: 0,
            invalidations: 0,
            blocks_served: 0,
            lost: 0,
            receive_total_micros: 0,
            received: 0,
            recent: RecentSamples::new(RECENT),
        }
    }
}

impl TransferStats {
    /// A block received from another instance's cache for a lock in `mode`.
    pub fn received(&mut self, mode: LockMode, kind: TransferKind, busy: bool, micros: u64) {
        let c = &mut self.counts;
        let (total, two, three, busy_count) = if mode == LockMode::Exclusive {
            (&mut c.current_block, &mut c.current_2hop, &mut c.current_3hop, &mut c.current_busy)
        } else {
            (&mut c.cr_block, &mut c.cr_2hop, &mut c.cr_3hop, &mut c.cr_busy)
        };
        *total += 1;
        match kind {
            TransferKind::TwoWay => *two += 1,
            TransferKind::ThreeWay => *three += 1,
            TransferKind::Disk | TransferKind::Local => {}
        }
        if busy {
            *busy_count += 1;
        }
        self.receive_total_micros += micros;
        self.received += 1;
        self.recent.push(micros);
    }

    pub fn view(&self) -> CacheTransferStats {
        CacheTransferStats {
            grants_without_transfer: self.grants_without_transfer,
            disk_reads: self.disk_reads,
            disk_writes: self.disk_writes,
            invalidations: self.invalidations,
            blocks_served: self.blocks_served,
            lost: self.lost,
            receive_micros_avg: if self.received == 0 { 0.0 } else { self.receive_total_micros as f64 / self.received as f64 },
            receive_micros_p99: self.recent.p99(),
            ..self.counts.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_count_by_mode_and_hops_and_times_give_average_and_p99() {
        let mut s = TransferStats::default();
        for i in 1..=100 {
            s.received(LockMode::Shared, TransferKind::ThreeWay, false, i);
        }
        s.received(LockMode::Exclusive, TransferKind::TwoWay, true, 1000);
        let v = s.view();
        assert_eq!((v.cr_block, v.cr_3hop, v.cr_2hop, v.current_block, v.current_2hop, v.current_busy), (100, 100, 0, 1, 1, 1));
        assert_eq!(v.receive_micros_p99, 100);
        assert!((v.receive_micros_avg - (5050.0 + 1000.0) / 101.0).abs() < 1e-9);
    }
}
