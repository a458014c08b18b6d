//! Issue 5: `rvsctl capture` writes what a port receives and sends as a
//! pcap that tcpdump reads, to a file or through a pipe, and a capture
//! whose reader falls behind drops (and counts) frames without slowing
//! the switch. Addresses: 198.18.62.0/24.
//!
//! The hosts have IPv6 off, so nothing but the test's own frames (made-up
//! MACs, ethertype 0x88b5) crosses the switch while it captures.

mod common;

use common::*;
use rvs_dataplane::wire::{EthernetRepr, MacAddr};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const A: [u8; 6] = [2, 0, 0, 0x62, 0, 0x0a];

fn host(cidr: &str) -> Host {
    let h = Host::on_veth(cidr);
    h.ns.ok(&["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
    h
}

/// A broadcast frame of ethertype 0x88b5 from `src` carrying `text`.
fn frame(src: [u8; 6], text: &str) -> Vec<u8> {
    let eth = EthernetRepr { dst: MacAddr::BROADCAST, src: MacAddr(src), tag: None, ethertype: 0x88b5 };
    let mut f = vec![0; eth.header_len()];
    eth.emit(&mut f);
    f.extend_from_slice(text.as_bytes());
    f
}

/// Starts `rvsctl capture ARGS` and waits for its "capturing on" line;
/// the rest of its stderr is collected and returned by `stderr_rest`.
fn start_capture(rvsd: &Rvsd, args: &[&str], stdout: Stdio) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(rvsctl_bin())
        .arg("--socket")
        .arg(&rvsd.socket)
        .arg("capture")
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rvsctl capture");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    match lines.next() {
        Some(Ok(l)) if l.contains("capturing on") => {}
        other => panic!("rvsctl capture did not start: {other:?}\n{}", rvsd.log_text()),
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let _ = tx.send(rest.join("\n"));
    });
    (child, rx)
}

/// Sends SIGINT to rvsctl and waits for it; its exit success and stderr.
fn interrupt(mut child: Child, stderr: std::sync::mpsc::Receiver<String>) -> (bool, String) {
    // SAFETY: signals our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let guard_wait = std::thread::spawn(move || child.wait().map(|s| s.success()).unwrap_or(false));
    let ok = guard_wait.join().unwrap();
    (ok, stderr.recv_timeout(Duration::from_secs(20)).unwrap_or_default())
}

/// Frames of ethertype 0x88b5 in a pcap file, as bytes (`tcpdump -xx`).
fn read_pcap(path: &str) -> Vec<Vec<u8>> {
    let out = run(&["tcpdump", "-n", "-xx", "-r", path, "ether", "proto", "0x88b5"]);
    assert!(out.status.success(), "tcpdump -r {path}: {}", String::from_utf8_lossy(&out.stderr));
    parse_xx(&String::from_utf8_lossy(&out.stdout))
}

/// The frames in `tcpdump -xx` output.
fn parse_xx(text: &str) -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        match t.strip_prefix("0x").and_then(|r| r.split_once(':')) {
            Some((_, hex)) if line.starts_with('\t') || line.starts_with(' ') => {
                let f = frames.last_mut().expect("hex before a header line");
                for word in hex.split_whitespace() {
                    for i in (0..word.len()).step_by(2) {
                        f.push(u8::from_str_radix(&word[i..i + 2], 16).expect("hex byte"));
                    }
                }
            }
            _ => frames.push(Vec::new()),
        }
    }
    frames
}

