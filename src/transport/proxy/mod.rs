//! Clients behind proxies: the TCP connection to a `ws://` or `wss://`
//! server opened through an HTTP CONNECT proxy (RFC 9110 §9.3.6) or a
//! SOCKS5 proxy (RFC 1928, with RFC 1929's username and password).
//!
//! A proxy only ever carries a tunnel here: the client asks it for a TCP
//! connection to the server's host and port, and from then on the proxy
//! relays bytes both ways without reading them. Everything RFC 6455 says
//! about the connection then holds over the tunnel as it would over TCP:
//! for `wss://`, TLS runs end to end inside the tunnel, from the client
//! to the server, with the server's host as the name sent in SNI and
//! checked against its certificate (§4.1), so the proxy sees neither the
//! handshake nor a frame.
//!
//! RFC 6455 §4.1 asks for exactly this: "If the client is configured to
//! use a proxy when using the WebSocket Protocol to connect to host
//! /host/ and port /port/, then the client SHOULD connect to that proxy
//! and ask it to open a TCP connection to the host given by /host/ and
//! the port given by /port/", its example being `CONNECT
//! example.com:80 HTTP/1.1`. (Forwarding a `ws://` request as a plain
//! proxied GET would be the other way; a proxy that does not understand
//! `Upgrade` would break it.) Many HTTP proxies allow CONNECT only to
//! port 443 (Squid's default configuration denies `CONNECT !SSL_ports`;
//! tinyproxy has `ConnectPort`): a `ws://` URL on port 80 through one is
//! refused, typically with 403, which is the proxy's policy, and
//! [`ProxyFailure::Status`] says so.
//!
//! | file | what |
//! |------|------|
//! | `mod.rs` | [`Proxy`]: a proxy URL, parsed; [`ProxyError`], [`ProxyFailure`]; opening the tunnel |
//! | `connect.rs` | RFC 9110 §9.3.6: `CONNECT host:port`, `Proxy-Authorization: Basic` (RFC 7617), the answer's head read with a bound and not past its end |
//! | `socks.rs` | RFC 1928 and RFC 1929: method selection, username/password, the CONNECT request and its reply |
//! | `env.rs` | [`ProxyEnv`]: the proxy a URL should use according to `HTTPS_PROXY`, `http_proxy`, `ALL_PROXY` and `NO_PROXY`, as curl reads them |
//!
//! # Choosing a proxy
//!
//! [`Connector::new`](super::Connector::new) never uses a proxy, and
//! never reads the environment: a library should not change where its
//! connections go because of a variable its caller did not ask it to
//! read. [`Connector::with_proxy`](super::Connector::with_proxy) sends
//! every connection through the one proxy given;
//! [`Connector::with_env_proxy`](super::Connector::with_env_proxy) picks
//! one per URL from the environment, like curl (see [`ProxyEnv`]).
//!
//! # Bounds
//!
//! The whole exchange with the proxy, TCP to it included, runs inside the
//! window [`Config::handshake_timeout`](super::Config::handshake_timeout)
//! gives the TCP connection and the TLS handshake
//! ([`Connector::open`](super::Connector::open)): a proxy that never
//! answers ends in [`Error::HandshakeTimeout`]. An HTTP proxy's answer is
//! read up to [`MAX_HEAD_BYTES`] and [`MAX_HEAD_HEADERS`], the defaults of
//! our own opening handshake, and never past its last byte: what follows
//! the head already belongs to the tunnel. SOCKS replies have lengths the
//! protocol fixes, and are read exactly.

mod connect;
mod env;
mod socks;

use std::fmt;
use std::io;
use std::str::FromStr;

use tokio::net::TcpStream;

use super::Error;

pub use env::ProxyEnv;

/// The longest head an HTTP proxy may answer CONNECT with, in bytes:
/// 8 KiB, as [`proto::Config::max_handshake_bytes`](crate::proto::Config::max_handshake_bytes)
/// (nginx's default header buffer). A proxy's answer is a status line and
/// a few fields; one that sends more is refused with
/// [`ProxyFailure::HeadTooLarge`], without reading on.
pub(crate) const MAX_HEAD_BYTES: usize = 8 << 10;

/// The most header fields in an HTTP proxy's answer: 64, as
/// [`proto::Config::max_handshake_headers`](crate::proto::Config::max_handshake_headers).
pub(crate) const MAX_HEAD_HEADERS: usize = 64;

