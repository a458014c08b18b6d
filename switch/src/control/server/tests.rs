//! The control socket against the fake datapath: framing, limits, slow
//! and hostile clients, captures.

use super::*;
use crate::datapath::fake::FakeDp;
use crate::db::tests::temp_dir;
use rvs_proto::client::request;
use rvs_proto::{CaptureDirection, Command};
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream as StdStream;
use std::sync::Arc;
use std::thread;

struct Daemon {
    sock: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
    dp: FakeDp,
}

impl Daemon {
    fn start(tag: &str) -> Daemon {
        Daemon::start_idle(tag, IDLE_TIMEOUT)
    }

    fn start_idle(tag: &str, idle: Duration) -> Daemon {
        let dir = temp_dir(tag);
        let sock = dir.join("rvsd.sock");
        let db = dir.join("conf.json");
        let dp = FakeDp::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2, dp2) = (sock.clone(), stop.clone(), dp.clone());
        let thread = thread::spawn(move || {
            let mut state = State::restore(&db, dp2).map_err(io::Error::other)?;
            serve_with(&s2, None, None, &mut state, &st2, idle)
        });
        let t0 = Instant::now();
        while !sock.exists() {
            assert!(t0.elapsed() < Duration::from_secs(5), "server did not start");
            thread::sleep(Duration::from_millis(10));
        }
        Daemon { sock, stop, thread: Some(thread), dp }
    }

    fn stop(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

fn raw(sock: &Path) -> (StdStream, BufReader<StdStream>) {
    let s = StdStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn read_reply(r: &mut BufReader<StdStream>) -> Reply {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

#[test]
fn answers_clients_and_survives_garbage() {
    let mut d = Daemon::start("srv-basic");
    let mode = fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    let r = request(&d.sock, &Request::new(Command::Ping)).unwrap();
    assert!(r.ok);
    let r = request(
        &d.sock,
        &Request::new(Command::BridgeAdd { bridge: "br0".into(), aging_secs: None, max_macs: None, gateway: vec![] }),
    )
    .unwrap();
    assert!(r.ok, "{r:?}");
    assert!(d.dp.inner().bridges.contains_key("br0"));

    // Garbage gets error replies and the connection stays usable.
    let (mut s, mut rd) = raw(&d.sock);
    s.write_all(b"this is not json\n").unwrap();
    assert!(read_reply(&mut rd).error.unwrap().starts_with("invalid request"));
    s.write_all(b"{\"version\":1,\"cmd\":\"launch_missiles\"}\n").unwrap();
    assert!(!read_reply(&mut rd).ok);
    s.write_all(b"{\"version\":2,\"cmd\":\"ping\"}\n").unwrap();
    assert!(read_reply(&mut rd).error.unwrap().contains("speaks protocol version 1"));
    // Two requests in one write, the second split across writes.
    s.write_all(b"{\"version\":1,\"cmd\":\"ping\"}\n{\"version\":1,").unwrap();
    assert!(read_reply(&mut rd).ok);
    thread::sleep(Duration::from_millis(50));
    s.write_all(b"\"cmd\":\"bridge_list\"}\n").unwrap();
    let r = read_reply(&mut rd);
    assert_eq!(r.result.unwrap()[0]["name"], "br0");

    // Another client is still served.
    assert!(request(&d.sock, &Request::new(Command::Show)).unwrap().ok);

    d.stop().unwrap();
    assert!(!d.sock.exists());
}

#[test]
fn oversize_request_is_refused() {
    let d = Daemon::start("srv-big");
    let (mut s, mut rd) = raw(&d.sock);
    let big = vec![b'x'; MAX_REQUEST_LEN + 10];
    // The server may close before we finish writing; that is fine.
    let _ = s.write_all(&big);
    let r = read_reply(&mut rd);
    assert!(r.error.unwrap().starts_with("request too large"));
    let mut rest = String::new();
    assert_eq!(rd.read_line(&mut rest).unwrap_or(0), 0);
    assert!(request(&d.sock, &Request::new(Command::Ping)).unwrap().ok);
}

#[test]
fn silent_and_half_written_clients_do_not_block_others() {
    let d = Daemon::start("srv-silent");
    let _silent = StdStream::connect(&d.sock).unwrap();
    let (mut half, _r) = raw(&d.sock);
    half.write_all(b"{\"version\":1,\"cmd\":").unwrap();
    // A client that never reads its replies.
    let (mut greedy, _gr) = raw(&d.sock);
    let t = thread::spawn(move || {
        let line = b"{\"version\":1,\"cmd\":\"show\"}\n".repeat(1000);
        for _ in 0..50 {
            if greedy.write_all(&line).is_err() {
                break;
            }
        }
    });
    let t0 = Instant::now();
    for _ in 0..20 {
        assert!(request(&d.sock, &Request::new(Command::Ping)).unwrap().ok);
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    drop(t);
}

/// Reads capture stream messages until `n` came or the stream ended.
fn read_stream(r: &mut BufReader<StdStream>, n: usize) -> Vec<capstream::Message> {
    let mut d = capstream::Decoder::default();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < n {
        let k = r.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        d.push(&buf[..k]);
        while let Some(m) = d.next_message().unwrap() {
            got.push(m);
        }
    }
    got
}

fn capture_line(port: &str, count: Option<u64>) -> Vec<u8> {
    let cmd = Command::Capture { port: port.into(), direction: CaptureDirection::Both, count, snaplen: None };
    let mut line = Request::new(cmd).to_line().into_bytes();
    line.push(b'\n');
    line
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// `d` with bridge br0 and port p1, to capture on.
fn with_port_p1(d: Daemon) -> Daemon {
    let port = rvs_proto::config::PortConfig::afxdp("p1", Default::default());
    let br = Command::BridgeAdd { bridge: "br0".into(), aging_secs: None, max_macs: None, gateway: vec![] };
    assert!(request(&d.sock, &Request::new(br)).unwrap().ok);
    assert!(request(&d.sock, &Request::new(Command::PortAdd { bridge: "br0".into(), port })).unwrap().ok);
    d
}

#[test]
fn capture_streams_frames_and_never_blocks_the_loop() {
    let d = with_port_p1(Daemon::start("srv-capture"));
    let ring = |d: &Daemon| d.dp.inner().captures.get("p1").cloned();

    // A count: two frames, then the end message, then the stream closes
    // and the capture is stopped.
    let (mut s, mut rd) = raw(&d.sock);
    s.write_all(&capture_line("p1", Some(2))).unwrap();
    let r = read_reply(&mut rd);
    assert!(r.ok, "{r:?}");
    assert_eq!(r.result.unwrap()["snaplen"], MAX_SNAPLEN);
    let e = request(
        &d.sock,
        &Request::new(Command::Capture {
            port: "p1".into(),
            direction: CaptureDirection::In,
            count: None,
            snaplen: None,
        }),
    )
    .unwrap();
    assert!(e.error.unwrap().contains("a capture already runs"));
    let rg = ring(&d).expect("capture started");
    for i in 0..3u8 {
        rg.offer(&[i; 20], i == 1);
    }
    let got = read_stream(&mut rd, 10);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(matches!(&got[0], capstream::Message::Frame { data, out: false, orig_len: 20, .. } if data == &[0; 20]));
    assert!(matches!(&got[1], capstream::Message::Frame { data, out: true, .. } if data == &[1; 20]));
    let capstream::Message::End(end) = &got[2] else { panic!("{got:?}") };
    assert_eq!((end.captured, end.reason.as_deref()), (2, Some("count reached")));
    assert!(ring(&d).is_none(), "capture still running after its count");

    // A client that never reads: its ring fills and counts drops while
    // other clients are served; closing it stops the capture.
    let (mut slow, _slow_rd) = raw(&d.sock);
    slow.write_all(&capture_line("p1", None)).unwrap();
    wait_until("the slow capture to start", || ring(&d).is_some());
    let rg = ring(&d).unwrap();
    let big = [7u8; 1500];
    for _ in 0..200 {
        for _ in 0..64 {
            rg.offer(&big, false);
        }
        assert!(request(&d.sock, &Request::new(Command::Ping)).unwrap().ok);
        if rg.dropped() > 0 {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    assert!(rg.dropped() > 0, "a reader that never reads made no drops");
    drop(slow);
    drop(_slow_rd);
    wait_until("the capture to stop when its client left", || ring(&d).is_none());

    // Half-closing ends the stream with the final counters.
    let (mut s, mut rd) = raw(&d.sock);
    s.write_all(&capture_line("p1", None)).unwrap();
    assert!(read_reply(&mut rd).ok);
    ring(&d).unwrap().offer(&[9; 30], false);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let got = read_stream(&mut rd, 2);
    assert!(
        matches!(&got[..], [capstream::Message::Frame { .. }, capstream::Message::End(e)]
        if e.captured == 1 && e.reason.as_deref() == Some("stopped by the client")),
        "{got:?}"
    );
    wait_until("the capture to stop", || ring(&d).is_none());

    // Removing the port ends its capture with the reason.
    let (mut s, mut rd) = raw(&d.sock);
    s.write_all(&capture_line("p1", None)).unwrap();
    assert!(read_reply(&mut rd).ok);
    let del = Command::PortDel { bridge: "br0".into(), port: "p1".into() };
    assert!(request(&d.sock, &Request::new(del)).unwrap().ok);
    let got = read_stream(&mut rd, 1);
    assert!(
        matches!(&got[..], [capstream::Message::End(e)] if e.reason.as_deref() == Some("p1 was removed")),
        "{got:?}"
    );
}

#[test]
fn group_lookup() {
    assert_eq!(group_id("0"), Ok(0));
    assert_eq!(group_id("root"), Ok(0));
    assert_eq!(group_id("no-such-group-rvs"), Err("unknown group \"no-such-group-rvs\"".to_string()));
    assert!(group_id("a\0b").is_err());
}

#[test]
fn idle_clients_are_dropped() {
    let d = Daemon::start_idle("srv-idle", Duration::from_millis(300));
    let (mut s, mut rd) = raw(&d.sock);
    s.write_all(b"{\"version\":1,").unwrap();
    let t0 = Instant::now();
    let mut rest = String::new();
    assert_eq!(rd.read_line(&mut rest).unwrap(), 0);
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(request(&d.sock, &Request::new(Command::Ping)).unwrap().ok);
}

/// A capture client evicted to make room for a new client (the oldest of
/// MAX_CLIENTS) has its capture stopped, or the port's kernel path would
/// stay paused with no one reading; and a capture client that stops
/// reading is dropped at the idle timeout, its capture stopped.
#[test]
fn an_evicted_or_stuck_capture_client_stops_its_capture() {
    let d = with_port_p1(Daemon::start_idle("srv-evict", Duration::from_millis(500)));
    let ring = |d: &Daemon| d.dp.inner().captures.get("p1").cloned();
    let (mut s, mut rd) = raw(&d.sock);
    s.write_all(&capture_line("p1", None)).unwrap();
    assert!(read_reply(&mut rd).ok);
    assert!(ring(&d).is_some());
    // MAX_CLIENTS newer clients, each having said something.
    let others: Vec<_> = (0..MAX_CLIENTS)
        .map(|_| {
            let (mut o, r) = raw(&d.sock);
            o.write_all(b"\n").unwrap();
            (o, r)
        })
        .collect();
    wait_until("the evicted capture to stop", || ring(&d).is_none());
    drop(others);

    // A capture whose client never reads: output piles up, the client is
    // dropped after the idle timeout, the capture stops.
    let (mut slow, _slow_rd) = raw(&d.sock);
    slow.write_all(&capture_line("p1", None)).unwrap();
    wait_until("the slow capture to start", || ring(&d).is_some());
    let rg = ring(&d).unwrap();
    let t0 = Instant::now();
    while ring(&d).is_some() && t0.elapsed() < Duration::from_secs(5) {
        for _ in 0..64 {
            rg.offer(&[7u8; 1500], false);
        }
        thread::sleep(Duration::from_millis(5));
    }
    assert!(ring(&d).is_none(), "a capture client that stopped reading kept its capture 5 s");
}

/// Blank lines are no activity: a client that sends only them is dropped
/// at the idle timeout like a silent one.
#[test]
fn blank_lines_do_not_keep_a_client() {
    let d = Daemon::start_idle("srv-blank", Duration::from_millis(300));
    let (mut s, mut rd) = raw(&d.sock);
    rd.get_ref().set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let t0 = Instant::now();
    let mut rest = String::new();
    let closed = loop {
        if s.write_all(b"\n\n\n").is_err() {
            break true; // closed under our write
        }
        match rd.read_line(&mut rest) {
            Ok(0) => break true,
            Ok(_) => panic!("a blank line answered: {rest:?}"),
            Err(_) if t0.elapsed() > Duration::from_secs(3) => break false,
            Err(_) => {}
        }
    };
    assert!(closed, "a client sending blank lines was kept 3 s (idle timeout 300 ms)");
    assert!(t0.elapsed() >= Duration::from_millis(250));
}

#[test]
fn ticks_and_refuses_second_daemon() {
    let d = Daemon::start("srv-tick");
    thread::sleep(Duration::from_millis(1300));
    assert!(d.dp.inner().ticks >= 1);
    let mut state = State::restore(&d.sock.with_file_name("other.json"), FakeDp::default()).unwrap();
    let e = serve(&d.sock, None, &mut state, &AtomicBool::new(true)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrInUse);
    assert!(request(&d.sock, &Request::new(Command::Ping)).unwrap().ok);
}

#[test]
fn stale_socket_is_replaced_and_not_running_is_clear() {
    let dir = temp_dir("srv-stale");
    let sock = dir.join("rvsd.sock");
    let e = request(&sock, &Request::new(Command::Ping)).unwrap_err();
    assert_eq!(
        e,
        format!("cannot connect to rvsd at {}: No such file or directory (is rvsd running?)", sock.display())
    );
    // A socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let mut state = State::restore(&dir.join("c.json"), FakeDp::default()).unwrap();
    serve(&sock, None, &mut state, &AtomicBool::new(true)).unwrap();
    assert!(!sock.exists());
    // A regular file is never removed.
    fs::write(&sock, "keep").unwrap();
    assert!(serve(&sock, None, &mut state, &AtomicBool::new(true)).is_err());
    assert_eq!(fs::read(&sock).unwrap(), b"keep");
}
