//! Issue 15: a bridge's gateway (an internal port in rvsd's namespace
//! holding the gateway addresses), and routing between two rvs bridges
//! through the host. rvsd runs in a namespace of its own ("the machine"),
//! so the host whose routing and sysctls these tests use is theirs alone;
//! each guest is a namespace on a veth whose other end is an AF_XDP port
//! in the machine.

mod common;

use common::*;
use serde_json::Value;

/// The addresses (`ADDR/PREFIX`) of `dev` in `ns`, IPv6 link-local ones left out.
fn addrs(ns: &Netns, dev: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(&ns.ip(&["-j", "addr", "show", "dev", dev])).expect("ip -j output");
    let mut out: Vec<String> = v[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["scope"] != "link")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
        .collect();
    out.sort();
    out
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// The bridge `br` of `rvsctl --json show`.
fn shown_bridge(rvsd: &Rvsd, br: &str) -> Value {
    let show = rvsd.ctl_json(&["show"]);
    show["bridges"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["name"] == br)
        .cloned()
        .unwrap_or_else(|| panic!("no bridge {br} in show: {show}"))
}

/// The gateway as `show --json` has it: the bridge's list, and the type and
/// addresses of its port named after it.
fn shown_gateway(rvsd: &Rvsd, br: &str) -> (Vec<String>, String, Vec<String>) {
    let b = shown_bridge(rvsd, br);
    let strings = |v: &Value| -> Vec<String> {
        let mut s: Vec<String> =
            v.as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect();
        s.sort();
        s
    };
    let port = b["ports"].as_array().into_iter().flatten().find(|p| p["config"]["name"] == br);
    let kind = port.map(|p| p["config"]["type"].as_str().unwrap_or("").to_string()).unwrap_or_default();
    let port_addrs = port.map(|p| strings(&p["config"]["addresses"])).unwrap_or_default();
    (strings(&b["gateway"]), kind, port_addrs)
}

/// A guest on a new AF_XDP port of `br`, with `v4` and `v6` (CIDR), whose
/// default routes go through `gw4` and `gw6`.
fn guest_on(rvsd: &Rvsd, machine: &Netns, br: &str, v4: &str, v6: &str, gw: Option<(&str, &str)>) -> Guest {
    let port = format!("p{}", tag());
    let g = Guest::new(machine, &port, v4, "1500");
    g.ns.addr_add("eth0", v6);
    if let Some((gw4, gw6)) = gw {
        g.ns.ip(&["route", "add", "default", "via", gw4]);
        g.ns.ip(&["-6", "route", "add", "default", "via", gw6]);
    }
    rvsd.add_port(br, &port, &["--type", "afxdp"]);
    g
}

#[test]
fn gateway_reaches_hosts_survives_restart_and_goes_with_its_bridge() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let machine = Netns::new();
    let mut rvsd = Rvsd::start_in(&machine);
    let br = format!("g{}", tag());
    let gw = ["198.18.50.1/24", "2001:2:0:50::1/64"];
    rvsd.ctl_ok(&["bridge", "add", &br, "--gateway", gw[0], "--gateway", gw[1]]);
    let guest = guest_on(&rvsd, &machine, &br, "198.18.50.2/24", "2001:2:0:50::2/64", None);

    let check = |rvsd: &Rvsd, when: &str| {
        assert!(machine.has_link(&br), "{when}: no gateway tap {br} in rvsd's namespace");
        assert_eq!(addrs(&machine, &br), sorted(&gw), "{when}: addresses of the gateway tap");
        let mtu = machine.ip(&["-j", "link", "show", "dev", &br]);
        assert!(mtu.contains("\"mtu\":1500"), "{when}: {mtu}");
        assert_eq!(shown_gateway(rvsd, &br), (sorted(&gw), "internal".to_string(), sorted(&gw)), "{when}");
        // The guest reaches the gateway, both families, and the host the guest.
        for a in ["198.18.50.1", "2001:2:0:50::1"] {
            assert!(ping_settled(&guest.ns, a, 3), "{when}: guest cannot ping the gateway {a}:\n{}", rvsd.log_text());
        }
        for a in ["198.18.50.2", "2001:2:0:50::2"] {
            assert!(ping_settled(&machine, a, 3), "{when}: the host cannot ping the guest {a}");
        }
    };
    check(&rvsd, "after bridge add");
    let human = rvsd.ctl_ok(&["show"]);
    assert!(human.contains(&format!("gateway: {}, {} (internal port {br})", gw[0], gw[1])), "{human}");

    rvsd.restart();
    check(&rvsd, "after an rvsd restart");
    rvsd.kill9();
    rvsd.restart();
    check(&rvsd, "after kill -9 and a restart");

    // A new list replaces the old one, live.
    rvsd.ctl_ok(&["bridge", "set", &br, "--gateway", "198.18.50.3/24"]);
    assert_eq!(addrs(&machine, &br), ["198.18.50.3/24"]);
    assert!(ping_settled(&guest.ns, "198.18.50.3", 3));
    assert!(!ping(&guest.ns, "198.18.50.1", 1), "the old gateway address still answers");
    rvsd.ctl_ok(&["bridge", "set", &br, "--no-gateway"]);
    assert!(!machine.has_link(&br), "--no-gateway left the tap");
    assert_eq!(shown_gateway(&rvsd, &br), (vec![], String::new(), vec![]));
    rvsd.ctl_ok(&["bridge", "set", &br, "--gateway", gw[0], "--gateway", gw[1]]);
    check(&rvsd, "after the gateway came back");

    let e = one_line_error("port del of the gateway port", &rvsd.ctl(&["port", "del", &br, &br]));
    assert!(e.contains("--no-gateway"), "{e}");
    rvsd.ctl_ok(&["bridge", "del", &br]);
    assert!(!machine.has_link(&br), "bridge del left the gateway tap");
}

