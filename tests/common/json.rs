//! Every assumption the tests make about `rvsctl --json` output, in one
//! place. `rvsctl --json` prints the reply's `result` value.
//!
//! Assumed shapes (from `proto/src/status.rs`), read tolerantly:
//! - `fdb show BR`: a list of `{mac, vlan, port, is_static, age_secs}`
//!   (and `remote`, the VTEP address, behind a VXLAN port),
//!   bare or under `entries`/`fdb`.
//! - `stats`: a list of `{name, bridge, rx_packets, rx_bytes, tx_packets,
//!   tx_bytes, learn_refused, drops}`, bare or under `ports`; `drops` is a
//!   list of `[reason, count]` pairs or an object `{reason: count}`.
//! - `show`: `{bridges: [{name, ports: [{config: {name, type, ...},
//!   status: {name, kind, state, ...}}]}], threads}` (switch/src/proto.rs
//!   `ShowResult`); ports with `name`/`type` at the top also work, and so
//!   does a map keyed by name.
//! - `trace BR PORT FRAME`: `{steps: [[stage, text]], decision, outputs:
//!   [{port, tag, vxlan?: {remote, local, uplink, src_mac, next_hop_mac,
//!   vni, udp_src, udp_dst, ttl}, dropped?}], frame: HEX}`
//!   (`TraceResult`).
//! - `pmd show`: a list of `{core, rx_queues: [[port, queue]], packets,
//!   busy_ns, idle_ns, busy_cycles, idle_cycles, cache_hits, cache_misses,
//!   cache_evictions, cache_entries}` (`ThreadInfo`), bare or under
//!   `threads`.
//! - `flows show`: a list of `{core, bridge, in_port, remote?, src, dst,
//!   vlan, action, hits}` (`FlowInfo`), bare or under `flows`.
//! - `neigh show`: `{tables: [{bridge, learned, limit}], entries: [{bridge,
//!   vlan, ip, mac, source, age_secs?, node?}]}` (`NeighList`); `stats`
//!   ports carry `arp_suppressed` and `nd_suppressed`.
//! - control socket replies: one JSON object per line with `"ok": bool`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One FDB entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    /// MAC, lower case.
    pub mac: String,
    /// VLAN.
    pub vlan: u16,
    /// Port name.
    pub port: String,
    /// For an entry behind a VXLAN port: the remote VTEP's address.
    pub remote: Option<String>,
}

/// Counters of one port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortStat {
    /// Port name.
    pub name: String,
    /// Frames received.
    pub rx_packets: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Drops by reason name.
    pub drops: BTreeMap<String, u64>,
}

