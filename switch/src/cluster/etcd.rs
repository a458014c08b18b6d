//! A small etcd v3 client over etcd's JSON gateway (HTTP/1.1 on the client
//! port, `POST /v3/...`), enough for cluster membership: leases, put,
//! prefix range, delete and a prefix watch.
//!
//! The gateway speaks JSON with keys and values in base64 and 64-bit
//! integers as strings. Using it keeps the default build free of protoc
//! and gRPC. Each unary call is one short connection with a timeout, tried
//! on every endpoint in turn; `https://` endpoints run it over rustls (see
//! [`super::tls`]). With an etcd user, the client authenticates
//! (`/v3/auth/authenticate`), sends the token in `Authorization` on every
//! call, and authenticates again once when etcd calls the token invalid
//! (a simple token expires after 5 idle minutes).

use super::tls::{self, Conn};
use rvs_proto::check::EtcdEndpoint;
use rvs_proto::config::ClusterConfig;
use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one unary call may take, connect included.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest response body accepted.
const MAX_BODY: usize = 16 << 20;
/// Keys per range reply. Values stay under about 256 KiB (MAC records
/// are split into parts that size), so a page stays well under
/// [`MAX_BODY`] even in base64.
pub const RANGE_PAGE: usize = 32;
/// Most keys one prefix read takes in all: a store filled by a broken or
/// hostile writer gives an error, not an agent out of memory.
const MAX_RANGE_KEYS: usize = 200_000;

/// Environment variable read for the etcd password when no
/// `--etcd-password-file` is given.
pub const PASSWORD_ENV: &str = "RVS_ETCD_PASSWORD";

/// An etcd cluster, by its client endpoints, with how to reach them.
#[derive(Clone)]
pub struct Client {
    endpoints: Vec<EtcdEndpoint>,
    tls: Option<Arc<rustls::ClientConfig>>,
    auth: Option<Arc<Auth>>,
}

impl std::fmt::Debug for Client {
    /// Without the password or token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints)
            .field("tls", &self.tls.is_some())
            .field("user", &self.auth.as_ref().map(|a| &a.user))
            .finish()
    }
}

/// etcd v3 user authentication: who, and the token while it lasts.
struct Auth {
    user: String,
    password: String,
    token: Mutex<Option<String>>,
}

/// An error etcd answered with (as opposed to one reaching it).
#[derive(Debug)]
struct ServerError {
    path: String,
    status: u16,
    message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd {}: HTTP {}: {}", self.path, self.status, self.message)
    }
}

impl std::error::Error for ServerError {}

impl ServerError {
    /// The one etcd gives for an expired or unknown token (gRPC
    /// Unauthenticated is HTTP 401 through the gateway).
    fn is_bad_token(e: &io::Error) -> bool {
        e.get_ref()
            .and_then(|i| i.downcast_ref::<ServerError>())
            .is_some_and(|s| s.status == 401 || s.message.contains("auth token"))
    }
}

/// A prefix read: every key, at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Range {
    /// The keys, in key order.
    pub kvs: Vec<Kv>,
    /// The store's revision they were read at.
    pub revision: i64,
    /// Replies it took.
    pub pages: usize,
}

/// One key and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: String,
    /// The value (UTF-8 expected; lossy otherwise).
    pub value: String,
}

