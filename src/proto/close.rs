//! RFC 6455 §7.4, Status Codes, and §5.5.1, the Close frame's payload.
//!
//! A Close frame's payload is empty, or a 2-byte status code in network byte
//! order followed by a UTF-8 reason:
//!
//! > If there is a body, the first two bytes of the body MUST be a 2-byte
//! > unsigned integer (in network byte order) representing a status code
//! > with value /code/ defined in Section 7.4. Following the 2-byte integer,
//! > the body MAY contain UTF-8-encoded data with value /reason/.
//!
//! [`CloseCode`] can only hold a code that may appear on the wire: the ones
//! §7.4.1 defines for use in frames, the ones IANA registered since (1012 to
//! 1014), and the ranges §7.4.2 leaves to libraries (3000–3999) and to
//! applications (4000–4999). [`CloseCode::try_from`] sorts every `u16` with
//! one exhaustive range match, so the compiler checks that no value is left
//! unclassified. "No status" (1005) and "abnormal closure" (1006) are
//! described in §7.1.5 and §7.1.6 as things an endpoint *reports*, never
//! sends; here they are [`CloseFrame`]'s absence and
//! [`Error::AbnormalClosure`](super::Error::AbnormalClosure).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::utf8::{InvalidUtf8, Utf8Bytes};

/// The longest reason that fits in a control frame: §5.5 allows 125 payload
/// bytes, and the status code takes two.
pub const MAX_REASON_LEN: usize = 123;

/// A status code that may be sent in a Close frame (§7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: "a normal closure, meaning that the purpose for which the
    /// connection was established has been fulfilled."
    pub const NORMAL: Self = Self(1000);
    /// 1001: "an endpoint is 'going away', such as a server going down or a
    /// browser having navigated away from a page."
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: "an endpoint is terminating the connection due to a protocol
    /// error."
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: "it has received a type of data it cannot accept (e.g., an
    /// endpoint that understands only text data MAY send this if it receives
    /// a binary message)."
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1007: "it has received data within a message that was not consistent
    /// with the type of the message (e.g., non-UTF-8 \[RFC3629\] data within a
    /// text message)."
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: "it has received a message that violates its policy." A generic
    /// code when no other fits, or the details must stay hidden.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: "it has received a message that is too big for it to process."
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: sent by a client when "it has expected the server to negotiate
    /// one or more extension, but the server didn't return them".
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: "a server is terminating the connection because it encountered
    /// an unexpected condition that prevented it from fulfilling the request."
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012 (IANA registry): the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013 (IANA registry): try again later, e.g. the server is overloaded.
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014 (IANA registry): a gateway or proxy got an invalid upstream
    /// response.
    pub const BAD_GATEWAY: Self = Self(1014);

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }
}

/// A status code that must not appear in a Close frame (§7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCloseCode(pub u16);

impl fmt::Display for InvalidCloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "close code {} may not be sent in a Close frame", self.0)
    }
}

impl std::error::Error for InvalidCloseCode {}

impl TryFrom<u16> for CloseCode {
    type Error = InvalidCloseCode;

    fn try_from(code: u16) -> Result<Self, InvalidCloseCode> {
        match code {
            // §7.4.2: "0-999: Status codes in the range 0-999 are not used."
            0..=999 => Err(InvalidCloseCode(code)),
            // §7.4.1: 1000 normal, 1001 going away, 1002 protocol error,
            // 1003 unsupported data.
            1000..=1003 => Ok(Self(code)),
            // 1004: "Reserved. The specific meaning might be defined in the
            // future." 1005 and 1006: "MUST NOT be set as a status code in a
            // Close control frame by an endpoint."
            1004..=1006 => Err(InvalidCloseCode(code)),
            // §7.4.1: 1007 invalid payload, 1008 policy, 1009 too big,
            // 1010 mandatory extension, 1011 internal error; then 1012 to
            // 1014, registered with IANA after the RFC (§11.7's registry).
            1007..=1014 => Ok(Self(code)),
            // 1015: TLS handshake failure, "MUST NOT be set as a status code
            // in a Close control frame by an endpoint."
            1015 => Err(InvalidCloseCode(code)),
            // §7.4.2: "1000-2999 ... reserved for definition by this protocol,
            // its future revisions, and extensions". Unassigned, so invalid.
            1016..=2999 => Err(InvalidCloseCode(code)),
            // §7.4.2: 3000-3999 registered with IANA for libraries and
            // frameworks; 4000-4999 private use by applications.
            3000..=4999 => Ok(Self(code)),
            // Outside every range §7.4.2 defines.
            5000..=u16::MAX => Err(InvalidCloseCode(code)),
        }
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The body of a Close frame that carried a status code.
///
/// A Close frame with an empty payload is represented as `None` where a
/// `CloseFrame` is expected: §7.1.5 calls that "no status code" (1005).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// Why the connection is closing.
    pub code: CloseCode,
    /// A human-readable reason, at most [`MAX_REASON_LEN`] bytes. §7.1.6:
    /// "not necessarily human readable"; do not show it to users unchecked.
    pub reason: Utf8Bytes,
}

/// What is wrong with a received Close payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosePayloadError {
    /// One byte: too short for a status code, too long for none (§5.5.1).
    OneByte,
    /// A status code §7.4 does not allow on the wire.
    InvalidCode(InvalidCloseCode),
    /// The reason is not UTF-8 (§5.5.1, §8.1).
    InvalidReason(InvalidUtf8),
}

