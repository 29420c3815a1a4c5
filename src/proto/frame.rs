//! RFC 6455 §5.2, Base Framing Protocol: parse and encode frame headers.
//!
//! ```text
//!   0                   1                   2                   3
//!   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!  +-+-+-+-+-------+-+-------------+-------------------------------+
//!  |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//!  |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//!  |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//!  | |1|2|3|       |K|             |                               |
//!  +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//!  |     Extended payload length continued, if payload len == 127  |
//!  + - - - - - - - - - - - - - - - +-------------------------------+
//!  |                               |Masking-key, if MASK set to 1  |
//!  +-------------------------------+-------------------------------+
//!  | Masking-key (continued)       |          Payload Data         |
//!  +-------------------------------- - - - - - - - - - - - - - - - +
//! ```
//!
//! This file knows the header and nothing else: [`FrameHeader::parse`] reads
//! one from the front of a byte slice, [`FrameHeader::encode`] writes one.
//! The rules that need to know *who* is reading (masking direction, §5.1),
//! *what was negotiated* (RSV bits, §5.2) or *what came before*
//! (continuation frames, §5.4) live in `connection/read.rs`. The rules that hold
//! for every header are checked here, in the order the figure reads: the
//! opcode (§5.2), control frames being unfragmented and short (§5.5), and the
//! length in its minimal form (§5.2).

use bytes::{BufMut, BytesMut};

use super::error::ProtocolError;

/// The longest header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The longest payload a control frame may carry (§5.5: "All control frames
/// MUST have a payload length of 125 bytes or less").
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The frame's type (§5.2 "Opcode", §11.8). Values 3–7 and 0xB–0xF are
/// reserved and have no variant: parsing rejects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message (§5.4).
    Continuation,
    /// 0x1: the first frame of a text message (UTF-8, §5.6).
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: starts or answers the close handshake (§5.5.1).
    Close,
    /// 0x9: asks for a Pong (§5.5.2).
    Ping,
    /// 0xA: answers a Ping, or a unidirectional heartbeat (§5.5.3).
    Pong,
}

impl OpCode {
    /// The 4-bit value on the wire.
    pub const fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Reads a 4-bit opcode; reserved values are a protocol error (§5.2).
    pub const fn from_u8(value: u8) -> Result<Self, ProtocolError> {
        match value {
            0x0 => Ok(OpCode::Continuation),
            0x1 => Ok(OpCode::Text),
            0x2 => Ok(OpCode::Binary),
            0x8 => Ok(OpCode::Close),
            0x9 => Ok(OpCode::Ping),
            0xA => Ok(OpCode::Pong),
            other => Err(ProtocolError::ReservedOpcode(other)),
        }
    }

    /// The opcode's name in the RFC's words (§5.2): `"text"`, `"ping"`, …
    pub const fn name(self) -> &'static str {
        match self {
            OpCode::Continuation => "continuation",
            OpCode::Text => "text",
            OpCode::Binary => "binary",
            OpCode::Close => "close",
            OpCode::Ping => "ping",
            OpCode::Pong => "pong",
        }
    }

    /// Control frames have opcodes with the high bit set (§5.5).
    pub const fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// How a header encodes the payload length (§5.2: "the minimal number of
/// bytes MUST be used to encode the length").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthEncoding {
    /// 0–125, in the 7 bits of the second byte.
    Bits7,
    /// 126–65,535: the 7 bits say 126, a 16-bit length follows.
    Bits16,
    /// Above 65,535: the 7 bits say 127, a 64-bit length follows.
    Bits64,
}

impl LengthEncoding {
    /// The encoding a length takes in its minimal form: the only one
    /// [`FrameHeader::parse`] accepts and [`FrameHeader::encode`] writes.
    pub const fn of(payload_len: u64) -> Self {
        match payload_len {
            0..=125 => Self::Bits7,
            126..=0xFFFF => Self::Bits16,
            _ => Self::Bits64,
        }
    }

