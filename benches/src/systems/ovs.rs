//! Open vSwitch's userspace datapath (`datapath_type=netdev`) with afxdp
//! ports: a private ovsdb-server and ovs-vswitchd inside the switch
//! namespace, its PMD thread on core 1. One instance per namespace: every
//! netdev datapath makes a tap named `ovs-netdev`, and two would clash.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::daemon::{Daemon, Spec, Switch, TempDir};
use crate::sh::{self, have};

/// The PMD thread on core 1 (the generator has core 0).
const PMD_CPU_MASK: &str = "0x2";
/// The programs it takes (all in Debian's openvswitch-switch).
const PROGRAMS: [&str; 5] = ["ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl"];
/// How long ovs-vsctl and ovs-appctl wait for an answer.
const TIMEOUT: &str = "--timeout=10";
/// The bridge that owns the underlay port and the VTEP address.
const UNDERLAY_BRIDGE: &str = "br-phy";

/// Ok if Open vSwitch is installed; else why not.
pub fn available() -> Result<()> {
    match PROGRAMS.iter().find(|p| !have(p)) {
        Some(p) => Err(format!("not installed ({p} not found: apt-get install openvswitch-switch)")),
        None => Ok(()),
    }
}

/// Bridge br0 (netdev datapath) over afxdp ports a0 and b0.
pub fn l2(nice: i32) -> Result<Bed> {
    let (a, s, b) = l2_switch()?;
    let ovs = Ovs::start(&s, nice, &[])?;
    ovs.bridge("br0")?;
    for dev in ["a0", "b0"] {
        ovs.afxdp_port("br0", dev)?;
    }
    let dst_mac = b.mac("eth0")?;
    Bed { switch: Some(Box::new(ovs)), ..Bed::new(a, b, vec![s], "eth0", crate::frame::UDP_PORT, dst_mac) }
        .with_hosts_tx_off()
}

