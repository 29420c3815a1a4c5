//! Errors of a connection, and the close code each one sends (§7.4.1).
//!
//! [`ProtocolError`] is everything a *peer* can do wrong after the handshake,
//! one variant per rule broken, named after what the peer did. Its
//! [`close_code`](ProtocolError::close_code) and
//! [`reason`](ProtocolError::reason) come from one exhaustive `match`, a row
//! per variant, with no catch-all arm: a new variant does not compile until
//! someone decides which code it sends. §7.1.7 ("_Fail the WebSocket Connection_") says what
//! happens next: we send a Close frame with that code, stop reading, and
//! close the TCP connection.
//!
//! [`Error`] wraps it together with the mistakes a *caller* can make
//! (sending after Close, an oversized ping), which close nothing. Everything
//! here is something a [`Connection`](super::Connection) can produce; the
//! opening handshake, which fails before there is a connection and answers
//! with an HTTP status instead of a close code, has its own
//! [`HandshakeError`](super::HandshakeError).

use std::fmt;

use super::close::{CloseCode, ClosePayloadError};
use super::utf8::InvalidUtf8;

/// A rule of RFC 6455 the peer broke. Each becomes a Close frame with the
/// code returned by [`close_code`](Self::close_code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// An opcode §5.2 reserves (3–7, 0xB–0xF): "If an unknown opcode is
    /// received, the receiving endpoint MUST _Fail the WebSocket
    /// Connection_."
    ReservedOpcode(u8),
    /// A 64-bit length with its most significant bit set (§5.2: "the most
    /// significant bit MUST be 0").
    LengthHighBitSet,
    /// A length in a longer form than needed (§5.2: "the minimal number of
    /// bytes MUST be used to encode the length").
    NonMinimalLength,
    /// RSV1, RSV2 or RSV3 set with no extension negotiated to give them a
    /// meaning (§5.2: "MUST be 0 unless an extension is negotiated").
    ReservedBitsSet,
    /// A client frame without a mask (§5.1: "The server MUST close the
    /// connection upon receiving a frame that is not masked").
    UnmaskedFrame,
    /// A server frame with a mask (§5.1: "A client MUST close a connection
    /// if it detects a masked frame").
    MaskedFrame,
    /// A control frame without FIN (§5.5: "Control frames MUST NOT be
    /// fragmented").
    FragmentedControlFrame,
    /// A control frame with more than 125 payload bytes (§5.5).
    ControlFrameTooLong,
    /// A continuation frame with no fragmented message to continue (§5.4).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished
    /// (§5.4: fragments of one message are not interleaved with others).
    ExpectedContinuation,
    /// Text that is not UTF-8 (§8.1), or a Close reason that is not (§5.5.1).
    InvalidUtf8,
    /// A Close frame with a 1-byte payload, too short for a status code
    /// (§5.5.1).
    ClosePayloadTooShort,
    /// A Close frame with a status code §7.4 does not allow on the wire.
    InvalidCloseCode(u16),
    /// A frame longer than [`Config::max_frame_size`](super::Config::max_frame_size).
    FrameTooLarge,
    /// A message longer than [`Config::max_message_size`](super::Config::max_message_size).
    MessageTooLarge,
    /// A message in more frames than [`Config::max_fragments`](super::Config::max_fragments).
    TooManyFragments,
    /// RSV1 on a control frame (RFC 7692 §6.1: "An endpoint MUST NOT set
    /// the "Per-Message Compressed" bit of control frames").
    CompressedControlFrame,
    /// RSV1 on a continuation frame (RFC 7692 §6.1: nor on "non-first
    /// fragments of a data message").
    CompressedContinuation,
    /// A compressed message that does not inflate: not DEFLATE data, or a
    /// reference back past the window (RFC 7692 §7.2.2).
    InvalidCompressedData,
}

