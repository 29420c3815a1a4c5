//! The hub: rooms, their members, presence, and fan-out, in memory and
//! with no I/O of its own.
//!
//! Where conversations live is its [`Backend`] (`backend/`): the hub asks
//! it for ids (by appending), history and ranges, and publishes presence
//! and signals through it; the backend tells the hub what was stored and
//! what other servers did through [`HubEvents`](super::backend::HubEvents),
//! which the hub implements (`hub/events.rs`; presence, the tick and what
//! other servers hold, is `hub/presence.rs`; each room's members in order,
//! paged and counted, `hub/roster.rs`). Every stored event reaches
//! the hub that one way, and the hub delivers each room's events to its
//! members in id order, holding back any that follow a hole until the
//! backend has filled it. So a message reaches its room, and its sender's
//! ack, only once it is stored: nobody sees an id the store does not
//! have. A frame is encoded once ([`PreparedFrame`]) and the same bytes
//! are shared by every recipient.
//!
//! Each connection has an [`Outbox`] bounded in bytes (`outbox.rs`, with
//! its policy for slow readers): the hub only ever pushes into it, so a
//! slow reader never delays anyone else. Rooms live in memory while
//! someone here is in them; the presence tick drops the idle ones.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::proto::{CloseCode, CloseFrame, DeflateConfig, PreparedFrame};

pub use super::outbox::{Kind, Outbox, slow_close};

use super::backend::{
    Backend, Conversation, Event, Kind as EventKind, NewEvent, Peer, Signal, Span, Unavailable,
};
use super::metrics::Metrics;
use super::protocol::ErrorCode;
use super::protocol::{ChatMessage, MAX_ROOMS, Refusal};
use super::{lock, random_token};

mod events;
mod lifecycle;
mod moderation;
mod pending;
mod presence;
mod reads;
mod roster;
#[cfg(test)]
mod tests;
mod users;

use pending::Pending;

pub use lifecycle::newest_that_fit as newest_frames_that_fit;
pub use moderation::BANNED as BANNED_CLOSE;
use roster::Roster;
pub use roster::{COUNT_EVERY, LARGE_ROOM, LARGE_ROOM_UNTIL, MAX_DELTA, MAX_PAGE, Members};
pub use users::{Standing, banned_nick};

/// A connection's number, unique for the server's life.
pub type ConnId = u64;

/// A join's result: the first page of the room's members (with their
/// count), and its last id when joined.
pub type Joined = (Members, u64);

/// Why a join failed.
#[derive(Debug)]
pub enum JoinError {
    /// Refused (too many rooms): the connection carries on.
    Refused(Refusal),
    /// The room's state could not be read (the backend is unreachable).
    Unavailable(Refusal),
}

pub(crate) use super::now_ms;

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
    /// The rooms it is in, sorted: at most [`MAX_ROOMS`], so a `Vec`
    /// searched in place, which holds one name's room for one room (a
    /// `BTreeSet` holds a 280-byte node from its first name on).
    rooms: Mutex<Vec<String>>,
    /// Its connection has ended.
    gone: AtomicBool,
    /// How it proved who it is (issue 17): a guest, or an account's or
    /// a token's user. Roles go by it (`hub/moderation.rs`).
    pub standing: Standing,
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
        lock(&self.rooms).iter().any(|r| r == room)
    }

    /// Adds `room` to its rooms; false if it was in it already.
    fn enter(&self, room: &str) -> bool {
        let mut rooms = lock(&self.rooms);
        let Err(at) = rooms.binary_search_by(|r| r.as_str().cmp(room)) else {
            return false;
        };
        // Grown one at a time: joins are rare, and most members are in
        // one room or a few.
        rooms.reserve_exact(1);
        rooms.insert(at, room.to_owned());
        true
    }

    /// Removes `room` from its rooms; false if it was not in it.
    fn exit(&self, room: &str) -> bool {
        let mut rooms = lock(&self.rooms);
        match rooms.binary_search_by(|r| r.as_str().cmp(room)) {
            Ok(at) => {
                rooms.remove(at);
                true
            }
            Err(_) => false,
        }
    }
}

