//! The one record of open client connections, event-stream sessions and GraphQL connections
//! alike. `/ws/status`, `/ws/connections` and `clusterd_ws_sessions_active` all read it, and a
//! connection's place in `ws.max_sessions` is its row: taken before the upgrade is answered, given
//! back when the connection's actor is dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::Recipient;
use parking_lot::Mutex;

use crate::http::metrics::HttpMetrics;
use crate::messages::registry::Transport;
use crate::messages::sessions::CloseSession;

/// One open connection, as operators see it.
#[derive(Clone)]
pub struct SessionRow {
    pub session_id: u64,
    pub transport: Transport,
    /// The event stream (`events`, `cluster/nodes`, ...) or `graphql`.
    pub stream: &'static str,
    pub peer: String,
    pub connected_at_ms: i64,
    /// How to close it; `None` until its actor has started.
    closer: Option<Recipient<CloseSession>>,
}

impl SessionRow {
    /// Asks the connection to close; false if its actor has not started yet.
    ///
    /// `do_send`, past the mailbox bound: a session whose client stopped reading has a full
    /// mailbox and must still be closable. Each message is one operator request, and such a
    /// session is cut off by its watchdog within the client timeout, which bounds the queue.
    pub fn close(&self, reason: &str) -> bool {
        let Some(closer) = &self.closer else { return false };
        closer.do_send(CloseSession { reason: reason.to_string() });
        true
    }
}

pub struct SessionTable {
    rows: Mutex<BTreeMap<u64, SessionRow>>,
    next_id: AtomicU64,
    metrics: Arc<HttpMetrics>,
    /// Told when the last row goes, for a shutdown waiting on the sessions it closed.
    emptied: tokio::sync::Notify,
}

impl SessionTable {
    pub fn new(metrics: Arc<HttpMetrics>) -> Arc<Self> {
        Arc::new(SessionTable {
            rows: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            metrics,
            emptied: tokio::sync::Notify::new(),
        })
    }

    /// Takes a place for a new connection, unless `max` are open already.
    pub fn try_open(
        self: &Arc<Self>,
        max: usize,
        transport: Transport,
        stream: &'static str,
        peer: String,
    ) -> Option<SessionSlot> {
        let mut rows = self.rows.lock();
        if rows.len() >= max {
            self.metrics.ws_session_refused();
            return None;
        }
        let session_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let row = SessionRow {
            session_id,
            transport,
            stream,
            peer,
            connected_at_ms: crate::messages::events::now_ms(),
            closer: None,
        };
        rows.insert(session_id, row);
        self.metrics.ws_session_opened(rows.len());
        Some(SessionSlot { table: self.clone(), session_id })
    }

    pub fn len(&self) -> usize {
        self.rows.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every open connection, oldest first.
    pub fn rows(&self) -> Vec<SessionRow> {
        self.rows.lock().values().cloned().collect()
    }

    pub fn get(&self, session_id: u64) -> Option<SessionRow> {
        self.rows.lock().get(&session_id).cloned()
    }

    /// Returns once no connection is open.
    pub async fn closed(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.is_empty() {
                return;
            }
            emptied.await;
        }
    }
}

/// A connection's row, removed when this is dropped: with the actor that holds it, or at once if
/// the upgrade failed before the actor started.
pub struct SessionSlot {
    table: Arc<SessionTable>,
    session_id: u64,
}

impl SessionSlot {
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The connection's actor has started: it can be closed from now on.
    pub fn attach(&self, closer: Recipient<CloseSession>) {
        if let Some(row) = self.table.rows.lock().get_mut(&self.session_id) {
            row.closer = Some(closer);
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut rows = self.table.rows.lock();
        rows.remove(&self.session_id);
        self.table.metrics.ws_sessions_now(rows.len());
        if rows.is_empty() {
            self.table.emptied.notify_waiters();
        }
    }
}
