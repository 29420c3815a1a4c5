//! The Redis backend, for scale-out (`rfc6455 chat --redis redis://…`):
//! several chat servers behind any load balancer behave as one server.
//!
//! ```text
//!  server A                         Redis                          server B
//!  post ──EVALSHA post.lua──▶ INCR chat:id:{room}
//!                             XADD chat:log:{room} {id}-0 …
//!                             PUBLISH chat:bus {"t":"stored","id":id,"event":{…}}
//!  ◀── id (ack) ──────────────┘        │
//!  ◀── SUBSCRIBE chat:bus ─────────────┴───────────── SUBSCRIBE chat:bus ──▶
//! ```
//!
//! | key                          | type                   | holds                                     |
//! |------------------------------|------------------------|-------------------------------------------|
//! | `chat:id:{room}`             | string, `INCR`         | the room's last message id                |
//! | `chat:log:{room}`            | stream, entry `{id}-0` | every event, trimmed to about N entries   |
//! | `chat:msgs:{room}`           | sorted set of ids      | the newest N messages' ids (history)      |
//! | `chat:msg:{room}`            | hash, id → JSON        | each of those messages' latest state      |
//! | `chat:op:{op}`               | string, 5 min          | the id a post got (retries are no-ops)    |
//! | `chat:present:{room}`        | set of server ids      | servers with (or lately with) nicks there |
//! | `chat:nicks:{server}:{room}` | set of nicks           | who is in the room on that server         |
//! | `chat:alive:{server}`        | string with a TTL      | a server's heartbeat                      |
//! | `chat:session:{nick}`        | string, 1 day          | the secret that reclaims a nick anywhere  |
//! | `chat:bus`                   | pub/sub channel        | stored, typing, presence, hb events       |
//!
//! Read marks, DM partners and the nicks ever seen have keys of their own
//! ([`convs`]).
//!
//! Presence travels on the bus as changes, each numbered by its server
//! (`n`, one more each time; a heartbeat carries the last one), and is
//! applied to that server's set before it is published ([`presence`]):
//!
//! ```text
//! {"t":"presence_delta","s":server,"n":7,"room":"general","joined":["ann"],"left":["bob"]}
//! {"t":"presence","s":server,"n":8,"room":"*","nicks":["ann","cy"]}   (all: after a resync)
//! {"t":"hb","s":server,"n":8}
//! ```
//!
//! A DM conversation's key is `@a|b` (the two nicks, sorted;
//! [`Conversation::key`]) and the online users' presence key is `*`, the
//! guests' among them `~` ([`Scope::key`]); none can be a room's name.
//!
//! The parts, by concern: [`link`] (the command connection, its state and
//! the writer of fire-and-forget commands), [`posts`] (the queue of appends
//! and the script that stores them), [`bus`] (the events on `chat:bus` and
//! the subscription), [`order`] (the streams: history, ranges, gap fill,
//! resync) and [`presence`] (presence sets and changes, heartbeats, dead
//! servers, sessions). Each reaches the hub only through [`HubEvents`].
//!
//! # Ordering and loss
//!
//! One Lua script assigns the id, appends the message to the room's stream
//! and publishes it, atomically: Redis runs one script at a time, so the bus
//! carries each room's messages in id order, and every id seen on the bus
//! is already in the stream. Each server subscribes once (not per client or
//! room) and delivers a room's messages in id order: an id beyond the next
//! one means the subscription missed some (it was down, or Redis
//! restarted), and the hole is filled from the stream before anything after
//! it goes out. A client's `seen` ids are global, so resume works on any
//! server: it reads the stream.
//!
//! # Failure
//!
//! While Redis is away, each server keeps its clients connected. Posts wait
//! in a bounded queue and are acked once Redis has them (a post is accepted
//! when acked); the queue is retried in order with backoff, and each post
//! carries a random operation id so that a retry of a post Redis already
//! ran returns the same id instead of a duplicate. `/healthz` says
//! `degraded` and `/metrics` has `chat_redis_up 0`. A subscription can also
//! die silently (a half-open TCP connection, a proxy that stopped
//! forwarding): every server publishes a heartbeat each second on the bus
//! and must see its own come back; when it does not within the probe
//! timeout, the subscription is dropped and made again, and every room is
//! checked for missed ids. Heartbeats also carry presence: a server silent
//! for `presence_ttl` is taken as dead and its users leave every room.

