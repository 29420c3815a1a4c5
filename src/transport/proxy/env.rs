//! The proxy a URL should use, from environment variables, as curl
//! reads them (its `lib/url.c` and `lib/noproxy.c`, and the
//! "ENVIRONMENT" section of its manual); no RFC covers these.
//!
//! For a `ws://` URL the first variable set of `ws_proxy`, `WS_PROXY`,
//! `http_proxy`, `all_proxy`, `ALL_PROXY`; for `wss://`, of `wss_proxy`,
//! `WSS_PROXY`, `https_proxy`, `HTTPS_PROXY`, `all_proxy`, `ALL_PROXY`.
//! Lower case comes first. `HTTP_PROXY` in upper case is never read, as
//! curl never reads it: a CGI program gets every request header as an
//! `HTTP_*` variable, so a client sending `Proxy: evil:1` would set it
//! ("httpoxy", CVE-2016-5385). A variable that is set but empty (or only
//! blanks) counts as unset and the search goes on to the next name, as in
//! curl, whose `curl_getenv` (`lib/getenv.c`) gives no value for an empty
//! one: `https_proxy=` beside `ALL_PROXY=…` uses `ALL_PROXY`.
//!
//! `no_proxy` (or, if unset or empty, `NO_PROXY`) lists hosts that go direct,
//! separated by commas or blanks:
//!
//! - `*` alone: every host;
//! - a name: that host and every name under it (`example.com` matches
//!   `example.com` and `www.example.com`, not `notexample.com`); a leading
//!   dot (`.example.com`) changes nothing, and trailing dots are ignored
//!   on both sides; compared without regard to case;
//! - an IP address, IPv6 without brackets, or a CIDR block
//!   (`10.0.0.0/8`, `fd00::/8`): matched against a host written as an
//!   address (names are not resolved to be compared);
//! - with a port (`host:8080`, `[::1]:8080`): the same, only for URLs to
//!   that port. curl ignores such entries; Go's `httpproxy` and wget honour
//!   them, and an entry that says a port should not match every other.

use std::net::IpAddr;

use super::{Error, Proxy};
use crate::proto::WsUrl;

/// Which variable names each scheme looks at, in order.
const WS: &[&str] = &[
    "ws_proxy",
    "WS_PROXY",
    "http_proxy",
    "all_proxy",
    "ALL_PROXY",
];
const WSS: &[&str] = &[
    "wss_proxy",
    "WSS_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
];
const NO_PROXY: &[&str] = &["no_proxy", "NO_PROXY"];

/// The proxy variables of an environment, read once: the pure part of
/// [`Connector::with_env_proxy`](crate::transport::Connector::with_env_proxy).
///
/// [`ProxyEnv::from_process`] reads this process's environment;
/// [`ProxyEnv::from_lookup`] takes the values from a function instead,
/// so that a test (or a configuration file) decides without touching the
/// process environment. [`ProxyEnv::proxy_for`] then says which proxy, if
/// any, a URL should go through. See the module documentation of
/// [`transport`](crate::transport) ("Behind a proxy") for the rules.
///
/// ```
/// use std::collections::HashMap;
/// use rfc6455::proto::WsUrl;
/// use rfc6455::transport::ProxyEnv;
///
/// let vars = HashMap::from([
///     ("https_proxy", "http://proxy.corp:3128"),
///     ("no_proxy", "localhost,.internal"),
/// ]);
/// let env = ProxyEnv::from_lookup(|name| vars.get(name).map(|v| v.to_string()));
/// let via = env.proxy_for(&WsUrl::parse("wss://example.com/")?)?;
/// assert_eq!(via.unwrap().to_string(), "http://proxy.corp:3128");
/// assert!(env.proxy_for(&WsUrl::parse("wss://db.internal/")?)?.is_none());
/// assert!(env.proxy_for(&WsUrl::parse("ws://example.com/")?)?.is_none()); // no http_proxy
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// The variable chosen for `ws://` and its value.
    ws: Option<(&'static str, String)>,
    /// The same for `wss://`.
    wss: Option<(&'static str, String)>,
    /// The value of `no_proxy` or `NO_PROXY`.
    no_proxy: Option<String>,
}

impl ProxyEnv {
    /// The variables of this process's environment (unset or not UTF-8
    /// counts as unset).
    pub fn from_process() -> ProxyEnv {
        ProxyEnv::from_lookup(|name| std::env::var(name).ok())
    }

    /// The variables as `lookup` gives them: `lookup("https_proxy")` is
    /// that variable's value, or `None` if it is unset. An empty value
    /// (or one of blanks only) counts as unset, as in curl.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ProxyEnv {
        // curl's `curl_getenv` returns nothing for an empty variable, so
        // an exported-but-empty `no_proxy` (as some CI images have) does
        // not hide `NO_PROXY`, nor an empty `https_proxy` `ALL_PROXY`.
        let first = |names: &[&'static str]| {
            names.iter().find_map(|&name| {
                lookup(name)
                    .filter(|value| !value.trim().is_empty())
                    .map(|value| (name, value))
            })
        };
        ProxyEnv {
            ws: first(WS),
            wss: first(WSS),
            no_proxy: first(NO_PROXY).map(|(_, value)| value),
        }
    }

    /// Every variable [`ProxyEnv::from_process`] may read, for a test
    /// that must clear them all from a child's environment (plus
    /// `HTTP_PROXY`, which is never read but a test may remove too).
    #[doc(hidden)]
    pub fn variable_names() -> impl Iterator<Item = &'static str> {
        WS.iter().chain(WSS).chain(NO_PROXY).copied()
    }

    /// The same, with `list` in place of `no_proxy`/`NO_PROXY` (curl's
    /// `--noproxy LIST`, which overrides both; `""` bypasses nothing).
    pub fn with_no_proxy(mut self, list: impl Into<String>) -> ProxyEnv {
        self.no_proxy = Some(list.into());
        self
    }

    /// The proxy `url` should go through: `None` to connect directly (no
    /// variable for its scheme, or the host is in `NO_PROXY`). A variable whose value is not a proxy URL we can use
    /// gives the error [`Proxy::parse`] gives, naming the variable
    /// instead of quoting the value.
    pub fn proxy_for(&self, url: &WsUrl) -> Result<Option<Proxy>, Error> {
        let chosen = if url.secure { &self.wss } else { &self.ws };
        let Some((name, value)) = chosen else {
            return Ok(None);
        };
        if let Some(list) = &self.no_proxy
            && no_proxy_matches(list, &url.host, url.port)
        {
            return Ok(None);
        }
        Proxy::parse(value).map(Some).map_err(|e| match e {
            Error::Proxy(mut e) => {
                e.proxy = format!("${name}");
                Error::Proxy(e)
            }
            other => other,
        })
    }
}

