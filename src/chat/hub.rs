//! The hub: rooms, their members, message ids, and fan-out.
//!
//! Each room has its own lock; posting to a room assigns the next id and
//! queues the message for the history thread under that lock, with its
//! delivery (the encoded frame for the members present, the ack for the
//! sender) to run once it is committed. The history thread is first in,
//! first out, so ids, history and delivery agree on one order, and an ack
//! means the message is on disk. A frame is encoded once
//! ([`PreparedFrame`]) and the same bytes are shared by every recipient.
//!
//! Each connection has an [`Outbox`] bounded in bytes (`outbox.rs`, with
//! its policy for slow readers): the hub only ever pushes into it, so a
//! slow reader never delays anyone else. Rooms live in memory while
//! someone here is in them; the presence tick drops the idle ones.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::proto::{CloseCode, CloseFrame, DeflateConfig, PreparedFrame};

pub use super::outbox::{Kind, Outbox, slow_close};

use super::cluster::{Bus, Cluster, Post};
use super::lock;

mod scaled;
use super::metrics::Metrics;
use super::protocol::ErrorCode::{NotInRoom, RoomsFull, TooManyRooms, Unavailable, UnknownUser};
use super::protocol::{ChatMessage, MAX_ROOMS, Refusal, ServerMsg};
use super::store::{Outcome, Page, Store};

/// A connection's number, unique for the server's life.
pub type ConnId = u64;

/// A join's result: the room's roster, and its last id when joined.
pub type Joined = (Vec<String>, u64);

/// Why a join failed.
#[derive(Debug)]
pub enum JoinError {
    /// Refused (too many rooms): the connection carries on.
    Refused(Refusal),
    /// The room's state could not be read (scaled out, Redis away).
    Unavailable(Refusal),
}

/// Milliseconds since the Unix epoch, the `ts` of messages.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
    /// Its connection has ended.
    gone: AtomicBool,
}

impl Client {
    /// Whether its connection has ended.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

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
    /// The last id handed to members: every later message reaches their
    /// outboxes, every earlier one is in history. Alone, the last id
    /// given; scaled out, the last one delivered from the bus.
    last_id: u64,
    members: HashMap<ConnId, Arc<Client>>,
    /// Connections per nick: a nick is present while it has one.
    nicks: HashMap<String, usize>,
    /// Nicks whose presence changed since the last flush.
    changed: BTreeSet<String>,
    /// When each nick last had a typing event relayed.
    typing: HashMap<String, Instant>,
    /// Scaled out: messages from the bus waiting for a hole before them
    /// to be filled from the room's stream.
    pending: BTreeMap<u64, ChatMessage>,
    /// Scaled out: a fill is under way.
    filling: bool,
    /// Scaled out: the room's nicks on other servers, by server.
    remote: HashMap<String, BTreeSet<String>>,
    /// Scaled out: our own nicks changed since we last published them.
    local_changed: bool,
    /// Joins under way (scaled out, a join first reads Redis): the room
    /// is not dropped while one is.
    joining: usize,
    /// Dropped from the hub's map: whoever still holds it must look again.
    dropped: bool,
}

impl Room {
    /// Whether `nick` is in the room, here or on a live server.
    fn present(&self, nick: &str) -> bool {
        self.nicks.contains_key(nick) || self.remote.values().any(|s| s.contains(nick))
    }

    /// Everyone in the room, sorted.
    fn roster(&self) -> Vec<String> {
        let mut all: BTreeSet<&String> = self.nicks.keys().collect();
        for set in self.remote.values() {
            all.extend(set.iter());
        }
        all.into_iter().cloned().collect()
    }

    /// Whether the room may leave memory: nobody here is in it or joining
    /// it, and nothing waits to be sent or published. Its history stays in
    /// the database, and its last id in [`Hub::start_ids`].
    fn idle(&self) -> bool {
        self.members.is_empty()
            && self.joining == 0
            && self.pending.is_empty()
            && !self.filling
            && !self.local_changed
    }

    /// Hands a message to every member, in the order called.
    fn send_to_members(&self, frame: &PreparedFrame, metrics: &Metrics) {
        for member in self.members.values() {
            member.outbox.push(frame, Kind::Chat, metrics);
        }
    }
}

