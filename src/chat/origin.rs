//! RFC 6455 §10.2 and RFC 6454: which web pages may open a WebSocket to
//! the chat.
//!
//! A browser lets any page open a WebSocket to any server, and sends the
//! page's origin in the `Origin` header (RFC 6455 §4.1 item 8; RFC 6454
//! §7). The header is the server's only defence against cross-site
//! WebSocket hijacking: without a check, a page on `http://evil.example`
//! opened by one of our users joins the chat as that user and reads its
//! rooms. RFC 6455 §10.2: "If the server does not wish to accept this
//! connection, it MUST return an appropriate HTTP error code (e.g., 403
//! Forbidden) and abort the WebSocket handshake"; §4.2.2 item 4 leaves
//! the choice of origins to the server.
//!
//! The policy ([`OriginPolicy`]):
//! - no `Origin` header: a non-browser client (our CLI, a bot, a load
//!   generator). Browsers always send one on a WebSocket handshake, and a
//!   page cannot remove it, so allowing its absence opens nothing to pages;
//! - the server's own origin: the scheme it serves (`http`, or `https` with
//!   TLS) with the `Host` the request was sent to, or, when set, the
//!   origin of the public URL (behind a proxy that terminates TLS or
//!   rewrites `Host`, the request alone cannot tell);
//! - origins added by the operator, or any origin at all with `*`;
//! - anything else, and `Origin: null` (sandboxed frames, `file:` pages,
//!   some redirects: RFC 6454 §7.3, "privacy-sensitive" contexts whose
//!   real origin is hidden, so it could be anyone), is refused.
//!
//! Origins compare as RFC 6454 §5 says: same scheme, host and port. The
//! scheme and host are compared ASCII case-insensitively (they are stored
//! in lower case, as §4 step 5 and §6.2 serialize them), and a port equal
//! to the scheme's default is the same as no port (§4 step 6, §6.2 step 5:
//! `http://a:80` is `http://a`).

use std::fmt;

/// One origin (RFC 6454 §3.2): a scheme, a host and a port, normalized
/// for comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The scheme, in lower case.
    scheme: String,
    /// The host, in lower case; an IPv6 literal keeps its brackets.
    host: String,
    /// The port, `None` when absent or the scheme's default.
    port: Option<u16>,
}

/// Why a string is not an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginError {
    /// No `scheme://` at the start.
    MissingScheme,
    /// The scheme has characters RFC 3986 §3.1 does not allow.
    BadScheme,
    /// No host after `scheme://`.
    MissingHost,
    /// The host has characters no host can have (`@`, spaces, controls…),
    /// or an unclosed `[`.
    BadHost,
    /// The port is not a number from 0 to 65535.
    BadPort,
    /// A path, query or fragment after the host, where an `Origin` header
    /// (RFC 6454 §6.2) has none.
    NotAnOrigin,
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingScheme => "expected scheme://host[:port]",
            Self::BadScheme => "invalid scheme",
            Self::MissingHost => "missing host",
            Self::BadHost => "invalid host",
            Self::BadPort => "invalid port",
            Self::NotAnOrigin => "an origin has no path, query or fragment",
        })
    }
}

impl std::error::Error for OriginError {}

/// The default port of the schemes a WebSocket's page can have (RFC 9110
/// §4.2 for http and https; RFC 6455 §3 for ws and wss).
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

impl Origin {
    /// The scheme, in lower case.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Parses an origin as the `Origin` header carries it (RFC 6454 §6.2,
    /// §7.1): `scheme "://" host [ ":" port ]`, nothing after. `null` is
    /// not an origin here: the server's origin check (`OriginPolicy::check`) decides.
    pub fn parse(s: &str) -> Result<Self, OriginError> {
        let (scheme, rest) = s.split_once("://").ok_or(OriginError::MissingScheme)?;
        if rest.contains(['/', '?', '#']) {
            return Err(OriginError::NotAnOrigin);
        }
        Self::from_parts(scheme, rest)
    }