impl std::fmt::Debug for ProxyEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: the values may hold passwords.
        f.debug_struct("ProxyEnv")
            .field("ws", &self.ws.as_ref().map(|(name, _)| name))
            .field("wss", &self.wss.as_ref().map(|(name, _)| name))
            .field("no_proxy", &self.no_proxy.is_some())
            .finish()
    }
}

/// Whether `host` (a URL's host, IPv6 without brackets) on `port` is in
/// the `NO_PROXY` list `list` (see the module documentation).
fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let address = host.parse::<IpAddr>().ok();
    list.split([',', ' ', '\t'])
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            let Some((pattern, wanted_port)) = split_port(entry) else {
                return false;
            };
            if wanted_port.is_some_and(|p| p != port) {
                return false;
            }
            match address {
                Some(address) => address_matches(pattern, address),
                None => name_matches(pattern, &host),
            }
        })
}

/// An entry's pattern and its port, if it names one: `[v6]:port`,
/// `[v6]`, `name:port`; a bare IPv6 address (more than one colon) has
/// none. `None` for an entry whose port is not a port (`[::1]:bad`,
/// `host:bad`), or with junk after `]`: it matches nothing, in either
/// form, rather than every port.
fn split_port(entry: &str) -> Option<(&str, Option<u16>)> {
    if let Some(v6) = entry.strip_prefix('[') {
        let (address, after) = v6.split_once(']')?;
        return match after {
            "" => Some((address, None)),
            after => Some((address, Some(after.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match entry.split_once(':') {
        Some((name, port)) if !port.contains(':') => Some((name, Some(port.parse().ok()?))),
        _ => Some((entry, None)),
    }
}

/// curl's rule: equal, or `host` ends with `.pattern`; dots at the ends
/// of the pattern ignored.
fn name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    let pattern = pattern.strip_prefix('.').unwrap_or(pattern);
    if pattern.is_empty() {
        return false;
    }
    let pattern = pattern.to_ascii_lowercase();
    host == pattern
        || host
            .strip_suffix(pattern.as_str())
            .is_some_and(|rest| rest.ends_with('.'))
}

/// An address, or a CIDR block `address/bits`, against an address of the
/// same family.
fn address_matches(pattern: &str, address: IpAddr) -> bool {
    let (network, bits) = match pattern.split_once('/') {
        Some((network, bits)) => match bits.parse::<u32>() {
            Ok(bits) => (network, Some(bits)),
            Err(_) => return false,
        },
        None => (pattern, None),
    };
    let Ok(network) = network.parse::<IpAddr>() else {
        return false;
    };
    match (network, address) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            prefix_equal(u128::from(u32::from(n)), u128::from(u32::from(a)), 32, bits)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => prefix_equal(u128::from(n), u128::from(a), 128, bits),
        _ => false,
    }
}

/// Whether the top `bits` of two `width`-bit numbers agree (all of them
/// if `bits` is `None`); a prefix longer than the address matches nothing.
fn prefix_equal(n: u128, a: u128, width: u32, bits: Option<u32>) -> bool {
    let bits = bits.unwrap_or(width);
    if bits > width {
        return false;
    }
    let shift = width - bits;
    // checked_shr: a /0 shifts everything out.
    n.checked_shr(shift).unwrap_or(0) == a.checked_shr(shift).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> ProxyEnv {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxyEnv::from_lookup(|name| vars.get(name).cloned())
    }

    fn via(env: &ProxyEnv, url: &str) -> Option<String> {
        env.proxy_for(&WsUrl::parse(url).unwrap())
            .unwrap()
            .map(|p| p.to_string())
    }

    #[test]
    fn each_scheme_reads_its_own_variables_lower_case_first() {
        let e = env(&[
            ("http_proxy", "http://plain:1"),
            ("https_proxy", "http://lower:2"),
            ("HTTPS_PROXY", "http://upper:3"),
        ]);
        assert_eq!(via(&e, "ws://h/").as_deref(), Some("http://plain:1"));
        assert_eq!(via(&e, "wss://h/").as_deref(), Some("http://lower:2"));
        let e = env(&[("HTTPS_PROXY", "http://upper:3")]);
        assert_eq!(via(&e, "wss://h/").as_deref(), Some("http://upper:3"));
        assert_eq!(via(&e, "ws://h/"), None, "https_proxy is not for ws://");
    }

    #[test]
    fn upper_case_http_proxy_is_never_read() {
        let e = env(&[("HTTP_PROXY", "http://evil:1")]);
        assert_eq!(via(&e, "ws://h/"), None);
        let e = env(&[
            ("HTTP_PROXY", "http://evil:1"),
            ("ALL_PROXY", "socks5h://all:9"),
        ]);
        assert_eq!(via(&e, "ws://h/").as_deref(), Some("socks5h://all:9"));
    }

    #[test]
    fn ws_proxy_comes_before_http_proxy_and_all_proxy_comes_last() {
        let e = env(&[
            ("ws_proxy", "http://ws:1"),
            ("http_proxy", "http://http:2"),
            ("all_proxy", "http://all:3"),
            ("ALL_PROXY", "http://ALL:4"),
        ]);
        assert_eq!(via(&e, "ws://h/").as_deref(), Some("http://ws:1"));
        assert_eq!(via(&e, "wss://h/").as_deref(), Some("http://all:3"));
        let e = env(&[("WSS_PROXY", "http://wss:5"), ("https_proxy", "http://s:6")]);
        assert_eq!(via(&e, "wss://h/").as_deref(), Some("http://wss:5"));
    }

    #[test]
    fn an_empty_variable_counts_as_unset_and_the_search_goes_on_as_in_curl() {
        let e = env(&[("https_proxy", ""), ("ALL_PROXY", "http://all:1")]);
        assert_eq!(via(&e, "wss://h/").as_deref(), Some("http://all:1"));
        let e = env(&[("wss_proxy", " "), ("HTTPS_PROXY", "http://up:2")]);
        assert_eq!(via(&e, "wss://h/").as_deref(), Some("http://up:2"));
        // Only empty ones everywhere: direct.
        let e = env(&[("http_proxy", ""), ("all_proxy", "")]);
        assert_eq!(via(&e, "ws://h/"), None);
        // An exported-but-empty no_proxy does not hide NO_PROXY.
        let e = env(&[
            ("https_proxy", "http://p:1"),
            ("no_proxy", ""),
            ("NO_PROXY", ".corp,10.0.0.0/8"),
        ]);
        assert_eq!(via(&e, "wss://db.corp/"), None);
        assert_eq!(via(&e, "wss://10.1.2.3/"), None);
        assert_eq!(via(&e, "wss://example.com/").as_deref(), Some("http://p:1"));
    }

    #[test]
    fn no_proxy_bypasses_the_proxy_for_listed_hosts_only() {
        let e = env(&[
            ("https_proxy", "http://p:1"),
            ("no_proxy", "localhost, .internal,10.0.0.0/8"),
        ]);
        assert_eq!(via(&e, "wss://localhost:9/"), None);
        assert_eq!(via(&e, "wss://db.internal/"), None);
        assert_eq!(via(&e, "wss://10.1.2.3/"), None);
        assert_eq!(via(&e, "wss://example.com/").as_deref(), Some("http://p:1"));
        // Lower case first: NO_PROXY is read only without no_proxy.
        let e = env(&[
            ("https_proxy", "http://p:1"),
            ("no_proxy", "a.example"),
            ("NO_PROXY", "b.example"),
        ]);
        assert_eq!(via(&e, "wss://a.example/"), None);
        assert!(via(&e, "wss://b.example/").is_some());
    }

    #[test]
    fn a_bad_proxy_variable_is_an_error_that_names_the_variable() {
        let e = env(&[("https_proxy", "https://u:secret@p")]);
        match e.proxy_for(&WsUrl::parse("wss://h/").unwrap()) {
            Err(Error::Proxy(err)) => {
                assert_eq!(err.proxy, "$https_proxy");
                assert!(!err.to_string().contains("secret"), "{err}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_match_themselves_and_their_subdomains_only() {
        assert!(no_proxy_matches("example.com", "example.com", 80));
        assert!(no_proxy_matches("example.com", "www.example.com", 80));
        assert!(no_proxy_matches(".example.com", "example.com", 80));
        assert!(no_proxy_matches(".example.com", "a.b.example.com", 80));
        assert!(no_proxy_matches("EXAMPLE.com.", "www.Example.COM.", 80));
        assert!(!no_proxy_matches("example.com", "notexample.com", 80));
        assert!(!no_proxy_matches("www.example.com", "example.com", 80));
        assert!(!no_proxy_matches(".", "example.com", 80));
        assert!(!no_proxy_matches("", "example.com", 80));
    }

    #[test]
    fn the_star_matches_everything_only_when_alone() {
        assert!(no_proxy_matches("*", "anything", 1));
        assert!(no_proxy_matches(" * ", "10.0.0.1", 1));
        assert!(!no_proxy_matches("*,example.com", "other.org", 1));
    }

    #[test]
    fn addresses_and_cidr_blocks_match_addresses_of_their_family() {
        assert!(no_proxy_matches("127.0.0.1", "127.0.0.1", 80));
        assert!(!no_proxy_matches("127.0.0.1", "127.0.0.2", 80));
        assert!(no_proxy_matches("192.168.0.0/16", "192.168.44.1", 80));
        assert!(!no_proxy_matches("192.168.0.0/16", "192.169.0.1", 80));
        assert!(no_proxy_matches("0.0.0.0/0", "8.8.8.8", 80));
        assert!(!no_proxy_matches("10.0.0.0/33", "10.0.0.1", 80));
        assert!(no_proxy_matches("::1", "::1", 80));
        assert!(no_proxy_matches("fd00::/8", "fd12::5", 80));
        assert!(!no_proxy_matches("fd00::/8", "fe80::1", 80));
        assert!(!no_proxy_matches("127.0.0.1", "::1", 80), "families differ");
        // No lookup: a name does not match an address entry.
        assert!(!no_proxy_matches("127.0.0.1", "localhost", 80));
    }

    #[test]
    fn an_entry_with_a_port_matches_that_port_only() {
        assert!(no_proxy_matches("localhost:8080", "localhost", 8080));
        assert!(!no_proxy_matches("localhost:8080", "localhost", 9090));
        assert!(no_proxy_matches("[::1]:9001", "::1", 9001));
        assert!(!no_proxy_matches("[::1]:9001", "::1", 9002));
        assert!(no_proxy_matches("10.0.0.1:443", "10.0.0.1", 443));
        assert!(no_proxy_matches("a.example,b.example:1", "x.b.example", 1));
        // A port that is not one matches nothing, bracketed or not.
        assert!(!no_proxy_matches("[::1]:bad", "::1", 9001));
        assert!(!no_proxy_matches("localhost:bad", "localhost", 80));
        assert!(!no_proxy_matches("[::1]junk", "::1", 80));
        assert!(no_proxy_matches("[::1]", "::1", 80));
    }

    #[test]
    fn variable_names_lists_every_variable_from_lookup_asks_for() {
        let asked = std::sync::Mutex::new(Vec::new());
        ProxyEnv::from_lookup(|name| {
            asked.lock().unwrap().push(name.to_owned());
            None
        });
        let mut asked = asked.into_inner().unwrap();
        let mut listed: Vec<String> = ProxyEnv::variable_names().map(str::to_owned).collect();
        asked.sort();
        asked.dedup();
        listed.sort();
        listed.dedup();
        assert_eq!(asked, listed);
        assert_eq!(listed.len(), 11);
    }

    #[test]
    fn debug_shows_which_variables_were_read_never_their_values() {
        let e = env(&[("https_proxy", "http://u:secret@p:1")]);
        let debug = format!("{e:?}");
        assert!(
            debug.contains("https_proxy") && !debug.contains("secret"),
            "{debug}"
        );
    }
}
