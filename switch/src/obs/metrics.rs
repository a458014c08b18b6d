//! `rvsd --metrics ADDR:PORT`: Prometheus text format, rendered from the
//! same data `rvsctl stats`, `pmd show` and `show` get, and served over
//! HTTP by [`super::http`] from the control loop (`control/server.rs`).

use crate::control::state::State;
use crate::datapath::Datapath;
use rvs_dataplane::stats::DropReason;
use rvs_proto::status::{KernelShare, PortStatsInfo, ThreadInfo};
use std::fmt::Write as _;

/// A label value with `\`, `"` and newlines escaped.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Prometheus text: HELP and TYPE once per family, then its samples.
struct Families(String);

impl Families {
    fn family<V: std::fmt::Display>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (String, V)>,
    ) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.0, "{name} {v}");
            } else {
                let _ = writeln!(self.0, "{name}{{{labels}}} {v}");
            }
        }
    }
}

/// Every metric, rendered now.
pub fn render<D: Datapath>(state: &State<D>) -> String {
    let dp = state.datapath();
    let mut f = Families(String::with_capacity(16 * 1024));
    f.family("rvs_build_info", "gauge", "rvsd's version.", [(format!("version=\"{}\"", env!("CARGO_PKG_VERSION")), 1)]);

    let ports = dp.port_stats();
    let pl = |p: &PortStatsInfo| format!("bridge=\"{}\",port=\"{}\"", esc(&p.bridge), esc(&p.name));
    let per_port =
        |get: fn(&PortStatsInfo) -> u64| -> Vec<(String, u64)> { ports.iter().map(|p| (pl(p), get(p))).collect() };
    // One family per declared port counter (rvs-dataplane's list), each
    // `rvs_port_NAME_total` with the counter's meaning as its help.
    let values: Vec<Vec<u64>> = ports.iter().map(PortStatsInfo::counter_values).collect();
    for (i, (name, help)) in PortStatsInfo::COUNTERS.iter().enumerate() {
        let samples = ports.iter().zip(&values).map(|(p, v)| (pl(p), v[i]));
        f.family(&format!("rvs_port_{name}_total"), "counter", help, samples);
    }
    f.family("rvs_port_link_downs_total", "counter", "Times a port's interface went away.", per_port(|p| p.link_downs));
    // What the kernel executor carried, beside the polling threads' share.
    let kernel: Vec<[u64; 4]> = ports.iter().map(|p| p.kernel.values()).collect();
    for (i, (name, help)) in KernelShare::COUNTERS.iter().enumerate() {
        let samples = ports.iter().zip(&kernel).map(|(p, v)| (pl(p), v[i]));
        f.family(&format!("rvs_port_kernel_{name}_total"), "counter", help, samples);
    }
    // Every reason for every port, zero included, so rates can be taken.
    let drops = ports.iter().flat_map(|p| {
        DropReason::ALL.iter().map(move |r| {
            let n = p.drops.get(r.name()).copied().unwrap_or(0);
            (format!("{},reason=\"{}\"", pl(p), r.name()), n)
        })
    });
    f.family("rvs_port_drops_total", "counter", "Frames dropped, by reason.", drops.collect::<Vec<_>>());
    let status = dp.port_status();
    f.family(
        "rvs_port_up",
        "gauge",
        "1 if a port is up.",
        status.iter().map(|p| {
            (
                format!("bridge=\"{}\",port=\"{}\",kind=\"{}\"", esc(&p.bridge), esc(&p.name), esc(&p.kind)),
                u64::from(p.state == "up"),
            )
        }),
    );
    f.family(
        "rvs_port_learned_macs",
        "gauge",
        "MACs learned on a port (its limit, if set, is in the configuration).",
        status
            .iter()
            .map(|p| (format!("bridge=\"{}\",port=\"{}\"", esc(&p.bridge), esc(&p.name)), u64::from(p.learned_macs))),
    );
    let tunnels: Vec<_> = status.iter().filter(|p| p.kind == "vxlan").collect();
    f.family(
        "rvs_tunnel_remote_resolved",
        "gauge",
        "1 if the next hop toward a tunnel's remote VTEP is resolved.",
        tunnels.iter().flat_map(|p| {
            p.remotes.iter().map(|r| {
                (
                    format!("bridge=\"{}\",port=\"{}\",remote=\"{}\"", esc(&p.bridge), esc(&p.name), esc(&r.ip)),
                    u64::from(r.next_hop_mac.is_some()),
                )
            })
        }),
    );
    f.family(
        "rvs_uplink_up",
        "gauge",
        "1 if an uplink is up.",
        dp.uplink_status().iter().map(|u| (format!("uplink=\"{}\"", esc(&u.name)), u64::from(u.state == "up"))),
    );

    let threads = dp.threads();
    let tl = |c: usize| format!("core=\"{c}\"");
    let per_thread =
        |get: fn(&ThreadInfo) -> u64| -> Vec<(String, u64)> { threads.iter().map(|t| (tl(t.core), get(t))).collect() };
    // One family per declared thread counter (rvs-dataplane's list), in
    // base units (nanoseconds counted, seconds exported).
    let values: Vec<Vec<u64>> = threads.iter().map(ThreadInfo::counter_values).collect();
    for (i, &(name, kind, help, scale)) in ThreadInfo::METRICS.iter().enumerate() {
        let samples = threads.iter().zip(&values).map(|(t, v)| (tl(t.core), Scaled(v[i], scale)));
        f.family(name, kind, help, samples);
    }
    f.family(
        "rvs_pmd_rx_queues",
        "gauge",
        "Receive queues a polling thread polls.",
        per_thread(|t| t.rx_queues.len() as u64),
    );

    let bridges = &state.config().bridges;
    f.family(
        "rvs_fdb_entries",
        "gauge",
        "MAC table entries (learned and static) of a bridge.",
        bridges.iter().map(|b| {
            (format!("bridge=\"{}\"", esc(&b.name)), dp.fdb_page(&b.name, None, 0).map_or(0, |p| p.total as u64))
        }),
    );
    f.family(
        "rvs_fdb_max_macs",
        "gauge",
        "The learned-MAC limit of a bridge.",
        bridges.iter().map(|b| (format!("bridge=\"{}\"", esc(&b.name)), u64::from(b.max_macs))),
    );
    f.family(
        "rvs_capture_dropped_total",
        "counter",
        "Frames a port's captures dropped because their reader fell behind (never the traffic).",
        state.capture_drops().into_iter().map(|(p, n)| (format!("port=\"{}\"", esc(&p)), n)),
    );
    cluster(&mut f, state);
    process(&mut f);
    f.0
}

