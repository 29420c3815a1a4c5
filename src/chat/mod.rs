//! The chat server: rooms, direct messages, presence, typing, history,
//! resume and authentication, on this crate's own WebSocket stack.
//!
//! One port serves everything: the web UI at `/` (embedded in the binary),
//! the WebSocket endpoint at `/ws`, `/healthz` and `/metrics`. The wire
//! protocol is `docs/PROTOCOL.md`, implemented in `protocol.rs`.
//!
//! ```text
//!  TCP ─ http.rs ─┬─ GET /, /app.js, /style.css, /healthz, /metrics
//!                 └─ GET /ws ─ session.rs (a task per connection)
//!                                 │  requests ─▶ hub.rs (rooms, ids, fan-out)
//!                                 │  ◀─ outbox (bounded, bytes)   │
//!                                                                 ▼
//!                                            store.rs (SQLite, its own thread)
//! ```
//!
//! History is written by one thread in batches, off the hot path; reads go
//! through the same thread, after the writes queued before them, which is
//! what makes resume exact. A message reaches its room and its sender's
//! ack only once its batch is committed. On shutdown the hub stops taking
//! messages, the last acks go out, every client gets close 1001, and the
//! history thread commits what it has before [`serve`] returns.

pub mod cluster;
mod http;
mod hub;
mod metrics;
pub mod protocol;
mod session;
mod store;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::proto::DeflateConfig;
use crate::transport::{self, Keepalive};
pub use metrics::Metrics;
pub use store::DbSync;

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
    /// With a secret, clients need an HS256 token signed with it.
    pub jwt_secret: Option<String>,
    /// Serve https and `wss://` with this TLS configuration (feature
    /// `tls`; see [`crate::transport::tls::server_config_from_pem`]). Each
    /// connection's TLS handshake runs in its own task, within the time
    /// allowed for the request head. Default `None`: plain http and `ws://`.
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections beyond this get HTTP 503. Default 10,000.
    pub max_connections: usize,
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
    pub redis: Option<cluster::ClusterConfig>,
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
            // The session moves its outbox to the socket up to this mark;
            // over it, the transport stops reading the client's requests.
            write_buffer_limit: session::SOCKET_HIGH_WATER,
            ..transport::Config::default()
        };
        let limits = &mut config.protocol;
        limits.max_frame_size = protocol::MAX_REQUEST;
        limits.max_message_size = protocol::MAX_REQUEST;
        // A browser sends each request in one frame; a few more allow
        // clients that fragment, and bound the work of tiny fragments.
        limits.max_fragments = 64;
        limits.deflate = self.deflate.clone();
        config
    }

    /// Defaults, with history in `db`.
    pub fn new(db: impl Into<PathBuf>) -> Self {
        Self {
            db: db.into(),
            db_sync: DbSync::Normal,
            jwt_secret: None,
            #[cfg(feature = "tls")]
            tls: None,
            max_connections: 10_000,
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

/// Serves the chat on `listener` until `shutdown` resolves, then closes
/// every connection (1001) and commits history before returning.
pub async fn serve(
    listener: TcpListener,
    config: ChatConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let (backend, last_ids) = match &config.redis {
        None => {
            // Refused, naming the file, if another server holds it.
            let (store, last_ids) =
                store::Store::open(&config.db, config.db_sync, metrics.clone())?;
            (hub::Backend::Local(store), last_ids)
        }
        Some(redis) => {
            let cluster = cluster::Cluster::new(redis.clone()).map_err(io::Error::other)?;
            (hub::Backend::Cluster(cluster), Vec::new())
        }
    };
    let auth = Arc::new(match &config.jwt_secret {
        Some(secret) => {
            session::Auth::Jwt(jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()))
        }
        None => session::Auth::Anonymous,
    });
    let hub_config = hub::HubConfig {
        outbox_limit: config.outbox_limit,
        authenticated: config.jwt_secret.is_some(),
        deflate: config.deflate.clone(),
        max_rooms: config.max_rooms,
    };
    let hub = Arc::new(hub::Hub::new(
        backend,
        last_ids,
        metrics.clone(),
        hub_config,
    ));
    let cluster_tasks = match hub.cluster() {
        Some(cluster) => {
            info!(redis = %cluster.config.url, server = %cluster.id, "scaled out through redis");
            cluster.start(&hub)
        }
        None => Vec::new(),
    };
    let presence = {
        let hub = hub.clone();
        let every = config.presence_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                hub.flush_presence();
            }
        })
    };
    let shared = Arc::new(http::Shared {
        hub: hub.clone(),
        auth,
        config: config.clone(),
    });
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    info!(addr = %listener.local_addr()?, db = %config.db.display(), "chat server listening");
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let shared = shared.clone();
                    connections.spawn(async move {
                        let _ = stream.set_nodelay(true);
                        http::handle(stream, peer, shared).await;
                    });
                }
                // Out of file descriptors and the like: wait, don't spin.
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
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
    if let Some(cluster) = hub.cluster() {
        // Posts queued for Redis go out, and their acks reach clients that
        // are still connected, before anyone is asked to leave.
        let left = cluster.flush(config.close_timeout).await;
        if left > 0 {
            warn!(left, "redis unreachable: posts never acked are dropped");
        }
    }
    if let Some(store) = hub.store() {
        // Acks wait for their commit: let the last ones reach their
        // clients before the connections are closed.
        store.flush().await;
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
    if let Some(cluster) = hub.cluster() {
        // Our users have all left: tell the other servers now.
        hub.flush_presence();
        cluster.sync_events(Duration::from_secs(1)).await;
    }
    if let Some(store) = hub.store().cloned() {
        tokio::task::spawn_blocking(move || store.close())
            .await
            .map_err(io::Error::other)?;
    }
    for task in cluster_tasks {
        task.abort();
    }
    info!("history saved");
    Ok(())
}