#[derive(Debug, Default)]
struct Room {
    /// The last id handed to members: every later event reaches their
    /// outboxes, every earlier one is in history.
    last_id: u64,
    members: HashMap<ConnId, Arc<Client>>,
    /// Connections per nick: a nick is present while it has one.
    nicks: HashMap<String, usize>,
    /// Nicks whose presence changed since the last flush, at most
    /// [`MAX_DELTA`] of them.
    changed: BTreeSet<String>,
    /// More than [`MAX_DELTA`] changed since the last flush: the next
    /// delta carries only the count.
    truncated: bool,
    /// Everyone present, here and on other servers, in order.
    roster: Roster,
    /// Past [`LARGE_ROOM`]: the count is told, not the nicks (see
    /// `flush_presence`); when it was last told, and what it was.
    counted: Option<(Instant, usize)>,
    /// When each nick last had a typing event relayed.
    typing: HashMap<String, Instant>,
    /// Stored events waiting for a hole before them to be filled.
    pending: BTreeMap<u64, Event>,
    /// A fill is under way.
    filling: bool,
    /// The room's nicks on other servers, by server.
    remote: HashMap<Peer, BTreeSet<String>>,
    /// Our own nicks that came or went since we last published them:
    /// the next tick publishes these, not the room.
    local_changed: BTreeSet<String>,
    /// Our presence may be lost elsewhere: the next tick publishes all of
    /// our nicks here.
    local_all: bool,
    /// Joins under way (a join first asks the backend): the room is not
    /// dropped while one is.
    joining: usize,
    /// Dropped from the hub's map: whoever still holds it must look again.
    dropped: bool,
    /// Its rules (issue 17: owners, moderators, topic, slow mode, mutes,
    /// bans, the members here who block someone); none for a room that
    /// has none, so that such a room costs a pointer.
    rules: Option<Box<moderation::Rules>>,
}

impl Room {
    /// One source more (this server, or another) holds `nick`: if that
    /// makes it present, the next delta says so.
    fn hold(&mut self, nick: &str) {
        if self.roster.add(nick) {
            self.note(nick);
        }
    }

    /// One source fewer holds `nick`: if it is gone, the next delta says so.
    fn release(&mut self, nick: &str) {
        if self.roster.remove(nick) {
            self.note(nick);
        }
    }

    /// Notes a change for the next delta, keeping at most [`MAX_DELTA`]:
    /// past that, the delta is only the count, and what it would have
    /// named is not kept either. A large room (its count told, not its
    /// nicks: `counted`) keeps no names at all, only that something changed.
    fn note(&mut self, nick: &str) {
        if self.counted.is_some() {
            self.truncated = true;
        }
        if self.truncated {
            return;
        }
        self.changed.insert(nick.to_owned());
        if self.changed.len() > MAX_DELTA {
            self.changed.clear();
            self.truncated = true;
        }
    }

    /// Whether the room may leave memory: nobody here is in it or joining
    /// it, and nothing waits to be sent or published. Its history and
    /// its last id stay with the backend.
    fn idle(&self) -> bool {
        self.members.is_empty()
            && self.joining == 0
            && self.pending.is_empty()
            && !self.filling
            && self.local_changed.is_empty()
            && !self.local_all
    }

    /// Of `nicks`, those held here by guests (issue 17): a scan of the
    /// members, for presence deltas (at most [`MAX_DELTA`] nicks, in a
    /// room of at most [`LARGE_ROOM`]: larger ones tell only counts),
    /// sent while the room is locked, when the users map may not be
    /// taken.
    fn guests_among(&self, nicks: &[String]) -> Vec<String> {
        if nicks.is_empty() {
            return Vec::new();
        }
        let wanted: BTreeSet<&str> = nicks.iter().map(String::as_str).collect();
        let found: BTreeSet<&str> = self
            .members
            .values()
            .filter(|c| c.standing == Standing::Guest && wanted.contains(c.nick.as_str()))
            .map(|c| c.nick.as_str())
            .collect();
        found.into_iter().map(str::to_owned).collect()
    }

