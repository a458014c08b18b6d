//! The control socket: one thread, one mio poll loop, many clients.
//!
//! No client can hold the loop: reads and writes are non-blocking, each
//! client is read at most `READ_BUDGET` bytes a round (the rest waits for
//! the next round, after everyone else), a half-written request just
//! waits in its client's buffer, a request over `MAX_REQUEST_LEN` is
//! refused and its connection closed, a client silent for `IDLE_TIMEOUT`
//! is dropped (blank lines are silence; and the one silent longest goes
//! when `MAX_CLIENTS` are connected and another comes), and a client that
//! does not read its replies stops being read once its output buffer is
//! full.
//!
//! A `capture` request turns its connection into a stream: the loop wakes
//! every `CAPTURE_POLL` while one runs, moves what the polling threads put
//! in the capture ring into the client's output buffer, and stops taking
//! from the ring while `CAPTURE_WBUF` bytes wait unsent, so a slow reader
//! makes the ring fill and its frames count as capture drops: the loop
//! itself never waits on it. A capture client that reads nothing for
//! `IDLE_TIMEOUT` while output waits is dropped; a dropped or evicted
//! client's capture is stopped (the port's kernel path resumes).
//!
//! Kept in one file (a little over 600 lines): the poll loop, the client
//! buffers and capture streaming act on one set of connections, token by
//! token, and read best together.

use crate::control::state::State;
use crate::datapath::{CaptureRing, Datapath};
use crate::obs::http::{self, HttpConn};
use crate::obs::metrics;
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use rvs_proto::capstream;
use rvs_proto::client::io_msg;
use rvs_proto::{CaptureStarted, CaptureStatus, Command, Reply, Request, MAX_REQUEST_LEN, MAX_SNAPLEN};
use std::collections::HashMap;
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a client may stay silent before it is dropped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `State::tick` runs.
pub const TICK: Duration = Duration::from_secs(1);
/// Longest wait in poll, so the shutdown flag is seen promptly.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(200);
/// Most clients connected at once; a new one beyond it replaces the client
/// silent the longest.
pub const MAX_CLIENTS: usize = 256;
/// Replies a client has not read, in bytes, before it stops being read.
const WBUF_HIGH: usize = 4 << 20;
/// Bytes read from one client per loop round: a client that writes
/// faster than rvsd reads must not keep the loop (aging, links, the
/// cluster, other clients, SIGTERM) waiting.
const READ_BUDGET: usize = 64 * 1024;
/// Longest wait in poll while a capture runs: how often rings are drained.
const CAPTURE_POLL: Duration = Duration::from_millis(1);
/// Captured bytes waiting for a client before its ring is left to fill.
const CAPTURE_WBUF: usize = 1 << 20;
/// How often a capture client hears about new drops.
const CAPTURE_STATUS_EVERY: Duration = Duration::from_millis(500);

const LISTENER: Token = Token(0);
const METRICS: Token = Token(usize::MAX);

struct Client {
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    last_active: Instant,
    /// Peer closed its side, or we will close after flushing.
    no_more_input: bool,
    /// Reading stopped until the peer reads its replies.
    paused: bool,
    /// Input may be waiting: the client used its budget for this round.
    more: bool,
    /// Registered for writable events.
    want_write: bool,
    dead: bool,
    /// The capture this connection streams, once it asked for one.
    capture: Option<Stream>,
}

/// A capture streaming to one client.
struct Stream {
    port: String,
    ring: Arc<CaptureRing>,
    /// Frames still to send, if a count was given.
    remaining: Option<u64>,
    captured: u64,
    /// Drops the client was last told of, and when.
    told_dropped: u64,
    told_at: Instant,
    /// The client closed its side: end after what the ring holds now.
    stop: bool,
}

impl Client {
    fn new(stream: UnixStream) -> Client {
        Client {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            last_active: Instant::now(),
            no_more_input: false,
            paused: false,
            more: false,
            want_write: false,
            dead: false,
            capture: None,
        }
    }

    fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    fn reply(&mut self, r: &Reply) {
        self.wbuf.extend_from_slice(r.to_line().as_bytes());
        self.wbuf.push(b'\n');
    }

