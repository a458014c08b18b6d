//! Polling threads: what each one polls, its flow cache, and moving a
//! receive queue from one to another.

use super::*;

impl Dp {
    /// The thread with the fewest receive queues.
    pub(super) fn least_loaded(&self) -> usize {
        let mut load = vec![0usize; self.threads.len()];
        for p in self.ports.iter().flatten() {
            for &(_, t, rx) in &p.handles {
                if rx {
                    load[t] += 1;
                }
            }
        }
        (0..load.len()).min_by_key(|&i| (load[i], i)).unwrap_or(0)
    }

    /// Receiving AF_XDP sockets per thread (taps keep no receive buffers).
    fn rx_sockets(&self) -> Vec<usize> {
        let mut n = vec![0usize; self.threads.len()];
        for p in self.ports.iter().flatten().filter(|p| p.link.is_some()) {
            for &(_, t, rx) in &p.handles {
                if rx {
                    n[t] += 1;
                }
            }
        }
        n
    }

    /// Refuses `queues` more receiving sockets for `name`, spread over the
    /// threads from `base` as `attach_xsk` spreads them, where a thread
    /// would carry more than its pool can give receive buffers to.
    pub(super) fn check_rx_room(&self, name: &str, base: usize, queues: u32) -> DpResult<()> {
        let mut n = self.rx_sockets();
        let threads = n.len();
        for q in 0..queues as usize {
            n[(base + q) % threads] += 1;
        }
        let max = max_rx_sockets(POOL_FRAMES);
        match (0..n.len()).find(|&t| n[t] > max) {
            None => Ok(()),
            Some(t) => Err(format!(
                "{name}: the polling thread on core {} would carry {} receive queues; its pool of {POOL_FRAMES} \
                 buffers feeds at most {max} (open fewer with --queues, or give rvsd more cores)",
                self.threads[t].core, n[t]
            )),
        }
    }

    /// The body of [`Datapath::threads`].
    pub(super) fn thread_infos(&self) -> Vec<ThreadInfo> {
        self.threads
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let rx_queues = self
                    .ports
                    .iter()
                    .flatten()
                    .flat_map(|p| p.handles.iter().filter(|h| h.1 == i && h.2).map(|h| (p.name.clone(), h.0)))
                    .collect();
                ThreadInfo::new(t.core, rx_queues, &t.stats)
            })
            .collect()
    }

    /// The body of [`Datapath::flows`].
    pub(super) fn flow_infos(&self) -> Vec<FlowInfo> {
        let mut out = Vec::new();
        for t in &self.threads {
            let (tx, rx) = channel::bounded(1);
            if t.tx.send(Command::DumpFlows(tx)).is_err() {
                continue;
            }
            let Ok(flows) = rx.recv_timeout(Duration::from_secs(2)) else { continue };
            for f in flows {
                let port = self.ports.get(f.key.ingress().index()).and_then(Option::as_ref);
                let remote_ip = |p: Option<&Port>, r: u16| match p.map(|p| &p.role) {
                    Some(Role::Vxlan(vx)) if r != NO_REMOTE => vx.remotes.get(usize::from(r)).map(|x| x.ip.to_string()),
                    _ => None,
                };
                let action = match f.verdict.action {
                    Action::Unicast(o) => {
                        let out_port = self.ports.get(o.index()).and_then(Option::as_ref);
                        match remote_ip(out_port, f.verdict.remote) {
                            Some(ip) => format!("output:{}->{ip}", self.port_name(o)),
                            None => format!("output:{}", self.port_name(o)),
                        }
                    }
                    Action::Flood(_) => "flood".to_string(),
                    Action::Answer(p) => format!("answer:{}", p.name()),
                    Action::Drop(r) => format!("drop:{}", r.name()),
                };
                out.push(FlowInfo {
                    core: t.core,
                    bridge: port.map_or_else(String::new, |p| self.bridge_name(p.bridge).to_string()),
                    in_port: self.port_name(f.key.ingress()),
                    remote: remote_ip(port, f.key.remote()),
                    src: f.key.src().to_string(),
                    dst: f.key.dst().to_string(),
                    vlan: f.verdict.vid.into(),
                    action,
                    hits: f.hits,
                });
            }
        }
        out
    }

    /// The body of [`Datapath::pmd_assign`].
    pub(super) fn move_queue(&mut self, port: &str, queue: u32, core: usize) -> DpResult<()> {
        let id = self.port_id(port)?;
        let target = self
            .threads
            .iter()
            .position(|t| t.core == core)
            .ok_or_else(|| format!("no polling thread on core {core} (rvsd --cores)"))?;
        let p = self.ports[id.index()].as_ref().expect("port_id found it");
        let Some(&(_, from, _)) = p.handles.iter().find(|h| h.0 == queue && h.2) else {
            return Err(format!("{port:?} has no receive queue {queue}"));
        };
        if from == target {
            return Ok(());
        }
        if matches!(p.kind, PortType::Tap | PortType::Internal) {
            // Every thread holds a handle on a tap; only who receives moves.
            let _ = self.threads[from].tx.send(Command::SetRx { id, rx: false });
            let _ = self.threads[target].tx.send(Command::SetRx { id, rx: true });
            let p = self.ports[id.index()].as_mut().expect("port_id found it");
            for h in p.handles.iter_mut() {
                h.2 = h.1 == target;
            }
            return Ok(());
        }
        if p.xdp.is_none() {
            return Err(format!("{port:?} has no queues to move"));
        }
        self.check_rx_room(port, target, 1)?;
        // An AF_XDP socket lives in its thread's UMEM: close it there, then
        // open the queue again in the target thread's UMEM.
        let (done_tx, done_rx) = channel::bounded(1);
        let _ = self.threads[from].tx.send(Command::RemoveQueue { id, queue, done: done_tx });
        let _ = done_rx.recv_timeout(Duration::from_secs(5));
        self.ports[id.index()].as_mut().expect("port_id found it").handles.retain(|h| h.0 != queue);
        let p = self.ports[id.index()].as_ref().expect("port_id found it");
        let xdp = p.xdp.as_ref().expect("checked above");
        // A `tc` executor port's queue is two sockets, receiving on its
        // miss device: opened the same way as when the port came up.
        let miss = p.link.as_ref().and_then(|l| l.tc.as_ref()).map(|tc| &tc.miss);
        let open = |t: usize| self.open_queue(&p.name, xdp, miss, queue, t);
        // If the target thread cannot take it, the queue goes back home.
        let (sock, placed, result) = match open(target) {
            Ok(s) => (s, target, Ok(())),
            Err(e) => {
                let back = open(from).map_err(|e2| format!("{e}; and back on its thread: {e2}"))?;
                (back, from, Err(e))
            }
        };
        let stats = Arc::new(PortStats::default());
        let p = self.ports[id.index()].as_mut().expect("port_id found it");
        p.stats.push(stats.clone());
        p.handles.push((queue, placed, true));
        let lp = LocalPort { id, queue, port: Some(sock), rx: true, stats };
        let _ = self.threads[placed].tx.send(Command::AddPort(lp));
        self.publish();
        result
    }
}
