//! The GraphiQL page and the scripts it loads, compiled into the binary (vendored from npm, see
//! `assets/graphiql/README.md`), so the page works offline and without a token: it asks for the
//! token and sends it on every request (see `auth.rs` for what stays open).

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{web, HttpResponse};

/// Where the page's scripts and stylesheet are served.
pub const GRAPHIQL_ASSETS: &str = "/graphiql/";

/// (file name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("graphiql.min.js", "text/javascript; charset=utf-8", include_bytes!("../../../assets/graphiql/graphiql.min.js")),
    ("graphiql.min.css", "text/css; charset=utf-8", include_bytes!("../../../assets/graphiql/graphiql.min.css")),
    ("react.production.min.js", "text/javascript; charset=utf-8", include_bytes!("../../../assets/graphiql/react.production.min.js")),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../assets/graphiql/react-dom.production.min.js"),
    ),
];

const PAGE: &str = include_str!("../../../assets/graphiql/index.html");

/// The page itself (`GET /graphql` that is not a WebSocket upgrade).
pub fn page() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(PAGE)
}

/// `GET /graphiql/{asset}`.
async fn asset(name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(file, _, _)| *file == name.as_str()) {
        Some((_, content_type, bytes)) => HttpResponse::Ok()
            .content_type(*content_type)
            // The files change only with the binary.
            .insert_header(CacheControl(vec![CacheDirective::Public, CacheDirective::MaxAge(3600)]))
            .body(*bytes),
        None => actix_web::ResponseError::error_response(&crate::http::error::ApiError::not_found(
            "route_not_found",
            format!("no GraphiQL asset named '{name}'"),
        )),
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/graphiql/{asset}", web::get().to(asset));
}
