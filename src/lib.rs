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
//! Where to start reading: `docs/WALKTHROUGH.md` follows one connection
//! byte by byte through this code, and `docs/RFC6455.md` maps every
//! requirement of the RFC to the function that enforces it and the test
//! that proves it.
//!
//! # The three layers in one example
//!
//! A chat server ([`chat::serve`]) on a free loopback port, a client from
//! [`transport`] saying `hello` to it in the chat's JSON protocol
//! (`docs/PROTOCOL.md`), and the server's `welcome`, carried by frames
//! that [`proto`] encoded and parsed:
//!
//! ```
//! # #[cfg(feature = "chat")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rfc6455::chat::{ChatConfig, serve};
//! use rfc6455::proto::Message;
//! use rfc6455::transport::{self, Config};
//!
//! let dir = std::env::temp_dir().join(format!("rfc6455-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("ws://{}/ws", listener.local_addr()?);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve(listener, ChatConfig::new(dir.join("chat.db")), async {
//!     let _ = stopped.await;
//! }));
//!
//! let (mut ws, _response) = transport::connect(&url, Config::default()).await?;
//! ws.send(Message::text(r#"{"type":"hello","nick":"ada"}"#)).await?;
//! let Some(Ok(Message::Text(welcome))) = ws.recv().await else {
//!     panic!("no welcome");
//! };
//! assert!(welcome.as_str().starts_with(r#"{"type":"welcome""#));
//!
//! ws.close(None).await?; // our Close; recv ends once the server's echo is in
//! while ws.recv().await.is_some() {}
//! let _ = stop.send(());
//! server.await??;
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "chat"))]
//! # fn main() {}
//! ```
//!
//! [RFC 6455]: https://www.rfc-editor.org/rfc/rfc6455
#![forbid(unsafe_code)]
// docs.rs (Cargo.toml's [package.metadata.docs.rs]) builds every feature
// with `--cfg docsrs`: items behind a feature then say which one.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

#[cfg(feature = "chat")]
#[cfg_attr(docsrs, doc(cfg(feature = "chat")))]
pub mod chat;

// The README's `rust` blocks (axum, hyper, TLS, our own server and client),
// compiled by `cargo test --doc` so that none of them drifts from the API.
// They need the features they show, hence the gate.
#[cfg(all(doctest, feature = "axum", feature = "tls"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
pub mod proto;
#[cfg(feature = "transport")]
#[cfg_attr(docsrs, doc(cfg(feature = "transport")))]
pub mod transport;
