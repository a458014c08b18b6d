//! Interface offloads through the ethtool ioctl (`SIOCETHTOOL`), on an
//! interface of the calling thread's network namespace: GRO (which gives a
//! veth NAPI, so it takes frames XDP redirects into it), and features by
//! their ethtool names (`ethtool -K DEV tx-vlan-hw-insert off`).

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `ETHTOOL_SGRO`: set generic receive offload.
const ETHTOOL_SGRO: u32 = 0x2c;
/// `ETHTOOL_GSTRINGS`: get a string set.
const ETHTOOL_GSTRINGS: u32 = 0x1b;
/// `ETHTOOL_GSSET_INFO`: get string set sizes.
const ETHTOOL_GSSET_INFO: u32 = 0x37;
/// `ETHTOOL_SFEATURES`: change features.
const ETHTOOL_SFEATURES: u32 = 0x3b;
/// `ETH_SS_FEATURES`: the string set of feature names.
const ETH_SS_FEATURES: u32 = 4;
/// `ETH_GSTRING_LEN`.
const GSTRING_LEN: usize = 32;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// The name of interface `ifindex`, or an error saying `what` failed.
fn ifname(ifindex: u32, what: &str) -> io::Result<(String, [libc::c_char; libc::IF_NAMESIZE])> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` is a writable array of IF_NAMESIZE bytes, what
    // if_indextoname may write (a NUL-terminated name); the result is checked.
    if unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) }.is_null() {
        let e = io::Error::last_os_error();
        let msg = if e.raw_os_error() == Some(libc::ENXIO) {
            format!("cannot {what} on interface {ifindex}: no such interface in this network namespace")
        } else {
            format!("cannot {what} on interface {ifindex}: cannot find its name: {e}")
        };
        return Err(io::Error::new(e.kind(), msg));
    }
    Ok((buf.iter().take_while(|&&c| c != 0).map(|&c| c as u8 as char).collect(), buf))
}

/// An ethtool request on one interface.
struct Ethtool {
    sock: OwnedFd,
    name: [libc::c_char; libc::IF_NAMESIZE],
}

impl Ethtool {
    fn open(name: [libc::c_char; libc::IF_NAMESIZE]) -> io::Result<Ethtool> {
        // SAFETY: plain socket creation; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just created and is owned by nothing else.
        Ok(Ethtool { sock: unsafe { OwnedFd::from_raw_fd(raw) }, name })
    }

    /// `SIOCETHTOOL` with `data` (a command struct, starting with its
    /// `cmd`, that lives for the call).
    fn call(&self, data: *mut c_void) -> io::Result<()> {
        // SAFETY: `ifreq` is plain old data (a name and a union of integers
        // and pointers); all zeroes is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        // `name` holds at most IF_NAMESIZE - 1 name bytes and a NUL.
        ifr.ifr_name = self.name;
        ifr.ifr_ifru.ifru_data = data.cast();
        // SAFETY: SIOCETHTOOL reads the `ifreq` and, through `ifru_data`,
        // the command struct, which the caller keeps alive and sized for
        // what the command reads and writes.
        if unsafe { libc::ioctl(self.sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The feature names, in bit order.
    fn feature_names(&self) -> io::Result<Vec<String>> {
        // struct ethtool_sset_info { cmd, reserved, sset_mask: u64, data[] }.
        let mut info = [0u32; 6];
        info[0] = ETHTOOL_GSSET_INFO;
        info[2] = 1 << ETH_SS_FEATURES;
        self.call(info.as_mut_ptr().cast())?;
        let count = info[4] as usize;
        // struct ethtool_gstrings { cmd, string_set, len, data[len * 32] }.
        let mut buf = vec![0u8; 12 + count * GSTRING_LEN];
        buf[0..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
        buf[4..8].copy_from_slice(&ETH_SS_FEATURES.to_ne_bytes());
        buf[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
        self.call(buf.as_mut_ptr().cast())?;
        Ok(buf[12..]
            .chunks(GSTRING_LEN)
            .map(|c| String::from_utf8_lossy(&c[..c.iter().position(|&b| b == 0).unwrap_or(c.len())]).into_owned())
            .collect())
    }
}

/// Turns generic receive offload on or off on interface `ifindex` of the
/// calling thread's network namespace (like `ethtool -K NAME gro on|off`),
/// and returns the interface's name. Errors name the interface.
pub fn set_gro(ifindex: u32, on: bool) -> io::Result<String> {
    let state = if on { "on" } else { "off" };
    let (name, raw) = ifname(ifindex, &format!("turn GRO {state}"))?;
    let ctx =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot turn GRO {state} on {name} (index {ifindex}): {e}"));
    let eth = Ethtool::open(raw).map_err(ctx)?;
    let mut value = EthtoolValue { cmd: ETHTOOL_SGRO, data: u32::from(on) };
    eth.call((&mut value as *mut EthtoolValue).cast()).map_err(ctx)?;
    Ok(name)
}

/// Sets features of interface `ifindex` by their ethtool names (like
/// `ethtool -K NAME tx-vlan-hw-insert off`). A name the interface does
/// not have is an error; errors name the interface.
pub fn set_features(ifindex: u32, features: &[(&str, bool)]) -> io::Result<()> {
    let (name, raw) = ifname(ifindex, "set features")?;
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("cannot set features of {name} (index {ifindex}): {e}"));
    let eth = Ethtool::open(raw).map_err(ctx)?;
    let names = eth.feature_names().map_err(ctx)?;
    let blocks = names.len().div_ceil(32);
    // struct ethtool_sfeatures { cmd, size, features[size] { valid, requested } }.
    let mut req = vec![0u32; 2 + 2 * blocks];
    req[0] = ETHTOOL_SFEATURES;
    req[1] = blocks as u32;
    for &(feature, on) in features {
        let bit = names
            .iter()
            .position(|n| n == feature)
            .ok_or_else(|| ctx(io::Error::new(io::ErrorKind::NotFound, format!("no feature named {feature:?}"))))?;
        req[2 + 2 * (bit / 32)] |= 1 << (bit % 32);
        if on {
            req[3 + 2 * (bit / 32)] |= 1 << (bit % 32);
        }
    }
    eth.call(req.as_mut_ptr().cast()).map_err(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_is_named() {
        let e = set_gro(u32::MAX, true).unwrap_err();
        assert!(e.to_string().contains(&format!("interface {}", u32::MAX)), "{e}");
        let e = set_features(u32::MAX, &[("tx-vlan-hw-insert", false)]).unwrap_err();
        assert!(e.to_string().contains(&format!("interface {}", u32::MAX)), "{e}");
    }

    #[test]
    fn features_are_set_by_name() {
        if !crate::testing::require_root("ethtool features", &[]) {
            return;
        }
        // A veth pair made here (both features on by default).
        let name = format!("rvse{}", std::process::id() % 100_000);
        let ok = std::process::Command::new("ip")
            .args(["link", "add", &name, "type", "veth", "peer", "name", &format!("{name}p")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot make a veth");
        let features = || {
            let out = std::process::Command::new("ethtool").args(["-k", &name]).output().expect("ethtool -k");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let index: u32 =
            std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).unwrap().trim().parse().unwrap();
        let r = set_features(index, &[("tx-vlan-hw-insert", false), ("tx-vlan-stag-hw-insert", false)]);
        let after = features();
        let e = set_features(index, &[("no-such-feature", false)]).unwrap_err();
        let _ = std::process::Command::new("ip").args(["link", "del", &name]).status();
        r.unwrap();
        assert!(after.contains("tx-vlan-offload: off") || after.contains("tx-vlan-hw-insert: off"), "{after}");
        assert!(after.contains("tx-vlan-stag-hw-insert: off"), "{after}");
        assert!(e.to_string().contains("no feature named \"no-such-feature\""), "{e}");
    }
}