mod accounts;
mod bus;
mod convs;
mod link;
pub mod moderation;
mod order;
mod posts;
mod presence;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use redis::RedisResult;
use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;

use self::link::Command;
use self::posts::Post;
use super::{
    Ack, Backend, Busy, Conversation, Event, HubEvents, NewEvent, Page, Peer, PresenceChange,
    Reply, Scope, Signal, Span, Unavailable,
};
use crate::chat::{RedactedUrl, lock, metrics, random_token};

/// Scale-out settings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Messages kept per room's stream (`XADD … MAXLEN ~`). Default 10,000.
    pub history_len: usize,
    /// How often a server says it is alive (and probes its subscription).
    /// Default 1 s.
    pub heartbeat: Duration,
    /// A server not heard from for this long is dead: its users leave
    /// presence. Default 5 s.
    pub presence_ttl: Duration,
    /// A subscription that has not delivered our own heartbeat for this
    /// long is dead, even if its socket looks open. Default 3 s.
    pub probe_timeout: Duration,
    /// Posts waiting for Redis beyond this are refused with `unavailable`.
    /// Default 10,000.
    pub queue_limit: usize,
}

impl ClusterConfig {
    /// Defaults, for the Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            history_len: 10_000,
            heartbeat: Duration::from_secs(1),
            presence_ttl: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            queue_limit: 10_000,
        }
    }
}

/// The counters `/metrics` reports in scale-out mode.
#[derive(Debug, Default)]
struct RedisMetrics {
    /// 1 while both the command connection and the subscription work.
    up: AtomicBool,
    /// Times a connection to Redis was made again.
    reconnects: AtomicU64,
    /// Subscriptions dropped because our heartbeat did not come back.
    probe_failures: AtomicU64,
    /// Holes in a room's ids filled from its stream.
    gap_fills: AtomicU64,
    /// Messages read from streams to fill holes.
    gap_messages: AtomicU64,
    /// Posts waiting for Redis.
    queued: AtomicU64,
    /// Posts Redis took (acked).
    published: AtomicU64,
    /// Posts dropped unacked because their client left while Redis was away.
    abandoned: AtomicU64,
    /// Events received on the bus.
    bus_in: AtomicU64,
    /// Events on the bus that did not parse.
    bus_bad: AtomicU64,
    /// Times another server's presence sets were read again (a change
    /// missed, or a server heard from for the first time).
    presence_resyncs: AtomicU64,
}

/// This server's link to Redis: the state of every part (each part's
/// file has its methods).
pub struct Redis {
    /// This server's id on the bus, fresh at every start.
    id: String,
    config: ClusterConfig,
    client: redis::Client,
    /// The post script's SHA1, for `EVALSHA`.
    sha: String,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    cmd_up: AtomicBool,
    sub_up: AtomicBool,
    down_since: Mutex<Option<Instant>>,
    /// Fire-and-forget commands, for the writer task ([`link`]).
    commands: tokio::sync::mpsc::Sender<Command>,
    commands_rx: Mutex<Option<tokio::sync::mpsc::Receiver<Command>>>,
    queue: Mutex<VecDeque<Post>>,
    queued: Notify,
    /// Posts taken from the queue, not yet acked.
    in_flight: AtomicU64,
    /// Other servers, and when each was last heard from.
    servers: Mutex<HashMap<Peer, Instant>>,
    /// The rooms each other server was last seen to have users in, in
    /// memory here or not, so that a dead server's entries leave every
    /// room's presence sets. A leaf lock.
    rooms_of: Mutex<HashMap<Peer, BTreeSet<String>>>,
    /// The sequence number of our last presence change on the bus.
    presence_seq: AtomicU64,
    /// The last presence sequence number heard from each other server:
    /// one beyond the next means a change was missed (a leaf lock).
    heard: Mutex<HashMap<Peer, u64>>,
    /// Some of our presence may not have reached Redis (a command dropped
    /// or failed): the next heartbeat asks the hub for all of it again.
    presence_lost: AtomicBool,
    hub: OnceLock<Weak<dyn HubEvents>>,
    /// Itself, for the tasks a call spawns (a fill).
    me: Weak<Redis>,
    metrics: RedisMetrics,
}

