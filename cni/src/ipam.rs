//! Delegating IPAM the way the spec says: run the IPAM plugin named by
//! `ipam.type`, found in CNI_PATH, with our environment (CNI_COMMAND set to
//! the operation) and the same network configuration on stdin.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{code, CniError};
use crate::result::CniResult;

/// The first executable file named `plugin` in the directories of `path`.
pub fn find(plugin: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    path.iter()
        .map(|d| d.join(plugin))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .ok_or_else(|| {
            let dirs: Vec<String> = path.iter().map(|d| d.display().to_string()).collect();
            CniError::new(code::IPAM, format!("IPAM plugin {plugin:?} not found in CNI_PATH ({})", dirs.join(":")))
        })
}

/// Runs IPAM plugin `plugin` for `command` ("ADD", "DEL", "CHECK") with
/// `conf` on stdin; its stdout on success. A failing plugin's own error
/// result is passed on with its code, its message prefixed with its name.
pub fn exec(plugin: &str, command: &str, path: &[PathBuf], conf: &[u8]) -> Result<Vec<u8>, CniError> {
    let bin = find(plugin, path)?;
    run(&bin, plugin, command, conf)
}

fn run(bin: &Path, plugin: &str, command: &str, conf: &[u8]) -> Result<Vec<u8>, CniError> {
    let ctx = format!("IPAM plugin {plugin} {command}");
    let fail = |m: String| CniError::new(code::IPAM, format!("{ctx}: {m}"));
    // stderr stays ours: plugins log there, and the runtime shows it.
    let mut child = Command::new(bin)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", bin.display())))?;
    let written = child.stdin.take().map(|mut i| i.write_all(conf));
    let out = child.wait_with_output().map_err(|e| fail(format!("waiting for it: {e}")))?;
    if out.status.success() {
        if let Some(Err(e)) = written {
            return Err(fail(format!("writing its configuration: {e}")));
        }
        return Ok(out.stdout);
    }
    match serde_json::from_slice::<CniError>(&out.stdout) {
        Ok(e) => Err(CniError { msg: format!("{ctx}: {}", e.msg), ..e }),
        Err(_) => Err(fail(format!(
            "failed ({}) with no error result: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim()
        ))),
    }
}

/// IPAM ADD: the addresses and routes the plugin gave out.
pub fn add(plugin: &str, path: &[PathBuf], conf: &[u8]) -> Result<CniResult, CniError> {
    let out = exec(plugin, "ADD", path, conf)?;
    serde_json::from_slice(&out)
        .map_err(|e| CniError::new(code::IPAM, format!("IPAM plugin {plugin} ADD: its result is not understood: {e}")))
}

/// IPAM GC (CNI 1.1), for plugins that speak 1.1.0: those that do not
/// (host-local before containernetworking-plugins 1.5) are left alone, as
/// the spec's GC is best effort.
pub fn gc(plugin: &str, path: &[PathBuf], conf: &[u8]) -> Result<(), CniError> {
    let bin = find(plugin, path)?;
    let versions = run(&bin, plugin, "VERSION", br#"{"cniVersion":"1.1.0"}"#)?;
    let speaks_gc = serde_json::from_slice::<serde_json::Value>(&versions)
        .ok()
        .and_then(|v| v.get("supportedVersions")?.as_array().map(|a| a.iter().any(|x| x == "1.1.0")))
        .unwrap_or(false);
    if speaks_gc {
        run(&bin, plugin, "GC", conf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn finds_runs_and_passes_errors_on() {
        let dir = std::env::temp_dir().join(format!("rvs-cni-ipam-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("b")).unwrap();
        // Only the second directory has it; a non-executable file is skipped.
        std::fs::write(dir.join("echo-ipam"), "not executable").unwrap();
        script(
            &dir.join("b"),
            "echo-ipam",
            r#"echo "{\"cniVersion\":\"1.0.0\",\"cmd\":\"$CNI_COMMAND\"}"; cat >/dev/null"#,
        );
        script(
            &dir.join("b"),
            "bad-ipam",
            r#"cat >/dev/null; echo '{"cniVersion":"1.0.0","code":11,"msg":"busy"}'; exit 1"#,
        );
        script(&dir.join("b"), "mute-ipam", "cat >/dev/null; exit 3");
        let path = vec![dir.clone(), dir.join("b")];

        let out = exec("echo-ipam", "DEL", &path, b"{}").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["cmd"], "DEL");

        let e = exec("bad-ipam", "ADD", &path, b"{}").unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (11, "IPAM plugin bad-ipam ADD: busy"));
        let e = exec("mute-ipam", "ADD", &path, b"{}").unwrap_err();
        assert_eq!(e.code, code::IPAM);
        assert!(e.msg.contains("no error result"), "{e:?}");
        let e = exec("nope", "ADD", &path, b"{}").unwrap_err();
        assert_eq!(e.code, code::IPAM);
        assert!(e.msg.contains("\"nope\" not found in CNI_PATH"), "{e:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
