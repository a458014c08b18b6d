//! The command line: clap definitions and their translation to requests.
//!
//! Every argument is checked here with the same rules rvsd applies, so a
//! bad MAC, VLAN or name is refused before anything is sent.

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use rvs_proto::config::{FastPath, IfAddr, PortConfig, PortType, PortVlan, UplinkConfig, VxlanConfig, XdpMode};
use rvs_proto::{self as proto, CaptureDirection, Command, ErrorKind, ShowResult};
use std::net::IpAddr;
use std::path::PathBuf;

/// The exit codes, for `--help` and the man page.
pub const EXIT_STATUS: &str = "Exit status:
  0  success (also: --may-exist and it exists, --if-exists and it does not)
  1  rvsd refused the request or cannot be reached
  2  invalid arguments (nothing was sent)
  3  what was to be added already exists
  4  what was named does not exist";

/// Exit status when what was to be added already exists.
pub const EXIT_EXISTS: u8 = 3;
/// Exit status when what was named does not exist.
pub const EXIT_NOT_FOUND: u8 = 4;

/// Command-line interface of rvsctl.
#[derive(Debug, Parser)]
#[command(
    name = "rvsctl",
    version,
    about = "Control rvsd, the rvs userspace virtual switch",
    propagate_version = true,
    arg_required_else_help = true,
    after_help = EXIT_STATUS
)]
pub struct Cli {
    /// rvsd's control socket [default: $RVS_SOCKET, else /run/rvs/rvsd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print the raw JSON result instead of a table
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Add, delete, list or change bridges
    #[command(subcommand, arg_required_else_help = true)]
    Bridge(BridgeCmd),
    /// Add, delete or change ports
    #[command(subcommand, arg_required_else_help = true)]
    Port(PortCmd),
    /// Add, delete or list uplinks (underlay interfaces for VXLAN)
    #[command(subcommand, arg_required_else_help = true)]
    Uplink(UplinkCmd),
    /// Show uplinks, bridges, ports and polling threads
    Show,
    /// Show or change a bridge's MAC table
    #[command(subcommand, arg_required_else_help = true)]
    Fdb(FdbCmd),
    /// Show or change the IP-MAC bindings rvs answers ARP and ND from
    #[command(subcommand, arg_required_else_help = true)]
    Neigh(NeighCmd),
    /// Per-port packet and byte counters, and drops by reason
    #[command(after_help = "With --interval: per-second rates every SECS seconds until interrupted \
(with --json, one object per line).")]
    Stats {
        /// Only this port
        port: Option<String>,
        /// Print per-second rates every SECS seconds until interrupted
        #[arg(long, value_name = "SECS", value_parser = interval)]
        interval: Option<f64>,
    },
    /// Polling threads: load, flow cache, and which thread polls which queue
    #[command(subcommand, arg_required_else_help = true)]
    Pmd(PmdCmd),
    /// The polling threads' flow caches
    #[command(subcommand, arg_required_else_help = true)]
    Flows(FlowsCmd),
    /// Cluster membership through etcd (rvsd --etcd URL --node NAME)
    #[command(subcommand, arg_required_else_help = true)]
    Cluster(ClusterCmd),
    /// Show what the switch would do with a frame, step by step, without sending it
    #[command(after_help = TRACE_HELP)]
    Trace {
        /// Bridge name
        bridge: String,
        /// Port the frame comes in on (an uplink for a VXLAN frame)
        port: String,
        /// The frame: FIELD=VALUE,... or hex bytes (hex=... or bare)
        #[arg(value_parser = frame)]
        frame: Frame,
    },
    /// Write what a port receives and sends as a pcapng file, each frame
    /// marked inbound or outbound (-w - for stdout)
    #[command(after_help = "Example: rvsctl capture veth-a -w - | tcpdump -nr -\n\
tshark -r FILE -T fields -e frame.packet_flags_direction shows each frame's direction (0x1 in, 0x2 out).")]
    Capture {
        /// Port or uplink name
        #[arg(value_parser = port_name)]
        port: String,
        /// Which frames
        #[arg(long, value_enum, default_value = "both")]
        direction: DirectionArg,
        /// Stop after N frames [default: until interrupted]
        #[arg(long, short = 'c', value_name = "N", value_parser = count)]
        count: Option<u64>,
        /// Bytes kept of each frame [default: whole frames]
        #[arg(long, short = 's', value_name = "N", value_parser = snaplen)]
        snaplen: Option<u32>,
        /// The file to write, or - for stdout
        #[arg(short = 'w', value_name = "FILE")]
        write: PathBuf,
        /// File format: pcapng (with directions and the port's name) or
        /// classic pcap (no direction)
        #[arg(long, value_enum, default_value = "pcapng")]
        format: CaptureFormat,
    },
    /// Change rvsd's log filter at run time (not saved)
    #[command(after_help = "FILTER is a level (error, warn, info, debug, trace, off) or target=level pairs, \
e.g. warn,rvs_switch::datapath=debug. rvsd starts with --log-level, $RUST_LOG, or warnings plus one line per \
configuration change.")]
    LogLevel {
        /// The new filter
        #[arg(value_parser = log_filter)]
        filter: String,
    },
    /// Check that rvsd answers
    Ping,
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell)
    #[command(after_help = "Example: rvsctl completions bash > /usr/share/bash-completion/completions/rvsctl")]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print rvsctl's man page (roff), or write it and one page per subcommand to DIR
    #[command(
        after_help = "Examples: rvsctl man > rvsctl.1 && man ./rvsctl.1\n          rvsctl man --dir /usr/share/man/man1"
    )]
    Man {
        /// Write rvsctl.1 and rvsctl-SUBCOMMAND.1 pages here instead
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

impl Cli {
    /// For commands answered without rvsd (completions, man page): the
    /// bytes to print.
    pub fn local_output(&self) -> Option<Result<Vec<u8>, String>> {
        use clap::CommandFactory;
        let mut out = Vec::new();
        match &self.cmd {
            Cmd::Completions { shell } => {
                clap_complete::generate(*shell, &mut Cli::command(), "rvsctl", &mut out);
                Some(Ok(out))
            }
            Cmd::Man { dir: Some(dir) } => Some(
                clap_mangen::generate_to(Cli::command(), dir)
                    .map(|()| Vec::new())
                    .map_err(|e| format!("cannot write man pages to {}: {e}", dir.display())),
            ),
            Cmd::Man { dir: None } => Some(
                clap_mangen::Man::new(Cli::command())
                    .render(&mut out)
                    .map(|()| out)
                    .map_err(|e| format!("cannot render the man page: {e}")),
            ),
            _ => None,
        }
    }
}

fn log_filter(s: &str) -> Result<String, String> {
    rvs_proto::check_log_filter(s).map(|_| s.trim().to_string())
}

/// Capture directions, as typed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DirectionArg {
    /// Frames the port receives
    In,
    /// Frames the port sends
    Out,
    /// Both
    Both,
}

/// `capture --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CaptureFormat {
    /// pcapng: the port's name, nanosecond timestamps, each frame's direction
    Pcapng,
    /// Classic libpcap: no direction
    Pcap,
}

fn count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("invalid count {s:?} (must be a whole number of frames, at least 1)")),
    }
}

fn snaplen(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=proto::MAX_SNAPLEN).contains(&n) => Ok(n),
        _ => Err(format!("invalid snap length {s:?} (must be 1..={})", proto::MAX_SNAPLEN)),
    }
}