#[test]
fn bad_gateway_input_is_refused_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let machine = Netns::new();
    let rvsd = Rvsd::start_in(&machine);
    let (dummy, peer) = (format!("d{}", tag()), format!("e{}", tag()));
    machine.ip(&["link", "add", &dummy, "type", "veth", "peer", "name", &peer]);
    machine.addr_add(&dummy, "198.18.55.1/24");
    let br = format!("g{}", tag());

    for (args, why) in [
        (vec!["bridge", "add", "gateway-name-too-long", "--gateway", "198.18.56.1/24"], "at most 15 bytes"),
        (vec!["bridge", "add", &br, "--gateway", "198.18.56.1/33"], "prefix length"),
        (vec!["bridge", "add", &br, "--gateway", "198.18.56.1"], "ADDRESS/PREFIX"),
        (vec!["bridge", "add", &br, "--gateway", "198.18.56.0/24"], "network's own address"),
        (vec!["bridge", "add", &br, "--gateway", "198.18.55.1/24"], "already on interface"),
        (vec!["bridge", "add", &br, "--gateway", "198.18.56.1/24", "--gateway", "198.18.56.1/16"], "given twice"),
    ] {
        let e = one_line_error(&format!("{args:?}"), &rvsd.ctl(&args));
        assert!(e.contains(why), "{args:?}: {e}");
        assert!(!machine.has_link(&br), "{args:?} left a tap");
        assert!(!rvsd.ctl_ok(&["bridge", "list"]).contains(&br), "{args:?} left the bridge");
    }
    let e = one_line_error("address of the dummy", &rvsd.ctl(&["bridge", "add", &br, "--gateway", "198.18.55.1/24"]));
    assert!(e.contains(&dummy), "the error names the interface holding it: {e}");

    // A failed change leaves the gateway as it was.
    rvsd.ctl_ok(&["bridge", "add", &br, "--gateway", "198.18.56.1/24"]);
    let e = one_line_error("set to a taken address", &rvsd.ctl(&["bridge", "set", &br, "--gateway", "198.18.55.1/24"]));
    assert!(e.contains("already on interface"), "{e}");
    assert_eq!(addrs(&machine, &br), ["198.18.56.1/24"]);
    assert_eq!(shown_gateway(&rvsd, &br).0, ["198.18.56.1/24"]);
    let db = std::fs::read_to_string(&rvsd.db).unwrap();
    assert!(db.contains("198.18.56.1/24") && !db.contains("198.18.55.1"), "{db}");
}

