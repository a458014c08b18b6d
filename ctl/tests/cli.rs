//! rvsctl as users run it: exit codes, one-line errors, and a round trip
//! through a real control socket served by rvsd's server with a fake
//! datapath.

use rvs_switch::config::{BridgeConfig, PortConfig};
use rvs_switch::datapath::{Datapath, DpResult, FdbEntryInfo, PortStatsInfo, PortStatus, ThreadInfo};
use rvs_switch::proto::MacAddr;
use rvs_switch::server::serve;
use rvs_switch::state::State;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn rvsctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rvsctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("RVS_SOCKET")
        .output()
        .expect("run rvsctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = PathBuf::from("/tmp").join(format!("rvsctl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let sock = Path::new("/nonexistent/rvsd.sock");
    for args in [
        &["fdb", "add", "br0", "02:00:00:00:00", "--port", "p"][..],
        &["fdb", "add", "br0", "ff:ff:ff:ff:ff:ff", "--port", "p"],
        &["fdb", "del", "br0", "02:00:00:00:00:01", "--vlan", "0"],
        &["port", "add", "br0", "p", "--type", "afxdp", "--vlan", "0"],
        &["port", "add", "br0", "p", "--type", "afxdp", "--vlan", "4095"],
        &["port", "add", "br0", "p", "--type", "afxdp", "--trunk", "10,x"],
        &["port", "add", "br0", "p", "--type", "afxdp", "--netns", "ns"],
        &["port", "add", "br0", "p"],
        &["bridge", "set", "br0"],
        &["nonsense"],
    ] {
        let o = rvsctl(sock, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("rvsctl: "), "{err}");
        // Nothing was sent: had it been, the error would be about connecting.
        assert!(!err.contains("cannot connect"), "{err}");
    }
}

