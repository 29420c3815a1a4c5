//! The front door: one port, plain HTTP/1.1 for the pages and the probes,
//! and the WebSocket upgrade at `/ws`.
//!
//! With [`ChatConfig::tls`] set, every connection starts with a TLS
//! handshake (https and `wss://`, RFC 6455 §11.1.2), run here in the
//! connection's own task: a slow TLS client holds its task, never the
//! accept loop. The TLS handshake and the request head share one deadline.
//!
//! The request head is read by [`transport::read_request`] (the protocol
//! layer's incremental head reader, with the chat's size limits) under a
//! timeout, then routed by method and path ([`ROUTES`]), each route its own
//! function. Only `/ws` goes on to the WebSocket handshake, with
//! the head already read ([`transport::accept_request`]), once its
//! `Origin` is allowed (RFC 6455 §10.2, `origin.rs`). From there on
//! nothing depends on the stream being TCP or TLS.
//!
//! Every connection arrives with its [`Slot`] (`admission.rs`), taken in
//! the accept loop; one refused there gets [`refuse`] instead: a 503 or
//! 429 written at once, without waiting for a request.
//!
//! | status | when |
//! |--------|------|
//! | 403 | `/ws` with an `Origin` that is not allowed, or `Origin: null`; `/api/*` over plain http from a peer that is not loopback (`insecure`) |
//! | 404 | `/api/*` with `--accounts off` |
//! | 429 | too many connections (`max_per_ip`), or too many not yet upgraded (`max_handshakes_per_ip`), from the client's address |
//! | 503 | `max_connections` connections open, or shutting down |

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::proto;
use crate::transport;

use super::ChatConfig;
use super::accounts::{Accounts, Mode, api};
use super::admission::{Refusal, Slot};
use super::hub::Hub;
use super::origin::{OriginPolicy, OriginRefusal};
use super::session::{self, Auth};

/// What every connection handler shares.
pub struct Shared {
    /// The hub.
    pub hub: Arc<Hub>,
    /// How clients authenticate.
    pub auth: Arc<Auth>,
    /// The server's own accounts (`None`: `--accounts off`), for the
    /// `/api/*` endpoints.
    pub accounts: Option<Arc<Accounts>>,
    /// Which pages may open WebSockets (from the config).
    pub origins: OriginPolicy,
    /// Permits for refused connections to linger (see [`refuse`]).
    pub lingering: Arc<Semaphore>,
    /// When an Origin refusal was last logged at info (see
    /// [`ORIGIN_LOG_EVERY`]).
    pub origin_logged: std::sync::Mutex<Option<Instant>>,
    /// The server's settings.
    pub config: ChatConfig,
    /// Every connection's transport settings, derived once from `config`
    /// ([`ChatConfig::transport_config`]): the request head is read with
    /// its limits and the WebSocket runs with them.
    pub transport: transport::Config,
}

const INDEX_HTML: &str = include_str!("../../web/index.html");
const ACCOUNT_JS: &str = include_str!("../../web/account.js");
const APP_JS: &str = include_str!("../../web/app.js");
const COMPOSE_JS: &str = include_str!("../../web/compose.js");
const CONN_JS: &str = include_str!("../../web/conn.js");
const EVENTS_JS: &str = include_str!("../../web/events.js");
const MARKDOWN_JS: &str = include_str!("../../web/markdown.js");
const MODERATION_JS: &str = include_str!("../../web/moderation.js");
const WIRE_JS: &str = include_str!("../../web/wire.js");
const NOTICES_JS: &str = include_str!("../../web/notices.js");
const RENDER_JS: &str = include_str!("../../web/render.js");
const SIGNIN_JS: &str = include_str!("../../web/signin.js");
const SIDEBAR_JS: &str = include_str!("../../web/sidebar.js");
const UTIL_JS: &str = include_str!("../../web/util.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");

/// The page may load only its own scripts and styles and talk only to its
/// own origin: no CDN, no inline script. `connect-src 'self'` covers the
/// page's own WebSocket URL too (CSP Level 3, "Does url match expression
/// in origin": `'self'` matches the page's host and port over `ws:` from
/// an http page and `wss:` from either), so an injected script cannot
/// open a WebSocket to anywhere else.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// `no-referrer` rather than `same-origin`: the page's own URL may hold
/// the user's token (`/?token=…`), and the page never needs a `Referer`,
/// not even from itself, so none is ever sent.
const REFERRER_POLICY: &str = "no-referrer";

