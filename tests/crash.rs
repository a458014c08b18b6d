//! Issue 6, test 5: crashes. `kill -9` of rvsd under traffic, then a
//! restart: traffic again within 2 s, nothing of the configuration lost, no
//! XDP program left meanwhile. And kills at random points while a client
//! adds and removes ports: after every kill the db parses and equals a
//! state rvsctl had acknowledged (or that plus the change in flight).

mod common;

use common::*;
use rvs_switch::db;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn kill9_under_traffic_then_restart_within_2s() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.72.1/24");
    let b = Host::on_veth("198.18.72.2/24");
    let c = Host::on_tap("198.18.72.3/24");
    let mut rvsd = Rvsd::start();
    rvsd.bridge_with("br0", &[&a, &b, &c]);
    assert!(ping_settled(&a.ns, &b.ip, 3));
    assert!(ping_settled(&a.ns, &c.ip, 3));
    let devs = [a.port(), b.port()];
    let config = rvsd.show_ports();
    // Traffic throughout: 20 pings a second from a to b and to c.
    let _load: Vec<ChildGuard> = [&b.ip, &c.ip]
        .iter()
        .map(|ip| {
            ChildGuard(
                a.ns.cmd(&["ping", "-n", "-q", "-i", "0.05", ip])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("ping"),
            )
        })
        .collect();
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        rvsd.kill9();
        let left = no_xdp_left(&devs);
        assert!(left.is_empty(), "round {round}: XDP still attached after kill -9: {left:?}");
        let t0 = Instant::now();
        rvsd.restart();
        let answering = t0.elapsed();
        let up = Instant::now();
        let ok_b = ping_within(&a.ns, &b.ip, Duration::from_secs(2));
        let to_b = up.elapsed();
        let ok_c = ping_within(&a.ns, &c.ip, Duration::from_secs(2));
        println!(
            "round {round}: rvsd answering {answering:?} after restart; a->b after {to_b:?}, a->c after {:?}",
            up.elapsed()
        );
        assert!(ok_b && to_b < Duration::from_secs(2), "round {round}: a -> b not back within 2 s");
        assert!(ok_c && up.elapsed() < Duration::from_secs(2), "round {round}: a -> c (tap) not back within 2 s");
        assert_eq!(rvsd.show_ports(), config, "round {round}: configuration not restored");
    }
}

/// Issue 14: a polling thread that panics does not die quietly. rvsd logs
/// it, says so in `pmd show` while it shuts down, detaches its XDP
/// programs and exits 1, for systemd to restart it; the restart forwards
/// again with the configuration it had.
#[test]
fn a_polling_thread_that_panics_stops_rvsd_in_order() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let a = Host::on_veth("198.18.73.1/24");
    let b = Host::on_veth("198.18.73.2/24");
    let mut rvsd = Rvsd::start_with(&["--debug-faults"]);
    rvsd.bridge_with("br0", &[&a, &b]);
    assert!(ping_settled(&a.ns, &b.ip, 3));
    let config = rvsd.show_ports();
    // SAFETY: signals our own child, which has not been reaped yet.
    unsafe { libc::kill(rvsd.pid() as i32, libc::SIGUSR1) };
    let status = rvsd.wait_exit(Duration::from_secs(10)).expect("rvsd still running after its thread panicked");
    assert_eq!(status.code(), Some(1), "exit status\n{}", rvsd.log_text());
    let log = rvsd.log_text();
    assert!(log.contains("the polling thread on core") && log.contains("fault injected"), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    let left = no_xdp_left(&[a.port(), b.port()]);
    assert!(left.is_empty(), "XDP still attached after the shutdown: {left:?}");
    rvsd.restart();
    assert!(ping_within(&a.ns, &b.ip, Duration::from_secs(2)), "no traffic after the restart");
    assert_eq!(rvsd.show_ports(), config);
}

/// (bridge, port) pairs of a configuration.
fn ports_of(cfg: &rvs_proto::config::Config) -> BTreeSet<String> {
    cfg.bridges.iter().flat_map(|b| b.ports.iter().map(move |p| format!("{}/{}", b.name, p.name))).collect()
}

#[test]
fn kill_during_writes_leaves_an_acknowledged_db() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let rounds: u32 = std::env::var("RVS_CRASH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    // The taps live in a namespace of their own, gone with it at the end.
    let ns = Netns::new();
    let mut rvsd = Rvsd::start();
    rvsd.add_bridge("br0");
    let mut rng = Rng(0xc7a5);
    let mut model: BTreeSet<String> = BTreeSet::new();
    let op = |model: &BTreeSet<String>, rng: &mut Rng| -> (Vec<String>, BTreeSet<String>) {
        let mut next = model.clone();
        if model.len() < 2 || (model.len() < 6 && rng.next() & 1 == 0) {
            let name = format!("rvk{}", tag());
            next.insert(format!("br0/{name}"));
            let args = ["port", "add", "br0", &name, "--type", "tap", "--netns", &ns.name];
            (args.iter().map(|s| s.to_string()).collect(), next)
        } else {
            let victim = model.iter().nth((rng.next() % model.len() as u64) as usize).unwrap().clone();
            next.remove(&victim);
            let name = victim.trim_start_matches("br0/").to_string();
            (vec!["port".into(), "del".into(), "br0".into(), name], next)
        }
    };
    let mut outcomes = (0, 0);
    for round in 0..rounds {
        for _ in 0..rng.next() % 4 {
            let (args, next) = op(&model, &mut rng);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            rvsd.ctl_ok(&args);
            model = next;
        }
        // The change in flight when rvsd dies.
        let (args, next) = op(&model, &mut rng);
        let mut client = Command::new(rvsctl_bin())
            .arg("--socket")
            .arg(&rvsd.socket)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rvsctl");
        std::thread::sleep(Duration::from_micros(rng.next() % 40_000));
        rvsd.kill9();
        let acked = client.wait().expect("rvsctl").success();
        let cfg = db::load(&rvsd.db).unwrap_or_else(|e| panic!("round {round}: db unreadable after kill -9: {e}"));
        let on_disk = ports_of(&cfg);
        if acked {
            assert_eq!(on_disk, next, "round {round}: an acknowledged change is not in the db");
        } else {
            assert!(
                on_disk == model || on_disk == next,
                "round {round}: db {on_disk:?} is neither {model:?} nor {next:?}"
            );
        }
        if on_disk == next && next != model {
            outcomes.1 += 1;
        } else {
            outcomes.0 += 1;
        }
        model = on_disk;
        rvsd.restart();
        let shown: BTreeSet<String> = rvsd
            .show_ports()
            .into_iter()
            .filter(|(_, p, _)| !p.is_empty())
            .map(|(b, p, _)| format!("{b}/{p}"))
            .collect();
        assert_eq!(shown, model, "round {round}: restart did not restore the db");
    }
    println!("{rounds} kills during writes: in-flight change lost {} times, kept {} times", outcomes.0, outcomes.1);
}
