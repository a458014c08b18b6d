//! The state machine against the fake datapath.
//!
//! One file of about 700 lines on purpose: every test drives a `State`
//! over the shared fake with the same few helpers, command family after
//! command family.

use super::*;
use crate::datapath::fake::FakeDp;
use crate::db::tests::temp_dir;
use rvs_proto::config::{VxlanConfig, XdpMode};
use rvs_proto::status::{FdbEntryInfo, RemoteStatus};
use serde_json::Value;
use std::fs;

fn port(name: &str) -> PortConfig {
    PortConfig::afxdp(name, PortVlan::default())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn vx(name: &str, vni: u32, local: &str, remotes: &[&str]) -> PortConfig {
    PortConfig {
        name: name.into(),
        kind: PortType::Vxlan,
        vlan: PortVlan::default(),
        queues: None,
        xdp_mode: XdpMode::Auto,
        fast_path: Default::default(),
        netns: None,
        vxlan: Some(VxlanConfig::new(vni, ip(local), remotes.iter().map(|r| ip(r)).collect())),
        pmd: Vec::new(),
        max_macs: None,
        tap_created: false,
        addresses: Vec::new(),
        ifname: None,
        owner: None,
    }
}

fn assign(port: &str, queue: u32, core: usize) -> Command {
    Command::PmdAssign { port: port.into(), queue, core }
}

fn up_add(name: &str) -> Command {
    Command::UplinkAdd { uplink: UplinkConfig::new(name) }
}

fn set_remotes(br: &str, port: &str, remotes: &[&str]) -> Command {
    Command::PortSetRemotes {
        bridge: br.into(),
        port: port.into(),
        remotes: remotes.iter().map(|r| ip(r)).collect(),
        expect_remotes: None,
    }
}

fn setup(tag: &str) -> (State<FakeDp>, FakeDp, PathBuf) {
    let dir = temp_dir(tag);
    let db = dir.join("conf.json");
    let dp = FakeDp::default();
    let st = State::restore(&db, dp.clone()).unwrap();
    (st, dp, db)
}

fn run(st: &mut State<FakeDp>, cmd: Command) -> Result<Value, String> {
    let reply = st.handle(Request::new(cmd));
    // Every accepted change is in the db before the reply.
    if reply.ok {
        assert_eq!(&db::load(&st.db_path).unwrap(), st.config());
    }
    reply.into_result()
}

fn br_add(name: &str) -> Command {
    Command::BridgeAdd { bridge: name.into(), aging_secs: None, max_macs: None, gateway: vec![] }
}

fn p_add(br: &str, p: PortConfig) -> Command {
    Command::PortAdd { bridge: br.into(), port: p }
}

fn gw(addrs: &[&str]) -> Vec<IfAddr> {
    addrs.iter().map(|a| a.parse().unwrap()).collect()
}

fn gw_set(br: &str, gateway: Option<Vec<IfAddr>>) -> Command {
    Command::BridgeSet { bridge: br.into(), aging_secs: None, max_macs: None, gateway }
}

#[test]
fn gateway_is_an_internal_port_named_after_the_bridge() {
    let (mut st, dp, db) = setup("st-gateway");
    let add = |gateway| Command::BridgeAdd { bridge: "br0".into(), aging_secs: None, max_macs: None, gateway };
    run(&mut st, add(gw(&["198.18.0.1/24", "2001:2::1/64"]))).unwrap();
    let br = &st.config().bridges[0];
    assert_eq!(br.ports.len(), 1);
    assert_eq!((br.ports[0].name.as_str(), br.ports[0].kind), ("br0", PortType::Internal));
    assert_eq!(br.gateway(), gw(&["198.18.0.1/24", "2001:2::1/64"]));
    let show: ShowResult = serde_json::from_value(run(&mut st, Command::Show).unwrap()).unwrap();
    assert_eq!(show.bridges[0].gateway, gw(&["198.18.0.1/24", "2001:2::1/64"]));
    assert_eq!(show.bridges[0].ports[0].config.kind, PortType::Internal);
    let list: Vec<BridgeSummary> = serde_json::from_value(run(&mut st, Command::BridgeList).unwrap()).unwrap();
    assert_eq!(list[0].gateway, gw(&["198.18.0.1/24", "2001:2::1/64"]));

    // Not a port to add or remove by hand.
    let e = run(&mut st, p_add("br0", PortConfig::internal("br1", gw(&["198.18.1.1/24"])))).unwrap_err();
    assert!(e.contains("comes with a bridge's gateway"), "{e}");
    let e = run(&mut st, Command::PortDel { bridge: "br0".into(), port: "br0".into() }).unwrap_err();
    assert!(e.contains("--no-gateway"), "{e}");

    // Replaced, then removed, then added again with bridge set.
    run(&mut st, gw_set("br0", Some(gw(&["198.18.0.2/24"])))).unwrap();
    assert_eq!(dp.inner().ports["br0"].1.addresses, gw(&["198.18.0.2/24"]));
    assert_eq!(st.config().bridges[0].gateway(), gw(&["198.18.0.2/24"]));
    run(&mut st, gw_set("br0", Some(vec![]))).unwrap();
    assert!(st.config().bridges[0].ports.is_empty() && !dp.inner().ports.contains_key("br0"));
    run(&mut st, gw_set("br0", Some(vec![]))).unwrap();
    run(&mut st, gw_set("br0", Some(gw(&["198.18.0.1/24"])))).unwrap();
    assert!(dp.inner().ports.contains_key("br0"));

    // Bad input leaves nothing behind.
    let e = run(&mut st, gw_set("br0", Some(gw(&["198.18.0.1/24", "198.18.0.1/16"])))).unwrap_err();
    assert!(e.contains("given twice"), "{e}");
    run(&mut st, br_add("br1")).unwrap();
    run(&mut st, p_add("br1", port("br2"))).unwrap();
    let e = run(
        &mut st,
        Command::BridgeAdd { bridge: "br2".into(), aging_secs: None, max_macs: None, gateway: gw(&["198.18.2.1/24"]) },
    )
    .unwrap_err();
    assert!(e.contains("has the name bridge \"br2\"'s gateway port needs"), "{e}");
    assert!(st.bridge_idx("br2").is_err() && !dp.inner().bridges.contains_key("br2"));
    dp.inner().missing.insert("br3".into());
    let e = run(
        &mut st,
        Command::BridgeAdd { bridge: "br3".into(), aging_secs: None, max_macs: None, gateway: gw(&["198.18.3.1/24"]) },
    )
    .unwrap_err();
    assert!(e.contains("no interface \"br3\""), "{e}");
    assert!(st.bridge_idx("br3").is_err() && !dp.inner().bridges.contains_key("br3"));

    // Restored from the db; bridge del takes the port with it.
    let dp2 = FakeDp::default();
    let mut st2 = State::restore(&db, dp2.clone()).unwrap();
    assert_eq!(dp2.inner().ports["br0"].1.addresses, gw(&["198.18.0.1/24"]));
    run(&mut st2, Command::BridgeDel { bridge: "br0".into() }).unwrap();
    assert!(!dp2.inner().ports.contains_key("br0"));
}

#[test]
fn bridges_and_ports() {
    let (mut st, dp, db) = setup("st-basic");
    run(&mut st, br_add("br0")).unwrap();
    assert_eq!(run(&mut st, br_add("br0")).unwrap_err(), "bridge \"br0\" already exists");
    run(&mut st, br_add("br1")).unwrap();
    run(&mut st, p_add("br0", port("veth-a"))).unwrap();
    assert_eq!(
        run(&mut st, p_add("br1", port("veth-a"))).unwrap_err(),
        "port \"veth-a\" already exists in bridge \"br0\""
    );
    assert_eq!(run(&mut st, p_add("br9", port("x"))).unwrap_err(), "unknown bridge \"br9\"");
    let mut bad = port("veth-b");
    bad.vlan = PortVlan::Access { vlan: 4095 };
    assert_eq!(run(&mut st, p_add("br0", bad)).unwrap_err(), "invalid VLAN 4095 (must be 1..=4094)");
    let mut bad = port("veth-b");
    bad.vlan = PortVlan::Trunk { vlans: vec![], native: None };
    assert!(run(&mut st, p_add("br0", bad)).is_err());
    let mut bad = port("veth-b");
    bad.netns = Some("ns1".into());
    assert!(run(&mut st, p_add("br0", bad)).is_err());
    assert!(run(&mut st, p_add("br0", port("this-name-is-too-long"))).is_err());
    let mut trunk = port("trunk0");
    trunk.vlan = PortVlan::Trunk { vlans: vec![20, 10, 20], native: None };
    run(&mut st, p_add("br1", trunk)).unwrap();
    assert_eq!(st.config().bridges[1].ports[0].vlan, PortVlan::Trunk { vlans: vec![10, 20], native: None });
    assert_eq!(dp.inner().ports.len(), 2);

    // show / list / stats / pmd read.
    let show: ShowResult = serde_json::from_value(run(&mut st, Command::Show).unwrap()).unwrap();
    assert_eq!(show.bridges.len(), 2);
    assert_eq!(show.bridges[0].ports[0].status.state, "up");
    assert_eq!(show.threads.len(), 1);
    let list: Vec<BridgeSummary> = serde_json::from_value(run(&mut st, Command::BridgeList).unwrap()).unwrap();
    assert_eq!(list[0].ports, 1);
    let stats: Vec<PortStatsInfo> =
        serde_json::from_value(run(&mut st, Command::Stats { port: Some("veth-a".into()) }).unwrap()).unwrap();
    assert_eq!(stats.len(), 1);
    assert!(run(&mut st, Command::Stats { port: Some("nope".into()) }).is_err());
    run(&mut st, Command::PmdShow).unwrap();
    run(&mut st, Command::Ping).unwrap();

    // bridge_set
    run(&mut st, Command::BridgeSet { bridge: "br0".into(), aging_secs: Some(60), max_macs: None, gateway: None })
        .unwrap();
    assert_eq!(dp.inner().bridges["br0"].aging_secs, 60);
    assert!(run(
        &mut st,
        Command::BridgeSet { bridge: "br0".into(), aging_secs: Some(0), max_macs: None, gateway: None }
    )
    .is_err());

    // port_del, wrong bridge
    assert_eq!(
        run(&mut st, Command::PortDel { bridge: "br1".into(), port: "veth-a".into() }).unwrap_err(),
        "port \"veth-a\" is in bridge \"br0\", not \"br1\""
    );
    run(&mut st, Command::PortDel { bridge: "br0".into(), port: "veth-a".into() }).unwrap();
    // bridge_del removes its ports too
    run(&mut st, Command::BridgeDel { bridge: "br1".into() }).unwrap();
    assert!(dp.inner().ports.is_empty());
    assert_eq!(dp.inner().bridges.len(), 1);
    assert_eq!(db::load(&db).unwrap().bridges.len(), 1);
    // wrong version
    let r = st.handle(Request { version: 9, cmd: Command::Ping });
    assert!(r.error.unwrap().contains("unsupported protocol version 9"));
}

#[test]
fn datapath_error_changes_nothing() {
    let (mut st, dp, db) = setup("st-dperr");
    run(&mut st, br_add("br0")).unwrap();
    let before = fs::read(&db).unwrap();
    let cfg = st.config().clone();
    dp.inner().fail_next = Some("no such interface".into());
    assert_eq!(run(&mut st, p_add("br0", port("veth-a"))).unwrap_err(), "no such interface");
    dp.inner().fail_next = Some("boom".into());
    assert!(run(&mut st, Command::BridgeDel { bridge: "br0".into() }).is_err());
    assert_eq!(st.config(), &cfg);
    assert_eq!(fs::read(&db).unwrap(), before);
    assert!(dp.inner().ports.is_empty());
    assert!(dp.inner().bridges.contains_key("br0"));
}

#[test]
fn save_failure_undoes_datapath_change() {
    let (mut st, dp, db) = setup("st-savefail");
    run(&mut st, br_add("br0")).unwrap();
    // A directory where the temporary file goes makes every save fail.
    let mut tmp = db.clone().into_os_string();
    tmp.push(".tmp");
    fs::create_dir(&tmp).unwrap();
    let cfg = st.config().clone();
    let e = run(&mut st, p_add("br0", port("veth-a"))).unwrap_err();
    assert!(e.contains("cannot save configuration database"), "{e}");
    assert!(dp.inner().ports.is_empty());
    assert!(run(&mut st, br_add("br1")).is_err());
    assert!(!dp.inner().bridges.contains_key("br1"));
    assert!(run(&mut st, Command::BridgeDel { bridge: "br0".into() }).is_err());
    assert!(dp.inner().bridges.contains_key("br0"));
    assert_eq!(st.config(), &cfg);
    fs::remove_dir(&tmp).unwrap();
    run(&mut st, p_add("br0", port("veth-a"))).unwrap();
}

#[test]
fn neighbours() {
    use rvs_proto::status::NeighList;
    let (mut st, dp, db) = setup("st-neigh");
    run(&mut st, br_add("br0")).unwrap();
    let add = |ip: &str, mac: &str, vlan: u16| Command::NeighAdd {
        bridge: "br0".into(),
        ip: ip.into(),
        mac: mac.into(),
        vlan,
        port: None,
    };
    let kind = |st: &mut State<FakeDp>, cmd| st.handle(Request::new(cmd)).into_outcome().unwrap_err().kind;
    for (bad, why) in [
        (add("198.18.0.300", "02:00:00:00:00:01", 1), "invalid IP address"),
        (add("224.0.0.1", "02:00:00:00:00:01", 1), "cannot be bound"),
        (add("198.18.0.2", "nonsense", 1), "MAC"),
        (add("198.18.0.2", "01:00:5e:00:00:01", 1), "multicast"),
        (add("198.18.0.2", "ff:ff:ff:ff:ff:ff", 1), "multicast"),
        (add("198.18.0.2", "02:00:00:00:00:01", 0), "invalid VLAN"),
    ] {
        let e = run(&mut st, bad).unwrap_err();
        assert!(e.contains(why), "{e}");
    }
    let unknown = Command::NeighAdd {
        bridge: "nope".into(),
        ip: "198.18.0.2".into(),
        mac: "02:00:00:00:00:01".into(),
        vlan: 1,
        port: None,
    };
    assert_eq!(kind(&mut st, unknown), Some(ErrorKind::NotFound));
    run(&mut st, add("198.18.0.2", "02:00:00:00:00:02", 1)).unwrap();
    run(&mut st, add("2001:2::2", "02:00:00:00:00:02", 10)).unwrap();
    assert_eq!(kind(&mut st, add("198.18.0.2", "02:00:00:00:00:02", 1)), Some(ErrorKind::Exists));
    let e = st.handle(Request::new(add("198.18.0.2", "02:00:00:00:00:03", 1))).into_outcome().unwrap_err();
    assert_eq!(e.kind, None, "another MAC is a conflict, not an existing binding: {}", e.message);
    assert!(e.message.contains("neigh del"), "{}", e.message);
    assert_eq!(st.config().bridges[0].neighbors.len(), 2);
    assert_eq!(dp.inner().neigh.len(), 2);
    let list: NeighList = serde_json::from_value(run(&mut st, Command::NeighShow { bridge: None }).unwrap()).unwrap();
    let got: Vec<(String, u16, String)> =
        list.entries.iter().map(|e| (e.ip.to_string(), e.vlan, e.source.clone())).collect();
    assert_eq!(got, vec![("198.18.0.2".into(), 1, "static".into()), ("2001:2::2".into(), 10, "static".into())]);
    // Restored from the db.
    let dp2 = FakeDp::default();
    let _st2 = State::restore(&db, dp2.clone()).unwrap();
    assert_eq!(dp2.inner().neigh.len(), 2);
    // Removed, then not found.
    let del = |ip: &str, vlan: u16| Command::NeighDel { bridge: "br0".into(), ip: ip.into(), vlan };
    run(&mut st, del("198.18.0.2", 1)).unwrap();
    assert_eq!(kind(&mut st, del("198.18.0.2", 1)), Some(ErrorKind::NotFound));
    assert_eq!(st.config().bridges[0].neighbors.len(), 1);
    // A learned binding (not in the configuration) can be removed too.
    let learned = (IpAddr::from([198, 18, 0, 9]), 1);
    dp.inner().neigh.insert(
        ("br0".into(), learned.0, learned.1),
        (MacAddr([2, 0, 0, 0, 0, 9]), crate::datapath::NeighSource::Learned),
    );
    run(&mut st, del("198.18.0.9", 1)).unwrap();
    assert_eq!(kind(&mut st, Command::NeighShow { bridge: Some("nope".into()) }), Some(ErrorKind::NotFound));
}

#[test]
fn static_macs() {
    let (mut st, dp, _db) = setup("st-fdb");
    run(&mut st, br_add("br0")).unwrap();
    run(&mut st, br_add("br1")).unwrap();
    run(&mut st, p_add("br0", port("p1"))).unwrap();
    run(&mut st, p_add("br1", port("p2"))).unwrap();
    let add = |mac: &str, vlan: u16, port: &str| Command::FdbAdd {
        bridge: "br0".into(),
        mac: mac.into(),
        vlan,
        port: port.into(),
    };
    assert!(run(&mut st, add("01:00:5e:00:00:01", 1, "p1")).is_err());
    assert!(run(&mut st, add("nonsense", 1, "p1")).is_err());
    assert!(run(&mut st, add("02:00:00:00:00:01", 0, "p1")).is_err());
    assert!(run(&mut st, add("02:00:00:00:00:01", 10, "p1")).unwrap_err().contains("does not carry VLAN 10"));
    assert_eq!(run(&mut st, add("02:00:00:00:00:01", 1, "p2")).unwrap_err(), "port \"p2\" is not in bridge \"br0\"");
    run(&mut st, add("02:00:00:00:00:0A", 1, "p1")).unwrap();
    assert_eq!(st.config().bridges[0].static_macs[0].mac, "02:00:00:00:00:0a");
    run(&mut st, add("02:00:00:00:00:0a", 1, "p1")).unwrap();
    assert_eq!(st.config().bridges[0].static_macs.len(), 1);
    let show = Command::FdbShow { bridge: "br0".into(), after: None, limit: None };
    let fdb: FdbPage = serde_json::from_value(run(&mut st, show).unwrap()).unwrap();
    assert_eq!((fdb.entries.len(), fdb.total, fdb.next), (1, 1, None));
    assert!(fdb.entries[0].is_static);
    let flushed: FlushResult =
        serde_json::from_value(run(&mut st, Command::FdbFlush { bridge: "br0".into(), port: None }).unwrap()).unwrap();
    assert_eq!(flushed.flushed, 0);
    let del = |mac: &str| Command::FdbDel { bridge: "br0".into(), mac: mac.into(), vlan: 1 };
    run(&mut st, del("02:00:00:00:00:0a")).unwrap();
    assert!(st.config().bridges[0].static_macs.is_empty());
    assert!(dp.inner().fdb.is_empty());
    assert!(run(&mut st, del("02:00:00:00:00:0a")).unwrap_err().contains("no FDB entry"));
    // Deleting the port drops its static entries from the config.
    run(&mut st, add("02:00:00:00:00:0b", 1, "p1")).unwrap();
    run(&mut st, Command::PortDel { bridge: "br0".into(), port: "p1".into() }).unwrap();
    assert!(st.config().bridges[0].static_macs.is_empty());
}

#[test]
fn restore_replays_and_keeps_failed_ports() {
    let (mut st, _dp, db) = setup("st-restore");
    run(&mut st, br_add("br0")).unwrap();
    run(&mut st, p_add("br0", port("p1"))).unwrap();
    run(&mut st, p_add("br0", port("gone"))).unwrap();
    run(&mut st, Command::FdbAdd { bridge: "br0".into(), mac: "02:00:00:00:00:01".into(), vlan: 1, port: "p1".into() })
        .unwrap();
    let saved = st.config().clone();
    drop(st);

    let dp2 = FakeDp::default();
    dp2.inner().missing.insert("gone".into());
    let mut st2 = State::restore(&db, dp2.clone()).unwrap();
    assert_eq!(st2.config(), &saved);
    {
        let g = dp2.inner();
        assert!(g.bridges.contains_key("br0"));
        assert!(g.ports.contains_key("p1"));
        assert!(!g.ports.contains_key("gone"));
        assert_eq!(g.fdb.len(), 1);
    }
    // The failed port is shown down and stays in the db.
    let show: ShowResult = serde_json::from_value(run(&mut st2, Command::Show).unwrap()).unwrap();
    let gone = &show.bridges[0].ports[1];
    assert!(gone.status.state.starts_with("down: no interface"), "{:?}", gone);
    run(&mut st2, br_add("br1")).unwrap();
    assert_eq!(db::load(&db).unwrap().bridges[0].ports.len(), 2);
    // ...and can be deleted.
    run(&mut st2, Command::PortDel { bridge: "br0".into(), port: "gone".into() }).unwrap();
    st2.tick();
    assert_eq!(dp2.inner().ticks, 1);
}

/// Mutated requests never panic and always get a one-line answer, and
/// whatever was accepted is what the db holds.
#[test]
fn mutated_requests_never_panic() {
    let (mut st, _dp, db) = setup("st-fuzz");
    let seeds = [
        r#"{"version":1,"cmd":"bridge_add","bridge":"br0","aging_secs":30}"#,
        r#"{"version":1,"cmd":"port_add","bridge":"br0","port":{"name":"p1","type":"afxdp","vlan":{"trunk":{"vlans":[10,20],"native":1}}}}"#,
        r#"{"version":1,"cmd":"fdb_add","bridge":"br0","mac":"02:00:00:00:00:01","vlan":10,"port":"p1"}"#,
        r#"{"version":1,"cmd":"fdb_del","bridge":"br0","mac":"02:00:00:00:00:01","vlan":10}"#,
        r#"{"version":1,"cmd":"bridge_set","bridge":"br0","max_macs":5}"#,
        r#"{"version":1,"cmd":"stats","port":"p1"}"#,
        r#"{"version":1,"cmd":"port_del","bridge":"br0","port":"p1"}"#,
        r#"{"version":1,"cmd":"uplink_add","uplink":{"name":"eth1","queues":2,"xdp_mode":"native"}}"#,
        r#"{"version":1,"cmd":"port_add","bridge":"br0","port":{"name":"vx4","type":"vxlan","vxlan":{"vni":42,"local":"198.18.1.1","remotes":["198.18.1.2"],"dstport":4789,"ttl":64}}}"#,
        r#"{"version":1,"cmd":"port_set_remotes","bridge":"br0","port":"vx4","remotes":["198.18.1.3","198.18.1.4"]}"#,
        r#"{"version":1,"cmd":"uplink_del","uplink":"eth1"}"#,
        r#"{"version":1,"cmd":"pmd_assign","port":"p1","queue":1,"core":2}"#,
        r#"{"version":1,"cmd":"flows_show"}"#,
        r#"{"version":1,"cmd":"flows_flush"}"#,
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..3000 {
        let mut line = seeds[(next() % seeds.len() as u64) as usize].as_bytes().to_vec();
        for _ in 0..(next() % 4) {
            let i = (next() % line.len() as u64) as usize;
            let alphabet = b"0123456789:,{}[]\"abpx -\x00\xff";
            line[i] = alphabet[(next() % alphabet.len() as u64) as usize];
        }
        let reply = match Request::parse(&line) {
            Ok(req) => st.handle(req),
            Err(e) => Reply::err(e),
        };
        assert!(!reply.to_line().contains('\n'));
    }
    assert_eq!(&db::load(&db).unwrap(), st.config());
}

#[test]
fn vxlan_ports() {
    let (mut st, dp, _db) = setup("st-vxlan");
    run(&mut st, br_add("br0")).unwrap();
    run(&mut st, br_add("br1")).unwrap();
    // The datapath needs an uplink for the local address.
    let e = run(&mut st, p_add("br0", vx("vx42", 42, "198.18.1.1", &["198.18.1.2"]))).unwrap_err();
    assert_eq!(e, "no uplink serves local address 198.18.1.1");
    assert!(st.config().bridges[0].ports.is_empty());
    run(&mut st, up_add("eth1")).unwrap();
    run(&mut st, p_add("br0", vx("vx42", 42, "198.18.1.1", &["198.18.1.2", "198.18.1.3"]))).unwrap();
    assert_eq!(dp.inner().ports["vx42"].1.vxlan.as_ref().unwrap().remotes.len(), 2);
    assert_eq!(st.config().bridges[0].ports[0].vxlan.as_ref().unwrap().dstport, 4789);

    let bad = |p: PortConfig| p_add("br0", p);
    let e = run(&mut st, bad(vx("vx1", 16_777_216, "198.18.1.1", &["198.18.1.2"]))).unwrap_err();
    assert_eq!(e, "invalid VNI 16777216 (must be 0..=16777215)");
    let e = run(&mut st, bad(vx("vx1", 1, "198.18.1.1", &["2001:db8::2"]))).unwrap_err();
    assert_eq!(e, "remote 2001:db8::2 and local 198.18.1.1 are of different address families");
    let e = run(&mut st, bad(vx("vx1", 1, "198.18.1.1", &["198.18.1.1"]))).unwrap_err();
    assert_eq!(e, "remote 198.18.1.1 is the local address");
    let e = run(&mut st, bad(vx("vx1", 1, "198.18.1.1", &["198.18.1.2", "198.18.1.2"]))).unwrap_err();
    assert_eq!(e, "remote 198.18.1.2 is given twice");
    for (local, remote) in [
        ("198.18.1.1", "239.1.1.1"),
        ("198.18.1.1", "255.255.255.255"),
        ("198.18.1.1", "0.0.0.0"),
        ("0.0.0.0", "198.18.1.2"),
        ("ff02::1", "2001:db8::2"),
    ] {
        let e = run(&mut st, bad(vx("vx1", 1, local, &[remote]))).unwrap_err();
        assert!(e.contains("a VTEP address must not be"), "{e}");
    }
    let many: Vec<String> = (0..1025).map(|k| format!("10.0.{}.{}", k / 200, k % 200 + 1)).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let e = run(&mut st, bad(vx("vx1", 1, "198.18.1.1", &many))).unwrap_err();
    assert_eq!(e, "too many remotes: 1025 (at most 1024)");
    let mut p = vx("vx1", 1, "198.18.1.1", &[]);
    p.vxlan.as_mut().unwrap().dstport = 0;
    assert_eq!(run(&mut st, bad(p)).unwrap_err(), "invalid UDP port 0 (must be 1..=65535)");
    let mut p = vx("vx1", 1, "198.18.1.1", &[]);
    p.vxlan.as_mut().unwrap().ttl = 0;
    assert_eq!(run(&mut st, bad(p)).unwrap_err(), "invalid TTL 0 (must be 1..=255)");
    let mut p = vx("vx1", 1, "198.18.1.1", &[]);
    p.queues = Some(2);
    assert!(run(&mut st, bad(p)).unwrap_err().contains("queue count applies to afxdp ports only"));
    let mut p = vx("vx1", 1, "198.18.1.1", &[]);
    p.xdp_mode = XdpMode::Native;
    assert!(run(&mut st, bad(p)).is_err());
    let mut p = vx("vx1", 1, "198.18.1.1", &[]);
    p.netns = Some("ns1".into());
    assert!(run(&mut st, bad(p)).is_err());
    let mut p = vx("vx1", 1, "198.18.1.1", &[]);
    p.vxlan = None;
    assert!(run(&mut st, bad(p)).unwrap_err().contains("needs its tunnel settings"));
    let mut p = port("veth-a");
    p.vxlan = vx("x", 1, "198.18.1.1", &[]).vxlan;
    assert!(run(&mut st, bad(p)).unwrap_err().contains("tunnel settings apply to vxlan ports only"));
    // The same (local, dstport, VNI) twice, even in another bridge.
    let e = run(&mut st, p_add("br1", vx("vx43", 42, "198.18.1.1", &["198.18.1.9"]))).unwrap_err();
    assert!(e.starts_with("port \"vx42\" already uses local 198.18.1.1, dstport 4789, VNI 42"), "{e}");
    // Another VNI, another UDP port or another local address is a different tunnel.
    run(&mut st, p_add("br1", vx("vx43", 43, "198.18.1.1", &["198.18.1.9"]))).unwrap();
    let mut p = vx("vx44", 42, "198.18.1.1", &["198.18.1.9"]);
    p.vxlan.as_mut().unwrap().dstport = 8472;
    p.vlan = PortVlan::Trunk { vlans: vec![10, 20], native: None };
    run(&mut st, p_add("br1", p)).unwrap();
    run(&mut st, p_add("br1", vx("vx6", 42, "2001:db8::1", &["2001:db8::2"]))).unwrap();
    assert_eq!(st.config().bridges[1].ports.len(), 3);
    // Names are shared between uplinks and ports.
    assert_eq!(
        run(&mut st, p_add("br0", port("eth1"))).unwrap_err(),
        "\"eth1\" is an uplink; it cannot also be a port"
    );

    let show: ShowResult = serde_json::from_value(run(&mut st, Command::Show).unwrap()).unwrap();
    let p = &show.bridges[0].ports[0];
    assert_eq!(p.config.kind, PortType::Vxlan);
    assert_eq!(p.status.kind, "vxlan");
    assert_eq!(p.status.inner_mtu, Some(1450));
    assert_eq!(p.status.remotes.len(), 2);
    assert_eq!(p.status.remotes[1], RemoteStatus { ip: "198.18.1.3".into(), next_hop_mac: None });
    assert_eq!(show.uplinks.len(), 1);
    assert_eq!(show.uplinks[0].status.state, "up");
}

#[test]
fn set_remotes_live_and_persisted() {
    let (mut st, dp, db) = setup("st-remotes");
    run(&mut st, br_add("br0")).unwrap();
    run(&mut st, up_add("eth1")).unwrap();
    run(&mut st, p_add("br0", vx("vx42", 42, "198.18.1.1", &["198.18.1.2"]))).unwrap();
    run(&mut st, p_add("br0", port("veth-a"))).unwrap();
    // `run` checks the db holds the change before the reply.
    run(&mut st, set_remotes("br0", "vx42", &["198.18.1.3", "198.18.1.4"])).unwrap();
    let want = vec![ip("198.18.1.3"), ip("198.18.1.4")];
    assert_eq!(st.config().bridges[0].ports[0].vxlan.as_ref().unwrap().remotes, want);
    assert_eq!(dp.inner().ports["vx42"].1.vxlan.as_ref().unwrap().remotes, want);
    assert_eq!(db::load(&db).unwrap().bridges[0].ports[0].vxlan.as_ref().unwrap().remotes, want);
    run(&mut st, set_remotes("br0", "vx42", &[])).unwrap();
    assert!(dp.inner().ports["vx42"].1.vxlan.as_ref().unwrap().remotes.is_empty());
    run(&mut st, set_remotes("br0", "vx42", &["198.18.1.2"])).unwrap();

    let before = fs::read(&db).unwrap();
    let cfg = st.config().clone();
    let e = run(&mut st, set_remotes("br0", "veth-a", &["198.18.1.3"])).unwrap_err();
    assert_eq!(e, "port \"veth-a\" is not a vxlan port");
    assert!(run(&mut st, set_remotes("br0", "vx9", &[])).unwrap_err().contains("unknown port"));
    assert!(run(&mut st, set_remotes("br9", "vx42", &[])).unwrap_err().contains("unknown bridge"));
    let e = run(&mut st, set_remotes("br0", "vx42", &["198.18.1.1"])).unwrap_err();
    assert_eq!(e, "remote 198.18.1.1 is the local address");
    assert!(run(&mut st, set_remotes("br0", "vx42", &["2001:db8::1"])).is_err());
    // A stale read-modify-write is refused.
    let stale = Command::PortSetRemotes {
        bridge: "br0".into(),
        port: "vx42".into(),
        remotes: vec![ip("198.18.1.5")],
        expect_remotes: Some(vec![]),
    };
    let e = run(&mut st, stale).unwrap_err();
    assert_eq!(e, "the remotes of port \"vx42\" changed meanwhile (now: 198.18.1.2); try again");
    // The datapath refusing leaves config, db and datapath as they were.
    dp.inner().fail_next = Some("cannot resolve".into());
    assert_eq!(run(&mut st, set_remotes("br0", "vx42", &["198.18.1.7"])).unwrap_err(), "cannot resolve");
    assert_eq!(st.config(), &cfg);
    assert_eq!(fs::read(&db).unwrap(), before);
    assert_eq!(dp.inner().ports["vx42"].1.vxlan.as_ref().unwrap().remotes, vec![ip("198.18.1.2")]);

    // A failed save puts the old list back into the datapath.
    let mut tmp = db.clone().into_os_string();
    tmp.push(".tmp");
    fs::create_dir(&tmp).unwrap();
    assert!(run(&mut st, set_remotes("br0", "vx42", &["198.18.1.8"])).is_err());
    assert_eq!(dp.inner().ports["vx42"].1.vxlan.as_ref().unwrap().remotes, vec![ip("198.18.1.2")]);
    assert_eq!(st.config(), &cfg);
    fs::remove_dir(&tmp).unwrap();
}

#[test]
fn uplinks() {
    let (mut st, dp, db) = setup("st-uplink");
    let mut up = UplinkConfig::new("eth1");
    up.queues = Some(2);
    up.xdp_mode = XdpMode::Generic;
    run(&mut st, Command::UplinkAdd { uplink: up.clone() }).unwrap();
    assert_eq!(db::load(&db).unwrap().uplinks, vec![up.clone()]);
    assert_eq!(dp.inner().uplinks["eth1"], up);
    assert_eq!(run(&mut st, up_add("eth1")).unwrap_err(), "uplink \"eth1\" already exists");
    assert!(run(&mut st, up_add("")).is_err());
    assert!(run(&mut st, up_add("name-far-too-long")).is_err());
    let mut bad = UplinkConfig::new("eth2");
    bad.queues = Some(0);
    assert_eq!(
        run(&mut st, Command::UplinkAdd { uplink: bad }).unwrap_err(),
        "invalid queue count 0 (must be 1..=1024)"
    );
    dp.inner().missing.insert("eth3".into());
    assert_eq!(run(&mut st, up_add("eth3")).unwrap_err(), "no interface \"eth3\"");
    assert_eq!(st.config().uplinks.len(), 1);

    run(&mut st, br_add("br0")).unwrap();
    run(&mut st, p_add("br0", port("veth-a"))).unwrap();
    assert_eq!(
        run(&mut st, up_add("veth-a")).unwrap_err(),
        "\"veth-a\" is a port of bridge \"br0\"; it cannot also be an uplink"
    );
    let list: Vec<UplinkShow> = serde_json::from_value(run(&mut st, Command::UplinkList).unwrap()).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].config, up);
    assert_eq!(list[0].status.vteps, vec!["198.18.1.1".to_string()]);

    // The datapath refuses to drop the uplink under a vxlan port: nothing changes.
    run(&mut st, p_add("br0", vx("vx42", 42, "198.18.1.1", &["198.18.1.2"]))).unwrap();
    let before = fs::read(&db).unwrap();
    let e = run(&mut st, Command::UplinkDel { uplink: "eth1".into() }).unwrap_err();
    assert_eq!(e, "uplink \"eth1\" serves the local address of a vxlan port");
    assert_eq!(fs::read(&db).unwrap(), before);
    assert!(dp.inner().uplinks.contains_key("eth1"));
    run(&mut st, Command::PortDel { bridge: "br0".into(), port: "vx42".into() }).unwrap();
    run(&mut st, Command::UplinkDel { uplink: "eth1".into() }).unwrap();
    assert!(dp.inner().uplinks.is_empty());
    assert!(db::load(&db).unwrap().uplinks.is_empty());
    assert_eq!(run(&mut st, Command::UplinkDel { uplink: "eth1".into() }).unwrap_err(), "unknown uplink \"eth1\"");
}

