//! The CNI result: what IPAM plugins answer, what ADD prints, what CHECK
//! gets back as `prevResult`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// An address with a prefix length, written `198.18.0.5/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The address (a host's, or a network's for route destinations).
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p.parse().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?;
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One route of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteConf {
    /// Destination network.
    pub dst: Cidr,
    /// Next hop; absent: the gateway of the interface's address of the same
    /// family, or on-link when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// One interface of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Its name (in the sandbox, for the container's).
    pub name: String,
    /// Its MAC address, lower case.
    #[serde(default)]
    pub mac: String,
    /// The container's network namespace path; absent for a host interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// One address of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConf {
    /// "4" or "6": results before 1.0.0 carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The address and prefix length.
    pub address: Cidr,
    /// The default gateway of this subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces` of the interface holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A result (of ADD, of an IPAM plugin, or a `prevResult`). Unknown keys
/// are ignored, so any plugin's result parses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    /// The CNI version of this result.
    pub cni_version: String,
    /// Interfaces made or used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses given out.
    #[serde(default)]
    pub ips: Vec<IpConf>,
    /// Routes set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConf>,
    /// DNS settings, passed through from IPAM as they came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Value>,
}

impl CniResult {
    /// ADD's result: `interfaces` (the container's at index `container`),
    /// and `ipam`'s addresses on the container's interface.
    pub fn for_add(cni_version: &str, interfaces: Vec<Interface>, container: usize, ipam: &CniResult) -> CniResult {
        // Before 1.0.0 each address says its family.
        let old = cni_version.starts_with("0.");
        let ips = ipam
            .ips
            .iter()
            .map(|ip| IpConf {
                version: old.then(|| if ip.address.addr.is_ipv4() { "4" } else { "6" }.to_string()),
                address: ip.address,
                gateway: ip.gateway,
                interface: Some(container),
            })
            .collect();
        CniResult {
            cni_version: cni_version.to_string(),
            interfaces,
            ips,
            routes: ipam.routes.clone(),
            dns: ipam.dns.clone(),
        }
    }

    /// The addresses of the result that belong to the interface named
    /// `ifname` in a sandbox (those without an interface index too: older
    /// results may leave it out).
    pub fn container_ips(&self, ifname: &str) -> Vec<&IpConf> {
        self.ips
            .iter()
            .filter(|ip| match ip.interface.and_then(|i| self.interfaces.get(i)) {
                Some(itf) => itf.name == ifname && itf.sandbox.is_some(),
                None => ip.interface.is_none(),
            })
            .collect()
    }
}

/// The next hop to install for `route` in a container holding `ips`: its
/// own, or the gateway of the first address of the same family.
pub fn route_gateway(route: &RouteConf, ips: &[&IpConf]) -> Option<IpAddr> {
    route.gw.or_else(|| {
        ips.iter().filter(|ip| ip.address.addr.is_ipv4() == route.dst.addr.is_ipv4()).find_map(|ip| ip.gateway)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host_local_result() -> CniResult {
        // What host-local 1.1 prints for a range with a gateway and a route.
        serde_json::from_value(json!({
            "cniVersion": "1.0.0",
            "ips": [{"address": "198.18.0.2/24", "gateway": "198.18.0.1"},
                    {"address": "2001:2::2/64"}],
            "routes": [{"dst": "198.19.0.0/16"}, {"dst": "0.0.0.0/0", "gw": "198.18.0.254"}],
            "dns": {}
        }))
        .unwrap()
    }

    fn itfs() -> (Interface, Interface) {
        (
            Interface { name: "rvs0123".into(), mac: "02:00:00:00:00:01".into(), sandbox: None },
            Interface { name: "eth0".into(), mac: "02:00:00:00:00:02".into(), sandbox: Some("/proc/7/ns/net".into()) },
        )
    }

    #[test]
    fn add_result_has_the_spec_shape() {
        let (h, c) = itfs();
        let r = CniResult::for_add("1.0.0", vec![h, c], 1, &host_local_result());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "rvs0123", "mac": "02:00:00:00:00:01"},
                               {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/proc/7/ns/net"}],
                "ips": [{"address": "198.18.0.2/24", "gateway": "198.18.0.1", "interface": 1},
                        {"address": "2001:2::2/64", "interface": 1}],
                "routes": [{"dst": "198.19.0.0/16"}, {"dst": "0.0.0.0/0", "gw": "198.18.0.254"}],
                "dns": {}
            })
        );
        // And it reads back as a prevResult.
        let back: CniResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.container_ips("eth0").len(), 2);
        assert!(back.container_ips("eth1").is_empty());
    }

    #[test]
    fn old_versions_say_the_family() {
        let (h, c) = itfs();
        let r = CniResult::for_add("0.4.0", vec![h, c], 1, &host_local_result());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(v["ips"][1]["version"], "6");
    }

    #[test]
    fn routes_take_the_family_gateway() {
        let r = host_local_result();
        let ips: Vec<&IpConf> = r.ips.iter().collect();
        assert_eq!(route_gateway(&r.routes[0], &ips), Some("198.18.0.1".parse().unwrap()));
        assert_eq!(route_gateway(&r.routes[1], &ips), Some("198.18.0.254".parse().unwrap()));
        let v6: RouteConf = serde_json::from_value(json!({"dst": "2001:2:1::/48"})).unwrap();
        assert_eq!(route_gateway(&v6, &ips), None, "the IPv6 address has no gateway: on-link");
    }

    #[test]
    fn bad_cidrs_are_refused() {
        for s in ["198.18.0.1", "198.18.0.1/33", "x/24", "2001:2::1/129", "198.18.0.1/-1"] {
            assert!(s.parse::<Cidr>().is_err(), "{s}");
        }
        assert_eq!("2001:2::1/64".parse::<Cidr>().unwrap().to_string(), "2001:2::1/64");
        let e = serde_json::from_value::<CniResult>(json!({"cniVersion": "1.0.0", "ips": [{"address": "x"}]}));
        assert!(e.is_err());
    }
}
