//! `rvsd --metrics ADDR:PORT`: Prometheus text format, rendered from the
//! same data `rvsctl stats`, `pmd show` and `show` get, and served over
//! HTTP by [`super::http`] from the control loop (`control/server.rs`).

use crate::control::state::State;
use crate::datapath::Datapath;
use rvs_dataplane::stats::DropReason;
use std::fmt::Write as _;

/// A label value with `\`, `"` and newlines escaped.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Prometheus text: HELP and TYPE once per family, then its samples.
struct Families(String);

impl Families {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: impl IntoIterator<Item = (String, u64)>) {
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
    let pl = |p: &rvs_proto::status::PortStatsInfo| format!("bridge=\"{}\",port=\"{}\"", esc(&p.bridge), esc(&p.name));
    let per_port = |get: fn(&rvs_proto::status::PortStatsInfo) -> u64| -> Vec<(String, u64)> {
        ports.iter().map(|p| (pl(p), get(p))).collect()
    };
    f.family("rvs_port_rx_packets_total", "counter", "Frames a port received.", per_port(|p| p.rx_packets));
    f.family("rvs_port_rx_bytes_total", "counter", "Bytes a port received.", per_port(|p| p.rx_bytes));
    f.family("rvs_port_tx_packets_total", "counter", "Frames a port sent.", per_port(|p| p.tx_packets));
    f.family("rvs_port_tx_bytes_total", "counter", "Bytes a port sent.", per_port(|p| p.tx_bytes));
    f.family(
        "rvs_port_learn_refused_total",
        "counter",
        "Source MACs not learned because of the bridge's limit.",
        per_port(|p| p.learn_refused),
    );
    f.family("rvs_port_link_downs_total", "counter", "Times a port's interface went away.", per_port(|p| p.link_downs));
    f.family(
        "rvs_port_forwarded_total",
        "counter",
        "Frames a port received that went to one port.",
        per_port(|p| p.forwarded),
    );
    f.family("rvs_port_flooded_total", "counter", "Frames a port received that were flooded.", per_port(|p| p.flooded));
    f.family(
        "rvs_port_kernel_drops_total",
        "counter",
        "Frames the kernel dropped before rvs saw them (AF_XDP ring full or frame too large).",
        per_port(|p| p.kernel_drops),
    );
    let drops = ports.iter().flat_map(|p| {
        DropReason::ALL.iter().map(move |r| {
            let n = p.drops.iter().find(|(name, _)| name == r.name()).map_or(0, |(_, n)| *n);
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
    let per_thread = |get: fn(&rvs_proto::status::ThreadInfo) -> u64| -> Vec<(String, u64)> {
        threads.iter().map(|t| (tl(t.core), get(t))).collect()
    };
    f.family("rvs_pmd_packets_total", "counter", "Frames a polling thread received.", per_thread(|t| t.packets));
    f.family(
        "rvs_pmd_busy_cycles_total",
        "counter",
        "TSC cycles in rounds that moved frames.",
        per_thread(|t| t.busy_cycles),
    );
    f.family(
        "rvs_pmd_idle_cycles_total",
        "counter",
        "TSC cycles in rounds that found nothing.",
        per_thread(|t| t.idle_cycles),
    );
    f.family(
        "rvs_pmd_busy_nanoseconds_total",
        "counter",
        "Time in rounds that moved frames.",
        per_thread(|t| t.busy_ns),
    );
    f.family(
        "rvs_pmd_idle_nanoseconds_total",
        "counter",
        "Time in rounds that found nothing.",
        per_thread(|t| t.idle_ns),
    );
    f.family(
        "rvs_pmd_rx_queues",
        "gauge",
        "Receive queues a polling thread polls.",
        per_thread(|t| t.rx_queues.len() as u64),
    );
    f.family("rvs_flow_cache_hits_total", "counter", "Flow cache hits.", per_thread(|t| t.cache_hits));
    f.family("rvs_flow_cache_misses_total", "counter", "Flow cache misses.", per_thread(|t| t.cache_misses));
    f.family(
        "rvs_flow_cache_evictions_total",
        "counter",
        "Flow cache entries replaced.",
        per_thread(|t| t.cache_evictions),
    );
    f.family("rvs_flow_cache_entries", "gauge", "Flow cache entries in use.", per_thread(|t| t.cache_entries));

    let bridges = &state.config().bridges;
    f.family(
        "rvs_fdb_entries",
        "gauge",
        "MAC table entries (learned and static) of a bridge.",
        bridges
            .iter()
            .map(|b| (format!("bridge=\"{}\"", esc(&b.name)), dp.fdb_show(&b.name).map_or(0, |e| e.len() as u64))),
    );
    f.family(
        "rvs_fdb_max_macs",
        "gauge",
        "The learned-MAC limit of a bridge.",
        bridges.iter().map(|b| (format!("bridge=\"{}\"", esc(&b.name)), u64::from(b.max_macs))),
    );
    f.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_in_text_format() {
        use crate::datapath::fake::FakeDp;
        use rvs_proto::{Command, Request};
        let dir = crate::db::tests::temp_dir("metrics-render");
        let mut st = State::restore(&dir.join("c.json"), FakeDp::default()).unwrap();
        let r = st.handle(Request::new(Command::BridgeAdd { bridge: "b\"r".into(), aging_secs: None, max_macs: None }));
        assert!(r.ok, "{r:?}");
        let m = render(&st);
        for line in m.lines() {
            if line.starts_with('#') {
                assert!(line.starts_with("# HELP rvs_") || line.starts_with("# TYPE rvs_"), "{line}");
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<u64>().is_ok(), "{line}");
            assert!(series.starts_with("rvs_"), "{line}");
        }
        assert!(m.contains("rvs_fdb_entries{bridge=\"b\\\"r\"} 0"), "{m}");
        assert!(m.contains("rvs_pmd_packets_total{core=\"1\"} 42"), "{m}");
        assert!(m.contains("# TYPE rvs_port_drops_total counter"), "{m}");
    }
}
