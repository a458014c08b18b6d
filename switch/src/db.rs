//! The configuration database: one JSON file, replaced atomically.
//!
//! `save` writes `<path>.tmp` beside the file, fsyncs it, renames it over
//! the file and fsyncs the directory, so after a crash the file holds either
//! the old or the new configuration, never a mix. `load` refuses a file it
//! cannot read or understand, so the daemon stops instead of starting empty
//! and later overwriting what the user had.

use rvs_proto as proto;
use rvs_proto::config::{Config, CONFIG_VERSION};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Default location of the database.
pub const DEFAULT_DB: &str = "/var/lib/rvs/conf.json";

/// An empty configuration, as on first start.
pub fn empty() -> Config {
    Config { version: CONFIG_VERSION, ..Config::default() }
}

/// The rvsd that writes the database, as saved in it.
fn writer() -> String {
    format!("rvsd {}", env!("CARGO_PKG_VERSION"))
}

/// Where the last good copy of the database at `path` is kept.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut p = OsString::from(path.as_os_str());
    p.push(".bak");
    PathBuf::from(p)
}

/// What to do about a database rvsd cannot use: fix or move it, or start
/// from the last good copy if there is one.
fn remedy(path: &Path) -> String {
    let bak = backup_path(path);
    if bak.is_file() {
        format!("fix or move the file, or put back the last good copy {}; rvsd will not overwrite it", bak.display())
    } else {
        "fix or move the file; rvsd will not overwrite it".to_string()
    }
}

/// Loads the database; a missing file is an empty configuration.
pub fn load(path: &Path) -> Result<Config, String> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(empty()),
        Err(e) => {
            return Err(format!(
                "cannot read configuration database {}: {}",
                path.display(),
                rvs_proto::client::io_msg(&e)
            ))
        }
    };
    parse(path, &data)
}

/// Parses and checks the bytes of the database file at `path` (named in
/// errors), as `load` does after reading them.
pub fn parse(path: &Path, data: &[u8]) -> Result<Config, String> {
    // The version first, leniently: a newer rvsd's file may hold fields
    // this one does not know, and is not corrupt for it.
    #[derive(serde::Deserialize)]
    struct Head {
        version: u32,
        #[serde(default)]
        written_by: Option<String>,
    }
    if let Ok(head) = serde_json::from_slice::<Head>(data) {
        version_check(path, head.version, head.written_by)?;
    }
    let mut cfg: Config = serde_json::from_slice(data).map_err(|e| {
        format!("corrupt configuration database {}: {} ({})", path.display(), proto::one_line(e), remedy(path))
    })?;
    // Again on the whole: JSON that only a full read makes sense of.
    version_check(path, cfg.version, cfg.written_by.clone())?;
    validate(&cfg).map_err(|e| {
        format!("invalid configuration database {}: {} ({})", path.display(), proto::one_line(e), remedy(path))
    })?;
    cfg.written_by = None;
    Ok(cfg)
}

/// An error unless the file's format `version` is the one this rvsd
/// reads, naming who wrote it.
fn version_check(path: &Path, version: u32, written_by: Option<String>) -> Result<(), String> {
    if version == CONFIG_VERSION {
        return Ok(());
    }
    let by = written_by.map_or_else(|| "another rvsd".to_string(), proto::one_line);
    let newer = if version > CONFIG_VERSION { "a newer" } else { "an older" };
    Err(format!(
        "configuration database {} was written by {by} ({newer} format, version {version}); this {} reads format \
         version {CONFIG_VERSION} ({})",
        path.display(),
        writer(),
        remedy(path)
    ))
}

/// Writes the database atomically, creating its directory (0755) if needed;
/// the file it replaces, which rvsd loaded or wrote, becomes the last good
/// copy ([`backup_path`]).
pub fn save(path: &Path, cfg: &Config) -> Result<(), String> {
    let ctx = |what: &str, p: &Path, e: std::io::Error| {
        format!(
            "cannot save configuration database {}: {what} {}: {}",
            path.display(),
            p.display(),
            rvs_proto::client::io_msg(&e)
        )
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    DirBuilder::new().recursive(true).mode(0o755).create(&dir).map_err(|e| ctx("create directory", &dir, e))?;
    let cfg = Config { written_by: Some(writer()), ..cfg.clone() };
    let mut data = serde_json::to_vec_pretty(&cfg).map_err(|e| format!("cannot encode configuration: {e}"))?;
    data.push(b'\n');
    let mut tmp = OsString::from(path.as_os_str());
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> Result<(), String> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| ctx("create", &tmp, e))?;
        f.write_all(&data).map_err(|e| ctx("write", &tmp, e))?;
        f.sync_all().map_err(|e| ctx("fsync", &tmp, e))?;
        if path.is_file() {
            let bak = backup_path(path);
            fs::copy(path, &bak).map_err(|e| ctx("copy to", &bak, e))?;
        }
        fs::rename(&tmp, path).map_err(|e| ctx("rename", &tmp, e))
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| ctx("fsync directory", &dir, e))
}

