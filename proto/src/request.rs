//! The control protocol between `rvsctl` and `rvsd`.
//!
//! Newline-delimited JSON over a Unix stream socket. Every request is one
//! line `{"version":1,"cmd":"...",...args}`, answered by one line
//! `{"version":1,"ok":true,"result":...}` or
//! `{"version":1,"ok":false,"error":"one line"}`.
//!
//! The argument rules both sides apply (names, VLANs, trunk lists, MACs)
//! live here too, so `rvsctl` can refuse bad input before sending it and
//! `rvsd` refuses the same input from any other client.

use crate::config::{PortConfig, PortType, PortVlan, StaticMac, UplinkConfig, VxlanConfig, XdpMode};
use crate::datapath::{PortStatus, ThreadInfo, UplinkStatus};
/// The MAC address type requests are checked with.
pub use rvs_dataplane::wire::MacAddr;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::net::IpAddr;

/// The protocol version this build speaks.
pub const PROTO_VERSION: u32 = 1;
/// Every protocol version this build accepts.
pub const SUPPORTED_VERSIONS: [u32; 1] = [PROTO_VERSION];
/// Longest request line `rvsd` accepts, newline excluded.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;
/// Longest reply line `rvsctl` accepts.
pub const MAX_REPLY_LEN: usize = 64 * 1024 * 1024;
/// Where `rvsd` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/rvs/rvsd.sock";
/// Longest interface (and bridge) name: Linux IFNAMSIZ less the NUL.
pub const MAX_NAME_LEN: usize = 15;
/// Accepted aging times, seconds.
pub const AGING_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;
/// Accepted per-bridge learned-MAC limits.
pub const MAX_MACS_RANGE: std::ops::RangeInclusive<u32> = 1..=1 << 20;
/// Accepted AF_XDP queue counts.
pub const QUEUES_RANGE: std::ops::RangeInclusive<u32> = 1..=1024;
/// Largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Most remote VTEPs one VXLAN port replicates floods to.
pub const MAX_REMOTES: usize = 1024;

