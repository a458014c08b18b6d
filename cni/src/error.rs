//! The CNI error result: what the plugin prints on stdout when it fails.

use serde::{Deserialize, Serialize};

/// Error codes of the CNI spec (1.0.0, "Error") and ours (100 and up).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// STATUS: the plugin cannot attach containers now (CNI 1.1).
    pub const NOT_AVAILABLE: u32 = 50;
    /// rvsd's control socket cannot be reached.
    pub const RVSD_UNREACHABLE: u32 = 100;
    /// rvsd refused a request (unknown bridge, ...).
    pub const RVSD_REFUSED: u32 = 101;
    /// A kernel operation failed (veth, address, route).
    pub const KERNEL: u32 = 102;
    /// The IPAM plugin could not be run or answered something unreadable.
    pub const IPAM: u32 = 103;
    /// CHECK found the attachment not as ADD left it.
    pub const CHECK_FAILED: u32 = 104;
}

/// A CNI error result (`{"cniVersion","code","msg","details"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    /// The spec's code, or ours from 100.
    pub code: u32,
    /// One line for a user.
    pub msg: String,
    /// More context, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    /// An error of `code` saying `msg`.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    /// The error result as the spec prints it, for `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> String {
        let mut v = serde_json::json!({ "cniVersion": cni_version, "code": self.code, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = self.details.clone().into();
        }
        v.to_string()
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)
    }
}

/// A kernel (netlink, namespace) failure as a CNI error.
pub fn kernel(ctx: &str, e: std::io::Error) -> CniError {
    CniError::new(code::KERNEL, format!("{ctx}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_spec_fields() {
        let e = CniError::new(code::INVALID_CONFIG, "no bridge");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
        assert_eq!(v, serde_json::json!({"cniVersion": "1.0.0", "code": 7, "msg": "no bridge"}));
        let e = CniError { details: "more".into(), ..e };
        let v: serde_json::Value = serde_json::from_str(&e.to_json("0.4.0")).unwrap();
        assert_eq!(v["details"], "more");
        assert_eq!(v["cniVersion"], "0.4.0");
    }
}