#[test]
fn capture_both_directions_to_a_file_and_a_pipe() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let h1 = host("198.18.62.1/24");
    let h2 = host("198.18.62.2/24");
    let rvsd = Rvsd::start();
    rvsd.add_bridge("brc");
    rvsd.add_host("brc", &h1, &[]);
    rvsd.add_host("brc", &h2, &[]);
    let b = parse_mac(&h2.mac());

    // Into a file: what h1 sends (the port receives) and what h2 floods
    // to h1 (the port sends).
    let file = rvsd.dir.join("both.pcap");
    let file = file.to_str().unwrap();
    let (child, stderr) = start_capture(&rvsd, &[h1.port(), "-w", file], Stdio::null());
    let sent_in: Vec<Vec<u8>> = (0..3).map(|i| frame(A, &format!("rvs-capture-in-{i}"))).collect();
    let sent_out: Vec<Vec<u8>> = (0..3).map(|i| frame(b, &format!("rvs-capture-out-{i}"))).collect();
    send_raw(&h1.ns, &h1.dev, &sent_in);
    send_raw(&h2.ns, &h2.dev, &sent_out);
    // Wait until h1 has all of h2's frames: by then the switch has sent
    // them, and read h1's before them.
    let at1 = Tcpdump::start(Some(&h1.ns), &h1.dev, 1, &["ether", "proto", "0x88b5"]);
    send_raw(&h2.ns, &h2.dev, &[frame(b, "rvs-capture-last")]);
    let seen = at1.finish(Duration::from_secs(5));
    assert_eq!(seen.iter().filter(|l| l.contains("0x88b5")).count(), 1, "h1 did not get h2's frames: {seen:?}");
    let (ok, summary) = interrupt(child, stderr);
    assert!(ok, "rvsctl capture failed: {summary}");
    assert!(summary.contains("frames captured, 0 dropped"), "{summary}");
    let got = read_pcap(file);
    let mut want = sent_in.clone();
    want.extend(sent_out.iter().cloned());
    want.push(frame(b, "rvs-capture-last"));
    let mut sorted_got = got.clone();
    sorted_got.sort();
    want.sort();
    assert_eq!(sorted_got, want, "the pcap holds other frames than were sent");

    // Through a pipe to tcpdump, only what the port sends, 2 frames.
    let (mut child, stderr) =
        start_capture(&rvsd, &[h1.port(), "--direction", "out", "--count", "2", "-w", "-"], Stdio::piped());
    let reader = Command::new("tcpdump")
        .args(["-n", "-e", "-r", "-"])
        .stdin(Stdio::from(child.stdout.take().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tcpdump -r -");
    let reader = ChildGuard(reader);
    send_raw(&h1.ns, &h1.dev, &[frame(A, "rvs-pipe-not-this-one")]);
    send_raw(&h2.ns, &h2.dev, &[frame(b, "rvs-pipe-0"), frame(b, "rvs-pipe-1")]);
    let status = child.wait().expect("rvsctl capture");
    let summary = stderr.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    assert!(status.success(), "rvsctl capture --count 2: {summary}");
    assert!(summary.contains("2 frames captured"), "{summary}");
    let (lines, exited) = reader.finish(Duration::from_secs(10));
    assert!(exited, "tcpdump -r - did not see the end of the stream");
    // tcpdump also dumps an unknown ethertype's payload on lines of its own.
    let lines: Vec<&str> = lines.lines().filter(|l| l.contains("0x88b5")).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let src = h2.mac();
    assert!(
        lines.iter().all(|l| l.contains(&format!("{src} > ff:ff:ff:ff:ff:ff")) && l.contains("0x88b5")),
        "{lines:?}"
    );

    // A second capture on a port that has one is refused; a missing port too.
    let file2 = rvsd.dir.join("x.pcap");
    let (child, stderr) = start_capture(&rvsd, &[h1.port(), "-w", file2.to_str().unwrap()], Stdio::null());
    let e = one_line_error("second capture", &rvsd.ctl(&["capture", h1.port(), "-w", "-"]));
    assert!(e.contains("a capture already runs"), "{e}");
    let e = one_line_error("capture on nothing", &rvsd.ctl(&["capture", "nope0", "-w", "-"]));
    assert!(e.contains("unknown port or uplink \"nope0\""), "{e}");
    // Removing the port ends the capture, with an error saying why.
    rvsd.ctl_ok(&["port", "del", "brc", h1.port()]);
    let mut child = child;
    let st = child.wait().unwrap();
    let rest = stderr.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    assert!(!st.success() && rest.contains("was removed"), "{st}: {rest}");
}

#[test]
fn a_slow_capture_reader_does_not_stall_traffic() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let h1 = host("198.18.62.11/24");
    let h2 = host("198.18.62.12/24");
    let rvsd = Rvsd::start();
    rvsd.add_bridge("brc");
    rvsd.add_host("brc", &h1, &[]);
    rvsd.add_host("brc", &h2, &[]);
    assert!(ping_settled(&h1.ns, &h2.ip, 2));

    // Nobody reads this capture's output while iperf3 runs.
    let (mut child, stderr) = start_capture(&rvsd, &[h1.port(), "-w", "-"], Stdio::piped());
    let server = Iperf3Server::start(&h2.ns, &h2.ip);
    let rate = iperf3(&h1.ns, &h2.ip, 2).expect("iperf3 during a capture");
    drop(server);
    assert!(rate > 0.0, "no traffic during the capture");
    // However fast iperf3 was, this is more than the ring and the buffers
    // on the way hold: the capture must drop (and count) frames.
    let burst: Vec<Vec<u8>> = (0..20_000).map(|i| frame(A, &format!("burst-{i}-{}", "x".repeat(1400)))).collect();
    send_raw(&h1.ns, &h1.dev, &burst);
    eprintln!("iperf3 during the capture: {:.0} Mbit/s", rate / 1e6);
    // Now read it, stop it, and look at its counters.
    let mut out = child.stdout.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut buf);
        buf.len()
    });
    let (ok, summary) = interrupt(child, stderr);
    assert!(ok, "rvsctl capture failed: {summary}");
    assert!(drain.join().unwrap() > 24, "no frames in the pcap");
    let nums: Vec<u64> = summary.split_whitespace().filter_map(|w| w.trim_end_matches(',').parse().ok()).collect();
    assert!(matches!(nums[..], [c, d] if c > 0 && d > 0), "expected frames captured and dropped: {summary}");
    eprintln!("capture: {summary}");
    // The switch still switches.
    assert!(ping(&h1.ns, &h2.ip, 2));
}

