//! rvsd: the rvs host vswitch daemon.

use clap::{CommandFactory, Parser};
use rvs_dataplane::pmd::PmdOptions;
use rvs_proto::config::{ClusterConfig, EtcdAuth};
use rvs_switch::control::{server, state::State};
use rvs_switch::datapath::real::Dp;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The rvs host vswitch daemon: switches frames between AF_XDP and tap
/// ports on pinned polling threads; configure it with rvsctl.
#[derive(Parser, Debug)]
#[command(name = "rvsd", version)]
struct Args {
    /// Cores for polling threads, one pinned thread each: "1", "2,3", "0-3".
    /// Default: the last core of the machine.
    #[arg(long, value_parser = parse_cores)]
    cores: Option<CoreList>,
    /// Control socket path.
    #[arg(long, default_value = "/run/rvs/rvsd.sock")]
    socket: PathBuf,
    /// Configuration database.
    #[arg(long, default_value = "/var/lib/rvs/conf.json")]
    db: PathBuf,
    /// Group (name or id) allowed to use the control socket besides root.
    #[arg(long)]
    group: Option<String>,
    /// After 1 ms without traffic a polling thread sleeps until a frame or
    /// a command arrives; where a port cannot be waited on, it sleeps this
    /// many microseconds between polls instead (0: never sleep, busy-poll
    /// always: lowest latency, a full core).
    #[arg(long, default_value_t = 20)]
    idle_sleep_us: u64,
    /// Testing only: SIGUSR1 makes a polling thread panic, to exercise
    /// the supervision (rvsd logs it, shuts down in order, exits 1).
    #[arg(long, hide = true)]
    debug_faults: bool,
    /// etcd endpoints (http://HOST:PORT or https://HOST:PORT,
    /// comma-separated): join the cluster there; VXLAN ports without
    /// --remote take their remotes from it. Saved in the db (with the
    /// --etcd-* file paths and user, never a password), so later starts
    /// need not repeat it.
    #[arg(long, value_name = "URLS", requires = "node")]
    etcd: Option<String>,
    /// CA certificates (PEM) that etcd's server certificate must chain to;
    /// required with https:// endpoints.
    #[arg(long, value_name = "FILE", requires = "etcd")]
    etcd_cacert: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's --client-cert-auth (mutual TLS);
    /// needs --etcd-key.
    #[arg(long, value_name = "FILE", requires = "etcd", requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// Private key (PEM) of --etcd-cert.
    #[arg(long, value_name = "FILE", requires = "etcd", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// etcd user (etcd's auth enabled); its password comes from
    /// --etcd-password-file, else the RVS_ETCD_PASSWORD environment variable.
    /// There is no password option: a command line shows in ps.
    #[arg(long, value_name = "NAME", requires = "etcd")]
    etcd_user: Option<String>,
    /// File whose first line is the --etcd-user's password (keep it mode
    /// 0600).
    #[arg(long, value_name = "FILE", requires = "etcd_user")]
    etcd_password_file: Option<PathBuf>,
    /// This node's name in the cluster (with --etcd).
    #[arg(long, value_name = "NAME", requires = "etcd")]
    node: Option<String>,
    /// Seconds a node stays in the cluster after it stops renewing its lease.
    #[arg(long, value_name = "SECS", default_value_t = rvs_proto::config::DEFAULT_LEASE_TTL)]
    lease_ttl: u32,
    /// Serve Prometheus metrics over HTTP on this address (GET /metrics),
    /// e.g. 127.0.0.1:9477. Off unless given.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Log filter: a level (error, warn, info, debug, trace, off) or
    /// target=level pairs [default: $RUST_LOG, else warnings plus one line
    /// per configuration change]. Change it live with `rvsctl log-level`.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Log line format: text (timestamp, level, message), journal (a
    /// syslog priority prefix such as <4>, no timestamp: for journalctl -p),
    /// json (one object per line, for log shippers), or auto: journal when
    /// stderr is systemd's journal (JOURNAL_STREAM), else text.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "auto")]
    log_format: rvs_switch::obs::log::LogFormat,
    /// Check the configuration database (--db) and exit: 0 if rvsd would
    /// start with it, else one line naming the file. Touches no interface.
    #[arg(long)]
    check_config: bool,
    /// Print rvsd's man page (roff) and exit: `rvsd --man > rvsd.8`.
    #[arg(long, exclusive = true)]
    man: bool,
    /// Print a completion script for SHELL and exit.
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,
}

/// `--check-config`: what rvsd would restore, or why it would not start.
/// A db that does not exist yet is a fresh install's: rvsd starts with an
/// empty configuration and creates it on the first change.
fn check_config(db: &std::path::Path) -> Result<String, String> {
    if !db.exists() {
        return Ok(format!("{}: not there yet: rvsd starts with an empty configuration", db.display()));
    }
    let c = rvs_switch::db::load(db)?;
    let ports: usize = c.bridges.iter().map(|b| b.ports.len()).sum();
    Ok(format!("{}: ok ({} bridges, {ports} ports, {} uplinks)", db.display(), c.bridges.len(), c.uplinks.len()))
}

