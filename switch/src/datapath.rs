//! The boundary between the control plane and the packet path.
//!
//! The control state machine (`control::state`) validates requests against the
//! configuration and calls these methods for their effects; the real
//! implementation ([`real`]) owns ports and polling threads, and tests use a
//! fake. Each method either does all of its change or none of it, and its
//! error is one line fit to show a user.

pub use rvs_dataplane::capture::{CaptureRing, Direction};
use rvs_dataplane::wire::MacAddr;
pub mod fake;
pub mod real;

use rvs_proto::config::{BridgeConfig, IfAddr, PortConfig, UplinkConfig};
use rvs_proto::status::{FdbPage, FlowInfo, PortStatsInfo, PortStatus, ThreadInfo, TraceResult, UplinkStatus};
use std::net::IpAddr;
use std::sync::Arc;

/// A change the packet path refused, as one line for the user.
pub type DpResult<T> = Result<T, String>;

pub use rvs_dataplane::neigh::{Binding, Source as NeighSource};

/// One bridge's neighbour table as `neigh_list` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NeighView {
    /// Learned bindings it holds.
    pub learned: u32,
    /// The most learned bindings it keeps.
    pub limit: u32,
    /// Every binding, with seconds since it was last seen.
    pub bindings: Vec<(Binding, u32)>,
}

/// The packet path, as the control plane drives it.
pub trait Datapath {
    /// Creates a bridge with no ports.
    fn add_bridge(&mut self, br: &BridgeConfig) -> DpResult<()>;
    /// Changes a bridge's aging time or MAC limit.
    fn set_bridge(&mut self, br: &BridgeConfig) -> DpResult<()>;
    /// Removes a bridge; its ports are removed first by the caller.
    fn del_bridge(&mut self, name: &str) -> DpResult<()>;
    /// Opens the port and starts switching on it.
    fn add_port(&mut self, bridge: &str, port: &PortConfig) -> DpResult<()>;
    /// Stops switching on the port and closes it (a tap device stays).
    fn del_port(&mut self, name: &str) -> DpResult<()>;
    /// Adds (or replaces) a static FDB entry.
    fn fdb_add(&mut self, bridge: &str, mac: MacAddr, vlan: u16, port: &str) -> DpResult<()>;
    /// Removes an FDB entry, static or learned. Ok(false) if there was none.
    fn fdb_del(&mut self, bridge: &str, mac: MacAddr, vlan: u16) -> DpResult<bool>;
    /// Removes learned entries (of one port if given); returns how many.
    fn fdb_flush(&mut self, bridge: &str, port: Option<&str>) -> DpResult<usize>;
    /// Up to `limit` entries of a bridge's FDB after `after` (VLAN, MAC),
    /// ordered by VLAN then MAC, and the size of the whole table.
    fn fdb_page(&self, bridge: &str, after: Option<(u16, MacAddr)>, limit: usize) -> DpResult<FdbPage>;
    /// Adds or replaces a static IP-MAC binding.
    fn neigh_add(&mut self, bridge: &str, ip: IpAddr, vlan: u16, mac: MacAddr) -> DpResult<()> {
        let _ = (ip, vlan, mac);
        Err(format!("bridge {bridge:?}: this datapath has no neighbour table"))
    }
    /// Removes the binding of `ip` in `vlan`, whatever its source; its
    /// source if there was one.
    fn neigh_del(&mut self, bridge: &str, ip: IpAddr, vlan: u16) -> DpResult<Option<NeighSource>> {
        let _ = (bridge, ip, vlan);
        Ok(None)
    }
    /// A bridge's neighbour table.
    fn neigh_list(&self, bridge: &str) -> DpResult<NeighView> {
        let _ = bridge;
        Ok(NeighView::default())
    }
    /// Makes `bindings` (ip, vlan, mac) the bridge's remote bindings: those
    /// of the previous call not among them go, new ones are installed
    /// where no static or learned binding holds the address.
    fn set_remote_neigh(&mut self, bridge: &str, bindings: &[(IpAddr, u16, MacAddr)]) -> DpResult<()> {
        let _ = (bridge, bindings);
        Ok(())
    }
    /// Run-time state of every port.
    fn port_status(&self) -> Vec<PortStatus>;
    /// Counters of every port.
    fn port_stats(&self) -> Vec<PortStatsInfo>;
    /// Polling threads and what they do.
    fn threads(&self) -> Vec<ThreadInfo>;
    /// Periodic housekeeping (MAC aging); called about once a second.
    fn tick(&mut self);
    /// Brings the kernel executors' tables up to date with what the
    /// polling threads learned; called every control loop round (at least
    /// five times a second), cheap when nothing changed.
    fn sync(&mut self) {}

