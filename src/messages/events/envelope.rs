//! The envelope: an [`Event`] as an actor builds it, and the [`PublishedEvent`] the registry makes
//! of it by stamping `seq` and `event_id` and serializing it once, for every transport to share.

use std::sync::{Arc, OnceLock};

use bytestring::ByteString;
use serde::Serialize;

use super::{Category, EventPayload, EventType, Severity, Subjects};

/// An event as the actor that saw the change builds it, before the registry stamps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub severity: Severity,
    /// `component:identifier`, e.g. `node:node-2`.
    pub source: String,
    pub timestamp_ms: i64,
    pub payload: EventPayload,
}

impl Event {
    /// An event stamped with the current wall-clock time; `payload` is any domain's event
    /// (`ClusterEvent::NodeJoined(..)`, `ReplicationEvent::ReplicaStatusChange(..)`, …).
    pub fn now(severity: Severity, source: impl Into<String>, payload: impl Into<EventPayload>) -> Self {
        Event { severity, source: source.into(), timestamp_ms: now_ms(), payload: payload.into() }
    }

    pub fn event_type(&self) -> EventType {
        self.payload.event_type()
    }

    pub fn category(&self) -> Category {
        self.event_type().category()
    }
}

/// Milliseconds since the Unix epoch; 0 if the clock is before 1970 (it is not, but a clock is
/// not worth a panic).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The id the registry gives the event with sequence number `seq`.
pub fn event_id(seq: u64) -> String {
    format!("evt_{seq:012}")
}

/// An event after publication: stamped and shared by every subscriber through an [`Arc`]. Its
/// bytes are made once, by the first reader that needs them (a WebSocket session, `GET
/// /api/v1/events`), and shared by every later one: GraphQL and in-process subscribers take the
/// typed event, and an event nobody reads as JSON is never serialized.
#[derive(Debug)]
pub struct PublishedEvent {
    pub seq: u64,
    pub event_id: String,
    pub category: Category,
    pub event_type: EventType,
    pub severity: Severity,
    pub source: String,
    pub timestamp_ms: i64,
    pub subjects: Subjects,
    pub payload: EventPayload,
    bytes: OnceLock<Bytes>,
}

/// `json` is the envelope (`GET /api/v1/events`); `ws_frame` is the WebSocket `event` frame, the
/// envelope's fields beside `"type":"event"`. One allocation holds both.
#[derive(Debug)]
struct Bytes {
    json: ByteString,
    ws_frame: ByteString,
}

pub type SharedEvent = Arc<PublishedEvent>;

#[derive(Serialize)]
struct Envelope<'a> {
    event_id: &'a str,
    seq: u64,
    category: Category,
    event_type: EventType,
    severity: Severity,
    source: &'a str,
    timestamp: i64,
    timestamp_ms: i64,
    subjects: &'a Subjects,
    payload: PayloadWithTimestamp<'a>,
}

/// The payload as sent: its fields (with `event_type` from the serde tag) plus `timestamp`, for
/// clients written against the older payload-only format.
#[derive(Serialize)]
struct PayloadWithTimestamp<'a> {
    #[serde(flatten)]
    payload: &'a EventPayload,
    timestamp: i64,
}

/// The WebSocket frame is this, then the envelope after its opening brace: clients written
/// against the seed's bare event frames find every field at the top level.
const WS_FRAME_HEAD: &[u8] = b"{\"type\":\"event\",";

impl PublishedEvent {
    /// Stamps `event` with `seq`: the one place an event gets its number and id.
    pub fn stamp(seq: u64, event: Event) -> PublishedEvent {
        let event_type = event.event_type();
        PublishedEvent {
            seq,
            event_id: event_id(seq),
            category: event_type.category(),
            event_type,
            severity: event.severity,
            subjects: event.payload.subjects(),
            source: event.source,
            timestamp_ms: event.timestamp_ms,
            payload: event.payload,
            bytes: OnceLock::new(),
        }
    }

