//! Issue 5: `rvsd --metrics ADDR:PORT` serves Prometheus text over HTTP;
//! the counters move with traffic, and garbage or silent HTTP clients do
//! not stop it (or the control socket). Addresses: 198.18.63.0/24.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (bound and released; rvsd takes it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sends `request` and reads the whole answer (the server closes).
fn http(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the answer");
    out
}

/// `GET /metrics`, parsed: "name{labels}" -> value.
fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let r = http(addr, b"GET /metrics HTTP/1.1\r\nHost: rvs\r\n\r\n");
    let (head, body) = r.split_once("\r\n\r\n").expect("HTTP head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    let mut m = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, v) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        m.insert(series.to_string(), v.parse::<f64>().unwrap_or_else(|_| panic!("bad value: {line}")));
    }
    m
}

#[test]
fn metrics_are_scraped_and_move_with_traffic() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let h1 = Host::on_veth("198.18.63.1/24");
    let h2 = Host::on_veth("198.18.63.2/24");
    let addr = format!("127.0.0.1:{}", free_port());
    let rvsd = Rvsd::start_with(&["--metrics", &addr]);
    rvsd.add_bridge("brm");
    rvsd.add_host("brm", &h1, &[]);
    rvsd.add_host("brm", &h2, &[]);

    // Clients that never finish a request, or send garbage, are held
    // apart from the ones that do.
    let _silent = TcpStream::connect(&addr).unwrap();
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"GET /metr").unwrap();
    let r = http(&addr, b"\x16\x03\x01 not http\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = http(&addr, b"GET /other HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = http(&addr, &[b'a'; 20_000]);
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");

    assert!(ping_settled(&h1.ns, &h2.ip, 1));
    let before = scrape(&addr);
    let rx = |m: &BTreeMap<String, f64>| {
        m.get(&format!("rvs_port_rx_packets_total{{bridge=\"brm\",port=\"{}\"}}", h1.port())).copied()
    };
    let tx = |m: &BTreeMap<String, f64>| {
        m.get(&format!("rvs_port_tx_packets_total{{bridge=\"brm\",port=\"{}\"}}", h2.port())).copied()
    };
    assert!(rx(&before).is_some(), "no rx counter for {}: {before:?}", h1.port());
    assert_eq!(before.get("rvs_fdb_entries{bridge=\"brm\"}"), Some(&2.0), "{before:?}");
    assert!(
        before.contains_key("rvs_pmd_packets_total{core=\"1\"}")
            || before.keys().any(|k| k.starts_with("rvs_pmd_packets_total{"))
    );
    assert!(before.keys().any(|k| k.starts_with("rvs_flow_cache_hits_total{")), "{before:?}");
    assert!(
        before.contains_key(&format!(
            "rvs_port_drops_total{{bridge=\"brm\",port=\"{}\",reason=\"vlan_filtered\"}}",
            h1.port()
        )),
        "{before:?}"
    );

    assert!(ping(&h1.ns, &h2.ip, 5));
    let after = scrape(&addr);
    assert!(rx(&after).unwrap() >= rx(&before).unwrap() + 5.0, "rx did not move: {before:?} -> {after:?}");
    assert!(tx(&after).unwrap() >= tx(&before).unwrap() + 5.0, "tx did not move");
    let total =
        |m: &BTreeMap<String, f64>, p: &str| m.iter().filter(|(k, _)| k.starts_with(p)).map(|(_, v)| v).sum::<f64>();
    assert!(total(&after, "rvs_pmd_packets_total") >= total(&before, "rvs_pmd_packets_total") + 10.0);
    let hits = |m| total(m, "rvs_flow_cache_hits_total") + total(m, "rvs_flow_cache_misses_total");
    assert!(hits(&after) >= hits(&before) + 10.0, "flow cache counters did not move");

    // The control socket was never held up.
    rvsd.ctl_ok(&["ping"]);
    drop(half);
}

#[test]
fn metrics_address_in_use_is_a_clear_error() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = rvsd_refusing(&["--metrics", &addr]);
    let e = one_line_error("rvsd --metrics on a taken port", &o);
    assert!(e.contains(&format!("cannot serve metrics on {addr}")), "{e}");
}
