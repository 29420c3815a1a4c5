//! # rfc6455
//!
//! A WebSocket stack written from [RFC 6455] up, in three layers, each
//! depending only on the one below it:
//!
//! ```text
//!   chat/        the application (the `rfc6455 chat` binary)
//!     |
//!   transport/   async WebSocket over any AsyncRead + AsyncWrite (tokio)
//!     |
//!   proto/       sans-I/O RFC 6455: bytes in -> events out, messages in -> bytes out
//! ```
//!
//! [`proto`] is the protocol and nothing else: no sockets, no clocks, no
//! runtime. Build with `default-features = false` to get only it, with no
//! dependency beyond `bytes`, `sha1`, `base64`, `httparse` and `getrandom`.
//! The `tls` feature (on by default) adds `wss://` and https to the
//! transport and the chat, with rustls on the ring crypto provider.
//!
//! [RFC 6455]: https://www.rfc-editor.org/rfc/rfc6455
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "chat")]
pub mod chat;
pub mod proto;
#[cfg(feature = "transport")]
pub mod transport;
