//! A backstop for WebSocket connections whose session cannot run.
//!
//! A session actor (event stream or GraphQL) runs on its connection's task, which writes each
//! frame to the socket before it polls the session again: a client that stops reading freezes its
//! session, heartbeat timer and close logic included. Memory stays bounded (the session's mailbox
//! is its queue), but the connection and its `ws.max_sessions` slot would stay forever. So a write
//! the socket does not take is watched: when the client has sent nothing (not even a pong) for the
//! client timeout plus one heartbeat interval, the connection is cut, which ends the frozen session.

use std::cell::Cell;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// When the client was last heard from: any bytes it sent. Shared by the connection's reader and
/// writer, which run on the same task.
pub struct Liveness {
    last_heard: Cell<Instant>,
}

impl Liveness {
    pub fn new() -> Self {
        Liveness { last_heard: Cell::new(Instant::now()) }
    }

    /// The client sent something.
    pub fn heard(&self) {
        self.last_heard.set(Instant::now());
    }

    pub fn silent_for(&self) -> Duration {
        self.last_heard.get().elapsed()
    }

    fn silent_past(&self, limit: Duration) -> Instant {
        self.last_heard.get() + limit
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes all of `bytes`, or fails with `TimedOut` if the socket does not take them before the
/// client has been silent for `limit`. A write the socket takes at once costs no timer; the timer
/// of one it does not is boxed, so an idle connection's task keeps no room for it.
pub async fn write_all<W: AsyncWrite + Unpin>(
    socket: &mut W,
    bytes: &[u8],
    liveness: &Liveness,
    limit: Duration,
) -> std::io::Result<()> {
    let mut write = std::pin::pin!(socket.write_all(bytes));
    if let std::task::Poll::Ready(done) = futures_util::poll!(write.as_mut()) {
        return done;
    }
    let mut timer = Box::pin(tokio::time::sleep_until(liveness.silent_past(limit).into()));
    loop {
        tokio::select! {
            done = write.as_mut() => return done,
            () = &mut timer => {
                if liveness.silent_for() >= limit {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the client neither reads nor writes (silent for {:?})", liveness.silent_for()),
                    ));
                }
                // Heard from meanwhile: the deadline moved.
                timer.as_mut().reset(liveness.silent_past(limit).into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A loopback connection whose client end never reads, with small socket buffers.
    async fn connection() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[actix_rt::test]
    async fn a_write_the_silent_client_never_takes_is_cut() {
        let (_client, mut server) = connection().await;
        let liveness = Liveness::new();
        // More than both socket buffers hold: the write can only finish if the client reads.
        let bytes = vec![0u8; 64 << 20];
        let started = Instant::now();
        let written = tokio::time::timeout(
            Duration::from_secs(5),
            write_all(&mut server, &bytes, &liveness, Duration::from_millis(100)),
        )
        .await
        .expect("the watchdog acts within the limit");
        assert_eq!(written.expect_err("a cut write").kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[actix_rt::test]
    async fn a_write_the_client_takes_finishes() {
        let (mut client, mut server) = connection().await;
        let liveness = Liveness::new();
        let bytes = vec![7u8; 4 << 20];
        let reader = async {
            let mut got = vec![0u8; bytes.len()];
            client.read_exact(&mut got).await.expect("read all");
            got
        };
        let (written, got) = tokio::join!(write_all(&mut server, &bytes, &liveness, Duration::from_secs(5)), reader);
        written.expect("the write finishes");
        assert_eq!(got, bytes);
    }

    #[actix_rt::test]
    async fn a_client_heard_while_the_write_waits_moves_the_deadline() {
        let (mut client, mut server) = connection().await;
        let liveness = Liveness::new();
        let bytes = vec![0u8; 64 << 20];
        let limit = Duration::from_millis(100);
        let started = Instant::now();
        let write = write_all(&mut server, &bytes, &liveness, limit);
        let keep_hearing = async {
            // Heard every 20 ms for 300 ms (three times the limit) without reading, then heard
            // as it reads everything (a client sending pings as it reads): the write is never
            // cut, however slowly a loaded machine moves the bytes.
            while started.elapsed() < Duration::from_millis(300) {
                liveness.heard();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut sink = vec![0u8; 1 << 20];
            let mut left = bytes.len();
            while left > 0 {
                liveness.heard();
                // 0: the write was cut and the connection closed; `written` says why.
                match client.read(&mut sink).await.expect("read") {
                    0 => break,
                    n => left -= n,
                }
            }
        };
        // A cut write leaves the reader waiting for bytes that never come: a failure, not a hang.
        let both = tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(write, keep_hearing) });
        let (written, ()) = both.await.expect("the write and the reads end");
        written.expect("not cut while the client was heard");
    }
}
