//! Open vSwitch (userspace datapath, afxdp ports) and DPDK testpmd
//! (net_af_xdp, io forward): measured only where installed.
//!
//! Detection is done; driving them is not written yet (see BENCHMARKS.md,
//! "What rvs-bench does not do yet"), so an installed peer is reported as
//! "not run" rather than measured by hand-written guesses.

use super::System;
use crate::sh::have;

/// True if the peer's programs are on this machine.
pub fn installed(sys: System) -> bool {
    match sys {
        System::Ovs | System::OvsVxlan => ["ovs-vswitchd", "ovsdb-server", "ovs-vsctl"].iter().all(|t| have(t)),
        System::Testpmd => have("dpdk-testpmd"),
        _ => true,
    }
}

/// Why a peer cannot be built.
pub fn unsupported(sys: System) -> String {
    if installed(sys) {
        format!("{}: installed, but rvs-bench does not drive it yet", sys.name())
    } else {
        format!("{}: not installed", sys.name())
    }
}
