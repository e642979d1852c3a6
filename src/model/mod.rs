//! The shared words of clusterd: ids and their validation, LSNs and their text form, rows and the
//! operations that change them, and the closed sets of values (modes, statuses, health, roles) that
//! config, messages, storage and the faces all speak. No logic beyond what these words mean.

pub mod health;
pub mod ids;
pub mod lsn;
pub mod master_ring;
pub mod meta;
pub mod modes;
pub mod rac;
pub mod roles;
pub mod rows;

pub use health::{ClusterHealthStatus, NodeHealth, ProcessLoad};
pub use ids::{raft_node_id, validate_id, ID_MAX_LEN, ID_PATTERN};
pub use lsn::{lsn_text, parse_lsn_text};
pub use meta::{FailoverChange, FailoverRecord, MetaCommand};
pub use modes::{ConflictStrategy, ReplicaMode, ReplicaStatus, ReplicationMode, SlotType};
pub use roles::NodeRole;
pub use rows::{json_len, LogRecord, Op, OpKind, RowKey, RowRef, RowValue, WalRecord, MAX_NAME_CHARS, MAX_OPS, MAX_VALUE_BYTES};