/// Bridge br0 over afxdp port a0 and a vxlan port; the tunnel leaves
/// through bridge br-phy over afxdp port up0, which carries the VTEP address
/// on its internal port (OVS's userspace tunnels route and resolve on their
/// own, not through the kernel).
pub fn vxlan(nice: i32) -> Result<Bed> {
    let a = Netns::new("a")?;
    let s = switch_with_a(&a)?;
    let v = far_vtep(&s)?;
    // Its own routes only: the kernel's would not name br-phy.
    let ovs = Ovs::start(&s, nice, &["--disable-system-route"])?;
    ovs.bridge(UNDERLAY_BRIDGE)?;
    ovs.afxdp_port(UNDERLAY_BRIDGE, "up0")?;
    ovs.bridge("br0")?;
    ovs.afxdp_port("br0", "a0")?;
    // No local_ip option: with it, native tunnel routing fails.
    let (remote, key, port) = (
        format!("options:remote_ip={FAR_VTEP}"),
        format!("options:key={VNI}"),
        format!("options:dst_port={VXLAN_PORT}"),
    );
    ovs.vsctl(&["add-port", "br0", "vx42", "--", "set", "interface", "vx42", "type=vxlan", &remote, &key, &port])?;
    ovs.interface_ok("vx42")?;
    addr(&s, UNDERLAY_BRIDGE, &format!("{LOCAL_VTEP}/24"))?;
    s.ip(&["link", "set", UNDERLAY_BRIDGE, "up"])?;
    // OVS learns br-phy's new address from the kernel in its own time, and
    // refuses the route ("Error while inserting route") until it has.
    let route = ["ovs/route/add", &format!("{FAR_VTEP}/24"), UNDERLAY_BRIDGE];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while let Err(e) = ovs.appctl(&route) {
        if std::time::Instant::now() > deadline {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The far VTEP's MAC given, so that OVS need not ARP for it (and drop
    // the frames that wait for the answer).
    ovs.appctl(&["tnl/neigh/set", UNDERLAY_BRIDGE, FAR_VTEP, &mac_string(v.mac("up0")?)])?;
    let dst_mac = v.mac("vx0")?;
    Bed { switch: Some(Box::new(ovs)), ..Bed::new(a, v, vec![s], "up0", VXLAN_PORT, dst_mac) }.with_hosts_tx_off()
}

/// A private Open vSwitch in one namespace: its database, sockets and logs
/// in a temporary folder; both daemons stopped and the folder removed on
/// drop.
struct Ovs {
    // Drop order: vswitchd (which detaches its XDP programs), then the
    // database it talks to, then the folder.
    vswitchd: Daemon,
    _ovsdb: Daemon,
    dir: TempDir,
}

impl Ovs {
    /// Creates a database, starts ovsdb-server and then ovs-vswitchd (with
    /// `vswitchd_args`, at niceness `nice`) inside `netns`.
    fn start(netns: &Netns, nice: i32, vswitchd_args: &[&str]) -> Result<Ovs> {
        let dir = TempDir::new(netns, "ovs")?;
        let db = path_str(&dir.join("conf.db"));
        // The default schema (the one installed with ovsdb-tool).
        sh::run(&["ovsdb-tool", "create", &db])?;
        let remote = format!("--remote=punix:{}", path_str(&dir.join("db.sock")));
        let ctl = format!("--unixctl={}", path_str(&dir.join("ovsdb-server.ctl")));
        let mut ovsdb = Daemon::start(netns, spec(&dir, "ovsdb-server", None, &[&db, &remote, &ctl]))?;
        ovsdb.wait_for(Duration::from_secs(10), |_| vsctl(dir.path(), &["--no-wait", "show"]).is_ok())?;
        vsctl(dir.path(), &["--no-wait", "init"])?;
        // Before vswitchd starts, so that its first PMD thread is on core 1.
        let mask = format!("other_config:pmd-cpu-mask={PMD_CPU_MASK}");
        vsctl(dir.path(), &["--no-wait", "set", "Open_vSwitch", ".", &mask])?;
        let db_remote = format!("unix:{}", path_str(&dir.join("db.sock")));
        let ctl = format!("--unixctl={}", path_str(&dir.join("ovs-vswitchd.ctl")));
        let mut args = vec![db_remote.as_str(), ctl.as_str()];
        args.extend_from_slice(vswitchd_args);
        let mut vswitchd = Daemon::start(netns, spec(&dir, "ovs-vswitchd", Some(nice), &args))?;
        vswitchd.wait_for(Duration::from_secs(10), |_| appctl(dir.path(), &["version"]).is_ok())?;
        Ok(Ovs { vswitchd, _ovsdb: ovsdb, dir })
    }

    fn vsctl(&self, args: &[&str]) -> Result<String> {
        vsctl(self.dir.path(), args)
    }

    fn appctl(&self, args: &[&str]) -> Result<String> {
        appctl(self.dir.path(), args)
    }

    /// Adds bridge `br` on the userspace datapath.
    fn bridge(&self, br: &str) -> Result<()> {
        self.vsctl(&["add-br", br, "--", "set", "bridge", br, "datapath_type=netdev"]).map(drop)
    }

    /// Adds `dev` to `br` as an afxdp port in native XDP mode (generic XDP
    /// would measure the kernel's skb path).
    fn afxdp_port(&self, br: &str, dev: &str) -> Result<()> {
        self.vsctl(&["add-port", br, dev, "--", "set", "interface", dev, "type=afxdp", "options:xdp-mode=native"])?;
        self.interface_ok(dev)
    }

    /// Fails with OVS's own reason when `dev` did not come up (ovs-vsctl
    /// itself succeeds either way).
    fn interface_ok(&self, dev: &str) -> Result<()> {
        let err = self.vsctl(&["get", "interface", dev, "error"])?;
        match err.trim() {
            "[]" | "" => Ok(()),
            e => Err(format!("ovs-vswitchd: interface {dev}: {}; {}", e.trim_matches('"'), self.vswitchd.log_tail())),
        }
    }
}

impl Switch for Ovs {
    fn log_tail(&self) -> String {
        self.vswitchd.log_tail()
    }

    fn counters(&self) -> String {
        [&["dpif-netdev/pmd-stats-show"][..], &["dpctl/show", "-s"]]
            .iter()
            .map(|cmd| format!("ovs-appctl {}:\n{}", cmd.join(" "), self.appctl(cmd).unwrap_or_else(|e| e)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A daemon of this instance: run with its folders in `dir` (not the
/// system's /var/run/openvswitch), all its log on stderr.
fn spec<'a>(dir: &'a TempDir, what: &'static str, nice: Option<i32>, args: &[&'a str]) -> Spec<'a> {
    let mut argv: Vec<&OsStr> = vec![what.as_ref()];
    argv.extend(args.iter().chain(&["-vconsole:info", "-vsyslog:off"]).map(|a| OsStr::new(*a)));
    let env = ["OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR"].into_iter().map(|k| (k, dir.path().as_os_str())).collect();
    Spec { what, nice, argv, env, log: dir.join(&format!("{what}.log")) }
}

/// `ovs-vsctl` against the database in `dir`.
fn vsctl(dir: &Path, args: &[&str]) -> Result<String> {
    let db = format!("--db=unix:{}", path_str(&dir.join("db.sock")));
    let mut v = vec!["ovs-vsctl", TIMEOUT, db.as_str()];
    v.extend_from_slice(args);
    sh::run(&v)
}

/// `ovs-appctl` to the ovs-vswitchd of `dir`.
fn appctl(dir: &Path, args: &[&str]) -> Result<String> {
    let target = path_str(&dir.join("ovs-vswitchd.ctl"));
    let mut v = vec!["ovs-appctl", TIMEOUT, "-t", target.as_str()];
    v.extend_from_slice(args);
    sh::run(&v)
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