#[test]
fn restore_uplinks_first_and_keeps_failed_ones() {
    let (mut st, _dp, db) = setup("st-restore-vx");
    run(&mut st, up_add("eth1")).unwrap();
    run(&mut st, up_add("eth2")).unwrap();
    run(&mut st, br_add("br0")).unwrap();
    run(&mut st, p_add("br0", vx("vx42", 42, "198.18.1.1", &["198.18.1.2"]))).unwrap();
    run(&mut st, p_add("br0", port("veth-a"))).unwrap();
    let saved = st.config().clone();
    drop(st);

    let dp2 = FakeDp::default();
    dp2.inner().missing.insert("eth2".into());
    let mut st2 = State::restore(&db, dp2.clone()).unwrap();
    assert_eq!(st2.config(), &saved);
    assert_eq!(dp2.inner().log, ["uplink eth1", "bridge br0", "port vx42", "port veth-a"]);
    let show: ShowResult = serde_json::from_value(run(&mut st2, Command::Show).unwrap()).unwrap();
    assert_eq!(show.uplinks.len(), 2);
    assert_eq!(show.uplinks[0].status.state, "up");
    assert_eq!(show.uplinks[1].status.state, "down: no interface \"eth2\"");
    assert_eq!(show.uplinks[1].config.name, "eth2");
    // The down uplink stays in the db through other changes, and can be deleted.
    run(&mut st2, br_add("br1")).unwrap();
    assert_eq!(db::load(&db).unwrap().uplinks.len(), 2);
    run(&mut st2, Command::UplinkDel { uplink: "eth2".into() }).unwrap();
    assert_eq!(db::load(&db).unwrap().uplinks, vec![UplinkConfig::new("eth1")]);
    drop(st2);

    // With no uplink at all the vxlan port cannot come up: kept, shown down.
    let dp3 = FakeDp::default();
    dp3.inner().missing.insert("eth1".into());
    let mut st3 = State::restore(&db, dp3.clone()).unwrap();
    assert_eq!(dp3.inner().log, ["bridge br0", "port veth-a", "bridge br1"]);
    let show: ShowResult = serde_json::from_value(run(&mut st3, Command::Show).unwrap()).unwrap();
    assert!(show.uplinks[0].status.state.starts_with("down: "));
    let vx42 = &show.bridges[0].ports[0];
    assert_eq!(vx42.status.state, "down: no uplink serves local address 198.18.1.1");
    assert_eq!(vx42.status.kind, "vxlan");
    // Changing the remotes of a down port changes the configuration only.
    run(&mut st3, set_remotes("br0", "vx42", &["198.18.1.3"])).unwrap();
    assert_eq!(st3.config().bridges[0].ports[0].vxlan.as_ref().unwrap().remotes, vec![ip("198.18.1.3")]);
}

