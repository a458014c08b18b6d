//! Human output: aligned plain-text tables.

use rvs_proto::cluster::ClusterShow;
use rvs_proto::config::{PortConfig, PortVlan};
use rvs_proto::status::{
    FdbEntryInfo, FdbPage, FlowInfo, NeighList, PortStatsInfo, ThreadInfo, TraceOutput, TraceResult,
};
use rvs_proto::{BridgeSummary, FlushResult, PingResult, PortShow, ShowResult, UplinkShow};
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
        View::Fdb => fdb(&decode::<FdbPage>(result)?.entries),
        View::Neigh => neigh(&decode(result)?),
        View::Flush => {
            let f: FlushResult = decode(result)?;
            format!("flushed {} learned entries\n", f.flushed)
        }
        View::Stats => stats(&decode::<Vec<_>>(result)?),
        View::Pmd => pmd(&decode::<Vec<_>>(result)?),
        View::Flows => flows(&decode::<Vec<_>>(result)?),
        View::Ping => {
            let p: PingResult = decode(result)?;
            format!("rvsd {} is running\n", p.daemon_version)
        }
        View::Cluster => cluster(&decode(result)?),
        View::Trace => trace(&decode(result)?),
        View::Uplinks => {
            let list: Vec<UplinkShow> = decode(result)?;
            if list.is_empty() {
                "no uplinks\n".to_string()
            } else {
                uplink_table("", &list)
            }
        }
    })
}

fn cluster(c: &ClusterShow) -> String {
    let Some(cfg) = &c.config else {
        return "not in a cluster (start rvsd with --etcd URL --node NAME)\n".to_string();
    };
    let mut out = format!("node {}: etcd {}, lease TTL {} s\n", cfg.node, cfg.etcd.join(","), cfg.lease_ttl_secs);
    if let Some(st) = &c.status {
        let _ = write!(out, "  state: {} for {} s", st.state, st.since_secs);
        if let Some(e) = &st.error {
            let _ = write!(out, " ({e})");
        }
        let _ = writeln!(out, "; lease {:x}, {} connects", st.lease, st.connects);
        if st.rejected_records > 0 {
            let _ = writeln!(out, "  {} etcd records ignored as implausible (see rvsd's log)", st.rejected_records);
        }
    }
    let rows: Vec<Vec<String>> = c
        .peers
        .iter()
        .map(|p| {
            let vteps: Vec<String> = p.vteps.iter().map(|t| format!("{}@{}", t.vni, t.addr)).collect();
            vec![p.node.clone(), vteps.join(" "), p.macs.to_string()]
        })
        .collect();
    if c.peers_from_db {
        out.push_str("peers as last saved in the db (stale until etcd answers):\n");
    }
    if rows.is_empty() {
        out.push_str("peers: none\n");
    } else {
        out.push_str("peers:\n");
        out.push_str(&table("  ", &["NODE", "VNI@VTEP", "MACS"], &rows));
    }
    let rows: Vec<Vec<String>> = c
        .tunnels
        .iter()
        .map(|t| {
            let remotes: Vec<String> = t.remotes.iter().map(|r| r.to_string()).collect();
            let from = if t.from_cluster { "cluster" } else { "configured" };
            vec![t.port.clone(), t.vni.to_string(), from.to_string(), remotes.join(" ")]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str("tunnels:\n");
        out.push_str(&table("  ", &["PORT", "VNI", "REMOTES FROM", "REMOTES"], &rows));
    }
    out
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

/// "-" for an empty field.
fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s
    }
}

fn queue_map(queues: &[(u32, usize)]) -> String {
    queues.iter().map(|(q, core)| format!("{q}→{core}")).collect::<Vec<_>>().join(" ")
}

fn uplink_table(indent: &str, list: &[UplinkShow]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|u| {
            vec![
                u.config.name.clone(),
                u.status.state.clone(),
                or_dash(u.status.xdp_mode.clone()),
                if u.status.mtu == 0 { "-".to_string() } else { u.status.mtu.to_string() },
                or_dash(u.status.vteps.join(",")),
                or_dash(queue_map(&u.status.queues)),
            ]
        })
        .collect();
    table(indent, &["UPLINK", "STATE", "XDP", "MTU", "VTEPS", "QUEUE→CORE"], &rows)
}

