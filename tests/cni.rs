//! Issue 15, item 1: rvs-cni driven exactly as a container runtime drives
//! a CNI plugin (CNI_* variables, the network configuration on stdin),
//! with the real host-local IPAM plugin, against a real rvsd. The
//! "containers" are network namespaces.

mod common;

use common::cni::{cni, cni_bin, cni_in, plugin, Out, CNI_DIR};
use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

const SUBNET: &str = "198.18.40.0/24";
const GATEWAY: &str = "198.18.40.1";
const ROUTE: &str = "198.19.40.0/24";
const NETWORK: &str = "rvstest";

/// One network of the test: its configuration and host-local's data dir.
struct Net {
    socket: PathBuf,
    data_dir: PathBuf,
}

impl Net {
    fn conf(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "rvs",
            "bridge": "br0",
            "socket": self.socket,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                "routes": [{"dst": ROUTE}],
                "dataDir": self.data_dir,
            }
        })
    }

    /// The addresses host-local holds for the network.
    fn reserved(&self) -> Vec<String> {
        cni::reserved(&self.data_dir, NETWORK)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn must(out: Out, what: &str) -> Out {
    assert!(out.ok, "{what} failed: {out:?}");
    out
}

/// `conf` with `prevResult` set, as a runtime sends CHECK.
fn with_prev(mut conf: Value, prev: &Value) -> String {
    conf["prevResult"] = prev.clone();
    conf.to_string()
}

fn has_host_link(name: &str) -> bool {
    run(&["ip", "link", "show", "dev", name]).status.success()
}

fn ports(rvsd: &Rvsd) -> Vec<String> {
    json::show_ports(&rvsd.ctl_json(&["show"])).into_iter().map(|(_, p, _)| p).filter(|p| !p.is_empty()).collect()
}

/// The container address of an ADD result, checked for the spec's shape.
fn check_add_result(r: &Value, netns: &str, ns: &Netns) -> (String, String) {
    assert_eq!(r["cniVersion"], "1.0.0", "{r}");
    let itfs = r["interfaces"].as_array().unwrap_or_else(|| panic!("no interfaces: {r}"));
    assert_eq!(itfs.len(), 2, "{r}");
    let host = itfs[0]["name"].as_str().unwrap().to_string();
    assert!(itfs[0].get("sandbox").is_none(), "{r}");
    assert!(host.len() <= 15 && has_host_link(&host), "host end {host} missing");
    assert_eq!(itfs[1]["name"], "eth0");
    assert_eq!(itfs[1]["sandbox"], netns);
    assert_eq!(itfs[1]["mac"].as_str().unwrap(), ns.mac("eth0"), "{r}");
    let ips = r["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 1, "{r}");
    assert_eq!(ips[0]["interface"], 1);
    assert_eq!(ips[0]["gateway"], GATEWAY);
    let addr = ips[0]["address"].as_str().unwrap().to_string();
    assert!(addr.starts_with("198.18.40.") && addr.ends_with("/24"), "{r}");
    assert_eq!(r["routes"], json!([{"dst": ROUTE}]), "{r}");
    // The container has it all.
    let shown = ns.ip(&["-o", "addr", "show", "dev", "eth0"]);
    assert!(shown.contains(&addr), "{addr} not on eth0: {shown}");
    let routes = ns.ip(&["route", "show", ROUTE]);
    assert!(routes.contains(&format!("via {GATEWAY} dev eth0")), "route missing: {routes}");
    (host, addr.split('/').next().unwrap().to_string())
}

#[test]
fn add_check_del_as_a_runtime_does() {
    if !require_root() || !rvs_dataplane::testing::require_root("cni", &[&format!("{CNI_DIR}/host-local")]) {
        return;
    }
    let _serial = serial();
    let a = Netns::new();
    let b = Netns::new();
    // A holds B's namespace by a process, as runtimes give /proc/PID/ns/net.
    let mut holder = ChildGuard(b.cmd(&["sleep", "600"]).spawn().expect("sleep in b"));
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    let net = Net { socket: rvsd.socket.clone(), data_dir: rvsd.dir.join("cni-ipam") };
    let conf = net.conf();
    let a_path = format!("/var/run/netns/{}", a.name);
    let b_path = format!("/proc/{}/ns/net", holder.0.id());
    let (id_a, id_b) = (format!("ctr-a-{}", tag()), format!("ctr-b-{}", tag()));

    // VERSION, and --version for packaging.
    let o = Command::new(cni_bin()).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("rvs-cni {}", env!("CARGO_PKG_VERSION")));
    let v = must(cni("VERSION", "", None, r#"{"cniVersion":"1.0.0"}"#), "VERSION").json();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert!(v["supportedVersions"].as_array().unwrap().contains(&json!("1.0.0")), "{v}");

    // ADD both; they reach each other through rvs.
    let ra = must(cni("ADD", &id_a, Some(&a_path), &conf.to_string()), "ADD a").json();
    let (host_a, ip_a) = check_add_result(&ra, &a_path, &a);
    let rb = must(cni("ADD", &id_b, Some(&b_path), &conf.to_string()), "ADD b").json();
    let (host_b, ip_b) = check_add_result(&rb, &b_path, &b);
    assert_ne!(host_a, host_b);
    assert_ne!(ip_a, ip_b);
    let mut want = vec![host_a.clone(), host_b.clone()];
    want.sort();
    let mut have = ports(&rvsd);
    have.sort();
    assert_eq!(have, want, "rvs's ports");
    assert_eq!(net.reserved(), {
        let mut v = vec![ip_a.clone(), ip_b.clone()];
        v.sort();
        v
    });
    // Each address is bound to its container's MAC, owned by its port.
    let bound = || -> Vec<(String, String, String)> {
        json::neigh_entries(&rvsd.ctl_json(&["neigh", "show", "br0"]))
            .into_iter()
            .filter(|e| e.source == "static")
            .map(|e| (e.ip, e.mac, e.vlan.to_string()))
            .collect()
    };
    let mut want_bound =
        vec![(ip_a.clone(), a.mac("eth0"), "1".to_string()), (ip_b.clone(), b.mac("eth0"), "1".to_string())];
    want_bound.sort();
    let mut have_bound = bound();
    have_bound.sort();
    assert_eq!(have_bound, want_bound);
    assert!(ping_settled(&a, &ip_b, 3), "ping a -> b\n{}", rvsd.log_text());
    assert!(ping_settled(&b, &ip_a, 3), "ping b -> a");

    // In a chain: the standard tuning plugin takes our result as its
    // prevResult, and its result (the chain's) is what CHECK then gets.
    let tuning = PathBuf::from(CNI_DIR).join("tuning");
    let tconf = json!({"cniVersion": "1.0.0", "name": NETWORK, "type": "tuning",
                       "sysctl": {"net.ipv4.conf.eth0.accept_local": "1"}});
    let tuned = must(plugin(&tuning, "ADD", &id_a, Some(&a_path), &with_prev(tconf.clone(), &ra)), "tuning ADD").json();
    assert_eq!(a.ok(&["cat", "/proc/sys/net/ipv4/conf/eth0/accept_local"]).trim(), "1");
    assert_eq!(tuned["interfaces"], ra["interfaces"], "tuning passed on {tuned}");

    // CHECK, twice; then it fails when the route is gone, and passes again.
    for _ in 0..2 {
        let out = must(cni("CHECK", &id_a, Some(&a_path), &with_prev(conf.clone(), &tuned)), "CHECK a");
        assert!(out.stdout.trim().is_empty(), "CHECK prints nothing: {out:?}");
    }
    a.ip(&["route", "del", ROUTE]);
    let bad = cni("CHECK", &id_a, Some(&a_path), &with_prev(conf.clone(), &ra));
    assert_eq!(bad.error_code(), 104, "{bad:?}");
    assert!(bad.json()["msg"].as_str().unwrap().contains(ROUTE), "{bad:?}");
    a.ip(&["route", "add", ROUTE, "via", GATEWAY, "dev", "eth0"]);
    must(cni("CHECK", &id_a, Some(&a_path), &with_prev(conf.clone(), &ra)), "CHECK a after repair");
    // CHECK without prevResult is a config error.
    assert_eq!(cni("CHECK", &id_a, Some(&a_path), &conf.to_string()).error_code(), 7);

    // ADD of an attached container fails and leaves the attachment alone.
    let again = cni("ADD", &id_a, Some(&a_path), &conf.to_string());
    assert!(again.error_code() >= 100, "{again:?}");
    assert!(ping(&a, &ip_b, 2), "a lost its link after a refused second ADD");
    assert_eq!(net.reserved().len(), 2, "the refused ADD released its address: {:?}", net.reserved());

    // DEL twice (the chain in reverse the first time): both succeed;
    // port, veth and address are gone.
    must(plugin(&tuning, "DEL", &id_a, Some(&a_path), &with_prev(tconf, &tuned)), "tuning DEL");
    for n in 1..=2 {
        let out = must(cni("DEL", &id_a, Some(&a_path), &conf.to_string()), &format!("DEL a #{n}"));
        assert!(out.stdout.trim().is_empty(), "DEL prints nothing: {out:?}");
        assert_eq!(ports(&rvsd), vec![host_b.clone()]);
        assert!(!has_host_link(&host_a), "{host_a} left behind");
        assert!(!a.has_link("eth0"), "eth0 left in the container");
        assert_eq!(net.reserved(), vec![ip_b.clone()]);
        assert_eq!(bound().into_iter().map(|b| b.0).collect::<Vec<_>>(), vec![ip_b.clone()], "a's binding stayed");
    }

    // The whole cycle once more on the same container.
    let ra2 = must(cni("ADD", &id_a, Some(&a_path), &conf.to_string()), "second ADD a").json();
    let (host_a2, ip_a2) = check_add_result(&ra2, &a_path, &a);
    assert_eq!(host_a2, host_a, "the host end's name is derived from the container id");
    assert!(ping_settled(&a, &ip_b, 3), "ping a -> b after re-ADD");
    for _ in 0..2 {
        must(cni("CHECK", &id_a, Some(&a_path), &with_prev(conf.clone(), &ra2)), "second CHECK a");
    }
    for _ in 0..2 {
        must(cni("DEL", &id_a, Some(&a_path), &conf.to_string()), "second DEL a");
    }
    assert!(!net.reserved().contains(&ip_a2));

    // B's namespace goes away first (the container died); DEL still
    // succeeds and leaves nothing, with or without CNI_NETNS.
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    drop(b);
    let out = must(cni("DEL", &id_b, Some(&b_path), &conf.to_string()), "DEL b after its netns is gone");
    assert!(out.stdout.trim().is_empty(), "{out:?}");
    must(cni("DEL", &id_b, None, &conf.to_string()), "DEL b without CNI_NETNS");
    assert!(ports(&rvsd).is_empty(), "ports left: {:?}", ports(&rvsd));
    assert!(!has_host_link(&host_b), "{host_b} left behind");
    assert!(net.reserved().is_empty(), "addresses left: {:?}", net.reserved());
}

#[test]
fn bad_input_gets_the_spec_error_result() {
    if !require_root() || !rvs_dataplane::testing::require_root("cni", &[&format!("{CNI_DIR}/host-local")]) {
        return;
    }
    let _serial = serial();
    let a = Netns::new();
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    let net = Net { socket: rvsd.socket.clone(), data_dir: rvsd.dir.join("cni-ipam") };
    let a_path = format!("/var/run/netns/{}", a.name);
    let id = format!("ctr-{}", tag());
    let conf = net.conf();

    let mut no_bridge = conf.clone();
    no_bridge.as_object_mut().unwrap().remove("bridge");
    let mut future = conf.clone();
    future["cniVersion"] = json!("9.9.9");
    let mut bad_vlan = conf.clone();
    bad_vlan["vlan"] = json!(4095);
    let cases: Vec<(String, u64, &str)> = vec![
        (no_bridge.to_string(), 7, "missing bridge"),
        ("{\"cniVersion\": ".to_string(), 6, "bad JSON"),
        (future.to_string(), 1, "unknown cniVersion"),
        (bad_vlan.to_string(), 7, "VLAN 4095"),
    ];
    for (stdin, code, what) in &cases {
        for cmd in ["ADD", "DEL", "CHECK"] {
            let out = cni(cmd, &id, Some(&a_path), stdin);
            assert_eq!(out.error_code(), *code, "{cmd} with {what}: {out:?}");
        }
    }
    // A missing variable is code 4.
    assert_eq!(cni("ADD", &id, None, &conf.to_string()).error_code(), 4);
    // A namespace that does not exist.
    assert_eq!(cni("ADD", &id, Some("/var/run/netns/rvs-none-such"), &conf.to_string()).error_code(), 3);

    // rvsd unreachable: our code 100, and the failed ADD leaves nothing.
    let mut lost = conf.clone();
    lost["socket"] = json!(rvsd.dir.join("no.sock"));
    let out = cni("ADD", &id, Some(&a_path), &lost.to_string());
    assert_eq!(out.error_code(), 100, "{out:?}");
    assert!(out.stderr.contains("cannot connect to rvsd"), "{out:?}");
    assert!(!a.has_link("eth0"), "a failed ADD left eth0");
    assert!(net.reserved().is_empty(), "a failed ADD kept its address: {:?}", net.reserved());
    // A bridge rvsd does not have: refused (101), nothing left either.
    let mut other = conf.clone();
    other["bridge"] = json!("nobr");
    assert_eq!(cni("ADD", &id, Some(&a_path), &other.to_string()).error_code(), 101);
    assert!(!a.has_link("eth0") && net.reserved().is_empty());
    // An IPAM plugin that is not there.
    let mut no_ipam = conf.clone();
    no_ipam["ipam"]["type"] = json!("rvs-no-such-ipam");
    assert_eq!(cni("ADD", &id, Some(&a_path), &no_ipam.to_string()).error_code(), 103);
    // DEL of what was never added succeeds.
    must(cni("DEL", &id, Some(&a_path), &conf.to_string()), "DEL of nothing");
    assert!(rvsd.ctl_json(&["show"])["bridges"][0]["ports"].as_array().is_none_or(|p| p.is_empty()));
}

/// Without `mtu`, a container on a bridge with a VXLAN tunnel gets the
/// tunnel's inner MTU; with it, what it says.
#[test]
fn mtu_follows_the_bridge_tunnel() {
    if !require_root() || !rvs_dataplane::testing::require_root("cni", &[&format!("{CNI_DIR}/host-local")]) {
        return;
    }
    let _serial = serial();
    let a = Netns::new();
    let b = Netns::new();
    let far = Netns::new();
    let ul = Veth::new(&far, &["198.18.41.2/24"]);
    run_ok(&["ip", "addr", "add", "198.18.41.1/24", "dev", &ul.host]);
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    let net = Net { socket: rvsd.socket.clone(), data_dir: rvsd.dir.join("cni-ipam") };
    let (a_path, b_path) = (format!("/var/run/netns/{}", a.name), format!("/var/run/netns/{}", b.name));
    let (id_a, id_b) = (format!("ctr-a-{}", tag()), format!("ctr-b-{}", tag()));
    let mtu_of = |ns: &Netns| ns.ok(&["cat", "/sys/class/net/eth0/mtu"]).trim().to_string();

    // No tunnel: 1500.
    must(cni("ADD", &id_a, Some(&a_path), &net.conf().to_string()), "ADD a");
    assert_eq!(mtu_of(&a), "1500");
    must(cni("DEL", &id_a, Some(&a_path), &net.conf().to_string()), "DEL a");

    rvsd.ctl_ok(&["uplink", "add", &ul.host]);
    rvsd.ctl_ok(&[
        "port",
        "add",
        "br0",
        "vx41",
        "--type",
        "vxlan",
        "--vni",
        "41",
        "--local",
        "198.18.41.1",
        "--remote",
        "198.18.41.2",
    ]);
    let inner = rvsd.ctl_json(&["show"])["bridges"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|p| p["status"]["inner_mtu"].as_u64())
        .expect("the tunnel's inner MTU in show");
    assert_eq!(inner, 1450, "a 1500-byte IPv4 underlay");
    must(cni("ADD", &id_a, Some(&a_path), &net.conf().to_string()), "ADD a on a tunnelled bridge");
    assert_eq!(mtu_of(&a), inner.to_string());
    let mut fixed = net.conf();
    fixed["mtu"] = json!(1400);
    must(cni("ADD", &id_b, Some(&b_path), &fixed.to_string()), "ADD b with mtu");
    assert_eq!(mtu_of(&b), "1400");
    must(cni("DEL", &id_a, Some(&a_path), &net.conf().to_string()), "DEL a");
    must(cni("DEL", &id_b, Some(&b_path), &fixed.to_string()), "DEL b");
    assert!(net.reserved().is_empty(), "{:?}", net.reserved());
}

/// `ipMasq: true`, with rvsd and the plugin in a namespace of their own
/// (the host, here) whose bridge has the network's gateway: a container
/// reaches a namespace beyond the host that has no route back to the
/// containers' subnet, seen there as the host's address; the rule is
/// there from the first ADD to the last DEL of the network.
#[test]
fn ip_masq_nats_containers_until_the_last_del() {
    if !require_root() || !rvs_dataplane::testing::require_root("cni", &[&format!("{CNI_DIR}/host-local"), "nft"]) {
        return;
    }
    let _serial = serial();
    let machine = Netns::new();
    machine.ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let outside = Netns::new();
    veth_between(&machine, "up0", &outside, "eth0");
    machine.addr_add("up0", "198.18.54.1/24");
    outside.addr_add("eth0", "198.18.54.2/24");
    let rvsd = Rvsd::start_in(&machine);
    rvsd.ctl_ok(&["bridge", "add", "br0", "--gateway", "198.18.53.1/24"]);
    let network = format!("masq{}", tag());
    let data_dir = rvsd.dir.join("cni-ipam");
    // The plugin's record of who holds the rule, removed by the last DEL
    // (and here if the test fails before).
    struct Held(PathBuf);
    impl Drop for Held {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _held = Held(PathBuf::from("/var/lib/cni/rvs-masq").join(&network));
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": network,
        "type": "rvs",
        "bridge": "br0",
        "socket": rvsd.socket,
        "ipMasq": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "198.18.53.0/24", "gateway": "198.18.53.1"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": data_dir,
        }
    })
    .to_string();
    let rules = || -> Vec<String> {
        let all = machine.ok(&["nft", "list", "ruleset"]);
        all.lines().filter(|l| l.contains(&format!("rvs-cni:{network}"))).map(|l| l.trim().to_string()).collect()
    };

    let (a, b) = (Netns::new(), Netns::new());
    let (a_path, b_path) = (format!("/var/run/netns/{}", a.name), format!("/var/run/netns/{}", b.name));
    let (id_a, id_b) = (format!("ctr-a-{}", tag()), format!("ctr-b-{}", tag()));
    must(cni_in(&machine, "ADD", &id_a, Some(&a_path), &conf), "ADD a");
    let r = rules();
    assert_eq!(r.len(), 1, "one masquerade rule for the network: {r:?}");
    assert!(
        r[0].contains("ip saddr 198.18.53.0/24 ip daddr != 198.18.53.0/24") && r[0].contains("masquerade"),
        "{r:?}"
    );
    must(cni_in(&machine, "ADD", &id_b, Some(&b_path), &conf), "ADD b");
    assert_eq!(rules().len(), 1, "a second container adds no rule: {:?}", rules());

    // The outside sees the host's address, and answers it.
    assert!(outside.ip(&["route", "show"]).lines().all(|l| !l.contains("198.18.53.")));
    let dump = Tcpdump::start(Some(&outside), "eth0", 1, &["icmp", "and", "icmp[icmptype]", "=", "icmp-echo"]);
    assert!(ping_settled(&a, "198.18.54.2", 3), "container a cannot reach the outside:\n{}", rvsd.log_text());
    let seen = dump.finish(std::time::Duration::from_secs(10));
    assert!(seen.iter().any(|l| l.contains("198.18.54.1 > 198.18.54.2")), "not masqueraded: {seen:?}");
    assert!(ping_settled(&b, "198.18.54.2", 3), "container b cannot reach the outside");

    // The rule stays while a container holds it; DEL is idempotent.
    must(cni_in(&machine, "DEL", &id_a, Some(&a_path), &conf), "DEL a");
    assert_eq!(rules().len(), 1, "the rule went with the first DEL");
    assert!(ping_settled(&b, "198.18.54.2", 3), "b lost the outside when a left");
    for n in 1..=2 {
        must(cni_in(&machine, "DEL", &id_b, Some(&b_path), &conf), &format!("DEL b #{n}"));
        assert!(rules().is_empty(), "the rule outlived the last DEL: {:?}", rules());
        assert!(!machine.ok(&["nft", "list", "tables"]).contains("rvs-cni"), "the table outlived its last rule");
    }
    assert!(!_held.0.exists(), "the last DEL left {}", _held.0.display());

    // A container gone without DEL holds the rule until GC leaves it out.
    must(cni_in(&machine, "ADD", &id_a, Some(&a_path), &conf), "ADD a again");
    let mut gc: Value = serde_json::from_str(&conf).unwrap();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": id_a, "ifname": "eth0"}]);
    must(cni_in(&machine, "GC", "", None, &gc.to_string()), "GC keeping a");
    assert_eq!(rules().len(), 1, "GC removed the rule of a valid attachment");
    gc["cni.dev/valid-attachments"] = json!([]);
    must(cni_in(&machine, "GC", "", None, &gc.to_string()), "GC of all");
    assert!(rules().is_empty(), "GC left the rule of a gone container: {:?}", rules());
    assert!(!_held.0.exists(), "GC left {}", _held.0.display());
}

/// `"portType": "tap"`: rvsd makes the container's eth0 itself, a tap
/// inside the container's namespace (no veth, no host end); the port is
/// tagged with the container; ADD, CHECK and DEL twice each.
#[test]
fn tap_ports_live_in_the_container() {
    if !require_root() || !rvs_dataplane::testing::require_root("cni", &[&format!("{CNI_DIR}/host-local")]) {
        return;
    }
    let _serial = serial();
    let a = Netns::new();
    let b = Netns::new();
    let mut holder = ChildGuard(b.cmd(&["sleep", "600"]).spawn().expect("sleep in b"));
    let rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    let net = Net { socket: rvsd.socket.clone(), data_dir: rvsd.dir.join("cni-ipam") };
    let mut conf = net.conf();
    conf["portType"] = json!("tap");
    let a_path = format!("/var/run/netns/{}", a.name);
    let b_path = format!("/proc/{}/ns/net", holder.0.id());
    // Ids as runtimes make them: 64 hex digits, shown by their first 12.
    let (id_a, id_b) = (format!("{:0>64}", format!("a{}", tag())), format!("{:0>64}", format!("b{}", tag())));

    let mut addrs = Vec::new();
    let mut results = Vec::new();
    for (id, path, ns) in [(&id_a, &a_path, &a), (&id_b, &b_path, &b)] {
        let r = must(cni("ADD", id, Some(path), &conf.to_string()), "ADD tap").json();
        let itfs = r["interfaces"].as_array().unwrap();
        assert_eq!(itfs.len(), 1, "a tap has no host end: {r}");
        assert_eq!((&itfs[0]["name"], &itfs[0]["sandbox"]), (&json!("eth0"), &json!(path)), "{r}");
        assert_eq!(itfs[0]["mac"].as_str().unwrap(), ns.mac("eth0"));
        assert_eq!(r["ips"][0]["interface"], 0, "{r}");
        let details = ns.ip(&["-d", "link", "show", "eth0"]);
        assert!(details.contains("tun type tap"), "eth0 is not a tap: {details}");
        let addr = r["ips"][0]["address"].as_str().unwrap();
        assert!(ns.ip(&["-o", "addr", "show", "dev", "eth0"]).contains(addr));
        addrs.push(addr.split('/').next().unwrap().to_string());
        results.push(r);
    }
    // Tagged: show names the container of each port, and no veth exists.
    let shown = rvsd.ctl_json(&["show"]);
    let owners: Vec<(String, String)> = shown["bridges"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["config"]["type"], "tap");
            assert_eq!(p["config"]["owner"]["network"], NETWORK);
            (
                p["config"]["owner"]["container"].as_str().unwrap().to_string(),
                p["config"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(owners.iter().map(|o| o.0.clone()).collect::<Vec<_>>(), vec![id_a.clone(), id_b.clone()]);
    for (_, port) in &owners {
        assert!(!has_host_link(port), "a tap port made {port} on the host");
    }
    let text = rvsd.ctl_ok(&["show"]);
    assert!(text.contains("CONTAINER") && text.contains(&format!("{}/eth0", &id_a[..12])), "{text}");

    assert!(ping_settled(&a, &addrs[1], 3), "ping a -> b over taps\n{}", rvsd.log_text());
    for _ in 0..2 {
        must(cni("CHECK", &id_a, Some(&a_path), &with_prev(conf.clone(), &results[0])), "CHECK tap a");
    }
    // CHECK notices a missing address.
    a.ip(&["addr", "flush", "dev", "eth0"]);
    assert_eq!(cni("CHECK", &id_a, Some(&a_path), &with_prev(conf.clone(), &results[0])).error_code(), 104);

    for n in 1..=2 {
        must(cni("DEL", &id_a, Some(&a_path), &conf.to_string()), &format!("DEL tap a #{n}"));
        assert!(!a.has_link("eth0"), "DEL left the tap in the container");
        assert_eq!(ports(&rvsd), vec![owners[1].1.clone()]);
        assert_eq!(net.reserved(), vec![addrs[1].clone()]);
    }
    // B's container dies before its DEL: DEL still succeeds.
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    drop(b);
    for _ in 0..2 {
        must(cni("DEL", &id_b, Some(&b_path), &conf.to_string()), "DEL tap b after its netns is gone");
    }
    assert!(ports(&rvsd).is_empty() && net.reserved().is_empty());
}

/// A container that ends without a DEL (its runtime was killed): rvsd
/// removes its port, veth or tap, once its interface is gone.
#[test]
fn rvsd_removes_ports_of_gone_containers() {
    if !require_root() || !rvs_dataplane::testing::require_root("cni", &[&format!("{CNI_DIR}/host-local")]) {
        return;
    }
    let _serial = serial();
    let (a, b, c) = (Netns::new(), Netns::new(), Netns::new());
    let mut holders: Vec<ChildGuard> =
        [&a, &b].iter().map(|ns| ChildGuard(ns.cmd(&["sleep", "600"]).spawn().expect("sleep"))).collect();
    let mut rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    let net = Net { socket: rvsd.socket.clone(), data_dir: rvsd.dir.join("cni-ipam") };
    let veth_conf = net.conf();
    let mut tap_conf = net.conf();
    tap_conf["portType"] = json!("tap");
    let paths: Vec<String> = holders.iter().map(|h| format!("/proc/{}/ns/net", h.0.id())).collect();
    let c_path = format!("/var/run/netns/{}", c.name);
    must(cni("ADD", "ctr-gone-veth", Some(&paths[0]), &veth_conf.to_string()), "ADD veth");
    must(cni("ADD", "ctr-gone-tap", Some(&paths[1]), &tap_conf.to_string()), "ADD tap");
    let stays = host_end(&must(cni("ADD", "ctr-stays", Some(&c_path), &veth_conf.to_string()), "ADD c"));
    // The namespaces go with their last process, and the interfaces in them.
    drop(a);
    drop(b);
    for h in &mut holders {
        h.0.kill().unwrap();
        h.0.wait().unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while ports(&rvsd) != vec![stays.clone()] {
        assert!(std::time::Instant::now() < deadline, "ports left: {:?}\n{}", ports(&rvsd), rvsd.log_text());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let log = rvsd.log_text();
    assert!(log.contains("container ctr-gone-veth is gone") && log.contains("container ctr-gone-tap is gone"), "{log}");
    // The kept one still works, and the removal is in the db: a restart
    // brings back only it.
    rvsd.restart();
    assert_eq!(ports(&rvsd), vec![stays.clone()]);
    must(cni("DEL", "ctr-stays", Some(&c_path), &veth_conf.to_string()), "DEL c");
    for id in ["ctr-gone-veth", "ctr-gone-tap"] {
        must(cni("DEL", id, None, &veth_conf.to_string()), "late DEL");
    }
    assert!(net.reserved().is_empty(), "{:?}", net.reserved());
}

/// The host end's name in an ADD result of a veth attachment.
fn host_end(add: &Out) -> String {
    let r = add.json();
    r["interfaces"][0]["name"].as_str().unwrap_or_else(|| panic!("no host end in {r}")).to_string()
}

/// CNI 1.1's STATUS and GC.
#[test]
fn status_and_gc() {
    if !require_root() || !rvs_dataplane::testing::require_root("cni", &[&format!("{CNI_DIR}/host-local")]) {
        return;
    }
    let _serial = serial();
    let (a, b) = (Netns::new(), Netns::new());
    let rvsd = Rvsd::start();
    let net = Net { socket: rvsd.socket.clone(), data_dir: rvsd.dir.join("cni-ipam") };
    let mut conf11 = net.conf();
    conf11["cniVersion"] = json!("1.1.0");
    let v = must(cni("VERSION", "", None, r#"{"cniVersion":"1.1.0"}"#), "VERSION").json();
    assert!(v["supportedVersions"].as_array().unwrap().contains(&json!("1.1.0")), "{v}");

    // STATUS: not available (50) without the bridge, or without rvsd.
    assert_eq!(cni("STATUS", "", None, &conf11.to_string()).error_code(), 50);
    rvsd.add_bridge("br0");
    let out = must(cni("STATUS", "", None, &conf11.to_string()), "STATUS");
    assert!(out.stdout.trim().is_empty(), "{out:?}");
    let mut lost = conf11.clone();
    lost["socket"] = json!(rvsd.dir.join("no.sock"));
    assert_eq!(cni("STATUS", "", None, &lost.to_string()).error_code(), 50);

    // GC keeps the valid attachments and removes the rest of the network's
    // ports; other networks' ports and plain ports stay.
    let conf = net.conf();
    let (pa, pb) = (format!("/var/run/netns/{}", a.name), format!("/var/run/netns/{}", b.name));
    let keep = host_end(&must(cni("ADD", "ctr-keep", Some(&pa), &conf.to_string()), "ADD keep"));
    let stale = host_end(&must(cni("ADD", "ctr-stale", Some(&pb), &conf.to_string()), "ADD stale"));
    let mut gc = conf11.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-keep", "ifname": "eth0"}]);
    let mut other = gc.clone();
    other["name"] = json!("another-network");
    other["cni.dev/valid-attachments"] = json!([]);
    must(cni("GC", "", None, &other.to_string()), "GC of another network");
    let mut both = vec![keep.clone(), stale.clone()];
    both.sort();
    let mut have = ports(&rvsd);
    have.sort();
    assert_eq!(have, both, "GC of another network removed ours");
    for _ in 0..2 {
        must(cni("GC", "", None, &gc.to_string()), "GC");
        assert_eq!(ports(&rvsd), vec![keep.clone()]);
        assert!(!has_host_link(&stale) && has_host_link(&keep));
        assert!(!b.has_link("eth0"), "the stale veth is gone from its container too");
    }
    must(cni("DEL", "ctr-keep", Some(&pa), &conf.to_string()), "DEL keep");
    must(cni("DEL", "ctr-stale", Some(&pb), &conf.to_string()), "DEL stale (after GC)");
    assert!(net.reserved().is_empty(), "{:?}", net.reserved());
}
