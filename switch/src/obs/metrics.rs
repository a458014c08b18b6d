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
    // One family per declared thread counter (rvs-dataplane's list).
    let values: Vec<Vec<u64>> = threads.iter().map(ThreadInfo::counter_values).collect();
    for (i, (name, kind, help)) in ThreadInfo::METRICS.iter().enumerate() {
        f.family(name, kind, help, threads.iter().zip(&values).map(|(t, v)| (tl(t.core), v[i])));
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
