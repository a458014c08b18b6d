//! DPDK testpmd with two net_af_xdp ports in io forward mode: every frame
//! in on one port goes out of the other unchanged (no learning, so the bed
//! is port to port), one forwarding lcore on core 1.

use std::time::Duration;

use super::*;
use crate::daemon::{Daemon, Spec, Switch, TempDir};
use crate::sh::{self, have};

/// lcores: the main one (which only prints the stats once a second) on
/// core 0, the one forwarding lcore on core 1 (the generator has core 0).
const LCORES: &str = "0,1";
/// What testpmd prints once its ports are up and forwarding has begun.
const STARTED: &str = "start packet forwarding";

/// Ok if testpmd and its af_xdp driver are installed; else why not.
pub fn available() -> Result<()> {
    if !have("dpdk-testpmd") {
        return Err("not installed (dpdk-testpmd not found: apt-get install dpdk-dev librte-net-af-xdp23)".into());
    }
    // The driver is a plugin of its own package, loaded at run time.
    let libs = sh::run(&["ldconfig", "-p"])?;
    if !libs.contains("librte_net_af_xdp.so") {
        return Err("not installed (DPDK's net_af_xdp driver not found: apt-get install librte-net-af-xdp23)".into());
    }
    Ok(())
}

/// testpmd forwarding between afxdp ports a0 and b0.
pub fn l2(nice: i32) -> Result<Bed> {
    let (a, s, b) = l2_switch()?;
    let pmd = Testpmd::start(&s, nice, ["a0", "b0"])?;
    let dst_mac = b.mac("eth0")?;
    Bed { switch: Some(Box::new(pmd)), ..Bed::new(a, b, vec![s], "eth0", crate::frame::UDP_PORT, dst_mac) }
        .with_hosts_tx_off()
}

/// A running testpmd; stopped and its folder removed on drop.
struct Testpmd {
    // Drop order: the daemon before its folder.
    daemon: Daemon,
    _dir: TempDir,
}

impl Testpmd {
    /// Starts testpmd inside `netns` at niceness `nice`, forwarding between
    /// `ports`, and waits until it forwards.
    fn start(netns: &Netns, nice: i32, ports: [&str; 2]) -> Result<Testpmd> {
        let dir = TempDir::new(netns, "testpmd")?;
        let vdevs: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("net_af_xdp{i},iface={p}")).collect();
        let args = [
            "dpdk-testpmd",
            "--no-pci",
            // No hugepages here: plain memory, and a pool small enough for
            // it (the default pool fails to allocate).
            "--no-huge",
            "-m",
            "1024",
            // A private instance: no shared config, its own file prefix.
            "--no-shconf",
            "--file-prefix",
            &netns.name,
            "-l",
            LCORES,
            "--vdev",
            &vdevs[0],
            "--vdev",
            &vdevs[1],
            "--",
            "--forward-mode=io",
            "--total-num-mbufs=16384",
            // Runs without a terminal (else it waits for Enter on stdin).
            "--stats-period",
            "1",
        ];
        let spec = Spec {
            what: "dpdk-testpmd",
            nice: Some(nice),
            argv: args.iter().map(|a| a.as_ref()).collect(),
            // Its runtime folder (telemetry sockets) in ours, not in
            // /var/run/dpdk.
            env: vec![("RUNTIME_DIRECTORY", dir.path().as_os_str())],
            log: dir.join("testpmd.log"),
        };
        let mut daemon = Daemon::start(netns, spec)?;
        daemon.wait_for(Duration::from_secs(30), |d| d.log().contains(STARTED))?;
        Ok(Testpmd { daemon, _dir: dir })
    }
}

impl Switch for Testpmd {
    fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    /// The last port statistics it printed.
    fn counters(&self) -> String {
        let log = self.daemon.log();
        let last = log.rfind("Port statistics").map_or("", |i| &log[i..]);
        format!("testpmd:\n{last}")
    }
}