impl Client {
    /// A client for `cfg`'s endpoints, with its TLS files and password
    /// read now: a missing or bad file is an error naming it.
    pub fn new(cfg: &ClusterConfig) -> Result<Client, String> {
        rvs_proto::check_cluster(cfg)?;
        let endpoints = rvs_proto::check::etcd_endpoints(&cfg.etcd)?;
        let tls = tls::client_config(&cfg.auth)?;
        let auth = match &cfg.auth.user {
            Some(user) => {
                let password = read_password(cfg.auth.password_file.as_deref(), std::env::var(PASSWORD_ENV).ok())
                    .map_err(|e| format!("etcd user {user}: {e}"))?;
                Some(Arc::new(Auth { user: user.clone(), password, token: Mutex::new(None) }))
            }
            None => None,
        };
        Ok(Client { endpoints, tls, auth })
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub fn lease_grant(&self, ttl: u32) -> io::Result<i64> {
        let r = self.call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))?;
        int_field(&r, "ID").ok_or_else(|| bad("lease grant reply without an ID"))
    }

    /// Refreshes lease `id`; returns the TTL left, or None if the lease is
    /// gone (expired or revoked).
    pub fn lease_keepalive(&self, id: i64) -> io::Result<Option<i64>> {
        let r = self.call("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))?;
        let r = r.get("result").unwrap_or(&r);
        Ok(int_field(r, "TTL").filter(|t| *t > 0))
    }

    /// Revokes lease `id`, deleting every key attached to it.
    pub fn lease_revoke(&self, id: i64) -> io::Result<()> {
        self.call("/v3/lease/revoke", &json!({ "ID": id.to_string() })).map(|_| ())
    }

    /// Sets `key` to `value`, attached to `lease` (0: none).
    pub fn put(&self, key: &str, value: &str, lease: i64) -> io::Result<()> {
        let mut body = json!({ "key": base64(key.as_bytes()), "value": base64(value.as_bytes()) });
        if lease != 0 {
            body["lease"] = Value::String(lease.to_string());
        }
        self.call("/v3/kv/put", &body).map(|_| ())
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) -> io::Result<()> {
        self.call("/v3/kv/deleterange", &json!({ "key": base64(key.as_bytes()) })).map(|_| ())
    }

    /// Every key under `prefix`, read [`RANGE_PAGE`] keys at a time, all
    /// at the revision of the first reply (one consistent view).
    pub fn range_prefix(&self, prefix: &str) -> io::Result<Range> {
        self.range_paged(prefix, RANGE_PAGE)
    }

    /// [`Client::range_prefix`] with `page` keys a reply: each next page
    /// starts just after the last key of the one before (the key and a
    /// NUL byte), until etcd says there is no `more`.
    fn range_paged(&self, prefix: &str, page: usize) -> io::Result<Range> {
        let end = base64(&prefix_end(prefix.as_bytes()));
        let mut range = Range::default();
        let mut from = prefix.as_bytes().to_vec();
        loop {
            let mut body = json!({ "key": base64(&from), "range_end": end, "limit": page.to_string() });
            if range.pages > 0 {
                body["revision"] = Value::String(range.revision.to_string());
            }
            let r = self.call("/v3/kv/range", &body)?;
            if range.pages == 0 {
                range.revision = r.get("header").and_then(|h| int_field(h, "revision")).unwrap_or(0);
            }
            range.pages += 1;
            let mut last = None;
            for kv in r.get("kvs").and_then(Value::as_array).into_iter().flatten() {
                let key =
                    kv.get("key").and_then(Value::as_str).and_then(unbase64).ok_or_else(|| bad("key not base64"))?;
                let value = kv.get("value").and_then(Value::as_str).map_or(Some(Vec::new()), unbase64);
                let value = value.ok_or_else(|| bad("value not base64"))?;
                range.kvs.push(Kv {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    value: String::from_utf8_lossy(&value).into_owned(),
                });
                last = Some(key);
            }
            if range.kvs.len() > MAX_RANGE_KEYS {
                return Err(bad(&format!("more than {MAX_RANGE_KEYS} keys under {prefix}")));
            }
            if r.get("more").and_then(Value::as_bool) != Some(true) {
                return Ok(range);
            }
            // A next page must start past this one, or the read never ends.
            match last {
                Some(mut key) if key >= from => {
                    key.push(0);
                    from = key;
                }
                _ => return Err(bad("range reply says more, but its keys do not move on")),
            }
        }
    }

    /// Watches every key under `prefix` from revision `from` on, calling
    /// `changed` once per batch of events, until `stop` is set, the stream
    /// ends or fails. Blocks; run it on a thread of its own.
    pub fn watch_prefix(
        &self,
        prefix: &str,
        from: i64,
        stop: &AtomicBool,
        mut changed: impl FnMut(),
    ) -> io::Result<()> {
        let body = json!({ "create_request": {
            "key": base64(prefix.as_bytes()),
            "range_end": base64(&prefix_end(prefix.as_bytes())),
            "start_revision": from.to_string(),
        }});
        let token = self.token()?;
        let mut last = io::Error::other("no endpoint");
        for ep in &self.endpoints {
            let mut stream = match Conn::open(ep, self.tls.as_ref(), Instant::now() + CALL_TIMEOUT) {
                Ok(s) => s,
                Err(e) => {
                    last = io::Error::new(e.kind(), format!("etcd {}: {e}", ep.addr));
                    continue;
                }
            };
            stream.set_write_timeout(Some(CALL_TIMEOUT))?;
            // A watch may stay silent for long: wake up to look at `stop`.
            stream.set_read_timeout(Some(Duration::from_millis(500)))?;
            send_request(&mut stream, &ep.addr, "/v3/watch", &body, token.as_deref(), false)
                .map_err(|e| with_ep(stream.explain(e), ep))?;
            let mut r = BufReader::new(stream);
            let chunked = read_head(&mut r, stop)?;
            if !chunked {
                return Err(bad("watch reply is not a stream"));
            }
            let mut pending = Vec::new();
            loop {
                let Some(chunk) = read_chunk(&mut r, stop)? else { return Ok(()) };
                pending.extend_from_slice(&chunk);
                for v in take_messages(&mut pending)? {
                    if let Some(err) = v.get("error") {
                        return Err(io::Error::other(format!("etcd watch: {err}")));
                    }
                    let res = v.get("result").unwrap_or(&v);
                    if res.get("canceled").and_then(Value::as_bool) == Some(true) {
                        return Err(io::Error::other("etcd canceled the watch"));
                    }
                    if res.get("events").and_then(Value::as_array).is_some_and(|e| !e.is_empty()) {
                        changed();
                    }
                }
            }
        }
        Err(last)
    }

    /// One unary call as the configured user (if any): authenticates
    /// first if there is no token yet, and once more if etcd refuses the
    /// token it has.
    fn call(&self, path: &str, body: &Value) -> io::Result<Value> {
        let token = self.token()?;
        match self.call_as(path, body, token.as_deref()) {
            Err(e) if token.is_some() && ServerError::is_bad_token(&e) => {
                let token = self.authenticate()?;
                self.call_as(path, body, Some(&token))
            }
            r => r,
        }
    }

    /// The token to send: None without a user; the one held, or a new one.
    fn token(&self) -> io::Result<Option<String>> {
        let Some(auth) = &self.auth else { return Ok(None) };
        let held = auth.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match held {
            Some(t) => Ok(Some(t)),
            None => self.authenticate().map(Some),
        }
    }

    /// Gets a new token for the configured user, and keeps it.
    fn authenticate(&self) -> io::Result<String> {
        let Some(auth) = &self.auth else { return Err(io::Error::other("no etcd user configured")) };
        let body = json!({ "name": auth.user, "password": auth.password });
        let r = self
            .call_as("/v3/auth/authenticate", &body, None)
            .map_err(|e| io::Error::new(e.kind(), format!("etcd authentication as user {:?}: {e}", auth.user)))?;
        let token = r
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && !t.chars().any(char::is_control))
            .ok_or_else(|| bad("authenticate reply without a usable token"))?
            .to_string();
        *auth.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        Ok(token)
    }

    /// One unary call with `token`, on the first endpoint that can be
    /// reached (and, for https, passes the TLS handshake).
    fn call_as(&self, path: &str, body: &Value, token: Option<&str>) -> io::Result<Value> {
        let mut last = io::Error::other("no endpoint");
        for ep in &self.endpoints {
            let deadline = Instant::now() + CALL_TIMEOUT;
            let conn = match Conn::open(ep, self.tls.as_ref(), deadline) {
                Ok(c) => c,
                Err(e) => {
                    last = io::Error::new(e.kind(), format!("etcd {}: {e}", ep.addr));
                    continue;
                }
            };
            // Reached: its answer, error or not, is what another member
            // would say too.
            return call_on(conn, &ep.addr, path, body, token, deadline).map_err(|e| {
                if e.get_ref().is_some_and(|i| i.is::<ServerError>()) {
                    e
                } else {
                    with_ep(e, ep)
                }
            });
        }
        Err(last)
    }
}