/// The objects of a list that may be bare, under one of `keys`, or a map
/// keyed by name (the key is then put in as `name`).
fn items(v: &Value, keys: &[&str]) -> Vec<Value> {
    let v = keys.iter().find_map(|k| v.get(*k)).filter(|_| v.is_object()).unwrap_or(v);
    match v {
        Value::Array(a) => a.clone(),
        Value::Object(m) => m
            .iter()
            .filter(|(_, x)| x.is_object())
            .map(|(k, x)| {
                let mut x = x.clone();
                if x.get("name").is_none() {
                    x["name"] = Value::String(k.clone());
                }
                x
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Entries of `rvsctl --json fdb show BR`.
pub fn fdb_entries(v: &Value) -> Vec<FdbEntry> {
    items(v, &["entries", "fdb", "macs"])
        .iter()
        .map(|e| FdbEntry {
            mac: str_of(e, "mac").to_lowercase(),
            vlan: u64_of(e, "vlan") as u16,
            port: str_of(e, "port"),
            remote: e.get("remote").and_then(Value::as_str).map(str::to_string),
        })
        .collect()
}

/// One IP-MAC binding of `rvsctl --json neigh show`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighEntry {
    /// Bridge name.
    pub bridge: String,
    /// VLAN.
    pub vlan: u16,
    /// The address.
    pub ip: String,
    /// The MAC, lower case.
    pub mac: String,
    /// `static`, `learned` or `remote`.
    pub source: String,
    /// For remote bindings: the node that publishes it.
    pub node: Option<String>,
}

/// Bindings of `rvsctl --json neigh show`.
pub fn neigh_entries(v: &Value) -> Vec<NeighEntry> {
    items(v, &["entries"])
        .iter()
        .map(|e| NeighEntry {
            bridge: str_of(e, "bridge"),
            vlan: u64_of(e, "vlan") as u16,
            ip: str_of(e, "ip"),
            mac: str_of(e, "mac").to_lowercase(),
            source: str_of(e, "source"),
            node: e.get("node").and_then(Value::as_str).map(str::to_string),
        })
        .collect()
}

/// Counter `counter` of port `port` in `rvsctl --json stats` (0 if absent).
pub fn port_counter(v: &Value, port: &str, counter: &str) -> u64 {
    items(v, &["ports", "stats"]).iter().find(|p| str_of(p, "name") == port).map_or(0, |p| u64_of(p, counter))
}

/// Ports of `rvsctl --json stats`.
pub fn port_stats(v: &Value) -> Vec<PortStat> {
    items(v, &["ports", "stats"])
        .iter()
        .map(|p| PortStat {
            name: str_of(p, "name"),
            rx_packets: u64_of(p, "rx_packets"),
            tx_packets: u64_of(p, "tx_packets"),
            drops: drops_of(p.get("drops").unwrap_or(&Value::Null)),
        })
        .collect()
}

fn drops_of(v: &Value) -> BTreeMap<String, u64> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|pair| {
                let name = pair.get(0)?.as_str()?.to_string();
                Some((name, pair.get(1)?.as_u64()?))
            })
            .collect(),
        Value::Object(m) => m.iter().filter_map(|(k, n)| Some((k.clone(), n.as_u64()?))).collect(),
        _ => BTreeMap::new(),
    }
}

/// Counters of port `name` in `rvsctl --json stats` (default if absent).
pub fn port_stat(v: &Value, name: &str) -> PortStat {
    port_stats(v).into_iter().find(|p| p.name == name).unwrap_or_default()
}

/// Drops under `reason`, summed over all ports.
pub fn drops_total(v: &Value, reason: &str) -> u64 {
    port_stats(v).iter().map(|p| p.drops.get(reason).copied().unwrap_or(0)).sum()
}

/// (bridge, port, type) of every port in `rvsctl --json show`, plus
/// (bridge, "", "") for each bridge, so empty bridges count too.
pub fn show_ports(v: &Value) -> BTreeSet<(String, String, String)> {
    let mut set = BTreeSet::new();
    for br in items(v, &["bridges"]) {
        let bname = str_of(&br, "name");
        set.insert((bname.clone(), String::new(), String::new()));
        for p in items(br.get("ports").unwrap_or(&Value::Null), &[]) {
            let cfg = p.get("config").unwrap_or(&p);
            let status = p.get("status").unwrap_or(&Value::Null);
            let first = |keys: &[(&Value, &str)]| {
                keys.iter().find_map(|(v, k)| v.get(*k).and_then(Value::as_str)).unwrap_or_default().to_string()
            };
            let name = first(&[(cfg, "name"), (&p, "name"), (status, "name")]);
            let kind = first(&[(cfg, "type"), (&p, "type"), (&p, "kind"), (status, "kind")]);
            set.insert((bname.clone(), name, kind));
        }
    }
    set
}

/// True if `line` is a control-socket error reply (`"ok": false`).
pub fn is_error_reply(line: &str) -> bool {
    serde_json::from_str::<Value>(line.trim()).map(|v| v.get("ok") == Some(&Value::Bool(false))).unwrap_or(false)
}

/// One place `rvsctl --json trace` says a frame goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceOut {
    /// Egress port.
    pub port: String,
    /// Why this copy would be dropped, if it would.
    pub dropped: Option<String>,
    /// For a VXLAN port: (remote, outer source MAC, next-hop MAC, UDP source port, VNI).
    pub vxlan: Option<(String, String, String, u16, u32)>,
}

/// The decision of `rvsctl --json trace`: "output", "flood" or "drop:REASON".
pub fn trace_decision(v: &Value) -> String {
    str_of(v, "decision")
}

