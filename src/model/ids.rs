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
