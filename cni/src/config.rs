//! The network configuration the runtime gives on stdin, and the
//! environment variables of the CNI spec.

use std::path::PathBuf;

use rvs_dataplane::fnv::Fnv1a;
use rvs_proto::config::{FastPath, PortVlan};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{code, CniError};

/// The CNI versions this plugin speaks: their results differ only in the
/// `version` field of each IP (before 1.0.0).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The largest MTU a veth takes (ETH_MAX_MTU).
const MAX_MTU: u32 = 65535;

/// The configuration, as written (camelCase keys); unknown keys are
/// allowed, as the spec wants (runtimes add `args`, `runtimeConfig`, ...).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    cni_version: Option<String>,
    name: Option<String>,
    bridge: Option<String>,
    socket: Option<PathBuf>,
    port_type: Option<String>,
    vlan: Option<u16>,
    mtu: Option<u32>,
    fast_path: Option<FastPath>,
    ip_masq: Option<bool>,
    ipam: Option<Value>,
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
}

/// One attachment GC must keep (`cni.dev/valid-attachments`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The container's id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Its interface.
    pub ifname: String,
}

/// How the container's interface joins the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// A veth pair; rvs takes the host end with AF_XDP (and its kernel
    /// executor).
    Afxdp,
    /// A tap that rvsd creates inside the container: no host end at all.
    Tap,
}

/// A checked network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`, one of [`SUPPORTED_VERSIONS`].
    pub cni_version: String,
    /// The network's `name`.
    pub network: String,
    /// The container's interface: a veth's end or a tap.
    pub port_type: PortKind,
    /// `ipMasq`: the host masquerades what the containers send beyond
    /// their subnets.
    pub ip_masq: bool,
    /// The rvs bridge the containers join.
    pub bridge: String,
    /// rvsd's control socket.
    pub socket: PathBuf,
    /// The container's VLAN (an access port).
    pub vlan: PortVlan,
    /// MTU of both ends of the veth; `None`: the bridge's tunnels' inner
    /// MTU, or 1500.
    pub mtu: Option<u32>,
    /// The port's kernel executor.
    pub fast_path: FastPath,
    /// The IPAM plugin's name (`ipam.type`), if the network has IPAM.
    pub ipam_type: Option<String>,
    /// The previous plugin's result, in a chain (and for CHECK).
    pub prev_result: Option<Value>,
    /// GC: the attachments that stay; every other container port of the
    /// network goes.
    pub valid_attachments: Vec<Attachment>,
}

