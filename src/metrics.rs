//! The process's series for `/metrics`: counters, gauges, labelled counter families and
//! fixed-bucket duration histograms that each owner registers when it starts and then moves
//! through the handle it keeps, rendered in the Prometheus text format by one loop. Which series exist is the owners' business; none is named
//! here.
//!
//! This is the one piece of state shared outside actors. A handle is an `Arc` of atomics, so an
//! increment takes no lock and looks nothing up; only registration and scrapes take the lock.
//! Gauges that describe an actor's state (nodes, health, current seq) are not kept here: `/metrics`
//! asks the owning actor at scrape time.

use std::collections::hash_map::DefaultHasher;
use std::fmt::{self, Write};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use dashmap::DashMap;

/// A counter: only ever goes up.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge set by its one owner.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

/// Counters of one label whose values are all known at registration (e.g. a category), moved by
/// the value's position in that list.
#[derive(Debug, Clone)]
pub struct CounterArray {
    label: &'static str,
    values: Arc<[(String, AtomicU64)]>,
}

impl CounterArray {
    /// Adds `n` to the counter of the `index`-th value; an index past the list is ignored.
    pub fn add(&self, index: usize, n: u64) {
        if let Some((_, counter)) = self.values.get(index) {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
    pub fn get(&self, index: usize) -> u64 {
        self.values.get(index).map_or(0, |(_, c)| c.load(Ordering::Relaxed))
    }
    pub fn total(&self) -> u64 {
        self.values.iter().map(|(_, c)| c.load(Ordering::Relaxed)).sum()
    }
}

/// Rows of a labelled series by label values that only show up as things happen (a route, an
/// actor's id), keyed by the hash of the values (a bucket holds the rare collisions), so that
/// moving a row seen before allocates nothing. Each update looks its row up: for events at
/// request rate or rarer, not per event.
#[derive(Debug)]
struct Rows<T>(Arc<DashMap<u64, Vec<Row<T>>>>);

/// One row: its label values, in the order the labels were registered, and its value.
type Row<T> = (Vec<String>, T);

impl<T> Clone for Rows<T> {
    fn clone(&self) -> Self {
        Rows(self.0.clone())
    }
}

impl<T: Clone> Rows<T> {
    fn new() -> Self {
        Rows(Arc::new(DashMap::new()))
    }

    /// Applies `update` to the row of `values`, made by `fresh` the first time.
    fn update<R>(&self, values: &[&str], fresh: impl FnOnce() -> T, update: impl FnOnce(&mut T) -> R) -> R {
        let mut hasher = DefaultHasher::new();
        values.hash(&mut hasher);
        let mut bucket = self.0.entry(hasher.finish()).or_default();
        let same = |row: &&mut Row<T>| row.0.iter().map(String::as_str).eq(values.iter().copied());
        match bucket.iter_mut().find(same) {
            Some(row) => update(&mut row.1),
            None => {
                let mut row = fresh();
                let r = update(&mut row);
                bucket.push((values.iter().map(|v| v.to_string()).collect(), row));
                r
            }
        }
    }

    /// Every row, sorted by label values.
    fn sorted(&self) -> Vec<Row<T>> {
        let mut rows: Vec<Row<T>> = self.0.iter().flat_map(|b| b.value().clone()).collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }
}

/// Counters labelled by values that only show up as things happen.
#[derive(Debug, Clone)]
pub struct CounterFamily {
    labels: &'static [&'static str],
    rows: Rows<u64>,
}

impl CounterFamily {
    /// Counts one under `values`, one per label, in the order the labels were registered.
    pub fn inc(&self, values: &[&str]) {
        self.rows.update(values, || 0, |n| *n += 1);
    }
    pub fn total(&self) -> u64 {
        self.rows.0.iter().map(|b| b.value().iter().map(|row| row.1).sum::<u64>()).sum()
    }
}

/// A histogram of durations over fixed bucket bounds (seconds): a count per bucket, the sum and
/// the count, all atomics, so an observation takes no lock and allocates nothing.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    /// Upper bounds in seconds, ascending; `+Inf` is implied.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), one more than `bounds` for `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram(Arc::new(HistogramCells {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, d: Duration) {
        let cells = &self.0;
        let seconds = d.as_secs_f64();
        let bucket = cells.bounds.iter().position(|b| seconds <= *b).unwrap_or(cells.bounds.len());
        if let Some(n) = cells.buckets.get(bucket) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        cells.sum_nanos.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        cells.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    pub fn sum_seconds(&self) -> f64 {
        self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// `_bucket` (cumulative, as Prometheus wants them), `_sum` and `_count` lines, each with
    /// `labels` (already rendered, without braces) in front of `le`.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let cells = &self.0;
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, n) in cells.buckets.iter().enumerate() {
            cumulative += n.load(Ordering::Relaxed);
            let le = cells.bounds.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let sum = self.sum_seconds();
        // The count read after the buckets may be ahead of them by an observation in flight;
        // `+Inf` is what a consistent reader compares it to, so give the larger of the two.
        let count = cells.count.load(Ordering::Relaxed).max(cumulative);
        let _ = writeln!(out, "{name}_sum{braces} {sum}\n{name}_count{braces} {count}");
    }
}

