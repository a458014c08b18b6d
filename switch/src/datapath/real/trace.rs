//! `rvsctl trace`: a frame run through the polling threads' own decision
//! code, with every step written down.

use super::*;
use rvs_dataplane::neigh::Glean;
use rvs_dataplane::responder;

impl Dp {
    /// The address of remote `r` of tunnel port `port`, if it is one.
    pub(super) fn remote_ip(&self, port: PortId, r: u16) -> Option<String> {
        match self.ports.get(port.index()).and_then(Option::as_ref).map(|p| &p.role) {
            Some(Role::Vxlan(vx)) if r != NO_REMOTE => vx.remotes.get(usize::from(r)).map(|x| x.ip.to_string()),
            _ => None,
        }
    }

    /// What sending a traced frame to port `out` (toward remote `remote`
    /// of a tunnel, or every remote) does, decided by the same
    /// [`egress`] steps the polling loop acts on.
    pub(super) fn trace_output(
        &self,
        snap: &Snapshot,
        out: PortId,
        remote: u16,
        v: &pipeline::Verdict,
        frame: &[u8],
    ) -> Vec<TraceOutput> {
        let name = self.port_name(out);
        let dropped = |tag: String, r: DropReason| TraceOutput {
            port: name.clone(),
            tag,
            dropped: Some(r.name().into()),
            ..Default::default()
        };
        let plan = match egress::port_plan(snap, out, v.vid, v.tagged) {
            Ok(p) => p,
            Err(r) => return vec![dropped(String::new(), r)],
        };
        let tag = match plan.edit {
            TagEdit::Keep => "none".to_string(),
            TagEdit::Push(vid) => format!("push {vid}"),
            TagEdit::Pop => "pop".to_string(),
            TagEdit::Rewrite(vid) => format!("rewrite {vid}"),
        };
        // The frame as it leaves, with the headroom a push needs.
        let mut buf = vec![0u8; vlan::TAG_LEN];
        buf.extend_from_slice(frame);
        let Some((off, len)) = egress::edit_tag(&mut buf, vlan::TAG_LEN, frame.len(), plan.edit) else {
            return vec![dropped(tag, DropReason::BadVlan)];
        };
        let PortKind::Vxlan(t) = &plan.port.kind else {
            return vec![TraceOutput { port: name, tag, ..Default::default() }];
        };
        let targets = match egress::tunnel_plan(t, len, remote) {
            Ok(r) => r,
            Err(r) => return vec![dropped(tag, r)],
        };
        let sport = vxlan::src_port(vxlan::flow_hash(&buf[off..off + len]));
        let ttl = match self.ports.get(out.index()).and_then(Option::as_ref).map(|p| &p.role) {
            Some(Role::Vxlan(vx)) => vx.cfg.ttl,
            _ => 0,
        };
        let src_mac = match self.ports.get(t.uplink.index()).and_then(Option::as_ref).map(|p| &p.role) {
            Some(Role::Uplink { mac, .. }) => mac.to_string(),
            _ => String::new(),
        };
        targets
            .map(|r| TraceOutput {
                port: name.clone(),
                tag: tag.clone(),
                vxlan: Some(TraceVxlan {
                    remote: t.remotes[r].ip.to_string(),
                    local: t.local.to_string(),
                    uplink: self.port_name(t.uplink),
                    src_mac: src_mac.clone(),
                    next_hop_mac: self.next_hop_of(out, r).map(|m| m.to_string()),
                    vni: t.vni,
                    udp_src: sport,
                    udp_dst: t.dst_port,
                    ttl,
                }),
                dropped: egress::remote_outer(t, r).err().map(|e| e.name().into()),
            })
            .collect()
    }

