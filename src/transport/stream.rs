//! The client's stream: TCP for `ws://`, TLS over TCP for `wss://`
//! (RFC 6455 §3, §4.1, §11.1.2), and the [`Connector`] that opens it.
//!
//! [`connect`](super::connect) takes the scheme from a URL, which is data
//! known only at run time (a command line, a config file), so the stream it
//! returns has one type for both schemes: [`MaybeTlsStream`]. The
//! alternative, a second function returning `WebSocket<TlsStream<..>>`,
//! would push the choice onto every caller, each writing the same `match`
//! on the scheme and keeping two code paths after it. An enum costs one
//! branch per read or write, next to a system call.
//!
//! Servers do not need it: a server knows whether it listens for TLS and
//! hands [`accept`](super::accept) the stream it has, `TcpStream` or
//! `tokio_rustls::server::TlsStream<TcpStream>`.

use std::io;
use std::pin::Pin;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{Config, Error, WebSocket};
use crate::proto::{Response, WsUrl};

/// Opens client connections: TCP for `ws://`, TLS over TCP for `wss://`,
/// then the opening handshake.
///
/// [`Connector::new`] (also `Default`) verifies `wss://` servers against
/// Mozilla's root certificates
/// ([`tls::webpki_client_config`](super::tls::webpki_client_config));
/// [`Connector::with_tls`] takes a rustls configuration of your own: a
/// private CA, a self-signed test certificate, a client certificate.
/// [`connect`](super::connect) is `Connector::new().connect(..)`.
///
/// A connector is cheap to clone (an `Arc` at most) and to keep: make one
/// and connect with it many times.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use rfc6455::transport::{Config, Connector, tls};
///
/// // Trust only the CA in ca.pem (a test server's self-signed CA).
/// let roots = tls::root_store_from_pem("ca.pem")?;
/// let connector = Connector::with_tls(tls::client_config(roots));
/// let (mut ws, _) = connector.connect("wss://localhost:8443/", Config::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Connector {
    /// `None`: the webpki roots, built on first use.
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Connector {
    /// A connector that verifies `wss://` servers against Mozilla's root
    /// certificates. Without the `tls` feature, `wss://` URLs fail with
    /// [`Error::TlsUnsupported`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A connector that uses `config` for `wss://` URLs, as given: its
    /// roots, its ALPN list (name `http/1.1`, or none), its client
    /// certificate. `ws://` URLs still connect without TLS, so one
    /// connector serves any URL a user types.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn with_tls(config: Arc<rustls::ClientConfig>) -> Self {
        Self { tls: Some(config) }
    }

    /// Connects to a `ws://` or `wss://` URL and runs the opening
    /// handshake (§4.1): TCP with Nagle's algorithm off (small frames
    /// should not wait), then TLS for `wss://` with the URL's host as the
    /// server name, both within [`Config::handshake_timeout`]; then the
    /// WebSocket handshake, within it again.
    ///
    /// A server whose certificate does not verify gives
    /// [`Error::Tls`] holding
    /// `rustls::Error::InvalidCertificate(..)` with the reason.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping it drops the half-open connection.
    pub async fn connect(
        &self,
        url: &str,
        config: Config,
    ) -> Result<(WebSocket<MaybeTlsStream>, Response), Error> {
        let url = WsUrl::parse(url)?;
        let stream = self.open(&url, config.handshake_timeout).await?;
        super::connect_with(stream, &url, config).await
    }

    /// Opens the stream for `url`, TCP and (for `wss://`) TLS, within
    /// `timeout`, without the WebSocket handshake: for a caller that wraps
    /// the stream (in [`Traced`](super::trace::Traced), say) before
    /// handing it to [`connect_with`](super::connect_with).
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping it drops the half-open connection.
    pub async fn open(&self, url: &WsUrl, timeout: Duration) -> Result<MaybeTlsStream, Error> {
        tokio::time::timeout(timeout, async {
            let stream = TcpStream::connect((url.host.as_str(), url.port)).await?;
            stream.set_nodelay(true)?;
            if !url.secure {
                return Ok(MaybeTlsStream::Plain(stream));
            }
            #[cfg(feature = "tls")]
            {
                let config = match &self.tls {
                    Some(config) => config.clone(),
                    None => super::tls::webpki_client_config(),
                };
                let tls = super::tls::connect_tls(stream, &url.host, config).await?;
                Ok(MaybeTlsStream::Tls(Box::new(tls)))
            }
            #[cfg(not(feature = "tls"))]
            Err(Error::TlsUnsupported)
        })
        .await
        .map_err(|_| Error::HandshakeTimeout)?
    }
}

/// A client connection: plain TCP (`ws://`) or TLS over TCP (`wss://`).
///
/// The TLS variant is boxed: a rustls client connection is about a
/// kilobyte, and a plain connection should not carry that much unused
/// space in every `WebSocket`.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// `ws://`: the bytes go over TCP as they are.
    Plain(TcpStream),
    /// `wss://`: TLS (rustls) over TCP (feature `tls`).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl MaybeTlsStream {
    /// The TCP connection underneath, for its addresses and socket options.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTlsStream::Plain(s) => s,
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.get_ref().0,
        }
    }

    /// Whether the bytes go through TLS.
    pub fn is_tls(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(_) => false,
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(_) => true,
        }
    }
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