/// The tunnel of a vxlan port: settings, then each remote and its next hop.
fn vxlan_block(p: &PortShow) -> String {
    let Some(v) = &p.config.vxlan else {
        return String::new();
    };
    let mtu = p.status.inner_mtu.map_or_else(|| "unknown".to_string(), |m| m.to_string());
    let mut out = format!(
        "  {}: VNI {}, local {}, dstport {}, ttl {}, inner MTU {mtu}\n",
        p.config.name, v.vni, v.local, v.dstport, v.ttl
    );
    if v.remotes.is_empty() {
        out.push_str("    no remotes\n");
        return out;
    }
    let rows: Vec<Vec<String>> = v
        .remotes
        .iter()
        .map(|ip| {
            let ip = ip.to_string();
            let hop = p.status.remotes.iter().find(|r| r.ip == ip).and_then(|r| r.next_hop_mac.clone());
            vec![ip, hop.unwrap_or_else(|| "unresolved".to_string())]
        })
        .collect();
    out.push_str(&table("    ", &["REMOTE", "NEXT-HOP"], &rows));
    out
}

/// A container port's owner: the first 12 digits of the container id (as
/// `podman ps` shows it) and its interface there.
fn owner(o: &rvs_proto::config::PortOwner) -> String {
    let id: String = o.container.chars().take(12).collect();
    format!("{id}/{}", o.ifname)
}

