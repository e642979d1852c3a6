//! A subscriber's filter compiled into what the registry checks on every publish: one flag per
//! event type, a severity floor, and the id lists that are not empty.

use crate::messages::events::{
    Category, EventFilter, EventType, PublishedEvent, Severity, SubjectKind, Subjects, EVENT_TYPE_COUNT,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledFilter {
    pub types: [bool; EVENT_TYPE_COUNT],
    pub min_severity: Severity,
    /// Non-empty id lists only, in [`SubjectKind`] order.
    pub ids: Vec<(SubjectKind, Vec<String>)>,
}

impl CompiledFilter {
    /// Compiles `filter` restricted to `stream` (the categories a WebSocket endpoint carries;
    /// empty: all). Sample kinds are admitted only when `event_types` names them.
    pub fn compile(filter: &EventFilter, stream: &[Category]) -> CompiledFilter {
        let mut types = [true; EVENT_TYPE_COUNT];
        for t in EventType::ALL {
            let category = t.category();
            let named = filter.event_types.contains(t);
            // A sample kind reaches only filters that name it (see `EventType::is_sample`).
            let by_type = named || (filter.event_types.is_empty() && !t.is_sample());
            types[t.index()] = by_type
                && (filter.categories.is_empty() || filter.categories.contains(&category))
                && (stream.is_empty() || stream.contains(&category));
        }
        for t in filter.excluded_types() {
            types[t.index()] = false;
        }
        let ids = SubjectKind::ALL
            .iter()
            .filter(|k| !filter.ids(**k).is_empty())
            .map(|k| (*k, filter.ids(*k).to_vec()))
            .collect();
        CompiledFilter { types, min_severity: filter.min_severity.unwrap_or(Severity::Info), ids }
    }

    /// Whether this filter admits an event of this type, severity and subjects.
    pub fn admits(&self, event_type: EventType, severity: Severity, subjects: &Subjects) -> bool {
        self.types[event_type.index()]
            && severity >= self.min_severity
            && self.ids.iter().all(|(kind, wanted)| {
                subjects.of(*kind).iter().any(|id| wanted.iter().any(|w| w == id))
            })
    }

    pub fn admits_event(&self, e: &PublishedEvent) -> bool {
        self.admits(e.event_type, e.severity, &e.subjects)
    }

    /// Whether any event of this type could pass (ignoring ids and severity): the interest table
    /// is built from this.
    pub fn wants_type(&self, t: EventType) -> bool {
        self.types[t.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::cluster::{ClusterEvent, NodeMembershipChange};
    use crate::model::NodeRole;
    use crate::messages::events::Event;

    fn joined(node: &str) -> PublishedEvent {
        PublishedEvent::stamp(
            7,
            Event::now(
                Severity::Info,
                format!("node:{node}"),
                ClusterEvent::NodeJoined(NodeMembershipChange {
                    node_id: node.into(),
                    node_address: String::new(),
                    node_role: NodeRole::Voter,
                    reason: "test".into(),
                    cluster_size: 4,
                    has_quorum: true,
                }),
            ),
        )
    }

    fn check(filter: &str, stream: &[Category], node: &str, expected: bool) {
        let f = EventFilter::from_json(filter).expect("valid filter");
        assert_eq!(CompiledFilter::compile(&f, stream).admits_event(&joined(node)), expected, "{filter} on {node}");
    }

    #[test]
    fn filters_admit_as_the_contract_says() {
        check("{}", &[], "node-4", true);
        check(r#"{"node_ids":["node-4"]}"#, &[], "node-4", true);
        check(r#"{"node_ids":["node-4"]}"#, &[], "node-5", false);
        check(r#"{"node_ids":["node-5","node-4"]}"#, &[], "node-4", true);
        check(r#"{"node_ids":["node-4"],"replica_ids":["r1"]}"#, &[], "node-4", false);
        check(r#"{"node_ids":[],"instance_ids":[]}"#, &[], "node-4", true);
        check(r#"{"event_types":["node_left"]}"#, &[], "node-4", false);
        check(r#"{"categories":["clustering"]}"#, &[], "node-4", true);
        check(r#"{"min_severity":"warning"}"#, &[], "node-4", false);
        check("{}", &[Category::Replication], "node-4", false);
        check(r#"{"include_health_changes":false}"#, &[], "node-4", true);
        check(r#"{"replica_ids":null,"node_ids":["node-4"]}"#, &[], "node-4", true);
    }

    #[test]
    fn sample_kinds_reach_only_filters_that_name_them() {
        let wants = |filter: &str| {
            let f = EventFilter::from_json(filter).expect("valid filter");
            CompiledFilter::compile(&f, &[]).wants_type(EventType::ReplicationLagSample)
        };
        assert!(!wants("{}"));
        assert!(!wants(r#"{"categories":["replication"]}"#));
        assert!(!wants(r#"{"replica_ids":["replica-001"]}"#));
        assert!(!wants(r#"{"event_types":["replication_lag_alert"]}"#));
        assert!(wants(r#"{"event_types":["replication_lag_sample"]}"#));
        assert!(wants(r#"{"event_types":["replication_lag_alert","replication_lag_sample"],"categories":["replication"]}"#));
        assert!(!wants(r#"{"event_types":["replication_lag_sample"],"categories":["clustering"]}"#));
    }

    #[test]
    fn a_false_include_flag_takes_its_types_out() {
        let f = EventFilter::from_json(r#"{"include_health_changes":false}"#).expect("valid");
        let c = CompiledFilter::compile(&f, &[]);
        for t in [EventType::NodeHealthChange, EventType::QuorumLost, EventType::QuorumRestored] {
            assert!(!c.wants_type(t), "{t}");
        }
        assert!(c.wants_type(EventType::NodeJoined));
    }
}
