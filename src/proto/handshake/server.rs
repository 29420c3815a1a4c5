//! RFC 6455 §4.2, Server-Side Requirements: reading a client's request,
//! checking it against §4.2.1, and writing the 101 response of §4.2.2.
//!
//! What to do with a request that passed (route it, check its `Origin`,
//! choose a subprotocol) is the caller's; what a failure answers is
//! [`HandshakeError::response`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use super::error::HandshakeError;
use super::extension::{Extension, parse_extensions};
use super::head::{HeadReader, Header, check_parsed, collect_headers, write_header};
use super::lists::{list_contains, list_elements, single_value, token};
use super::{VERSION, accept_key};
use crate::proto::config::{Config, DeflateConfig};
use crate::proto::deflate::{self, DeflateParams, PERMESSAGE_DEFLATE};

/// An HTTP request head, parsed but not yet judged.
///
/// A server that serves pages and WebSockets on one port reads a `Request`
/// with [`ServerHandshake`], routes on [`target`](Self::target), and calls
/// [`upgrade`](Self::upgrade) only for its WebSocket endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target, e.g. `/chat?room=1` (§3 "resource name").
    pub target: String,
    /// The minor version of HTTP/1.x.
    pub version_minor: u8,
    /// Every header field, in order.
    pub headers: Vec<Header>,
}

impl Request {
    /// The one value of a header, trimmed; `None` if absent or repeated.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        single_value(&self.headers, name)
    }

    /// Whether the request asks for a WebSocket upgrade at all (has
    /// `Upgrade: websocket`), to route it before judging it.
    pub fn is_upgrade(&self) -> bool {
        list_contains(&self.headers, "upgrade", "websocket")
    }

    /// Checks the request against §4.2.1 and returns what the server needs
    /// to answer it.
    pub fn upgrade(&self) -> Result<UpgradeRequest, HandshakeError> {
        // 1. "An HTTP/1.1 or higher GET request".
        if self.method != "GET" {
            return Err(HandshakeError::MethodNotGet);
        }
        if self.version_minor < 1 {
            return Err(HandshakeError::HttpVersion);
        }
        // 2. "A |Host| header field containing the server's authority."
        let host = self
            .header("host")
            .filter(|h| !h.is_empty())
            .ok_or(HandshakeError::MissingHost)?;
        // 3. "An |Upgrade| header field containing the value "websocket",
        //    treated as an ASCII case-insensitive value."
        if !self.is_upgrade() {
            return Err(HandshakeError::MissingUpgrade);
        }
        // 4. "A |Connection| header field that includes the token "Upgrade"".
        if !list_contains(&self.headers, "connection", "upgrade") {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        // 6. "A |Sec-WebSocket-Version| header field, with a value of 13."
        //    Checked before the key so that a client of another version
        //    learns which one we speak (§4.4) rather than about its key.
        if self.header("sec-websocket-version") != Some(VERSION.as_bytes()) {
            return Err(HandshakeError::UnsupportedVersion);
        }
        // 5. "A |Sec-WebSocket-Key| header field with a base64-encoded value
        //    that, when decoded, is 16 bytes in length."
        let key = self
            .header("sec-websocket-key")
            .ok_or(HandshakeError::InvalidKey)?;
        if !BASE64.decode(key).is_ok_and(|decoded| decoded.len() == 16) {
            return Err(HandshakeError::InvalidKey);
        }
        Ok(UpgradeRequest {
            target: self.target.clone(),
            host: String::from_utf8_lossy(host).into_owned(),
            origin: self
                .header("origin")
                .map(|o| String::from_utf8_lossy(o).into_owned()),
            accept: accept_key(key),
            // 8. "Optionally, a |Sec-WebSocket-Protocol| header field, with a
            //    list of values indicating which protocols the client would
            //    like to speak, ordered by preference."
            protocols: parse_protocols(&self.headers)?,
            // 9. "Optionally, a |Sec-WebSocket-Extensions| header field".
            extensions: parse_extensions(&self.headers)?,
        })
    }
}

/// Reads a client's opening handshake request (§4.2.1), incrementally.
#[derive(Debug)]
pub struct ServerHandshake {
    head: HeadReader,
}