/// One command and its arguments; the `cmd` field of a request names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Creates a bridge.
    BridgeAdd {
        /// Bridge name.
        bridge: String,
        /// MAC aging time in seconds (default 300).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aging_secs: Option<u32>,
        /// Learned-MAC limit (default 8192).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_macs: Option<u32>,
    },
    /// Deletes a bridge and all its ports.
    BridgeDel {
        /// Bridge name.
        bridge: String,
    },
    /// Lists bridges: result `Vec<BridgeSummary>`.
    BridgeList,
    /// Changes a bridge's settings.
    BridgeSet {
        /// Bridge name.
        bridge: String,
        /// New aging time in seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aging_secs: Option<u32>,
        /// New learned-MAC limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_macs: Option<u32>,
    },
    /// Adds a port to a bridge.
    PortAdd {
        /// Bridge name.
        bridge: String,
        /// The port.
        port: PortConfig,
    },
    /// Removes a port from a bridge.
    PortDel {
        /// Bridge name.
        bridge: String,
        /// Port name.
        port: String,
    },
    /// Replaces the remote VTEP list of a VXLAN port, live.
    PortSetRemotes {
        /// Bridge name.
        bridge: String,
        /// Port name (a `vxlan` port).
        port: String,
        /// The new list, in order; may be empty.
        remotes: Vec<IpAddr>,
        /// Refuse the change unless the list is now exactly this (so a
        /// read-modify-write like `rvsctl port remote add` loses no update).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect_remotes: Option<Vec<IpAddr>>,
    },
    /// Attaches rvs to an underlay interface for VXLAN.
    UplinkAdd {
        /// The uplink.
        uplink: UplinkConfig,
    },
    /// Detaches rvs from an underlay interface.
    UplinkDel {
        /// Interface name.
        uplink: String,
    },
    /// Uplinks: result `Vec<UplinkShow>`.
    UplinkList,
    /// Everything: result `ShowResult`.
    Show,
    /// Cluster membership: result `state::ClusterShow`.
    ClusterShow,
    /// A bridge's FDB: result `Vec<FdbEntryInfo>`.
    FdbShow {
        /// Bridge name.
        bridge: String,
    },
    /// Adds or replaces a static FDB entry.
    FdbAdd {
        /// Bridge name.
        bridge: String,
        /// Unicast MAC address.
        mac: String,
        /// VLAN.
        vlan: u16,
        /// Port of the bridge the MAC is behind.
        port: String,
    },
    /// Removes an FDB entry, static or learned.
    FdbDel {
        /// Bridge name.
        bridge: String,
        /// MAC address.
        mac: String,
        /// VLAN.
        vlan: u16,
    },
    /// Removes learned entries, of one port if given: result `FlushResult`.
    FdbFlush {
        /// Bridge name.
        bridge: String,
        /// Only entries learned on this port.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
    },
    /// Port counters, of one port if given: result `Vec<PortStatsInfo>`.
    Stats {
        /// Only this port.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
    },
    /// Polling threads: result `Vec<ThreadInfo>`.
    PmdShow,
    /// Moves one receive queue of a port or uplink to the polling thread on
    /// a core, and keeps it there across restarts.
    PmdAssign {
        /// Port or uplink name.
        port: String,
        /// Receive queue id (the datapath checks it against the queue count).
        queue: u32,
        /// Core of the polling thread (the datapath checks there is one).
        core: usize,
    },
    /// Every polling thread's flow cache: result `Vec<FlowInfo>`.
    FlowsShow,
    /// Empties every flow cache (run-time state only; nothing is saved).
    FlowsFlush,
    /// Runs a frame through the packet path's decision code as if it came
    /// in on a port, sending nothing: result `TraceResult`.
    Trace {
        /// Bridge name.
        bridge: String,
        /// Ingress port (of the bridge), or an uplink for VXLAN frames.
        port: String,
        /// The frame: hex bytes, or a description (see `framedesc`).
        frame: String,
    },
    /// Copies what a port (or uplink) receives and/or sends to this
    /// connection: after an ok reply (`CaptureStarted`) the connection
    /// carries `capstream` messages until the count is reached, the port
    /// goes away or the client closes it.
    Capture {
        /// Port or uplink name.
        port: String,
        /// Which frames.
        #[serde(default)]
        direction: CaptureDirection,
        /// Stop after this many frames.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
        /// Bytes kept of each frame (default: whole frames).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snaplen: Option<u32>,
    },
    /// Replaces rvsd's log filter at run time (not saved): a level
    /// (error, warn, info, debug, trace, off) or `target=level,...`.
    LogLevel {
        /// The filter.
        filter: String,
    },
    /// Health check: result `PingResult`.
    Ping,
}

/// Which frames of a port a capture takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureDirection {
    /// Frames the port receives.
    In,
    /// Frames the port sends.
    Out,
    /// Both.
    #[default]
    Both,
}

/// The reply to `capture`, before the frames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStarted {
    /// Port or uplink name.
    pub port: String,
    /// Bytes kept of each frame.
    pub snaplen: u32,
}

/// Counters of a running capture, in its status and end messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStatus {
    /// Frames sent to the client.
    pub captured: u64,
    /// Frames lost because the client (or rvsd) did not keep up.
    pub dropped: u64,
    /// In the end message: why the capture ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Largest snap length a capture takes.
pub const MAX_SNAPLEN: u32 = 65535;

/// A request: a command and the protocol version it is written in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Protocol version.
    pub version: u32,
    /// The command.
    pub cmd: Command,
}

impl Request {
    /// A request in this build's protocol version.
    pub fn new(cmd: Command) -> Request {
        Request { version: PROTO_VERSION, cmd }
    }

    /// The request as one JSON line, newline excluded.
    pub fn to_line(&self) -> String {
        let mut v = serde_json::to_value(&self.cmd).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert("version".to_string(), Value::from(self.version));
        }
        v.to_string()
    }

    /// Parses one request line. The version is checked before the command,
    /// so a client speaking another version learns which ones rvsd speaks.
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        let v: Value = serde_json::from_slice(line).map_err(|e| format!("invalid request: {}", one_line(e)))?;
        let Value::Object(mut map) = v else {
            return Err("invalid request: expected a JSON object".to_string());
        };
        let version = match map.remove("version") {
            None => return Err(format!("invalid request: missing \"version\" ({})", supported())),
            Some(v) => v.as_u64().unwrap_or(0),
        };
        let version = u32::try_from(version).unwrap_or(0);
        check_version(version)?;
        let cmd: Command =
            serde_json::from_value(Value::Object(map)).map_err(|e| format!("invalid request: {}", one_line(e)))?;
        Ok(Request { version, cmd })
    }
}

