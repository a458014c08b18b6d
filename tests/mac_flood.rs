//! Issue 6, test 3: random source MACs at full rate into a bridge with a
//! limit of 1000 learned MACs. The table never exceeds the limit, hosts
//! learned before keep forwarding without loss, and the refusals are
//! counted (`learn_refused`). `RVS_MACFLOOD_SECS` sets the length (10 s).

mod common;

use common::*;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

#[test]
fn mac_flood_stops_at_the_limit() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let secs: u64 = std::env::var("RVS_MACFLOOD_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let f = Host::on_veth("198.18.71.1/24");
    let a = Host::on_veth("198.18.71.2/24");
    let b = Host::on_veth("198.18.71.3/24");
    let mut rvsd = Rvsd::start();
    rvsd.ctl_ok(&["bridge", "add", "br0", "--max-macs", "1000"]);
    for h in [&f, &a, &b] {
        rvsd.add_host("br0", h, &[]);
    }
    assert!(ping_settled(&a.ns, &b.ip, 3));
    assert!(ping_settled(&f.ns, &a.ip, 1));

    // 20000 distinct locally administered unicast sources, all sent to the
    // flooder's own MAC: each is offered to learning, then dropped as a
    // hairpin, so the flood loads the table and not the other hosts.
    let frames = flood_frames(parse_mac(&f.mac()), 20000, 0xf100d);
    let before = rvsd.ctl_json(&["stats"]);
    let flood = blast_raw(&f.ns, &f.dev, frames, Duration::from_secs(secs));
    // While it runs: the table stays within its limit, a and b keep pinging.
    let pinger = {
        let (ns, ip) = (a.ns.name.clone(), b.ip.clone());
        std::thread::spawn(move || {
            let o = std::process::Command::new("ip")
                .args(["netns", "exec", &ns, "ping", "-n", "-q", "-c", &secs.to_string(), "-i", "1", "-W", "2", &ip])
                .output()
                .expect("ping");
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
    };
    let end = Instant::now() + Duration::from_secs(secs);
    let mut most = 0;
    while Instant::now() < end {
        let n = json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "br0"])).len();
        assert!(n <= 1000, "FDB holds {n} entries, over the limit of 1000");
        most = most.max(n);
        std::thread::sleep(Duration::from_millis(500));
    }
    let (sent, _) = flood.join().expect("flood thread");
    let ping_out = pinger.join().expect("ping thread");
    assert!(rvsd.alive(), "rvsd died in the MAC flood:\n{}", rvsd.log_text());
    let after = rvsd.ctl_json(&["stats"]);
    let fdb = json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "br0"]));
    let (rx0, _, _, _, refused0) = accounting(&before, f.port());
    let (rx1, _, _, _, refused1) = accounting(&after, f.port());
    println!(
        "MAC flood {secs} s: sent {sent} frames, rvs received {}, learn_refused {}, FDB at most {most}, now {}",
        rx1 - rx0,
        refused1 - refused0,
        fdb.len()
    );
    assert!(fdb.len() <= 1000);
    assert!(most >= 990, "the table never filled: at most {most}");
    assert!(refused1 - refused0 > 0, "no learn_refused counted");
    for h in [&a, &b] {
        let mac = h.mac();
        assert!(fdb.iter().any(|e| e.mac == mac), "{mac} forgotten in the flood");
    }
    let line = ping_out.lines().find(|l| l.contains("packets transmitted")).unwrap_or_default().to_string();
    assert!(line.contains(&format!("{secs} received")), "ping lost replies during the flood: {line}");
    assert!(ping(&a.ns, &b.ip, 3));
}

/// Frames to the flooder's own MAC from `n` random sources (each offered
/// to learning, then dropped as a hairpin).
fn flood_frames(own: [u8; 6], n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let mut fr = own.to_vec();
            let mut src = rng.bytes(6);
            src[0] = (src[0] & 0xfe) | 0x02;
            fr.extend_from_slice(&src);
            fr.extend_from_slice(&[0x88, 0xb5]);
            fr.resize(60, 0x77);
            fr
        })
        .collect()
}

