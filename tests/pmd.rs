//! Polling threads and flow caches as a user drives them, with real
//! traffic through two polling threads (`rvsd --cores 0,1`): `pmd show`,
//! `pmd assign`, `flows show` and `flows flush`.
//!
//! Ports are veths; the two-queue ones are made with 2 rx and 2 tx queues
//! on both ends (the most veth allows here), so each of their queues gets
//! an AF_XDP socket of its own.

mod common;

use common::json::{self, PmdThread};
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

/// The cores given to rvsd: two polling threads.
const CORES: &str = "0,1";

/// `pmd show` as JSON (parsed) and as the text a user reads (for failure
/// messages; two calls, so counters may differ between them).
fn pmd(rvsd: &Rvsd) -> (Vec<PmdThread>, String) {
    (json::pmd_threads(&rvsd.ctl_json(&["pmd", "show"])), rvsd.ctl_ok(&["pmd", "show"]))
}

/// Every (port, queue) in `pmd show` and the cores of the threads that
/// list it (more than one core would be a bug).
fn owners(threads: &[PmdThread]) -> BTreeMap<(String, u32), Vec<u64>> {
    let mut m: BTreeMap<(String, u32), Vec<u64>> = BTreeMap::new();
    for (q, core) in json::pmd_queues(threads) {
        m.entry(q).or_default().push(core);
    }
    m
}

/// The one core polling `queue` of `port`; panics (with the table) if the
/// queue is missing or listed twice.
fn core_of(threads: &[PmdThread], text: &str, port: &str, queue: u32) -> u64 {
    match owners(threads).get(&(port.to_string(), queue)).map(Vec::as_slice) {
        Some(&[core]) => core,
        other => panic!("expected {port}/{queue} polled by exactly one thread, saw it on cores {other:?}:\n{text}"),
    }
}

/// A bridge `br0` on an rvsd with two polling threads, with `hosts` on it.
fn switch_with(hosts: &[&Host]) -> Rvsd {
    let rvsd = Rvsd::start_on(CORES);
    rvsd.bridge_with("br0", hosts);
    rvsd
}

/// True for a broadcast or multicast MAC (`aa:bb:...`, lower case).
fn is_group(mac: &str) -> bool {
    u8::from_str_radix(mac.get(..2).unwrap_or("00"), 16).is_ok_and(|b| b & 1 == 1)
}

/// Entries with source `src` and destination `dst`.
fn flows_between<'a>(flows: &'a [json::Flow], src: &str, dst: &str) -> Vec<&'a json::Flow> {
    flows.iter().filter(|f| f.src == src && f.dst == dst).collect()
}

/// Permanent neighbour entries for each other in `a` and `b`: the hosts
/// never ARP for each other, so when the test's own traffic stops no
/// frame between them is left to refill the flow cache.
fn static_neighbours(a: &Host, b: &Host) {
    for (x, y) in [(a, b), (b, a)] {
        x.ns.ip(&["neigh", "replace", &y.ip, "lladdr", &y.mac(), "dev", &x.dev, "nud", "permanent"]);
    }
}

#[test]
fn queues_of_two_queue_ports_spread_over_both_threads() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth_queues("198.18.30.1/24", 2);
    let b = Host::on_veth_queues("198.18.30.2/24", 2);
    let rvsd = switch_with(&[&a, &b]);

    let (threads, text) = pmd(&rvsd);
    let mut cores: Vec<u64> = threads.iter().map(|t| t.core).collect();
    cores.sort();
    assert_eq!(cores, [0, 1], "expected one polling thread on each of cores 0 and 1, saw cores {cores:?}:\n{text}");

    let want: BTreeSet<(String, u32)> =
        [&a, &b].iter().flat_map(|h| (0..2).map(|q| (h.port().to_string(), q))).collect();
    let owners = owners(&threads);
    for (port, q) in &want {
        core_of(&threads, &text, port, *q);
    }
    let extra: Vec<_> = owners.keys().filter(|q| !want.contains(*q)).collect();
    assert!(extra.is_empty(), "expected only the queues {want:?} in pmd show, saw also {extra:?}:\n{text}");
    for t in &threads {
        assert!(
            !t.rx_queues.is_empty(),
            "expected every thread to own a queue, the one on core {} owns none:\n{text}",
            t.core
        );
    }
}

