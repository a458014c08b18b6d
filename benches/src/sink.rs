//! The far end's counter: an XDP program on the receiving interface that
//! counts and drops the generator's frames (or VXLAN frames on an
//! underlay), read from a BPF array map.

use std::os::fd::{AsRawFd, OwnedFd};

use rvs_dataplane::bpf::{self, BPF_MAP_TYPE_ARRAY};
use rvs_dataplane::port::afxdp::{self, XdpMode};

use crate::ns::{self, Netns};
use crate::progs;
use crate::sh::Result;

/// A counting drop attached to one interface; detached on drop.
pub struct Sink {
    // Field order is drop order: detach first.
    _link: OwnedFd,
    _prog: OwnedFd,
    map: OwnedFd,
    /// Where it is attached, for messages.
    pub at: String,
}

impl Sink {
    /// Attaches (native mode only: generic XDP would measure the kernel's
    /// skb path) to `dev` in `netns`, counting UDP frames to `udp_port`.
    pub fn attach(netns: &Netns, dev: &str, udp_port: u16) -> Result<Sink> {
        let at = format!("{dev} in {}", netns.name);
        let map = bpf::create_map(BPF_MAP_TYPE_ARRAY, 4, 8, 1, "rvsb_sink").map_err(|e| format!("sink: {e}"))?;
        let prog =
            bpf::load_xdp(&progs::sink(udp_port, map.as_raw_fd()), "rvsb_sink").map_err(|e| format!("sink: {e}"))?;
        let nsfd = netns.open()?;
        let link = ns::in_netns(&nsfd, || {
            afxdp::attach_xdp(&prog, dev, XdpMode::Native).map(|(l, _)| l).map_err(|e| format!("sink on {at}: {e}"))
        })?;
        Ok(Sink { _link: link, _prog: prog, map, at })
    }

    /// Frames counted so far.
    pub fn count(&self) -> Result<u64> {
        let mut v = [0u8; 8];
        bpf::map_lookup(&self.map, &0u32.to_ne_bytes(), &mut v)
            .map_err(|e| format!("reading the sink on {}: {e}", self.at))?;
        Ok(u64::from_ne_bytes(v))
    }
}
