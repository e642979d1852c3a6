//! Ids chosen by callers (nodes, replicas, slots, sites) and the one rule they follow.

/// Most characters of an id.
pub const ID_MAX_LEN: usize = 64;
/// The id rule as the regular expression the OpenAPI document states; [`validate_id`] is its
/// code (a test keeps the two in step).
pub const ID_PATTERN: &str = "^[A-Za-z0-9._-]+$";

/// Checks a caller-chosen id: 1 to [`ID_MAX_LEN`] characters of `[A-Za-z0-9._-]`.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > ID_MAX_LEN {
        return Err("must be 1 to 64 characters".into());
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err("may hold only letters, digits, '.', '_' and '-'".into());
    }
    Ok(())
}

/// raft-rs's numeric id for the node named `node_id`: the same in every process, whatever order
/// its config lists nodes in (FNV-1a of the name, kept to 53 bits so JSON clients read it
/// exactly; never 0, which raft-rs reserves).
pub fn raft_node_id(node_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h & ((1 << 53) - 1)).max(1)
}
