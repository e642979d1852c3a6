//! How a domain's error describes itself to every face: what kind of refusal it is, a stable code
//! clients match on, and the ids and values it is about. Each domain's error implements
//! [`DescribedError`] beside its definition; the faces render any of them the same way.

use std::sync::Arc;

/// The kind of refusal, which each face maps to its own terms (an HTTP status, a GraphQL code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or names something impossible (HTTP 400).
    Invalid,
    /// What it names does not exist (404).
    NotFound,
    /// It conflicts with the current state (409).
    Conflict,
    /// A component is down or failing (503).
    Unavailable,
    /// It took effect partly, then timed out waiting (504).
    Timeout,
    /// Its domain is not built yet (501).
    NotBuilt,
}

/// An error that says what kind it is, its code and what it is about.
pub trait DescribedError: std::error::Error + Send + Sync + 'static {
    fn kind(&self) -> ErrorKind;
    /// A stable snake_case code (`replica_not_found`).
    fn code(&self) -> &'static str;
    /// What it is about, as a JSON object (`{"replica_id": "replica-001"}`).
    fn details(&self) -> serde_json::Value;
    /// The message shown; its `Display` unless it says otherwise.
    fn message(&self) -> String {
        self.to_string()
    }
}

/// Any domain's [`DescribedError`], shared (message results must be `Clone`-free and `Send`).
#[derive(Debug, Clone)]
pub struct DomainError(pub Arc<dyn DescribedError>);

impl<E: DescribedError> From<E> for DomainError {
    fn from(e: E) -> Self {
        DomainError(Arc::new(e))
    }
}

impl std::fmt::Display for DomainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An invalid field and why: the one shape every domain's "invalid field" takes.
pub fn invalid_field_details(field: &str, reason: &str) -> serde_json::Value {
    serde_json::json!({ "field": field, "reason": reason })
}
