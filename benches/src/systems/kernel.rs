//! The kernel's own forwarding: no switch (the generator's ceiling), the
//! Linux bridge, and two Linux bridges joined by kernel vxlan devices.

use super::*;

/// A and B on one veth pair: the generator straight into the sink.
pub fn ceiling() -> Result<Bed> {
    let (a, b) = hosts()?;
    ns::veth(&a, "eth0", &b, "eth0", 1500)?;
    addr(&a, "eth0", &format!("{A_IP}/24"))?;
    addr(&b, "eth0", &format!("{FAR_IP}/24"))?;
    let dst_mac = b.mac("eth0")?;
    Ok(Bed::new(a, b, vec![], "eth0", crate::frame::UDP_PORT, dst_mac))
}

/// A Linux bridge `br0` over a0 and b0.
pub fn linux_bridge() -> Result<Bed> {
    let (a, s, b) = l2_switch()?;
    s.ip(&["link", "add", "br0", "type", "bridge"])?;
    for dev in ["a0", "b0"] {
        s.ip(&["link", "set", dev, "master", "br0"])?;
    }
    s.ip(&["link", "set", "br0", "up"])?;
    let dst_mac = b.mac("eth0")?;
    Ok(Bed { gro: vec![(0, "a0")], ..Bed::new(a, b, vec![s], "eth0", crate::frame::UDP_PORT, dst_mac) })
}

/// In S, a Linux bridge over a0 and a kernel vxlan device to V.
pub fn kernel_vxlan() -> Result<Bed> {
    let a = Netns::new("a")?;
    let s = switch_with_a(&a)?;
    let v = far_vtep(&s)?;
    addr(&s, "up0", &format!("{LOCAL_VTEP}/24"))?;
    let port = VXLAN_PORT.to_string();
    s.ip(&[
        "link", "add", "vx0", "type", "vxlan", "id", VNI, "local", LOCAL_VTEP, "remote", FAR_VTEP, "dstport", &port,
        "dev", "up0",
    ])?;
    s.ip(&["link", "add", "br0", "type", "bridge"])?;
    for dev in ["a0", "vx0"] {
        s.ip(&["link", "set", dev, "master", "br0"])?;
        s.ip(&["link", "set", dev, "up"])?;
    }
    s.ip(&["link", "set", "br0", "up"])?;
    let dst_mac = v.mac("vx0")?;
    Ok(Bed { gro: vec![(0, "a0")], ..Bed::new(a, v, vec![s], "up0", VXLAN_PORT, dst_mac) })
}
