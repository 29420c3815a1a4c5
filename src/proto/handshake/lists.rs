//! RFC 9110 §5.6, the pieces of header syntax the handshake's checks are
//! written in: lists (`#element`, §5.6.1) and tokens (§5.6.2).
//!
//! RFC 6455 §4 speaks of a header field that "includes the token" or "has a
//! value"; these say what that means for fields repeated, comma-separated,
//! or written in another case.

use super::error::HandshakeError;
use super::head::Header;

/// The values of every header named `name` (case-insensitive).
pub(super) fn header_values<'a>(
    headers: &'a [Header],
    name: &str,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

/// The comma-separated elements of every header named `name`, trimmed
/// (RFC 9110 §5.6.1 lists: `#element`, with optional whitespace).
pub(super) fn list_elements<'a>(
    headers: &'a [Header],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    header_values(headers, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// Whether some element of header `name` equals `token`, ignoring case
/// (§4.2.1: "a |Connection| header field that includes the token
/// "Upgrade", treated as an ASCII case-insensitive value").
pub(super) fn list_contains(headers: &[Header], name: &str, token: &str) -> bool {
    list_elements(headers, name).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

/// The one value of header `name`, or `None` if it is absent or repeated.
pub(super) fn single_value<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    let mut values = header_values(headers, name);
    let first = values.next()?;
    match values.next() {
        Some(_) => None,
        None => Some(first.trim_ascii()),
    }
}

/// RFC 9110 §5.6.2: `tchar`, the characters of a token.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §5.6.2: `token = 1*tchar`.
pub(super) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// `s` as a string if it is a token, `err` if it is not.
pub(super) fn token(s: &[u8], err: HandshakeError) -> Result<String, HandshakeError> {
    is_token(s)
        .then(|| String::from_utf8_lossy(s).into_owned())
        .ok_or(err)
}
