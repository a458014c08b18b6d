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
//!
//! Three line formats: `text` (a timestamp, the level, the message), for a
//! terminal or a file; `journal` (a syslog priority prefix such as `<4>`,
//! no timestamp of its own), which systemd's journal reads so that
//! `journalctl -p warning` works, chosen by itself when stderr is the
//! journal's stream (`JOURNAL_STREAM`); `json` (one object per line: time,
//! level, target, message and the event's fields), for log shippers.

use std::fmt::Write as _;
use std::sync::OnceLock;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Registry};

/// How log lines are written (`rvsd --log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `journal` when stderr is systemd's journal, else `text`.
    Auto,
    /// A timestamp, the level and the message.
    Text,
    /// A syslog priority prefix (`<3>` error ... `<7>` debug), no timestamp.
    Journal,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// `Auto` decided: `journal` when `JOURNAL_STREAM` names stderr.
    pub fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto if stderr_is_journal() => LogFormat::Journal,
            LogFormat::Auto => LogFormat::Text,
            f => f,
        }
    }
}

/// True when `JOURNAL_STREAM` (`DEVICE:INODE`, set by systemd for a
/// service whose output goes to the journal) is the file stderr is open
/// on; a child whose stderr was redirected inherits the variable but not
/// the stream.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(v) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = v.split_once(':') else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// The syslog priority of a level, as the journal reads it.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// The `journal` and `json` line formats.
struct Lines(LogFormat);

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let meta = event.metadata();
        if self.0 != LogFormat::Json {
            write!(w, "<{}>", priority(meta.level()))?;
            ctx.field_format().format_fields(w.by_ref(), event)?;
            return writeln!(w);
        }
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let mut obj = serde_json::Map::new();
        obj.insert("time".into(), time.into());
        obj.insert("level".into(), meta.level().as_str().to_ascii_lowercase().into());
        obj.insert("target".into(), meta.target().into());
        event.record(&mut JsonFields(&mut obj));
        writeln!(w, "{}", serde_json::Value::Object(obj))
    }
}

/// Collects an event's fields into a JSON object (`message` included).
struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.0.insert(field.name().into(), text.into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

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

/// Installs the stderr logger with `filter`, writing `format` (resolved);
/// once per process.
pub fn init(filter: &str, format: LogFormat) -> Result<(), String> {
    let targets = parse(filter)?;
    let (layer, handle) = reload::Layer::new(targets);
    let format = format.resolve();
    let text = (format == LogFormat::Text)
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false));
    let lines = (format != LogFormat::Text)
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr).event_format(Lines(format)));
    tracing_subscriber::registry()
        .with(layer)
        .with(text)
        .with(lines)
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
    use std::sync::{Arc, Mutex};
    use tracing::level_filters::LevelFilter;

    /// Lines `f` logs in `format`.
    fn lines_of(format: LogFormat, f: impl FnOnce()) -> String {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let make = move || Sink(sink.clone());
        let sub = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_writer(make)
            .event_format(Lines(format))
            .finish();
        tracing::subscriber::with_default(sub, f);
        let out = buf.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journal_lines_carry_the_priority_and_no_time() {
        let out = lines_of(LogFormat::Journal, || {
            tracing::error!("e");
            tracing::warn!(target: LINK, "port {} is down", "p1");
            tracing::info!(target: CONFIG, "bridge br0 added");
            tracing::debug!(n = 3, "d");
        });
        assert_eq!(out, "<3>e\n<4>port p1 is down\n<6>bridge br0 added\n<7>d n=3\n");
    }

    #[test]
    fn json_lines_are_objects_with_the_fields() {
        let out = lines_of(LogFormat::Json, || {
            tracing::warn!(target: LINK, port = "p1", queue = 2u64, "port is down");
        });
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["target"], "link");
        assert_eq!(v["message"], "port is down");
        assert_eq!((v["port"].as_str(), v["queue"].as_u64()), (Some("p1"), Some(2)));
        assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn auto_is_text_unless_stderr_is_the_journal() {
        // The test's stderr is not a journal stream with inode 1.
        std::env::set_var("JOURNAL_STREAM", "1:1");
        assert_eq!(LogFormat::Auto.resolve(), LogFormat::Text);
        std::env::remove_var("JOURNAL_STREAM");
        assert_eq!(LogFormat::Json.resolve(), LogFormat::Json);
    }

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
