//! Scale-out through Redis (`rfc6455 chat --redis redis://…`): several chat
//! servers behind any load balancer behave as one server.
//!
//! ```text
//!  server A                         Redis                          server B
//!  post ──EVALSHA post.lua──▶ INCR chat:id:{room}
//!                             XADD chat:log:{room} {id}-0 …
//!                             PUBLISH chat:bus {"t":"msg",…,"id":id}
//!  ◀── id (ack) ──────────────┘        │
//!  ◀── SUBSCRIBE chat:bus ─────────────┴───────────── SUBSCRIBE chat:bus ──▶
//! ```
//!
//! | key                     | type                      | holds                                   |
//! |-------------------------|---------------------------|-----------------------------------------|
//! | `chat:id:{room}`        | string, `INCR`            | the room's last message id              |
//! | `chat:log:{room}`       | stream, entry `{id}-0`    | history, trimmed to about N entries     |
//! | `chat:op:{op}`          | string, 5 min             | the id a post got (retries are no-ops)  |
//! | `chat:presence:{room}`  | hash: server → nicks      | who is in the room, per server          |
//! | `chat:alive:{server}`   | string with a TTL         | a server's heartbeat                    |
//! | `chat:session:{nick}`   | string, 1 day             | the secret that reclaims a nick anywhere |
//! | `chat:bus`              | pub/sub channel           | msg, dm, typing, presence, hb events    |
//!
//! A direct message is a "room" named `@a|b` (the two nicks, sorted), and
//! the online users are a "room" named `*`; neither can be a room's name.
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

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_core::Stream;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::hub::{Client, Hub};
use super::lock;
use super::metrics;
use super::protocol::ChatMessage;
use super::store::Page;

/// The channel every server subscribes to.
const BUS: &str = "chat:bus";
/// Posts sent to Redis in one pipeline.
const MAX_BATCH: usize = 256;
/// How long a connection attempt or a command may take.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Most messages read to fill one gap.
const MAX_FILL: usize = 10_000;

/// Assigns the next id of a room (or DM conversation), appends the message
/// to its stream and publishes it on the bus, as one atomic step.
///
/// KEYS: id counter, stream, operation key. ARGV: stream length, from,
/// text, ts, channel, the bus event's JSON up to its `"id":`.
///
/// The counter is checked against the stream's newest entry: were the
/// counter lost (a Redis restored from an older snapshot), ids continue
/// after the stream instead of failing `XADD` forever.
const POST_SCRIPT: &str = r#"
local done = redis.call('GET', KEYS[3])
if done then return tonumber(done) end
local id = redis.call('INCR', KEYS[1])
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if top[1] then
  local last = tonumber(string.match(top[1][1], '^(%d+)'))
  if last >= id then
    id = last + 1
    redis.call('SET', KEYS[1], id)
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], id .. '-0',
  'from', ARGV[2], 'text', ARGV[3], 'ts', ARGV[4])
redis.call('SET', KEYS[3], id, 'EX', 300)
redis.call('PUBLISH', ARGV[5], ARGV[6] .. id .. '}')
return id
"#;

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

/// An event on the bus.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Bus {
    /// A room message (published by the script, which appends the id).
    Msg {
        /// The room.
        room: String,
        /// Sender.
        from: String,
        /// Text.
        text: String,
        /// Server time, ms.
        ts: u64,
        /// Its id in the room.
        #[serde(default)]
        id: u64,
    },
    /// A direct message.
    Dm {
        /// The conversation key (`@a|b`).
        conv: String,
        /// Sender.
        from: String,
        /// Recipient.
        to: String,
        /// Text.
        text: String,
        /// Server time, ms.
        ts: u64,
        /// Its id in the conversation.
        #[serde(default)]
        id: u64,
    },
    /// Someone is typing.
    Typing {
        /// The room.
        room: String,
        /// Who.
        user: String,
    },
    /// Who is in a room on one server (`*`: who is online there).
    Presence {
        /// The server.
        s: String,
        /// The room.
        room: String,
        /// Its nicks there.
        nicks: Vec<String>,
    },
    /// A nick's owner reconnected elsewhere, with its session secret:
    /// the server holding it closes that connection (4000).
    Replace {
        /// The server the owner is on now (which keeps its connection).
        s: String,
        /// The nick.
        nick: String,
    },
    /// A server is alive.
    Hb {
        /// The server.
        s: String,
    },
}

