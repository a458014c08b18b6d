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
    Ok(Bed {
        rvsd: None,
        a,
        far: b,
        others: vec![],
        sink_dev: "eth0",
        sink_port: crate::frame::UDP_PORT,
        dst_mac,
        gro: vec![],
    })
}

/// A switch namespace S with host A and B on ports a0 and b0.
fn l2_switch() -> Result<(Netns, Netns, Netns)> {
    let (a, b) = hosts()?;
    let s = switch_with_a(&a)?;
    ns::veth(&s, "b0", &b, "eth0", 1500)?;
    addr(&b, "eth0", &format!("{FAR_IP}/24"))?;
    Ok((a, s, b))
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
    Ok(Bed {
        rvsd: None,
        a,
        far: b,
        others: vec![s],
        sink_dev: "eth0",
        sink_port: crate::frame::UDP_PORT,
        dst_mac,
        gro: vec![(0, "a0")],
    })
}

/// In S, a Linux bridge over a0 and a kernel vxlan device to V.
pub fn kernel_vxlan() -> Result<Bed> {
    let a = Netns::new("a")?;
    let s = switch_with_a(&a)?;
    let v = far_vtep(&s)?;
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
    Ok(Bed {
        rvsd: None,
        a,
        far: v,
        others: vec![s],
        sink_dev: "up0",
        sink_port: VXLAN_PORT,
        dst_mac,
        gro: vec![(0, "a0")],
    })
}
