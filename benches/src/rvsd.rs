//! An `rvsd` run for one measurement inside the switch namespace, with its
//! own socket and configuration database in a temporary folder, and the
//! `rvsctl` that talks to it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::daemon::{Daemon, Spec, Switch, TempDir};
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

/// A running rvsd; stopped and its folder removed on drop.
pub struct Rvsd {
    // Drop order: the daemon before its folder.
    daemon: Daemon,
    _dir: TempDir,
    socket: PathBuf,
    rvsctl: PathBuf,
}

impl Rvsd {
    /// Starts `rvsd --cores CORES` inside `netns` at niceness `nice` and
    /// waits until it answers.
    pub fn start(bins: &Bins, netns: &Netns, cores: &str, nice: i32) -> Result<Rvsd> {
        let dir = TempDir::new(netns, "rvsd")?;
        let socket = dir.join("rvsd.sock");
        let db = dir.join("conf.json");
        let spec = Spec {
            what: "rvsd",
            nice: Some(nice),
            argv: vec![
                bins.rvsd.as_os_str(),
                "--cores".as_ref(),
                cores.as_ref(),
                "--socket".as_ref(),
                socket.as_os_str(),
                "--db".as_ref(),
                db.as_os_str(),
            ],
            env: vec![],
            log: dir.join("rvsd.log"),
        };
        let daemon = Daemon::start(netns, spec)?;
        let mut d = Rvsd { daemon, _dir: dir, socket, rvsctl: bins.rvsctl.clone() };
        let (ctl, sock) = (d.rvsctl.clone(), d.socket.clone());
        d.daemon.wait_for(Duration::from_secs(10), |_| ctl_at(&ctl, &sock, &["bridge", "list"]).is_ok())?;
        Ok(d)
    }

    /// Runs `rvsctl --socket S ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        ctl_at(&self.rvsctl, &self.socket, args)
    }
}

impl Switch for Rvsd {
    fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    fn counters(&self) -> String {
        [&["stats"][..], &["pmd", "show"]]
            .iter()
            .map(|cmd| format!("rvsctl {}:\n{}", cmd.join(" "), self.ctl(cmd).unwrap_or_else(|e| e)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `RVSCTL --socket SOCKET ARGS`.
fn ctl_at(rvsctl: &Path, socket: &Path, args: &[&str]) -> Result<String> {
    let ctl = rvsctl.to_string_lossy();
    let sock = socket.to_string_lossy();
    let mut v = vec![&*ctl, "--socket", &*sock];
    v.extend_from_slice(args);
    sh::run(&v)
}
