//! GRO at the far end of a veth, wherever that end lives.
//!
//! Frames that XDP redirects (`bpf_redirect_map`, a DEVMAP) into a veth are
//! handed to its peer by `veth_xdp_xmit`, which drops them, silently, unless
//! the peer has NAPI enabled: an XDP program on the peer, or GRO turned on
//! there (`ethtool -K PEER gro on`). The peer is usually in a container's
//! network namespace, so [`enable_peer_gro`] finds that namespace from the
//! id our namespace gives it (IFLA_LINK_NETNSID), joins it on a short-lived
//! thread, and turns GRO on there.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use rvs_dataplane::port::ethtool::set_gro;
use rvs_dataplane::port::netns::in_netns_fd;

use super::netlink::{netns_id, veth_peer};

/// GRO off, then on, on interface `ifindex` of this thread's namespace.
fn toggle_gro(ifindex: u32) -> std::io::Result<String> {
    set_gro(ifindex, false)?;
    set_gro(ifindex, true)
}

/// Where named network namespaces are looked for, in this order
/// (`/var/run` is usually a link to `/run`; each namespace is asked once).
const NAMED_DIRS: [&str; 2] = ["/run/netns", "/var/run/netns"];

/// What [`enable_peer_gro`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerGro {
    /// The interface is not a veth: nothing to do.
    NotVeth,
    /// GRO is on at the veth's peer.
    Enabled {
        /// The peer's network namespace: its `ip netns` name, else a
        /// `/proc/PID/ns/net` path of a process in it; empty when it is ours.
        netns: String,
        /// The peer's interface name, in that namespace.
        peer: String,
    },
}

/// Turns GRO on at the peer of veth `ifname` (an interface of the calling
/// thread's namespace), so that frames XDP redirects into `ifname` reach
/// the peer instead of being dropped. A non-veth is left alone.
///
/// GRO is turned off and on again: on this kernel (6.18) a veth whose GRO
/// was turned on while it was down gets no NAPI when it comes up, and
/// drops redirected frames all the same. Call it once the peer is up.
///
/// Errors are one line naming `ifname`.
pub fn enable_peer_gro(ifname: &str) -> Result<PeerGro, String> {
    let ctx = format!("cannot turn GRO on at the veth peer of {ifname}");
    let Some(peer) = veth_peer(ifname).map_err(|e| format!("{ctx}: {e}"))? else {
        return Ok(PeerGro::NotVeth);
    };
    let Some(nsid) = peer.nsid else {
        let name = toggle_gro(peer.ifindex).map_err(|e| format!("{ctx}: {e}"))?;
        return Ok(PeerGro::Enabled { netns: String::new(), peer: name });
    };
    let Some((netns, fd)) = find_netns(nsid) else {
        return Err(format!(
            "{ctx}: its peer (index {}) is in the network namespace of id {nsid}, which no entry of {} and no \
             process's /proc/PID/ns/net is in",
            peer.ifindex,
            NAMED_DIRS.join(" or ")
        ));
    };
    let name = in_netns_fd(fd, &netns, || toggle_gro(peer.ifindex))
        .map_err(|e| format!("{ctx} (in network namespace {netns:?}): {e}"))?;
    Ok(PeerGro::Enabled { netns, peer: name })
}

/// The namespace whose id in ours is `nsid`: its name (a file under
/// [`NAMED_DIRS`]) or `/proc/PID/ns/net` path, and an open descriptor of it.
fn find_netns(nsid: i32) -> Option<(String, OwnedFd)> {
    let mut seen = HashSet::new();
    for (label, path) in candidates() {
        // std opens with O_RDONLY | O_CLOEXEC. A process that exits, or a
        // file we may not open, is skipped.
        let Ok(file) = File::open(&path) else { continue };
        let Ok(meta) = file.metadata() else { continue };
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        // An error (a stale name whose namespace is gone is a plain file,
        // not a namespace) only means this is not the one.
        if matches!(netns_id(file.as_raw_fd()), Ok(Some(id)) if id == nsid) {
            return Some((label, file.into()));
        }
    }
    None
}

/// Every place a network namespace may be found, in the order they are
/// asked: the named ones (label: the name), then each process's (label:
/// the path), lazily so a match among the named ones reads no `/proc`.
fn candidates() -> impl Iterator<Item = (String, PathBuf)> {
    let named = NAMED_DIRS.into_iter().flat_map(|dir| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        names.into_iter().map(move |n| {
            let path = PathBuf::from(dir).join(&n);
            (n, path)
        })
    });
    let procs = std::iter::once(()).flat_map(|()| {
        let mut pids: Vec<u32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        pids.into_iter().map(|pid| {
            let path = format!("/proc/{pid}/ns/net");
            (path.clone(), PathBuf::from(path))
        })
    });
    named.chain(procs)
}

#[cfg(test)]
mod tests;