    /// The envelope, as `GET /api/v1/events` lists it.
    pub fn json(&self) -> &ByteString {
        &self.bytes().json
    }

    /// The WebSocket `event` frame.
    pub fn ws_frame(&self) -> &ByteString {
        &self.bytes().ws_frame
    }

    fn bytes(&self) -> &Bytes {
        self.bytes.get_or_init(|| {
            self.serialize().unwrap_or_else(|e| {
                // A payload of plain fields cannot fail to serialize; if one ever does, readers
                // get the event's identity and the error rather than half an event.
                tracing::error!(error = %e, seq = self.seq, "event could not be serialized");
                let json = serde_json::json!({
                    "event_id": self.event_id, "seq": self.seq, "event_type": self.event_type,
                    "error": format!("the event could not be serialized: {e}"),
                });
                let mut frame = json.clone();
                frame["type"] = "event".into();
                Bytes { json: json.to_string().into(), ws_frame: frame.to_string().into() }
            })
        })
    }

    /// The envelope is serialized once; the WebSocket frame is a copy of its bytes behind a
    /// different head, in the same buffer.
    fn serialize(&self) -> Result<Bytes, serde_json::Error> {
        let timestamp = self.timestamp_ms / 1000;
        let mut buf = Vec::with_capacity(1536);
        serde_json::to_writer(
            &mut buf,
            &Envelope {
                event_id: &self.event_id,
                seq: self.seq,
                category: self.category,
                event_type: self.event_type,
                severity: self.severity,
                source: &self.source,
                timestamp,
                timestamp_ms: self.timestamp_ms,
                subjects: &self.subjects,
                payload: PayloadWithTimestamp { payload: &self.payload, timestamp },
            },
        )?;
        let envelope_len = buf.len();
        // The envelope is an object with fields (it starts `{"event_id":`), so dropping its `{`
        // after a head that ends in a comma leaves a well-formed object.
        buf.extend_from_slice(WS_FRAME_HEAD);
        buf.extend_from_within(1..envelope_len);
        let text = String::from_utf8(buf).map_err(|e| {
            // serde_json writes UTF-8 only; this is here so that a bug there is an error, not UB.
            <serde_json::Error as serde::ser::Error>::custom(e)
        })?;
        let both = ByteString::from(text);
        Ok(Bytes { json: both.slice_ref(&both[..envelope_len]), ws_frame: both.slice_ref(&both[envelope_len..]) })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::messages::cluster::*;
    use crate::messages::replication::*;
    use crate::model::{NodeRole, ReplicaMode, ReplicaStatus, SlotType};
    use crate::messages::system::*;
    use crate::model::{ClusterHealthStatus, NodeHealth};

    /// One payload of every event type published today.
    fn every_payload() -> Vec<EventPayload> {
        let nm = NodeMembershipChange {
            node_id: "node-4".into(),
            node_address: "10.0.0.4:7000".into(),
            node_role: NodeRole::Voter,
            reason: "added".into(),
            cluster_size: 4,
            has_quorum: true,
        };
        let metrics = BTreeMap::from([("heartbeat_age_ms".to_string(), 12.5), ("restarts".to_string(), 1.0)]);
        let nh = NodeHealthChange {
            node_id: "node-2".into(),
            old_status: NodeHealth::Healthy,
            new_status: NodeHealth::Degraded,
            role: NodeRole::Voter,
            reason: "late".into(),
            metrics,
            cluster_status: ClusterHealthStatus::Degraded,
            healthy_nodes: 2,
            total_nodes: 3,
        };
        let q = QuorumChange { healthy_nodes: 1, total_nodes: 3, quorum_size: 2, has_quorum: false };
        let ar = ActorRestart { actor_kind: "node".into(), actor_id: "node-2".into(), reason: "fault".into(), restart_count: 2 };
        let rm = ReplicaMembershipChange { replica_id: "replica-001".into(), mode: ReplicaMode::Sync, reason: "bootstrap".into() };
        let rs = ReplicaStatusChange {
            replica_id: "replica-001".into(),
            old_status: ReplicaStatus::Starting,
            new_status: ReplicaStatus::Streaming,
            reason: "r".into(),
            metadata: BTreeMap::from([("wal_position".to_string(), "0/10".to_string())]),
        };
        let la = ReplicationLagAlert {
            replica_id: "replica-002".into(),
            lag_bytes: 5000,
            lag_seconds: 1.5,
            threshold_bytes: 1000,
            severity: Severity::Warning,
            details: "d \"q\" é".into(),
        };
        let wp = WalPositionUpdate {
            replica_id: "replica-003".into(),
            write_lsn: "0/1".into(),
            flush_lsn: "0/2".into(),
            replay_lsn: "0/3".into(),
            bytes_behind: 7,
        };
        let re = ReplicationErrorEvent {
            replica_id: "replica-001".into(),
            replica_ids: vec!["replica-001".into(), "replica-002".into()],
            error_code: "sync_timeout".into(),
            error_message: "m".into(),
            severity: Severity::Error,
            failed_operation: "op".into(),
            retry_count: 3,
        };
        let ls = ReplicationLagSample {
            replica_id: "replica-001".into(),
            lag_bytes: 10,
            lag_seconds: 0.25,
            threshold_bytes: 0,
            status: ReplicaStatus::Streaming,
        };
        let sc = SlotChange {
            slot_name: "cdc".into(),
            slot_type: SlotType::Logical,
            active: false,
            restart_lsn: "0/0".into(),
            confirmed_flush_lsn: "0/0".into(),
        };
        let sn = SnapshotChange { snapshot_id: "snap-1".into(), lsn: "0/40".into(), rows: 3, bytes: 100, target: Some("replica-003".into()) };
        let created = SnapshotChange { target: None, ..sn.clone() };
        vec![
            ClusterEvent::NodeJoined(nm.clone()).into(),
            ClusterEvent::NodeLeft(nm).into(),
            ClusterEvent::NodeHealthChange(nh).into(),
            ClusterEvent::QuorumLost(q.clone()).into(),
            ClusterEvent::QuorumRestored(q).into(),
            SystemEvent::ActorRestarted(ar).into(),
            ReplicationEvent::ReplicaAdded(rm.clone()).into(),
            ReplicationEvent::ReplicaRemoved(rm).into(),
            ReplicationEvent::ReplicaStatusChange(rs).into(),
            ReplicationEvent::ReplicationLagAlert(la).into(),
            ReplicationEvent::WalPositionUpdate(wp).into(),
            ReplicationEvent::ReplicationError(re).into(),
            ReplicationEvent::ReplicationLagSample(ls).into(),
            ReplicationEvent::SlotCreated(sc.clone()).into(),
            ReplicationEvent::SlotDropped(sc).into(),
            ReplicationEvent::SnapshotCreated(created).into(),
            ReplicationEvent::SnapshotRestored(sn).into(),
        ]
    }

    fn stamped(payloads: Vec<EventPayload>) -> Vec<PublishedEvent> {
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| {
                let event = Event { severity: Severity::Info, source: "src:x".into(), timestamp_ms: 1_700_000_000_123, payload };
                PublishedEvent::stamp(40 + i as u64, event)
            })
            .collect()
    }

