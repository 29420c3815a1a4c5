//! RFC 6455 §4, Opening Handshake, both roles.
//!
//! The handshake is one HTTP/1.1 request and one response. This file reads
//! and writes them and checks every rule §4.1 (client) and §4.2 (server)
//! give; it leaves sockets, timeouts and routing to the caller.
//!
//! - **Reading a head.** [`HeadReader`] collects bytes until the empty line
//!   that ends an HTTP head. It looks at each byte once, however the head is
//!   split across reads, so a head trickled in one byte at a time costs time
//!   linear in its size (CVE-2023-43669 was a WebSocket library re-parsing
//!   the whole buffer on every read). It enforces
//!   [`Config::max_handshake_bytes`] and [`Config::max_handshake_headers`]
//!   while it scans, before storing anything past them, and hands back the
//!   bytes after the head: a client may send its first frame right behind
//!   its request.
//! - **Server.** [`ServerHandshake`] reads a [`Request`]; [`Request::upgrade`]
//!   applies §4.2.1 and gives an [`UpgradeRequest`], whose
//!   [`accept`](UpgradeRequest::accept) writes the 101 response of §4.2.2.
//!   A request read by someone else (an HTTP router) becomes a [`Request`]
//!   through [`Request::new`]. Every failure is a [`HandshakeError`] whose
//!   [`response`](HandshakeError::response) is a complete HTTP error.
//! - **Client.** [`ClientHandshake`] writes the request of §4.1 for a
//!   [`WsUrl`] with a fresh random key, then reads and checks the response.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use sha1::{Digest, Sha1};

use super::config::Config;
use super::deflate::{self, DeflateConfig, DeflateParams};
use super::rng::MaskRng;

/// §1.3: "the server has to take the value (as present in the header field,
/// e.g., the base64-encoded \[RFC4648\] version minus any leading and
/// trailing whitespace) and concatenate this with the Globally Unique
/// Identifier (GUID, \[RFC4122\]) "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"".
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only version this implementation speaks (§4.1, §4.4).
pub const VERSION: &str = "13";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (§4.2.2 item 5.4):
/// base64 of the SHA-1 of the key followed by [`GUID`].
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// Why an opening handshake failed.
///
/// On the server, [`status`](Self::status) and [`response`](Self::response)
/// give the HTTP answer; on the client the error is reported to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The head is longer than [`Config::max_handshake_bytes`] (431).
    HeadTooLarge,
    /// More header lines than [`Config::max_handshake_headers`] (431).
    TooManyHeaders,
    /// Not parseable as HTTP/1.x (400).
    MalformedHttp,
    /// §4.2.1 item 1: "An HTTP/1.1 or higher GET request" (405 for the
    /// method).
    MethodNotGet,
    /// §4.2.1 item 1: HTTP/1.0 (400).
    HttpVersion,
    /// §4.2.1 item 2: "A |Host| header field" (400).
    MissingHost,
    /// §4.2.1 item 3 / §4.1 item 2: no `websocket` in `Upgrade` (400).
    MissingUpgrade,
    /// §4.2.1 item 4 / §4.1 item 3: no `Upgrade` in `Connection` (400).
    MissingConnectionUpgrade,
    /// §4.2.1 item 5: `Sec-WebSocket-Key` missing, repeated, or not 16 bytes
    /// in base64 (400).
    InvalidKey,
    /// §4.2.1 item 6: `Sec-WebSocket-Version` is not 13 (426, with
    /// `Sec-WebSocket-Version: 13` in the response, §4.4).
    UnsupportedVersion,
    /// `Sec-WebSocket-Protocol` is not a comma-separated list of tokens (400).
    InvalidProtocolHeader,
    /// `Sec-WebSocket-Extensions` does not follow the grammar of §9.1 (400).
    InvalidExtensionsHeader,
    /// The server answered with a status other than 101 (§4.1: "If the
    /// status code received from the server is not 101, the client handles
    /// the response per HTTP").
    NotSwitchingProtocols(u16),
    /// §4.1 item 4: `Sec-WebSocket-Accept` missing or not the value for our
    /// key.
    InvalidAccept,
    /// §4.1 item 6: the server chose a subprotocol we did not offer.
    UnrequestedProtocol,
    /// §4.1 item 5: the server accepted an extension we did not offer.
    UnrequestedExtension,
    /// RFC 7692 §7.1: the server accepted permessage-deflate with
    /// parameters our offer does not allow ("the client MUST _Fail the
    /// WebSocket Connection_").
    InvalidDeflateResponse,
    /// The server tried to accept with a subprotocol the client did not
    /// offer (a bug in the caller, not the peer).
    ProtocolNotOffered,
    /// A `ws://` or `wss://` URL we cannot use (§3).
    InvalidUrl(&'static str),
}