/// SIGHUP (a `systemctl reload`, a closed terminal) must not kill rvsd, as
/// its default action would: there is nothing to reload (the db is the
/// configuration, `rvsctl log-level` changes the log filter), so it is
/// logged and otherwise ignored.
fn ignore_hangup() -> Result<(), String> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .map_err(|e| format!("installing signal handler: {e}"))?;
    std::thread::Builder::new()
        .name("rvs-sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                tracing::info!(
                    target: rvs_switch::obs::log::DAEMON,
                    "SIGHUP ignored: nothing to reload (rvsctl log-level changes the log filter)"
                );
            }
        })
        .map(drop)
        .map_err(|e| format!("starting the SIGHUP thread: {e}"))
}

/// `path` made absolute (it is saved in the db, and a later start may run
/// elsewhere), as text.
fn absolute(path: Option<&std::path::Path>, flag: &str) -> Result<Option<String>, String> {
    let Some(path) = path else { return Ok(None) };
    let abs = std::path::absolute(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    abs.into_os_string().into_string().map(Some).map_err(|p| format!("{flag} {}: not UTF-8", p.display()))
}

/// Cores named by `--cores`, sorted, without duplicates.
#[derive(Clone, Debug)]
struct CoreList(Vec<usize>);

fn parse_cores(s: &str) -> Result<CoreList, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let bad = || format!("invalid core list {s:?} (expected e.g. 1 or 2,3 or 0-3)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                if a > b || b - a > 1024 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(CoreList(out))
}

fn run(args: Args) -> Result<(), String> {
    let filter = match (&args.log_level, std::env::var("RUST_LOG")) {
        (Some(f), _) => f.clone(),
        (None, Ok(f)) if !f.trim().is_empty() => f,
        _ => rvs_switch::obs::log::DEFAULT_FILTER.to_string(),
    };
    rvs_switch::obs::log::init(&filter, args.log_format)?;
    let cores = match args.cores {
        Some(CoreList(c)) => c,
        None => {
            let ids = core_affinity::get_core_ids().unwrap_or_default();
            vec![ids.last().map_or(0, |c| c.id)]
        }
    };
    let group = args.group.as_deref().map(server::group_id).transpose()?;
    // Read the db before touching any interface: a corrupt one stops us here.
    rvs_switch::db::load(&args.db)?;
    let cluster = match (&args.etcd, &args.node) {
        (Some(etcd), Some(node)) => {
            let etcd = etcd.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_string).collect();
            let auth = EtcdAuth {
                cacert: absolute(args.etcd_cacert.as_deref(), "--etcd-cacert")?,
                cert: absolute(args.etcd_cert.as_deref(), "--etcd-cert")?,
                key: absolute(args.etcd_key.as_deref(), "--etcd-key")?,
                user: args.etcd_user.clone(),
                password_file: absolute(args.etcd_password_file.as_deref(), "--etcd-password-file")?,
            };
            let cfg = ClusterConfig { etcd, node: node.clone(), lease_ttl_secs: args.lease_ttl, auth };
            rvs_proto::check_cluster(&cfg)?;
            Some(cfg)
        }
        _ => None,
    };
    let metrics = args
        .metrics
        .map(|a| {
            std::net::TcpListener::bind(a)
                .map_err(|e| format!("cannot serve metrics on {a}: {}", rvs_proto::client::io_msg(&e)))
        })
        .transpose()?;

    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, shutdown.clone()).map_err(|e| format!("installing signal handler: {e}"))?;
    }
    ignore_hangup()?;
    let opts = PmdOptions { idle_sleep: Duration::from_micros(args.idle_sleep_us), ..PmdOptions::default() };
    let mut dp = Dp::start(&cores, opts, shutdown.clone())?;
    if args.debug_faults {
        let fault = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, fault.clone())
            .map_err(|e| format!("installing signal handler: {e}"))?;
        dp.arm_fault_injection(fault);
    }
    let mut state = State::restore(&args.db, dp)?;
    match cluster {
        Some(cfg) => state.set_cluster(cfg)?,
        None => state.start_cluster()?,
    }
    tracing::info!(
        target: rvs_switch::obs::log::DAEMON,
        "started: cores={cores:?} socket={} db={}",
        args.socket.display(),
        args.db.display()
    );
    let served = server::serve_all(&args.socket, group, metrics, &mut state, &shutdown)
        .map_err(|e| format!("control socket {}: {e}", args.socket.display()));
    let mut dp = state.into_datapath();
    dp.shutdown();
    served?;
    if let Some(why) = dp.failure() {
        return Err(why);
    }
    tracing::info!(target: rvs_switch::obs::log::DAEMON, "stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.man {
        let mut out = Vec::new();
        return match clap_mangen::Man::new(Args::command()).section("8").render(&mut out) {
            Ok(()) => print(&out),
            Err(e) => fail(&format!("cannot render the man page: {e}")),
        };
    }
    if let Some(shell) = args.completions {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Args::command(), "rvsd", &mut out);
        return print(&out);
    }
    if args.check_config {
        return match check_config(&args.db) {
            Ok(line) => print(format!("{line}\n").as_bytes()),
            Err(e) => fail(&e),
        };
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The one-line error and exit status of the command, not a log
            // line: it must show even where logging never started.
            eprintln!("rvsd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `bytes` to stdout; a closed pipe is not an error worth a panic.
fn print(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|_| out.flush());
    ExitCode::SUCCESS
}

fn fail(e: &str) -> ExitCode {
    eprintln!("rvsd: {e}");
    ExitCode::FAILURE
}