    /// The origin of a URL (RFC 6454 §4), for configuration: whatever
    /// follows the authority (a path, a query) is dropped, so
    /// `https://chat.example.com/` gives `https://chat.example.com`. A URL
    /// with user information (`user@host`) is refused: no page has that
    /// origin, and it is likelier a typo than meant.
    pub fn from_url(url: &str) -> Result<Self, OriginError> {
        let (scheme, rest) = url
            .trim()
            .split_once("://")
            .ok_or(OriginError::MissingScheme)?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        Self::from_parts(scheme, &rest[..end])
    }

    /// The server's own origin for a request that reached it at `host` (a
    /// `Host` header: RFC 9110 §7.2, `uri-host [ ":" port ]`), over TLS or
    /// not. Browsers send the page's scheme, `http` or `https`, never `ws`.
    pub fn own(tls: bool, host: &str) -> Result<Self, OriginError> {
        Self::from_parts(if tls { "https" } else { "http" }, host)
    }

    /// `scheme` and `authority` (`host[:port]`) into a normalized origin.
    fn from_parts(scheme: &str, authority: &str) -> Result<Self, OriginError> {
        // RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
        let mut chars = scheme.chars();
        let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok {
            return Err(OriginError::BadScheme);
        }
        let scheme = scheme.to_ascii_lowercase();
        if authority.is_empty() {
            return Err(OriginError::MissingHost);
        }
        // User information (`user:password@`) has no place in an origin.
        if authority.contains('@') {
            return Err(OriginError::BadHost);
        }
        // An IPv6 literal (RFC 3986 §3.2.2) holds colons: its end is `]`.
        let (host, port) = if authority.starts_with('[') {
            let close = authority.find(']').ok_or(OriginError::BadHost)?;
            let (host, after) = authority.split_at(close + 1);
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(after.strip_prefix(':').ok_or(OriginError::BadHost)?),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(OriginError::MissingHost);
        }
        // Not a full RFC 3986 host grammar: enough to refuse what cannot
        // be one (user information, whitespace, controls, a second `[`).
        let inner = host.trim_start_matches('[').trim_end_matches(']');
        if inner.contains(['[', ']'])
            || inner
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || !b.is_ascii())
        {
            return Err(OriginError::BadHost);
        }
        let port = match port {
            // RFC 3986 §3.2.3: an empty port is the same as none.
            None | Some("") => None,
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse::<u16>().map_err(|_| OriginError::BadPort)?)
            }
            Some(_) => return Err(OriginError::BadPort),
        };
        let port = port.filter(|&p| Some(p) != default_port(&scheme));
        Ok(Self {
            host: host.to_ascii_lowercase(),
            scheme,
            port,
        })
    }
}

/// RFC 6454 §6.2, the ASCII serialization: `scheme://host[:port]`, the
/// port only when it is not the scheme's default.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// Which origins may open a WebSocket (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// The server's own origin, fixed; `None`: taken from each request's
    /// `Host`.
    pub public: Option<Origin>,
    /// Other origins allowed.
    pub allowed: Vec<Origin>,
    /// Allow every origin (and `null`): the check is off.
    pub any: bool,
}

/// Why a handshake's `Origin` was refused (for the log; the client is
/// told only that its origin is not allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRefusal {
    /// `Origin: null`: an opaque origin (RFC 6454 §7.3).
    Null,
    /// More than one `Origin` header, or a list of origins (RFC 6454 §7.1
    /// allows a list; browsers send one, and a list cannot be judged as
    /// one page's origin).
    Several,
    /// A header that is not an origin.
    Unparsable,
    /// A well-formed origin that is not allowed.
    NotAllowed,
}