/// `e` with the endpoint it came from.
fn with_ep(e: io::Error, ep: &EtcdEndpoint) -> io::Error {
    io::Error::new(e.kind(), format!("etcd {}: {e}", ep.addr))
}

/// The password: the first line of `file`, else `env` (the environment
/// variable's value); never empty.
fn read_password(file: Option<&str>, env: Option<String>) -> Result<String, String> {
    let password = match file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("--etcd-password-file {f}: {}", rvs_proto::client::io_msg(&e)))?;
            let line = text.lines().next().unwrap_or("").to_string();
            if line.is_empty() {
                return Err(format!("--etcd-password-file {f}: empty"));
            }
            line
        }
        None => env
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("no password: give --etcd-password-file FILE or set {PASSWORD_ENV}"))?,
    };
    Ok(password)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("etcd: {what}"))
}

fn send_request(
    s: &mut Conn,
    host: &str,
    path: &str,
    body: &Value,
    token: Option<&str>,
    close: bool,
) -> io::Result<()> {
    let body = body.to_string();
    let conn = if close { "Connection: close\r\n" } else { "" };
    let auth = token.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}{conn}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    // rustls may still hold some of it.
    s.flush()
}

/// One request on `s` (to `host`), answered by `deadline` as a whole: a
/// server that trickles its reply byte by byte does not hold the agent
/// longer.
fn call_on(
    mut s: Conn,
    host: &str,
    path: &str,
    body: &Value,
    token: Option<&str>,
    deadline: Instant,
) -> io::Result<Value> {
    s.set_write_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))?;
    send_request(&mut s, host, path, body, token, true).map_err(|e| s.explain(e))?;
    let raw = read_reply(&mut s, deadline).map_err(|e| s.explain(e))?;
    let (status, chunked, body) = split_response(&raw).ok_or_else(|| bad("malformed HTTP reply"))?;
    let body = if chunked { dechunk(body).ok_or_else(|| bad("malformed chunked reply"))? } else { body.to_vec() };
    // A streamed reply (keepalive) holds one JSON message per line.
    let first = body.split(|&b| b == b'\n').find(|l| !l.iter().all(u8::is_ascii_whitespace)).unwrap_or(&[]);
    let v: Value = serde_json::from_slice(first).map_err(|e| bad(&format!("reply is not JSON ({e})")))?;
    if status != 200 || v.get("error").is_some() {
        let msg = v.get("message").or_else(|| v.get("error")).unwrap_or(&v);
        let message = rvs_proto::one_line(msg.as_str().map_or_else(|| msg.to_string(), str::to_string));
        return Err(io::Error::other(ServerError { path: path.to_string(), status, message }));
    }
    Ok(v)
}

