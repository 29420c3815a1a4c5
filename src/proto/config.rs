//! Every limit of the protocol layer, in one place.
//!
//! Each field says what it bounds, its default, and where the default comes
//! from. Limits are checked as soon as the size they bound is known (a frame
//! header's length, a header line's count) and before anything is allocated
//! for it. Going over one during the handshake answers HTTP 431; after it,
//! the connection is failed with 1009 (§7.4.1, "Message Too Big").

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
    /// as others, counted after decompression.
    #[cfg(feature = "deflate")]
    pub deflate: Option<super::deflate::DeflateConfig>,
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
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }
}
