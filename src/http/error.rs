//! The one error shape every route answers with:
//! `{"error": {"code": "...", "message": "...", "details": {...}}}`, and the mapping from domain
//! errors and malformed requests to it.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::messages::errors::{DescribedError, DomainError, ErrorKind};
use crate::messages::registry::RegistryError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Value,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status.as_u16(), self.message)
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, code: code.into(), message: message.into(), details: json!({}) }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 400: which field and why.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("{field}: {reason}"))
            .with_details(json!({ "field": field, "reason": reason }))
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong token: send 'Authorization: Bearer <token>' (WebSocket: ?token=)",
        )
    }

    /// 501 for a route of the contract whose domain is not built yet.
    pub fn not_implemented(domain: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            format!("this part of the {domain} domain is not built yet; the route is part of the contract and will answer once it is"),
        )
        .with_details(json!({ "domain": domain }))
    }

    /// 503: an actor did not answer (it stopped, or its mailbox is full).
    pub fn unavailable(component: &str, e: impl std::fmt::Display) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "component_unavailable",
            format!("{component} did not answer: {e}"),
        )
        .with_details(json!({ "component": component }))
    }

    pub fn body(&self) -> Value {
        json!({ "error": { "code": self.code, "message": self.message, "details": self.details } })
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(self.body())
    }
}

impl From<&dyn DescribedError> for ApiError {
    fn from(e: &dyn DescribedError) -> Self {
        let status = match e.kind() {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::NotBuilt => StatusCode::NOT_IMPLEMENTED,
        };
        ApiError::new(status, e.code(), e.message()).with_details(e.details())
    }
}

impl<E: DescribedError> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError::from(&e as &dyn DescribedError)
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::from(&*e.0)
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let message = e.to_string();
        match e {
            RegistryError::SubscriptionNotFound { subscription_id } => {
                ApiError::not_found("session_not_found", message)
                    .with_details(json!({ "session_id": subscription_id.to_string() }))
            }
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::unavailable("an actor", e)
    }
}

/// Maps a JSON body error: too large is 413, everything else 400 with what serde said.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match &err {
        E::OverflowKnownLength { length, limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body of {length} bytes is over the limit of {limit} bytes"),
        )
        .with_details(json!({ "limit": limit })),
        E::Overflow { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body is over the limit of {limit} bytes"),
        )
        .with_details(json!({ "limit": limit })),
        E::Deserialize(e) => {
            let reason = e.to_string();
            let field = reason
                .split('`')
                .nth(1)
                .filter(|_| reason.starts_with("unknown field") || reason.starts_with("missing field"))
                .unwrap_or("body")
                .to_string();
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("request body: {reason}"))
                .with_details(json!({ "field": field, "reason": reason }))
        }
        other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("request body: {other}")),
    }
}