/// The whole reply (the server closes the connection), by `deadline`,
/// at most `MAX_BODY` bytes.
fn read_reply(s: &mut Conn, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no complete reply in time"));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => return Ok(raw),
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_BODY {
                    return Err(bad("reply too large"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no complete reply in time"));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Status, whether the body is chunked, and the body of an HTTP response.
fn split_response(raw: &[u8]) -> Option<(u16, bool, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    Some((status, chunked, &raw[end + 4..]))
}

/// The payload of a complete chunked body.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[..eol]).ok()?.split(';').next()?.trim();
        let n = usize::from_str_radix(size, 16).ok()?;
        b = &b[eol + 2..];
        if n == 0 {
            return Some(out);
        }
        // A huge size (from a broken or hostile server) must not wrap.
        if b.len() < n.saturating_add(2) {
            // Cut short (the server closed mid-stream): keep what came.
            out.extend_from_slice(&b[..n.min(b.len())]);
            return Some(out);
        }
        out.extend_from_slice(&b[..n]);
        b = &b[n + 2..];
    }
}

/// A line, retrying read timeouts until `stop` is set.
fn read_line_until(r: &mut BufReader<Conn>, stop: &AtomicBool) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    loop {
        match r.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(None),
            Ok(_) if line.ends_with(b"\n") => return Ok(Some(String::from_utf8_lossy(&line).trim_end().to_string())),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if line.len() > 64 << 10 {
            return Err(bad("line too long in watch stream"));
        }
    }
}

/// Reads the response head of a stream; true if it is chunked.
fn read_head(r: &mut BufReader<Conn>, stop: &AtomicBool) -> io::Result<bool> {
    let status = read_line_until(r, stop)?.ok_or_else(|| bad("watch closed before replying"))?;
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(io::Error::other(format!("etcd watch: {status}")));
    }
    let mut chunked = false;
    loop {
        let line = read_line_until(r, stop)?.ok_or_else(|| bad("watch closed in its head"))?;
        if line.is_empty() {
            return Ok(chunked);
        }
        if let Some((k, v)) = line.split_once(':') {
            chunked |= k.trim().eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked");
        }
    }
}

