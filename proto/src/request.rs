//! Requests, replies and the results of the commands (see the crate's
//! documentation for the framing).

use crate::config::{IfAddr, PortConfig, StaticMac, UplinkConfig};
use crate::status::{PortStatus, ThreadInfo, UplinkStatus};
/// The MAC address type requests are checked with.
pub use rvs_dataplane::wire::MacAddr;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
/// One command and its arguments; the `cmd` field of a request names it.
// PortAdd carries a whole PortConfig; a command is decoded once per
// request and handled at once, so its size costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
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
        /// Gateway addresses: the bridge gets an internal port holding them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gateway: Vec<IfAddr>,
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
        /// New gateway addresses, replacing the old ones; empty: no
        /// gateway (the internal port goes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway: Option<Vec<IfAddr>>,
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
    /// One page of a bridge's FDB, ordered by VLAN then MAC: result
    /// `status::FdbPage`. A table of a million MACs would be a reply of
    /// about 100 MB: clients page through it instead.
    FdbShow {
        /// Bridge name.
        bridge: String,
        /// Start after this entry (absent: at the first).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<crate::status::FdbCursor>,
        /// Most entries in the page (default and most: `FDB_PAGE_MAX`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
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
    /// Adds or replaces a static IP-MAC binding: ARP requests and
    /// neighbour solicitations for `ip` in `vlan` are answered with `mac`,
    /// and the binding is published to the cluster. What rvs-cni's ADD
    /// calls. Saved in the bridge's configuration.
    NeighAdd {
        /// Bridge name.
        bridge: String,
        /// IPv4 or IPv6 unicast address.
        ip: String,
        /// Unicast MAC address.
        mac: String,
        /// VLAN (default 1).
        #[serde(default = "default_vlan")]
        vlan: u16,
        /// The port the binding belongs to (a container's): removed with
        /// it. None: it stays until `neigh del`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
    },
    /// Removes the binding of an address, static or learned.
    NeighDel {
        /// Bridge name.
        bridge: String,
        /// IPv4 or IPv6 address.
        ip: String,
        /// VLAN (default 1).
        #[serde(default = "default_vlan")]
        vlan: u16,
    },
    /// IP-MAC bindings, of one bridge if given: result `status::NeighList`.
    NeighShow {
        /// Only this bridge.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bridge: Option<String>,
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

fn default_vlan() -> u16 {
    crate::config::DEFAULT_VLAN
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
    /// What kind of failure, where automation may want to tell: adding
    /// what already exists, removing or changing what does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
}

/// A failure automation may want to tell apart (as `ovs-vsctl
/// --may-exist` and `--if-exists` do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The bridge, port or uplink to add already exists.
    Exists,
    /// The bridge, port or uplink named does not exist.
    NotFound,
}

/// A refused request: rvsd's message, and its kind if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What rvsd said.
    pub message: String,
    /// Exists or not found, where that is what it was.
    pub kind: Option<ErrorKind>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for Refusal {
    fn from(message: String) -> Refusal {
        Refusal { message, kind: None }
    }
}

impl Reply {
    /// A success carrying `result`.
    pub fn ok(result: Value) -> Reply {
        Reply { version: PROTO_VERSION, ok: true, result: Some(result), error: None, error_kind: None }
    }

    /// A failure; newlines in `msg` are folded so it stays one line.
    pub fn err(msg: impl Into<String>) -> Reply {
        let msg: String = msg.into();
        Reply {
            version: PROTO_VERSION,
            ok: false,
            result: None,
            error: Some(msg.replace(['\n', '\r'], " ")),
            error_kind: None,
        }
    }

    /// This failure, marked as of `kind`.
    pub fn with_kind(mut self, kind: ErrorKind) -> Reply {
        if !self.ok {
            self.error_kind = Some(kind);
        }
        self
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
        self.into_outcome().map_err(|r| r.message)
    }

    /// The result, or the refusal with its kind.
    pub fn into_outcome(self) -> Result<Value, Refusal> {
        if self.ok {
            Ok(self.result.unwrap_or(Value::Null))
        } else {
            Err(Refusal {
                message: self.error.unwrap_or_else(|| "rvsd reported an error without a message".to_string()),
                kind: self.error_kind,
            })
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
    /// Gateway addresses (absent from an older rvsd's answer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway: Vec<IfAddr>,
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
    /// Gateway addresses, held by the bridge's internal port (absent from
    /// an older rvsd's answer).
    #[serde(default)]
    pub gateway: Vec<IfAddr>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

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
    fn neigh_requests() {
        let add = Request::parse(
            br#"{"version":1,"cmd":"neigh_add","bridge":"br0","ip":"198.18.0.2","mac":"02:00:00:00:00:02"}"#,
        )
        .unwrap();
        assert_eq!(
            add.cmd,
            Command::NeighAdd {
                bridge: "br0".into(),
                ip: "198.18.0.2".into(),
                mac: "02:00:00:00:00:02".into(),
                vlan: 1,
                port: None,
            }
        );
        for cmd in [
            Command::NeighAdd {
                bridge: "b".into(),
                ip: "2001:2::1".into(),
                mac: "02:00:00:00:00:01".into(),
                vlan: 7,
                port: Some("rvs0123".into()),
            },
            Command::NeighDel { bridge: "b".into(), ip: "2001:2::1".into(), vlan: 7 },
            Command::NeighShow { bridge: None },
            Command::NeighShow { bridge: Some("b".into()) },
        ] {
            let req = Request::new(cmd);
            assert_eq!(Request::parse(req.to_line().as_bytes()).unwrap(), req);
        }
        assert!(Request::parse(br#"{"version":1,"cmd":"neigh_add","bridge":"b","ip":"198.18.0.2"}"#).is_err());
        for bad in
            ["", "x", "0.0.0.0", "224.0.0.1", "255.255.255.255", "127.0.0.1", "::", "ff02::1", "::1", "::ffff:1.2.3.4"]
        {
            assert!(parse_neigh_ip(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_neigh_ip("198.18.0.2").unwrap(), IpAddr::from([198, 18, 0, 2]));
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
    fn gateway_requests() {
        let line = br#"{"version":1,"cmd":"bridge_add","bridge":"br0","gateway":["198.18.0.1/24","2001:2::1/64"]}"#;
        let req = Request::parse(line).unwrap();
        let Command::BridgeAdd { gateway, .. } = &req.cmd else { panic!("{req:?}") };
        assert_eq!(gateway.iter().map(|g| g.to_string()).collect::<Vec<_>>(), ["198.18.0.1/24", "2001:2::1/64"]);
        assert_eq!(Request::parse(req.to_line().as_bytes()).unwrap(), req);
        let plain = Request::new(Command::BridgeAdd {
            bridge: "br0".into(),
            aging_secs: None,
            max_macs: None,
            gateway: vec![],
        });
        assert_eq!(plain.to_line(), r#"{"bridge":"br0","cmd":"bridge_add","version":1}"#);
        let none = Request::parse(br#"{"version":1,"cmd":"bridge_set","bridge":"br0","gateway":[]}"#).unwrap();
        assert_eq!(
            none.cmd,
            Command::BridgeSet { bridge: "br0".into(), aging_secs: None, max_macs: None, gateway: Some(vec![]) }
        );
        for bad in [
            &br#"{"version":1,"cmd":"bridge_add","bridge":"b","gateway":["198.18.0.1"]}"#[..],
            br#"{"version":1,"cmd":"bridge_add","bridge":"b","gateway":["198.18.0.0/24"]}"#,
            br#"{"version":1,"cmd":"bridge_set","bridge":"b","gateway":"198.18.0.1/24"}"#,
        ] {
            let e = Request::parse(bad).unwrap_err();
            assert!(e.starts_with("invalid request") && !e.contains('\n'), "{e}");
        }
        let twice: Vec<IfAddr> = vec!["198.18.0.1/24".parse().unwrap(), "198.18.0.1/16".parse().unwrap()];
        assert_eq!(check_gateway(&twice).unwrap_err(), "gateway address 198.18.0.1 given twice");
        let mut p = PortConfig::afxdp("p", Default::default());
        p.addresses = twice[..1].to_vec();
        assert!(check_port(&p).unwrap_err().contains("internal"));
        assert!(check_port(&PortConfig::internal("br0", twice[..1].to_vec())).is_ok());
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
}
