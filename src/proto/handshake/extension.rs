//! RFC 6455 §9.1, Negotiating Extensions: the grammar of the
//! `Sec-WebSocket-Extensions` header.
//!
//! [`parse_extensions`] turns every such header into a list of
//! [`Extension`]s, names and parameters, and stops there: which parameters
//! an extension allows, and what they mean, is the extension's to say
//! (RFC 7692 §7.1 for permessage-deflate, in `deflate/`).

use super::error::HandshakeError;
use super::head::Header;
use super::lists::{self, list_elements};

/// One extension in a `Sec-WebSocket-Extensions` header, with its
/// parameters in order (§9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension's name, e.g. `permessage-deflate`.
    pub name: String,
    /// `name` or `name=value` parameters; a quoted value is unquoted.
    pub params: Vec<(String, Option<String>)>,
}

impl Extension {
    /// Whether this is the extension called `name` (extension tokens
    /// compare case-insensitively, like every token of RFC 9110 §5.6.2).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
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
///
/// Every character these rules allow in a name or a value is a `tchar`
/// (RFC 9110 §5.6.2), and neither `,` nor `;` is one, so splitting an
/// element at them first and checking each piece after cannot accept what
/// the grammar rejects: a quoted value holding either is cut in two, and
/// the halves fail.
pub fn parse_extensions(headers: &[Header]) -> Result<Vec<Extension>, HandshakeError> {
    // Empty list elements are allowed and ignored (RFC 9110 §5.6.1).
    list_elements(headers, "sec-websocket-extensions")
        .map(|element| {
            let mut pieces = element.split(|&b| b == b';').map(<[u8]>::trim_ascii);
            let name = token(pieces.next().unwrap_or_default())?;
            let params = pieces
                .map(|param| match param.iter().position(|&b| b == b'=') {
                    None => Ok((token(param)?, None)),
                    Some(eq) => {
                        let (key, value) = param.split_at(eq);
                        let value = value.get(1..).unwrap_or_default().trim_ascii();
                        Ok((token(key.trim_ascii())?, Some(token(&unquote(value)?)?)))
                    }
                })
                .collect::<Result<_, _>>()?;
            Ok(Extension { name, params })
        })
        .collect()
}

/// A token, as a string; anything else is a malformed header.
fn token(s: &[u8]) -> Result<String, HandshakeError> {
    lists::token(s, HandshakeError::InvalidExtensionsHeader)
}

/// RFC 9110 §5.6.4: `quoted-string = DQUOTE *( qdtext / quoted-pair )
/// DQUOTE`, with each `quoted-pair` (`\` and a character) unescaped; a
/// value without quotes is returned as it is.
fn unquote(value: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    let Some(inner) = value.strip_prefix(b"\"") else {
        return Ok(value.to_vec());
    };
    let inner = inner
        .strip_suffix(b"\"")
        .ok_or(HandshakeError::InvalidExtensionsHeader)?;
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        out.push(match b {
            b'\\' => *bytes
                .next()
                .ok_or(HandshakeError::InvalidExtensionsHeader)?,
            b => b,
        });
    }
    Ok(out)
}
