//! Every limit of the protocol layer, in one place.
//!
//! Each field says what it bounds, its default, and where the default comes
//! from. Limits are checked as soon as the size they bound is known (a frame
//! header's length, a header line's count) and before anything is allocated
//! for it. Going over one during the handshake answers HTTP 431; after it,
//! the connection is failed with 1009 (§7.4.1, "Message Too Big").
//!
//! [`DeflateConfig`] is here too: what permessage-deflate (RFC 7692) may
//! agree to is a limit like the others (window sizes bound memory), and
//! both the handshake and `deflate/` read it.

/// Limits and options of a connection and its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The largest frame payload accepted, in bytes. Default 16 MiB: the
    /// largest single frame of the Autobahn TestSuite (case 9.1.6, a 16 MiB
    /// text message in one frame). A frame over it fails with 1009 as soon
    /// as its header is read.
    pub max_frame_size: usize,
    /// The largest message accepted, all fragments together, in bytes.
    /// Default 64 MiB, room above Autobahn's largest (16 MiB, cases 9.x).
    /// Going over fails with 1009 at the header of the frame that would.
    /// Worst-case memory per connection is about this plus one read.
    pub max_message_size: usize,
    /// The most frames one message may arrive in. Default 131,072 (2^17):
    /// twice Autobahn case 9.3.1, which sends 4 MiB in 64-byte fragments
    /// (65,536 frames). Bounds the work a peer can make us do for one
    /// message with tiny frames. Going over fails with 1009.
    pub max_fragments: usize,
    /// The longest opening handshake head, in bytes. Default 8 KiB, the
    /// limit of nginx's default header buffer and of Node's HTTP parser
    /// before v14 (h11 keeps 16 KiB for the same reason). Going over: 431.
    pub max_handshake_bytes: usize,
    /// The most header fields in a handshake head. Default 64; a browser
    /// sends about 15. Going over: 431.
    pub max_handshake_headers: usize,
    /// Split outgoing messages into frames of at most this many payload
    /// bytes (§5.4 allows any fragmentation). `None` (the default) sends
    /// each message as one frame.
    pub fragment_size: Option<usize>,
    /// permessage-deflate (RFC 7692): `None` (the default) neither offers
    /// nor accepts it. A client offers this configuration; a server accepts
    /// the first offer it allows. Compressed messages obey the same limits
    /// as others, counted after decompression. A build without the
    /// `deflate` feature ignores it: it neither offers nor accepts.
    pub deflate: Option<DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_fragments: 1 << 17,
            max_handshake_bytes: 8 << 10,
            max_handshake_headers: 64,
            fragment_size: None,
            deflate: None,
        }
    }
}

/// What one end is willing to agree to: an offer to write (client), or the
/// limits applied to offers (server).
///
/// Off unless configured: [`Config::deflate`] is `None` by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Server: always promise to reset the compression context after each
    /// message (so one compressed frame suits every recipient of a
    /// broadcast, and no compressor outlives a message). Client: ask the
    /// server for it. Default `false`.
    pub server_no_context_takeover: bool,
    /// Server: require the client to reset its context after each message
    /// (so no decompressor outlives a message here). Client: promise it.
    /// Default `false`.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with, 8–15. Server: the
    /// most it answers with. Client: below 15, asked for in the offer.
    /// Default 15.
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with, 8–15. Server: asked
    /// of a client that allows it. Client: below 15, promised in the offer.
    /// Default 15.
    pub client_max_window_bits: u8,
    /// Messages shorter than this many bytes are sent uncompressed (RFC
    /// 7692 §6 leaves the choice per message to the sender). Default 64:
    /// below it, DEFLATE's block header and Huffman tables cost more than a
    /// fresh context saves on chat-sized JSON (measured in
    /// `deflate::codec::tests::small_messages_do_not_shrink`).
    pub threshold: usize,
    /// zlib compression level, 0 (store) to 9 (smallest). Default 6, zlib's
    /// own default. The level changes speed, not memory.
    pub level: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            // RFC 7692 §7.1.2: 2^15, the largest LZ77 window, is what applies
            // when no `*_max_window_bits` parameter is named.
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            threshold: 64,
            level: 6,
        }
    }
}

impl DeflateConfig {
    /// Resets both contexts after every message: the least memory (no
    /// compressor or decompressor between messages) and, for a server, one
    /// compressed frame that fits every recipient of a broadcast.
    pub fn no_context_takeover() -> Self {
        Self {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..Self::default()
        }
    }
}