impl CloseFrame {
    /// A close frame with a code and a reason, the reason cut to
    /// [`MAX_REASON_LEN`] bytes at a character boundary.
    pub fn new(code: CloseCode, reason: &str) -> Self {
        let mut end = reason.len().min(MAX_REASON_LEN);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            code,
            reason: Utf8Bytes::from(&reason[..end]),
        }
    }

    /// Parses a received Close payload (§5.5.1), already unmasked.
    pub fn parse(payload: Bytes) -> Result<Option<Self>, ClosePayloadError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ClosePayloadError::OneByte),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let code = CloseCode::try_from(code).map_err(ClosePayloadError::InvalidCode)?;
                let reason = Utf8Bytes::try_from(payload.slice(2..))
                    .map_err(ClosePayloadError::InvalidReason)?;
                Ok(Some(Self { code, reason }))
            }
        }
    }

    /// Appends the payload (code, then reason) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.code.as_u16());
        out.extend_from_slice(self.reason.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl CloseCode {
        /// Whether the code is in a range §7.4.2 reserves for others to
        /// register (3000–3999) or for private use (4000–4999).
        fn is_application_defined(self) -> bool {
            self.0 >= 3000
        }
    }

    impl CloseFrame {
        /// The payload's length: 2 plus the reason's.
        fn encoded_len(&self) -> usize {
            2 + self.reason.len()
        }
    }

    // RFC 6455 §7.4: which codes may be sent, one assertion per rule.

    #[test]
    fn codes_defined_for_use_are_valid() {
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011] {
            assert!(CloseCode::try_from(code).is_ok(), "{code}");
        }
    }

    #[test]
    fn iana_registered_1012_to_1014_are_valid() {
        for code in [1012, 1013, 1014] {
            assert!(CloseCode::try_from(code).is_ok(), "{code}");
        }
    }

    #[test]
    fn codes_below_1000_are_invalid() {
        for code in [0, 1, 999] {
            assert_eq!(CloseCode::try_from(code), Err(InvalidCloseCode(code)));
        }
    }

    #[test]
    fn reserved_1004_and_report_only_1005_1006_are_invalid() {
        for code in [1004, 1005, 1006] {
            assert!(CloseCode::try_from(code).is_err(), "{code}");
        }
    }

    #[test]
    fn tls_failure_1015_is_invalid() {
        assert!(CloseCode::try_from(1015).is_err());
    }

    #[test]
    fn unassigned_protocol_range_is_invalid() {
        for code in [1016, 1100, 2000, 2999] {
            assert!(CloseCode::try_from(code).is_err(), "{code}");
        }
    }

    #[test]
    fn library_and_private_ranges_are_valid() {
        for code in [3000, 3999, 4000, 4999] {
            let c = CloseCode::try_from(code).unwrap();
            assert!(c.is_application_defined());
        }
    }

    #[test]
    fn codes_from_5000_are_invalid() {
        for code in [5000, 65535] {
            assert!(CloseCode::try_from(code).is_err(), "{code}");
        }
    }

    #[test]
    fn empty_payload_means_no_status() {
        assert_eq!(CloseFrame::parse(Bytes::new()), Ok(None));
    }

    #[test]
    fn one_byte_payload_is_rejected() {
        assert_eq!(
            CloseFrame::parse(Bytes::from_static(&[0x03])),
            Err(ClosePayloadError::OneByte)
        );
    }

    #[test]
    fn payload_with_invalid_code_is_rejected() {
        assert_eq!(
            CloseFrame::parse(Bytes::from_static(&[0x03, 0xed])),
            Err(ClosePayloadError::InvalidCode(InvalidCloseCode(1005)))
        );
    }

    #[test]
    fn reason_with_invalid_utf8_is_rejected() {
        assert_eq!(
            CloseFrame::parse(Bytes::from_static(&[0x03, 0xe8, 0xff])),
            Err(ClosePayloadError::InvalidReason(InvalidUtf8))
        );
    }

    #[test]
    fn payload_round_trips() {
        let frame = CloseFrame::new(CloseCode::GOING_AWAY, "bye");
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        assert_eq!(&out[..], b"\x03\xe9bye");
        assert_eq!(CloseFrame::parse(out.freeze()), Ok(Some(frame)));
    }

    #[test]
    fn long_reason_is_cut_at_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let frame = CloseFrame::new(CloseCode::NORMAL, &reason);
        assert_eq!(frame.reason.len(), 122);
        assert!(frame.encoded_len() <= 125);
    }
}
