//! pcapng files (what Wireshark writes and `tcpdump -r`, `tshark -r` read):
//! a section header, one interface (the port, by name, nanosecond
//! timestamps), then one enhanced packet block per frame, flagged inbound
//! or outbound. Host byte order (readers detect it from the section's
//! byte-order magic), link type Ethernet.

use crate::pcap::LINKTYPE_ETHERNET;

const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const OPT_END: u16 = 0;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;
/// epb_flags bits 0-1: the direction.
const INBOUND: u32 = 1;
const OUTBOUND: u32 = 2;

/// The section header and the one interface, `ifname`, with frames cut to
/// at most `snaplen` bytes.
pub fn file_header(ifname: &str, snaplen: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + ifname.len());
    block(&mut out, SHB, |b| {
        b.extend_from_slice(&BYTE_ORDER_MAGIC.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        // Section length: not given.
        b.extend_from_slice(&(-1i64).to_ne_bytes());
    });
    block(&mut out, IDB, |b| {
        b.extend_from_slice(&(LINKTYPE_ETHERNET as u16).to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&snaplen.to_ne_bytes());
        option(b, IF_NAME, ifname.as_bytes());
        // Timestamps in nanoseconds (10^-9), as rvsd takes them.
        option(b, IF_TSRESOL, &[9]);
        option(b, OPT_END, &[]);
    });
    out
}

/// Appends one frame, captured at `ts_ns` (nanoseconds since the Unix
/// epoch), `orig_len` bytes long on the wire, of which `data` was kept;
/// `outbound` when the port sent it.
pub fn record(out: &mut Vec<u8>, ts_ns: u64, orig_len: u32, outbound: bool, data: &[u8]) {
    block(out, EPB, |b| {
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&((ts_ns >> 32) as u32).to_ne_bytes());
        b.extend_from_slice(&(ts_ns as u32).to_ne_bytes());
        b.extend_from_slice(&(data.len() as u32).to_ne_bytes());
        b.extend_from_slice(&orig_len.max(data.len() as u32).to_ne_bytes());
        b.extend_from_slice(data);
        pad(b);
        option(b, EPB_FLAGS, &(if outbound { OUTBOUND } else { INBOUND }).to_ne_bytes());
        option(b, OPT_END, &[]);
    });
}

/// Appends a block of `kind` whose body `body` writes, with its length
/// before and after.
fn block(out: &mut Vec<u8>, kind: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    body(out);
    let len = (out.len() - start + 4) as u32;
    out[start + 4..start + 8].copy_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&len.to_ne_bytes());
}

/// Appends an option: code, length, value padded to 32 bits.
fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_ne_bytes());
    out.extend_from_slice(&(value.len() as u16).to_ne_bytes());
    out.extend_from_slice(value);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// Walks the blocks: (type, body) each, checking both lengths agree.
    fn blocks(mut f: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut v = Vec::new();
        while !f.is_empty() {
            let len = u32_at(f, 4) as usize;
            assert_eq!(len % 4, 0);
            assert_eq!(u32_at(f, len - 4) as usize, len, "trailing length");
            v.push((u32_at(f, 0), f[8..len - 4].to_vec()));
            f = &f[len..];
        }
        v
    }

    #[test]
    fn blocks_have_the_layout_of_the_spec() {
        let mut f = file_header("veth-a", 2048);
        record(&mut f, 1_700_000_000_123_456_789, 60, false, &[0xaa; 14]);
        record(&mut f, 5, 3, true, &[1, 2, 3]);
        let b = blocks(&f);
        assert_eq!(b.iter().map(|x| x.0).collect::<Vec<_>>(), [SHB, IDB, EPB, EPB]);
        assert_eq!(u32_at(&b[0].1, 0), BYTE_ORDER_MAGIC);
        let idb = &b[1].1;
        assert_eq!((u16::from_ne_bytes([idb[0], idb[1]]), u32_at(idb, 4)), (1, 2048));
        assert_eq!(&idb[8..12], &[2, 0, 6, 0]);
        assert_eq!(&idb[12..18], b"veth-a");
        let epb = &b[2].1;
        let ts = (u64::from(u32_at(epb, 4)) << 32) | u64::from(u32_at(epb, 8));
        assert_eq!((ts, u32_at(epb, 12), u32_at(epb, 16)), (1_700_000_000_123_456_789, 14, 60));
        // 14 bytes padded to 16, then epb_flags: inbound.
        assert_eq!((u16::from_ne_bytes([epb[36], epb[37]]), u32_at(epb, 40)), (EPB_FLAGS, INBOUND));
        assert_eq!(u32_at(&b[3].1, 20 + 4 + 4), OUTBOUND);
    }

    #[test]
    fn tshark_reads_the_directions() {
        let Some(tshark) = ["/usr/bin/tshark"].into_iter().find(|p| std::path::Path::new(p).exists()) else {
            // scripts/test.sh installs it: CI must not skip quietly.
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "no tshark under CI=true");
            eprintln!("skipped: no tshark");
            return;
        };
        let mut f = file_header("p1", 65535);
        record(&mut f, 1_000_000_000, 60, false, &[0x02; 60]);
        record(&mut f, 2_000_000_000, 60, true, &[0x02; 60]);
        let path = std::env::temp_dir().join(format!("rvs-pcapng-{}.pcapng", std::process::id()));
        std::fs::write(&path, &f).unwrap();
        let out = std::process::Command::new(tshark)
            .args(["-r", path.to_str().unwrap(), "-T", "fields"])
            .args(["-e", "frame.interface_name", "-e", "frame.packet_flags_direction", "-e", "frame.time_epoch"])
            .output()
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
        assert_eq!(rows.len(), 2, "{text} {}", String::from_utf8_lossy(&out.stderr));
        // Versions print the flag as 0x1 or 0x00000001.
        let dir = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok();
        assert_eq!((rows[0][0], dir(rows[0][1])), ("p1", Some(INBOUND)), "{text}");
        assert_eq!((rows[1][0], dir(rows[1][1])), ("p1", Some(OUTBOUND)), "{text}");
        assert!(rows[1][2].starts_with("2.0000000"), "{text}");
    }
}
