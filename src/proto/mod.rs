//! RFC 6455 as a sans-I/O state machine: bytes in, events out; messages in,
//! bytes out.
//!
//! Nothing here touches a socket, a clock or a runtime, so the same code
//! serves tokio (`transport/`), a test that steps two peers by hand, and a
//! fuzzer. It depends on `bytes`, `sha1`, `base64` and `httparse`, plus
//! `getrandom` for one seed per client connection.
//!
//! | file            | RFC 6455        | what                                              |
//! |-----------------|-----------------|---------------------------------------------------|
//! | `handshake/`    | §4, §3, §9.1    | opening handshake, both roles; [`HandshakeError`] |
//! | `frame.rs`      | §5.2            | [`FrameHeader`], [`OpCode`]: parse and encode     |
//! | `mask.rs`       | §5.3            | XOR masking                                       |
//! | `rng.rs`        | §5.3, §4.1      | unpredictable mask keys and handshake nonces      |
//! | `utf8.rs`       | §8.1            | incremental, fail-fast UTF-8 validation           |
//! | `close.rs`      | §5.5.1, §7.4    | close codes and the Close payload                 |
//! | `role.rs`       | §5.1            | [`Role`]: which end masks, which closes TCP first |
//! | `connection/`   | §5.4–5.5, §7    | the state machine: shared state, reading, writing |
//! | `observe.rs`    | §5.2, RFC 7692  | an opt-in, bounded record of the frames read and written |
//! | `deflate/`      | RFC 7692        | [`deflate`]: permessage-deflate, negotiation and (feature `deflate`) compression |
//! | `error.rs`      | §7.1.7, §7.4.1  | every violation and the close code it sends       |
//! | `config.rs`     |                 | every limit, with its default and its source      |
//!
//! Modules depend on each other one way, never in a circle: `config`,
//! `role`, `mask`, `rng`, `utf8`, `close`, `frame`, `observe` and `error` need nothing
//! but each other's lower layers; `deflate` needs those; `handshake` needs
//! `deflate` (to negotiate it); `connection` needs `deflate` (to compress)
//! but never `handshake`.
//!
//! A server's life, end to end:
//!
//! ```
//! use rfc6455::proto::{Config, Connection, Message, Role, ServerHandshake};
//!
//! let config = Config::default();
//! let mut handshake = ServerHandshake::new(&config);
//! let request = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
//!     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
//! let (req, used) = handshake.receive(request).unwrap().expect("a whole head");
//! let response = req.upgrade().unwrap().accept(None).unwrap();
//! assert!(response.starts_with(b"HTTP/1.1 101 "));
//!
//! let mut conn = Connection::new(Role::Server, config);
//! conn.receive(&request[used..]); // the client's first frame came right behind
//! assert_eq!(conn.poll_message().unwrap(), Some(Message::text("Hello")));
//! conn.send_text("Hello back").unwrap();
//! let out = conn.poll_transmit().unwrap();
//! assert_eq!(&out[..2], &[0x81, 10]);
//! ```

// One path per public item: the files are private modules, and every name
// of RFC 6455 is re-exported here, at `proto::`, once. Each file's own
// module doc (its RFC section, what it leaves to others) is for readers of
// the source; the table above is its summary. `deflate` stays a public
// module: RFC 7692 is an extension with names of its own (the parameters,
// the codec), kept apart from RFC 6455's.
mod close;
mod config;
mod connection;
pub mod deflate;
mod error;
mod frame;
mod handshake;
mod mask;
mod observe;
mod rng;
mod role;
mod utf8;

pub use close::{CloseCode, CloseFrame, ClosePayloadError, InvalidCloseCode, MAX_REASON_LEN};
pub use config::{Config, DeflateConfig};
#[cfg(feature = "transport")]
pub(crate) use connection::contains_close;
pub use connection::{Connection, Message, PreparedFrame, State};
pub use error::{Error, ProtocolError};
pub use frame::{FrameHeader, LengthEncoding, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode};
pub use handshake::{
    ClientHandshake, Extension, GUID, HandshakeError, HeadReader, Header, Request, Response,
    ServerHandshake, UpgradeRequest, VERSION, WsUrl, accept_key, parse_extensions,
};
pub use mask::{apply_mask, apply_mask_naive};
pub use observe::{Direction, FrameRecord, FrameRing};
pub use rng::MaskRng;
pub use role::Role;
pub use utf8::{InvalidUtf8, Utf8Bytes, Utf8Validator};
