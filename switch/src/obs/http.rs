//! The metrics endpoint's HTTP/1.1 responder, served by the control loop.
//!
//! Deliberately small: one request per connection (then `Connection:
//! close`), `GET /metrics` only, a request head of at most [`MAX_HEAD`]
//! bytes, and [`HTTP_TIMEOUT`] for the whole exchange, so a garbage or slow
//! client costs a buffer and a timer and nothing else.

use mio::net::TcpStream;
use mio::{Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

/// Longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Longest a connection may take to send its request and read the answer.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Most metrics connections open at once; more are refused.
pub const MAX_HTTP_CLIENTS: usize = 32;

/// The HTTP response to a request head (everything up to the blank line).
pub fn respond(head: &[u8], body: impl FnOnce() -> String) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let ok_version = version.is_some_and(|v| v.starts_with("HTTP/1."));
    let (status, ctype, text) = match (method, target) {
        _ if !ok_version || parts.next().is_some() => ("400 Bad Request", "text/plain", "bad request\n".to_string()),
        (Some("GET"), Some(t)) if t == "/metrics" || t.starts_with("/metrics?") => {
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body())
        }
        (Some("GET"), Some(_)) => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET /metrics\n".to_string()),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len()
    );
    if status.starts_with("405") {
        out.push_str("Allow: GET\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&text);
    out.into_bytes()
}

/// One metrics connection in the control loop.
pub struct HttpConn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    since: Instant,
    answered: bool,
    /// The answer is out and our side shut: waiting for the peer to close.
    shut: bool,
    want_write: bool,
    dead: bool,
}

/// How long a connection is kept after its answer, for the peer to close
/// first: closing with unread input would reset the connection and could
/// destroy the answer in flight.
const LINGER: Duration = Duration::from_secs(2);

impl HttpConn {
    /// A connection just accepted.
    pub fn new(stream: TcpStream) -> HttpConn {
        HttpConn {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            since: Instant::now(),
            answered: false,
            shut: false,
            want_write: false,
            dead: false,
        }
    }

    /// Reads what came; once the request head is complete (or too long),
    /// queues the answer, rendering the body with `body` only if asked
    /// for metrics.
    pub fn on_readable(&mut self, body: impl FnOnce() -> String) {
        let mut buf = [0u8; 2048];
        // Bounded, so a peer that keeps sending cannot hold the loop.
        for _ in 0..32 {
            if self.dead {
                return;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.dead = true;
                }
                // After the answer, input is read only to be dropped.
                Ok(_) if self.answered => continue,
                Ok(n) => self.rbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => self.dead = true,
            }
            if let Some(end) = head_end(&self.rbuf) {
                self.wbuf = respond(&self.rbuf[..end], body);
                self.answered = true;
                self.since = Instant::now();
                self.rbuf = Vec::new();
                return;
            }
            if self.rbuf.len() > MAX_HEAD {
                self.wbuf =
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec();
                self.answered = true;
                self.since = Instant::now();
                self.rbuf = Vec::new();
                return;
            }
        }
    }

    /// Writes what it can of the answer.
    pub fn flush(&mut self) {
        while self.wpos < self.wbuf.len() && !self.dead {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => self.dead = true,
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => self.dead = true,
            }
        }
        if self.answered && !self.shut && self.wpos >= self.wbuf.len() {
            self.shut = true;
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
    }

    /// True once the peer is gone or time is up: `HTTP_TIMEOUT` to ask,
    /// `LINGER` after the answer.
    pub fn done(&self, now: Instant) -> bool {
        let limit = if self.answered { LINGER } else { HTTP_TIMEOUT };
        self.dead || now.duration_since(self.since) > limit
    }

    /// Registers for writable events while the answer waits.
    pub fn update_interest(&mut self, poll: &Poll, token: Token) {
        let want = self.wpos < self.wbuf.len();
        if want != self.want_write {
            let interest = if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            if poll.registry().reregister(&mut self.stream, token, interest).is_err() {
                self.dead = true;
            }
            self.want_write = want;
        }
    }

    /// Leaves the poll.
    pub fn deregister(&mut self, poll: &Poll) {
        let _ = poll.registry().deregister(&mut self.stream);
    }

    /// The stream, to register it.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// Where the request head ends (after the blank line), if it has.
fn head_end(b: &[u8]) -> Option<usize> {
    if let Some(i) = b.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some(i + 4);
    }
    b.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn answers_only_get_metrics() {
        let r = text(respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", || "m 1\n".into()));
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4") && r.contains("Content-Length: 4\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nm 1\n"), "{r}");
        let never = || -> String { panic!("body rendered for a request that did not ask for it") };
        assert!(text(respond(b"GET / HTTP/1.0\r\n\r\n", never)).starts_with("HTTP/1.1 404"));
        assert!(text(respond(b"POST /metrics HTTP/1.1\r\n\r\n", never)).starts_with("HTTP/1.1 405"));
        for junk in
            [&b"\x00\xff garbage"[..], b"", b"GET", b"GET /metrics", b"GET /metrics SPDY/3", b"GET /metrics HTTP/1.1 x"]
        {
            assert!(text(respond(junk, never)).starts_with("HTTP/1.1 400"), "{junk:?}");
        }
    }

    #[test]
    fn head_ends_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
