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

    let missing = dir.join("none.json");
    let o = run(&[rvsd_bin().to_str().unwrap(), "--check-config", "--db", missing.to_str().unwrap()]);
    let e = one_line_error("check-config of a missing db", &o);
    assert!(e.contains("does not exist") && e.contains("none.json"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
