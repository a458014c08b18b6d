//! A switch daemon (rvsd, ovsdb-server, ovs-vswitchd, testpmd) run inside a
//! namespace for one measurement, and the temporary folder that holds its
//! sockets, database and log. Both clean up on drop, also when a later
//! setup step fails.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::ns::Netns;
use crate::sh::Result;

/// How long a daemon gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// `<tmp>/<namespace>.<what>`, a daemon's folder (also what [`sweep`]
/// removes for a namespace left behind).
fn dir_path(netns: &str, what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{netns}.{what}"))
}

/// The folder kinds the systems make, for [`sweep`].
const DIR_KINDS: [&str; 3] = ["rvsd", "ovs", "testpmd"];

/// A switch daemon's processes (rvsd, Open vSwitch, testpmd), stopped on
/// drop.
pub trait Switch {
    /// The last lines of its log, for errors.
    fn log_tail(&self) -> String;
    /// Its counters, for `-v`.
    fn counters(&self) -> String;
}

/// Removes the daemon folders of namespace `netns` (one an rvs-bench that
/// was killed left behind).
pub fn sweep(netns: &str) {
    for what in DIR_KINDS {
        let _ = std::fs::remove_dir_all(dir_path(netns, what));
    }
}

/// A fresh folder, removed with its contents on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `<tmp>/<namespace>.<what>`, emptied if it exists; `what` is one of
    /// [`DIR_KINDS`].
    pub fn new(netns: &Netns, what: &str) -> Result<TempDir> {
        debug_assert!(DIR_KINDS.contains(&what), "{what} missing from DIR_KINDS");
        let p = dir_path(&netns.name, what);
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
        Ok(TempDir(p))
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to start a daemon.
pub struct Spec<'a> {
    /// Its name, for messages.
    pub what: &'static str,
    /// Niceness (`nice -n`), for those that poll; None leaves it as is.
    pub nice: Option<i32>,
    /// Program and arguments.
    pub argv: Vec<&'a OsStr>,
    /// Extra environment.
    pub env: Vec<(&'a str, &'a OsStr)>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

/// A running daemon: stopped (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    child: Child,
    what: &'static str,
    log: PathBuf,
}

impl Daemon {
    /// Starts `spec` inside `netns`, in a process group of its own (so that
    /// Ctrl-C reaches rvs-bench, which stops it).
    pub fn start(netns: &Netns, spec: Spec) -> Result<Daemon> {
        let log = std::fs::File::create(&spec.log).map_err(|e| format!("creating {}: {e}", spec.log.display()))?;
        let log2 = log.try_clone().map_err(|e| format!("{}: {e}", spec.log.display()))?;
        // nice and ip exec in turn, so the child's pid is the daemon's.
        let mut cmd = match spec.nice {
            Some(n) => {
                let mut c = Command::new("nice");
                c.args(["-n", &n.to_string(), "ip"]);
                c
            }
            None => Command::new("ip"),
        };
        let child = cmd
            .args(["netns", "exec", &netns.name])
            .args(&spec.argv)
            .envs(spec.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", spec.what))?;
        Ok(Daemon { child, what: spec.what, log: spec.log })
    }

    /// How it ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of its log, on one line.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        // Without control characters (testpmd clears the screen).
        let lines: Vec<String> = log
            .lines()
            .map(|l| l.chars().filter(|c| !c.is_control()).collect::<String>())
            .filter(|l| !l.trim().is_empty())
            .collect();
        format!("{}: {}", self.what, lines[lines.len().saturating_sub(5)..].join(" | "))
    }

    /// Waits up to `limit` for `ready` to hold, failing early if the daemon
    /// exits.
    pub fn wait_for(&mut self, limit: Duration, mut ready: impl FnMut(&Daemon) -> bool) -> Result<()> {
        let t = Instant::now();
        while !ready(self) {
            if let Some(st) = self.exited() {
                return Err(format!("{} exited ({st}) at start: {}", self.what, self.log_tail()));
            }
            if t.elapsed() > limit {
                return Err(format!("{} not ready within {} s: {}", self.what, limit.as_secs(), self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Once reaped, its pid may belong to another process: no signal.
        if self.exited().is_some() {
            return;
        }
        let pid = self.child.id() as i32;
        // SAFETY: a signal to the daemon this harness started, not yet
        // reaped (so the pid is still its own).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let t = Instant::now();
        while self.exited().is_none() {
            if t.elapsed() > STOP_GRACE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
