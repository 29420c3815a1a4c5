//! The opening handshake (RFC 6455 §4) in the `http` crate's types, for
//! code that already speaks them (hyper, axum, tower): a server callback
//! that sees the request as an [`http::Request<()>`] and answers with an
//! [`http::Response`], and a client that sends an `http::Request<()>` and
//! hands back the `http::Response<()>`.
//!
//! The rules stay `proto::handshake`'s: the request is checked (§4.2.1)
//! before the callback sees it, and the fields that make the handshake
//! what it is (`Upgrade`, `Connection`, `Sec-WebSocket-Accept`, §4.2.2
//! item 5) are ours to write, whatever the callback does to them. `proto/`
//! knows nothing of this crate: the conversion lives here, at the
//! transport's edge.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::handshake::{client_handshake, read_request, reject};
use super::{Config, Connector, Error, MaybeTlsStream, WebSocket};
use crate::proto::{
    Connection, HandshakeError, Request, Response, Role, UpgradeRequest, WsUrl, deflate,
};

/// What a handshake callback of [`accept_with_callback`] decides.
#[derive(Debug)]
pub enum HandshakeDecision {
    /// Accept, sending this 101 (with a subprotocol, extra headers).
    Accept(http::Response<()>),
    /// Refuse, sending this response (any status, any body), then close.
    Refuse(http::Response<Bytes>),
}

/// Accepts a WebSocket connection on `stream` (server side, §4.2) and lets
/// `callback` decide: it sees the checked request (path, query, headers:
/// `Cookie`, `Origin`, `Authorization`) and the 101 response we would send,
/// with the first subprotocol [`Config::subprotocols`] lists and the
/// client offered already chosen, and permessage-deflate negotiated.
///
/// - [`HandshakeDecision::Accept`] accepts. The callback may add headers (`Set-Cookie`)
///   and set `Sec-WebSocket-Protocol` to another protocol the client
///   offered, or remove it (§4.2.2 item 5.4: a value "from the client's
///   handshake"; one it did not offer is answered 500 and fails with
///   [`HandshakeError::ProtocolNotOffered`]). Removing
///   `Sec-WebSocket-Extensions` turns permessage-deflate off; any value it
///   has is replaced by the agreement reached. A status other than 101 is
///   a refusal with an empty body.
/// - [`HandshakeDecision::Refuse`] refuses with its status, headers and body
///   (`Content-Length` and `Connection: close` are added if missing), then
///   closes; the call fails with [`Error::Rejected`].
///
/// A request that is not a valid upgrade is refused before the callback
/// runs, as by [`accept`](super::accept). All of it runs within
/// [`Config::handshake_timeout`].
///
/// # Cancel safety
///
/// Not cancel-safe: dropping the future drops the half-read request. Drop
/// the stream too.
pub async fn accept_with_callback<S, F>(
    mut stream: S,
    config: Config,
    callback: F,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&http::Request<()>, http::Response<()>) -> HandshakeDecision,
{
    let deadline = config.handshake_timeout;
    // Boxed, as `accept` is: the handshake's state is freed when it ends.
    Box::pin(tokio::time::timeout(deadline, async {
        let checked = match read_request(&mut stream, &config.protocol).await {
            Ok((request, leftover)) => to_http_request(&request)
                .and_then(|http_request| Ok((request.upgrade()?, http_request, leftover))),
            Err(Error::Handshake(e)) => Err(e),
            Err(e) => return Err(e),
        };
        let (upgrade, request, leftover) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                reject(&mut stream, &e).await;
                return Err(e.into());
            }
        };
        let protocol = upgrade.choose_protocol(&config.subprotocols);
        let deflate =
            deflate::configured(&config.protocol).and_then(|c| upgrade.negotiate_deflate(c));
        let proposed = switching_protocols(&upgrade, protocol, deflate.as_ref());
        let response = match callback(&request, proposed) {
            HandshakeDecision::Accept(response)
                if response.status() == StatusCode::SWITCHING_PROTOCOLS =>
            {
                response
            }
            HandshakeDecision::Accept(other) => {
                return refuse(&mut stream, other.map(|()| Bytes::new())).await;
            }
            HandshakeDecision::Refuse(refusal) => return refuse(&mut stream, refusal).await,
        };
        let (head, deflate) = match finish_response(&upgrade, response, deflate) {
            Ok(done) => done,
            Err(e) => {
                reject(&mut stream, &e).await;
                return Err(e.into());
            }
        };
        stream.write_all(&head).await?;
        stream.flush().await?;
        let mut conn = Connection::new(Role::Server, config.protocol.clone()).with_deflate(deflate);
        conn.receive(&leftover);
        Ok(WebSocket::from_parts(stream, conn, &config))
    }))
    .await
    .map_err(|_| Error::HandshakeTimeout)?
}

