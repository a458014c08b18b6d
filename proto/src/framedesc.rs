//! Frames for `rvsctl trace`, built from a description such as
//! `in_vlan=10,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02` or given
//! as hex bytes (`hex=0200...` or a bare hex string).
//!
//! The description names the fields a forwarding decision reads (MACs,
//! VLAN, ethertype) and, for the flow hash a VXLAN source port comes
//! from, the IP addresses, protocol and ports. What is not given is zero,
//! except `dl_type`, which follows the addresses (IPv4 unless they are
//! IPv6), and `nw_proto`, UDP unless set. The frame is what a host would
//! send: no padding, lengths and the IPv4 header checksum filled in.

use rvs_dataplane::port::MAX_FRAME;
use rvs_dataplane::wire::ip::{PROTO_TCP, PROTO_UDP};
use rvs_dataplane::wire::{EtherType, EthernetRepr, IpRepr, MacAddr, UdpRepr};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The fields a description may set, in the order they are listed in errors.
const FIELDS: [&str; 11] =
    ["in_vlan", "in_pcp", "dl_src", "dl_dst", "dl_type", "nw_src", "nw_dst", "nw_proto", "nw_ttl", "tp_src", "tp_dst"];

const ETH_IPV4: u16 = EtherType::IPV4;
const ETH_IPV6: u16 = EtherType::IPV6;
const ETH_ARP: u16 = EtherType::ARP;
const ETH_VLAN: u16 = EtherType::VLAN;

/// The frame a description or hex string stands for, or a one-line error.
pub fn parse(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty frame (give a description like dl_src=MAC,dl_dst=MAC or hex bytes)".to_string());
    }
    if let Some(h) = s.strip_prefix("hex=") {
        return hex(h);
    }
    if !s.contains('=') {
        return hex(s);
    }
    describe(s)
}

/// Hex bytes; whitespace, ':' and '.' between them are ignored, and a
/// leading "0x" too.
fn hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b':' && *b != b'.').collect();
    if let Some(bad) = digits.iter().find(|b| !b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid hex frame: {:?} is not a hex digit (or write a description like dl_src=MAC,dl_dst=MAC)",
            char::from(*bad)
        ));
    }
    if digits.is_empty() {
        return Err("invalid hex frame: no bytes".to_string());
    }
    if digits.len() & 1 == 1 {
        return Err(format!("invalid hex frame: odd number of hex digits ({})", digits.len()));
    }
    if digits.len() / 2 > MAX_FRAME {
        return Err(format!("invalid hex frame: {} bytes (at most {MAX_FRAME})", digits.len() / 2));
    }
    let val = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    Ok(digits.chunks(2).map(|p| (val(p[0]) << 4) | val(p[1])).collect())
}

#[derive(Default)]
struct Desc {
    vlan: Option<u16>,
    pcp: Option<u8>,
    src: Option<MacAddr>,
    dst: Option<MacAddr>,
    dl_type: Option<u16>,
    nw_src: Option<IpAddr>,
    nw_dst: Option<IpAddr>,
    nw_proto: Option<u8>,
    ttl: Option<u8>,
    tp_src: Option<u16>,
    tp_dst: Option<u16>,
}

fn number<T: TryFrom<u64>>(field: &str, v: &str, max: u64) -> Result<T, String> {
    let v = v.trim();
    let n = match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse::<u64>(),
    }
    .map_err(|_| format!("invalid {field} {v:?} (must be a number 0..={max})"))?;
    if n > max {
        return Err(format!("invalid {field} {n} (must be 0..={max})"));
    }
    T::try_from(n).map_err(|_| format!("invalid {field} {n}"))
}