#[test]
fn restore_refuses_corrupt_db() {
    let dir = temp_dir("st-corrupt");
    let db = dir.join("conf.json");
    fs::write(&db, "{not json").unwrap();
    let e = State::restore(&db, FakeDp::default()).err().unwrap();
    assert!(e.contains(&db.display().to_string()));
    assert_eq!(fs::read(&db).unwrap(), b"{not json");
}

#[test]
fn pmd_assign_is_live_and_persisted() {
    let (mut st, dp, db) = setup("st-pmd");
    run(&mut st, br_add("br0")).unwrap();
    run(&mut st, p_add("br0", port("veth-a"))).unwrap();
    run(&mut st, p_add("br0", port("veth-b"))).unwrap();
    run(&mut st, up_add("eth1")).unwrap();
    // No assignment yet: nothing about queues in the db file.
    assert!(!fs::read_to_string(&db).unwrap().contains("pmd"));

    // `run` checks the db holds the change before the reply.
    assert_eq!(run(&mut st, assign("veth-a", 1, 2)).unwrap(), Value::Null);
    assert_eq!(st.config().bridges[0].ports[0].pmd, vec![(1, 2)]);
    assert_eq!(dp.inner().pmd[&("veth-a".to_string(), 1)], 2);
    run(&mut st, assign("veth-a", 0, 2)).unwrap();
    run(&mut st, assign("veth-a", 1, 1)).unwrap();
    assert_eq!(st.config().bridges[0].ports[0].pmd, vec![(0, 2), (1, 1)]);
    assert!(st.config().bridges[0].ports[1].pmd.is_empty());
    run(&mut st, assign("eth1", 0, 2)).unwrap();
    assert_eq!(st.config().uplinks[0].pmd, vec![(0, 2)]);
    let saved = db::load(&db).unwrap();
    assert_eq!(saved.bridges[0].ports[0].pmd, vec![(0, 2), (1, 1)]);
    assert_eq!(saved.uplinks[0].pmd, vec![(0, 2)]);
    // On disk: [queue, core] pairs; ports without assignments have no "pmd".
    let file: Value = serde_json::from_slice(&fs::read(&db).unwrap()).unwrap();
    assert_eq!(file["bridges"][0]["ports"][0]["pmd"], serde_json::json!([[0, 2], [1, 1]]));
    assert_eq!(file["uplinks"][0]["pmd"], serde_json::json!([[0, 2]]));
    assert!(file["bridges"][0]["ports"][1].get("pmd").is_none());
    // The same assignment again is fine and changes nothing.
    let before = fs::read(&db).unwrap();
    run(&mut st, assign("eth1", 0, 2)).unwrap();
    assert_eq!(fs::read(&db).unwrap(), before);
    // The show result carries the assignment in the config and the move in the status.
    let show: ShowResult = serde_json::from_value(run(&mut st, Command::Show).unwrap()).unwrap();
    assert_eq!(show.bridges[0].ports[0].config.pmd, vec![(0, 2), (1, 1)]);
    assert_eq!(show.bridges[0].ports[0].status.queues, vec![(0, 2), (1, 1)]);
    assert_eq!(show.uplinks[0].status.queues, vec![(0, 2), (1, 1)]);

    // Refusals leave config, db and datapath as they were.
    let cfg = st.config().clone();
    let moves = dp.inner().pmd.clone();
    assert_eq!(run(&mut st, assign("nope", 0, 1)).unwrap_err(), "unknown port or uplink \"nope\"");
    assert_eq!(run(&mut st, assign("veth-b", 0, 9)).unwrap_err(), "no polling thread on core 9");
    assert_eq!(run(&mut st, assign("veth-b", 7, 1)).unwrap_err(), "\"veth-b\" has 2 rx queues; there is no queue 7");
    dp.inner().fail_next = Some("cannot move queue".into());
    assert_eq!(run(&mut st, assign("veth-b", 0, 2)).unwrap_err(), "cannot move queue");
    assert_eq!(st.config(), &cfg);
    assert_eq!(fs::read(&db).unwrap(), before);
    assert_eq!(dp.inner().pmd, moves);

    // A failed save moves the queue back where it was polled.
    let mut tmp = db.clone().into_os_string();
    tmp.push(".tmp");
    fs::create_dir(&tmp).unwrap();
    let e = run(&mut st, assign("veth-a", 0, 1)).unwrap_err();
    assert!(e.ends_with("(the change was undone)"), "{e}");
    assert_eq!(dp.inner().pmd[&("veth-a".to_string(), 0)], 2);
    assert_eq!(st.config(), &cfg);
    fs::remove_dir(&tmp).unwrap();

    // Assignments come only from pmd_assign, never with the port or uplink.
    let mut p = port("veth-c");
    p.pmd = vec![(0, 2)];
    let e = run(&mut st, p_add("br0", p)).unwrap_err();
    assert_eq!(e, "port \"veth-c\": queues are assigned with pmd_assign once the port exists");
    let mut up = UplinkConfig::new("eth2");
    up.pmd = vec![(0, 2)];
    let e = run(&mut st, Command::UplinkAdd { uplink: up }).unwrap_err();
    assert_eq!(e, "uplink \"eth2\": queues are assigned with pmd_assign once the uplink exists");
    assert_eq!(st.config(), &cfg);

    // Deleting the port forgets its assignments.
    run(&mut st, Command::PortDel { bridge: "br0".into(), port: "veth-a".into() }).unwrap();
    run(&mut st, p_add("br0", port("veth-a"))).unwrap();
    assert!(st.config().bridges[0].ports[1].pmd.is_empty());
}