/// What the event writer sends: commands, pipelined; or a marker to
/// answer once everything before it is written.
enum Event {
    Cmds(Vec<redis::Cmd>),
    Sync(tokio::sync::oneshot::Sender<()>),
}

/// A post waiting for its id.
pub struct Post {
    /// Makes a retried post idempotent.
    op: String,
    /// The room, or `@a|b` for a DM.
    key: String,
    /// The bus event's JSON, up to and including `"id":`.
    event_head: String,
    from: String,
    text: String,
    ts: u64,
    /// Who gets the ack.
    pub client: Arc<Client>,
    /// The client's id for it.
    pub client_id: String,
}

impl Post {
    /// A room message.
    pub fn room(client: &Arc<Client>, room: &str, text: &str, client_id: &str, ts: u64) -> Self {
        let event = Bus::Msg {
            room: room.to_owned(),
            from: client.nick.clone(),
            text: text.to_owned(),
            ts,
            id: 0,
        };
        Self::new(client, room, event, text, client_id, ts)
    }

    /// A direct message in conversation `conv`.
    pub fn dm(
        client: &Arc<Client>,
        conv: &str,
        to: &str,
        text: &str,
        client_id: &str,
        ts: u64,
    ) -> Self {
        let event = Bus::Dm {
            conv: conv.to_owned(),
            from: client.nick.clone(),
            to: to.to_owned(),
            text: text.to_owned(),
            ts,
            id: 0,
        };
        Self::new(client, conv, event, text, client_id, ts)
    }

    fn new(
        client: &Arc<Client>,
        key: &str,
        event: Bus,
        text: &str,
        client_id: &str,
        ts: u64,
    ) -> Self {
        Self {
            op: super::hub::random_token(),
            key: key.to_owned(),
            event_head: event_head(&event),
            from: client.nick.clone(),
            text: text.to_owned(),
            ts,
            client: client.clone(),
            client_id: client_id.to_owned(),
        }
    }
}

/// A `msg` or `dm` event's JSON without its id (which must be 0) and
/// closing brace: the script appends the id Redis gives and the brace.
/// serde writes fields in declaration order, and `id` is declared last.
fn event_head(event: &Bus) -> String {
    let json = serde_json::to_string(event).unwrap_or_default();
    json.strip_suffix("0}").map(str::to_owned).unwrap_or(json)
}

/// The post queue is at its limit ([`ClusterConfig::queue_limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

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

/// The counters `/metrics` reports in scale-out mode.
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    /// 1 while both the command connection and the subscription work.
    pub up: AtomicBool,
    /// Times a connection to Redis was made again.
    pub reconnects: AtomicU64,
    /// Subscriptions dropped because our heartbeat did not come back.
    pub probe_failures: AtomicU64,
    /// Holes in a room's ids filled from its stream.
    pub gap_fills: AtomicU64,
    /// Messages read from streams to fill holes.
    pub gap_messages: AtomicU64,
    /// Posts waiting for Redis.
    pub queued: AtomicU64,
    /// Posts Redis took (acked).
    pub published: AtomicU64,
    /// Posts dropped unacked because their client left while Redis was away.
    pub abandoned: AtomicU64,
    /// Events received on the bus.
    pub bus_in: AtomicU64,
    /// Events on the bus that did not parse.
    pub bus_bad: AtomicU64,
}

/// This server's link to Redis.
pub struct Cluster {
    /// This server's id on the bus, fresh at every start.
    pub id: String,
    /// The settings.
    pub config: ClusterConfig,
    client: redis::Client,
    sha: String,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    queue: Mutex<VecDeque<Post>>,
    queued: Notify,
    /// Posts taken from the queue, not yet acked.
    in_flight: AtomicU64,
    cmd_up: AtomicBool,
    sub_up: AtomicBool,
    down_since: Mutex<Option<Instant>>,
    events: tokio::sync::mpsc::Sender<Event>,
    events_rx: Mutex<Option<tokio::sync::mpsc::Receiver<Event>>>,
    /// What `/metrics` shows.
    pub metrics: ClusterMetrics,
}

