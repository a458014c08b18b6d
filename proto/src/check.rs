//! The argument rules both sides apply (names, VLANs, trunk lists, MACs,
//! VXLAN settings), so `rvsctl` can refuse bad input before sending it and
//! `rvsd` refuses the same input from any other client.

use crate::config::{
    ClusterConfig, EtcdAuth, FastPath, IfAddr, PortConfig, PortType, PortVlan, UplinkConfig, VxlanConfig, XdpMode,
    LEASE_TTL_RANGE,
};
use crate::MacAddr;
use std::collections::HashSet;
use std::net::IpAddr;

/// Longest interface (and bridge) name: Linux IFNAMSIZ less the NUL.
pub const MAX_NAME_LEN: usize = 15;
/// Accepted aging times, seconds.
pub const AGING_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;
/// Accepted learned-MAC limits, per bridge and per port.
pub const MAX_MACS_RANGE: std::ops::RangeInclusive<u32> = 1..=1 << 20;
/// Accepted AF_XDP queue counts.
pub const QUEUES_RANGE: std::ops::RangeInclusive<u32> = 1..=1024;
/// Largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Most remote VTEPs one VXLAN port replicates floods to.
pub const MAX_REMOTES: usize = 1024;

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

/// Most gateway addresses one bridge holds.
pub const MAX_GATEWAY_ADDRS: usize = 64;

/// Checks a bridge's gateway addresses: each one an address an interface
/// can hold (as [`IfAddr`]'s parser makes sure), none twice, not too many.
pub fn check_gateway(addrs: &[IfAddr]) -> Result<(), String> {
    if addrs.len() > MAX_GATEWAY_ADDRS {
        return Err(format!("{} gateway addresses; at most {MAX_GATEWAY_ADDRS}", addrs.len()));
    }
    let mut seen = HashSet::new();
    for a in addrs {
        // A deserialized IfAddr was parsed; one built in code may not be.
        a.to_string().parse::<IfAddr>().map_err(|e| format!("invalid gateway address {e}"))?;
        if !seen.insert(a.addr) {
            return Err(format!("gateway address {} given twice", a.addr));
        }
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

/// Parses the address of an IP-MAC binding: a unicast IPv4 or IPv6
/// address a host can own (not unspecified, multicast, broadcast or
/// loopback).
pub fn parse_neigh_ip(s: &str) -> Result<std::net::IpAddr, String> {
    use std::net::IpAddr;
    let ip: IpAddr = s.trim().parse().map_err(|_| format!("invalid IP address {s:?}"))?;
    let bad = match ip {
        IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast() || a.is_loopback() || a.to_ipv4_mapped().is_some(),
    };
    if bad {
        return Err(format!(
            "IP address {ip} cannot be bound to a host (unspecified, multicast, broadcast or loopback)"
        ));
    }
    Ok(ip)
}

/// Checks a bridge's aging time.
pub fn check_aging(secs: u32) -> Result<(), String> {
    if AGING_RANGE.contains(&secs) {
        Ok(())
    } else {
        Err(format!("invalid aging time {secs} (must be {}..={} seconds)", AGING_RANGE.start(), AGING_RANGE.end()))
    }
}

/// Checks a bridge's or a port's learned-MAC limit.
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
    if p.kind != PortType::Internal && !p.addresses.is_empty() {
        return Err(format!("port {:?}: addresses apply to a bridge's internal (gateway) port only", p.name));
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
            if !matches!(p.fast_path, FastPath::Auto | FastPath::Off) {
                return Err(format!("port {:?}: a kernel executor (--fast-path) applies to afxdp ports only", p.name));
            }
            if let Some(ns) = &p.netns {
                check_netns(ns)?;
            }
            if let Some(ifname) = &p.ifname {
                check_name("tap device", ifname)?;
            }
        }
        PortType::Vxlan => {
            if p.queues.is_some() {
                return Err(format!("port {:?}: a queue count applies to afxdp ports only", p.name));
            }
            if p.xdp_mode != XdpMode::Auto {
                return Err(format!("port {:?}: an XDP mode applies to afxdp ports only", p.name));
            }
            if p.fast_path == FastPath::Tc {
                return Err(format!(
                    "port {:?}: a vxlan port's kernel path is its uplink's XDP program: --fast-path xdp or off",
                    p.name
                ));
            }
            if p.netns.is_some() {
                return Err(format!("port {:?}: a network namespace applies to tap ports only", p.name));
            }
            let Some(v) = &p.vxlan else {
                return Err(format!("port {:?}: a vxlan port needs its tunnel settings (VNI, local address)", p.name));
            };
            check_vxlan(v)?;
        }
        PortType::Internal => {
            if p.queues.is_some() || p.xdp_mode != XdpMode::Auto || p.netns.is_some() {
                return Err(format!("port {:?}: an internal port takes no queue count, XDP mode or namespace", p.name));
            }
            if !matches!(p.fast_path, FastPath::Auto | FastPath::Off) {
                return Err(format!("port {:?}: a kernel executor (--fast-path) applies to afxdp ports only", p.name));
            }
            check_gateway(&p.addresses)?;
        }
    }
    if p.kind != PortType::Tap && p.ifname.is_some() {
        return Err(format!("port {:?}: a device name other than the port's applies to tap ports only", p.name));
    }
    if let Some(n) = p.max_macs {
        check_max_macs(n).map_err(|e| format!("port {:?}: {e}", p.name))?;
    }
    if let Some(o) = &p.owner {
        check_owner(o).map_err(|e| format!("port {:?}: {e}", p.name))?;
    }
    check_pmd("port", &p.name, &p.pmd)
}