#[test]
fn restore_reapplies_pmd_assignments() {
    let (mut st, _dp, db) = setup("st-pmd-restore");
    run(&mut st, up_add("eth1")).unwrap();
    run(&mut st, br_add("br0")).unwrap();
    run(&mut st, p_add("br0", port("veth-a"))).unwrap();
    run(&mut st, p_add("br0", port("veth-b"))).unwrap();
    run(&mut st, assign("eth1", 1, 2)).unwrap();
    run(&mut st, assign("veth-a", 1, 2)).unwrap();
    run(&mut st, assign("veth-a", 0, 2)).unwrap();
    let saved = st.config().clone();
    drop(st);

    // Each port's queues move right after the port comes back, in queue order.
    let dp2 = FakeDp::default();
    let st2 = State::restore(&db, dp2.clone()).unwrap();
    assert_eq!(st2.config(), &saved);
    assert_eq!(
        dp2.inner().log,
        [
            "uplink eth1",
            "pmd eth1/1->2",
            "bridge br0",
            "port veth-a",
            "pmd veth-a/0->2",
            "pmd veth-a/1->2",
            "port veth-b"
        ]
    );
    assert_eq!(st2.datapath().port_status()[0].queues, vec![(0, 2), (1, 2)]);
    drop(st2);

    // A core that lost its thread: a warning, the rest still comes up, and
    // the assignment stays for the next restart.
    let before = fs::read(&db).unwrap();
    let dp3 = FakeDp::default();
    dp3.inner().no_thread.insert(2);
    let mut st3 = State::restore(&db, dp3.clone()).unwrap();
    assert_eq!(st3.config(), &saved);
    assert_eq!(dp3.inner().log, ["uplink eth1", "bridge br0", "port veth-a", "port veth-b"]);
    let show: ShowResult = serde_json::from_value(run(&mut st3, Command::Show).unwrap()).unwrap();
    assert_eq!(show.bridges[0].ports[0].status.state, "up");
    assert_eq!(show.bridges[0].ports[0].status.queues, vec![(0, 1), (1, 1)]);
    assert_eq!(show.bridges[0].ports[0].config.pmd, vec![(0, 2), (1, 2)]);
    assert_eq!(fs::read(&db).unwrap(), before);
    drop(st3);

    // A port that does not come back keeps its assignments and refuses new ones.
    let dp4 = FakeDp::default();
    dp4.inner().missing.insert("veth-a".into());
    let mut st4 = State::restore(&db, dp4.clone()).unwrap();
    assert!(!dp4.inner().log.iter().any(|l| l.starts_with("pmd veth-a")));
    assert_eq!(
        run(&mut st4, assign("veth-a", 0, 1)).unwrap_err(),
        "port \"veth-a\" is down (no interface \"veth-a\"); its queues cannot be moved"
    );
    assert_eq!(st4.config(), &saved);
}

