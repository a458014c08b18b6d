//! rvs-bench: the throughput harness. Builds its own namespace topologies,
//! drives frames with an XDP generator on core 0 (live frames where the
//! kernel allows them, else an XDP loop amplifier), counts them with an XDP
//! drop at the far end, and prints rvs beside the
//! Linux bridge, kernel vxlan and (where installed) Open vSwitch and DPDK
//! testpmd. See BENCHMARKS.md at the repository root.

mod bench;
mod chart;
mod daemon;
mod frame;
mod generator;
mod ns;
mod progs;
mod report;
mod rvsd;
mod sh;
mod sink;
mod systems;
mod tcp;
mod trial;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use bench::Plan;
use systems::System;
use trial::Settings;

/// Throughput of rvs beside its peers, on namespaces and veth pairs built
/// for the run (needs root; kernel 5.18 or later).
#[derive(Parser, Debug)]
#[command(name = "rvs-bench", version)]
struct Args {
    /// Systems to measure, comma-separated: rvs-off (or rvs: every frame
    /// through rvs's polling thread), rvs-xdp and rvs-tc (rvs with the
    /// kernel's xdp or tc executor), linux-bridge, ovs-afxdp,
    /// testpmd-af_xdp, rvs-vxlan-off (or rvs-vxlan), rvs-vxlan-xdp,
    /// rvs-vxlan-tc, kernel-vxlan, ovs-afxdp-vxlan (default: all)
    #[arg(long, value_delimiter = ',', value_parser = parse_system)]
    systems: Vec<System>,
    /// A short run: 64 and 1518-byte frames, 1 round, short trials
    #[arg(long)]
    quick: bool,
    /// Print the results as JSON (with every raw sample) instead of the table
    #[arg(long)]
    json: bool,
    /// Also write the JSON to this file (the table still goes to stdout)
    #[arg(long, value_name = "PATH")]
    json_file: Option<PathBuf>,
    /// Also write the summary as CSV, one line per result
    #[arg(long, value_name = "PATH")]
    csv: Option<PathBuf>,
    /// Also write an SVG chart: Mpps per system and case as grouped bars,
    /// the generator's ceiling as a line, ratios to rvs labelled
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    /// Rounds of every measurement (default 3; 1 with --quick)
    #[arg(long)]
    runs: Option<u32>,
    /// Frame sizes in bytes with FCS, comma-separated (default 64,512,1518)
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(64..=1518))]
    sizes: Vec<u16>,
    /// Flow counts, comma-separated (default 1,1000)
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=frame::MAX_FLOWS as i64))]
    flows: Vec<u32>,
    /// Seconds of each full-load trial (default 2; 0.5 with --quick)
    #[arg(long)]
    trial_secs: Option<f64>,
    /// Skip the NDR search
    #[arg(long)]
    no_ndr: bool,
    /// How frames are made: live (BPF_PROG_TEST_RUN with live frames,
    /// which some kernels refuse), loop (an XDP loop amplifier on a veth
    /// pair), or auto: live where the kernel allows it, else loop
    #[arg(long, value_enum, default_value_t = generator::Method::Auto)]
    generator: generator::Method,
    /// Skip iperf3
    #[arg(long)]
    no_tcp: bool,
    /// Niceness of the generator's threads and of the switch daemons (rvsd,
    /// ovs-vswitchd, testpmd; the Linux bridge and kernel vxlan forward on
    /// the generator's thread), so that other work on the machine disturbs
    /// the measurement less; 0 leaves them as is
    #[arg(long, default_value_t = -10, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-20..=19))]
    nice: i32,
    /// Print the switch's counters after each system (rvsd's stats and pmd
    /// show, OVS's PMD stats, testpmd's port statistics) and every
    /// namespace's `ip -s link`, to see where frames were dropped
    #[arg(long, short)]
    verbose: bool,
    /// rvsd to run (default: next to rvs-bench)
    #[arg(long)]
    rvsd: Option<PathBuf>,
    /// rvsctl to run (default: next to rvsd)
    #[arg(long)]
    rvsctl: Option<PathBuf>,
}

fn parse_system(s: &str) -> Result<System, String> {
    System::parse(s).ok_or_else(|| {
        let names: Vec<_> = System::ALL.iter().map(|s| s.name()).collect();
        format!("unknown system {s:?} (one of: {})", names.join(", "))
    })
}

