//! Issue 5: rvsd's log is quiet by default (warnings and one line per
//! accepted configuration change), and its filter changes at run time.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Waits (up to 5 s) until rvsd's log has a line containing `what`.
fn wait_log(rvsd: &Rvsd, what: &str) -> String {
    let t0 = Instant::now();
    loop {
        let log = rvsd.log_text();
        if log.contains(what) {
            return log;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no {what:?} in rvsd's log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn quiet_by_default_and_filter_changes_live() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let rvsd = Rvsd::start();
    rvsd.add_bridge("brl1");
    rvsd.ctl_ok(&["show"]);
    let log = wait_log(&rvsd, "bridge brl1 added");
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.iter().any(|l| l.contains("INFO") && l.ends_with("bridge brl1 added")), "{log}");
    assert!(!log.contains("DEBUG") && !log.contains("request:"), "debug lines by default:\n{log}");
    // A refused change is not logged as one.
    assert!(!rvsd.ctl(&["bridge", "add", "brl1"]).status.success());

    rvsd.ctl_ok(&["log-level", "debug"]);
    rvsd.ctl_ok(&["bridge", "list"]);
    wait_log(&rvsd, "\"cmd\":\"bridge_list\"");
    rvsd.ctl_ok(&["log-level", "error"]);
    let before = rvsd.log_text().lines().count();
    rvsd.add_bridge("brl2");
    rvsd.ctl_ok(&["log-level", "warn,config=info"]);
    let log = wait_log(&rvsd, "log filter set to \"warn,config=info\"");
    let added: Vec<&str> = log.lines().skip(before).collect();
    assert!(!added.iter().any(|l| l.contains("brl2")), "logged under the error filter: {added:?}");
    assert_eq!(log.matches("bridge brl1 added").count(), 1, "{log}");

    let e = one_line_error("log-level loud", &rvsd.ctl(&["log-level", "loud"]));
    assert!(e.contains("invalid log filter \"loud\""), "{e}");
}

#[test]
fn a_bad_log_filter_stops_rvsd_with_one_line() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let o = rvsd_refusing(&["--log-level", "noisy"]);
    let e = one_line_error("rvsd --log-level noisy", &o);
    assert!(e.starts_with("rvsd: invalid log filter \"noisy\""), "{e}");
}

/// Runs rvsd (its own socket, db and log file in a temporary directory)
/// with `args` and, if `journal`, JOURNAL_STREAM naming its stderr file as
/// systemd does; adds a bridge, stops it; returns the log.
fn log_of_run(args: &[&str], journal: bool) -> String {
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::temp_dir().join(format!("rvst-logfmt-{}", tag()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    let socket = dir.join("rvsd.sock");
    let mut cmd = std::process::Command::new(rvsd_bin());
    cmd.args(["--cores", &default_cores(), "--socket", socket.to_str().unwrap()])
        .args(["--db", dir.join("db.json").to_str().unwrap()])
        .args(args)
        .stderr(file);
    if journal {
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    } else {
        cmd.env_remove("JOURNAL_STREAM");
    }
    let mut child = ChildGuard(cmd.spawn().expect("start rvsd"));
    let t0 = Instant::now();
    while !rvsctl(&socket, &["ping"]).status.success() {
        assert!(t0.elapsed() < Duration::from_secs(20), "rvsd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(rvsctl(&socket, &["bridge", "add", "brj"]).status.success());
    // A warning: a port on an interface that is not there.
    assert!(!rvsctl(&socket, &["port", "add", "brj", "rvs-no-such0", "--type", "afxdp"]).status.success());
    // SAFETY: signals our own child, not yet reaped.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert!(child.0.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    text
}

/// Issue 16: under systemd (stderr is the journal's stream) lines carry
/// a syslog priority prefix and no timestamp, so `journalctl -p` works;
/// `--log-format json` writes one object per line.
#[test]
fn journal_and_json_formats() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let journal = log_of_run(&[], true);
    let lines: Vec<&str> = journal.lines().collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let p = l.strip_prefix('<').and_then(|r| r.split_once('>')).map(|(p, _)| p);
        assert!(matches!(p, Some("3" | "4" | "6" | "7")), "no priority prefix: {l:?}\n{journal}");
        assert!(!l.contains("INFO") && !l.contains("WARN") && !l.contains("2026-"), "text line in journal mode: {l}");
    }
    assert!(lines.contains(&"<6>bridge brj added"), "{journal}");
    assert!(lines.iter().any(|l| l.starts_with("<6>started: cores=")), "{journal}");

    // The variable without the stream (stderr redirected): plain text.
    let text = log_of_run(&["--log-format", "auto"], false);
    assert!(text.lines().all(|l| !l.starts_with('<')) && text.contains("INFO"), "{text}");

    let json = log_of_run(&["--log-format", "json"], false);
    let objs: Vec<serde_json::Value> =
        json.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(objs.iter().all(|o| o["time"].is_string() && o["level"].is_string() && o["target"].is_string()));
    assert!(
        objs.iter().any(|o| o["level"] == "info" && o["target"] == "config" && o["message"] == "bridge brj added"),
        "{json}"
    );

    // clap's usage error: exit 2, naming the value and the choices.
    let o = rvsd_refusing(&["--log-format", "xml"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("'xml'") && e.contains("journal, json"), "{e}");
}
