//! rvsctl as users run it: exit codes, one-line errors, and a round trip
//! through a real control socket served by rvsd's server with a fake
//! datapath.

mod common;

use rvs_proto::status::{FdbEntryInfo, FlowInfo, ThreadInfo};
use rvs_switch::control::server::serve;
use rvs_switch::control::state::State;
use rvs_switch::datapath::fake::FakeDp;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn rvsctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(common::rvsctl_bin())
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
        &[
            "port", "add", "br0", "vx", "--type", "vxlan", "--vni", "16777216", "--local", "10.0.0.1", "--remote",
            "10.0.0.2",
        ],
        &["port", "add", "br0", "vx", "--type", "vxlan", "--vni", "1", "--local", "10.0.0", "--remote", "10.0.0.2"],
        &["port", "add", "br0", "vx", "--type", "vxlan", "--vni", "1", "--local", "10.0.0.1", "--remote", "::2"],
        &["port", "add", "br0", "vx", "--type", "vxlan", "--vni", "1", "--local", "10.0.0.1", "--remote", "10.0.0.1"],
        &["port", "set", "br0", "vx", "--remote", "10.0.0.2", "--remote", "10.0.0.2"],
        &["port", "set", "br0", "vx"],
        &["port", "remote", "add", "br0", "vx", "10.0.0.256"],
        &["uplink", "add", "eth1", "--queues", "0"],
        &["uplink", "add", "eth1", "--xdp-mode", "turbo"],
        &["pmd", "assign", "veth-a", "x", "2"],
        &["pmd", "assign", "veth-a", "0", "core2"],
        &["pmd", "assign", "veth-a", "-1", "2"],
        &["pmd", "assign", "veth-a", "0", "-2"],
        &["pmd", "assign", "veth-a", "4294967296", "2"],
        &["pmd", "assign", "veth-a", "0"],
        &["pmd", "assign", "name-far-too-long", "0", "2"],
        &["flows", "show", "br0"],
        &["flows", "drop"],
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
    let o = Command::new(common::rvsctl_bin()).arg("ping").env("RVS_SOCKET", "/nonexistent/env.sock").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/env.sock"), "{}", stderr(&o));
}

#[test]
fn help_works_everywhere() {
    for args in [
        &["--help"][..],
        &["port", "add", "--help"],
        &["fdb", "--help"],
        &["pmd", "show", "--help"],
        &["uplink", "add", "--help"],
        &["port", "set", "--help"],
        &["port", "remote", "add", "--help"],
        &["pmd", "assign", "--help"],
        &["flows", "show", "--help"],
        &["flows", "flush", "--help"],
    ] {
        let o = rvsctl(Path::new("/x"), args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(stdout(&o).contains("Usage:"));
    }
}

/// The shared fake datapath, laid out as these tests expect: polling
/// threads on cores 2, 3 and 5, queues 0 and 1 of every port on 2 and 3,
/// native XDP, and no interface "missing0".
fn fake() -> FakeDp {
    let dp = FakeDp::default();
    {
        let mut g = dp.inner();
        g.layout = Some((vec![2, 3, 5], [2, 3]));
        g.xdp_mode = Some("native".into());
        g.missing.insert("missing0".into());
    }
    dp
}

/// A daemon thread serving `sock` from `db` with the fake datapath; stop it
/// by setting the flag and joining.
fn start_daemon(sock: &Path, db: &Path) -> (Arc<AtomicBool>, thread::JoinHandle<()>, FakeDp) {
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, st2, db2) = (sock.to_path_buf(), stop.clone(), db.to_path_buf());
    let dp = fake();
    let dp2 = dp.clone();
    let server = thread::spawn(move || {
        let mut state = State::restore(&db2, dp2).unwrap();
        serve(&s2, None, &mut state, &st2).unwrap();
    });
    let t0 = Instant::now();
    while !sock.exists() {
        assert!(t0.elapsed() < Duration::from_secs(5));
        thread::sleep(Duration::from_millis(10));
    }
    (stop, server, dp)
}