impl Redis {
    /// A link to the Redis of `config` (nothing is connected yet).
    pub fn new(config: ClusterConfig) -> RedisResult<Arc<Self>> {
        use sha1::Digest;
        let client = redis::Client::open(config.url.as_str())?;
        let sha = sha1::Sha1::digest(posts::POST_SCRIPT.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (commands, commands_rx) = tokio::sync::mpsc::channel(4096);
        Ok(Arc::new_cyclic(|me| Self {
            id: random_token()[..12].to_owned(),
            config,
            client,
            sha,
            conn: tokio::sync::Mutex::new(None),
            cmd_up: AtomicBool::new(false),
            sub_up: AtomicBool::new(false),
            down_since: Mutex::new(Some(Instant::now())),
            commands,
            commands_rx: Mutex::new(Some(commands_rx)),
            queue: Mutex::new(VecDeque::new()),
            queued: Notify::new(),
            in_flight: AtomicU64::new(0),
            servers: Mutex::new(HashMap::new()),
            rooms_of: Mutex::new(HashMap::new()),
            presence_seq: AtomicU64::new(0),
            heard: Mutex::new(HashMap::new()),
            presence_lost: AtomicBool::new(false),
            hub: OnceLock::new(),
            me: me.clone(),
            metrics: RedisMetrics::default(),
        }))
    }

    fn hub(&self) -> Option<Arc<dyn HubEvents>> {
        self.hub.get().and_then(Weak::upgrade)
    }
}

/// How long a connection attempt or a command may take.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Doubling waits between reconnection attempts, 100 ms to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(100))
    }
    fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

fn key_id(key: &str) -> String {
    format!("chat:id:{key}")
}
fn key_log(key: &str) -> String {
    format!("chat:log:{key}")
}
/// A conversation's message ids, newest kept (sorted set, score = id).
fn key_msgs(key: &str) -> String {
    format!("chat:msgs:{key}")
}
/// A conversation's message states, by id (hash of JSON).
fn key_states(key: &str) -> String {
    format!("chat:msg:{key}")
}
/// A room's moderation events, its rules and audit (list of JSON).
fn key_mod(key: &str) -> String {
    format!("chat:mod:{key}")
}
/// A room's mutes in force (hash, nick → until ms, `0`: until lifted).
fn key_mutes(key: &str) -> String {
    format!("chat:mutes:{key}")
}
/// A user's blocks (set of nicks).
fn key_blocks(nick: &str) -> String {
    format!("chat:blocks:{nick}")
}
/// A room's rules in force (hash, rule → its latest event, as logged).
fn key_rules(key: &str) -> String {
    format!("chat:rules:{key}")
}
/// A room's timed rules by their end (sorted set, rule by until ms).
fn key_ends(key: &str) -> String {
    format!("chat:ends:{key}")
}
fn key_present(scope: &Scope) -> String {
    format!("chat:present:{}", scope.key())
}
fn key_nicks(server: &str, scope: &Scope) -> String {
    format!("chat:nicks:{server}:{}", scope.key())
}
fn key_alive(server: &str) -> String {
    format!("chat:alive:{server}")
}
fn key_session(nick: &str) -> String {
    format!("chat:session:{nick}")
}

fn unavailable<E>(_: E) -> Unavailable {
    Unavailable
}

impl Backend for Redis {
    /// Starts the publisher, the subscriber, the heartbeat and the command
    /// writer. They run until the runtime ends (or, for the publisher,
    /// until its queue is flushed after shutdown).
    fn start(self: Arc<Self>, hub: Arc<dyn HubEvents>) -> Vec<tokio::task::JoinHandle<()>> {
        tracing::info!(redis = %RedactedUrl(&self.config.url), server = %self.id, "scaled out through redis");
        let _ = self.hub.set(Arc::downgrade(&hub));
        let mut tasks = vec![
            tokio::spawn(self.clone().publisher()),
            tokio::spawn(self.clone().subscriber(hub.clone())),
            tokio::spawn(self.clone().heartbeat(hub)),
        ];
        if let Some(rx) = lock(&self.commands_rx).take() {
            tasks.push(tokio::spawn(self.clone().command_writer(rx)));
        }
        tasks
    }

    fn append(&self, event: NewEvent, ack: Box<dyn Ack>) -> Result<(), Busy> {
        self.enqueue(Post::new(event, ack))
    }

