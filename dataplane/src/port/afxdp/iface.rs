//! Interface facts the AF_XDP backend needs: index, queue count, MTU.

use std::ffi::CString;
use std::fs;
use std::io;

fn no_such(ifname: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no interface named {ifname}"))
}

/// The interface index of `ifname`, or a "no interface named X" error.
pub fn ifindex(ifname: &str) -> io::Result<u32> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
        return Err(no_such(ifname));
    }
    let c = CString::new(ifname).map_err(|_| no_such(ifname))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(no_such(ifname))
    } else {
        Ok(idx)
    }
}

/// Number of receive queues of `ifname` (entries `rx-*` in sysfs).
pub fn rx_queues(ifname: &str) -> io::Result<u32> {
    ifindex(ifname)?;
    let dir = fs::read_dir(format!("/sys/class/net/{ifname}/queues"))?;
    let mut n = 0;
    for e in dir {
        if e?.file_name().to_string_lossy().starts_with("rx-") {
            n += 1;
        }
    }
    Ok(n)
}

/// The MTU of `ifname`.
pub fn mtu(ifname: &str) -> io::Result<u32> {
    ifindex(ifname)?;
    let s = fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))?;
    s.trim().parse().map_err(|_| io::Error::other(format!("{ifname}: unreadable MTU {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_others_are_not() {
        assert_eq!(ifindex("lo").unwrap(), 1);
        assert!(rx_queues("lo").unwrap() >= 1);
        assert!(mtu("lo").unwrap() > 0);
        let e = ifindex("rvsx-none").unwrap_err();
        assert_eq!(e.to_string(), "no interface named rvsx-none");
        assert!(ifindex("x/../../y").is_err());
        assert!(ifindex("").is_err());
    }
}