#[test]
fn db_without_pmd_still_loads() {
    let dir = temp_dir("st-pmd-old");
    let db = dir.join("conf.json");
    fs::write(
        &db,
        r#"{"version":1,"uplinks":[{"name":"eth1","queues":null,"xdp_mode":"auto"}],
            "bridges":[{"name":"br0","aging_secs":300,"max_macs":8192,"static_macs":[],
             "ports":[{"name":"veth-a","type":"afxdp","vlan":{"access":{"vlan":1}},"queues":null,"xdp_mode":"auto","netns":null}]}]}"#,
    )
    .unwrap();
    let dp = FakeDp::default();
    let st = State::restore(&db, dp.clone()).unwrap();
    assert!(st.config().uplinks[0].pmd.is_empty());
    assert!(st.config().bridges[0].ports[0].pmd.is_empty());
    assert!(!dp.inner().log.iter().any(|l| l.starts_with("pmd")));
    // A queue assigned twice is an inconsistent db, refused like a duplicate port.
    fs::write(&db, r#"{"version":1,"uplinks":[{"name":"eth1","pmd":[[0,1],[0,2]]}],"bridges":[]}"#).unwrap();
    let e = State::restore(&db, FakeDp::default()).err().unwrap();
    assert!(e.contains("uplink \"eth1\": queue 0 is assigned to a polling thread twice"), "{e}");
}