    /// `"7-bit"`, `"16-bit"` or `"64-bit"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Bits7 => "7-bit",
            Self::Bits16 => "16-bit",
            Self::Bits64 => "64-bit",
        }
    }
}

/// One frame header, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: "Indicates that this is the final fragment in a message."
    pub fin: bool,
    /// RSV1: set by permessage-deflate (RFC 7692 §6) on a compressed
    /// message's first frame; otherwise must be 0.
    pub rsv1: bool,
    /// RSV2: no extension we know of uses it.
    pub rsv2: bool,
    /// RSV3: no extension we know of uses it.
    pub rsv3: bool,
    /// What the payload is.
    pub opcode: OpCode,
    /// The masking key, present exactly when the MASK bit is set (§5.3).
    pub mask: Option<[u8; 4]>,
    /// The payload's length in bytes: up to 2^63 − 1 on the wire, so a
    /// `u64`. The connection compares it with its limits before using it.
    pub payload_len: u64,
}

impl FrameHeader {
    /// A header for a frame with FIN set, no RSV bits and no mask.
    pub fn new(opcode: OpCode, payload_len: u64) -> Self {
        Self {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask: None,
            payload_len,
        }
    }

    /// Parses a header from the front of `buf`.
    ///
    /// Returns `Ok(Some((header, header_len)))` when a whole header is there,
    /// `Ok(None)` when `buf` ends before the header does (not an error: read
    /// more and call again with the longer buffer), or the rule the header
    /// breaks. Never reads the payload, and allocates nothing.
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let opcode = OpCode::from_u8(b0 & 0x0F)?;
        // §5.5: "Control frames MUST NOT be fragmented."
        if opcode.is_control() && !fin {
            return Err(ProtocolError::FragmentedControlFrame);
        }
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        // §5.5: "All control frames MUST have a payload length of 125 bytes
        // or less". 126 and 127 announce an extended length, so any of them
        // is too long already.
        if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlFrameTooLong);
        }
        let (payload_len, mut pos) = match len7 {
            126 => {
                let Some(&[h, l]) = buf.get(2..4) else {
                    return Ok(None);
                };
                let len = u16::from_be_bytes([h, l]);
                // §5.2: "the minimal number of bytes MUST be used to encode
                // the length": 0–125 fit in the 7-bit form.
                if len < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (u64::from(len), 4)
            }
            127 => {
                let Some(&be) = buf.get(2..).and_then(<[u8]>::first_chunk) else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes(be);
                // §5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthHighBitSet);
                }
                if len <= u64::from(u16::MAX) {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        let mask = if masked {
            let Some(key) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };
        let header = Self {
            fin,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, pos)))
    }

    /// How the payload length is encoded: 7, 16 or 64 bits (§5.2).
    pub const fn length_encoding(&self) -> LengthEncoding {
        LengthEncoding::of(self.payload_len)
    }

    /// The number of bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        let len = match self.length_encoding() {
            LengthEncoding::Bits7 => 2,
            LengthEncoding::Bits16 => 4,
            LengthEncoding::Bits64 => 10,
        };
        if self.mask.is_some() { len + 4 } else { len }
    }

    /// Appends the header to `out`, the length in its minimal form.
    ///
    /// The caller keeps `payload_len` below 2^63 (anything we send is a
    /// buffer in memory, far smaller); a larger value has its top bit cleared
    /// rather than producing a header no peer may accept.
    pub fn encode(&self, out: &mut BytesMut) {
        // FIN, RSV1, RSV2, RSV3, then the opcode, from the high bit down.
        let b0 = u8::from(self.fin) << 7
            | u8::from(self.rsv1) << 6
            | u8::from(self.rsv2) << 5
            | u8::from(self.rsv3) << 4
            | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        // Built on the stack and appended once: one capacity check instead
        // of one per field (the header of a small frame is most of the
        // work of sending it).
        let mut head = [0u8; MAX_HEADER_LEN];
        head[0] = b0;
        let mut n = match self.payload_len {
            len @ 0..=125 => {
                head[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xFFFF => {
                head[1] = mask_bit | 126;
                head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                head[1] = mask_bit | 127;
                head[2..10].copy_from_slice(&(len & (u64::MAX >> 1)).to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            head[n..n + 4].copy_from_slice(&key);
            n += 4;
        }
        out.put_slice(&head[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `bytes` as exactly one header, checks that every shorter prefix
    /// asks for more bytes, and that encoding gives the bytes back.
    fn parse_both_ways(bytes: &[u8]) -> FrameHeader {
        for end in 0..bytes.len() {
            assert_eq!(
                FrameHeader::parse(&bytes[..end]),
                Ok(None),
                "prefix of {end} bytes"
            );
        }
        let (header, len) = FrameHeader::parse(bytes).unwrap().unwrap();
        assert_eq!(len, bytes.len());
        let mut out = BytesMut::new();
        header.encode(&mut out);
        assert_eq!(&out[..], bytes);
        assert_eq!(header.encoded_len(), bytes.len());
        header
    }

    // RFC 6455 §5.7, Examples: the header of each example frame.

    #[test]
    fn unmasked_hello_header() {
        let h = parse_both_ways(&[0x81, 0x05]);
        assert_eq!(h, FrameHeader::new(OpCode::Text, 5));
    }

    #[test]
    fn masked_hello_header() {
        let h = parse_both_ways(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn fragmented_hel_lo_headers() {
        let first = parse_both_ways(&[0x01, 0x03]);
        assert!(!first.fin);
        assert_eq!(first.opcode, OpCode::Text);
        let last = parse_both_ways(&[0x80, 0x02]);
        assert!(last.fin);
        assert_eq!(last.opcode, OpCode::Continuation);
    }

    #[test]
    fn ping_and_masked_pong_headers() {
        assert_eq!(parse_both_ways(&[0x89, 0x05]).opcode, OpCode::Ping);
        let pong = parse_both_ways(&[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(pong.opcode, OpCode::Pong);
        assert!(pong.mask.is_some());
    }

    #[test]
    fn binary_256_bytes_uses_16_bit_length() {
        let h = parse_both_ways(&[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(h.payload_len, 256);
    }

    #[test]
    fn binary_64_kib_uses_64_bit_length() {
        let h = parse_both_ways(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(h.payload_len, 65536);
    }

    #[test]
    fn rsv_bits_are_read_not_judged() {
        let h = parse_both_ways(&[0xF1, 0x00]);
        assert!(h.rsv1 && h.rsv2 && h.rsv3);
    }

    // Rules every header obeys.

    #[test]
    fn reserved_opcodes_are_rejected() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0x00]),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn fragmented_control_frame_is_rejected() {
        assert_eq!(
            FrameHeader::parse(&[0x09, 0x00]),
            Err(ProtocolError::FragmentedControlFrame)
        );
    }

    #[test]
    fn control_frame_of_126_bytes_is_rejected() {
        assert_eq!(
            FrameHeader::parse(&[0x89, 0x7E, 0x00, 0x7E]),
            Err(ProtocolError::ControlFrameTooLong)
        );
    }

    #[test]
    fn length_with_high_bit_set_is_rejected() {
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::LengthHighBitSet)
        );
    }

    #[test]
    fn non_minimal_lengths_are_rejected() {
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7E, 0x00, 0x7D]),
            Err(ProtocolError::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]),
            Err(ProtocolError::NonMinimalLength)
        );
    }

    #[test]
    fn largest_legal_length_parses() {
        let h = parse_both_ways(&[0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(h.payload_len, (1 << 63) - 1);
    }

    proptest::proptest! {
        /// Whatever parses re-encodes to the same bytes.
        #[test]
        fn accepted_headers_round_trip(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..16)) {
            if let Ok(Some((h, len))) = FrameHeader::parse(&bytes) {
                let mut out = BytesMut::new();
                h.encode(&mut out);
                proptest::prop_assert_eq!(&out[..], &bytes[..len]);
            }
        }
    }
}