/// The longest container id or network name taken (runtimes use 64 hex
/// digits and short names).
pub const MAX_OWNER_FIELD: usize = 256;

/// Checks a container port's owner: printable, bounded fields.
fn check_owner(o: &crate::config::PortOwner) -> Result<(), String> {
    for (what, v) in [("container id", &o.container), ("network name", &o.network)] {
        if v.is_empty() || v.len() > MAX_OWNER_FIELD || v.chars().any(char::is_control) {
            return Err(format!("invalid {what} {v:?} (1 to {MAX_OWNER_FIELD} printable characters)"));
        }
    }
    check_name("container interface", &o.ifname)
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

/// Checks a network namespace: a file name under /var/run/netns, or an
/// absolute path to a namespace file without `..` components.
pub fn check_netns(ns: &str) -> Result<(), String> {
    if let Some(rest) = ns.strip_prefix('/') {
        if ns.len() > 4096
            || rest.split('/').any(|c| c.is_empty() || c == "." || c == "..")
            || ns.contains(char::is_control)
        {
            return Err(format!("invalid network namespace path {ns:?}"));
        }
        return Ok(());
    }
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

/// One etcd client endpoint, as parsed from its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdEndpoint {
    /// `https://`: TLS.
    pub tls: bool,
    /// `HOST:PORT` (an IPv6 host in brackets).
    pub addr: String,
}

impl EtcdEndpoint {
    /// The host alone, as a certificate names it (no port, no brackets).
    pub fn host(&self) -> &str {
        let host = self.addr.rsplit_once(':').map_or(self.addr.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// Each etcd endpoint in `urls` (`http://HOST:PORT` or `https://HOST:PORT`,
/// comma-separated lists allowed); at least one.
pub fn etcd_endpoints(urls: &[String]) -> Result<Vec<EtcdEndpoint>, String> {
    let mut endpoints = Vec::new();
    for u in urls.iter().flat_map(|u| u.split(',')).map(str::trim).filter(|u| !u.is_empty()) {
        endpoints.push(etcd_endpoint(u)?);
    }
    if endpoints.is_empty() {
        return Err("no etcd endpoint given".into());
    }
    Ok(endpoints)
}

fn etcd_endpoint(url: &str) -> Result<EtcdEndpoint, String> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(format!("etcd endpoint {url:?}: expected http://HOST:PORT or https://HOST:PORT")),
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains('/') || !hostport.contains(':') {
        return Err(format!("etcd endpoint {url:?}: expected http(s)://HOST:PORT"));
    }
    Ok(EtcdEndpoint { tls, addr: hostport.to_string() })
}

/// Checks etcd TLS and auth settings against the endpoints: https needs a
/// CA, a certificate needs its key (and a key its certificate), TLS files
/// need an https endpoint (else they would be ignored: plain text), and a
/// password file needs a user.
fn check_etcd_auth(endpoints: &[EtcdEndpoint], a: &EtcdAuth) -> Result<(), String> {
    let tls = endpoints.iter().filter(|e| e.tls).count();
    if tls > 0 && a.cacert.is_none() {
        return Err("https etcd endpoints need --etcd-cacert FILE (the CA that signed etcd's certificate)".into());
    }
    if tls > 0 && tls < endpoints.len() {
        return Err("etcd endpoints mix http:// and https://: use one scheme".into());
    }
    if tls == 0 && (a.cacert.is_some() || a.cert.is_some() || a.key.is_some()) {
        return Err("--etcd-cacert/--etcd-cert/--etcd-key need https:// etcd endpoints".into());
    }
    match (&a.cert, &a.key) {
        (Some(_), None) => return Err("--etcd-cert needs --etcd-key (the certificate's private key)".into()),
        (None, Some(_)) => return Err("--etcd-key needs --etcd-cert".into()),
        _ => {}
    }
    if a.password_file.is_some() && a.user.is_none() {
        return Err("--etcd-password-file needs --etcd-user".into());
    }
    if a.user.as_deref().is_some_and(|u| u.is_empty() || u.chars().any(char::is_control)) {
        return Err("--etcd-user: empty or with control characters".into());
    }
    Ok(())
}

/// Checks a log filter for rvsd: a level (`error`, `warn`, `info`,
/// `debug`, `trace`, `off`) or `target=level` pairs, comma-separated. A
/// bare word must be a level: a typo such as "wran" would otherwise be
/// taken as a target name at every level and log everything.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    for part in filter.split(',').map(str::trim) {
        let level = match part.split_once('=') {
            Some((t, l)) if !t.trim().is_empty() => l.trim(),
            Some(_) => return Err(log_filter_error(filter, &format!("{part:?} has no target"))),
            None => part,
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(log_filter_error(filter, &format!("{level:?} is not a level")));
        }
    }
    Ok(())
}

/// The error for a log filter refused for `why`, saying what is accepted.
pub fn log_filter_error(filter: &str, why: &str) -> String {
    format!(
        "invalid log filter {filter:?}: {why} (expected a level: error, warn, info, debug, trace, off; \
         or target=level pairs like warn,rvs_switch::datapath=debug)"
    )
}

/// Checks cluster settings as rvsd would use them: etcd endpoints, TLS and
/// auth settings (not the files: rvsd reads those), node name, lease TTL.
pub fn check_cluster(c: &ClusterConfig) -> Result<(), String> {
    check_etcd_auth(&etcd_endpoints(&c.etcd)?, &c.auth)?;
    check_node_name(&c.node)?;
    if !LEASE_TTL_RANGE.contains(&c.lease_ttl_secs) {
        return Err(format!(
            "lease TTL {} s out of range {}..={}",
            c.lease_ttl_secs,
            LEASE_TTL_RANGE.start(),
            LEASE_TTL_RANGE.end()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ports() {
        for ok in ["ns1", "/proc/42/ns/net", "/run/netns/netns-0b1c"] {
            assert!(check_netns(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "a/b", "/", "/run/../etc", "/run//x", "/x\n"] {
            assert!(check_netns(bad).is_err(), "{bad:?}");
        }
        let owner =
            |c: &str, i: &str| crate::config::PortOwner { container: c.into(), ifname: i.into(), network: "n".into() };
        let mut tap = PortConfig::tap("rvs0123", PortVlan::default());
        tap.ifname = Some("eth0".into());
        tap.netns = Some("/proc/42/ns/net".into());
        tap.owner = Some(owner("c1", "eth0"));
        assert!(check_port(&tap).is_ok());
        tap.owner = Some(owner("", "eth0"));
        assert!(check_port(&tap).unwrap_err().contains("invalid container id"));
        tap.owner = Some(owner("c1", "a-name-far-too-long"));
        assert!(check_port(&tap).is_err());
        tap.owner = None;
        tap.ifname = Some("bad/name".into());
        assert!(check_port(&tap).is_err());
        let mut veth = PortConfig::afxdp("rvs0123", PortVlan::default());
        veth.ifname = Some("eth0".into());
        assert!(check_port(&veth).unwrap_err().contains("tap ports only"));
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

    #[test]
    fn cluster_settings() {
        let ok = ClusterConfig {
            etcd: vec!["http://127.0.0.1:2379".into()],
            node: "h1".into(),
            lease_ttl_secs: 10,
            auth: EtcdAuth::default(),
        };
        assert!(check_cluster(&ok).is_ok());
        assert!(check_cluster(&ClusterConfig { node: "a/b".into(), ..ok.clone() }).is_err());
        assert!(check_cluster(&ClusterConfig { node: String::new(), ..ok.clone() }).is_err());
        assert!(check_cluster(&ClusterConfig { lease_ttl_secs: 1, ..ok.clone() }).is_err());
        assert!(check_cluster(&ClusterConfig { etcd: vec!["127.0.0.1:2379".into()], ..ok.clone() }).is_err());

        // TLS and auth: what each setting needs.
        let file = |f: &str| Some(f.to_string());
        let tls = ClusterConfig {
            etcd: vec!["https://[2001:2::1]:2379".into()],
            auth: EtcdAuth { cacert: file("/ca.pem"), ..EtcdAuth::default() },
            ..ok.clone()
        };
        assert!(check_cluster(&tls).is_ok());
        let err = |auth: EtcdAuth, etcd: &str| {
            check_cluster(&ClusterConfig { etcd: vec![etcd.into()], auth, ..ok.clone() }).unwrap_err()
        };
        let https = "https://127.0.0.1:2379";
        assert!(err(EtcdAuth::default(), https).contains("--etcd-cacert"));
        assert!(err(tls.auth.clone(), "http://127.0.0.1:2379").contains("need https://"));
        assert!(err(tls.auth.clone(), "https://a:1,http://b:1").contains("mix"));
        let cert_only = EtcdAuth { cert: file("/c.pem"), ..tls.auth.clone() };
        assert!(err(cert_only, https).contains("--etcd-key"));
        let key_only = EtcdAuth { key: file("/k.pem"), ..tls.auth.clone() };
        assert!(err(key_only, https).contains("--etcd-cert"));
        let no_user = EtcdAuth { password_file: file("/pw"), ..EtcdAuth::default() };
        assert!(err(no_user, "http://a:1").contains("--etcd-user"));
        let endpoints = etcd_endpoints(&["https://[2001:2::1]:2379, http://etcd.example:2379/".into()]).unwrap();
        assert_eq!(endpoints[0], EtcdEndpoint { tls: true, addr: "[2001:2::1]:2379".into() });
        assert_eq!((endpoints[0].host(), endpoints[1].host()), ("2001:2::1", "etcd.example"));
    }
}