/// `rvsctl ARGS` against `sock`, which must succeed; its output.
fn ok_at(sock: &Path, args: &[&str]) -> String {
    let o = rvsctl(sock, args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

/// `rvsctl ARGS` against `sock`, which must fail with exit 1 and `want`.
fn fails_at(sock: &Path, args: &[&str], want: &str) {
    fails_with(sock, args, 1, want);
}

/// `rvsctl ARGS` against `sock`, which must fail with exit `code` and `want`.
fn fails_with(sock: &Path, args: &[&str], code: i32, want: &str) {
    let o = rvsctl(sock, args);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
    assert_eq!(stderr(&o), format!("rvsctl: {want}\n"), "{args:?}");
}

#[test]
fn vxlan_and_uplinks_through_a_real_socket() {
    let dir = temp_dir("e2e-vxlan");
    let sock = dir.join("rvsd.sock");
    let db = dir.join("conf.json");
    let (stop, server, dp) = start_daemon(&sock, &db);
    let ok = |args: &[&str]| ok_at(&sock, args);
    let fails = |args: &[&str], want: &str| fails_at(&sock, args, want);
    let remotes = || -> Vec<String> {
        let cfg = rvs_switch::db::load(&db).unwrap();
        cfg.bridges[0].ports[0].vxlan.as_ref().unwrap().remotes.iter().map(|r| r.to_string()).collect()
    };

    ok(&["bridge", "add", "br0"]);
    let vx42 = [
        "port",
        "add",
        "br0",
        "vx42",
        "--type",
        "vxlan",
        "--vni",
        "42",
        "--local",
        "198.18.1.1",
        "--remote",
        "198.18.1.2",
        "--remote",
        "198.18.1.3",
    ];
    fails(&vx42, "no uplink serves local address 198.18.1.1");
    assert_eq!(ok(&["uplink", "list"]), "no uplinks\n");
    ok(&["uplink", "add", "eth1", "--queues", "2", "--xdp-mode", "native"]);
    fails_with(&sock, &["uplink", "add", "eth1"], 3, "uplink \"eth1\" already exists");
    fails(&["uplink", "add", "missing0"], "no interface \"missing0\"");
    let list = ok(&["uplink", "list"]);
    assert!(list.contains("eth1    up     native  1500  198.18.1.1  0→2 1→3"), "{list}");
    ok(&vx42);
    fails_with(&sock, &vx42, 3, "port \"vx42\" already exists in bridge \"br0\"");
    let mut clash = vx42;
    clash[3] = "vx43";
    let o = rvsctl(&sock, &clash);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("rvsctl: port \"vx42\" already uses local 198.18.1.1, dstport 4789, VNI 42"));
    assert_eq!(remotes(), ["198.18.1.2", "198.18.1.3"]);

    let show = ok(&["show"]);
    assert!(show.starts_with("uplinks:\n  UPLINK"), "{show}");
    assert!(show.contains("vx42  vxlan  access 1  up"), "{show}");
    assert!(show.contains("vx42: VNI 42, local 198.18.1.1, dstport 4789, ttl 64, inner MTU 1450"), "{show}");
    assert!(show.contains("198.18.1.2  02:00:00:00:00:fe"), "{show}");
    let json: serde_json::Value = serde_json::from_str(&ok(&["--json", "show"])).unwrap();
    assert_eq!(json["uplinks"][0]["config"]["name"], "eth1");
    assert_eq!(json["uplinks"][0]["status"]["vteps"][0], "198.18.1.1");
    let port = &json["bridges"][0]["ports"][0];
    assert_eq!(port["config"]["type"], "vxlan");
    assert_eq!(port["config"]["vxlan"]["vni"], 42);
    assert_eq!(port["config"]["vxlan"]["remotes"][1], "198.18.1.3");
    assert_eq!(port["status"]["inner_mtu"], 1450);
    assert_eq!(port["status"]["remotes"][0]["next_hop_mac"], "02:00:00:00:00:fe");
    // A MAC learned behind the first remote.
    dp.inner().learned.push((
        "br0".into(),
        FdbEntryInfo {
            mac: "02:00:00:00:00:42".into(),
            vlan: 1,
            port: "vx42".into(),
            is_static: false,
            age_secs: 1,
            remote: Some("198.18.1.2".into()),
        },
    ));
    let fdb = ok(&["fdb", "show", "br0"]);
    assert!(fdb.contains("02:00:00:00:00:42  vx42 (198.18.1.2)  1"), "{fdb}");
    let json: serde_json::Value = serde_json::from_str(&ok(&["--json", "fdb", "show", "br0"])).unwrap();
    assert_eq!(json[0]["remote"], "198.18.1.2");

    // Remote changes: whole list, one more, one less, none.
    ok(&["port", "set", "br0", "vx42", "--remote", "198.18.1.4", "--remote", "198.18.1.5"]);
    assert_eq!(remotes(), ["198.18.1.4", "198.18.1.5"]);
    ok(&["port", "remote", "add", "br0", "vx42", "198.18.1.6"]);
    assert_eq!(remotes(), ["198.18.1.4", "198.18.1.5", "198.18.1.6"]);
    ok(&["port", "remote", "del", "br0", "vx42", "198.18.1.4"]);
    assert_eq!(remotes(), ["198.18.1.5", "198.18.1.6"]);
    fails(&["port", "remote", "add", "br0", "vx42", "198.18.1.5"], "198.18.1.5 is already a remote of port \"vx42\"");
    fails(&["port", "remote", "del", "br0", "vx42", "198.18.1.9"], "198.18.1.9 is not a remote of port \"vx42\"");
    fails(&["port", "remote", "add", "br0", "vx42", "198.18.1.1"], "remote 198.18.1.1 is the local address");
    fails(&["port", "remote", "add", "br9", "vx42", "198.18.1.7"], "unknown bridge \"br9\"");
    fails(
        &["port", "set", "br0", "vx42", "--remote", "2001:db8::2"],
        "remote 2001:db8::2 and local 198.18.1.1 are of different address families",
    );
    ok(&["port", "set", "br0", "vx42", "--no-remotes"]);
    assert!(remotes().is_empty());
    assert!(ok(&["show"]).contains("    no remotes\n"));
    ok(&["port", "set", "br0", "vx42", "--remote", "198.18.1.2"]);

    // The datapath refuses to take the uplink from under the tunnel.
    fails(&["uplink", "del", "eth1"], "uplink \"eth1\" serves the local address of a vxlan port");
    assert_eq!(rvs_switch::db::load(&db).unwrap().uplinks.len(), 1);

    // A restart brings uplinks and tunnels back.
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let before = rvs_switch::db::load(&db).unwrap();
    let (stop, server, _) = start_daemon(&sock, &db);
    let show = ok(&["show"]);
    assert!(show.contains("eth1    up"), "{show}");
    assert!(show.contains("vx42  vxlan  access 1  up"), "{show}");
    assert_eq!(rvs_switch::db::load(&db).unwrap(), before);

    ok(&["port", "del", "br0", "vx42"]);
    ok(&["uplink", "del", "eth1"]);
    fails_with(&sock, &["uplink", "del", "eth1"], 4, "unknown uplink \"eth1\"");
    let saved = rvs_switch::db::load(&db).unwrap();
    assert!(saved.uplinks.is_empty());
    assert!(saved.bridges[0].ports.is_empty());

    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn round_trip_through_a_real_socket() {
    let dir = temp_dir("e2e");
    let sock = dir.join("rvsd.sock");
    let db = dir.join("conf.json");
    let (stop, server, dp) = start_daemon(&sock, &db);
    let ok = |args: &[&str]| ok_at(&sock, args);
    ok(&["bridge", "add", "br0"]);
    ok(&["port", "add", "br0", "veth-a", "--type", "afxdp"]);
    ok(&["port", "add", "br0", "trunk0", "--type", "afxdp", "--trunk", "10-12,20"]);
    fails_with(&sock, &["bridge", "add", "br0"], 3, "bridge \"br0\" already exists");
    let o = rvsctl(&sock, &["port", "add", "br0", "missing0", "--type", "afxdp"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "rvsctl: no interface \"missing0\"\n");

    ok(&["fdb", "add", "br0", "02:00:00:00:00:01", "--port", "veth-a"]);
    let fdb = ok(&["fdb", "show", "br0"]);
    assert!(fdb.starts_with("VLAN  MAC"), "{fdb}");
    assert!(fdb.contains("02:00:00:00:00:01  veth-a  static"), "{fdb}");
    let learned = "02:00:00:00:00:99".parse().unwrap();
    dp.inner().fdb.insert(("br0".into(), learned, 1), ("veth-a".into(), false));
    assert!(ok(&["fdb", "flush", "br0"]).contains("flushed 1"));

    let show = ok(&["show"]);
    assert!(show.contains("bridge br0: aging 300 s"), "{show}");
    assert!(show.contains("trunk 10-12,20"), "{show}");
    assert!(show.contains("0→2 1→3"), "{show}");
    let stats = ok(&["stats"]);
    assert!(stats.contains("runt=2"), "{stats}");
    let pmd = ok(&["pmd", "show"]);
    assert!(pmd.contains("25.0%"), "{pmd}");
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

#[test]
fn pmd_and_flows_through_a_real_socket() {
    let dir = temp_dir("e2e-pmd");
    let sock = dir.join("rvsd.sock");
    let db = dir.join("conf.json");
    let (stop, server, dp) = start_daemon(&sock, &db);
    let ok = |args: &[&str]| ok_at(&sock, args);
    let fails = |args: &[&str], want: &str| fails_at(&sock, args, want);
    let saved = || rvs_switch::db::load(&db).unwrap();

    ok(&["bridge", "add", "br0"]);
    ok(&["port", "add", "br0", "veth-a", "--type", "afxdp"]);
    ok(&["uplink", "add", "eth1"]);
    let vx = ["port", "add", "br0", "vx42", "--type", "vxlan", "--vni", "42", "--local", "198.18.1.1"];
    let mut vx = vx.to_vec();
    vx.extend(["--remote", "198.18.1.2"]);
    ok(&vx);
    dp.inner().threads = vec![ThreadInfo {
        core: 2,
        rx_queues: vec![("veth-a".into(), 0)],
        packets: 100,
        busy_ns: 1,
        idle_ns: 1,
        busy_cycles: 3000,
        idle_cycles: 3000,
        cache_hits: 90,
        cache_misses: 10,
        cache_evictions: 1,
        cache_entries: 2,
        ..ThreadInfo::default()
    }];
    // A flow from behind the tunnel's remote, and one back into it.
    let flow = |in_port: &str, remote: Option<&str>, src: &str, dst: &str, action: &str, hits| FlowInfo {
        core: 2,
        bridge: "br0".into(),
        in_port: in_port.into(),
        remote: remote.map(String::from),
        src: src.into(),
        dst: dst.into(),
        vlan: 1,
        action: action.into(),
        hits,
    };
    dp.inner().flows = vec![
        flow("vx42", Some("198.18.1.2"), "02:00:00:00:00:42", "02:00:00:00:00:01", "output:veth-a", 9),
        flow("veth-a", None, "02:00:00:00:00:01", "02:00:00:00:00:42", "output:vx42->198.18.1.2", 4),
    ];

    // pmd show: load, cycles and cache columns.
    assert_eq!(
        ok(&["pmd", "show"]),
        "CORE  RX-QUEUES  PACKETS  CYCLES/PKT  BUSY %  CACHE HIT %  CACHE ENTRIES  EVICTIONS\n\
         2     veth-a/0   100      30          50.0%   90.0%        2              1\n"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&["--json", "pmd", "show"])).unwrap();
    assert_eq!(json[0]["busy_cycles"], 3000);
    assert_eq!(json[0]["cache_hits"], 90);
    assert_eq!(json[0]["cache_entries"], 2);

    // flows show / flush.
    let flows = ok(&["flows", "show"]);
    assert!(flows.starts_with("CORE  BRIDGE  IN-PORT            SRC"), "{flows}");
    assert!(
        flows.contains("2     br0     vx42 (198.18.1.2)  02:00:00:00:00:42  02:00:00:00:00:01  1     output:veth-a"),
        "{flows}"
    );
    assert!(flows.contains("output:vx42->198.18.1.2  4"), "{flows}");
    let json: serde_json::Value = serde_json::from_str(&ok(&["--json", "flows", "show"])).unwrap();
    let back = json.as_array().unwrap().iter().find(|f| f["in_port"] == "vx42").unwrap();
    assert_eq!(back["remote"], "198.18.1.2");
    assert_eq!(back["hits"], 9);
    assert!(json.as_array().unwrap().iter().any(|f| f["in_port"] == "veth-a" && f.get("remote").is_none()));
    let before = std::fs::read(&db).unwrap();
    assert_eq!(ok(&["flows", "flush"]), "");
    assert_eq!(ok(&["--json", "flows", "flush"]), "null\n");
    assert_eq!(ok(&["flows", "show"]), "no cached flows\n");
    assert_eq!(std::fs::read(&db).unwrap(), before, "a flush is not persisted");

    // pmd assign: live, persisted, refused cleanly.
    assert_eq!(ok(&["pmd", "assign", "veth-a", "1", "5"]), "");
    ok(&["pmd", "assign", "eth1", "0", "3"]);
    assert_eq!(saved().bridges[0].ports[0].pmd, vec![(1, 5)]);
    assert_eq!(saved().uplinks[0].pmd, vec![(0, 3)]);
    let show = ok(&["show"]);
    assert!(show.contains("veth-a  afxdp  access 1  up     native  tc         0→2 1→5"), "{show}");
    assert!(ok(&["uplink", "list"]).contains("0→3 1→3"));
    let json: serde_json::Value = serde_json::from_str(&ok(&["--json", "show"])).unwrap();
    assert_eq!(json["bridges"][0]["ports"][0]["config"]["pmd"], serde_json::json!([[1, 5]]));
    let before = std::fs::read(&db).unwrap();
    fails(&["pmd", "assign", "veth-a", "0", "9"], "no polling thread on core 9");
    fails(&["pmd", "assign", "veth-a", "7", "2"], "\"veth-a\" has 2 rx queues; there is no queue 7");
    fails(&["pmd", "assign", "nope", "0", "2"], "unknown port or uplink \"nope\"");
    assert_eq!(std::fs::read(&db).unwrap(), before);

    // A restart puts the queues back where they were assigned.
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let (stop, server, _) = start_daemon(&sock, &db);
    let show = ok(&["show"]);
    assert!(show.contains("veth-a  afxdp  access 1  up     native  tc         0→2 1→5"), "{show}");
    assert!(ok(&["uplink", "list"]).contains("0→3 1→3"));
    assert_eq!(std::fs::read(&db).unwrap(), before);

    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Automation can tell "already exists" (exit 3) and "does not exist"
/// (exit 4) from other refusals (exit 1), and `--may-exist` /
/// `--if-exists` make those no error at all, as in `ovs-vsctl`. The codes
/// are in `--help` and the man page.
#[test]
fn exists_and_not_found_have_their_own_exit_codes_and_flags() {
    let dir = temp_dir("exists");
    let (sock, db) = (dir.join("rvsd.sock"), dir.join("conf.json"));
    let (stop, server, _dp) = start_daemon(&sock, &db);
    let code = |args: &[&str]| {
        let o = rvsctl(&sock, args);
        (o.status.code(), stderr(&o))
    };
    ok_at(&sock, &["bridge", "add", "br0"]);
    assert_eq!(code(&["bridge", "add", "br0"]), (Some(3), "rvsctl: bridge \"br0\" already exists\n".into()));
    assert_eq!(code(&["bridge", "add", "br0", "--may-exist"]), (Some(0), String::new()));
    ok_at(&sock, &["port", "add", "br0", "p1", "--type", "afxdp"]);
    assert_eq!(code(&["port", "add", "br0", "p1", "--type", "afxdp"]).0, Some(3));
    assert_eq!(code(&["port", "add", "br0", "p1", "--type", "afxdp", "--may-exist"]), (Some(0), String::new()));
    ok_at(&sock, &["uplink", "add", "eth1"]);
    assert_eq!(code(&["uplink", "add", "eth1"]).0, Some(3));
    assert_eq!(code(&["uplink", "add", "p1"]).0, Some(3), "a port's name is taken for an uplink too");
    assert_eq!(code(&["uplink", "add", "eth1", "--may-exist"]).0, Some(0));

    for (args, if_exists) in [
        (&["bridge", "del", "nope"][..], &["bridge", "del", "nope", "--if-exists"][..]),
        (&["port", "del", "br0", "nope"], &["port", "del", "br0", "nope", "--if-exists"]),
        (&["port", "del", "nobr", "p1"], &["port", "del", "nobr", "p1", "--if-exists"]),
        (&["uplink", "del", "nope"], &["uplink", "del", "nope", "--if-exists"]),
    ] {
        assert_eq!(code(args).0, Some(4), "{args:?}");
        assert_eq!(code(if_exists), (Some(0), String::new()), "{if_exists:?}");
    }
    assert_eq!(code(&["fdb", "show", "nope"]).0, Some(4));
    assert_eq!(code(&["bridge", "set", "nope", "--aging", "10"]).0, Some(4));
    // Other refusals keep exit 1, flags or not: the port exists in another
    // bridge, which is neither kind.
    ok_at(&sock, &["bridge", "add", "br1"]);
    assert_eq!(code(&["port", "del", "br1", "p1", "--if-exists"]).0, Some(1));
    assert_eq!(code(&["bridge", "del", "br1", "--if-exists"]).0, Some(0));
    assert_eq!(code(&["bridge", "del", "br1", "--if-exists"]).0, Some(0), "twice");
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();

    let help = stdout(&rvsctl(Path::new("/x"), &["--help"]));
    assert!(help.contains("Exit status:") && help.contains("3  what was to be added already exists"), "{help}");
    let man = stdout(&rvsctl(Path::new("/x"), &["man"]));
    assert!(man.contains("Exit status:") && man.contains("4  what was named does not exist"), "{man}");
    let _ = std::fs::remove_dir_all(&dir);
}
