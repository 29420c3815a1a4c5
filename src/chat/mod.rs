//! The chat server: rooms, direct messages, presence, typing, history,
//! resume and authentication, on this crate's own WebSocket stack.
//!
//! One port serves everything: the web UI at `/` (embedded in the binary),
//! the WebSocket endpoint at `/ws`, `/healthz` and `/metrics`. The wire
//! protocol is `docs/PROTOCOL.md`, implemented in `protocol.rs`.
//!
//! A server on a free loopback port, with its history in a SQLite file,
//! asked for `/healthz` over plain HTTP on the port that also serves
//! `/ws`, then shut down (the crate root's example talks to it over a
//! WebSocket):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rfc6455::chat::{ChatConfig, serve};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let dir = std::env::temp_dir().join(format!("rfc6455-chat-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve(listener, ChatConfig::new(dir.join("chat.db")), async {
//!     let _ = stopped.await;
//! }));
//!
//! let mut http = tokio::net::TcpStream::connect(addr).await?;
//! http.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
//!     .await?;
//! let mut answer = Vec::new();
//! http.read_to_end(&mut answer).await?;
//! assert!(answer.starts_with(b"HTTP/1.1 200 "));
//!
//! let _ = stop.send(()); // clients get close 1001, the history is stored
//! server.await??;
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! ```text
//!  TCP ─ http.rs ─┬─ GET /, /app.js, /style.css, /healthz, /metrics
//!                 └─ GET /ws ─ session.rs (a task per connection)
//!                                 │  requests ─▶ hub.rs (rooms, presence, fan-out)
//!                                 │  ◀─ outbox (bounded, bytes)   │ backend::Backend ▼
//!                                                                 │ ▲ backend::HubEvents
//!                  backend/local.rs (SQLite, its own thread)  |  backend/redis/ (scale-out)
//! ```
//!
//! The hub keeps what is in memory: rooms, members, presence, fan-out.
//! Where conversations live (ids, history, what other servers do) is its
//! backend's, behind one seam (`backend/mod.rs`): the local backend, one
//! server with history in SQLite, or the Redis one, several servers as one.
//!
//! Locally, history is written by one thread in batches, off the hot path;
//! reads go through the same thread, after the writes queued before them,
//! which is what makes resume exact. With either backend a message reaches
//! its room and its sender's ack only once it is stored. On shutdown the
//! hub stops taking messages, the last acks go out, every client gets
//! close 1001, and the backend stores what it has before [`serve`]
//! returns.

mod accounts;
mod admission;
mod backend;
pub mod fdlimit;
mod http;
mod hub;
mod metrics;
mod origin;
mod outbox;
pub mod protocol;
mod redact;
mod session;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::proto::DeflateConfig;
use crate::transport::{self, Keepalive};
pub use accounts::limiter::LimitConfig;
pub use accounts::password::HashConfig;
pub use accounts::{AccountsConfig, Mode as AccountsMode};
pub use backend::DbSync;
pub use backend::moderation::AdminOp;
pub use backend::redis::ClusterConfig;
pub use metrics::Metrics;
pub use origin::{Origin, OriginError};
pub use redact::RedactedUrl;

