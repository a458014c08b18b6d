//! `rvs-bench --quick` against every system (rvs, the kernel's switches,
//! Open vSwitch and testpmd): the JSON is complete, every number is
//! positive (no speed is asserted), the generator it chose is named, the
//! peers' TCP is marked as run with the hosts' checksum offload off, and
//! nothing is left behind. Then each generator when asked for by name: the
//! loop amplifier works on any kernel; live frames work or are refused in
//! one line.
//!
//! Needs root, iproute2, ethtool, ping and iperf3, and rvsd/rvsctl built
//! next to rvs-bench (`cargo build --release --workspace`, as
//! scripts/test.sh does). Without root or a tool it prints "skipped" and
//! passes; a peer that is not installed (openvswitch-switch, dpdk-dev,
//! librte-net-af-xdp23) is skipped with a message. Under `CI=true` both
//! fail instead.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde_json::Value;

/// True if the test may run; panics under `CI=true` when it cannot.
fn require_root() -> bool {
    rvs_dataplane::testing::require_root("rvs-bench test", &["ip", "ethtool", "ping", "iperf3", "ss"])
}

fn bench_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rvs-bench"))
}

fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The systems that ran: those of the plan less the ones rvs-bench found
/// not installed (allowed outside CI only). Any other missing result fails.
fn systems_run(v: &Value) -> Vec<String> {
    let planned: Vec<String> = v["plan"]["systems"]
        .as_array()
        .expect("plan.systems")
        .iter()
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    let missing = v["raw"]["missing"].as_array().expect("raw.missing");
    let mut absent = Vec::new();
    for m in missing {
        let why = m["why"].as_str().unwrap_or("");
        let not_installed = m["round"].is_null() && why.starts_with("not installed");
        assert!(not_installed, "missing result: {m}");
        assert!(!under_ci(), "under CI=true every peer must be installed (scripts/test.sh installs them): {m}");
        eprintln!("skipped {}: {why}", m["system"]);
        absent.push(m["system"].as_str().unwrap_or("").to_string());
    }
    planned.into_iter().filter(|s| !absent.contains(s)).collect()
}

fn positive(v: &Value, what: &str) -> f64 {
    let x = v.as_f64().unwrap_or_else(|| panic!("{what}: not a number: {v}"));
    assert!(x > 0.0 && x.is_finite(), "{what}: {x} is not positive");
    x
}

/// Runs rvs-bench with `args`; returns its exit status, stdout and stderr
/// (stderr also echoed), after checking that it left no namespace behind.
/// One run at a time: runs side by side would load each other's cores.
fn bench(args: &[&str]) -> (std::process::ExitStatus, Vec<u8>, String) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let child = Command::new(bench_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rvs-bench");
    let pid = child.id();
    let out = child.wait_with_output().expect("run rvs-bench");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    eprint!("{err}");
    // Nothing left behind: the run's namespaces (and the veths and XDP
    // programs in them) are gone.
    let left: Vec<String> = std::fs::read_dir("/var/run/netns")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let prefix = format!("rvsb-{pid}-");
    assert!(!left.iter().any(|n| n.starts_with(&prefix)), "namespaces left behind: {left:?}");
    (out.status, out.stdout, err)
}

/// The JSON of a successful run.
fn bench_json(args: &[&str]) -> Value {
    let (status, out, _) = bench(args);
    assert!(status.success(), "rvs-bench {} failed: {status}", args.join(" "));
    serde_json::from_slice(&out).expect("rvs-bench --json prints JSON")
}

/// Every size and flow count of the plan has a positive ceiling.
fn check_ceiling(v: &Value, sizes: &[u64], flows: &[u64]) {
    let ceiling = v["summary"]["ceiling"].as_array().expect("summary.ceiling");
    for &size in sizes {
        for &f in flows {
            let row = ceiling
                .iter()
                .find(|r| r["size"].as_u64() == Some(size) && r["flows"].as_u64() == Some(f))
                .unwrap_or_else(|| panic!("no ceiling row for {size} B, {f} flows"));
            positive(&row["mpps"]["median"], &format!("ceiling {size} B {f} flows"));
        }
    }
}

