//! The command line: clap definitions and their translation to requests.
//!
//! Every argument is checked here with the same rules rvsd applies, so a
//! bad MAC, VLAN or name is refused before anything is sent.

use clap::{Args, Parser, Subcommand, ValueEnum};
use rvs_switch::config::{PortConfig, PortType, PortVlan, XdpMode};
use rvs_switch::proto::{self, Command};
use std::path::PathBuf;

/// Command-line interface of rvsctl.
#[derive(Debug, Parser)]
#[command(
    name = "rvsctl",
    version,
    about = "Control rvsd, the rvs userspace virtual switch",
    propagate_version = true,
    arg_required_else_help = true
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
    /// Add or delete ports
    #[command(subcommand, arg_required_else_help = true)]
    Port(PortCmd),
    /// Show bridges, ports and polling threads
    Show,
    /// Show or change a bridge's MAC table
    #[command(subcommand, arg_required_else_help = true)]
    Fdb(FdbCmd),
    /// Per-port packet and byte counters, and drops by reason
    Stats {
        /// Only this port
        port: Option<String>,
    },
    /// Polling threads
    #[command(subcommand, arg_required_else_help = true)]
    Pmd(PmdCmd),
    /// Check that rvsd answers
    Ping,
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
    },
    /// Delete a bridge and all its ports
    Del {
        /// Bridge name
        bridge: String,
    },
    /// List bridges
    List,
    /// Change a bridge's settings
    Set {
        /// Bridge name
        bridge: String,
        #[command(flatten)]
        settings: BridgeSettings,
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
}

/// Port backends, as typed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TypeArg {
    /// AF_XDP sockets on an existing interface
    Afxdp,
    /// A tap device rvsd creates (or adopts)
    Tap,
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
    },
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
    /// Tap: network namespace (name under /var/run/netns) to put the tap in
    #[arg(long, value_name = "NS")]
    pub netns: Option<String>,
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

/// `rvsctl pmd ...`
#[derive(Debug, Subcommand)]
pub enum PmdCmd {
    /// Per thread: core, rx queues, packets, busy %
    Show,
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

/// What to send, and how to print the result.
#[derive(Debug)]
pub struct Plan {
    /// The command.
    pub cmd: Command,
    /// How the result is shown.
    pub view: View,
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
    /// Flush count.
    Flush,
    /// Port counters.
    Stats,
    /// Threads.
    Pmd,
    /// Health.
    Ping,
}

impl Cli {
    /// Checks what clap cannot and builds the request; errors are usage errors.
    pub fn plan(&self) -> Result<Plan, String> {
        let (cmd, view) = match &self.cmd {
            Cmd::Bridge(BridgeCmd::Add { bridge, settings }) => (
                Command::BridgeAdd {
                    bridge: bridge.clone(),
                    aging_secs: settings.aging_secs,
                    max_macs: settings.max_macs,
                },
                View::Quiet,
            ),
            Cmd::Bridge(BridgeCmd::Del { bridge }) => (Command::BridgeDel { bridge: bridge.clone() }, View::Quiet),
            Cmd::Bridge(BridgeCmd::List) => (Command::BridgeList, View::BridgeList),
            Cmd::Bridge(BridgeCmd::Set { bridge, settings }) => {
                if settings.aging_secs.is_none() && settings.max_macs.is_none() {
                    return Err("nothing to change: give --aging or --max-macs".to_string());
                }
                (
                    Command::BridgeSet {
                        bridge: bridge.clone(),
                        aging_secs: settings.aging_secs,
                        max_macs: settings.max_macs,
                    },
                    View::Quiet,
                )
            }
            Cmd::Port(PortCmd::Add(a)) => {
                (Command::PortAdd { bridge: a.bridge.clone(), port: a.port_config()? }, View::Quiet)
            }
            Cmd::Port(PortCmd::Del { bridge, port }) => {
                (Command::PortDel { bridge: bridge.clone(), port: port.clone() }, View::Quiet)
            }
            Cmd::Show => (Command::Show, View::Show),
            Cmd::Fdb(FdbCmd::Show { bridge }) => (Command::FdbShow { bridge: bridge.clone() }, View::Fdb),
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
            Cmd::Stats { port } => (Command::Stats { port: port.clone() }, View::Stats),
            Cmd::Pmd(PmdCmd::Show) => (Command::PmdShow, View::Pmd),
            Cmd::Ping => (Command::Ping, View::Ping),
        };
        Ok(Plan { cmd, view })
    }
}

impl PortAddArgs {
    /// The port as rvsd stores it, checked by rvsd's own rules.
    pub fn port_config(&self) -> Result<PortConfig, String> {
        let kind = match self.kind {
            TypeArg::Afxdp => PortType::Afxdp,
            TypeArg::Tap => PortType::Tap,
        };
        if kind == PortType::Tap {
            if self.queues.is_some() {
                return Err("--queues applies to afxdp ports only".to_string());
            }
            if self.xdp_mode.is_some() {
                return Err("--xdp-mode applies to afxdp ports only".to_string());
            }
        }
        if kind == PortType::Afxdp && self.netns.is_some() {
            return Err("--netns applies to tap ports only".to_string());
        }
        let vlan = match (&self.trunk, self.vlan) {
            (Some(VlanList(vlans)), _) => PortVlan::Trunk { vlans: vlans.clone(), native: self.native_vlan },
            (None, v) => PortVlan::Access { vlan: v.unwrap_or(1) },
        };
        let port = PortConfig {
            name: self.name.clone(),
            kind,
            vlan,
            queues: self.queues,
            xdp_mode: match self.xdp_mode {
                None | Some(XdpModeArg::Auto) => XdpMode::Auto,
                Some(XdpModeArg::Native) => XdpMode::Native,
                Some(XdpModeArg::Generic) => XdpMode::Generic,
            },
            netns: self.netns.clone(),
            vxlan: None,
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
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn good_commands() {
        assert_eq!(
            plan(&["port", "add", "br0", "t0", "--type", "afxdp", "--trunk", "20,10", "--native-vlan", "5"]).unwrap(),
            Command::PortAdd {
                bridge: "br0".into(),
                port: PortConfig {
                    name: "t0".into(),
                    kind: PortType::Afxdp,
                    vlan: PortVlan::Trunk { vlans: vec![10, 20], native: Some(5) },
                    queues: None,
                    xdp_mode: XdpMode::Auto,
                    netns: None,
                    vxlan: None,
                }
            }
        );
        assert_eq!(
            plan(&["fdb", "add", "br0", "02:00:00:00:00:0A", "--port", "p"]).unwrap(),
            Command::FdbAdd { bridge: "br0".into(), mac: "02:00:00:00:00:0a".into(), vlan: 1, port: "p".into() }
        );
        assert!(plan(&["--json", "show"]).is_ok());
        assert!(plan(&["stats", "veth-a", "--socket", "/tmp/x"]).is_ok());
        assert!(plan(&["bridge", "add", "br0", "--aging", "60", "--max-macs", "100"]).is_ok());
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
        ] {
            assert!(plan(args).is_err(), "{args:?} was accepted");
        }
    }
}