fn plan(a: &Args) -> Result<Plan, String> {
    let mut systems = if a.systems.is_empty() { System::ALL.to_vec() } else { a.systems.clone() };
    systems.dedup();
    let sizes: Vec<usize> = match (a.sizes.is_empty(), a.quick) {
        (false, _) => a.sizes.iter().map(|&s| s as usize).collect(),
        (true, true) => vec![64, 1518],
        (true, false) => vec![64, 512, 1518],
    };
    let flows = if a.flows.is_empty() { vec![1, 1000] } else { a.flows.clone() };
    let full = a.trial_secs.unwrap_or(if a.quick { 0.5 } else { 2.0 });
    if !(0.05..=60.0).contains(&full) {
        return Err(format!("--trial-secs {full}: between 0.05 and 60"));
    }
    let settings = Settings {
        full: Duration::from_secs_f64(full),
        search: Duration::from_secs_f64(if a.quick { full * 0.6 } else { full / 2.0 }),
        precision: if a.quick { 0.1 } else { 0.02 },
        verbose: a.verbose,
    };
    Ok(Plan {
        systems,
        sizes,
        flows,
        rounds: a.runs.unwrap_or(if a.quick { 1 } else { 3 }).max(1),
        settings,
        ndr: !a.no_ndr,
        tcp_secs: (!a.no_tcp).then_some(if a.quick { 2 } else { 5 }),
        verbose: a.verbose,
        generator: generator::Method::resolve(a.generator)?,
        nice: a.nice,
    })
}

fn main() {
    let args = Args::parse();
    let code = match run(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rvs-bench: {e}");
            if e == "interrupted" {
                130
            } else {
                1
            }
        }
    };
    std::process::exit(code);
}

fn run(args: &Args) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (network namespaces, XDP); run with sudo".into());
    }
    for tool in ["ip", "ethtool", "ping", "iperf3", "ss"] {
        if !sh::have(tool) {
            return Err(format!("{tool} not found (apt-get install iproute2 ethtool iputils-ping iperf3)"));
        }
    }
    let plan = plan(args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| format!("installing a signal handler: {e}"))?;
    }
    // What a killed run left: namespaces, then its daemons' folders.
    for name in ns::sweep_stale() {
        daemon::sweep(&name);
    }
    let wants_rvs = plan.systems.iter().any(|s| s.is_rvs());
    let bins = if wants_rvs { Some(rvsd::Bins::find(args.rvsd.clone(), args.rvsctl.clone())?) } else { None };
    let res = bench::run(&plan, bins.as_ref(), &stop)?;
    let summary = report::summarise(&plan, &res);
    let out = serde_json::json!({
            "machine": machine(),
            "plan": {
                "systems": plan.systems.iter().map(|s| s.name()).collect::<Vec<_>>(),
                "sizes": plan.sizes, "flows": plan.flows, "rounds": plan.rounds,
                "trial_secs": plan.settings.full.as_secs_f64(),
                "ndr_trial_secs": plan.settings.search.as_secs_f64(),
                "ndr_precision": plan.settings.precision,
                "tcp_secs": plan.tcp_secs,
                "nice": plan.nice,
                "generator": plan.generator,
            },
            "summary": summary,
            "raw": res,
    });
    let text = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
    let write =
        |p: &PathBuf, body: String| std::fs::write(p, body).map_err(|e| format!("writing {}: {e}", p.display()));
    if let Some(p) = &args.json_file {
        write(p, format!("{text}\n"))?;
    }
    if let Some(p) = &args.csv {
        write(p, chart::csv(&summary))?;
    }
    if let Some(p) = &args.svg {
        let m = machine();
        let title = format!(
            "rvs-bench: {} ({} cores), kernel {}; generator: {}",
            m["cpu"].as_str().unwrap_or("?"),
            m["cpus"],
            m["kernel"].as_str().unwrap_or("?"),
            plan.generator.describe()
        );
        write(p, chart::svg(&summary, &title))?;
    }
    if args.json {
        println!("{text}");
    } else {
        println!("{}", machine_line(plan.generator));
        print!("{}", report::table(&summary));
    }
    Ok(())
}

fn machine() -> serde_json::Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    serde_json::json!({ "kernel": kernel, "cpus": cpus, "cpu": model, "generator_core": generator::CORE })
}

fn machine_line(method: generator::Method) -> String {
    let m = machine();
    format!(
        "rvs-bench: kernel {}, {} cores ({}); generator: {} on core {}; AF_XDP switches polling on core 1\n",
        m["kernel"].as_str().unwrap_or("?"),
        m["cpus"],
        m["cpu"].as_str().unwrap_or("?"),
        method.describe(),
        generator::CORE
    )
}