    fn answer<D: Datapath>(&mut self, line: &[u8], state: &mut State<D>) {
        let line = line.trim_ascii();
        if line.is_empty() {
            return;
        }
        tracing::debug!("request: {}", String::from_utf8_lossy(line));
        let reply = match Request::parse(line) {
            Ok(Request { cmd: Command::Capture { port, direction, count, snaplen }, .. }) => {
                let snaplen = snaplen.unwrap_or(MAX_SNAPLEN).clamp(1, MAX_SNAPLEN);
                match state.capture_start(&port, direction, snaplen) {
                    Ok(ring) => {
                        let started = CaptureStarted { port: port.clone(), snaplen };
                        self.capture = Some(Stream {
                            port,
                            ring,
                            remaining: count,
                            captured: 0,
                            told_dropped: 0,
                            told_at: Instant::now(),
                            stop: false,
                        });
                        Reply::from_result(Ok(started))
                    }
                    Err(e) => Reply::err(e),
                }
            }
            Ok(req) => state.handle(req),
            Err(e) => Reply::err(e),
        };
        self.reply(&reply);
    }

    /// Moves captured frames into the output buffer; ends the stream when
    /// the count is reached or the port is gone.
    fn pump<D: Datapath>(&mut self, state: &mut State<D>) {
        let Some(s) = self.capture.as_mut() else { return };
        let mut end = None;
        if !state.has_port(&s.port) {
            end = Some(format!("{} was removed", s.port));
        }
        let mut drained = false;
        while end.is_none() && self.wbuf.len() - self.wpos < CAPTURE_WBUF && s.remaining != Some(0) {
            let Some(c) = s.ring.take() else {
                drained = true;
                break;
            };
            capstream::encode_frame(&mut self.wbuf, c.ts_ns, c.orig_len, c.out, c.bytes());
            s.ring.recycle(c);
            s.captured += 1;
            s.remaining = s.remaining.map(|n| n - 1);
        }
        if s.remaining == Some(0) {
            end = Some("count reached".to_string());
        } else if s.stop && drained {
            end = Some("stopped by the client".to_string());
        }
        let status = CaptureStatus { captured: s.captured, dropped: s.ring.dropped(), reason: end.clone() };
        if end.is_some() {
            let port = s.port.clone();
            capstream::encode_status(&mut self.wbuf, true, &status);
            state.capture_stop(&port);
            self.capture = None;
            // Done once the rest is written.
            self.no_more_input = true;
        } else if status.dropped != s.told_dropped && s.told_at.elapsed() >= CAPTURE_STATUS_EVERY {
            s.told_dropped = status.dropped;
            s.told_at = Instant::now();
            capstream::encode_status(&mut self.wbuf, false, &status);
        }
    }

    /// Answers the complete lines in `rbuf`; refuses an oversize one.
    fn process<D: Datapath>(&mut self, state: &mut State<D>) {
        let mut start = 0;
        while !self.no_more_input && self.capture.is_none() && self.pending() < WBUF_HIGH {
            let Some(n) = self.rbuf[start..].iter().position(|&b| b == b'\n') else {
                break;
            };
            let line = self.rbuf[start..start + n].to_vec();
            start += n + 1;
            if line.len() > MAX_REQUEST_LEN {
                self.too_large();
                break;
            }
            self.answer(&line, state);
        }
        self.rbuf.drain(..start.min(self.rbuf.len()));
        if self.capture.is_some() {
            // A streaming client has nothing more to ask.
            self.rbuf.clear();
            return;
        }
        if !self.no_more_input && self.rbuf.len() > MAX_REQUEST_LEN && !self.rbuf.contains(&b'\n') {
            self.too_large();
        }
        if self.no_more_input {
            self.rbuf.clear();
        }
    }

    fn too_large(&mut self) {
        self.reply(&Reply::err(format!("request too large (limit {MAX_REQUEST_LEN} bytes)")));
        self.no_more_input = true;
        self.rbuf.clear();
    }

