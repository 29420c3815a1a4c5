//! The seam between the hub and where conversations live.
//!
//! ```text
//!            hub (rooms, members, presence, fan-out)
//!    Backend ▼                         ▲ HubEvents
//!   append, read ranges, publish,      │ stored, filled, signal,
//!   shared presence, health            │ presence, peer_gone, …
//!       local.rs (SQLite thread)  |  redis/ (link, posts, bus, order, presence)
//! ```
//!
//! Two traits, one each way. The hub calls down through [`Backend`]; the
//! backend calls up through [`HubEvents`], which the hub implements and
//! hands over once at [`Backend::start`]. Neither side sees the other's
//! state: the backend never touches a room, the hub never knows whether
//! it talks to SQLite or Redis.
//!
//! Everything that happens in a room or a DM conversation is an [`Event`]
//! with an id in that [`Conversation`]'s ordered stream: the backend gives
//! the id, stores the event and then reports it with
//! [`HubEvents::stored`], the same way for both backends (local: after its
//! batch commits; Redis: when the bus brings it). The hub fans it out in
//! id order, asking [`Backend::fill`] for any hole, so fan-out, resume and
//! replay are written once. A new kind of event (an edit, a reaction, a
//! read marker) is a new field of [`Event`] and of the two stores, not a
//! new path through the hub.

pub mod local;
#[cfg(test)]
pub mod memory;
pub mod moderation;
pub mod redis;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::protocol::ChatMessage;

pub use local::store::DbSync;
pub use moderation::{Action, ModAction, Moderation};

/// A page of history: events oldest first, and whether older ones exist.
pub type Page = (Vec<Event>, bool);

/// A backend's answer that may take a round trip (to the history thread,
/// to Redis). Boxed so that the hub holds any backend as `dyn Backend`.
pub type Reply<'a, T> = Pin<Box<dyn Future<Output = Result<T, Unavailable>> + Send + 'a>>;

/// An answer that is ready at once (a backend in memory).
fn ready<'a, T: Send + 'a>(value: T) -> Reply<'a, T> {
    Box::pin(std::future::ready(Ok(value)))
}

/// The store could not be reached (Redis away); the request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Too many appends wait for the store already; the post may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// An ordered stream of events: a room, or the DM conversation of two
/// nicks (the same conversation whichever of them writes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conversation {
    /// A room, by its name.
    Room(String),
    /// Two nicks, sorted.
    Dm(String, String),
}

impl Conversation {
    /// The conversation of `me` and `to`.
    pub fn dm(me: &str, to: &str) -> Self {
        let (a, b) = if me <= to { (me, to) } else { (to, me) };
        Self::Dm(a.to_owned(), b.to_owned())
    }

    /// A DM's parties, each with the other (one pair if someone writes
    /// to themselves); none for a room. Whatever goes to both ends of a
    /// DM goes through this, so a self-DM is never delivered twice.
    pub fn parties(&self) -> Vec<(&str, &str)> {
        match self {
            Self::Room(_) => Vec::new(),
            Self::Dm(a, b) if a == b => vec![(a.as_str(), b.as_str())],
            Self::Dm(a, b) => vec![(a.as_str(), b.as_str()), (b.as_str(), a.as_str())],
        }
    }

    /// The stores' key: the room's name, or `@a|b` for a DM. Neither `@`
    /// nor `|` may be in a room name or a nick, so the two never meet.
    /// SQLite's `room` column and the Redis keys hold it, so it must not
    /// change.
    pub fn key(&self) -> String {
        match self {
            Self::Room(name) => name.clone(),
            Self::Dm(a, b) => format!("@{a}|{b}"),
        }
    }

    /// The conversation stored under `key` (see [`key`](Self::key)).
    pub fn from_key(key: &str) -> Self {
        match key.strip_prefix('@').and_then(|pair| pair.split_once('|')) {
            Some((a, b)) => Self::Dm(a.to_owned(), b.to_owned()),
            None => Self::Room(key.to_owned()),
        }
    }
}