/// The outputs of `rvsctl --json trace`.
pub fn trace_outputs(v: &Value) -> Vec<TraceOut> {
    items(v, &["outputs"])
        .iter()
        .map(|o| TraceOut {
            port: str_of(o, "port"),
            dropped: o.get("dropped").and_then(Value::as_str).map(str::to_string),
            vxlan: o.get("vxlan").filter(|x| x.is_object()).map(|x| {
                (
                    str_of(x, "remote"),
                    str_of(x, "src_mac"),
                    str_of(x, "next_hop_mac"),
                    u64_of(x, "udp_src") as u16,
                    u64_of(x, "vni") as u32,
                )
            }),
        })
        .collect()
}

/// The stage texts of `rvsctl --json trace`, by stage name.
pub fn trace_step(v: &Value, stage: &str) -> Option<String> {
    v.get("steps")?.as_array()?.iter().find_map(|s| {
        (s.get(0)?.as_str()? == stage).then(|| s.get(1).and_then(Value::as_str).unwrap_or_default().to_string())
    })
}

/// The traced frame's bytes from `rvsctl --json trace`.
pub fn trace_frame(v: &Value) -> Vec<u8> {
    let h = str_of(v, "frame");
    (0..h.len() / 2).map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex frame")).collect()
}

/// One polling thread of `rvsctl --json pmd show`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PmdThread {
    /// Core it is pinned to.
    pub core: u64,
    /// Receive queues it polls: (port, queue).
    pub rx_queues: Vec<(String, u32)>,
    /// Frames received.
    pub packets: u64,
    /// TSC cycles in rounds that moved frames.
    pub busy_cycles: u64,
    /// Flow cache hits.
    pub cache_hits: u64,
    /// Flow cache misses.
    pub cache_misses: u64,
    /// Flow cache entries in use.
    pub cache_entries: u64,
}

/// Threads of `rvsctl --json pmd show`.
pub fn pmd_threads(v: &Value) -> Vec<PmdThread> {
    items(v, &["threads", "pmd"])
        .iter()
        .map(|t| PmdThread {
            core: u64_of(t, "core"),
            rx_queues: t
                .get("rx_queues")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|q| Some((q.get(0)?.as_str()?.to_string(), q.get(1)?.as_u64()? as u32)))
                .collect(),
            packets: u64_of(t, "packets"),
            busy_cycles: u64_of(t, "busy_cycles"),
            cache_hits: u64_of(t, "cache_hits"),
            cache_misses: u64_of(t, "cache_misses"),
            cache_entries: u64_of(t, "cache_entries"),
        })
        .collect()
}

/// Which core polls each (port, queue) in `rvsctl --json pmd show`; a
/// queue listed by several threads appears once per thread.
pub fn pmd_queues(threads: &[PmdThread]) -> Vec<((String, u32), u64)> {
    let mut v: Vec<_> = threads.iter().flat_map(|t| t.rx_queues.iter().map(|q| (q.clone(), t.core))).collect();
    v.sort();
    v
}

/// One entry of `rvsctl --json flows show`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// Core of the polling thread whose cache holds it.
    pub core: u64,
    /// Bridge.
    pub bridge: String,
    /// Ingress port.
    pub in_port: String,
    /// Source MAC, lower case.
    pub src: String,
    /// Destination MAC, lower case.
    pub dst: String,
    /// VLAN.
    pub vlan: u16,
    /// "output:PORT", "output:PORT->VTEP", "flood" or "drop:REASON".
    pub action: String,
    /// Frames that used the entry.
    pub hits: u64,
}

/// Entries of `rvsctl --json flows show`.
pub fn flows(v: &Value) -> Vec<Flow> {
    items(v, &["flows", "entries"])
        .iter()
        .map(|f| Flow {
            core: u64_of(f, "core"),
            bridge: str_of(f, "bridge"),
            in_port: str_of(f, "in_port"),
            src: str_of(f, "src").to_lowercase(),
            dst: str_of(f, "dst").to_lowercase(),
            vlan: u64_of(f, "vlan") as u16,
            action: str_of(f, "action"),
            hits: u64_of(f, "hits"),
        })
        .collect()
}