    /// The body of [`Datapath::trace`].
    pub(super) fn trace_frame(&self, bridge: &str, port: &str, frame: &[u8]) -> DpResult<TraceResult> {
        let id = self.port_id(port)?;
        let p = self.ports[id.index()].as_ref().expect("port_id found it");
        let is_uplink = matches!(p.role, Role::Uplink { .. });
        if !is_uplink && self.bridge_name(p.bridge) != bridge {
            return Err(format!("port {port:?} is not in bridge {bridge:?}"));
        }
        let snap = self.snap.clone();
        let now = self.now();
        let mut steps = Vec::new();
        let mut step = |stage: &str, what: String| steps.push((stage.to_string(), what));
        step("input", format!("{} bytes on {port}", frame.len()));
        let hex = rvs_proto::framedesc::to_hex(frame);
        let (mut ingress, mut remote, mut frame) = (id, NO_REMOTE, frame.to_vec());
        if is_uplink {
            match pipeline::decap(&snap, &frame) {
                Ok(x) => {
                    let via = match self.ports.get(x.port.index()).and_then(Option::as_ref).map(|p| &p.role) {
                        Some(Role::Vxlan(vx)) => vx.remotes.get(usize::from(x.remote)).map(|r| r.ip.to_string()),
                        _ => None,
                    };
                    step(
                        "decap",
                        format!(
                            "VXLAN from {} to tunnel port {}: inner frame of {} bytes",
                            via.unwrap_or_default(),
                            self.port_name(x.port),
                            x.len
                        ),
                    );
                    frame = frame[x.inner..x.inner + x.len].to_vec();
                    (ingress, remote) = (x.port, x.remote);
                }
                Err(r) => {
                    step("decap", format!("dropped: {}", r.name()));
                    return Ok(TraceResult {
                        steps,
                        decision: format!("drop:{}", r.name()),
                        outputs: Vec::new(),
                        frame: hex,
                    });
                }
            }
        }
        match EthernetFrame::new_checked(&frame[..]) {
            Some(eth) => step(
                "parse",
                format!(
                    "{} > {}, {}",
                    eth.src(),
                    eth.dst(),
                    match vlan::parse(&frame) {
                        Ok(vlan::Tag::Dot1q { vid, pcp_dei }) => format!("802.1Q vlan {vid} pcp {}", pcp_dei >> 1),
                        Ok(vlan::Tag::Untagged) => format!("ethertype {:#06x}", eth.ethertype()),
                        Err(e) => format!("bad VLAN tag ({e:?})"),
                    }
                ),
            ),
            None => step("parse", "shorter than an Ethernet header".into()),
        }
        let v = pipeline::dry_run(&snap, ingress, remote, &frame, now);
        if v.vid != Vid(0) {
            step(
                "vlan",
                format!("VLAN {}{}", v.vid, if v.tagged { " (tagged on arrival)" } else { " (untagged on arrival)" }),
            );
        } else if let Action::Drop(r @ (DropReason::VlanFiltered | DropReason::BadVlan)) = v.action {
            let carries = match snap.port(ingress).map(|p| &p.vlan) {
                Some(VlanMode::Access(a)) => format!("an access port of VLAN {a}"),
                Some(VlanMode::Trunk { allowed, native }) => {
                    let list: Vec<String> = allowed.iter().map(|x| x.to_string()).collect();
                    let native = native.map(|n| format!(", untagged in {n}")).unwrap_or_default();
                    format!("a trunk of VLANs {}{native}", list.join(","))
                }
                None => "not in a bridge".to_string(),
            };
            step("vlan", format!("{}: {} is {carries}", r.name(), self.port_name(ingress)));
        }
        if let Some(l) = v.learn {
            let here = self.port_name(ingress);
            step(
                "learn",
                match l {
                    Learn::Known | Learn::Refreshed => format!("source MAC known on {here}"),
                    Learn::New => format!("source MAC would be learned on {here}"),
                    Learn::Moved { from } => {
                        format!("source MAC would move to {here} from {}", self.port_name(from.port))
                    }
                    Learn::Refused => "source MAC not learned: the bridge is at its MAC limit".to_string(),
                    Learn::Static => "source MAC not moved: a static entry holds it elsewhere".to_string(),
                },
            );
        }
        let br = self.ports.get(ingress.index()).and_then(Option::as_ref).and_then(|p| snap.bridge(p.bridge?));
        if let (Some(msg), Some(br), true) = (responder::inspect(&frame), br, v.vid != Vid(0)) {
            step("neigh", neigh_step(&msg, v.glean, br.neigh.as_ref(), v.vid));
        }
        if let (Some(eth), Some(br)) = (EthernetFrame::new_checked(&frame[..]), br) {
            if v.vid != Vid(0) && !eth.dst().is_multicast() {
                step(
                    "fdb",
                    match br.fdb.lookup_dest(eth.dst(), v.vid) {
                        Some(d) => {
                            let at = self.port_name(d.port);
                            let via =
                                self.remote_ip(d.port, d.remote).map(|ip| format!(" via {ip}")).unwrap_or_default();
                            // Trace is rare: a scan for the entry's age is fine here.
                            let entry = br.fdb.entries().into_iter().find(|e| e.mac == eth.dst() && e.vid == v.vid);
                            let how = match entry {
                                Some(e) if e.is_static => ", static".to_string(),
                                Some(e) => format!(", learned {} s ago", now.saturating_sub(e.last_seen)),
                                None => String::new(),
                            };
                            format!("hit: {} vlan {} on {at}{via}{how}", eth.dst(), v.vid)
                        }
                        None => format!("miss: {} vlan {} unknown", eth.dst(), v.vid),
                    },
                );
            } else if v.vid != Vid(0) {
                step("fdb", format!("{} is a group address: no lookup", eth.dst()));
            }
        }
        if let Some(key) = FlowKey::of(ingress, remote, &frame) {
            let mut found = None;
            for t in &self.threads {
                let (tx, rx) = channel::bounded(1);
                if t.tx.send(Command::PeekFlow(key, tx)).is_ok() {
                    if let Ok(Some((_, hits))) = rx.recv_timeout(Duration::from_secs(1)) {
                        found = Some((t.core, hits));
                        break;
                    }
                }
            }
            step(
                "flow cache",
                match found {
                    Some((core, hits)) => format!("hit on core {core} ({hits} frames so far)"),
                    None => "miss: the next such frame takes the full pipeline, then is cached".into(),
                },
            );
        }
        let decision = match v.action {
            Action::Drop(r) => format!("drop:{}", r.name()),
            Action::Unicast(_) => "output".into(),
            Action::Flood(_) => "flood".into(),
            Action::Answer(p) => format!("answer:{}", p.name()),
        };
        step("decision", decision.clone());
        let (mut ingress_on, _) = self.kernel_flags(ingress);
        // Out of a tunnel: the uplink's program knows a remote by its outer
        // headers in the kernel (resolved, IPv4).
        if let Some(PortKind::Vxlan(t)) = snap.port(ingress).map(|p| &p.kind) {
            ingress_on &= fastpath::kernel_has_remote(t, usize::from(remote));
        }
        let ex = self.executor(ingress);
        let carrier = ex
            .and_then(|ex| fastpath::carries(ex, &snap, &frame, &v, ingress_on, |p| self.kernel_flags(p).1.is_some()));
        let name = |ex| if ex == Some(fastpath::Executor::Tc) { "tc" } else { "xdp" };
        step(
            "executor",
            match carrier {
                Some(out) => {
                    format!("{}: the kernel carries it to {} (rvs does not see it)", name(ex), self.port_name(out))
                }
                None if ingress_on => format!("rvs: the {} executor leaves it to the polling threads", name(ex)),
                None => "rvs".into(),
            },
        );
        let mut outputs = Vec::new();
        for (o, r) in egress::outputs(&snap, &v, ingress) {
            outputs.extend(self.trace_output(&snap, o, r, &v, &frame));
        }
        Ok(TraceResult { steps, decision, outputs, frame: hex })
    }
}

/// What the neighbour table makes of an ARP or ND frame, for a trace.
fn neigh_step(msg: &responder::NeighMsg, glean: Option<Glean>, table: &NeighTable, vid: Vid) -> String {
    let mut out = Vec::new();
    if let (Some((ip, mac)), Some(g)) = (msg.binding, glean) {
        out.push(match g {
            Glean::Known | Glean::Refreshed => format!("{ip} -> {mac} known"),
            Glean::New => format!("{ip} -> {mac} would be learned"),
            Glean::Refused => format!("{ip} -> {mac} not learned: the neighbour table is at its limit"),
            Glean::Static => format!("{ip} -> {mac} not learned: a static binding holds {ip}"),
        });
    }
    out.push(match msg.target.map(|t| (t, table.lookup(t, vid))) {
        Some((t, Some((mac, source)))) => format!("asks for {t}: bound to {mac} ({})", source.name()),
        Some((t, None)) => format!("asks for {t}: not bound, flooded"),
        None => format!("{}: not a request rvs answers", msg.proto.name()),
    });
    out.join("; ")
}
