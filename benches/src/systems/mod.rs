//! The systems measured, each on its own namespace topology (a test bed):
//!
//! ```text
//! L2:     A eth0 ── a0 [switch in S] b0 ── eth0 B          sink on B eth0
//! VXLAN:  A eth0 ── a0 [switch + VTEP in S] up0 ── up0 V    sink on V up0 (UDP 4789)
//!                                         V: kernel vxlan vx0, the far VTEP and host
//! none:   A eth0 ── eth0 B                                  the generator's ceiling
//! ```
//!
//! Host A is 198.18.0.1/24, the far host (B, or vx0 in V) 198.18.0.2/24;
//! the underlay is 198.18.1.0/24 with MTU 1600.

mod kernel;
mod ovs;
mod rvs;
mod testpmd;

use std::time::{Duration, Instant};

use crate::daemon::Switch;
use crate::ns::{self, Netns};
use crate::rvsd::{Bins, Rvsd};
use crate::sh::Result;

/// Host A's address and the far host's.
pub const A_IP: &str = "198.18.0.1";
pub const FAR_IP: &str = "198.18.0.2";
/// The underlay: the switch's VTEP and the far VTEP.
pub const LOCAL_VTEP: &str = "198.18.1.1";
pub const FAR_VTEP: &str = "198.18.1.2";
/// VNI and UDP port of the overlay.
pub const VNI: &str = "42";
pub const VXLAN_PORT: u16 = 4789;
/// Underlay MTU: room for a 1518-byte frame plus VXLAN's 50 bytes.
pub const UNDERLAY_MTU: u32 = 1600;

/// What a system forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Nothing: the generator straight into the sink.
    None,
    /// Plain L2 switching.
    L2,
    /// L2 over a VXLAN overlay.
    Vxlan,
}

/// A system rvs-bench knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Ceiling,
    Rvs,
    RvsXdp,
    RvsTc,
    LinuxBridge,
    RvsVxlan,
    RvsVxlanXdp,
    RvsVxlanTc,
    KernelVxlan,
    Ovs,
    OvsVxlan,
    Testpmd,
}

impl System {
    /// Every system, in table order (the ceiling is not one to choose).
    pub const ALL: [System; 11] = [
        System::Rvs,
        System::RvsXdp,
        System::RvsTc,
        System::LinuxBridge,
        System::Ovs,
        System::Testpmd,
        System::RvsVxlan,
        System::RvsVxlanXdp,
        System::RvsVxlanTc,
        System::KernelVxlan,
        System::OvsVxlan,
    ];

