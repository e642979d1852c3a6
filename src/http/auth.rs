//! Bearer-token auth and CORS.
//!
//! When `server.auth_token` is set, every `/api`, `/graphql` and WebSocket route needs
//! `Authorization: Bearer <token>`; WebSocket upgrades may pass `?token=` instead (browsers cannot
//! set headers on them). `/health*` and `/metrics` stay open, and so do the browser pages and
//! what they load before they can ask for the token: Swagger UI, the OpenAPI document it renders
//! (a description of the API, no data), the GraphiQL page (`GET /graphql` asking for HTML) and
//! its scripts. The pages send the token on every request they make. GraphQL subscriptions
//! (WebSocket upgrades on `/graphql/ws` and `/graphql`) may also authenticate in
//! `connection_init`, so those upgrades check their token themselves.

use actix_cors::Cors;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::http::error::ApiError;
use crate::runtime::RuntimeHandle;

/// Paths that never need a token, whatever the method.
pub fn is_open(path: &str) -> bool {
    path == "/health"
        || path.starts_with("/health/")
        || path == "/metrics"
        || path == "/swagger-ui"
        || path.starts_with("/swagger-ui/")
        || path.starts_with(crate::http::graphql::GRAPHIQL_ASSETS)
}

/// A browser asking for the GraphiQL page: a plain `GET /graphql` that accepts HTML. Any other
/// request on `/graphql` (a query, a mutation, a subscription) needs the token.
fn is_graphiql_page(req: &ServiceRequest) -> bool {
    req.method() == actix_web::http::Method::GET
        && req.path() == "/graphql"
        && !is_websocket_upgrade(req)
        && req
            .headers()
            .get(actix_web::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
}

fn is_websocket_upgrade(req: &ServiceRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Compares in time independent of where the first difference is.
pub fn token_matches(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (*a.get(i).unwrap_or(&0) ^ *b.get(i).unwrap_or(&0)) as usize;
    }
    diff == 0
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: &str) -> Option<&str> {
    header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).map(str::trim)
}

/// The `token` query parameter, if any.
pub fn query_token(query: &str) -> Option<String> {
    web::Query::<std::collections::HashMap<String, String>>::from_query(query)
        .ok()
        .and_then(|q| q.get("token").cloned())
}

/// Whether a request carries the configured token (header, or `?token=` on a WebSocket upgrade).
pub fn request_authorized(
    expected: &str,
    headers: &actix_web::http::header::HeaderMap,
    query: &str,
    websocket: bool,
) -> bool {
    if expected.is_empty() {
        return true;
    }
    let from_header = headers
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .is_some_and(|t| token_matches(t, expected));
    from_header || (websocket && query_token(query).is_some_and(|t| token_matches(&t, expected)))
}

pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let expected = req
        .app_data::<web::Data<RuntimeHandle>>()
        .map(|r| r.config().server.auth_token.clone())
        .unwrap_or_default();
    // CORS preflights carry no credentials by design.
    let preflight = req.method() == actix_web::http::Method::OPTIONS;
    let websocket = is_websocket_upgrade(&req);
    // GraphQL subscriptions (GET upgrades on /graphql/ws and /graphql) check their own token,
    // which may come in connection_init. Only a GET can be an upgrade: any other method with an
    // Upgrade header is an ordinary request and needs the token like every other.
    let graphql_upgrade = websocket
        && req.method() == actix_web::http::Method::GET
        && matches!(req.path(), "/graphql" | "/graphql/ws");
    if expected.is_empty() || preflight || graphql_upgrade || is_open(req.path()) || is_graphiql_page(&req) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    if request_authorized(&expected, req.headers(), req.query_string(), websocket) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let (req, _) = req.into_parts();
    let res = actix_web::ResponseError::error_response(&ApiError::unauthorized());
    Ok(ServiceResponse::new(req, res).map_into_right_body())
}

/// CORS for the configured origins (`*` for any). Only installed when the list is not empty.
pub fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allow_any_method()
        .allow_any_header()
        .max_age(3600);
    if origins.iter().any(|o| o == "*") {
        cors = cors.allow_any_origin();
    } else {
        for o in origins {
            cors = cors.allowed_origin(o);
        }
    }
    cors
}