    /// The envelopes as the single-enum payload of earlier versions wrote them, byte for byte (but
    /// for `replication_error`'s `replica_ids` and `snapshot_created` without an empty `target`).
    const ENVELOPES: [&str; 17] = [
        r#"{"event_id":"evt_000000000040","seq":40,"category":"clustering","event_type":"node_joined","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{"node_ids":["node-4"]},"payload":{"event_type":"node_joined","node_id":"node-4","node_address":"10.0.0.4:7000","node_role":"voter","reason":"added","cluster_size":4,"has_quorum":true,"timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000041","seq":41,"category":"clustering","event_type":"node_left","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{"node_ids":["node-4"]},"payload":{"event_type":"node_left","node_id":"node-4","node_address":"10.0.0.4:7000","node_role":"voter","reason":"added","cluster_size":4,"has_quorum":true,"timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000042","seq":42,"category":"clustering","event_type":"node_health_change","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{"node_ids":["node-2"]},"payload":{"event_type":"node_health_change","node_id":"node-2","old_status":"healthy","new_status":"degraded","role":"voter","reason":"late","metrics":{"heartbeat_age_ms":12.5,"restarts":1.0},"cluster_status":"degraded","healthy_nodes":2,"total_nodes":3,"timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000043","seq":43,"category":"clustering","event_type":"quorum_lost","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{},"payload":{"event_type":"quorum_lost","healthy_nodes":1,"total_nodes":3,"quorum_size":2,"has_quorum":false,"timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000044","seq":44,"category":"clustering","event_type":"quorum_restored","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{},"payload":{"event_type":"quorum_restored","healthy_nodes":1,"total_nodes":3,"quorum_size":2,"has_quorum":false,"timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000045","seq":45,"category":"system","event_type":"actor_restarted","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{"node_ids":["node-2"]},"payload":{"event_type":"actor_restarted","actor_kind":"node","actor_id":"node-2","reason":"fault","restart_count":2,"timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000046","seq":46,"category":"replication","event_type":"replica_added","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{"replica_ids":["replica-001"]},"payload":{"event_type":"replica_added","replica_id":"replica-001","mode":"sync","reason":"bootstrap","timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000047","seq":47,"category":"replication","event_type":"replica_removed","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{"replica_ids":["replica-001"]},"payload":{"event_type":"replica_removed","replica_id":"replica-001","mode":"sync","reason":"bootstrap","timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000048","seq":48,"category":"replication","event_type":"replica_status_change","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{"replica_ids":["replica-001"]},"payload":{"event_type":"replica_status_change","replica_id":"replica-001","old_status":"starting","new_status":"streaming","reason":"r","metadata":{"wal_position":"0/10"},"timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000049","seq":49,"category":"replication","event_type":"replication_lag_alert","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{"replica_ids":["replica-002"]},"payload":{"event_type":"replication_lag_alert","replica_id":"replica-002","lag_bytes":5000,"lag_seconds":1.5,"threshold_bytes":1000,"severity":"warning","details":"d \"q\" é","timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000050","seq":50,"category":"replication","event_type":"wal_position_update","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{"replica_ids":["replica-003"]},"payload":{"event_type":"wal_position_update","replica_id":"replica-003","write_lsn":"0/1","flush_lsn":"0/2","replay_lsn":"0/3","bytes_behind":7,"timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000051","seq":51,"category":"replication","event_type":"replication_error","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{"replica_ids":["replica-001","replica-002"]},"payload":{"event_type":"replication_error","replica_id":"replica-001","replica_ids":["replica-001","replica-002"],"error_code":"sync_timeout","error_message":"m","severity":"error","failed_operation":"op","retry_count":3,"timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000052","seq":52,"category":"replication","event_type":"replication_lag_sample","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{"replica_ids":["replica-001"]},"payload":{"event_type":"replication_lag_sample","replica_id":"replica-001","lag_bytes":10,"lag_seconds":0.25,"threshold_bytes":0,"status":"streaming","timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000053","seq":53,"category":"replication","event_type":"slot_created","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{},"payload":{"event_type":"slot_created","slot_name":"cdc","slot_type":"logical","active":false,"restart_lsn":"0/0","confirmed_flush_lsn":"0/0","timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000054","seq":54,"category":"replication","event_type":"slot_dropped","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{},"payload":{"event_type":"slot_dropped","slot_name":"cdc","slot_type":"logical","active":false,"restart_lsn":"0/0","confirmed_flush_lsn":"0/0","timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000055","seq":55,"category":"replication","event_type":"snapshot_created","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{},"payload":{"event_type":"snapshot_created","snapshot_id":"snap-1","lsn":"0/40","rows":3,"bytes":100,"timestamp":1700000000}}"#,
        r#"{"event_id":"evt_000000000056","seq":56,"category":"replication","event_type":"snapshot_restored","severity":"info","source":"src:x","timestamp":1700000000,"timestamp_ms":1700000000123,"subjects":{"replica_ids":["replica-003"]},"payload":{"event_type":"snapshot_restored","snapshot_id":"snap-1","lsn":"0/40","rows":3,"bytes":100,"target":"replica-003","timestamp":1700000000}}"#,
    ];

