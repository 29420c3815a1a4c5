//! RFC 6455 §4.1, Client Requirements: writing the opening request for a
//! [`WsUrl`], and checking the server's response against what was asked.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use super::accept_key;
use super::error::HandshakeError;
use super::extension::{Extension, parse_extensions};
use super::head::{HeadReader, Header, check_parsed, collect_headers, write_header};
use super::lists::{header_values, is_token, list_contains, single_value};
use super::url::WsUrl;
use crate::proto::config::{Config, DeflateConfig};
use crate::proto::deflate::{self, DeflateParams, PERMESSAGE_DEFLATE};
use crate::proto::rng::MaskRng;

/// What a successful response told the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The subprotocol the server chose, if any (one we offered).
    pub protocol: Option<String>,
    /// The extensions the server accepted (ones we offered).
    pub extensions: Vec<Extension>,
    /// The permessage-deflate agreement, if we offered it and the server
    /// accepted (RFC 7692 §5.1).
    pub deflate: Option<DeflateParams>,
    /// Every header field of the response.
    pub headers: Vec<Header>,
}

/// The client side of the opening handshake (§4.1): writes the request,
/// then reads and checks the response.
#[derive(Debug)]
pub struct ClientHandshake {
    accept: String,
    protocols: Vec<String>,
    /// The permessage-deflate offer we made, to check the answer against.
    deflate: Option<DeflateConfig>,
    head: HeadReader,
}

impl ClientHandshake {
    /// Builds the request for `url`, offering `protocols` (may be empty) and
    /// adding `extra_headers` (e.g. `Origin`, `Authorization`). The key is
    /// 16 random bytes (§4.1 item 7: "randomly selected").
    ///
    /// Returns the handshake state and the request bytes to send.
    pub fn new(
        url: &WsUrl,
        protocols: &[&str],
        extra_headers: &[(&str, &str)],
        config: &Config,
    ) -> Result<(Self, Bytes), HandshakeError> {
        let mut nonce = [0u8; 16];
        MaskRng::from_entropy().fill(&mut nonce);
        Self::with_key(url, protocols, extra_headers, config, nonce)
    }

    /// As [`new`](Self::new), with a given key: for tests that need
    /// reproducible bytes.
    pub fn with_key(
        url: &WsUrl,
        protocols: &[&str],
        extra_headers: &[(&str, &str)],
        config: &Config,
        nonce: [u8; 16],
    ) -> Result<(Self, Bytes), HandshakeError> {
        // §4.1 item 10: the subprotocols offered "MUST be non-empty strings
        // with characters in the range U+0021 to U+007E not including
        // separator characters ... and MUST all be unique strings".
        let repeated = |(i, p): (usize, &&str)| protocols[..i].contains(p);
        if protocols.iter().any(|p| !is_token(p.as_bytes()))
            || protocols.iter().enumerate().any(repeated)
        {
            return Err(HandshakeError::InvalidProtocolHeader);
        }
        for (name, value) in extra_headers {
            if !is_token(name.as_bytes()) || value.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(HandshakeError::MalformedHttp);
            }
        }
        let key = BASE64.encode(nonce);
        let mut head = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            url.resource,
            url.host_header()
        );
        if !protocols.is_empty() {
            write_header(&mut head, "Sec-WebSocket-Protocol", &protocols.join(", "));
        }
        let deflate = deflate::configured(config).cloned();
        if let Some(config) = &deflate {
            let offer = deflate::offer(config);
            write_header(&mut head, "Sec-WebSocket-Extensions", &offer);
        }
        for (name, value) in extra_headers {
            write_header(&mut head, name, value);
        }
        head.push_str("\r\n");
        let state = Self {
            accept: accept_key(key.as_bytes()),
            protocols: protocols.iter().map(|p| (*p).to_owned()).collect(),
            deflate,
            head: HeadReader::new(config),
        };
        Ok((state, Bytes::from(head)))
    }

    /// Takes the next bytes from the server. Returns `Ok(None)` while the
    /// head is incomplete, or the checked response and how many bytes of
    /// `data` it used: any after that are the server's first frames.
    pub fn receive(&mut self, data: &[u8]) -> Result<Option<(Response, usize)>, HandshakeError> {
        let read = self.head.read(data, |slots, head| {
            let mut resp = httparse::Response::new(slots);
            check_parsed(resp.parse(head))?;
            Ok((resp.code.unwrap_or_default(), collect_headers(resp.headers)))
        })?;
        let Some(((status, headers), used)) = read else {
            return Ok(None);
        };
        // §4.1: "If the status code received from the server is not 101,
        // the client handles the response per HTTP procedures."
        if status != 101 {
            return Err(HandshakeError::NotSwitchingProtocols(status));
        }
        // §4.1 items 2 and 3 of the response checks: "If the response lacks
        // an |Upgrade| header field or the |Upgrade| header field contains a
        // value that is not an ASCII case-insensitive match for the value
        // "websocket", the client MUST _Fail the WebSocket Connection_", and
        // the same for |Connection| and "Upgrade".
        if !list_contains(&headers, "upgrade", "websocket") {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !list_contains(&headers, "connection", "upgrade") {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        // Item 4: the accept value must be exactly the one for our key.
        if single_value(&headers, "sec-websocket-accept") != Some(self.accept.as_bytes()) {
            return Err(HandshakeError::InvalidAccept);
        }
        // Item 5: "If the response includes a |Sec-WebSocket-Extensions|
        // header field and this header field indicates the use of an
        // extension that was not present in the client's handshake ..., the
        // client MUST _Fail the WebSocket Connection_."
        let extensions =
            parse_extensions(&headers).map_err(|_| HandshakeError::UnrequestedExtension)?;
        let deflate = check_extensions(&extensions, self.deflate.as_ref())?;
        // Item 6: a subprotocol "that was not present in the client's
        // handshake" fails the connection; so does naming more than one.
        let protocol = match header_values(&headers, "sec-websocket-protocol").count() {
            0 => None,
            _ => {
                let p = single_value(&headers, "sec-websocket-protocol");
                let offered = self.protocols.iter().find(|o| Some(o.as_bytes()) == p);
                Some(offered.ok_or(HandshakeError::UnrequestedProtocol)?.clone())
            }
        };
        let response = Response {
            protocol,
            extensions,
            deflate,
            headers,
        };
        Ok(Some((response, used)))
    }
}

/// §4.1 item 5 for the extensions a server accepted: the only one we ever
/// offer is permessage-deflate, once, whose parameters RFC 7692 §7.1 then
/// checks against our offer (`deflate::check_response`). `Ok(None)`: the
/// server declined it, or we did not offer it and it accepted nothing.
pub(super) fn check_extensions(
    accepted: &[Extension],
    offer: Option<&DeflateConfig>,
) -> Result<Option<DeflateParams>, HandshakeError> {
    match (accepted, offer) {
        ([], _) => Ok(None),
        ([ext], Some(offer)) if ext.is(PERMESSAGE_DEFLATE) => {
            // RFC 7692 §7.1: a response outside the offer fails the
            // connection ("the client MUST _Fail the WebSocket Connection_").
            deflate::check_response(&ext.params, offer)
                .map(Some)
                .ok_or(HandshakeError::InvalidDeflateResponse)
        }
        _ => Err(HandshakeError::UnrequestedExtension),
    }
}