/// The `cniVersion` of `stdin`, if it is readable JSON with one: what an
/// error result should carry even when the rest is wrong.
pub fn version_of(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

/// Parses and checks the network configuration: undecodable JSON is code
/// 6, a wrong or missing key 7, a version we do not speak 1.
pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
    let v: Value = serde_json::from_slice(stdin)
        .map_err(|e| CniError::new(code::DECODE, format!("network configuration is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(CniError::new(code::DECODE, "network configuration is not a JSON object"));
    }
    let raw: RawConf = serde_json::from_value(v)
        .map_err(|e| CniError::new(code::INVALID_CONFIG, format!("invalid network configuration: {e}")))?;
    let bad = |msg: String| CniError::new(code::INVALID_CONFIG, msg);

    let cni_version = raw.cni_version.ok_or_else(|| bad("no \"cniVersion\" in the network configuration".into()))?;
    check_version(&cni_version)?;
    let network =
        raw.name.filter(|n| !n.is_empty()).ok_or_else(|| bad("no \"name\" in the network configuration".into()))?;
    let bridge = raw.bridge.ok_or_else(|| bad("no \"bridge\": which rvs bridge should containers join?".into()))?;
    rvs_proto::check_name("bridge", &bridge).map_err(|e| bad(format!("\"bridge\": {e}")))?;
    let port_type = match raw.port_type.as_deref() {
        None | Some("afxdp") => PortKind::Afxdp,
        Some("tap") => PortKind::Tap,
        Some(other) => return Err(bad(format!("\"portType\": {other:?} is not one of \"afxdp\", \"tap\""))),
    };
    let fast_path = raw.fast_path.unwrap_or_default();
    // A tap has no XDP or tc hook of its own: every frame goes through rvs.
    if port_type == PortKind::Tap && !matches!(fast_path, FastPath::Auto | FastPath::Off) {
        return Err(bad(format!("\"fastPath\": {:?} needs \"portType\": \"afxdp\"", fast_path.name())));
    }
    let vlan = raw.vlan.unwrap_or(1);
    rvs_proto::check_vlan(vlan).map_err(|e| bad(format!("\"vlan\": {e}")))?;
    // 68 is the least MTU IPv4 allows; a veth takes up to 65535.
    if let Some(mtu) = raw.mtu.filter(|m| !(68..=MAX_MTU).contains(m)) {
        return Err(bad(format!("\"mtu\": {mtu} is not within 68..={MAX_MTU}")));
    }
    let ipam_type = match &raw.ipam {
        None => None,
        Some(Value::Object(m)) if m.is_empty() => None,
        Some(Value::Object(m)) => match m.get("type").and_then(Value::as_str) {
            Some(t) if is_plugin_name(t) => Some(t.to_string()),
            Some(t) => return Err(bad(format!("\"ipam\": {t:?} is not a plugin name"))),
            None => return Err(bad("\"ipam\" has no \"type\"".into())),
        },
        Some(_) => return Err(bad("\"ipam\" is not an object".into())),
    };
    Ok(NetConf {
        cni_version,
        network,
        port_type,
        ip_masq: raw.ip_masq.unwrap_or(false),
        bridge,
        socket: raw.socket.unwrap_or_else(|| PathBuf::from(rvs_proto::DEFAULT_SOCKET)),
        vlan: PortVlan::Access { vlan },
        mtu: raw.mtu,
        fast_path,
        ipam_type,
        prev_result: raw.prev_result,
        valid_attachments: raw.valid_attachments.unwrap_or_default(),
    })
}

/// Ok if we speak `v`; else the spec's code 1.
pub fn check_version(v: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("CNI version {v:?} is not supported (this plugin speaks {})", SUPPORTED_VERSIONS.join(", ")),
        ))
    }
}

/// A file name to look up in CNI_PATH: no path separators, no tricks.
fn is_plugin_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0'])
}

/// The CNI operation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Attach.
    Add,
    /// Detach (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Report the versions spoken.
    Version,
    /// Say whether containers can be attached now (CNI 1.1).
    Status,
    /// Remove what belongs to attachments the runtime no longer has (CNI 1.1).
    Gc,
}

/// The spec's environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// CNI_COMMAND.
    pub cmd: Cmd,
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_NETNS: a path to the container's network namespace (DEL may
    /// come without one, when it is gone).
    pub netns: Option<PathBuf>,
    /// CNI_IFNAME: the interface to make inside the container.
    pub ifname: String,
    /// CNI_PATH: where plugins (IPAM) are looked up.
    pub path: Vec<PathBuf>,
}

/// Reads the spec's variables through `get` (the process environment, or
/// a map in tests); a missing or bad one is code 4. VERSION needs only
/// CNI_COMMAND.
pub fn env_from(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
    let need = |k: &str| {
        get(k).filter(|v| !v.is_empty()).ok_or_else(|| CniError::new(code::INVALID_ENV, format!("{k} is not set")))
    };
    let cmd = match need("CNI_COMMAND")?.as_str() {
        "ADD" => Cmd::Add,
        "DEL" => Cmd::Del,
        "CHECK" => Cmd::Check,
        "VERSION" => Cmd::Version,
        "STATUS" => Cmd::Status,
        "GC" => Cmd::Gc,
        other => return Err(CniError::new(code::INVALID_ENV, format!("CNI_COMMAND {other:?} is not supported"))),
    };
    let path =
        |v: Option<String>| v.unwrap_or_default().split(':').filter(|d| !d.is_empty()).map(PathBuf::from).collect();
    // VERSION, STATUS and GC are about the plugin or the network, not one
    // container.
    if matches!(cmd, Cmd::Version | Cmd::Status | Cmd::Gc) {
        return Ok(Env {
            cmd,
            container_id: String::new(),
            netns: None,
            ifname: String::new(),
            path: path(get("CNI_PATH")),
        });
    }
    let container_id = need("CNI_CONTAINERID")?;
    let ifname = need("CNI_IFNAME")?;
    rvs_proto::check_name("CNI_IFNAME interface", &ifname).map_err(|e| CniError::new(code::INVALID_ENV, e))?;
    let netns = match cmd {
        Cmd::Del => get("CNI_NETNS").filter(|v| !v.is_empty()).map(PathBuf::from),
        _ => Some(PathBuf::from(need("CNI_NETNS")?)),
    };
    let path = path(Some(need("CNI_PATH")?));
    Ok(Env { cmd, container_id, netns, ifname, path })
}