/// Duration histograms labelled by values that show up as things happen (a route), or fixed at
/// registration (a mode: take each row's handle once with [`HistogramFamily::row`]).
#[derive(Debug, Clone)]
pub struct HistogramFamily {
    labels: &'static [&'static str],
    bounds: &'static [f64],
    rows: Rows<Histogram>,
}

impl HistogramFamily {
    /// The histogram of `values` (one per label), made on first use; a handle to keep.
    pub fn row(&self, values: &[&str]) -> Histogram {
        let bounds = self.bounds;
        self.rows.update(values, || Histogram::new(bounds), |h| h.clone())
    }

    /// Observes `d` under `values`: a lookup, for rows not known in advance.
    pub fn observe(&self, values: &[&str], d: Duration) {
        let bounds = self.bounds;
        self.rows.update(values, || Histogram::new(bounds), |h| h.observe(d));
    }

    fn total(&self) -> u64 {
        self.rows.0.iter().map(|b| b.value().iter().map(|row| row.1.count()).sum::<u64>()).sum()
    }

    /// Observations and their summed seconds, over every row.
    fn durations(&self) -> (u64, f64) {
        let mut total = (0, 0.0);
        for bucket in self.rows.0.iter() {
            for (_, h) in bucket.value() {
                total = (total.0 + h.count(), total.1 + h.sum_seconds());
            }
        }
        total
    }
}

/// A gauge computed when scraped, from atomics its owner keeps.
type ComputedGauge = Arc<dyn Fn() -> i64 + Send + Sync>;

/// A value read when scraped from outside the process's own state (the kernel); `None` when it
/// cannot be read, and then the series shows no sample.
type Reading = Arc<dyn Fn() -> Option<f64> + Send + Sync>;

/// Whether a read series only goes up or may go both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    Counter,
    Gauge,
}

#[derive(Clone)]
enum Samples {
    Counter(Counter),
    Gauge(Gauge),
    Computed(ComputedGauge),
    Read(ReadKind, Reading),
    Array(CounterArray),
    Family(CounterFamily),
    Histograms(HistogramFamily),
}

impl Samples {
    fn kind(&self) -> &'static str {
        match self {
            Samples::Counter(_) | Samples::Array(_) | Samples::Family(_) => "counter",
            Samples::Read(ReadKind::Counter, _) => "counter",
            Samples::Gauge(_) | Samples::Computed(_) | Samples::Read(ReadKind::Gauge, _) => "gauge",
            Samples::Histograms(_) => "histogram",
        }
    }

    fn same_shape(&self, other: &Samples) -> bool {
        match (self, other) {
            (Samples::Counter(_), Samples::Counter(_))
            | (Samples::Gauge(_), Samples::Gauge(_))
            | (Samples::Computed(_), Samples::Computed(_)) => true,
            (Samples::Read(a, _), Samples::Read(b, _)) => a == b,
            (Samples::Array(a), Samples::Array(b)) => {
                a.label == b.label && a.values.iter().map(|v| &v.0).eq(b.values.iter().map(|v| &v.0))
            }
            (Samples::Family(a), Samples::Family(b)) => a.labels == b.labels,
            (Samples::Histograms(a), Samples::Histograms(b)) => a.labels == b.labels && a.bounds == b.bounds,
            _ => false,
        }
    }

    fn total(&self) -> i64 {
        match self {
            Samples::Counter(c) => c.get() as i64,
            Samples::Gauge(g) => g.get(),
            Samples::Computed(read) => read(),
            Samples::Read(_, read) => read().map_or(0, |v| v as i64),
            Samples::Array(a) => a.total() as i64,
            Samples::Family(f) => f.total() as i64,
            Samples::Histograms(h) => h.total() as i64,
        }
    }
}

struct Series {
    name: &'static str,
    help: &'static str,
    samples: Samples,
}

/// Every registered series, in the order they were registered.
#[derive(Default)]
pub struct Metrics {
    series: RwLock<Vec<Series>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_list().entries(series.iter().map(|s| s.name)).finish()
    }
}

