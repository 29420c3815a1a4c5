//! Why an opening handshake failed (RFC 6455 §4), and the HTTP answer a
//! server gives each failure (§4.2.1: "the server MUST stop processing the
//! client's handshake and return an HTTP response with an appropriate error
//! code (such as 400 Bad Request)"; §4.4 for a version we do not speak).
//!
//! These are apart from [`proto::Error`](crate::proto::Error): a handshake
//! fails before there is a connection, and answers with an HTTP status, not
//! a close code.

use std::fmt;

use bytes::Bytes;

///
/// On the server, [`status`](Self::status) and [`response`](Self::response)
/// give the HTTP answer; on the client the error is reported to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The head is longer than [`Config::max_handshake_bytes`](crate::proto::Config::max_handshake_bytes) (431).
    HeadTooLarge,
    /// More header lines than [`Config::max_handshake_headers`](crate::proto::Config::max_handshake_headers) (431).
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
    /// that only a client sees), and the one-line reason it gives: the
    /// whole table of handshake failures, one row each.
    fn row(&self) -> (u16, &'static str) {
        match self {
            Self::HeadTooLarge => (431, "request head too large"),
            Self::TooManyHeaders => (431, "too many header fields"),
            Self::MalformedHttp => (400, "malformed HTTP"),
            Self::MethodNotGet => (405, "a WebSocket upgrade must be a GET request"),
            Self::HttpVersion => (400, "a WebSocket upgrade needs HTTP/1.1 or later"),
            Self::MissingHost => (400, "missing Host header"),
            Self::MissingUpgrade => (400, "missing 'Upgrade: websocket' header"),
            Self::MissingConnectionUpgrade => (400, "missing 'Connection: Upgrade' header"),
            Self::InvalidKey => (
                400,
                "Sec-WebSocket-Key must be one base64-encoded 16-byte value",
            ),
            Self::UnsupportedVersion => (426, "only Sec-WebSocket-Version 13 is supported"),
            Self::InvalidProtocolHeader => (400, "malformed Sec-WebSocket-Protocol header"),
            Self::InvalidExtensionsHeader => (400, "malformed Sec-WebSocket-Extensions header"),
            Self::NotSwitchingProtocols(_) => (0, "server answered with an HTTP status, not 101"),
            Self::InvalidAccept => (0, "wrong or missing Sec-WebSocket-Accept"),
            Self::UnrequestedProtocol => (0, "server chose a subprotocol we did not offer"),
            Self::UnrequestedExtension => (0, "server accepted an extension we did not offer"),
            Self::InvalidDeflateResponse => (
                0,
                "server accepted permessage-deflate with parameters we did not offer",
            ),
            // A bug in the caller, not the peer.
            Self::ProtocolNotOffered => {
                (500, "accepting with a subprotocol the client did not offer")
            }
            Self::InvalidUrl(_) => (0, "invalid WebSocket URL"),
        }
    }

    /// The HTTP status a server answers this failure with (0 for failures
    /// that only a client sees).
    pub fn status(&self) -> u16 {
        self.row().0
    }

    /// A complete HTTP/1.1 error response for this failure: status line,
    /// headers, and the one-line reason as a plain-text body. The connection
    /// is to be closed after it (`Connection: close`).
    pub fn response(&self) -> Bytes {
        let status = match self.status() {
            0 => 400,
            s => s,
        };
        let extra = match self {
            // §4.4: "the server MUST ... include a |Sec-WebSocket-Version|
            // header field with the version(s) it supports".
            Self::UnsupportedVersion => "Sec-WebSocket-Version: 13\r\n",
            // RFC 9110 §15.5.6: a 405 "MUST generate an Allow header field".
            Self::MethodNotGet => "Allow: GET\r\n",
            _ => "",
        };
        let body = format!("{self}\n");
        Bytes::from(format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            reason_phrase(status),
            body.len()
        ))
    }
}

/// RFC 9110 §15: the reason phrase of each status we answer with.
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
            Self::NotSwitchingProtocols(status) => {
                write!(f, "server answered with HTTP status {status}, not 101")
            }
            Self::InvalidUrl(why) => write!(f, "invalid WebSocket URL: {why}"),
            other => f.write_str(other.row().1),
        }
    }
}

impl std::error::Error for HandshakeError {}