/// The next chunk of a chunked stream; None at its end or on `stop`.
fn read_chunk(r: &mut BufReader<Conn>, stop: &AtomicBool) -> io::Result<Option<Vec<u8>>> {
    let Some(size) = read_line_until(r, stop)? else { return Ok(None) };
    let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
        .map_err(|_| bad("bad chunk size in watch stream"))?;
    if n == 0 {
        return Ok(None);
    }
    if n > MAX_BODY {
        return Err(bad("watch message too large"));
    }
    let mut buf = vec![0; n + 2];
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(None),
            Ok(k) => got += k,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(Some(buf))
}

/// The whole messages at the front of a watch stream's `pending` bytes,
/// taken out of it. The gateway ends each JSON message with a newline,
/// but HTTP chunks fall anywhere: a big event (a MAC record part) spans
/// several, and a chunk may hold several messages.
fn take_messages(pending: &mut Vec<u8>) -> io::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(n) = pending[start..].iter().position(|&b| b == b'\n') {
        let line = &pending[start..start + n];
        start += n + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push(serde_json::from_slice(line).map_err(|e| bad(&format!("watch message: {e}")))?);
    }
    pending.drain(..start);
    // A message without its newline yet: whole if it parses.
    if !pending.iter().all(u8::is_ascii_whitespace) {
        if let Ok(v) = serde_json::from_slice(pending) {
            out.push(v);
            pending.clear();
        } else if pending.len() > MAX_BODY {
            return Err(bad("watch message too large"));
        }
    }
    Ok(out)
}