/// `msg` with control characters escaped, so an error quoting user input
/// (a field name with a newline in it, say) stays one line.
pub fn one_line(msg: impl std::fmt::Display) -> String {
    let mut out = String::new();
    for c in msg.to_string().chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn supported() -> String {
    let list: Vec<String> = SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect();
    format!("this rvsd speaks protocol version {}", list.join(", "))
}

/// Ok if `version` is one this build speaks; else the error naming those it does.
pub fn check_version(version: u32) -> Result<(), String> {
    if SUPPORTED_VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(format!("unsupported protocol version {version} ({})", supported()))
    }
}

/// A reply: a result on success, one line of error otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Protocol version.
    pub version: u32,
    /// Whether the command succeeded.
    pub ok: bool,
    /// The command's result (on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why the command failed (on failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    /// A success carrying `result`.
    pub fn ok(result: Value) -> Reply {
        Reply { version: PROTO_VERSION, ok: true, result: Some(result), error: None }
    }

    /// A failure; newlines in `msg` are folded so it stays one line.
    pub fn err(msg: impl Into<String>) -> Reply {
        let msg: String = msg.into();
        Reply { version: PROTO_VERSION, ok: false, result: None, error: Some(msg.replace(['\n', '\r'], " ")) }
    }

    /// A success carrying a serializable result.
    pub fn from_result<T: Serialize>(r: Result<T, String>) -> Reply {
        match r.and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string())) {
            Ok(v) => Reply::ok(v),
            Err(e) => Reply::err(e),
        }
    }

    /// The result, or the error.
    pub fn into_result(self) -> Result<Value, String> {
        if self.ok {
            Ok(self.result.unwrap_or(Value::Null))
        } else {
            Err(self.error.unwrap_or_else(|| "rvsd reported an error without a message".to_string()))
        }
    }

    /// The reply as one JSON line, newline excluded.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"version":{PROTO_VERSION},"ok":false,"error":"cannot encode reply: {e}"}}"#)
        })
    }
}

/// One bridge in `bridge_list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeSummary {
    /// Bridge name.
    pub name: String,
    /// MAC aging time, seconds.
    pub aging_secs: u32,
    /// Learned-MAC limit.
    pub max_macs: u32,
    /// Number of ports.
    pub ports: usize,
}

/// The result of `show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowResult {
    /// Uplinks in creation order (absent from an older rvsd's answer).
    #[serde(default)]
    pub uplinks: Vec<UplinkShow>,
    /// Bridges in creation order.
    pub bridges: Vec<BridgeShow>,
    /// Polling threads.
    pub threads: Vec<ThreadInfo>,
}

/// One bridge in `show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeShow {
    /// Bridge name.
    pub name: String,
    /// MAC aging time, seconds.
    pub aging_secs: u32,
    /// Learned-MAC limit.
    pub max_macs: u32,
    /// Ports in creation order.
    pub ports: Vec<PortShow>,
    /// Static FDB entries.
    pub static_macs: Vec<StaticMac>,
}

/// One port in `show`: what was asked for and what runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortShow {
    /// The configuration.
    pub config: PortConfig,
    /// Run-time state.
    pub status: PortStatus,
}

/// One uplink in `show` and `uplink_list`: what was asked for and what runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkShow {
    /// The configuration.
    pub config: UplinkConfig,
    /// Run-time state.
    pub status: UplinkStatus,
}

/// The result of `fdb_flush`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushResult {
    /// Entries removed.
    pub flushed: usize,
}

/// The result of `ping`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResult {
    /// rvsd's package version.
    pub daemon_version: String,
    /// Protocol versions it speaks.
    pub protocol_versions: Vec<u32>,
}

/// Checks a cluster node name: 1 to 63 of `A-Z a-z 0-9 . _ -` (it is
/// part of etcd keys).
pub fn check_node_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid node name {name:?} (1 to 63 letters, digits, '.', '_' or '-')"))
    }
}

