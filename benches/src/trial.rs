//! Trials on a built bed: full offered load, the no-drop rate (NDR) by
//! binary search, as FD.io CSIT's NDR search does with a loss ratio of 0.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::generator::Generator;
use crate::sh::Result;
use crate::sink::Sink;

/// How long the switch gets to empty its queues after a trial.
const DRAIN: Duration = Duration::from_millis(50);

/// One trial's outcome.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Offered (sent) frames per second.
    pub offered: f64,
    /// Delivered frames per second (counted at the sink over the same time).
    pub delivered: f64,
    /// Frames sent and not counted.
    pub lost: u64,
}

/// Trial settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Length of the full-load trial.
    pub full: Duration,
    /// Length of each NDR search trial.
    pub search: Duration,
    /// The search stops when its bounds are this close (relative).
    pub precision: f64,
    /// Print every search trial.
    pub verbose: bool,
}

/// What a trial sends: a frame from host A's generator as some flows.
#[derive(Clone, Copy)]
pub struct Load<'a> {
    pub gen: &'a Generator,
    pub frame: &'a [u8],
    pub flows: u32,
}

/// Runs a trial: `load` at `rate` (or full speed) for `len`, counted at
/// `sink`.
pub fn trial(sink: &Sink, load: Load, rate: Option<f64>, len: Duration, stop: &AtomicBool) -> Result<Outcome> {
    let before = sink.count()?;
    let sent = load.gen.run(load.frame, load.flows, rate, len, stop)?;
    std::thread::sleep(DRAIN);
    let got = sink.count()? - before;
    let secs = sent.elapsed.as_secs_f64().max(1e-9);
    Ok(Outcome { offered: sent.pps(), delivered: got as f64 / secs, lost: sent.frames.saturating_sub(got) })
}

/// What the NDR search found.
#[derive(Clone, Copy, Debug)]
pub struct Ndr {
    /// The highest measured offered rate (frames per second) of a trial
    /// that lost nothing; 0 if every trial lost frames.
    pub pps: f64,
    /// The search stopped because the generator, pacing, twice could not
    /// offer the rate asked for (with the Linux bridge and kernel vxlan the
    /// forwarding runs on the generator's core; or the core was busy):
    /// `pps` is a lower bound.
    pub generator_bound: bool,
}

/// Searches the no-drop rate between 0 and `full.offered`, starting at the
/// rate delivered under full load, halving the interval between the
/// highest passing and the lowest failing rate.
pub fn ndr(sink: &Sink, load: Load, full: Outcome, set: Settings, stop: &AtomicBool) -> Result<Ndr> {
    if full.lost == 0 {
        return Ok(Ndr { pps: full.offered, generator_bound: false });
    }
    let (mut lo, mut hi) = (0.0f64, full.offered);
    let mut best = Ndr { pps: 0.0, generator_bound: false };
    let mut rate = full.delivered.min(hi * 0.99);
    // A floor keeps a search on a switch that drops at every rate finite.
    let floor = full.offered * 0.001;
    let mut retried = false;
    while hi - lo > set.precision * hi && rate > floor {
        let o = trial(sink, load, Some(rate), set.search, stop)?;
        if set.verbose {
            eprintln!(
                "    NDR trial at {:.3} Mpps: offered {:.3}, delivered {:.3}, lost {}",
                rate / 1e6,
                o.offered / 1e6,
                o.delivered / 1e6,
                o.lost
            );
        }
        if o.lost == 0 {
            best.pps = best.pps.max(o.offered);
            if o.offered < rate * (1.0 - set.precision) {
                // The rate asked for was not offered: try it once more (a
                // busy core), then stop (asking for more would repeat it).
                if retried {
                    best.generator_bound = true;
                    break;
                }
                retried = true;
                continue;
            }
            lo = rate;
        } else {
            hi = rate;
        }
        rate = (lo + hi) / 2.0;
    }
    Ok(best)
}
