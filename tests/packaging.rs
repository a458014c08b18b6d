//! Issue 5: what packaging needs from the binaries: `--version`, shell
//! completions and man pages generated from the clap definitions (and
//! `man` renders them), and `rvsd --check-config`. None of it needs root
//! or a running rvsd.

mod common;

use common::*;
use std::path::Path;

fn bin_ok(bin: &Path, args: &[&str]) -> String {
    let mut v = vec![bin.to_str().unwrap()];
    v.extend_from_slice(args);
    run_ok(&v)
}

/// `man ./PAGE` with a plain pager, or None where man is not installed
/// (an error under CI=true).
fn man(page: &Path) -> Option<String> {
    let have = ["/usr/bin/man", "/bin/man"].iter().any(|p| Path::new(p).exists());
    if !have {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "man is not installed (scripts/test.sh installs man-db)");
        eprintln!("skipped: man is not installed");
        return None;
    }
    let dir = page.parent().unwrap();
    let name = format!("./{}", page.file_name().unwrap().to_str().unwrap());
    let o = std::process::Command::new("man")
        .arg(&name)
        .current_dir(dir)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("run man");
    assert!(o.status.success(), "man {name}: {}", String::from_utf8_lossy(&o.stderr));
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn temp(what: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rvst-pkg-{what}-{}", tag()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn versions() {
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(bin_ok(&rvsd_bin(), &["--version"]).trim(), format!("rvsd {v}"));
    assert_eq!(bin_ok(&rvsctl_bin(), &["--version"]).trim(), format!("rvsctl {v}"));
    assert_eq!(bin_ok(&rvsctl_bin(), &["trace", "--version"]).trim(), format!("rvsctl-trace {v}"));
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let c = bin_ok(&rvsctl_bin(), &["completions", shell]);
        assert!(c.contains("rvsctl") && c.contains("capture") && c.contains("log-level"), "{shell}: {c}");
        let d = bin_ok(&rvsd_bin(), &["--completions", shell]);
        assert!(d.contains("rvsd") && d.contains("check-config"), "{shell}: {d}");
    }
    let bash = bin_ok(&rvsctl_bin(), &["completions", "bash"]);
    assert!(bash.contains("complete -F _rvsctl"), "{bash}");
    let e = one_line_error("completions for no shell", &run(&[rvsctl_bin().to_str().unwrap(), "completions", "tcsh"]));
    assert!(e.contains("tcsh"), "{e}");
}

