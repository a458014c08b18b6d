//! The systemd readiness protocol (`sd_notify`), without libsystemd: under
//! a `Type=notify` unit, systemd passes a datagram socket in
//! `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace) and
//! waits for `READY=1` before it counts the service as started. rvsd sends
//! it once the control socket listens, so `systemctl start rvsd && rvsctl
//! show` does not race the daemon; `STOPPING=1` when it begins to stop.
//! Without `NOTIFY_SOCKET` (not under systemd) nothing is sent.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Tells the service manager rvsd is ready: the control socket listens.
pub fn ready() {
    send(&format!("READY=1\nMAINPID={}\nSTATUS=control socket listening\n", std::process::id()));
}

/// Tells the service manager rvsd is stopping.
pub fn stopping() {
    send("STOPPING=1\n");
}

fn send(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(e) = send_to(&target.to_string_lossy(), state) {
        tracing::warn!(target: super::log::DAEMON, "cannot notify systemd at {target:?}: {e}");
    }
}

/// Sends `state` as one datagram to `target`.
fn send_to(target: &str, state: &str) -> io::Result<()> {
    let addr = match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None if target.starts_with('/') => SocketAddr::from_pathname(target)?,
        None => return Err(io::Error::new(io::ErrorKind::InvalidInput, "neither a path nor @name")),
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_a_path_and_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("rvs-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        send_to(path.to_str().unwrap(), "READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
        std::fs::remove_dir_all(&dir).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("rvs-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        send_to(&format!("@{name}"), "STOPPING=1\n").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");

        assert!(send_to("relative", "x").is_err());
    }
}
