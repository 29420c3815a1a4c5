//! RFC 7692 §7.2, compressing and decompressing message payloads.
//!
//! A message's payload is compressed as raw DEFLATE (RFC 1951, no zlib
//! header), ended with a sync flush, and sent without the four bytes
//! `00 00 ff ff` that flush always ends with (§7.2.1); the receiver puts
//! them back before inflating (§7.2.2). With context takeover, the LZ77
//! window carries over from message to message on both sides; without it
//! (`*_no_context_takeover`), each message starts afresh.
//!
//! # Memory
//!
//! zlib-rs allocates 380,032 bytes per compressor (level 6, 2^15 window:
//! the window twice over, hash chain and head tables, pending buffer; flate2
//! offers no `memLevel` to shrink the tables, so a 2^9 window still takes
//! 251,008) and 47,552 bytes per decompressor (state and a 32 KiB window,
//! whatever the window bits). A
//! compressor or decompressor is created on the first message that needs
//! it. When the agreement says its context is reset after each message, it
//! is dropped at the end of that message, so such a connection holds
//! nothing between messages. The README's table has the measured figures.
//!
//! # Limits
//!
//! [`Decompressor::decompress`] grows its output only up to the message
//! limit it is given: a small frame that inflates to gigabytes (a "zip
//! bomb") stops with [`InflateError::TooLarge`] once one byte more than the
//! limit has come out.

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{DeflateParams, MAX_WINDOW_BITS};
use crate::proto::config::{Config, DeflateConfig};
use crate::proto::error::{Error, ProtocolError};
use crate::proto::role::Role;

/// §7.2.1: "Remove 4 octets (that are 0x00 0x00 0xff 0xff) from the tail
/// end": the empty stored block a sync flush ends with.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest window zlib can compress raw DEFLATE with (see the
/// [module doc](super) on window bits 8).
const MIN_COMPRESS_WINDOW_BITS: u8 = 9;

/// Why inflating a message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The message inflates past the limit (close code 1009).
    TooLarge,
    /// The payload is not valid DEFLATE data, or refers back past the
    /// window (close code 1007).
    Corrupt,
}

/// The compressor failed; zlib only fails on misuse, so this is a bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressError;

/// One direction's compressor, created on demand.
#[derive(Debug)]
pub struct Compressor {
    level: u8,
    window_bits: u8,
    no_context_takeover: bool,
    state: Option<Box<Compress>>,
}

impl Compressor {
    /// A compressor for messages that the peer decompresses with a window
    /// of 2^`window_bits` bytes, resetting after each message if
    /// `no_context_takeover`.
    pub fn new(level: u8, window_bits: u8, no_context_takeover: bool) -> Self {
        Self {
            level: level.min(9),
            window_bits,
            no_context_takeover,
            state: None,
        }
    }

    /// Whether this side may compress at all: not with a 2^8 window, which
    /// zlib cannot produce (see the module doc of [`super`]).
    pub fn can_compress(&self) -> bool {
        self.window_bits >= MIN_COMPRESS_WINDOW_BITS
    }

    /// Compresses one piece of a message, ended with a sync flush so that
    /// the peer can inflate all of it; `fin` marks the message's last piece,
    /// whose flush tail is removed (§7.2.1).
    pub fn compress(&mut self, data: &[u8], fin: bool) -> Result<Bytes, CompressError> {
        let level = Compression::new(u32::from(self.level));
        let bits = self.window_bits.max(MIN_COMPRESS_WINDOW_BITS);
        let state = self
            .state
            .get_or_insert_with(|| Box::new(Compress::new_with_window_bits(level, false, bits)));
        let out = sync_flush(state, data)?;
        if fin && self.no_context_takeover {
            // §7.1.1.1 / §7.1.1.2: the next message starts with an empty
            // window; dropping the state frees its memory until then.
            self.state = None;
        }
        Ok(finish(out, fin))
    }

    /// Forgets the context: the next message is compressed as if it were
    /// the first. Needed after a message went out that this compressor did
    /// not produce (a shared, prepared frame), since the peer's window now
    /// holds that message instead.
    pub fn reset(&mut self) {
        self.state = None;
    }

    /// Whether a compressor state is allocated (for memory tests).
    // A test hook (tests/deflate_memory.rs, fuzz/inflate.rs): public so
    // that integration tests and the fuzzer can reach it, hidden from the
    // docs because no user needs it.
    #[doc(hidden)]
    pub fn is_allocated(&self) -> bool {
        self.state.is_some()
    }
}

