//! The client side of the control socket: connect, send one request, read
//! one reply.

use crate::{Reply, Request, MAX_REPLY_LEN};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::path::Path;
use std::time::Duration;

/// How long `request` waits for rvsd.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// An io::Error as text without the "(os error N)" suffix.
pub fn io_msg(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Connects to rvsd's control socket; the error says what to check.
pub fn connect(socket_path: &Path) -> Result<std::os::unix::net::UnixStream, String> {
    std::os::unix::net::UnixStream::connect(socket_path).map_err(|e| {
        let hint = match e.kind() {
            ErrorKind::PermissionDenied => "are you root or in rvsd's group?",
            _ => "is rvsd running?",
        };
        format!("cannot connect to rvsd at {}: {} ({hint})", socket_path.display(), io_msg(&e))
    })
}

/// Sends one request to rvsd and waits (at most `CLIENT_TIMEOUT`) for its reply.
pub fn request(socket_path: &Path, req: &Request) -> Result<Reply, String> {
    let at = socket_path.display();
    let mut stream = connect(socket_path)?;
    let timeout = |e: io::Error| {
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            format!("rvsd at {at} did not answer within {} s", CLIENT_TIMEOUT.as_secs())
        } else {
            format!("lost the connection to rvsd at {at}: {}", io_msg(&e))
        }
    };
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(CLIENT_TIMEOUT)))
        .map_err(timeout)?;
    let mut line = req.to_line().into_bytes();
    line.push(b'\n');
    stream.write_all(&line).map_err(timeout)?;
    let mut reader = BufReader::new(stream.take(MAX_REPLY_LEN as u64 + 1));
    let mut buf = Vec::new();
    reader.read_until(b'\n', &mut buf).map_err(timeout)?;
    if buf.is_empty() {
        return Err(format!("rvsd at {at} closed the connection without answering"));
    }
    if buf.len() > MAX_REPLY_LEN {
        return Err(format!("rvsd at {at} sent a reply over {MAX_REPLY_LEN} bytes"));
    }
    let reply: Reply = serde_json::from_slice(buf.trim_ascii())
        .map_err(|e| format!("rvsd at {at} sent a reply that is not understood: {e}"))?;
    crate::check_version(reply.version).map_err(|e| format!("rvsd at {at} answered in another protocol: {e}"))?;
    Ok(reply)
}
