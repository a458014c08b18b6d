//! How captured frames travel on the control socket.
//!
//! A `capture` request is answered by one ordinary reply line; after an
//! `ok` reply the connection carries only messages in this binary form,
//! each starting with a kind byte:
//! - `F`: a frame: timestamp (ns since the Unix epoch, u64), length on the
//!   wire (u32), captured length (u32), direction (u8: 0 received, 1
//!   sent), then the captured bytes.
//! - `S`: a status update, `E`: the last message before rvsd closes the
//!   stream: a length (u32) and that many bytes of `CaptureStatus` JSON.
//!
//! Integers are little-endian. The client ends a capture by closing the
//! connection.

use crate::CaptureStatus;

/// Largest captured length a frame message may carry.
pub const MAX_CAPLEN: usize = 64 * 1024;
/// Largest status message.
const MAX_STATUS: usize = 64 * 1024;
const FRAME_HEADER: usize = 1 + 8 + 4 + 4 + 1;

/// One message of a capture stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A captured frame.
    Frame {
        /// Nanoseconds since the Unix epoch.
        ts_ns: u64,
        /// Length on the wire.
        orig_len: u32,
        /// True if the port sent it.
        out: bool,
        /// The captured bytes.
        data: Vec<u8>,
    },
    /// Counters so far.
    Status(CaptureStatus),
    /// The capture is over.
    End(CaptureStatus),
}

/// Appends a frame message.
pub fn encode_frame(buf: &mut Vec<u8>, ts_ns: u64, orig_len: u32, out: bool, data: &[u8]) {
    let data = &data[..data.len().min(MAX_CAPLEN)];
    buf.push(b'F');
    buf.extend_from_slice(&ts_ns.to_le_bytes());
    buf.extend_from_slice(&orig_len.to_le_bytes());
    buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
    buf.push(u8::from(out));
    buf.extend_from_slice(data);
}

/// Appends a status (`end` false) or end message.
pub fn encode_status(buf: &mut Vec<u8>, end: bool, s: &CaptureStatus) {
    let json = serde_json::to_vec(s).unwrap_or_default();
    buf.push(if end { b'E' } else { b'S' });
    buf.extend_from_slice(&(json.len() as u32).to_le_bytes());
    buf.extend_from_slice(&json);
}

/// Cuts a byte stream into messages.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
}

impl Decoder {
    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, None if more bytes are needed, or an
    /// error for a stream that is not one.
    pub fn next_message(&mut self) -> Result<Option<Message>, String> {
        let b = &self.buf[self.pos..];
        let Some(&kind) = b.first() else { return Ok(None) };
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        match kind {
            b'F' => {
                if b.len() < FRAME_HEADER {
                    return Ok(None);
                }
                let ts_ns = u64::from_le_bytes(b[1..9].try_into().expect("8 bytes"));
                let orig_len = u32_at(9);
                let caplen = u32_at(13) as usize;
                if caplen > MAX_CAPLEN {
                    return Err(format!("capture stream: frame of {caplen} bytes (at most {MAX_CAPLEN})"));
                }
                let out = b[17] != 0;
                if b.len() < FRAME_HEADER + caplen {
                    return Ok(None);
                }
                let data = b[FRAME_HEADER..FRAME_HEADER + caplen].to_vec();
                self.pos += FRAME_HEADER + caplen;
                Ok(Some(Message::Frame { ts_ns, orig_len, out, data }))
            }
            b'S' | b'E' => {
                if b.len() < 5 {
                    return Ok(None);
                }
                let len = u32_at(1) as usize;
                if len > MAX_STATUS {
                    return Err(format!("capture stream: status of {len} bytes"));
                }
                if b.len() < 5 + len {
                    return Ok(None);
                }
                let s: CaptureStatus = serde_json::from_slice(&b[5..5 + len])
                    .map_err(|e| format!("capture stream: status not understood: {e}"))?;
                self.pos += 5 + len;
                Ok(Some(if kind == b'E' { Message::End(s) } else { Message::Status(s) }))
            }
            k => Err(format!("capture stream: unknown message kind {k:#04x}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_any_pieces() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, 7, 60, false, &[1, 2, 3]);
        let st = CaptureStatus { captured: 1, dropped: 2, reason: None };
        encode_status(&mut wire, false, &st);
        encode_frame(&mut wire, 8, 2, true, &[]);
        let end = CaptureStatus { captured: 2, dropped: 2, reason: Some("count reached".into()) };
        encode_status(&mut wire, true, &end);
        let want = vec![
            Message::Frame { ts_ns: 7, orig_len: 60, out: false, data: vec![1, 2, 3] },
            Message::Status(st),
            Message::Frame { ts_ns: 8, orig_len: 2, out: true, data: vec![] },
            Message::End(end),
        ];
        for chunk in [1, 2, 5, wire.len()] {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                d.push(piece);
                while let Some(m) = d.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got, want, "chunks of {chunk}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let mut d = Decoder::default();
        d.push(b"{\"version\":1}");
        assert!(d.next_message().unwrap_err().contains("unknown message kind"));
        let mut d = Decoder::default();
        d.push(&[b'F', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]);
        assert!(d.next_message().is_err());
        let mut d = Decoder::default();
        d.push(&[b'E', 2, 0, 0, 0, b'{', b'x']);
        assert!(d.next_message().is_err());
    }
}
