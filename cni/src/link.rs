//! The container's veth pair: made, configured inside the container's
//! network namespace, checked and deleted, over rtnetlink (rvsd's own
//! netlink code), never by running `ip`.

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rvs_dataplane::port::netns::in_netns_fd;
use rvs_switch::kernel::netlink::{self, kernel_errno, Route, VethSpec};

use crate::error::{code, kernel, CniError};
use crate::result::{route_gateway, CniResult, IpConf, RouteConf};

/// Opens the network namespace at `path` (`/proc/PID/ns/net`,
/// `/var/run/netns/NAME`); `None` when it no longer exists.
pub fn open_netns(path: &Path) -> Result<Option<OwnedFd>, CniError> {
    match File::open(path) {
        Ok(f) => Ok(Some(f.into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        // A /proc/PID/ns/net of a process that has exited.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(None),
        Err(e) => Err(CniError::new(code::IO, format!("opening network namespace {}: {e}", path.display()))),
    }
}

/// Runs `f` inside the namespace open at `netns`.
fn inside<T: Send>(netns: &OwnedFd, path: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    in_netns_fd(netns.try_clone()?, &path.display().to_string(), f)
}

/// The MAC of `ifname` in the calling thread's namespace, as text.
fn mac_of(ifname: &str) -> io::Result<String> {
    netlink::link_info(ifname).map(|(_, mac)| mac.to_string().to_lowercase())
}

/// Creates the veth pair: `host` here, `ifname` in the namespace `netns`
/// (at `path`), both with `mtu`, both up. Returns the host end's MAC and
/// the container end's. On failure nothing is left behind.
pub fn create_pair(
    host: &str,
    ifname: &str,
    netns: &OwnedFd,
    path: &Path,
    mtu: u32,
) -> Result<(String, String), CniError> {
    let spec = VethSpec { name: host, peer: ifname, peer_netns: Some(netns.as_fd()), mtu, queues: 1 };
    let link = netlink::create_veth(&spec).map_err(|e| {
        let hint = if kernel_errno(&e) == Some(libc::EEXIST) {
            format!(" ({host} here or {ifname} in the container already exists: attached already?)")
        } else {
            String::new()
        };
        CniError::new(code::KERNEL, format!("{e}{hint}"))
    })?;
    let done = (|| -> Result<(String, String), CniError> {
        let host_mac = mac_of(host).map_err(|e| kernel(&format!("reading {host}"), e))?;
        let ifname = ifname.to_string();
        let cont_mac = inside(netns, path, move || {
            let l = netlink::find_link(&ifname)?
                .ok_or_else(|| io::Error::other(format!("{ifname} is missing in the container")))?;
            netlink::set_link_up(l.index, true)?;
            mac_of(&ifname)
        })
        .map_err(|e| kernel("bringing up the container's end", e))?;
        Ok((host_mac, cont_mac))
    })();
    if done.is_err() {
        let _ = netlink::delete_link(link.index);
    }
    done
}

/// Sets the MTU of the tap rvsd made as `ifname` in the container and
/// brings it up; returns its MAC.
pub fn tap_up(netns: &OwnedFd, path: &Path, ifname: &str, mtu: u32) -> Result<String, CniError> {
    let name = ifname.to_string();
    inside(netns, path, move || {
        let l = netlink::find_link(&name)?
            .ok_or_else(|| io::Error::other(format!("{name} is missing in the container")))?;
        netlink::set_mtu(l.index, mtu)?;
        netlink::set_link_up(l.index, true)?;
        mac_of(&name)
    })
    .map_err(|e| kernel(&format!("bringing up the tap {ifname} in the container"), e))
}

/// Sets `ips` (those of the container's interface) and `routes` on
/// `ifname` inside the namespace, as the result says.
pub fn configure(
    netns: &OwnedFd,
    path: &Path,
    ifname: &str,
    ips: &[&IpConf],
    routes: &[RouteConf],
) -> Result<(), CniError> {
    let addrs: Vec<(IpAddr, u8)> = ips.iter().map(|ip| (ip.address.addr, ip.address.prefix)).collect();
    let routes: Vec<Route> = routes.iter().map(|r| to_route(r, ips)).collect();
    let name = ifname.to_string();
    inside(netns, path, move || {
        let index = netlink::find_link(&name)?
            .ok_or_else(|| io::Error::other(format!("{name} is missing in the container")))?
            .index;
        for (a, p) in addrs {
            netlink::add_address(index, a, p)?;
        }
        for mut r in routes {
            r.oif = Some(index);
            netlink::add_route(&r)?;
        }
        Ok(())
    })
    .map_err(|e| kernel(&format!("configuring {ifname} in the container"), e))
}

fn to_route(r: &RouteConf, ips: &[&IpConf]) -> Route {
    let default = r.dst.prefix == 0;
    Route {
        // A default route has no destination attribute.
        dst: (!default).then_some(r.dst.addr),
        dst_len: r.dst.prefix,
        gateway: route_gateway(r, ips),
        oif: None,
    }
}

/// An error if the host end `host` exists: the container is attached
/// already (the runtime must DEL first).
pub fn refuse_existing(host: &str) -> Result<(), CniError> {
    match netlink::find_link(host).map_err(|e| kernel(&format!("looking up {host}"), e))? {
        None => Ok(()),
        Some(_) => Err(CniError::new(
            code::KERNEL,
            format!("{host} exists: this container interface is attached already (DEL it first)"),
        )),
    }
}

/// Deletes the host end `host` (and so the pair); a missing one is fine.
pub fn delete_host(host: &str) -> Result<(), CniError> {
    let ctx = format!("deleting {host}");
    let Some(l) = netlink::find_link(host).map_err(|e| kernel(&ctx, e))? else {
        return Ok(());
    };
    if l.kind.as_deref() != Some("veth") {
        return Err(CniError::new(code::KERNEL, format!("{ctx}: it is not a veth; left alone")));
    }
    match netlink::delete_link(l.index) {
        Err(e) if kernel_errno(&e) != Some(libc::ENODEV) => Err(kernel(&ctx, e)),
        _ => Ok(()),
    }
}

/// CHECK of the kernel side: the host end (of a veth; a tap has none)
/// exists and is up; `ifname` exists in the namespace, up, with the
/// addresses and routes of `prev`.
pub fn check(host: Option<&str>, netns: &OwnedFd, path: &Path, ifname: &str, prev: &CniResult) -> Result<(), CniError> {
    let failed = |m: String| CniError::new(code::CHECK_FAILED, m);
    if let Some(host) = host {
        match netlink::find_link(host).map_err(|e| kernel(&format!("looking up {host}"), e))? {
            Some(l) if l.up => {}
            Some(_) => return Err(failed(format!("{host} is down"))),
            None => return Err(failed(format!("{host} does not exist"))),
        }
    }
    let ips = prev.container_ips(ifname);
    let want_addrs: Vec<(IpAddr, u8)> = ips.iter().map(|ip| (ip.address.addr, ip.address.prefix)).collect();
    let want_routes: Vec<Route> = prev.routes.iter().map(|r| to_route(r, &ips)).collect();
    let name = ifname.to_string();
    let (up, addrs, routes) = inside(netns, path, move || {
        let Some(l) = netlink::find_link(&name)? else {
            return Ok((None, Vec::new(), Vec::new()));
        };
        Ok((Some(l.up), netlink::link_addrs(l.index)?, netlink::link_routes(l.index)?))
    })
    .map_err(|e| kernel(&format!("reading {ifname} in the container"), e))?;
    match up {
        None => return Err(failed(format!("{ifname} does not exist in the container"))),
        Some(false) => return Err(failed(format!("{ifname} is down in the container"))),
        Some(true) => {}
    }
    for (a, p) in want_addrs {
        if !addrs.contains(&(a, p)) {
            return Err(failed(format!("{ifname} in the container lacks address {a}/{p}")));
        }
    }
    for r in want_routes {
        if !routes.iter().any(|have| have.dst == r.dst && have.dst_len == r.dst_len && have.gateway == r.gateway) {
            let dst = r.dst.map_or("default".to_string(), |d| format!("{d}/{}", r.dst_len));
            return Err(failed(format!("the container lacks its route to {dst}")));
        }
    }
    Ok(())
}
