//! An `rvsd` run for one measurement inside the switch namespace, with its
//! own socket and configuration database in a temporary folder, and the
//! `rvsctl` that talks to it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ns::Netns;
use crate::sh::{self, Result};

/// Where the rvs binaries are.
#[derive(Clone, Debug)]
pub struct Bins {
    /// rvsd.
    pub rvsd: PathBuf,
    /// rvsctl.
    pub rvsctl: PathBuf,
}

impl Bins {
    /// `rvsd`/`rvsctl` as given, or next to this executable (the same Cargo
    /// target folder).
    pub fn find(rvsd: Option<PathBuf>, rvsctl: Option<PathBuf>) -> Result<Bins> {
        let here = std::env::current_exe().map_err(|e| format!("finding rvs-bench's own path: {e}"))?;
        let dir = here.parent().unwrap_or(Path::new("."));
        let rvsd = rvsd.unwrap_or_else(|| dir.join("rvsd"));
        let rvsctl = rvsctl.unwrap_or_else(|| rvsd.with_file_name("rvsctl"));
        for p in [&rvsd, &rvsctl] {
            if !p.is_file() {
                return Err(format!(
                    "{} not found: build it (cargo build --release --workspace) or pass --rvsd/--rvsctl",
                    p.display()
                ));
            }
        }
        Ok(Bins { rvsd, rvsctl })
    }
}

/// A running rvsd; stopped (SIGTERM, then SIGKILL) and its folder removed
/// on drop.
pub struct Rvsd {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    rvsctl: PathBuf,
}

impl Rvsd {
    /// Starts `rvsd --cores CORES` inside `netns` at niceness `nice` and
    /// waits until it answers.
    pub fn start(bins: &Bins, netns: &Netns, cores: &str, nice: i32) -> Result<Rvsd> {
        let dir = std::env::temp_dir().join(format!("{}.rvsd", netns.name));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let socket = dir.join("rvsd.sock");
        let log_path = dir.join("rvsd.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        // nice and ip exec in turn, so the child's pid is rvsd's.
        let child = Command::new("nice")
            .args(["-n", &nice.to_string(), "ip", "netns", "exec", &netns.name])
            .arg(&bins.rvsd)
            .args(["--cores", cores, "--socket"])
            .arg(&socket)
            .arg("--db")
            .arg(dir.join("conf.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: Ctrl-C reaches rvs-bench, which stops it.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bins.rvsd.display()))?;
        let mut d = Rvsd { child, dir, socket, rvsctl: bins.rvsctl.clone() };
        let t = Instant::now();
        while d.ctl(&["bridge", "list"]).is_err() {
            if let Ok(Some(st)) = d.child.try_wait() {
                return Err(format!("rvsd exited ({st}) at start: {}", d.log_tail()));
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err(format!("rvsd did not answer within 10 s: {}", d.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    /// Runs `rvsctl --socket S ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let ctl = self.rvsctl.to_string_lossy();
        let sock = self.socket.to_string_lossy();
        let mut v = vec![&*ctl, "--socket", &*sock];
        v.extend_from_slice(args);
        sh::run(&v)
    }

    /// The last lines rvsd wrote to stderr.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("rvsd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl Drop for Rvsd {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: a signal to the rvsd this harness started (its pid).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let t = Instant::now();
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if t.elapsed() > Duration::from_secs(3) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
