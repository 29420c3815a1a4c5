//! RFC 6455 §8.1, Handling Errors in UTF-8-Encoded Data: validate text as it
//! arrives, and fail at the first byte that can no longer be UTF-8.
//!
//! > When an endpoint is to interpret a byte stream as UTF-8 but finds that
//! > the byte stream is not, in fact, a valid UTF-8 stream, that endpoint
//! > MUST _Fail the WebSocket Connection_.
//!
//! A text message may be split across frames (§5.4), and a frame across TCP
//! reads, at any byte, including inside a multi-byte code point. The
//! [`Utf8Validator`] keeps the at most 3 bytes of an unfinished code point
//! between calls and checks each new byte as soon as it is seen, so that
//! `F4 90` (which would encode a code point above U+10FFFF, whatever follows)
//! is rejected at once, not when the message ends. Autobahn's cases 6.4.x
//! call this "fail fast", and a testee that waits gets NON-STRICT.
//!
//! Validation itself is `std::str::from_utf8`, which reports both how far the
//! input is valid and whether a failure is a real error or only a code point
//! cut short by the end of the input: exactly the two cases we must tell
//! apart.
//!
//! The validator also holds [`Utf8Bytes`], the text payload type: `Bytes`
//! known to be valid UTF-8.

use std::fmt;

use bytes::Bytes;

/// The input was not valid UTF-8 (§8.1). The connection fails with 1007.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8 in text")
    }
}

impl std::error::Error for InvalidUtf8 {}

/// Incremental UTF-8 validation over a stream split at arbitrary bytes.
///
/// Feed every piece with [`feed`](Self::feed), then call
/// [`finish`](Self::finish) when the message ends: a code point left
/// unfinished at the end of a message is an error too.
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    /// The start of a code point whose last bytes have not arrived yet.
    partial: [u8; 4],
    /// How many bytes of `partial` are in use (0 to 3).
    partial_len: usize,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece of the stream.
    ///
    /// Returns an error as soon as some byte makes the stream invalid,
    /// whatever bytes might follow.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        // First finish a code point carried over from the previous piece,
        // one byte at a time: at most 3 more bytes are ever needed.
        while self.partial_len > 0 {
            let Some((&byte, rest)) = input.split_first() else {
                return Ok(());
            };
            input = rest;
            self.partial[self.partial_len] = byte;
            self.partial_len += 1;
            match std::str::from_utf8(&self.partial[..self.partial_len]) {
                Ok(_) => self.partial_len = 0,
                // Still a valid beginning: wait for more.
                Err(e) if e.error_len().is_none() => {}
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match std::str::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(InvalidUtf8),
                None => {
                    // A code point cut short by the end of this piece: at most
                    // 3 bytes, since a 4th would have completed it.
                    let tail = input.get(e.valid_up_to()..).unwrap_or_default();
                    self.partial[..tail.len()].copy_from_slice(tail);
                    self.partial_len = tail.len();
                    Ok(())
                }
            },
        }
    }

    /// Ends the message: an unfinished code point is an error. The validator
    /// is reset for the next message either way.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let unfinished = self.partial_len > 0;
        self.partial_len = 0;
        if unfinished { Err(InvalidUtf8) } else { Ok(()) }
    }
}