/// Locks one of the chat's mutexes, through a poisoned one: every lock
/// here guards plain data updated in single steps, so a panic while one
/// was held leaves nothing half-changed for the next holder to trip on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the Unix epoch: the `ts` of messages, account
/// expiries, audit entries.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// 128 random bits, hex: a session secret, an operation id.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    crate::proto::MaskRng::from_entropy().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How the chat server runs.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// The SQLite file for history (created if missing). The server holds
    /// it locked while it runs: a second server on the same file is
    /// refused, and so are other processes' reads.
    pub db: PathBuf,
    /// How hard each commit of [`db`](Self::db) insists on the disk.
    /// Default [`DbSync::Normal`]: acked messages survive the server's
    /// process being killed, not a power loss.
    pub db_sync: DbSync,
    /// With a secret, clients need an HS256 token: signed with it by
    /// someone else, or (with accounts on) one of the server's own.
    pub jwt_secret: Option<String>,
    /// The chat's own accounts (issue 17; `accounts/`): who may say
    /// `hello` ([`AccountsMode`]: guests and accounts by default), the
    /// Argon2id cost, the login limits.
    pub accounts: AccountsConfig,
    /// Serve https and `wss://` with this TLS configuration (feature
    /// `tls`; see [`crate::transport::tls::server_config_from_pem`]). Each
    /// connection's TLS handshake runs in its own task, within the time
    /// allowed for the request head. Default `None`: plain http and `ws://`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Most TCP connections open at once, of every kind: a TLS or HTTP
    /// handshake in progress, a page being served, a WebSocket. Each holds
    /// a file descriptor and a task from the moment it is accepted, so
    /// each counts from then. One beyond gets HTTP 503 with `Retry-After`,
    /// before its request is read (over TLS: closed, see `http.rs`).
    ///
    /// [`serve`] first raises the process's soft file-descriptor limit to
    /// its hard one ([`fdlimit::raise`]). `None` (the default): as many as
    /// that limit leaves room for, less [`fdlimit::RESERVED_FDS`] for the
    /// database, Redis, the listening socket and refusals being answered
    /// (19,808 under a hard limit of 20,000). `Some(n)` above that is
    /// lowered to it, with a warning: beyond it `accept` would fail
    /// (EMFILE) and the clients over the limit would wait in the backlog,
    /// told nothing, instead of getting their 503. If `accept` fails
    /// anyway, the accept loop waits (10 ms doubling to 1 s) until
    /// connections close.
    pub max_connections: Option<usize>,
    /// Most TCP connections open at once from one client address (IPv6:
    /// one /64), so one client cannot take every slot. `0`: no limit.
    /// Loopback counts like any address. Default 64: a browser holds one
    /// WebSocket per tab and briefly up to 6 connections per host for the
    /// page (Chromium's and Firefox's per-host limit), so 64 leaves room
    /// for several users behind one NAT while one client takes at most
    /// 0.64% of the default `max_connections`. Over it: HTTP 429.
    pub max_per_ip: usize,
    /// Most connections from one client address (IPv6: one /64) that are
    /// accepted but not yet upgraded to a WebSocket: TLS handshakes, request
    /// heads still arriving, pages being served. `0`: no limit. Each may
    /// sit idle for the whole request timeout (10 s), which makes them the
    /// cheap way to hold slots. Default 16: a page load takes up to 6 at
    /// once (the browsers' per-host limit) plus one per tab reconnecting.
    /// Over it: HTTP 429.
    pub max_handshakes_per_ip: usize,
    /// The server's own origin (RFC 6454), as the browser sees it: the
    /// scheme, host and port of the URL its users open. Pages from it may
    /// open WebSockets. `None` (the default): the scheme served (`http`, or
    /// `https` with [`tls`](Self::tls)) with the `Host` of each request;
    /// set it behind a proxy that terminates TLS or rewrites `Host`, and
    /// to pin the origin against DNS rebinding (a hostile name resolving
    /// to this server sends a `Host` of that name).
    pub public_origin: Option<Origin>,
    /// Other origins whose pages may open WebSockets (RFC 6455 §10.2).
    /// Default: none.
    pub allowed_origins: Vec<Origin>,
    /// Pages from any origin, and `Origin: null`, may open WebSockets: the
    /// Origin check is off (cross-site WebSocket hijacking is then the
    /// operator's to prevent). Default `false`.
    pub allow_any_origin: bool,
    /// Bytes a client's outbound queue may hold. Default 1 MiB.
    pub outbox_limit: usize,
    /// The most rooms held in memory at once; a join that would bring in
    /// one more gets `rooms_full`. A room with nobody in it leaves memory
    /// (its history stays on disk). Default 50,000: 2,500 clients in 20
    /// rooms each, all different, at about 1 KiB a room.
    pub max_rooms: usize,
    /// Pings to silent clients; a dead one leaves presence within
    /// `interval + timeout`. Default 30 s + 20 s.
    pub keepalive: Keepalive,
    /// How often presence changes go out. Default 100 ms.
    pub presence_interval: Duration,
    /// How long one WebSocket frame may take to arrive, first byte to last
    /// (`transport::Config::frame_timeout`); over it, the connection is
    /// closed with 1008. Chat frames are small JSON, which even a slow
    /// mobile link sends in well under a second; the default, 30 s, the
    /// keepalive interval (after which a silent peer is probed anyway),
    /// leaves room for a stalled link to recover and still ends a frame
    /// trickled to hold a connection open.
    pub frame_timeout: Duration,
    /// How long a client has to answer our Close (on shutdown, say)
    /// before its connection is dropped. Default 5 s.
    pub close_timeout: Duration,
    /// Requests per connection: a token bucket. `None` lifts the limit
    /// (for benchmarks). Default 10 a second, bursts of 20.
    pub rate_limit: Option<RateLimit>,
    /// permessage-deflate (RFC 7692) for clients that offer it (browsers
    /// do). Default: both contexts reset after every message, so each
    /// broadcast is compressed once for all its recipients and no
    /// connection holds a compressor or decompressor between messages.
    /// `None` turns compression off.
    pub deflate: Option<DeflateConfig>,
    /// Scale out through Redis: ids, history, fan-out and presence are
    /// shared with every server on the same Redis. `None` (the default):
    /// one server, history in [`db`](Self::db).
    pub redis: Option<ClusterConfig>,
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// The bucket's size.
    pub burst: f64,
}