    /// Hands a frame to every member, in the order called.
    fn send_to_members(&self, frame: &PreparedFrame, kind: Kind, metrics: &Metrics) {
        for member in self.members.values() {
            member.outbox.push(frame, kind, metrics);
        }
    }

    /// The members here that block someone (issue 17): none in a room
    /// where nobody does, and fan-out then checks nobody.
    fn blockers(&self) -> Option<&BTreeSet<String>> {
        self.rules
            .as_ref()
            .map(|r| &r.blockers)
            .filter(|b| !b.is_empty())
    }
}

/// A server frame for one or many recipients, also compressed once when
/// deflate is on (each connection picks the form it negotiated).
fn prepare(deflate: Option<&DeflateConfig>, json: String) -> PreparedFrame {
    match deflate {
        Some(deflate) => PreparedFrame::text_deflated(json, deflate),
        None => PreparedFrame::text(json),
    }
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
    /// Whether guests are marked (`guest` in `welcome`, messages,
    /// `presence` and `members`): accounts are on (issue 17).
    pub mark_guests: bool,
    /// Compress broadcast frames once, for connections that negotiated
    /// permessage-deflate (RFC 7692).
    pub deflate: Option<DeflateConfig>,
    /// The most rooms held in memory at once (a room with no members
    /// leaves memory at the next presence tick).
    pub max_rooms: usize,
}

/// All rooms and clients.
pub struct Hub {
    /// Where conversations live.
    backend: Arc<dyn Backend>,
    /// The nicks online on each other server.
    remote_users: Mutex<HashMap<Peer, BTreeSet<String>>>,
    /// Of those, the guests' (issue 17). A leaf lock: taken under a room.
    remote_guests: Mutex<HashMap<Peer, BTreeSet<String>>>,
    /// Our own nicks that came online or went offline since last
    /// published. A leaf lock (taken under `users`).
    users_changed: Mutex<BTreeSet<String>>,
    /// Our online list may be lost elsewhere: publish all of it next tick.
    users_all: AtomicBool,
    /// Rooms in memory: those with members here (or being joined), and
    /// for a moment after the last one leaves. Lock order: a room's lock
    /// may be held while taking this one, never the other way round.
    rooms: Mutex<HashMap<String, Arc<Mutex<Room>>>>,
    /// Rooms whose presence changed, or that may have become idle, since
    /// the last presence tick: the tick walks these and no others. Taken
    /// last: nothing else is locked while holding it.
    dirty: Mutex<BTreeSet<String>>,
    users: Mutex<users::Users>,
    next_conn: AtomicU64,
    shutting_down: AtomicBool,
    /// Held (shared) by every append from its shutdown check until the
    /// backend has queued it; [`stop_posts`](Hub::stop_posts) takes it
    /// once, exclusively, after setting the flag.
    appending: RwLock<()>,
    /// Receipts heard since the last tick, by conversation key and user:
    /// the tick sends one per user and conversation (`hub/reads.rs`).
    receipts: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
    config: HubConfig,
    /// The counters of `/metrics`.
    pub metrics: Arc<Metrics>,
    // issue 17: moderation
    /// The blocks of our users who block someone, by nick. A leaf lock.
    blocks: Arc<Mutex<HashMap<String, BTreeSet<String>>>>,
    /// Stored admins seen at the last check of each (for `room` events
    /// between checks). A leaf lock.
    admins_seen: Mutex<BTreeSet<String>>,
    /// Rooms whose rules hold a mute or ban that ends by itself: the
    /// tick looks at these. A leaf lock.
    expiring: Mutex<BTreeSet<String>>,
    /// Rooms whose rules may miss an event: read again at the tick
    /// (`moderation::reload`). A leaf lock.
    stale_rules: Mutex<BTreeSet<String>>,
    /// Server bans signalled so far ([`Hub::bans_signalled`]).
    bans_signalled: AtomicU64,
}

