//! The tokio transport: RFC 6455 over any `AsyncRead + AsyncWrite`.
//!
//! [`proto`] knows the protocol and nothing of sockets; this
//! module owns the socket, the buffers and every timer, and moves bytes
//! between the two. It works over plain TCP, TLS, or an upgraded hyper
//! connection alike, since all it asks of the stream is
//! `AsyncRead + AsyncWrite + Unpin`.
//!
//! An echo server and a client, over an in-memory pipe instead of TCP
//! (any stream will do):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rfc6455::proto::{Message, WsUrl};
//! use rfc6455::transport::{Config, Error, accept, connect_with};
//!
//! let (client_io, server_io) = tokio::io::duplex(4096);
//! let server = tokio::spawn(async move {
//!     let mut ws = accept(server_io, Config::default()).await?;
//!     // Pings are answered, and the peer's Close echoed, inside recv.
//!     while let Some(message) = ws.recv().await {
//!         if let message @ (Message::Text(_) | Message::Binary(_)) = message? {
//!             ws.send(message).await?;
//!         }
//!     }
//!     Ok::<_, Error>(())
//! });
//!
//! let url = WsUrl::parse("ws://example.com/echo")?;
//! let (mut ws, _response) = connect_with(client_io, &url, Config::default()).await?;
//! ws.send(Message::text("Hello")).await?;
//! assert_eq!(ws.recv().await.transpose()?, Some(Message::text("Hello")));
//! ws.close(None).await?;
//! while ws.recv().await.is_some() {} // until the server closes (§7.1.1)
//! server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! | file | what |
//! |------|------|
//! | `handshake.rs` | §4: [`accept`], [`accept_request`], [`connect`], [`connect_with`], under the handshake timeout |
//! | `http_types.rs` | §4 in the `http` crate's types: [`accept_with_callback`] (a callback sees the `http::Request`, answers with the `http::Response`), [`connect_request`] |
//! | `upgrade.rs` | (feature `hyper`) [`upgrade`]: a hyper 1.x request checked, the 101 to return, and the future of the socket on hyper's `Upgraded` |
//! | `extract.rs` | (feature `axum`) [`WsUpgrade`]: the same as an axum extractor |
//! | `socket.rs` | [`WebSocket`]: the I/O loop below, `recv`, `send`, `close` |
//! | `split.rs` | [`WsReader`] (a `Stream`) and [`WsWriter`] (a `Sink`): owned halves sharing only a small control block |
//! | `stream.rs` | [`Connector`] and [`MaybeTlsStream`]: TCP for `ws://`, TLS over TCP for `wss://` |
//! | `proxy/` | [`Proxy`], [`ProxyEnv`]: the TCP connection through an HTTP CONNECT (RFC 9110 §9.3.6) or SOCKS5 (RFC 1928, RFC 1929) proxy; see "Behind a proxy" |
//! | `tls.rs` | (feature `tls`) rustls configurations, PEM files, TLS accept: see [`tls`] |
//! | `trace/` | [`trace::Traced`]: the handshake and every frame in and out, decoded (`rfc6455 client --trace`) |
//!
//! # TLS
//!
//! RFC 6455 §4.1 and §11.1.2: a `wss://` URL means TLS first, with the
//! URL's host as the server name, on port 443 unless the URL says
//! otherwise. A client gets it from [`connect`] or a [`Connector`] (with
//! the `tls` feature, on by default); the stream is a [`MaybeTlsStream`]
//! whichever the scheme. A server runs the TLS handshake itself (or with
//! [`tls::accept`]) and hands the TLS stream to [`accept`] like any other.
//! From there on nothing in this module knows which it got: TLS is a
//! stream, not a mode of the protocol.
//!
//! # Behind a proxy
//!
//! A client can reach its server through an HTTP proxy, with `CONNECT`
//! (RFC 9110 §9.3.6; `Proxy-Authorization: Basic`, RFC 7617, when the
//! proxy URL has `user:password@`), or through SOCKS5 (RFC 1928; user
//! name and password by RFC 1929). Either way the proxy opens a tunnel,
//! a TCP connection it relays without reading: for `wss://`, TLS runs
//! inside it end to end, with the server's host as SNI, so the proxy sees
//! no frame. [`Proxy::parse`] reads `http://[user:pass@]host[:port]`,
//! `socks5://…` (the server's name resolved here) and `socks5h://…` (the
//! name sent to the proxy), as curl spells them; no scheme means
//! `http://`, no port means 1080.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rfc6455::transport::{Config, Connector, Proxy};
//!
//! let proxy = Proxy::parse("http://alice:s3cret@proxy.corp:3128")?;
//! let connector = Connector::new().with_proxy(proxy);
//! let (ws, _) = connector.connect("wss://example.com/chat", Config::default()).await?;
//! # Ok(()) }
//! ```
//!
//! [`Connector::new`] (and [`connect`]) never use a proxy and never read
//! the environment: a library should not route its caller's connections
//! by variables the caller did not choose to honour.
//! [`Connector::with_env_proxy`] opts in, and then picks a proxy per URL
//! as curl does ([`ProxyEnv`] has the rules and a pure form for tests):
//! `wss://` uses `wss_proxy`, `https_proxy` or `HTTPS_PROXY`; `ws://`
//! uses `ws_proxy` or `http_proxy` (never upper-case `HTTP_PROXY`, which
//! a CGI program's clients can set: "httpoxy"); both fall back to
//! `all_proxy`/`ALL_PROXY`; hosts in `no_proxy`/`NO_PROXY` (`*`, names
//! and their subdomains, addresses, CIDR blocks, `host:port`) go direct.
//! An empty variable counts as unset, as in curl.
//!
//! The exchange with the proxy runs inside the
//! [`Config::handshake_timeout`] window of TCP and TLS (a proxy that
//! never answers gives [`Error::HandshakeTimeout`]); an HTTP proxy's
//! answer is read up to 8 KiB and 64 fields, as our own handshake's, and
//! not a byte past its end. A refusal is [`Error::Proxy`]: the proxy, and
//! its HTTP status (407, 403, 502, ...) or SOCKS5 reply code.
//!
//! # The I/O loop, step by step
//!
//! Everything happens in [`WebSocket::poll_recv`], which
//! [`recv`](WebSocket::recv), the `Stream` impl and the split reader all
//! drive. Each call runs this loop until it has something to return or
//! must wait:
//!
//! 1. Unless queued output is over [`Config::write_buffer_limit`], ask the
//!    connection for the next event
//!    ([`Connection::poll_message`](crate::proto::Connection::poll_message)).
//!    It parses from bytes already read; a message is returned at once.
//!    Over the limit, nothing is parsed: the bytes wait in the buffer, in
//!    order (see "Backpressure").
//! 2. Write what the connection wants sent: replies to pings, the reply to
//!    a Close, messages the application queued. Chunks go out together in
//!    one vectored write. If the socket is full, carry on: below the limit,
//!    reading must not wait on writing. The send timer runs while the
//!    socket refuses output, and ends the connection if it accepts none
//!    for [`Config::send_timeout`] (see "Timers").
//! 3. If the connection says TCP should close
//!    ([`should_close_tcp`](crate::proto::Connection::should_close_tcp)),
//!    finish writing, shut the socket down, read and discard until the
//!    peer's FIN (the lingering close), and end the stream. The close timer
//!    bounds all of it: a peer that never reads would otherwise keep the
//!    socket full, and the connection waiting, for ever. When it fires
//!    before the output is written, that output is dropped (see "Timers").
//! 4. If step 1 was skipped and the write made room, go back to 1: what is
//!    buffered comes before anything new. Otherwise check the timers,
//!    listed in one place below.
//! 5. If the output is still over the limit, wait: the socket wakes us when
//!    it can take more, or a timer when it fires. Otherwise read more bytes
//!    and go back to 1. When a read would block, release the empty buffers
//!    and wait: an idle connection holds no buffer memory.
//!
//! Because every piece of state lives in the [`WebSocket`], not in the
//! future, dropping a `recv()` future loses nothing: `recv` is cancel-safe,
//! so it can sit in a `tokio::select!` beside a timer or a channel.
//!
//! # Backpressure
//!
//! An echo or chat server answers what it reads, and a peer that sends
//! without reading would make it queue answers without end (measured
//! before this rule: `rfc6455 echo` went from 6 MB to 1.5 GB resident in
//! 2.4 s under a client sending 1 MiB frames). So while more than
//! [`Config::write_buffer_limit`] bytes are queued, the loop neither reads
//! from the socket nor returns messages it has already read; it only
//! writes, and runs the timers. TCP then carries the pressure back: the
//! peer's socket fills and its writes block.
//!
//! - Messages are not returned either, not only not read, so that a
//!   `recv`, then `queue`, loop really stops. Nothing is dropped: Pings,
//!   Pongs and Closes that are buffered wait their turn behind the data
//!   before them, and replies already queued go out first.
//! - The close, keepalive and pong timers run as usual. Once the
//!   connection is closing (our Close is queued, or it failed, or the
//!   peer's Close was read), the close timer bounds how long it waits on
//!   a peer that does not read. Before that it is open, and a peer's Close
//!   or violation that waits in the buffer, or in the socket, behind the
//!   backlog is not seen: the send timer ends such a peer once it has
//!   taken none of our output for [`Config::send_timeout`] (60 s by
//!   default), and so, if sooner, do the keepalive, below, or the
//!   application. A peer that
//!   neither reads nor answers is dropped by the pong timeout: the
//!   keepalive finds no bytes read (none are), sends a Ping, and the Pong
//!   cannot come in time. (A Pong counts once parsed, so one that waits in
//!   the buffer behind data counts only when the peer has read enough of
//!   ours: a peer that reads nothing for the whole pong timeout is dropped
//!   even if it answered.) The frame timer waits, and the time paused is
//!   not charged to the frame: the peer could not send what we do not read.
//! - `Sink::poll_ready` waits (writing meanwhile) while over the limit.
//!   [`WebSocket::send`] writes everything queued before it returns, so
//!   a loop of `send`s stays within the limit (one message at a time);
//!   [`WebSocket::queue`] never waits, and is bounded by whoever calls
//!   `recv` or `poll_ready`.
//! - The split reader pauses too while the writer's output is over the
//!   limit; the writer wakes it once its output is back within it.
//!
//! # Timers
//!
//! | timer     | starts                                                                                                   | on expiry                                                  | default          |
//! |-----------|----------------------------------------------------------------------------------------------------------|------------------------------------------------------------|------------------|
//! | handshake | when `accept`/`connect` begin (TLS: once more before)                                                    | [`Error::HandshakeTimeout`]                                | 10 s             |
//! | close     | when we wait on the peer's Close or FIN, or TCP must close (step 3) and our output must go out first     | drop unwritten output, close TCP; result below             | 5 s              |
//! | keepalive | after `interval` without a read                                                                          | send a Ping                                                | off              |
//! | pong      | when the keepalive Ping is sent                                                                          | close TCP, [`Error::PongTimeout`]                          | (with keepalive) |
//! | frame     | at a frame's first byte, anew for each frame; paused while reading is                                  | send Close 1008 if open, [`Error::FrameTimeout`]           | off              |
//! | send      | when a write is refused (`Pending`), anew after each write that takes bytes; stops once all is written   | drop unwritten output, shut TCP, [`Error::SendTimeout`]    | 60 s             |
//!
//! The close timer starts once and is never restarted: from our Close (or
//! the first poll that finds TCP must close) to the end of the lingering
//! close, closing takes at most [`Config::close_timeout`] in all. What
//! `recv` returns when it fires, the same whichever wait it ends:
//!
//! - the error the connection failed with, if it failed (a protocol
//!   violation, or the peer's FIN before its Close): errors are sticky,
//!   and the timeout is only how the failure ended;
//! - otherwise `None`, if the close handshake was complete and everything
//!   we queued was written: only the peer's FIN was missing, which a client
//!   need not wait for (§7.1.1) and a server closing first does not need;
//! - otherwise [`Error::CloseTimeout`]: the peer did not answer our Close,
//!   or did not read what had to go out before TCP could close (our Close,
//!   or our reply to its Close, among it), so the close did not complete.
//!
//! The send timer runs while closing too, and the first of the two to
//! fire ends the connection. If it is the send timer, `recv` returns the
//! error the connection failed with, if it failed (as above), and
//! otherwise [`Error::SendTimeout`]; `flush` and `send` return
//! [`Error::SendTimeout`]. With the defaults (5 s against 60 s) the close
//! timer always comes first.
//!
//! The send timer is set at most once per refused write and only read
//! again when the next write is refused: a socket that keeps up costs
//! each write one store, no clock read and no allocation. A send timeout
//! is sticky: once it fired, `queue`, `send`, `flush` and `recv` all
//! return it (`recv` once, then `None`). Nothing is written after it, not
//! even a Close, so the peer sees TCP end without one.
//!
//! # Memory
//!
//! No buffer is allocated ahead of need. A read into an empty connection
//! goes through a 4 KiB buffer on the stack of the poll call and is copied
//! into the connection; only a frame that spans reads makes the connection
//! grow a read buffer, in steps of at most 256 KiB, never past the limits
//! of [`proto::Config`]. Payloads are handed out as
//! `Bytes` split off that buffer, and outgoing payloads are written from
//! the caller's `Bytes` without a copy.
//!
//! Output is bounded by [`Config::write_buffer_limit`]: a `recv`, then
//! `queue`, loop holds at worst the limit plus one message (and its frame
//! header) queued, since a message is returned only while the output is
//! within the limit. With the read side's bound, a connection's worst case
//! is about the limit, plus one outgoing message, plus
//! [`max_message_size`](proto::Config::max_message_size) and one read
//! coming in. A peer that stops reading holds it for at most
//! [`Config::send_timeout`] after the socket last took a byte.