fn describe(s: &str) -> Result<Vec<u8>, String> {
    let mut d = Desc::default();
    let mut seen: Vec<&str> = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!("invalid frame description {s:?}: empty field"));
        }
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!("invalid frame description: {part:?} is not FIELD=VALUE"));
        };
        let k = k.trim();
        if seen.contains(&k) {
            return Err(format!("invalid frame description: {k} given twice"));
        }
        seen.push(k);
        let ip = |v: &str| v.trim().parse::<IpAddr>().map_err(|_| format!("invalid {k} {v:?} (must be an IP address)"));
        let mac = |v: &str| v.trim().parse::<MacAddr>().map_err(|e| format!("{k}: {e}"));
        match k {
            "in_vlan" | "dl_vlan" => {
                let v: u16 = number(k, v, 4094)?;
                d.vlan = Some(v);
            }
            "in_pcp" | "dl_vlan_pcp" => d.pcp = Some(number(k, v, 7)?),
            "dl_src" => d.src = Some(mac(v)?),
            "dl_dst" => d.dst = Some(mac(v)?),
            "dl_type" => d.dl_type = Some(number(k, v, 0xffff)?),
            "nw_src" => d.nw_src = Some(ip(v)?),
            "nw_dst" => d.nw_dst = Some(ip(v)?),
            "nw_proto" => d.nw_proto = Some(number(k, v, 255)?),
            "nw_ttl" => d.ttl = Some(number(k, v, 255)?),
            "tp_src" => d.tp_src = Some(number(k, v, 65535)?),
            "tp_dst" => d.tp_dst = Some(number(k, v, 65535)?),
            _ => {
                return Err(format!(
                    "invalid frame description: unknown field {k:?} (known: {}, or hex=BYTES)",
                    FIELDS.join(", ")
                ))
            }
        }
    }
    d.build()
}

impl Desc {
    fn build(&self) -> Result<Vec<u8>, String> {
        let src = self.src.ok_or("invalid frame description: dl_src=MAC is missing")?;
        let dst = self.dst.ok_or("invalid frame description: dl_dst=MAC is missing")?;
        if self.pcp.is_some() && self.vlan.is_none() {
            return Err("invalid frame description: in_pcp needs in_vlan".to_string());
        }
        let v6 = match (self.nw_src, self.nw_dst) {
            (Some(a), Some(b)) if a.is_ipv4() != b.is_ipv4() => {
                return Err(format!("invalid frame description: nw_src {a} and nw_dst {b} are of different families"))
            }
            (Some(a), _) | (_, Some(a)) => Some(a.is_ipv6()),
            (None, None) => None,
        };
        let dl_type = match (self.dl_type, v6) {
            (Some(t), Some(is6)) if t != if is6 { ETH_IPV6 } else { ETH_IPV4 } && t != ETH_ARP => {
                return Err(format!("invalid frame description: dl_type {t:#06x} does not carry IP addresses"));
            }
            (Some(t), _) => t,
            (None, Some(true)) => ETH_IPV6,
            (None, _) => ETH_IPV4,
        };
        if dl_type == ETH_VLAN {
            return Err("invalid frame description: for a tagged frame use in_vlan=N, not dl_type".to_string());
        }
        let l3 = matches!(dl_type, ETH_IPV4 | ETH_IPV6 | ETH_ARP);
        let has_l3_field =
            self.nw_proto.is_some() || self.ttl.is_some() || self.tp_src.is_some() || self.tp_dst.is_some();
        if !l3 && (v6.is_some() || has_l3_field) {
            return Err(format!(
                "invalid frame description: dl_type {dl_type:#06x} has no IP header for nw_/tp_ fields"
            ));
        }
        let tag = self.vlan.map(|vid| (u16::from(self.pcp.unwrap_or(0)) << 13) | vid);
        let eth = EthernetRepr { dst, src, tag, ethertype: dl_type };
        let mut f = vec![0; eth.header_len()];
        eth.emit(&mut f);
        match dl_type {
            ETH_IPV4 => self.ip(&mut f, Ipv4Addr::UNSPECIFIED.into())?,
            ETH_IPV6 => self.ip(&mut f, Ipv6Addr::UNSPECIFIED.into())?,
            ETH_ARP => self.arp(&mut f, src)?,
            _ => {}
        }
        Ok(f)
    }

