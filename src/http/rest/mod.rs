//! REST routes, one file per area. Each handler turns a request into a message and the answer
//! into JSON; nothing else.

pub mod cluster;
pub mod events;
pub mod faults;
pub mod health;
pub mod not_built;
pub mod rac;
pub mod replication;
pub mod schemas;
pub mod ws_admin;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    events::configure(cfg);
    ws_admin::configure(cfg);
    cluster::configure(cfg);
    faults::configure(cfg);
    replication::configure(cfg);
    rac::configure(cfg);
    // Last: the routes of later domains, answering 501 until they are built.
    not_built::configure(cfg);
}
