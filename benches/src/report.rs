//! The results as one table (medians with min–max, and each system's ratio
//! to rvs), or as JSON with the raw samples.

use std::fmt::Write;

use serde::Serialize;

use crate::bench::{Plan, Results};
use crate::systems::{Kind, System};

/// Median, min and max of some runs.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stat {
    /// Of `v` (not empty).
    pub fn of(v: &[f64]) -> Option<Stat> {
        if v.is_empty() {
            return None;
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        Some(Stat { median, min: s[0], max: s[n - 1], runs: n })
    }

    fn show(&self, decimals: usize) -> String {
        if self.runs == 1 {
            format!("{:.*}", decimals, self.median)
        } else {
            format!("{:.*} ({:.*}–{:.*})", decimals, self.median, decimals, self.min, decimals, self.max)
        }
    }
}

/// One line of the table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    pub system: &'static str,
    /// Frame size in bytes, or None for the TCP line.
    pub size: Option<usize>,
    pub flows: Option<u32>,
    /// Delivered at full offered load, Mpps.
    pub mpps: Option<Stat>,
    /// No-drop rate, Mpps.
    pub ndr_mpps: Option<Stat>,
    /// In how many rounds the NDR was only a lower bound (the generator,
    /// pacing, could not offer more).
    pub ndr_generator_bound: usize,
    /// iperf3, Gbit/s.
    pub tcp_gbps: Option<Stat>,
    /// iperf3 ran with the hosts' checksum offload off (the switch needs
    /// it); the others run with the hosts' defaults.
    pub hosts_tx_off: bool,
    /// The median reaches [`GENERATOR_BOUND`] of the generator's ceiling for
    /// this frame size and flow count: the generator may be the limit.
    pub generator_bound: bool,
    /// Median over rvs's median (Mpps, or Gbit/s on the TCP line).
    pub vs_rvs: Option<f64>,
    /// Why there are no numbers.
    pub note: Option<String>,
}

/// The share of the generator's ceiling from which a result is flagged as
/// possibly generator-bound.
pub const GENERATOR_BOUND: f64 = 0.8;

/// The summary: the generator's ceiling and the systems' lines.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// How the generator made frames.
    pub generator: &'static str,
    pub ceiling: Vec<Row>,
    pub rows: Vec<Row>,
}

/// Summarises `res` in table order.
pub fn summarise(plan: &Plan, res: &Results) -> Summary {
    let mut ceiling = rows_for(plan, res, System::Ceiling);
    for r in ceiling.iter_mut() {
        r.vs_rvs = None;
    }
    // Systems of a kind side by side, case by case; those without numbers
    // at the end of their group.
    let mut rows = Vec::new();
    for kind in [Kind::L2, Kind::Vxlan] {
        let per: Vec<Vec<Row>> =
            plan.systems.iter().filter(|s| s.kind() == kind).map(|&s| rows_for(plan, res, s)).collect();
        let cases = per.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..cases {
            rows.extend(per.iter().filter(|r| r.len() > 1).filter_map(|r| r.get(i).cloned()));
        }
        rows.extend(per.iter().filter(|r| r.len() == 1).map(|r| r[0].clone()));
    }
    for r in rows.iter_mut() {
        let top = ceiling.iter().find(|c| c.size.is_some() && c.size == r.size && c.flows == r.flows);
        r.generator_bound = match (r.mpps, top.and_then(|c| c.mpps)) {
            (Some(m), Some(c)) => m.median >= GENERATOR_BOUND * c.median,
            _ => false,
        };
    }
    Summary { generator: plan.generator.describe(), ceiling, rows }
}

