//! `ipMasq`: the host masquerades what a network's containers send beyond
//! their subnet, as the bridge plugin's `ipMasq` does.
//!
//! One rule per subnet of the network, `saddr SUBNET daddr != SUBNET
//! masquerade`, in a table of our own: nftables' `table inet rvs-cni`
//! (chain `postrouting`, the NAT hook) where the host has `nft`, else
//! iptables' and ip6tables' chain `RVS-CNI` in table `nat`, jumped to from
//! `POSTROUTING`. Each rule carries the comment `rvs-cni:NETWORK`, which is
//! how DEL finds it.
//!
//! Which containers hold a network's rules is kept in files, one per
//! container (`STATE_DIR/NETWORK/CONTAINER_ID`), under a lock: the first
//! ADD of a network adds its rules, the last DEL removes them (and the
//! table or chain when no network uses it). DEL of a container not held is
//! fine, so a second DEL succeeds.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rvs_proto::config::IfAddr;
use serde_json::Value;

use crate::error::{code, CniError};

/// Where the containers holding each network's rules are listed.
const STATE_DIR: &str = "/var/lib/cni/rvs-masq";
/// The nftables table (family inet) and chain of our rules.
const NFT_TABLE: &str = "rvs-cni";
const NFT_CHAIN: &str = "postrouting";
/// The iptables chain (table nat) of our rules.
const IPT_CHAIN: &str = "RVS-CNI";
/// Where tools are looked for after `PATH` (a runtime may give none).
const TOOL_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// Records that container `container_id` of `network` uses `subnets`, and
/// makes sure the network's masquerade rules are in place.
pub fn add(network: &str, container_id: &str, subnets: &[IfAddr]) -> Result<(), CniError> {
    check_id("network name", network)?;
    check_id("container id", container_id)?;
    let subnets: Vec<IfAddr> = subnets.iter().map(IfAddr::network).collect();
    let _lock = Lock::take()?;
    let holder = holder_path(network, container_id);
    let dir = holder.parent().expect("a holder file is in its network's directory");
    fs::create_dir_all(dir).map_err(|e| io_err(&format!("creating {}", dir.display()), e))?;
    let text: String = subnets.iter().map(|s| format!("{s}\n")).collect();
    fs::write(&holder, text).map_err(|e| io_err(&format!("writing {}", holder.display()), e))?;
    let all = held_subnets(dir);
    let backend = Backend::find()?;
    if let Err(e) = backend.ensure(network, &all) {
        let _ = fs::remove_file(&holder);
        if held_subnets(dir).is_empty() {
            let _ = backend.remove(network);
            let _ = fs::remove_dir(dir);
        }
        return Err(e);
    }
    Ok(())
}

/// Forgets container `container_id` of `network`; the network's rules go
/// when no container holds them.
pub fn del(network: &str, container_id: &str) -> Result<(), CniError> {
    check_id("network name", network)?;
    check_id("container id", container_id)?;
    let _lock = Lock::take()?;
    let holder = holder_path(network, container_id);
    let dir = holder.parent().expect("a holder file is in its network's directory");
    match fs::remove_file(&holder) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&format!("removing {}", holder.display()), e)),
    }
    let holders = fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    if holders > 0 {
        return Ok(());
    }
    let _ = fs::remove_dir(dir);
    match Backend::find() {
        Ok(backend) => backend.remove(network),
        // No tool, so no rule of ours to remove.
        Err(_) => Ok(()),
    }
}

/// GC: forgets the containers of `network` not in `keep` (they went
/// without a DEL); the network's rules go when none is left.
pub fn gc(network: &str, keep: &[&str]) -> Result<(), CniError> {
    check_id("network name", network)?;
    let stale: Vec<String> = {
        let _lock = Lock::take()?;
        let dir = Path::new(STATE_DIR).join(network);
        fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| !keep.contains(&id.as_str()))
            .collect()
    };
    stale.iter().try_for_each(|id| del(network, id))
}

fn holder_path(network: &str, container_id: &str) -> PathBuf {
    Path::new(STATE_DIR).join(network).join(container_id)
}

/// Every subnet the holders of a network recorded, each once.
fn held_subnets(dir: &Path) -> Vec<IfAddr> {
    let mut all: Vec<IfAddr> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .flat_map(|t| t.lines().filter_map(|l| IfAddr::parse_any(l).ok()).collect::<Vec<_>>())
        .collect();
    all.sort();
    all.dedup();
    all
}

fn io_err(ctx: &str, e: io::Error) -> CniError {
    CniError::new(code::IO, format!("ipMasq: {ctx}: {e}"))
}

/// An exclusive lock on the state directory, released on drop (with its
/// descriptor): concurrent ADDs and DELs take turns.
struct Lock {
    _held: fs::File,
}