/// Seconds a refused client is asked to wait before trying again (RFC
/// 9110 §10.2.3): long enough not to come straight back into a full
/// server, short enough for a browser tab reconnecting.
const RETRY_AFTER_SECS: u32 = 5;

/// Refused connections allowed to linger at once (see [`refuse`]); more
/// are closed at once. 64 × [`LINGER`] bounds what refusals can hold: 64
/// descriptors for half a second, however fast they come.
pub const MAX_LINGERING: usize = 64;

/// How long a refused connection is read from (and what it sends thrown
/// away) after its response, so that closing it does not reset it
/// before the client has read the response. A client's request follows
/// its connect within a round trip; half a second covers several on a
/// slow mobile link.
const LINGER: Duration = Duration::from_millis(500);

/// Origin refusals are logged at info at most this often (each one at
/// debug): a server behind a proxy without `--public-url` refuses every
/// browser, and its operator should see why without a log per attempt.
pub const ORIGIN_LOG_EVERY: Duration = Duration::from_secs(60);

/// Most bytes read from a lingering connection: eight times the longest
/// request head we accept (8 KiB, `proto::Config::max_handshake_bytes`),
/// so a well-behaved client's request is always drained whole.
const LINGER_BYTES: usize = 64 * 1024;

/// How long a client has to send its request head (after the TLS
/// handshake, if any, within the same time).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the server serves TLS (its own origin is then `https`).
fn serves_tls(config: &ChatConfig) -> bool {
    #[cfg(feature = "tls")]
    return config.tls.is_some();
    #[cfg(not(feature = "tls"))]
    {
        let _ = config;
        false
    }
}

/// Serves one TCP connection: the TLS handshake if the server has TLS,
/// then one request, or one WebSocket session. `slot` is the connection's
/// place in the limits, given back when this returns.
pub async fn handle(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, mut slot: Slot) {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    #[cfg(feature = "tls")]
    if let Some(tls) = shared.config.tls.clone() {
        // Boxed, handshake and session: rustls's state makes these futures
        // several KiB larger than the plain ones, and the task of every
        // plain connection would otherwise be sized for them too (the box
        // made in a statement of its own, as in `serve`).
        let tls = Box::pin(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve(stream, peer, shared, deadline, &mut slot).await,
                Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        });
        return tls.await;
    }
    serve(stream, peer, shared, deadline, &mut slot).await
}

/// Answers a connection refused at the door, without reading its
/// request: it may never send one, and reading costs the time the limits
/// are there to save. Plain http gets 503 (server full) or 429 (its
/// address over a limit, RFC 6585 §4), with `Retry-After`. Over TLS
/// nothing is written: a plaintext response would reach the client as a
/// malformed TLS record, and a TLS handshake is the very cost being
/// refused, so the connection is just closed.
///
/// After the response, our side is shut down and what the client sends is
/// read and dropped for up to [`LINGER`]: closing a socket with unread
/// bytes resets it (RFC 2525 §2.17; Linux does so on `close`),
/// and a reset can destroy the response before the client reads it. At
/// most [`MAX_LINGERING`] linger at once, so refusals cannot pile up
/// descriptors; the rest are closed at once.
pub async fn refuse(mut stream: TcpStream, refusal: Refusal, shared: Arc<Shared>) {
    if serves_tls(&shared.config) {
        return;
    }
    let (status, reason, body) = match refusal {
        Refusal::Full => (503, "Service Unavailable", "server full, try again later\n"),
        Refusal::PerIp => (
            429,
            "Too Many Requests",
            "too many connections from your address\n",
        ),
        Refusal::Handshakes => (
            429,
            "Too Many Requests",
            "too many connections from your address still opening\n",
        ),
    };
    let mut response = head(
        status,
        reason,
        "text/plain",
        body.len(),
        &format!("Retry-After: {RETRY_AFTER_SECS}\r\n"),
    );
    response.push_str(body);
    // A few hundred bytes into an empty send buffer: done at once, unless
    // the client's receive window is zero, which must not hold us.
    let written = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(response.as_bytes()),
    )
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    let _ = stream.shutdown().await;
    let Ok(_permit) = shared.lingering.clone().try_acquire_owned() else {
        return;
    };
    linger(&mut stream).await;
}

