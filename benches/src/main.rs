//! rvs-bench: the throughput harness (issue 4). Until it lands this binary
//! only says so, so nobody mistakes it for a measurement.

fn main() {
    eprintln!("rvs-bench: not built yet; see the open benchmark issue");
    std::process::exit(2);
}
