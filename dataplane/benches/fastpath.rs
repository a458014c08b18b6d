//! The kernel executors' programs alone: their cost per frame as the
//! kernel times them (`BPF_PROG_TEST_RUN`), for a known-unicast hit with
//! 1, 1,000 and 100,000 MACs in the kernel's table, the frames going to
//! 1, 1,000 or all 100,000 of them in turn (so that many active MACs miss
//! the CPU's caches as they would). The target: 100,000 MACs cost at most
//! 2× one.
//!
//! `sudo cargo bench -p rvs-dataplane --bench fastpath` (needs root; says
//! so and measures nothing without it).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rvs_dataplane::bpf;
use rvs_dataplane::fastpath::program::{program, Hook};
use rvs_dataplane::fastpath::{Executor, KernelTables};
use rvs_dataplane::fdb::Dest;
use rvs_dataplane::ids::{BridgeId, PortId, Vid};
use rvs_dataplane::snapshot::{PortKind, VlanMode};
use rvs_dataplane::testing::{self, port};
use rvs_dataplane::wire::MacAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// (MACs in the table, MACs the frames go to).
const CASES: [(usize, usize); 4] = [(1, 1), (1_000, 1_000), (100_000, 1_000), (100_000, 100_000)];
/// A device index the programs send to; test runs send nothing.
const DEVICE: u32 = 1;

/// The i-th destination MAC.
fn mac(i: usize) -> MacAddr {
    let b = (i as u32).to_be_bytes();
    MacAddr([2, 0xd, b[0], b[1], b[2], b[3]])
}

/// Tables with a source on p0 and `macs` destinations on p1, and port
/// p0's program for `ex` (the XSKMAP it misses to, kept open).
fn setup(ex: Executor, macs: usize) -> (KernelTables, OwnedFd, OwnedFd) {
    let tables = KernelTables::new(4, 1 << 17).expect("kernel tables");
    for id in 0..2 {
        tables.set_port(&port(id, VlanMode::Access(Vid(1)), PortKind::Plain), true, Some(DEVICE)).expect("port");
    }
    tables.set_mac(BridgeId(0), testing::mac(0xa), Vid(1), Dest::port(PortId(0)), false).expect("source");
    for i in 0..macs {
        tables.set_mac(BridgeId(0), mac(i), Vid(1), Dest::port(PortId(1)), false).expect("destination");
    }
    let xsks = bpf::create_xskmap(1).expect("xskmap");
    let prog = match ex {
        Executor::Xdp => {
            bpf::load_xdp(&program(Hook::Xdp { xsks: xsks.as_raw_fd() }, PortId(0), &tables.maps()), "rvsb_fast")
        }
        Executor::Tc => bpf::load_tc(&program(Hook::Tc { miss: DEVICE }, PortId(0), &tables.maps()), "rvsb_fast"),
    }
    .expect("program");
    (tables, prog, xsks)
}

fn executors(c: &mut Criterion) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("fastpath bench: needs root (BPF programs); nothing measured");
        return;
    }
    for (ex, name) in [(Executor::Xdp, "xdp"), (Executor::Tc, "tc")] {
        let mut g = c.benchmark_group(format!("executor_{name}"));
        g.throughput(Throughput::Elements(1));
        for (macs, active) in CASES {
            let (_tables, prog, _xsks) = setup(ex, macs);
            let frames: Vec<Vec<u8>> = (0..active).map(|i| testing::frame(mac(i), testing::mac(0xa), None)).collect();
            let mut next = 0usize;
            g.bench_function(BenchmarkId::new("hit", format!("{macs}_macs_{active}_active")), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        // A stride that visits every MAC in a scattered order.
                        next = (next + 7919) % frames.len();
                        total += bpf::test_run_time(&prog, &frames[next], 1).expect("test run");
                    }
                    total
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, executors);
criterion_main!(benches);
