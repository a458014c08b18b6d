//! Human output: aligned plain-text tables.

use rvs_switch::config::{PortConfig, PortVlan};
use rvs_switch::datapath::{FdbEntryInfo, PortStatsInfo, ThreadInfo};
use rvs_switch::proto::{BridgeSummary, FlushResult, PingResult, ShowResult};
use rvs_switch::state::kind_name;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt::Write;

use crate::cli::View;

/// Renders a result for people; an empty string prints nothing.
pub fn render(view: View, result: Value) -> Result<String, String> {
    Ok(match view {
        View::Quiet => String::new(),
        View::BridgeList => bridge_list(&decode::<Vec<_>>(result)?),
        View::Show => show(&decode(result)?),
        View::Fdb => fdb(&decode::<Vec<_>>(result)?),
        View::Flush => {
            let f: FlushResult = decode(result)?;
            format!("flushed {} learned entries\n", f.flushed)
        }
        View::Stats => stats(&decode::<Vec<_>>(result)?),
        View::Pmd => pmd(&decode::<Vec<_>>(result)?),
        View::Ping => {
            let p: PingResult = decode(result)?;
            format!("rvsd {} is running\n", p.daemon_version)
        }
    })
}

fn decode<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("cannot understand rvsd's answer: {e}"))
}

/// Left-aligned columns two spaces apart; the last column is not padded.
pub fn table(indent: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for r in std::iter::once(&head).chain(rows) {
        let mut line = String::from(indent);
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let pad = widths[i].saturating_sub(c.chars().count()) + 2;
                line.push_str(c);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `10,11,12,20` as `10-12,20`.
pub fn vlan_ranges(vlans: &[u16]) -> String {
    let mut v = vlans.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { v[i].to_string() } else { format!("{}-{}", v[i], v[j]) });
        i = j + 1;
    }
    parts.join(",")
}

fn vlan_mode(p: &PortConfig) -> String {
    match &p.vlan {
        PortVlan::Access { vlan } => format!("access {vlan}"),
        PortVlan::Trunk { vlans, native } => {
            let mut s = format!("trunk {}", vlan_ranges(vlans));
            if let Some(n) = native {
                let _ = write!(s, " native {n}");
            }
            s
        }
    }
}

fn bridge_list(list: &[BridgeSummary]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| vec![b.name.clone(), format!("{} s", b.aging_secs), b.max_macs.to_string(), b.ports.to_string()])
        .collect();
    table("", &["BRIDGE", "AGING", "MAX-MACS", "PORTS"], &rows)
}

fn show(s: &ShowResult) -> String {
    let mut out = String::new();
    if s.bridges.is_empty() {
        out.push_str("no bridges\n");
    }
    for b in &s.bridges {
        let _ = writeln!(out, "bridge {}: aging {} s, at most {} learned MACs", b.name, b.aging_secs, b.max_macs);
        if b.ports.is_empty() {
            out.push_str("  no ports\n");
        } else {
            let rows: Vec<Vec<String>> = b
                .ports
                .iter()
                .map(|p| {
                    let queues: Vec<String> = p.status.queues.iter().map(|(q, core)| format!("{q}→{core}")).collect();
                    vec![
                        p.config.name.clone(),
                        kind_name(p.config.kind).to_string(),
                        vlan_mode(&p.config),
                        p.status.state.clone(),
                        if p.status.xdp_mode.is_empty() { "-".to_string() } else { p.status.xdp_mode.clone() },
                        if queues.is_empty() { "-".to_string() } else { queues.join(" ") },
                    ]
                })
                .collect();
            out.push_str(&table("  ", &["PORT", "TYPE", "VLAN", "STATE", "XDP", "QUEUE→CORE"], &rows));
        }
        if !b.static_macs.is_empty() {
            let macs: Vec<String> =
                b.static_macs.iter().map(|m| format!("{} vlan {} → {}", m.mac, m.vlan, m.port)).collect();
            let _ = writeln!(out, "  static MACs: {}", macs.join(", "));
        }
    }
    out.push_str("threads:\n");
    if s.threads.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&pmd_table("  ", &s.threads));
    }
    out
}

fn fdb(entries: &[FdbEntryInfo]) -> String {
    let mut e = entries.to_vec();
    e.sort_by(|a, b| (a.vlan, &a.mac).cmp(&(b.vlan, &b.mac)));
    let rows: Vec<Vec<String>> = e
        .iter()
        .map(|e| {
            vec![
                e.vlan.to_string(),
                e.mac.clone(),
                e.port.clone(),
                if e.is_static { "static".to_string() } else { e.age_secs.to_string() },
            ]
        })
        .collect();
    table("", &["VLAN", "MAC", "PORT", "AGE"], &rows)
}

fn stats(ports: &[PortStatsInfo]) -> String {
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            let mut drops: Vec<String> = p.drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
            if p.learn_refused > 0 {
                drops.push(format!("(not learned: {})", p.learn_refused));
            }
            vec![
                p.name.clone(),
                p.bridge.clone(),
                p.rx_packets.to_string(),
                p.rx_bytes.to_string(),
                p.tx_packets.to_string(),
                p.tx_bytes.to_string(),
                if drops.is_empty() { "-".to_string() } else { drops.join(" ") },
            ]
        })
        .collect();
    table("", &["PORT", "BRIDGE", "RX-PKTS", "RX-BYTES", "TX-PKTS", "TX-BYTES", "DROPS"], &rows)
}

/// busy_ns / (busy_ns + idle_ns) as a percentage, "-" before any round.
pub fn busy_pct(t: &ThreadInfo) -> String {
    let total = t.busy_ns as f64 + t.idle_ns as f64;
    if total == 0.0 {
        "-".to_string()
    } else {
        format!("{:.1}%", 100.0 * t.busy_ns as f64 / total)
    }
}

fn pmd_table(indent: &str, threads: &[ThreadInfo]) -> String {
    let rows: Vec<Vec<String>> = threads
        .iter()
        .map(|t| {
            let q: Vec<String> = t.rx_queues.iter().map(|(p, q)| format!("{p}/{q}")).collect();
            vec![
                t.core.to_string(),
                t.packets.to_string(),
                busy_pct(t),
                if q.is_empty() { "-".to_string() } else { q.join(" ") },
            ]
        })
        .collect();
    table(indent, &["CORE", "PACKETS", "BUSY", "RX-QUEUES"], &rows)
}

fn pmd(threads: &[ThreadInfo]) -> String {
    if threads.is_empty() {
        return "no polling threads\n".to_string();
    }
    pmd_table("", threads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            "",
            &["VLAN", "MAC", "PORT", "AGE"],
            &[vec!["1".into(), "02:00:00:00:00:01".into(), "veth-a".into(), "static".into()]],
        );
        assert_eq!(t, "VLAN  MAC                PORT    AGE\n1     02:00:00:00:00:01  veth-a  static\n");
    }

    #[test]
    fn ranges_and_busy() {
        assert_eq!(vlan_ranges(&[20, 10, 11, 12, 30]), "10-12,20,30");
        let t = ThreadInfo { core: 1, rx_queues: vec![], packets: 0, busy_ns: 1, idle_ns: 3 };
        assert_eq!(busy_pct(&t), "25.0%");
    }
}