fn rows_for(plan: &Plan, res: &Results, sys: System) -> Vec<Row> {
    let name = sys.name();
    let never = res.missing.iter().find(|m| m.system == name && m.round.is_none());
    if let Some(m) = never {
        return vec![Row { system: name, note: Some(m.why.clone()), ..Row::default() }];
    }
    let failures: Vec<&str> =
        res.missing.iter().filter(|m| m.system == name && m.round.is_some()).map(|m| m.why.as_str()).collect();
    let why_none = || failures.first().map_or("no result".to_string(), |s| s.to_string());
    let base = sys.baseline().name();
    let packet = |s: &str, size: usize, flows: u32| {
        let v: Vec<_> = res.packets.iter().filter(|p| p.system == s && p.size == size && p.flows == flows).collect();
        let mpps = Stat::of(&v.iter().map(|p| p.mpps).collect::<Vec<_>>());
        let ndr = Stat::of(&v.iter().filter_map(|p| p.ndr_mpps).collect::<Vec<_>>());
        let bound = v.iter().filter(|p| p.ndr_generator_bound).count();
        (mpps, ndr, bound)
    };
    let tcp = |s: &str| Stat::of(&res.tcp.iter().filter(|t| t.system == s).map(|t| t.gbps).collect::<Vec<_>>());
    let ratio = |a: Option<Stat>, b: Option<Stat>| match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => Some(a.median / b.median),
        _ => None,
    };
    let mut rows = Vec::new();
    for &size in &plan.sizes {
        for &flows in &plan.flows {
            let (mpps, ndr, bound) = packet(name, size, flows);
            let (base_mpps, _, _) = packet(base, size, flows);
            rows.push(Row {
                system: name,
                size: Some(size),
                flows: Some(flows),
                mpps,
                ndr_mpps: ndr,
                ndr_generator_bound: bound,
                tcp_gbps: None,
                hosts_tx_off: false,
                generator_bound: false,
                vs_rvs: ratio(mpps, base_mpps),
                note: mpps.is_none().then(&why_none),
            });
        }
    }
    if plan.tcp_secs.is_some() {
        let t = tcp(name);
        rows.push(Row {
            system: name,
            tcp_gbps: t,
            hosts_tx_off: res.tcp.iter().any(|t| t.system == name && t.hosts_tx_off),
            vs_rvs: ratio(t, tcp(base)),
            note: t.is_none().then(why_none),
            ..Row::default()
        });
    }
    rows
}

/// The table as text.
pub fn table(s: &Summary) -> String {
    let mut out = String::new();
    let head = ["system", "frame", "flows", "Mpps at full load", "NDR Mpps", "TCP Gbit/s", "vs rvs"];
    let cells = |r: &Row| -> Vec<String> {
        let dash = || "–".to_string();
        let mut v = vec![
            r.system.to_string(),
            r.size.map(|s| format!("{s} B")).unwrap_or_else(|| if r.note.is_some() { dash() } else { "TCP".into() }),
            r.flows.map(|f| f.to_string()).unwrap_or_else(dash),
            r.mpps.map(|m| m.show(3) + if r.generator_bound { " ‡" } else { "" }).unwrap_or_else(dash),
            r.ndr_mpps.map(|m| m.show(3) + if r.ndr_generator_bound > 0 { " *" } else { "" }).unwrap_or_else(dash),
            r.tcp_gbps.map(|m| m.show(2) + if r.hosts_tx_off { " †" } else { "" }).unwrap_or_else(dash),
            r.vs_rvs.map(|x| format!("{x:.2}")).unwrap_or_else(dash),
        ];
        if let Some(n) = &r.note {
            v[3] = n.clone();
        }
        v
    };
    let ceiling_title = format!("generator ceiling: {}, straight into the XDP drop", s.generator);
    for (title, rows) in [(ceiling_title.as_str(), &s.ceiling), ("systems", &s.rows)] {
        let body: Vec<Vec<String>> = rows.iter().map(cells).collect();
        let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
        for r in &body {
            for (w, c) in width.iter_mut().zip(r) {
                // A note spans the rest of the line; do not widen for it.
                *w = (*w).max(if c.chars().count() > 40 { 0 } else { c.chars().count() });
            }
        }
        let _ = writeln!(out, "{title}");
        let line = |out: &mut String, r: &[String]| {
            let cols: Vec<String> = r.iter().zip(&width).map(|(c, w)| format!("{c:<w$}", w = *w)).collect();
            let _ = writeln!(out, "| {} |", cols.join(" | "));
        };
        line(&mut out, &head.map(String::from));
        let _ = writeln!(out, "|{}|", width.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
        for r in &body {
            line(&mut out, r);
        }
        out.push('\n');
    }
    if s.rows.iter().any(|r| r.generator_bound) {
        let _ = writeln!(
            out,
            "‡ at {:.0} % or more of the generator's ceiling for this frame size and flow count: the generator\n  \
             may be what limits it",
            GENERATOR_BOUND * 100.0
        );
    }
    if s.rows.iter().any(|r| r.ndr_generator_bound > 0) {
        out.push_str(
            "* in some rounds the generator, pacing, fell short of the rate asked for (the switch forwards on\n  \
             its core, or the core was busy): the NDR is at least this\n",
        );
    }
    if s.rows.iter().any(|r| r.hosts_tx_off) {
        out.push_str(
            "† hosts with checksum offload off (`ethtool -K DEV tx off`), without which Open vSwitch and testpmd\n  \
             pass TCP on with checksums unfilled (and OVS drops VXLAN); rvs and the kernel's switches run with\n  \
             the hosts' default offloads\n",
        );
    }
    out
}