/// Checks an interface or bridge name: 1..=15 bytes, no '/', whitespace or NUL.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("invalid {what} name \"\" (must not be empty)"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("invalid {what} name {name:?} (at most {MAX_NAME_LEN} bytes)"));
    }
    if name == "." || name == ".." {
        return Err(format!("invalid {what} name {name:?}"));
    }
    if name.chars().any(|c| c == '/' || c == '\0' || c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid {what} name {name:?} (no '/', whitespace or control characters)"));
    }
    Ok(())
}

/// Checks a VLAN id: 1..=4094.
pub fn check_vlan(vlan: u16) -> Result<(), String> {
    if (1..=4094).contains(&vlan) {
        Ok(())
    } else {
        Err(format!("invalid VLAN {vlan} (must be 1..=4094)"))
    }
}

/// Parses a VLAN id from text, checking its range.
pub fn parse_vlan(s: &str) -> Result<u16, String> {
    let t = s.trim();
    let v: u32 = t.parse().map_err(|_| format!("invalid VLAN {s:?} (must be a number 1..=4094)"))?;
    let v = u16::try_from(v).map_err(|_| format!("invalid VLAN {v} (must be 1..=4094)"))?;
    check_vlan(v)?;
    Ok(v)
}

/// Parses a trunk list like `10,20,30-35`: sorted, without duplicates.
pub fn parse_vlan_list(s: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!("invalid VLAN list {s:?} (empty element)"));
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_vlan(a)?, parse_vlan(b)?);
                if a > b {
                    return Err(format!("invalid VLAN range {part:?} (start after end)"));
                }
                out.extend(a..=b);
            }
            None => out.push(parse_vlan(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Parses a MAC address; `unicast` also refuses group and all-zero addresses.
pub fn parse_mac(s: &str, unicast: bool) -> Result<MacAddr, String> {
    let mac: MacAddr = s.parse().map_err(|e| format!("{e}"))?;
    if unicast && mac.is_multicast() {
        return Err(format!("MAC {mac} is a multicast address (static entries must be unicast)"));
    }
    if unicast && mac.is_zero() {
        return Err(format!("MAC {mac} is not a valid station address"));
    }
    Ok(mac)
}

/// Checks a bridge's aging time.
pub fn check_aging(secs: u32) -> Result<(), String> {
    if AGING_RANGE.contains(&secs) {
        Ok(())
    } else {
        Err(format!("invalid aging time {secs} (must be {}..={} seconds)", AGING_RANGE.start(), AGING_RANGE.end()))
    }
}

/// Checks a bridge's learned-MAC limit.
pub fn check_max_macs(n: u32) -> Result<(), String> {
    if MAX_MACS_RANGE.contains(&n) {
        Ok(())
    } else {
        Err(format!("invalid MAC limit {n} (must be {}..={})", MAX_MACS_RANGE.start(), MAX_MACS_RANGE.end()))
    }
}

/// Checks a port's own settings (not whether its name is free).
pub fn check_port(p: &PortConfig) -> Result<(), String> {
    check_name("port", &p.name)?;
    match &p.vlan {
        PortVlan::Access { vlan } => check_vlan(*vlan)?,
        PortVlan::Trunk { vlans, native } => {
            if vlans.is_empty() {
                return Err("invalid trunk: the VLAN list is empty".to_string());
            }
            for v in vlans {
                check_vlan(*v)?;
            }
            if let Some(n) = native {
                check_vlan(*n)?;
                if vlans.contains(n) {
                    return Err(format!("native VLAN {n} is also in the trunk list (it is carried untagged)"));
                }
            }
        }
    }
    if p.kind != PortType::Vxlan && p.vxlan.is_some() {
        return Err(format!("port {:?}: tunnel settings apply to vxlan ports only", p.name));
    }
    match p.kind {
        PortType::Afxdp => {
            if p.netns.is_some() {
                return Err(format!("port {:?}: a network namespace applies to tap ports only", p.name));
            }
            if let Some(q) = p.queues {
                check_queues(q)?;
            }
        }
        PortType::Tap => {
            if p.queues.is_some() {
                return Err(format!("port {:?}: a queue count applies to afxdp ports only", p.name));
            }
            if p.xdp_mode != XdpMode::Auto {
                return Err(format!("port {:?}: an XDP mode applies to afxdp ports only", p.name));
            }
            if let Some(ns) = &p.netns {
                check_netns(ns)?;
            }
        }
        PortType::Vxlan => {
            if p.queues.is_some() {
                return Err(format!("port {:?}: a queue count applies to afxdp ports only", p.name));
            }
            if p.xdp_mode != XdpMode::Auto {
                return Err(format!("port {:?}: an XDP mode applies to afxdp ports only", p.name));
            }
            if p.netns.is_some() {
                return Err(format!("port {:?}: a network namespace applies to tap ports only", p.name));
            }
            let Some(v) = &p.vxlan else {
                return Err(format!("port {:?}: a vxlan port needs its tunnel settings (VNI, local address)", p.name));
            };
            check_vxlan(v)?;
        }
    }
    check_pmd("port", &p.name, &p.pmd)
}

/// Checks stored queue assignments: each queue at most once.
pub fn check_pmd(what: &str, name: &str, pmd: &[(u32, usize)]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for (q, _) in pmd {
        if !seen.insert(*q) {
            return Err(format!("{what} {name:?}: queue {q} is assigned to a polling thread twice"));
        }
    }
    Ok(())
}

/// Checks a VXLAN network identifier: 0..=16777215.
pub fn check_vni(vni: u32) -> Result<(), String> {
    if vni <= MAX_VNI {
        Ok(())
    } else {
        Err(format!("invalid VNI {vni} (must be 0..={MAX_VNI})"))
    }
}

/// Parses a VNI from text, checking its range.
pub fn parse_vni(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let v: u64 = t.parse().map_err(|_| format!("invalid VNI {s:?} (must be a number 0..={MAX_VNI})"))?;
    let v = u32::try_from(v).map_err(|_| format!("invalid VNI {v} (must be 0..={MAX_VNI})"))?;
    check_vni(v)?;
    Ok(v)
}

/// Parses an IPv4 or IPv6 address (`what` names it in the error).
pub fn parse_ip(what: &str, s: &str) -> Result<IpAddr, String> {
    s.trim().parse().map_err(|_| format!("invalid {what} address {s:?} (must be an IPv4 or IPv6 address)"))
}

/// Checks an address a VTEP can have: not unspecified, multicast or broadcast.
pub fn check_vtep_addr(what: &str, ip: IpAddr) -> Result<(), String> {
    let why = if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_multicast() {
        "multicast"
    } else if matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        "broadcast"
    } else {
        return Ok(());
    };
    Err(format!("invalid {what} address {ip} (a VTEP address must not be {why})"))
}

/// Checks a remote VTEP list on its own: valid addresses, one family, no
/// duplicates, at most 1024.
pub fn check_remote_list(remotes: &[IpAddr]) -> Result<(), String> {
    if remotes.len() > MAX_REMOTES {
        return Err(format!("too many remotes: {} (at most {MAX_REMOTES})", remotes.len()));
    }
    let mut seen = HashSet::new();
    for r in remotes {
        check_vtep_addr("remote", *r)?;
        if !seen.insert(*r) {
            return Err(format!("remote {r} is given twice"));
        }
        if r.is_ipv4() != remotes[0].is_ipv4() {
            return Err(format!("remotes {} and {r} are of different address families", remotes[0]));
        }
    }
    Ok(())
}

/// Checks remotes against the local VTEP: same family and not the local address.
pub fn check_remotes(local: IpAddr, remotes: &[IpAddr]) -> Result<(), String> {
    for r in remotes {
        if r.is_ipv4() != local.is_ipv4() {
            return Err(format!("remote {r} and local {local} are of different address families"));
        }
        if *r == local {
            return Err(format!("remote {r} is the local address"));
        }
    }
    check_remote_list(remotes)
}

/// Checks a UDP port: 1..=65535.
pub fn check_udp_port(port: u32) -> Result<u16, String> {
    match u16::try_from(port) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("invalid UDP port {port} (must be 1..=65535)")),
    }
}

