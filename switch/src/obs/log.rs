//! rvsd's log: `tracing` events, formatted one line each on stderr.
//!
//! Quiet by default: warnings, plus the lines operators want at info
//! level, which have short targets of their own (`config`: one per
//! accepted configuration change; `link`: interfaces going and coming;
//! `daemon`: start and stop). Everything else at info and below uses its
//! module's target (`rvs_switch::...`) and shows only when asked for.
//! (Targets match by prefix, so these names must not start a module path.)
//!
//! The filter is `target=level` pairs and a bare default level, as in
//! `RUST_LOG` (e.g. `debug` or `warn,rvs_switch::datapath=debug`), and can be
//! replaced at run time (`rvsctl log-level`).

use std::sync::OnceLock;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Registry};

/// The filter rvsd starts with unless told otherwise.
pub const DEFAULT_FILTER: &str = "warn,config=info,link=info,daemon=info";

/// Target of the one line per accepted configuration change.
pub const CONFIG: &str = "config";
/// Target of interfaces going away and coming back.
pub const LINK: &str = "link";
/// Target of daemon start and stop.
pub const DAEMON: &str = "daemon";

static HANDLE: OnceLock<reload::Handle<Targets, Registry>> = OnceLock::new();

/// Parses a filter; the error says what is accepted.
pub fn parse(filter: &str) -> Result<Targets, String> {
    rvs_proto::check_log_filter(filter)?;
    filter.trim().parse::<Targets>().map_err(|e| rvs_proto::log_filter_error(filter, &e.to_string()))
}

/// Installs the stderr logger with `filter`; once per process.
pub fn init(filter: &str) -> Result<(), String> {
    let targets = parse(filter)?;
    let (layer, handle) = reload::Layer::new(targets);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false);
    tracing_subscriber::registry()
        .with(layer)
        .with(fmt)
        .try_init()
        .map_err(|e| format!("cannot set up logging: {e}"))?;
    let _ = HANDLE.set(handle);
    Ok(())
}

/// Replaces the filter of the running logger.
pub fn set(filter: &str) -> Result<(), String> {
    let targets = parse(filter)?;
    let handle = HANDLE.get().ok_or("logging is not set up in this process")?;
    handle.reload(targets).map_err(|e| format!("cannot change the log filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[test]
    fn filters() {
        for t in [CONFIG, LINK, DAEMON] {
            assert!(parse(DEFAULT_FILTER).unwrap().would_enable(t, &tracing::Level::INFO));
        }
        assert!(!parse(DEFAULT_FILTER).unwrap().would_enable("rvs_switch::datapath::real", &tracing::Level::INFO));
        assert!(parse(DEFAULT_FILTER).unwrap().would_enable("rvs_switch::datapath::real", &tracing::Level::WARN));
        assert_eq!(parse("debug").unwrap().default_level(), Some(LevelFilter::DEBUG));
        assert!(parse("warn,rvs_switch::datapath=trace")
            .unwrap()
            .would_enable("rvs_switch::datapath::real", &tracing::Level::TRACE));
        for bad in ["", "loud", "wran", "a=b=c", "x=verbose", "=info", "warn,,info"] {
            let e = parse(bad).unwrap_err();
            assert!(e.starts_with("invalid log filter") && !e.contains('\n'), "{e}");
        }
    }
}