/// curl's default port for a proxy URL that names none, whatever its
/// scheme (1080, SOCKS' registered port).
const DEFAULT_PORT: u16 = 1080;

/// How the client talks to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyKind {
    /// `http://`: an HTTP proxy, asked with `CONNECT host:port`
    /// (RFC 9110 §9.3.6). The proxy resolves the name.
    Http,
    /// `socks5://`: SOCKS5 (RFC 1928), with the server's name resolved
    /// here and its address sent to the proxy (curl's meaning).
    Socks5,
    /// `socks5h://`: SOCKS5 with the name sent to the proxy, which
    /// resolves it (curl's meaning): for names only the proxy's side of the
    /// network knows, and so that no lookup leaks from this host.
    Socks5h,
}

impl ProxyKind {
    /// The URL scheme, without `://`.
    pub fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        }
    }
}

/// A proxy, parsed from its URL: `http://[user:pass@]host[:port]`,
/// `socks5://…` or `socks5h://…`.
///
/// Following curl: a URL without a scheme is an HTTP proxy, and one
/// without a port uses 1080. The user name and password are
/// percent-decoded (RFC 3986 §3.2.1: a `@` or `:` in them is written
/// `%40`, `%3A`). `https://` proxies (TLS to the proxy itself) and
/// SOCKS4 are not supported and fail to parse, rather than silently
/// going somewhere else.
///
/// Neither `Display` nor `Debug` shows the password: the first gives
/// `scheme://host:port`, which is what errors name.
///
/// ```
/// use rfc6455::transport::{Proxy, ProxyKind};
///
/// let proxy = Proxy::parse("http://alice:p%40ss@proxy.example:3128/")?;
/// assert_eq!(proxy.kind(), ProxyKind::Http);
/// assert_eq!(proxy.username(), Some("alice"));
/// assert_eq!(proxy.to_string(), "http://proxy.example:3128");
/// # Ok::<(), rfc6455::transport::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    /// Without brackets for IPv6.
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

/// A user name and password, percent-decoded.
#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    user: String,
    password: String,
}

impl Proxy {
    /// Parses a proxy URL (see the type's documentation). A URL that is
    /// not one gives [`Error::Proxy`] with [`ProxyFailure::InvalidUrl`];
    /// the error quotes the URL with any user information removed.
    pub fn parse(url: &str) -> Result<Proxy, Error> {
        parse(url).map_err(|reason| {
            Error::Proxy(ProxyError {
                proxy: redact(url),
                failure: ProxyFailure::InvalidUrl(reason),
            })
        })
    }

    /// How the client talks to it.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// Its host name or address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name it is given, if any.
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.user.as_str())
    }

    fn error(&self, failure: ProxyFailure) -> Error {
        Error::Proxy(ProxyError {
            proxy: self.to_string(),
            failure,
        })
    }
}

impl FromStr for Proxy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Proxy::parse(s)
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.kind.scheme();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password never goes into a log line.
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username())
            .finish()
    }
}

fn parse(url: &str) -> Result<Proxy, &'static str> {
    let url = url.trim();
    let (kind, rest) = match url.split_once("://") {
        None => (ProxyKind::Http, url),
        Some((scheme, rest)) => {
            let kind = match scheme.to_ascii_lowercase().as_str() {
                "http" => ProxyKind::Http,
                "socks5" => ProxyKind::Socks5,
                "socks5h" => ProxyKind::Socks5h,
                "https" => return Err("https:// proxies (TLS to the proxy) are not supported"),
                "socks4" | "socks4a" => return Err("SOCKS4 proxies are not supported"),
                _ => return Err("the scheme must be http://, socks5:// or socks5h://"),
            };
            (kind, rest)
        }
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    // A trailing slash is common in proxy variables (`http://proxy:3128/`);
    // anything more would be a path the proxy is never told.
    if !path.is_empty() && path != "/" {
        return Err("a proxy URL has no path");
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport)?;
    let credentials = userinfo.map(|u| credentials(kind, u)).transpose()?;
    Ok(Proxy {
        kind,
        host: host.to_owned(),
        port,
        credentials,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to 1080.
fn split_host_port(hostport: &str) -> Result<(&str, u16), &'static str> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        // RFC 3986 §3.2.2: brackets hold an IP literal (an IPv6 address
        // here, with RFC 6874's zone after a `%`), nothing else.
        let address = host.split_once('%').map_or(host, |(address, _)| address);
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("brackets in the host must hold an IPv6 address");
        }
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or("junk after ]")?)),
        }
    } else {
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        };
        if host.contains(':') {
            return Err("an IPv6 address in the host must be in brackets");
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("empty host");
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:~%".contains(&b))
    {
        return Err("invalid character in the host");
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or("invalid port")?,
    };
    Ok((host, port))
}