/// Reads and drops what the client still sends, for up to [`LINGER`]
/// and [`LINGER_BYTES`], once our side is shut down: so that closing does
/// not reset the connection (RFC 2525 §2.17) before the client has read
/// our response.
async fn linger<S: AsyncRead + Unpin>(stream: &mut S) {
    let _ = tokio::time::timeout(LINGER, async {
        let mut buf = [0u8; 2048];
        let mut read = 0;
        while read < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

/// What a request is served by.
#[derive(Clone, Copy)]
enum Route {
    /// A whole response made from the server's state and the query.
    Page(fn(&Shared, &str) -> Response),
    /// The WebSocket endpoint: the opening handshake (RFC 6455 §4.2) and
    /// the session.
    WebSocket,
    /// An account endpoint (`accounts/api.rs`), JSON in and out.
    Api,
}

/// Every method and path served. HEAD is served as GET without the body
/// (RFC 9110 §9.3.2). A request no row matches gets 404, or 405 if no row
/// has its method.
const ROUTES: [(&str, &str, Route); 24] = [
    ("GET", "/", Route::Page(index)),
    ("GET", "/index.html", Route::Page(index)),
    ("GET", "/account.js", Route::Page(account_js)),
    ("GET", "/app.js", Route::Page(app_js)),
    ("GET", "/compose.js", Route::Page(compose_js)),
    ("GET", "/conn.js", Route::Page(conn_js)),
    ("GET", "/events.js", Route::Page(events_js)),
    ("GET", "/markdown.js", Route::Page(markdown_js)),
    ("GET", "/moderation.js", Route::Page(moderation_js)),
    ("GET", "/notices.js", Route::Page(notices_js)),
    ("GET", "/render.js", Route::Page(render_js)),
    ("GET", "/signin.js", Route::Page(signin_js)),
    ("GET", "/sidebar.js", Route::Page(sidebar_js)),
    ("GET", "/util.js", Route::Page(util_js)),
    ("GET", "/wire.js", Route::Page(wire_js)),
    ("GET", "/style.css", Route::Page(style_css)),
    ("GET", "/healthz", Route::Page(healthz)),
    ("GET", "/metrics", Route::Page(metrics)),
    ("GET", "/ws", Route::WebSocket),
    ("POST", "/api/register", Route::Api),
    ("POST", "/api/login", Route::Api),
    ("POST", "/api/refresh", Route::Api),
    ("POST", "/api/logout", Route::Api),
    ("POST", "/api/password", Route::Api),
];

/// A response, whole.
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: Cow<'static, [u8]>,
}

impl Response {
    fn ok(content_type: &'static str, body: impl Into<Cow<'static, [u8]>>) -> Self {
        Self {
            status: 200,
            reason: "OK",
            content_type,
            body: body.into(),
        }
    }

    fn text(status: u16, reason: &'static str, body: impl Into<Cow<'static, [u8]>>) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain",
            body: body.into(),
        }
    }
}

/// Serves one request, or one WebSocket session, on a TCP or TLS stream.
///
/// Everything before the session (the request head, its routing, a page,
/// the upgrade) runs in a boxed future of its own, freed when it is done:
/// otherwise its state would be part of this one, which the connection's
/// task holds for its whole life, and an idle WebSocket would carry a
/// future sized for the largest of those steps (9.8 KiB of it before, of
/// 16.6 KiB with the TLS variant; `tests/chat_idle_memory.rs`). The
/// session is boxed too, each box made in a statement of its own: an
/// async fn keeps room for a binding (`ws`) or a temporary until its scope
/// or statement ends, moved out or not, so the session awaited in place
/// would sit beside room for the `WebSocket` it was given.
async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    deadline: Instant,
    slot: &mut Slot,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let opening = Box::pin(open(stream, peer, &shared, deadline, slot));
    let Some((ws, token)) = opening.await else {
        return;
    };
    let (hub, auth, rate) = (
        shared.hub.clone(),
        shared.auth.clone(),
        shared.config.rate_limit,
    );
    drop(shared);
    let session = Box::pin(session::run(Box::new(ws), hub, auth, rate, token));
    session.await
}

