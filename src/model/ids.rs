//! Ids chosen by callers (nodes, replicas, slots, sites) and the one rule they follow.

/// Checks a caller-chosen id: 1 to 64 characters of `[A-Za-z0-9._-]`.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err("may hold only letters, digits, '.', '_' and '-'".into());
    }
    Ok(())
}