impl ChatConfig {
    /// The transport's settings for a chat connection: its limits come
    /// from the chat protocol, not from the transport's generous defaults
    /// (which allow a 64 MiB message for Autobahn's sake).
    pub fn transport_config(&self) -> transport::Config {
        let mut config = transport::Config {
            keepalive: Some(self.keepalive),
            close_timeout: self.close_timeout,
            frame_timeout: Some(self.frame_timeout),
            // A client that takes none of our output for as long as the
            // keepalive allows a silent one (interval + timeout: 50 s by
            // default, the bound `keepalive` promises for a dead client)
            // is as dead, and the keepalive alone can miss it: it counts
            // reads, and we go on reading a client that keeps sending
            // while our output to it is stuck under the write buffer
            // limit. Not shorter, so a stalled link the keepalive would
            // spare is spared; not the transport's 60 s, which is looser
            // than that promise.
            send_timeout: Some(self.keepalive.interval + self.keepalive.timeout),
            // The session moves its outbox to the socket up to this mark;
            // over it, the transport stops reading the client's requests.
            write_buffer_limit: session::SOCKET_HIGH_WATER,
            ..transport::Config::default()
        };
        let limits = &mut config.protocol;
        limits.max_frame_size = protocol::MAX_REQUEST;
        limits.max_message_size = protocol::MAX_REQUEST;
        // A request is one frame, as browsers and the common client
        // libraries send it: a fragmented one could be held open between
        // fragments for ever (the frame timeout bounds a frame, not a
        // message), holding its buffer. A second frame of one message
        // closes the connection with 1009.
        limits.max_fragments = 1;
        limits.deflate = self.deflate.clone();
        config
    }