#[cfg(feature = "axum")]
mod extract;
mod handshake;
mod http_types;
mod proxy;
mod socket;
mod split;
mod stream;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
pub mod trace;
#[cfg(feature = "hyper")]
mod upgrade;

use std::fmt;
use std::io;
use std::time::Duration;

use crate::proto;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::{WsRejection, WsUpgrade};
pub use handshake::{accept, accept_request, accept_upgrade, connect, connect_with, read_request};
/// The `http` crate, whose types [`accept_with_callback`] and
/// [`connect_request`] take and give, re-exported so a caller names the
/// same version.
pub use http;
pub use http_types::{
    HandshakeDecision, accept_with_callback, connect_request, connect_request_with,
    is_handshake_header,
};
pub use proxy::{Proxy, ProxyEnv, ProxyError, ProxyFailure, ProxyKind};
pub use socket::WebSocket;
pub use split::{WsReader, WsWriter};
pub use stream::{Connector, MaybeTlsStream};
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub use upgrade::{UpgradedStream, Upgrading, error_response, upgrade};

/// Settings of the transport, on top of the protocol's limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// The protocol's limits ([`proto::Config`]).
    pub protocol: proto::Config,
    /// How long the opening handshake may take, from the first byte read
    /// (server) or the connection (client). Default 10 s, as nginx's
    /// `client_header_timeout` (60 s) would let a slowloris hold a slot for
    /// too long, and a healthy handshake takes one round trip. Over TLS,
    /// the TCP connection and the TLS handshake get as long again, before
    /// it ([`Connector::connect`], [`tls::accept`]); a client's exchange
    /// with a proxy runs in that same first window.
    pub handshake_timeout: Duration,
    /// How long closing may take: waiting for the peer's Close frame after
    /// sending ours, for the peer to take our last output (a Close among
    /// it) when TCP must close, and for its FIN (a client, after the close
    /// handshake; a server, draining after its own FIN). One deadline for
    /// all, from the first of them; on expiry unwritten output is dropped
    /// (see "Timers" in the [module documentation](self)). Default 5 s,
    /// about what browsers allow.
    pub close_timeout: Duration,
    /// Send a Ping after this much silence, and give up when the Pong does
    /// not come in time. Default off.
    pub keepalive: Option<Keepalive>,
    /// Subprotocols: a server picks the first one the client offers that is
    /// in this list; a client offers these.
    pub subprotocols: Vec<String>,
    /// Output queued and not yet written, in bytes, above which the
    /// connection stops reading from the peer (and
    /// [`Sink::poll_ready`](futures_sink::Sink::poll_ready) waits) until the
    /// socket has taken enough of it: the backpressure that keeps a peer
    /// which sends and never reads from filling our memory with replies.
    /// See "Backpressure" in the [module documentation](self).
    ///
    /// Default 64 KiB: the high-water mark our `Sink` used before this
    /// setting existed, and twice python-websockets' `write_limit` high-water
    /// mark (32 KiB). Memory per connection is at most about this plus one
    /// message (see "Memory").
    pub write_buffer_limit: usize,
    /// How long a frame may take to arrive, from its first byte to its
    /// last, once the handshake is done. On expiry, a Close with 1008
    /// (Policy Violation, §7.4.1) is sent if the connection is open, and it
    /// ends with [`Error::FrameTimeout`]. It bounds how long a peer that
    /// trickles a frame (a slowloris after the handshake) can hold the
    /// connection and its read buffer.
    ///
    /// Default `None` (off): a 16 MiB frame (the default
    /// [`max_frame_size`](proto::Config::max_frame_size)) over a 1 Mbit/s
    /// link legitimately takes over two minutes, and only the application
    /// knows the sizes and links it serves. The chat server, whose messages
    /// are small JSON, sets 30 s.
    pub frame_timeout: Option<Duration>,
    /// How long queued output may wait while the socket accepts none of
    /// it. The timer starts when a write is refused (the socket's buffer
    /// is full because the peer is not reading), starts again after every
    /// write that makes progress, and stops once everything queued is
    /// written: it bounds the time between two successful writes, not a
    /// whole message. On expiry the connection ends at once: unwritten
    /// output is dropped, no Close frame is attempted (the peer reads
    /// nothing), our side of TCP is shut down, and `recv`, `send`,
    /// `flush`, the `Sink` and the split writer return
    /// [`Error::SendTimeout`] (see "Timers" in the
    /// [module documentation](self)). It bounds how long a peer that stops
    /// reading can hold the connection, its task and its output (up to
    /// [`write_buffer_limit`](Self::write_buffer_limit) plus one message),
    /// and how long a `send` or `flush` can wait on it.
    ///
    /// "Progress" is what the kernel reports: Linux wakes a blocked writer
    /// only once a third of the socket's send buffer is free, so a peer
    /// that reads `r` bytes a second restarts the timer about every
    /// `send buffer / (3 r)` seconds (loopback's buffer grows to 4 MiB;
    /// a slow link's stays near its bandwidth-delay product).
    ///
    /// Default `Some(60 s)`: nginx's `send_timeout`, which is likewise
    /// "set only between two successive write operations" and defaults to
    /// 60 s. A peer reading at all, however slowly, is not cut; one that
    /// reads nothing for a minute is. `None` waits for ever (then only the
    /// keepalive, or the application, ends such a peer).
    pub send_timeout: Option<Duration>,
}