#[test]
fn traffic_shows_in_thread_counters() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth_queues("198.18.31.1/24", 2);
    let b = Host::on_veth_queues("198.18.31.2/24", 2);
    let rvsd = switch_with(&[&a, &b]);

    assert!(ping_settled(&a.ns, &b.ip, 5), "ping {} -> {}:\n{}", a.ip, b.ip, pmd(&rvsd).1);
    // Four TCP streams, so the hosts' transmit hashing spreads them over
    // both queues of each port.
    let server = Iperf3Server::start(&b.ns, &b.ip);
    let o = a.ns.run(&["iperf3", "-c", &b.ip, "-t", "2", "-P", "4", "-J"]);
    drop(server);
    let out = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("iperf3 output not JSON ({e}): {out}"));
    assert!(v["error"].is_null(), "iperf3 -P 4 {} -> {} failed: {}", a.ip, b.ip, v["error"]);
    let received = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(received > 0, "expected iperf3 to move bytes, saw {received}: {out}");

    let (threads, text) = pmd(&rvsd);
    let packets: u64 = threads.iter().map(|t| t.packets).sum();
    assert!(packets > 0, "expected packets > 0 after ping and iperf3, saw {packets}:\n{text}");
    for t in threads.iter().filter(|t| t.packets > 0) {
        assert!(
            t.busy_cycles > 0,
            "expected busy cycles > 0 on core {} ({} packets), saw 0:\n{text}",
            t.core,
            t.packets
        );
    }
    let hits: u64 = threads.iter().map(|t| t.cache_hits).sum();
    assert!(hits > 0, "expected flow cache hits > 0 after repeated flows, saw {hits}:\n{text}");

    println!("{text}");
    for word in ["CORE", "RX-QUEUES", "PACKETS", "CYCLES/PKT", "BUSY %", "CACHE HIT %"] {
        assert!(text.contains(word), "expected column {word:?} in pmd show:\n{text}");
    }
    for h in [&a, &b] {
        for q in 0..2 {
            let name = format!("{}/{q}", h.port());
            assert!(text.contains(&name), "expected queue {name} in pmd show:\n{text}");
        }
    }
    let rows: Vec<&str> = text.lines().skip(1).collect();
    for core in ["0", "1"] {
        assert!(
            rows.iter().any(|l| l.split_whitespace().next() == Some(core)),
            "expected a row for core {core} in pmd show:\n{text}"
        );
    }
}

#[test]
fn flows_show_and_flush() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth_queues("198.18.33.1/24", 2);
    let b = Host::on_veth_queues("198.18.33.2/24", 2);
    static_neighbours(&a, &b);
    let rvsd = switch_with(&[&a, &b]);
    let (amac, bmac) = (a.mac(), b.mac());

    assert!(ping_settled(&a.ns, &b.ip, 5), "ping {} -> {}", a.ip, b.ip);
    // ping has exited: no more frames between the two.
    let flows = json::flows(&rvsd.ctl_json(&["flows", "show"]));
    let text = rvsd.ctl_ok(&["flows", "show"]);
    println!("{text}");
    for (x, y, xmac, ymac) in [(&a, &b, &amac, &bmac), (&b, &a, &bmac, &amac)] {
        let want = format!("output:{}", y.port());
        let pair = flows_between(&flows, xmac, ymac);
        assert!(
            pair.iter().any(|f| f.in_port == x.port() && f.action == want && f.hits > 0),
            "expected a flow {xmac} -> {ymac} in on {} with action {want} and hits > 0, saw {pair:?}:\n{text}",
            x.port()
        );
        // A cached decision is never stale: every valid entry for the pair
        // sends to the port the destination is on.
        let wrong: Vec<_> = pair.iter().filter(|f| f.action != want || f.in_port != x.port()).collect();
        assert!(wrong.is_empty(), "expected every flow {xmac} -> {ymac} to be {want}, saw {wrong:?}:\n{text}");
    }
    for word in ["IN-PORT", "SRC", "DST", "ACTION", "HITS", &amac, &bmac] {
        assert!(text.contains(word), "expected {word:?} in flows show:\n{text}");
    }

    rvsd.ctl_ok(&["flows", "flush"]);
    let after = json::flows(&rvsd.ctl_json(&["flows", "show"]));
    let text = rvsd.ctl_ok(&["flows", "show"]);
    for (xmac, ymac) in [(&amac, &bmac), (&bmac, &amac)] {
        let left = flows_between(&after, xmac, ymac);
        assert!(left.is_empty(), "expected no flow {xmac} -> {ymac} after flows flush, saw {left:?}:\n{text}");
    }
    // What background traffic (IPv6 neighbour and router discovery, MLD)
    // may add again is multicast; nothing unicast is left.
    let unicast: Vec<_> = after.iter().filter(|f| !is_group(&f.dst)).collect();
    assert!(unicast.is_empty(), "expected only multicast flows after flows flush, saw {unicast:?}:\n{text}");
    assert!(
        after.len() < flows.len(),
        "expected fewer flows after flows flush than the {} before, saw {}:\n{text}",
        flows.len(),
        after.len()
    );

    // The cache fills again from traffic.
    assert!(ping(&a.ns, &b.ip, 3), "ping {} -> {} after flows flush", a.ip, b.ip);
    let again = json::flows(&rvsd.ctl_json(&["flows", "show"]));
    let want = format!("output:{}", b.port());
    assert!(
        flows_between(&again, &amac, &bmac).iter().any(|f| f.action == want && f.hits > 0),
        "expected the flow {amac} -> {bmac} cached again after more pings, saw {again:?}"
    );
}

