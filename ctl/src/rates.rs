//! `rvsctl stats --interval SECS`: asks rvsd for the counters every SECS
//! seconds and prints what changed as per-second rates, one table (or one
//! JSON object per line with `--json`) per interval, until interrupted.

use rvs_proto::client;
use rvs_proto::status::PortStatsInfo;
use rvs_proto::{Command, Request};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::output::table;

/// One port's rates over an interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortRates {
    /// Port name.
    pub name: String,
    /// Bridge name.
    pub bridge: String,
    /// Frames received per second.
    pub rx_pps: f64,
    /// Bits received per second.
    pub rx_bps: f64,
    /// Frames sent per second.
    pub tx_pps: f64,
    /// Bits sent per second.
    pub tx_bps: f64,
    /// Drops per second by reason (reasons that moved).
    pub drops_per_sec: BTreeMap<String, f64>,
}

/// The rates from `before` to `now`, `secs` apart, for the ports in both
/// (a port added meanwhile starts next interval; counters that went back,
/// a port removed and added again, count as zero).
pub fn rates(before: &[PortStatsInfo], now: &[PortStatsInfo], secs: f64) -> Vec<PortRates> {
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    now.iter()
        .filter_map(|p| {
            let b = before.iter().find(|b| b.name == p.name && b.bridge == p.bridge)?;
            let drops = p
                .drops
                .iter()
                .map(|(r, &n)| (r.clone(), per(b.drops.get(r).copied().unwrap_or(0), n)))
                .filter(|(_, r)| *r > 0.0)
                .collect();
            Some(PortRates {
                name: p.name.clone(),
                bridge: p.bridge.clone(),
                rx_pps: per(b.rx_packets, p.rx_packets) + per(b.kernel.rx_packets, p.kernel.rx_packets),
                rx_bps: 8.0 * (per(b.rx_bytes, p.rx_bytes) + per(b.kernel.rx_bytes, p.kernel.rx_bytes)),
                tx_pps: per(b.tx_packets, p.tx_packets) + per(b.kernel.tx_packets, p.kernel.tx_packets),
                tx_bps: 8.0 * (per(b.tx_bytes, p.tx_bytes) + per(b.kernel.tx_bytes, p.kernel.tx_bytes)),
                drops_per_sec: drops,
            })
        })
        .collect()
}

/// The rates as a table.
pub fn render(r: &[PortRates]) -> String {
    let rows: Vec<Vec<String>> = r
        .iter()
        .map(|p| {
            let drops: Vec<String> = p.drops_per_sec.iter().map(|(k, v)| format!("{k}={}", num(*v))).collect();
            vec![
                p.name.clone(),
                p.bridge.clone(),
                num(p.rx_pps),
                mbit(p.rx_bps),
                num(p.tx_pps),
                mbit(p.tx_bps),
                if drops.is_empty() { "-".into() } else { drops.join(" ") },
            ]
        })
        .collect();
    table("", &["PORT", "BRIDGE", "RX PKT/S", "RX MBIT/S", "TX PKT/S", "TX MBIT/S", "DROPS/S"], &rows)
}

fn num(v: f64) -> String {
    format!("{v:.0}")
}

fn mbit(bps: f64) -> String {
    format!("{:.1}", bps / 1e6)
}

/// Prints rates every `interval` until SIGINT/SIGTERM (then exits 0).
pub fn run(socket: &Path, port: Option<String>, interval: Duration, json: bool) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("installing a signal handler: {e}"))?;
    }
    let read = || -> Result<Vec<PortStatsInfo>, String> {
        let v = client::request(socket, &Request::new(Command::Stats { port: port.clone() }))?
            .into_outcome()
            .map_err(|r| r.to_string())?;
        serde_json::from_value(v).map_err(|e| format!("rvsd sent counters that are not understood: {e}"))
    };
    let mut before = read()?;
    let mut at = Instant::now();
    let mut out = std::io::stdout().lock();
    loop {
        // Sleep in short steps, to stop soon after Ctrl-C.
        let until = at + interval;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
        }
        let now = read()?;
        let secs = at.elapsed().as_secs_f64();
        at = Instant::now();
        let r = rates(&before, &now, secs);
        let text = if json {
            let line = serde_json::json!({ "interval_secs": secs, "ports": r });
            format!("{line}\n")
        } else {
            format!("{}\n", render(&r))
        };
        // A closed pipe (`rvsctl stats --interval 1 | head`) ends it.
        if out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_err() {
            return Ok(());
        }
        before = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(name: &str, rx: u64, rx_bytes: u64, drops: &[(&str, u64)]) -> PortStatsInfo {
        let mut v: PortStatsInfo = serde_json::from_value(serde_json::json!({
            "name": name, "bridge": "br0", "rx_packets": rx, "rx_bytes": rx_bytes,
            "tx_packets": rx / 2, "tx_bytes": rx_bytes / 2, "drops": {}
        }))
        .unwrap();
        v.drops = drops.iter().map(|(r, n)| (r.to_string(), *n)).collect();
        v
    }

    #[test]
    fn rates_are_deltas_over_the_interval() {
        let before = [stats("p1", 100, 10_000, &[("runt", 1)]), stats("gone", 5, 5, &[])];
        let now = [stats("p1", 300, 30_000, &[("runt", 5), ("bad_vlan", 2)]), stats("new", 9, 9, &[])];
        let r = rates(&before, &now, 2.0);
        assert_eq!(r.len(), 1, "only ports in both: {r:?}");
        let p = &r[0];
        assert_eq!((p.rx_pps, p.rx_bps, p.tx_pps, p.tx_bps), (100.0, 80_000.0, 50.0, 40_000.0));
        assert_eq!(p.drops_per_sec, [("bad_vlan".to_string(), 1.0), ("runt".to_string(), 2.0)].into());
        // A counter that went back (the port was re-added) is no negative rate.
        let r = rates(&now, &before, 1.0);
        assert_eq!(r[0].rx_pps, 0.0);
        let text = render(&rates(&before, &now, 2.0));
        assert!(text.starts_with("PORT  BRIDGE  RX PKT/S"), "{text}");
        assert!(text.contains("bad_vlan=1 runt=2"), "{text}");
    }
}
