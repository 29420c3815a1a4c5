//! The hub: rooms, their members, message ids, and fan-out.
//!
//! Each room has its own lock; posting to a room assigns the next id,
//! queues the message for the history thread and hands the encoded frame
//! to every member's outbox, all under that lock, so that ids, history and
//! delivery agree on one order. A frame is encoded once ([`PreparedFrame`])
//! and the same bytes are shared by every recipient.
//!
//! Each connection has an [`Outbox`] bounded in bytes. When it is full,
//! ephemeral events (typing, presence) are dropped; a chat message that
//! would not fit closes the connection with 1013 instead, since dropping it
//! would lose data; the client reconnects and resumes from history. A slow
//! reader never delays anyone else: nothing here waits on a socket.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::proto::{CloseCode, CloseFrame, DeflateConfig, PreparedFrame};

use super::metrics::Metrics;
use super::protocol::{ChatMessage, MAX_ROOMS, Refusal, ServerMsg};
use super::store::Store;

/// A connection's number, unique for the server's life.
pub type ConnId = u64;

/// Whether an event may be dropped under pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Messages, acks: never dropped.
    Chat,
    /// Typing, presence: dropped first.
    Ephemeral,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a hub lock leaves plain data behind, with no
    // invariant half-updated that the next holder could trip on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the Unix epoch, the `ts` of messages.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A connection's queue of frames to send, bounded in bytes.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    limit: usize,
}

#[derive(Debug, Default)]
struct OutboxState {
    frames: VecDeque<PreparedFrame>,
    bytes: usize,
    /// A close was requested: nothing more is queued.
    closed: bool,
    /// The close frame, until the session takes it.
    close: Option<CloseFrame>,
    waker: Option<Waker>,
}

impl Outbox {
    fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(OutboxState::default()),
            limit,
        }
    }

    /// Queues a frame. Returns whether it was queued.
    pub fn push(&self, frame: &PreparedFrame, kind: Kind, metrics: &Metrics) -> bool {
        let mut s = lock(&self.state);
        if s.closed {
            return false;
        }
        let len = frame.as_bytes().len();
        if s.bytes + len > self.limit {
            match kind {
                Kind::Ephemeral => metrics.drops.inc(),
                Kind::Chat => {
                    metrics.slow_closes.inc();
                    s.close = Some(CloseFrame::new(
                        CloseCode::TRY_AGAIN_LATER,
                        "too slow: reconnect and resume",
                    ));
                    s.frames.clear();
                    s.bytes = 0;
                    if let Some(w) = s.waker.take() {
                        w.wake();
                    }
                }
            }
            return false;
        }
        s.frames.push_back(frame.clone());
        s.bytes += len;
        metrics.messages_out.inc();
        metrics.bytes_out.add(len as u64);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        true
    }

    /// Asks the connection to close with `frame` (the first such request
    /// wins).
    pub fn close(&self, frame: CloseFrame) {
        let mut s = lock(&self.state);
        if !s.closed {
            s.closed = true;
            s.close = Some(frame);
        }
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// Whether there is something to take; if not, wakes `cx` when there is.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> bool {
        let mut s = lock(&self.state);
        if s.frames.is_empty() && s.close.is_none() {
            s.waker = Some(cx.waker().clone());
            false
        } else {
            true
        }
    }

    /// Takes frames worth up to `budget` bytes (at least one), and the
    /// close request if one is pending (handed out once).
    pub fn take(&self, budget: usize) -> (Vec<PreparedFrame>, Option<CloseFrame>) {
        let mut s = lock(&self.state);
        let mut out = Vec::new();
        let mut taken = 0;
        while let Some(f) = s.frames.front() {
            let len = f.as_bytes().len();
            if !out.is_empty() && taken + len > budget {
                break;
            }
            taken += len;
            if let Some(f) = s.frames.pop_front() {
                out.push(f);
            }
        }
        s.bytes -= taken;
        (out, s.close.take())
    }
}