/// Feeds all of `data` and a sync flush through `state`.
fn sync_flush(state: &mut Compress, data: &[u8]) -> Result<Vec<u8>, CompressError> {
    // Compressed text is usually well under half its size; the tail and a
    // block header fit in the 64 spare bytes.
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let start = state.total_in();
    loop {
        let consumed = usize::try_from(state.total_in() - start).map_err(|_| CompressError)?;
        let rest = data.get(consumed..).unwrap_or_default();
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        state
            .compress_vec(rest, &mut out, FlushCompress::Sync)
            .map_err(|_| CompressError)?;
        let consumed = usize::try_from(state.total_in() - start).map_err(|_| CompressError)?;
        // zlib: when a flush leaves no room in the output, call again; it
        // is done when input is used up and output space is left over.
        if consumed >= data.len() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

fn finish(mut out: Vec<u8>, fin: bool) -> Bytes {
    if fin && out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    if fin && out.is_empty() {
        // Empty input right after an earlier flush makes zlib write
        // nothing, but an empty last piece would leave the peer's appended
        // tail (§7.2.2) to start a stored block 0xff00 bytes long that
        // swallows the next message. One zero byte is the start of an
        // empty stored block (§7.2.3.6), which the tail completes; the
        // stream is byte-aligned after the earlier flush.
        out.push(0x00);
    }
    Bytes::from(out)
}

/// Compresses a whole message with a fresh context, for a frame shared by
/// many connections: `None` if it is shorter than `config.threshold`.
pub fn compress_once(data: &[u8], config: &DeflateConfig) -> Option<(Bytes, u8)> {
    if data.len() < config.threshold {
        return None;
    }
    let bits = config
        .server_max_window_bits
        .clamp(MIN_COMPRESS_WINDOW_BITS, MAX_WINDOW_BITS);
    let mut compressor = Compressor::new(config.level, bits, true);
    let out = compressor.compress(data, true).ok()?;
    Some((out, bits))
}

/// One direction's decompressor, created on demand.
#[derive(Debug)]
pub struct Decompressor {
    window_bits: u8,
    no_context_takeover: bool,
    state: Option<Box<Decompress>>,
}

impl Decompressor {
    /// A decompressor for a peer that compresses with a window of at most
    /// 2^`window_bits` bytes, resetting after each message if
    /// `no_context_takeover`.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Self {
            // A window of 2^8 is inflated with 2^9: a larger window reads
            // anything a smaller one wrote, and zlib wants at least 9.
            window_bits: window_bits.clamp(MIN_COMPRESS_WINDOW_BITS, MAX_WINDOW_BITS),
            no_context_takeover,
            state: None,
        }
    }

    /// Inflates `input`, one frame's payload, onto the end of `out`, which
    /// holds the message so far; fails once `out` would pass `limit` bytes.
    pub fn decompress(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), InflateError> {
        let bits = self.window_bits;
        let state = self
            .state
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, bits)));
        let mut consumed = 0usize;
        loop {
            let rest = input.get(consumed..).unwrap_or_default();
            // Room to inflate into: doubling (amortised linear copying),
            // at least 4 KiB, never more than one byte past the limit.
            let len = out.len();
            let ceiling = limit.saturating_add(1);
            if len >= ceiling {
                return Err(InflateError::TooLarge);
            }
            let room = len.max(4096).min(ceiling - len);
            out.resize(len + room, 0);
            let (before_in, before_out) = (state.total_in(), state.total_out());
            let status = state.decompress(rest, &mut out[len..], FlushDecompress::None);
            let used = usize::try_from(state.total_in() - before_in).unwrap_or(usize::MAX);
            let made = usize::try_from(state.total_out() - before_out).unwrap_or(usize::MAX);
            out.truncate(len + made.min(room));
            consumed = consumed.saturating_add(used);
            match status {
                Err(_) => return Err(InflateError::Corrupt),
                // A block with BFINAL set ends a DEFLATE stream (RFC 1951
                // §3.2.3). A sender may end its messages that way (§7.2.3.4
                // of RFC 7692); whatever follows starts a new stream.
                Ok(Status::StreamEnd) => state.reset(false),
                Ok(Status::Ok | Status::BufError) => {}
            }
            let filled = made == room;
            if consumed >= input.len() && !filled {
                return Ok(());
            }
            if used == 0 && made == 0 && !matches!(status, Ok(Status::StreamEnd)) {
                // No progress with room to spare: the input so far is a
                // prefix of something longer, which is fine mid-message.
                return Ok(());
            }
        }
    }

    /// The message's last frame has been inflated: puts back the flush tail
    /// (§7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to the tail end of
    /// the payload of the message") and, without context takeover, forgets
    /// the window.
    pub fn finish(&mut self, out: &mut BytesMut, limit: usize) -> Result<(), InflateError> {
        let result = self.decompress(&TAIL, out, limit);
        if self.no_context_takeover || result.is_err() {
            self.state = None;
        }
        result
    }

    /// Whether a decompressor state is allocated (for memory tests).
    // A test hook (tests/deflate_memory.rs, fuzz/inflate.rs): public so
    // that integration tests and the fuzzer can reach it, hidden from the
    // docs because no user needs it.
    #[doc(hidden)]
    pub fn is_allocated(&self) -> bool {
        self.state.is_some()
    }
}