impl fmt::Display for Conversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// Where a presence set applies: a room, or the server as a whole (who is
/// online, which DMs need).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The nicks in a room.
    Room(String),
    /// The nicks online.
    Online,
    /// The nicks online as guests (issue 17): what `guests` lists for
    /// users on other servers.
    Guests,
}

impl Scope {
    /// The shared key: the room's name, `*` or `~` (neither is a valid
    /// room name).
    pub fn key(&self) -> &str {
        match self {
            Self::Room(name) => name,
            Self::Online => "*",
            Self::Guests => "~",
        }
    }

    /// The scope stored under `key`.
    pub fn from_key(key: &str) -> Self {
        match key {
            "*" => Self::Online,
            "~" => Self::Guests,
            _ => Self::Room(key.to_owned()),
        }
    }
}

/// What one server says of its nicks in a [`Scope`]: all of them (when it
/// starts, after a resync, or when asked again), or only what changed
/// since it last spoke, so that a tick costs the changes, not the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceChange {
    /// All of its nicks there (empty: none), replacing what it said before.
    All(Vec<String>),
    /// Nicks now present there and nicks now gone, since its last change.
    Delta {
        /// Present now, not before.
        joined: Vec<String>,
        /// Gone now.
        left: Vec<String>,
    },
}

/// Something that happened in a conversation, once stored: it has its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Where.
    pub conv: Conversation,
    /// Its place in the conversation's stream: one more than the last.
    pub id: u64,
    /// Who wrote it.
    pub from: String,
    /// The text: of a message (empty once deleted), or the new text of an
    /// edit; empty for the other kinds.
    pub text: String,
    /// Server time, ms since the Unix epoch.
    pub ts: u64,
    /// What it is.
    pub kind: Kind,
}

/// What an event is. Every kind has its own id in the conversation's
/// stream; the ones that act on a message name it by `target`.
///
/// The stores name the kinds `msg`, `edit`, `delete`, `react`,
/// `moderation` and `remove` ([`Kind::name`]: SQLite's `kind` column, the Redis stream's `kind`
/// field); only `msg` events are messages (history pages, unread counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A message. As appended, its state is empty but for `reply_to`; in
    /// a history page (or a range) it is the message's latest state.
    Msg(MsgState),
    /// `target`'s text is now the event's `text` (its author's doing).
    Edit {
        /// The message edited.
        target: u64,
    },
    /// `target` is deleted: its text is purged from the store.
    Delete {
        /// The message deleted.
        target: u64,
    },
    /// The writer toggled `emoji` on `target`.
    React {
        /// The message reacted to.
        target: u64,
        /// The reaction ([`crate::chat::protocol::check_emoji`]).
        emoji: String,
        /// Everyone who has that reaction once the toggle is stored (the
        /// store fills it in; empty as appended), sorted.
        users: Vec<String>,
    },
    // issue 17: moderation
    /// A moderation action in a room (kick, ban, mute, slow, topic, role,
    /// …): its effect is the room's rules ([`moderation`]). Its `text`
    /// is the action's JSON.
    Moderation(Box<ModAction>),
    /// `target` is deleted by a moderator, owner or admin of the room
    /// (the hub checked the role): as [`Kind::Delete`], without the
    /// author check.
    Remove {
        /// The message deleted.
        target: u64,
    },
}

impl Default for Kind {
    fn default() -> Self {
        Self::Msg(MsgState::default())
    }
}

impl Kind {
    /// A message, replying to `reply_to` if given.
    pub fn msg(reply_to: Option<u64>) -> Self {
        Self::Msg(MsgState {
            reply_to,
            ..MsgState::default()
        })
    }

    /// The stores' name of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Msg(_) => "msg",
            Self::Edit { .. } => "edit",
            Self::Delete { .. } => "delete",
            Self::React { .. } => "react",
            Self::Moderation(_) => "moderation",
            Self::Remove { .. } => "remove",
        }
    }

    /// The message an edit, delete or reaction acts on.
    pub fn target(&self) -> Option<u64> {
        match self {
            Self::Msg(_) | Self::Moderation(_) => None,
            Self::Edit { target }
            | Self::Delete { target }
            | Self::Remove { target }
            | Self::React { target, .. } => Some(*target),
        }
    }
}