    /// The transport header for `nw_proto`, checksum left zero (the
    /// decision never reads it).
    fn l4(&self, proto: u8) -> Result<Vec<u8>, String> {
        let (src_port, dst_port) = (self.tp_src.unwrap_or(0), self.tp_dst.unwrap_or(0));
        Ok(match proto {
            PROTO_UDP => {
                let mut h = vec![0u8; UdpRepr::LEN];
                UdpRepr { src_port, dst_port, payload_len: 0 }.emit(&mut h);
                h
            }
            PROTO_TCP => {
                // Ports, then data offset 5 (no options) and the SYN flag.
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&src_port.to_be_bytes());
                h[2..4].copy_from_slice(&dst_port.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = 0x02; // SYN
                h
            }
            1 | 58 if self.tp_src.is_none() && self.tp_dst.is_none() => {
                // An echo request: ICMP type 8, ICMPv6 type 128.
                vec![if proto == 1 { 8 } else { 128 }, 0, 0, 0, 0, 0, 0, 0]
            }
            _ if self.tp_src.is_some() || self.tp_dst.is_some() => {
                return Err(format!("invalid frame description: tp_src/tp_dst need nw_proto 6 or 17, not {proto}"))
            }
            _ => Vec::new(),
        })
    }

    /// The IP header for the family of `unspecified`, then the transport
    /// header.
    fn ip(&self, f: &mut Vec<u8>, unspecified: IpAddr) -> Result<(), String> {
        let proto = self.nw_proto.unwrap_or(PROTO_UDP);
        let l4 = self.l4(proto)?;
        let (src, dst) = (self.nw_src.unwrap_or(unspecified), self.nw_dst.unwrap_or(unspecified));
        let ip = IpRepr::new(src, dst, proto, self.ttl.unwrap_or(64), l4.len())
            .ok_or("invalid frame description: addresses of different families")?;
        let at = f.len();
        f.resize(at + ip.header_len(), 0);
        ip.emit(&mut f[at..]);
        f.extend_from_slice(&l4);
        Ok(())
    }

    /// An ARP request from `nw_src` for `nw_dst`.
    fn arp(&self, f: &mut Vec<u8>, src: MacAddr) -> Result<(), String> {
        if self.nw_proto.is_some() || self.ttl.is_some() || self.tp_src.is_some() || self.tp_dst.is_some() {
            return Err("invalid frame description: an ARP frame has no nw_proto, nw_ttl or ports".to_string());
        }
        let addr = |a: Option<IpAddr>| match a {
            Some(IpAddr::V4(a)) => Ok(a.octets()),
            None => Ok([0; 4]),
            Some(a) => Err(format!("invalid frame description: ARP needs IPv4 addresses, not {a}")),
        };
        f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&addr(self.nw_src)?);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&addr(self.nw_dst)?);
        Ok(())
    }
}