impl Hub {
    /// A server frame for one or many recipients (see [`prepare`]).
    pub(super) fn prepare(&self, json: String) -> PreparedFrame {
        prepare(self.config.deflate.as_ref(), json)
    }

    /// A hub on `backend`; the caller then starts the backend with it
    /// ([`Backend::start`]).
    pub fn new(backend: Arc<dyn Backend>, metrics: Arc<Metrics>, config: HubConfig) -> Self {
        Self {
            backend,
            remote_users: Mutex::new(HashMap::new()),
            remote_guests: Mutex::new(HashMap::new()),
            users_changed: Mutex::new(BTreeSet::new()),
            users_all: AtomicBool::new(false),
            rooms: Mutex::new(HashMap::new()),
            dirty: Mutex::new(BTreeSet::new()),
            users: Mutex::new(users::Users::default()),
            next_conn: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            appending: RwLock::new(()),
            receipts: Mutex::new(BTreeMap::new()),
            config,
            metrics,
            blocks: Arc::default(),
            admins_seen: Mutex::new(BTreeSet::new()),
            expiring: Mutex::new(BTreeSet::new()),
            stale_rules: Mutex::new(BTreeSet::new()),
            bans_signalled: AtomicU64::new(0),
        }
    }

    /// Where conversations live: for `/healthz` and `/metrics`, and for
    /// the server's start and shutdown.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The room, if it is in memory.
    fn find_room(&self, name: &str) -> Option<Arc<Mutex<Room>>> {
        lock(&self.rooms).get(name).cloned()
    }