/// Issue 14: a port with `--max-macs 100` floods random sources into a
/// bridge that allows 1000. It gets 100, the other ports keep learning
/// (the bridge is not exhausted), and `show` counts it.
#[test]
fn a_port_limit_keeps_one_port_from_taking_the_bridge() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let f = Host::on_veth("198.18.72.1/24");
    let a = Host::on_veth("198.18.72.2/24");
    let b = Host::on_veth("198.18.72.3/24");
    let mut rvsd = Rvsd::start();
    rvsd.ctl_ok(&["bridge", "add", "br0", "--max-macs", "1000"]);
    rvsd.add_host("br0", &f, &["--max-macs", "100"]);
    rvsd.add_host("br0", &a, &[]);
    assert!(ping_settled(&f.ns, &a.ip, 3));

    let frames = flood_frames(parse_mac(&f.mac()), 5000, 0x9017);
    let (sent, _) = blast_raw(&f.ns, &f.dev, frames, Duration::from_secs(3)).join().expect("flood thread");
    assert!(rvsd.alive(), "rvsd died in the MAC flood:\n{}", rvsd.log_text());
    let on = |port: &str| {
        json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "br0"])).iter().filter(|e| e.port == port).count()
    };
    let on_f = on(f.port());
    println!("{sent} frames from 5,000 sources: {on_f} learned on the limited port");
    assert_eq!(on_f, 100, "the limited port holds {on_f} MACs");
    // A port added after the flood still learns: the bridge has room.
    rvsd.add_host("br0", &b, &[]);
    assert!(ping_settled(&a.ns, &b.ip, 3), "a new host cannot be reached after the flood");
    assert_eq!(on(b.port()), 1);
    let show = rvsd.ctl_ok(&["show"]);
    assert!(show.contains("100/100"), "show lacks the port's MAC count and limit:\n{show}");
    let (.., refused) = accounting(&rvsd.ctl_json(&["stats"]), f.port());
    assert!(refused > 0, "no learn_refused counted on the limited port");
    // Removing the port frees its id's limit for the next port.
    rvsd.ctl_ok(&["port", "del", "br0", f.port()]);
    rvsd.add_host("br0", &f, &[]);
    let frames = flood_frames(parse_mac(&f.mac()), 300, 0x9018);
    blast_raw(&f.ns, &f.dev, frames, Duration::from_secs(1)).join().expect("flood thread");
    assert!(on(f.port()) > 100, "the re-added port (no limit) still capped at 100");
}

/// Issue 14: `fdb show` of a big table is paged. 50,000 learned MACs: one
/// request gets one page of at most 4,096 entries (a reply far under a
/// megabyte) and where the next starts, and `rvsctl fdb show` prints every
/// entry once, in (VLAN, MAC) order, as text and as JSON.
#[test]
fn a_big_fdb_is_shown_in_pages() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let f = Host::on_veth("198.18.73.1/24");
    let a = Host::on_veth("198.18.73.2/24");
    let rvsd = Rvsd::start();
    rvsd.ctl_ok(&["bridge", "add", "br0", "--max-macs", "65536"]);
    rvsd.add_host("br0", &f, &[]);
    rvsd.add_host("br0", &a, &[]);
    assert!(ping_settled(&f.ns, &a.ip, 3));
    let frames = flood_frames(parse_mac(&f.mac()), 50_000, 0xfdb);
    blast_raw(&f.ns, &f.dev, frames, Duration::from_secs(3)).join().expect("flood thread");

    // One request, as any client sends it.
    let mut s = std::os::unix::net::UnixStream::connect(&rvsd.socket).expect("connect");
    s.write_all(b"{\"version\":1,\"cmd\":\"fdb_show\",\"bridge\":\"br0\"}\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(&s).read_line(&mut line).unwrap();
    let reply: serde_json::Value = serde_json::from_str(&line).expect("a JSON reply");
    let page = &reply["result"];
    let total = page["total"].as_u64().unwrap_or(0) as usize;
    assert!(total > 40_000, "only {total} MACs learned");
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(4096), "one page");
    assert!(page["next"]["mac"].is_string(), "no cursor to the next page: {}", page["next"]);
    assert!(line.len() < 1 << 20, "a page of {} bytes", line.len());

    let all = json::fdb_entries(&rvsd.ctl_json(&["fdb", "show", "br0"]));
    let keys: Vec<(u16, String)> = all.iter().map(|e| (e.vlan, e.mac.clone())).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted, "entries out of order or repeated");
    // Learning goes on between pages: the count may have moved a little.
    assert!(all.len() + 100 >= total && all.len() <= 65536, "{} entries listed of {total}", all.len());
    let text = rvsctl(&rvsd.socket, &["fdb", "show", "br0"]);
    let lines = String::from_utf8_lossy(&text.stdout).lines().count();
    assert!(lines > 40_000 && lines.abs_diff(all.len() + 1) < 100, "{lines} lines for {} entries", all.len());
    println!("{total} MACs: {} bytes in the first page, {} listed, {lines} lines of text", line.len(), all.len());
}
