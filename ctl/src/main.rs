//! rvsctl: the control tool for rvsd.
//!
//! Exit status: 0 on success, 1 when rvsd refuses a request or cannot be
//! reached, 2 for invalid arguments (nothing is sent then), 3 when what was
//! to be added exists, 4 when what was named does not (`cli::EXIT_STATUS`).

mod capture;
mod cli;
mod output;

use clap::error::ErrorKind;
use clap::Parser;
use rvs_proto::client;
use rvs_proto::status::FdbPage;
use rvs_proto::{Refusal, Request, ShowResult, DEFAULT_SOCKET};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A clap error as one line, without the usage block.
fn one_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let line = parts.join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_string()
}

/// Sends `cmd`; for a remote edit, `cmd` reads the current list and the
/// edit's own request follows.
fn send(socket: &Path, cmd: rvs_proto::Command, edit: Option<&cli::RemoteEdit>) -> Result<Value, Refusal> {
    let result = client::request(socket, &Request::new(cmd))?.into_outcome()?;
    let Some(edit) = edit else {
        return Ok(result);
    };
    let show: ShowResult =
        serde_json::from_value(result).map_err(|e| format!("cannot understand rvsd's answer: {e}"))?;
    let cmd = edit.command(&show)?;
    client::request(socket, &Request::new(cmd))?.into_outcome()
}

/// The exit status of a refusal.
fn refused(r: &Refusal) -> ExitCode {
    ExitCode::from(match r.kind {
        Some(rvs_proto::ErrorKind::Exists) => cli::EXIT_EXISTS,
        Some(rvs_proto::ErrorKind::NotFound) => cli::EXIT_NOT_FOUND,
        None => 1,
    })
}

/// `fdb show`: pages through the table, printing each page as it comes
/// (a table of a million MACs is never one reply, nor one string here).
/// `--json` prints one array of all entries, as for any list.
fn fdb_show(socket: &Path, bridge: &str, json: bool) -> Result<(), Refusal> {
    let mut out = std::io::stdout().lock();
    let mut write = |s: &str| {
        // A closed pipe (`rvsctl fdb show br0 | head`) ends the listing.
        out.write_all(s.as_bytes()).map_err(|_| String::new())
    };
    let (mut after, mut widths, mut first) = (None, Vec::new(), true);
    let result = loop {
        let cmd = rvs_proto::Command::FdbShow { bridge: bridge.to_string(), after: after.take(), limit: None };
        let page: FdbPage = serde_json::from_value(send(socket, cmd, None)?)
            .map_err(|e| Refusal::from(format!("cannot understand rvsd's answer: {e}")))?;
        let text = if json {
            let mut s = String::from(if first { "[" } else { "" });
            for (i, e) in page.entries.iter().enumerate() {
                let sep = if first && i == 0 { "\n  " } else { ",\n  " };
                s.push_str(sep);
                s.push_str(&serde_json::to_string(e).map_err(|e| Refusal::from(e.to_string()))?);
            }
            s
        } else {
            output::fdb_page(&page.entries, &mut widths)
        };
        first = false;
        if write(&text).is_err() {
            return Ok(());
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break Ok(()),
        }
    };
    if json {
        let _ = write("\n]\n");
    }
    result
}

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    ExitCode::from(if e.use_stderr() { 2 } else { 0 })
                }
                _ => {
                    eprintln!("rvsctl: {}", one_line(&e));
                    ExitCode::from(2)
                }
            };
        }
    };
    if let Some(out) = cli.local_output() {
        return match out {
            Ok(bytes) => {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(&bytes).and_then(|_| o.flush());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rvsctl: {e}");
                ExitCode::from(1)
            }
        };
    }
    let plan = match cli.plan() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rvsctl: {e}");
            return ExitCode::from(2);
        }
    };
    let socket = cli
        .socket
        .clone()
        .or_else(|| std::env::var_os("RVS_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    if let Some((out, format)) = &plan.capture_out {
        return match capture::run(&socket, plan.cmd, out, *format) {
            Ok(s) => {
                // On stderr: stdout may be the pcap itself.
                eprintln!("rvsctl: {} frames captured, {} dropped", s.captured, s.dropped);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rvsctl: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let rvs_proto::Command::FdbShow { bridge, .. } = &plan.cmd {
        return match fdb_show(&socket, bridge, cli.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(r) => {
                eprintln!("rvsctl: {r}");
                refused(&r)
            }
        };
    }
    let result = send(&socket, plan.cmd, plan.remote_edit.as_ref());
    let result = match result {
        Ok(v) => v,
        // --may-exist / --if-exists: the state asked for is there.
        Err(r) if r.kind.is_some() && r.kind == plan.tolerate => return ExitCode::SUCCESS,
        Err(r) => {
            eprintln!("rvsctl: {r}");
            return refused(&r);
        }
    };
    let text = if cli.json {
        match serde_json::to_string_pretty(&result) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("rvsctl: {e}");
                return ExitCode::from(1);
            }
        }
    } else if plan.view == cli::View::Pmd {
        // The kernel executors' share is in the ports' counters.
        let stats = send(&socket, rvs_proto::Command::Stats { port: None }, None);
        match output::pmd_with_kernel(result, stats.ok()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("rvsctl: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        match output::render(plan.view, result) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("rvsctl: {e}");
                return ExitCode::from(1);
            }
        }
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`rvsctl show | head`) is not an error worth a panic.
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    ExitCode::SUCCESS
}