/// One connected client.
#[derive(Debug)]
pub struct Client {
    /// Its connection number.
    pub id: ConnId,
    /// The nick in use.
    pub nick: String,
    /// The secret that reclaims the nick after a reconnect.
    pub session: String,
    /// What to send it.
    pub outbox: Outbox,
    rooms: Mutex<BTreeSet<String>>,
}

impl Client {
    /// The rooms it is in.
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.rooms).iter().cloned().collect()
    }

    /// Whether it is in `room`.
    pub fn in_room(&self, room: &str) -> bool {
        lock(&self.rooms).contains(room)
    }
}

#[derive(Debug, Default)]
struct Room {
    last_id: u64,
    members: HashMap<ConnId, Arc<Client>>,
    /// Connections per nick: a nick is present while it has one.
    nicks: HashMap<String, usize>,
    /// Nicks whose presence changed since the last flush.
    changed: BTreeSet<String>,
    /// When each nick last had a typing event relayed.
    typing: HashMap<String, Instant>,
}

/// How often typing events are relayed per user and room.
const TYPING_INTERVAL: Duration = Duration::from_secs(2);

/// The hub's settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Bytes an outbox may hold.
    pub outbox_limit: usize,
    /// Whether nicks come from tokens (several connections may share one).
    pub authenticated: bool,
    /// Compress broadcast frames once, for connections that negotiated
    /// permessage-deflate (RFC 7692).
    pub deflate: Option<DeflateConfig>,
}

/// All rooms and clients.
pub struct Hub {
    rooms: Mutex<HashMap<String, Arc<Mutex<Room>>>>,
    /// The highest id per room (and DM conversation) when the server
    /// started, for rooms not created yet.
    start_ids: Mutex<HashMap<String, u64>>,
    dm_ids: Mutex<HashMap<String, u64>>,
    users: Mutex<HashMap<String, Vec<Arc<Client>>>>,
    next_conn: AtomicU64,
    shutting_down: AtomicBool,
    config: HubConfig,
    /// The history thread.
    pub store: Store,
    /// The counters of `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl Hub {
    /// A server frame for one or many recipients, also compressed once
    /// when deflate is on (each connection picks the form it negotiated).
    fn prepare(&self, json: String) -> PreparedFrame {
        match &self.config.deflate {
            Some(deflate) => PreparedFrame::text_deflated(json, deflate),
            None => PreparedFrame::text(json),
        }
    }