impl Lock {
    fn take() -> Result<Lock, CniError> {
        fs::create_dir_all(STATE_DIR).map_err(|e| io_err(&format!("creating {STATE_DIR}"), e))?;
        let path = Path::new(STATE_DIR).join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&format!("opening {}", path.display()), e))?;
        // SAFETY: flock on a descriptor we own and keep open for the call.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err(&format!("locking {}", path.display()), io::Error::last_os_error()));
        }
        Ok(Lock { _held: f })
    }
}

/// The host's packet filter tools.
enum Backend {
    /// nftables: `nft`.
    Nft(PathBuf),
    /// iptables and ip6tables.
    Iptables { v4: Option<PathBuf>, v6: Option<PathBuf> },
}

impl Backend {
    /// nftables where the host has `nft`, else iptables.
    fn find() -> Result<Backend, CniError> {
        if let Some(nft) = find_tool("nft") {
            return Ok(Backend::Nft(nft));
        }
        let (v4, v6) = (find_tool("iptables"), find_tool("ip6tables"));
        if v4.is_none() && v6.is_none() {
            return Err(CniError::new(code::KERNEL, "ipMasq: neither nft nor iptables found (install nftables)"));
        }
        Ok(Backend::Iptables { v4, v6 })
    }

    /// Adds the rules of `network` for `subnets` that are missing.
    fn ensure(&self, network: &str, subnets: &[IfAddr]) -> Result<(), CniError> {
        match self {
            Backend::Nft(nft) => {
                let have = nft_rules(nft)?;
                let mine = comment(network);
                let missing: Vec<IfAddr> = subnets
                    .iter()
                    .copied()
                    .filter(|s| !have.iter().any(|(c, expr, _)| *c == mine && nft_matches_subnet(expr, s)))
                    .collect();
                if missing.is_empty() {
                    return Ok(());
                }
                run(nft, &["-f", "-"], Some(&nft_add_script(network, &missing)))
            }
            Backend::Iptables { v4, v6 } => {
                for s in subnets {
                    let tool = ipt_tool(v4, v6, s)?;
                    // Fails when the chain exists, which is what we want.
                    let _ = run(tool, &["-t", "nat", "-N", IPT_CHAIN], None);
                    if run(tool, &["-t", "nat", "-C", "POSTROUTING", "-j", IPT_CHAIN], None).is_err() {
                        run(tool, &["-t", "nat", "-A", "POSTROUTING", "-j", IPT_CHAIN], None)?;
                    }
                    let rule = ipt_rule(network, s);
                    let mut check = vec!["-t", "nat", "-C", IPT_CHAIN];
                    check.extend(rule.iter().map(String::as_str));
                    if run(tool, &check, None).is_err() {
                        let mut append = vec!["-t", "nat", "-A", IPT_CHAIN];
                        append.extend(rule.iter().map(String::as_str));
                        run(tool, &append, None)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Removes the rules of `network`, and our table or chain once empty.
    fn remove(&self, network: &str) -> Result<(), CniError> {
        match self {
            Backend::Nft(nft) => {
                let rules = nft_rules(nft)?;
                let mine: Vec<u64> =
                    rules.iter().filter(|(c, _, _)| c == &comment(network)).map(|&(_, _, h)| h).collect();
                let mut script: String =
                    mine.iter().map(|h| format!("delete rule inet {NFT_TABLE} {NFT_CHAIN} handle {h}\n")).collect();
                if rules.len() == mine.len() && nft_has_table(nft)? {
                    script.push_str(&format!("delete table inet {NFT_TABLE}\n"));
                }
                if script.is_empty() {
                    return Ok(());
                }
                run(nft, &["-f", "-"], Some(&script))
            }
            Backend::Iptables { v4, v6 } => {
                for tool in [v4, v6].into_iter().flatten() {
                    let listing = match output(tool, &["-t", "nat", "-S", IPT_CHAIN]) {
                        Ok(l) => l,
                        Err(_) => continue, // no chain: nothing of ours
                    };
                    let (mine, others) = ipt_split(&listing, network);
                    for rule in &mine {
                        let mut del = vec!["-t".to_string(), "nat".to_string(), "-D".to_string()];
                        del.extend(rule.iter().cloned());
                        let args: Vec<&str> = del.iter().map(String::as_str).collect();
                        run(tool, &args, None)?;
                    }
                    if others == 0 {
                        let _ = run(tool, &["-t", "nat", "-D", "POSTROUTING", "-j", IPT_CHAIN], None);
                        let _ = run(tool, &["-t", "nat", "-X", IPT_CHAIN], None);
                    }
                }
                Ok(())
            }
        }
    }
}

/// The comment that marks `network`'s rules.
fn comment(network: &str) -> String {
    format!("rvs-cni:{network}")
}

/// `saddr`/`daddr` match of `s`'s family.
fn nft_family(s: &IfAddr) -> &'static str {
    if s.addr.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

/// The nft script that adds our table, chain and `network`'s rules for
/// `subnets` (adding a table or chain that exists is no error).
fn nft_add_script(network: &str, subnets: &[IfAddr]) -> String {
    let mut s = format!(
        "add table inet {NFT_TABLE}\n\
         add chain inet {NFT_TABLE} {NFT_CHAIN} {{ type nat hook postrouting priority srcnat; policy accept; }}\n"
    );
    for net in subnets {
        let f = nft_family(net);
        s.push_str(&format!(
            "add rule inet {NFT_TABLE} {NFT_CHAIN} {f} saddr {net} {f} daddr != {net} masquerade comment \"{}\"\n",
            comment(network)
        ));
    }
    s
}

/// Our chain's rules: (comment, rule text, handle), from `nft -j -a list
/// chain`; none when the chain is not there.
fn nft_rules(nft: &Path) -> Result<Vec<(String, String, u64)>, CniError> {
    match output(nft, &["-j", "-a", "list", "chain", "inet", NFT_TABLE, NFT_CHAIN]) {
        Ok(json) => Ok(parse_nft_rules(&json)),
        Err(_) => Ok(Vec::new()), // no table or chain yet
    }
}

fn nft_has_table(nft: &Path) -> Result<bool, CniError> {
    Ok(output(nft, &["list", "table", "inet", NFT_TABLE]).is_ok())
}

/// (comment, the rule's expressions as JSON text, handle) of every rule in
/// `nft -j` output.
fn parse_nft_rules(json: &str) -> Vec<(String, String, u64)> {
    let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            let r = o.get("rule")?;
            let handle = r["handle"].as_u64()?;
            let c = r["comment"].as_str().unwrap_or("").to_string();
            Some((c, r["expr"].to_string(), handle))
        })
        .collect()
}

/// True if a rule's expressions (`nft -j` JSON text) match `subnet` as a
/// prefix.
fn nft_matches_subnet(expr: &str, subnet: &IfAddr) -> bool {
    let full = if subnet.addr.is_ipv4() { 32 } else { 128 };
    if subnet.prefix == full {
        // A whole-length prefix is listed as a plain address.
        return expr.contains(&format!("\"right\":\"{}\"", subnet.addr));
    }
    expr.contains(&format!("\"addr\":\"{}\"", subnet.addr)) && expr.contains(&format!("\"len\":{}", subnet.prefix))
}

/// Ok if `s` is a CNI network name or container id (letters, digits, `_`,
/// `.`, `-`, starting with a letter or digit): it names our files.
fn check_id(what: &str, s: &str) -> Result<(), CniError> {
    let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            code::INVALID_CONFIG,
            format!("ipMasq: {what} {s:?} has characters other than A-Z a-z 0-9 _ . -"),
        ))
    }
}