#[test]
fn quick_run_reports_every_number() {
    if !require_root() {
        return;
    }
    let rvsd = bench_bin().with_file_name("rvsd");
    assert!(
        rvsd.is_file() && rvsd.with_file_name("rvsctl").is_file(),
        "{} or rvsctl not found: build them first (cargo build --release --workspace)",
        rvsd.display()
    );
    let v = bench_json(&["--quick", "--json"]);
    let method = v["plan"]["generator"].as_str().expect("plan.generator");
    assert!(method == "live" || method == "loop", "generator {method:?}");
    assert!(v["summary"]["generator"].as_str().is_some_and(|s| !s.is_empty()), "summary.generator");

    let sizes: Vec<u64> = v["plan"]["sizes"].as_array().expect("plan.sizes").iter().filter_map(Value::as_u64).collect();
    let flows: Vec<u64> = v["plan"]["flows"].as_array().expect("plan.flows").iter().filter_map(Value::as_u64).collect();
    assert!(!sizes.is_empty() && !flows.is_empty());
    let systems = systems_run(&v);
    for sys in [
        "rvs-off",
        "rvs-xdp",
        "rvs-tc",
        "linux-bridge",
        "rvs-vxlan-off",
        "rvs-vxlan-xdp",
        "rvs-vxlan-tc",
        "kernel-vxlan",
    ] {
        assert!(systems.iter().any(|s| s == sys), "{sys} did not run");
    }

    check_ceiling(&v, &sizes, &flows);

    let rows = v["summary"]["rows"].as_array().expect("summary.rows");
    for sys in &systems {
        for &size in &sizes {
            for &f in &flows {
                let row = rows
                    .iter()
                    .find(|r| {
                        r["system"] == sys.as_str()
                            && r["size"].as_u64() == Some(size)
                            && r["flows"].as_u64() == Some(f)
                    })
                    .unwrap_or_else(|| panic!("no row for {sys}, {size} B, {f} flows"));
                let what = format!("{sys} {size} B {f} flows");
                positive(&row["mpps"]["median"], &format!("{what} Mpps"));
                positive(&row["ndr_mpps"]["median"], &format!("{what} NDR"));
                positive(&row["vs_rvs"], &format!("{what} ratio"));
                assert!(row["generator_bound"].is_boolean(), "{what}: generator_bound");
            }
        }
        let tcp = rows
            .iter()
            .find(|r| r["system"] == sys.as_str() && r["size"].is_null() && r["note"].is_null())
            .unwrap_or_else(|| panic!("no TCP row for {sys}"));
        positive(&tcp["tcp_gbps"]["median"], &format!("{sys} TCP"));
        // Only the peers that need it run TCP with the hosts' offload off.
        let peer = sys.starts_with("ovs") || sys.starts_with("testpmd");
        assert_eq!(tcp["hosts_tx_off"].as_bool(), Some(peer), "{sys}: hosts_tx_off");
    }
    for s in v["raw"]["packets"].as_array().expect("raw.packets") {
        for k in ["offered_mpps", "mpps", "ndr_mpps"] {
            if !(s["system"].as_str().unwrap_or("").starts_with("generator") && k == "ndr_mpps") {
                positive(&s[k], &format!("raw {k} of {s}"));
            }
        }
    }
}

#[test]
fn loop_generator_runs_when_asked() {
    if !require_root() {
        return;
    }
    let args = ["--generator", "loop", "--systems", "linux-bridge", "--quick", "--no-tcp", "--sizes", "64,1518"];
    let v = bench_json(&[&args[..], &["--json"]].concat());
    assert_eq!(v["plan"]["generator"], "loop");
    assert!(v["raw"]["missing"].as_array().expect("raw.missing").is_empty(), "{}", v["raw"]["missing"]);
    check_ceiling(&v, &[64, 1518], &[1, 1000]);
    let rows = v["summary"]["rows"].as_array().expect("summary.rows");
    assert_eq!(rows.len(), 4, "linux-bridge: 2 sizes × 2 flow counts");
    for r in rows {
        positive(&r["mpps"]["median"], &format!("linux-bridge {r}"));
        positive(&r["ndr_mpps"]["median"], &format!("linux-bridge NDR {r}"));
    }
    // The table names the generator; the CSV and the SVG chart hold every
    // result (issue 16); progress is counted in steps.
    let dir = std::env::temp_dir().join(format!("rvs-bench-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (csv, svg) = (dir.join("r.csv"), dir.join("r.svg"));
    let files = ["--csv", csv.to_str().unwrap(), "--svg", svg.to_str().unwrap()];
    let (status, out, err) = bench(&[&args[..], &files[..]].concat());
    assert!(status.success());
    let table = String::from_utf8_lossy(&out);
    assert!(table.contains("generator: XDP loop amplifier"), "{table}");
    // The generator's ceiling and linux-bridge, one round: 2 steps.
    assert!(err.contains("[1/2] round 1/1: generator") && err.contains("[2/2] round 1/1: linux-bridge"), "{err}");
    let csv = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 4 + 4, "header, 4 ceiling lines, 4 linux-bridge lines:\n{csv}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("linux-bridge,")).count(), 4, "{csv}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the chart is well-formed XML");
    let bars = doc.descendants().filter(|n| n.attribute("class") == Some("bar")).count();
    assert_eq!(bars, 4, "one bar per result");
    let ceilings = doc.descendants().filter(|n| n.attribute("class") == Some("ceiling")).count();
    assert_eq!(ceilings, 4, "the generator's ceiling over each case");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn live_frames_work_or_are_refused_in_one_line() {
    if !require_root() {
        return;
    }
    let (status, out, err) =
        bench(&["--generator", "live", "--systems", "linux-bridge", "--quick", "--no-tcp", "--sizes", "64", "--json"]);
    if status.success() {
        let v: Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(v["plan"]["generator"], "live");
        check_ceiling(&v, &[64], &[1, 1000]);
    } else {
        assert_eq!(status.code(), Some(1));
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("rvs-bench: BPF_PROG_TEST_RUN with live frames"), "{err}");
    }
}
