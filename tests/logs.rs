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