/// The request as the `http` crate sees it. Its head passed httparse, so
/// only a target that is no URI (400) can fail here.
fn to_http_request(request: &Request) -> Result<http::Request<()>, HandshakeError> {
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(request.target.as_str())
        .version(match request.version_minor {
            0 => Version::HTTP_10,
            _ => Version::HTTP_11,
        });
    for h in &request.headers {
        builder = builder.header(h.name.as_str(), h.value.as_slice());
    }
    builder.body(()).map_err(|_| HandshakeError::MalformedHttp)
}

/// The 101 of §4.2.2 that [`accept`](super::accept) would send, for the
/// callback to start from.
pub(super) fn switching_protocols(
    upgrade: &UpgradeRequest,
    protocol: Option<&str>,
    deflate: Option<&crate::proto::deflate::DeflateParams>,
) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    set_handshake_fields(response.headers_mut(), upgrade);
    if let Some(value) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    if let Some(value) = deflate.and_then(|d| HeaderValue::from_str(&d.response()).ok()) {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
    }
    response
}

/// §4.2.2 item 5: `Upgrade`, `Connection` and `Sec-WebSocket-Accept`, ours
/// whatever the callback wrote.
fn set_handshake_fields(headers: &mut HeaderMap, upgrade: &UpgradeRequest) {
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&upgrade.accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
}

/// The callback's 101, checked (a subprotocol the client offered, §4.2.2)
/// and serialised, and the deflate agreement it keeps.
fn finish_response(
    upgrade: &UpgradeRequest,
    mut response: http::Response<()>,
    deflate: Option<crate::proto::deflate::DeflateParams>,
) -> Result<(Vec<u8>, Option<crate::proto::deflate::DeflateParams>), HandshakeError> {
    let headers = response.headers_mut();
    set_handshake_fields(headers, upgrade);
    let mut protocols = headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter();
    if let Some(chosen) = protocols.next() {
        // §4.2.2 item 5.4: one value, from the client's list.
        let offered = chosen
            .to_str()
            .is_ok_and(|p| upgrade.protocols.iter().any(|o| o == p));
        if !offered || protocols.next().is_some() {
            return Err(HandshakeError::ProtocolNotOffered);
        }
    }
    // Only the agreement we reached can run: removing the field turns
    // deflate off, any other value is replaced by ours.
    let deflate = match (
        headers.contains_key(header::SEC_WEBSOCKET_EXTENSIONS),
        deflate,
    ) {
        (true, Some(params)) => {
            if let Ok(value) = HeaderValue::from_str(&params.response()) {
                headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
            }
            Some(params)
        }
        (true, None) => {
            headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
            None
        }
        (false, _) => None,
    };
    let mut head = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
    write_headers(&mut head, response.headers());
    head.extend_from_slice(b"\r\n");
    Ok((head, deflate))
}

fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Sends the callback's refusal (§4.2.2: "the server ... return[s] an
/// HTTP response with an appropriate error code"), then our FIN.
async fn refuse<S, T>(stream: &mut S, refusal: http::Response<Bytes>) -> Result<T, Error>
where
    S: AsyncWrite + Unpin,
{
    let status = refusal.status();
    let (mut parts, body) = refusal.into_parts();
    parts
        .headers
        .entry(header::CONTENT_LENGTH)
        .or_insert_with(|| HeaderValue::from(body.len()));
    parts
        .headers
        .entry(header::CONNECTION)
        .or_insert_with(|| HeaderValue::from_static("close"));
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    write_headers(&mut head, &parts.headers);
    head.extend_from_slice(b"\r\n");
    // The connection is refused either way: errors writing are moot.
    let _ = stream.write_all(&head).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
    Err(Error::Rejected(status))
}