#[test]
fn pmd_assign_moves_a_queue_live() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.32.1/24");
    let b = Host::on_veth("198.18.32.2/24");
    let c = Host::on_veth_queues("198.18.32.3/24", 2);
    let rvsd = switch_with(&[&a, &b, &c]);
    for (x, y) in [(&a, &b), (&c, &a), (&c, &b)] {
        assert!(ping_settled(&x.ns, &y.ip, 2), "ping {} -> {}:\n{}", x.ip, y.ip, pmd(&rvsd).1);
    }

    let (threads, text) = pmd(&rvsd);
    let start = owners(&threads);
    let c0 = core_of(&threads, &text, c.port(), 0);
    let c1 = core_of(&threads, &text, c.port(), 1);
    // End with queue 1 on the other thread than queue 0, so that traffic
    // seen there later can only have come through queue 1.
    let last = 1 - c0;
    let moves = if c1 == last { 8 } else { 9 };
    let targets: Vec<u64> = (0..moves).map(|i| if (moves - 1 - i) % 2 == 0 { last } else { 1 - last }).collect();

    let pinger = ChildGuard(
        a.ns.cmd(&["ping", "-n", "-q", "-i", "0.01", "-c", "400", &b.ip])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ping"),
    );
    for &core in &targets {
        std::thread::sleep(Duration::from_millis(300));
        rvsd.ctl_ok(&["pmd", "assign", c.port(), "1", &core.to_string()]);
        let (threads, text) = pmd(&rvsd);
        let now = core_of(&threads, &text, c.port(), 1);
        assert_eq!(now, core, "expected {}/1 on core {core} right after pmd assign, saw core {now}:\n{text}", c.port());
    }
    let (out, exited) = pinger.finish(Duration::from_secs(30));
    let (threads, text) = pmd(&rvsd);
    assert!(exited, "ping -i 0.01 -c 400 {} -> {} did not finish in 30 s:\n{out}", a.ip, b.ip);
    let (sent, got) = ping_summary(&out);
    assert!(
        sent == 400 && got == 400,
        "expected all 400 pings {} -> {} answered while {}/1 moved between cores {targets:?}, \
         saw {got} of {sent}:\n{out}\n{text}",
        a.ip,
        b.ip,
        c.port()
    );

    // Queue 1 is where it was last put; every other queue where it was.
    let mut want = start.clone();
    want.insert((c.port().to_string(), 1), vec![last]);
    assert_eq!(owners(&threads), want, "expected only {}/1 moved, to core {last}:\n{text}", c.port());

    // C still reaches both, and its queue 1 receives on its new thread:
    // transmit packet steering sends what C's CPU 1 sends on its tx queue
    // 1, which arrives on the port's rx queue 1.
    for (q, cpu_mask) in [(0, "1"), (1, "2")] {
        let path = format!("/sys/class/net/{}/queues/tx-{q}/xps_cpus", c.dev);
        c.ns.ok(&["sh", "-c", &format!("echo {cpu_mask} > {path}")]);
    }
    for y in [&a, &b] {
        assert!(ping(&c.ns, &y.ip, 3), "ping {} -> {} after the moves:\n{text}", c.ip, y.ip);
    }
    rvsd.ctl_ok(&["flows", "flush"]);
    let o = c.ns.run(&["taskset", "-c", "1", "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", &a.ip]);
    assert!(o.status.success(), "ping {} -> {} from CPU 1: {}", c.ip, a.ip, String::from_utf8_lossy(&o.stdout));
    let flows = json::flows(&rvsd.ctl_json(&["flows", "show"]));
    let from_c = flows_between(&flows, &c.mac(), &a.mac());
    assert!(
        from_c.iter().any(|f| f.core == last && f.in_port == c.port() && f.hits > 0),
        "expected the flow {} -> {} (sent on C's tx queue 1) cached on core {last}, which polls {}/1, saw {from_c:?}:\n{}",
        c.ip,
        a.ip,
        c.port(),
        pmd(&rvsd).1
    );

    // Refused: a core without a polling thread, a queue the port does not
    // have, an unknown port. Each is one line, a non-zero exit, no change.
    let db = std::fs::read_to_string(&rvsd.db).expect("read db");
    let (before, _) = pmd(&rvsd);
    for (args, names) in [
        ([c.port(), "1", "7"], "7"),
        ([c.port(), "2", "0"], "2"),
        ([a.port(), "1", "1"], "1"),
        (["rvnosuch0", "0", "0"], "rvnosuch0"),
    ] {
        let mut v = vec!["pmd", "assign"];
        v.extend_from_slice(&args);
        let err = one_line_error(&format!("rvsctl {}", v.join(" ")), &rvsd.ctl(&v));
        assert!(err.contains(names), "expected the error of rvsctl {} to name {names:?}, saw: {err}", v.join(" "));
        let (threads, text) = pmd(&rvsd);
        assert_eq!(owners(&threads), owners(&before), "rvsctl {} ({err}) changed the queues:\n{text}", v.join(" "));
        assert_eq!(
            std::fs::read_to_string(&rvsd.db).expect("read db"),
            db,
            "rvsctl {} ({err}) changed the db",
            v.join(" ")
        );
    }
}