/// Checks a configuration as the state machine would have built it: valid
/// names, VLANs, MACs and tunnels, no duplicate uplink, bridge or port, no
/// name both an uplink and a port, no two tunnels on the same (local,
/// dstport, VNI), static entries on ports of their own bridge.
pub fn validate(cfg: &Config) -> Result<(), String> {
    let mut uplinks = HashSet::new();
    for u in &cfg.uplinks {
        proto::check_uplink(u)?;
        if !uplinks.insert(u.name.as_str()) {
            return Err(format!("uplink {:?} appears twice", u.name));
        }
    }
    let mut bridges = HashSet::new();
    let mut ports = HashSet::new();
    let mut tunnels = HashMap::new();
    for br in &cfg.bridges {
        proto::check_name("bridge", &br.name)?;
        if !bridges.insert(br.name.as_str()) {
            return Err(format!("bridge {:?} appears twice", br.name));
        }
        proto::check_aging(br.aging_secs)?;
        proto::check_max_macs(br.max_macs)?;
        for p in &br.ports {
            proto::check_port(p)?;
            if !ports.insert(p.name.as_str()) {
                return Err(format!("port {:?} appears twice", p.name));
            }
            if uplinks.contains(p.name.as_str()) {
                return Err(format!("{:?} is both an uplink and a port", p.name));
            }
            if let Some(v) = &p.vxlan {
                if let Some(other) = tunnels.insert(v.key(), p.name.as_str()) {
                    return Err(format!(
                        "ports {other:?} and {:?} both use local {}, dstport {}, VNI {}",
                        p.name, v.local, v.dstport, v.vni
                    ));
                }
            }
        }
        let mut bound = HashSet::new();
        for n in &br.neighbors {
            proto::parse_neigh_ip(&n.ip.to_string())?;
            proto::parse_mac(&n.mac, true)?;
            proto::check_vlan(n.vlan)?;
            if !bound.insert((n.ip, n.vlan)) {
                return Err(format!("{} is bound twice in VLAN {} of bridge {:?}", n.ip, n.vlan, br.name));
            }
        }
        for m in &br.static_macs {
            proto::parse_mac(&m.mac, true)?;
            proto::check_vlan(m.vlan)?;
            if !br.ports.iter().any(|p| p.name == m.port) {
                return Err(format!(
                    "static MAC {} is on port {:?}, which is not in bridge {:?}",
                    m.mac, m.port, br.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rvs_proto::config::{BridgeConfig, PortConfig, PortVlan, StaticMac, UplinkConfig, VxlanConfig, XdpMode};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh, empty directory under /tmp for one test.
    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = PathBuf::from("/tmp").join(format!(
            "rvs-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn sample() -> Config {
        let mut br = BridgeConfig::new("br0");
        br.ports.push(PortConfig {
            queues: Some(2),
            xdp_mode: XdpMode::Generic,
            ..PortConfig::afxdp("veth-a", PortVlan::Trunk { vlans: vec![10, 20], native: Some(1) })
        });
        br.static_macs.push(StaticMac { mac: "02:00:00:00:00:01".into(), vlan: 10, port: "veth-a".into() });
        Config { version: CONFIG_VERSION, bridges: vec![br], ..Config::default() }
    }

    /// `sample` plus two uplinks and an IPv4 and an IPv6 vxlan port.
    fn sample_vxlan() -> Config {
        let mut cfg = sample();
        let mut up = UplinkConfig::new("eth1");
        up.queues = Some(4);
        up.xdp_mode = XdpMode::Native;
        cfg.uplinks = vec![up, UplinkConfig::new("eth2")];
        let mut v4 = VxlanConfig::new(42, "198.18.1.1".parse().unwrap(), vec!["198.18.1.2".parse().unwrap()]);
        v4.dstport = 8472;
        v4.ttl = 16;
        let v6 = VxlanConfig::new(16_777_215, "2001:db8::1".parse().unwrap(), Vec::new());
        for (name, v, vlan) in [
            ("vx42", v4, PortVlan::Access { vlan: 10 }),
            ("vx6", v6, PortVlan::Trunk { vlans: vec![10, 20], native: None }),
        ] {
            cfg.bridges[0].ports.push(PortConfig::vxlan(name, v, vlan));
        }
        cfg
    }

    #[test]
    fn vxlan_roundtrip() {
        let d = temp_dir("db-vxlan");
        let path = d.join("conf.json");
        let cfg = sample_vxlan();
        save(&path, &cfg).unwrap();
        assert_eq!(load(&path).unwrap(), cfg);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"type\": \"vxlan\""), "{text}");
        assert!(text.contains("\"local\": \"2001:db8::1\""), "{text}");
        // Ports without a tunnel carry no `vxlan` field, as before.
        assert_eq!(text.matches("\"vxlan\": {").count(), 2, "{text}");
        let _ = fs::remove_dir_all(&d);
    }

    /// The saved cluster view (issue 14) round-trips; a db without it
    /// loads with none, and one with none does not mention it.
    #[test]
    fn cluster_view_roundtrip() {
        use rvs_proto::cluster::{NodeRecord, VtepRecord};
        let d = temp_dir("db-view");
        let path = d.join("conf.json");
        let mut cfg = sample_vxlan();
        save(&path, &cfg).unwrap();
        assert!(!fs::read_to_string(&path).unwrap().contains("cluster_peers"));
        assert!(load(&path).unwrap().cluster_peers.is_empty());
        let vtep = VtepRecord { vni: 42, addr: "198.18.200.2".parse().unwrap(), dstport: 4789 };
        cfg.cluster_peers = vec![NodeRecord { node: "h2".into(), vteps: vec![vtep] }];
        save(&path, &cfg).unwrap();
        assert_eq!(load(&path).unwrap(), cfg);
        let _ = fs::remove_dir_all(&d);
    }

    /// A db written before uplinks and tunnels existed still loads.
    #[test]
    fn old_db_without_uplinks_or_vxlan_loads() {
        let d = temp_dir("db-old");
        let path = d.join("conf.json");
        let old = r#"{
  "version": 1,
  "bridges": [
    {
      "name": "br0",
      "aging_secs": 300,
      "max_macs": 8192,
      "ports": [
        {"name": "veth-a", "type": "afxdp", "vlan": {"trunk": {"vlans": [10, 20], "native": 1}},
         "queues": 2, "xdp_mode": "generic", "netns": null}
      ],
      "static_macs": [{"mac": "02:00:00:00:00:01", "vlan": 10, "port": "veth-a"}]
    }
  ]
}
"#;
        fs::write(&path, old).unwrap();
        assert_eq!(load(&path).unwrap(), sample());
        // A vxlan port written with only the required fields gets the defaults.
        fs::write(
            &path,
            r#"{"version":1,"bridges":[{"name":"b","ports":[{"name":"vx","type":"vxlan","vxlan":{"vni":7,"local":"10.0.0.1"}}]}]}"#,
        )
        .unwrap();
        let cfg = load(&path).unwrap();
        let v = cfg.bridges[0].ports[0].vxlan.clone().unwrap();
        assert_eq!(v, VxlanConfig::new(7, "10.0.0.1".parse().unwrap(), Vec::new()));
        assert_eq!((v.dstport, v.ttl), (4789, 64));
        assert!(cfg.uplinks.is_empty());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn invalid_vxlan_and_uplinks_are_refused() {
        let d = temp_dir("db-badvx");
        let path = d.join("conf.json");
        let vx = |extra: &str| {
            format!(
                r#"{{"version":1,"bridges":[{{"name":"b","ports":[{{"name":"vx","type":"vxlan","vxlan":{{"vni":7,"local":"10.0.0.1"{extra}}}}}]}}]}}"#
            )
        };
        for bad in [
            r#"{"version":1,"uplinks":[{"name":"eth1"},{"name":"eth1"}]}"#.to_string(),
            r#"{"version":1,"uplinks":[{"name":"eth1","queues":0}]}"#.to_string(),
            r#"{"version":1,"uplinks":[{"name":"eth1","typo":0}]}"#.to_string(),
            r#"{"version":1,"uplinks":[{"name":"p"}],"bridges":[{"name":"b","ports":[{"name":"p","type":"tap"}]}]}"#
                .to_string(),
            r#"{"version":1,"bridges":[{"name":"b","ports":[{"name":"vx","type":"vxlan"}]}]}"#.to_string(),
            r#"{"version":1,"bridges":[{"name":"b","ports":[{"name":"p","type":"tap","vxlan":{"vni":7,"local":"10.0.0.1"}}]}]}"#.to_string(),
            r#"{"version":1,"bridges":[{"name":"b","ports":[{"name":"vx","type":"vxlan","vxlan":{"vni":16777216,"local":"10.0.0.1"}}]}]}"#.to_string(),
            vx(r#","remotes":["2001:db8::2"]"#),
            vx(r#","remotes":["10.0.0.1"]"#),
            vx(r#","remotes":["10.0.0.2","10.0.0.2"]"#),
            vx(r#","remotes":["not-an-ip"]"#),
            vx(r#","dstport":0"#),
            vx(r#","ttl":0"#),
            r#"{"version":1,"bridges":[{"name":"b","ports":[
                {"name":"vx1","type":"vxlan","vxlan":{"vni":7,"local":"10.0.0.1"}},
                {"name":"vx2","type":"vxlan","vxlan":{"vni":7,"local":"10.0.0.1","dstport":4789}}]}]}"#
                .to_string(),
        ] {
            fs::write(&path, &bad).unwrap();
            let e = load(&path).unwrap_err();
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert!(!e.contains('\n'), "{e}");
            assert_eq!(fs::read_to_string(&path).unwrap(), bad);
        }
        let _ = fs::remove_dir_all(&d);
    }

    /// Found by fuzzing: serde quotes an unknown field name as decoded,
    /// so a "\n" in it broke the one-line error.
    #[test]
    fn error_quoting_a_newline_is_one_line() {
        let e = parse(Path::new("/x/conf.json"), br#"{"version":1,"bad\nfield":0}"#).unwrap_err();
        assert!(!e.contains('\n') && e.contains("bad\\nfield"), "{e}");
        let e = proto::Request::parse(br#"{"version":1,"cmd":"bridge_del","bridge":"b","x\ny":1}"#).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn missing_file_is_empty_config() {
        let d = temp_dir("db-missing");
        assert_eq!(load(&d.join("nope.json")).unwrap(), empty());
    }

    #[test]
    fn save_load_roundtrip_creates_dirs() {
        let d = temp_dir("db-roundtrip");
        let path = d.join("a/b/conf.json");
        let cfg = sample();
        save(&path, &cfg).unwrap();
        assert_eq!(load(&path).unwrap(), cfg);
        assert!(!d.join("a/b/conf.json.tmp").exists());
        let mode = fs::metadata(d.join("a/b")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode & 0o700, 0o700);
        // Saving again replaces the content.
        save(&path, &empty()).unwrap();
        assert_eq!(load(&path).unwrap(), empty());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it_and_left_alone() {
        let d = temp_dir("db-corrupt");
        let path = d.join("conf.json");
        for bad in [
            &b"{\"version\":1,\"bridges\":[{"[..],
            b"",
            b"\x00\x01garbage",
            b"{\"version\":7,\"bridges\":[]}",
            // A sequence is a struct to serde: found by the fuzzer.
            b"[0]",
            b"{\"version\":1,\"bridges\":[{\"name\":\"b\"},{\"name\":\"b\"}]}",
            b"{\"version\":1,\"bridges\":[{\"name\":\"b\",\"ports\":[{\"name\":\"p\",\"type\":\"tap\",\"vlan\":{\"access\":{\"vlan\":4095}}}]}]}",
        ] {
            fs::write(&path, bad).unwrap();
            let e = load(&path).unwrap_err();
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert!(!e.contains('\n'), "{e}");
            assert_eq!(fs::read(&path).unwrap(), bad);
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_newer_rvsd_s_file_says_so_and_which_wrote_it() {
        let d = temp_dir("db-newer");
        let path = d.join("conf.json");
        let newer = br#"{"version":2,"written_by":"rvsd 9.1.0","bridges":[],"shiny":{"new":true}}"#;
        fs::write(&path, newer).unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.contains("written by rvsd 9.1.0 (a newer format, version 2)"), "{e}");
        assert!(e.contains(&format!("reads format version {CONFIG_VERSION}")) && !e.contains("corrupt"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), newer, "left alone");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn saving_keeps_the_last_good_copy_and_errors_name_it() {
        let d = temp_dir("db-bak");
        let path = d.join("conf.json");
        save(&path, &empty()).unwrap();
        assert!(!backup_path(&path).exists(), "nothing to keep on the first save");
        let first = fs::read(&path).unwrap();
        assert!(String::from_utf8_lossy(&first).contains(&writer()), "the writer is named in the file");
        save(&path, &sample()).unwrap();
        assert_eq!(fs::read(backup_path(&path)).unwrap(), first);
        assert_eq!(load(&path).unwrap(), sample(), "written_by is the file's, not the config's");
        fs::write(&path, b"{").unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.contains(&format!("put back the last good copy {}", backup_path(&path).display())), "{e}");
        assert_eq!(load(&backup_path(&path)).unwrap(), empty(), "the copy loads");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let d = temp_dir("db-unreadable");
        // A directory where the file should be cannot be read.
        let path = d.join("conf.json");
        fs::create_dir(&path).unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.contains("cannot read configuration database"), "{e}");
        assert!(save(&path, &empty()).is_err());
        let _ = fs::remove_dir_all(&d);
    }
}
