//! The container's port on its rvs bridge, through rvsd's control socket.

use std::path::Path;

use rvs_proto::client;
use rvs_proto::config::{PortConfig, PortOwner};
use rvs_proto::{BridgeShow, Command, ErrorKind, Refusal, Request, ShowResult};
use serde_json::Value;

use crate::config::{Env, NetConf, PortKind};
use crate::error::{code, CniError};

/// Sends `cmd`; an unreachable rvsd is code 100, a refusal is returned as
/// such for the caller to judge.
fn ask(socket: &Path, cmd: Command) -> Result<Result<Value, Refusal>, CniError> {
    let reply = client::request(socket, &Request::new(cmd)).map_err(|e| CniError::new(code::RVSD_UNREACHABLE, e))?;
    Ok(reply.into_outcome())
}

/// The port rvsd gets for the attachment: the veth's host end `host`
/// (AF_XDP), or a tap rvsd makes as `CNI_IFNAME` inside the container's
/// namespace (named `host` in rvs). Tagged with the container, so
/// `rvsctl show` tells whose it is and rvsd removes it once it is gone.
pub fn port_config(conf: &NetConf, env: &Env, host: &str) -> PortConfig {
    let mut port = match conf.port_type {
        PortKind::Afxdp => PortConfig::afxdp(host, conf.vlan.clone()),
        PortKind::Tap => PortConfig {
            netns: env.netns.as_ref().map(|p| p.display().to_string()),
            ifname: Some(env.ifname.clone()),
            ..PortConfig::tap(host, conf.vlan.clone())
        },
    };
    port.fast_path = conf.fast_path;
    port.owner = Some(PortOwner {
        container: env.container_id.clone(),
        ifname: env.ifname.clone(),
        network: conf.network.clone(),
    });
    port
}

/// Adds `port` to the configured bridge.
pub fn add_port(conf: &NetConf, port: PortConfig) -> Result<(), CniError> {
    let name = port.name.clone();
    ask(&conf.socket, Command::PortAdd { bridge: conf.bridge.clone(), port })?.map(drop).map_err(|r| {
        CniError::new(code::RVSD_REFUSED, format!("rvsd refused port {name} on bridge {}: {r}", conf.bridge))
    })
}

/// Binds the container's addresses to its MAC on the bridge, owned by its
/// port `host`: rvs answers ARP and neighbour solicitations for them
/// (here and, through the cluster, on other nodes) and removes the
/// bindings with the port. An address already bound to this MAC is fine.
pub fn bind(conf: &NetConf, host: &str, ips: &[std::net::IpAddr], mac: &str) -> Result<(), CniError> {
    let vlan = match conf.vlan {
        rvs_proto::config::PortVlan::Access { vlan } => vlan,
        rvs_proto::config::PortVlan::Trunk { .. } => return Ok(()),
    };
    for ip in ips {
        let cmd = Command::NeighAdd {
            bridge: conf.bridge.clone(),
            ip: ip.to_string(),
            mac: mac.to_string(),
            vlan,
            port: Some(host.to_string()),
        };
        match ask(&conf.socket, cmd)? {
            Ok(_) | Err(Refusal { kind: Some(ErrorKind::Exists), .. }) => {}
            Err(r) => {
                return Err(CniError::new(
                    code::RVSD_REFUSED,
                    format!("rvsd refused to bind {ip} to {mac} on bridge {}: {r}", conf.bridge),
                ))
            }
        }
    }
    Ok(())
}

/// Removes port `host` from the bridge; a port (or bridge) already gone
/// is success, as `rvsctl port del --if-exists`.
pub fn del_port(conf: &NetConf, host: &str) -> Result<(), CniError> {
    let cmd = Command::PortDel { bridge: conf.bridge.clone(), port: host.to_string() };
    match ask(&conf.socket, cmd)? {
        Ok(_) => Ok(()),
        Err(Refusal { kind: Some(ErrorKind::NotFound), .. }) => Ok(()),
        Err(r) => Err(CniError::new(
            code::RVSD_REFUSED,
            format!("rvsd refused to remove port {host} from bridge {}: {r}", conf.bridge),
        )),
    }
}

/// The bridge as rvsd shows it; an unknown bridge is refused (101).
pub fn bridge(conf: &NetConf) -> Result<BridgeShow, CniError> {
    let shown = ask(&conf.socket, Command::Show)?
        .map_err(|r| CniError::new(code::RVSD_REFUSED, format!("rvsd refused show: {r}")))?;
    let shown: ShowResult = serde_json::from_value(shown)
        .map_err(|e| CniError::new(code::RVSD_REFUSED, format!("rvsd's show is not understood: {e}")))?;
    shown
        .bridges
        .into_iter()
        .find(|b| b.name == conf.bridge)
        .ok_or_else(|| CniError::new(code::RVSD_REFUSED, format!("rvs has no bridge {}", conf.bridge)))
}

/// The MTU for a container on `bridge`: the configured one, else the
/// least inner MTU of the bridge's tunnels (so frames fit the underlay
/// without fragmenting), else 1500.
pub fn container_mtu(conf: &NetConf, bridge: &BridgeShow) -> u32 {
    let tunnels = bridge.ports.iter().filter_map(|p| p.status.inner_mtu).min();
    conf.mtu.or(tunnels).unwrap_or(1500)
}

/// An error if `host` is a port of `bridge` already: the container is
/// attached (the runtime must DEL first).
pub fn refuse_existing(bridge: &BridgeShow, host: &str) -> Result<(), CniError> {
    match bridge.ports.iter().any(|p| p.config.name == host) {
        false => Ok(()),
        true => Err(CniError::new(
            code::RVSD_REFUSED,
            format!(
                "port {host} exists on bridge {}: this container interface is attached already (DEL it first)",
                bridge.name
            ),
        )),
    }
}

/// CHECK of rvsd's side: `host` is a port of the bridge, in its VLAN.
pub fn check_port(conf: &NetConf, host: &str) -> Result<(), CniError> {
    let failed = |m: String| CniError::new(code::CHECK_FAILED, m);
    let bridge = bridge(conf).map_err(|e| if e.code == code::RVSD_REFUSED { failed(e.msg) } else { e })?;
    let port = bridge
        .ports
        .iter()
        .find(|p| p.config.name == host)
        .ok_or_else(|| failed(format!("{host} is not a port of bridge {}", conf.bridge)))?;
    if port.config.vlan != conf.vlan {
        return Err(failed(format!("port {host} is in {:?}, not {:?}", port.config.vlan, conf.vlan)));
    }
    Ok(())
}

/// The network's container ports on the bridge that GC must remove:
/// those whose attachment is not among `conf.valid_attachments`.
pub fn stale_ports(conf: &NetConf) -> Result<Vec<PortConfig>, CniError> {
    let bridge = bridge(conf)?;
    let valid =
        |o: &PortOwner| conf.valid_attachments.iter().any(|a| a.container_id == o.container && a.ifname == o.ifname);
    Ok(bridge
        .ports
        .into_iter()
        .map(|p| p.config)
        .filter(|p| p.owner.as_ref().is_some_and(|o| o.network == conf.network && !valid(o)))
        .collect())
}
