//! Issue 15: ARP and ND suppression. Two hosts on one rvs bridge; once rvs
//! knows B's binding (added with `rvsctl neigh add`, or learned from B's
//! own ARP), A's ARP request or neighbour solicitation for B is answered
//! by rvs: A's neighbour entry for B has B's MAC, the suppressed counter
//! goes up, and B never sees the request.

mod common;

use common::*;
use std::time::Duration;

/// How long a capture on B listens for a request that must not come.
const QUIET: Duration = Duration::from_secs(3);

/// ARP requests from `from` arriving at `host`.
fn arp_requests(host: &Host, from: &str) -> Tcpdump {
    Tcpdump::start(Some(&host.ns), &host.dev, 1, &["arp", "src", "host", from, "and", "arp[6:2]", "=", "1"])
}

/// Neighbour solicitations from `from` arriving at `host` (so not the
/// duplicate address detection of the other hosts' link-local addresses).
fn solicitations(host: &Host, from: &str) -> Tcpdump {
    let filter = ["icmp6", "and", "ip6[40]", "=", "135", "and", "src", "host", from];
    Tcpdump::start(Some(&host.ns), &host.dev, 1, &filter)
}

/// The MAC `ns` has for `ip` on `dev` (lower case), if any.
fn neighbour(ns: &Netns, dev: &str, ip: &str) -> Option<String> {
    let out = ns.ip(&["-j", "neigh", "show", ip, "dev", dev]);
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v.get(0)?.get("lladdr")?.as_str().map(str::to_lowercase)
}

fn suppressed(rvsd: &Rvsd, port: &str, counter: &str) -> u64 {
    json::port_counter(&rvsd.ctl_json(&["stats"]), port, counter)
}

#[test]
fn arp_and_nd_for_known_hosts_are_answered_by_rvs() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.151.1/24");
    let b = Host::on_veth("198.18.151.2/24");
    let c = Host::on_veth("198.18.151.3/24");
    let rvsd = Rvsd::start();
    rvsd.bridge_with("br0", &[&a, &b, &c]);

    // A static binding, as rvs-cni's ADD makes it; trace tells.
    rvsd.ctl_ok(&["neigh", "add", "br0", &b.ip, &b.mac()]);
    let req = arp_request(parse_mac(&a.mac()), parse_ip(&a.ip), parse_ip(&b.ip), None);
    let hex: String = req.iter().map(|x| format!("{x:02x}")).collect();
    let t = rvsd.ctl_json(&["trace", "br0", a.port(), &hex]);
    assert_eq!(json::trace_decision(&t), "answer:arp", "{t}");
    let step = json::trace_step(&t, "neigh").unwrap_or_default();
    assert!(step.contains(&format!("bound to {} (static)", b.mac())), "{step}");
    let dump = arp_requests(&b, &a.ip);
    let arp0 = suppressed(&rvsd, a.port(), "arp_suppressed");
    assert!(ping_settled(&a.ns, &b.ip, 2), "A cannot reach B");
    assert_eq!(dump.finish(QUIET), Vec::<String>::new(), "B saw an ARP request");
    assert_eq!(neighbour(&a.ns, &a.dev, &b.ip), Some(b.mac()), "A's neighbour entry for B");
    assert!(suppressed(&rvsd, a.port(), "arp_suppressed") > arp0, "no ARP request counted as suppressed");

    // A learned binding: C's address, seen in C's own ARP (C asks for A).
    assert!(ping_settled(&c.ns, &a.ip, 1), "C cannot reach A");
    a.ns.ip(&["neigh", "flush", "dev", &a.dev]);
    let dump = arp_requests(&c, &a.ip);
    assert!(ping_settled(&a.ns, &c.ip, 2), "A cannot reach C");
    assert_eq!(dump.finish(QUIET), Vec::<String>::new(), "C saw an ARP request");
    assert_eq!(neighbour(&a.ns, &a.dev, &c.ip), Some(c.mac()), "A's neighbour entry for C");

    // IPv6: a neighbour solicitation for B's address.
    let (a6, b6) = ("2001:2:0:151::1", "2001:2:0:151::2");
    a.ns.addr_add(&a.dev, &format!("{a6}/64"));
    b.ns.addr_add(&b.dev, &format!("{b6}/64"));
    rvsd.ctl_ok(&["neigh", "add", "br0", b6, &b.mac()]);
    let nd0 = suppressed(&rvsd, a.port(), "nd_suppressed");
    let dump = solicitations(&b, a6);
    assert!(ping_settled(&a.ns, b6, 2), "A cannot reach B over IPv6");
    assert_eq!(dump.finish(QUIET), Vec::<String>::new(), "B saw a neighbour solicitation");
    assert_eq!(neighbour(&a.ns, &a.dev, b6), Some(b.mac()), "A's IPv6 neighbour entry for B");
    assert!(suppressed(&rvsd, a.port(), "nd_suppressed") > nd0, "no NS counted as suppressed");

    // The bindings, with their sources.
    let list = json::neigh_entries(&rvsd.ctl_json(&["neigh", "show", "br0"]));
    let source = |ip: &str| list.iter().find(|e| e.ip == ip).map(|e| (e.mac.clone(), e.source.clone()));
    assert_eq!(source(&b.ip), Some((b.mac(), "static".into())), "{list:?}");
    assert_eq!(source(b6), Some((b.mac(), "static".into())), "{list:?}");
    assert_eq!(source(&c.ip), Some((c.mac(), "learned".into())), "{list:?}");
    assert_eq!(source(&a.ip), Some((a.mac(), "learned".into())), "{list:?}");
    println!("{}", rvsd.ctl_ok(&["neigh", "show"]));

    // Idempotent forms; a missing binding is "not found" (exit 4).
    rvsd.ctl_ok(&["neigh", "add", "br0", &b.ip, &b.mac(), "--may-exist"]);
    assert_eq!(rvsd.ctl(&["neigh", "add", "br0", &b.ip, &b.mac()]).status.code(), Some(3));
    rvsd.ctl_ok(&["neigh", "del", "br0", &b.ip]);
    assert_eq!(rvsd.ctl(&["neigh", "del", "br0", &b.ip]).status.code(), Some(4));
    rvsd.ctl_ok(&["neigh", "del", "br0", &b.ip, "--if-exists"]);
    let bad = rvsd.ctl(&["neigh", "add", "br0", "198.18.151.9", "ff:ff:ff:ff:ff:ff"]);
    assert!(!bad.status.success());
}

/// A static binding survives a restart of rvsd, and is answered from.
#[test]
fn static_bindings_are_restored() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.152.1/24");
    let b = Host::on_veth("198.18.152.2/24");
    let mut rvsd = Rvsd::start();
    rvsd.bridge_with("br0", &[&a, &b]);
    rvsd.ctl_ok(&["neigh", "add", "br0", &b.ip, &b.mac()]);
    rvsd.restart();
    let list = json::neigh_entries(&rvsd.ctl_json(&["neigh", "show"]));
    assert!(list.iter().any(|e| e.ip == b.ip && e.source == "static"), "{list:?}");
    let dump = arp_requests(&b, &a.ip);
    assert!(ping_settled(&a.ns, &b.ip, 1), "A cannot reach B");
    assert_eq!(dump.finish(QUIET), Vec::<String>::new(), "B saw an ARP request");
}