/// Sends `flows` UDP flows (source ports 40000.., destination port 7000)
/// from `from` to `to`'s address and the MAC `dst`, a few frames at a
/// time so no queue's ring can overflow; returns how many `to` received.
fn udp_flows_arrive(from: &Host, to: &Host, dst: [u8; 6], flows: u16) -> usize {
    let src = parse_mac(&from.mac());
    let frames: Vec<Vec<u8>> = (0..flows)
        .map(|flow| {
            let b = etherparse::PacketBuilder::ethernet2(src, dst)
                .ipv4(parse_ip(&from.ip), parse_ip(&to.ip), 64)
                .udp(40000 + flow, 7000);
            let mut f = Vec::new();
            b.write(&mut f, &[0x5a; 18]).expect("frame");
            f
        })
        .collect();
    let dump = Tcpdump::start(Some(&to.ns), &to.dev, flows.into(), &["udp", "and", "dst", "port", "7000"]);
    for burst in frames.chunks(8) {
        send_raw(&from.ns, &from.dev, burst);
        std::thread::sleep(Duration::from_millis(2));
    }
    dump.finish(Duration::from_secs(5)).len()
}

/// Frames that ran the XDP program on each of the first `queues` receive
/// queues of `host`'s switch port, from the veth's own per-queue counters.
fn xdp_packets_per_queue(host: &Host, queues: u16) -> Vec<u64> {
    let out = run_ok(&["ethtool", "-S", host.port()]);
    (0..queues)
        .map(|q| {
            let key = format!("rx_queue_{q}_xdp_packets:");
            out.lines().find_map(|l| l.trim().strip_prefix(&key)?.trim().parse().ok()).unwrap_or(0)
        })
        .collect()
}