    /// Attaches to an underlay interface for VXLAN.
    fn add_uplink(&mut self, up: &UplinkConfig) -> DpResult<()> {
        Err(format!("uplink {:?}: VXLAN is not supported by this datapath", up.name))
    }
    /// Detaches from an underlay interface (no VXLAN port may use it).
    fn del_uplink(&mut self, name: &str) -> DpResult<()> {
        Err(format!("unknown uplink {name:?}"))
    }
    /// Replaces the remote VTEP list of a VXLAN port, live.
    fn set_remotes(&mut self, port: &str, remotes: &[IpAddr]) -> DpResult<()> {
        let _ = remotes;
        Err(format!("port {port:?} is not a VXLAN port"))
    }
    /// Run-time state of every uplink.
    fn uplink_status(&self) -> Vec<UplinkStatus> {
        Vec::new()
    }
    /// The flow cache entries of every polling thread.
    fn flows(&self) -> Vec<FlowInfo> {
        Vec::new()
    }
    /// Empties every polling thread's flow cache.
    fn flows_flush(&mut self) {}
    /// Runs `frame` as if received on `port` (of `bridge`, or an uplink)
    /// through the packet path's own decision code, without sending or
    /// learning anything, and says what would happen at each step.
    fn trace(&self, bridge: &str, port: &str, frame: &[u8]) -> DpResult<TraceResult> {
        let _ = (bridge, frame);
        Err(format!("cannot trace on {port:?} in this datapath"))
    }
    /// Starts copying what `port` (or an uplink) receives and/or sends into
    /// a capture ring that the caller drains; replaces a running capture.
    fn capture_start(&mut self, port: &str, dir: Direction, snaplen: u32) -> DpResult<Arc<CaptureRing>> {
        let _ = (dir, snaplen);
        Err(format!("cannot capture on {port:?} in this datapath"))
    }
    /// Stops the capture on `port`.
    fn capture_stop(&mut self, port: &str) {
        let _ = port;
    }
    /// MACs this host has behind VXLAN port `port`'s bridge in the port's
    /// VLAN, not learned through a tunnel: what it advertises to peers.
    fn local_macs(&self, port: &str) -> DpResult<Vec<(MacAddr, u16)>> {
        Err(format!("port {port:?} is not a VXLAN port"))
    }
    /// Installs MACs that peers advertise behind VXLAN port `port`: each
    /// (mac, vlan, remote VTEP) replaces what the previous call installed;
    /// entries for VTEPs not among the port's remotes are skipped.
    fn set_remote_macs(&mut self, port: &str, macs: &[(MacAddr, u16, IpAddr)]) -> DpResult<()> {
        let _ = macs;
        Err(format!("port {port:?} is not a VXLAN port"))
    }
    /// Replaces the addresses internal port `port` holds with `addrs`
    /// (all or nothing).
    fn set_addresses(&mut self, port: &str, addrs: &[IfAddr]) -> DpResult<()> {
        let _ = addrs;
        Err(format!("port {port:?} is not an internal port"))
    }
    /// True when the interface under `port` is known to be gone: its
    /// device (or the namespace it lived in) no longer exists. For a
    /// container's port that means the container is gone. Errors other
    /// than "not there" are not "gone".
    fn device_gone(&self, port: &PortConfig) -> bool {
        let _ = port;
        false
    }
    /// True if tap (or internal) port `name` was created by rvsd (rather
    /// than adopted).
    fn tap_created(&self, _name: &str) -> bool {
        false
    }

    /// Moves receive queue `queue` of port (or uplink) `port` to the
    /// polling thread on `core`, without disturbing other queues.
    fn pmd_assign(&mut self, port: &str, queue: u32, core: usize) -> DpResult<()> {
        let _ = (queue, core);
        Err(format!("cannot move queues of {port:?} in this datapath"))
    }
}