/// Connects with `request` as the opening request (§4.1): its URI is the
/// `ws://` or `wss://` URL, its headers go out with ours (`Origin`,
/// `Cookie`, `Authorization`, anything else), and a
/// `Sec-WebSocket-Protocol` in it is the list of subprotocols offered
/// (instead of [`Config::subprotocols`]). The fields the handshake owns
/// (`Host`, `Upgrade`, `Connection`, `Sec-WebSocket-Key`,
/// `Sec-WebSocket-Version`, `Sec-WebSocket-Extensions`) are ours: the
/// request's are ignored. Returns the socket and the server's 101 as an
/// `http::Response<()>`. A header value that is not visible ASCII (which
/// `http` allows, from 0x80 up) gives [`Error::Io`] of kind
/// `InvalidInput` naming the header, before anything is sent.
///
/// # Cancel safety
///
/// Not cancel-safe: dropping it drops the half-open connection.
pub async fn connect_request(
    request: http::Request<()>,
    config: Config,
) -> Result<(WebSocket<MaybeTlsStream>, http::Response<()>), Error> {
    let url = WsUrl::parse(&request.uri().to_string())?;
    let stream = Connector::new()
        .open(&url, config.handshake_timeout)
        .await?;
    connect_request_with(stream, &request, config).await
}

/// As [`connect_request`], over an established stream (TCP, TLS, a proxy
/// tunnel) to the server the request's URI names.
///
/// # Cancel safety
///
/// Not cancel-safe.
pub async fn connect_request_with<S>(
    stream: S,
    request: &http::Request<()>,
    config: Config,
) -> Result<(WebSocket<S>, http::Response<()>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let url = WsUrl::parse(&request.uri().to_string())?;
    let offered: Vec<String> = match request.headers().get(header::SEC_WEBSOCKET_PROTOCOL) {
        Some(value) => list(value)?,
        None => config.subprotocols.clone(),
    };
    let protocols: Vec<&str> = offered.iter().map(String::as_str).collect();
    let mut extra = Vec::new();
    for (name, value) in request.headers() {
        if !is_handshake_header(name) {
            // `http` takes bytes from 0x80 up in a value; the head we
            // write carries visible ASCII only. The caller's header is at
            // fault, not the server: say which, before a byte is sent.
            let value = value.to_str().map_err(|_| {
                Error::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("the value of the {name} header is not visible ASCII"),
                ))
            })?;
            extra.push((name.as_str(), value));
        }
    }
    let (ws, response) = client_handshake(stream, &url, &protocols, &extra, config).await?;
    Ok((ws, to_http_response(&response)))
}

/// Whether `name` is a request header field §4.1 makes the client's
/// handshake write itself, which [`connect_request`] takes from its own
/// arguments, never from the request's headers (`Sec-WebSocket-Protocol`
/// is read as the offer): for a caller checking its user's headers.
pub fn is_handshake_header(name: &HeaderName) -> bool {
    [
        header::HOST,
        header::UPGRADE,
        header::CONNECTION,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_PROTOCOL,
        header::SEC_WEBSOCKET_EXTENSIONS,
    ]
    .contains(name)
}

/// A comma-separated list (§4.1 item 10), trimmed.
fn list(value: &HeaderValue) -> Result<Vec<String>, HandshakeError> {
    let text = value
        .to_str()
        .map_err(|_| HandshakeError::InvalidProtocolHeader)?;
    Ok(text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The server's 101, checked by `proto::handshake`, as the `http` crate
/// sees it.
fn to_http_response(response: &Response) -> http::Response<()> {
    let mut out = http::Response::new(());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for h in &response.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(&h.value),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    out
}