impl ProtocolError {
    /// The status code of the Close frame this violation sends (§7.4.1),
    /// and the reason sent with it: the whole table, one row per rule.
    fn row(&self) -> (CloseCode, &'static str) {
        // 1002: "an endpoint is terminating the connection due to a protocol
        // error".
        const PROTOCOL: CloseCode = CloseCode::PROTOCOL_ERROR;
        // 1007: "data within a message that was not consistent with the type
        // of the message (e.g., non-UTF-8 [RFC3629] data within a text
        // message)". RFC 7692 names no code for data that does not inflate;
        // like invalid UTF-8, it is a payload inconsistent with its framing,
        // which is what 1007 is for (as python-websockets does).
        const PAYLOAD: CloseCode = CloseCode::INVALID_PAYLOAD;
        // 1009: "a message that is too big for it to process".
        const TOO_BIG: CloseCode = CloseCode::MESSAGE_TOO_BIG;
        match self {
            ProtocolError::ReservedOpcode(_) => (PROTOCOL, "reserved opcode"),
            ProtocolError::LengthHighBitSet => (PROTOCOL, "payload length too large"),
            ProtocolError::NonMinimalLength => (PROTOCOL, "payload length not minimally encoded"),
            ProtocolError::ReservedBitsSet => (PROTOCOL, "reserved bits set"),
            ProtocolError::UnmaskedFrame => (PROTOCOL, "client frame not masked"),
            ProtocolError::MaskedFrame => (PROTOCOL, "server frame masked"),
            ProtocolError::FragmentedControlFrame => (PROTOCOL, "fragmented control frame"),
            ProtocolError::ControlFrameTooLong => (PROTOCOL, "control frame too long"),
            ProtocolError::UnexpectedContinuation => (PROTOCOL, "unexpected continuation frame"),
            ProtocolError::ExpectedContinuation => (PROTOCOL, "expected continuation frame"),
            ProtocolError::ClosePayloadTooShort => (PROTOCOL, "close payload of 1 byte"),
            ProtocolError::InvalidCloseCode(_) => (PROTOCOL, "invalid close code"),
            ProtocolError::CompressedControlFrame => (PROTOCOL, "compressed control frame"),
            ProtocolError::CompressedContinuation => (PROTOCOL, "RSV1 set on a continuation frame"),
            ProtocolError::InvalidUtf8 => (PAYLOAD, "invalid UTF-8"),
            ProtocolError::InvalidCompressedData => (PAYLOAD, "invalid compressed data"),
            ProtocolError::FrameTooLarge => (TOO_BIG, "frame too large"),
            ProtocolError::MessageTooLarge => (TOO_BIG, "message too large"),
            ProtocolError::TooManyFragments => (TOO_BIG, "too many fragments"),
        }
    }

    /// The status code of the Close frame this violation sends (§7.4.1).
    pub fn close_code(&self) -> CloseCode {
        self.row().0
    }

    /// The reason sent in the Close frame: short, fixed, and free of any
    /// detail of our internals.
    pub fn reason(&self) -> &'static str {
        self.row().1
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            other => f.write_str(other.reason()),
        }
        .and_then(|()| write!(f, " (close code {})", self.close_code()))
    }
}

impl std::error::Error for ProtocolError {}

/// Text that is not UTF-8 (§8.1).
impl From<InvalidUtf8> for ProtocolError {
    fn from(_: InvalidUtf8) -> Self {
        ProtocolError::InvalidUtf8
    }
}

/// A Close payload that does not parse (§5.5.1) is the peer's violation.
impl From<ClosePayloadError> for ProtocolError {
    fn from(e: ClosePayloadError) -> Self {
        match e {
            ClosePayloadError::OneByte => ProtocolError::ClosePayloadTooShort,
            ClosePayloadError::InvalidCode(c) => ProtocolError::InvalidCloseCode(c.0),
            ClosePayloadError::InvalidReason(_) => ProtocolError::InvalidUtf8,
        }
    }
}

