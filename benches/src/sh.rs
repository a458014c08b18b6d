//! Running the tools the harness drives (ip, ethtool, ping, iperf3, rvsctl):
//! every failure comes back as one line naming the command and its stderr.

use std::path::Path;
use std::process::{Command, Stdio};

/// A harness error: one line for the user.
pub type Result<T> = std::result::Result<T, String>;

/// Runs `args` (program first) and returns its stdout; a non-zero exit is an
/// error carrying the command line and what it printed.
pub fn run(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if msg.is_empty() {
            msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        Err(format!("`{}` failed ({}): {}", args.join(" "), out.status, msg.replace('\n', " | ")))
    }
}

/// Runs `args` inside network namespace `ns` (`ip netns exec`).
pub fn run_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    run(&v)
}

/// `ip -n NS ARGS`.
pub fn ip(ns: &str, args: &[&str]) -> Result<String> {
    let mut v = vec!["ip", "-n", ns];
    v.extend_from_slice(args);
    run(&v)
}

/// True if `tool` is on the PATH or in one of the usual sbin/bin folders.
pub fn have(tool: &str) -> bool {
    let in_path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    in_path.unwrap_or(false)
        || ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().any(|d| Path::new(d).join(tool).is_file())
}
