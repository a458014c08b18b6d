//! TCP throughput with iperf3 from host A to the far host, with the hosts'
//! default offloads.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sh::Result;
use crate::systems::{Bed, FAR_IP};

/// Runs iperf3 for `secs` seconds; returns Gbit/s received.
pub fn iperf3(bed: &Bed, secs: u32) -> Result<f64> {
    let server = Server::start(bed)?;
    let secs = secs.to_string();
    let out = bed.a.exec(&["iperf3", "-c", FAR_IP, "-t", &secs, "-J"]);
    drop(server);
    let out = out?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("iperf3 -J output: {e}"))?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| format!("iperf3: no result ({})", v["error"].as_str().unwrap_or("no error given")))
}

/// `iperf3 -s -1` in the far namespace, killed on drop.
struct Server(Child);

impl Server {
    fn start(bed: &Bed) -> Result<Server> {
        let child = Command::new("ip")
            .args(["netns", "exec", &bed.far.name, "iperf3", "-s", "-1", "-B", FAR_IP])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting iperf3 -s: {e}"))?;
        let s = Server(child);
        let t = Instant::now();
        while !bed.far.exec(&["ss", "-Hltn", "sport = :5201"]).map(|o| !o.trim().is_empty()).unwrap_or(false) {
            if t.elapsed() > Duration::from_secs(5) {
                return Err("iperf3 server did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(s)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