    /// Reads until the socket is drained or the round's budget is spent,
    /// answering as lines complete.
    fn on_readable<D: Datapath>(&mut self, state: &mut State<D>) {
        let mut buf = [0u8; 16 * 1024];
        let mut read = 0;
        self.more = false;
        loop {
            if self.no_more_input || self.dead {
                return;
            }
            if read >= READ_BUDGET {
                // Edge-triggered: nothing wakes us for what is left.
                self.more = true;
                return;
            }
            if self.pending() >= WBUF_HIGH {
                self.paused = true;
                return;
            }
            match self.stream.read(&mut buf) {
                Ok(0) if self.capture.is_some() => {
                    // The client is done (or gone): the stream ends with
                    // its final counters; a gone client fails the write.
                    if let Some(s) = self.capture.as_mut() {
                        s.stop = true;
                    }
                    return;
                }
                Ok(0) => {
                    // A last request without a newline still gets its answer.
                    let rest = std::mem::take(&mut self.rbuf);
                    if rest.len() > MAX_REQUEST_LEN {
                        self.too_large();
                    } else {
                        self.answer(&rest, state);
                    }
                    self.no_more_input = true;
                    return;
                }
                Ok(n) => {
                    read += n;
                    // Blank lines are no activity: they do not keep a
                    // connection from its idle timeout.
                    if buf[..n].iter().any(|b| !b.is_ascii_whitespace()) {
                        self.last_active = Instant::now();
                    }
                    self.rbuf.extend_from_slice(&buf[..n]);
                    self.process(state);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
    }

    /// Writes what it can; returns whether to keep the client.
    fn flush(&mut self) {
        while self.pending() > 0 && !self.dead {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => self.dead = true,
                Ok(n) => {
                    self.wpos += n;
                    self.last_active = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => self.dead = true,
            }
        }
        if self.pending() == 0 {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos > WBUF_HIGH {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
    }

    fn done(&self) -> bool {
        self.dead || (self.no_more_input && self.pending() == 0)
    }

    /// Keeps the poll registration in step with whether output is pending.
    fn update_interest(&mut self, poll: &Poll, token: Token) {
        let want = self.pending() > 0;
        if want != self.want_write {
            let interest = if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            if poll.registry().reregister(&mut self.stream, token, interest).is_err() {
                self.dead = true;
            }
            self.want_write = want;
        }
    }
}

/// The bound socket and the identity of its file, to remove only our own.
struct Bound {
    listener: std::os::unix::net::UnixListener,
    dev: u64,
    ino: u64,
}

/// Binds `path` with mode 0660 (group `group` if given) before any client
/// can reach it: the socket is made in a private directory beside `path`,
/// given its mode and group there, then renamed into place.
fn bind(path: &Path, group: Option<u32>) -> io::Result<Bound> {
    let ctx = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what} {}: {}", path.display(), io_msg(&e)));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(|e| ctx("cannot create the directory of", e))?;
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    ErrorKind::AddrInUse,
                    format!("another rvsd is already serving {}", path.display()),
                ));
            }
            fs::remove_file(path).map_err(|e| ctx("cannot remove stale socket", e))?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket; refusing to replace it", path.display()),
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(ctx("cannot inspect", e)),
    }
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "rvsd.sock".to_string());
    let private = dir.join(format!(".{file}.{}.d", std::process::id()));
    let _ = fs::remove_dir_all(&private);
    fs::DirBuilder::new().mode(0o700).create(&private).map_err(|e| ctx("cannot create a private directory for", e))?;
    let tmp = private.join("sock");
    let result = (|| {
        let listener = std::os::unix::net::UnixListener::bind(&tmp).map_err(|e| ctx("cannot bind", e))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o660)).map_err(|e| ctx("cannot set the mode of", e))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(&tmp, None, Some(gid)).map_err(|e| ctx(&format!("cannot give group {gid}"), e))?;
        }
        fs::rename(&tmp, path).map_err(|e| ctx("cannot move the socket to", e))?;
        let m = fs::symlink_metadata(path).map_err(|e| ctx("cannot inspect", e))?;
        Ok(Bound { listener, dev: m.dev(), ino: m.ino() })
    })();
    let _ = fs::remove_file(&tmp);
    let _ = fs::remove_dir(&private);
    result
}

/// Serves the control socket at `socket_path` until `shutdown` is set, then
/// removes the socket file. Calls `state.tick()` about once a second.
/// Returns an error only if the socket cannot be set up or polled.
pub fn serve<D: Datapath>(
    socket_path: &Path,
    group: Option<u32>,
    state: &mut State<D>,
    shutdown: &AtomicBool,
) -> io::Result<()> {
    serve_with(socket_path, group, None, state, shutdown, IDLE_TIMEOUT)
}

