//! The front door: one port, plain HTTP/1.1 for the pages and the probes,
//! and the WebSocket upgrade at `/ws`.
//!
//! With [`ChatConfig::tls`] set, every connection starts with a TLS
//! handshake (https and `wss://`, RFC 6455 §11.1.2), run here in the
//! connection's own task: a slow TLS client holds its task, never the
//! accept loop. The TLS handshake and the request head share one deadline.
//!
//! The request head is read by [`transport::read_request`] (the protocol
//! layer's incremental head reader, with its size limits) under a timeout,
//! then routed on its path. Only `/ws` goes on to the WebSocket handshake, with
//! the head already read ([`transport::accept_request`]). From there on
//! nothing depends on the stream being TCP or TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use crate::proto;
use crate::transport;

use super::ChatConfig;
use super::hub::Hub;
use super::session::{self, Auth};

/// What every connection handler shares.
pub struct Shared {
    /// The hub.
    pub hub: Arc<Hub>,
    /// How clients authenticate.
    pub auth: Arc<Auth>,
    /// The server's settings.
    pub config: ChatConfig,
}

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");

/// The page may load only its own scripts and styles and talk only to its
/// own origin: no CDN, no inline script.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// How long a client has to send its request head (after the TLS
/// handshake, if any, within the same time).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one WebSocket frame may take to arrive, first byte to last
/// (`transport::Config::frame_timeout`). Chat frames are small JSON, which
/// even a slow mobile link sends in well under a second; 30 s, the
/// keepalive interval (after which a silent peer is probed anyway), leaves
/// room for a stalled link to recover and still ends a frame trickled to
/// hold a connection open.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one TCP connection: the TLS handshake if the server has TLS,
/// then one request, or one WebSocket session.
pub async fn handle(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    #[cfg(feature = "tls")]
    if let Some(tls) = &shared.config.tls {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
        match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => serve(stream, peer, shared, deadline).await,
            Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => debug!(%peer, "TLS handshake timed out"),
        }
        return;
    }
    serve(stream, peer, shared, deadline).await
}

/// Serves one request, or one WebSocket session, on a TCP or TLS stream.
async fn serve<S>(mut stream: S, peer: SocketAddr, shared: Arc<Shared>, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = proto::Config::default();
    let head =
        tokio::time::timeout_at(deadline, transport::read_request(&mut stream, &limits)).await;
    let (request, leftover) = match head {
        Ok(Ok(read)) => read,
        Ok(Err(transport::Error::Protocol(proto::Error::Handshake(e)))) => {
            let _ = stream.write_all(&e.response()).await;
            return;
        }
        // The peer left, or took too long: nobody to answer.
        Ok(Err(_)) | Err(_) => return,
    };
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((request.target.as_str(), ""));
    debug!(%peer, method = %request.method, path, "request");
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return respond(
            &mut stream,
            405,
            "Method Not Allowed",
            "text/plain",
            b"GET only\n",
            head_only,
        )
        .await;
    }
    let hub = &shared.hub;
    match path {
        "/" | "/index.html" => {
            respond(
                &mut stream,
                200,
                "OK",
                "text/html; charset=utf-8",
                INDEX_HTML.as_bytes(),
                head_only,
            )
            .await
        }
        "/app.js" => {
            respond(
                &mut stream,
                200,
                "OK",
                "text/javascript; charset=utf-8",
                APP_JS.as_bytes(),
                head_only,
            )
            .await
        }
        "/style.css" => {
            respond(
                &mut stream,
                200,
                "OK",
                "text/css; charset=utf-8",
                STYLE_CSS.as_bytes(),
                head_only,
            )
            .await
        }
        "/healthz" if hub.is_shutting_down() => {
            respond(
                &mut stream,
                503,
                "Service Unavailable",
                "text/plain",
                b"shutting down\n",
                head_only,
            )
            .await
        }
        "/healthz" => {
            // Scaled out and Redis away: still serving our own clients, so
            // still 200 (a balancer that drained every server for it would
            // take the whole chat down); `?strict` answers 503 for
            // balancers that prefer to route around a degraded server.
            let body = match hub.cluster().map(|c| c.health()) {
                Some(Err(down)) => format!("degraded: redis unreachable for {}s\n", down.as_secs()),
                _ => "ok\n".to_owned(),
            };
            let (status, reason) = if body != "ok\n" && query == "strict" {
                (503, "Service Unavailable")
            } else {
                (200, "OK")
            };
            respond(
                &mut stream,
                status,
                reason,
                "text/plain",
                body.as_bytes(),
                head_only,
            )
            .await
        }
        "/metrics" => {
            let mut body = hub.metrics.render();
            if let Some(cluster) = hub.cluster() {
                body.push_str(&super::metrics::render_cluster(cluster));
            }
            respond(
                &mut stream,
                200,
                "OK",
                "text/plain; version=0.0.4",
                body.as_bytes(),
                head_only,
            )
            .await
        }
        "/ws" => {
            let full = hub.metrics.connections.get() as usize >= shared.config.max_connections;
            if hub.is_shutting_down() || full {
                if full {
                    hub.metrics.connections_refused.inc();
                }
                return respond(
                    &mut stream,
                    503,
                    "Service Unavailable",
                    "text/plain",
                    b"try again later\n",
                    false,
                )
                .await;
            }
            let mut config = transport::Config {
                keepalive: Some(shared.config.keepalive),
                frame_timeout: Some(FRAME_TIMEOUT),
                ..transport::Config::default()
            };
            config.protocol.deflate = shared.config.deflate.clone();
            match transport::accept_request(stream, &request, &leftover, config).await {
                Ok(ws) => {
                    let token = query_param(query, "token");
                    session::run(
                        ws,
                        hub.clone(),
                        shared.auth.clone(),
                        shared.config.rate_limit,
                        token,
                    )
                    .await
                }
                Err(e) => debug!(%peer, error = %e, "upgrade refused"),
            }
        }
        _ => {
            respond(
                &mut stream,
                404,
                "Not Found",
                "text/plain",
                b"not found\n",
                head_only,
            )
            .await
        }
    }
}

/// Writes a whole response and closes our side.
async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nContent-Security-Policy: {CSP}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    if !head_only {
        let _ = stream.write_all(body).await;
    }
    let _ = stream.shutdown().await;
}

/// A parameter of a query string (no percent-decoding: the only one we
/// read is a JWT, whose alphabet needs none).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_owned())
    })
}