fn show(s: &ShowResult) -> String {
    let mut out = String::new();
    let any_vxlan = s.bridges.iter().flat_map(|b| &b.ports).any(|p| p.config.vxlan.is_some());
    if !s.uplinks.is_empty() {
        out.push_str("uplinks:\n");
        out.push_str(&uplink_table("  ", &s.uplinks));
    } else if any_vxlan {
        out.push_str("uplinks: none (vxlan ports need one: rvsctl uplink add IFACE)\n");
    }
    if s.bridges.is_empty() {
        out.push_str("no bridges\n");
    }
    for b in &s.bridges {
        let _ = writeln!(out, "bridge {}: aging {} s, at most {} learned MACs", b.name, b.aging_secs, b.max_macs);
        if !b.gateway.is_empty() {
            let addrs: Vec<String> = b.gateway.iter().map(|a| a.to_string()).collect();
            let _ = writeln!(out, "  gateway: {} (internal port {})", addrs.join(", "), b.name);
        }
        if b.ports.is_empty() {
            out.push_str("  no ports\n");
        } else {
            let mut rows: Vec<Vec<String>> = b
                .ports
                .iter()
                .map(|p| {
                    vec![
                        p.config.name.clone(),
                        p.config.kind.name().to_string(),
                        vlan_mode(&p.config),
                        p.status.state.clone(),
                        or_dash(p.status.xdp_mode.clone()),
                        or_dash(p.status.fast_path.clone()),
                        or_dash(queue_map(&p.status.queues)),
                        match p.config.max_macs {
                            Some(max) => format!("{}/{max}", p.status.learned_macs),
                            None => p.status.learned_macs.to_string(),
                        },
                        or_dash(p.config.owner.as_ref().map(owner).unwrap_or_default()),
                    ]
                })
                .collect();
            let mut head = vec!["PORT", "TYPE", "VLAN", "STATE", "XDP", "FAST PATH", "QUEUE→CORE", "MACS", "CONTAINER"];
            // The column only where containers are: most bridges have none.
            if b.ports.iter().all(|p| p.config.owner.is_none()) {
                head.pop();
                rows.iter_mut().for_each(|r| drop(r.pop()));
            }
            out.push_str(&table("  ", &head, &rows));
            for p in &b.ports {
                out.push_str(&vxlan_block(p));
            }
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

/// One page of `fdb show` as text. The first page sets the columns
/// (`widths` empty) and has the header; later pages keep its columns, so
/// pages print as they arrive and still line up.
pub fn fdb_page(entries: &[FdbEntryInfo], widths: &mut Vec<usize>) -> String {
    const HEAD: [&str; 4] = ["VLAN", "MAC", "PORT", "AGE"];
    let rows = fdb_rows(entries);
    if widths.is_empty() {
        let t = table("", &HEAD, &rows);
        *widths = HEAD.iter().map(|h| h.len()).collect();
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        return t;
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i].saturating_sub(c.chars().count()) + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn neigh(list: &NeighList) -> String {
    let rows: Vec<Vec<String>> = list
        .entries
        .iter()
        .map(|e| {
            let age_or_node = match (e.age_secs, &e.node) {
                (Some(age), _) => age.to_string(),
                (None, Some(node)) => node.clone(),
                (None, None) => "-".to_string(),
            };
            vec![e.bridge.clone(), e.vlan.to_string(), e.ip.to_string(), e.mac.clone(), e.source.clone(), age_or_node]
        })
        .collect();
    table("", &["BRIDGE", "VLAN", "IP", "MAC", "SOURCE", "AGE/NODE"], &rows)
}

fn fdb(entries: &[FdbEntryInfo]) -> String {
    let mut e = entries.to_vec();
    e.sort_by(|a, b| (a.vlan, &a.mac).cmp(&(b.vlan, &b.mac)));
    table("", &["VLAN", "MAC", "PORT", "AGE"], &fdb_rows(&e))
}

fn fdb_rows(entries: &[FdbEntryInfo]) -> Vec<Vec<String>> {
    entries
        .iter()
        .map(|e| {
            vec![
                e.vlan.to_string(),
                e.mac.clone(),
                match &e.remote {
                    Some(r) => format!("{} ({r})", e.port),
                    None => e.port.clone(),
                },
                if e.is_static { "static".to_string() } else { e.age_secs.to_string() },
            ]
        })
        .collect()
}

fn stats(ports: &[PortStatsInfo]) -> String {
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            let mut drops: Vec<String> = p.drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
            if p.kernel_drops > 0 {
                drops.push(format!("(dropped by the kernel before rvs: {})", p.kernel_drops));
            }
            if p.learn_refused > 0 {
                drops.push(format!("(not learned: {})", p.learn_refused));
            }
            if p.neigh_refused > 0 {
                drops.push(format!("(bindings not learned: {})", p.neigh_refused));
            }
            if p.arp_suppressed + p.nd_suppressed > 0 {
                drops.push(format!("(answered: arp {}, nd {})", p.arp_suppressed, p.nd_suppressed));
            }
            vec![
                p.name.clone(),
                p.bridge.clone(),
                p.rx_packets.to_string(),
                p.rx_bytes.to_string(),
                p.tx_packets.to_string(),
                p.tx_bytes.to_string(),
                match p.kernel {
                    k if k.rx_packets == 0 && k.tx_packets == 0 => "-".to_string(),
                    k => format!("{}/{}", k.rx_packets, k.tx_packets),
                },
                if drops.is_empty() { "-".to_string() } else { drops.join(" ") },
            ]
        })
        .collect();
    table("", &["PORT", "BRIDGE", "RX-PKTS", "RX-BYTES", "TX-PKTS", "TX-BYTES", "KERNEL RX/TX", "DROPS"], &rows)
}

/// `part / total` as a percentage with one decimal, "-" when `total` is 0.
fn pct(part: u64, total: u64) -> String {
    if total == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / total as f64)
    }
}

/// Busy share of a thread's rounds, "-" before any round: by TSC cycles
/// where the thread counts them, else by nanoseconds.
pub fn busy_pct(t: &ThreadInfo) -> String {
    if t.busy_cycles > 0 || t.idle_cycles > 0 {
        pct(t.busy_cycles, t.busy_cycles.saturating_add(t.idle_cycles))
    } else {
        pct(t.busy_ns, t.busy_ns.saturating_add(t.idle_ns))
    }
}

/// Busy cycles per received frame, rounded; "-" without frames or cycles.
pub fn cycles_per_packet(t: &ThreadInfo) -> String {
    if t.packets == 0 || t.busy_cycles == 0 {
        "-".to_string()
    } else {
        format!("{:.0}", t.busy_cycles as f64 / t.packets as f64)
    }
}