/// What a local post does once the history thread has its batch on disk:
/// built by [`Hub::post`] or [`Hub::dm`] under the lock that gave the id,
/// run on the history thread ([`super::store::OnCommit`]).
///
/// An ack means the message is durable, and no one sees an id before the
/// disk has it: a crash then loses only ids nobody saw, and the next
/// server, continuing from the ids on disk, may hand them out again
/// without anyone skipping or dropping a message.
struct Delivery {
    /// The `msg` or `dm` frame, encoded once.
    frame: PreparedFrame,
    /// Who was there when the id was given.
    recipients: Vec<Arc<Client>>,
    /// A room message's room: members who left it since get nothing.
    room: Option<String>,
    sender: Arc<Client>,
    ack: PreparedFrame,
    client_id: String,
    metrics: Arc<Metrics>,
}

impl Delivery {
    fn run(self, outcome: Outcome) {
        match outcome {
            Outcome::Committed => {
                for c in &self.recipients {
                    if self.room.as_deref().is_none_or(|room| c.in_room(room)) {
                        c.outbox.push(&self.frame, Kind::Chat, &self.metrics);
                    }
                }
                self.sender
                    .outbox
                    .push(&self.ack, Kind::Chat, &self.metrics);
            }
            Outcome::Failed => {
                // No one saw it: the sender's UI marks the post failed, and
                // it may send it again.
                self.metrics.errors.inc();
                let json = ServerMsg::Error {
                    code: Unavailable,
                    message: "the message could not be saved; try again",
                    client_id: Some(&self.client_id),
                }
                .to_json();
                self.sender
                    .outbox
                    .push(&PreparedFrame::text(json), Kind::Chat, &self.metrics);
            }
        }
    }
}

/// Where ids, history and fan-out live.
pub enum Backend {
    /// In this process, history in SQLite.
    Local(Store),
    /// In Redis, shared with other servers.
    Cluster(Arc<Cluster>),
}

/// Posts that may wait for the history thread (a stalled disk) before new
/// ones get `unavailable`: each holds its frame and recipients until its
/// commit. The same bound as the Redis queue's (`ClusterConfig`).
const LOCAL_QUEUE_LIMIT: usize = 10_000;

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
    /// The most rooms held in memory at once (a room with no members
    /// leaves memory at the next presence tick).
    pub max_rooms: usize,
}

/// All rooms and clients.
pub struct Hub {
    /// Ids, history and fan-out.
    backend: Backend,
    /// Scaled out: other servers, and when each was last heard from.
    servers: Mutex<HashMap<String, Instant>>,
    /// Scaled out: the nicks online on each other server.
    remote_users: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Scaled out: the rooms each other server last said it has users in,
    /// whether or not they are in memory here, so that a dead server's
    /// entries leave every room's presence hash in Redis. A leaf lock.
    remote_rooms: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Scaled out: our own online nicks changed since last published.
    users_changed: AtomicBool,
    /// Rooms in memory: those with members here (or being joined), and
    /// for a moment after the last one leaves. Lock order: a room's lock
    /// may be held while taking this one, never the other way round.
    rooms: Mutex<HashMap<String, Arc<Mutex<Room>>>>,
    /// Rooms whose presence changed, or that may have become idle, since
    /// the last presence tick: the tick walks these and no others. Taken
    /// last: nothing else is locked while holding it.
    dirty: Mutex<BTreeSet<String>>,
    /// The highest id per room (and DM conversation) not in memory: read
    /// from disk at start, and kept when a room leaves memory, so ids
    /// continue where they were.
    start_ids: Mutex<HashMap<String, u64>>,
    dm_ids: Mutex<HashMap<String, u64>>,
    users: Mutex<HashMap<String, Vec<Arc<Client>>>>,
    next_conn: AtomicU64,
    shutting_down: AtomicBool,
    config: HubConfig,
    /// The counters of `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl Hub {
    /// A server frame for one or many recipients, also compressed once
    /// when deflate is on (each connection picks the form it negotiated).
    pub(super) fn prepare(&self, json: String) -> PreparedFrame {
        match &self.config.deflate {
            Some(deflate) => PreparedFrame::text_deflated(json, deflate),
            None => PreparedFrame::text(json),
        }
    }

    /// A hub continuing from the ids already in `store`.
    pub fn new(
        backend: Backend,
        last_ids: Vec<(String, u64)>,
        metrics: Arc<Metrics>,
        config: HubConfig,
    ) -> Self {
        Self {
            backend,
            servers: Mutex::new(HashMap::new()),
            remote_users: Mutex::new(HashMap::new()),
            remote_rooms: Mutex::new(HashMap::new()),
            users_changed: AtomicBool::new(false),
            rooms: Mutex::new(HashMap::new()),
            dirty: Mutex::new(BTreeSet::new()),
            start_ids: Mutex::new(last_ids.into_iter().collect()),
            dm_ids: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            config,
            metrics,
        }
    }