/// Keepalive settings (§5.5.2: "A Ping frame MAY be sent ... as a
/// keepalive").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence (no bytes read) after which a Ping is sent.
    pub interval: Duration,
    /// How long the Pong may take before the connection is dropped.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocol: proto::Config::default(),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            keepalive: None,
            subprotocols: Vec::new(),
            write_buffer_limit: 64 * 1024,
            frame_timeout: None,
            send_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// Everything that can go wrong in the transport.
#[derive(Debug)]
pub enum Error {
    /// The socket failed.
    Io(io::Error),
    /// The opening handshake failed (RFC 6455 §4): a server has answered
    /// it with [`HandshakeError::response`](proto::HandshakeError::response)
    /// where it could; no WebSocket connection exists.
    Handshake(proto::HandshakeError),
    /// The connection failed: a peer's violation (a Close frame with its
    /// code was sent), an abnormal closure (1006), or a send after Close.
    Protocol(proto::Error),
    /// The opening handshake took longer than
    /// [`Config::handshake_timeout`].
    HandshakeTimeout,
    /// The close did not complete within [`Config::close_timeout`]: the
    /// peer did not answer our Close, or did not read the output (our
    /// Close, or our reply to its Close, among it) that had to go out
    /// before TCP could close. Unwritten output was dropped.
    CloseTimeout,
    /// The peer did not answer a keepalive Ping in time.
    PongTimeout,
    /// A frame did not arrive whole within [`Config::frame_timeout`] of
    /// its first byte. If the connection was open, a Close with 1008
    /// (Policy Violation, §7.4.1) was queued and, socket permitting,
    /// written.
    FrameTimeout,
    /// The socket accepted none of our output for
    /// [`Config::send_timeout`]: the peer stopped reading. The output was
    /// dropped and TCP shut down without a Close frame, which the peer
    /// would not have read. Sticky: later sends and flushes return it too.
    SendTimeout,
    /// The TLS handshake failed (feature `tls`): the server's certificate
    /// did not verify (`InvalidCertificate`, with the reason), the peer
    /// sent an alert, or it speaks no version or cipher we do.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    Tls(rustls::Error),
    /// A `wss://` URL, in a build without the `tls` feature.
    TlsUnsupported,
    /// The server's handshake callback refused the connection
    /// ([`accept_with_callback`]): its response, with this status, was
    /// sent, and no WebSocket connection exists.
    Rejected(http::StatusCode),
    /// A proxy could not be used: it refused the tunnel (an HTTP status
    /// such as 407 or 403, a SOCKS5 reply code), could not be reached,
    /// answered out of its protocol or over its bound, or its URL is not
    /// one we can use. The error names the proxy (never its password) and
    /// what it said.
    Proxy(ProxyError),
}