const TRACE_HELP: &str = "\
Frame fields: in_vlan, in_pcp, dl_src, dl_dst (both required), dl_type,
nw_src, nw_dst (IPv4 or IPv6), nw_proto, nw_ttl, tp_src, tp_dst.
Unset fields are zero; dl_type follows the addresses, nw_proto is UDP.
Examples:
  rvsctl trace br0 veth-a dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02
  rvsctl trace br0 trunk0 in_vlan=10,dl_src=02:00:00:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff
  rvsctl trace br0 veth-a hex=020000000002020000000001080045...";

/// A frame built from its description (a newtype, so clap takes it as one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(pub Vec<u8>);

fn frame(s: &str) -> Result<Frame, String> {
    rvs_proto::framedesc::parse(s).map(Frame)
}

/// `rvsctl cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// This node, its link to etcd, the other nodes and each tunnel's remotes
    Show,
}

/// `rvsctl bridge ...`
#[derive(Debug, Subcommand)]
pub enum BridgeCmd {
    /// Create a bridge
    Add {
        /// Bridge name
        #[arg(value_parser = bridge_name)]
        bridge: String,
        #[command(flatten)]
        settings: BridgeSettings,
        /// Succeed if the bridge already exists (its settings unchanged)
        #[arg(long)]
        may_exist: bool,
    },
    /// Delete a bridge and all its ports
    Del {
        /// Bridge name
        bridge: String,
        /// Succeed if there is no such bridge
        #[arg(long)]
        if_exists: bool,
    },
    /// List bridges
    List,
    /// Change a bridge's settings
    Set {
        /// Bridge name
        bridge: String,
        #[command(flatten)]
        settings: BridgeSettings,
        /// Remove the bridge's gateway (and its internal port)
        #[arg(long, conflicts_with = "gateway")]
        no_gateway: bool,
    },
}

/// Bridge settings.
#[derive(Debug, Args)]
pub struct BridgeSettings {
    /// Seconds a learned MAC lives without traffic [default: 300]
    #[arg(long = "aging", value_name = "SECS", value_parser = aging)]
    pub aging_secs: Option<u32>,
    /// Most MACs the bridge learns [default: 8192]
    #[arg(long, value_name = "N", value_parser = max_macs)]
    pub max_macs: Option<u32>,
    /// Gateway address, IPv4 or IPv6, once per address: the bridge gets an
    /// internal port in rvsd's namespace (a tap named after the bridge)
    /// holding them; `bridge set` replaces the whole list
    #[arg(long, value_name = "ADDR/PREFIX", value_parser = gateway_addr)]
    pub gateway: Vec<IfAddr>,
}

fn gateway_addr(s: &str) -> Result<IfAddr, String> {
    s.parse()
}

/// Port backends, as typed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TypeArg {
    /// AF_XDP sockets on an existing interface
    Afxdp,
    /// A tap device rvsd creates (or adopts)
    Tap,
    /// A VXLAN tunnel over an uplink
    Vxlan,
}

/// XDP attach modes, as typed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum XdpModeArg {
    /// Native where the driver has it, generic otherwise
    Auto,
    /// Native (driver) mode only
    Native,
    /// Generic (skb) mode only
    Generic,
}

/// Kernel executors, as typed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FastPathArg {
    /// tc for afxdp ports where the kernel has tcx, else off
    Auto,
    /// Every frame through rvs's polling threads
    Off,
    /// The port's XDP program forwards frames to known MACs on other AF_XDP ports
    Xdp,
    /// A tc ingress program forwards them as skbs, GSO kept (for TCP-heavy hosts)
    Tc,
}

/// `rvsctl port ...`
#[derive(Debug, Subcommand)]
pub enum PortCmd {
    /// Add a port to a bridge
    Add(PortAddArgs),
    /// Remove a port from a bridge
    Del {
        /// Bridge name
        bridge: String,
        /// Port name
        port: String,
        /// Succeed if there is no such port
        #[arg(long)]
        if_exists: bool,
    },
    /// Change a port: replace a vxlan port's remote VTEPs, live
    Set(PortSetArgs),
    /// Add or remove one remote VTEP of a vxlan port
    #[command(subcommand, arg_required_else_help = true)]
    Remote(RemoteCmd),
}

/// `rvsctl port set` arguments.
#[derive(Debug, Args)]
pub struct PortSetArgs {
    /// Bridge name
    pub bridge: String,
    /// Port name (a vxlan port)
    pub name: String,
    /// The new remote VTEP list (repeat for each; replaces the old list)
    #[arg(long = "remote", value_name = "IP", value_parser = remote_ip, action = ArgAction::Append)]
    pub remotes: Vec<IpAddr>,
    /// Make the remote VTEP list empty
    #[arg(long, conflicts_with = "remotes")]
    pub no_remotes: bool,
}

/// `rvsctl port remote ...`
#[derive(Debug, Subcommand)]
pub enum RemoteCmd {
    /// Add a remote VTEP to a vxlan port
    Add {
        /// Bridge name
        bridge: String,
        /// Port name (a vxlan port)
        port: String,
        /// Remote VTEP address
        #[arg(value_parser = remote_ip)]
        ip: IpAddr,
    },
    /// Remove a remote VTEP from a vxlan port
    Del {
        /// Bridge name
        bridge: String,
        /// Port name (a vxlan port)
        port: String,
        /// Remote VTEP address
        #[arg(value_parser = any_ip)]
        ip: IpAddr,
    },
}

/// `rvsctl uplink ...`
#[derive(Debug, Subcommand)]
pub enum UplinkCmd {
    /// Take VXLAN traffic for rvs's VTEPs from an interface (the host keeps the rest)
    Add {
        /// Interface name
        #[arg(value_parser = uplink_name)]
        iface: String,
        /// Number of queues [default: all rx queues]
        #[arg(long, value_name = "N", value_parser = queues)]
        queues: Option<u32>,
        /// XDP attach mode
        #[arg(long, value_enum, value_name = "MODE")]
        xdp_mode: Option<XdpModeArg>,
        /// Succeed if the interface is already an uplink (or a port)
        #[arg(long)]
        may_exist: bool,
    },
    /// Stop using an interface as an uplink
    Del {
        /// Interface name
        iface: String,
        /// Succeed if there is no such uplink
        #[arg(long)]
        if_exists: bool,
    },
    /// List uplinks
    List,
}

/// `rvsctl port add` arguments.
#[derive(Debug, Args)]
pub struct PortAddArgs {
    /// Bridge name
    pub bridge: String,
    /// Interface name (the tap's name for tap ports)
    #[arg(value_parser = port_name)]
    pub name: String,
    /// Port backend
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: TypeArg,
    /// Access port in this VLAN [default: 1]
    #[arg(long, value_name = "N", value_parser = vlan, conflicts_with = "trunk")]
    pub vlan: Option<u16>,
    /// Trunk port carrying these VLANs tagged, e.g. 10,20,30-39
    #[arg(long, value_name = "LIST", value_parser = vlan_list)]
    pub trunk: Option<VlanList>,
    /// Trunk: VLAN of untagged frames
    #[arg(long, value_name = "N", value_parser = vlan, requires = "trunk")]
    pub native_vlan: Option<u16>,
    /// AF_XDP: number of queues [default: all rx queues]
    #[arg(long, value_name = "N")]
    pub queues: Option<u32>,
    /// AF_XDP: attach mode
    #[arg(long, value_enum, value_name = "MODE")]
    pub xdp_mode: Option<XdpModeArg>,
    /// AF_XDP: kernel executor of frames to known MACs [default: auto: tc];
    /// VXLAN: xdp (the uplink decapsulates, senders encapsulate) or off
    /// [default: auto: xdp]
    #[arg(long, value_enum, value_name = "EXECUTOR")]
    pub fast_path: Option<FastPathArg>,
    /// Tap: network namespace to put the tap in: a name under
    /// /var/run/netns, or a namespace file's path (/proc/PID/ns/net)
    #[arg(long, value_name = "NS")]
    pub netns: Option<String>,
    /// Tap: the device's name, when not the port's (e.g. eth0 inside --netns)
    #[arg(long, value_name = "NAME")]
    pub ifname: Option<String>,
    /// VXLAN: network identifier, 0..=16777215
    #[arg(long, value_name = "N", value_parser = vni)]
    pub vni: Option<u32>,
    /// VXLAN: local VTEP address (an address of an uplink)
    #[arg(long, value_name = "IP", value_parser = local_ip)]
    pub local: Option<IpAddr>,
    /// VXLAN: remote VTEP (repeat for each; none: the cluster's, see rvsd --etcd)
    #[arg(long = "remote", value_name = "IP", value_parser = remote_ip, action = ArgAction::Append)]
    pub remotes: Vec<IpAddr>,
    /// VXLAN: UDP destination port [default: 4789]
    #[arg(long, value_name = "PORT", value_parser = dstport)]
    pub dstport: Option<u16>,
    /// VXLAN: TTL (IPv4) or hop limit (IPv6) of the outer header [default: 64]
    #[arg(long, value_name = "N", value_parser = ttl)]
    pub ttl: Option<u8>,
    /// At most N MACs learned on this port, so one port cannot take the
    /// bridge's whole limit [default: only the bridge's limit]
    #[arg(long, value_name = "N", value_parser = max_macs)]
    pub max_macs: Option<u32>,
    /// Succeed if a port (or uplink) of this name already exists (its
    /// settings unchanged)
    #[arg(long)]
    pub may_exist: bool,
}

