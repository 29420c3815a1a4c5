//! The opening handshake over a stream (RFC 6455 §4), with its timeout.
//!
//! The rules are `proto::handshake`'s (and, for permessage-deflate,
//! `proto::deflate`'s); this file reads and writes the
//! bytes. A server that routes HTTP itself (serving pages and WebSockets on
//! one port) reads the request head with
//! [`ServerHandshake`](crate::proto::ServerHandshake) and hands it to
//! [`accept_request`].

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Config, Connector, Error, MaybeTlsStream, WebSocket};
use crate::proto::{
    ClientHandshake, Connection, Request, Response, Role, ServerHandshake, UpgradeRequest, WsUrl,
    deflate,
};

/// Handshake reads go into a heap buffer of this size, dropped after the
/// handshake: held across an `.await`, a stack array would stay in the
/// connection task's memory for its whole life.
const HANDSHAKE_READ: usize = 2048;

/// Accepts a WebSocket connection on `stream` (server side, §4.2): reads
/// the request within [`Config::handshake_timeout`], answers 101, or
/// answers an HTTP error and fails.
///
/// # Cancel safety
///
/// Not cancel-safe: dropping the future drops the half-read request. Drop
/// the stream too.
pub async fn accept<S>(mut stream: S, config: Config) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = config.handshake_timeout;
    // Boxed: a task is as large as its largest state, and the handshake's
    // (timer, read buffer, parser) would otherwise stay allocated for the
    // connection's whole life. Boxed, it is freed when the handshake ends.
    Box::pin(tokio::time::timeout(deadline, async {
        let (request, leftover) = match read_request(&mut stream, &config.protocol).await {
            Ok(read) => read,
            Err(Error::Handshake(e)) => {
                reject(&mut stream, &e).await;
                return Err(e.into());
            }
            Err(e) => return Err(e),
        };
        accept_request(stream, &request, &leftover, config.clone()).await
    }))
    .await
    .map_err(|_| Error::HandshakeTimeout)?
}

/// Reads an HTTP request head (any request, not only an upgrade) within
/// the header limits of `limits`, for a server that routes requests itself
/// before handing WebSocket ones to [`accept_request`]. Returns the request
/// and the bytes read past its head.
///
/// A head that breaks the limits or the grammar is
/// `Err(Error::Handshake(e))`: answer it with
/// `e.response()`. A peer that leaves first is an `UnexpectedEof` I/O error.
/// Apply your own timeout.
///
/// # Cancel safety
///
/// Not cancel-safe: dropping the future drops the half-read head.
pub async fn read_request<S>(
    stream: &mut S,
    limits: &crate::proto::Config,
) -> Result<(Request, Vec<u8>), Error>
where
    S: AsyncRead + Unpin,
{
    let mut handshake = ServerHandshake::new(limits);
    let mut buf = vec![0u8; HANDSHAKE_READ];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        if let Some((request, used)) = handshake.receive(&buf[..n])? {
            return Ok((request, buf[used..n].to_vec()));
        }
    }
}

/// Answers an HTTP error and closes our side; errors writing it are moot,
/// the connection is going away.
pub(super) async fn reject<S: AsyncWrite + Unpin>(
    stream: &mut S,
    error: &crate::proto::HandshakeError,
) {
    let _ = stream.write_all(&error.response()).await;
    let _ = stream.shutdown().await;
}

/// Accepts a request someone else read (an HTTP router): checks it
/// (§4.2.1), answers 101 or an HTTP error. `leftover` holds any bytes read
/// past the request head: the client's first frames.
///
/// # Cancel safety
///
/// Not cancel-safe: the response may be half written.
pub async fn accept_request<S>(
    mut stream: S,
    request: &Request,
    leftover: &[u8],
    config: Config,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match request.upgrade() {
        Ok(upgrade) => accept_upgrade(stream, &upgrade, leftover, config).await,
        Err(e) => {
            reject(&mut stream, &e).await;
            Err(e.into())
        }
    }
}

/// Answers a request already checked by [`Request::upgrade`] with 101,
/// choosing the first subprotocol the client offered that
/// [`Config::subprotocols`] lists, and accepting the first
/// permessage-deflate offer that the protocol config's `deflate` allows
/// (RFC 7692 §5.1).
///
/// # Cancel safety
///
/// Not cancel-safe: the response may be half written.
pub async fn accept_upgrade<S>(
    mut stream: S,
    upgrade: &UpgradeRequest,
    leftover: &[u8],
    config: Config,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let protocol = upgrade.choose_protocol(&config.subprotocols);
    let deflate = deflate::configured(&config.protocol).and_then(|c| upgrade.negotiate_deflate(c));
    let response = upgrade.accept_with(protocol, deflate.as_ref())?;
    stream.write_all(&response).await?;
    stream.flush().await?;
    let mut conn = Connection::new(Role::Server, config.protocol.clone()).with_deflate(deflate);
    conn.receive(leftover);
    Ok(WebSocket::from_parts(stream, conn, &config))
}

/// Connects to a `ws://` or `wss://` URL (client side, §4.1): TCP, then
/// TLS for `wss://` verified against Mozilla's root certificates, then the
/// opening handshake. The same as `Connector::new().connect(url, config)`;
/// see [`Connector`] for a custom TLS configuration (a private CA, a
/// self-signed test certificate).
///
/// # Cancel safety
///
/// Not cancel-safe: dropping it drops the half-open connection.
pub async fn connect(
    url: &str,
    config: Config,
) -> Result<(WebSocket<MaybeTlsStream>, Response), Error> {
    Connector::new().connect(url, config).await
}

/// Runs the client handshake for `url` over an established stream (TCP,
/// TLS, a proxy tunnel).
///
/// # Cancel safety
///
/// Not cancel-safe.
pub async fn connect_with<S>(
    stream: S,
    url: &WsUrl,
    config: Config,
) -> Result<(WebSocket<S>, Response), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let offered = config.subprotocols.clone();
    let protocols: Vec<&str> = offered.iter().map(String::as_str).collect();
    client_handshake(stream, url, &protocols, &[], config).await
}

/// The client handshake (§4.1) for `url`, offering `protocols` and adding
/// `extra_headers`, within [`Config::handshake_timeout`].
pub(super) async fn client_handshake<S>(
    mut stream: S,
    url: &WsUrl,
    protocols: &[&str],
    extra_headers: &[(&str, &str)],
    config: Config,
) -> Result<(WebSocket<S>, Response), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = config.handshake_timeout;
    // Boxed, as in `accept`.
    Box::pin(tokio::time::timeout(deadline, async {
        let (mut handshake, request) =
            ClientHandshake::new(url, protocols, extra_headers, &config.protocol)?;
        stream.write_all(&request).await?;
        stream.flush().await?;
        let mut buf = vec![0u8; HANDSHAKE_READ];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            if let Some((response, used)) = handshake.receive(&buf[..n])? {
                let mut conn = Connection::new(Role::Client, config.protocol.clone())
                    .with_deflate(response.deflate);
                conn.receive(&buf[used..n]);
                return Ok((WebSocket::from_parts(stream, conn, &config), response));
            }
        }
    }))
    .await
    .map_err(|_| Error::HandshakeTimeout)?
}