/// Flow cache hits / lookups, "-" before any lookup.
pub fn cache_hit_pct(t: &ThreadInfo) -> String {
    pct(t.cache_hits, t.cache_hits.saturating_add(t.cache_misses))
}

fn pmd_table(indent: &str, threads: &[ThreadInfo]) -> String {
    let rows: Vec<Vec<String>> = threads
        .iter()
        .map(|t| {
            let q: Vec<String> = t.rx_queues.iter().map(|(p, q)| format!("{p}/{q}")).collect();
            vec![
                // A thread that stopped on a panic (rvsd is shutting down).
                if t.failed > 0 { format!("{} FAILED", t.core) } else { t.core.to_string() },
                if q.is_empty() { "-".to_string() } else { q.join(" ") },
                t.packets.to_string(),
                cycles_per_packet(t),
                busy_pct(t),
                cache_hit_pct(t),
                t.cache_entries.to_string(),
                t.cache_evictions.to_string(),
            ]
        })
        .collect();
    table(
        indent,
        &["CORE", "RX-QUEUES", "PACKETS", "CYCLES/PKT", "BUSY %", "CACHE HIT %", "CACHE ENTRIES", "EVICTIONS"],
        &rows,
    )
}

/// The steps, then one line per copy of the frame.
fn trace(t: &TraceResult) -> String {
    let width = t.steps.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (stage, what) in &t.steps {
        let _ = writeln!(out, "{stage:width$}  {what}");
    }
    if t.outputs.is_empty() {
        if !t.decision.starts_with("drop") {
            let _ = writeln!(out, "outputs: none (no other port in the frame's VLAN)");
        }
        return out;
    }
    let _ = writeln!(out, "outputs:");
    for o in &t.outputs {
        let _ = writeln!(out, "  {}", trace_output(o));
    }
    out
}

fn trace_output(o: &TraceOutput) -> String {
    let mut line = format!("{}: tag {}", o.port, o.tag);
    if let Some(v) = &o.vxlan {
        let _ = write!(
            line,
            ", vxlan vni {} via {}: eth {} > {}, ip {} > {} ttl {}, udp {} > {}",
            v.vni,
            v.uplink,
            or_dash(v.src_mac.clone()),
            v.next_hop_mac.clone().unwrap_or_else(|| "(unresolved)".to_string()),
            v.local,
            v.remote,
            v.ttl,
            v.udp_src,
            v.udp_dst
        );
    }
    if let Some(d) = &o.dropped {
        let _ = write!(line, ": dropped ({d})");
    }
    line
}

fn flows(entries: &[FlowInfo]) -> String {
    if entries.is_empty() {
        return "no cached flows\n".to_string();
    }
    let mut e = entries.to_vec();
    e.sort_by(|a, b| {
        (a.core, &a.bridge, &a.in_port, a.vlan, &a.src, &a.dst)
            .cmp(&(b.core, &b.bridge, &b.in_port, b.vlan, &b.src, &b.dst))
    });
    let rows: Vec<Vec<String>> = e
        .iter()
        .map(|f| {
            vec![
                f.core.to_string(),
                f.bridge.clone(),
                match &f.remote {
                    Some(r) => format!("{} ({r})", f.in_port),
                    None => f.in_port.clone(),
                },
                f.src.clone(),
                f.dst.clone(),
                f.vlan.to_string(),
                f.action.clone(),
                f.hits.to_string(),
            ]
        })
        .collect();
    table("", &["CORE", "BRIDGE", "IN-PORT", "SRC", "DST", "VLAN", "ACTION", "HITS"], &rows)
}

fn pmd(threads: &[ThreadInfo]) -> String {
    if threads.is_empty() {
        return "no polling threads\n".to_string();
    }
    pmd_table("", threads)
}