impl HandshakeError {
    /// The HTTP status a server answers this failure with (0 for failures
    /// that only a client sees).
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadTooLarge | HandshakeError::TooManyHeaders => 431,
            HandshakeError::MethodNotGet => 405,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::ProtocolNotOffered => 500,
            HandshakeError::MalformedHttp
            | HandshakeError::HttpVersion
            | HandshakeError::MissingHost
            | HandshakeError::MissingUpgrade
            | HandshakeError::MissingConnectionUpgrade
            | HandshakeError::InvalidKey
            | HandshakeError::InvalidProtocolHeader
            | HandshakeError::InvalidExtensionsHeader => 400,
            HandshakeError::NotSwitchingProtocols(_)
            | HandshakeError::InvalidAccept
            | HandshakeError::UnrequestedProtocol
            | HandshakeError::UnrequestedExtension
            | HandshakeError::InvalidDeflateResponse
            | HandshakeError::InvalidUrl(_) => 0,
        }
    }

    /// A complete HTTP/1.1 error response for this failure: status line,
    /// headers, and the one-line reason as a plain-text body. The connection
    /// is to be closed after it (`Connection: close`).
    pub fn response(&self) -> Bytes {
        let status = match self.status() {
            0 => 400,
            s => s,
        };
        let body = format!("{self}\n");
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
            reason_phrase(status),
            body.len()
        );
        match self {
            // §4.4: "the server MUST ... include a |Sec-WebSocket-Version|
            // header field with the version(s) it supports".
            HandshakeError::UnsupportedVersion => {
                head.push_str("Sec-WebSocket-Version: 13\r\n");
            }
            HandshakeError::MethodNotGet => head.push_str("Allow: GET\r\n"),
            _ => {}
        }
        head.push_str("\r\n");
        head.push_str(&body);
        Bytes::from(head)
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::HeadTooLarge => f.write_str("request head too large"),
            HandshakeError::TooManyHeaders => f.write_str("too many header fields"),
            HandshakeError::MalformedHttp => f.write_str("malformed HTTP"),
            HandshakeError::MethodNotGet => {
                f.write_str("a WebSocket upgrade must be a GET request")
            }
            HandshakeError::HttpVersion => {
                f.write_str("a WebSocket upgrade needs HTTP/1.1 or later")
            }
            HandshakeError::MissingHost => f.write_str("missing Host header"),
            HandshakeError::MissingUpgrade => f.write_str("missing 'Upgrade: websocket' header"),
            HandshakeError::MissingConnectionUpgrade => {
                f.write_str("missing 'Connection: Upgrade' header")
            }
            HandshakeError::InvalidKey => {
                f.write_str("Sec-WebSocket-Key must be one base64-encoded 16-byte value")
            }
            HandshakeError::UnsupportedVersion => {
                f.write_str("only Sec-WebSocket-Version 13 is supported")
            }
            HandshakeError::InvalidProtocolHeader => {
                f.write_str("malformed Sec-WebSocket-Protocol header")
            }
            HandshakeError::InvalidExtensionsHeader => {
                f.write_str("malformed Sec-WebSocket-Extensions header")
            }
            HandshakeError::NotSwitchingProtocols(status) => {
                write!(f, "server answered with HTTP status {status}, not 101")
            }
            HandshakeError::InvalidAccept => f.write_str("wrong or missing Sec-WebSocket-Accept"),
            HandshakeError::UnrequestedProtocol => {
                f.write_str("server chose a subprotocol we did not offer")
            }
            HandshakeError::UnrequestedExtension => {
                f.write_str("server accepted an extension we did not offer")
            }
            HandshakeError::InvalidDeflateResponse => {
                f.write_str("server accepted permessage-deflate with parameters we did not offer")
            }
            HandshakeError::ProtocolNotOffered => {
                f.write_str("accepting with a subprotocol the client did not offer")
            }
            HandshakeError::InvalidUrl(why) => write!(f, "invalid WebSocket URL: {why}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

// ---------------------------------------------------------------------------
// Reading an HTTP head incrementally.
// ---------------------------------------------------------------------------

/// Where the scanner is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Inside a line that has content.
    InLine,
    /// Just after a `\n`: a `\n` (or `\r\n`) now ends the head.
    LineStart,
    /// After `\n\r`: a `\n` ends the head.
    LineStartCr,
}

/// Collects an HTTP head (request or response) from bytes that arrive in
/// pieces, looking at each byte once.
///
/// The head ends at the first empty line (`\r\n\r\n`; a bare `\n\n` too, as
/// httparse accepts it). Limits apply while scanning: a head longer than
/// `max_bytes`, or with more than `max_headers` header lines, fails before
/// any of it past the limit is stored.
#[derive(Debug)]
pub struct HeadReader {
    buf: Vec<u8>,
    scan: Scan,
    /// Non-empty lines seen: the start line plus the header lines.
    lines: usize,
    max_bytes: usize,
    max_headers: usize,
    done: bool,
}