/// Reads one request and answers it, or upgrades it: then the WebSocket
/// and the token its query carried, for the session.
async fn open<S>(
    mut stream: S,
    peer: SocketAddr,
    shared: &Shared,
    deadline: Instant,
    slot: &mut Slot,
) -> Option<(transport::WebSocket<S>, Option<String>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The head is read with the chat's own limits, the ones its
    // WebSocket handshake is then checked with.
    let config = shared.transport.clone();
    let head = tokio::time::timeout_at(
        deadline,
        transport::read_request(&mut stream, &config.protocol),
    )
    .await;
    let (request, leftover) = match head {
        Ok(Ok(read)) => read,
        Ok(Err(transport::Error::Handshake(e))) => {
            let _ = stream.write_all(&e.response()).await;
            return None;
        }
        // The peer left, or took too long: nobody to answer.
        Ok(Err(_)) | Err(_) => return None,
    };
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((request.target.as_str(), ""));
    debug!(%peer, method = %request.method, path, "request");
    let head_only = request.method == "HEAD";
    let method = if head_only { "GET" } else { &request.method };
    let route = ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, r)| *r);
    let response = match route {
        Some(Route::Page(page)) => page(shared, query),
        Some(Route::WebSocket) => {
            let upgrade = Upgrade {
                request: &request,
                leftover: &leftover,
                query,
                config,
            };
            return websocket(stream, peer, shared, upgrade, slot).await;
        }
        Some(Route::Api) => {
            let answer = account_request(&mut stream, peer, shared, &request, &leftover, path);
            let answer = Box::pin(answer).await;
            respond_api(&mut stream, &answer).await;
            return None;
        }
        None => not_routed(method, path),
    };
    respond(&mut stream, &response, head_only).await;
    None
}

/// The answer to a request no row of [`ROUTES`] matches: 405 (RFC 9110
/// §15.5.6) if its path is served with other methods, or if no row has
/// its method, naming what the path takes; else 404.
fn not_routed(method: &str, path: &str) -> Response {
    let on_path: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, p, _)| *p == path)
        .map(|(m, _, _)| *m)
        .collect();
    let known_method = ROUTES.iter().any(|(m, _, _)| *m == method);
    if on_path.is_empty() && known_method {
        return Response::text(404, "Not Found", b"not found\n".as_slice());
    }
    let body: &'static [u8] = match on_path.first() {
        Some(&"POST") => b"POST only\n",
        Some(_) => b"GET only\n",
        None => b"GET or POST only\n",
    };
    Response::text(405, "Method Not Allowed", body)
}

/// An account request (issue 17): refused with 404 when accounts are
/// off, 403 `insecure` unless over our TLS or from a loopback peer
/// (before its body is read), else answered by `accounts/api.rs`.
async fn account_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    shared: &Shared,
    request: &proto::Request,
    leftover: &[u8],
    path: &str,
) -> api::ApiResponse {
    let Some(accounts) = &shared.accounts else {
        return api::ApiResponse::error(404, "not_found", "accounts are off on this server");
    };
    if !api::secure(serves_tls(&shared.config), peer) {
        return api::ApiResponse::error(
            403,
            "insecure",
            "passwords are taken over HTTPS only (or from a proxy on this host)",
        );
    }
    api::serve(accounts, path, request, leftover, stream, peer).await
}

/// Writes an account endpoint's answer and closes our side, then
/// lingers: an answer given before the body was read (403, 413) must not
/// be lost to a reset.
async fn respond_api<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, answer: &api::ApiResponse) {
    let extra = answer
        .retry_after
        .map(|s| format!("Retry-After: {s}\r\n"))
        .unwrap_or_default();
    let mut response = head(
        answer.status,
        api::reason(answer.status),
        "application/json",
        answer.body.len(),
        &extra,
    );
    response.push_str(&answer.body);
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    linger(stream).await;
}

fn index(shared: &Shared, _: &str) -> Response {
    let mode = match (&shared.accounts, shared.config.jwt_secret.is_some()) {
        (None, false) => AUTH_NICK,
        (None, true) => AUTH_TOKEN,
        (Some(_), true) => AUTH_REQUIRED,
        (Some(a), false) if a.mode() == Mode::Required => AUTH_REQUIRED,
        (Some(_), false) => AUTH_OPEN,
    };
    // Borrowed as built in, unless the marker had to change.
    let body: Cow<'static, [u8]> = match index_html(mode) {
        Cow::Borrowed(html) => Cow::Borrowed(html.as_bytes()),
        Cow::Owned(html) => Cow::Owned(html.into_bytes()),
    };
    Response::ok("text/html; charset=utf-8", body)
}

