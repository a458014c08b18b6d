//! Issue 6, test 7: soak. Mixed traffic (TCP through iperf3, pings to an
//! AF_XDP and a tap host) while the configuration churns: every second an
//! AF_XDP port and a tap port are added or removed, and the FDB is flushed
//! every few seconds. After a warm-up, rvsd's RSS grows by less than 5%,
//! its open fds and threads do not grow, and no XDP program is left on the
//! churned interface. 60 s by default; `RVS_SOAK_SECS=600` for the long run.

mod common;

use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// (RSS in KiB, open fds, threads) of a process.
fn usage(pid: u32) -> (u64, usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("rvsd status");
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("VmRSS");
    let count = |d: &str| std::fs::read_dir(format!("/proc/{pid}/{d}")).map(|r| r.count()).unwrap_or(0);
    (rss, count("fd"), count("task"))
}

#[test]
fn soak_with_config_churn() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let secs: u64 = std::env::var("RVS_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let warmup = (secs / 4).max(10);
    let a = Host::on_veth("198.18.74.1/24");
    let b = Host::on_veth("198.18.74.2/24");
    let c = Host::on_tap("198.18.74.3/24");
    let d = Host::on_veth("198.18.74.4/24");
    let tap_ns = Netns::new();
    let mut rvsd = Rvsd::start();
    rvsd.bridge_with("br0", &[&a, &b, &c]);
    assert!(ping_settled(&a.ns, &b.ip, 3));
    assert!(ping_settled(&a.ns, &c.ip, 3));
    let pid = rvsd.pid();

    let _server = Iperf3Server::start(&b.ns, &b.ip);
    let _tcp = ChildGuard(
        a.ns.cmd(&["iperf3", "-c", &b.ip, "-t", &(secs + 5).to_string(), "-b", "200M"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 client"),
    );
    let pings: Vec<ChildGuard> = [(&a, &c.ip), (&c, &b.ip)]
        .iter()
        .map(|(h, ip)| {
            ChildGuard(
                h.ns.cmd(&["ping", "-n", "-q", "-i", "0.05", "-w", &(secs + 2).to_string(), ip])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("ping"),
            )
        })
        .collect();

    let tap = format!("rvs{}", tag());
    let start = Instant::now();
    let (mut baseline, mut last, mut churns, mut peak_rss) = (None, (0, 0, 0), 0u64, 0u64);
    let mut present = false;
    while start.elapsed() < Duration::from_secs(secs) {
        let tick = Instant::now();
        if present {
            rvsd.ctl_ok(&["port", "del", "br0", d.port()]);
            rvsd.ctl_ok(&["port", "del", "br0", &tap]);
            let left = xdp_attached(&[d.port()]);
            assert!(left.is_empty(), "XDP left on {} after port del", d.port());
            // Sampled in the same phase each time: churned ports removed.
            last = usage(pid);
            peak_rss = peak_rss.max(last.0);
            if baseline.is_none() && start.elapsed() >= Duration::from_secs(warmup) {
                baseline = Some(last);
            }
        } else {
            rvsd.add_port("br0", d.port(), &["--type", "afxdp"]);
            rvsd.add_port("br0", &tap, &["--type", "tap", "--netns", &tap_ns.name]);
        }
        present = !present;
        churns += 1;
        if churns.is_multiple_of(5) {
            rvsd.ctl_ok(&["fdb", "flush", "br0"]);
        }
        assert!(rvsd.alive(), "rvsd died during the soak:\n{}", rvsd.log_text());
        std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
    }
    if present {
        rvsd.ctl_ok(&["port", "del", "br0", d.port()]);
        rvsd.ctl_ok(&["port", "del", "br0", &tap]);
        last = usage(pid);
    }
    let base = baseline.expect("soak shorter than its warm-up");
    let mut lost = Vec::new();
    for p in pings {
        let (out, _) = p.finish(Duration::from_secs(5));
        let line = out.lines().find(|l| l.contains("packets transmitted")).unwrap_or_default().to_string();
        lost.push(line);
    }
    println!(
        "soak {secs} s, {churns} port changes: RSS {} KiB after warm-up, {} KiB at the end (peak {peak_rss}), \
         fds {} -> {}, threads {} -> {}; pings: {lost:?}",
        base.0, last.0, base.1, last.1, base.2, last.2
    );
    assert!(last.0 * 100 < base.0 * 105, "RSS grew 5% or more: {} -> {} KiB", base.0, last.0);
    assert!(last.1 <= base.1, "open fds grew: {} -> {}", base.1, last.1);
    assert!(last.2 <= base.2, "threads grew: {} -> {}", base.2, last.2);
    assert!(xdp_attached(&[d.port()]).is_empty());
    assert!(ping(&a.ns, &b.ip, 3) && ping(&a.ns, &c.ip, 3), "forwarding after the soak");
    // Every ping of the soak answered: "N packets transmitted, N received".
    for line in &lost {
        let counts: Vec<u64> =
            line.split(',').take(2).filter_map(|f| f.split_whitespace().next()?.parse().ok()).collect();
        assert!(counts.len() == 2 && counts[0] > 0 && counts[0] == counts[1], "pings lost during the soak: {line:?}");
    }
}
