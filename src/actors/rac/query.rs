//! Parallel query: a scan of a range of blocks split into `dop` ranges, each read by one
//! instance through its own cache (shared locks, Cache Fusion: the latest acknowledged writes),
//! its rows filtered and aggregated there, the partial results merged. `ParallelQueryActor`
//! runs them, keeps their statistics and publishes `query_started` / `query_completed`; the
//! rows, the split and the aggregation are plain functions, tested here.

use std::collections::BTreeMap;
use std::time::Instant;

use actix::prelude::*;

use super::instance::RacInstanceActor;
use crate::actors::registry::EventPublisher;
use crate::messages::events::{Event, Severity};
use crate::messages::rac::*;
use crate::model::rac::BlockId;

/// Most blocks one query may scan.
pub const MAX_SCAN_BLOCKS: u64 = 100_000;
/// Most slaves a query may run.
pub const MAX_DOP: usize = 64;

/// A row: its `name=value` pairs, in order.
type Row<'a> = Vec<(&'a str, &'a str)>;

/// The rows a block holds: each non-empty line, `name=value` pairs separated by commas (a pair
/// without `=` is a name with an empty value).
fn rows(data: &str) -> impl Iterator<Item = Row<'_>> {
    data.lines().filter(|l| !l.trim().is_empty()).map(|line| line.split(',').map(|pair| pair.split_once('=').map_or((pair.trim(), ""), |(k, v)| (k.trim(), v.trim()))).collect())
}

fn field<'a>(row: &Row<'a>, name: &str) -> Option<&'a str> {
    row.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// One group's running aggregate.
#[derive(Debug, Clone, Default, PartialEq)]
struct Acc {
    rows: u64,
    /// Numeric values seen: their count, sum, min and max.
    values: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

impl Acc {
    fn add(&mut self, value: Option<f64>) {
        self.rows += 1;
        if let Some(v) = value {
            self.values += 1;
            self.sum += v;
            self.min = Some(self.min.map_or(v, |m| m.min(v)));
            self.max = Some(self.max.map_or(v, |m| m.max(v)));
        }
    }

    fn merge(&mut self, other: &Acc) {
        self.rows += other.rows;
        self.values += other.values;
        self.sum += other.sum;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn value(&self, aggregate: Aggregate) -> Option<f64> {
        match aggregate {
            Aggregate::Count => Some(self.rows as f64),
            Aggregate::Sum => (self.values > 0).then_some(self.sum),
            Aggregate::Min => self.min,
            Aggregate::Max => self.max,
            Aggregate::Avg => (self.values > 0).then(|| self.sum / self.values as f64),
        }
    }
}

/// A slave's result: per group, and how many rows it read.
#[derive(Debug, Default)]
struct Partial {
    groups: BTreeMap<Option<String>, Acc>,
    rows_scanned: u64,
}

impl Partial {
    fn scan(&mut self, q: &ParallelQuery, data: &str) {
        for row in rows(data) {
            self.rows_scanned += 1;
            if let Some((column, value)) = &q.filter {
                if field(&row, column) != Some(value.as_str()) {
                    continue;
                }
            }
            let group = q.group_by.as_ref().map(|g| field(&row, g).unwrap_or("").to_string());
            let value = q.column.as_ref().and_then(|c| field(&row, c)).and_then(|v| v.parse::<f64>().ok());
            self.groups.entry(group).or_default().add(value);
        }
    }
}

/// The blocks `first..=last` split into at most `dop` contiguous ranges, each given to an
/// instance in turn.
fn split(first: BlockId, last: BlockId, dop: usize, instances: &[String]) -> Vec<(String, BlockId, BlockId)> {
    let total = last.block - first.block + 1;
    let parts = (dop as u64).clamp(1, total);
    let (each, extra) = (total / parts, total % parts);
    let mut out = Vec::with_capacity(parts as usize);
    let mut start = first.block;
    for i in 0..parts {
        let len = each + u64::from(i < extra);
        let instance = instances[i as usize % instances.len()].clone();
        out.push((instance, BlockId { file: first.file, block: start }, BlockId { file: first.file, block: start + len - 1 }));
        start += len;
    }
    out
}

fn plan_text(q: &ParallelQuery, slaves: &[(String, BlockId, BlockId)]) -> String {
    let agg = match q.aggregate {
        Aggregate::Count => "count(*)".to_string(),
        a => format!("{}({})", format!("{a:?}").to_lowercase(), q.column.as_deref().unwrap_or("?")),
    };
    let filter = q.filter.as_ref().map(|(c, v)| format!(" where {c} = '{v}'")).unwrap_or_default();
    let group = q.group_by.as_ref().map(|g| format!(" group by {g}")).unwrap_or_default();
    let parts: Vec<String> = slaves.iter().map(|(i, a, b)| format!("{i}: {a}-{b}")).collect();
    format!("select {agg} from blocks {}-{}{filter}{group} (dop {}; {})", q.first, q.last, slaves.len(), parts.join(", "))
}

pub struct ParallelQueryActor {
    instances: BTreeMap<String, Addr<RacInstanceActor>>,
    events: EventPublisher,
    next: u64,
    stats: ParallelQueryStats,
    duration_total_ms: f64,
}

impl ParallelQueryActor {
    pub fn new(instances: BTreeMap<String, Addr<RacInstanceActor>>, events: EventPublisher) -> ParallelQueryActor {
        let per_instance = instances.keys().map(|i| InstanceScanTotals { instance_id: i.clone(), ..InstanceScanTotals::default() }).collect();
        ParallelQueryActor { instances, events, next: 0, stats: ParallelQueryStats { per_instance, ..ParallelQueryStats::default() }, duration_total_ms: 0.0 }
    }