/// A message's state beyond its text: what history shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MsgState {
    /// The message it replies to, in the same conversation.
    pub reply_to: Option<u64>,
    /// When it was last edited.
    pub edited_ts: Option<u64>,
    /// Deleted: a tombstone, its text gone.
    pub deleted: bool,
    /// Each reaction and who has it (sorted); no empty lists.
    pub reactions: BTreeMap<String, Vec<String>>,
    /// Its writer was a guest (issue 17): stored with it, as appended.
    pub guest: bool,
}

/// The most distinct reactions one message may carry: a toggle that
/// would add one more is refused ([`Rejected::TooManyReactions`]).
pub const MAX_REACTIONS: usize = 20;

/// Why the store refused an event: checked where it is written, atomically
/// with the write (the history thread's transaction, the Redis script),
/// so that no other write comes between the check and the event. A
/// refused event takes no id and reaches no one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The target (or `reply_to`) is no message of the conversation (an
    /// id never given, an edit's or reaction's id, or one trimmed away).
    NoSuchMessage,
    /// Only the author may edit or delete a message.
    NotAuthor,
    /// The target (or `reply_to`) is deleted.
    Deleted,
    /// The message has [`MAX_REACTIONS`] distinct reactions already.
    TooManyReactions,
    // issue 17: moderation
    /// The writer of a room message is muted there: the store keeps each
    /// room's mutes, updated by its `mute`/`unmute` events in the same
    /// step, so a post stored after a mute is refused on every server.
    Muted,
}

impl Rejected {
    /// The refusal the Redis script answers with its negative code.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            -1 => Some(Self::NoSuchMessage),
            -2 => Some(Self::NotAuthor),
            -3 => Some(Self::Deleted),
            -4 => Some(Self::TooManyReactions),
            -5 => Some(Self::Muted),
            _ => None,
        }
    }
}

impl Event {
    /// The wire form of a stored message (`msg`, `history`): its latest
    /// state if it is one read back from the store.
    pub fn to_message(&self) -> ChatMessage {
        let state = match &self.kind {
            Kind::Msg(state) => state.clone(),
            _ => MsgState::default(),
        };
        ChatMessage {
            room: self.conv.key(),
            id: self.id,
            from: self.from.clone(),
            text: if state.deleted {
                String::new()
            } else {
                self.text.clone()
            },
            ts: self.ts,
            reply_to: state.reply_to,
            edited_ts: state.edited_ts,
            deleted: state.deleted,
            reactions: state.reactions,
            guest: state.guest,
        }
    }
}

/// The ids `after < id <= upto` of a conversation: what a resume
/// replays, what a fill reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The last id before the span (the last one seen).
    pub after: u64,
    /// The last id in it.
    pub upto: u64,
}

impl Span {
    /// Whether `id` is in the span.
    pub fn contains(self, id: u64) -> bool {
        id > self.after && id <= self.upto
    }
}

/// An event not yet stored: [`Backend::append`] gives it its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Where.
    pub conv: Conversation,
    /// Who writes it.
    pub from: String,
    /// The text (see [`Event::text`]).
    pub text: String,
    /// Server time, ms since the Unix epoch.
    pub ts: u64,
    /// What it is.
    pub kind: Kind,
}

impl NewEvent {
    /// The event once it has `id`.
    pub fn with_id(self, id: u64) -> Event {
        Event {
            conv: self.conv,
            id,
            from: self.from,
            text: self.text,
            ts: self.ts,
            kind: self.kind,
        }
    }
}