#[test]
fn daemon_not_running_is_clear() {
    let sock = Path::new("/nonexistent/rvsd.sock");
    let o = rvsctl(sock, &["show"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "rvsctl: cannot connect to rvsd at /nonexistent/rvsd.sock: No such file or directory (is rvsd running?)\n"
    );
}

#[test]
fn socket_from_environment() {
    let o = Command::new(env!("CARGO_BIN_EXE_rvsctl"))
        .arg("ping")
        .env("RVS_SOCKET", "/nonexistent/env.sock")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/env.sock"), "{}", stderr(&o));
}

#[test]
fn help_works_everywhere() {
    for args in [&["--help"][..], &["port", "add", "--help"], &["fdb", "--help"], &["pmd", "show", "--help"]] {
        let o = rvsctl(Path::new("/x"), args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(stdout(&o).contains("Usage:"));
    }
}

/// Just enough datapath to answer.
#[derive(Default)]
struct Fake {
    ports: BTreeMap<String, String>,
    fdb: Vec<FdbEntryInfo>,
}

impl Datapath for Fake {
    fn add_bridge(&mut self, _: &BridgeConfig) -> DpResult<()> {
        Ok(())
    }
    fn set_bridge(&mut self, _: &BridgeConfig) -> DpResult<()> {
        Ok(())
    }
    fn del_bridge(&mut self, _: &str) -> DpResult<()> {
        Ok(())
    }
    fn add_port(&mut self, bridge: &str, port: &PortConfig) -> DpResult<()> {
        if port.name == "missing0" {
            return Err("no interface \"missing0\"".into());
        }
        self.ports.insert(port.name.clone(), bridge.into());
        Ok(())
    }
    fn del_port(&mut self, name: &str) -> DpResult<()> {
        self.ports.remove(name);
        self.fdb.retain(|e| e.port != name);
        Ok(())
    }
    fn fdb_add(&mut self, _: &str, mac: MacAddr, vlan: u16, port: &str) -> DpResult<()> {
        self.fdb.push(FdbEntryInfo {
            mac: mac.to_string(),
            vlan,
            port: port.into(),
            is_static: true,
            age_secs: 0,
            remote: None,
        });
        self.fdb.push(FdbEntryInfo {
            mac: "02:00:00:00:00:99".into(),
            vlan,
            port: port.into(),
            is_static: false,
            age_secs: 7,
            remote: None,
        });
        Ok(())
    }
    fn fdb_del(&mut self, _: &str, mac: MacAddr, vlan: u16) -> DpResult<bool> {
        let n = self.fdb.len();
        self.fdb.retain(|e| !(e.mac == mac.to_string() && e.vlan == vlan));
        Ok(self.fdb.len() != n)
    }
    fn fdb_flush(&mut self, _: &str, _: Option<&str>) -> DpResult<usize> {
        let n = self.fdb.len();
        self.fdb.retain(|e| e.is_static);
        Ok(n - self.fdb.len())
    }
    fn fdb_show(&self, _: &str) -> DpResult<Vec<FdbEntryInfo>> {
        Ok(self.fdb.clone())
    }
    fn port_status(&self) -> Vec<PortStatus> {
        self.ports
            .iter()
            .map(|(n, b)| PortStatus {
                name: n.clone(),
                bridge: b.clone(),
                kind: "afxdp".into(),
                state: "up".into(),
                xdp_mode: "native".into(),
                queues: vec![(0, 2), (1, 3)],
                inner_mtu: None,
                remotes: Vec::new(),
            })
            .collect()
    }
    fn port_stats(&self) -> Vec<PortStatsInfo> {
        self.ports
            .iter()
            .map(|(n, b)| PortStatsInfo {
                name: n.clone(),
                bridge: b.clone(),
                rx_packets: 1,
                rx_bytes: 64,
                tx_packets: 2,
                tx_bytes: 128,
                learn_refused: 0,
                drops: vec![("runt".into(), 3)],
            })
            .collect()
    }
    fn threads(&self) -> Vec<ThreadInfo> {
        vec![ThreadInfo { core: 2, rx_queues: vec![("veth-a".into(), 0)], packets: 100, busy_ns: 1, idle_ns: 1 }]
    }
    fn tick(&mut self) {}
}

#[test]
fn round_trip_through_a_real_socket() {
    let dir = temp_dir("e2e");
    let sock = dir.join("rvsd.sock");
    let db = dir.join("conf.json");
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, st2, db2) = (sock.clone(), stop.clone(), db.clone());
    let server = thread::spawn(move || {
        let mut state = State::restore(&db2, Fake::default()).unwrap();
        serve(&s2, None, &mut state, &st2).unwrap();
    });
    let t0 = Instant::now();
    while !sock.exists() {
        assert!(t0.elapsed() < Duration::from_secs(5));
        thread::sleep(Duration::from_millis(10));
    }
    let ok = |args: &[&str]| {
        let o = rvsctl(&sock, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    ok(&["bridge", "add", "br0"]);
    ok(&["port", "add", "br0", "veth-a", "--type", "afxdp"]);
    ok(&["port", "add", "br0", "trunk0", "--type", "afxdp", "--trunk", "10-12,20"]);
    let o = rvsctl(&sock, &["bridge", "add", "br0"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "rvsctl: bridge \"br0\" already exists\n");
    let o = rvsctl(&sock, &["port", "add", "br0", "missing0", "--type", "afxdp"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "rvsctl: no interface \"missing0\"\n");

    ok(&["fdb", "add", "br0", "02:00:00:00:00:01", "--port", "veth-a"]);
    let fdb = ok(&["fdb", "show", "br0"]);
    assert!(fdb.starts_with("VLAN  MAC"), "{fdb}");
    assert!(fdb.contains("02:00:00:00:00:01  veth-a  static"), "{fdb}");
    assert!(ok(&["fdb", "flush", "br0"]).contains("flushed 1"));

    let show = ok(&["show"]);
    assert!(show.contains("bridge br0: aging 300 s"), "{show}");
    assert!(show.contains("trunk 10-12,20"), "{show}");
    assert!(show.contains("0→2 1→3"), "{show}");
    let stats = ok(&["stats"]);
    assert!(stats.contains("runt=3"), "{stats}");
    let pmd = ok(&["pmd", "show"]);
    assert!(pmd.contains("50.0%"), "{pmd}");
    let json = ok(&["--json", "bridge", "list"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["name"], "br0");
    assert_eq!(v[0]["ports"], 2);
    ok(&["--json", "ping"]);

    // The db has it all.
    let saved = rvs_switch::db::load(&db).unwrap();
    assert_eq!(saved.bridges[0].ports.len(), 2);

    ok(&["port", "del", "br0", "trunk0"]);
    ok(&["bridge", "del", "br0"]);
    assert!(rvs_switch::db::load(&db).unwrap().bridges.is_empty());

    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert!(!sock.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