    fn publish(&self, change: QueryChange, completed: bool) {
        let severity = if change.success == Some(false) { Severity::Warning } else { Severity::Info };
        let payload = if completed { RacEvent::QueryCompleted(change) } else { RacEvent::QueryStarted(change) };
        self.events.publish(Event::now(severity, "rac:parallel_query", payload));
    }
}

impl Actor for ParallelQueryActor {
    type Context = Context<Self>;
}

impl Handler<RunParallelQuery> for ParallelQueryActor {
    type Result = ResponseActFuture<Self, Result<QueryResult, RacError>>;

    fn handle(&mut self, msg: RunParallelQuery, _ctx: &mut Self::Context) -> Self::Result {
        let q = msg.query;
        let names: Vec<String> = msg.open.into_iter().filter(|n| self.instances.contains_key(n)).collect();
        if names.is_empty() {
            return Box::pin(actix::fut::ready(Err(RacError::Unavailable { component: "parallel query (no instance is open)".into() })));
        }
        self.next += 1;
        let query_id = format!("q_{}_{}", std::process::id(), self.next);
        let slaves = split(q.first, q.last, q.dop, &names);
        let plan = plan_text(&q, &slaves);
        let instances: Vec<String> = slaves.iter().map(|(i, _, _)| i.clone()).collect();
        let change = QueryChange { query_id: query_id.clone(), sql_text: plan.clone(), dop: slaves.len(), instances, rows_processed: None, duration_ms: None, success: None };
        self.publish(change.clone(), false);
        let started = Instant::now();
        let work = slaves.into_iter().map(|(instance, from, to)| {
            let addr = self.instances.get(&instance).cloned();
            let q = q.clone();
            async move {
                let t0 = Instant::now();
                let addr = addr.ok_or_else(|| RacError::InstanceNotFound { instance_id: instance.clone() })?;
                let mut partial = Partial::default();
                for b in from.block..=to.block {
                    let block = BlockId { file: from.file, block: b };
                    let read = addr.send(ReadBlock { block }).await.map_err(|_| RacError::InstanceDown { instance_id: instance.clone() })??;
                    partial.scan(&q, &read.data);
                }
                let work = InstanceWork {
                    instance_id: instance,
                    blocks: format!("{from}-{to}"),
                    blocks_scanned: to.block - from.block + 1,
                    rows_scanned: partial.rows_scanned,
                    micros: t0.elapsed().as_micros() as u64,
                };
                Ok::<_, RacError>((partial, work))
            }
        });
        let all = futures_util::future::join_all(work);
        Box::pin(all.into_actor(self).map(move |results, act, _| {
            let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            let merged: Result<Vec<(Partial, InstanceWork)>, RacError> = results.into_iter().collect();
            let outcome = merged.map(|parts| {
                let mut groups: BTreeMap<Option<String>, Acc> = BTreeMap::new();
                let mut works = Vec::with_capacity(parts.len());
                for (p, w) in parts {
                    for (g, acc) in p.groups {
                        groups.entry(g).or_default().merge(&acc);
                    }
                    works.push(w);
                }
                let rows = if groups.is_empty() && q.group_by.is_none() {
                    vec![ResultRow { group: None, value: Acc::default().value(q.aggregate), rows: 0 }]
                } else {
                    groups.into_iter().map(|(group, acc)| ResultRow { group, value: acc.value(q.aggregate), rows: acc.rows }).collect()
                };
                QueryResult {
                    query_id: query_id.clone(),
                    plan: plan.clone(),
                    rows,
                    rows_processed: works.iter().map(|w| w.rows_scanned).sum(),
                    blocks_scanned: works.iter().map(|w| w.blocks_scanned).sum(),
                    dop: works.len(),
                    instances: works,
                    duration_ms,
                }
            });
            act.stats.queries += 1;
            act.duration_total_ms += duration_ms;
            act.stats.avg_duration_ms = act.duration_total_ms / act.stats.queries as f64;
            match &outcome {
                Ok(r) => {
                    act.stats.rows_processed += r.rows_processed;
                    act.stats.blocks_scanned += r.blocks_scanned;
                    for w in &r.instances {
                        if let Some(t) = act.stats.per_instance.iter_mut().find(|t| t.instance_id == w.instance_id) {
                            t.blocks_scanned += w.blocks_scanned;
                            t.rows_scanned += w.rows_scanned;
                        }
                    }
                }
                Err(_) => act.stats.failed += 1,
            }
            let done = QueryChange {
                rows_processed: outcome.as_ref().ok().map(|r| r.rows_processed),
                duration_ms: Some(duration_ms),
                success: Some(outcome.is_ok()),
                ..change
            };
            act.publish(done, true);
            outcome
        }))
    }
}

impl Handler<GetParallelQueryStats> for ParallelQueryActor {
    type Result = MessageResult<GetParallelQueryStats>;
    fn handle(&mut self, _: GetParallelQueryStats, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.stats.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(aggregate: Aggregate, column: Option<&str>, group_by: Option<&str>, filter: Option<(&str, &str)>) -> ParallelQuery {
        ParallelQuery {
            first: BlockId { file: 1, block: 0 },
            last: BlockId { file: 1, block: 9 },
            aggregate,
            column: column.map(Into::into),
            group_by: group_by.map(Into::into),
            filter: filter.map(|(c, v)| (c.into(), v.into())),
            dop: 3,
        }
    }

    #[test]
    fn rows_are_lines_of_name_value_pairs() {
        let data = "region=eu, amount=12\n\nregion=us,amount=x\nflag";
        let all: Vec<Row> = rows(data).collect();
        assert_eq!(all, vec![vec![("region", "eu"), ("amount", "12")], vec![("region", "us"), ("amount", "x")], vec![("flag", "")]]);
    }

    #[test]
    fn partials_merge_to_what_one_scan_gives() {
        let blocks = ["region=eu,amount=10\nregion=us,amount=5", "region=eu,amount=2\nregion=eu,amount=oops", "region=us,amount=7"];
        for query in [q(Aggregate::Sum, Some("amount"), Some("region"), None), q(Aggregate::Avg, Some("amount"), None, Some(("region", "eu"))), q(Aggregate::Count, None, None, None)] {
            let mut whole = Partial::default();
            for b in blocks {
                whole.scan(&query, b);
            }
            let (mut a, mut b) = (Partial::default(), Partial::default());
            a.scan(&query, blocks[0]);
            b.scan(&query, blocks[1]);
            b.scan(&query, blocks[2]);
            for (g, acc) in b.groups {
                a.groups.entry(g).or_default().merge(&acc);
            }
            assert_eq!(a.groups, whole.groups, "{query:?}");
        }
        let mut p = Partial::default();
        let sum = q(Aggregate::Sum, Some("amount"), Some("region"), None);
        for b in blocks {
            p.scan(&sum, b);
        }
        assert_eq!(p.groups[&Some("eu".to_string())].value(Aggregate::Sum), Some(12.0), "a value that is not a number is left out");
        assert_eq!(p.groups[&Some("us".to_string())].value(Aggregate::Max), Some(7.0));
        assert_eq!(p.groups[&Some("eu".to_string())].rows, 3);
    }

    #[test]
    fn a_range_splits_into_contiguous_parts_over_the_instances() {
        let names: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let parts = split(BlockId { file: 1, block: 0 }, BlockId { file: 1, block: 9 }, 3, &names);
        let spans: Vec<(String, u64, u64)> = parts.iter().map(|(i, a, b)| (i.clone(), a.block, b.block)).collect();
        assert_eq!(spans, vec![("a".into(), 0, 3), ("b".into(), 4, 6), ("a".into(), 7, 9)]);
        assert_eq!(split(BlockId { file: 1, block: 5 }, BlockId { file: 1, block: 5 }, 8, &names).len(), 1, "no more parts than blocks");
    }
}
