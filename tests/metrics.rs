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

/// The metric names an expression (PromQL) uses: identifiers starting
/// with `rvs_` or `process_`.
fn names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let starts = (b[i].is_ascii_alphabetic() || b[i] == b'_')
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
        if starts {
            let j = (i..b.len()).find(|&j| !(b[j].is_ascii_alphanumeric() || b[j] == b'_')).unwrap_or(b.len());
            let w = &expr[i..j];
            if w.starts_with("rvs_") || w.starts_with("process_") {
                out.push(w.to_string());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// Issue 16: a real scrape with traffic flowing (a capture and the
/// cluster agent included) passes `promtool check metrics`; the alert
/// rules pass `promtool check rules`; the rules and the Grafana dashboard
/// name only families rvsd exports.
#[test]
fn scrape_lints_clean_and_packaging_names_exported_families() {
    if !require_root() || !rvs_dataplane::testing::require_root("promtool", &["promtool"]) {
        return;
    }
    let _serial = serial();
    let h1 = Host::on_veth("198.18.63.11/24");
    let h2 = Host::on_veth("198.18.63.12/24");
    let addr = format!("127.0.0.1:{}", free_port());
    // etcd that is not there: the agent runs (and its families exist).
    let rvsd = Rvsd::start_with(&["--metrics", &addr, "--etcd", "http://127.0.0.1:9", "--node", "m1"]);
    rvsd.add_bridge("brm");
    rvsd.add_host("brm", &h1, &[]);
    rvsd.add_host("brm", &h2, &[]);
    assert!(ping_settled(&h1.ns, &h2.ip, 1));
    let cap = rvsd.dir.join("m.pcapng");
    let mut capture = ChildGuard(
        std::process::Command::new(rvsctl_bin())
            .arg("--socket")
            .arg(&rvsd.socket)
            .args(["capture", h1.port(), "-c", "2", "-w", cap.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(ping(&h1.ns, &h2.ip, 3));
    assert!(capture.0.wait().unwrap().success());

    let r = http(&addr, b"GET /metrics HTTP/1.1\r\nHost: rvs\r\n\r\n");
    let body = r.split_once("\r\n\r\n").expect("HTTP head").1.to_string();
    let mut lint = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let o = lint.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n--- scrape ---\n{body}");

    let families: std::collections::BTreeSet<String> =
        body.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next().map(str::to_string)).collect();
    for want in ["rvs_pmd_busy_seconds_total", "rvs_cluster_connected", "rvs_capture_dropped_total", "process_open_fds"]
    {
        assert!(families.contains(want), "{want} not exported: {families:?}");
    }
    assert!(!body.contains("nanoseconds"), "non-base unit exported");

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let rules = root.join("prometheus/rvs-alerts.yml");
    let o = run(&["promtool", "check", "rules", rules.to_str().unwrap()]);
    assert!(o.status.success(), "promtool check rules: {}", String::from_utf8_lossy(&o.stderr));
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("grafana/rvs-dashboard.json")).unwrap()).unwrap();
    let mut exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()))
        .collect();
    exprs.extend(
        dash["templating"]["list"].as_array().unwrap().iter().filter_map(|v| v["query"].as_str().map(String::from)),
    );
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut used: Vec<String> = exprs.iter().flat_map(|e| names_in(e)).collect();
    used.extend(
        rules_text
            .lines()
            .filter(|l| l.trim_start().starts_with("expr:") || l.starts_with("          "))
            .flat_map(names_in),
    );
    used.sort();
    used.dedup();
    assert!(used.len() >= 10, "{used:?}");
    for name in &used {
        assert!(families.contains(name), "the dashboard or the rules use {name}, which rvsd does not export");
    }
}