#[test]
fn flows_show_and_flush() {
    let (mut st, dp, db) = setup("st-flows");
    run(&mut st, br_add("br0")).unwrap();
    let flow = FlowInfo {
        core: 1,
        bridge: "br0".into(),
        in_port: "vx42".into(),
        remote: Some("198.18.1.2".into()),
        src: "02:00:00:00:00:01".into(),
        dst: "02:00:00:00:00:02".into(),
        vlan: 1,
        action: "output:veth-a".into(),
        hits: 7,
    };
    dp.inner().flows = vec![flow.clone()];
    let v = run(&mut st, Command::FlowsShow).unwrap();
    assert_eq!(v[0]["remote"], "198.18.1.2");
    assert_eq!(v[0]["in_port"], "vx42");
    let flows: Vec<FlowInfo> = serde_json::from_value(v).unwrap();
    assert_eq!(flows, vec![flow]);
    // Flushing is run-time only: the db is not written.
    let before = fs::read(&db).unwrap();
    assert_eq!(run(&mut st, Command::FlowsFlush).unwrap(), Value::Null);
    assert!(dp.inner().flows.is_empty());
    assert_eq!(run(&mut st, Command::FlowsShow).unwrap(), serde_json::json!([]));
    assert_eq!(fs::read(&db).unwrap(), before);
}