#[test]
fn two_bridges_route_through_the_host() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let machine = Netns::new();
    // The machine is a router: its own sysctls, not the test host's.
    machine.ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    machine.ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    let rvsd = Rvsd::start_in(&machine);
    let (bra, brb) = (format!("ga{}", tag()), format!("gb{}", tag()));
    rvsd.ctl_ok(&["bridge", "add", &bra, "--gateway", "198.18.51.1/24", "--gateway", "2001:2:0:51::1/64"]);
    rvsd.ctl_ok(&["bridge", "add", &brb, "--gateway", "198.18.52.1/24", "--gateway", "2001:2:0:52::1/64"]);
    let a =
        guest_on(&rvsd, &machine, &bra, "198.18.51.2/24", "2001:2:0:51::2/64", Some(("198.18.51.1", "2001:2:0:51::1")));
    let b =
        guest_on(&rvsd, &machine, &brb, "198.18.52.2/24", "2001:2:0:52::2/64", Some(("198.18.52.1", "2001:2:0:52::1")));

    for (from, to) in [(&a, "198.18.52.2"), (&b, "198.18.51.2"), (&a, "2001:2:0:52::2"), (&b, "2001:2:0:51::2")] {
        assert!(ping_settled(&from.ns, to, 3), "no route to {to}:\n{}", rvsd.log_text());
    }
    // Routed, not bridged: one hop less on the way.
    let out = a.ns.ok(&["ping", "-n", "-c", "1", "-W", "2", "198.18.52.2"]);
    assert!(out.contains("ttl=63"), "{out}");

    // TCP, both families.
    for (server, client) in [("198.18.52.2", "198.18.51.2"), ("2001:2:0:52::2", "2001:2:0:51::2")] {
        let _srv = Iperf3Server::start(&b.ns, server);
        let bps = iperf3(&a.ns, server, 2).unwrap_or_else(|e| panic!("TCP {client} -> {server}: {e}"));
        eprintln!("routed TCP {client} -> {server}: {:.0} Mbit/s", bps / 1e6);
        assert!(bps > 0.0);
    }
    // Nothing was learned across: each bridge knows its guest and its gateway.
    for br in [&bra, &brb] {
        let fdb = rvsd.ctl_json(&["fdb", "show", br]);
        assert_eq!(json::fdb_entries(&fdb).len(), 2, "{br}: {fdb}");
    }
}

/// On a bridge with a VXLAN tunnel the gateway takes the tunnel's inner
/// MTU, so the host sends the bridge nothing the tunnel would drop; it
/// follows tunnels that come and go.
#[test]
fn gateway_mtu_is_the_tunnels_inner_mtu() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let machine = Netns::new();
    let far = Netns::new();
    veth_between(&machine, "ul0", &far, "eth0");
    machine.addr_add("ul0", "198.18.57.1/24");
    far.addr_add("eth0", "198.18.57.2/24");
    let rvsd = Rvsd::start_in(&machine);
    let br = format!("g{}", tag());
    rvsd.ctl_ok(&["bridge", "add", &br, "--gateway", "198.18.58.1/24"]);
    rvsd.ctl_ok(&["uplink", "add", "ul0"]);
    let mtu = || -> Value {
        let link: Value = serde_json::from_str(&machine.ip(&["-j", "link", "show", "dev", &br])).unwrap();
        link[0]["mtu"].clone()
    };
    assert_eq!(mtu(), 1500, "no tunnel");
    let vx = format!("vx{}", tag());
    let add_tunnel = || {
        rvsd.ctl_ok(&[
            "port",
            "add",
            &br,
            &vx,
            "--type",
            "vxlan",
            "--vni",
            "57",
            "--local",
            "198.18.57.1",
            "--remote",
            "198.18.57.2",
        ])
    };
    add_tunnel();
    assert_eq!(mtu(), 1450, "a tunnel over a 1500-byte IPv4 underlay came");
    rvsd.ctl_ok(&["port", "del", &br, &vx]);
    assert_eq!(mtu(), 1500, "the tunnel went");
    add_tunnel();
    rvsd.ctl_ok(&["bridge", "set", &br, "--no-gateway"]);
    rvsd.ctl_ok(&["bridge", "set", &br, "--gateway", "198.18.58.1/24"]);
    assert_eq!(mtu(), 1450, "made on a bridge with a tunnel");
}
