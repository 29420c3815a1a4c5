//! RFC 6455 §9.1, Negotiating Extensions: the grammar of the
//! `Sec-WebSocket-Extensions` header.
//!
//! [`parse_extensions`] turns every such header into a list of
//! [`Extension`]s, names and parameters, and stops there: which parameters
//! an extension allows, and what they mean, is the extension's to say
//! (RFC 7692 §7.1 for permessage-deflate, in `deflate/`).

use super::error::HandshakeError;
use super::head::Header;
use super::lists::{header_values, is_tchar, is_token};

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

/// A cursor over one header value, for the §9.1 grammar.
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
