//! What the state machine answers without changing anything: lists,
//! `show`, the FDB, counters, traces, captures, threads and flows.

use super::*;

impl<D: Datapath> State<D> {
    pub(super) fn bridge_list(&self) -> Vec<BridgeSummary> {
        self.config
            .bridges
            .iter()
            .map(|b| BridgeSummary {
                name: b.name.clone(),
                aging_secs: b.aging_secs,
                max_macs: b.max_macs,
                ports: b.ports.len(),
                gateway: b.gateway().to_vec(),
            })
            .collect()
    }

    pub(super) fn uplink_list(&self) -> Vec<UplinkShow> {
        let status = self.dp.uplink_status();
        self.config
            .uplinks
            .iter()
            .map(|u| UplinkShow {
                config: u.clone(),
                status: status.iter().find(|s| s.name == u.name).cloned().unwrap_or_else(|| UplinkStatus {
                    name: u.name.clone(),
                    state: format!(
                        "down: {}",
                        self.down_uplinks.get(&u.name).map(String::as_str).unwrap_or("not in the datapath")
                    ),
                    xdp_mode: String::new(),
                    mtu: 0,
                    vteps: Vec::new(),
                    queues: Vec::new(),
                }),
            })
            .collect()
    }

    pub(super) fn show(&self) -> ShowResult {
        let status = self.dp.port_status();
        let bridges = self
            .config
            .bridges
            .iter()
            .map(|b| BridgeShow {
                name: b.name.clone(),
                aging_secs: b.aging_secs,
                max_macs: b.max_macs,
                ports: b
                    .ports
                    .iter()
                    .map(|p| PortShow {
                        config: p.clone(),
                        status: status.iter().find(|s| s.name == p.name).cloned().unwrap_or_else(|| PortStatus {
                            name: p.name.clone(),
                            bridge: b.name.clone(),
                            kind: p.kind.name().to_string(),
                            state: format!(
                                "down: {}",
                                self.down_ports.get(&p.name).map(String::as_str).unwrap_or("not in the datapath")
                            ),
                            xdp_mode: String::new(),
                            fast_path: p.fast_path.resolve(p.kind).name().to_string(),
                            queues: Vec::new(),
                            learned_macs: 0,
                            inner_mtu: None,
                            remotes: Vec::new(),
                        }),
                    })
                    .collect(),
                static_macs: b.static_macs.clone(),
                gateway: b.gateway().to_vec(),
            })
            .collect();
        ShowResult { uplinks: self.uplink_list(), bridges, threads: self.dp.threads() }
    }

    pub(super) fn fdb_show(
        &self,
        bridge: &str,
        after: Option<FdbCursor>,
        limit: Option<u32>,
    ) -> Result<FdbPage, String> {
        self.bridge_idx(bridge)?;
        let limit = match limit {
            None => FDB_PAGE_MAX,
            Some(n @ 1..=FDB_PAGE_MAX) => n,
            Some(n) => return Err(format!("invalid page size {n} (must be 1..={FDB_PAGE_MAX})")),
        };
        let after = match after {
            None => None,
            Some(c) => {
                Some((c.vlan, proto::parse_mac(&c.mac, false).map_err(|e| format!("invalid page cursor: {e}"))?))
            }
        };
        if self.down_bridges.contains_key(bridge) {
            return Ok(FdbPage::default());
        }
        self.dp.fdb_page(bridge, after, limit as usize)
    }

    pub(super) fn stats(&self, port: Option<&str>) -> Result<Vec<PortStatsInfo>, String> {
        let all = self.dp.port_stats();
        let Some(name) = port else {
            return Ok(all);
        };
        let Some((i, _)) = self.port_loc(name) else {
            return Err(format!("unknown port {name:?}"));
        };
        let mine: Vec<PortStatsInfo> = all.into_iter().filter(|s| s.name == name).collect();
        if !mine.is_empty() {
            return Ok(mine);
        }
        Ok(vec![PortStatsInfo {
            name: name.to_string(),
            bridge: self.config.bridges[i].name.clone(),
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            learn_refused: 0,
            forwarded: 0,
            flooded: 0,
            kernel_drops: 0,
            arp_suppressed: 0,
            nd_suppressed: 0,
            neigh_refused: 0,
            drops: Default::default(),
            link_downs: 0,
            kernel: Default::default(),
        }])
    }