/// What the page says about signing in (docs/PROTOCOL.md,
/// "Authentication"): `<meta name="chat-auth">` is `nick` as written
/// (accounts off), `token` when the server requires an external token,
/// `open` with guests and accounts, `required` with accounts only (or
/// accounts beside `--jwt-secret`), so that the page offers only what
/// the server takes.
const AUTH_NICK: &str = r#"<meta name="chat-auth" content="nick">"#;
const AUTH_TOKEN: &str = r#"<meta name="chat-auth" content="token">"#;
const AUTH_OPEN: &str = r#"<meta name="chat-auth" content="open">"#;
const AUTH_REQUIRED: &str = r#"<meta name="chat-auth" content="required">"#;

fn index_html(marker: &'static str) -> Cow<'static, str> {
    if marker == AUTH_NICK {
        Cow::Borrowed(INDEX_HTML)
    } else {
        Cow::Owned(INDEX_HTML.replacen(AUTH_NICK, marker, 1))
    }
}

/// A module of the page's script (web/*.js, loaded as ES modules).
fn script(body: &'static str) -> Response {
    Response::ok("text/javascript; charset=utf-8", body.as_bytes())
}

fn account_js(_: &Shared, _: &str) -> Response {
    script(ACCOUNT_JS)
}

fn app_js(_: &Shared, _: &str) -> Response {
    script(APP_JS)
}

fn compose_js(_: &Shared, _: &str) -> Response {
    script(COMPOSE_JS)
}

fn conn_js(_: &Shared, _: &str) -> Response {
    script(CONN_JS)
}

fn events_js(_: &Shared, _: &str) -> Response {
    script(EVENTS_JS)
}

fn markdown_js(_: &Shared, _: &str) -> Response {
    script(MARKDOWN_JS)
}

fn moderation_js(_: &Shared, _: &str) -> Response {
    script(MODERATION_JS)
}

fn notices_js(_: &Shared, _: &str) -> Response {
    script(NOTICES_JS)
}

fn render_js(_: &Shared, _: &str) -> Response {
    script(RENDER_JS)
}

fn signin_js(_: &Shared, _: &str) -> Response {
    script(SIGNIN_JS)
}

fn wire_js(_: &Shared, _: &str) -> Response {
    script(WIRE_JS)
}

fn sidebar_js(_: &Shared, _: &str) -> Response {
    script(SIDEBAR_JS)
}

fn util_js(_: &Shared, _: &str) -> Response {
    script(UTIL_JS)
}

fn style_css(_: &Shared, _: &str) -> Response {
    Response::ok("text/css; charset=utf-8", STYLE_CSS.as_bytes())
}

/// `/healthz`: 503 while shutting down, else 200. Scaled out and Redis
/// away: still serving our own clients, so still 200 (a balancer that
/// drained every server for it would take the whole chat down);
/// `?strict` answers 503 for balancers that prefer to route around a
/// degraded server.
fn healthz(shared: &Shared, query: &str) -> Response {
    let hub = &shared.hub;
    if hub.is_shutting_down() {
        return Response::text(503, "Service Unavailable", b"shutting down\n".as_slice());
    }
    let Err(down) = hub.backend().health() else {
        return Response::text(200, "OK", b"ok\n".as_slice());
    };
    let body = format!("degraded: redis unreachable for {}s\n", down.as_secs()).into_bytes();
    if query == "strict" {
        Response::text(503, "Service Unavailable", body)
    } else {
        Response::text(200, "OK", body)
    }
}

/// `/metrics`: the hub's counters, then the backend's (Redis's when
/// scaled out; none for the local one).
fn metrics(shared: &Shared, _: &str) -> Response {
    let hub = &shared.hub;
    let mut body = hub.metrics.render();
    body.push_str(&hub.backend().render_metrics());
    Response::ok("text/plain; version=0.0.4", body.into_bytes())
}

/// What the WebSocket handshake takes from the request already read.
struct Upgrade<'a> {
    request: &'a proto::Request,
    /// Bytes read past the head: the client's first frames, maybe.
    leftover: &'a [u8],
    query: &'a str,
    /// The chat's transport settings, whose limits read the head.
    config: transport::Config,
}