impl Metrics {
    /// Registers `samples` under `name`, or hands back the series already registered under it, so
    /// that every owner of a shared series (restarts of any actor kind, sessions of any transport)
    /// moves the same atomics.
    fn register(&self, name: &'static str, help: &'static str, samples: Samples) -> Samples {
        // A panic elsewhere while holding the lock leaves the list whole (pushes are atomic to it).
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        match series.iter().find(|s| s.name == name) {
            Some(existing) if existing.samples.same_shape(&samples) => existing.samples.clone(),
            Some(_) => {
                tracing::error!(name, "a series of this name exists with other labels or type; the new one is not scraped");
                samples
            }
            None => {
                series.push(Series { name, help, samples: samples.clone() });
                samples
            }
        }
    }

    pub fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        match self.register(name, help, Samples::Counter(Counter::default())) {
            Samples::Counter(c) => c,
            _ => Counter::default(),
        }
    }

    pub fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        match self.register(name, help, Samples::Gauge(Gauge::default())) {
            Samples::Gauge(g) => g,
            _ => Gauge::default(),
        }
    }

    /// A gauge whose value `read` computes at scrape time (it must not call back into `Metrics`).
    pub fn computed_gauge(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> i64 + Send + Sync + 'static,
    ) {
        self.register(name, help, Samples::Computed(Arc::new(read)));
    }

    /// A series whose value `read` takes at scrape time from outside the process's own state
    /// (the kernel's accounting of it); no sample while it answers `None`.
    pub fn read(
        &self,
        name: &'static str,
        help: &'static str,
        kind: ReadKind,
        read: impl Fn() -> Option<f64> + Send + Sync + 'static,
    ) {
        self.register(name, help, Samples::Read(kind, Arc::new(read)));
    }

    /// Counters of `label`, one per value of `values`, all rendered (zeros too).
    pub fn counter_array(
        &self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
        values: &[&str],
    ) -> CounterArray {
        let values: Vec<(String, AtomicU64)> = values.iter().map(|v| (v.to_string(), AtomicU64::new(0))).collect();
        let fresh = CounterArray { label, values: values.into() };
        match self.register(name, help, Samples::Array(fresh.clone())) {
            Samples::Array(a) => a,
            _ => fresh,
        }
    }

    /// Counters labelled with `labels`, a row per set of values seen.
    pub fn counter_family(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> CounterFamily {
        let fresh = CounterFamily { labels, rows: Rows::new() };
        match self.register(name, help, Samples::Family(fresh.clone())) {
            Samples::Family(f) => f,
            _ => fresh,
        }
    }

    /// Duration histograms over `bounds` (seconds, ascending) labelled with `labels`, a row per
    /// set of values seen (or taken in advance with [`HistogramFamily::row`]).
    pub fn histogram_family(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> HistogramFamily {
        let fresh = HistogramFamily { labels, bounds, rows: Rows::new() };
        match self.register(name, help, Samples::Histograms(fresh.clone())) {
            Samples::Histograms(h) => h,
            _ => fresh,
        }
    }

    /// The sum of every sample of the series `name` (all its label values); `None` if no series
    /// of that name is registered.
    pub fn total(&self, name: &str) -> Option<i64> {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        series.iter().find(|s| s.name == name).map(|s| s.samples.total())
    }

    /// The observations of the histogram series `name` (all its rows) and their summed seconds;
    /// `None` if no histogram of that name is registered.
    pub fn durations(&self, name: &str) -> Option<(u64, f64)> {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        match &series.iter().find(|s| s.name == name)?.samples {
            Samples::Histograms(h) => Some(h.durations()),
            _ => None,
        }
    }

    /// Renders every series in the Prometheus text format, appending to `out`.
    pub fn render(&self, out: &mut String) {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        for s in series.iter() {
            let name = s.name;
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {}", s.help, s.samples.kind());
            match &s.samples {
                Samples::Counter(c) => {
                    let _ = writeln!(out, "{name} {}", c.get());
                }
                Samples::Gauge(g) => {
                    let _ = writeln!(out, "{name} {}", g.get());
                }
                Samples::Computed(read) => {
                    let _ = writeln!(out, "{name} {}", read());
                }
                Samples::Read(_, read) => {
                    if let Some(v) = read() {
                        let _ = writeln!(out, "{name} {v}");
                    }
                }
                Samples::Array(a) => {
                    for (value, n) in a.values.iter() {
                        let _ = writeln!(
                            out,
                            "{name}{{{}=\"{}\"}} {}",
                            a.label,
                            escape_label(value),
                            n.load(Ordering::Relaxed)
                        );
                    }
                }
                Samples::Family(f) => {
                    for (values, n) in f.rows.sorted() {
                        let _ = writeln!(out, "{name}{{{}}} {n}", label_pairs(f.labels, &values));
                    }
                }
                Samples::Histograms(h) => {
                    for (values, histogram) in h.rows.sorted() {
                        histogram.render(out, name, &label_pairs(h.labels, &values));
                    }
                }
            }
        }
    }
}

/// `label="value",…` for a row.
fn label_pairs(labels: &[&str], values: &[String]) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .zip(values.iter())
        .map(|(label, value)| format!("{label}=\"{}\"", escape_label(value)))
        .collect();
    pairs.join(",")
}