    pub(super) fn trace(&self, bridge: &str, port: &str, frame: &str) -> Result<TraceResult, String> {
        let frame = rvs_proto::framedesc::parse(frame)?;
        let i = self.bridge_idx(bridge)?;
        if self.uplink_idx(port).is_none() {
            self.port_in_bridge(i, port)?;
        }
        for (what, down) in [("port", &self.down_ports), ("uplink", &self.down_uplinks)] {
            if let Some(why) = down.get(port) {
                return Err(format!("{what} {port:?} is down ({why})"));
            }
        }
        self.dp.trace(bridge, port, &frame)
    }

    /// Starts a capture on port or uplink `port` for a streaming client;
    /// one capture per port at a time.
    pub fn capture_start(
        &mut self,
        port: &str,
        dir: CaptureDirection,
        snaplen: u32,
    ) -> Result<Arc<CaptureRing>, String> {
        if !self.has_port(port) {
            return Err(format!("unknown port or uplink {port:?}"));
        }
        for (what, down) in [("port", &self.down_ports), ("uplink", &self.down_uplinks)] {
            if let Some(why) = down.get(port) {
                return Err(format!("{what} {port:?} is down ({why})"));
            }
        }
        if self.captures.contains_key(port) {
            return Err(format!("a capture already runs on {port:?}"));
        }
        let dir = match dir {
            CaptureDirection::In => Direction::In,
            CaptureDirection::Out => Direction::Out,
            CaptureDirection::Both => Direction::Both,
        };
        let ring = self.dp.capture_start(port, dir, snaplen)?;
        self.captures.insert(port.to_string(), ring.clone());
        Ok(ring)
    }

    /// Stops the capture on `port`, if one runs.
    pub fn capture_stop(&mut self, port: &str) {
        if let Some(ring) = self.captures.remove(port) {
            self.dp.capture_stop(port);
            *self.capture_drops.entry(port.to_string()).or_default() += ring.dropped();
        }
    }

    /// Frames captures dropped (the reader fell behind), per port or
    /// uplink that ever had one, running captures included.
    pub fn capture_drops(&self) -> Vec<(String, u64)> {
        let mut ports: Vec<&String> = self.capture_drops.keys().chain(self.captures.keys()).collect();
        ports.sort();
        ports.dedup();
        ports
            .into_iter()
            .map(|p| {
                let running = self.captures.get(p).map_or(0, |r| r.dropped());
                (p.clone(), self.capture_drops.get(p).copied().unwrap_or(0) + running)
            })
            .collect()
    }

    /// True if `name` is a configured port or uplink.
    pub fn has_port(&self, name: &str) -> bool {
        self.port_loc(name).is_some() || self.uplink_idx(name).is_some()
    }

    /// Polling threads, as `pmd_show` reports them.
    pub fn threads(&self) -> Vec<ThreadInfo> {
        self.dp.threads()
    }

    pub(super) fn flows_show(&self) -> Vec<FlowInfo> {
        self.dp.flows()
    }

    /// The core now polling `queue` of port or uplink `name`, as the
    /// datapath reports it.
    pub(super) fn polling_core(&self, name: &str, queue: u32) -> Option<usize> {
        let ports = self.dp.port_status().into_iter().filter(|p| p.name == name).flat_map(|p| p.queues);
        let uplinks = self.dp.uplink_status().into_iter().filter(|u| u.name == name).flat_map(|u| u.queues);
        ports.chain(uplinks).find(|&(q, _)| q == queue).map(|(_, core)| core)
    }
}