impl OriginPolicy {
    /// Judges one handshake: `origins`, every value of its `Origin`
    /// headers; `host`, its `Host` header (if exactly one); `tls`, whether
    /// it came over TLS.
    pub fn check(
        &self,
        origins: &[&[u8]],
        host: Option<&[u8]>,
        tls: bool,
    ) -> Result<(), OriginRefusal> {
        if self.any {
            return Ok(());
        }
        let value = match origins {
            // No `Origin`: not a browser (see the module doc).
            [] => return Ok(()),
            [one] => one.trim_ascii(),
            _ => return Err(OriginRefusal::Several),
        };
        let value = std::str::from_utf8(value).map_err(|_| OriginRefusal::Unparsable)?;
        if value.eq_ignore_ascii_case("null") {
            return Err(OriginRefusal::Null);
        }
        if value.contains(' ') {
            return Err(OriginRefusal::Several);
        }
        let origin = Origin::parse(value).map_err(|_| OriginRefusal::Unparsable)?;
        let own = match &self.public {
            Some(public) => public == &origin,
            None => host
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| Origin::own(tls, h.trim()).ok())
                .is_some_and(|own| own == origin),
        };
        if own || self.allowed.contains(&origin) {
            Ok(())
        } else {
            Err(OriginRefusal::NotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Origin {
        Origin::parse(s).unwrap()
    }

    // RFC 6454 §4, §6.2: normalization.

    #[test]
    fn scheme_and_host_compare_case_insensitively() {
        assert_eq!(o("HTTP://Chat.Example.COM"), o("http://chat.example.com"));
        assert_eq!(
            o("HTTP://Chat.Example.COM").to_string(),
            "http://chat.example.com"
        );
    }

    #[test]
    fn the_default_port_is_the_same_as_none() {
        assert_eq!(o("http://a.example:80"), o("http://a.example"));
        assert_eq!(o("https://a.example:443"), o("https://a.example"));
        assert_eq!(o("http://a.example:"), o("http://a.example"));
        assert_eq!(o("https://a.example:443").to_string(), "https://a.example");
        assert_ne!(o("http://a.example:443"), o("http://a.example"));
        assert_ne!(o("https://a.example:80"), o("https://a.example"));
        assert_eq!(
            o("http://a.example:8080").to_string(),
            "http://a.example:8080"
        );
    }

    #[test]
    fn scheme_host_and_port_each_matter() {
        assert_ne!(o("http://a.example"), o("https://a.example"));
        assert_ne!(o("http://a.example"), o("http://b.example"));
        assert_ne!(o("http://a.example:3000"), o("http://a.example:3001"));
    }

    #[test]
    fn ipv6_literals_keep_their_brackets_and_ports() {
        assert_eq!(o("http://[::1]:3000").to_string(), "http://[::1]:3000");
        assert_eq!(o("http://[::1]:80"), o("http://[::1]"));
        assert_eq!(
            Origin::own(false, "[::1]:3000").unwrap(),
            o("http://[::1]:3000")
        );
        assert_eq!(Origin::parse("http://[::1"), Err(OriginError::BadHost));
        assert_eq!(Origin::parse("http://[::1]x"), Err(OriginError::BadHost));
    }

    #[test]
    fn what_is_not_an_origin_is_refused() {
        assert_eq!(
            Origin::parse("chat.example.com"),
            Err(OriginError::MissingScheme)
        );
        assert_eq!(Origin::parse("http://"), Err(OriginError::MissingHost));
        assert_eq!(Origin::parse("http://:80"), Err(OriginError::MissingHost));
        assert_eq!(
            Origin::parse("http://a.example/"),
            Err(OriginError::NotAnOrigin)
        );
        assert_eq!(
            Origin::parse("http://u@a.example"),
            Err(OriginError::BadHost)
        );
        assert_eq!(
            Origin::parse("http://a.example:99999"),
            Err(OriginError::BadPort)
        );
        assert_eq!(
            Origin::parse("http://a.example:+80"),
            Err(OriginError::BadPort)
        );
        assert_eq!(
            Origin::parse("1http://a.example"),
            Err(OriginError::BadScheme)
        );
        assert_eq!(Origin::parse("http://a b"), Err(OriginError::BadHost));
    }

    #[test]
    fn a_url_gives_its_origin() {
        assert_eq!(
            Origin::from_url("https://Chat.example.com:443/rooms?x=1").unwrap(),
            o("https://chat.example.com")
        );
        assert_eq!(
            Origin::from_url("http://a.example/").unwrap(),
            o("http://a.example")
        );
        assert_eq!(
            Origin::from_url("http://u:p@a.example/"),
            Err(OriginError::BadHost)
        );
    }

    // The policy.

    fn check(
        policy: &OriginPolicy,
        origin: &str,
        host: &str,
        tls: bool,
    ) -> Result<(), OriginRefusal> {
        policy.check(&[origin.as_bytes()], Some(host.as_bytes()), tls)
    }

    #[test]
    fn the_own_origin_is_the_scheme_served_and_the_host_reached() {
        let p = OriginPolicy::default();
        assert_eq!(
            check(&p, "http://127.0.0.1:3000", "127.0.0.1:3000", false),
            Ok(())
        );
        assert_eq!(
            check(&p, "http://LocalHost:3000", "localhost:3000", false),
            Ok(())
        );
        assert_eq!(
            check(&p, "https://chat.example", "chat.example:443", true),
            Ok(())
        );
        assert_eq!(
            check(&p, "http://chat.example", "chat.example", false),
            Ok(())
        );
        // Another scheme, host or port is another origin.
        assert_eq!(
            check(&p, "https://127.0.0.1:3000", "127.0.0.1:3000", false),
            Err(OriginRefusal::NotAllowed)
        );
        assert_eq!(
            check(&p, "http://127.0.0.1:3001", "127.0.0.1:3000", false),
            Err(OriginRefusal::NotAllowed)
        );
        assert_eq!(
            check(&p, "http://evil.example", "127.0.0.1:3000", false),
            Err(OriginRefusal::NotAllowed)
        );
        // No Host to compare with: only the allowed list can match.
        assert_eq!(
            p.check(&[b"http://a.example"], None, false),
            Err(OriginRefusal::NotAllowed)
        );
    }

    #[test]
    fn no_origin_is_a_non_browser_client_and_allowed() {
        assert_eq!(
            OriginPolicy::default().check(&[], Some(b"x"), false),
            Ok(())
        );
    }

    #[test]
    fn null_lists_and_garbage_are_refused() {
        let p = OriginPolicy::default();
        assert_eq!(check(&p, "null", "x", false), Err(OriginRefusal::Null));
        assert_eq!(
            check(&p, "http://x http://y", "x", false),
            Err(OriginRefusal::Several)
        );
        assert_eq!(
            p.check(&[b"http://x", b"http://x"], Some(b"x"), false),
            Err(OriginRefusal::Several)
        );
        assert_eq!(check(&p, "x", "x", false), Err(OriginRefusal::Unparsable));
        assert_eq!(
            p.check(&[b"http://\xff"], Some(b"x"), false),
            Err(OriginRefusal::Unparsable)
        );
    }

    #[test]
    fn a_public_origin_replaces_the_host_and_others_can_be_added() {
        let p = OriginPolicy {
            public: Some(Origin::from_url("https://chat.example/").unwrap()),
            allowed: vec![o("https://app.example")],
            any: false,
        };
        assert_eq!(
            check(&p, "https://chat.example", "10.0.0.5:3000", false),
            Ok(())
        );
        assert_eq!(
            check(&p, "https://app.example", "10.0.0.5:3000", false),
            Ok(())
        );
        // The Host no longer makes an origin its own.
        assert_eq!(
            check(&p, "http://10.0.0.5:3000", "10.0.0.5:3000", false),
            Err(OriginRefusal::NotAllowed)
        );
    }

    #[test]
    fn any_allows_everything_even_null() {
        let p = OriginPolicy {
            any: true,
            ..OriginPolicy::default()
        };
        assert_eq!(check(&p, "http://evil.example", "x", false), Ok(()));
        assert_eq!(check(&p, "null", "x", false), Ok(()));
    }
}