    /// Defaults, with history in `db`.
    pub fn new(db: impl Into<PathBuf>) -> Self {
        Self {
            db: db.into(),
            db_sync: DbSync::Normal,
            jwt_secret: None,
            accounts: AccountsConfig::default(),
            #[cfg(feature = "tls")]
            tls: None,
            max_connections: None,
            max_per_ip: 64,
            max_handshakes_per_ip: 16,
            public_origin: None,
            allowed_origins: Vec::new(),
            allow_any_origin: false,
            outbox_limit: 1 << 20,
            max_rooms: 50_000,
            keepalive: Keepalive {
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(20),
            },
            presence_interval: Duration::from_millis(100),
            rate_limit: Some(RateLimit {
                per_second: 10.0,
                burst: 20.0,
            }),
            close_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(30),
            deflate: Some(DeflateConfig::no_context_takeover()),
            redis: None,
        }
    }
}

/// Raises the file-descriptor limit and settles `max_connections` under
/// it (see [`ChatConfig::max_connections`]), saying what it chose.
fn connection_limit(requested: Option<usize>) -> usize {
    let limit = match fdlimit::raise() {
        Ok(limit) => limit,
        Err(e) => {
            // No limit to read: trust the request, or take 10,000.
            let chosen = requested.unwrap_or(10_000);
            warn!(error = %e, max_connections = chosen, "file-descriptor limit unknown");
            return chosen;
        }
    };
    let (chosen, lowered) = fdlimit::max_connections(requested, limit.soft);
    if lowered {
        warn!(
            requested = requested.unwrap_or_default(),
            max_connections = chosen,
            fd_limit = limit.soft,
            reserved = fdlimit::RESERVED_FDS,
            "--max-connections lowered to what the file-descriptor limit allows (raise the hard limit, ulimit -Hn, for more)"
        );
    } else {
        info!(
            max_connections = chosen,
            fd_limit = limit.soft,
            fd_limit_was = limit.was,
            reserved = fdlimit::RESERVED_FDS,
            "connection limit"
        );
    }
    chosen
}

/// `rfc6455 chat admin add|remove|list` (issue 17): changes or lists the
/// server admins where the servers keep them, the side database of `db`
/// (`<db>.admins`) or, with `redis`, that Redis. Safe while servers run
/// on the same store: they read the admins again at every check, so a
/// change is in force at once. Returns what it did, for a human.
pub async fn admin(
    db: &std::path::Path,
    redis: Option<&str>,
    op: &AdminOp,
) -> std::io::Result<String> {
    if let AdminOp::Add(nick) | AdminOp::Remove(nick) = op {
        protocol::check_nick(nick).map_err(|r| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{nick:?}: {}", r.message),
            )
        })?;
    }
    match redis {
        Some(url) => backend::redis::moderation::admin_command(url, op)
            .await
            .map_err(std::io::Error::other),
        None => backend::local::moderation::admin_command(db, op),
    }
}

