//! rvs: `rvsd --cores 1` inside the switch namespace, AF_XDP ports.

use super::*;

/// The core rvs polls on (the generator has core 0).
const CORES: &str = "1";

/// Bridge br0 over AF_XDP ports a0 and b0, added with `port_args` (e.g.
/// the kernel executor). With an executor, B's MAC is a static entry: the
/// sink never sends, and the kernel carries only known destinations.
pub fn l2(bins: &Bins, nice: i32, port_args: &[&str]) -> Result<Bed> {
    let (a, s, b) = l2_switch()?;
    let d = Rvsd::start(bins, &s, CORES, nice)?;
    d.ctl(&["bridge", "add", "br0"])?;
    for dev in ["a0", "b0"] {
        d.ctl(&[&["port", "add", "br0", dev, "--type", "afxdp"], port_args].concat())?;
    }
    let dst_mac = b.mac("eth0")?;
    if !port_args.contains(&"off") {
        d.ctl(&["fdb", "add", "br0", &mac_string(dst_mac), "--port", "b0"])?;
    }
    // Without XDP on a0 (the tc executor) the generator's redirected frames
    // need GRO there, as they do on the Linux bridge's port.
    let gro = if port_args.contains(&"tc") { vec![(0, "a0")] } else { vec![] };
    Ok(Bed { switch: Some(Box::new(d)), gro, ..Bed::new(a, b, vec![s], "eth0", crate::frame::UDP_PORT, dst_mac) })
}

/// Bridge br0 over AF_XDP port a0 and a vxlan port over uplink up0 to the
/// kernel vxlan device in V, with executor `ex` on a0 (`off`: the tunnel
/// too, all in userspace). With an executor, V's MAC is a static entry
/// behind the tunnel, as in [`l2`].
pub fn vxlan(bins: &Bins, nice: i32, ex: &str) -> Result<Bed> {
    let a = Netns::new("a")?;
    let s = switch_with_a(&a)?;
    let v = far_vtep(&s)?;
    addr(&s, "up0", &format!("{LOCAL_VTEP}/24"))?;
    let d = Rvsd::start(bins, &s, CORES, nice)?;
    d.ctl(&["bridge", "add", "br0"])?;
    d.ctl(&["port", "add", "br0", "a0", "--type", "afxdp", "--fast-path", ex])?;
    d.ctl(&["uplink", "add", "up0"])?;
    let tunnel_ex = if ex == "off" { "off" } else { "xdp" };
    d.ctl(&[
        "port",
        "add",
        "br0",
        "vx42",
        "--type",
        "vxlan",
        "--vni",
        VNI,
        "--local",
        LOCAL_VTEP,
        "--remote",
        FAR_VTEP,
        "--fast-path",
        tunnel_ex,
    ])?;
    let dst_mac = v.mac("vx0")?;
    if ex != "off" {
        d.ctl(&["fdb", "add", "br0", &mac_string(dst_mac), "--port", "vx42"])?;
    }
    let gro = if ex == "tc" { vec![(0, "a0")] } else { vec![] };
    Ok(Bed { switch: Some(Box::new(d)), gro, ..Bed::new(a, v, vec![s], "up0", VXLAN_PORT, dst_mac) })
}