    fn start_id(&self, key: &str) -> u64 {
        lock(&self.start_ids).get(key).copied().unwrap_or(0)
    }

    /// The room, if it is in memory.
    fn find_room(&self, name: &str) -> Option<Arc<Mutex<Room>>> {
        lock(&self.rooms).get(name).cloned()
    }

    /// The room, brought into memory if it is not, within
    /// [`HubConfig::max_rooms`].
    fn room(&self, name: &str) -> Result<Arc<Mutex<Room>>, Refusal> {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(name) {
            return Ok(room.clone());
        }
        if rooms.len() >= self.config.max_rooms {
            return Err(Refusal::new(
                RoomsFull,
                format!(
                    "the server holds its maximum of {} rooms; try again later",
                    self.config.max_rooms
                ),
            ));
        }
        let room = Arc::new(Mutex::new(Room {
            last_id: self.start_id(name),
            ..Room::default()
        }));
        rooms.insert(name.to_owned(), room.clone());
        self.metrics.rooms.set(rooms.len() as u64);
        Ok(room)
    }

    /// Notes that `name` needs the presence tick's attention.
    fn mark(&self, name: &str) {
        let mut dirty = lock(&self.dirty);
        if !dirty.contains(name) {
            dirty.insert(name.to_owned());
        }
    }

    /// Drops `r` (the room `name`, locked by the caller) from memory if it
    /// is idle, keeping its last id for when it comes back.
    fn drop_if_idle(&self, name: &str, room_arc: &Arc<Mutex<Room>>, r: &mut Room) {
        if r.dropped || !r.idle() {
            return;
        }
        r.dropped = true;
        if r.last_id > 0 {
            lock(&self.start_ids).insert(name.to_owned(), r.last_id);
        }
        let mut rooms = lock(&self.rooms);
        if rooms
            .get(name)
            .is_some_and(|held| Arc::ptr_eq(held, room_arc))
        {
            rooms.remove(name);
        }
        self.metrics.rooms.set(rooms.len() as u64);
    }

    /// Registers a connection under `wanted` (or a guest name). Without
    /// authentication, nicks are unique: a taken one gets a suffix, unless
    /// `session` proves it is the caller's own from before, in which case
    /// the old connection is replaced (closed with 4000).
    ///
    /// Scaled out, a nick online on another server is taken too, unless
    /// [`claim_remote`](Self::claim_remote) found that `session` is its
    /// owner's (`remote_reclaim`): then that server closes its connection.
    pub fn register(
        &self,
        wanted: Option<&str>,
        session: Option<&str>,
        remote_reclaim: bool,
    ) -> Arc<Client> {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut users = lock(&self.users);
        let remote = lock(&self.remote_users);
        let base = wanted.map_or_else(|| format!("guest{id}"), str::to_owned);
        let mut nick = base.clone();
        let mut reclaimed = None;
        let mut reclaimed_remote = false;
        if !self.config.authenticated {
            let mut n = 1;
            loop {
                if let Some(holders) = users.get(&nick) {
                    if let Some(old) = holders.iter().find(|c| Some(c.session.as_str()) == session)
                    {
                        reclaimed = Some(old.clone());
                        break;
                    }
                } else if !remote.values().any(|held| held.contains(&nick)) {
                    break;
                } else if remote_reclaim && nick == base {
                    reclaimed_remote = true;
                    break;
                }
                n += 1;
                // Keep the suffixed nick within the 24-character rule.
                let suffix = format!("-{n}");
                let keep = base.len().min(24 - suffix.len());
                nick = format!("{}{suffix}", &base[..keep]);
            }
        }
        drop(remote);
        if reclaimed_remote && let Some(cluster) = self.cluster() {
            cluster.publish(&Bus::Replace {
                s: cluster.id.clone(),
                nick: nick.clone(),
            });
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
            None if reclaimed_remote => session.unwrap_or_default().to_owned(),
            None => random_token(),
        };
        if let Some(cluster) = self.cluster()
            && !self.config.authenticated
        {
            cluster.remember_session(&nick, &session);
        }
        let client = Arc::new(Client {
            id,
            nick: nick.clone(),
            session,
            outbox: Outbox::new(self.config.outbox_limit),
            rooms: Mutex::new(BTreeSet::new()),
            gone: AtomicBool::new(false),
        });
        if !users.contains_key(&nick) {
            self.users_changed.store(true, Ordering::Relaxed);
        }
        users.entry(nick).or_default().push(client.clone());
        client
    }