fn key_id(key: &str) -> String {
    format!("chat:id:{key}")
}
fn key_log(key: &str) -> String {
    format!("chat:log:{key}")
}
fn key_presence(room: &str) -> String {
    format!("chat:presence:{room}")
}
fn key_alive(server: &str) -> String {
    format!("chat:alive:{server}")
}

/// `{id}-0`, a stream entry id, back to our id.
fn entry_id(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn to_message(key: &str, entry: &redis::streams::StreamId) -> ChatMessage {
    let field = |name: &str| -> String {
        entry
            .map
            .get(name)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .unwrap_or_default()
    };
    ChatMessage {
        room: key.to_owned(),
        id: entry_id(&entry.id),
        from: field("from"),
        text: field("text"),
        ts: field("ts").parse().unwrap_or(0),
    }
}

impl Cluster {
    /// The scale-out section of `/metrics`.
    pub fn render_metrics(&self) -> String {
        let cluster = self;
        let m = &cluster.metrics;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let rows: [(&str, &str, &str, u64); 11] = [
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
                cluster.health().err().map_or(0, |d| d.as_secs()),
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
        ];
        for (name, kind, help, value) in rows {
            metrics::write(&mut out, name, kind, help, value);
        }
        out
    }

    /// A link to the Redis of `config` (nothing is connected yet).
    pub fn new(config: ClusterConfig) -> RedisResult<Arc<Self>> {
        use sha1::Digest;
        let client = redis::Client::open(config.url.as_str())?;
        let sha = sha1::Sha1::digest(POST_SCRIPT.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (events, events_rx) = tokio::sync::mpsc::channel(4096);
        Ok(Arc::new(Self {
            id: super::hub::random_token()[..12].to_owned(),
            config,
            client,
            sha,
            conn: tokio::sync::Mutex::new(None),
            queue: Mutex::new(VecDeque::new()),
            queued: Notify::new(),
            in_flight: AtomicU64::new(0),
            cmd_up: AtomicBool::new(false),
            sub_up: AtomicBool::new(false),
            down_since: Mutex::new(Some(Instant::now())),
            events,
            events_rx: Mutex::new(Some(events_rx)),
            metrics: ClusterMetrics::default(),
        }))
    }

    /// Starts the publisher, the subscriber, the heartbeat and the event
    /// writer. They run until the runtime ends (or, for the publisher,
    /// until its queue is flushed after shutdown).
    pub fn start(self: &Arc<Self>, hub: &Arc<Hub>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(self.clone().publisher(hub.clone())));
        tasks.push(tokio::spawn(self.clone().subscriber(hub.clone())));
        tasks.push(tokio::spawn(self.clone().heartbeat(hub.clone())));
        if let Some(rx) = lock(&self.events_rx).take() {
            tasks.push(tokio::spawn(self.clone().event_writer(rx)));
        }
        tasks
    }

    /// Whether Redis works for us now, and if not, since when it did not.
    pub fn health(&self) -> Result<(), Duration> {
        match *lock(&self.down_since) {
            None => Ok(()),
            Some(since) => Err(since.elapsed()),
        }
    }

    fn set_state(&self, cmd: Option<bool>, sub: Option<bool>) {
        if let Some(c) = cmd {
            self.cmd_up.store(c, Ordering::Relaxed);
        }
        if let Some(s) = sub {
            self.sub_up.store(s, Ordering::Relaxed);
        }
        let up = self.cmd_up.load(Ordering::Relaxed) && self.sub_up.load(Ordering::Relaxed);
        let was = self.metrics.up.swap(up, Ordering::Relaxed);
        let mut since = lock(&self.down_since);
        match (was, up) {
            (false, true) => {
                if let Some(t) = since.take() {
                    info!(after = ?t.elapsed(), "redis: up");
                }
            }
            (true, false) => {
                warn!("redis: down; serving local clients, retrying");
                *since = Some(Instant::now());
            }
            _ => {}
        }
    }

    /// The command connection, made (and the script loaded) if needed.
    async fn conn(&self) -> RedisResult<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(IO_TIMEOUT));
        let mut c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(POST_SCRIPT)
            .query_async(&mut c)
            .await?;
        self.metrics.reconnects.fetch_add(1, Ordering::Relaxed);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `f` on the command connection; any error drops the connection
    /// (the next call makes a new one) and marks Redis down.
    async fn with_conn<T, F, Fut>(&self, f: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let result = match self.conn().await {
            Ok(c) => f(c).await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.set_state(Some(true), None),
            Err(e) => {
                debug!(error = %e, "redis command failed");
                *self.conn.lock().await = None;
                self.set_state(Some(false), None);
            }
        }
        result
    }

    // ---- posts ----------------------------------------------------------

    /// Queues a post for Redis. `Err(QueueFull)` when the queue is full.
    pub fn enqueue(&self, post: Post) -> Result<(), QueueFull> {
        let mut q = lock(&self.queue);
        if q.len() >= self.config.queue_limit {
            return Err(QueueFull);
        }
        q.push_back(post);
        self.metrics.queued.store(q.len() as u64, Ordering::Relaxed);
        drop(q);
        self.queued.notify_one();
        Ok(())
    }

    /// Waits until every queued post is acked or `limit` passes. Returns
    /// how many were left.
    pub async fn flush(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let left = lock(&self.queue).len() + self.in_flight.load(Ordering::Relaxed) as usize;
            if left == 0 || Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn publisher(self: Arc<Self>, hub: Arc<Hub>) {
        let mut backoff = Backoff::new();
        loop {
            let batch: Vec<Post> = loop {
                let notified = self.queued.notified();
                {
                    let mut q = lock(&self.queue);
                    // A client that left before Redis took its post never
                    // got an ack: its page shows it unsent. Drop it rather
                    // than deliver something its sender was told failed.
                    let before = q.len();
                    q.retain(|p| !p.client.is_gone());
                    self.metrics
                        .abandoned
                        .fetch_add((before - q.len()) as u64, Ordering::Relaxed);
                    if !q.is_empty() {
                        let n = q.len().min(MAX_BATCH);
                        self.in_flight.store(n as u64, Ordering::Relaxed);
                        let batch = q.drain(..n).collect();
                        self.metrics.queued.store(q.len() as u64, Ordering::Relaxed);
                        break batch;
                    }
                }
                notified.await;
            };
            let mut pipe = redis::pipe();
            for p in &batch {
                pipe.cmd("EVALSHA")
                    .arg(&self.sha)
                    .arg(3)
                    .arg(key_id(&p.key))
                    .arg(key_log(&p.key))
                    .arg(format!("chat:op:{}", p.op))
                    .arg(self.config.history_len)
                    .arg(&p.from)
                    .arg(&p.text)
                    .arg(p.ts)
                    .arg(BUS)
                    .arg(&p.event_head);
            }
            let result: RedisResult<Vec<u64>> = self
                .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
                .await;
            match result {
                Ok(ids) => {
                    backoff.reset();
                    for (p, id) in batch.iter().zip(ids) {
                        hub.acked(&p.client, &p.client_id, id);
                    }
                    self.metrics
                        .published
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.in_flight.store(0, Ordering::Relaxed);
                }
                Err(e) => {
                    warn!(error = %e, waiting = batch.len(), "redis: posts wait for redis");
                    // Back to the front, in order; their op ids make the
                    // retry safe if Redis ran them before failing.
                    {
                        let mut q = lock(&self.queue);
                        for p in batch.into_iter().rev() {
                            q.push_front(p);
                        }
                        self.metrics.queued.store(q.len() as u64, Ordering::Relaxed);
                        self.in_flight.store(0, Ordering::Relaxed);
                    }
                    backoff.wait().await;
                }
            }
        }
    }

    // ---- events: typing, presence, heartbeats ---------------------------

    /// Publishes an ephemeral event; dropped if Redis is away or too slow.
    pub fn publish(&self, event: &Bus) {
        let Ok(json) = serde_json::to_string(event) else {
            return;
        };
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(BUS).arg(json);
        let _ = self.events.try_send(Event::Cmds(vec![cmd]));
    }

    /// Publishes this server's nicks in `room` and stores them in the
    /// room's presence hash, for servers that start later.
    pub fn publish_presence(&self, room: &str, nicks: Vec<String>) {
        let mut store = if nicks.is_empty() {
            let mut c = redis::cmd("HDEL");
            c.arg(key_presence(room)).arg(&self.id);
            c
        } else {
            let mut c = redis::cmd("HSET");
            c.arg(key_presence(room))
                .arg(&self.id)
                .arg(serde_json::to_string(&nicks).unwrap_or_default());
            c
        };
        let event = Bus::Presence {
            s: self.id.clone(),
            room: room.to_owned(),
            nicks,
        };
        let mut publish = redis::cmd("PUBLISH");
        publish
            .arg(BUS)
            .arg(serde_json::to_string(&event).unwrap_or_default());
        let _ = self
            .events
            .try_send(Event::Cmds(vec![std::mem::take(&mut store), publish]));
    }

    /// Waits (up to `limit`) until the events queued before this call are
    /// written: on shutdown, so that the others see our users leave now,
    /// not when our heartbeat times out.
    pub async fn sync_events(&self, limit: Duration) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.events.send(Event::Sync(tx)).await.is_ok() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }

    async fn event_writer(self: Arc<Self>, mut rx: tokio::sync::mpsc::Receiver<Event>) {
        let mut next = rx.recv().await;
        while let Some(first) = next.take() {
            let mut pipe = redis::pipe();
            let mut synced = Vec::new();
            let mut add = |event: Event| match event {
                Event::Cmds(cmds) => {
                    for c in cmds {
                        pipe.add_command(c).ignore();
                    }
                }
                Event::Sync(done) => synced.push(done),
            };
            add(first);
            while let Ok(more) = rx.try_recv() {
                add(more);
            }
            let _: RedisResult<()> = self
                .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
                .await;
            for done in synced {
                let _ = done.send(());
            }
            next = rx.recv().await;
        }
    }

    async fn heartbeat(self: Arc<Self>, hub: Arc<Hub>) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.beat().await;
            hub.sweep_servers(self.config.presence_ttl);
        }
    }

    async fn beat(&self) {
        let hb = serde_json::to_string(&Bus::Hb { s: self.id.clone() }).unwrap_or_default();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key_alive(&self.id))
            .arg(1)
            .arg("PX")
            .arg(self.config.presence_ttl.as_millis() as u64)
            .ignore()
            .cmd("PUBLISH")
            .arg(BUS)
            .arg(hb)
            .ignore();
        let _: RedisResult<()> = self
            .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
            .await;
    }

    // ---- the subscription -----------------------------------------------

    async fn subscriber(self: Arc<Self>, hub: Arc<Hub>) {
        let mut backoff = Backoff::new();
        loop {
            let reason = self.subscribe_once(&hub, &mut backoff).await;
            self.set_state(None, Some(false));
            warn!(%reason, "redis: subscription lost; resubscribing");
            backoff.wait().await;
        }
    }

    /// One subscription's life; returns why it ended.
    async fn subscribe_once(&self, hub: &Arc<Hub>, backoff: &mut Backoff) -> String {
        let made = tokio::time::timeout(IO_TIMEOUT, async {
            let mut ps = self.client.get_async_pubsub().await?;
            ps.subscribe(BUS).await?;
            RedisResult::Ok(ps)
        })
        .await;
        let ps = match made {
            Ok(Ok(ps)) => ps,
            Ok(Err(e)) => return format!("subscribe: {e}"),
            Err(_) => return "subscribe: timed out".into(),
        };
        let mut stream = ps.into_on_message();
        // Until our own heartbeat comes back, the path is not proven.
        self.beat().await;
        let mut confirmed = false;
        let mut last_own = Instant::now();
        let mut probe = tokio::time::interval(self.config.heartbeat);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)) => {
                    let Some(msg) = msg else {
                        return "the subscription's connection closed".into();
                    };
                    self.metrics.bus_in.fetch_add(1, Ordering::Relaxed);
                    match serde_json::from_slice::<Bus>(msg.get_payload_bytes()) {
                        Ok(Bus::Hb { s }) if s == self.id => {
                            last_own = Instant::now();
                            if !confirmed {
                                confirmed = true;
                                backoff.reset();
                                // Whatever was published while we were not
                                // listening is in the streams; who is where
                                // is in the presence hashes. Read both
                                // before saying we are up.
                                hub.resync().await;
                                self.set_state(None, Some(true));
                            }
                        }
                        Ok(event) => hub.on_bus(event),
                        Err(e) => {
                            self.metrics.bus_bad.fetch_add(1, Ordering::Relaxed);
                            warn!(error = %e, "redis: unreadable bus event");
                        }
                    }
                }
                _ = probe.tick() => {
                    if last_own.elapsed() > self.config.probe_timeout {
                        self.metrics.probe_failures.fetch_add(1, Ordering::Relaxed);
                        return format!(
                            "probe: our heartbeat did not come back within {:?}",
                            self.config.probe_timeout
                        );
                    }
                }
            }
        }
    }

    // ---- reads ----------------------------------------------------------

    /// The last id given in `key` (0 if none).
    pub async fn last_id(&self, key: &str) -> RedisResult<u64> {
        let k = key_id(key);
        let id: Option<u64> = self
            .with_conn(|mut c| async move { redis::cmd("GET").arg(k).query_async(&mut c).await })
            .await?;
        Ok(id.unwrap_or(0))
    }

    /// Up to `limit` messages of `key` with ids below `before`, oldest
    /// first, and whether older ones exist.
    pub async fn history(&self, key: &str, before: u64, limit: u32) -> RedisResult<Page> {
        let end = if before == u64::MAX {
            "+".to_owned()
        } else {
            format!("({before}-0")
        };
        let k = key_log(key);
        let reply: redis::streams::StreamRangeReply = self
            .with_conn(|mut c| async move {
                redis::cmd("XREVRANGE")
                    .arg(k)
                    .arg(end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(u64::from(limit) + 1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut page: Vec<ChatMessage> = reply.ids.iter().map(|e| to_message(key, e)).collect();
        let more = page.len() > limit as usize;
        page.truncate(limit as usize);
        page.reverse();
        Ok((page, more))
    }

    /// The messages of `key` with `after < id <= upto`, oldest first; the
    /// newest `limit` if there are more.
    pub async fn range(
        &self,
        key: &str,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> RedisResult<Vec<ChatMessage>> {
        if upto <= after {
            return Ok(Vec::new());
        }
        let k = key_log(key);
        let reply: redis::streams::StreamRangeReply = self
            .with_conn(|mut c| async move {
                redis::cmd("XREVRANGE")
                    .arg(k)
                    .arg(format!("{upto}-0"))
                    .arg(format!("({after}-0"))
                    .arg("COUNT")
                    .arg(limit)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut page: Vec<ChatMessage> = reply.ids.iter().map(|e| to_message(key, e)).collect();
        page.reverse();
        Ok(page)
    }

    /// Fills a hole in `room`'s delivery, `after < id <= upto`, from its
    /// stream, retrying until Redis answers or the server shuts down.
    pub fn fill(self: &Arc<Self>, hub: &Arc<Hub>, room: String, after: u64, upto: u64) {
        let (this, hub) = (self.clone(), hub.clone());
        tokio::spawn(async move {
            let mut backoff = Backoff::new();
            loop {
                match this.range(&room, after, upto, MAX_FILL).await {
                    Ok(messages) => {
                        this.metrics.gap_fills.fetch_add(1, Ordering::Relaxed);
                        this.metrics
                            .gap_messages
                            .fetch_add(messages.len() as u64, Ordering::Relaxed);
                        debug!(%room, after, upto, got = messages.len(), "gap filled");
                        hub.filled(&room, upto, messages);
                        return;
                    }
                    Err(_) if hub.is_shutting_down() => return,
                    Err(_) => backoff.wait().await,
                }
            }
        });
    }

    /// The last ids of `rooms`, for a resync.
    pub async fn last_ids(&self, rooms: &[String]) -> RedisResult<Vec<u64>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = rooms.iter().map(|r| key_id(r)).collect();
        let ids: Vec<Option<u64>> = self
            .with_conn(
                |mut c| async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await },
            )
            .await?;
        Ok(ids.into_iter().map(|i| i.unwrap_or(0)).collect())
    }

    /// Who is in `room` on each live server other than us, from its
    /// presence hash (servers whose heartbeat key expired are skipped).
    pub async fn presence(&self, room: &str) -> RedisResult<Vec<(String, Vec<String>)>> {
        let k = key_presence(room);
        let all: Vec<(String, String)> = self
            .with_conn(
                |mut c| async move { redis::cmd("HGETALL").arg(k).query_async(&mut c).await },
            )
            .await?;
        let others: Vec<(String, String)> =
            all.into_iter().filter(|(s, _)| *s != self.id).collect();
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let alive_keys: Vec<String> = others.iter().map(|(s, _)| key_alive(s)).collect();
        let mut pipe = redis::pipe();
        for k in &alive_keys {
            pipe.cmd("EXISTS").arg(k);
        }
        let alive: Vec<bool> = self
            .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        Ok(others
            .into_iter()
            .zip(alive)
            .filter(|(_, a)| *a)
            .map(|((s, nicks), _)| (s, serde_json::from_str(&nicks).unwrap_or_default()))
            .collect())
    }
}

impl Cluster {
    /// Stores the session secret of `nick`, so that its owner can reclaim
    /// it on any server (kept a day after its last connection).
    pub fn remember_session(&self, nick: &str, session: &str) {
        let mut c = redis::cmd("SET");
        c.arg(format!("chat:session:{nick}"))
            .arg(session)
            .arg("EX")
            .arg(86_400);
        let _ = self.events.try_send(Event::Cmds(vec![c]));
    }

    /// The session secret last given for `nick`.
    pub async fn session_of(&self, nick: &str) -> RedisResult<Option<String>> {
        let k = format!("chat:session:{nick}");
        self.with_conn(|mut c| async move { redis::cmd("GET").arg(k).query_async(&mut c).await })
            .await
    }

    /// Removes a dead server's entry from `room`'s presence hash.
    pub fn forget(&self, room: &str, server: &str) {
        let mut c = redis::cmd("HDEL");
        c.arg(key_presence(room)).arg(server);
        let _ = self.events.try_send(Event::Cmds(vec![c]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the script publishes, head + id + `}`, parses back to the
    /// event with that id, whatever the text holds.
    #[test]
    fn event_head_takes_the_id_redis_gives() {
        for text in ["hi", "0}", "\"id\":0}", "{\"t\":\"hb\"}", "é ✓ 0"] {
            let msg = Bus::Msg {
                room: "general".into(),
                from: "alice".into(),
                text: text.into(),
                ts: 1_700_000_000_000,
                id: 0,
            };
            let published = format!("{}{}}}", event_head(&msg), 4_294_967_301u64);
            match serde_json::from_str::<Bus>(&published).unwrap() {
                Bus::Msg { id, text: t, .. } => assert_eq!((id, t.as_str()), (4_294_967_301, text)),
                other => panic!("{other:?}"),
            }
            let dm = Bus::Dm {
                conv: "@alice|bob".into(),
                from: "alice".into(),
                to: "bob".into(),
                text: text.into(),
                ts: 5,
                id: 0,
            };
            let published = format!("{}7}}", event_head(&dm));
            match serde_json::from_str::<Bus>(&published).unwrap() {
                Bus::Dm { id, to, .. } => assert_eq!((id, to.as_str()), (7, "bob")),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn stream_entry_ids_are_message_ids() {
        assert_eq!(entry_id("42-0"), 42);
        assert_eq!(entry_id("18446744073709551615-0"), u64::MAX);
        assert_eq!(entry_id("garbage"), 0);
    }
}