/// `serve`, also answering Prometheus scrapes on `metrics` if given.
pub fn serve_all<D: Datapath>(
    socket_path: &Path,
    group: Option<u32>,
    metrics: Option<std::net::TcpListener>,
    state: &mut State<D>,
    shutdown: &AtomicBool,
) -> io::Result<()> {
    serve_with(socket_path, group, metrics, state, shutdown, IDLE_TIMEOUT)
}

/// `serve_all` with a chosen idle timeout (tests use a short one).
pub(crate) fn serve_with<D: Datapath>(
    socket_path: &Path,
    group: Option<u32>,
    metrics: Option<std::net::TcpListener>,
    state: &mut State<D>,
    shutdown: &AtomicBool,
    idle: Duration,
) -> io::Result<()> {
    let bound = bind(socket_path, group)?;
    // Clients can connect from here on (they queue until the loop runs).
    crate::obs::notify::ready();
    let result = serve_bound(&bound, metrics, state, shutdown, idle);
    crate::obs::notify::stopping();
    // Remove the socket only if it is still ours.
    if let Ok(m) = fs::symlink_metadata(socket_path) {
        if m.dev() == bound.dev && m.ino() == bound.ino {
            let _ = fs::remove_file(socket_path);
        }
    }
    result
}

fn serve_bound<D: Datapath>(
    bound: &Bound,
    metrics: Option<std::net::TcpListener>,
    state: &mut State<D>,
    shutdown: &AtomicBool,
    idle: Duration,
) -> io::Result<()> {
    let std_listener = bound.listener.try_clone()?;
    std_listener.set_nonblocking(true)?;
    let mut listener = UnixListener::from_std(std_listener);
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut metrics = match metrics {
        Some(l) => {
            l.set_nonblocking(true)?;
            let mut l = mio::net::TcpListener::from_std(l);
            poll.registry().register(&mut l, METRICS, Interest::READABLE)?;
            Some(l)
        }
        None => None,
    };
    let mut http: HashMap<Token, HttpConn> = HashMap::new();
    let mut events = Events::with_capacity(256);
    let mut clients: HashMap<Token, Client> = HashMap::new();
    let mut next_token = 1usize;
    let mut last_tick = Instant::now();
    let mut accept_pending = false;

    while !shutdown.load(Ordering::Relaxed) {
        let capturing = clients.values().any(|c| c.capture.is_some());
        let wait = if clients.values().any(|c| c.more) {
            Duration::ZERO
        } else if capturing {
            CAPTURE_POLL
        } else {
            POLL_TIMEOUT
        };
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut touched: Vec<Token> = Vec::new();
        for ev in events.iter() {
            let token = ev.token();
            if token == LISTENER {
                accept_pending = true;
                continue;
            }
            if token == METRICS {
                if let Some(l) = metrics.as_mut() {
                    accept_http(l, &poll, &mut http, &mut next_token);
                }
                continue;
            }
            if let Some(h) = http.get_mut(&token) {
                h.on_readable(|| metrics::render(state));
                h.flush();
                h.update_interest(&poll, token);
                continue;
            }
            let Some(c) = clients.get_mut(&token) else {
                continue;
            };
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                c.on_readable(state);
            }
            touched.push(token);
        }
        // Clients that spent their budget last round read again, after
        // everyone else had a turn.
        let again: Vec<Token> =
            clients.iter().filter(|(t, c)| c.more && !touched.contains(t)).map(|(t, _)| *t).collect();
        for token in again {
            if let Some(c) = clients.get_mut(&token) {
                c.on_readable(state);
                touched.push(token);
            }
        }
        if accept_pending {
            let mut evicted = Vec::new();
            accept_pending = accept_all(&listener, &poll, &mut clients, &mut next_token, &mut evicted);
            for mut c in evicted {
                if let Some(s) = c.capture.take() {
                    state.capture_stop(&s.port);
                }
                let _ = poll.registry().deregister(&mut c.stream);
            }
        }
        for token in touched {
            let Some(c) = clients.get_mut(&token) else {
                continue;
            };
            c.flush();
            // Output drained below the mark: read what waited.
            if c.paused && c.pending() < WBUF_HIGH {
                c.paused = false;
                c.process(state);
                c.on_readable(state);
                c.flush();
            }
            c.update_interest(&poll, token);
        }
        if capturing {
            for (token, c) in clients.iter_mut().filter(|(_, c)| c.capture.is_some()) {
                c.pump(state);
                c.flush();
                c.update_interest(&poll, *token);
            }
        }
        let now = Instant::now();
        http.retain(|_, h| {
            let done = h.done(now);
            if done {
                h.deregister(&poll);
            }
            !done
        });
        clients.retain(|_, c| {
            // A capture may stay silent as long as its port is; one whose
            // client stopped reading is idle like any other.
            let stuck = c.capture.is_none() || c.pending() > 0;
            let idle_out = stuck && now.duration_since(c.last_active) >= idle;
            let keep = !c.done() && !idle_out;
            if !keep {
                if let Some(s) = c.capture.take() {
                    state.capture_stop(&s.port);
                }
                let _ = poll.registry().deregister(&mut c.stream);
            }
            keep
        });
        state.sync();
        if now.duration_since(last_tick) >= TICK {
            last_tick = now;
            state.tick();
        }
    }
    Ok(())
}