/// What the writer of an appended event is told, once: the id it got
/// (after [`HubEvents::stored`] for a local backend, whenever Redis answers
/// for a shared one), or that it was not stored.
pub trait Ack: Send {
    /// The writer has gone: a backend still waiting to store the event may
    /// drop it (its writer was never told it was accepted).
    fn abandoned(&self) -> bool;
    /// The outcome: the id, or `Err` if the event was not stored.
    fn done(self: Box<Self>, outcome: Result<u64, Unavailable>);
    /// The store refused the event (it took no id): nothing changed. By
    /// default, told as not stored.
    fn refused(self: Box<Self>, why: Rejected) {
        let _ = why;
        self.done(Err(Unavailable));
    }
}

/// An event that is not stored: it reaches whoever is there when it is
/// published, and nobody later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// `user` is typing in `room`.
    Typing {
        /// The room.
        room: String,
        /// Who.
        user: String,
    },
    /// `nick`'s connections are stale and close (4000). The hub no longer
    /// publishes it (since issue 16 a `hello` proving the session is one
    /// more connection of the user, and `logout` is [`Signal::Logout`]);
    /// still honoured when heard.
    Replaced {
        /// The nick.
        nick: String,
    },
    /// `user` read the conversation stored under `conv` ([`Conversation::key`])
    /// up to `id`: a receipt for its other members (not a stored event,
    /// so that reading never feeds unread counts or more reads).
    Receipt {
        /// The conversation's key.
        conv: String,
        /// Who read.
        user: String,
        /// Up to where.
        id: u64,
    },
    /// The account session `session` of `nick` was revoked (logout, a
    /// password change, a replayed refresh token): its connections close
    /// (4005), on every server.
    Revoked {
        /// Whose session.
        nick: String,
        /// The session id.
        session: String,
    },
    /// `nick` logged out (or, with `renamed`, took another nick): every
    /// connection holding it closes, on every server.
    Logout {
        /// The nick.
        nick: String,
        /// The nick it was renamed to, if it was.
        renamed: Option<String>,
        /// With `renamed`: the new nick's session secret, for the user's
        /// other connections to reconnect with.
        session: Option<String>,
        /// Whether a guest logged out: only the guest connections of the
        /// nick close (a verified user's are not the guest's to end).
        guest: bool,
    },
    /// `nick` is registered, or its account's user connected: the guest
    /// connections holding it or a look-alike of it close (4006), on
    /// every server (issue 17).
    Claimed {
        /// The account's nick.
        nick: String,
    },
    // issue 17: moderation
    /// `nick` is banned from the server: every connection holding it
    /// closes (4004), on every server.
    Banned {
        /// The nick.
        nick: String,
    },
    /// `nick`'s blocks changed (on some server): each server holding it
    /// reads them again.
    Blocks {
        /// The nick.
        nick: String,
    },
}

/// What a backend keeps of each user's conversations besides their
/// events: read marks, DM partners, the nicks ever seen (issue 16).
/// Its own trait, so that a backend's conversation state lives in its
/// own file; every [`Backend`] is one.
pub trait Convs: Send + Sync {
    /// Moves `user`'s read mark in `conv` to `id` if that is further than
    /// the one kept (a mark never moves back); whether it moved.
    fn mark_read(&self, user: &str, conv: &Conversation, id: u64) -> Reply<'_, bool>;

    /// Every read mark of `user`.
    fn reads(&self, user: &str) -> Reply<'_, Vec<(Conversation, u64)>>;

    /// Up to `limit` readers of `conv` and their marks, furthest first.
    fn readers(&self, conv: &Conversation, limit: usize) -> Reply<'_, Vec<(String, u64)>>;

    /// Up to `limit` of `user`'s DM conversations, the latest first: the
    /// other user and the conversation's last id.
    fn dms(&self, user: &str, limit: usize) -> Reply<'_, Vec<(String, u64)>>;

    /// Notes that `nick` said hello (it may get DMs while away).
    fn remember_user(&self, nick: &str);

    /// Whether `nick` ever said hello, on any server sharing the store.
    fn known_user(&self, nick: &str) -> Reply<'_, bool>;

    /// Forgets `nick`'s session secret everywhere (logout).
    fn forget_session(&self, nick: &str);
}