    /// A hub continuing from the ids already in `store`.
    pub fn new(
        store: Store,
        last_ids: Vec<(String, u64)>,
        metrics: Arc<Metrics>,
        config: HubConfig,
    ) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            start_ids: Mutex::new(last_ids.into_iter().collect()),
            dm_ids: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            config,
            store,
            metrics,
        }
    }

    fn start_id(&self, key: &str) -> u64 {
        lock(&self.start_ids).get(key).copied().unwrap_or(0)
    }

    fn room(&self, name: &str) -> Arc<Mutex<Room>> {
        lock(&self.rooms)
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Room {
                    last_id: self.start_id(name),
                    ..Room::default()
                }))
            })
            .clone()
    }

    /// Registers a connection under `wanted` (or a guest name). Without
    /// authentication, nicks are unique: a taken one gets a suffix, unless
    /// `session` proves it is the caller's own from before, in which case
    /// the old connection is replaced (closed with 4000).
    pub fn register(&self, wanted: Option<&str>, session: Option<&str>) -> Arc<Client> {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut users = lock(&self.users);
        let base = wanted.map_or_else(|| format!("guest{id}"), str::to_owned);
        let mut nick = base.clone();
        let mut reclaimed = None;
        if !self.config.authenticated {
            let mut n = 1;
            while let Some(holders) = users.get(&nick) {
                if let Some(old) = holders.iter().find(|c| Some(c.session.as_str()) == session) {
                    reclaimed = Some(old.clone());
                    break;
                }
                n += 1;
                // Keep the suffixed nick within the 24-character rule.
                let suffix = format!("-{n}");
                let keep = base.len().min(24 - suffix.len());
                nick = format!("{}{suffix}", &base[..keep]);
            }
        }
        let session = match &reclaimed {
            Some(old) => {
                old.outbox.close(CloseFrame::new(
                    CloseCode::try_from(4000).unwrap_or(CloseCode::NORMAL),
                    "replaced by a newer connection",
                ));
                if let Some(holders) = users.get_mut(&nick) {
                    holders.retain(|c| c.id != old.id);
                }
                old.session.clone()
            }
            None => random_token(),
        };
        let client = Arc::new(Client {
            id,
            nick: nick.clone(),
            session,
            outbox: Outbox::new(self.config.outbox_limit),
            rooms: Mutex::new(BTreeSet::new()),
        });
        users.entry(nick).or_default().push(client.clone());
        client
    }

    /// Removes a connection from its rooms and the user list.
    pub fn unregister(&self, client: &Arc<Client>) {
        for room in client.rooms() {
            self.leave(client, &room);
        }
        let mut users = lock(&self.users);
        if let Some(holders) = users.get_mut(&client.nick) {
            holders.retain(|c| c.id != client.id);
            if holders.is_empty() {
                users.remove(&client.nick);
            }
        }
    }

    /// Joins `room`. Returns the roster (nicks present) and the room's last
    /// message id at the moment of joining: every later message reaches
    /// the client's outbox, every earlier one is in history.
    pub fn join(&self, client: &Arc<Client>, room: &str) -> Result<(Vec<String>, u64), Refusal> {
        {
            let mut rooms = lock(&client.rooms);
            if !rooms.contains(room) && rooms.len() >= MAX_ROOMS {
                return Err(Refusal::new(
                    "too_many_rooms",
                    format!("at most {MAX_ROOMS} rooms"),
                ));
            }
            rooms.insert(room.to_owned());
        }
        let room_arc = self.room(room);
        let mut r = lock(&room_arc);
        if r.members.insert(client.id, client.clone()).is_none() {
            if r.members.len() == 1 {
                self.metrics.rooms.inc();
            }
            let count = r.nicks.entry(client.nick.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                r.changed.insert(client.nick.clone());
            }
        }
        let mut roster: Vec<String> = r.nicks.keys().cloned().collect();
        roster.sort();
        Ok((roster, r.last_id))
    }

    /// Leaves `room` (nothing if not in it).
    pub fn leave(&self, client: &Arc<Client>, room: &str) {
        if !lock(&client.rooms).remove(room) {
            return;
        }
        let room_arc = self.room(room);
        let mut r = lock(&room_arc);
        if r.members.remove(&client.id).is_some() {
            if r.members.is_empty() {
                self.metrics.rooms.dec();
            }
            if let Some(count) = r.nicks.get_mut(&client.nick) {
                *count -= 1;
                if *count == 0 {
                    r.nicks.remove(&client.nick);
                    r.changed.insert(client.nick.clone());
                }
            }
        }
    }

    /// Posts to a room: the next id, history, every member, then the ack.
    pub fn post(
        &self,
        client: &Arc<Client>,
        room: &str,
        text: &str,
        client_id: &str,
    ) -> Result<u64, Refusal> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(Refusal::new("unavailable", "the server is shutting down"));
        }
        if !client.in_room(room) {
            return Err(Refusal::new("not_in_room", format!("join {room} first")));
        }
        let room_arc = self.room(room);
        let mut r = lock(&room_arc);
        r.last_id += 1;
        let message = ChatMessage {
            room: room.to_owned(),
            id: r.last_id,
            from: client.nick.clone(),
            text: text.to_owned(),
            ts: now_ms(),
        };
        let frame = self.prepare(ServerMsg::Msg(&message).to_json());
        for member in r.members.values() {
            member.outbox.push(&frame, Kind::Chat, &self.metrics);
        }
        let id = message.id;
        self.store.insert(message);
        drop(r);
        let ack = self.prepare(ServerMsg::Ack { client_id, id }.to_json());
        client.outbox.push(&ack, Kind::Chat, &self.metrics);
        Ok(id)
    }

    /// A private message to every connection of `to` and of the sender.
    pub fn dm(
        &self,
        client: &Arc<Client>,
        to: &str,
        text: &str,
        client_id: &str,
    ) -> Result<u64, Refusal> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(Refusal::new("unavailable", "the server is shutting down"));
        }
        let recipients: Vec<Arc<Client>> = {
            let users = lock(&self.users);
            let Some(targets) = users.get(to) else {
                return Err(Refusal::new("unknown_user", format!("{to} is not online")));
            };
            let mine = users.get(&client.nick).cloned().unwrap_or_default();
            targets
                .iter()
                .chain(mine.iter().filter(|c| c.nick != to))
                .cloned()
                .collect()
        };
        // The conversation's key: both nicks, sorted; '@' keeps it out of
        // the room namespace.
        let (a, b) = if client.nick.as_str() <= to {
            (client.nick.as_str(), to)
        } else {
            (to, client.nick.as_str())
        };
        let key = format!("@{a}|{b}");
        let mut ids = lock(&self.dm_ids);
        let id = ids
            .entry(key.clone())
            .or_insert_with(|| self.start_id(&key));
        *id += 1;
        let message = ChatMessage {
            room: key,
            id: *id,
            from: client.nick.clone(),
            text: text.to_owned(),
            ts: now_ms(),
        };
        let frame = self.prepare(
            ServerMsg::Dm {
                id: message.id,
                from: &message.from,
                to,
                text,
                ts: message.ts,
            }
            .to_json(),
        );
        for r in &recipients {
            r.outbox.push(&frame, Kind::Chat, &self.metrics);
        }
        let id = message.id;
        self.store.insert(message);
        drop(ids);
        let ack = self.prepare(ServerMsg::Ack { client_id, id }.to_json());
        client.outbox.push(&ack, Kind::Chat, &self.metrics);
        Ok(id)
    }

    /// Relays a typing event to the room's other nicks, at most one per
    /// user and room every 2 s.
    pub fn typing(&self, client: &Arc<Client>, room: &str) -> Result<(), Refusal> {
        if !client.in_room(room) {
            return Err(Refusal::new("not_in_room", format!("join {room} first")));
        }
        let room_arc = self.room(room);
        let mut r = lock(&room_arc);
        let now = Instant::now();
        if r.typing
            .get(&client.nick)
            .is_some_and(|t| now.duration_since(*t) < TYPING_INTERVAL)
        {
            return Ok(());
        }
        r.typing.insert(client.nick.clone(), now);
        let frame = self.prepare(
            ServerMsg::Typing {
                room,
                user: &client.nick,
            }
            .to_json(),
        );
        for member in r.members.values().filter(|m| m.nick != client.nick) {
            member.outbox.push(&frame, Kind::Ephemeral, &self.metrics);
        }
        Ok(())
    }

    /// Sends one `presence` per room whose roster changed since the last
    /// call: the nicks that are now present as `joined`, the ones now gone
    /// as `left`. A storm of reconnects becomes one event per room per
    /// call, not one roster per connection per member.
    pub fn flush_presence(&self) {
        let rooms: Vec<(String, Arc<Mutex<Room>>)> = lock(&self.rooms)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, room_arc) in rooms {
            let mut r = lock(&room_arc);
            if r.changed.is_empty() {
                continue;
            }
            let changed = std::mem::take(&mut r.changed);
            let (joined, left): (Vec<String>, Vec<String>) =
                changed.into_iter().partition(|n| r.nicks.contains_key(n));
            let frame = self.prepare(
                ServerMsg::Presence {
                    room: &name,
                    joined: &joined,
                    left: &left,
                }
                .to_json(),
            );
            for member in r.members.values() {
                member.outbox.push(&frame, Kind::Ephemeral, &self.metrics);
            }
        }
    }

    /// Stops accepting messages and asks every connection to close (1001).
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        for holders in lock(&self.users).values() {
            for c in holders {
                c.outbox.close(CloseFrame::new(
                    CloseCode::GOING_AWAY,
                    "server shutting down",
                ));
            }
        }
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

/// 128 random bits, hex: a session secret.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    crate::proto::MaskRng::from_entropy().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