    /// The room, brought into memory if it is not, within
    /// [`HubConfig::max_rooms`]. Its last id comes from the backend at
    /// the first join ([`prepare_room`](Self::prepare_room)).
    fn room(&self, name: &str) -> Result<Arc<Mutex<Room>>, Refusal> {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(name) {
            return Ok(room.clone());
        }
        if rooms.len() >= self.config.max_rooms {
            return Err(Refusal::new(
                ErrorCode::RoomsFull,
                format!(
                    "the server holds its maximum of {} rooms; try again later",
                    self.config.max_rooms
                ),
            ));
        }
        let room = Arc::new(Mutex::new(Room::default()));
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
    /// is idle.
    fn drop_if_idle(&self, name: &str, room_arc: &Arc<Mutex<Room>>, r: &mut Room) {
        if r.dropped || !r.idle() {
            return;
        }
        r.dropped = true;
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
    /// `session` proves it is the caller's own, in which case this is one
    /// more connection of that user (another tab), sharing the nick and
    /// its secret. With authentication, every connection of a token's
    /// user shares its nick.
    ///
    /// A nick online on another server is taken too, unless
    /// [`claim_remote`](Self::claim_remote) found that `session` is its
    /// owner's (`remote_reclaim`): then the user is on both servers.
    /// [`admit_avoiding`](Self::admit_avoiding) bounds the connections per user first.
    #[cfg(test)]
    pub fn register(
        &self,
        wanted: Option<&str>,
        session: Option<&str>,
        remote_reclaim: bool,
    ) -> Arc<Client> {
        self.register_as(wanted, session, remote_reclaim, Standing::Guest)
    }

    /// [`register`](Self::register), for a connection of the given
    /// [`Standing`].
    #[cfg(test)]
    pub fn register_as(
        &self,
        wanted: Option<&str>,
        session: Option<&str>,
        remote_reclaim: bool,
        standing: Standing,
    ) -> Arc<Client> {
        self.register_avoiding(wanted, session, remote_reclaim, standing, &[])
    }

    /// [`register_as`](Self::register_as), never under a nick in `avoid`
    /// (a guest's: registered nicks its suffix or `guestN` would name).
    /// With guests marked, a guest's suffixed nick is never a look-alike
    /// of one online either; and an account's user takes its nick from
    /// the guests holding it or a look-alike ([`Signal::Claimed`], 4006).
    fn register_avoiding(
        &self,
        wanted: Option<&str>,
        session: Option<&str>,
        remote_reclaim: bool,
        standing: Standing,
        avoid: &[String],
    ) -> Arc<Client> {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut users = lock(&self.users);
        let remote = lock(&self.remote_users);
        let base = wanted.map_or_else(|| format!("guest{id}"), str::to_owned);
        let mut nick = base.clone();
        let mut reclaimed = None;
        let fixed = self.fixed(standing);
        if !fixed {
            let mut n = 1;
            let marked = self.config.mark_guests;
            loop {
                if avoid.contains(&nick) {
                    // registered: never a guest's
                } else if users.contains(&nick) {
                    // Only a guest's connection is another guest's to
                    // reclaim with its secret.
                    if let Some(old) = users.holders(&nick).find(|c| {
                        !c.is_gone()
                            && c.standing == Standing::Guest
                            && Some(c.session.as_str()) == session
                    }) {
                        reclaimed = Some(old.clone());
                        break;
                    }
                } else if marked && users.lookalike(&nick).is_some() {
                    // a look-alike of a nick online: not given out either
                } else if !remote.values().any(|held| held.contains(&nick)) {
                    break;
                } else if remote_reclaim && nick == base {
                    break; // its owner, online on another server too
                }
                n += 1;
                // Keep the suffixed nick within the 24-character rule.
                let suffix = format!("-{n}");
                let keep = base.len().min(24 - suffix.len());
                nick = format!("{}{suffix}", &base[..keep]);
            }
        }
        drop(remote);
        let session = match &reclaimed {
            // The same user again: one more connection of it.
            Some(held) => held.session.clone(),
            // Its owner's secret, proven with the backend: kept, so that
            // the user's other tabs reconnecting with it are that user.
            None if remote_reclaim && nick == base => session.unwrap_or_default().to_owned(),
            // An account's connection carries its session's id, which a
            // revocation closes it by (`close_session`).
            None if fixed => session.map_or_else(random_token, str::to_owned),
            None => random_token(),
        };
        if !fixed {
            self.backend.remember_session(&nick, &session);
        }
        let client = Arc::new(Client {
            id,
            nick: nick.clone(),
            session,
            outbox: Outbox::new(self.config.outbox_limit),
            rooms: Mutex::new(Vec::new()),
            gone: AtomicBool::new(false),
            standing,
        });
        // The nick is the account's: guests holding it, or a look-alike,
        // here or on another server, give it up.
        let claimed = self.config.mark_guests && standing != Standing::Guest;
        if claimed {
            users::close_guests_like(&users, &nick);
        }
        if users.add(client.clone()) {
            lock(&self.users_changed).insert(nick.clone());
        }
        drop(users);
        if claimed {
            // (Unlocked: a backend may hand the signal straight back.)
            self.backend.publish(Signal::Claimed { nick });
        }
        client
    }

    /// Removes a connection from its rooms and the user list.
    pub fn unregister(&self, client: &Arc<Client>) {
        client.gone.store(true, Ordering::Relaxed);
        for room in client.rooms() {
            self.leave(client, &room);
        }
        let mut users = lock(&self.users);
        if users.remove(client) {
            lock(&self.users_changed).insert(client.nick.clone());
            lock(&self.blocks).remove(&client.nick);
        }
    }

    /// Joins `room`. Returns the first page of its members (and their
    /// count) and the room's last message id at the moment of joining:
    /// every later message reaches the client's outbox, every earlier one
    /// is in history.
    ///
    /// The first local member makes the room read its last id and who is
    /// in it on other servers from the backend first; failing that, the
    /// join fails with [`JoinError::Unavailable`].
    pub async fn join(&self, client: &Arc<Client>, room: &str) -> Result<Joined, JoinError> {
        {
            let rooms = lock(&client.rooms);
            if !rooms.iter().any(|r| r == room) && rooms.len() >= MAX_ROOMS {
                return Err(JoinError::Refused(Refusal::new(
                    ErrorCode::TooManyRooms,
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
            let mut prepared = self.prepare_room(room, &room_arc).await;
            if client.standing != Standing::Guest {
                self.refresh_admin(&client.nick, client.standing).await;
            }
            // A rule delivered while the room had no member to fold it for
            // (`deliver`) is read again before the first member is let in:
            // once one is, rules are folded in as they are delivered.
            let mut rounds = 0;
            let mut r = loop {
                let last = rounds == 2 || prepared.is_err();
                if let Some(r) = self.unless_stale(room, &room_arc, last) {
                    break r;
                }
                rounds += 1;
                prepared = self.reload_rules(room, &room_arc).await;
            };
            r.joining -= 1;
            if let Err(refusal) = prepared {
                self.mark(room);
                return Err(JoinError::Unavailable(refusal));
            }
            let claim = match self.admitted(client, room, &mut r) {
                Ok((_, claim)) => claim,
                Err(refusal) => {
                    self.mark(room);
                    return Err(JoinError::Refused(refusal));
                }
            };
            client.enter(room);
            if r.members.insert(client.id, client.clone()).is_none() {
                let count = r.nicks.entry(client.nick.clone()).or_insert(0);
                *count += 1;
                if *count == 1 {
                    r.hold(&client.nick);
                    r.local_changed.insert(client.nick.clone());
                    self.mark(room);
                }
            }
            let (mut page, last) = (r.roster.page(None, "", MAX_PAGE), r.last_id);
            drop(r);
            page.guests = self.guests_among(&page.members);
            if claim {
                self.claim_owner(client, room);
            }
            return Ok((page, last));
        }
    }

    /// Leaves `room` (nothing if not in it).
    pub fn leave(&self, client: &Arc<Client>, room: &str) {
        if !client.exit(room) {
            return;
        }
        let Some(room_arc) = self.find_room(room) else {
            return;
        };
        let mut r = lock(&room_arc);
        self.remove_member(room, &mut r, client);
    }

    /// Takes `client` out of `r`, the room `room` locked by the caller
    /// (its own list of rooms is the caller's to update).
    fn remove_member(&self, room: &str, r: &mut Room, client: &Client) {
        if r.members.remove(&client.id).is_some() {
            if let Some(count) = r.nicks.get_mut(&client.nick) {
                *count -= 1;
                if *count == 0 {
                    r.nicks.remove(&client.nick);
                    r.release(&client.nick);
                    r.local_changed.insert(client.nick.clone());
                    if let Some(rules) = r.rules.as_mut() {
                        rules.blockers.remove(&client.nick);
                    }
                }
            }
            if r.members.is_empty() || !r.local_changed.is_empty() {
                self.mark(room);
            }
        }
    }

    /// The `room` event for `client` (issue 17), after its join.
    pub fn room_event(&self, client: &Client, room: &str) -> Option<String> {
        let room_arc = self.find_room(room)?;
        let r = lock(&room_arc);
        Some(self.room_json(client, room, &r))
    }

    /// Whom `viewer` blocks, if anyone (to filter a history page).
    pub fn blocked_by(&self, viewer: &str) -> Option<BTreeSet<String>> {
        lock(&self.blocks).get(viewer).cloned()
    }

    /// Posts to a room. Once the backend has stored it, every member gets
    /// it (in id order) and the sender its ack.
    pub fn post(
        &self,
        client: &Arc<Client>,
        room: &str,
        text: &str,
        client_id: &str,
    ) -> Result<(), Refusal> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "the server is shutting down",
            ));
        }
        if !client.in_room(room) {
            return Err(Refusal::new(
                ErrorCode::NotInRoom,
                format!("join {room} first"),
            ));
        }
        let after = self.may_post(client, room)?;
        let event = (
            Conversation::Room(room.to_owned()),
            text,
            EventKind::default(),
        );
        self.append_then(client, event, Some(client_id), after)
    }

    /// Whether `client` may post to `room` now (issue 17: not muted, not
    /// sooner than slow mode allows), and what to undo if the post is not
    /// stored after all (its slow-mode stamp).
    fn may_post(&self, client: &Client, room: &str) -> Result<pending::After, Refusal> {
        let Some(room_arc) = self.find_room(room) else {
            return Ok(pending::After::Nothing);
        };
        let mut r = lock(&room_arc);
        let stamp = self.check_post(client, &mut r)?;
        // Slow-mode stamps are dropped at the tick once old.
        if r.rules.as_ref().is_some_and(|x| !x.last_post.is_empty()) {
            self.keep_ticking(room);
        }
        Ok(
            stamp.map_or(pending::After::Nothing, |at| pending::After::Unstamp {
                room: Arc::downgrade(&room_arc),
                at,
            }),
        )
    }

    /// A private message: once stored, to every connection of `to` and of
    /// the sender, then the ack.
    pub fn dm(
        &self,
        client: &Arc<Client>,
        to: &str,
        text: &str,
        client_id: &str,
    ) -> Result<(), Refusal> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "the server is shutting down",
            ));
        }
        if !lock(&self.users).contains(to) && !self.online_elsewhere(to) {
            return Err(Refusal::new(
                ErrorCode::UnknownUser,
                format!("{to} is not online"),
            ));
        }
        self.append(client, Conversation::dm(&client.nick, to), text, client_id)
    }

    /// Hands a message to the backend, which gives it its id.
    fn append(
        &self,
        client: &Arc<Client>,
        conv: Conversation,
        text: &str,
        client_id: &str,
    ) -> Result<(), Refusal> {
        let kind = EventKind::default();
        self.append_event(client, conv, text, kind, Some(client_id))
    }

    /// Hands an event of any kind to the backend, which gives it its id
    /// (or, checking it against its message, refuses it: the writer is
    /// told through its ack).
    fn append_event(
        &self,
        client: &Arc<Client>,
        conv: Conversation,
        text: &str,
        kind: EventKind,
        client_id: Option<&str>,
    ) -> Result<(), Refusal> {
        let event = (conv, text, kind);
        self.append_then(client, event, client_id, pending::After::Nothing)
    }

    /// [`append_event`](Self::append_event), and `after` once the outcome
    /// is known. Refused at once (the connection closing, the server
    /// shutting down, the store busy), what `after` undoes is undone here,
    /// as the ack would have (review findings 8 and 14).
    fn append_then(
        &self,
        client: &Arc<Client>,
        event: (Conversation, &str, EventKind),
        client_id: Option<&str>,
        after: pending::After,
    ) -> Result<(), Refusal> {
        let undoing = after.undoing();
        let appended = self.hand_over(client, event, client_id, after);
        if appended.is_err() {
            undoing.undo(&client.nick);
        }
        appended
    }

    /// [`append_then`](Self::append_then)'s checks, then the event to the
    /// backend with its ack.
    fn hand_over(
        &self,
        client: &Arc<Client>,
        (conv, text, kind): (Conversation, &str, EventKind),
        client_id: Option<&str>,
        after: pending::After,
    ) -> Result<(), Refusal> {
        // A connection being closed (banned, revoked, its nick claimed,
        // logged out) writes nothing more, whatever it sent meanwhile.
        if client.is_gone() || client.outbox.is_closed() {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "this connection is closing",
            ));
        }
        let _open = self.appending.read().unwrap_or_else(|p| p.into_inner());
        // Checked again under the lock `stop_posts` takes: no post that
        // passed this check can be queued after shutdown's drain.
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "the server is shutting down",
            ));
        }
        let target = match &kind {
            EventKind::Msg(state) => state.reply_to,
            other => other.target(),
        };
        let mut kind = kind;
        if let EventKind::Msg(state) = &mut kind {
            state.guest = self.config.mark_guests && client.standing == Standing::Guest;
        }
        let event = NewEvent {
            conv,
            from: client.nick.clone(),
            text: text.to_owned(),
            ts: now_ms(),
            kind,
        };
        let ack = Pending {
            sender: client.clone(),
            client_id: client_id.map(str::to_owned),
            target,
            deflate: self.config.deflate.clone(),
            metrics: self.metrics.clone(),
            after,
        };
        self.backend
            .append(event, Box::new(ack))
            .map_err(|_| busy())
    }

    /// Relays a typing event to the room's other nicks, at most one per
    /// user and room every 2 s.
    pub fn typing(&self, client: &Arc<Client>, room: &str) -> Result<(), Refusal> {
        if !client.in_room(room) {
            return Err(Refusal::new(
                ErrorCode::NotInRoom,
                format!("join {room} first"),
            ));
        }
        let Some(room_arc) = self.find_room(room) else {
            return Err(Refusal::new(
                ErrorCode::NotInRoom,
                format!("join {room} first"),
            ));
        };
        {
            let mut r = lock(&room_arc);
            // Issue 17: a muted user's typing is dropped (it may not post).
            if r.rules
                .as_ref()
                .is_some_and(|rules| rules.muted(&client.nick, now_ms()).is_some())
            {
                return Ok(());
            }
            let now = Instant::now();
            if r.typing
                .get(&client.nick)
                .is_some_and(|t| now.duration_since(*t) < TYPING_INTERVAL)
            {
                return Ok(());
            }
            r.typing.insert(client.nick.clone(), now);
        }
        // Out of the room's lock: it comes back through `signal`, maybe
        // at once.
        self.backend.publish(Signal::Typing {
            room: room.to_owned(),
            user: client.nick.clone(),
        });
        Ok(())
    }

    /// Of `nicks`, those who are guests (issue 17; none when guests are
    /// not marked): by their connections here, else by what other
    /// servers say ([`Scope::Guests`](super::backend::Scope::Guests)).
    /// Takes the users map: never while a room is locked.
    pub fn guests_among(&self, nicks: &[String]) -> Vec<String> {
        if !self.config.mark_guests {
            return Vec::new();
        }
        let users = lock(&self.users);
        let remote = lock(&self.remote_guests);
        nicks
            .iter()
            .filter(|n| match users.holders(n).next() {
                Some(c) => c.standing == Standing::Guest,
                None => remote.values().any(|held| held.contains(n.as_str())),
            })
            .cloned()
            .collect()
    }

    /// Whether another server says `nick` is one of its guests.
    fn guest_elsewhere(&self, nick: &str) -> bool {
        lock(&self.remote_guests)
            .values()
            .any(|held| held.contains(nick))
    }

    /// Of `nicks`, those that are guests on other servers (a leaf lock:
    /// may be called with a room locked).
    fn remote_guests_among(&self, nicks: &[String]) -> Vec<String> {
        nicks
            .iter()
            .filter(|n| self.guest_elsewhere(n))
            .cloned()
            .collect()
    }

    /// The number of rooms in memory.
    #[cfg(test)]
    pub fn rooms_in_memory(&self) -> usize {
        lock(&self.rooms).len()
    }

    /// Stops accepting messages (they get `unavailable`). When it returns,
    /// every post that passed the check is in the backend's hands: each
    /// append holds `appending` from its check until the backend has it.
    pub fn stop_posts(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        drop(self.appending.write().unwrap_or_else(|p| p.into_inner()));
    }

    /// Stops accepting messages and asks every connection to close (1001).
    pub fn shutdown(&self) {
        self.stop_posts();
        for c in lock(&self.users).all() {
            c.outbox.close(CloseFrame::new(
                CloseCode::GOING_AWAY,
                "server shutting down",
            ));
        }
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// A page of `room`'s history before `before`.
    pub async fn history(
        &self,
        room: &str,
        before: u64,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), Refusal> {
        let conv = Conversation::Room(room.to_owned());
        let (page, more) = self
            .backend
            .history(&conv, before, limit)
            .await
            .map_err(down)?;
        Ok((page.iter().map(Event::to_message).collect(), more))
    }
}

fn down(_: Unavailable) -> Refusal {
    Refusal::new(
        ErrorCode::Unavailable,
        "the message store is unreachable; try again",
    )
}

fn busy() -> Refusal {
    Refusal::new(
        ErrorCode::Unavailable,
        "too many messages are waiting for the message store; try again",
    )
}