impl HeadReader {
    /// A reader with the handshake limits of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            buf: Vec::new(),
            scan: Scan::InLine,
            lines: 0,
            max_bytes: config.max_handshake_bytes,
            max_headers: config.max_handshake_headers,
            done: false,
        }
    }

    /// Takes the next piece of input. Returns `Ok(Some(n))` when the head is
    /// complete, `n` being how many bytes of `data` belong to it (the rest
    /// is the start of what follows the head), or `Ok(None)` when all of
    /// `data` was taken and the head goes on.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, HandshakeError> {
        if self.done {
            return Ok(Some(0));
        }
        for (i, &byte) in data.iter().enumerate() {
            if self.buf.len() + i >= self.max_bytes {
                return Err(HandshakeError::HeadTooLarge);
            }
            self.scan = match (self.scan, byte) {
                (Scan::LineStart | Scan::LineStartCr, b'\n') => {
                    self.buf.extend_from_slice(&data[..=i]);
                    self.done = true;
                    return Ok(Some(i + 1));
                }
                (Scan::InLine, b'\n') => {
                    self.lines += 1;
                    // The start line is not a header.
                    if self.lines > self.max_headers + 1 {
                        return Err(HandshakeError::TooManyHeaders);
                    }
                    Scan::LineStart
                }
                (Scan::LineStart, b'\r') => Scan::LineStartCr,
                _ => Scan::InLine,
            };
        }
        self.buf.extend_from_slice(data);
        Ok(None)
    }

    /// The head read so far (all of it once `feed` returned `Some`).
    pub fn head(&self) -> &[u8] {
        &self.buf
    }

    /// How many header lines the head has at most: enough slots for
    /// httparse, sized from what was counted, bounded by the limit.
    fn header_slots(&self) -> usize {
        self.lines.min(self.max_headers + 1)
    }
}

/// One header field, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name, as sent (compare it case-insensitively).
    pub name: String,
    /// The field value, as sent.
    pub value: Vec<u8>,
}

fn collect_headers(headers: &[httparse::Header<'_>]) -> Vec<Header> {
    headers
        .iter()
        .map(|h| Header {
            name: h.name.to_owned(),
            value: h.value.to_vec(),
        })
        .collect()
}

/// The values of every header named `name` (case-insensitive).
fn header_values<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

/// The comma-separated elements of every header named `name`, trimmed
/// (RFC 9110 §5.6.1 lists: `#element`, with optional whitespace).
fn list_elements<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    header_values(headers, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// Whether some element of header `name` equals `token`, ignoring case
/// (§4.2.1: "a |Connection| header field that includes the token
/// "Upgrade", treated as an ASCII case-insensitive value").
fn list_contains(headers: &[Header], name: &str, token: &str) -> bool {
    list_elements(headers, name).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

/// The one value of header `name`, or `None` if it is absent or repeated.
fn single_value<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    let mut values = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice());
    let first = values.next()?;
    match values.next() {
        Some(_) => None,
        None => Some(first.trim_ascii()),
    }
}

/// RFC 9110 §5.6.2: `tchar`, the characters of a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

// ---------------------------------------------------------------------------
// Extensions (§9.1 grammar), kept for permessage-deflate (RFC 7692).
// ---------------------------------------------------------------------------

/// One extension in a `Sec-WebSocket-Extensions` header, with its
/// parameters in order (§9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension's name, e.g. `permessage-deflate`.
    pub name: String,
    /// `name` or `name=value` parameters; a quoted value is unquoted.
    pub params: Vec<(String, Option<String>)>,
}

/// Parses every `Sec-WebSocket-Extensions` header into a list of offers
/// (§9.1):
///
/// ```text
/// extension-list = 1#extension
/// extension = extension-token *( ";" extension-param )
/// extension-param = token [ "=" (token | quoted-string) ]
/// ```
///
/// "When using the quoted-string syntax variant, the value after
/// quoted-string unescaping MUST conform to the 'token' ABNF."
pub fn parse_extensions(headers: &[Header]) -> Result<Vec<Extension>, HandshakeError> {
    let mut out = Vec::new();
    for value in header_values(headers, "sec-websocket-extensions") {
        let mut p = ListParser { s: value, pos: 0 };
        loop {
            p.skip_ows();
            if p.at_end() {
                break;
            }
            if p.eat(b',') {
                // Empty list elements are allowed and ignored (RFC 9110 §5.6.1).
                continue;
            }
            let name = p.token()?;
            let mut params = Vec::new();
            loop {
                p.skip_ows();
                if !p.eat(b';') {
                    break;
                }
                p.skip_ows();
                let key = p.token()?;
                p.skip_ows();
                let value = if p.eat(b'=') {
                    p.skip_ows();
                    Some(if p.peek() == Some(b'"') {
                        p.quoted_token()?
                    } else {
                        p.token()?
                    })
                } else {
                    None
                };
                params.push((key, value));
            }
            out.push(Extension { name, params });
            p.skip_ows();
            if !p.at_end() && !p.eat(b',') {
                return Err(HandshakeError::InvalidExtensionsHeader);
            }
        }
    }
    Ok(out)
}