/// An account as its store keeps it (issue 17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The nick, as registered.
    pub nick: String,
    /// Its password's Argon2id hash, a PHC string (`$argon2id$v=19$…`).
    pub hash: String,
}

/// A login's session, as first stored: its id (the `sid` of its access
/// tokens) and the SHA-256 digest of its first refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// The session id.
    pub id: String,
    /// Whose.
    pub nick: String,
    /// SHA-256 of the refresh token, hex: the token itself is never kept.
    pub refresh: String,
    /// When the refresh token (and, unrefreshed, the session) expires,
    /// ms since the Unix epoch.
    pub expires: u64,
}

/// What [`Accounts::create_account`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// The account exists now.
    Created,
    /// An account holds the skeleton already: this nick, as registered
    /// (the same nick as asked for, or a look-alike of it).
    Taken(String),
}

/// What [`Accounts::rotate`] found for a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// It was live: it is spent now, and the new one replaces it.
    Rotated {
        /// The session it belongs to.
        session: String,
        /// The session's user.
        nick: String,
    },
    /// It was spent already: someone replayed it, so the session it
    /// belonged to is revoked now.
    Replayed {
        /// The session revoked.
        session: String,
        /// Its user.
        nick: String,
    },
    /// No such token, expired, or its session is revoked.
    Unknown,
}

/// Where accounts, their sessions and the server's token key live
/// (issue 17): beside the history, so that every server sharing a store
/// shares accounts too. Each check-and-write is atomic in the store (the
/// history thread's transaction, a Redis script).
pub trait Accounts: Send + Sync {
    /// The key the server signs its session tokens with: the one stored,
    /// or `candidate`, stored now if none was (the first server to ask
    /// sets it for all).
    fn signing_key(&self, candidate: Vec<u8>) -> Reply<'_, Vec<u8>>;

    /// Creates the account `nick`, unique on its confusable `skeleton`.
    fn create_account(&self, nick: &str, skeleton: &str, hash: &str) -> Reply<'_, Registered>;

    /// The account whose nick has `skeleton`, if any.
    fn account(&self, skeleton: &str) -> Reply<'_, Option<Account>>;

    /// Replaces the password hash of the account with `skeleton`.
    fn set_password(&self, skeleton: &str, hash: &str) -> Reply<'_, ()>;

    /// Stores a new session and its first refresh token.
    fn open_session(&self, session: NewSession) -> Reply<'_, ()>;

    /// Spends the refresh token whose digest is `refresh` and stores
    /// `next` (expiring at `expires`) for its session; a spent one
    /// revokes its session ([`Rotation::Replayed`]).
    fn rotate(&self, refresh: &str, next: &str, expires: u64) -> Reply<'_, Rotation>;

    /// Whether the session `id` exists and is not revoked.
    fn session_live(&self, id: &str) -> Reply<'_, bool>;

    /// Revokes the session `id` and its refresh tokens.
    fn revoke(&self, id: &str) -> Reply<'_, ()>;

    /// Revokes every session of `nick` but `except`; the ids revoked.
    fn revoke_all(&self, nick: &str, except: Option<&str>) -> Reply<'_, Vec<String>>;
}

/// A peer's identity (another server sharing the backend), as the backend
/// names it. Opaque to the hub.
pub type Peer = String;

/// What the hub asks of the place where conversations live.
pub trait Backend: Convs + Accounts + Moderation {
    /// Starts whatever runs in the background (Redis: the link's tasks),
    /// reporting to `hub`. Called once, before any other method.
    fn start(self: Arc<Self>, hub: Arc<dyn HubEvents>) -> Vec<tokio::task::JoinHandle<()>>;