    /// Removes a connection from its rooms and the user list.
    pub fn unregister(&self, client: &Arc<Client>) {
        client.gone.store(true, Ordering::Relaxed);
        for room in client.rooms() {
            self.leave(client, &room);
        }
        let mut users = lock(&self.users);
        if let Some(holders) = users.get_mut(&client.nick) {
            holders.retain(|c| c.id != client.id);
            if holders.is_empty() {
                users.remove(&client.nick);
                self.users_changed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Joins `room`. Returns the roster (nicks present) and the room's last
    /// message id at the moment of joining: every later message reaches
    /// the client's outbox, every earlier one is in history.
    ///
    /// Scaled out, the first local member makes the room read its last id
    /// and who is in it elsewhere from Redis first; failing that, the join
    /// fails with [`JoinError::Unavailable`].
    pub async fn join(&self, client: &Arc<Client>, room: &str) -> Result<Joined, JoinError> {
        {
            let rooms = lock(&client.rooms);
            if !rooms.contains(room) && rooms.len() >= MAX_ROOMS {
                return Err(JoinError::Refused(Refusal::new(
                    TooManyRooms,
                    format!("at most {MAX_ROOMS} rooms"),
                )));
            }
        }
        loop {
            let room_arc = self.room(room).map_err(JoinError::Refused)?;
            {
                let mut r = lock(&room_arc);
                if r.dropped {
                    continue; // left memory just now: look again
                }
                r.joining += 1;
            }
            let prepared = self.prepare_room(room, &room_arc).await;
            let mut r = lock(&room_arc);
            r.joining -= 1;
            if let Err(refusal) = prepared {
                self.mark(room);
                return Err(JoinError::Unavailable(refusal));
            }
            lock(&client.rooms).insert(room.to_owned());
            if r.members.insert(client.id, client.clone()).is_none() {
                let count = r.nicks.entry(client.nick.clone()).or_insert(0);
                *count += 1;
                if *count == 1 {
                    r.changed.insert(client.nick.clone());
                    r.local_changed = true;
                    self.mark(room);
                }
            }
            return Ok((r.roster(), r.last_id));
        }
    }

    /// Leaves `room` (nothing if not in it).
    pub fn leave(&self, client: &Arc<Client>, room: &str) {
        if !lock(&client.rooms).remove(room) {
            return;
        }
        let Some(room_arc) = self.find_room(room) else {
            return;
        };
        let mut r = lock(&room_arc);
        if r.members.remove(&client.id).is_some() {
            if let Some(count) = r.nicks.get_mut(&client.nick) {
                *count -= 1;
                if *count == 0 {
                    r.nicks.remove(&client.nick);
                    r.changed.insert(client.nick.clone());
                    r.local_changed = true;
                }
            }
            if r.members.is_empty() || r.local_changed {
                self.mark(room);
            }
        }
    }

    /// Posts to a room: the next id, then history; once the message is
    /// committed, every member and then the ack (see [`Delivery`]).
    /// Scaled out, the post goes to Redis, which gives the id; members
    /// get it from the bus, the sender its ack when Redis has it.
    pub fn post(
        &self,
        client: &Arc<Client>,
        room: &str,
        text: &str,
        client_id: &str,
    ) -> Result<(), Refusal> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(Refusal::new(Unavailable, "the server is shutting down"));
        }
        if !client.in_room(room) {
            return Err(Refusal::new(NotInRoom, format!("join {room} first")));
        }
        let store = match &self.backend {
            Backend::Local(store) => store,
            Backend::Cluster(cluster) => {
                let post = Post::room(client, room, text, client_id, now_ms());
                return cluster.enqueue(post).map_err(|_| busy());
            }
        };
        if store.backlog() >= LOCAL_QUEUE_LIMIT {
            return Err(busy());
        }
        let Some(room_arc) = self.find_room(room) else {
            return Err(Refusal::new(NotInRoom, format!("join {room} first")));
        };
        let mut r = lock(&room_arc);
        // Checked again under the lock that gives the id: `stop_posts`
        // takes every such lock once after setting the flag, so no post
        // that passed this check can be queued after shutdown's flush.
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(Refusal::new(Unavailable, "the server is shutting down"));
        }
        r.last_id += 1;
        let message = ChatMessage {
            room: room.to_owned(),
            id: r.last_id,
            from: client.nick.clone(),
            text: text.to_owned(),
            ts: now_ms(),
        };
        let delivery = Delivery {
            frame: self.prepare(ServerMsg::Msg(&message).to_json()),
            // The members now: whoever joins later has this id or a later
            // one as its starting point, and gets this message from the
            // history read it queues behind this insert.
            recipients: r.members.values().cloned().collect(),
            room: Some(message.room.clone()),
            sender: client.clone(),
            ack: self.ack_frame(client_id, message.id),
            client_id: client_id.to_owned(),
            metrics: self.metrics.clone(),
        };
        // Under the room's lock, so that the history thread, first in
        // first out, commits and delivers the room's messages in id order.
        store.insert(message, Box::new(move |outcome| delivery.run(outcome)));
        Ok(())
    }

