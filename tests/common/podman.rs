//! podman as the CNI client, isolated from the machine's own podman: its
//! storage, runtime state, containers.conf, CNI configuration directory
//! and plugin directory all live in one temporary directory (recipe in
//! AFXDP-NOTES.md: the CNI backend, runc, cgroupfs, no raised ulimits).
//! It runs in the network namespace of a test "host" (where the test's
//! rvsd runs too), so veth host ends and the chained plugins' firewall
//! rules land there, not on the machine. `nsenter --net`, not `ip netns
//! exec`: the latter remounts /sys, and runc then finds no cgroups.
//! Containers run from a root file system of busybox and iperf3 (with its
//! libraries), so no image or network access is needed.

use super::cni::CNI_DIR;
use super::{rvsd_bin, tag, Netns};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The tools a podman test needs.
pub const TOOLS: &[&str] = &["podman", "runc", "busybox", "nsenter", "iptables", "/usr/lib/cni/host-local"];

/// A private podman. Drop removes every container and the directory.
pub struct Podman {
    /// The temporary directory holding it all.
    pub dir: PathBuf,
    /// The host's network namespace, by name.
    host: String,
}

impl Podman {
    /// Sets up the directory: containers.conf, `bin/rvs` (our plugin, as
    /// the runtime finds it by `type`), `net/` for conflists, `rootfs/`.
    pub fn new(host: &Netns) -> Podman {
        let dir = std::env::temp_dir().join(format!("rvst-podman-{}", tag()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["bin", "net", "rootfs/bin", "rootfs/tmp", "ipam"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let pm = Podman { dir, host: host.name.clone() };
        let plugin = rvsd_bin().with_file_name("rvs-cni");
        assert!(plugin.is_file(), "{} not built", plugin.display());
        std::os::unix::fs::symlink(&plugin, pm.dir.join("bin/rvs")).unwrap();
        std::fs::write(
            pm.dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = []\n[network]\nnetwork_backend = \"cni\"\n\
                 cni_plugin_dirs = [\"{}\", \"{CNI_DIR}\"]\nnetwork_config_dir = \"{}\"\n",
                pm.dir.join("bin").display(),
                pm.dir.join("net").display()
            ),
        )
        .unwrap();
        make_rootfs(&pm.dir.join("rootfs"));
        pm
    }

    /// host-local's data directory for this podman's networks.
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.join("ipam")
    }

    /// Writes network `name`'s conflist: our plugin (`rvs` holds its
    /// keys: bridge, socket, portType, vlan, ipam, ...) chained with the
    /// standard portmap, firewall and tuning plugins.
    pub fn network(&self, name: &str, rvs: Value) {
        let mut rvs = rvs;
        rvs["type"] = "rvs".into();
        let list = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [
                rvs,
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "firewall", "backend": "iptables"},
                {"type": "tuning"},
            ],
        });
        std::fs::write(self.dir.join("net").join(format!("{name}.conflist")), list.to_string()).unwrap();
    }

    /// `podman ARGS` with this podman's storage and configuration.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{}", self.host))
            .arg("podman")
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(args);
        c
    }

    /// Runs `podman ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run podman")
    }

    /// Runs `podman ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "podman {args:?} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Starts container `name` on `network`, idle (`sleep`), in the
    /// background, with our root file system.
    pub fn start(&self, name: &str, network: &str) {
        let rootfs = self.dir.join("rootfs");
        self.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--stop-signal",
            "KILL",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "sleep",
            "3600",
        ]);
    }

    /// Runs `ARGS` in container `name`.
    pub fn exec(&self, name: &str, args: &[&str]) -> Output {
        let mut v = vec!["exec", name];
        v.extend_from_slice(args);
        self.run(&v)
    }

    /// The container's IPv4 address on its first network.
    pub fn ip(&self, name: &str) -> String {
        let out = self.ok(&["inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name]);
        out.split_whitespace().next().unwrap_or_else(|| panic!("{name} has no address: {out:?}")).to_string()
    }

    /// The path of the container's network namespace.
    pub fn netns(&self, name: &str) -> String {
        self.ok(&["inspect", "--format", "{{.NetworkSettings.SandboxKey}}", name]).trim().to_string()
    }

    /// True if `ping -c COUNT` from container `from` to `addr` gets answers
    /// (after up to 10 s for the first one).
    pub fn ping(&self, from: &str, addr: &str, count: u32) -> bool {
        let first = self.exec(from, &["ping", "-c", "1", "-w", "10", addr]).status.success();
        first && self.exec(from, &["ping", "-c", &count.to_string(), "-w", "10", addr]).status.success()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-f", "-t", "0", "--all"]);
        // Storage leaves mounts (shm, overlay) under the directory.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("grep -o ' {0}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l", self.dir.display()))
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// busybox (with the applets the tests use) and iperf3, each with the
/// shared libraries `ldd` names (none for a static busybox), at the same
/// paths as on the host.
fn make_rootfs(root: &Path) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).is_file()).expect("busybox");
    copy_with_libs(root, busybox, "bin/busybox");
    for applet in ["sh", "ping", "ping6", "ip", "sleep", "cat", "nc", "wget", "arping", "ls"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    copy_with_libs(root, "/usr/bin/iperf3", "usr/bin/iperf3");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
}

/// Copies `bin` to `root/to`, and the libraries it loads to their paths.
fn copy_with_libs(root: &Path, bin: &str, to: &str) {
    let ldd = Command::new("ldd").arg(bin).output().expect("ldd");
    let text = String::from_utf8_lossy(&ldd.stdout);
    let libs = text.split_whitespace().filter(|w| w.starts_with('/')).map(|l| (l, l.trim_start_matches('/')));
    for (from, to) in std::iter::once((bin, to)).chain(libs) {
        let to = root.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copying {from} into the rootfs: {e}"));
    }
}
