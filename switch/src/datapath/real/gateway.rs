//! A bridge's internal port: a tap named after the bridge in rvsd's own
//! namespace holding the bridge's gateway addresses, so the host reaches
//! the bridge's hosts, and routes and NATs their traffic further (as
//! docker0's address, or OVS's internal port).

use super::*;
use rvs_proto::config::IfAddr;

/// MTU of an internal port on a bridge without tunnels.
const DEFAULT_MTU: u32 = 1500;

impl Dp {
    /// Opens internal port `cfg` of bridge `bid`: its addresses must be on
    /// no other interface; then the tap (made or adopted), its MTU (the
    /// bridge's tunnels' inner MTU, so the host sends nothing a tunnel
    /// would drop, else 1500) and its addresses. All or nothing: a failure
    /// closes the port again and removes a tap this call made.
    pub(super) fn open_internal(&mut self, id: PortId, bid: BridgeId, cfg: &PortConfig) -> DpResult<Port> {
        check_free(&cfg.name, &cfg.addresses)?;
        let mut port = self.open_tap(id, cfg)?;
        port.kind = PortType::Internal;
        let mtu = self.tunnels_inner_mtu(bid).unwrap_or(DEFAULT_MTU);
        let created = matches!(port.role, Role::Tap { created: true, .. });
        let set = netlink::find_link(&cfg.name)
            .map_err(|e| e.to_string())
            .and_then(|l| l.ok_or_else(|| "its tap is gone".to_string()))
            .and_then(|l| {
                if created {
                    netlink::set_mac(l.index, internal_mac(&cfg.name)).map_err(|e| e.to_string())?;
                }
                if l.mtu != Some(mtu) {
                    netlink::set_mtu(l.index, mtu).map_err(|e| e.to_string())?;
                }
                sync_addresses(l.index, &cfg.addresses)
            });
        if let Err(e) = set {
            // The threads hold its handles: close it as a port, which also
            // removes a tap it made.
            self.ports[id.index()] = Some(port);
            self.remove_port(id);
            return Err(format!("port {}: {e}", cfg.name));
        }
        Ok(port)
    }

    /// The body of [`Datapath::set_addresses`].
    pub(super) fn set_gateway(&mut self, name: &str, addrs: &[IfAddr]) -> DpResult<()> {
        let id = self.port_id(name)?;
        if self.ports[id.index()].as_ref().map(|p| p.kind) != Some(PortType::Internal) {
            return Err(format!("port {name:?} is not an internal port"));
        }
        check_free(name, addrs)?;
        let link = netlink::find_link(name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("port {name}: its tap is gone"))?;
        sync_addresses(link.index, addrs).map_err(|e| format!("port {name}: {e}"))
    }

    /// Gives bridge `bid`'s internal port, if it has one, the MTU its
    /// tunnels now call for (after one came or went). A failure is a
    /// warning: the port keeps working, with the MTU it had.
    pub(super) fn gateway_follows_tunnels(&self, bid: BridgeId) {
        let Some(port) = self.ports.iter().flatten().find(|p| p.bridge == Some(bid) && p.kind == PortType::Internal)
        else {
            return;
        };
        let mtu = self.tunnels_inner_mtu(bid).unwrap_or(DEFAULT_MTU);
        let set = netlink::find_link(&port.name).and_then(|l| match l {
            Some(l) if l.mtu != Some(mtu) => netlink::set_mtu(l.index, mtu),
            _ => Ok(()),
        });
        if let Err(e) = set {
            tracing::warn!("port {}: the MTU stays as it was, not {mtu}: {e}", port.name);
        }
    }

    /// The least inner MTU of bridge `bid`'s tunnels, if it has any.
    fn tunnels_inner_mtu(&self, bid: BridgeId) -> Option<u32> {
        self.ports
            .iter()
            .flatten()
            .filter(|p| p.bridge == Some(bid))
            .filter_map(|p| match &p.role {
                Role::Vxlan(vx) => Some(self.max_inner_frame(vx).saturating_sub(14)),
                _ => None,
            })
            .min()
    }
}

/// Ok if no interface but `own` holds any of `addrs` (the kernel would take
/// a second copy, and the host's routing would then pick either).
fn check_free(own: &str, addrs: &[IfAddr]) -> DpResult<()> {
    if addrs.is_empty() {
        return Ok(());
    }
    let own_index = netlink::find_link(own).map_err(|e| e.to_string())?.map(|l| l.index);
    let all = netlink::all_addrs().map_err(|e| e.to_string())?;
    for a in addrs {
        if let Some(&(ix, _, _)) = all.iter().find(|(ix, addr, _)| *addr == a.addr && Some(*ix) != own_index) {
            let dev = netlink::link_name(ix).unwrap_or_else(|_| format!("index {ix}"));
            return Err(format!("gateway address {} is already on interface {dev}", a.addr));
        }
    }
    Ok(())
}

/// Makes `want` the addresses of interface `ifindex` (IPv6 link-local ones,
/// the kernel's own, stay): removes the others, then adds what is missing
/// (IPv6 without DAD: usable at once). On a failure puts back what it
/// changed, as far as it can.
fn sync_addresses(ifindex: u32, want: &[IfAddr]) -> Result<(), String> {
    let have = netlink::link_addrs(ifindex).map_err(|e| e.to_string())?;
    let wanted = |addr: IpAddr, prefix: u8| want.iter().any(|w| w.addr == addr && w.prefix == prefix);
    let stale: Vec<(IpAddr, u8)> = have.iter().copied().filter(|&(a, p)| !wanted(a, p) && !is_link_local(a)).collect();
    let missing: Vec<IfAddr> = want.iter().copied().filter(|w| !have.contains(&(w.addr, w.prefix))).collect();
    let mut removed = Vec::new();
    let mut added = Vec::new();
    let result = (|| -> Result<(), String> {
        for &(a, p) in &stale {
            netlink::del_address(ifindex, a, p).map_err(|e| e.to_string())?;
            removed.push((a, p));
        }
        for w in &missing {
            netlink::add_address(ifindex, w.addr, w.prefix).map_err(|e| e.to_string())?;
            added.push(*w);
        }
        Ok(())
    })();
    if result.is_err() {
        for w in added {
            let _ = netlink::del_address(ifindex, w.addr, w.prefix);
        }
        for (a, p) in removed {
            let _ = netlink::add_address(ifindex, a, p);
        }
    }
    result
}

/// The MAC of bridge `bridge`'s internal port: locally administered,
/// unicast, from a hash (FNV-1a) of this machine's id and the bridge's
/// name. The same on every making of the port, so the hosts' neighbour
/// entries for the gateway stay right when it is made again; another on
/// another machine, whose bridge of the same name may share the segment.
fn internal_mac(bridge: &str) -> MacAddr {
    let machine =
        std::fs::read("/etc/machine-id").or_else(|_| std::fs::read("/proc/sys/kernel/hostname")).unwrap_or_default();
    let h = rvs_dataplane::fnv::Fnv1a::default().write(&machine).write(b"/").write(bridge.as_bytes()).finish();
    let b = h.to_be_bytes();
    MacAddr([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
}

/// fe80::/10: an address the kernel gives every IPv6 interface itself.
fn is_link_local(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}
