//! Issue 7: many hosts find each other through a real etcd. Three rvs
//! hosts (namespaces, each with its own rvsd, socket and db) share an
//! underlay bridge; etcd runs on that underlay in a namespace of its own
//! and the hosts reach it through their uplinks, as host traffic. Their
//! VXLAN ports have no `--remote`: remotes and remote MACs come from etcd.

mod common;

use common::*;
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

const ETCD_ADDR: &str = "198.18.200.254";
const TTL: u64 = 4;

fn require_etcd() -> bool {
    let found = ["/usr/bin/etcd", "/usr/local/bin/etcd"].iter().any(|p| std::path::Path::new(p).is_file());
    if !found && std::env::var("CI").as_deref() == Ok("true") {
        panic!("etcd not found under CI=true (apt-get install etcd-server; scripts/test.sh does)");
    }
    if !found {
        eprintln!("skipped: needs etcd (apt-get install etcd-server)");
    }
    found
}

/// An etcd server in namespace `ns` on the underlay address; its data
/// survives a restart.
struct Etcd {
    child: Option<ChildGuard>,
    dir: std::path::PathBuf,
}

impl Etcd {
    fn start(ns: &Netns) -> Etcd {
        let dir = std::env::temp_dir().join(format!("rvst-etcd-{}", tag()));
        let mut e = Etcd { child: None, dir };
        e.restart(ns);
        e
    }

