//! Errors below the public functions, and how they read to a user.

use super::*;

/// What went wrong below the public functions, before context is added.
#[derive(Debug)]
pub(super) enum NlError {
    /// NLMSG_ERROR with a negative errno, and the kernel's extended-ack text.
    Kernel { errno: i32, msg: Option<String> },
    /// A failing system call.
    Io(io::Error),
    /// A reply that does not parse.
    Malformed(String),
    /// No (complete) reply within the timeout.
    Timeout,
}

/// An io::Error payload that keeps the kernel's errno (see [`kernel_errno`]).
#[derive(Debug)]
pub(super) struct KernelError {
    pub(super) errno: i32,
    pub(super) line: String,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl std::error::Error for KernelError {}

impl NlError {
    /// The one-line io::Error: "CTX: WHAT".
    pub(super) fn context(self, ctx: &str) -> io::Error {
        match self {
            NlError::Kernel { errno, msg } => {
                let os = io::Error::from_raw_os_error(errno);
                let mut line = format!("{ctx}: {}", strerror(&os));
                if let Some(m) = msg.filter(|m| !m.is_empty()) {
                    line.push_str(&format!(" ({m})"));
                }
                io::Error::new(os.kind(), KernelError { errno, line })
            }
            NlError::Io(e) => plain(e.kind(), format!("{ctx}: {e}")),
            NlError::Malformed(what) => plain(io::ErrorKind::InvalidData, format!("{ctx}: bad netlink reply: {what}")),
            NlError::Timeout => plain(
                io::ErrorKind::TimedOut,
                format!("{ctx}: no reply from the kernel within {} s", RECV_TIMEOUT.as_secs()),
            ),
        }
    }

    /// True if the UDP fallback of trigger_resolution is worth trying:
    /// no privilege, or a kernel that does not do NTF_USE.
    pub(super) fn worth_fallback(&self) -> bool {
        match self {
            NlError::Kernel { errno, .. } => {
                [libc::EPERM, libc::EACCES, libc::EOPNOTSUPP, libc::EINVAL, libc::EAFNOSUPPORT].contains(errno)
            }
            NlError::Io(e) => e.kind() == io::ErrorKind::PermissionDenied,
            NlError::Malformed(_) | NlError::Timeout => false,
        }
    }
}

pub(super) fn plain(kind: io::ErrorKind, line: String) -> io::Error {
    io::Error::new(kind, line)
}

/// "Network is unreachable", without Rust's " (os error 101)".
pub(super) fn strerror(os: &io::Error) -> String {
    let s = os.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

pub(super) fn rtn_name(t: u8) -> String {
    match t {
        3 => "broadcast".into(),
        4 => "anycast".into(),
        5 => "multicast".into(),
        6 => "blackhole".into(),
        7 => "unreachable".into(),
        8 => "prohibit".into(),
        9 => "throw".into(),
        t => format!("type {t}"),
    }
}

pub(super) fn is_unicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

pub(super) fn check_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') || name.contains('/') {
        return Err("bad interface name");
    }
    Ok(())
}

pub(super) fn family_of(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

pub(super) fn addr_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}
