//! Connections to the other `clusterd` processes of a cluster: one outgoing WebSocket per peer
//! process (`ws://{address}/api/v1/cluster/peer`, with the server's token), carrying this
//! process's Raft messages to the nodes hosted there, in batches, and pinging it every heartbeat
//! to measure that it answers and how fast. A line whose connection is down drops what it is
//! given (Raft resends) and dials again with backoff, so a restarted peer is reached again.
//! Incoming connections are the HTTP face's (`http::rest::peer`); both ends frame messages with
//! [`encode_batch`] / [`decode_batch`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;

use super::Destination;
use crate::messages::cluster::RaftPeerMessage;
use crate::model::ProcessLoad;

/// The path peer processes connect to.
pub const PEER_PATH: &str = "/api/v1/cluster/peer";

/// The most bytes of one frame, each way: a batch of messages, or one snapshot (raft-rs sends
/// entries in messages of at most 1 MiB; a snapshot of the metadata is far below this).
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// Messages waiting for a line's connection. Bounded: a full line drops (Raft resends what
/// matters), which also bounds what a slow peer costs this process.
const LINE_QUEUE: usize = 4096;

/// Messages sent in one frame at most.
const BATCH: usize = 256;

/// The first version of the frame layout; a frame of another is refused.
const VERSION: u8 = 1;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("empty frame")]
    Empty,
    #[error("frame version {0} is not {VERSION}")]
    Version(u8),
    #[error("frame truncated at byte {0}")]
    Truncated(usize),
    #[error("message at byte {at} is not a Raft message: {reason}")]
    Message { at: usize, reason: String },
}

