//! Running rvs-cni as a container runtime does (a clean environment with
//! the CNI_* variables, the network configuration on stdin), from this
//! namespace or from inside a test host's, and reading host-local's
//! reservations.

use super::{rvsd_bin, Netns};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Debian's containernetworking-plugins puts host-local and the
/// other standard plugins.
pub const CNI_DIR: &str = "/usr/lib/cni";

/// `rvs-cni`, next to `rvsd` (built by `cargo build --workspace`).
pub fn cni_bin() -> PathBuf {
    let p = rvsd_bin().with_file_name("rvs-cni");
    assert!(p.is_file(), "{} not found: build it first with `cargo build --workspace`", p.display());
    p
}

/// What one plugin run gave back.
#[derive(Debug)]
pub struct Out {
    /// It exited 0.
    pub ok: bool,
    /// Its stdout (the result, or the error result).
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Out {
    /// Stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The error result's code, after checking it has the spec's shape.
    pub fn error_code(&self) -> u64 {
        assert!(!self.ok, "expected a failure: {self:?}");
        let v = self.json();
        assert!(v["cniVersion"].is_string() && v["msg"].is_string(), "not a CNI error result: {v}");
        v["code"].as_u64().unwrap_or_else(|| panic!("no code: {v}"))
    }
}

/// Runs rvs-cni `cmd` for container `id` (interface eth0, namespace
/// `netns` if given) with `stdin`. CNI_PATH starts with a directory that
/// does not exist, so the search goes on to the next one.
pub fn cni(cmd: &str, id: &str, netns: Option<&str>, stdin: &str) -> Out {
    plugin(&cni_bin(), cmd, id, netns, stdin)
}

/// Runs plugin `bin` as [`cni`] runs ours.
pub fn plugin(bin: &Path, cmd: &str, id: &str, netns: Option<&str>, stdin: &str) -> Out {
    exec_plugin(Command::new(bin), cmd, id, netns, stdin)
}

/// Runs ours as [`cni`] does, from inside namespace `ns` (a runtime on a
/// host whose network is `ns`).
pub fn cni_in(ns: &Netns, cmd: &str, id: &str, netns: Option<&str>, stdin: &str) -> Out {
    // The environment is cleared: `ip` by its full path.
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("ip");
    let mut c = Command::new(ip);
    c.args(["netns", "exec", &ns.name]).arg(cni_bin());
    exec_plugin(c, cmd, id, netns, stdin)
}

/// Runs the plugin command `c` with the CNI_* variables and `stdin`.
fn exec_plugin(mut c: Command, cmd: &str, id: &str, netns: Option<&str>, stdin: &str) -> Out {
    c.env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", format!("/nonexistent-rvs:{CNI_DIR}"));
    if let Some(ns) = netns {
        c.env("CNI_NETNS", ns);
    }
    let mut child =
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run the plugin");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// The addresses host-local (data directory `data_dir`) holds for
/// `network`, sorted.
pub fn reserved(data_dir: &Path, network: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data_dir.join(network))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    v.retain(|n| n.parse::<std::net::IpAddr>().is_ok());
    v.sort();
    v
}
