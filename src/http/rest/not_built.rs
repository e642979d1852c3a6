//! The routes of the contract whose domains are not built yet. Each answers 501 with the error
//! shape, naming the domain, so clients can tell "not yet" from "wrong path"; the OpenAPI document
//! lists them the same way. A domain's routes leave this table when its handlers arrive.

use actix_web::web;

/// (method, path pattern, domain).
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/api/v1/cluster/migration", "sharding"),
    ("GET", "/api/v1/cluster/migration/{id}", "sharding"),
    ("POST", "/api/v1/cluster/query", "sharding"),
    ("POST", "/api/v1/cluster/query/plan", "sharding"),
    ("POST", "/api/v1/replication/sharding/tables", "sharding"),
    ("GET", "/api/v1/replication/sharding/tables", "sharding"),
    ("GET", "/api/v1/replication/sharding/tables/{table}", "sharding"),
    ("PUT", "/api/v1/replication/sharding/tables/{table}/rows/{key}", "sharding"),
    ("GET", "/api/v1/replication/sharding/tables/{table}/rows/{key}", "sharding"),
    ("DELETE", "/api/v1/replication/sharding/tables/{table}/rows/{key}", "sharding"),
    ("POST", "/api/v1/replication/sharding/tables/{table}/shards", "sharding"),
    ("DELETE", "/api/v1/replication/sharding/tables/{table}/shards/{id}", "sharding"),
    ("POST", "/api/v1/replication/sharding/rebalance/plan", "sharding"),
    ("POST", "/api/v1/replication/sharding/rebalance", "sharding"),
    ("GET", "/api/v1/replication/sharding/rebalance/{plan_id}", "sharding"),
    ("GET", "/api/v1/replication/sharding/statistics", "sharding"),
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    for (method, path, domain) in ROUTES {
        let method = match actix_web::http::Method::from_bytes(method.as_bytes()) {
            Ok(m) => m,
            // The table above holds only standard method names.
            Err(_) => continue,
        };
        let domain: &'static str = domain;
        cfg.route(path, web::method(method).to(move || crate::http::not_built(domain)));
    }
}
