//! `GET /api/v1/events`: retained events, oldest first, filtered like a subscription. The body is
//! assembled from each event's pre-serialized envelope; nothing is serialized again.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::filter::filter_from_query;
use crate::messages::registry::ReadRetained;
use crate::runtime::RuntimeHandle;

/// Events one request may return at most.
pub const MAX_LIMIT: usize = 10_000;
const DEFAULT_LIMIT: usize = 1000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/events", web::get().to(retained_events));
}

/// The OpenAPI description of the retained events routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        retained_events,
    ),
    modifiers(&FilterParameters)
)]
pub struct EventsApi;

/// The query parameters of `GET /api/v1/events`, from the lists the filter parser reads
/// ([`filter_from_query`]): every id kind, the event types, categories and severities of the
/// catalogue, the `include_*` flags. Lists are comma-separated; items are trimmed and empty ones
/// skipped, which the patterns say too.
struct FilterParameters;

/// What `str::trim` takes away (Unicode White_Space), as a regular expression class body.
const TRIMMED: &str = "\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000";

/// A comma-separated list whose items, trimmed, are empty or match `item`.
fn list_pattern(item: &str) -> String {
    let one = format!("[{TRIMMED}]*(?:{item})?[{TRIMMED}]*");
    format!("^{one}(?:,{one})*$")
}

impl utoipa::Modify for FilterParameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use crate::messages::events::{Category, EventType, Severity, SubjectKind, INCLUDE_FLAGS, MAX_FILTER_IDS, MAX_ID_LEN};
        use crate::http::rest::schemas;
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::Required;

        let Some(op) = openapi.paths.paths.get_mut("/api/v1/events").and_then(|item| item.get.as_mut()) else {
            return;
        };
        let param = |name: &str, schema: ObjectBuilder, description: String| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .schema(Some(schema))
                .description(Some(description))
                .build()
        };
        let string = |pattern: String| ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern));
        let names = |all: &mut dyn Iterator<Item = &'static str>| all.collect::<Vec<_>>().join("|");
        let mut params = vec![
            param("since_seq", schemas::integer(0, usize::MAX), "Only events with a greater seq".into()),
            param("limit", schemas::integer(1, MAX_LIMIT), format!("At most this many (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})")),
        ];
        // An id: 1 to MAX_ID_LEN characters once trimmed, no comma.
        let id = format!("[^,{TRIMMED}](?:[^,]{{0,{}}}[^,{TRIMMED}])?", MAX_ID_LEN - 2);
        for kind in SubjectKind::ALL {
            params.push(param(
                kind.field(),
                string(list_pattern(&id)),
                format!("Comma-separated ids (at most {MAX_FILTER_IDS}, each 1 to {MAX_ID_LEN} characters): only events about one of them"),
            ));
        }
        params.push(param(
            "event_types",
            string(list_pattern(&names(&mut EventType::ALL.iter().map(|t| t.as_str())))),
            "Comma-separated event types of the catalogue".into(),
        ));
        params.push(param(
            "categories",
            string(list_pattern(&names(&mut Category::ALL.iter().map(|c| c.as_str())))),
            "Comma-separated categories".into(),
        ));
        params.push(param(
            "min_severity",
            ObjectBuilder::new().schema_type(Type::String).enum_values(Some(Severity::ALL.iter().map(|s| s.as_str()))),
            "Only events at least this severe".into(),
        ));
        for flag in INCLUDE_FLAGS {
            params.push(param(
                flag.name,
                ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["true", "false", "1", "0"])),
                "false takes these event types out (the seed format's flags)".into(),
            ));
        }
        op.parameters.get_or_insert_with(Vec::new).extend(params);
    }
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    responses((status = 200, description = "{events: [envelope…], count, current_seq, oldest_retained_seq, replay_truncated}", body = Object),
              (status = 400, description = "Unknown filter field or value")))]
pub async fn retained_events(req: HttpRequest, runtime: web::Data<RuntimeHandle>) -> Result<HttpResponse, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("query", e.to_string()))?;
    let mut limit = DEFAULT_LIMIT;
    let mut filter_pairs = Vec::new();
    for (k, v) in pairs.iter() {
        if k == "limit" {
            limit = v
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| ApiError::invalid("limit", format!("expected 1 to {MAX_LIMIT}, got '{v}'")))?;
        } else {
            filter_pairs.push((k.as_str(), v.as_str()));
        }
    }
    let filter = filter_from_query(filter_pairs, &["token"])
        .map_err(|e| ApiError::invalid(&e.field, e.reason))?;
    let read = runtime.registry().send(ReadRetained { filter, limit }).await?;
    let mut body = String::with_capacity(64 + read.events.iter().map(|e| e.json().len() + 1).sum::<usize>());
    body.push_str("{\"events\":[");
    for (i, e) in read.events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(e.json());
    }
    body.push_str("],");
    let tail = json!({
        "count": read.events.len(),
        "current_seq": read.current_seq,
        "oldest_retained_seq": read.oldest_retained_seq,
        "replay_truncated": read.replay_truncated,
    })
    .to_string();
    // `tail` is an object: drop its opening brace to continue ours.
    body.push_str(&tail[1..]);
    Ok(HttpResponse::Ok().content_type("application/json").body(body))
}