/// What was down at restore comes up on a later tick once the datapath
/// takes it (an interface that appears after rvsd started), uplinks before
/// the tunnels that need them; until then `show` says why.
#[test]
fn what_failed_at_restore_comes_up_when_it_can() {
    let (mut st, _dp, db) = setup("st-retry");
    run(&mut st, up_add("eth1")).unwrap();
    run(&mut st, br_add("br0")).unwrap();
    run(&mut st, p_add("br0", vx("vx42", 42, "198.18.1.1", &["198.18.1.2"]))).unwrap();
    run(&mut st, p_add("br0", port("late"))).unwrap();
    drop(st);

    let dp = FakeDp::default();
    dp.inner().missing.extend(["eth1".to_string(), "late".to_string()]);
    let mut st = State::restore(&db, dp.clone()).unwrap();
    st.tick();
    let state = |st: &mut State<FakeDp>, i: usize| {
        let show: ShowResult = serde_json::from_value(run(st, Command::Show).unwrap()).unwrap();
        (show.uplinks[0].status.state.clone(), show.bridges[0].ports[i].status.state.clone())
    };
    assert_eq!(
        state(&mut st, 0),
        ("down: no interface \"eth1\"".into(), "down: no uplink serves local address 198.18.1.1".into())
    );
    assert_eq!(state(&mut st, 1).1, "down: no interface \"late\"");
    dp.inner().missing.clear();
    dp.inner().log.clear();
    st.tick();
    assert_eq!(dp.inner().log, ["uplink eth1", "port vx42", "port late"]);
    assert_eq!(state(&mut st, 0), ("up".into(), "up".into()));
    assert_eq!(state(&mut st, 1).1, "up");
    st.tick();
    assert_eq!(dp.inner().log.len(), 3, "nothing tried again once up");
}

