//! Issue 6, test 4: control plane abuse against a real rvsd. Many clients
//! at once send garbage, half-written and oversize requests, flood requests
//! without reading replies, or connect and stay silent (more of them than
//! rvsd keeps connections for), while a good client's requests keep being
//! answered within 1 s and the data path forwards. `RVS_ABUSE_SECS` sets
//! the length (10 s).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request on a fresh connection, as rvsctl does: the reply line and
/// how long it took.
fn ask(socket: &PathBuf, line: &str) -> (Result<String, String>, Duration) {
    let t = Instant::now();
    let r = (|| {
        let mut s = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(line.as_bytes()).and_then(|_| s.write_all(b"\n")).map_err(|e| format!("write: {e}"))?;
        let mut reply = String::new();
        BufReader::new(&s).read_line(&mut reply).map_err(|e| format!("read: {e}"))?;
        if reply.is_empty() {
            return Err("connection closed without a reply".to_string());
        }
        Ok(reply)
    })();
    (r, t.elapsed())
}

#[test]
fn control_socket_abuse() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let secs: u64 = std::env::var("RVS_ABUSE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let a = Host::on_veth("198.18.73.1/24");
    let b = Host::on_veth("198.18.73.2/24");
    let mut rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    rvsd.add_host("br0", &a, &[]);
    rvsd.add_host("br0", &b, &[]);
    assert!(ping_settled(&a.ns, &b.ip, 3));

    let mode = std::fs::metadata(&rvsd.socket).expect("socket").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o660, "control socket mode {mode:o}");

    // A request over the size limit is refused: an error reply or a close.
    {
        let mut s = UnixStream::connect(&rvsd.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut big = br#"{"version":1,"cmd":"bridge_add","bridge":""#.to_vec();
        big.resize(rvs_proto::MAX_REQUEST_LEN + 100, b'x');
        big.extend_from_slice(b"\"}\n");
        let _ = s.write_all(&big);
        let mut reply = String::new();
        let _ = BufReader::new(&s).read_line(&mut reply);
        assert!(reply.is_empty() || reply.contains("too large"), "oversize request answered: {reply:.200}");
        println!(
            "oversize request: {}",
            if reply.is_empty() { "connection closed".into() } else { reply.trim().to_string() }
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let abuse = Arc::new(AtomicU64::new(0));
    // More silent clients than rvsd keeps (MAX_CLIENTS is 256).
    let silent: Vec<UnixStream> = (0..300).filter_map(|_| UnixStream::connect(&rvsd.socket).ok()).collect();
    let mut threads = Vec::new();
    for kind in 0..12u64 {
        let (socket, stop, abuse) = (rvsd.socket.clone(), stop.clone(), abuse.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(0xab05e + kind);
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = UnixStream::connect(&socket) else { continue };
                s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
                let _ = match kind % 4 {
                    // Random bytes with newlines in them.
                    0 => {
                        let n = 1 + (rng.next() % 4096) as usize;
                        s.write_all(&rng.bytes(n))
                    }
                    // Half a request, held a while, then hung up.
                    1 => {
                        let r = s.write_all(br#"{"version":1,"cmd":"bri"#);
                        std::thread::sleep(Duration::from_millis(300));
                        r
                    }
                    // An oversize line with no end.
                    2 => s.write_all(&vec![b'{'; 200 * 1024]),
                    // Many requests, replies never read.
                    _ => s.write_all(
                        &br#"{"version":1,"cmd":"show"}
"#
                        .repeat(2000),
                    ),
                };
                let mut sink = [0u8; 512];
                let _ = s.read(&mut sink);
                abuse.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let (mut asked, mut worst, mut failures) = (0, Duration::ZERO, Vec::new());
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let (r, took) = ask(&rvsd.socket, r#"{"version":1,"cmd":"bridge_list"}"#);
        asked += 1;
        worst = worst.max(took);
        match r {
            Ok(line) if line.contains("\"ok\":true") && took < Duration::from_secs(1) => {}
            Ok(line) => failures.push(format!("after {took:?}: {}", line.trim())),
            Err(e) => failures.push(format!("after {took:?}: {e}")),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("abuser thread");
    }
    drop(silent);
    println!(
        "abuse {secs} s: {} abusive connections, 300 silent; good client {asked} requests, slowest {worst:?}, {} failed",
        abuse.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.is_empty(), "good client not answered within 1 s: {failures:?}");
    assert!(rvsd.alive(), "rvsd died:\n{}", rvsd.log_text());
    assert!(rvsd.ctl(&["show"]).status.success());
    assert!(ping(&a.ns, &b.ip, 3), "forwarding stopped");
}

/// Issue 14: clients that stream blank lines as fast as they can must not
/// hold the control loop: another client's requests are each answered
/// within 100 ms, and SIGTERM still stops rvsd. (Before each client had a
/// read budget per round, the slowest of 20 took 0.2-0.8 s; now 2-4 ms.)
#[test]
fn a_client_streaming_blank_lines_does_not_hold_the_loop() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let mut rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood: Vec<_> = (0..3)
        .map(|_| {
            let (socket, stop, sent) = (rvsd.socket.clone(), stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&socket).expect("connect");
                let blank = vec![b'\n'; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match s.write(&blank) {
                        Ok(n) => {
                            sent.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut took = Vec::new();
    for _ in 0..20 {
        let (r, t) = ask(&rvsd.socket, r#"{"version":1,"cmd":"show"}"#);
        assert!(r.as_ref().is_ok_and(|l| l.contains("\"ok\":true")), "after {t:?}: {r:?}");
        assert!(t < Duration::from_millis(100), "show took {t:?} while clients flood");
        took.push(t);
    }
    took.sort();
    println!(
        "{} MiB of blank lines; show answered in {:?} (median), {:?} (slowest)",
        sent.load(Ordering::Relaxed) >> 20,
        took[took.len() / 2],
        took[took.len() - 1]
    );
    let status = rvsd.stop();
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.join().expect("flooding thread");
    }
    assert!(status.is_some_and(|s| s.success()), "rvsd did not stop on SIGTERM during the flood: {status:?}");
}