/// `rvsctl fdb ...`
#[derive(Debug, Subcommand)]
pub enum FdbCmd {
    /// Show a bridge's MAC table
    Show {
        /// Bridge name
        bridge: String,
    },
    /// Add (or replace) a static entry
    Add {
        /// Bridge name
        bridge: String,
        /// Unicast MAC address
        #[arg(value_parser = unicast_mac)]
        mac: String,
        /// VLAN
        #[arg(long, value_name = "N", value_parser = vlan, default_value = "1")]
        vlan: u16,
        /// Port the MAC is behind
        #[arg(long, value_name = "NAME")]
        port: String,
    },
    /// Remove an entry, static or learned
    Del {
        /// Bridge name
        bridge: String,
        /// MAC address
        #[arg(value_parser = any_mac)]
        mac: String,
        /// VLAN
        #[arg(long, value_name = "N", value_parser = vlan, default_value = "1")]
        vlan: u16,
    },
    /// Remove learned entries (of one port if given)
    Flush {
        /// Bridge name
        bridge: String,
        /// Only entries learned on this port
        #[arg(long, value_name = "NAME")]
        port: Option<String>,
    },
}

/// `rvsctl neigh ...`
#[derive(Debug, Subcommand)]
pub enum NeighCmd {
    /// Show IP-MAC bindings: static, learned (from ARP/ND, with their age) and remote (from the cluster, with their node)
    Show {
        /// Only this bridge
        bridge: Option<String>,
    },
    /// Bind an address to a MAC: ARP requests and neighbour solicitations for it are answered by rvs (saved; published to the cluster)
    Add {
        /// Bridge name
        bridge: String,
        /// IPv4 or IPv6 unicast address
        #[arg(value_parser = neigh_ip)]
        ip: String,
        /// Unicast MAC address
        #[arg(value_parser = unicast_mac)]
        mac: String,
        /// VLAN
        #[arg(long, value_name = "N", value_parser = vlan, default_value = "1")]
        vlan: u16,
        /// The port the binding belongs to: removed with it
        #[arg(long, value_name = "PORT", value_parser = port_name)]
        port: Option<String>,
        /// Succeed if the address is already bound to this MAC
        #[arg(long)]
        may_exist: bool,
    },
    /// Remove the binding of an address, static or learned
    Del {
        /// Bridge name
        bridge: String,
        /// IPv4 or IPv6 address
        #[arg(value_parser = neigh_ip)]
        ip: String,
        /// VLAN
        #[arg(long, value_name = "N", value_parser = vlan, default_value = "1")]
        vlan: u16,
        /// Succeed if there is no such binding (or bridge)
        #[arg(long)]
        if_exists: bool,
    },
}

fn neigh_ip(s: &str) -> Result<String, String> {
    proto::parse_neigh_ip(s).map(|ip| ip.to_string())
}

/// `rvsctl pmd ...`
#[derive(Debug, Subcommand)]
pub enum PmdCmd {
    /// Per thread: core, rx queues, packets, cycles per packet, busy %, flow cache use
    Show,
    /// Move a receive queue to the polling thread on a core (kept across restarts)
    Assign {
        /// Port or uplink name
        #[arg(value_parser = port_name)]
        port: String,
        /// Receive queue id
        #[arg(value_parser = queue_id)]
        queue: u32,
        /// Core of the polling thread to poll it
        #[arg(value_parser = core_id)]
        core: usize,
    },
}

/// `rvsctl flows ...`
#[derive(Debug, Subcommand)]
pub enum FlowsCmd {
    /// Cached forwarding decisions of every polling thread
    Show,
    /// Empty every flow cache (frames take the full pipeline until it refills)
    Flush,
}

fn vlan(s: &str) -> Result<u16, String> {
    proto::parse_vlan(s)
}

/// A parsed trunk list (a newtype, so clap takes it as one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanList(pub Vec<u16>);

fn vlan_list(s: &str) -> Result<VlanList, String> {
    proto::parse_vlan_list(s).map(VlanList)
}

fn unicast_mac(s: &str) -> Result<String, String> {
    proto::parse_mac(s, true).map(|m| m.to_string())
}

fn any_mac(s: &str) -> Result<String, String> {
    proto::parse_mac(s, false).map(|m| m.to_string())
}

fn bridge_name(s: &str) -> Result<String, String> {
    proto::check_name("bridge", s).map(|()| s.to_string())
}

fn port_name(s: &str) -> Result<String, String> {
    proto::check_name("port", s).map(|()| s.to_string())
}

fn uplink_name(s: &str) -> Result<String, String> {
    proto::check_name("uplink", s).map(|()| s.to_string())
}

fn vni(s: &str) -> Result<u32, String> {
    proto::parse_vni(s)
}

fn local_ip(s: &str) -> Result<IpAddr, String> {
    let ip = proto::parse_ip("local", s)?;
    proto::check_vtep_addr("local", ip).map(|()| ip)
}

fn remote_ip(s: &str) -> Result<IpAddr, String> {
    let ip = proto::parse_ip("remote", s)?;
    proto::check_vtep_addr("remote", ip).map(|()| ip)
}

fn any_ip(s: &str) -> Result<IpAddr, String> {
    proto::parse_ip("remote", s)
}

fn dstport(s: &str) -> Result<u16, String> {
    let n = s.trim().parse().map_err(|_| format!("invalid UDP port {s:?} (must be 1..=65535)"))?;
    proto::check_udp_port(n)
}

fn ttl(s: &str) -> Result<u8, String> {
    let n = s.trim().parse().map_err(|_| format!("invalid TTL {s:?} (must be 1..=255)"))?;
    proto::check_ttl(n)
}

fn queues(s: &str) -> Result<u32, String> {
    let n = number(s)?;
    proto::check_queues(n).map(|()| n)
}

fn queue_id(s: &str) -> Result<u32, String> {
    s.trim().parse().map_err(|_| format!("invalid queue {s:?} (must be a whole number 0..={})", u32::MAX))
}

fn core_id(s: &str) -> Result<usize, String> {
    s.trim().parse().map_err(|_| format!("invalid core {s:?} (must be a whole number)"))
}

fn interval(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("invalid interval {s:?} (seconds, 0.1 to 3600)")),
    }
}