/// `user[:password]`, percent-decoded, checked against what the
/// protocol that carries them can say.
fn credentials(kind: ProxyKind, userinfo: &str) -> Result<Credentials, &'static str> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let user = percent_decode(user)?;
    let password = percent_decode(password)?;
    match kind {
        ProxyKind::Http => {
            // RFC 7617 §2: "a user-id containing a colon character is
            // invalid", and "the user-id and password MUST NOT contain
            // any control characters".
            if user.contains(':') {
                return Err("an HTTP proxy's user name cannot contain ':' (RFC 7617 §2)");
            }
            if user.chars().chain(password.chars()).any(char::is_control) {
                return Err("control characters in the user name or password (RFC 7617 §2)");
            }
        }
        ProxyKind::Socks5 | ProxyKind::Socks5h => {
            // RFC 1929 §2: ULEN and PLEN are one octet each, and at least 1.
            if !(1..=255).contains(&user.len()) || !(1..=255).contains(&password.len()) {
                return Err("a SOCKS5 user name and password are 1 to 255 bytes each (RFC 1929)");
            }
        }
    }
    Ok(Credentials { user, password })
}

/// RFC 3986 §2.1: `%XX` is the octet XX; the octets must be UTF-8.
fn percent_decode(s: &str) -> Result<String, &'static str> {
    let bad = "a bad percent-escape in the user information";
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = [bytes.next().ok_or(bad)?, bytes.next().ok_or(bad)?];
        // `"%" HEXDIG HEXDIG` exactly: from_str_radix alone would take a
        // sign (`%+F` as 0x0F).
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad);
        }
        let hex = std::str::from_utf8(&hex).map_err(|_| bad)?;
        out.push(u8::from_str_radix(hex, 16).map_err(|_| bad)?);
    }
    String::from_utf8(out).map_err(|_| "the user information is not UTF-8 once decoded")
}

/// `url` with everything from after `://` up to its last `@` removed, for
/// an error message. The last `@` anywhere, not only inside what looks like
/// the authority: the URL being refused may be refused precisely because a
/// password holds an unescaped `/`, `?` or `#`, which then seems to end
/// the authority early and would leave the password in plain sight.
/// Removing too much from a URL that has an `@` in its path costs nothing.
fn redact(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].rfind('@') {
        Some(at) => format!("{}{}", &url[..start], &url[start + at + 1..]),
        None => url.to_owned(),
    }
}

/// A proxy refused to open the tunnel, or could not be talked to.
#[derive(Debug)]
pub struct ProxyError {
    /// The proxy, as `scheme://host:port` (never its password).
    pub proxy: String,
    /// What went wrong.
    pub failure: ProxyFailure,
}