/// Checks an outer TTL / hop limit: 1..=255.
pub fn check_ttl(ttl: u32) -> Result<u8, String> {
    match u8::try_from(ttl) {
        Ok(t) if t != 0 => Ok(t),
        _ => Err(format!("invalid TTL {ttl} (must be 1..=255)")),
    }
}

/// Checks a tunnel's own settings (not whether another port uses the same
/// local address, UDP port and VNI).
pub fn check_vxlan(v: &VxlanConfig) -> Result<(), String> {
    check_vni(v.vni)?;
    check_vtep_addr("local", v.local)?;
    check_remotes(v.local, &v.remotes)?;
    check_udp_port(v.dstport.into())?;
    check_ttl(v.ttl.into())?;
    Ok(())
}

/// The other port among `ports` whose tunnel is on the same local address,
/// UDP port and VNI as `p`'s, as an error.
pub fn check_vxlan_unique<'a>(p: &PortConfig, ports: impl IntoIterator<Item = &'a PortConfig>) -> Result<(), String> {
    let Some(v) = &p.vxlan else {
        return Ok(());
    };
    for q in ports {
        if q.name != p.name && q.vxlan.as_ref().is_some_and(|w| w.key() == v.key()) {
            return Err(format!(
                "port {:?} already uses local {}, dstport {}, VNI {} (port {:?} would receive the same frames)",
                q.name, v.local, v.dstport, v.vni, p.name
            ));
        }
    }
    Ok(())
}

