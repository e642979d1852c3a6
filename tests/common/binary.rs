//! The real `clusterd` binary started on an ephemeral port, and a minimal HTTP/1.1 client: tests
//! that need the process itself (signals, its memory, its sockets) speak to it with nothing but a
//! blocking socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{clusterd_command, poll_until};

/// How long the binary may take to log its address, and a request to be answered.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Server {
    pub child: Child,
    pub addr: String,
}

/// Starts `clusterd serve` on an ephemeral port and waits for the line naming the address.
pub fn start(data_dir: &std::path::Path) -> Server {
    let dir = data_dir.to_string_lossy();
    start_with(&["serve", "--bind", "127.0.0.1:0", "--data-dir", &dir])
}

/// Starts `clusterd` with `args` and waits for the line naming the address it serves on.
pub fn start_with(args: &[&str]) -> Server {
    let mut child = clusterd_command()
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx.recv_timeout(WAIT).expect("the server logs the address it listens on");
    Server { child, addr }
}

/// A minimal HTTP/1.1 client: the binary is tested with nothing but a socket.
pub fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    request_as(addr, None, method, path, body)
}

/// [`request`] with a bearer token, if given.
pub fn request_as(addr: &str, token: Option<&str>, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write request");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

pub async fn wait_exit(child: &mut Child) -> ExitStatus {
    poll_until("the server to exit", || std::future::ready(child.try_wait().expect("wait"))).await
}

pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([format!("-{sig}"), child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{sig} failed");
}

impl Server {
    /// Waits (at most [`WAIT`]) until the cluster's status names a Raft leader: start-up's
    /// elections and first writes are done, so what a test measures next is its own doing.
    pub fn wait_for_leader(&self) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (status, body) = request(&self.addr, "GET", "/api/v1/cluster/status", "");
            if status == 200 && !body.contains("\"leader\":null") {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no Raft leader within {WAIT:?}: {body}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's resident memory, from /proc (Linux).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("read /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc status");
        kib * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