/// What went wrong with a proxy.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProxyFailure {
    /// The proxy URL is not one we can use (the reason says why).
    InvalidUrl(&'static str),
    /// The proxy could not be reached, or the connection to it failed
    /// while the tunnel was being opened.
    Io(io::Error),
    /// The proxy closed the connection before its answer was complete.
    Closed,
    /// An HTTP proxy answered CONNECT with a status other than 2xx
    /// (RFC 9110 §9.3.6): 407 (it wants credentials, or refused the ones
    /// given), 403 (the destination is not allowed), 502 or 504 (it could
    /// not reach the server).
    Status {
        /// The status code.
        code: u16,
        /// The reason phrase the proxy sent.
        reason: String,
    },
    /// An HTTP proxy's answer went over 8 KiB or 64 header fields before
    /// its end (the defaults of our own opening handshake's bounds); none
    /// of it past the bound was read.
    HeadTooLarge,
    /// The proxy's answer broke its protocol's grammar (not HTTP, not
    /// SOCKS5, a method we did not offer); the reason says where.
    Malformed(&'static str),
    /// A SOCKS5 proxy accepted none of the authentication methods offered
    /// (RFC 1928 §3, method X'FF'): it wants a user name and password and
    /// the URL had none, or the other way round.
    SocksNoAcceptableMethod,
    /// A SOCKS5 proxy refused the user name and password (RFC 1929 §2: a
    /// status other than X'00'; the status is given).
    SocksAuthFailed(u8),
    /// A SOCKS5 proxy answered CONNECT with a failure (RFC 1928 §6, the
    /// REP field: 2 not allowed by its rules, 4 host unreachable, 5
    /// connection refused, ...; `Display` gives the RFC's name).
    SocksReply(u8),
    /// The destination cannot be said in SOCKS5: a host name over 255
    /// bytes (RFC 1928 §5), or one that resolved to no address.
    SocksTarget(&'static str),
}

/// RFC 1928 §6: what a SOCKS5 reply code means.
fn socks_reply_meaning(code: u8) -> &'static str {
    match code {
        0x00 => "succeeded",
        0x01 => "general SOCKS server failure",
        0x02 => "connection not allowed by ruleset",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        0x09..=0xff => "unassigned",
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proxy = &self.proxy;
        match &self.failure {
            ProxyFailure::InvalidUrl(why) => write!(f, "invalid proxy URL {proxy:?}: {why}"),
            ProxyFailure::Io(e) => write!(f, "proxy {proxy}: {e}"),
            ProxyFailure::Closed => {
                write!(f, "proxy {proxy} closed the connection before answering")
            }
            ProxyFailure::Status { code, reason } => {
                write!(f, "proxy {proxy} refused the tunnel: HTTP {code} {reason}")
            }
            ProxyFailure::HeadTooLarge => write!(
                f,
                "proxy {proxy} sent an answer over {MAX_HEAD_BYTES} bytes or {MAX_HEAD_HEADERS} fields"
            ),
            ProxyFailure::Malformed(why) => write!(f, "proxy {proxy} answered badly: {why}"),
            ProxyFailure::SocksNoAcceptableMethod => write!(
                f,
                "proxy {proxy} accepts none of the authentication methods offered (a user name and password needed, or not allowed)"
            ),
            ProxyFailure::SocksAuthFailed(status) => write!(
                f,
                "proxy {proxy} refused the user name and password (status {status})"
            ),
            ProxyFailure::SocksReply(code) => write!(
                f,
                "proxy {proxy} refused the tunnel: SOCKS5 reply {code} ({})",
                socks_reply_meaning(*code)
            ),
            ProxyFailure::SocksTarget(why) => write!(f, "proxy {proxy}: {why}"),
        }
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            ProxyFailure::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Opens a TCP connection to `host:port` through `proxy`: TCP to the
/// proxy (Nagle off: the exchange is a few small writes, each waited
/// on), then the proxy's handshake. The caller applies the timeout.
pub(super) async fn tunnel(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream, Error> {
    let io = |e: io::Error| {
        proxy.error(if e.kind() == io::ErrorKind::UnexpectedEof {
            ProxyFailure::Closed
        } else {
            ProxyFailure::Io(e)
        })
    };
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(io)?;
    // Nagle's algorithm is turned off by the caller (`Connector::open_tcp`),
    // for a tunnel as for a direct connection.
    let outcome = match proxy.kind {
        ProxyKind::Http => connect::handshake(&mut stream, proxy, host, port).await,
        ProxyKind::Socks5 | ProxyKind::Socks5h => {
            socks::handshake(&mut stream, proxy, host, port).await
        }
    };
    match outcome {
        Ok(()) => Ok(stream),
        Err(Step::Io(e)) => Err(io(e)),
        Err(Step::Failed(failure)) => Err(proxy.error(failure)),
    }
}

/// How a step of a proxy handshake fails: the socket, or the proxy's
/// answer.
#[derive(Debug)]
enum Step {
    Io(io::Error),
    Failed(ProxyFailure),
}

impl From<io::Error> for Step {
    fn from(e: io::Error) -> Self {
        Step::Io(e)
    }
}

impl From<ProxyFailure> for Step {
    fn from(f: ProxyFailure) -> Self {
        Step::Failed(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(url: &str) -> (String, &'static str) {
        match Proxy::parse(url) {
            Err(Error::Proxy(ProxyError {
                proxy,
                failure: ProxyFailure::InvalidUrl(why),
            })) => (proxy, why),
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn a_url_without_scheme_or_port_is_http_on_1080_as_curl_has_it() {
        let p = Proxy::parse("proxy.example").unwrap();
        assert_eq!(
            (p.kind(), p.host(), p.port()),
            (ProxyKind::Http, "proxy.example", 1080)
        );
        assert_eq!(p.username(), None);
    }

    #[test]
    fn schemes_are_case_insensitive_and_a_trailing_slash_is_allowed() {
        let p = Proxy::parse("SOCKS5H://10.0.0.1:9050/").unwrap();
        assert_eq!(
            (p.kind(), p.host(), p.port()),
            (ProxyKind::Socks5h, "10.0.0.1", 9050)
        );
        assert_eq!(
            Proxy::parse("socks5://h:1").unwrap().kind(),
            ProxyKind::Socks5
        );
        assert_eq!("http://h:3128".parse::<Proxy>().unwrap().port(), 3128);
    }

    #[test]
    fn an_ipv6_proxy_is_written_in_brackets() {
        let p = Proxy::parse("http://[::1]:3128").unwrap();
        assert_eq!(p.host(), "::1");
        assert_eq!(p.to_string(), "http://[::1]:3128");
        assert_eq!(Proxy::parse("http://[::1]").unwrap().port(), 1080);
        // RFC 6874: a zone after the address.
        assert_eq!(Proxy::parse("http://[fe80::1%25eth0]:8").unwrap().port(), 8);
    }

    #[test]
    fn user_information_is_percent_decoded() {
        let p = Proxy::parse("http://al%69ce:p%40ss%3Aw@h:8080").unwrap();
        let c = p.credentials.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "p@ss:w"));
        // The last @ ends the user information (an unescaped @ in the
        // password, as people type them).
        let p = Proxy::parse("http://u:a@b@h").unwrap();
        assert_eq!(p.credentials.unwrap().password, "a@b");
        // A user with no password has an empty one.
        let p = Proxy::parse("http://u@h").unwrap();
        assert_eq!(p.credentials.unwrap().password, "");
    }

    #[test]
    fn neither_display_nor_debug_shows_the_password() {
        let p = Proxy::parse("socks5://bob:hunter2@h:1080").unwrap();
        assert_eq!(p.to_string(), "socks5://h:1080");
        let debug = format!("{p:?}");
        assert!(
            debug.contains("bob") && !debug.contains("hunter2"),
            "{debug}"
        );
        let (proxy, _) = failure("ftp://bob:hunter2@h:1080");
        assert_eq!(proxy, "ftp://h:1080");
        // A password with an unescaped `/`, `?` or `#` makes the URL
        // invalid (it seems to end the authority): the error still
        // quotes it without the password.
        for url in [
            "http://bob:hunter/2@h:3128",
            "http://bob:hunter?2@h:3128",
            "http://bob:hunter#2@h:3128",
            "bob:hunter/2@h:3128",
        ] {
            let error = Proxy::parse(url).unwrap_err().to_string();
            assert!(!error.contains("hunter"), "{url}: {error}");
            assert!(error.contains("h:3128"), "{url}: {error}");
        }
        // Nor a connector that holds it.
        let debug = format!("{:?}", crate::transport::Connector::new().with_proxy(p));
        assert!(
            debug.contains("bob") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[test]
    fn urls_we_cannot_use_are_refused_with_a_reason() {
        for (url, why) in [
            ("https://h:443", "https:// proxies"),
            ("socks4://h", "SOCKS4"),
            ("ftp://h", "the scheme must be"),
            ("http://h:3128/path", "no path"),
            ("http://:3128", "empty host"),
            ("http://h:0", "invalid port"),
            ("http://h:99999", "invalid port"),
            ("http://h x", "invalid character"),
            ("http://[::1", "unclosed ["),
            ("http://u:%zz@h", "percent-escape"),
            ("socks5://u:%+F@h", "percent-escape"),
            ("http://a:b:3128", "must be in brackets"),
            ("http://[foo]:3128", "must hold an IPv6 address"),
            ("http://[1.2.3.4]:3128", "must hold an IPv6 address"),
            ("http://u:%ff@h", "not UTF-8"),
            ("http://a%3Ab:c@h", "cannot contain ':'"),
            ("http://a:b%0a@h", "control characters"),
            ("socks5://@h", "1 to 255 bytes"),
            ("socks5://u@h", "1 to 255 bytes"),
        ] {
            let (_, reason) = failure(url);
            assert!(reason.contains(why), "{url}: {reason}");
        }
        let long = format!("socks5://u:{}@h", "p".repeat(256));
        assert!(failure(&long).1.contains("1 to 255"));
    }

    #[test]
    fn socks_reply_codes_read_as_rfc_1928_names_them() {
        assert_eq!(socks_reply_meaning(2), "connection not allowed by ruleset");
        assert_eq!(socks_reply_meaning(5), "connection refused");
        assert_eq!(socks_reply_meaning(0x42), "unassigned");
    }
}