    /// Gives `event` the next id of its conversation and stores it (or,
    /// for an event its store refuses, tells `ack` why: [`Ack::refused`],
    /// and it takes no id); once
    /// stored, the event goes to [`HubEvents::stored`] (on every server
    /// sharing the store) and the id to `ack` (locally, after the event;
    /// through Redis, whichever comes first). Ids are given in the order of
    /// the calls, per conversation, and an event is never reported before
    /// it is stored. Never waits; `Err(Busy)` if too many events wait for
    /// the store already.
    fn append(&self, event: NewEvent, ack: Box<dyn Ack>) -> Result<(), Busy>;

    /// The last id given in `conv` (0 if none): a room coming into memory
    /// continues from it.
    fn last_id(&self, conv: &Conversation) -> Reply<'_, u64>;

    /// Up to `limit` events of `conv` with ids below `before`, oldest
    /// first, and whether older ones exist.
    fn history(&self, conv: &Conversation, before: u64, limit: u32) -> Reply<'_, Page>;

    /// The events of `conv` in `span`, oldest first; the newest `limit`
    /// if there are more.
    fn range(&self, conv: &Conversation, span: Span, limit: u32) -> Reply<'_, Vec<Event>>;

    /// Reads `span` of `conv` for the hub, which saw a hole in the ids it
    /// was given, retrying until the store answers; the result goes to
    /// [`HubEvents::filled`].
    fn fill(&self, conv: Conversation, span: Span);

    /// Sends `signal` to every server, this one included
    /// ([`HubEvents::signal`]); lost if the store is away.
    fn publish(&self, signal: Signal);

    /// Whether other servers share presence through this backend: if not,
    /// [`publish_presence`](Self::publish_presence) is never needed.
    fn shares_presence(&self) -> bool;

    /// Tells the other servers how the nicks in `scope` here changed
    /// (or, after [`HubEvents::republish`], all of them).
    fn publish_presence(&self, scope: &Scope, change: PresenceChange);

    /// Who is in `scope` on each other live server.
    fn presence(&self, scope: &Scope) -> Reply<'_, Vec<(Peer, Vec<String>)>>;

    /// Keeps `nick`'s session secret where every server can check it.
    fn remember_session(&self, nick: &str, session: &str);

    /// The session secret last kept for `nick`, by any server.
    fn session_of(&self, nick: &str) -> Reply<'_, Option<String>>;

    /// On shutdown, after the hub stops appending: waits (up to `limit`)
    /// until every appended event is stored and acked. Returns how many
    /// were not.
    fn drain(&self, limit: Duration) -> Pin<Box<dyn Future<Output = usize> + Send + '_>>;

    /// Last: sends what is still queued (our users leaving) and releases
    /// the store (the history database's lock).
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// `Ok` while the store works; if not, since how long it has not.
    fn health(&self) -> Result<(), Duration>;

    /// The backend's own lines of `/metrics` (none for a local one).
    fn render_metrics(&self) -> String;
}

/// What a backend tells the hub: the only way it reaches the hub.
pub trait HubEvents: Send + Sync {
    /// `event` is stored: it goes to the conversation's members, in id
    /// order (an id beyond the next one waits for a [`Backend::fill`]).
    fn stored(&self, event: Event);

    /// The result of a [`Backend::fill`]: the events it found in `span`
    /// (any missing are lost, and are skipped).
    fn filled(&self, conv: &Conversation, span: Span, events: Vec<Event>);

    /// A published [`Signal`] arrived.
    fn signal(&self, signal: Signal);

    /// `peer`'s nicks in `scope` changed: all of them are now the ones
    /// given, or some came and went.
    fn presence(&self, peer: &str, scope: &Scope, change: PresenceChange);

    /// `peer` is gone: its nicks leave every scope.
    fn peer_gone(&self, peer: &str);

    /// The rooms with members here.
    fn rooms(&self) -> Vec<String>;

    /// `room`'s stream reaches `last`: what this server has not delivered
    /// up to it is filled (after a subscription was lost).
    fn stream_head(&self, room: &str, last: u64);

    /// Our presence may be lost elsewhere: publish all of it again.
    fn republish(&self);

    /// Whether the hub is shutting down (a retry loop may stop).
    fn is_shutting_down(&self) -> bool;
}