/// The tool of `s`'s family.
fn ipt_tool<'a>(v4: &'a Option<PathBuf>, v6: &'a Option<PathBuf>, s: &IfAddr) -> Result<&'a PathBuf, CniError> {
    let (tool, name) = if s.addr.is_ipv4() { (v4, "iptables") } else { (v6, "ip6tables") };
    tool.as_ref().ok_or_else(|| CniError::new(code::KERNEL, format!("ipMasq: no {name} for subnet {s}")))
}

/// The iptables rule (after `-A CHAIN`) that masquerades `subnet`.
fn ipt_rule(network: &str, subnet: &IfAddr) -> Vec<String> {
    let net = subnet.to_string();
    ["-s", &net, "!", "-d", &net, "-m", "comment", "--comment", &comment(network), "-j", "MASQUERADE"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// From `iptables -S CHAIN` output: the rules of `network` (each as
/// arguments after `-D`: chain, then the match), and how many rules of
/// others the chain has.
fn ipt_split(listing: &str, network: &str) -> (Vec<Vec<String>>, usize) {
    let want = comment(network);
    let (mut mine, mut others) = (Vec::new(), 0);
    for line in listing.lines().filter(|l| l.starts_with("-A ")) {
        let words = shell_words(&line[3..]);
        if words.windows(2).any(|w| w[0] == "--comment" && w[1] == want) {
            mine.push(words);
        } else {
            others += 1;
        }
    }
    (mine, others)
}

/// Splits iptables-save style text into words; double quotes group.
fn shell_words(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `name` in `PATH`, then in the usual system directories.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(TOOL_DIRS.iter().map(PathBuf::from)).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Runs `tool args`, with `stdin` if given; a failure is code 102 with
/// what the tool said.
fn run(tool: &Path, args: &[&str], stdin: Option<&str>) -> Result<(), CniError> {
    exec(tool, args, stdin).map(drop)
}

/// Runs `tool args`; its stdout.
fn output(tool: &Path, args: &[&str]) -> Result<String, CniError> {
    exec(tool, args, None)
}

fn exec(tool: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, CniError> {
    let what = format!("{} {}", tool.display(), args.join(" "));
    let failed = |m: String| CniError::new(code::KERNEL, format!("ipMasq: {what}: {m}"));
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes()).map_err(|e| failed(e.to_string()))?;
    }
    let o = child.wait_with_output().map_err(|e| failed(e.to_string()))?;
    if !o.status.success() {
        return Err(failed(String::from_utf8_lossy(&o.stderr).trim().replace('\n', "; ")));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IfAddr {
        IfAddr::parse_any(s).unwrap().network()
    }

    #[test]
    fn nft_script_has_one_rule_per_subnet_in_its_family() {
        let s = nft_add_script("rvsnet", &[net("10.89.0.5/24"), net("fd00:89::5/64")]);
        assert_eq!(
            s,
            "add table inet rvs-cni\n\
             add chain inet rvs-cni postrouting { type nat hook postrouting priority srcnat; policy accept; }\n\
             add rule inet rvs-cni postrouting ip saddr 10.89.0.0/24 ip daddr != 10.89.0.0/24 masquerade comment \"rvs-cni:rvsnet\"\n\
             add rule inet rvs-cni postrouting ip6 saddr fd00:89::/64 ip6 daddr != fd00:89::/64 masquerade comment \"rvs-cni:rvsnet\"\n"
        );
    }

    #[test]
    fn nft_listing_gives_comments_and_handles() {
        let json = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
            {"chain":{"family":"inet","table":"rvs-cni","name":"postrouting","handle":1}},
            {"rule":{"family":"inet","table":"rvs-cni","chain":"postrouting","handle":4,"comment":"rvs-cni:a",
              "expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},
              "right":{"prefix":{"addr":"10.89.0.0","len":24}}}},{"masquerade":null}]}},
            {"rule":{"family":"inet","table":"rvs-cni","chain":"postrouting","handle":7,"expr":[]}}]}"#;
        let rules = parse_nft_rules(json);
        assert_eq!(rules.len(), 2);
        assert_eq!((rules[0].0.as_str(), rules[0].2), ("rvs-cni:a", 4));
        assert!(nft_matches_subnet(&rules[0].1, &net("10.89.0.0/24")));
        assert!(!nft_matches_subnet(&rules[0].1, &net("10.89.0.0/16")));
        assert!(!nft_matches_subnet(&rules[0].1, &net("10.90.0.0/24")));
        let host =
            r#"[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"10.89.0.9"}}]"#;
        assert!(nft_matches_subnet(host, &net("10.89.0.9/32")));
        assert_eq!((rules[1].0.as_str(), rules[1].2), ("", 7));
        assert!(parse_nft_rules("not json").is_empty());
    }

    #[test]
    fn iptables_rules_and_listing() {
        assert_eq!(
            ipt_rule("n1", &net("10.89.0.7/24")).join(" "),
            "-s 10.89.0.0/24 ! -d 10.89.0.0/24 -m comment --comment rvs-cni:n1 -j MASQUERADE"
        );
        let listing = "-N RVS-CNI\n\
            -A RVS-CNI -s 10.89.0.0/24 ! -d 10.89.0.0/24 -m comment --comment rvs-cni:n1 -j MASQUERADE\n\
            -A RVS-CNI -s 10.90.0.0/24 ! -d 10.90.0.0/24 -m comment --comment \"rvs-cni:n2\" -j MASQUERADE\n";
        let (mine, others) = ipt_split(listing, "n1");
        assert_eq!(others, 1);
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0][0], "RVS-CNI");
        assert_eq!(mine[0][1..], ipt_rule("n1", &net("10.89.0.0/24"))[..]);
        let (mine, others) = ipt_split(listing, "n2");
        assert_eq!((mine.len(), others), (1, 1));
        assert_eq!(shell_words(r#"a "b c" "" d"#), ["a", "b c", "", "d"]);
    }

    #[test]
    fn names_that_become_files_are_checked() {
        for ok in ["rvsnet", "net-1.a_b", "0abc"] {
            assert!(check_id("network name", ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a b", "a\"b"] {
            assert_eq!(check_id("network name", bad).unwrap_err().code, code::INVALID_CONFIG, "{bad}");
        }
    }
}
