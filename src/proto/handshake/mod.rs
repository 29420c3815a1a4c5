//! RFC 6455 §4, Opening Handshake, both roles.
//!
//! The handshake is one HTTP/1.1 request and one response. This folder reads
//! and writes them and checks every rule §4.1 (client) and §4.2 (server)
//! give; it leaves sockets, timeouts and routing to the caller. One file per
//! job, each depending only on those above it in this list:
//!
//! | file           | rules                  | what                                                    |
//! |----------------|------------------------|---------------------------------------------------------|
//! | `error.rs`     | §4.2.1, §4.4           | [`HandshakeError`], and the HTTP answer to each         |
//! | `head.rs`      | RFC 9112 §2            | [`HeadReader`]: an HTTP head from bytes in pieces, limits |
//! | `lists.rs`     | RFC 9110 §5.6          | header lists, tokens: the helpers every check uses      |
//! | `extension.rs` | §9.1                   | the `Sec-WebSocket-Extensions` grammar ([`Extension`])  |
//! | `server.rs`    | §4.2                   | [`ServerHandshake`]: check a request, write the 101     |
//! | `url.rs`       | §3                     | [`WsUrl`]: `ws://` and `wss://` URLs                    |
//! | `client.rs`    | §4.1                   | [`ClientHandshake`]: write a request, check the answer  |
//!
//! - **Reading a head.** [`HeadReader`] collects bytes until the empty line
//!   that ends an HTTP head. It looks at each byte once, however the head is
//!   split across reads, so a head trickled in one byte at a time costs time
//!   linear in its size (CVE-2023-43669 was a WebSocket library re-parsing
//!   the whole buffer on every read). It enforces
//!   [`Config::max_handshake_bytes`](super::Config::max_handshake_bytes) and
//!   [`Config::max_handshake_headers`](super::Config::max_handshake_headers)
//!   while it scans, before storing anything past them, and hands back the
//!   bytes after the head: a client may send its first frame right behind
//!   its request.
//! - **Server.** [`ServerHandshake`] reads a [`Request`]; [`Request::upgrade`]
//!   applies §4.2.1 and gives an [`UpgradeRequest`], whose
//!   [`accept`](UpgradeRequest::accept) writes the 101 response of §4.2.2.
//!   A request read by someone else (an HTTP router) becomes a [`Request`]
//!   by filling in its public fields. Every failure is a [`HandshakeError`] whose
//!   [`response`](HandshakeError::response) is a complete HTTP error.
//! - **Client.** [`ClientHandshake`] writes the request of §4.1 for a
//!   [`WsUrl`] with a fresh random key, then reads and checks the response.
//! - **Extensions.** The handshake parses `Sec-WebSocket-Extensions` and
//!   applies §4.1's rule that a server accepts only what was offered; what
//!   permessage-deflate's parameters mean (RFC 7692 §7.1) is `deflate/`'s
//!   business, asked one offer or answer at a time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

mod client;
mod error;
mod extension;
mod head;
mod lists;
mod server;
mod url;

pub use client::{ClientHandshake, Response};
pub use error::HandshakeError;
pub use extension::{Extension, parse_extensions};
pub use head::{HeadReader, Header};
pub use server::{Request, ServerHandshake, UpgradeRequest};
pub use url::WsUrl;

/// §1.3: "the server has to take the value (as present in the header field,
/// e.g., the base64-encoded \[RFC4648\] version minus any leading and
/// trailing whitespace) and concatenate this with the Globally Unique
/// Identifier (GUID, \[RFC4122\]) "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"".
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only version this implementation speaks (§4.1, §4.4).
pub const VERSION: &str = "13";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (§4.2.2 item 5.4):
/// base64 of the SHA-1 of the key followed by [`GUID`].
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

#[cfg(test)]
mod tests;
