//! The trace as data, for tools (`rfc6455 client --trace=json`): with
//! [`TraceMode::Records`](super::TraceMode::Records) a [`Traced`](super::Traced)
//! stream prints nothing and keeps each head and each whole frame, as a
//! [`TraceEvent`], until taken, or hands it to a callback of the caller's.

use crate::proto::{FrameHeader, LengthEncoding};

/// Which way the bytes went, seen from our end: the same as the codec's
/// own frame record's (one type, one place).
pub use crate::proto::Direction;

/// Payload bytes a [`FrameRecord`] keeps, unmasked: enough for a tool to
/// see every control frame whole (§5.5: at most 125) and the messages one
/// types while debugging; longer payloads are cut, and say so.
pub const RECORD_MAX: usize = 64 << 10;

/// What a trace saw, in the order it saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceEvent {
    /// An HTTP head, the opening request or its response (§4.1, §4.2.2),
    /// one entry per line, without the CRLFs.
    Head(Vec<String>),
    /// One whole frame (§5.2).
    Frame(Box<FrameRecord>),
    /// Decoding stopped, and why (a header that breaks §5.2, a refused
    /// upgrade whose body follows, a head cut at the size limit).
    Note(String),
}

/// One whole frame as it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRecord {
    /// FIN, RSV1-3, the opcode, the masking key and the payload length.
    pub header: FrameHeader,
    /// The header's size on the wire, 2 to 14 bytes: it tells the length
    /// encoding (see [`length_encoding`](Self::length_encoding)).
    pub header_len: usize,
    /// The first [`RECORD_MAX`] payload bytes, unmasked (§5.3); for a
    /// compressed message, the compressed bytes.
    pub payload: Vec<u8>,
    /// The frame belongs to a message compressed with permessage-deflate
    /// (RSV1 on its first frame, RFC 7692 §6).
    pub compressed: bool,
    /// For a compressed frame, the bytes it inflated to, when known.
    pub inflated_len: Option<u64>,
}

impl FrameRecord {
    /// How the payload length was written (§5.2): in the second byte's 7
    /// bits, or after 126 in 16 bits, or after 127 in 64. The parser takes
    /// only the minimal form, so the length alone says which.
    pub fn length_encoding(&self) -> LengthEncoding {
        self.header.length_encoding()
    }

    /// Whether [`payload`](Self::payload) holds less than the whole payload.
    pub fn truncated(&self) -> bool {
        self.header.payload_len > self.payload.len() as u64
    }
}
