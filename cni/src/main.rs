//! rvs-cni: the CNI plugin (spec 1.0.0 and 1.1.0, and 0.3.x/0.4.0
//! results) that attaches containers to rvs bridges.
//!
//! ADD makes a veth pair (the container's end named CNI_IFNAME inside
//! CNI_NETNS, the host's end `rvs` + a hash of the container id and
//! interface name) and adds the host end to the bridge through rvsd's
//! control socket as an AF_XDP port; or, with `"portType": "tap"`, has rvsd
//! make a tap named CNI_IFNAME inside the container (the port keeps the
//! hashed name). Either port is tagged with the container. ADD then
//! delegates IPAM to the plugin the config names, sets its addresses and
//! routes in the container, and binds the addresses to the container's MAC
//! in rvs (owned by the port), so that rvs answers ARP and ND for them. DEL undoes it and succeeds when any part is
//! gone already. CHECK verifies it against `prevResult`. STATUS says whether
//! rvsd and the bridge are there; GC removes the network's ports of
//! attachments the runtime no longer has. Errors are the spec's error
//! result on stdout, and exit 1.

use std::io::Read;

mod config;
mod error;
mod ipam;
mod link;
mod masq;
mod result;
mod rvsd;

use config::{Cmd, Env, NetConf, PortKind};
use error::{code, CniError};
use result::CniResult;
use rvs_proto::config::IfAddr;

/// The largest configuration read from stdin: real ones are a few KiB.
const MAX_CONF_LEN: u64 = 1 << 20;

