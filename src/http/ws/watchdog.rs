//! A backstop for WebSocket connections whose session cannot run.
//!
//! A session actor (event stream or GraphQL) runs only while actix-web polls the response body,
//! and actix-web stops polling it while the socket's send buffer is full: a client that stops
//! reading freezes its session, heartbeat timer and close logic included. Memory stays bounded
//! (the session's mailbox is its queue), but the connection and its `ws.max_sessions` slot would
//! stay forever. The watchdog runs beside the session, outside the body stream: when the client
//! has sent nothing (not even a pong) for the client timeout plus one heartbeat interval, it shuts
//! the TCP connection down, which ends the frozen session.
//!
//! The socket comes from [`on_connect`], which keeps a duplicate of every accepted socket in the
//! connection's data; the duplicate is closed with the connection (or when the watchdog ends).

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Extensions;

/// A duplicate of a connection's TCP socket.
#[derive(Clone)]
pub struct ConnectionSocket(Arc<socket2::Socket>);

impl ConnectionSocket {
    /// Sends our FIN: the client reads what was written, then the end of the stream.
    pub fn close_write(&self) {
        if let Err(e) = self.0.shutdown(std::net::Shutdown::Write) {
            tracing::debug!(error = %e, "closing the write half of a WebSocket connection failed");
        }
    }
}

/// For `HttpServer::on_connect`: keeps a duplicate of the accepted socket in the connection's
/// data, where WebSocket handlers find it (`req.conn_data::<ConnectionSocket>()`).
pub fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        match socket2::SockRef::from(tcp).try_clone() {
            Ok(socket) => {
                data.insert(ConnectionSocket(Arc::new(socket)));
            }
            Err(e) => tracing::warn!(error = %e, "cannot duplicate an accepted socket; its WebSocket has no watchdog"),
        }
    }
}

/// When the client was last heard from, shared between a session and its watchdog.
pub struct Liveness {
    origin: Instant,
    last_heard_ms: AtomicU64,
}

impl Liveness {
    pub fn new() -> Arc<Self> {
        Arc::new(Liveness { origin: Instant::now(), last_heard_ms: AtomicU64::new(0) })
    }

    /// The session heard something from the client.
    pub fn heard(&self) {
        self.last_heard_ms.store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn silent_for(&self) -> Duration {
        let now = self.origin.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_heard_ms.load(Ordering::Relaxed)))
    }
}

/// Ends the watchdog when dropped: the session holds it, so however the session ends, the
/// watchdog (and its duplicate of the socket) goes with it at once.
pub struct WatchdogGuard {
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts the watchdog of one WebSocket connection. Without a socket (not TCP) there is nothing
/// to cut and no watchdog runs.
pub fn spawn(
    socket: Option<ConnectionSocket>,
    liveness: Arc<Liveness>,
    heartbeat_interval: Duration,
    client_timeout: Duration,
    peer: String,
) -> WatchdogGuard {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    if socket.is_none() {
        tracing::debug!(%peer, "no socket captured at accept for this connection; it has no watchdog");
    }
    if let Some(ConnectionSocket(socket)) = socket {
        tracing::debug!(%peer, "watchdog started");
        actix_web::rt::spawn(async move {
            let limit = client_timeout + heartbeat_interval;
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = actix_web::rt::time::sleep(heartbeat_interval) => {}
                }
                if liveness.silent_for() > limit {
                    tracing::info!(%peer, silent_ms = liveness.silent_for().as_millis() as u64,
                        "WebSocket client neither reads nor answers; cutting the connection");
                    if let Err(e) = socket.shutdown(std::net::Shutdown::Both) {
                        tracing::debug!(%peer, error = %e, "shutdown of a stalled connection failed");
                    }
                    return;
                }
            }
        });
    }
    WatchdogGuard { _stop: stop }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A loopback connection: the client end, and the server end as the watchdog would hold it.
    async fn connection() -> (tokio::net::TcpStream, ConnectionSocket) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let server = server.into_std().expect("std socket");
        (client, ConnectionSocket(Arc::new(socket2::Socket::from(server))))
    }

    #[actix_rt::test]
    async fn a_connection_silent_past_the_timeout_is_shut_down() {
        let (mut client, socket) = connection().await;
        let _guard = spawn(
            Some(socket),
            Liveness::new(),
            Duration::from_millis(20),
            Duration::from_millis(60),
            "test".into(),
        );
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("the watchdog acts within the timeout");
        // End of stream (or a reset): the server side is gone.
        assert!(matches!(read, Ok(0) | Err(_)), "got {read:?}");
    }

    #[actix_rt::test]
    async fn a_connection_that_keeps_being_heard_is_left_alone() {
        let (mut client, socket) = connection().await;
        let liveness = Liveness::new();
        let _guard = spawn(
            Some(socket),
            liveness.clone(),
            Duration::from_millis(20),
            Duration::from_millis(60),
            "test".into(),
        );
        // Heard every 10 ms for 300 ms (five times the limit): the connection stays up.
        let started = Instant::now();
        let mut buf = [0u8; 1];
        while started.elapsed() < Duration::from_millis(300) {
            liveness.heard();
            let read = tokio::time::timeout(Duration::from_millis(10), client.read(&mut buf)).await;
            assert!(read.is_err(), "the connection was cut while the client was heard: {read:?}");
        }
    }
}