fn number(s: &str) -> Result<u32, String> {
    s.trim().parse().map_err(|_| format!("{s:?} is not a whole number"))
}

fn aging(s: &str) -> Result<u32, String> {
    let n = number(s)?;
    proto::check_aging(n).map(|()| n)
}

fn max_macs(s: &str) -> Result<u32, String> {
    let n = number(s)?;
    proto::check_max_macs(n).map(|()| n)
}

impl Cli {
    /// `stats --interval`: the port filter and the interval.
    pub fn stats_interval(&self) -> Option<(Option<String>, f64)> {
        match &self.cmd {
            Cmd::Stats { port, interval: Some(secs) } => Some((port.clone(), *secs)),
            _ => None,
        }
    }
}

/// What to send, and how to print the result.
#[derive(Debug)]
pub struct Plan {
    /// The command.
    pub cmd: Command,
    /// How the result is shown.
    pub view: View,
    /// When set, `cmd` is `show` and its result feeds this edit, whose
    /// `port_set_remotes` is the request that makes the change.
    pub remote_edit: Option<RemoteEdit>,
    /// For `capture`: where the pcap goes ("-" for stdout); the reply is
    /// followed by a stream of frames.
    pub capture_out: Option<(PathBuf, CaptureFormat)>,
    /// A refusal of this kind is a success (`--may-exist`, `--if-exists`).
    pub tolerate: Option<ErrorKind>,
}

/// `rvsctl port remote add|del`: one remote more or less, sent as the whole
/// new list with the list it was computed from, so rvsd refuses it if
/// another client changed the list in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEdit {
    /// Bridge name.
    pub bridge: String,
    /// Port name.
    pub port: String,
    /// Add (true) or remove (false).
    pub add: bool,
    /// The remote.
    pub ip: IpAddr,
}

impl RemoteEdit {
    /// The `port_set_remotes` request that makes the edit on what `show` returned.
    pub fn command(&self, show: &ShowResult) -> Result<Command, String> {
        let (b, p) = (&self.bridge, &self.port);
        let br = show.bridges.iter().find(|x| &x.name == b).ok_or_else(|| format!("unknown bridge {b:?}"))?;
        let port = br
            .ports
            .iter()
            .find(|x| &x.config.name == p)
            .ok_or_else(|| format!("unknown port {p:?} in bridge {b:?}"))?;
        let Some(v) = port.config.vxlan.as_ref().filter(|_| port.config.kind == PortType::Vxlan) else {
            return Err(format!("port {p:?} is not a vxlan port"));
        };
        let mut remotes = v.remotes.clone();
        let at = remotes.iter().position(|r| *r == self.ip);
        match (self.add, at) {
            (true, Some(_)) => return Err(format!("{} is already a remote of port {p:?}", self.ip)),
            (true, None) => remotes.push(self.ip),
            (false, Some(k)) => {
                remotes.remove(k);
            }
            (false, None) => return Err(format!("{} is not a remote of port {p:?}", self.ip)),
        }
        Ok(Command::PortSetRemotes {
            bridge: b.clone(),
            port: p.clone(),
            remotes,
            expect_remotes: Some(v.remotes.clone()),
        })
    }
}

/// How a result is printed for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Nothing on success.
    Quiet,
    /// Bridge table.
    BridgeList,
    /// Everything.
    Show,
    /// MAC table.
    Fdb,
    /// IP-MAC bindings.
    Neigh,
    /// Flush count.
    Flush,
    /// Port counters.
    Stats,
    /// Threads.
    Pmd,
    /// Flow cache entries.
    Flows,
    /// Health.
    Ping,
    /// Uplink table.
    Uplinks,
    /// Cluster membership.
    Cluster,
    /// A frame's way through the switch.
    Trace,
}

impl Cli {
    /// The refusal `--may-exist` or `--if-exists` turns into a success.
    fn tolerate(&self) -> Option<ErrorKind> {
        let (may_exist, if_exists) = match &self.cmd {
            Cmd::Bridge(BridgeCmd::Add { may_exist, .. }) | Cmd::Uplink(UplinkCmd::Add { may_exist, .. }) => {
                (*may_exist, false)
            }
            Cmd::Port(PortCmd::Add(a)) => (a.may_exist, false),
            Cmd::Neigh(NeighCmd::Add { may_exist, .. }) => (*may_exist, false),
            Cmd::Bridge(BridgeCmd::Del { if_exists, .. })
            | Cmd::Neigh(NeighCmd::Del { if_exists, .. })
            | Cmd::Port(PortCmd::Del { if_exists, .. })
            | Cmd::Uplink(UplinkCmd::Del { if_exists, .. }) => (false, *if_exists),
            _ => (false, false),
        };
        match (may_exist, if_exists) {
            (true, _) => Some(ErrorKind::Exists),
            (_, true) => Some(ErrorKind::NotFound),
            _ => None,
        }
    }