/// `bytes` as lower-case hex, for sending a frame in a request.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    const A: &str = "dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02";

    #[test]
    fn builds_plain_and_tagged_frames() {
        let f = parse(A).unwrap();
        assert_eq!(&f[..12], &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        let f = parse(&format!("in_vlan=10,in_pcp=5,{A},dl_type=0x88b5")).unwrap();
        assert_eq!(&f[12..18], &[0x81, 0x00, 0xa0, 0x0a, 0x88, 0xb5]);
        assert_eq!(f.len(), 18);
    }

    #[test]
    fn builds_ip_frames_a_parser_reads_back() {
        let f = parse(&format!("{A},nw_src=198.18.0.1,nw_dst=198.18.0.2,nw_proto=6,tp_src=1234,tp_dst=80")).unwrap();
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = p.net else { panic!("no IPv4") };
        assert_eq!(ip.header().source(), [198, 18, 0, 1]);
        assert_eq!(ip.header().destination(), [198, 18, 0, 2]);
        assert_eq!(ip.header().to_header().calc_header_checksum(), ip.header().header_checksum());
        let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("no TCP") };
        assert_eq!((t.source_port(), t.destination_port()), (1234, 80));

        let f = parse(&format!("in_vlan=7,{A},nw_src=2001:2::1,nw_dst=2001:2::2,tp_src=5,tp_dst=6")).unwrap();
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        assert_eq!(&f[12..16], &[0x81, 0x00, 0, 7]);
        let Some(NetSlice::Ipv6(ip)) = p.net else { panic!("no IPv6") };
        assert_eq!(ip.header().destination_addr(), "2001:2::2".parse::<std::net::Ipv6Addr>().unwrap());
        let Some(TransportSlice::Udp(u)) = p.transport else { panic!("no UDP") };
        assert_eq!((u.source_port(), u.destination_port()), (5, 6));

        let f = parse(&format!("{A},dl_type=0x0806,nw_src=198.18.0.1,nw_dst=198.18.0.2")).unwrap();
        assert_eq!(f.len(), 42);
        assert_eq!(&f[38..42], &[198, 18, 0, 2]);
    }

    #[test]
    fn hex_frames() {
        assert_eq!(parse("hex=0102 03").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse("0x01:02:ff").unwrap(), vec![1, 2, 0xff]);
        assert_eq!(parse(&to_hex(&[9, 8, 7])).unwrap(), vec![9, 8, 7]);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        for (input, want) in [
            ("", "empty frame"),
            ("hex=", "no bytes"),
            ("abc", "odd number"),
            ("zz", "not a hex digit"),
            ("dl_src=02:00:00:00:00:01", "dl_dst=MAC is missing"),
            ("dl_dst=02:00:00:00:00:01", "dl_src=MAC is missing"),
            (&format!("{A},foo=1"), "unknown field \"foo\""),
            (&format!("{A},in_vlan=4095"), "invalid in_vlan 4095"),
            (&format!("{A},in_vlan=x"), "invalid in_vlan \"x\""),
            (&format!("{A},in_pcp=1"), "in_pcp needs in_vlan"),
            (&format!("{A},dl_src=02:00:00:00:00:03"), "dl_src given twice"),
            ("dl_src=zz,dl_dst=02:00:00:00:00:01", "dl_src: invalid MAC"),
            (&format!("{A},nw_src=198.18.0.1,nw_dst=2001:2::1"), "different families"),
            (&format!("{A},nw_src=1.2.3"), "invalid nw_src"),
            (&format!("{A},tp_src=70000"), "invalid tp_src 70000"),
            (&format!("{A},nw_proto=1,tp_dst=1"), "need nw_proto 6 or 17"),
            (&format!("{A},dl_type=0x88b5,nw_proto=6"), "no IP header"),
            (&format!("{A},dl_type=0x86dd,nw_src=198.18.0.1"), "does not carry"),
            (&format!("{A},dl_type=0x8100"), "use in_vlan"),
            (&format!("{A},,in_vlan=1"), "empty field"),
            (&format!("{A},in_vlan"), "not FIELD=VALUE"),
            (&format!("{A},dl_type=0x0806,nw_src=2001:2::1"), "ARP needs IPv4"),
        ] {
            let e = parse(input).expect_err(input);
            assert!(e.contains(want), "{input:?}: {e:?} lacks {want:?}");
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(parse(&"00".repeat(MAX_FRAME + 1)).unwrap_err().contains("at most"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_fields(s in "((in_vlan|dl_src|dl_dst|dl_type|nw_src|nw_dst|nw_proto|tp_src|tp_dst)=[0-9a-f:.x]{0,12},?){0,8}") {
            let _ = parse(&s);
        }
    }
}