/// A text payload: [`Bytes`] that hold valid UTF-8.
///
/// Received text is validated once, on arrival; this type records that fact
/// so the payload can be handed on without copying. Safe Rust has no way to
/// view bytes as `&str` without checking them, so [`as_str`](Self::as_str)
/// re-runs `std`'s (fast) validation; keep the result if you need it often.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps bytes this module's caller has already validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// A `'static` string, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// The text as `&str`.
    pub fn as_str(&self) -> &str {
        // Invariant: every constructor validated the bytes, and `Bytes` is
        // immutable, so this cannot fail.
        std::str::from_utf8(&self.0).expect("Utf8Bytes holds valid UTF-8")
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Gives up the UTF-8 guarantee and returns the bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = InvalidUtf8;
    /// Wraps bytes after checking them.
    fn try_from(bytes: Bytes) -> Result<Self, InvalidUtf8> {
        std::str::from_utf8(&bytes).map_err(|_| InvalidUtf8)?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Utf8Validator {
        /// Whether the validator is in the middle of a code point.
        fn is_mid_code_point(&self) -> bool {
            self.partial_len > 0
        }
    }

    fn feed_all(pieces: &[&[u8]]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        for p in pieces {
            v.feed(p)?;
        }
        v.finish()
    }

    #[test]
    fn code_point_split_across_pieces_is_valid() {
        // U+1F600 (😀) is F0 9F 98 80; split after every byte.
        assert_eq!(feed_all(&[b"a\xf0", b"\x9f", b"\x98", b"\x80z"]), Ok(()));
    }

    #[test]
    fn out_of_range_code_point_fails_before_it_is_complete() {
        // F4 90 can only start a code point above U+10FFFF.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"ok\xf4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
    }

    #[test]
    fn surrogate_fails_at_its_second_byte() {
        // ED A0 80 would be U+D800, a surrogate, which UTF-8 excludes.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xed"), Ok(()));
        assert_eq!(v.feed(b"\xa0"), Err(InvalidUtf8));
    }

    #[test]
    fn overlong_encoding_fails() {
        assert_eq!(feed_all(&[b"\xc0\xaf"]), Err(InvalidUtf8));
    }

    #[test]
    fn unfinished_code_point_at_message_end_fails() {
        assert_eq!(feed_all(&[b"abc\xe2\x82"]), Err(InvalidUtf8));
    }

    #[test]
    fn finish_resets_for_the_next_message() {
        let mut v = Utf8Validator::new();
        v.feed(b"\xe2").unwrap();
        assert!(v.finish().is_err());
        assert!(!v.is_mid_code_point());
        v.feed(b"fine").unwrap();
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn utf8_bytes_rejects_invalid_input() {
        assert!(Utf8Bytes::try_from(Bytes::from_static(b"\xff")).is_err());
        let t = Utf8Bytes::try_from(Bytes::from_static("κόσμε".as_bytes())).unwrap();
        assert_eq!(t.as_str(), "κόσμε");
    }

    proptest::proptest! {
        /// The validator agrees with `std::str::from_utf8` on arbitrary bytes
        /// split at arbitrary points.
        #[test]
        fn agrees_with_std_on_any_split(
            data in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::num::u8::ANY,
                    // Bias toward bytes that start or continue code points.
                    0x80u8..0xc0,
                    0xc0u8..0xf8,
                ],
                0..64,
            ),
            cuts in proptest::collection::vec(0usize..64, 0..8),
        ) {
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            points.sort_unstable();
            let mut v = Utf8Validator::new();
            let mut start = 0;
            let mut result = Ok(());
            for p in points.into_iter().chain(std::iter::once(data.len())) {
                if result.is_ok() {
                    result = v.feed(&data[start..p]);
                }
                start = p;
            }
            if result.is_ok() {
                result = v.finish();
            }
            proptest::prop_assert_eq!(result.is_ok(), std::str::from_utf8(&data).is_ok());
        }

        /// Fail-fast: when the validator accepts a prefix, that prefix can
        /// still be completed into valid UTF-8 (so it never waits on input that
        /// is already hopeless), and when it rejects, no completion exists.
        #[test]
        fn rejects_at_the_first_hopeless_byte(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..32),
        ) {
            let mut v = Utf8Validator::new();
            for (i, b) in data.iter().enumerate() {
                let ok = v.feed(std::slice::from_ref(b)).is_ok();
                let prefix = &data[..=i];
                let hopeless = match std::str::from_utf8(prefix) {
                    Ok(_) => false,
                    Err(e) => e.error_len().is_some(),
                };
                proptest::prop_assert_eq!(ok, !hopeless);
                if !ok {
                    break;
                }
            }
        }
    }
}
