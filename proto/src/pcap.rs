//! Classic libpcap files (the format `tcpdump -r` and Wireshark read):
//! a 24-byte file header, then one 16-byte header per frame. Microsecond
//! timestamps, host byte order (readers detect it from the magic number),
//! link type Ethernet.

/// The link type of Ethernet frames.
pub const LINKTYPE_ETHERNET: u32 = 1;
const MAGIC_USEC: u32 = 0xa1b2_c3d4;

/// The file header for frames cut to at most `snaplen` bytes.
pub fn file_header(snaplen: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&MAGIC_USEC.to_ne_bytes());
    h[4..6].copy_from_slice(&2u16.to_ne_bytes());
    h[6..8].copy_from_slice(&4u16.to_ne_bytes());
    // thiszone and sigfigs stay zero.
    h[16..20].copy_from_slice(&snaplen.to_ne_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
    h
}

/// Appends one frame, captured at `ts_ns` (nanoseconds since the Unix
/// epoch) and `orig_len` bytes long on the wire, of which `data` was kept.
pub fn record(out: &mut Vec<u8>, ts_ns: u64, orig_len: u32, data: &[u8]) {
    let secs = (ts_ns / 1_000_000_000) as u32;
    let usecs = ((ts_ns % 1_000_000_000) / 1000) as u32;
    for v in [secs, usecs, data.len() as u32, orig_len.max(data.len() as u32)] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn header_and_records_read_back() {
        let mut f = file_header(2048).to_vec();
        assert_eq!(u32_at(&f, 0), 0xa1b2_c3d4);
        assert_eq!((u16::from_ne_bytes([f[4], f[5]]), u16::from_ne_bytes([f[6], f[7]])), (2, 4));
        assert_eq!((u32_at(&f, 16), u32_at(&f, 20)), (2048, 1));
        record(&mut f, 1_700_000_000_123_456_789, 60, &[0xaa; 14]);
        record(&mut f, 5_000, 3, &[1, 2, 3]);
        let r = &f[24..];
        assert_eq!((u32_at(r, 0), u32_at(r, 4), u32_at(r, 8), u32_at(r, 12)), (1_700_000_000, 123_456, 14, 60));
        assert_eq!(&r[16..30], &[0xaa; 14]);
        let r = &r[30..];
        assert_eq!((u32_at(r, 0), u32_at(r, 4), u32_at(r, 8), u32_at(r, 12)), (0, 5, 3, 3));
        assert_eq!(&r[16..], &[1, 2, 3]);
    }

    #[test]
    fn tcpdump_reads_it() {
        if !std::path::Path::new("/usr/bin/tcpdump").exists() && !std::path::Path::new("/usr/sbin/tcpdump").exists() {
            eprintln!("skipped: no tcpdump");
            return;
        }
        let mut f = file_header(65535).to_vec();
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x88, 0xb5, 0xde, 0xad]);
        record(&mut f, 1_000_000_000, frame.len() as u32, &frame);
        let path = std::env::temp_dir().join(format!("rvs-pcap-{}.pcap", std::process::id()));
        std::fs::write(&path, &f).unwrap();
        let out = std::process::Command::new("tcpdump").args(["-n", "-e", "-r"]).arg(&path).output().unwrap();
        let _ = std::fs::remove_file(&path);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff") && text.contains("0x88b5"), "{text}");
    }
}
