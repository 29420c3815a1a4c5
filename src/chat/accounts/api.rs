//! The accounts' HTTP endpoints (issue 17), on the chat's own front door
//! (`http.rs` routes `POST /api/*` here and writes what this answers).
//!
//! | endpoint | body | success |
//! |---|---|---|
//! | `POST /api/register` | `{"nick","password"}` | 201 [`Issued`] |
//! | `POST /api/login` | `{"nick","password"}` | 200 [`Issued`] |
//! | `POST /api/refresh` | `{"refresh"}` | 200 [`Issued`] (the old refresh token is spent) |
//! | `POST /api/logout` | none; `Authorization: Bearer TOKEN` | 204 |
//! | `POST /api/password` | `{"old","new"}`; `Authorization: Bearer TOKEN` | 204 |
//!
//! Errors are `{"error": CODE, "message": TEXT}` ([`ApiError`]). The
//! endpoints are served only over the server's own TLS or to a loopback
//! peer (a reverse proxy on the same host): anywhere else a password
//! would cross the network in clear, so the request is refused (403
//! `insecure`) before its body is read.
//!
//! The body must say its length (`Content-Length`; no chunked bodies)
//! and be at most [`MAX_BODY`] bytes: a longer one gets 413 before a byte
//! of it is read or a buffer is made for it (RFC 9110 §15.5.14).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Accounts, ApiError, Issued};
use crate::proto::Request;

/// The largest request body: a nick, two passwords of at most 256 bytes
/// and JSON's punctuation fit in well under 1 KiB, so 4 KiB leaves room
/// for escaping and nothing for abuse.
pub const MAX_BODY: usize = 4096;

/// How long the body may take to arrive once the head has.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What an endpoint answers: its status and JSON body (empty for 204),
/// and for 429 the seconds of `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// The JSON body; empty for 204.
    pub body: String,
    /// `Retry-After`, seconds.
    pub retry_after: Option<u64>,
}

impl ApiResponse {
    fn ok(status: u16, issued: &Issued) -> Self {
        Self {
            status,
            body: serde_json::to_string(issued).unwrap_or_default(),
            retry_after: None,
        }
    }

    /// An error answer without an [`ApiError`] (the front door's own).
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            body: serde_json::json!({"error": code, "message": message}).to_string(),
            retry_after: None,
        }
    }

    fn no_content() -> Self {
        Self {
            status: 204,
            body: String::new(),
            retry_after: None,
        }
    }
}

impl From<ApiError> for ApiResponse {
    fn from(e: ApiError) -> Self {
        Self {
            status: e.status,
            body: serde_json::json!({"error": e.code, "message": e.message}).to_string(),
            retry_after: e.retry_after,
        }
    }
}

/// The reason phrase of each status the endpoints answer.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        _ => "Service Unavailable",
    }
}

/// The address the login limits count a request under: the peer's; or,
/// with `trust_proxy` (`--trust-proxy`) and a loopback peer (a reverse
/// proxy on this host), the last address of `X-Forwarded-For`, the one
/// that proxy appended (earlier ones are the client's to write, so are
/// never believed). Repeated header lines are one list, in order (RFC
/// 9110 §5.3): a proxy that adds a line of its own is read right. An
/// entry may carry a port (`ip:port`, `[v6]:port`); one that is no
/// address counts as the peer. Without `trust_proxy` the header is
/// ignored: a client could write any address in it.
pub fn client_ip(request: &Request, peer: SocketAddr, trust_proxy: bool) -> IpAddr {
    let ip = peer.ip();
    if !trust_proxy || !ip.to_canonical().is_loopback() {
        return ip;
    }
    request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        .filter_map(|h| std::str::from_utf8(&h.value).ok())
        .flat_map(|v| v.split(','))
        .last()
        .and_then(forwarded_ip)
        .unwrap_or(ip)
}

/// One `X-Forwarded-For` entry's address: `ip`, `[v6]`, `ip:port` or
/// `[v6]:port`.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse().ok()
        })
}