/// Both directions of one connection's permessage-deflate, once agreed.
#[derive(Debug)]
struct Codec {
    /// Compresses what we send.
    tx: Compressor,
    /// Inflates what we receive.
    rx: Decompressor,
    /// Messages shorter than this go uncompressed.
    threshold: usize,
}

/// One connection's permessage-deflate: both directions' codecs when the
/// handshake agreed to it, nothing (one null pointer) when it did not.
///
/// The [`Connection`](crate::proto::Connection) asks it about every data
/// frame; in a build without the feature, `disabled.rs` stands in for it.
#[derive(Debug)]
pub struct PerMessageDeflate(Option<Box<Codec>>);

impl PerMessageDeflate {
    /// Our side of the agreement `params`, if the handshake reached one,
    /// for `role`, with the level and threshold of `config.deflate` (or the
    /// defaults if it is unset).
    pub fn new(role: Role, params: Option<&DeflateParams>, config: &Config) -> Self {
        Self(params.map(|params| {
            let config = config.deflate.clone().unwrap_or_default();
            let ((bits, reset), (peer_bits, peer_resets)) = params.sides(role);
            Box::new(Codec {
                tx: Compressor::new(config.level, bits, reset),
                rx: Decompressor::new(peer_bits, peer_resets),
                threshold: config.threshold,
            })
        }))
    }