struct ListParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl ListParser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }
    fn token(&mut self) -> Result<String, HandshakeError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        let t = self.s.get(start..self.pos).unwrap_or_default();
        if t.is_empty() {
            return Err(HandshakeError::InvalidExtensionsHeader);
        }
        Ok(String::from_utf8_lossy(t).into_owned())
    }
    fn quoted_token(&mut self) -> Result<String, HandshakeError> {
        self.pos += 1; // the opening quote
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err(HandshakeError::InvalidExtensionsHeader),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = self.peek().ok_or(HandshakeError::InvalidExtensionsHeader)?;
                    value.push(escaped);
                    self.pos += 1;
                }
                Some(b) => {
                    value.push(b);
                    self.pos += 1;
                }
            }
        }
        if !is_token(&value) {
            return Err(HandshakeError::InvalidExtensionsHeader);
        }
        Ok(String::from_utf8_lossy(&value).into_owned())
    }
}

fn parse_protocols(headers: &[Header]) -> Result<Vec<String>, HandshakeError> {
    list_elements(headers, "sec-websocket-protocol")
        .map(|p| {
            if is_token(p) {
                Ok(String::from_utf8_lossy(p).into_owned())
            } else {
                Err(HandshakeError::InvalidProtocolHeader)
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Server role.
// ---------------------------------------------------------------------------

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
    /// A request read by someone else (an HTTP router, hyper), to be judged
    /// by [`upgrade`](Self::upgrade).
    pub fn new(method: &str, target: &str, version_minor: u8, headers: Vec<Header>) -> Self {
        Self {
            method: method.to_owned(),
            target: target.to_owned(),
            version_minor,
            headers,
        }
    }

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
        match BASE64.decode(key) {
            Ok(decoded) if decoded.len() == 16 => {}
            _ => return Err(HandshakeError::InvalidKey),
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
        let Some(used) = self.head.feed(data)? else {
            return Ok(None);
        };
        let mut slots = vec![httparse::EMPTY_HEADER; self.head.header_slots()];
        let mut req = httparse::Request::new(&mut slots);
        match req.parse(self.head.head()) {
            Ok(httparse::Status::Complete(_)) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
            Ok(httparse::Status::Partial) | Err(_) => return Err(HandshakeError::MalformedHttp),
        }
        let request = Request {
            method: req.method.unwrap_or_default().to_owned(),
            target: req.path.unwrap_or_default().to_owned(),
            version_minor: req.version.unwrap_or_default(),
            headers: collect_headers(req.headers),
        };
        Ok(Some((request, used)))
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
        deflate::negotiate(&self.extensions, config)
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
        let mut response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
            self.accept
        );
        if let Some(p) = protocol {
            response.push_str("Sec-WebSocket-Protocol: ");
            response.push_str(p);
            response.push_str("\r\n");
        }
        if let Some(params) = deflate {
            response.push_str("Sec-WebSocket-Extensions: ");
            response.push_str(&params.response());
            response.push_str("\r\n");
        }
        response.push_str("\r\n");
        Ok(Bytes::from(response))
    }
}

// ---------------------------------------------------------------------------
// Client role.
// ---------------------------------------------------------------------------

/// The permessage-deflate offer a client makes: the configured one, when
/// this build can compress (feature `deflate`).
fn client_deflate_offer(config: &Config) -> Option<DeflateConfig> {
    #[cfg(feature = "deflate")]
    {
        config.deflate.clone()
    }
    #[cfg(not(feature = "deflate"))]
    {
        let _ = config;
        None
    }
}

/// A `ws://` or `wss://` URL, split the way §3 defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://`: the transport must run TLS.
    pub secure: bool,
    /// The host, without brackets for IPv6.
    pub host: String,
    /// The port: as given, or 80 (`ws`) / 443 (`wss`).
    pub port: u16,
    /// §3: "the resource name": path (at least `/`) and query.
    pub resource: String,
}

impl WsUrl {
    /// Parses `ws://host[:port][/path][?query]` or the same with `wss`.
    pub fn parse(url: &str) -> Result<Self, HandshakeError> {
        let (secure, rest) = if let Some(rest) = strip_prefix_ignore_case(url, "ws://") {
            (false, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(url, "wss://") {
            (true, rest)
        } else {
            return Err(HandshakeError::InvalidUrl(
                "the scheme must be ws:// or wss://",
            ));
        };
        // §3: "Fragment identifiers are meaningless in the context of
        // WebSocket URIs and MUST NOT be used on these URIs."
        if rest.contains('#') {
            return Err(HandshakeError::InvalidUrl("fragments (#) are not allowed"));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(split);
        if authority.contains('@') {
            return Err(HandshakeError::InvalidUrl(
                "user information is not supported",
            ));
        }
        let resource = match resource {
            "" => "/".to_owned(),
            r if r.starts_with('?') => format!("/{r}"),
            r => r.to_owned(),
        };
        if resource.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(HandshakeError::InvalidUrl(
                "spaces or control characters in the path",
            ));
        }
        let default_port = if secure { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or(HandshakeError::InvalidUrl("unclosed [ in host"))?;
            let port = match after {
                "" => default_port,
                p => parse_port(
                    p.strip_prefix(':')
                        .ok_or(HandshakeError::InvalidUrl("junk after ]"))?,
                )?,
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, parse_port(port)?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(HandshakeError::InvalidUrl("empty host"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:~%!$&'()*+,;=".contains(&b))
        {
            return Err(HandshakeError::InvalidUrl("invalid character in host"));
        }
        Ok(Self {
            secure,
            host: host.to_owned(),
            port,
            resource,
        })
    }

    /// The `Host` header (§4.1 item 4): the port only when not the default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.secure { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn parse_port(p: &str) -> Result<u16, HandshakeError> {
    p.parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or(HandshakeError::InvalidUrl("invalid port"))
}

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
        if protocols.iter().any(|p| !is_token(p.as_bytes())) {
            return Err(HandshakeError::InvalidProtocolHeader);
        }
        for (name, value) in extra_headers {
            if !is_token(name.as_bytes()) || value.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(HandshakeError::MalformedHttp);
            }
        }
        let key = BASE64.encode(nonce);
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            url.resource,
            url.host_header()
        );
        if !protocols.is_empty() {
            request.push_str("Sec-WebSocket-Protocol: ");
            request.push_str(&protocols.join(", "));
            request.push_str("\r\n");
        }
        let deflate = client_deflate_offer(config);
        if let Some(offer) = &deflate {
            request.push_str("Sec-WebSocket-Extensions: ");
            request.push_str(&deflate::offer(offer));
            request.push_str("\r\n");
        }
        for (name, value) in extra_headers {
            request.push_str(name);
            request.push_str(": ");
            request.push_str(value);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let state = Self {
            accept: accept_key(key.as_bytes()),
            protocols: protocols.iter().map(|p| (*p).to_owned()).collect(),
            deflate,
            head: HeadReader::new(config),
        };
        Ok((state, Bytes::from(request)))
    }

    /// Takes the next bytes from the server. Returns `Ok(None)` while the
    /// head is incomplete, or the checked response and how many bytes of
    /// `data` it used: any after that are the server's first frames.
    pub fn receive(&mut self, data: &[u8]) -> Result<Option<(Response, usize)>, HandshakeError> {
        let Some(used) = self.head.feed(data)? else {
            return Ok(None);
        };
        let mut slots = vec![httparse::EMPTY_HEADER; self.head.header_slots()];
        let mut resp = httparse::Response::new(&mut slots);
        match resp.parse(self.head.head()) {
            Ok(httparse::Status::Complete(_)) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
            Ok(httparse::Status::Partial) | Err(_) => return Err(HandshakeError::MalformedHttp),
        }
        // §4.1: "If the status code received from the server is not 101,
        // the client handles the response per HTTP procedures."
        let status = resp.code.unwrap_or_default();
        if status != 101 {
            return Err(HandshakeError::NotSwitchingProtocols(status));
        }
        let headers = collect_headers(resp.headers);
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
        // client MUST _Fail the WebSocket Connection_." The only one we
        // ever offer is permessage-deflate, whose answer RFC 7692 §7.1
        // checks further.
        let extensions =
            parse_extensions(&headers).map_err(|_| HandshakeError::UnrequestedExtension)?;
        let deflate = match &self.deflate {
            Some(offer) => deflate::check_response(&extensions, offer)?,
            None if extensions.is_empty() => None,
            None => return Err(HandshakeError::UnrequestedExtension),
        };
        // Item 6: a subprotocol "that was not present in the client's
        // handshake" fails the connection; so does naming more than one.
        let protocol = match header_values(&headers, "sec-websocket-protocol").count() {
            0 => None,
            1 => {
                let p = single_value(&headers, "sec-websocket-protocol").unwrap_or_default();
                match self
                    .protocols
                    .iter()
                    .find(|offered| offered.as_bytes() == p)
                {
                    Some(offered) => Some(offered.clone()),
                    None => return Err(HandshakeError::UnrequestedProtocol),
                }
            }
            _ => return Err(HandshakeError::UnrequestedProtocol),
        };
        Ok(Some((
            Response {
                protocol,
                extensions,
                deflate,
                headers,
            },
            used,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request_bytes(extra: &str) -> String {
        format!(
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nOrigin: http://example.com\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    fn read_request(bytes: &[u8]) -> Result<Request, HandshakeError> {
        let mut hs = ServerHandshake::new(&Config::default());
        match hs.receive(bytes)? {
            Some((req, used)) => {
                assert_eq!(used, bytes.len());
                Ok(req)
            }
            None => panic!("incomplete"),
        }
    }

    fn upgrade(bytes: &str) -> Result<UpgradeRequest, HandshakeError> {
        read_request(bytes.as_bytes())?.upgrade()
    }

    // §1.3 and §4.2.2: the worked example.

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn server_accepts_rfc_example_request() {
        let up = upgrade(&request_bytes(
            "Sec-WebSocket-Protocol: chat, superchat\r\n",
        ))
        .unwrap();
        assert_eq!(up.target, "/chat");
        assert_eq!(up.host, "server.example.com");
        assert_eq!(up.origin.as_deref(), Some("http://example.com"));
        assert_eq!(up.protocols, ["chat", "superchat"]);
        let response = up.accept(up.choose_protocol(&["superchat"])).unwrap();
        assert_eq!(
            &response[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: superchat\r\n\r\n"
        );
    }

    #[test]
    fn every_truncated_request_asks_for_more() {
        let bytes = request_bytes("");
        for end in 0..bytes.len() {
            let mut hs = ServerHandshake::new(&Config::default());
            assert_eq!(
                hs.receive(&bytes.as_bytes()[..end]),
                Ok(None),
                "prefix {end}"
            );
        }
    }

    #[test]
    fn request_fed_one_byte_at_a_time_parses() {
        let bytes = request_bytes("");
        let mut hs = ServerHandshake::new(&Config::default());
        let (last, init) = bytes.as_bytes().split_last().unwrap();
        for b in init {
            assert_eq!(hs.receive(std::slice::from_ref(b)), Ok(None));
        }
        let (req, used) = hs.receive(std::slice::from_ref(last)).unwrap().unwrap();
        assert_eq!(used, 1);
        assert!(req.upgrade().is_ok());
    }

    #[test]
    fn bytes_after_the_head_are_handed_back() {
        let mut bytes = request_bytes("").into_bytes();
        let head_len = bytes.len();
        bytes.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4]);
        let mut hs = ServerHandshake::new(&Config::default());
        let (_, used) = hs.receive(&bytes).unwrap().unwrap();
        assert_eq!(used, head_len);
        assert_eq!(&bytes[used..], &[0x81, 0x85, 1, 2, 3, 4]);
    }

    #[test]
    fn header_names_and_tokens_are_case_insensitive() {
        let req = "GET / HTTP/1.1\r\nhost: a\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, UPGRADE\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
        assert!(upgrade(req).is_ok());
    }

    // §4.2.1: one test per rule.

    #[test]
    fn non_get_request_gets_405() {
        let req = request_bytes("").replacen("GET", "POST", 1);
        assert_eq!(upgrade(&req), Err(HandshakeError::MethodNotGet));
        assert!(
            HandshakeError::MethodNotGet
                .response()
                .starts_with(b"HTTP/1.1 405 ")
        );
    }

    #[test]
    fn http_1_0_is_rejected() {
        let req = request_bytes("").replacen("HTTP/1.1", "HTTP/1.0", 1);
        assert_eq!(upgrade(&req), Err(HandshakeError::HttpVersion));
    }

    #[test]
    fn missing_host_is_rejected() {
        let req = request_bytes("").replacen("Host: server.example.com\r\n", "", 1);
        assert_eq!(upgrade(&req), Err(HandshakeError::MissingHost));
    }

    #[test]
    fn missing_upgrade_is_rejected() {
        let req = request_bytes("").replacen("Upgrade: websocket\r\n", "Upgrade: h2c\r\n", 1);
        assert_eq!(upgrade(&req), Err(HandshakeError::MissingUpgrade));
    }

    #[test]
    fn connection_without_upgrade_is_rejected() {
        let req = request_bytes("").replacen("Connection: Upgrade", "Connection: keep-alive", 1);
        assert_eq!(upgrade(&req), Err(HandshakeError::MissingConnectionUpgrade));
    }

    #[test]
    fn key_of_wrong_length_is_rejected() {
        // "c2hvcnQ=" is base64 for "short".
        let req = request_bytes("").replacen(KEY, "c2hvcnQ=", 1);
        assert_eq!(upgrade(&req), Err(HandshakeError::InvalidKey));
    }

    #[test]
    fn key_that_is_not_base64_is_rejected() {
        let req = request_bytes("").replacen(KEY, "!!!!!!!!!!!!!!!!!!!!!!==", 1);
        assert_eq!(upgrade(&req), Err(HandshakeError::InvalidKey));
    }

    #[test]
    fn repeated_key_is_rejected() {
        let req = request_bytes(&format!("Sec-WebSocket-Key: {KEY}\r\n"));
        assert_eq!(upgrade(&req), Err(HandshakeError::InvalidKey));
    }

    #[test]
    fn other_version_gets_426_naming_13() {
        let req = request_bytes("").replacen("Version: 13", "Version: 8", 1);
        let err = upgrade(&req).unwrap_err();
        assert_eq!(err, HandshakeError::UnsupportedVersion);
        let response = String::from_utf8(err.response().to_vec()).unwrap();
        assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(response.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn error_response_is_complete_http_with_a_reason() {
        let response = String::from_utf8(HandshakeError::MissingHost.response().to_vec()).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(body, "missing Host header\n");
    }

    #[test]
    fn accepting_a_protocol_not_offered_is_refused() {
        let up = upgrade(&request_bytes("")).unwrap();
        assert_eq!(
            up.accept(Some("chat")),
            Err(HandshakeError::ProtocolNotOffered)
        );
    }

    #[test]
    fn malformed_protocol_list_is_rejected() {
        let req = request_bytes("Sec-WebSocket-Protocol: a b\r\n");
        assert_eq!(upgrade(&req), Err(HandshakeError::InvalidProtocolHeader));
    }

    // Limits.

    #[test]
    fn head_over_the_byte_limit_gets_431_before_it_ends() {
        let config = Config {
            max_handshake_bytes: 100,
            ..Config::default()
        };
        let mut hs = ServerHandshake::new(&config);
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(200));
        let err = hs.receive(long.as_bytes()).unwrap_err();
        assert_eq!(err, HandshakeError::HeadTooLarge);
        assert_eq!(err.status(), 431);
        assert!(hs.head.head().len() < 100, "stored past the limit");
    }

    #[test]
    fn too_many_headers_get_431() {
        let config = Config {
            max_handshake_headers: 3,
            ..Config::default()
        };
        let mut hs = ServerHandshake::new(&config);
        let req = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n";
        assert_eq!(
            hs.receive(req.as_bytes()),
            Err(HandshakeError::TooManyHeaders)
        );
    }

    #[test]
    fn exactly_the_header_limit_is_allowed() {
        let config = Config {
            max_handshake_headers: 6,
            ..Config::default()
        };
        let mut hs = ServerHandshake::new(&config);
        let req = request_bytes("");
        assert!(
            hs.receive(req.as_bytes())
                .unwrap()
                .unwrap()
                .0
                .upgrade()
                .is_ok()
        );
    }

    // §9.1 extension offers.

    #[test]
    fn extension_offers_are_parsed_with_parameters() {
        let req = request_bytes(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=\"10\"\r\nSec-WebSocket-Extensions: x-foo\r\n",
        );
        let up = upgrade(&req).unwrap();
        assert_eq!(
            up.extensions,
            vec![
                Extension {
                    name: "permessage-deflate".into(),
                    params: vec![("client_max_window_bits".into(), None)],
                },
                Extension {
                    name: "permessage-deflate".into(),
                    params: vec![("server_max_window_bits".into(), Some("10".into()))],
                },
                Extension {
                    name: "x-foo".into(),
                    params: vec![]
                },
            ]
        );
    }

    #[test]
    fn malformed_extension_offers_are_rejected() {
        for bad in [
            "a;",
            "a; b=",
            "a b",
            "a; b=\"c d\"",
            "a; b=\"unterminated",
            ";a",
        ] {
            let req = request_bytes(&format!("Sec-WebSocket-Extensions: {bad}\r\n"));
            assert_eq!(
                upgrade(&req),
                Err(HandshakeError::InvalidExtensionsHeader),
                "{bad}"
            );
        }
    }

    // §3 URLs and §4.1 the client's side.

    #[test]
    fn urls_are_split_into_host_port_and_resource() {
        let u = WsUrl::parse("ws://example.com/chat?x=1").unwrap();
        assert_eq!(
            (u.secure, u.host.as_str(), u.port, u.resource.as_str()),
            (false, "example.com", 80, "/chat?x=1")
        );
        assert_eq!(u.host_header(), "example.com");
        let u = WsUrl::parse("wss://[::1]:9001").unwrap();
        assert_eq!(
            (u.secure, u.host.as_str(), u.port, u.resource.as_str()),
            (true, "::1", 9001, "/")
        );
        assert_eq!(u.host_header(), "[::1]:9001");
        let u = WsUrl::parse("WS://h?q").unwrap();
        assert_eq!(u.resource, "/?q");
    }

    #[test]
    fn bad_urls_are_rejected() {
        for bad in [
            "http://a/",
            "ws://",
            "ws://a:0/",
            "ws://a:99999/",
            "ws://a/#frag",
            "ws://u@a/",
            "ws://a/b c",
            "ws://[::1/",
        ] {
            assert!(WsUrl::parse(bad).is_err(), "{bad}");
        }
    }

    fn client(protocols: &[&str]) -> (ClientHandshake, String) {
        let url = WsUrl::parse("ws://server.example.com/chat").unwrap();
        let nonce = *b"the sample nonce";
        let (hs, req) = ClientHandshake::with_key(
            &url,
            protocols,
            &[("Origin", "http://example.com")],
            &Config::default(),
            nonce,
        )
        .unwrap();
        (hs, String::from_utf8(req.to_vec()).unwrap())
    }

    const GOOD_RESPONSE: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";

    #[test]
    fn client_request_is_what_a_server_accepts() {
        // "the sample nonce" is the nonce behind the RFC's example key.
        let (_, req) = client(&["chat"]);
        assert!(req.starts_with("GET /chat HTTP/1.1\r\nHost: server.example.com\r\n"));
        assert!(req.contains(&format!("Sec-WebSocket-Key: {KEY}\r\n")));
        let up = read_request(req.as_bytes()).unwrap().upgrade().unwrap();
        assert_eq!(up.protocols, ["chat"]);
        assert_eq!(up.origin.as_deref(), Some("http://example.com"));
    }

    #[test]
    fn client_accepts_correct_response_and_keeps_trailing_bytes() {
        let (mut hs, _) = client(&[]);
        let mut bytes = format!("{GOOD_RESPONSE}\r\n").into_bytes();
        let head = bytes.len();
        bytes.extend_from_slice(&[0x81, 0x00]);
        let (resp, used) = hs.receive(&bytes).unwrap().unwrap();
        assert_eq!(used, head);
        assert_eq!(resp.protocol, None);
    }

    #[test]
    fn client_rejects_wrong_accept() {
        let (mut hs, _) = client(&[]);
        let bad = GOOD_RESPONSE.replace("s3pP", "AAAA") + "\r\n";
        assert_eq!(
            hs.receive(bad.as_bytes()),
            Err(HandshakeError::InvalidAccept)
        );
    }

    #[test]
    fn client_rejects_non_101_status() {
        let (mut hs, _) = client(&[]);
        let resp = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            hs.receive(resp.as_bytes()),
            Err(HandshakeError::NotSwitchingProtocols(403))
        );
    }

    #[test]
    fn client_rejects_missing_upgrade_and_connection() {
        let (mut hs, _) = client(&[]);
        let resp = GOOD_RESPONSE.replace("Upgrade: websocket\r\n", "") + "\r\n";
        assert_eq!(
            hs.receive(resp.as_bytes()),
            Err(HandshakeError::MissingUpgrade)
        );
        let (mut hs, _) = client(&[]);
        let resp = GOOD_RESPONSE.replace("Connection: Upgrade\r\n", "") + "\r\n";
        assert_eq!(
            hs.receive(resp.as_bytes()),
            Err(HandshakeError::MissingConnectionUpgrade)
        );
    }

    #[test]
    fn client_accepts_only_a_protocol_it_offered() {
        let (mut hs, _) = client(&["chat"]);
        let resp = format!("{GOOD_RESPONSE}Sec-WebSocket-Protocol: chat\r\n\r\n");
        assert_eq!(
            hs.receive(resp.as_bytes())
                .unwrap()
                .unwrap()
                .0
                .protocol
                .as_deref(),
            Some("chat")
        );
        let (mut hs, _) = client(&["chat"]);
        let resp = format!("{GOOD_RESPONSE}Sec-WebSocket-Protocol: other\r\n\r\n");
        assert_eq!(
            hs.receive(resp.as_bytes()),
            Err(HandshakeError::UnrequestedProtocol)
        );
        let (mut hs, _) = client(&[]);
        let resp = format!("{GOOD_RESPONSE}Sec-WebSocket-Protocol: chat\r\n\r\n");
        assert_eq!(
            hs.receive(resp.as_bytes()),
            Err(HandshakeError::UnrequestedProtocol)
        );
    }

    #[test]
    fn client_rejects_an_extension_it_did_not_offer() {
        let (mut hs, _) = client(&[]);
        let resp = format!("{GOOD_RESPONSE}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
        assert_eq!(
            hs.receive(resp.as_bytes()),
            Err(HandshakeError::UnrequestedExtension)
        );
    }

    #[test]
    fn random_keys_differ() {
        let url = WsUrl::parse("ws://a/").unwrap();
        let (_, a) = ClientHandshake::new(&url, &[], &[], &Config::default()).unwrap();
        let (_, b) = ClientHandshake::new(&url, &[], &[], &Config::default()).unwrap();
        assert_ne!(a, b);
    }
}