/// Whether a request may carry a password here: over our own TLS, or
/// from a loopback peer.
pub fn secure(tls: bool, peer: SocketAddr) -> bool {
    tls || peer.ip().is_loopback() || peer.ip().to_canonical().is_loopback()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    nick: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Refresh {
    refresh: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    old: String,
    new: String,
}

/// Serves `POST path` (one of the table's), its head read, the rest of
/// its body to come from `leftover` and then `stream`.
pub async fn serve<S: AsyncRead + Unpin>(
    accounts: &Accounts,
    path: &str,
    request: &Request,
    leftover: &[u8],
    stream: &mut S,
    peer: SocketAddr,
) -> ApiResponse {
    let answered: Result<ApiResponse, ApiError> = async {
        let ip = client_ip(request, peer, accounts.trusts_proxy());
        match path {
            "/api/logout" => {
                let token = bearer(request)?;
                accounts.logout(ip, token).await?;
                Ok(ApiResponse::no_content())
            }
            "/api/register" | "/api/login" => {
                let body = read_body(request, leftover, stream).await?;
                let c: Credentials = parse(&body)?;
                if path == "/api/register" {
                    Ok(ApiResponse::ok(
                        201,
                        &accounts.register(ip, &c.nick, &c.password).await?,
                    ))
                } else {
                    Ok(ApiResponse::ok(
                        200,
                        &accounts.login(ip, &c.nick, &c.password).await?,
                    ))
                }
            }
            "/api/refresh" => {
                let body = read_body(request, leftover, stream).await?;
                let r: Refresh = parse(&body)?;
                Ok(ApiResponse::ok(
                    200,
                    &accounts.refresh(ip, &r.refresh).await?,
                ))
            }
            "/api/password" => {
                let token = bearer(request)?;
                let body = read_body(request, leftover, stream).await?;
                let c: Change = parse(&body)?;
                accounts.change_password(ip, token, &c.old, &c.new).await?;
                Ok(ApiResponse::no_content())
            }
            _ => Err(ApiError::new(404, "not_found", "no such endpoint")),
        }
    }
    .await;
    answered.unwrap_or_else(ApiResponse::from)
}

/// The token of `Authorization: Bearer TOKEN` (RFC 6750 §2.1).
fn bearer(request: &Request) -> Result<&str, ApiError> {
    request
        .header("authorization")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_token("Authorization: Bearer TOKEN is required"))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_data() {
            "invalid_field"
        } else {
            "bad_json"
        };
        ApiError::new(400, code, format!("{e}"))
    })
}

/// The request's body: JSON, of the length it declares, at most
/// [`MAX_BODY`] bytes, checked before anything is read.
async fn read_body<S: AsyncRead + Unpin>(
    request: &Request,
    leftover: &[u8],
    stream: &mut S,
) -> Result<Vec<u8>, ApiError> {
    let json = request
        .header("content-type")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::new(
            415,
            "bad_json",
            "Content-Type: application/json is required",
        ));
    }
    if request.header("transfer-encoding").is_some() {
        return Err(ApiError::new(
            411,
            "bad_json",
            "send Content-Length, not chunks",
        ));
    }
    let len: usize = request
        .header("content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::new(411, "bad_json", "Content-Length is required"))?;
    if len > MAX_BODY {
        return Err(ApiError::new(
            413,
            "bad_json",
            format!("a request body may be at most {MAX_BODY} bytes"),
        ));
    }
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(&leftover[..leftover.len().min(len)]);
    let rest = len - body.len();
    let read = tokio::time::timeout(
        BODY_TIMEOUT,
        (&mut *stream).take(rest as u64).read_to_end(&mut body),
    )
    .await;
    match read {
        Ok(Ok(_)) if body.len() == len => Ok(body),
        _ => Err(ApiError::new(
            400,
            "bad_json",
            "the body ended before its length",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only TLS or a loopback peer may carry a password (the integration
    /// tests reach the server from loopback only).
    #[test]
    fn passwords_travel_over_tls_or_loopback_only() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(secure(false, addr("127.0.0.1:9")));
        assert!(secure(false, addr("127.0.0.5:9")));
        assert!(secure(false, addr("[::1]:9")));
        assert!(secure(false, addr("[::ffff:127.0.0.1]:9")));
        assert!(!secure(false, addr("192.0.2.7:9")));
        assert!(!secure(false, addr("[2001:db8::1]:9")));
        assert!(secure(true, addr("192.0.2.7:9")));
    }

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            target: "/api/login".into(),
            version_minor: 1,
            headers: headers
                .iter()
                .map(|(name, value)| crate::proto::Header {
                    name: (*name).to_owned(),
                    value: value.as_bytes().to_vec(),
                })
                .collect(),
        }
    }

    /// Behind a trusted proxy on this host, the limits count the address
    /// the proxy appended (every line joined, a port allowed); from anyone
    /// else, or without `--trust-proxy`, the header is ignored.
    #[test]
    fn the_limits_count_the_address_a_trusted_local_proxy_forwards() {
        let proxy: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let forwarded = request(&[("X-Forwarded-For", "10.0.0.1, 198.51.100.4")]);
        let last: IpAddr = "198.51.100.4".parse().unwrap();
        assert_eq!(client_ip(&forwarded, proxy, true), last);
        assert_eq!(client_ip(&forwarded, proxy, false), proxy.ip(), "untrusted");
        assert_eq!(
            client_ip(&forwarded, remote, true),
            remote.ip(),
            "not from a proxy here"
        );
        assert_eq!(client_ip(&request(&[]), proxy, true), proxy.ip());
        let garbage = request(&[("X-Forwarded-For", "not an address")]);
        assert_eq!(client_ip(&garbage, proxy, true), proxy.ip());
        let lines = request(&[
            ("X-Forwarded-For", "10.0.0.1"),
            ("x-forwarded-for", "198.51.100.4:8080"),
        ]);
        assert_eq!(client_ip(&lines, proxy, true), last);
        let v6 = request(&[("X-Forwarded-For", "[2001:db8::1]:443")]);
        assert_eq!(
            client_ip(&v6, proxy, true),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        let bare = request(&[("X-Forwarded-For", "[2001:db8::2]")]);
        assert_eq!(
            client_ip(&bare, proxy, true),
            "2001:db8::2".parse::<IpAddr>().unwrap()
        );
    }
}