/// One frame: the version byte, then each message as a 4-byte big-endian length and its
/// protobuf bytes (raft-rs's own encoding).
pub fn encode_batch(msgs: &[Message]) -> Result<Vec<u8>, protobuf::ProtobufError> {
    let mut out = vec![VERSION];
    for m in msgs {
        let bytes = m.write_to_bytes()?;
        let len = u32::try_from(bytes.len()).map_err(|_| protobuf::ProtobufError::MessageNotInitialized { message: "a Raft message over 4 GiB" })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

pub fn decode_batch(frame: &[u8]) -> Result<Vec<Message>, WireError> {
    let (&version, mut rest) = frame.split_first().ok_or(WireError::Empty)?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let at = frame.len() - rest.len();
        let len_bytes: [u8; 4] = rest.get(..4).and_then(|b| b.try_into().ok()).ok_or(WireError::Truncated(at))?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let body = rest.get(4..4 + len).ok_or(WireError::Truncated(at))?;
        out.push(Message::parse_from_bytes(body).map_err(|e| WireError::Message { at, reason: e.to_string() })?);
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// What a line knows of its peer process, shared between its task and its readers.
#[derive(Debug, Default)]
struct LineState {
    connected: AtomicBool,
    /// Micros since the lines' epoch when the peer last answered a ping; 0 before any.
    last_heard_micros: AtomicU64,
    rtt_micros: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    connects: AtomicU64,
    /// The peer process's load, as its last ping answer told it.
    load: Mutex<Option<ProcessLoad>>,
}

/// What this process last measured of a peer process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerHealth {
    pub connected: bool,
    /// When the peer last answered a ping, if it ever did.
    pub last_heard: Option<Instant>,
    pub rtt: Option<Duration>,
    pub sent: u64,
    pub dropped: u64,
    pub connects: u64,
    pub load: Option<ProcessLoad>,
}

/// The sending end of one line: where a node sends a message to a node of that process.
#[derive(Clone)]
pub struct PeerSender {
    queue: mpsc::Sender<Message>,
    state: Arc<LineState>,
}

impl Destination<RaftPeerMessage> for PeerSender {
    fn deliver(&self, msg: RaftPeerMessage) {
        if !self.state.connected.load(Ordering::Acquire) || self.queue.try_send(msg.0).is_err() {
            self.state.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Inner {
    /// Where the lines' tasks run: their own thread, away from the nodes' and HTTP's.
    arbiter: Arbiter,
    token: String,
    heartbeat: Duration,
    epoch: Instant,
    lines: Mutex<HashMap<String, PeerSender>>,
}

/// The lines to every peer process, cheap to clone.
#[derive(Clone)]
pub struct PeerLinks {
    inner: Arc<Inner>,
}

impl PeerLinks {
    /// Lines that authenticate with `token` (empty: none) and ping every `heartbeat`.
    pub fn new(token: String, heartbeat: Duration) -> PeerLinks {
        PeerLinks {
            inner: Arc::new(Inner { arbiter: Arbiter::new(), token, heartbeat, epoch: Instant::now(), lines: Mutex::new(HashMap::new()) }),
        }
    }

    /// The line to the process at `address`, dialled on first use.
    pub fn line(&self, address: &str) -> PeerSender {
        let mut lines = self.inner.lines.lock();
        if let Some(line) = lines.get(address) {
            return line.clone();
        }
        let (queue, rx) = mpsc::channel(LINE_QUEUE);
        let state = Arc::new(LineState::default());
        let line = PeerSender { queue, state: state.clone() };
        lines.insert(address.to_string(), line.clone());
        let task = LineTask { url: format!("ws://{address}{PEER_PATH}"), address: address.to_string(), inner: self.inner.clone(), state };
        // awc's connections are not Send: the task is spawned from inside the lines' arbiter.
        self.inner.arbiter.spawn_fn(move || {
            actix_rt::spawn(task.run(rx));
        });
        line
    }

    pub fn health(&self, address: &str) -> Option<PeerHealth> {
        let lines = self.inner.lines.lock();
        let s = &lines.get(address)?.state;
        let heard = s.last_heard_micros.load(Ordering::Acquire);
        let rtt = s.rtt_micros.load(Ordering::Relaxed);
        let load = *s.load.lock();
        Some(PeerHealth {
            connected: s.connected.load(Ordering::Acquire),
            last_heard: (heard > 0).then(|| self.inner.epoch + Duration::from_micros(heard)),
            rtt: (heard > 0).then(|| Duration::from_micros(rtt)),
            sent: s.sent.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            load,
        })
    }

    /// Stops every line.
    pub fn stop(&self) {
        self.inner.arbiter.stop();
    }
}

struct LineTask {
    url: String,
    address: String,
    inner: Arc<Inner>,
    state: Arc<LineState>,
}

/// Backoff between dials of a peer that does not answer.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(1);

impl LineTask {
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let mut retry = FIRST_RETRY;
        loop {
            match self.connect().await {
                Ok(conn) => {
                    retry = FIRST_RETRY;
                    self.state.connects.fetch_add(1, Ordering::Relaxed);
                    self.state.connected.store(true, Ordering::Release);
                    tracing::info!(peer = %self.address, "peer connection open");
                    let ended = self.serve(conn, &mut rx).await;
                    self.state.connected.store(false, Ordering::Release);
                    match ended {
                        Ended::Closed(reason) => tracing::warn!(peer = %self.address, %reason, "peer connection lost"),
                        Ended::Stopped => return,
                    }
                }
                Err(error) => tracing::debug!(peer = %self.address, %error, "peer not reachable"),
            }
            // What waited for a connection is stale by now: Raft resends what it still needs.
            while let Ok(_stale) = rx.try_recv() {
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(LAST_RETRY);
        }
    }

    async fn connect(&self) -> Result<actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>, String> {
        use actix_service::Service as _;
        use actix_tls::connect::{ConnectError, ConnectInfo, Connector, Resolver};
        // Raft sends many small messages unasked: Nagle's algorithm would hold each behind the
        // ACK of the last, which the peer may delay 40 ms.
        let tcp = Connector::new(Resolver::default()).service();
        let nodelay = actix_service::fn_service(move |req: ConnectInfo<awc::http::Uri>| {
            let connecting = tcp.call(req);
            async move {
                let conn = connecting.await?;
                conn.io_ref().set_nodelay(true).map_err(ConnectError::Io)?;
                Ok::<_, ConnectError>(conn)
            }
        });
        let client = awc::Client::builder().connector(awc::Connector::new().connector(nodelay)).timeout(LAST_RETRY).finish();
        let mut req = client.ws(&self.url).max_frame_size(MAX_FRAME_BYTES);
        if !self.inner.token.is_empty() {
            req = req.bearer_auth(&self.inner.token);
        }
        let (_, conn) = req.connect().await.map_err(|e| e.to_string())?;
        Ok(conn)
    }

    /// Sends what comes and pings, until the connection fails or the line is dropped.
    async fn serve(&self, conn: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>, rx: &mut mpsc::Receiver<Message>) -> Ended {
        let (mut sink, mut stream) = conn.split();
        let mut ping = tokio::time::interval(self.inner.heartbeat);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A peer that answers no ping for this long is taken for gone, and dialled again.
        let silence = (self.inner.heartbeat * 10).max(Duration::from_secs(1));
        let mut last_answer = Instant::now();
        loop {
            tokio::select! {
                first = rx.recv() => {
                    let Some(first) = first else { return Ended::Stopped };
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(m) => batch.push(m),
                            Err(_) => break,
                        }
                    }
                    let frame = match encode_batch(&batch) {
                        Ok(f) => f,
                        Err(e) => return Ended::Closed(format!("a message could not be encoded: {e}")),
                    };
                    if let Err(e) = sink.send(awc::ws::Message::Binary(frame.into())).await {
                        return Ended::Closed(e.to_string());
                    }
                    self.state.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                _ = ping.tick() => {
                    if last_answer.elapsed() > silence {
                        return Ended::Closed(format!("no answer to pings for {} ms", silence.as_millis()));
                    }
                    let at = self.inner.epoch.elapsed().as_micros() as u64;
                    if let Err(e) = sink.send(awc::ws::Message::Ping(at.to_be_bytes().to_vec().into())).await {
                        return Ended::Closed(e.to_string());
                    }
                }
                frame = stream.next() => match frame {
                    Some(Ok(awc::ws::Frame::Pong(bytes))) => {
                        let now = self.inner.epoch.elapsed().as_micros() as u64;
                        if let Some(sent) = bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                            let sent = u64::from_be_bytes(sent);
                            self.state.rtt_micros.store(now.saturating_sub(sent), Ordering::Relaxed);
                        }
                        if let Some(load) = bytes.get(8..).and_then(ProcessLoad::from_bytes) {
                            *self.state.load.lock() = Some(load);
                        }
                        self.state.last_heard_micros.store(now.max(1), Ordering::Release);
                        last_answer = Instant::now();
                    }
                    Some(Ok(awc::ws::Frame::Close(reason))) => return Ended::Closed(format!("closed by the peer: {reason:?}")),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Ended::Closed(e.to_string()),
                    None => return Ended::Closed("the connection ended".into()),
                },
            }
        }
    }
}

enum Ended {
    Closed(String),
    /// Every sender is gone: the process is stopping.
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_back_and_a_bad_frame_is_refused() {
        let a = Message { to: 7, term: 3, ..Default::default() };
        let mut b = Message { from: 9, ..Default::default() };
        b.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
        let frame = encode_batch(&[a.clone(), b.clone()]).expect("encodes");
        assert_eq!(decode_batch(&frame).expect("decodes"), vec![a, b]);
        assert_eq!(decode_batch(&[VERSION]).expect("an empty batch"), Vec::<Message>::new());
        assert!(matches!(decode_batch(&[]), Err(WireError::Empty)));
        assert!(matches!(decode_batch(&[2]), Err(WireError::Version(2))));
        assert!(matches!(decode_batch(&frame[..frame.len() - 1]), Err(WireError::Truncated(_))));
        assert!(matches!(decode_batch(&[VERSION, 0, 0, 0, 2, 0xff, 0xff]), Err(WireError::Message { .. })));
    }
}
