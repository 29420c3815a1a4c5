//! (feature `hyper`) RFC 6455 §4.2 inside a hyper 1.x server: a request
//! hyper has parsed is checked and answered with the 101 to return, and
//! the connection hyper hands over after it (`hyper::upgrade::Upgraded`)
//! becomes our [`WebSocket`].
//!
//! hyper owns the HTTP/1.1 connection until the 101 has gone out; only
//! then does [`Upgrading`] resolve. The checks are `proto::handshake`'s
//! (§4.2.1), made on the request as hyper parsed it; the frames after the
//! handshake are ours, over `TokioIo<Upgraded>` as over any stream.
//! Serve the connection with `hyper::server::conn::http1::Builder`'s
//! `serve_connection(..).with_upgrades()`, or nothing is ever handed over.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Method, StatusCode, Uri, Version};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;

use super::http_types::switching_protocols;
use super::{Config, Error, WebSocket};
use crate::proto::deflate::{self, DeflateParams};
use crate::proto::{Connection, Header, Request, Role};

/// The stream a hyper upgrade gives: the HTTP/1.1 connection after the 101.
pub type UpgradedStream = TokioIo<Upgraded>;

/// Checks a WebSocket upgrade request (§4.2.1) that hyper has parsed, and
/// returns the 101 to send (§4.2.2: with the first of
/// [`Config::subprotocols`] the client offered, and permessage-deflate if
/// the protocol config allows it) and the future of the socket, which
/// resolves once hyper has sent that response and handed the connection
/// over. Return the response from the service, mapping its body to the
/// service's type (`response.map(|()| String::new())`), and spawn the
/// future: hyper sends the 101 only once the service has returned.
///
/// A request that is no valid upgrade gives [`Error::Handshake`]; answer it
/// with [`error_response`]. A connection served without `with_upgrades()`
/// (or over HTTP/2) cannot be handed over: that is an [`Error::Io`].
pub fn upgrade<B>(
    request: &mut http::Request<B>,
    config: Config,
) -> Result<(http::Response<()>, Upgrading), Error> {
    let on = request.extensions_mut().remove::<OnUpgrade>();
    prepare(
        request.method(),
        request.uri(),
        request.version(),
        request.headers(),
        on,
        config,
    )
}

/// [`upgrade`] on a request's parts (what an axum extractor has), with
/// the `OnUpgrade` hyper left in its extensions.
pub(super) fn prepare(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    on: Option<OnUpgrade>,
    config: Config,
) -> Result<(http::Response<()>, Upgrading), Error> {
    let request = Request {
        method: method.as_str().to_owned(),
        target: uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        // §4.2.1 item 1: HTTP/1.1 or higher; an HTTP/1.0 request is
        // refused by the check below.
        version_minor: u8::from(version != Version::HTTP_10),
        headers: headers
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().to_owned(),
                value: value.as_bytes().to_vec(),
            })
            .collect(),
    };
    let upgrade = request.upgrade()?;
    let on = on.ok_or_else(|| {
        Error::Io(std::io::Error::other(
            "this connection cannot be upgraded: serve HTTP/1.1 with `with_upgrades()`",
        ))
    })?;
    let protocol = upgrade.choose_protocol(&config.subprotocols);
    let deflate = deflate::configured(&config.protocol).and_then(|c| upgrade.negotiate_deflate(c));
    let response = switching_protocols(&upgrade, protocol, deflate.as_ref());
    Ok((
        response,
        Upgrading {
            on,
            deflate,
            config,
        },
    ))
}

/// The HTTP answer to an [`upgrade`] that failed: the handshake error's
/// status (§4.2.1: "an appropriate error code (such as 400 Bad
/// Request)"; 426 with `Sec-WebSocket-Version: 13` for another version,
/// §4.4) and its reason as the body; 500 for a connection that cannot be
/// upgraded.
pub fn error_response(error: &Error) -> http::Response<String> {
    let (status, extra) = match error {
        Error::Handshake(e) => (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            matches!(e, crate::proto::HandshakeError::UnsupportedVersion),
        ),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, false),
    };
    let mut response = http::Response::new(format!("{error}\n"));
    *response.status_mut() = status;
    if extra {
        response.headers_mut().insert(
            http::header::SEC_WEBSOCKET_VERSION,
            http::HeaderValue::from_static("13"),
        );
    }
    response
}

/// The socket of an [`upgrade`], once hyper has sent the 101 and handed
/// the connection over.
#[derive(Debug)]
pub struct Upgrading {
    on: OnUpgrade,
    deflate: Option<DeflateParams>,
    config: Config,
}

impl Future for Upgrading {
    type Output = Result<WebSocket<UpgradedStream>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let upgraded = match Pin::new(&mut self.on).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(upgraded)) => upgraded,
            // The client left, or hyper could not send the 101.
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(std::io::Error::other(e)))),
        };
        // Bytes the client sent after its request are still hyper's: the
        // upgraded stream yields them first.
        let conn = Connection::new(Role::Server, self.config.protocol.clone())
            .with_deflate(self.deflate.take());
        Poll::Ready(Ok(WebSocket::from_parts(
            TokioIo::new(upgraded),
            conn,
            &self.config,
        )))
    }
}