/// Serves the chat on `listener` until `shutdown` resolves, then closes
/// every connection (1001) and commits history before returning.
pub async fn serve(
    listener: TcpListener,
    config: ChatConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let backend: Arc<dyn backend::Backend> = match &config.redis {
        // Refused, naming the file, if another server holds it.
        None => backend::local::Local::open(&config.db, config.db_sync, metrics.clone())?,
        Some(redis) => backend::redis::Redis::new(redis.clone()).map_err(io::Error::other)?,
    };
    let accounts = match config.accounts.mode {
        AccountsMode::Off => None,
        _ => Some(Arc::new(
            accounts::Accounts::open(backend.clone(), config.accounts)
                .await
                .map_err(io::Error::other)?,
        )),
    };
    let auth = Arc::new(session::Auth {
        external: config
            .jwt_secret
            .as_ref()
            .map(|secret| jsonwebtoken::DecodingKey::from_secret(secret.as_bytes())),
        accounts: accounts.clone(),
    });
    let hub_config = hub::HubConfig {
        outbox_limit: config.outbox_limit,
        authenticated: config.jwt_secret.is_some(),
        mark_guests: accounts.is_some(),
        deflate: config.deflate.clone(),
        max_rooms: config.max_rooms,
    };
    let hub = Arc::new(hub::Hub::new(backend.clone(), metrics.clone(), hub_config));
    let backend_tasks = backend.clone().start(hub.clone());
    let presence = {
        let hub = hub.clone();
        let every = config.presence_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                hub.flush_presence();
                hub.flush_receipts();
                hub.expire_rules();
                hub.reload_stale_rules().await;
            }
        })
    };
    let shared = Arc::new(http::Shared {
        hub: hub.clone(),
        auth,
        accounts,
        origins: origin::OriginPolicy {
            public: config.public_origin.clone(),
            allowed: config.allowed_origins.clone(),
            any: config.allow_any_origin,
        },
        lingering: Arc::new(tokio::sync::Semaphore::new(http::MAX_LINGERING)),
        origin_logged: std::sync::Mutex::new(None),
        transport: config.transport_config(),
        config: config.clone(),
    });
    let max_connections = connection_limit(config.max_connections);
    let admission = admission::Admission::new(
        admission::Limits {
            max_connections,
            max_per_ip: config.max_per_ip,
            max_handshakes_per_ip: config.max_handshakes_per_ip,
        },
        metrics.clone(),
    );
    let mut backoff = admission::AcceptBackoff::default();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    info!(addr = %listener.local_addr()?, db = %config.db.display(), "chat server listening");
    if config.allow_any_origin {
        warn!("--allow-origin '*': pages from any site may open WebSockets here as their visitors");
    }
    'accept: loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff.success();
                    let shared = shared.clone();
                    // The slot is taken here, before the connection has
                    // cost anything but its descriptor, and is held by the
                    // connection's task until it ends.
                    match admission.admit(peer.ip()) {
                        Ok(slot) => {
                            connections.spawn(async move {
                                let _ = stream.set_nodelay(true);
                                http::handle(stream, peer, shared, slot).await;
                            });
                        }
                        Err(refusal) => {
                            match refusal {
                                admission::Refusal::Full => metrics.connections_refused.inc(),
                                admission::Refusal::PerIp => metrics.refused_per_ip.inc(),
                                admission::Refusal::Handshakes => {
                                    metrics.refused_handshakes.inc()
                                }
                            }
                            debug!(%peer, ?refusal, "connection refused at the door");
                            connections.spawn(http::refuse(stream, refusal, shared));
                        }
                    }
                }
                Err(e) if admission::is_connection_error(&e) => {
                    debug!(error = %e, "a connection was gone before it was accepted");
                }
                // Out of file descriptors or kernel memory: the backlog
                // still holds connections, so `accept` would fail again at
                // once; wait, and let closing connections free descriptors.
                Err(e) => {
                    metrics.accept_errors.inc();
                    let (wait, log) = backoff.failure(std::time::Instant::now());
                    if let Some(failures) = log {
                        warn!(
                            error = %e,
                            failures,
                            retry_in = ?wait,
                            "accept failed (out of file descriptors? raise ulimit -n or lower --max-connections)"
                        );
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = &mut shutdown => break 'accept,
                    }
                }
            },
            _ = &mut shutdown => break,
        }
        while connections.try_join_next().is_some() {}
    }
    info!(
        open = metrics.connections.get(),
        "shutting down: closing connections, saving history"
    );
    drop(listener);
    hub.stop_posts();
    // Posts the backend holds are stored, and their acks reach clients
    // that are still connected, before anyone is asked to leave.
    let left = backend.drain(config.close_timeout).await;
    if left > 0 {
        warn!(
            left,
            "the message store is unreachable: posts never acked are dropped"
        );
    }
    hub.shutdown();
    let drained = tokio::time::timeout(config.close_timeout + Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        debug!("some connections did not close in time; dropping them");
        connections.abort_all();
    }
    presence.abort();
    // Our users have all left: tell the other servers now, then let the
    // backend send what it holds and release the history database.
    hub.flush_presence();
    backend.close().await;
    for task in backend_tasks {
        task.abort();
    }
    info!("history saved");
    Ok(())
}
