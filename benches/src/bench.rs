//! The whole run: every chosen system in turn, round after round (so
//! systems are interleaved and drift hits all alike), each on a fresh bed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::frame;
use crate::generator::{Generator, Method};
use crate::rvsd::Bins;
use crate::sh::Result;
use crate::sink::Sink;
use crate::systems::{Kind, System};
use crate::tcp;
use crate::trial::{self, Load, Settings};

/// What to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Systems, in table order.
    pub systems: Vec<System>,
    /// Frame sizes (bytes on the wire with FCS).
    pub sizes: Vec<usize>,
    /// Flow counts.
    pub flows: Vec<u32>,
    /// Rounds (runs of each measurement).
    pub rounds: u32,
    /// Trial lengths and search precision.
    pub settings: Settings,
    /// Search the NDR.
    pub ndr: bool,
    /// iperf3 seconds (None: no TCP).
    pub tcp_secs: Option<u32>,
    /// How the generator makes frames (`Live` or `Loop`, resolved).
    pub generator: Method,
    /// Niceness of the generator and of a switch daemon's polling.
    pub nice: i32,
    /// After each system, print the switch daemon's counters (`rvsctl stats`,
    /// OVS's `pmd-stats-show`, testpmd's port statistics).
    pub verbose: bool,
}

/// One packet-rate measurement.
#[derive(Clone, Debug, Serialize)]
pub struct PacketSample {
    pub system: &'static str,
    pub kind: Kind,
    pub round: u32,
    pub size: usize,
    pub flows: u32,
    /// Offered at full load, Mpps.
    pub offered_mpps: f64,
    /// Delivered at full load, Mpps.
    pub mpps: f64,
    /// No-drop rate, Mpps (None when not searched).
    pub ndr_mpps: Option<f64>,
    /// The NDR is a lower bound: the generator could not offer more while
    /// pacing.
    pub ndr_generator_bound: bool,
}

/// One iperf3 measurement.
#[derive(Clone, Debug, Serialize)]
pub struct TcpSample {
    pub system: &'static str,
    pub kind: Kind,
    pub round: u32,
    pub gbps: f64,
    /// Measured with the hosts' checksum offload off (see [`crate::systems::Bed::hosts_tx_off`]).
    pub hosts_tx_off: bool,
}

/// A system or measurement that did not produce numbers, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Missing {
    pub system: &'static str,
    pub round: Option<u32>,
    pub why: String,
}

/// Everything measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Results {
    pub packets: Vec<PacketSample>,
    pub tcp: Vec<TcpSample>,
    pub missing: Vec<Missing>,
}

/// Runs `plan`: the generator's ceiling, then every system, `rounds` times.
/// Returns early with an error only when interrupted; a system that fails
/// is recorded in [`Results::missing`] and the others go on.
pub fn run(plan: &Plan, bins: Option<&Bins>, stop: &AtomicBool) -> Result<Results> {
    let mut res = Results::default();
    let mut runnable = vec![System::Ceiling];
    for &s in &plan.systems {
        match s.available() {
            Ok(()) => runnable.push(s),
            Err(why) => res.missing.push(Missing { system: s.name(), round: None, why }),
        }
    }
    if bins.is_none() {
        for s in runnable.iter().filter(|s| s.is_rvs()) {
            res.missing.push(Missing { system: s.name(), round: None, why: "rvsd/rvsctl not found".into() });
        }
        runnable.retain(|s| !s.is_rvs());
    }
    let steps = plan.rounds as usize * runnable.len();
    let started = std::time::Instant::now();
    let mut step = 0;
    for round in 1..=plan.rounds {
        for &sys in &runnable {
            if stop.load(Ordering::Relaxed) {
                return Err("interrupted".into());
            }
            step += 1;
            eprintln!(
                "[{step}/{steps}] round {round}/{}: {}{}",
                plan.rounds,
                sys.name(),
                left(started.elapsed(), step, steps)
            );
            if let Err(e) = measure(plan, bins, sys, round, &mut res, stop) {
                if stop.load(Ordering::Relaxed) {
                    return Err("interrupted".into());
                }
                eprintln!("  {}: {e}", sys.name());
                res.missing.push(Missing { system: sys.name(), round: Some(round), why: e });
            }
        }
    }
    Ok(res)
}