/// `fdb_show` pages through a table in (VLAN, MAC) order: each page at most
/// `limit` entries, `next` where the following one starts, every entry
/// once; bad page sizes and cursors are refused.
#[test]
fn the_fdb_is_shown_in_pages() {
    let (mut st, dp, _db) = setup("st-fdb-pages");
    run(&mut st, br_add("br0")).unwrap();
    run(&mut st, p_add("br0", port("p1"))).unwrap();
    let mut want = Vec::new();
    for i in 0..25u8 {
        for vlan in [1, 7] {
            let mac = format!("02:00:00:00:{:02x}:{:02x}", 25 - i, i);
            dp.inner().learned.push((
                "br0".into(),
                FdbEntryInfo { mac: mac.clone(), vlan, port: "p1".into(), is_static: false, age_secs: 1, remote: None },
            ));
            want.push((vlan, mac));
        }
    }
    want.sort();
    let page = |st: &mut State<FakeDp>, after: Option<FdbCursor>, limit| {
        serde_json::from_value::<FdbPage>(run(st, Command::FdbShow { bridge: "br0".into(), after, limit }).unwrap())
            .unwrap()
    };
    let (mut got, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let p = page(&mut st, after.clone(), Some(8));
        assert!(p.entries.len() <= 8);
        assert_eq!(p.total, 50);
        pages += 1;
        got.extend(p.entries.iter().map(|e| (e.vlan, e.mac.clone())));
        match p.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!((got, pages), (want, 7));
    assert_eq!(page(&mut st, None, None).entries.len(), 50, "the default page holds them all");
    for bad in [Some(0), Some(FDB_PAGE_MAX + 1)] {
        let e = run(&mut st, Command::FdbShow { bridge: "br0".into(), after: None, limit: bad }).unwrap_err();
        assert!(e.starts_with("invalid page size"), "{e}");
    }
    let cursor = Some(FdbCursor { vlan: 1, mac: "nonsense".into() });
    let e = run(&mut st, Command::FdbShow { bridge: "br0".into(), after: cursor, limit: None }).unwrap_err();
    assert!(e.starts_with("invalid page cursor"), "{e}");
}

#[test]
fn ports_of_gone_containers_are_removed() {
    let (mut st, dp, db) = setup("gc");
    run(&mut st, br_add("br0")).unwrap();
    let owned = |name: &str, id: &str| PortConfig {
        owner: Some(config::PortOwner { container: id.into(), ifname: "eth0".into(), network: "n".into() }),
        ..port(name)
    };
    run(&mut st, p_add("br0", owned("rvsc1", "c1"))).unwrap();
    run(&mut st, p_add("br0", owned("rvsc2", "c2"))).unwrap();
    run(&mut st, p_add("br0", port("plain"))).unwrap();
    // c1's interface goes, and so does the plain port's: only the
    // container's port is removed (a plain one waits for its interface).
    dp.inner().missing.extend(["rvsc1".to_string(), "plain".to_string()]);
    for _ in 0..GC_TICKS {
        st.tick();
    }
    let names: Vec<&str> = st.config().bridges[0].ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["rvsc2", "plain"]);
    assert_eq!(db::load(&db).unwrap(), *st.config(), "the removal is saved");
}

#[test]
fn a_ports_bindings_go_with_it() {
    let (mut st, dp, _db) = setup("st-neigh-port");
    run(&mut st, br_add("br0")).unwrap();
    run(&mut st, p_add("br0", port("rvsc1"))).unwrap();
    let add = |ip: &str, port: Option<&str>| Command::NeighAdd {
        bridge: "br0".into(),
        ip: ip.into(),
        mac: "02:00:00:00:00:0c".into(),
        vlan: 1,
        port: port.map(str::to_string),
    };
    let e = run(&mut st, add("198.18.0.9", Some("nope"))).unwrap_err();
    assert!(e.contains("nope"), "{e}");
    run(&mut st, add("198.18.0.12", Some("rvsc1"))).unwrap();
    run(&mut st, add("2001:2::12", Some("rvsc1"))).unwrap();
    run(&mut st, add("198.18.0.99", None)).unwrap();
    assert_eq!(dp.inner().neigh.len(), 3);
    run(&mut st, Command::PortDel { bridge: "br0".into(), port: "rvsc1".into() }).unwrap();
    let left: Vec<String> = st.config().bridges[0].neighbors.iter().map(|n| n.ip.to_string()).collect();
    assert_eq!(left, ["198.18.0.99"]);
    assert_eq!(dp.inner().neigh.len(), 1, "the datapath kept the port's bindings");
}
