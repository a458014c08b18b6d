//! `rvsctl capture`: asks rvsd for a port's frames and writes them as a
//! pcapng file (each frame marked inbound or outbound) or a classic pcap
//! file, or to stdout for `rvsctl capture p1 -w - | tcpdump -r -`.
//!
//! The output is flushed after every read from rvsd, so a reader at the
//! other end of a pipe sees frames as they come. It ends when rvsd says
//! the count is reached or the port is gone, or when the reader of stdout
//! goes away. On SIGINT/SIGTERM it closes its side of the connection and
//! rvsd ends the stream with what it still holds and the final counters.

use rvs_proto::capstream::{Decoder, Message};
use rvs_proto::client::{self, io_msg, CLIENT_TIMEOUT};
use rvs_proto::{pcap, pcapng};
use rvs_proto::{CaptureStarted, CaptureStatus, Command, Reply, Request, MAX_REPLY_LEN};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::CaptureFormat;

/// How often a blocked read wakes to look at the signal flag.
const WAKE: Duration = Duration::from_millis(200);

/// Runs a capture; returns its final counters.
pub fn run(socket: &Path, cmd: Command, out_path: &Path, format: CaptureFormat) -> Result<CaptureStatus, String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("installing a signal handler: {e}"))?;
    }
    let mut out: Box<dyn Write> = if out_path == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        let f = std::fs::File::create(out_path)
            .map_err(|e| format!("cannot create {}: {}", out_path.display(), io_msg(&e)))?;
        Box::new(std::io::BufWriter::new(f))
    };
    let at = socket.display().to_string();
    let lost = |e: std::io::Error| format!("lost the connection to rvsd at {at}: {}", io_msg(&e));
    let mut stream = client::connect(socket)?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT)).map_err(lost)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(lost)?;
    let mut line = Request::new(cmd).to_line().into_bytes();
    line.push(b'\n');
    stream.write_all(&line).map_err(lost)?;

    // The reply line, then the stream; whatever the reader took past the
    // line belongs to the stream.
    let mut reader = BufReader::new(stream.try_clone().map_err(lost)?);
    let mut first = Vec::new();
    (&mut reader).take(MAX_REPLY_LEN as u64).read_until(b'\n', &mut first).map_err(|e| {
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            format!("rvsd at {at} did not answer within {} s", CLIENT_TIMEOUT.as_secs())
        } else {
            lost(e)
        }
    })?;
    if first.is_empty() {
        return Err(format!("rvsd at {at} closed the connection without answering"));
    }
    let reply: Reply = serde_json::from_slice(first.trim_ascii())
        .map_err(|e| format!("rvsd at {at} sent a reply that is not understood: {e}"))?;
    let started: CaptureStarted = serde_json::from_value(reply.into_result()?)
        .map_err(|e| format!("rvsd at {at} sent a reply that is not understood: {e}"))?;

    let mut decoder = Decoder::default();
    decoder.push(reader.buffer());
    drop(reader);
    stream.set_read_timeout(Some(WAKE)).map_err(lost)?;
    let mut status = CaptureStatus::default();
    let mut pending = match format {
        CaptureFormat::Pcapng => pcapng::file_header(&started.port, started.snaplen),
        CaptureFormat::Pcap => pcap::file_header(started.snaplen).to_vec(),
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut asked_to_stop = false;
    eprintln!("rvsctl: capturing on {} (snaplen {}); stop with Ctrl-C", started.port, started.snaplen);
    loop {
        let mut end = None;
        while let Some(m) = decoder.next_message()? {
            match m {
                Message::Frame { ts_ns, orig_len, out: sent, data } => {
                    match format {
                        CaptureFormat::Pcapng => pcapng::record(&mut pending, ts_ns, orig_len, sent, &data),
                        CaptureFormat::Pcap => pcap::record(&mut pending, ts_ns, orig_len, &data),
                    }
                    status.captured += 1;
                }
                Message::Status(s) => status.dropped = s.dropped,
                Message::End(s) => end = Some(s),
            }
        }
        // The reader of stdout went away (e.g. `tcpdump -c N` is done):
        // a normal end of a capture.
        if out.write_all(&pending).and_then(|_| out.flush()).is_err() {
            return Ok(status);
        }
        pending.clear();
        if let Some(s) = end {
            if let Some(r) = s.reason.as_deref().filter(|r| r.ends_with("was removed")) {
                return Err(format!("capture ended: {r} ({} frames captured, {} dropped)", s.captured, s.dropped));
            }
            return Ok(s);
        }
        if stop.load(Ordering::Relaxed) && !asked_to_stop {
            // rvsd answers with what it still holds and the final counters.
            asked_to_stop = true;
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err(format!("rvsd at {at} closed the capture without ending it")),
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => return Err(lost(e)),
        }
    }
}