    /// Checks what clap cannot and builds the request; errors are usage errors.
    pub fn plan(&self) -> Result<Plan, String> {
        let mut remote_edit = None;
        let mut capture_out = None;
        let tolerate = self.tolerate();
        let (cmd, view) = match &self.cmd {
            Cmd::Bridge(BridgeCmd::Add { bridge, settings, .. }) => (
                Command::BridgeAdd {
                    bridge: bridge.clone(),
                    aging_secs: settings.aging_secs,
                    max_macs: settings.max_macs,
                    gateway: {
                        proto::check_gateway(&settings.gateway)?;
                        settings.gateway.clone()
                    },
                },
                View::Quiet,
            ),
            Cmd::Bridge(BridgeCmd::Del { bridge, .. }) => (Command::BridgeDel { bridge: bridge.clone() }, View::Quiet),
            Cmd::Bridge(BridgeCmd::List) => (Command::BridgeList, View::BridgeList),
            Cmd::Bridge(BridgeCmd::Set { bridge, settings, no_gateway }) => {
                let gateway = match (*no_gateway, settings.gateway.is_empty()) {
                    (true, _) => Some(Vec::new()),
                    (false, true) => None,
                    (false, false) => {
                        proto::check_gateway(&settings.gateway)?;
                        Some(settings.gateway.clone())
                    }
                };
                if settings.aging_secs.is_none() && settings.max_macs.is_none() && gateway.is_none() {
                    return Err("nothing to change: give --aging, --max-macs, --gateway ADDR/PREFIX or --no-gateway"
                        .to_string());
                }
                (
                    Command::BridgeSet {
                        bridge: bridge.clone(),
                        aging_secs: settings.aging_secs,
                        max_macs: settings.max_macs,
                        gateway,
                    },
                    View::Quiet,
                )
            }
            Cmd::Port(PortCmd::Add(a)) => {
                (Command::PortAdd { bridge: a.bridge.clone(), port: a.port_config()? }, View::Quiet)
            }
            Cmd::Port(PortCmd::Del { bridge, port, .. }) => {
                (Command::PortDel { bridge: bridge.clone(), port: port.clone() }, View::Quiet)
            }
            Cmd::Port(PortCmd::Set(a)) => {
                if a.remotes.is_empty() && !a.no_remotes {
                    return Err("nothing to change: give --remote IP (once per remote) or --no-remotes".to_string());
                }
                proto::check_remote_list(&a.remotes)?;
                (
                    Command::PortSetRemotes {
                        bridge: a.bridge.clone(),
                        port: a.name.clone(),
                        remotes: a.remotes.clone(),
                        expect_remotes: None,
                    },
                    View::Quiet,
                )
            }
            Cmd::Port(PortCmd::Remote(r)) => {
                let (bridge, port, add, ip) = match r {
                    RemoteCmd::Add { bridge, port, ip } => (bridge, port, true, ip),
                    RemoteCmd::Del { bridge, port, ip } => (bridge, port, false, ip),
                };
                remote_edit = Some(RemoteEdit { bridge: bridge.clone(), port: port.clone(), add, ip: *ip });
                (Command::Show, View::Quiet)
            }
            Cmd::Uplink(UplinkCmd::Add { iface, queues, xdp_mode, .. }) => {
                let uplink = UplinkConfig {
                    name: iface.clone(),
                    queues: *queues,
                    xdp_mode: xdp_mode_of(*xdp_mode),
                    pmd: Vec::new(),
                };
                proto::check_uplink(&uplink)?;
                (Command::UplinkAdd { uplink }, View::Quiet)
            }
            Cmd::Uplink(UplinkCmd::Del { iface, .. }) => (Command::UplinkDel { uplink: iface.clone() }, View::Quiet),
            Cmd::Uplink(UplinkCmd::List) => (Command::UplinkList, View::Uplinks),
            Cmd::Show => (Command::Show, View::Show),
            Cmd::Fdb(FdbCmd::Show { bridge }) => {
                (Command::FdbShow { bridge: bridge.clone(), after: None, limit: None }, View::Fdb)
            }
            Cmd::Fdb(FdbCmd::Add { bridge, mac, vlan, port }) => (
                Command::FdbAdd { bridge: bridge.clone(), mac: mac.clone(), vlan: *vlan, port: port.clone() },
                View::Quiet,
            ),
            Cmd::Fdb(FdbCmd::Del { bridge, mac, vlan }) => {
                (Command::FdbDel { bridge: bridge.clone(), mac: mac.clone(), vlan: *vlan }, View::Quiet)
            }
            Cmd::Fdb(FdbCmd::Flush { bridge, port }) => {
                (Command::FdbFlush { bridge: bridge.clone(), port: port.clone() }, View::Flush)
            }
            Cmd::Neigh(NeighCmd::Show { bridge }) => (Command::NeighShow { bridge: bridge.clone() }, View::Neigh),
            Cmd::Neigh(NeighCmd::Add { bridge, ip, mac, vlan, port, .. }) => (
                Command::NeighAdd {
                    bridge: bridge.clone(),
                    ip: ip.clone(),
                    mac: mac.clone(),
                    vlan: *vlan,
                    port: port.clone(),
                },
                View::Quiet,
            ),
            Cmd::Neigh(NeighCmd::Del { bridge, ip, vlan, .. }) => {
                (Command::NeighDel { bridge: bridge.clone(), ip: ip.clone(), vlan: *vlan }, View::Quiet)
            }
            Cmd::Stats { port, .. } => (Command::Stats { port: port.clone() }, View::Stats),
            Cmd::Pmd(PmdCmd::Show) => (Command::PmdShow, View::Pmd),
            Cmd::Pmd(PmdCmd::Assign { port, queue, core }) => {
                (Command::PmdAssign { port: port.clone(), queue: *queue, core: *core }, View::Quiet)
            }
            Cmd::Flows(FlowsCmd::Show) => (Command::FlowsShow, View::Flows),
            Cmd::Flows(FlowsCmd::Flush) => (Command::FlowsFlush, View::Quiet),
            Cmd::Cluster(ClusterCmd::Show) => (Command::ClusterShow, View::Cluster),
            Cmd::Trace { bridge, port, frame } => (
                Command::Trace {
                    bridge: bridge.clone(),
                    port: port.clone(),
                    frame: rvs_proto::framedesc::to_hex(&frame.0),
                },
                View::Trace,
            ),
            Cmd::Capture { port, direction, count, snaplen, write, format } => {
                capture_out = Some((write.clone(), *format));
                let direction = match direction {
                    DirectionArg::In => CaptureDirection::In,
                    DirectionArg::Out => CaptureDirection::Out,
                    DirectionArg::Both => CaptureDirection::Both,
                };
                (Command::Capture { port: port.clone(), direction, count: *count, snaplen: *snaplen }, View::Quiet)
            }
            Cmd::LogLevel { filter } => (Command::LogLevel { filter: filter.clone() }, View::Quiet),
            Cmd::Ping => (Command::Ping, View::Ping),
            Cmd::Completions { .. } | Cmd::Man { .. } => return Err("this command does not talk to rvsd".to_string()),
        };
        Ok(Plan { cmd, view, remote_edit, capture_out, tolerate })
    }
}

fn xdp_mode_of(m: Option<XdpModeArg>) -> XdpMode {
    match m {
        None | Some(XdpModeArg::Auto) => XdpMode::Auto,
        Some(XdpModeArg::Native) => XdpMode::Native,
        Some(XdpModeArg::Generic) => XdpMode::Generic,
    }
}

impl PortAddArgs {
    /// The tunnel options given, by flag name.
    fn vxlan_flags(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (given, flag) in [
            (self.vni.is_some(), "--vni"),
            (self.local.is_some(), "--local"),
            (!self.remotes.is_empty(), "--remote"),
            (self.dstport.is_some(), "--dstport"),
            (self.ttl.is_some(), "--ttl"),
        ] {
            if given {
                v.push(flag);
            }
        }
        v
    }

    /// The tunnel of a vxlan port.
    fn vxlan_config(&self) -> Result<VxlanConfig, String> {
        let vni = self.vni.ok_or("a vxlan port needs --vni N")?;
        let local = self.local.ok_or("a vxlan port needs --local IP (an address of an uplink)")?;
        let mut v = VxlanConfig::new(vni, local, self.remotes.clone());
        if let Some(p) = self.dstport {
            v.dstport = p;
        }
        if let Some(t) = self.ttl {
            v.ttl = t;
        }
        Ok(v)
    }