    /// Its name in `--systems` and in the table.
    pub fn name(self) -> &'static str {
        match self {
            System::Ceiling => "generator (no switch)",
            System::Rvs => "rvs-off",
            System::RvsXdp => "rvs-xdp",
            System::RvsTc => "rvs-tc",
            System::LinuxBridge => "linux-bridge",
            System::RvsVxlan => "rvs-vxlan-off",
            System::RvsVxlanXdp => "rvs-vxlan-xdp",
            System::RvsVxlanTc => "rvs-vxlan-tc",
            System::KernelVxlan => "kernel-vxlan",
            System::Ovs => "ovs-afxdp",
            System::OvsVxlan => "ovs-afxdp-vxlan",
            System::Testpmd => "testpmd-af_xdp",
        }
    }

    /// Parses a `--systems` name (or the short `rvs`, `ovs`, `ovs-vxlan`,
    /// `testpmd`).
    pub fn parse(s: &str) -> Option<System> {
        let s = match s {
            "rvs" => "rvs-off",
            "rvs-vxlan" => "rvs-vxlan-off",
            "ovs" => "ovs-afxdp",
            "ovs-vxlan" => "ovs-afxdp-vxlan",
            "testpmd" => "testpmd-af_xdp",
            other => other,
        };
        System::ALL.into_iter().find(|x| x.name() == s)
    }

    /// What it forwards.
    pub fn kind(self) -> Kind {
        match self {
            System::Ceiling => Kind::None,
            System::Rvs | System::RvsXdp | System::RvsTc | System::LinuxBridge | System::Ovs | System::Testpmd => {
                Kind::L2
            }
            System::RvsVxlan | System::RvsVxlanXdp | System::RvsVxlanTc | System::KernelVxlan | System::OvsVxlan => {
                Kind::Vxlan
            }
        }
    }

    /// The rvs system its ratio is taken against.
    pub fn baseline(self) -> System {
        match self.kind() {
            Kind::Vxlan => System::RvsVxlan,
            _ => System::Rvs,
        }
    }

    /// True for rvs itself (it needs rvsd and rvsctl).
    pub fn is_rvs(self) -> bool {
        matches!(
            self,
            System::Rvs | System::RvsXdp | System::RvsTc | System::RvsVxlan | System::RvsVxlanXdp | System::RvsVxlanTc
        )
    }

    /// Ok if its programs are on this machine; else why not ("not
    /// installed (…)").
    pub fn available(self) -> Result<()> {
        match self {
            System::Ovs | System::OvsVxlan => ovs::available(),
            System::Testpmd => testpmd::available(),
            _ => Ok(()),
        }
    }

    /// Builds its test bed; a switch daemon runs at niceness `nice`.
    pub fn build(self, bins: Option<&Bins>, nice: i32) -> Result<Bed> {
        let need_bins = || bins.ok_or_else(|| "rvs binaries not found".to_string());
        match self {
            System::Ceiling => kernel::ceiling(),
            System::LinuxBridge => kernel::linux_bridge(),
            System::KernelVxlan => kernel::kernel_vxlan(),
            System::Rvs => rvs::l2(need_bins()?, nice, &["--fast-path", "off"]),
            System::RvsXdp => rvs::l2(need_bins()?, nice, &["--fast-path", "xdp"]),
            System::RvsTc => rvs::l2(need_bins()?, nice, &["--fast-path", "tc"]),
            System::RvsVxlan => rvs::vxlan(need_bins()?, nice, "off"),
            System::RvsVxlanXdp => rvs::vxlan(need_bins()?, nice, "xdp"),
            System::RvsVxlanTc => rvs::vxlan(need_bins()?, nice, "tc"),
            System::Ovs => ovs::l2(nice),
            System::OvsVxlan => ovs::vxlan(nice),
            System::Testpmd => testpmd::l2(nice),
        }
    }
}

/// A built topology with its switch running.
pub struct Bed {
    // Drop order: the daemons before their namespaces.
    /// The switch's daemons, for the systems that run some.
    pub switch: Option<Box<dyn Switch>>,
    /// Host A: the generator and the iperf3 client.
    pub a: Netns,
    /// Where the sink and the iperf3 server are.
    pub far: Netns,
    /// Other namespaces (the switch's).
    pub others: Vec<Netns>,
    /// The far end's wire in `far` (eth0 of B, or V's underlay): where the
    /// sink attaches.
    pub sink_dev: &'static str,
    /// UDP port the sink counts.
    pub sink_port: u16,
    /// Destination MAC of generated frames (the far host's).
    pub dst_mac: [u8; 6],
    /// (namespace index in `others`, interface) that need GRO on so that
    /// frames the generator pushes in by XDP are not dropped.
    pub gro: Vec<(usize, &'static str)>,
    /// The hosts' checksum offload is off, which the switch needs (see
    /// [`Bed::with_hosts_tx_off`]); rvs and the kernel's switches run with
    /// the hosts' defaults.
    pub hosts_tx_off: bool,
}

impl Bed {
    /// A bed on namespaces already built, with no daemon, GRO or offload
    /// changes; the builders fill in the rest.
    fn new(a: Netns, far: Netns, others: Vec<Netns>, sink_dev: &'static str, sink_port: u16, dst_mac: [u8; 6]) -> Bed {
        Bed { switch: None, a, far, others, sink_dev, sink_port, dst_mac, gro: vec![], hosts_tx_off: false }
    }

