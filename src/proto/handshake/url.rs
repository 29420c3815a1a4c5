//! RFC 6455 §3, WebSocket URIs: `ws://` and `wss://`, split into what the
//! client needs to connect (host, port, TLS or not) and to ask (the
//! resource name and the `Host` header of §4.1).

use super::error::HandshakeError;

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
        let bad = HandshakeError::InvalidUrl;
        let (secure, rest) = if let Some(rest) = strip_prefix_ignore_case(url, "ws://") {
            (false, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(url, "wss://") {
            (true, rest)
        } else {
            return Err(bad("the scheme must be ws:// or wss://"));
        };
        // §3: "Fragment identifiers are meaningless in the context of
        // WebSocket URIs and MUST NOT be used on these URIs."
        if rest.contains('#') {
            return Err(bad("fragments (#) are not allowed"));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(split);
        if authority.contains('@') {
            return Err(bad("user information is not supported"));
        }
        let resource = match resource {
            "" => "/".to_owned(),
            r if r.starts_with('?') => format!("/{r}"),
            r => r.to_owned(),
        };
        // §11.1.1: "Characters in other components that are excluded by the
        // syntax defined above MUST be converted from Unicode to ASCII by
        // first encoding the characters as UTF-8 and then replacing the
        // corresponding bytes using their percent-encoded form". A request
        // line carries ASCII only.
        let resource = percent_encode_non_ascii(&resource);
        if resource.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("spaces or control characters in the path"));
        }
        let default_port = if secure { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or(bad("unclosed [ in host"))?;
            let port = match after {
                "" => default_port,
                p => parse_port(p.strip_prefix(':').ok_or(bad("junk after ]"))?)?,
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, parse_port(port)?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:~%!$&'()*+,;=".contains(&b))
        {
            return Err(bad("invalid character in host"));
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
    let (head, rest) = s.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// `s` with every byte outside ASCII written `%XX` (RFC 3986 §2.1), so a
/// path or query typed in Unicode becomes the URI it stands for.
fn percent_encode_non_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_port(p: &str) -> Result<u16, HandshakeError> {
    p.parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or(HandshakeError::InvalidUrl("invalid port"))
}