    fn restart(&mut self, ns: &Netns) {
        self.stop();
        let client = format!("http://{ETCD_ADDR}:2379");
        let data = self.dir.to_str().unwrap().to_string();
        let log = std::fs::File::create(self.dir.with_extension("log")).expect("etcd log");
        let child = ns
            .cmd(&[
                "etcd",
                "--name",
                "fabric",
                "--data-dir",
                &data,
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-cluster",
                "fabric=http://127.0.0.1:2380",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(ChildGuard(child));
        let probe = format!("exec 3<>/dev/tcp/{ETCD_ADDR}/2379");
        assert!(
            wait_for(Duration::from_secs(10), || ns.run(&["bash", "-c", &probe]).status.success()),
            "etcd did not listen:\n{}",
            std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
        );
    }

    fn stop(&mut self) {
        self.child.take();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("log"));
    }
}

/// Polls `f` every 100 ms until it holds or `within` passes.
fn wait_for(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One rvs host: its namespace, the guest behind its AF_XDP port, rvsd.
struct Node {
    rvsd: Rvsd,
    guest: Netns,
    guest_ip: String,
    vtep: String,
    _host: Netns,
}

impl Node {
    fn new(fabric: &Netns, i: u8) -> Node {
        let host = Netns::new();
        let fab_end = format!("fab{i}");
        veth_between(&host, "ul", fabric, &fab_end);
        fabric.ip(&["link", "set", &fab_end, "master", "fab"]);
        let vtep = format!("198.18.200.{i}");
        host.addr_add("ul", &format!("{vtep}/24"));
        let guest = Netns::new();
        veth_between(&host, "pa0", &guest, "eth0");
        guest.ip(&["link", "set", "eth0", "mtu", "1450"]);
        let guest_ip = format!("198.18.20.{i}");
        guest.addr_add("eth0", &format!("{guest_ip}/24"));
        let etcd = format!("http://{ETCD_ADDR}:2379");
        let node = format!("h{i}");
        let ttl = TTL.to_string();
        let rvsd = Rvsd::start_in_with(&host, &["--etcd", &etcd, "--node", &node, "--lease-ttl", &ttl]);
        rvsd.add_bridge("br0");
        rvsd.ctl_ok(&["uplink", "add", "ul"]);
        rvsd.add_port("br0", "vx42", &["--type", "vxlan", "--vni", "42", "--local", &vtep]);
        rvsd.add_port("br0", "pa0", &["--type", "afxdp"]);
        Node { rvsd, guest, guest_ip, vtep, _host: host }
    }

    fn cluster(&self) -> Value {
        self.rvsd.ctl_json(&["cluster", "show"])
    }

    /// The remotes vx42 uses now, sorted.
    fn remotes(&self) -> Vec<String> {
        let c = self.cluster();
        let mut v: Vec<String> = c["tunnels"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["port"] == "vx42"))
            .and_then(|t| t["remotes"].as_array())
            .map(|r| r.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn state(&self) -> String {
        self.cluster()["status"]["state"].as_str().unwrap_or_default().to_string()
    }

    /// The VTEP `mac` sits behind in this node's FDB, if it is there.
    fn mac_behind(&self, mac: &str) -> Option<String> {
        json::fdb_entries(&self.rvsd.ctl_json(&["fdb", "show", "br0"]))
            .into_iter()
            .find(|e| e.mac == mac && e.port == "vx42")
            .and_then(|e| e.remote)
    }

    fn vx_rx(&self) -> u64 {
        json::port_stat(&self.rvsd.ctl_json(&["stats"]), "vx42").rx_packets
    }
}

fn pings(from: &Node, to: &Node) -> bool {
    from.guest.run(&["ping", "-n", "-q", "-c", "1", "-W", "3", &to.guest_ip]).status.success()
}

#[test]
fn three_hosts_join_advertise_leave_and_survive_etcd_restarts() {
    if !require_root() || !require_etcd() {
        return;
    }
    let _serial = serial();
    let fabric = Netns::new();
    fabric.ip(&["link", "add", "fab", "type", "bridge"]);
    fabric.addr_add("fab", &format!("{ETCD_ADDR}/24"));
    let mut etcd = Etcd::start(&fabric);
    let mut n: Vec<Node> = (1..=3).map(|i| Node::new(&fabric, i)).collect();

    // They find each other: every node's vx42 lists the other two VTEPs.
    for (i, node) in n.iter().enumerate() {
        let want: Vec<String> = (1..=3).filter(|&j| j != i + 1).map(|j| format!("198.18.200.{j}")).collect();
        assert!(
            wait_for(Duration::from_secs(10), || node.remotes() == want),
            "h{} did not find its peers: {}\n{}",
            i + 1,
            node.rvsd.ctl_ok(&["cluster", "show"]),
            node.rvsd.log_text()
        );
    }
    println!("{}", n[0].rvsd.ctl_ok(&["cluster", "show"]));

    // Hostile records (issue 14): a multicast VTEP, a record naming
    // another node. Ignored, counted, logged; the remotes stay as they are.
    let etcd_put = |path: &str, key: &str, value: &str| {
        let b64 = rvs_switch::cluster::etcd::base64;
        let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key.as_bytes()), b64(value.as_bytes()));
        fabric.ok(&["curl", "-sf", "-X", "POST", &format!("http://{ETCD_ADDR}:2379/v3/kv/{path}"), "-d", &body]);
    };
    let hostile = [
        ("/rvs/v1/nodes/evil", r#"{"node":"evil","vteps":[{"vni":42,"addr":"224.0.0.1","dstport":4789}]}"#),
        ("/rvs/v1/nodes/liar", r#"{"node":"h2","vteps":[{"vni":42,"addr":"198.18.200.77","dstport":4789}]}"#),
    ];
    for (k, v) in hostile {
        etcd_put("put", k, v);
    }
    let rejected = |node: &Node| node.cluster()["status"]["rejected_records"].as_u64().unwrap_or(0);
    assert!(wait_for(Duration::from_secs(5), || rejected(&n[0]) >= 2), "{}", n[0].rvsd.ctl_ok(&["cluster", "show"]));
    assert_eq!(n[0].remotes(), vec!["198.18.200.2", "198.18.200.3"], "a hostile VTEP was installed");
    assert!(n[0].rvsd.log_text().contains("etcd record ignored"), "{}", n[0].rvsd.log_text());
    assert!(n[0].rvsd.ctl_ok(&["cluster", "show"]).contains("records ignored as implausible"));
    for (k, _) in hostile {
        etcd_put("deleterange", k, "");
    }
    assert!(wait_for(Duration::from_secs(5), || rejected(&n[0]) == 0), "{}", n[0].rvsd.ctl_ok(&["cluster", "show"]));

    for a in 0..3 {
        for b in 0..3 {
            if a != b {
                assert!(pings(&n[a], &n[b]), "ping h{} -> h{}", a + 1, b + 1);
            }
        }
    }

    // MAC advertisement: a MAC h3 has locally (never seen on the overlay)
    // shows up on h1 behind h3's VTEP, and unicast to it is not flooded.
    let far_mac = "02:00:00:00:03:99";
    n[2].rvsd.ctl_ok(&["fdb", "add", "br0", far_mac, "--port", "pa0"]);
    assert!(
        wait_for(Duration::from_secs(5), || n[0].mac_behind(far_mac).as_deref() == Some(n[2].vtep.as_str())),
        "h3's MAC not advertised to h1: {}",
        n[0].rvsd.ctl_ok(&["fdb", "show", "br0"])
    );
    let (h2_rx, h3_rx) = (n[1].vx_rx(), n[2].vx_rx());
    let g1_mac = parse_mac(&n[0].guest.mac("eth0"));
    let frame = {
        let mut f = parse_mac(far_mac).to_vec();
        f.extend_from_slice(&g1_mac);
        f.extend_from_slice(&[0x88, 0xb5]);
        f.resize(60, 0x5a);
        f
    };
    send_raw(&n[0].guest, "eth0", &vec![frame; 20]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(n[2].vx_rx() >= h3_rx + 20, "unicast to an advertised MAC did not reach its node");
    assert!(n[1].vx_rx() < h2_rx + 20, "unicast to an advertised MAC was flooded to another node");

    // A node that dies leaves everyone's remotes and FDB within the TTL.
    let h2_mac = n[1].guest.mac("eth0");
    assert!(n[0].mac_behind(&h2_mac).is_some(), "h2's guest not known on h1");
    n[1].rvsd.kill9();
    let t0 = Instant::now();
    let alone = vec![n[2].vtep.clone()];
    assert!(
        wait_for(Duration::from_secs(TTL + 3), || n[0].remotes() == alone),
        "h1 still lists dead h2: {}",
        n[0].rvsd.ctl_ok(&["cluster", "show"])
    );
    println!("dead node dropped after {:.1} s (lease TTL {TTL} s)", t0.elapsed().as_secs_f64());
    assert!(wait_for(Duration::from_secs(2), || n[0].mac_behind(&h2_mac).is_none()), "dead h2's MAC kept on h1");
    assert!(wait_for(Duration::from_secs(2), || n[2].remotes() == vec![n[0].vtep.clone()]), "h3 still lists h2");
    assert!(pings(&n[0], &n[2]), "h1 -> h3 after h2 died");

    // etcd goes away: forwarding goes on with what was known.
    etcd.stop();
    assert!(wait_for(Duration::from_secs(8), || n[0].state() == "disconnected"), "h1 did not notice etcd is gone");
    assert!(ping(&n[0].guest, &n[2].guest_ip, 3), "h1 -> h3 with etcd down");
    assert!(ping(&n[2].guest, &n[0].guest_ip, 3), "h3 -> h1 with etcd down");
    assert_eq!(n[0].remotes(), vec![n[2].vtep.clone()], "remotes lost while etcd is down");
    println!("{}", n[0].rvsd.ctl_ok(&["cluster", "show"]));
    // A change made meanwhile reaches the others once etcd is back.
    let late_mac = "02:00:00:00:01:99";
    n[0].rvsd.ctl_ok(&["fdb", "add", "br0", late_mac, "--port", "pa0"]);

    etcd.restart(&fabric);
    for (i, node) in [(1, &n[0]), (3, &n[2])] {
        assert!(
            wait_for(Duration::from_secs(15), || node.state() == "connected"),
            "h{i} did not reconnect: {}",
            node.rvsd.ctl_ok(&["cluster", "show"])
        );
    }
    assert!(
        wait_for(Duration::from_secs(5), || n[2].mac_behind(late_mac).as_deref() == Some(n[0].vtep.as_str())),
        "h1's change while etcd was down did not reach h3"
    );
    assert_eq!(n[2].remotes(), vec![n[0].vtep.clone()]);
    assert!(pings(&n[2], &n[0]), "h3 -> h1 after etcd came back");

    // The dead node comes back: it rejoins by itself (its db has the cluster).
    n[1].rvsd.restart();
    let want = vec![n[1].vtep.clone(), n[2].vtep.clone()];
    assert!(wait_for(Duration::from_secs(10), || n[0].remotes() == want), "h2 did not rejoin");
    assert!(pings(&n[1], &n[0]), "h2 -> h1 after rejoining");
}
