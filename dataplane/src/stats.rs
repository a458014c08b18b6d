//! Counters the polling threads write and the control thread reads.
//!
//! Each `PortStats` is written by exactly one polling thread (a port has
//! one per thread that touches it), so updates are plain relaxed stores of
//! thread-local sums: no contended atomics on the packet path. Readers add
//! the per-thread copies up.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Declares [`DropReason`] from one list: variant, stable name, meaning.
macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)*) => {
        /// Why a frame was dropped. Every dropped frame is counted under one.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: [DropReason; [$(DropReason::$variant),*].len()] = [$(DropReason::$variant),*];

            /// The stable name shown by `rvsctl stats` and in metrics.
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

// Every drop reason, once: adding a line here counts it per port, shows it
// in `rvsctl stats` and labels it in the metrics; then use it.
drop_reasons! {
    /// Shorter than an Ethernet header.
    Runt => "runt",
    /// Longer than the largest frame a port buffer holds.
    Oversize => "oversize",
    /// A VLAN tag cut short, or an unsupported tag stack (802.1ad outer tag).
    BadVlan => "bad_vlan",
    /// Multicast or broadcast source MAC.
    BadSrcMac => "bad_src_mac",
    /// The frame's VLAN is not carried by the ingress or egress port.
    VlanFiltered => "vlan_filtered",
    /// The destination was learned on the port the frame came in on.
    Hairpin => "hairpin",
    /// The ingress port is not (or no longer) in a bridge.
    NoBridge => "no_bridge",
    /// The egress port's transmit ring was full.
    TxFull => "tx_full",
    /// No free buffer to copy a flooded frame or take a received one.
    NoBuffer => "no_buffer",
    /// The egress port is down or went away.
    PortDown => "port_down",
    /// A frame on an uplink that is not VXLAN for a local VTEP.
    NotVxlan => "not_vxlan",
    /// VXLAN flags other than the I flag alone.
    VxlanBadFlags => "vxlan_bad_flags",
    /// VXLAN to a local VTEP with a VNI no tunnel port has.
    VxlanUnknownVni => "vxlan_unknown_vni",
    /// VXLAN from an address that is not a remote of the tunnel.
    VxlanUnknownVtep => "vxlan_unknown_vtep",
    /// VXLAN headers or inner frame cut short.
    VxlanTruncated => "vxlan_truncated",
    /// The inner frame would not fit the uplink MTU once encapsulated.
    TunnelMtu => "tunnel_mtu",
    /// The next hop toward the remote VTEP is not resolved yet.
    NoNeighbor => "no_neighbor",
}

/// Number of drop reasons.
pub const DROP_REASONS: usize = DropReason::ALL.len();

/// Calls macro `$m` with the list of per-port counters (each with its
/// meaning), so that every form of a port's counters, here and in
/// `rvs-proto`, is generated from this one list. Drops by reason come on
/// top, from [`DropReason`].
#[macro_export]
macro_rules! with_port_counters {
    ($m:path) => {
        $m! {
            /// Frames received.
            rx_packets,
            /// Bytes received.
            rx_bytes,
            /// Frames sent.
            tx_packets,
            /// Bytes sent.
            tx_bytes,
            /// Source MACs not learned because the bridge was at its limit.
            learn_refused,
            /// Received frames decided to go to one port (for an uplink:
            /// VXLAN frames handed to their tunnel port).
            forwarded,
            /// Received frames decided to be flooded in their bridge and VLAN.
            flooded,
            /// Frames the kernel dropped before rvs received them (AF_XDP:
            /// receive ring full, frame larger than a buffer).
            kernel_drops,
            /// ARP requests rvs answered itself instead of flooding them.
            arp_suppressed,
            /// Neighbour solicitations rvs answered itself instead of
            /// flooding them.
            nd_suppressed,
            /// IP-MAC bindings not learned because the bridge's neighbour
            /// table was at its limit.
            neigh_refused,
        }
    };
}

macro_rules! define_port_counters {
    ($($(#[doc = $doc:literal])* $field:ident,)*) => {
        /// Counters of one port as seen by one polling thread.
        #[derive(Debug, Default)]
        pub struct PortStats {
            $($(#[doc = $doc])* pub $field: AtomicU64,)*
            /// Frames dropped, by reason (`DropReason as usize`).
            pub drops: [AtomicU64; DROP_REASONS],
        }

        /// A plain copy of port counters, for adding up and printing.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct PortCounters {
            $($(#[doc = $doc])* pub $field: u64,)*
            /// Drops by reason.
            pub drops: [u64; DROP_REASONS],
        }

        impl PortStats {
            /// A copy of the counters.
            pub fn read(&self) -> PortCounters {
                PortCounters {
                    $($field: self.$field.load(Relaxed),)*
                    drops: std::array::from_fn(|i| self.drops[i].load(Relaxed)),
                }
            }
        }

        impl PortCounters {
            /// Adds `other` into `self`.
            pub fn accumulate(&mut self, other: &PortCounters) {
                $(self.$field += other.$field;)*
                for (a, b) in self.drops.iter_mut().zip(other.drops) {
                    *a += b;
                }
            }
        }
    };
}

with_port_counters!(define_port_counters);

impl PortStats {
    /// Adds `n` to a counter. Only the owning thread writes, so a relaxed
    /// load and store (no read-modify-write) is exact.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Counts one dropped frame.
    #[inline]
    pub fn drop_one(&self, reason: DropReason) {
        Self::add(&self.drops[reason as usize], 1);
    }

    /// Counts `n` dropped frames.
    #[inline]
    pub fn drop_n(&self, reason: DropReason, n: u64) {
        Self::add(&self.drops[reason as usize], n);
    }
}

impl PortCounters {
    /// Total frames dropped.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// Calls macro `$m` with the list of per-thread counters users see (each
/// with its meaning, its metric name, kind and how many of the counter's
/// units make one of the metric's base unit: 1_000_000_000 nanoseconds to
/// the second), so that every form of them,
/// here, in `rvs-proto` and in the metrics, comes from this one list.
#[macro_export]
macro_rules! with_thread_counters {
    ($m:path) => {
        $m! {
            /// Frames received by this thread.
            packets => "rvs_pmd_packets_total", "counter", 1;
            /// TSC cycles in rounds that moved frames (0 where no TSC).
            busy_cycles => "rvs_pmd_busy_cycles_total", "counter", 1;
            /// TSC cycles in rounds that found nothing (sleep included).
            idle_cycles => "rvs_pmd_idle_cycles_total", "counter", 1;
            /// Nanoseconds in rounds that moved frames.
            busy_ns => "rvs_pmd_busy_seconds_total", "counter", 1_000_000_000;
            /// Nanoseconds in rounds that found nothing.
            idle_ns => "rvs_pmd_idle_seconds_total", "counter", 1_000_000_000;
            /// Flow cache hits.
            cache_hits => "rvs_flow_cache_hits_total", "counter", 1;
            /// Flow cache misses (decisions taken by the full pipeline).
            cache_misses => "rvs_flow_cache_misses_total", "counter", 1;
            /// Flow cache entries replaced by another flow.
            cache_evictions => "rvs_flow_cache_evictions_total", "counter", 1;
            /// Flow cache entries in use.
            cache_entries => "rvs_flow_cache_entries", "gauge", 1;
            /// 1 once the thread stopped on a panic (rvsd then shuts down
            /// and exits non-zero).
            failed => "rvs_pmd_failed", "gauge", 1;
            /// Buffers free in the thread's pool (read once a second).
            pool_free => "rvs_pmd_pool_free_buffers", "gauge", 1;
            /// Receive buffers its sockets may keep with the kernel, all
            /// together (at most half the pool).
            fill_share => "rvs_pmd_fill_share_buffers", "gauge", 1;
        }
    };
}

macro_rules! define_thread_stats {
    ($($(#[doc = $doc:literal])* $field:ident => $metric:literal, $kind:literal, $scale:literal;)*) => {
        /// Counters of one polling thread.
        #[derive(Debug, Default)]
        pub struct ThreadStats {
            $($(#[doc = $doc])* pub $field: AtomicU64,)*
            /// Poll rounds that moved at least one frame.
            pub busy_rounds: AtomicU64,
            /// Poll rounds that found nothing.
            pub idle_rounds: AtomicU64,
            /// The snapshot generation the thread runs.
            pub generation: AtomicU64,
        }
    };
}

with_thread_counters!(define_thread_stats);
