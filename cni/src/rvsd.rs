//! The container's port on its rvs bridge, through rvsd's control socket.

use std::path::Path;

use rvs_proto::client;
use rvs_proto::config::PortConfig;
use rvs_proto::{BridgeShow, Command, ErrorKind, Refusal, Request, ShowResult};
use serde_json::Value;

use crate::config::NetConf;
use crate::error::{code, CniError};

/// Sends `cmd`; an unreachable rvsd is code 100, a refusal is returned as
/// such for the caller to judge.
fn ask(socket: &Path, cmd: Command) -> Result<Result<Value, Refusal>, CniError> {
    let reply = client::request(socket, &Request::new(cmd)).map_err(|e| CniError::new(code::RVSD_UNREACHABLE, e))?;
    Ok(reply.into_outcome())
}

/// Adds `host` to the configured bridge as an AF_XDP port.
pub fn add_port(conf: &NetConf, host: &str) -> Result<(), CniError> {
    let mut port = PortConfig::afxdp(host, conf.vlan.clone());
    port.fast_path = conf.fast_path;
    ask(&conf.socket, Command::PortAdd { bridge: conf.bridge.clone(), port })?.map(drop).map_err(|r| {
        CniError::new(code::RVSD_REFUSED, format!("rvsd refused port {host} on bridge {}: {r}", conf.bridge))
    })
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
fn show_bridge(conf: &NetConf) -> Result<BridgeShow, CniError> {
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

/// The MTU for a container on the bridge: the configured one, else the
/// least inner MTU of the bridge's tunnels (so frames fit the underlay
/// without fragmenting), else 1500. Fails early on an unknown bridge.
pub fn container_mtu(conf: &NetConf) -> Result<u32, CniError> {
    let bridge = show_bridge(conf)?;
    let tunnels = bridge.ports.iter().filter_map(|p| p.status.inner_mtu).min();
    Ok(conf.mtu.or(tunnels).unwrap_or(1500))
}

/// CHECK of rvsd's side: `host` is a port of the bridge, in its VLAN.
pub fn check_port(conf: &NetConf, host: &str) -> Result<(), CniError> {
    let failed = |m: String| CniError::new(code::CHECK_FAILED, m);
    let bridge = show_bridge(conf).map_err(|e| if e.code == code::RVSD_REFUSED { failed(e.msg) } else { e })?;
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
