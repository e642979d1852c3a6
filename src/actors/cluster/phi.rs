//! The phi accrual failure detector (Hayashibara et al., 2004; as Akka and Cassandra run it):
//! instead of a fixed silence threshold, how unlikely the silence since the last heartbeat is,
//! given the intervals measured between the heartbeats before it. phi = -log10 of the
//! probability that a heartbeat comes later still; 1 means a 10% chance of a mistake, 8 one in
//! a hundred million. The membership actor keeps one per member and reads its health from it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Intervals remembered: Akka's default window.
const WINDOW: usize = 1000;

#[derive(Debug, Clone)]
pub struct PhiDetector {
    /// The intervals between the latest heartbeats, in ms.
    intervals: VecDeque<f64>,
    sum: f64,
    sum_squares: f64,
    last: Option<Instant>,
    /// The last "heartbeat" was a (re)start, not an answer: the next interval is not one.
    restarted: bool,
    /// The smallest standard deviation assumed: heartbeats that came like clockwork would make
    /// any small delay look like a death.
    min_std_ms: f64,
}

impl PhiDetector {
    /// A detector for heartbeats expected every `expected`, whose phi reaches 8 after about
    /// `convict_after` of silence when they come exactly on time (the deviation floor is set
    /// so); irregular heartbeats make it more patient.
    pub fn new(expected: Duration, convict_after: Duration) -> PhiDetector {
        let mean = expected.as_secs_f64() * 1000.0;
        let span = (convict_after.as_secs_f64() * 1000.0 - mean).max(1.0);
        // Akka's approximation reaches phi 8 at about 5.22 deviations past the mean.
        let min_std_ms = span / 5.22;
        let mut d = PhiDetector { intervals: VecDeque::new(), sum: 0.0, sum_squares: 0.0, last: None, restarted: false, min_std_ms };
        // Seeded with the expected interval, as Akka seeds its first estimate.
        d.record(mean);
        d
    }

    fn record(&mut self, ms: f64) {
        if self.intervals.len() == WINDOW {
            if let Some(old) = self.intervals.pop_front() {
                self.sum -= old;
                self.sum_squares -= old * old;
            }
        }
        self.intervals.push_back(ms);
        self.sum += ms;
        self.sum_squares += ms * ms;
    }

    /// A heartbeat arrived at `at`.
    pub fn heartbeat(&mut self, at: Instant) {
        if let Some(last) = self.last.filter(|_| !self.restarted) {
            if at > last {
                self.record(at.duration_since(last).as_secs_f64() * 1000.0);
            }
        }
        self.last = Some(at);
        self.restarted = false;
    }

    /// The member (re)started at `at`: silence counts from then, and the time to its first
    /// answer is not taken for an interval between heartbeats.
    pub fn restart(&mut self, at: Instant) {
        self.last = Some(at);
        self.restarted = true;
    }

    pub fn mean_ms(&self) -> f64 {
        self.sum / self.intervals.len().max(1) as f64
    }

    pub fn std_ms(&self) -> f64 {
        let n = self.intervals.len().max(1) as f64;
        let mean = self.mean_ms();
        (self.sum_squares / n - mean * mean).max(0.0).sqrt().max(self.min_std_ms)
    }

    /// phi at `now`: 0 before any heartbeat was timed.
    pub fn phi(&self, now: Instant) -> f64 {
        let Some(last) = self.last else { return 0.0 };
        let t = now.saturating_duration_since(last).as_secs_f64() * 1000.0;
        let y = (t - self.mean_ms()) / self.std_ms();
        // Akka's logistic approximation of the normal distribution's tail.
        let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
        let p_later = if t > self.mean_ms() { e / (1.0 + e) } else { 1.0 - 1.0 / (1.0 + e) };
        // Past about 38 deviations the probability rounds to 0: phi is as high as it goes.
        if p_later <= f64::MIN_POSITIVE {
            return f64::MAX.log10();
        }
        -p_later.log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn regular_heartbeats_convict_about_when_asked_and_irregular_ones_later() {
        let t0 = Instant::now();
        let mut d = PhiDetector::new(ms(100), ms(500));
        for i in 0..50 {
            d.heartbeat(t0 + ms(100 * i));
        }
        let last = t0 + ms(4900);
        assert!(d.phi(last + ms(100)) < 1.0, "on time: {}", d.phi(last + ms(100)));
        let at = |silence| d.phi(last + ms(silence));
        assert!(at(300) > 1.0 && at(300) < 8.0, "suspicious after 300 ms: {}", at(300));
        assert!(at(450) < 8.0 && at(550) > 8.0, "convicted near 500 ms: {} {}", at(450), at(550));
        assert!(at(2000) > at(550), "phi grows with silence");

        // Heartbeats that wander by ±150 ms make the same silence far less damning.
        let mut jittery = PhiDetector::new(ms(100), ms(500));
        let mut t = t0;
        for i in 0..50 {
            t += ms(if i % 2 == 0 { 10 } else { 310 });
            jittery.heartbeat(t);
        }
        assert!(jittery.std_ms() > 100.0);
        assert!(jittery.phi(t + ms(550)) < at(550));
    }

    #[test]
    fn no_heartbeat_yet_is_no_suspicion_and_a_restart_starts_the_silence_again() {
        let t0 = Instant::now();
        let mut d = PhiDetector::new(ms(100), ms(500));
        assert_eq!(d.phi(t0 + ms(10_000)), 0.0);
        d.heartbeat(t0);
        assert!(d.phi(t0 + ms(10_000)) > 8.0);
        d.restart(t0 + ms(10_000));
        assert!(d.phi(t0 + ms(10_050)) < 1.0);
    }
}