impl Error {
    /// The close code this error sent to the peer, if it sent one.
    pub fn close_code(&self) -> Option<proto::CloseCode> {
        match self {
            Error::Protocol(e) => e.close_code(),
            // A handshake answers with an HTTP status, not a close code.
            Error::Handshake(_) => None,
            // Unless our own Close (with its code) had gone out before.
            Error::FrameTimeout => Some(proto::CloseCode::POLICY_VIOLATION),
            // Nothing more reaches a peer that does not read, a Close
            // included, so none is sent.
            Error::SendTimeout => None,
            // No frame was exchanged, or the failure was below the
            // protocol: no Close was sent.
            Error::Io(_) | Error::HandshakeTimeout | Error::CloseTimeout | Error::PongTimeout => {
                None
            }
            #[cfg(feature = "tls")]
            Error::Tls(_) => None,
            Error::TlsUnsupported => None,
            // Refused in HTTP, before there was a connection.
            Error::Rejected(_) => None,
            // Before the server was reached.
            Error::Proxy(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Handshake(e) => write!(f, "handshake failed: {e}"),
            Error::Protocol(e) => write!(f, "{e}"),
            Error::HandshakeTimeout => f.write_str("opening handshake timed out"),
            Error::CloseTimeout => f.write_str("peer did not complete the close in time"),
            Error::PongTimeout => f.write_str("peer did not answer a keepalive Ping in time"),
            Error::FrameTimeout => f.write_str("peer did not finish sending a frame in time"),
            Error::SendTimeout => f.write_str("peer did not read our output in time"),
            #[cfg(feature = "tls")]
            Error::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Error::TlsUnsupported => {
                f.write_str("wss:// URLs need TLS: this build has no `tls` feature")
            }
            Error::Rejected(status) => write!(f, "handshake refused with HTTP {status}"),
            Error::Proxy(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::Protocol(e) => Some(e),
            #[cfg(feature = "tls")]
            Error::Tls(e) => Some(e),
            Error::Proxy(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<proto::Error> for Error {
    fn from(e: proto::Error) -> Self {
        Error::Protocol(e)
    }
}

impl From<proto::HandshakeError> for Error {
    fn from(e: proto::HandshakeError) -> Self {
        Error::Handshake(e)
    }
}
