//! What tests share, in this crate and the others (unit, integration,
//! fuzz, rvs-bench's): one rule for when kernel tests run, and the frames
//! and snapshots the packet path's tests are built on.

use std::path::Path;
use std::sync::Arc;

use crate::fdb::Fdb;
use crate::ids::{PortId, Vid};
use crate::snapshot::{BridgeInfo, PortInfo, PortKind, Snapshot, VlanMode};
use crate::wire::{EthernetRepr, MacAddr};

/// True if a test that needs root and `tools` may run. Without them it
/// panics under `CI=true` (a CI run must not pass by skipping), and
/// otherwise prints why `what` is skipped and returns false.
pub fn require_root(what: &str, tools: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have_tool(t)).collect();
    if root && missing.is_empty() {
        return true;
    }
    let why = if root { format!("missing tools: {}", missing.join(", ")) } else { "not root".to_string() };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} cannot run under CI=true: {why} (run scripts/test.sh as root)");
    }
    eprintln!("{what}: skipped, needs root ({why})");
    false
}

/// True if `name` is an executable on `PATH` or in the usual system
/// directories (root's PATH may lack /usr/sbin under some runners).
pub fn have_tool(name: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file())).unwrap_or(false)
        || ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().any(|d| Path::new(d).join(name).is_file())
}

/// The MAC `02:00:00:00:00:n` (locally administered unicast), or the
/// broadcast address for `n == 0xff`.
pub fn mac(n: u8) -> MacAddr {
    if n == 0xff {
        MacAddr([0xff; 6])
    } else {
        MacAddr([2, 0, 0, 0, 0, n])
    }
}

/// A 60-byte frame (64 on the wire) from `src` to `dst`, 802.1Q-tagged
/// with `tag` if given, of the local experimental EtherType 0x88b5, its
/// payload 0xab bytes.
pub fn frame(dst: MacAddr, src: MacAddr, tag: Option<Vid>) -> Vec<u8> {
    let eth = EthernetRepr { dst, src, tag, ethertype: 0x88b5 };
    let mut f = vec![0xab; eth.header_len() + 46];
    eth.emit(&mut f);
    f
}

/// A snapshot of one bridge (0, "br0") whose MAC table is `fdb`, over plain
/// ports 0, 1, ... (named p0, p1, ...) with these VLAN modes, every port
/// sent from thread 0.
pub fn one_bridge(fdb: Arc<Fdb>, generation: u64, modes: impl IntoIterator<Item = VlanMode>) -> Snapshot {
    let ports: Vec<PortInfo> = modes
        .into_iter()
        .enumerate()
        .map(|(i, vlan)| PortInfo { id: i as PortId, bridge: 0, vlan, name: format!("p{i}"), kind: PortKind::Plain })
        .collect();
    let refs: Vec<&PortInfo> = ports.iter().collect();
    let bridge = BridgeInfo::new(0, "br0", fdb, &refs);
    Snapshot {
        generation,
        tx_thread: vec![0; ports.len()],
        vteps: vec![],
        ports: ports.into_iter().map(Some).collect(),
        bridges: vec![Some(bridge)],
    }
}