    #[test]
    fn envelopes_are_byte_for_byte_what_they_were() {
        for (e, expected) in stamped(every_payload()).iter().zip(ENVELOPES) {
            assert_eq!(e.json().as_ref() as &str, expected);
            // The tag serde writes is the type's name in the catalogue.
            let v: serde_json::Value = serde_json::from_str(e.json()).expect("envelope is JSON");
            assert_eq!(v["payload"]["event_type"], e.event_type.as_str());
        }
    }

    #[test]
    fn bytes_are_made_once_and_shared_by_every_reader() {
        let e = Arc::new(stamped(every_payload()).remove(0));
        assert!(e.bytes.get().is_none(), "stamping does not serialize");
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let e = e.clone();
                std::thread::spawn(move || (e.json().as_ptr() as usize, e.ws_frame().as_ptr() as usize))
            })
            .collect();
        let seen: Vec<_> = readers.into_iter().map(|r| r.join().expect("reader")).collect();
        assert!(seen.iter().all(|s| *s == seen[0]), "every reader got the same bytes: {seen:?}");
        // The frame follows the envelope in the same buffer.
        assert_eq!(seen[0].0 + e.json().len(), seen[0].1);
    }

    #[test]
    fn the_ws_frame_is_the_envelope_with_its_type_at_the_top() {
        for e in stamped(every_payload()) {
            let envelope: serde_json::Value = serde_json::from_str(e.json()).expect("envelope is JSON");
            let frame: serde_json::Value = serde_json::from_str(e.ws_frame()).expect("frame is JSON");
            let mut fields = frame.as_object().expect("frame is an object").clone();
            assert_eq!(fields.remove("type"), Some(serde_json::Value::from("event")));
            assert_eq!(serde_json::Value::Object(fields), envelope);
            assert_eq!(frame["event_type"], e.event_type.as_str());
            assert!(e.ws_frame().starts_with(r#"{"type":"event","event_id":"#), "{}", e.ws_frame());
        }
    }

    #[test]
    fn envelope_has_every_field_and_payload_repeats_type_and_timestamp() {
        let joined = ClusterEvent::NodeJoined(NodeMembershipChange {
            node_id: "node-4".into(),
            node_address: String::new(),
            node_role: NodeRole::Voter,
            reason: "test".into(),
            cluster_size: 4,
            has_quorum: true,
        });
        let e = PublishedEvent::stamp(7, Event::now(Severity::Info, "node:node-4", joined));
        let v: serde_json::Value = serde_json::from_str(e.json()).expect("envelope is JSON");
        for field in [
            "event_id", "seq", "category", "event_type", "severity", "source", "timestamp",
            "timestamp_ms", "subjects", "payload",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["event_id"], "evt_000000000007");
        assert_eq!(v["subjects"]["node_ids"][0], "node-4");
        assert_eq!(v["payload"]["event_type"], "node_joined");
        assert!(v["payload"]["timestamp"].is_i64());
        // The frame is the envelope's own fields beside `"type": "event"`.
        let frame: serde_json::Value = serde_json::from_str(e.ws_frame()).expect("frame is JSON");
        assert_eq!(frame["type"], "event");
        for (field, value) in v.as_object().expect("the envelope is an object") {
            assert_eq!(&frame[field], value, "{field}");
        }
    }

    #[test]
    fn payloads_read_back_into_their_domain() {
        for payload in every_payload() {
            let text = serde_json::to_string(&payload).expect("serializes");
            assert_eq!(serde_json::from_str::<EventPayload>(&text).expect("reads back"), payload);
        }
    }
}