/// `/ws`: refused while shutting down or for its `Origin`, else upgraded
/// for the session ([`serve`] runs it). How many may connect was settled at the door
/// (`admission.rs`).
async fn websocket<S>(
    mut stream: S,
    peer: SocketAddr,
    shared: &Shared,
    upgrade: Upgrade<'_>,
    slot: &mut Slot,
) -> Option<(transport::WebSocket<S>, Option<String>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hub = &shared.hub;
    if hub.is_shutting_down() {
        let body = b"shutting down, try again later\n".as_slice();
        let refused = Response::text(503, "Service Unavailable", body);
        respond(&mut stream, &refused, false).await;
        return None;
    }
    let request = upgrade.request;
    // RFC 6455 §10.2: a server that serves browsers checks the `Origin` of
    // the page that opens the WebSocket, and "If the server does not wish
    // to accept this connection, it MUST return an appropriate HTTP error
    // code (e.g., 403 Forbidden) and abort the WebSocket handshake" (also
    // §4.2.2 item 4).
    let origins: Vec<&[u8]> = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("origin"))
        .map(|h| h.value.as_slice())
        .collect();
    let tls = serves_tls(&shared.config);
    if let Err(why) = shared.origins.check(&origins, request.header("host"), tls) {
        let refused = origin_refused(peer, shared, request, &origins, why);
        respond(&mut stream, &refused, false).await;
        return None;
    }
    match transport::accept_request(stream, request, upgrade.leftover, upgrade.config).await {
        Ok(ws) => {
            slot.upgraded();
            Some((ws, query_param(upgrade.query, "token")))
        }
        Err(e) => {
            debug!(%peer, error = %e, "upgrade refused");
            None
        }
    }
}

/// The 403 for a WebSocket refused for its `Origin`, counted and logged:
/// each at debug, and at info at most every [`ORIGIN_LOG_EVERY`].
fn origin_refused(
    peer: SocketAddr,
    shared: &Shared,
    request: &proto::Request,
    origins: &[&[u8]],
    why: OriginRefusal,
) -> Response {
    let metrics = &shared.hub.metrics;
    metrics.origin_refused.inc();
    let origin = origins.first().map(|o| String::from_utf8_lossy(o));
    debug!(%peer, ?origin, ?why, "WebSocket refused for its Origin");
    let now = Instant::now();
    let due = {
        let mut last = super::lock(&shared.origin_logged);
        let due = last.is_none_or(|t| now.duration_since(t) >= ORIGIN_LOG_EVERY);
        if due {
            *last = Some(now);
        }
        due
    };
    if due {
        let host = request.header("host").map(String::from_utf8_lossy);
        info!(
            ?origin,
            ?host,
            refused = metrics.origin_refused.get(),
            "WebSocket refused for its Origin (behind a proxy? set --public-url; other sites: --allow-origin)"
        );
    }
    let body: &'static [u8] = match why {
        OriginRefusal::Null => b"pages with an opaque origin (Origin: null) may not connect here\n",
        OriginRefusal::Several | OriginRefusal::Unparsable => {
            b"the Origin header must be one origin\n"
        }
        OriginRefusal::NotAllowed => b"pages from your origin may not connect here\n",
    };
    Response::text(403, "Forbidden", body)
}

/// Writes a whole response (its head alone for HEAD) and closes our side.
async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, response: &Response, head_only: bool) {
    let body = &response.body;
    let head = head(
        response.status,
        response.reason,
        response.content_type,
        body.len(),
        "",
    );
    let _ = stream.write_all(head.as_bytes()).await;
    if !head_only {
        let _ = stream.write_all(body).await;
    }
    let _ = stream.shutdown().await;
}

/// A response head with the headers every response carries, and `extra`
/// (whole lines, each ending in CRLF).
fn head(status: u16, reason: &str, content_type: &str, len: usize, extra: &str) -> String {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nContent-Security-Policy: {CSP}\r\nReferrer-Policy: {REFERRER_POLICY}\r\n{extra}Connection: close\r\n\r\n"
    )
}