/// Checks an uplink's own settings.
pub fn check_uplink(u: &UplinkConfig) -> Result<(), String> {
    check_name("uplink", &u.name)?;
    if let Some(q) = u.queues {
        check_queues(q)?;
    }
    check_pmd("uplink", &u.name, &u.pmd)
}

/// Checks an AF_XDP queue count.
pub fn check_queues(q: u32) -> Result<(), String> {
    if QUEUES_RANGE.contains(&q) {
        Ok(())
    } else {
        Err(format!("invalid queue count {q} (must be {}..={})", QUEUES_RANGE.start(), QUEUES_RANGE.end()))
    }
}

/// Checks a network namespace name (a file name under /var/run/netns).
pub fn check_netns(ns: &str) -> Result<(), String> {
    if ns.is_empty()
        || ns.len() > 255
        || ns == "."
        || ns == ".."
        || ns.chars().any(|c| c == '/' || c == '\0' || c.is_control())
    {
        return Err(format!("invalid network namespace name {ns:?}"));
    }
    Ok(())
}

/// Whether a port carries `vlan` (tagged or untagged).
pub fn port_carries(p: &PortConfig, vlan: u16) -> bool {
    match &p.vlan {
        PortVlan::Access { vlan: v } => *v == vlan,
        PortVlan::Trunk { vlans, native } => vlans.contains(&vlan) || *native == Some(vlan),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_roundtrip() {
        let req = Request::new(Command::FdbAdd {
            bridge: "br0".into(),
            mac: "02:00:00:00:00:01".into(),
            vlan: 10,
            port: "p1".into(),
        });
        let line = req.to_line();
        assert!(line.contains("\"version\":1"));
        assert!(line.contains("\"cmd\":\"fdb_add\""));
        assert_eq!(Request::parse(line.as_bytes()).unwrap(), req);
        let ping = Request::parse(br#"{"version":1,"cmd":"ping"}"#).unwrap();
        assert_eq!(ping.cmd, Command::Ping);
    }

    #[test]
    fn observability_requests() {
        let cap = Request::parse(br#"{"version":1,"cmd":"capture","port":"p1"}"#).unwrap();
        assert_eq!(
            cap.cmd,
            Command::Capture { port: "p1".into(), direction: CaptureDirection::Both, count: None, snaplen: None }
        );
        for cmd in [
            Command::Capture { port: "p1".into(), direction: CaptureDirection::Out, count: Some(3), snaplen: Some(64) },
            Command::Trace { bridge: "br0".into(), port: "p1".into(), frame: "0102".into() },
            Command::LogLevel { filter: "debug".into() },
        ] {
            let req = Request::new(cmd);
            assert_eq!(Request::parse(req.to_line().as_bytes()).unwrap(), req);
        }
        let e = Request::parse(br#"{"version":1,"cmd":"capture","port":"p1","direction":"sideways"}"#).unwrap_err();
        assert!(e.starts_with("invalid request") && !e.contains('\n'), "{e}");
        let e = Request::parse(br#"{"version":1,"cmd":"trace","bridge":"br0","port":"p1"}"#).unwrap_err();
        assert!(e.contains("frame"), "{e}");
    }

    #[test]
    fn vxlan_and_uplink_requests() {
        let line = r#"{"version":1,"cmd":"port_set_remotes","bridge":"br0","port":"vx42","remotes":["198.18.1.2","2001:db8::2"]}"#;
        let req = Request::parse(line.as_bytes()).unwrap();
        let remotes: Vec<IpAddr> = vec!["198.18.1.2".parse().unwrap(), "2001:db8::2".parse().unwrap()];
        assert_eq!(
            req.cmd,
            Command::PortSetRemotes { bridge: "br0".into(), port: "vx42".into(), remotes, expect_remotes: None }
        );
        assert_eq!(Request::parse(req.to_line().as_bytes()).unwrap(), req);
        let up = Request::new(Command::UplinkAdd { uplink: UplinkConfig::new("eth1") });
        assert_eq!(
            up.to_line(),
            r#"{"cmd":"uplink_add","uplink":{"name":"eth1","queues":null,"xdp_mode":"auto"},"version":1}"#
        );
        let min = Request::parse(br#"{"version":1,"cmd":"uplink_add","uplink":{"name":"eth1"}}"#).unwrap();
        assert_eq!(min, up);
        for cmd in [Command::UplinkDel { uplink: "eth1".into() }, Command::UplinkList] {
            let req = Request::new(cmd);
            assert_eq!(Request::parse(req.to_line().as_bytes()).unwrap(), req);
        }
        for bad in [
            &br#"{"version":1,"cmd":"port_set_remotes","bridge":"b","port":"p","remotes":["x"]}"#[..],
            br#"{"version":1,"cmd":"port_set_remotes","bridge":"b","port":"p"}"#,
            br#"{"version":1,"cmd":"uplink_add","uplink":{"name":"eth1","xdp_mode":"fast"}}"#,
            br#"{"version":1,"cmd":"uplink_del"}"#,
        ] {
            assert!(Request::parse(bad).is_err());
        }
        let assign = Request::new(Command::PmdAssign { port: "veth-a".into(), queue: 1, core: 3 });
        assert_eq!(assign.to_line(), r#"{"cmd":"pmd_assign","core":3,"port":"veth-a","queue":1,"version":1}"#);
        assert_eq!(Request::parse(assign.to_line().as_bytes()).unwrap(), assign);
        for (cmd, line) in [(Command::FlowsShow, "flows_show"), (Command::FlowsFlush, "flows_flush")] {
            let req = Request::new(cmd);
            assert_eq!(req.to_line(), format!(r#"{{"cmd":"{line}","version":1}}"#));
            assert_eq!(Request::parse(req.to_line().as_bytes()).unwrap(), req);
        }
        for bad in [
            &br#"{"version":1,"cmd":"pmd_assign","port":"p","queue":-1,"core":1}"#[..],
            br#"{"version":1,"cmd":"pmd_assign","port":"p","queue":4294967296,"core":1}"#,
            br#"{"version":1,"cmd":"pmd_assign","port":"p","queue":0}"#,
            br#"{"version":1,"cmd":"pmd_assign","port":"p","queue":0,"core":"1"}"#,
        ] {
            assert!(Request::parse(bad).is_err());
        }
        let mut dup = UplinkConfig::new("eth1");
        dup.pmd = vec![(0, 1), (1, 2), (0, 3)];
        assert_eq!(check_uplink(&dup).unwrap_err(), "uplink \"eth1\": queue 0 is assigned to a polling thread twice");
        dup.pmd.pop();
        assert!(check_uplink(&dup).is_ok());
        // An older rvsd's show result (no uplinks) still decodes.
        let old: ShowResult = serde_json::from_str(r#"{"bridges":[],"threads":[]}"#).unwrap();
        assert!(old.uplinks.is_empty());
    }

    #[test]
    fn vxlan_rules() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert!(check_vni(0).is_ok());
        assert!(check_vni(MAX_VNI).is_ok());
        assert_eq!(check_vni(16_777_216).unwrap_err(), "invalid VNI 16777216 (must be 0..=16777215)");
        assert_eq!(parse_vni("16777216").unwrap_err(), "invalid VNI 16777216 (must be 0..=16777215)");
        assert_eq!(parse_vni("99999999999").unwrap_err(), "invalid VNI 99999999999 (must be 0..=16777215)");
        assert!(parse_vni("-1").is_err());
        assert!(parse_vni("x").is_err());
        assert_eq!(parse_vni(" 42 ").unwrap(), 42);
        assert_eq!(parse_ip("remote", "2001:db8::1").unwrap(), ip("2001:db8::1"));
        assert_eq!(
            parse_ip("remote", "198.18.1").unwrap_err(),
            "invalid remote address \"198.18.1\" (must be an IPv4 or IPv6 address)"
        );
        assert!(check_vtep_addr("local", ip("::")).is_err());
        assert!(check_vtep_addr("local", ip("224.0.0.1")).is_err());
        assert!(check_vtep_addr("local", ip("198.18.1.1")).is_ok());
        assert!(check_remote_list(&[ip("10.0.0.1"), ip("::1")]).unwrap_err().contains("different address families"));
        assert!(check_remote_list(&[]).is_ok());
        assert!(check_remotes(ip("10.0.0.1"), &[ip("10.0.0.2"), ip("10.0.0.3")]).is_ok());
        assert_eq!(check_udp_port(0).unwrap_err(), "invalid UDP port 0 (must be 1..=65535)");
        assert_eq!(check_udp_port(65536).unwrap_err(), "invalid UDP port 65536 (must be 1..=65535)");
        assert_eq!(check_udp_port(65535).unwrap(), 65535);
        assert_eq!(check_ttl(256).unwrap_err(), "invalid TTL 256 (must be 1..=255)");
        assert_eq!(check_ttl(1).unwrap(), 1);
        assert!(check_uplink(&UplinkConfig::new("eth1")).is_ok());
        assert!(check_uplink(&UplinkConfig { queues: Some(1025), ..UplinkConfig::new("eth1") }).is_err());
    }

    #[test]
    fn bad_requests_are_one_line_errors() {
        for bad in [
            &b"garbage"[..],
            b"[1,2]",
            b"{\"cmd\":\"ping\"}",
            b"{\"version\":1,\"cmd\":\"nope\"}",
            b"{\"version\":1,\"cmd\":\"bridge_add\"}",
            b"{\"version\":1,\"cmd\":\"bridge_add\",\"bridge\":\"b\",\"typo\":1}",
            b"{\"version\":1,\"cmd\":\"fdb_add\",\"bridge\":\"b\",\"mac\":\"x\",\"vlan\":99999,\"port\":\"p\"}",
            b"\xff\xfe",
        ] {
            let e = Request::parse(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        let e = Request::parse(br#"{"version":2,"cmd":"ping"}"#).unwrap_err();
        assert_eq!(e, "unsupported protocol version 2 (this rvsd speaks protocol version 1)");
    }

    #[test]
    fn reply_shapes() {
        let ok = Reply::ok(Value::Null).to_line();
        assert_eq!(ok, r#"{"version":1,"ok":true,"result":null}"#);
        let err = Reply::err("a\nb").to_line();
        assert_eq!(err, r#"{"version":1,"ok":false,"error":"a b"}"#);
        let back: Reply = serde_json::from_str(&ok).unwrap();
        assert_eq!(back.into_result().unwrap(), Value::Null);
    }

    #[test]
    fn argument_rules() {
        assert!(check_name("port", "veth-a").is_ok());
        assert!(check_name("port", "").is_err());
        assert!(check_name("port", "0123456789abcdef").is_err());
        assert!(check_name("port", "a/b").is_err());
        assert!(check_name("port", "a b").is_err());
        assert!(check_name("port", "a\0b").is_err());
        assert_eq!(check_vlan(4095).unwrap_err(), "invalid VLAN 4095 (must be 1..=4094)");
        assert!(check_vlan(0).is_err());
        assert_eq!(parse_vlan_list("20,10,10,30-32").unwrap(), vec![10, 20, 30, 31, 32]);
        assert!(parse_vlan_list("10,x").is_err());
        assert!(parse_vlan_list("10,").is_err());
        assert!(parse_vlan_list("").is_err());
        assert!(parse_vlan_list("5-3").is_err());
        assert!(parse_vlan_list("0").is_err());
        assert!(parse_vlan_list("70000").is_err());
        assert!(parse_mac("02:00:00:00:00:01", true).is_ok());
        assert!(parse_mac("01:00:5e:00:00:01", true).is_err());
        assert!(parse_mac("00:00:00:00:00:00", true).is_err());
        assert!(parse_mac("01:00:5e:00:00:01", false).is_ok());
        assert!(parse_mac("zz", false).is_err());
    }
}