/// `pmd show` with, under the table, how the frames rvs forwarded were
/// shared between the kernel executors and the polling threads (`stats`:
/// the ports' counters, when they could be read).
pub fn pmd_with_kernel(threads: Value, stats: Option<Value>) -> Result<String, String> {
    let threads: Vec<ThreadInfo> = decode(threads)?;
    let mut out = pmd(&threads);
    let Some(stats) = stats else { return Ok(out) };
    let ports: Vec<PortStatsInfo> = decode(stats)?;
    let kernel: u64 = ports.iter().map(|p| p.kernel.rx_packets).fold(0, u64::saturating_add);
    let user: u64 = threads.iter().map(|t| t.packets).fold(0, u64::saturating_add);
    if kernel > 0 {
        let all = kernel.saturating_add(user);
        let _ = writeln!(
            out,
            "kernel executors: {kernel} frames ({}), polling threads: {user} frames ({})",
            pct(kernel, all),
            pct(user, all)
        );
    }
    Ok(out)
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
    fn show_names_the_container_of_a_port() {
        let show: ShowResult = serde_json::from_value(serde_json::json!({
            "uplinks": [], "threads": [],
            "bridges": [{"name": "br0", "aging_secs": 300, "max_macs": 8192, "static_macs": [], "ports": [
                {"config": {"name": "rvs0123456789ab", "type": "tap", "netns": "/proc/7/ns/net", "ifname": "eth0",
                            "owner": {"container": "0123456789abcdef0123", "ifname": "eth0", "network": "n"}},
                 "status": {"name": "rvs0123456789ab", "bridge": "br0", "kind": "tap", "state": "up",
                            "xdp_mode": "", "queues": []}},
                {"config": {"name": "tap9", "type": "tap"},
                 "status": {"name": "tap9", "bridge": "br0", "kind": "tap", "state": "up", "xdp_mode": "", "queues": []}}
            ]}]
        }))
        .unwrap();
        let text = render(View::Show, serde_json::to_value(&show).unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].ends_with("MACS  CONTAINER"), "{text}");
        assert!(lines[2].ends_with("0123456789ab/eth0"), "{text}");
        assert!(lines[3].ends_with(" -"), "{text}");
        // No container port: no column.
        let mut plain = show.clone();
        plain.bridges[0].ports.remove(0);
        let text = render(View::Show, serde_json::to_value(&plain).unwrap()).unwrap();
        assert!(!text.contains("CONTAINER"), "{text}");
    }

    #[test]
    fn vxlan_show_and_fdb() {
        let show: ShowResult = serde_json::from_str(
            r#"{"uplinks":[{"config":{"name":"eth1","queues":null,"xdp_mode":"auto"},
                "status":{"name":"eth1","state":"up","xdp_mode":"native","mtu":1500,"vteps":["198.18.1.1"],"queues":[[0,1],[1,2]]}},
               {"config":{"name":"eth2","queues":null,"xdp_mode":"auto"},
                "status":{"name":"eth2","state":"down: no interface \"eth2\"","xdp_mode":"","mtu":0,"vteps":[],"queues":[]}}],
              "bridges":[{"name":"br0","aging_secs":300,"max_macs":8192,"static_macs":[],"ports":[
               {"config":{"name":"vx42","type":"vxlan","vlan":{"access":{"vlan":1}},"queues":null,"xdp_mode":"auto","netns":null,
                 "vxlan":{"vni":42,"local":"198.18.1.1","remotes":["198.18.1.2","198.18.1.3"],"dstport":4789,"ttl":64}},
                "status":{"name":"vx42","bridge":"br0","kind":"vxlan","state":"up","xdp_mode":"","queues":[],"inner_mtu":1450,
                 "remotes":[{"ip":"198.18.1.2","next_hop_mac":"02:00:00:00:00:fe"},{"ip":"198.18.1.3","next_hop_mac":null}]}}]}],
              "threads":[]}"#,
        )
        .unwrap();
        let text = render(View::Show, serde_json::to_value(&show).unwrap()).unwrap();
        assert_eq!(
            text,
            "uplinks:
  UPLINK  STATE                      XDP     MTU   VTEPS       QUEUE→CORE
  eth1    up                         native  1500  198.18.1.1  0→1 1→2
  eth2    down: no interface \"eth2\"  -       -     -           -
bridge br0: aging 300 s, at most 8192 learned MACs
  PORT  TYPE   VLAN      STATE  XDP  FAST PATH  QUEUE→CORE  MACS
  vx42  vxlan  access 1  up     -    -          -           0
  vx42: VNI 42, local 198.18.1.1, dstport 4789, ttl 64, inner MTU 1450
    REMOTE      NEXT-HOP
    198.18.1.2  02:00:00:00:00:fe
    198.18.1.3  unresolved
threads:
  none
"
        );
        let uplinks = render(View::Uplinks, serde_json::to_value(&show.uplinks).unwrap()).unwrap();
        assert!(uplinks.starts_with("UPLINK  STATE"), "{uplinks}");
        assert_eq!(render(View::Uplinks, serde_json::json!([])).unwrap(), "no uplinks\n");
        let fdb = render(
            View::Fdb,
            serde_json::json!({"total": 2, "entries": [
                {"mac":"02:00:00:00:00:01","vlan":1,"port":"vx42","is_static":false,"age_secs":3,"remote":"198.18.1.2"},
                {"mac":"02:00:00:00:00:02","vlan":1,"port":"veth-a","is_static":false,"age_secs":5}
            ]}),
        )
        .unwrap();
        assert_eq!(
            fdb,
            "VLAN  MAC                PORT               AGE
1     02:00:00:00:00:01  vx42 (198.18.1.2)  3
1     02:00:00:00:00:02  veth-a             5
"
        );
    }

    #[test]
    fn ranges_and_busy() {
        assert_eq!(vlan_ranges(&[20, 10, 11, 12, 30]), "10-12,20,30");
        let t = ThreadInfo { core: 1, rx_queues: vec![], packets: 0, busy_ns: 1, idle_ns: 3, ..ThreadInfo::default() };
        assert_eq!(busy_pct(&t), "25.0%");
        assert_eq!(cycles_per_packet(&t), "-");
        assert_eq!(cache_hit_pct(&t), "-");
        // Cycles, where counted, win over nanoseconds.
        let t = ThreadInfo { busy_cycles: 3, idle_cycles: 1, ..t };
        assert_eq!(busy_pct(&t), "75.0%");
        assert_eq!(busy_pct(&ThreadInfo::default()), "-");
        let big = ThreadInfo { busy_ns: u64::MAX, idle_ns: u64::MAX, cache_hits: u64::MAX, cache_misses: 1, ..t };
        assert_eq!(busy_pct(&big), "75.0%");
        assert_eq!(cache_hit_pct(&big), "100.0%");
    }

    #[test]
    fn pmd_show_marks_a_failed_thread() {
        let t = |core, failed| ThreadInfo { core, failed, ..Default::default() };
        let text = pmd(&[t(1, 0), t(2, 1)]);
        assert!(text.lines().any(|l| l.starts_with("2 FAILED")), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("1 FAILED")), "{text}");
    }

    #[test]
    fn pmd_show_gives_the_kernel_share() {
        use rvs_proto::status::KernelShare;
        let threads = vec![ThreadInfo { core: 1, rx_queues: vec![("a".into(), 0)], packets: 25, ..Default::default() }];
        let threads = serde_json::to_value(threads).unwrap();
        let port = |name: &str, rx_packets| PortStatsInfo {
            kernel: KernelShare { rx_packets, ..Default::default() },
            ..PortStatsInfo::new(name, "br0", &Default::default())
        };
        let stats = serde_json::to_value(vec![port("a", 60), port("b", 15)]).unwrap();
        let text = pmd_with_kernel(threads.clone(), Some(stats)).unwrap();
        assert!(text.ends_with("kernel executors: 75 frames (75.0%), polling threads: 25 frames (25.0%)\n"), "{text}");
        // No kernel traffic, or no counters: the table alone.
        let none = serde_json::to_value(vec![port("a", 0)]).unwrap();
        assert!(!pmd_with_kernel(threads.clone(), Some(none)).unwrap().contains("kernel"));
        assert!(!pmd_with_kernel(threads, None).unwrap().contains("kernel"));
    }

    #[test]
    fn pmd_with_and_without_cycles() {
        let threads = serde_json::json!([
            {"core":2,"rx_queues":[["veth-a",0],["eth1",1]],"packets":1000,"busy_ns":500,"idle_ns":1500,
             "busy_cycles":250000,"idle_cycles":750000,"cache_hits":950,"cache_misses":50,
             "cache_evictions":3,"cache_entries":17},
            {"core":3,"rx_queues":[],"packets":0,"busy_ns":0,"idle_ns":0,
             "busy_cycles":0,"idle_cycles":0,"cache_hits":0,"cache_misses":0,"cache_evictions":0,"cache_entries":0}
        ]);
        assert_eq!(
            render(View::Pmd, threads).unwrap(),
            "CORE  RX-QUEUES        PACKETS  CYCLES/PKT  BUSY %  CACHE HIT %  CACHE ENTRIES  EVICTIONS
2     veth-a/0 eth1/1  1000     250         25.0%   95.0%        17             3
3     -                0        -           -       -            0              0
"
        );
        // Without a TSC (or from an older rvsd: no cycle or cache fields at all),
        // busy % comes from nanoseconds and cycles per packet is unknown.
        let old = serde_json::json!([{"core":1,"rx_queues":[["veth-a",0]],"packets":42,"busy_ns":1,"idle_ns":3}]);
        assert_eq!(
            render(View::Pmd, old).unwrap(),
            "CORE  RX-QUEUES  PACKETS  CYCLES/PKT  BUSY %  CACHE HIT %  CACHE ENTRIES  EVICTIONS
1     veth-a/0   42       -           25.0%   -            0              0
"
        );
        assert_eq!(render(View::Pmd, serde_json::json!([])).unwrap(), "no polling threads\n");
    }

    #[test]
    fn trace_steps_and_outputs() {
        let t = serde_json::json!({
            "steps": [["input", "60 bytes on p1"], ["flow cache", "miss"], ["decision", "flood"]],
            "decision": "flood",
            "outputs": [
                {"port": "p2", "tag": "push 10"},
                {"port": "p3", "tag": "none", "dropped": "vlan_filtered"},
                {"port": "vx1", "tag": "none", "vxlan": {"remote": "198.18.1.2", "local": "198.18.1.1",
                 "uplink": "eth1", "src_mac": "02:00:00:00:00:0a", "next_hop_mac": null, "vni": 42,
                 "udp_src": 50000, "udp_dst": 4789, "ttl": 64}, "dropped": "no_neighbor"}
            ],
            "frame": "00"
        });
        assert_eq!(
            render(View::Trace, t).unwrap(),
            "input       60 bytes on p1\n\
             flow cache  miss\n\
             decision    flood\n\
             outputs:\n  \
             p2: tag push 10\n  \
             p3: tag none: dropped (vlan_filtered)\n  \
             vx1: tag none, vxlan vni 42 via eth1: eth 02:00:00:00:00:0a > (unresolved), \
             ip 198.18.1.1 > 198.18.1.2 ttl 64, udp 50000 > 4789: dropped (no_neighbor)\n"
        );
    }

    #[test]
    fn flows_with_a_remote() {
        let flows = serde_json::json!([
            {"core":3,"bridge":"br0","in_port":"veth-a","src":"02:00:00:00:00:02","dst":"02:00:00:00:00:01",
             "vlan":1,"action":"output:vx42->198.18.1.2","hits":5},
            {"core":2,"bridge":"br0","in_port":"vx42","remote":"198.18.1.2","src":"02:00:00:00:00:01",
             "dst":"02:00:00:00:00:02","vlan":1,"action":"output:veth-a","hits":12},
            {"core":2,"bridge":"br0","in_port":"veth-a","src":"02:00:00:00:00:02","dst":"ff:ff:ff:ff:ff:ff",
             "vlan":10,"action":"flood","hits":1}
        ]);
        assert_eq!(
            render(View::Flows, flows).unwrap(),
            "CORE  BRIDGE  IN-PORT            SRC                DST                VLAN  ACTION                   HITS
2     br0     veth-a             02:00:00:00:00:02  ff:ff:ff:ff:ff:ff  10    flood                    1
2     br0     vx42 (198.18.1.2)  02:00:00:00:00:01  02:00:00:00:00:02  1     output:veth-a            12
3     br0     veth-a             02:00:00:00:00:02  02:00:00:00:00:01  1     output:vx42->198.18.1.2  5
"
        );
        assert_eq!(render(View::Flows, serde_json::json!([])).unwrap(), "no cached flows\n");
    }
}