    fn last_id(&self, conv: &Conversation) -> Reply<'_, u64> {
        let key = conv.key();
        Box::pin(async move { self.last_id_of(&key).await.map_err(unavailable) })
    }

    fn history(&self, conv: &Conversation, before: u64, limit: u32) -> Reply<'_, Page> {
        let conv = conv.clone();
        Box::pin(async move {
            self.read_page(&conv, before, limit)
                .await
                .map_err(unavailable)
        })
    }

    fn range(&self, conv: &Conversation, span: Span, limit: u32) -> Reply<'_, Vec<Event>> {
        let conv = conv.clone();
        Box::pin(async move {
            self.read_range(&conv, span, limit as usize)
                .await
                .map_err(unavailable)
        })
    }

    fn fill(&self, conv: Conversation, span: Span) {
        self.spawn_fill(conv, span);
    }

    fn publish(&self, signal: Signal) {
        self.publish_signal(signal);
    }

    fn shares_presence(&self) -> bool {
        true
    }

    fn publish_presence(&self, scope: &Scope, change: PresenceChange) {
        self.publish_change(scope, change);
    }

    fn presence(&self, scope: &Scope) -> Reply<'_, Vec<(Peer, Vec<String>)>> {
        let scope = scope.clone();
        Box::pin(async move { self.read_presence(&scope).await.map_err(unavailable) })
    }

    fn remember_session(&self, nick: &str, session: &str) {
        self.keep_session(nick, session);
    }

    fn session_of(&self, nick: &str) -> Reply<'_, Option<String>> {
        let nick = nick.to_owned();
        Box::pin(async move { self.read_session(&nick).await.map_err(unavailable) })
    }

    fn drain(&self, limit: Duration) -> Pin<Box<dyn Future<Output = usize> + Send + '_>> {
        Box::pin(self.flush(limit))
    }

    /// Waits (up to 1 s) until the commands queued before it are written:
    /// on shutdown, so that the others see our users leave now, not when
    /// our heartbeat times out.
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.sync_commands(Duration::from_secs(1)))
    }

    fn health(&self) -> Result<(), Duration> {
        match *lock(&self.down_since) {
            None => Ok(()),
            Some(since) => Err(since.elapsed()),
        }
    }

    fn render_metrics(&self) -> String {
        let m = &self.metrics;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let rows: [(&str, &str, &str, u64); 12] = [
            (
                "chat_redis_up",
                "gauge",
                "1 while Redis answers and our subscription is proven by our own heartbeat.",
                u64::from(m.up.load(Ordering::Relaxed)),
            ),
            (
                "chat_redis_down_seconds",
                "gauge",
                "How long Redis has been unreachable (0 when up).",
                self.health().err().map_or(0, |d| d.as_secs()),
            ),
            (
                "chat_redis_connects_total",
                "counter",
                "Command connections made to Redis.",
                get(&m.reconnects),
            ),
            (
                "chat_redis_probe_failures_total",
                "counter",
                "Subscriptions dropped because our own heartbeat did not come back.",
                get(&m.probe_failures),
            ),
            (
                "chat_redis_gap_fills_total",
                "counter",
                "Holes in a room's ids filled from its stream.",
                get(&m.gap_fills),
            ),
            (
                "chat_redis_gap_messages_total",
                "counter",
                "Messages read from streams to fill holes.",
                get(&m.gap_messages),
            ),
            (
                "chat_redis_queued_posts",
                "gauge",
                "Posts waiting for Redis.",
                get(&m.queued),
            ),
            (
                "chat_redis_published_total",
                "counter",
                "Posts Redis took and we acked.",
                get(&m.published),
            ),
            (
                "chat_redis_abandoned_total",
                "counter",
                "Posts dropped unacked: their client left while Redis was away.",
                get(&m.abandoned),
            ),
            (
                "chat_redis_bus_events_total",
                "counter",
                "Events received on the bus.",
                get(&m.bus_in),
            ),
            (
                "chat_redis_bus_unreadable_total",
                "counter",
                "Events on the bus that did not parse (dropped).",
                get(&m.bus_bad),
            ),
            (
                "chat_redis_presence_resyncs_total",
                "counter",
                "Times a server's presence sets were read again (a change missed, or a new server).",
                get(&m.presence_resyncs),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            metrics::write(&mut out, name, kind, help, value);
        }
        out
    }
}