impl ServerHandshake {
    /// Ready to read a request, with the limits of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            head: HeadReader::new(config),
        }
    }

    /// Takes the next bytes from the client. Returns `Ok(None)` while the
    /// head is incomplete, or the parsed request and how many bytes of
    /// `data` it used: bytes after that are the client's first frames and
    /// belong to the connection.
    pub fn receive(&mut self, data: &[u8]) -> Result<Option<(Request, usize)>, HandshakeError> {
        self.head.read(data, |slots, head| {
            let mut req = httparse::Request::new(slots);
            check_parsed(req.parse(head))?;
            Ok(Request {
                method: req.method.unwrap_or_default().to_owned(),
                target: req.path.unwrap_or_default().to_owned(),
                version_minor: req.version.unwrap_or_default(),
                headers: collect_headers(req.headers),
            })
        })
    }
}

/// A request that passed §4.2.1: what a server needs to accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The resource name, e.g. `/ws?token=…`.
    pub target: String,
    /// The `Host` header.
    pub host: String,
    /// The `Origin` header, sent by browsers (§4.2.1 item 7, §10.2): a
    /// server that serves browsers should check it.
    pub origin: Option<String>,
    /// The `Sec-WebSocket-Accept` value for this request's key.
    pub accept: String,
    /// The subprotocols the client offered, in its order of preference.
    pub protocols: Vec<String>,
    /// The extensions the client offered (RFC 7692 negotiates from these).
    pub extensions: Vec<Extension>,
}

impl UpgradeRequest {
    /// The first subprotocol the client offered that `supported` contains
    /// (the client's order is its preference, §4.1).
    pub fn choose_protocol<'a>(&'a self, supported: &[impl AsRef<str>]) -> Option<&'a str> {
        self.protocols
            .iter()
            .find(|p| supported.iter().any(|s| s.as_ref() == p.as_str()))
            .map(String::as_str)
    }

    /// The 101 response of §4.2.2, optionally naming a subprotocol the
    /// client offered (§4.2.2 item 5.4: "the server MUST ... include ... a
    /// |Sec-WebSocket-Protocol| header field ... a value from the client's
    /// handshake"), accepting no extension.
    pub fn accept(&self, protocol: Option<&str>) -> Result<Bytes, HandshakeError> {
        self.accept_with(protocol, None)
    }

    /// The client's first permessage-deflate offer that `config` can
    /// accept, as the agreement to answer with (RFC 7692 §5.1); `None` if
    /// there is none.
    pub fn negotiate_deflate(&self, config: &DeflateConfig) -> Option<DeflateParams> {
        negotiate_deflate(&self.extensions, config)
    }

    /// As [`accept`](Self::accept), also accepting permessage-deflate with
    /// the agreement [`negotiate_deflate`](Self::negotiate_deflate) gave
    /// (RFC 7692 §5.1: the response's `Sec-WebSocket-Extensions` names the
    /// accepted offer's parameters).
    pub fn accept_with(
        &self,
        protocol: Option<&str>,
        deflate: Option<&DeflateParams>,
    ) -> Result<Bytes, HandshakeError> {
        if let Some(p) = protocol
            && !self.protocols.iter().any(|offered| offered == p)
        {
            return Err(HandshakeError::ProtocolNotOffered);
        }
        let mut head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
            self.accept
        );
        if let Some(p) = protocol {
            write_header(&mut head, "Sec-WebSocket-Protocol", p);
        }
        if let Some(params) = deflate {
            write_header(&mut head, "Sec-WebSocket-Extensions", &params.response());
        }
        head.push_str("\r\n");
        Ok(Bytes::from(head))
    }
}
/// §4.2.1 item 8: `Sec-WebSocket-Protocol` is a list of tokens (§4.1
/// item 10: "The elements that comprise this value MUST be non-empty
/// strings with characters in the range U+0021 to U+007E not including
/// separator characters as defined in \[RFC2616\]").
fn parse_protocols(headers: &[Header]) -> Result<Vec<String>, HandshakeError> {
    list_elements(headers, "sec-websocket-protocol")
        .map(|p| token(p, HandshakeError::InvalidProtocolHeader))
        .collect()
}

/// RFC 7692 §5.1: "the server ... may accept ... the first acceptable one";
/// an offer that breaks §7.1's rules is declined and the next is tried.
pub(super) fn negotiate_deflate(
    offers: &[Extension],
    config: &DeflateConfig,
) -> Option<DeflateParams> {
    offers
        .iter()
        .filter(|e| e.is(PERMESSAGE_DEFLATE))
        .find_map(|offer| deflate::accept(&offer.params, config))
}
