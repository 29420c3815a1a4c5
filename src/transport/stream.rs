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
//! Through a proxy ([`Connector::with_proxy`],
//! [`Connector::with_env_proxy`]), the TCP connection goes to the proxy
//! and carries a tunnel to the server (see "Behind a proxy" in the
//! [module documentation](super)); the
//! stream is the same type, and TLS runs inside the tunnel.
//!
//! Servers do not need it: a server knows whether it listens for TLS and
//! hands [`accept`](super::accept) the stream it has, `TcpStream` or
//! `tokio_rustls::server::TlsStream<TcpStream>`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::proxy::{self, Proxy, ProxyEnv};
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
/// No proxy is used unless asked for: [`Connector::with_proxy`] sends
/// every connection through one, [`Connector::with_env_proxy`] picks one
/// per URL from `HTTPS_PROXY`, `http_proxy`, `ALL_PROXY` and `NO_PROXY`
/// as curl does. `Connector::new()` never reads the environment: a
/// library should not send its caller's connections elsewhere because of
/// a variable the caller did not choose to honour.
///
/// A connector is cheap to clone (an `Arc` or two at most) and to keep:
/// make one and connect with it many times.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use rfc6455::transport::{Config, Connector, Proxy, tls};
///
/// // Trust only the CA in ca.pem (a test server's self-signed CA).
/// let roots = tls::root_store_from_pem("ca.pem")?;
/// let connector = Connector::with_tls(tls::client_config(roots));
/// let (mut ws, _) = connector.connect("wss://localhost:8443/", Config::default()).await?;
///
/// // Through the proxies the environment names, as curl would.
/// let connector = Connector::new().with_env_proxy();
/// // Through this one, whatever the environment says.
/// let connector = Connector::new().with_proxy(Proxy::parse("socks5h://127.0.0.1:1080")?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Connector {
    /// `None`: the webpki roots, built on first use.
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Direct, or through which proxy.
    route: Route,
}

/// How a [`Connector`] reaches servers.
#[derive(Debug, Clone, Default)]
enum Route {
    #[default]
    Direct,
    Via(Arc<Proxy>),
    Env(Arc<ProxyEnv>),
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
        Self {
            tls: Some(config),
            route: Route::Direct,
        }
    }

    /// The same connector, connecting through `proxy` to every URL (an
    /// HTTP CONNECT or SOCKS5 proxy; see [`Proxy`]). `NO_PROXY` is not
    /// read: the caller chose this proxy.
    pub fn with_proxy(mut self, proxy: Proxy) -> Self {
        self.route = Route::Via(Arc::new(proxy));
        self
    }

    /// The same connector, choosing a proxy per URL from this process's
    /// environment as curl does (`https_proxy`/`HTTPS_PROXY` for `wss://`,
    /// `http_proxy` for `ws://`, `ALL_PROXY`, `NO_PROXY`: see
    /// [`ProxyEnv`]). The variables are read now, once; a bad proxy URL in
    /// one is reported by the connection that would use it.
    pub fn with_env_proxy(self) -> Self {
        self.with_env_proxy_from(ProxyEnv::from_process())
    }

    /// The same connector, choosing a proxy per URL from `env` (see
    /// [`ProxyEnv::from_lookup`], for variables that are not this
    /// process's).
    pub fn with_env_proxy_from(mut self, env: ProxyEnv) -> Self {
        self.route = Route::Env(Arc::new(env));
        self
    }

    /// The proxy a connection to `url` goes through, `None` for a direct
    /// one; an error for a proxy variable that holds no usable URL.
    pub fn proxy_for(&self, url: &WsUrl) -> Result<Option<Proxy>, Error> {
        match &self.route {
            Route::Direct => Ok(None),
            Route::Via(proxy) => Ok(Some(Proxy::clone(proxy))),
            Route::Env(env) => env.proxy_for(url),
        }
    }

    /// Connects to a `ws://` or `wss://` URL and runs the opening
    /// handshake (§4.1): TCP with Nagle's algorithm off (small frames
    /// should not wait), through the proxy if there is one, then TLS for
    /// `wss://` with the URL's host as the server name, all within
    /// [`Config::handshake_timeout`]; then the WebSocket handshake, within
    /// it again.
    ///
    /// A proxy that refuses the tunnel gives [`Error::Proxy`], naming the
    /// proxy and its answer.
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

    /// Opens the stream for `url`, TCP (to the server, or to the proxy and
    /// through its tunnel) and, for `wss://`, TLS, all within `timeout`,
    /// without the WebSocket handshake: for a caller that wraps the stream
    /// (in [`Traced`](super::trace::Traced), say) before handing it to
    /// [`connect_with`](super::connect_with).
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping it drops the half-open connection.
    pub async fn open(&self, url: &WsUrl, timeout: Duration) -> Result<MaybeTlsStream, Error> {
        tokio::time::timeout(timeout, async {
            let stream = self.open_tcp(url).await?;
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

    /// The TCP part of [`open`](Connector::open) alone: a connection to
    /// `url`'s host and port, or to the proxy and through its tunnel, with
    /// Nagle's algorithm off; no TLS, even for `wss://`, and no timeout
    /// (the caller applies one). For a caller that runs TLS itself
    /// ([`tls::connect_tls`](super::tls::connect_tls)) over a stream it
    /// wraps, to watch the handshake's bytes.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping it drops the half-open connection.
    pub async fn open_tcp(&self, url: &WsUrl) -> Result<TcpStream, Error> {
        let stream = match self.proxy_for(url)? {
            None => TcpStream::connect((url.host.as_str(), url.port)).await?,
            Some(proxy) => proxy::tunnel(&proxy, &url.host, url.port).await?,
        };
        stream.set_nodelay(true)?;
        Ok(stream)
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
    /// The TCP connection underneath, for its addresses and socket
    /// options. Through a proxy, it is the connection to the proxy.
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