/// A parameter of a query string (no percent-decoding: the only one we
/// read is a JWT, whose alphabet needs none).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::admission::{Admission, Limits};
    use crate::chat::backend::memory::Memory;
    use crate::chat::hub::HubConfig;
    use crate::chat::metrics::Metrics;
    use crate::proto::{Connection, Role};

    /// The page learns from `/` whether to ask for a token: the marker is
    /// in web/index.html exactly once, and `--jwt-secret` turns it to
    /// `token`.
    #[test]
    fn the_index_says_whether_a_token_is_needed() {
        assert_eq!(INDEX_HTML.matches(AUTH_NICK).count(), 1);
        assert_eq!(index_html(AUTH_NICK), INDEX_HTML);
        for marker in [AUTH_TOKEN, AUTH_OPEN, AUTH_REQUIRED] {
            let page = index_html(marker);
            assert!(page.contains(marker) && !page.contains(AUTH_NICK));
        }
    }

    /// Every module the page imports is served: an `import … from
    /// './x.js'` in web/ has its route.
    #[test]
    fn every_imported_module_has_a_route() {
        for body in [
            ACCOUNT_JS,
            APP_JS,
            COMPOSE_JS,
            CONN_JS,
            EVENTS_JS,
            MARKDOWN_JS,
            MODERATION_JS,
            NOTICES_JS,
            RENDER_JS,
            SIGNIN_JS,
            SIDEBAR_JS,
            UTIL_JS,
            WIRE_JS,
        ] {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let name = line
                    .rsplit_once("'./")
                    .and_then(|(_, rest)| rest.split_once('\''))
                    .map(|(n, _)| n);
                let name = name.unwrap_or_else(|| panic!("an import from ./: {line}"));
                let path = format!("/{name}");
                assert!(
                    ROUTES.iter().any(|(_, p, _)| *p == path),
                    "{path} is imported but not routed"
                );
            }
        }
    }

    /// What a connection's task holds for the connection's whole life
    /// stays small (issue 15: the task's future was 16.6 KiB, sized for
    /// the request head, the upgrade and TLS): the connection's future,
    /// the session's future (boxed by `serve`) and the `WebSocket` (boxed
    /// too). The bounds are the sizes measured on x86_64 (296, 560 and
    /// 736 bytes; the `WebSocket` 608 since issue 22 boxed the client-only
    /// mask RNG) with about 25% to spare; their sum, with tokio's own
    /// per-task and per-socket bookkeeping, is the heap per idle member
    /// that `tests/chat_idle_memory.rs` asserts.
    #[tokio::test]
    async fn an_idle_connection_holds_small_futures() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let metrics = Arc::new(Metrics::default());
        let hub_config = HubConfig {
            outbox_limit: 1 << 20,
            authenticated: false,
            mark_guests: false,
            deflate: None,
            max_rooms: 10,
        };
        let hub = Arc::new(Hub::new(
            Arc::new(Memory::default()),
            metrics.clone(),
            hub_config,
        ));
        let config = ChatConfig::new("unused.db");
        let transport = config.transport_config();
        let shared = Arc::new(Shared {
            hub: hub.clone(),
            auth: Arc::new(Auth::default()),
            accounts: None,
            origins: OriginPolicy {
                public: None,
                allowed: Vec::new(),
                any: false,
            },
            lingering: Arc::new(Semaphore::new(MAX_LINGERING)),
            origin_logged: std::sync::Mutex::new(None),
            transport: transport.clone(),
            config: config.clone(),
        });
        let limits = Limits {
            max_connections: 10,
            max_per_ip: 0,
            max_handshakes_per_ip: 0,
        };
        let slot = Admission::new(limits, metrics).admit(peer.ip()).unwrap();

        let connection = handle(stream, peer, shared.clone(), slot);
        let connection_size = std::mem::size_of_val(&connection);
        let ws = transport::WebSocket::from_parts(
            client,
            Connection::new(Role::Server, transport.protocol.clone()),
            &transport,
        );
        let ws_size = std::mem::size_of_val(&ws);
        let session = session::run(Box::new(ws), hub, shared.auth.clone(), None, None);
        let session_size = std::mem::size_of_val(&session);
        eprintln!(
            "connection future {connection_size}, session future {session_size}, WebSocket {ws_size} bytes"
        );
        assert!(
            connection_size <= 370,
            "connection future: {connection_size} bytes"
        );
        assert!(session_size <= 700, "session future: {session_size} bytes");
        assert!(ws_size <= 920, "WebSocket: {ws_size} bytes");
    }
}