    /// Teaches the switch both hosts' MACs (and lets rvs resolve its next
    /// hop): pings from the far host to A until one answers.
    pub fn learn(&self) -> Result<()> {
        let t = Instant::now();
        loop {
            match self.far.exec(&["ping", "-n", "-q", "-c", "1", "-W", "1", A_IP]) {
                Ok(_) => return Ok(()),
                Err(e) if t.elapsed() > Duration::from_secs(10) => {
                    let log = self.switch.as_ref().map(|d| format!("; {}", d.log_tail())).unwrap_or_default();
                    return Err(format!("no path from {FAR_IP} to {A_IP} through the switch: {e}{log}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Turns the hosts' checksum offload off (`ethtool -K DEV tx off` on
    /// A's eth0 and the far end's wire) and says so in
    /// [`Bed::hosts_tx_off`]: Open vSwitch and testpmd take frames from
    /// AF_XDP with the TCP/UDP checksum left for the NIC and pass them on
    /// unfilled, and Open vSwitch drops VXLAN frames whose outer UDP
    /// checksum is unfilled (so even V's pings need it).
    fn with_hosts_tx_off(mut self) -> Result<Bed> {
        self.a.exec(&["ethtool", "-K", "eth0", "tx", "off"])?;
        self.far.exec(&["ethtool", "-K", self.sink_dev, "tx", "off"])?;
        self.hosts_tx_off = true;
        Ok(self)
    }

    /// Readies the bed for packet-rate runs (GRO where the generator sends).
    pub fn packet_mode(&self) -> Result<()> {
        for &(i, dev) in &self.gro {
            self.others[i].exec(&["ethtool", "-K", dev, "gro", "on"])?;
        }
        Ok(())
    }
}

/// Fresh namespaces for host A and the far host B.
fn hosts() -> Result<(Netns, Netns)> {
    let a = Netns::new("a")?;
    let b = Netns::new("b")?;
    Ok((a, b))
}

/// Gives `dev` in `netns` `cidr`.
fn addr(netns: &Netns, dev: &str, cidr: &str) -> Result<()> {
    netns.ip(&["addr", "add", cidr, "dev", dev]).map(drop)
}

/// `aa:bb:…`, as rvsctl and ovs-ofctl take it.
fn mac_string(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

/// Host A, switch S and host B: A's eth0 on S's a0, S's b0 on B's eth0.
fn l2_switch() -> Result<(Netns, Netns, Netns)> {
    let (a, b) = hosts()?;
    let s = switch_with_a(&a)?;
    ns::veth(&s, "b0", &b, "eth0", 1500)?;
    addr(&b, "eth0", &format!("{FAR_IP}/24"))?;
    Ok((a, s, b))
}

/// A switch namespace S with `a0` toward host A (A's `eth0`, 198.18.0.1).
fn switch_with_a(a: &Netns) -> Result<Netns> {
    let s = Netns::new("s")?;
    ns::veth(a, "eth0", &s, "a0", 1500)?;
    addr(a, "eth0", &format!("{A_IP}/24"))?;
    Ok(s)
}

/// Adds the far VTEP namespace V to switch S: `up0` both sides, and in V a
/// kernel vxlan device `vx0` carrying the far host's address. S's VTEP
/// address is left to the switch (on up0, or on an OVS bridge).
fn far_vtep(s: &Netns) -> Result<Netns> {
    let v = Netns::new("v")?;
    ns::veth(s, "up0", &v, "up0", UNDERLAY_MTU)?;
    addr(&v, "up0", &format!("{FAR_VTEP}/24"))?;
    let port = VXLAN_PORT.to_string();
    v.ip(&[
        "link", "add", "vx0", "type", "vxlan", "id", VNI, "local", FAR_VTEP, "remote", LOCAL_VTEP, "dstport", &port,
        "dev", "up0",
    ])?;
    v.ip(&["link", "set", "vx0", "up"])?;
    addr(&v, "vx0", &format!("{FAR_IP}/24"))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for s in System::ALL {
            assert_eq!(System::parse(s.name()), Some(s));
        }
        assert_eq!(System::parse("ovs"), Some(System::Ovs));
        assert_eq!(System::parse("testpmd"), Some(System::Testpmd));
        assert_eq!(System::parse("rvs-vxlan"), Some(System::RvsVxlan));
        assert_eq!(System::parse("bridge"), None);
    }

    #[test]
    fn vxlan_systems_compare_with_rvs_vxlan() {
        assert_eq!(System::KernelVxlan.baseline(), System::RvsVxlan);
        assert_eq!(System::LinuxBridge.baseline(), System::Rvs);
    }
}
