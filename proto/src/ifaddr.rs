//! An interface address with its prefix length (`10.89.0.1/24`,
//! `2001:db8::1/64`): a bridge's gateway, a container network's subnet.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address on an interface and the length of its network's prefix,
/// written and serialized as `ADDR/PREFIX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfAddr {
    /// The address itself.
    pub addr: IpAddr,
    /// Prefix length: 0..=32 (IPv4) or 0..=128 (IPv6).
    pub prefix: u8,
}

impl IfAddr {
    /// The network the address is in: host bits cleared
    /// (`10.89.0.1/24` → `10.89.0.0/24`).
    pub fn network(&self) -> IfAddr {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        IfAddr { addr, prefix: self.prefix }
    }

    /// Parses `ADDR/PREFIX` as a network, host bits ignored (a CNI subnet,
    /// an address in it): no check that it may be given to an interface.
    pub fn parse_any(s: &str) -> Result<IfAddr, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?}: expected ADDRESS/PREFIX, e.g. 10.89.0.1/24"))?;
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = p
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= max && !p.starts_with('+'))
            .ok_or_else(|| format!("{s:?}: prefix length {p:?} is not within 0..={max}"))?;
        Ok(IfAddr { addr, prefix })
    }
}

impl FromStr for IfAddr {
    type Err = String;

    /// `ADDR/PREFIX` for an interface: a unicast address that is not the
    /// network's own address or its IPv4 broadcast address.
    fn from_str(s: &str) -> Result<IfAddr, String> {
        let ia = IfAddr::parse_any(s)?;
        let a = ia.addr;
        if a.is_unspecified() || a.is_loopback() || a.is_multicast() || a == IpAddr::V4(Ipv4Addr::BROADCAST) {
            return Err(format!("{s:?}: {a} is not a unicast address an interface can hold"));
        }
        if let IpAddr::V4(v4) = a {
            // /31 and /32 have no network or broadcast address (RFC 3021).
            if ia.prefix <= 30 {
                let host = u32::from(v4) & !u32::MAX.checked_shl(32 - u32::from(ia.prefix)).unwrap_or(0);
                if host == 0 {
                    return Err(format!("{s:?}: {a} is the network's own address; give a host address, e.g. .1"));
                }
                if host == !u32::MAX.checked_shl(32 - u32::from(ia.prefix)).unwrap_or(0) {
                    return Err(format!("{s:?}: {a} is the network's broadcast address"));
                }
            }
        }
        Ok(ia)
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl TryFrom<String> for IfAddr {
    type Error = String;

    fn try_from(s: String) -> Result<IfAddr, String> {
        s.parse()
    }
}

impl From<IfAddr> for String {
    fn from(a: IfAddr) -> String {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_families() {
        for s in ["10.89.0.1/24", "198.18.0.1/31", "2001:2::1/64", "2001:2::/64", "fe80::1/64"] {
            let a: IfAddr = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<IfAddr>(&json).unwrap(), a);
        }
        assert_eq!("10.89.0.7/24".parse::<IfAddr>().unwrap().network().to_string(), "10.89.0.0/24");
        assert_eq!("2001:2::5/48".parse::<IfAddr>().unwrap().network().to_string(), "2001:2::/48");
        assert_eq!(IfAddr::parse_any("10.1.2.3/0").unwrap().network().to_string(), "0.0.0.0/0");
        assert_eq!(IfAddr::parse_any("10.89.0.0/24").unwrap().network(), IfAddr::parse_any("10.89.0.0/24").unwrap());
    }

    #[test]
    fn refuses_what_an_interface_cannot_hold() {
        for (s, why) in [
            ("10.89.0.1", "ADDRESS/PREFIX"),
            ("10.89.0.1/33", "prefix length"),
            ("10.89.0.1/+8", "prefix length"),
            ("2001:2::1/129", "prefix length"),
            ("10.89.0.1/", "prefix length"),
            ("nope/24", "not an IP address"),
            ("10.89.0.0/24", "network's own address"),
            ("10.89.0.255/24", "broadcast"),
            ("0.0.0.0/0", "unicast"),
            ("127.0.0.1/8", "unicast"),
            ("224.0.0.1/24", "unicast"),
            ("::/0", "unicast"),
            ("ff02::1/64", "unicast"),
        ] {
            let e = s.parse::<IfAddr>().unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
        assert!(serde_json::from_str::<IfAddr>("\"10.89.0.0/24\"").is_err());
    }
}