/// Everything that can go wrong on a connection, after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The peer broke the protocol; a Close frame with
    /// [`ProtocolError::close_code`] has been queued. Sticky: once returned,
    /// every later read returns it again.
    Protocol(ProtocolError),
    /// The TCP connection ended before the close handshake did: §7.1.5 calls
    /// this status 1006, which is reported, never sent.
    AbnormalClosure,
    /// The connection is closed (or closing, for sends): a Close frame was
    /// sent, and §5.5.1 says "the application MUST NOT send any more data
    /// frames".
    Closed,
    /// A control frame's payload over 125 bytes (§5.5), or a Close reason
    /// over 123; rejected before anything is queued.
    ControlPayloadTooLong,
    /// A new message was started while a fragmented one is being sent
    /// (§5.4: fragments of different messages do not interleave).
    FragmentedMessageInProgress,
    /// A fragment that continues a message, with no message begun, or of a
    /// different type.
    NoFragmentedMessage,
    /// Outgoing text fragments that are not UTF-8 once put together (§5.6).
    InvalidUtf8Sent,
    /// A prepared (unmasked) frame may only be sent by a server (§5.1).
    PreparedFrameFromClient,
    /// The compressor failed (RFC 7692); zlib fails only on misuse, so this
    /// is a bug here, not something the peer did. Nothing was queued.
    CompressionFailed,
}

impl Error {
    /// The close code this error sent or reports, if it has one.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::Protocol(e) => Some(e.close_code()),
            Error::AbnormalClosure
            | Error::Closed
            | Error::ControlPayloadTooLong
            | Error::FragmentedMessageInProgress
            | Error::NoFragmentedMessage
            | Error::InvalidUtf8Sent
            | Error::PreparedFrameFromClient
            | Error::CompressionFailed => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Protocol(e) => return write!(f, "protocol error: {e}"),
            Error::AbnormalClosure => "connection closed without a close handshake (1006)",
            Error::Closed => "connection closed",
            Error::ControlPayloadTooLong => {
                "control frame payload over 125 bytes (close reason over 123)"
            }
            Error::FragmentedMessageInProgress => {
                "a fragmented message is being sent; finish it first"
            }
            Error::NoFragmentedMessage => "no fragmented message of this type to continue",
            Error::InvalidUtf8Sent => "text fragments are not valid UTF-8",
            Error::PreparedFrameFromClient => {
                "prepared frames are unmasked and may only be sent by a server"
            }
            Error::CompressionFailed => "permessage-deflate compressor failed",
        })
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_violations_send_protocol_error() {
        for e in [
            ProtocolError::ReservedOpcode(3),
            ProtocolError::LengthHighBitSet,
            ProtocolError::NonMinimalLength,
            ProtocolError::ReservedBitsSet,
            ProtocolError::UnmaskedFrame,
            ProtocolError::MaskedFrame,
            ProtocolError::FragmentedControlFrame,
            ProtocolError::ControlFrameTooLong,
            ProtocolError::UnexpectedContinuation,
            ProtocolError::ExpectedContinuation,
            ProtocolError::ClosePayloadTooShort,
            ProtocolError::InvalidCloseCode(1005),
            ProtocolError::CompressedControlFrame,
            ProtocolError::CompressedContinuation,
        ] {
            assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR, "{e:?}");
        }
    }

    #[test]
    fn invalid_utf8_sends_invalid_payload() {
        assert_eq!(
            ProtocolError::InvalidUtf8.close_code(),
            CloseCode::INVALID_PAYLOAD
        );
        assert_eq!(
            ProtocolError::InvalidCompressedData.close_code(),
            CloseCode::INVALID_PAYLOAD
        );
    }

    #[test]
    fn limits_send_message_too_big() {
        for e in [
            ProtocolError::FrameTooLarge,
            ProtocolError::MessageTooLarge,
            ProtocolError::TooManyFragments,
        ] {
            assert_eq!(e.close_code(), CloseCode::MESSAGE_TOO_BIG, "{e:?}");
        }
    }

    #[test]
    fn every_reason_fits_in_a_close_frame() {
        let all = [
            ProtocolError::ReservedOpcode(0xf),
            ProtocolError::NonMinimalLength,
            ProtocolError::ExpectedContinuation,
            ProtocolError::InvalidCloseCode(65535),
        ];
        for e in all {
            assert!(e.reason().len() <= super::super::close::MAX_REASON_LEN);
        }
    }
}
