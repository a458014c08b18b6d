//! The configuration database: one JSON file, replaced atomically.
//!
//! `save` writes `<path>.tmp` beside the file, fsyncs it, renames it over
//! the file and fsyncs the directory, so after a crash the file holds either
//! the old or the new configuration, never a mix. `load` refuses a file it
//! cannot read or understand, so the daemon stops instead of starting empty
//! and later overwriting what the user had.

use crate::config::{Config, CONFIG_VERSION};
use crate::proto;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Default location of the database.
pub const DEFAULT_DB: &str = "/var/lib/rvs/conf.json";

/// An empty configuration, as on first start.
pub fn empty() -> Config {
    Config { version: CONFIG_VERSION, bridges: Vec::new(), uplinks: Vec::new() }
}

/// Loads the database; a missing file is an empty configuration.
pub fn load(path: &Path) -> Result<Config, String> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(empty()),
        Err(e) => {
            return Err(format!("cannot read configuration database {}: {}", path.display(), crate::server::io_msg(&e)))
        }
    };
    let cfg: Config = serde_json::from_slice(&data).map_err(|e| {
        format!(
            "corrupt configuration database {}: {e} (fix or move the file; rvsd will not overwrite it)",
            path.display()
        )
    })?;
    if cfg.version != CONFIG_VERSION {
        return Err(format!(
            "configuration database {} has format version {}, this rvsd reads version {CONFIG_VERSION}",
            path.display(),
            cfg.version
        ));
    }
    validate(&cfg).map_err(|e| {
        format!(
            "invalid configuration database {}: {e} (fix or move the file; rvsd will not overwrite it)",
            path.display()
        )
    })?;
    Ok(cfg)
}

/// Writes the database atomically, creating its directory (0755) if needed.
pub fn save(path: &Path, cfg: &Config) -> Result<(), String> {
    let ctx = |what: &str, p: &Path, e: std::io::Error| {
        format!(
            "cannot save configuration database {}: {what} {}: {}",
            path.display(),
            p.display(),
            crate::server::io_msg(&e)
        )
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    DirBuilder::new().recursive(true).mode(0o755).create(&dir).map_err(|e| ctx("create directory", &dir, e))?;
    let mut data = serde_json::to_vec_pretty(cfg).map_err(|e| format!("cannot encode configuration: {e}"))?;
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
        fs::rename(&tmp, path).map_err(|e| ctx("rename", &tmp, e))
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| ctx("fsync directory", &dir, e))
}

/// Checks a configuration as the state machine would have built it: valid
/// names, VLANs and MACs, no duplicate bridge or port, static entries on
/// ports of their own bridge.
pub fn validate(cfg: &Config) -> Result<(), String> {
    let mut bridges = HashSet::new();
    let mut ports = HashSet::new();
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
    use crate::config::{BridgeConfig, PortConfig, PortType, PortVlan, StaticMac, XdpMode};
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
            name: "veth-a".into(),
            kind: PortType::Afxdp,
            vlan: PortVlan::Trunk { vlans: vec![10, 20], native: Some(1) },
            queues: Some(2),
            xdp_mode: XdpMode::Generic,
            netns: None,
            vxlan: None,
        });
        br.static_macs.push(StaticMac { mac: "02:00:00:00:00:01".into(), vlan: 10, port: "veth-a".into() });
        Config { version: CONFIG_VERSION, bridges: vec![br], uplinks: Vec::new() }
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