    /// Tells `client` its post got `id`.
    pub fn acked(&self, client: &Arc<Client>, client_id: &str, id: u64) {
        let ack = self.ack_frame(client_id, id);
        client.outbox.push(&ack, Kind::Chat, &self.metrics);
    }

    fn ack_frame(&self, client_id: &str, id: u64) -> PreparedFrame {
        self.prepare(ServerMsg::Ack { client_id, id }.to_json())
    }

    /// A private message to every connection of `to` and of the sender,
    /// once it is committed, then the ack.
    pub fn dm(
        &self,
        client: &Arc<Client>,
        to: &str,
        text: &str,
        client_id: &str,
    ) -> Result<(), Refusal> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(Refusal::new(Unavailable, "the server is shutting down"));
        }
        let store = match &self.backend {
            Backend::Local(store) => store,
            Backend::Cluster(cluster) => {
                let online = lock(&self.users).contains_key(to)
                    || lock(&self.remote_users).values().any(|s| s.contains(to));
                if !online {
                    return Err(Refusal::new(UnknownUser, format!("{to} is not online")));
                }
                let conv = conversation(&client.nick, to);
                let post = Post::dm(client, &conv, to, text, client_id, now_ms());
                return cluster.enqueue(post).map_err(|_| busy());
            }
        };
        let recipients: Vec<Arc<Client>> = {
            let users = lock(&self.users);
            let Some(targets) = users.get(to) else {
                return Err(Refusal::new(UnknownUser, format!("{to} is not online")));
            };
            let mine = users.get(&client.nick).cloned().unwrap_or_default();
            targets
                .iter()
                .chain(mine.iter().filter(|c| c.nick != to))
                .cloned()
                .collect()
        };
        if store.backlog() >= LOCAL_QUEUE_LIMIT {
            return Err(busy());
        }
        let key = conversation(&client.nick, to);
        let mut ids = lock(&self.dm_ids);
        // As in `post`: checked again under the lock that gives the id.
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(Refusal::new(Unavailable, "the server is shutting down"));
        }
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
        let delivery = Delivery {
            frame: self.prepare(
                ServerMsg::Dm {
                    id: message.id,
                    from: &message.from,
                    to,
                    text,
                    ts: message.ts,
                }
                .to_json(),
            ),
            recipients,
            room: None,
            sender: client.clone(),
            ack: self.ack_frame(client_id, message.id),
            client_id: client_id.to_owned(),
            metrics: self.metrics.clone(),
        };
        // Under the ids' lock, as for rooms: commit order is id order.
        store.insert(message, Box::new(move |outcome| delivery.run(outcome)));
        drop(ids);
        Ok(())
    }

    /// Relays a typing event to the room's other nicks, at most one per
    /// user and room every 2 s.
    pub fn typing(&self, client: &Arc<Client>, room: &str) -> Result<(), Refusal> {
        if !client.in_room(room) {
            return Err(Refusal::new(NotInRoom, format!("join {room} first")));
        }
        let Some(room_arc) = self.find_room(room) else {
            return Err(Refusal::new(NotInRoom, format!("join {room} first")));
        };
        let mut r = lock(&room_arc);
        let now = Instant::now();
        if r.typing
            .get(&client.nick)
            .is_some_and(|t| now.duration_since(*t) < TYPING_INTERVAL)
        {
            return Ok(());
        }
        r.typing.insert(client.nick.clone(), now);
        if let Backend::Cluster(cluster) = &self.backend {
            // Every server relays it, this one too, when it comes back.
            cluster.publish(&Bus::Typing {
                room: room.to_owned(),
                user: client.nick.clone(),
            });
            return Ok(());
        }
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
    ///
    /// Only rooms marked since the last call are visited, so an idle
    /// server's tick costs nothing however many rooms it holds; a room
    /// left with nobody in it leaves memory here.
    pub fn flush_presence(&self) {
        let dirty = std::mem::take(&mut *lock(&self.dirty));
        let cluster = self.cluster();
        if let Some(cluster) = cluster
            && self.users_changed.swap(false, Ordering::Relaxed)
        {
            let online: Vec<String> = lock(&self.users).keys().cloned().collect();
            cluster.publish_presence(ONLINE, online);
        }
        for name in dirty {
            let Some(room_arc) = self.find_room(&name) else {
                continue;
            };
            let mut r = lock(&room_arc);
            if let Some(cluster) = cluster
                && std::mem::take(&mut r.local_changed)
            {
                let mut nicks: Vec<String> = r.nicks.keys().cloned().collect();
                nicks.sort();
                tracing::debug!(room = %name, ?nicks, "publishing our presence");
                cluster.publish_presence(&name, nicks);
            }
            r.local_changed = false;
            if !r.changed.is_empty() {
                let changed = std::mem::take(&mut r.changed);
                // Scaled out, a nick that left here but is still on another
                // server has not left the room.
                let (joined, left): (Vec<String>, Vec<String>) =
                    changed.into_iter().partition(|n| r.present(n));
                if !r.members.is_empty() {
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
            self.drop_if_idle(&name, &room_arc, &mut r);
        }
    }

    /// The rooms with members here. Copied out of the map before any
    /// room is locked: the lock order is room, then map (see `rooms`).
    fn rooms_with_members(&self) -> Vec<(String, Arc<Mutex<Room>>)> {
        let all: Vec<(String, Arc<Mutex<Room>>)> = lock(&self.rooms)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.into_iter()
            .filter(|(_, r)| !lock(r).members.is_empty())
            .collect()
    }

    /// The number of rooms in memory.
    pub fn rooms_in_memory(&self) -> usize {
        lock(&self.rooms).len()
    }

    /// Stops accepting messages (they get `unavailable`). When it returns,
    /// every post that got an id is in the history queue: each lock under
    /// which ids are given is taken once after the flag is set, so a post
    /// that read the flag before it was set has finished queueing.
    pub fn stop_posts(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let rooms: Vec<Arc<Mutex<Room>>> = lock(&self.rooms).values().cloned().collect();
        for room in rooms {
            drop(lock(&room));
        }
        drop(lock(&self.dm_ids));
    }

    /// Stops accepting messages and asks every connection to close (1001).
    pub fn shutdown(&self) {
        self.stop_posts();
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

/// Where history lives.
impl Hub {
    /// The Redis link, when scaled out.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match &self.backend {
            Backend::Cluster(c) => Some(c),
            Backend::Local(_) => None,
        }
    }

    /// The SQLite history, when not scaled out.
    pub fn store(&self) -> Option<&Store> {
        match &self.backend {
            Backend::Local(s) => Some(s),
            Backend::Cluster(_) => None,
        }
    }

    /// A page of `room`'s history before `before`.
    pub async fn history(&self, room: &str, before: u64, limit: u32) -> Result<Page, Refusal> {
        match &self.backend {
            Backend::Local(store) => Ok(store.history(room, before, limit).await),
            Backend::Cluster(c) => c.history(room, before, limit).await.map_err(|_| down()),
        }
    }

    /// `room`'s messages with `after < id <= upto` (the newest `limit`).
    pub async fn range(
        &self,
        room: &str,
        after: u64,
        upto: u64,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, Refusal> {
        match &self.backend {
            Backend::Local(store) => Ok(store.range(room, after, upto, limit).await),
            Backend::Cluster(c) => c
                .range(room, after, upto, limit as usize)
                .await
                .map_err(|_| down()),
        }
    }
}

fn down() -> Refusal {
    Refusal::new(Unavailable, "the message store is unreachable; try again")
}

/// The "room" of a DM conversation: both nicks, sorted; '@' keeps it out
/// of the room namespace.
fn conversation(me: &str, to: &str) -> String {
    let (a, b) = if me <= to { (me, to) } else { (to, me) };
    format!("@{a}|{b}")
}

/// The presence "room" of online users, scaled out (not a valid room name).
const ONLINE: &str = "*";

fn busy() -> Refusal {
    Refusal::new(
        Unavailable,
        "too many messages are waiting for the message store; try again",
    )
}

/// 128 random bits, hex: a session secret.
pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 16];
    crate::proto::MaskRng::from_entropy().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