#[test]
fn man_pages_render() {
    let dir = temp("man");
    let page = dir.join("rvsctl.1");
    std::fs::write(&page, bin_ok(&rvsctl_bin(), &["man"])).unwrap();
    let rvsd_page = dir.join("rvsd.8");
    std::fs::write(&rvsd_page, bin_ok(&rvsd_bin(), &["--man"])).unwrap();
    let sub = dir.join("all");
    std::fs::create_dir_all(&sub).unwrap();
    bin_ok(&rvsctl_bin(), &["man", "--dir", sub.to_str().unwrap()]);
    for p in ["rvsctl.1", "rvsctl-trace.1", "rvsctl-capture.1", "rvsctl-port-add.1"] {
        assert!(sub.join(p).is_file(), "{p} not written");
    }
    if let Some(text) = man(&page) {
        assert!(text.contains("NAME") && text.contains("rvsctl - Control rvsd"), "{text}");
        assert!(text.contains("rvsctl-trace(1)") && text.contains("rvsctl-capture(1)"), "{text}");
        let text = man(&rvsd_page).unwrap();
        assert!(text.contains("--check-config") && text.contains("--metrics"), "{text}");
        let text = man(&sub.join("rvsctl-trace.1")).unwrap();
        assert!(text.contains("dl_src") && text.contains("FRAME"), "{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config() {
    let dir = temp("check");
    let good = dir.join("good.json");
    let mut cfg = rvs_switch::db::empty();
    cfg.bridges.push(rvs_proto::config::BridgeConfig::new("br0"));
    rvs_switch::db::save(&good, &cfg).unwrap();
    let out = bin_ok(&rvsd_bin(), &["--check-config", "--db", good.to_str().unwrap()]);
    assert_eq!(out.trim(), format!("{}: ok (1 bridges, 0 ports, 0 uplinks)", good.display()));

    let bad = dir.join("bad.json");
    std::fs::write(&bad, b"{\"version\":1,\"bridges\":[{").unwrap();
    let o = run(&[rvsd_bin().to_str().unwrap(), "--check-config", "--db", bad.to_str().unwrap()]);
    let e = one_line_error("check-config of a corrupt db", &o);
    assert!(e.starts_with("rvsd: corrupt configuration database") && e.contains(bad.to_str().unwrap()), "{e}");
    assert_eq!(std::fs::read(&bad).unwrap(), b"{\"version\":1,\"bridges\":[{", "the file was changed");

    // A fresh install has no db yet: that is the empty configuration, and
    // the unit's ExecStartPre must let rvsd start (issue 16).
    let missing = dir.join("none.json");
    let out = bin_ok(&rvsd_bin(), &["--check-config", "--db", missing.to_str().unwrap()]);
    assert!(out.contains("not there yet") && out.contains("none.json"), "{out}");
    assert!(!missing.exists(), "--check-config created the db");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Under `Type=notify`, rvsd says READY=1 once its control socket answers
/// (so `systemctl start rvsd && rvsctl ...` does not race it), STOPPING=1
/// on SIGTERM, and a SIGHUP does not kill it.
#[test]
fn notifies_systemd_and_survives_sighup() {
    if !require_root() {
        return;
    }
    let _serial = serial();
    let dir = temp("notify");
    let notify = dir.join("notify.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    rx.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let socket = dir.join("rvsd.sock");
    let mut child = ChildGuard(
        std::process::Command::new(rvsd_bin())
            .args(["--cores", &default_cores(), "--socket", socket.to_str().unwrap()])
            .args(["--db", dir.join("db.json").to_str().unwrap(), "--log-level", "info"])
            .env("NOTIFY_SOCKET", &notify)
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .expect("start rvsd"),
    );
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("no READY=1 from rvsd");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("READY=1\n") && msg.contains(&format!("MAINPID={}", child.0.id())), "{msg}");
    // Ready means ready: the control socket answers at once.
    let o = rvsctl(&socket, &["ping"]);
    assert!(o.status.success(), "rvsctl ping right after READY=1: {o:?}");

    // SAFETY: signals our own child, not yet reaped.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(child.0.try_wait().unwrap().is_none(), "SIGHUP killed rvsd");
    assert!(rvsctl(&socket, &["ping"]).status.success());
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    assert!(log.contains("SIGHUP ignored"), "{log}");

    // SAFETY: as above.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let n = rx.recv(&mut buf).expect("no STOPPING=1 from rvsd");
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    assert!(child.0.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The unit passes `systemd-analyze verify` (the binaries at the paths it
/// names: the built ones here; the .deb's test checks the installed unit
/// with its man pages).
#[test]
fn unit_passes_systemd_analyze_verify() {
    if !rvs_dataplane::testing::require_root("unit verify", &["systemd-analyze"]) {
        return;
    }
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/rvsd.service")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("ProtectSystem=strict"), "{unit}");
    let dir = temp("unit");
    let path = dir.join("rvsd.service");
    std::fs::write(&path, unit.replace("/usr/sbin/rvsd", rvsd_bin().to_str().unwrap())).unwrap();
    let o = run(&["systemd-analyze", "verify", "--man=no", path.to_str().unwrap()]);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The .deb that scripts/deb.sh builds installs with `dpkg -i`: binaries,
/// unit, man pages, completions and /etc/default/rvsd in place and working
/// from the installed paths; `dpkg -r` and `dpkg -P` remove it all. It
/// changes the machine's packages, so it runs under CI (scripts/test.sh
/// builds the package first) or with RVS_TEST_DEB=1.
#[test]
fn deb_installs_and_removes_cleanly() {
    let wanted = std::env::var("CI").as_deref() == Ok("true") || std::env::var("RVS_TEST_DEB").as_deref() == Ok("1");
    if !wanted {
        eprintln!("skipped: installs a package (set RVS_TEST_DEB=1, or CI=true)");
        return;
    }
    if !rvs_dataplane::testing::require_root("deb test", &["dpkg", "systemd-analyze", "man"]) {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian");
    let deb = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (build the package with scripts/deb.sh)", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("no .deb in target/debian: run scripts/deb.sh");
    let version = env!("CARGO_PKG_VERSION");
    assert!(deb.to_str().unwrap().contains(&format!("rvs_{version}")), "{}", deb.display());
    let contents = run_ok(&["dpkg-deb", "--contents", deb.to_str().unwrap()]);
    for path in [
        "./usr/sbin/rvsd",
        "./usr/bin/rvsctl",
        "./usr/lib/cni/rvs",
        "./lib/systemd/system/rvsd.service",
        "./etc/default/rvsd",
        "./usr/share/man/man8/rvsd.8.gz",
        "./usr/share/man/man1/rvsctl.1.gz",
        "./usr/share/bash-completion/completions/rvsctl",
        "./usr/share/zsh/vendor-completions/_rvsctl",
        "./usr/share/fish/vendor_completions.d/rvsctl.fish",
    ] {
        assert!(contents.contains(path), "{path} not in the package:\n{contents}");
    }
    let info = run_ok(&["dpkg-deb", "--info", deb.to_str().unwrap()]);
    assert!(info.contains("Package: rvs") && info.contains(&format!("Version: {version}")), "{info}");

    let o = run(&["dpkg", "-i", deb.to_str().unwrap()]);
    let installed = o.status.success();
    // Removed whatever happens below.
    struct Purge;
    impl Drop for Purge {
        fn drop(&mut self) {
            let _ = std::process::Command::new("dpkg").args(["-P", "rvs"]).output();
        }
    }
    let _purge = Purge;
    assert!(installed, "dpkg -i: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let v = run_ok(&["/usr/sbin/rvsd", "--version"]);
    assert_eq!(v.trim(), format!("rvsd {version}"));
    // Stripped (the release build keeps debug info for profiling).
    for b in ["/usr/sbin/rvsd", "/usr/bin/rvsctl", "/usr/lib/cni/rvs"] {
        let sections = run_ok(&["readelf", "-S", b]);
        assert!(!sections.contains(".debug_info"), "{b} is not stripped");
    }
    let o = std::process::Command::new("man").args(["rvsctl"]).env("MANPAGER", "cat").output().unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("rvsctl"), "man rvsctl: {o:?}");
    let o = std::process::Command::new("man").args(["8", "rvsd"]).env("MANPAGER", "cat").output().unwrap();
    assert!(o.status.success(), "man 8 rvsd: {o:?}");
    // A fresh install: no db yet, which --check-config accepts; the
    // postinst made the state directory.
    assert!(Path::new("/var/lib/rvs").is_dir(), "no /var/lib/rvs");
    let c = run_ok(&["/usr/sbin/rvsd", "--check-config", "--db", "/var/lib/rvs/conf.json"]);
    assert!(c.contains("not there yet") || c.contains(": ok"), "{c}");
    // The installed unit verifies with everything it names present.
    let o = run(&["systemd-analyze", "verify", "/lib/systemd/system/rvsd.service"]);
    assert!(o.status.success() && o.stderr.is_empty(), "verify: {}", String::from_utf8_lossy(&o.stderr));
    let cni = run_ok(&["/usr/lib/cni/rvs", "--version"]);
    assert_eq!(cni.trim(), format!("rvs-cni {version}"));

    let o = run(&["dpkg", "-r", "rvs"]);
    assert!(o.status.success(), "dpkg -r: {}", String::from_utf8_lossy(&o.stderr));
    for gone in ["/usr/sbin/rvsd", "/usr/bin/rvsctl", "/usr/lib/cni/rvs", "/lib/systemd/system/rvsd.service"] {
        assert!(!Path::new(gone).exists(), "{gone} left after dpkg -r");
    }
    assert!(Path::new("/etc/default/rvsd").exists(), "dpkg -r keeps the conffile");
    let o = run(&["dpkg", "-P", "rvs"]);
    assert!(o.status.success(), "dpkg -P: {}", String::from_utf8_lossy(&o.stderr));
    assert!(!Path::new("/etc/default/rvsd").exists() && !Path::new("/var/lib/rvs").exists(), "purge left files");
    let status = run(&["dpkg", "-s", "rvs"]);
    assert!(!status.status.success(), "rvs still known to dpkg");
}