/// Accepts every waiting connection; returns true if it must try again
/// later (e.g. out of file descriptors). Clients dropped to make room go
/// to `evicted`, for the caller to stop their captures.
fn accept_all(
    listener: &UnixListener,
    poll: &Poll,
    clients: &mut HashMap<Token, Client>,
    next_token: &mut usize,
    evicted: &mut Vec<Client>,
) -> bool {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                if clients.len() >= MAX_CLIENTS {
                    // Full: make room by dropping the client silent the
                    // longest, or clients that connect and say nothing
                    // would lock everyone out until they time out.
                    let oldest = clients.iter().min_by_key(|(_, c)| c.last_active).map(|(t, _)| *t);
                    evicted.extend(oldest.and_then(|t| clients.remove(&t)));
                }
                let token = Token(*next_token);
                *next_token = after(*next_token);
                if poll.registry().register(&mut stream, token, Interest::READABLE).is_ok() {
                    clients.insert(token, Client::new(stream));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("cannot accept a control connection: {e}");
                return true;
            }
        }
    }
}

/// The token after `t` for a new connection: never a listener's.
fn after(t: usize) -> usize {
    match t.wrapping_add(1) {
        n if n == LISTENER.0 || n == METRICS.0 => 1,
        n => n,
    }
}

/// Accepts every waiting metrics connection (beyond `MAX_HTTP_CLIENTS`,
/// closes them at once).
fn accept_http(
    listener: &mio::net::TcpListener,
    poll: &Poll,
    http: &mut HashMap<Token, HttpConn>,
    next_token: &mut usize,
) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if http.len() >= http::MAX_HTTP_CLIENTS {
                    continue;
                }
                let token = Token(*next_token);
                *next_token = after(*next_token);
                let mut conn = HttpConn::new(stream);
                if poll.registry().register(conn.stream_mut(), token, Interest::READABLE).is_ok() {
                    http.insert(token, conn);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // WouldBlock, or out of descriptors: the next event retries.
            Err(_) => return,
        }
    }
}

/// The id of a group given by name or number, for `serve`'s `group`.
pub fn group_id(name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let cname = std::ffi::CString::new(name).map_err(|_| format!("invalid group name {name:?}"))?;
    let mut buf: Vec<libc::c_char> = vec![0; 16 * 1024];
    loop {
        // SAFETY: all-zero is a valid `group` (null pointers, zero id).
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf.len()` is
        // the true length of `buf`; `grp` is read only if `found` is set.
        let rc = unsafe { libc::getgrnam_r(cname.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut found) };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            let e = io::Error::from_raw_os_error(rc);
            return Err(format!("cannot look up group {name:?}: {}", io_msg(&e)));
        }
        if found.is_null() {
            return Err(format!("unknown group {name:?}"));
        }
        return Ok(grp.gr_gid);
    }
}

#[cfg(test)]
mod tests;