/// Issue 16: the default pcapng marks each frame's direction and names the
/// port. A ping from h1 to h2, captured on h1's port: the echo request is
/// inbound (the port received it from h1), the reply outbound; tshark says
/// so, and the classic pcap format is still there.
#[test]
fn pcapng_marks_each_frame_direction() {
    if !require_root() || !rvs_dataplane::testing::require_root("capture direction", &["tshark"]) {
        return;
    }
    let _serial = serial();
    let h1 = host("198.18.62.21/24");
    let h2 = host("198.18.62.22/24");
    let rvsd = Rvsd::start();
    rvsd.add_bridge("brc");
    rvsd.add_host("brc", &h1, &[]);
    rvsd.add_host("brc", &h2, &[]);
    assert!(ping_settled(&h1.ns, &h2.ip, 1));
    for (format, file) in [("pcapng", "dir.pcapng"), ("pcap", "dir.pcap")] {
        let file = rvsd.dir.join(file);
        let file = file.to_str().unwrap();
        let (child, stderr) = start_capture(&rvsd, &[h1.port(), "--format", format, "-w", file], Stdio::null());
        assert!(ping(&h1.ns, &h2.ip, 1));
        let (ok, summary) = interrupt(child, stderr);
        assert!(ok, "rvsctl capture failed: {summary}");
        let out = run(&[
            "tshark",
            "-r",
            file,
            "-Y",
            "icmp",
            "-T",
            "fields",
            "-e",
            "icmp.type",
            "-e",
            "frame.packet_flags_direction",
            "-e",
            "frame.interface_name",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "tshark -r {file}: {}", String::from_utf8_lossy(&out.stderr));
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
        assert_eq!(rows.len(), 2, "{format}: {text}");
        // tshark versions print the flag as 0x1 or 0x00000001.
        let dir = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok();
        if format == "pcapng" {
            // Type 8 (request) came in on the port (1); type 0 (reply) went out (2).
            let got: Vec<(&str, Option<u32>, &str)> = rows.iter().map(|r| (r[0], dir(r[1]), r[2])).collect();
            assert_eq!(got, [("8", Some(1), h1.port()), ("0", Some(2), h1.port())], "{text}");
        } else {
            assert!(rows.iter().all(|r| r.get(1).is_none_or(|d| d.is_empty())), "pcap has no direction: {text}");
        }
    }
}
