//! rvs: `rvsd --cores 1` inside the switch namespace, AF_XDP ports.

use super::*;

/// The core rvs polls on (the generator has core 0).
const CORES: &str = "1";

/// Bridge br0 over AF_XDP ports a0 and b0.
pub fn l2(bins: &Bins, nice: i32) -> Result<Bed> {
    let (a, b) = hosts()?;
    let s = switch_with_a(&a)?;
    ns::veth(&s, "b0", &b, "eth0", 1500)?;
    addr(&b, "eth0", &format!("{FAR_IP}/24"))?;
    let d = Rvsd::start(bins, &s, CORES, nice)?;
    d.ctl(&["bridge", "add", "br0"])?;
    for dev in ["a0", "b0"] {
        d.ctl(&["port", "add", "br0", dev, "--type", "afxdp"])?;
    }
    let dst_mac = b.mac("eth0")?;
    Ok(Bed {
        rvsd: Some(d),
        a,
        far: b,
        others: vec![s],
        sink_dev: "eth0",
        sink_port: crate::frame::UDP_PORT,
        dst_mac,
        gro: vec![],
    })
}

/// Bridge br0 over AF_XDP port a0 and a vxlan port over uplink up0 to the
/// kernel vxlan device in V.
pub fn vxlan(bins: &Bins, nice: i32) -> Result<Bed> {
    let a = Netns::new("a")?;
    let s = switch_with_a(&a)?;
    let v = far_vtep(&s)?;
    let d = Rvsd::start(bins, &s, CORES, nice)?;
    d.ctl(&["bridge", "add", "br0"])?;
    d.ctl(&["port", "add", "br0", "a0", "--type", "afxdp"])?;
    d.ctl(&["uplink", "add", "up0"])?;
    d.ctl(&[
        "port", "add", "br0", "vx42", "--type", "vxlan", "--vni", VNI, "--local", LOCAL_VTEP, "--remote", FAR_VTEP,
    ])?;
    let dst_mac = v.mac("vx0")?;
    Ok(Bed { rvsd: Some(d), a, far: v, others: vec![s], sink_dev: "up0", sink_port: VXLAN_PORT, dst_mac, gro: vec![] })
}