/// Escapes a Prometheus label value.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_in_the_text_format_and_owners_share_a_name() {
        let m = Metrics::default();
        let requests = m.counter("t_requests_total", "Requests.");
        let open = m.gauge("t_open", "Open things.");
        let by_kind = m.counter_array("t_by_kind_total", "By kind.", "kind", &["a", "b"]);
        let restarts = m.counter_family("t_restarts_total", "Restarts.", &["kind", "id"]);
        let depth = requests.clone();
        m.computed_gauge("t_depth", "Computed.", move || depth.get() as i64 * 10);
        requests.add(2);
        m.counter("t_requests_total", "Requests.").inc();
        open.set(2);
        open.dec();
        by_kind.add(1, 5);
        by_kind.add(7, 1);
        restarts.inc(&["node", "n\"2"]);
        restarts.inc(&["node", "n1"]);
        let mut out = String::new();
        m.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_requests_total Requests.\n# TYPE t_requests_total counter\nt_requests_total 3\n\
             # HELP t_open Open things.\n# TYPE t_open gauge\nt_open 1\n\
             # HELP t_by_kind_total By kind.\n# TYPE t_by_kind_total counter\nt_by_kind_total{kind=\"a\"} 0\nt_by_kind_total{kind=\"b\"} 5\n\
             # HELP t_restarts_total Restarts.\n# TYPE t_restarts_total counter\nt_restarts_total{kind=\"node\",id=\"n\\\"2\"} 1\nt_restarts_total{kind=\"node\",id=\"n1\"} 1\n\
             # HELP t_depth Computed.\n# TYPE t_depth gauge\nt_depth 30\n"
        );
        assert_eq!(m.total("t_restarts_total"), Some(2));
        assert_eq!(m.total("t_by_kind_total"), Some(5));
        assert_eq!(m.total("t_nothing"), None);
        // The same name with another shape is refused: the first stays the one scraped.
        m.gauge("t_requests_total", "Not a gauge.").inc();
        assert_eq!(m.total("t_requests_total"), Some(3));
    }

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count_per_row() {
        let m = Metrics::default();
        let latency = m.histogram_family("t_seconds", "Durations.", &["mode"], &[0.001, 0.01]);
        let sync = latency.row(&["sync"]);
        sync.observe(Duration::from_micros(500));
        sync.observe(Duration::from_millis(5));
        latency.observe(&["sync"], Duration::from_secs(2));
        latency.row(&["async"]);
        let plain = m.histogram_family("t_plain_seconds", "Unlabelled.", &[], &[1.0]);
        plain.row(&[]).observe(Duration::from_millis(250));
        let mut out = String::new();
        m.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_seconds Durations.\n# TYPE t_seconds histogram\n\
             t_seconds_bucket{mode=\"async\",le=\"0.001\"} 0\nt_seconds_bucket{mode=\"async\",le=\"0.01\"} 0\n\
             t_seconds_bucket{mode=\"async\",le=\"+Inf\"} 0\nt_seconds_sum{mode=\"async\"} 0\nt_seconds_count{mode=\"async\"} 0\n\
             t_seconds_bucket{mode=\"sync\",le=\"0.001\"} 1\nt_seconds_bucket{mode=\"sync\",le=\"0.01\"} 2\n\
             t_seconds_bucket{mode=\"sync\",le=\"+Inf\"} 3\nt_seconds_sum{mode=\"sync\"} 2.0055\nt_seconds_count{mode=\"sync\"} 3\n\
             # HELP t_plain_seconds Unlabelled.\n# TYPE t_plain_seconds histogram\n\
             t_plain_seconds_bucket{le=\"1\"} 1\nt_plain_seconds_bucket{le=\"+Inf\"} 1\nt_plain_seconds_sum 0.25\nt_plain_seconds_count 1\n"
        );
        assert_eq!(m.total("t_seconds"), Some(3));
    }
}