    /// Whether permessage-deflate is in use: RSV1 has a meaning (§6).
    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Whether a compressor or decompressor is held between messages (for
    /// memory tests): `(compressor, decompressor)`.
    #[doc(hidden)]
    pub fn is_allocated(&self) -> (bool, bool) {
        self.0.as_ref().map_or((false, false), |c| {
            (c.tx.is_allocated(), c.rx.is_allocated())
        })
    }

    /// A whole message's payload as it goes on the wire, and its RSV1
    /// (§7.2.1): messages of at least the threshold are compressed, like a
    /// message's only fragment.
    pub fn compress_message(&mut self, payload: Bytes) -> Result<(Bytes, bool), Error> {
        match &self.0 {
            Some(codec) if payload.len() >= codec.threshold => {
                self.compress_fragment(payload, true, true)
            }
            _ => Ok((payload, false)),
        }
    }

    /// One fragment's payload as it goes on the wire, and its RSV1 (§6.1:
    /// set on the `first` fragment only). A message sent in fragments is
    /// compressed whatever its size (it is not known at the first
    /// fragment), each fragment with a sync flush so that it leaves at once.
    /// Whether this side can compress is fixed by the agreement, so every
    /// fragment of a message makes the same choice as its first.
    pub fn compress_fragment(
        &mut self,
        payload: Bytes,
        first: bool,
        fin: bool,
    ) -> Result<(Bytes, bool), Error> {
        match self.0.as_deref_mut() {
            Some(codec) if codec.tx.can_compress() => {
                let compressed = codec
                    .tx
                    .compress(&payload, fin)
                    .map_err(|_| Error::CompressionFailed)?;
                Ok((compressed, first))
            }
            _ => Ok((payload, false)),
        }
    }

    /// Inflates one frame's payload of a compressed message onto `out`, the
    /// message so far (§7.2.2), the `fin` frame with the flush tail put
    /// back; `limit` bounds the inflated message (1009 past it).
    pub fn inflate(
        &mut self,
        payload: &[u8],
        out: &mut BytesMut,
        fin: bool,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        // The connection lets RSV1 through only with deflate negotiated.
        let Some(codec) = self.0.as_deref_mut() else {
            return Err(ProtocolError::ReservedBitsSet);
        };
        let mut inflated = codec.rx.decompress(payload, out, limit);
        if fin && inflated.is_ok() {
            inflated = codec.rx.finish(out, limit);
        }
        inflated.map_err(|e| match e {
            InflateError::TooLarge => ProtocolError::MessageTooLarge,
            InflateError::Corrupt => ProtocolError::InvalidCompressedData,
        })
    }

    /// Whether a frame compressed once for many connections with a window
    /// of 2^`bits` may go out compressed here: our compressor may compress
    /// and the window fits the agreement. If so, our compressor forgets its
    /// context, since the peer's window now holds a message it did not
    /// write, and the next message must not refer back past it.
    pub fn take_prepared(&mut self, bits: u8) -> bool {
        match self.0.as_deref_mut() {
            Some(codec) if codec.tx.can_compress() && bits <= codec.tx.window_bits => {
                codec.tx.reset();
                true
            }
            _ => false,
        }
    }

    /// The sending side, for a connection split in two
    /// ([`Connection::split_sender`](crate::proto::Connection::split_sender)):
    /// the compressor moves out with its context (RFC 7692 §7.2.1: later
    /// messages may refer back to earlier ones), and this one keeps the
    /// decompressor and a fresh compressor that allocates nothing unless
    /// used.
    pub fn split_sender(&mut self) -> Self {
        Self(self.0.as_deref_mut().map(|codec| {
            let fresh = Compressor::new(
                codec.tx.level,
                codec.tx.window_bits,
                codec.tx.no_context_takeover,
            );
            Box::new(Codec {
                tx: std::mem::replace(&mut codec.tx, fresh),
                rx: Decompressor::new(codec.rx.window_bits, codec.rx.no_context_takeover),
                threshold: codec.threshold,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate_all(
        d: &mut Decompressor,
        payload: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, InflateError> {
        let mut out = BytesMut::new();
        d.decompress(payload, &mut out, limit)?;
        d.finish(&mut out, limit)?;
        Ok(out.to_vec())
    }

    // --- RFC 7692 §7.2.3: the examples, byte for byte --------------------

    #[test]
    fn hello_inflates_from_the_rfc_example() {
        // §7.2.3.1: "Hello" compressed: 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00.
        let mut d = Decompressor::new(15, false);
        let payload = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_all(&mut d, &payload, 100).unwrap(), b"Hello");
    }

    #[test]
    fn hello_twice_shares_the_window_with_context_takeover() {
        // §7.2.3.2: the second "Hello" refers back into the first message.
        let mut d = Decompressor::new(15, false);
        let first = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
        assert_eq!(inflate_all(&mut d, &first, 100).unwrap(), b"Hello");
        assert_eq!(inflate_all(&mut d, &second, 100).unwrap(), b"Hello");
        // Without context takeover the back-reference has nothing to point
        // into: corrupt.
        let mut d = Decompressor::new(15, true);
        inflate_all(&mut d, &first, 100).unwrap();
        assert_eq!(
            inflate_all(&mut d, &second, 100),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn stored_block_and_bfinal_forms_inflate() {
        // §7.2.3.3: "Hello" in a stored (uncompressed) block.
        let mut d = Decompressor::new(15, false);
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate_all(&mut d, &stored, 100).unwrap(), b"Hello");
        // §7.2.3.4: a block with BFINAL set; the appended tail then starts a
        // new stream, which is empty.
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate_all(&mut d, &bfinal, 100).unwrap(), b"Hello");
        assert_eq!(inflate_all(&mut d, &bfinal, 100).unwrap(), b"Hello");
    }

    #[test]
    fn empty_message_compresses_to_one_zero_byte() {
        // §7.2.3.6: "0x00" is the compressed empty message.
        let mut c = Compressor::new(6, 15, false);
        assert_eq!(&c.compress(b"", true).unwrap()[..], &[0x00]);
        let mut d = Decompressor::new(15, false);
        assert_eq!(inflate_all(&mut d, &[0x00], 100).unwrap(), b"");
    }

    #[test]
    fn an_empty_message_after_another_keeps_the_stream_in_step() {
        let mut c = Compressor::new(6, 15, false);
        let mut d = Decompressor::new(15, false);
        for m in [&b"Hello"[..], b"", b"Hello again"] {
            let z = c.compress(m, true).unwrap();
            assert!(!z.is_empty());
            assert_eq!(inflate_all(&mut d, &z, 100).unwrap(), m);
        }
    }

    #[test]
    fn hello_compresses_to_the_rfc_bytes() {
        // §7.2.3.1 again, the other way.
        let mut c = Compressor::new(6, 15, false);
        assert_eq!(
            &c.compress(b"Hello", true).unwrap()[..],
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
    }

    // --- round trips -------------------------------------------------------

    #[test]
    fn every_window_and_takeover_round_trips_several_messages() {
        let messages: Vec<Vec<u8>> = (0..6)
            .map(|i| {
                format!(
                    "{{\"type\":\"message\",\"room\":\"general\",\"n\":{i},\"text\":\"{}\"}}",
                    "abc".repeat(i * 300)
                )
                .into_bytes()
            })
            .collect();
        for bits in 8..=15 {
            for nct in [false, true] {
                let mut c = Compressor::new(6, bits, nct);
                let mut d = Decompressor::new(bits, nct);
                for m in &messages {
                    if !c.can_compress() {
                        assert_eq!(bits, 8);
                        continue;
                    }
                    let z = c.compress(m, true).unwrap();
                    assert_eq!(
                        &inflate_all(&mut d, &z, 1 << 20).unwrap(),
                        m,
                        "bits {bits} nct {nct}"
                    );
                }
                assert_eq!(c.is_allocated(), !nct && bits > 8);
                assert_eq!(d.is_allocated(), !nct && bits > 8);
            }
        }
    }

    #[test]
    fn fragments_compressed_piece_by_piece_inflate_as_one_message() {
        let mut c = Compressor::new(6, 15, false);
        let mut d = Decompressor::new(15, false);
        let text = "fragmented ".repeat(500);
        let (a, b) = text.as_bytes().split_at(1234);
        let mut out = BytesMut::new();
        d.decompress(&c.compress(a, false).unwrap(), &mut out, 1 << 20)
            .unwrap();
        d.decompress(&c.compress(b, true).unwrap(), &mut out, 1 << 20)
            .unwrap();
        d.finish(&mut out, 1 << 20).unwrap();
        assert_eq!(&out[..], text.as_bytes());
    }

    // --- limits ------------------------------------------------------------

    #[test]
    fn a_zip_bomb_stops_one_byte_past_the_limit() {
        // 16 MiB of zeros compress to about 16 KiB.
        let mut c = Compressor::new(9, 15, true);
        let bomb = c.compress(&vec![0u8; 16 << 20], true).unwrap();
        assert!(bomb.len() < 32 << 10, "{}", bomb.len());
        let mut d = Decompressor::new(15, true);
        let mut out = BytesMut::new();
        assert_eq!(
            d.decompress(&bomb, &mut out, 1 << 20),
            Err(InflateError::TooLarge)
        );
        assert_eq!(out.len(), (1 << 20) + 1);
        // The limit itself is fine.
        let mut d = Decompressor::new(15, true);
        let exact = c.compress(&vec![7u8; 1 << 20], true).unwrap();
        assert_eq!(inflate_all(&mut d, &exact, 1 << 20).unwrap().len(), 1 << 20);
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for junk in [
            &[0xffu8; 10][..],
            &[0x07, 0x00, 0x00, 0x00],
            &[0x02, 0xff, 0xff],
        ] {
            let mut d = Decompressor::new(15, false);
            assert_eq!(
                inflate_all(&mut d, junk, 1 << 20),
                Err(InflateError::Corrupt),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn small_messages_do_not_shrink() {
        // The default threshold's evidence: with a fresh context, a short
        // chat message comes out no smaller than it went in.
        let small = br#"{"type":"typing","room":"general"}"#;
        assert!(small.len() < DeflateConfig::default().threshold);
        let mut c = Compressor::new(6, 15, true);
        // 34 bytes in, 34 out: all cost, no gain.
        assert!(c.compress(small, true).unwrap().len() >= small.len());
        let larger = br#"{"type":"message","room":"general","id":1234,"from":"alice","text":"hello everyone, how is the general room today?"}"#;
        assert!(larger.len() >= DeflateConfig::default().threshold);
        assert!(c.compress(larger, true).unwrap().len() < larger.len());
    }
}
