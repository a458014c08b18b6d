//! The results as files to look at: a CSV of the summary (one line per
//! result, the generator's ceiling included) and an SVG chart of grouped
//! bars, Mpps per system for each frame size and flow count, the
//! generator's ceiling drawn across each group, each bar labelled with its
//! ratio to rvs; TCP Gbit/s in a panel of its own.

use std::fmt::Write;

use crate::report::Summary;

/// The summary as CSV: a header, then the ceiling's lines and the systems'.
pub fn csv(s: &Summary) -> String {
    let mut out =
        String::from("system,frame_bytes,flows,mpps,mpps_min,mpps_max,ndr_mpps,tcp_gbps,vs_rvs,generator_bound,note\n");
    let num = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_default();
    for r in s.ceiling.iter().chain(&s.rows) {
        let fields = [
            field(r.system),
            r.size.map(|v| v.to_string()).unwrap_or_else(|| {
                if r.tcp_gbps.is_some() {
                    "tcp".into()
                } else {
                    String::new()
                }
            }),
            r.flows.map(|v| v.to_string()).unwrap_or_default(),
            num(r.mpps.map(|m| m.median)),
            num(r.mpps.map(|m| m.min)),
            num(r.mpps.map(|m| m.max)),
            num(r.ndr_mpps.map(|m| m.median)),
            num(r.tcp_gbps.map(|m| m.median)),
            num(r.vs_rvs),
            r.generator_bound.to_string(),
            field(r.note.as_deref().unwrap_or("")),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

const BAR: f64 = 18.0;
const GAP: f64 = 26.0;
const PLOT_H: f64 = 260.0;
const TOP: f64 = 60.0;
const LEFT: f64 = 60.0;
const PALETTE: [&str; 10] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

/// One group of bars: a label, the bars (system index, value, ratio), and
/// the generator's ceiling for it, if known.
struct Group {
    label: String,
    bars: Vec<(usize, f64, Option<f64>)>,
    ceiling: Option<f64>,
}

/// The chart as an SVG document: one `rect` of class `bar` per result.
pub fn svg(s: &Summary, title: &str) -> String {
    let mut systems: Vec<&str> = Vec::new();
    let mut index = |name: &'static str| match systems.iter().position(|&n| n == name) {
        Some(i) => i,
        None => {
            systems.push(name);
            systems.len() - 1
        }
    };
    let mut packet: Vec<Group> = Vec::new();
    let mut tcp = Group { label: "TCP".into(), bars: Vec::new(), ceiling: None };
    for r in &s.rows {
        if let (Some(size), Some(flows), Some(m)) = (r.size, r.flows, r.mpps) {
            let label = format!("{size} B, {flows} flow{}", if flows == 1 { "" } else { "s" });
            let at = match packet.iter().position(|g| g.label == label) {
                Some(i) => i,
                None => {
                    let ceiling = s.ceiling.iter().find(|c| c.size == r.size && c.flows == r.flows);
                    packet.push(Group {
                        label,
                        bars: Vec::new(),
                        ceiling: ceiling.and_then(|c| c.mpps).map(|m| m.median),
                    });
                    packet.len() - 1
                }
            };
            let i = index(r.system);
            packet[at].bars.push((i, m.median, r.vs_rvs));
        } else if let Some(t) = r.tcp_gbps {
            let i = index(r.system);
            tcp.bars.push((i, t.median, r.vs_rvs));
        }
    }
    let width_of = |gs: &[Group]| gs.iter().map(|g| g.bars.len() as f64 * BAR + GAP).sum::<f64>() + GAP;
    let packet_w = width_of(&packet).max(200.0);
    let tcp_w = if tcp.bars.is_empty() { 0.0 } else { width_of(std::slice::from_ref(&tcp)) + LEFT };
    let legend_h = 18.0 * systems.len().div_ceil(4) as f64;
    let width = LEFT + packet_w + tcp_w + 20.0;
    let height = TOP + PLOT_H + 50.0 + legend_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(out, r#"<text x="{LEFT}" y="22" font-size="14" font-weight="bold">{}</text>"#, escape(title));
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="40" fill="#555">bars: delivered at full load; label: ratio to rvs; dashed: the generator's ceiling</text>"##
    );
    panel(&mut out, &packet, LEFT, "Mpps", &systems);
    if !tcp.bars.is_empty() {
        panel(&mut out, std::slice::from_ref(&tcp), LEFT + packet_w + LEFT, "Gbit/s", &systems);
    }
    for (i, name) in systems.iter().enumerate() {
        let x = LEFT + (i % 4) as f64 * 170.0;
        let y = TOP + PLOT_H + 42.0 + (i / 4) as f64 * 18.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            y - 10.0,
            PALETTE[i % PALETTE.len()],
            x + 16.0,
            y,
            escape(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// One panel at `x0`: axis, groups of bars, ceilings and labels.
fn panel(out: &mut String, groups: &[Group], x0: f64, unit: &str, systems: &[&str]) {
    let top = groups
        .iter()
        .flat_map(|g| g.bars.iter().map(|b| b.1).chain(g.ceiling))
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let (step, max) = axis(top);
    let y_of = |v: f64| TOP + PLOT_H - v / max * PLOT_H;
    let w = groups.iter().map(|g| g.bars.len() as f64 * BAR + GAP).sum::<f64>() + GAP;
    let _ = writeln!(
        out,
        r##"<line x1="{x0}" y1="{TOP}" x2="{x0}" y2="{:.1}" stroke="#333"/><line x1="{x0}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        TOP + PLOT_H,
        TOP + PLOT_H,
        x0 + w,
        TOP + PLOT_H
    );
    let _ = writeln!(out, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{unit}</text>"#, x0 - 30.0, TOP - 8.0);
    let mut v = 0.0;
    while v <= max + step / 2.0 {
        let y = y_of(v);
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 + w,
            x0 - 4.0,
            y + 4.0,
            trim(v)
        );
        v += step;
    }
    let mut x = x0 + GAP;
    for g in groups {
        let gw = g.bars.len() as f64 * BAR;
        for (k, &(sys, value, ratio)) in g.bars.iter().enumerate() {
            let bx = x + k as f64 * BAR;
            let y = y_of(value);
            let _ = writeln!(
                out,
                r#"<rect class="bar" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {value:.3} {unit}</title></rect>"#,
                bx + 1.0,
                BAR - 2.0,
                TOP + PLOT_H - y,
                PALETTE[sys % PALETTE.len()],
                escape(systems[sys])
            );
            if let Some(r) = ratio {
                let _ = writeln!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="start" transform="rotate(-90 {:.1} {:.1})">{r:.2}×</text>"#,
                    bx + BAR / 2.0 + 3.0,
                    y - 3.0,
                    bx + BAR / 2.0 + 3.0,
                    y - 3.0
                );
            }
        }
        if let Some(c) = g.ceiling {
            let y = y_of(c);
            let _ = writeln!(
                out,
                r##"<line class="ceiling" x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#000" stroke-dasharray="4 3"/>"##,
                x - 4.0,
                x + gw + 4.0
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x + gw / 2.0,
            TOP + PLOT_H + 16.0,
            escape(&g.label)
        );
        x += gw + GAP;
    }
}

/// A tick step of 1, 2 or 5 × 10^k giving about 5 ticks, and the axis top.
fn axis(top: f64) -> (f64, f64) {
    let raw = top / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    (step, (top / step).ceil() * step)
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Row, Stat};

    fn stat(m: f64) -> Option<Stat> {
        Some(Stat { median: m, min: m * 0.9, max: m * 1.1, runs: 3 })
    }

    fn summary() -> Summary {
        let pkt = |system, size, flows, m: f64, r: Option<f64>| Row {
            system,
            size: Some(size),
            flows: Some(flows),
            mpps: stat(m),
            vs_rvs: r,
            ..Row::default()
        };
        let tcp = |system, g: f64, r| Row { system, tcp_gbps: stat(g), vs_rvs: Some(r), ..Row::default() };
        Summary {
            generator: "live frames",
            ceiling: vec![pkt("generator", 64, 1, 9.5, None), pkt("generator", 1518, 1, 4.0, None)],
            rows: vec![
                pkt("rvs-off", 64, 1, 2.0, Some(1.0)),
                pkt("linux-bridge", 64, 1, 1.6, Some(0.8)),
                pkt("rvs-off", 1518, 1, 1.5, Some(1.0)),
                pkt("linux-bridge", 1518, 1, 1.2, Some(0.8)),
                tcp("rvs-off", 4.0, 1.0),
                tcp("linux-bridge", 19.0, 4.75),
                Row { system: "ovs-afxdp", note: Some("not installed: ovs-vswitchd, \"x\"".into()), ..Row::default() },
            ],
        }
    }

    #[test]
    fn csv_has_a_line_per_result() {
        let text = csv(&summary());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 2 + 7, "{text}");
        assert!(lines[0].starts_with("system,frame_bytes,flows,mpps"));
        assert_eq!(lines[3], "rvs-off,64,1,2.0000,1.8000,2.2000,,,1.0000,false,");
        assert!(lines[8].starts_with("linux-bridge,tcp,,,,,,19.0000,4.7500,false"), "{}", lines[8]);
        assert!(lines[9].ends_with(",\"not installed: ovs-vswitchd, \"\"x\"\"\""), "{}", lines[9]);
    }

    #[test]
    fn svg_is_well_formed_with_a_bar_per_result() {
        let text = svg(&summary(), "rvs-bench <test> & more");
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let bars = doc.descendants().filter(|n| n.attribute("class") == Some("bar")).count();
        assert_eq!(bars, 6, "4 packet results and 2 TCP results");
        let ceilings = doc.descendants().filter(|n| n.attribute("class") == Some("ceiling")).count();
        assert_eq!(ceilings, 2);
        let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
        for want in ["0.80×", "4.75×", "64 B, 1 flow", "TCP", "linux-bridge", "rvs-bench <test> & more"] {
            assert!(texts.contains(&want), "{want} missing: {texts:?}");
        }
        // Bars stand on the axis and are no higher than the plot.
        for b in doc.descendants().filter(|n| n.attribute("class") == Some("bar")) {
            let y: f64 = b.attribute("y").unwrap().parse().unwrap();
            let h: f64 = b.attribute("height").unwrap().parse().unwrap();
            assert!(y >= TOP - 0.1 && (y + h - (TOP + PLOT_H)).abs() < 0.2, "{y} {h}");
        }
    }

    #[test]
    fn axis_steps_are_round() {
        for (top, want) in [(9.5, (2.0, 10.0)), (19.0, (5.0, 20.0)), (0.7, (0.2, 0.8))] {
            let (step, max) = axis(top);
            assert!((step - want.0).abs() < 1e-9 && (max - want.1).abs() < 1e-9, "{top}: {step} {max}");
        }
    }
}