fn main() {
    // Runtimes pass no arguments; this is for packaging and people.
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("rvs-cni {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let mut stdin = Vec::new();
    let read = std::io::stdin().take(MAX_CONF_LEN + 1).read_to_end(&mut stdin);
    let version =
        config::version_of(&stdin).filter(|v| config::check_version(v).is_ok()).unwrap_or_else(|| "1.0.0".to_string());
    let outcome = match read {
        Err(e) => Err(CniError::new(code::IO, format!("reading the network configuration: {e}"))),
        Ok(_) if stdin.len() as u64 > MAX_CONF_LEN => {
            Err(CniError::new(code::DECODE, format!("network configuration over {MAX_CONF_LEN} bytes")))
        }
        Ok(_) => config::env_from(|k| std::env::var(k).ok()).and_then(|env| run(&env, &stdin)),
    };
    match outcome {
        Ok(Some(out)) => println!("{out}"),
        Ok(None) => {}
        Err(e) => {
            println!("{}", e.to_json(&version));
            eprintln!("rvs-cni: {}", e.msg);
            std::process::exit(1);
        }
    }
}

/// Runs the command; what to print on success.
fn run(env: &Env, stdin: &[u8]) -> Result<Option<String>, CniError> {
    if env.cmd == Cmd::Version {
        return Ok(Some(version_result(stdin)));
    }
    let conf = config::parse(stdin)?;
    let host = config::host_ifname(&env.container_id, &env.ifname);
    match env.cmd {
        Cmd::Add => add(env, &conf, stdin, &host).map(Some),
        Cmd::Del => del(env, &conf, stdin, &host).map(|()| None),
        Cmd::Check => check(env, &conf, stdin, &host).map(|()| None),
        Cmd::Status => status(&conf).map(|()| None),
        Cmd::Gc => gc(env, &conf, stdin).map(|()| None),
        Cmd::Version => unreachable!("answered above"),
    }
}

/// VERSION's result: the versions we speak, in the version asked about.
fn version_result(stdin: &[u8]) -> String {
    let asked = config::version_of(stdin).unwrap_or_else(|| "1.0.0".to_string());
    serde_json::json!({ "cniVersion": asked, "supportedVersions": config::SUPPORTED_VERSIONS }).to_string()
}

fn add(env: &Env, conf: &NetConf, stdin: &[u8], host: &str) -> Result<String, CniError> {
    let path = env.netns.as_deref().expect("ADD has CNI_NETNS (env_from checks)");
    let netns = link::open_netns(path)?.ok_or_else(|| {
        CniError::new(code::UNKNOWN_CONTAINER, format!("network namespace {} does not exist", path.display()))
    })?;
    // Before IPAM: an ADD of what is attached must not touch its address
    // (host-local may hand out a second one, and the rollback's IPAM DEL
    // would release both).
    let bridge = rvsd::bridge(conf)?;
    rvsd::refuse_existing(&bridge, host)?;
    if conf.port_type == PortKind::Afxdp {
        link::refuse_existing(host)?;
    }
    let mtu = rvsd::container_mtu(conf, &bridge);
    let ipam = match &conf.ipam_type {
        Some(t) => ipam::add(t, &env.path, stdin)?,
        None => CniResult {
            cni_version: conf.cni_version.clone(),
            interfaces: vec![],
            ips: vec![],
            routes: vec![],
            dns: None,
        },
    };
    // From here on a failure undoes what was done, in reverse.
    let attached = (|| -> Result<CniResult, CniError> {
        let sandbox = Some(path.display().to_string());
        let port = rvsd::port_config(conf, env, host);
        let interfaces = match conf.port_type {
            PortKind::Afxdp => {
                let (host_mac, cont_mac) = link::create_pair(host, &env.ifname, &netns, path, mtu)?;
                if let Err(e) = rvsd::add_port(conf, port) {
                    let _ = link::delete_host(host);
                    return Err(e);
                }
                vec![
                    result::Interface { name: host.to_string(), mac: host_mac, sandbox: None },
                    result::Interface { name: env.ifname.clone(), mac: cont_mac, sandbox },
                ]
            }
            PortKind::Tap => {
                rvsd::add_port(conf, port)?;
                let mac = link::tap_up(&netns, path, &env.ifname, mtu).inspect_err(|_| {
                    let _ = rvsd::del_port(conf, host);
                })?;
                vec![result::Interface { name: env.ifname.clone(), mac, sandbox }]
            }
        };
        // The container's interface is the last one (after a veth's host end).
        let container = interfaces.len() - 1;
        let result = CniResult::for_add(&conf.cni_version, interfaces, container, &ipam);
        let container_mac = result.interfaces[container].mac.clone();
        let ips = result.container_ips(&env.ifname);
        let subnets: Vec<IfAddr> =
            ips.iter().map(|ip| IfAddr { addr: ip.address.addr, prefix: ip.address.prefix }).collect();
        let addrs: Vec<std::net::IpAddr> = subnets.iter().map(|s| s.addr).collect();
        link::configure(&netns, path, &env.ifname, &ips, &result.routes)
            .and_then(|()| rvsd::bind(conf, host, &addrs, &container_mac))
            .and_then(|()| if conf.ip_masq { masq::add(&conf.network, &env.container_id, &subnets) } else { Ok(()) })
            .inspect_err(|_| {
                // The port's bindings go with it.
                let _ = rvsd::del_port(conf, host);
                let _ = link::delete_host(host);
            })?;
        Ok(result)
    })();
    if attached.is_err() {
        if let Some(t) = &conf.ipam_type {
            let _ = ipam::exec(t, "DEL", &env.path, stdin);
        }
    }
    let result = attached?;
    serde_json::to_string(&result).map_err(|e| CniError::new(code::IO, format!("encoding the result: {e}")))
}

/// DEL: every step runs even when an earlier one failed, so what can go
/// does; the first failure is reported. Anything already gone is fine.
/// rvsd removes a tap it made with its port.
fn del(env: &Env, conf: &NetConf, stdin: &[u8], host: &str) -> Result<(), CniError> {
    let port = rvsd::del_port(conf, host);
    let veth = link::delete_host(host);
    let masq = if conf.ip_masq { masq::del(&conf.network, &env.container_id) } else { Ok(()) };
    let addr = match &conf.ipam_type {
        Some(t) => ipam::exec(t, "DEL", &env.path, stdin).map(drop),
        None => Ok(()),
    };
    port.and(veth).and(masq).and(addr)
}

fn check(env: &Env, conf: &NetConf, stdin: &[u8], host: &str) -> Result<(), CniError> {
    if conf.cni_version.starts_with("0.3.") {
        return Err(CniError::new(code::INCOMPATIBLE_VERSION, "CHECK needs cniVersion 0.4.0 or later"));
    }
    let prev =
        conf.prev_result.clone().ok_or_else(|| CniError::new(code::INVALID_CONFIG, "CHECK without \"prevResult\""))?;
    let prev: CniResult = serde_json::from_value(prev)
        .map_err(|e| CniError::new(code::DECODE, format!("\"prevResult\" is not a CNI result: {e}")))?;
    let path = env.netns.as_deref().expect("CHECK has CNI_NETNS (env_from checks)");
    let netns = link::open_netns(path)?.ok_or_else(|| {
        CniError::new(code::UNKNOWN_CONTAINER, format!("network namespace {} does not exist", path.display()))
    })?;
    if let Some(t) = &conf.ipam_type {
        ipam::exec(t, "CHECK", &env.path, stdin)?;
    }
    rvsd::check_port(conf, host)?;
    let veth_host = (conf.port_type == PortKind::Afxdp).then_some(host);
    link::check(veth_host, &netns, path, &env.ifname, &prev)
}

/// STATUS (CNI 1.1): containers can be attached when rvsd answers and has
/// the bridge; else the spec's code 50.
fn status(conf: &NetConf) -> Result<(), CniError> {
    rvsd::bridge(conf).map(drop).map_err(|e| CniError::new(code::NOT_AVAILABLE, e.msg))
}

/// GC (CNI 1.1): removes the network's container ports (and their veths)
/// whose attachment is not in `cni.dev/valid-attachments`, then lets IPAM
/// release what it still holds for them.
fn gc(env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<(), CniError> {
    let mut first_err = None;
    for p in rvsd::stale_ports(conf)? {
        let res = rvsd::del_port(conf, &p.name).and_then(|()| match p.kind {
            rvs_proto::config::PortType::Afxdp => link::delete_host(&p.name),
            _ => Ok(()),
        });
        if let Err(e) = res {
            first_err.get_or_insert(e);
        }
    }
    if conf.ip_masq {
        let keep: Vec<&str> = conf.valid_attachments.iter().map(|a| a.container_id.as_str()).collect();
        if let Err(e) = masq::gc(&conf.network, &keep) {
            first_err.get_or_insert(e);
        }
    }
    if let Some(t) = &conf.ipam_type {
        if let Err(e) = ipam::gc(t, &env.path, stdin) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}