    /// The port as rvsd stores it, checked by rvsd's own rules.
    pub fn port_config(&self) -> Result<PortConfig, String> {
        let kind = match self.kind {
            TypeArg::Afxdp => PortType::Afxdp,
            TypeArg::Tap => PortType::Tap,
            TypeArg::Vxlan => PortType::Vxlan,
        };
        if kind != PortType::Afxdp {
            if self.queues.is_some() {
                return Err("--queues applies to afxdp ports only".to_string());
            }
            if self.xdp_mode.is_some() {
                return Err("--xdp-mode applies to afxdp ports only".to_string());
            }
        }
        if kind == PortType::Tap && self.fast_path.is_some() {
            return Err("--fast-path applies to afxdp and vxlan ports only".to_string());
        }
        if kind != PortType::Tap && self.netns.is_some() {
            return Err("--netns applies to tap ports only".to_string());
        }
        if kind != PortType::Tap && self.ifname.is_some() {
            return Err("--ifname applies to tap ports only".to_string());
        }
        let vxlan = if kind == PortType::Vxlan {
            Some(self.vxlan_config()?)
        } else {
            if let Some(flag) = self.vxlan_flags().first() {
                return Err(format!("{flag} applies to vxlan ports only"));
            }
            None
        };
        let vlan = match (&self.trunk, self.vlan) {
            (Some(VlanList(vlans)), _) => PortVlan::Trunk { vlans: vlans.clone(), native: self.native_vlan },
            (None, v) => PortVlan::Access { vlan: v.unwrap_or(1) },
        };
        let port = PortConfig {
            name: self.name.clone(),
            kind,
            vlan,
            queues: self.queues,
            xdp_mode: xdp_mode_of(self.xdp_mode),
            fast_path: match self.fast_path {
                None | Some(FastPathArg::Auto) => FastPath::Auto,
                Some(FastPathArg::Off) => FastPath::Off,
                Some(FastPathArg::Xdp) => FastPath::Xdp,
                Some(FastPathArg::Tc) => FastPath::Tc,
            },
            netns: self.netns.clone(),
            vxlan,
            pmd: Vec::new(),
            max_macs: self.max_macs,
            tap_created: false,
            addresses: Vec::new(),
            ifname: self.ifname.clone(),
            owner: None,
        };
        proto::check_port(&port)?;
        Ok(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn plan(args: &[&str]) -> Result<Command, String> {
        let mut v = vec!["rvsctl"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v).map_err(|e| e.to_string())?;
        cli.plan().map(|p| p.cmd)
    }

    #[test]
    fn neigh_commands() {
        assert_eq!(
            plan(&["neigh", "add", "br0", "198.18.0.2", "02:00:00:00:00:0A", "--vlan", "10"]).unwrap(),
            Command::NeighAdd {
                bridge: "br0".into(),
                ip: "198.18.0.2".into(),
                mac: "02:00:00:00:00:0a".into(),
                vlan: 10,
                port: None,
            }
        );
        assert_eq!(
            plan(&["neigh", "del", "br0", "2001:2::2"]).unwrap(),
            Command::NeighDel { bridge: "br0".into(), ip: "2001:2::2".into(), vlan: 1 }
        );
        assert_eq!(plan(&["neigh", "show"]).unwrap(), Command::NeighShow { bridge: None });
        for bad in [
            &["neigh", "add", "br0", "198.18.0.300", "02:00:00:00:00:01"][..],
            &["neigh", "add", "br0", "198.18.0.2", "ff:ff:ff:ff:ff:ff"],
            &["neigh", "add", "br0", "198.18.0.2", "01:00:5e:00:00:01"],
            &["neigh", "add", "br0", "ff02::1", "02:00:00:00:00:01"],
            &["neigh", "add", "br0", "198.18.0.2", "02:00:00:00:00:01", "--vlan", "0"],
            &["neigh", "del", "br0", "nope"],
        ] {
            assert!(plan(bad).is_err(), "{bad:?} was accepted");
        }
        let tolerate = |args: &[&str]| {
            let mut v = vec!["rvsctl"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v).unwrap().plan().unwrap().tolerate
        };
        assert_eq!(
            tolerate(&["neigh", "add", "b", "198.18.0.2", "02:00:00:00:00:01", "--may-exist"]),
            Some(ErrorKind::Exists)
        );
        assert_eq!(tolerate(&["neigh", "del", "b", "198.18.0.2", "--if-exists"]), Some(ErrorKind::NotFound));
        let text = crate::output::render(
            View::Neigh,
            serde_json::json!({"tables": [], "entries": [
                {"bridge":"br0","vlan":1,"ip":"198.18.0.2","mac":"02:00:00:00:00:02","source":"static"},
                {"bridge":"br0","vlan":1,"ip":"198.18.0.3","mac":"02:00:00:00:00:03","source":"learned","age_secs":7},
                {"bridge":"br0","vlan":1,"ip":"2001:2::4","mac":"02:00:00:00:00:04","source":"remote","node":"h2"}
            ]}),
        )
        .unwrap();
        assert_eq!(
            text,
            "BRIDGE  VLAN  IP          MAC                SOURCE   AGE/NODE
br0     1     198.18.0.2  02:00:00:00:00:02  static   -
br0     1     198.18.0.3  02:00:00:00:00:03  learned  7
br0     1     2001:2::4   02:00:00:00:00:04  remote   h2
"
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn good_commands() {
        assert_eq!(
            plan(&["port", "add", "br0", "t0", "--type", "afxdp", "--trunk", "20,10", "--native-vlan", "5"]).unwrap(),
            Command::PortAdd {
                bridge: "br0".into(),
                port: PortConfig::afxdp("t0", PortVlan::Trunk { vlans: vec![10, 20], native: Some(5) })
            }
        );
        assert_eq!(
            plan(&["fdb", "add", "br0", "02:00:00:00:00:0A", "--port", "p"]).unwrap(),
            Command::FdbAdd { bridge: "br0".into(), mac: "02:00:00:00:00:0a".into(), vlan: 1, port: "p".into() }
        );
        assert!(plan(&["--json", "show"]).is_ok());
        assert!(plan(&["stats", "veth-a", "--socket", "/tmp/x"]).is_ok());
        assert!(plan(&["bridge", "add", "br0", "--aging", "60", "--max-macs", "100"]).is_ok());
        let gw: Vec<IfAddr> = vec!["198.18.0.1/24".parse().unwrap(), "2001:2::1/64".parse().unwrap()];
        assert_eq!(
            plan(&["bridge", "add", "br0", "--gateway", "198.18.0.1/24", "--gateway", "2001:2::1/64"]).unwrap(),
            Command::BridgeAdd { bridge: "br0".into(), aging_secs: None, max_macs: None, gateway: gw.clone() }
        );
        let set = |gateway| Command::BridgeSet { bridge: "br0".into(), aging_secs: None, max_macs: None, gateway };
        assert_eq!(plan(&["bridge", "set", "br0", "--gateway", "198.18.0.1/24"]).unwrap(), set(Some(gw[..1].to_vec())));
        assert_eq!(plan(&["bridge", "set", "br0", "--no-gateway"]).unwrap(), set(Some(vec![])));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn vxlan_and_uplink_commands() {
        let add = ["port", "add", "br0", "vx42", "--type", "vxlan", "--vni", "42", "--local", "198.18.1.1"];
        let mut args = add.to_vec();
        args.extend(["--remote", "198.18.1.2", "--remote", "198.18.1.3"]);
        assert_eq!(
            plan(&args).unwrap(),
            Command::PortAdd {
                bridge: "br0".into(),
                port: PortConfig::vxlan(
                    "vx42",
                    VxlanConfig::new(42, ip("198.18.1.1"), vec![ip("198.18.1.2"), ip("198.18.1.3")]),
                    PortVlan::Access { vlan: 1 }
                ),
            }
        );
        let mut args = add.to_vec();
        args.extend(["--remote", "198.18.1.2", "--dstport", "8472", "--ttl", "16", "--trunk", "10,20"]);
        let mut v = VxlanConfig::new(42, ip("198.18.1.1"), vec![ip("198.18.1.2")]);
        v.dstport = 8472;
        v.ttl = 16;
        assert_eq!(
            plan(&args).unwrap(),
            Command::PortAdd {
                bridge: "br0".into(),
                port: PortConfig::vxlan("vx42", v, PortVlan::Trunk { vlans: vec![10, 20], native: None }),
            }
        );
        let six = ["port", "add", "br0", "vx6", "--type", "vxlan", "--vni", "16777215", "--vlan", "10"];
        let mut args = six.to_vec();
        args.extend(["--local", "2001:db8::1", "--remote", "2001:db8::2"]);
        assert_eq!(
            plan(&args).unwrap(),
            Command::PortAdd {
                bridge: "br0".into(),
                port: PortConfig::vxlan(
                    "vx6",
                    VxlanConfig::new(16_777_215, ip("2001:db8::1"), vec![ip("2001:db8::2")]),
                    PortVlan::Access { vlan: 10 }
                ),
            }
        );

        let set = |remotes: Vec<IpAddr>| Command::PortSetRemotes {
            bridge: "br0".into(),
            port: "vx42".into(),
            remotes,
            expect_remotes: None,
        };
        assert_eq!(
            plan(&["port", "set", "br0", "vx42", "--remote", "198.18.1.2", "--remote", "198.18.1.4"]).unwrap(),
            set(vec![ip("198.18.1.2"), ip("198.18.1.4")])
        );
        assert_eq!(plan(&["port", "set", "br0", "vx42", "--no-remotes"]).unwrap(), set(vec![]));

        let cli = Cli::try_parse_from(["rvsctl", "port", "remote", "add", "br0", "vx42", "198.18.1.9"]).unwrap();
        let p = cli.plan().unwrap();
        assert_eq!(p.cmd, Command::Show);
        assert_eq!(
            p.remote_edit,
            Some(RemoteEdit { bridge: "br0".into(), port: "vx42".into(), add: true, ip: ip("198.18.1.9") })
        );
        let cli = Cli::try_parse_from(["rvsctl", "port", "remote", "del", "br0", "vx42", "2001:db8::2"]).unwrap();
        assert!(!cli.plan().unwrap().remote_edit.unwrap().add);

        let mut up = UplinkConfig::new("eth1");
        assert_eq!(plan(&["uplink", "add", "eth1"]).unwrap(), Command::UplinkAdd { uplink: up.clone() });
        up.queues = Some(2);
        up.xdp_mode = XdpMode::Native;
        assert_eq!(
            plan(&["uplink", "add", "eth1", "--queues", "2", "--xdp-mode", "native"]).unwrap(),
            Command::UplinkAdd { uplink: up }
        );
        assert_eq!(plan(&["uplink", "del", "eth1"]).unwrap(), Command::UplinkDel { uplink: "eth1".into() });
        assert_eq!(plan(&["uplink", "list"]).unwrap(), Command::UplinkList);
    }

    #[test]
    fn remote_edit_on_show() {
        use rvs_proto::status::PortStatus;
        use rvs_proto::{BridgeShow, PortShow};
        let status = |n: &str| PortStatus {
            name: n.into(),
            bridge: "br0".into(),
            kind: "vxlan".into(),
            state: "up".into(),
            xdp_mode: String::new(),
            fast_path: Default::default(),
            queues: vec![],
            learned_macs: 0,
            inner_mtu: None,
            remotes: vec![],
        };
        let vx = PortConfig::vxlan(
            "vx42",
            VxlanConfig::new(42, ip("198.18.1.1"), vec![ip("198.18.1.2")]),
            PortVlan::default(),
        );
        let mut tap = PortConfig::vxlan("tap0", VxlanConfig::new(1, ip("198.18.1.1"), vec![]), PortVlan::default());
        tap.kind = PortType::Tap;
        tap.vxlan = None;
        let show = ShowResult {
            uplinks: vec![],
            bridges: vec![BridgeShow {
                name: "br0".into(),
                aging_secs: 300,
                max_macs: 10,
                ports: vec![
                    PortShow { config: vx, status: status("vx42") },
                    PortShow { config: tap, status: status("tap0") },
                ],
                static_macs: vec![],
                gateway: vec![],
            }],
            threads: vec![],
        };
        let edit = |port: &str, add: bool, a: &str| {
            RemoteEdit { bridge: "br0".into(), port: port.into(), add, ip: ip(a) }.command(&show)
        };
        assert_eq!(
            edit("vx42", true, "198.18.1.3").unwrap(),
            Command::PortSetRemotes {
                bridge: "br0".into(),
                port: "vx42".into(),
                remotes: vec![ip("198.18.1.2"), ip("198.18.1.3")],
                expect_remotes: Some(vec![ip("198.18.1.2")]),
            }
        );
        assert_eq!(
            edit("vx42", false, "198.18.1.2").unwrap(),
            Command::PortSetRemotes {
                bridge: "br0".into(),
                port: "vx42".into(),
                remotes: vec![],
                expect_remotes: Some(vec![ip("198.18.1.2")]),
            }
        );
        assert_eq!(edit("vx42", true, "198.18.1.2").unwrap_err(), "198.18.1.2 is already a remote of port \"vx42\"");
        assert_eq!(edit("vx42", false, "198.18.1.9").unwrap_err(), "198.18.1.9 is not a remote of port \"vx42\"");
        assert_eq!(edit("tap0", true, "198.18.1.9").unwrap_err(), "port \"tap0\" is not a vxlan port");
        assert_eq!(edit("vx9", true, "198.18.1.9").unwrap_err(), "unknown port \"vx9\" in bridge \"br0\"");
        let e = RemoteEdit { bridge: "br9".into(), port: "vx42".into(), add: true, ip: ip("198.18.1.9") };
        assert_eq!(e.command(&show).unwrap_err(), "unknown bridge \"br9\"");
    }

    #[test]
    fn bad_vxlan_and_uplink_arguments() {
        let vx = ["port", "add", "br0", "vx1", "--type", "vxlan"];
        let with = |extra: &[&'static str]| {
            let mut v = vx.to_vec();
            v.extend_from_slice(extra);
            v
        };
        let e = plan(&with(&["--vni", "16777216", "--local", "198.18.1.1", "--remote", "198.18.1.2"])).unwrap_err();
        assert!(e.contains("invalid VNI 16777216 (must be 0..=16777215)"), "{e}");
        let e = plan(&with(&["--vni", "1", "--local", "198.18.1.1", "--remote", "2001:db8::2"])).unwrap_err();
        assert_eq!(e, "remote 2001:db8::2 and local 198.18.1.1 are of different address families");
        let e = plan(&with(&["--vni", "1", "--local", "198.18.1.1", "--remote", "198.18.1.1"])).unwrap_err();
        assert_eq!(e, "remote 198.18.1.1 is the local address");
        // No --remote: the remotes come from the cluster (rvsd --etcd).
        assert!(plan(&with(&["--vni", "1", "--local", "198.18.1.1"])).is_ok());
        let e = plan(&with(&["--vni", "1", "--remote", "198.18.1.2"])).unwrap_err();
        assert!(e.starts_with("a vxlan port needs --local"), "{e}");
        let e = plan(&with(&["--local", "198.18.1.1", "--remote", "198.18.1.2"])).unwrap_err();
        assert_eq!(e, "a vxlan port needs --vni N");
        let ok = ["--vni", "1", "--local", "198.18.1.1", "--remote", "198.18.1.2"];
        for extra in [
            &["--vni", "-1"][..],
            &["--vni", "x"],
            &["--local", "198.18.1"],
            &["--local", "0.0.0.0"],
            &["--remote", "fe80::1%eth0"],
            &["--remote", "239.1.1.1"],
            &["--remote", "255.255.255.255"],
            &["--remote", "198.18.1.2"],
            &["--remote", "198.18.1.3", "--remote", "2001:db8::3"],
            &["--dstport", "0"],
            &["--dstport", "65536"],
            &["--ttl", "0"],
            &["--ttl", "256"],
            &["--queues", "2"],
            &["--xdp-mode", "native"],
            &["--netns", "ns1"],
            &["--vlan", "4095"],
        ] {
            let mut args = vx.to_vec();
            args.extend_from_slice(&ok);
            args.extend_from_slice(extra);
            assert!(plan(&args).is_err(), "{args:?} was accepted");
        }
        for args in [
            &["port", "add", "br0", "p", "--type", "afxdp", "--vni", "1"][..],
            &["port", "add", "br0", "p", "--type", "tap", "--remote", "198.18.1.2"],
            &["port", "add", "br0", "p", "--type", "afxdp", "--local", "198.18.1.2"],
            &["port", "add", "br0", "p", "--type", "afxdp", "--dstport", "4789"],
            &["port", "set", "br0", "vx42"],
            &["port", "set", "br0", "vx42", "--remote", "198.18.1.2", "--no-remotes"],
            &["port", "set", "br0", "vx42", "--remote", "198.18.1.2", "--remote", "198.18.1.2"],
            &["port", "set", "br0", "vx42", "--remote", "198.18.1.2", "--remote", "::2"],
            &["port", "set", "br0", "vx42", "--remote", "nope"],
            &["port", "remote", "add", "br0", "vx42", "nope"],
            &["port", "remote", "add", "br0", "vx42", "224.0.0.1"],
            &["port", "remote", "add", "br0", "vx42"],
            &["port", "remote", "del", "br0", "vx42", "1.2.3"],
            &["uplink", "add", "eth1", "--queues", "0"],
            &["uplink", "add", "eth1", "--queues", "1025"],
            &["uplink", "add", "eth1", "--xdp-mode", "fast"],
            &["uplink", "add", "name-far-too-long"],
            &["uplink", "add"],
            &["uplink", "del"],
        ] {
            assert!(plan(args).is_err(), "{args:?} was accepted");
        }
        assert_eq!(
            plan(&["port", "add", "br0", "p", "--type", "afxdp", "--vni", "1", "--remote", "198.18.1.2"]).unwrap_err(),
            "--vni applies to vxlan ports only"
        );
    }

    #[test]
    fn pmd_and_flows_commands() {
        assert_eq!(plan(&["pmd", "show"]).unwrap(), Command::PmdShow);
        assert_eq!(
            plan(&["pmd", "assign", "veth-a", "3", "12"]).unwrap(),
            Command::PmdAssign { port: "veth-a".into(), queue: 3, core: 12 }
        );
        assert_eq!(
            plan(&["pmd", "assign", "eth1", "4294967295", "0"]).unwrap(),
            Command::PmdAssign { port: "eth1".into(), queue: u32::MAX, core: 0 }
        );
        assert_eq!(plan(&["flows", "show"]).unwrap(), Command::FlowsShow);
        assert_eq!(plan(&["flows", "flush"]).unwrap(), Command::FlowsFlush);
        let view = |args: &[&str]| {
            let mut v = vec!["rvsctl"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v).unwrap().plan().unwrap().view
        };
        assert_eq!(view(&["flows", "show"]), View::Flows);
        assert_eq!(view(&["flows", "flush"]), View::Quiet);
        assert_eq!(view(&["pmd", "assign", "p", "0", "1"]), View::Quiet);
        for args in [
            &["pmd", "assign", "veth-a", "x", "1"][..],
            &["pmd", "assign", "veth-a", "1", "y"],
            &["pmd", "assign", "veth-a", "-1", "1"],
            &["pmd", "assign", "veth-a", "1", "-1"],
            &["pmd", "assign", "veth-a", "4294967296", "1"],
            &["pmd", "assign", "veth-a", "1", "1.5"],
            &["pmd", "assign", "veth-a", "1", "99999999999999999999999"],
            &["pmd", "assign", "veth-a", "", "1"],
            &["pmd", "assign", "veth-a", "1"],
            &["pmd", "assign", "veth-a", "1", "2", "3"],
            &["pmd", "assign", "name-far-too-long", "0", "1"],
            &["pmd", "assign", "a/b", "0", "1"],
            &["flows", "show", "br0"],
            &["flows", "flush", "--port", "p"],
            &["flows"],
        ] {
            assert!(plan(args).is_err(), "{args:?} was accepted");
        }
        let e = plan(&["pmd", "assign", "veth-a", "x", "1"]).unwrap_err();
        assert!(e.contains("invalid queue \"x\" (must be a whole number 0..=4294967295)"), "{e}");
        let e = plan(&["pmd", "assign", "veth-a", "1", "y"]).unwrap_err();
        assert!(e.contains("invalid core \"y\" (must be a whole number)"), "{e}");
    }

    #[test]
    fn trace_command() {
        let c = plan(&["trace", "br0", "p1", "in_vlan=10,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02"]).unwrap();
        let Command::Trace { bridge, port, frame } = c else { panic!("{c:?}") };
        assert_eq!((bridge.as_str(), port.as_str()), ("br0", "p1"));
        assert!(frame.starts_with("02000000000202000000000181000"), "{frame}");
        assert_eq!(
            plan(&["trace", "br0", "p1", "hex=0102"]).unwrap(),
            Command::Trace { bridge: "br0".into(), port: "p1".into(), frame: "0102".into() }
        );
        let e = plan(&["trace", "br0", "p1", "dl_src=02:00:00:00:00:01,bogus=1"]).unwrap_err();
        assert!(e.contains("unknown field \"bogus\""), "{e}");
        assert!(plan(&["trace", "br0", "p1"]).is_err());
    }

    #[test]
    fn log_level_command() {
        assert_eq!(plan(&["log-level", "debug"]).unwrap(), Command::LogLevel { filter: "debug".into() });
        assert_eq!(
            plan(&["log-level", "warn,rvs_switch::datapath=trace"]).unwrap(),
            Command::LogLevel { filter: "warn,rvs_switch::datapath=trace".into() }
        );
        assert!(plan(&["log-level", "loud"]).unwrap_err().contains("invalid log filter"));
        assert!(plan(&["log-level"]).is_err());
    }

    #[test]
    fn capture_command() {
        let cli = Cli::try_parse_from(["rvsctl", "capture", "p1", "-w", "-"]).unwrap();
        let p = cli.plan().unwrap();
        assert_eq!(
            p.cmd,
            Command::Capture { port: "p1".into(), direction: CaptureDirection::Both, count: None, snaplen: None }
        );
        assert_eq!(p.capture_out, Some((PathBuf::from("-"), CaptureFormat::Pcapng)));
        assert_eq!(
            plan(&["capture", "p1", "--direction", "in", "--count", "5", "--snaplen", "64", "-w", "/tmp/x.pcap"])
                .unwrap(),
            Command::Capture { port: "p1".into(), direction: CaptureDirection::In, count: Some(5), snaplen: Some(64) }
        );
        for args in [
            &["capture", "p1"][..],
            &["capture", "-w", "-"],
            &["capture", "p1", "-w", "-", "--count", "0"],
            &["capture", "p1", "-w", "-", "--snaplen", "0"],
            &["capture", "p1", "-w", "-", "--snaplen", "65536"],
            &["capture", "p1", "-w", "-", "--direction", "sideways"],
        ] {
            assert!(plan(args).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn bad_arguments() {
        for args in [
            &["fdb", "add", "br0", "zz:00:00:00:00:01", "--port", "p"][..],
            &["fdb", "add", "br0", "01:00:5e:00:00:01", "--port", "p"],
            &["fdb", "add", "br0", "02:00:00:00:00:01", "--vlan", "0", "--port", "p"],
            &["fdb", "del", "br0", "02:00:00:00:00:01", "--vlan", "4095"],
            &["port", "add", "br0", "p", "--type", "afxdp", "--vlan", "0"],
            &["port", "add", "br0", "p", "--type", "afxdp", "--vlan", "4095"],
            &["port", "add", "br0", "p", "--type", "afxdp", "--trunk", "10,x"],
            &["port", "add", "br0", "p", "--type", "afxdp", "--trunk", "10", "--vlan", "3"],
            &["port", "add", "br0", "p", "--type", "afxdp", "--native-vlan", "3"],
            &["port", "add", "br0", "p", "--type", "afxdp", "--netns", "ns1"],
            &["port", "add", "br0", "p", "--type", "tap", "--queues", "2"],
            &["port", "add", "br0", "p", "--type", "vhost"],
            &["port", "add", "br0", "name-far-too-long", "--type", "tap"],
            &["bridge", "set", "br0"],
            &["bridge", "add", "br0", "--aging", "-1"],
            &["bridge", "add", "br0", "--gateway", "198.18.0.1"],
            &["bridge", "add", "br0", "--gateway", "198.18.0.1/33"],
            &["bridge", "add", "br0", "--gateway", "198.18.0.1/24", "--gateway", "198.18.0.1/16"],
            &["bridge", "set", "br0", "--gateway", "198.18.0.1/24", "--no-gateway"],
        ] {
            assert!(plan(args).is_err(), "{args:?} was accepted");
        }
    }
}