/// A count of small units (`.0`) written exactly in a base unit that is
/// `.1` of them (nanoseconds as seconds: `1500000000` as `1.5`).
struct Scaled(u64, u64);

impl std::fmt::Display for Scaled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (v, per) = (self.0, self.1.max(1));
        let frac = v % per;
        if frac == 0 {
            return write!(f, "{}", v / per);
        }
        let digits = per.ilog10() as usize;
        let text = format!("{frac:0digits$}");
        write!(f, "{}.{}", v / per, text.trim_end_matches('0'))
    }
}

/// The cluster agent's state (nothing when rvsd is not in a cluster).
fn cluster<D: Datapath>(f: &mut Families, state: &State<D>) {
    let Some((st, peers)) = state.cluster_status() else { return };
    f.family(
        "rvs_cluster_connected",
        "gauge",
        "1 while the etcd agent is connected.",
        [(String::new(), u64::from(st.state == "connected"))],
    );
    f.family(
        "rvs_cluster_peers",
        "gauge",
        "Other nodes of the cluster, as last read from etcd.",
        [(String::new(), peers as u64)],
    );
    f.family(
        "rvs_cluster_state_seconds",
        "gauge",
        "Seconds since the etcd agent's state last changed.",
        [(String::new(), st.since_secs)],
    );
    f.family(
        "rvs_cluster_connects_total",
        "counter",
        "Times the etcd agent (re)connected.",
        [(String::new(), st.connects)],
    );
    f.family(
        "rvs_cluster_rejected_records",
        "gauge",
        "etcd records left out at the last read (malformed or implausible).",
        [(String::new(), st.rejected_records)],
    );
    // When the peers were last read (0: never); time() minus it is how old
    // the view of the cluster is.
    f.family(
        "rvs_cluster_last_sync_timestamp_seconds",
        "gauge",
        "When the peers were last read from etcd, seconds since the Unix epoch (0: never).",
        [(String::new(), st.last_sync_unix.unwrap_or(0))],
    );
}

/// The standard process families (as Prometheus client libraries name
/// them), from /proc/self.
fn process(f: &mut Families) {
    let page = 4096u64;
    if let Some(rss) =
        std::fs::read_to_string("/proc/self/statm").ok().and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
    {
        f.family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            [(String::new(), rss * page)],
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        f.family(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            [(String::new(), fds.count() as u64)],
        );
    }
    if let Some(start) = start_time_secs() {
        f.family(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch in seconds.",
            [(String::new(), start)],
        );
    }
}

/// The process's start time, seconds since the Unix epoch: the boot time
/// (`btime` in /proc/stat) plus field 22 of /proc/self/stat, in clock
/// ticks (USER_HZ, 100 on Linux's ABI).
fn start_time_secs() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let btime: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    Some(btime + ticks / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_counts_are_exact_decimals() {
        let s = |v, per| Scaled(v, per).to_string();
        assert_eq!(s(42, 1), "42");
        assert_eq!(s(25, 1_000_000_000), "0.000000025");
        assert_eq!(s(1_500_000_000, 1_000_000_000), "1.5");
        assert_eq!(s(3_000_000_000, 1_000_000_000), "3");
        assert_eq!(s(u64::MAX, 1_000_000_000), "18446744073.709551615");
    }

    #[test]
    fn renders_every_family_in_text_format() {
        use crate::datapath::fake::FakeDp;
        use rvs_proto::{Command, Request};
        let dir = crate::db::tests::temp_dir("metrics-render");
        let mut st = State::restore(&dir.join("c.json"), FakeDp::default()).unwrap();
        let r = st.handle(Request::new(Command::BridgeAdd {
            bridge: "b\"r".into(),
            aging_secs: None,
            max_macs: None,
            gateway: vec![],
        }));
        assert!(r.ok, "{r:?}");
        let m = render(&st);
        for line in m.lines() {
            if line.starts_with('#') {
                let family = line.split_whitespace().nth(2).unwrap_or_default();
                assert!(line.starts_with("# HELP ") || line.starts_with("# TYPE "), "{line}");
                assert!(family.starts_with("rvs_") || family.starts_with("process_"), "{line}");
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<u64>().is_ok() || series.contains("_seconds"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(series.starts_with("rvs_") || series.starts_with("process_"), "{line}");
        }
        assert!(m.contains("rvs_fdb_entries{bridge=\"b\\\"r\"} 0"), "{m}");
        assert!(m.contains("rvs_pmd_packets_total{core=\"1\"} 42"), "{m}");
        assert!(m.contains("# TYPE rvs_port_drops_total counter"), "{m}");
    }
}