/// The name of the host end of a container's veth: `rvs` and 12 hex digits
/// of a hash of the container id and interface name (15 characters, the
/// kernel's limit). The same attachment always gets the same name, so DEL
/// finds it without state of its own; two attachments collide only with a
/// chance of about 2^-48.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    // Stable across builds and versions, unlike std's hasher.
    let h = Fnv1a::default().write(container_id.as_bytes()).write(&[0]).write(ifname.as_bytes()).finish();
    format!("rvs{:012x}", h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_str(s: &str) -> Result<NetConf, CniError> {
        parse(s.as_bytes())
    }

    #[test]
    fn defaults() {
        let c = parse_str(r#"{"cniVersion":"1.0.0","name":"n","type":"rvs","bridge":"br0"}"#).unwrap();
        assert_eq!(c.cni_version, "1.0.0");
        assert_eq!(c.network, "n");
        assert_eq!(c.port_type, PortKind::Afxdp);
        assert_eq!(c.valid_attachments, vec![]);
        assert_eq!(c.bridge, "br0");
        assert_eq!(c.socket, PathBuf::from(rvs_proto::DEFAULT_SOCKET));
        assert_eq!(c.vlan, PortVlan::Access { vlan: 1 });
        assert_eq!(c.mtu, None);
        assert_eq!(c.fast_path, FastPath::Auto);
        assert_eq!(c.ipam_type, None);
        assert_eq!(c.prev_result, None);
        assert!(!c.ip_masq);
    }

    #[test]
    fn every_key() {
        let c = parse_str(
            r#"{"cniVersion":"0.4.0","name":"n","type":"rvs","bridge":"br1","socket":"/tmp/s.sock",
                "portType":"afxdp","vlan":10,"mtu":1450,"fastPath":"off","ipMasq":true,
                "ipam":{"type":"host-local","subnet":"198.18.0.0/24"},
                "prevResult":{"cniVersion":"0.4.0"},"runtimeConfig":{},"args":{}}"#,
        )
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/s.sock"));
        assert_eq!(c.vlan, PortVlan::Access { vlan: 10 });
        assert_eq!(c.mtu, Some(1450));
        assert_eq!(c.fast_path, FastPath::Off);
        assert!(c.ip_masq);
        assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
        assert!(c.prev_result.is_some());
        let c = parse_str(
            r#"{"cniVersion":"1.1.0","name":"n","bridge":"b","portType":"tap",
                "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(c.port_type, PortKind::Tap);
        assert_eq!(c.valid_attachments, vec![Attachment { container_id: "c1".into(), ifname: "eth0".into() }]);
        // An empty ipam object is no IPAM, as libcni's plugins read it.
        let c = parse_str(r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","ipam":{}}"#).unwrap();
        assert_eq!(c.ipam_type, None);
    }

    #[test]
    fn bad_configs_get_their_codes() {
        let cases: &[(&str, u32, &str)] = &[
            ("{", code::DECODE, "not JSON"),
            ("[1]", code::DECODE, "not a JSON object"),
            (r#"{"cniVersion":"1.0.0","name":"n"}"#, code::INVALID_CONFIG, "no \"bridge\""),
            (r#"{"name":"n","bridge":"b"}"#, code::INVALID_CONFIG, "no \"cniVersion\""),
            (r#"{"cniVersion":"1.0.0","bridge":"b"}"#, code::INVALID_CONFIG, "no \"name\""),
            (r#"{"cniVersion":"9.9.9","name":"n","bridge":"b"}"#, code::INCOMPATIBLE_VERSION, "\"9.9.9\""),
            (r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","vlan":0}"#, code::INVALID_CONFIG, "\"vlan\""),
            (r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","vlan":4095}"#, code::INVALID_CONFIG, "\"vlan\""),
            (r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","vlan":"x"}"#, code::INVALID_CONFIG, "invalid"),
            (r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","mtu":67}"#, code::INVALID_CONFIG, "\"mtu\""),
            (r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","ipMasq":"yes"}"#, code::INVALID_CONFIG, "invalid"),
            (r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","mtu":70000}"#, code::INVALID_CONFIG, "\"mtu\""),
            (r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","portType":"x"}"#, code::INVALID_CONFIG, "portType"),
            (r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","portType":"tap"}"#, 0, ""),
            (
                r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","portType":"tap","fastPath":"tc"}"#,
                code::INVALID_CONFIG,
                "\"fastPath\"",
            ),
            (r#"{"cniVersion":"1.0.0","name":"","bridge":"b"}"#, code::INVALID_CONFIG, "no \"name\""),
            (r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","fastPath":"x"}"#, code::INVALID_CONFIG, "invalid"),
            (r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","ipam":{}}"#, 0, ""),
            (
                r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","ipam":{"subnet":"x"}}"#,
                code::INVALID_CONFIG,
                "no \"type\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","ipam":{"type":"../x"}}"#,
                code::INVALID_CONFIG,
                "plugin name",
            ),
            (r#"{"cniVersion":"1.0.0","name":"n","bridge":"b","ipam":3}"#, code::INVALID_CONFIG, "not an object"),
            (r#"{"cniVersion":"1.0.0","name":"n","bridge":"b/c"}"#, code::INVALID_CONFIG, "\"bridge\""),
        ];
        for (text, want, part) in cases {
            match parse_str(text) {
                Ok(_) => assert_eq!(*want, 0, "{text} was accepted"),
                Err(e) => {
                    assert_eq!(e.code, *want, "{text}: {e}");
                    assert!(e.msg.contains(part), "{text}: {e:?} lacks {part:?}");
                }
            }
        }
    }

    #[test]
    fn version_of_reads_what_it_can() {
        assert_eq!(version_of(br#"{"cniVersion":"0.4.0","bridge":3}"#).as_deref(), Some("0.4.0"));
        assert_eq!(version_of(b"{"), None);
    }

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env_from(|k| m.get(k).cloned())
    }

    #[test]
    fn environment() {
        let full = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/proc/1/ns/net"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
        ];
        let e = env(&full).unwrap();
        assert_eq!(e.cmd, Cmd::Add);
        assert_eq!(e.netns, Some(PathBuf::from("/proc/1/ns/net")));
        assert_eq!(e.path, vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]);
        assert_eq!(env(&[("CNI_COMMAND", "VERSION")]).unwrap().cmd, Cmd::Version);
        assert_eq!(env(&[("CNI_COMMAND", "STATUS")]).unwrap().cmd, Cmd::Status);
        let gc = env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")]).unwrap();
        assert_eq!((gc.cmd, gc.path), (Cmd::Gc, vec![PathBuf::from("/opt/cni/bin")]));
        // DEL may come without a namespace; ADD may not.
        let del: Vec<_> = full.iter().copied().filter(|(k, _)| *k != "CNI_NETNS").collect();
        let mut del_cmd = del.clone();
        del_cmd[0] = ("CNI_COMMAND", "DEL");
        assert_eq!(env(&del_cmd).unwrap().netns, None);
        for (drop, why) in [
            ("CNI_COMMAND", "CNI_COMMAND is not set"),
            ("CNI_CONTAINERID", "CNI_CONTAINERID"),
            ("CNI_NETNS", "CNI_NETNS"),
            ("CNI_IFNAME", "CNI_IFNAME"),
            ("CNI_PATH", "CNI_PATH"),
        ] {
            let v: Vec<_> = full.iter().copied().filter(|(k, _)| *k != drop).collect();
            let e = env(&v).unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV);
            assert!(e.msg.contains(why), "{e:?}");
        }
        let mut bad = full;
        bad[3] = ("CNI_IFNAME", "a-name-far-too-long");
        assert_eq!(env(&bad).unwrap_err().code, code::INVALID_ENV);
        bad[3] = ("CNI_IFNAME", "eth0");
        bad[0] = ("CNI_COMMAND", "FROB");
        assert_eq!(env(&bad).unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn host_names_are_short_stable_and_distinct() {
        let a = host_ifname("0123456789abcdef", "eth0");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("rvs") && a[3..].chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_eq!(a, host_ifname("0123456789abcdef", "eth0"));
        assert_ne!(a, host_ifname("0123456789abcdef", "eth1"));
        assert_ne!(a, host_ifname("0123456789abcdeg", "eth0"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(host_ifname("ab", "c"), host_ifname("a", "bc"));
    }
}