/// A 64-bit integer field, sent by the gateway as a string (or a number).
fn int_field(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); None if malformed.
pub fn unbase64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for ch in s.bytes() {
        let v = B64.iter().position(|&b| b == ch)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn base64_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"/rvs/v1/"), "L3J2cy92MS8=");
        assert_eq!(unbase64("L3J2cy92MS8="), Some(b"/rvs/v1/".to_vec()));
        assert_eq!(unbase64("Zg"), Some(b"f".to_vec()));
        assert_eq!(unbase64("Z"), None);
        assert_eq!(unbase64("Zm9v!"), None);
    }

    proptest! {
        #[test]
        fn base64_round_trips(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(unbase64(&base64(&data)), Some(data));
        }

        #[test]
        fn reply_parsing_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Some((_, true, body)) = split_response(&raw) {
                let _ = dechunk(body);
            }
            let _ = dechunk(&raw);
        }
    }

    /// Watch messages split over chunks, several in a chunk, blank lines.
    #[test]
    fn watch_messages_span_chunks() {
        let mut pending = Vec::new();
        let mut got = Vec::new();
        for chunk in [&b"{\"result\":{\"ev"[..], b"ents\":[1]}}\n\n{\"a\":1}\n{\"b\"", b":2}", b"\n"] {
            pending.extend_from_slice(chunk);
            got.extend(take_messages(&mut pending).unwrap());
        }
        assert_eq!(got, vec![json!({"result":{"events":[1]}}), json!({"a":1}), json!({"b":2})]);
        assert!(pending.is_empty());
        pending.extend_from_slice(b"not json\n");
        assert!(take_messages(&mut pending).is_err());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/rvs/v1/"), b"/rvs/v10".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn responses_and_chunks() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n";
        let (status, chunked, body) = split_response(raw).unwrap();
        assert_eq!((status, chunked), (200, true));
        assert_eq!(dechunk(body).unwrap(), b"hello!");
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(split_response(raw).map(|(s, c, b)| (s, c, b.to_vec())), Some((404, false, b"{}".to_vec())));
        assert!(split_response(b"garbage").is_none());
        assert!(dechunk(b"zz\r\n").is_none());
        // A chunk size near usize::MAX: what came, no panic, no wrap.
        assert_eq!(dechunk(b"ffffffffffffffff\r\nabc").unwrap(), b"abc");
        assert_eq!(dechunk(b"fffffffffffffffe\r\nabc").unwrap(), b"abc");
    }

    /// A server that answers a byte every 100 ms: the call gives up at its
    /// timeout for the whole reply, not after any one read.
    #[test]
    fn a_trickling_server_does_not_hold_a_call() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ep = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            for _ in 0..50 {
                if c.write_all(b"H").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(500);
        let conn = Conn::open(&EtcdEndpoint { tls: false, addr: ep.clone() }, None, deadline).unwrap();
        let r = call_on(conn, &ep, "/v3/kv/range", &json!({}), None, deadline);
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(2), "the call took {:?}", t0.elapsed());
        server.join().unwrap();
    }

    fn config(urls: &[&str]) -> ClusterConfig {
        ClusterConfig {
            etcd: urls.iter().map(|u| u.to_string()).collect(),
            node: "h1".into(),
            lease_ttl_secs: 10,
            auth: Default::default(),
        }
    }

    #[test]
    fn endpoints() {
        assert!(Client::new(&config(&["http://127.0.0.1:2379,http://[::1]:2379"])).is_ok());
        assert!(Client::new(&config(&["https://x:1"])).unwrap_err().contains("--etcd-cacert"));
        assert!(Client::new(&config(&["http://nohost"])).is_err());
        assert!(Client::new(&config(&[])).is_err());
    }

    /// Files that cannot be used are errors naming the file, at start.
    #[test]
    fn bad_tls_and_password_files_are_named() {
        let dir = std::env::temp_dir().join(format!("rvs-etcd-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let path = |p: &std::path::Path| Some(p.to_str().unwrap().to_string());
        let mut cfg = config(&["https://127.0.0.1:2379"]);
        cfg.auth.cacert = Some("/nonexistent/ca.pem".into());
        let e = Client::new(&cfg).unwrap_err();
        assert!(e.contains("--etcd-cacert /nonexistent/ca.pem") && e.contains("No such file"), "{e}");
        cfg.auth.cacert = path(&junk);
        let e = Client::new(&cfg).unwrap_err();
        assert!(e.contains("junk.pem") && e.contains("no PEM certificate"), "{e}");

        let mut cfg = config(&["http://127.0.0.1:2379"]);
        cfg.auth.user = Some("rvs".into());
        cfg.auth.password_file = path(&empty);
        let e = Client::new(&cfg).unwrap_err();
        assert!(e.contains("etcd user rvs") && e.contains("empty"), "{e}");
        assert!(read_password(None, None).unwrap_err().contains(PASSWORD_ENV));
        assert_eq!(read_password(None, Some("pw".into())).unwrap(), "pw");
        std::fs::write(&empty, "secret\r\nmore\n").unwrap();
        assert_eq!(read_password(path(&empty).as_deref(), Some("env".into())).unwrap(), "secret");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A server on loopback that takes `count` requests, one connection
    /// each, answering each with `reply(request)` (status, JSON body);
    /// joining it gives the requests, whole.
    fn scripted_server(
        count: usize,
        mut reply: impl FnMut(&str) -> (u16, String) + Send + 'static,
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ep = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..count {
                let (mut c, _) = l.accept().unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                let whole = |req: &[u8]| {
                    let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
                    let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
                    let len = head.split("content-length:").nth(1).and_then(|v| v.lines().next());
                    req.len() >= end + 4 + len.and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(0)
                };
                while !whole(&req) {
                    let n = c.read(&mut buf).unwrap();
                    assert!(n > 0, "request cut short");
                    req.extend_from_slice(&buf[..n]);
                }
                let req = String::from_utf8_lossy(&req).into_owned();
                let (status, body) = reply(&req);
                seen.push(req);
                let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                c.write_all(reply.as_bytes()).unwrap();
            }
            seen
        });
        (ep, server)
    }

    /// A token etcd no longer takes is replaced once: authenticate, call
    /// (refused, 401), authenticate again, call again with the new token.
    #[test]
    fn an_expired_token_is_renewed_once() {
        let mut replies = vec![
            (200, r#"{"token":"t1"}"#),
            (401, r#"{"error":"etcdserver: invalid auth token","code":16,"message":"etcdserver: invalid auth token"}"#),
            (200, r#"{"token":"t2"}"#),
            (200, r#"{"header":{"revision":"7"}}"#),
        ]
        .into_iter();
        let (ep, server) = scripted_server(4, move |_| {
            let (status, body) = replies.next().unwrap();
            (status, body.to_string())
        });
        let mut client = Client::new(&config(&[&format!("http://{ep}")])).unwrap();
        client.auth = Some(Arc::new(Auth { user: "rvs".into(), password: "pw".into(), token: Mutex::new(None) }));
        assert_eq!(client.range_prefix("/rvs/v1/").unwrap().revision, 7);
        let seen = server.join().unwrap();
        assert!(seen[0].starts_with("POST /v3/auth/authenticate") && seen[0].contains(r#""password":"pw""#));
        assert!(!seen[0].contains("Authorization"), "{}", seen[0]);
        assert!(seen[1].contains("Authorization: t1\r\n"), "{}", seen[1]);
        assert!(seen[2].starts_with("POST /v3/auth/authenticate"));
        assert!(seen[3].starts_with("POST /v3/kv/range") && seen[3].contains("Authorization: t2\r\n"), "{}", seen[3]);
    }

    /// The JSON body of a request the scripted server saw.
    fn body_of(req: &str) -> Value {
        serde_json::from_str(req.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    }

    /// A prefix read in pages against a server that does what etcd's range
    /// does with `limit` (keys in order, `more` while any are left): every
    /// key once, in order; each page after the first starts just past the
    /// last key (the key and a NUL byte) and asks for the first page's
    /// revision. Keys include bytes that need base64, and one that the
    /// next key extends (`a` before `a\0`).
    #[test]
    fn range_reads_page_through_every_key() {
        let mut store: std::collections::BTreeMap<Vec<u8>, String> =
            (0..10u8).map(|i| (format!("/rvs/v1/k{i:02}").into_bytes(), format!("v{i}"))).collect();
        store.insert(b"/rvs/v1/a".to_vec(), "a".into());
        store.insert(b"/rvs/v1/a\0".to_vec(), "a0".into());
        store.insert(b"/rvs/v1/\xff\xfe".to_vec(), "ff".into());
        store.insert(b"/rvs/v2/out".to_vec(), "not under the prefix".into());
        let want: Vec<Vec<u8>> = store.keys().filter(|k| k.starts_with(b"/rvs/v1/")).cloned().collect();
        let pages = want.len().div_ceil(4);
        let (ep, server) = scripted_server(pages, move |req| {
            let b = body_of(req);
            let from = unbase64(b["key"].as_str().unwrap()).unwrap();
            let end = unbase64(b["range_end"].as_str().unwrap()).unwrap();
            let limit: usize = b["limit"].as_str().unwrap().parse().unwrap();
            let keys: Vec<_> = store.range(from..end).collect();
            let kvs: Vec<Value> = keys
                .iter()
                .take(limit)
                .map(|(k, v)| json!({ "key": base64(k), "value": base64(v.as_bytes()) }))
                .collect();
            let reply = json!({ "header": { "revision": "42" }, "kvs": kvs, "more": keys.len() > limit });
            (200, reply.to_string())
        });
        let client = Client::new(&config(&[&format!("http://{ep}")])).unwrap();
        let range = client.range_paged("/rvs/v1/", 4).unwrap();
        let seen = server.join().unwrap();
        assert_eq!((range.revision, range.pages), (42, pages));
        let got: Vec<Vec<u8>> = range.kvs.iter().map(|kv| kv.key.as_bytes().to_vec()).collect();
        let lossy: Vec<Vec<u8>> = want.iter().map(|k| String::from_utf8_lossy(k).as_bytes().to_vec()).collect();
        assert_eq!(got, lossy, "every key once, in order");
        assert!(body_of(&seen[0]).get("revision").is_none(), "{}", seen[0]);
        for (i, req) in seen.iter().enumerate().skip(1) {
            let b = body_of(req);
            assert_eq!(b["revision"], "42", "page {i} not at the first page's revision");
            let mut after = want[i * 4 - 1].clone();
            after.push(0);
            assert_eq!(unbase64(b["key"].as_str().unwrap()).unwrap(), after, "page {i} start");
        }
    }

    /// A server that says `more` without moving on gets an error, not an
    /// endless read.
    #[test]
    fn a_range_that_never_ends_is_an_error() {
        let (ep, server) = scripted_server(1, |_| {
            (200, json!({ "header": { "revision": "1" }, "kvs": [], "more": true }).to_string())
        });
        let client = Client::new(&config(&[&format!("http://{ep}")])).unwrap();
        let e = client.range_paged("/rvs/v1/", 4).unwrap_err();
        assert!(e.to_string().contains("do not move on"), "{e}");
        server.join().unwrap();
    }
}