/// ", about N min left" after `done - 1` of `total` steps took `spent`
/// (systems differ in cost; the average is a fair guess over a run).
fn left(spent: Duration, step: usize, total: usize) -> String {
    let done = step.saturating_sub(1);
    if done == 0 {
        return String::new();
    }
    let secs = spent.as_secs_f64() / done as f64 * (total - done) as f64;
    if secs < 90.0 {
        format!(", about {secs:.0} s left")
    } else {
        format!(", about {:.0} min left", secs / 60.0)
    }
}

fn measure(
    plan: &Plan,
    bins: Option<&Bins>,
    sys: System,
    round: u32,
    res: &mut Results,
    stop: &AtomicBool,
) -> Result<()> {
    let bed = sys.build(bins, plan.nice)?;
    bed.learn()?;
    if let Some(secs) = plan.tcp_secs {
        let gbps = tcp::iperf3(&bed, secs)?;
        eprintln!("  TCP: {gbps:.2} Gbit/s{}", if bed.hosts_tx_off { " (hosts with tx off)" } else { "" });
        res.tcp.push(TcpSample { system: sys.name(), kind: sys.kind(), round, gbps, hosts_tx_off: bed.hosts_tx_off });
    }
    bed.packet_mode()?;
    let sink = Sink::attach(&bed.far, bed.sink_dev, bed.sink_port)?;
    // Declared after the bed: dropped (detached) before its namespaces go.
    let gen = Generator::attach(plan.generator, &bed.a, "eth0", plan.nice)?;
    // Settle: the first frames after an attach can meet a link not yet up.
    std::thread::sleep(Duration::from_millis(100));
    for &size in &plan.sizes {
        let f = frame::udp_frame(size, bed.dst_mac);
        for &flows in &plan.flows {
            let load = Load { gen: &gen, frame: &f, flows };
            let full = trial::trial(&sink, load, None, plan.settings.full, stop)?;
            let ndr = if plan.ndr && sys != System::Ceiling {
                Some(trial::ndr(&sink, load, full, plan.settings, stop)?)
            } else {
                None
            };
            if stop.load(Ordering::Relaxed) {
                return Err("interrupted".into());
            }
            eprintln!(
                "  {size} B, {flows} flow{}: offered {:.3} Mpps, delivered {:.3} Mpps{}{}",
                if flows == 1 { "" } else { "s" },
                full.offered / 1e6,
                full.delivered / 1e6,
                if plan.verbose { format!(" (lost {})", full.lost) } else { String::new() },
                ndr.map(|n| format!(", NDR {}{:.3} Mpps", if n.generator_bound { "≥ " } else { "" }, n.pps / 1e6))
                    .unwrap_or_default()
            );
            res.packets.push(PacketSample {
                system: sys.name(),
                kind: sys.kind(),
                round,
                size,
                flows,
                offered_mpps: full.offered / 1e6,
                mpps: full.delivered / 1e6,
                ndr_mpps: ndr.map(|n| n.pps / 1e6),
                ndr_generator_bound: ndr.is_some_and(|n| n.generator_bound),
            });
        }
    }
    if plan.verbose {
        if let Some(d) = &bed.switch {
            eprintln!("  {}", d.counters());
        }
        for n in [&bed.a].into_iter().chain(&bed.others).chain([&bed.far]) {
            eprintln!("  ip -s link in {}:\n{}", n.name, n.ip(&["-s", "link"]).unwrap_or_else(|e| e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_follows_the_average_step() {
        assert_eq!(left(Duration::ZERO, 1, 10), "");
        assert_eq!(left(Duration::from_secs(10), 2, 9), ", about 80 s left");
        assert_eq!(left(Duration::from_secs(60), 4, 10), ", about 2 min left");
    }
}
