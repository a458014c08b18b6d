//! Running setup code inside a named network namespace.
//!
//! Namespaces named by `ip netns add NAME` are bind mounts under
//! [`NETNS_DIR`]. [`in_netns`] runs a closure on a fresh, short-lived thread
//! that has joined such a namespace with `setns(CLONE_NEWNET)`, so the rest
//! of the process never leaves its own. File descriptors made there (a tap
//! device, a socket) keep working from any thread afterwards: a descriptor
//! stays bound to the namespace it was created in. [`in_netns_fd`] does the
//! same for a namespace given as an open file (`/proc/PID/ns/net`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Where `ip netns` keeps named network namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";

/// Runs `f` in the network namespace `ns` (a name under [`NETNS_DIR`], or
/// an absolute path to a namespace file such as a container's
/// `/proc/PID/ns/net`), or directly on this thread when `ns` is `None`.
///
/// Errors name the namespace: a missing one reads
/// `network namespace "x" not found (no /var/run/netns/x)`.
pub fn in_netns<T, F>(ns: Option<&str>, f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce() -> io::Result<T> + Send,
{
    let Some(ns) = ns else {
        return f();
    };
    in_netns_fd(open_netns(ns)?, ns, f)
}

/// Runs `f` in the network namespace that `fd` refers to (an open
/// `/var/run/netns/NAME` or `/proc/PID/ns/net`), on a fresh, short-lived
/// thread; `fd` is closed once that thread has joined the namespace. `what`
/// names the namespace in errors: `cannot enter network namespace "WHAT": ...`.
pub fn in_netns_fd<T, F>(fd: OwnedFd, what: &str, f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce() -> io::Result<T> + Send,
{
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("rvs-netns".into())
            .spawn_scoped(s, move || {
                // SAFETY: `fd` is an open file owned by this closure; setns
                // only changes this (fresh, short-lived) thread's network
                // namespace, and fails on a file that is not one.
                if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let e = io::Error::last_os_error();
                    return Err(io::Error::new(e.kind(), format!("cannot enter network namespace {what:?}: {e}")));
                }
                drop(fd);
                f()
            })?
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

/// Opens `ns`: an absolute path as it is, else `/var/run/netns/<ns>` after
/// checking that `ns` is a plain name.
pub fn open_netns(ns: &str) -> io::Result<OwnedFd> {
    let path = if ns.starts_with('/') && !ns.contains('\0') {
        ns.to_string()
    } else if ns.is_empty() || ns == "." || ns == ".." || ns.contains('/') || ns.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid network namespace name {ns:?}")));
    } else {
        format!("{NETNS_DIR}/{ns}")
    };
    let cpath = CString::new(path.clone()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `cpath` is a valid NUL-terminated string; the result is
    // checked before it is wrapped.
    let fd = unsafe { libc::open(cpath.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        // ESRCH: a /proc/PID/ns/net whose process has exited.
        let gone = e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH);
        return Err(if gone {
            io::Error::new(io::ErrorKind::NotFound, format!("network namespace {ns:?} not found (no {path})"))
        } else {
            io::Error::new(e.kind(), format!("cannot open network namespace {ns:?} ({path}): {e}"))
        });
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_runs_here() {
        assert_eq!(in_netns(None, || Ok(7)).unwrap(), 7);
    }

    #[test]
    fn bad_names_are_refused() {
        for ns in ["", ".", "..", "a/b"] {
            let e = in_netns(Some(ns), || Ok(())).unwrap_err();
            assert!(e.to_string().contains("invalid network namespace"), "{e}");
        }
    }

    #[test]
    fn not_a_namespace_is_named() {
        let fd = std::fs::File::open("/proc/self/stat").unwrap();
        let e = in_netns_fd(fd.into(), "/proc/self/stat", || Ok(())).unwrap_err();
        assert!(e.to_string().starts_with("cannot enter network namespace \"/proc/self/stat\": "), "{e}");
    }

    #[test]
    fn fd_namespace_runs_f() {
        // Our own namespace: setns into it needs CAP_SYS_ADMIN.
        if !crate::testing::require_root("fd_namespace_runs_f", &[]) {
            return;
        }
        let fd = std::fs::File::open("/proc/self/ns/net").unwrap();
        assert_eq!(in_netns_fd(fd.into(), "self", || Ok(7)).unwrap(), 7);
    }

    #[test]
    fn missing_namespace_is_named() {
        let e = in_netns(Some("rvs-no-such-ns-xyz"), || Ok(())).unwrap_err();
        assert!(e.to_string().contains("\"rvs-no-such-ns-xyz\" not found"), "{e}");
        let e = in_netns(Some("/run/rvs-no-such-ns-xyz"), || Ok(())).unwrap_err();
        assert!(e.to_string().contains("\"/run/rvs-no-such-ns-xyz\" not found"), "{e}");
    }

    #[test]
    fn path_namespace_runs_f() {
        if !crate::testing::require_root("path_namespace_runs_f", &[]) {
            return;
        }
        assert_eq!(in_netns(Some("/proc/self/ns/net"), || Ok(7)).unwrap(), 7);
    }
}