/// Issue 14: each AF_XDP socket kept 2,048 receive buffers of its thread's
/// 16,384, so a thread with more than 8 sockets left the later ones none
/// and their frames were dropped by the kernel. One thread carries two
/// 12-queue ports (24 sockets) here; 240 UDP flows each way spread over
/// every queue (the hosts hash flows to transmit queues, and a veth frame
/// sent on queue q arrives on the peer's queue q): every frame arrives. A
/// port that would take a thread past what its pool can feed is refused,
/// saying so.
#[test]
fn a_thread_with_many_queues_feeds_every_one() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    const QUEUES: u16 = 12;
    const FLOWS: u16 = 240;
    let a = Host::on_veth_queues("198.18.34.1/24", QUEUES.into());
    let b = Host::on_veth_queues("198.18.34.2/24", QUEUES.into());
    let rvsd = Rvsd::start_on("0");
    rvsd.bridge_with("br0", &[&a, &b]);
    let (threads, text) = pmd(&rvsd);
    assert_eq!(json::pmd_queues(&threads).len(), 2 * usize::from(QUEUES), "{text}");
    for (from, to) in [(&a, &b), (&b, &a)] {
        let before = xdp_packets_per_queue(from, QUEUES);
        let got = udp_flows_arrive(from, to, parse_mac(&to.mac()), FLOWS);
        let per_queue: Vec<u64> = xdp_packets_per_queue(from, QUEUES).iter().zip(&before).map(|(n, b)| n - b).collect();
        println!("{} -> {}: {got} of {FLOWS} frames arrived; per receive queue {per_queue:?}", from.ip, to.ip);
        assert!(
            per_queue.iter().all(|&n| n > 0),
            "the flows did not reach every queue of {}: {per_queue:?}",
            from.port()
        );
        assert_eq!(
            got,
            usize::from(FLOWS),
            "{} -> {}: frames lost (per queue {per_queue:?})\n{}\n{}\n{}",
            from.ip,
            to.ip,
            rvsd.ctl_ok(&["stats"]),
            pmd(&rvsd).1,
            rvsd.ctl_ok(&["--json", "pmd", "show"])
        );
    }
    // 24 sockets on the thread; 48 more would pass the 64 its pool feeds.
    let c = Host::on_veth_queues("198.18.34.3/24", 48);
    let o = rvsd.ctl(&["port", "add", "br0", c.port(), "--type", "afxdp", "--fast-path", "off"]);
    let e = one_line_error("a port past the thread's buffers", &o);
    assert!(e.contains("would carry 72 receive queues") && e.contains("at most 64"), "{e}");
    assert!(!rvsd.ctl_ok(&["show"]).contains(c.port()), "the refused port was added anyway");
    assert!(xdp_attached(&[c.port()]).is_empty(), "the refused port left its XDP program behind");
}

/// Issue 14 (found while sizing receive buffers): `pmd assign` reopened a
/// moved queue as a plain socket on the port's own device, but a port with
/// the `tc` executor (the default) receives its misses on its miss device:
/// the moved queue went deaf. Here both queues of a two-queue `tc` port end
/// up on the other thread, and 240 flows the switch has never seen (each a
/// miss, flooded), spread over both queues, all reach the other host.
#[test]
fn a_moved_queue_of_a_tc_executor_port_still_receives() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    const FLOWS: u16 = 240;
    let a = Host::on_veth_queues("198.18.36.1/24", 2);
    let b = Host::on_veth("198.18.36.2/24");
    let rvsd = Rvsd::start_on(CORES);
    rvsd.add_bridge("br0");
    rvsd.add_host("br0", &a, &["--fast-path", "tc"]);
    rvsd.add_host("br0", &b, &["--fast-path", "tc"]);
    assert!(ping_settled(&a.ns, &b.ip, 3));
    let (threads, text) = pmd(&rvsd);
    for q in 0..2 {
        let other = 1 - core_of(&threads, &text, a.port(), q);
        rvsd.ctl_ok(&["pmd", "assign", a.port(), &q.to_string(), &other.to_string()]);
    }
    // To a MAC nobody has: every frame is a miss, flooded to b.
    let got = udp_flows_arrive(&a, &b, [0x02, 0, 0, 0, 0x36, 0x99], FLOWS);
    assert_eq!(got, usize::from(FLOWS), "flooded frames lost after the move:\n{}", rvsd.ctl_ok(&["stats"]));
}
