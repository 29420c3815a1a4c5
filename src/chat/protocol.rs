//! The chat's wire protocol: JSON objects in text frames, one per frame,
//! named by their `type` field. `docs/PROTOCOL.md` is the reference; this
//! file is its implementation, and every rule there is checked here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod convs;

pub use convs::{
    DmSummary, MAX_DMS, MAX_MENTIONS, MAX_READERS, MAX_UNREAD, MAX_WELCOME_DMS, ReadMark, mentions,
};
mod field;
mod lifecycle;
pub use lifecycle::{MAX_EMOJI, check_emoji};
mod moderation;
pub use moderation::{
    Action, AuditEntry, MAX_BLOCKS, MAX_MINUTES, MAX_REASON, MAX_ROOM_RESTRICTIONS, MAX_ROOM_ROLES,
    MAX_SLOW, MAX_SLOW_STAMPS, MAX_TOPIC, ModAction, ModEvent, Role, RoomState, YouState,
};

/// The longest message text, in bytes.
pub const MAX_TEXT: usize = 4096;
/// The most rooms one connection may be in.
pub const MAX_ROOMS: usize = 20;
/// The largest `history` page.
pub const MAX_HISTORY: u32 = 100;
/// The `history` page size when none is asked for, and on a fresh join.
pub const DEFAULT_HISTORY: u32 = 50;
/// The largest `members` page, and its size when none is asked for; also
/// the most members the `presence` sent on a join names. 100 nicks of at
/// most 24 bytes are under 3 KiB of JSON whatever the room's size, and a
/// list of 100 fills a sidebar several times over.
pub const MAX_MEMBERS: u32 = 100;
/// The room everyone starts in.
pub const DEFAULT_ROOM: &str = "general";
/// The longest `message` of an `error`, in bytes: a refusal names what it
/// refused, but never echoes back more of it than this (a client must not
/// be able to make the server send its own megabyte back).
pub const MAX_REFUSAL: usize = 160;
/// The largest frame, and message, a chat client may send, in bytes.
///
/// The largest valid request is a `msg` with [`MAX_TEXT`] bytes of text;
/// JSON may escape every one of them as `\u00XX` (6 bytes for 1), so its
/// text alone may take 6 × 4,096 = 24,576 bytes on the wire. 8 KiB more
/// covers the other fields and the largest `hello` (a token, 20 resumed
/// rooms). Going over closes the connection with 1009 (RFC 6455 §7.4.1),
/// and a compressed message counts after inflation, checked while it
/// inflates (RFC 7692 §7.2.2), so a deflate bomb stops at this size.
pub const MAX_REQUEST: usize = 6 * MAX_TEXT + 8 * 1024;

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// Identifies the client; must come first.
    Hello {
        /// The nick wanted (anonymous mode).
        #[serde(default)]
        nick: Option<String>,
        /// A JWT (when the server requires one).
        #[serde(default)]
        token: Option<String>,
        /// The secret from an earlier `welcome`, to reclaim the nick.
        #[serde(default)]
        session: Option<String>,
        /// The last message id seen in each room, to resume.
        #[serde(default)]
        resume: Option<BTreeMap<String, u64>>,
    },
    /// Join a room.
    Join {
        /// The room.
        room: String,
    },
    /// Leave a room.
    Leave {
        /// The room.
        room: String,
    },
    /// Post to a room.
    Msg {
        /// The room.
        room: String,
        /// The text.
        text: String,
        /// The client's id for the `ack`.
        client_id: String,
        /// The id of the message (in the same room) it replies to.
        #[serde(default)]
        reply_to: Option<u64>,
    },
    /// A private message.
    Dm {
        /// The recipient's nick.
        to: String,
        /// The text.
        text: String,
        /// The client's id for the `ack`.
        client_id: String,
        /// The id of the message (in the same DM conversation) it replies to.
        #[serde(default)]
        reply_to: Option<u64>,
    },
    /// Edit one's own message (see `docs/PROTOCOL.md`, "Edits, deletes, reactions and replies").
    Edit {
        /// The room (or `dm`).
        #[serde(default)]
        room: Option<String>,
        /// The DM conversation with this nick (instead of `room`).
        #[serde(default)]
        dm: Option<String>,
        /// The message.
        id: u64,
        /// Its new text.
        text: String,
        /// The client's id for the `ack`.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// Delete one's own message: its text is purged.
    Delete {
        /// The room (or `dm`).
        #[serde(default)]
        room: Option<String>,
        /// The DM conversation with this nick (instead of `room`).
        #[serde(default)]
        dm: Option<String>,
        /// The message.
        id: u64,
        /// The client's id for the `ack`.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// Toggle one's reaction to a message.
    React {
        /// The room (or `dm`).
        #[serde(default)]
        room: Option<String>,
        /// The DM conversation with this nick (instead of `room`).
        #[serde(default)]
        dm: Option<String>,
        /// The message.
        id: u64,
        /// The reaction: one grapheme, or a `:name:`.
        emoji: String,
        /// The client's id for the `ack`.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// The user is typing in a room.
    Typing {
        /// The room.
        room: String,
    },
    /// Older messages of a room, or of one of the user's DMs.
    History {
        /// The room (empty when `dm` is given).
        #[serde(default)]
        room: String,
        /// The other user of a DM conversation, instead of `room`.
        #[serde(default)]
        dm: Option<String>,
        /// Only ids below this (default: the newest).
        #[serde(default)]
        before: Option<u64>,
        /// At most this many (1 to 100, default 50).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// A page of a room's members.
    Members {
        /// The room.
        room: String,
        /// The cursor: only members after this nick (default: from the
        /// first).
        #[serde(default)]
        after: Option<String>,
        /// At most this many (1 to 100, default 100).
        #[serde(default)]
        limit: Option<u32>,
        /// Only nicks that begin with this, ignoring ASCII case.
        #[serde(default)]
        q: Option<String>,
    },
    /// The user has read a conversation up to `id`.
    Read {
        /// The room (or `dm`).
        #[serde(default)]
        room: Option<String>,
        /// The other user of a DM conversation (or `room`).
        #[serde(default)]
        dm: Option<String>,
        /// The last id read.
        id: u64,
        /// Named again by a refusal.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// The user's DM conversations.
    Dms {},
    /// Change the user's nick.
    Nick {
        /// The nick wanted.
        nick: String,
        /// Named again by a refusal.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// End the user's session everywhere.
    Logout {},
    // issue 17: moderation (`protocol/moderation.rs` checks them)
    /// Remove `user` from `room` now (may rejoin).
    Kick {
        /// The room.
        room: String,
        /// Who.
        user: String,
        /// Why.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Ban `user` from `room` (none: from the server, admins only).
    Ban {
        /// The room, or none for a server-wide ban.
        #[serde(default)]
        room: Option<String>,
        /// Who.
        user: String,
        /// For how long (none: until lifted).
        #[serde(default)]
        minutes: Option<u64>,
        /// Or for this many seconds (short ones: a test's, a cool-down).
        #[serde(default)]
        seconds: Option<u64>,
        /// Why.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Lift a ban.
    Unban {
        /// The room, or none for a server-wide ban.
        #[serde(default)]
        room: Option<String>,
        /// Who.
        user: String,
    },
    /// `user` may read `room` but not post.
    Mute {
        /// The room.
        room: String,
        /// Who.
        user: String,
        /// For how long (none: until lifted).
        #[serde(default)]
        minutes: Option<u64>,
        /// Or for this many seconds (short ones: a test's, a cool-down).
        #[serde(default)]
        seconds: Option<u64>,
        /// Why.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Lift a mute.
    Unmute {
        /// The room.
        room: String,
        /// Who.
        user: String,
    },
    /// One message per `seconds` per user in `room` (0: off).
    Slow {
        /// The room.
        room: String,
        /// The interval.
        seconds: u64,
    },
    /// Set `room`'s topic.
    Topic {
        /// The room.
        room: String,
        /// The topic (empty: none).
        topic: String,
    },
    /// Give `user` a role in `room`.
    Role {
        /// The room.
        room: String,
        /// Who.
        user: String,
        /// `owner`, `moderator` or `member`.
        role: String,
    },
    /// Block `user`: no DMs from them, none of their room messages.
    Block {
        /// Who.
        user: String,
    },
    /// Unblock `user`.
    Unblock {
        /// Who.
        user: String,
    },
    /// The users one blocks.
    Blocks {},
    /// Issue 22: start or stop recording this connection's frames for the
    /// page's wire panel (`wire` events carry them).
    Wire {
        /// Recording on or off.
        on: bool,
    },
    /// A page of `room`'s audit log (`*`: the server's; admins only).
    Audit {
        /// The room.
        room: String,
        /// Only entries with ids below this.
        #[serde(default)]
        before: Option<u64>,
        /// At most this many (1 to 100, default 50).
        #[serde(default)]
        limit: Option<u32>,
    },
}

impl ClientMsg {
    /// Whether it is one of issue 17's moderation requests (the hub's
    /// `moderate` takes them all).
    pub fn is_moderation(&self) -> bool {
        matches!(
            self,
            ClientMsg::Kick { .. }
                | ClientMsg::Ban { .. }
                | ClientMsg::Unban { .. }
                | ClientMsg::Mute { .. }
                | ClientMsg::Unmute { .. }
                | ClientMsg::Slow { .. }
                | ClientMsg::Topic { .. }
                | ClientMsg::Role { .. }
                | ClientMsg::Block { .. }
                | ClientMsg::Unblock { .. }
                | ClientMsg::Blocks {}
                | ClientMsg::Audit { .. }
        )
    }
}

/// The `type`s a client may send, to tell an unknown type from a bad field.
const CLIENT_TYPES: [&str; 28] = [
    "hello", "join", "leave", "msg", "dm", "typing", "history", "members", "edit", "delete",
    "react", "read", "dms", "nick", "logout", // issue 17: moderation
    "kick", "ban", "unban", "mute", "unmute", "slow", "topic", "role", "block", "unblock",
    "blocks", "audit", // issue 22: the wire panel
    "wire",
];

/// The `code` of an `error`: why a request was refused. These are the
/// codes of `docs/PROTOCOL.md` ("Error codes"), serialized as the same
/// snake_case strings; the wire strings are a contract with every client,
/// pinned by a test against that document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object with a string `type`, or is binary.
    BadJson,
    /// The `type` is none the protocol has.
    UnknownType,
    /// A field is missing, unknown or out of its range; the message names it.
    InvalidField,
    /// Something other than `hello` came first.
    HelloRequired,
    /// A request names a room the client has not joined.
    NotInRoom,
    /// The client is already in [`MAX_ROOMS`] rooms.
    TooManyRooms,
    /// The server holds its maximum of rooms in memory.
    RoomsFull,
    /// A `dm` to a nick nobody online holds.
    UnknownUser,
    /// Over the connection's rate (its token bucket is empty).
    RateLimited,
    /// Shutting down, or the message store cannot take the post: it was
    /// not accepted and may be sent again later.
    Unavailable,
    /// An edit or delete of someone else's message.
    NotAuthor,
    /// The id (or `reply_to`) is no message of that conversation.
    NoSuchMessage,
    /// The message (or `reply_to`) is deleted.
    Deleted,
    /// The `emoji` is neither one grapheme of at most 32 bytes nor a
    /// `:name:`.
    BadEmoji,
    /// The message has the most distinct reactions it may have.
    TooManyReactions,
    /// A `read` names an id beyond the conversation's newest.
    BeyondNewest,
    /// A `nick` names a nick someone else holds.
    NickTaken,
    /// A `nick` on a server where nicks come from tokens.
    NickFixed,
    /// A `hello` for a user who already has the most connections.
    TooManyConnections,
    // issue 17: accounts
    /// A guest `hello` asking for a registered account's nick.
    NickReserved,
    /// A guest `hello` asking for a look-alike of a registered or online
    /// nick (the same confusable skeleton, `accounts/skeleton.rs`).
    NickConfusable,
    /// A guest `hello` on a server that takes accounts only; then 4001.
    AccountRequired,
    // issue 17: moderation
    /// The viewer's role does not allow it (the message says which would).
    Forbidden,
    /// A post to a room where the poster is muted.
    Muted,
    /// A post sooner than the room's slow mode allows.
    SlowMode,
    /// A join of a room (or a `hello` to a server) one is banned from.
    Banned,
    /// A DM to someone who blocks the sender.
    Blocked,
    /// A ban, mute or role past the room's bound ([`MAX_ROOM_RESTRICTIONS`]
    /// mutes and bans in force, [`MAX_ROOM_ROLES`] owners and moderators).
    RulesFull,
}

impl ErrorCode {
    /// Every code, in the order `docs/PROTOCOL.md` lists them.
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::InvalidField,
        ErrorCode::HelloRequired,
        ErrorCode::NotInRoom,
        ErrorCode::TooManyRooms,
        ErrorCode::RoomsFull,
        ErrorCode::UnknownUser,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::NotAuthor,
        ErrorCode::NoSuchMessage,
        ErrorCode::Deleted,
        ErrorCode::BadEmoji,
        ErrorCode::TooManyReactions,
        ErrorCode::BeyondNewest,
        ErrorCode::NickTaken,
        ErrorCode::NickFixed,
        ErrorCode::TooManyConnections,
        ErrorCode::NickReserved,
        ErrorCode::NickConfusable,
        ErrorCode::AccountRequired,
        ErrorCode::Forbidden,
        ErrorCode::Muted,
        ErrorCode::SlowMode,
        ErrorCode::Banned,
        ErrorCode::Blocked,
        ErrorCode::RulesFull,
    ];
}

/// Why a client frame was refused: the `code` and `message` of an `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why, for the client's code.
    pub code: ErrorCode,
    /// A sentence for a human.
    pub message: String,
}

impl Refusal {
    /// A refusal with a code and a message, cut to [`MAX_REFUSAL`] bytes
    /// (at a character boundary, marked with `…`).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_REFUSAL {
            let mut end = MAX_REFUSAL - '…'.len_utf8();
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        Self { code, message }
    }

    pub(super) fn field(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidField, message)
    }
}

/// Parses and checks one client frame.
pub fn parse(text: &str) -> Result<ClientMsg, Refusal> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Refusal::new(ErrorCode::BadJson, format!("not JSON: {e}")))?;
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
        return Err(Refusal::new(
            ErrorCode::BadJson,
            "expected an object with a string \"type\"",
        ));
    };
    if !CLIENT_TYPES.contains(&kind) {
        // Named, but only a short prefix of it: see `MAX_REFUSAL`.
        let shown: String = kind.chars().take(32).collect();
        return Err(Refusal::new(
            ErrorCode::UnknownType,
            format!("unknown type {shown:?}"),
        ));
    }
    let msg: ClientMsg = match ClientMsg::deserialize(&value) {
        Ok(msg) => msg,
        Err(e) => return Err(Refusal::field(field::name_the_field(&value, e))),
    };
    validate(&msg)?;
    Ok(msg)
}

/// The `client_id` of a request that was refused before it could be
/// read whole (rate limited, or a field wrong), so that the refusal can
/// name the post it refuses: a client marks that post failed instead of
/// leaving it "sending" for ever.
pub fn client_id_of(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let id = value.get("client_id")?.as_str()?;
    check_client_id(id).ok()?;
    Some(id.to_owned())
}

fn validate(msg: &ClientMsg) -> Result<(), Refusal> {
    match msg {
        ClientMsg::Read {
            room,
            dm,
            client_id,
            ..
        } => convs::check_read(room.as_deref(), dm.as_deref(), client_id.as_deref()),
        ClientMsg::Nick { nick, client_id } => {
            check_nick(nick)?;
            client_id.as_deref().map_or(Ok(()), check_client_id)
        }
        ClientMsg::Dms {} | ClientMsg::Logout {} => Ok(()),
        ClientMsg::Hello { nick, resume, .. } => {
            if let Some(n) = nick {
                check_nick(n)?;
            }
            if let Some(r) = resume {
                if r.len() > MAX_ROOMS {
                    return Err(Refusal::field(format!("resume: at most {MAX_ROOMS} rooms")));
                }
                r.keys().try_for_each(|room| check_room(room))?;
            }
            Ok(())
        }
        ClientMsg::Join { room } | ClientMsg::Leave { room } | ClientMsg::Typing { room } => {
            check_room(room)
        }
        ClientMsg::Msg {
            room,
            text,
            client_id,
            ..
        } => {
            check_room(room)?;
            check_text(text)?;
            check_client_id(client_id)
        }
        ClientMsg::Edit { .. } | ClientMsg::Delete { .. } | ClientMsg::React { .. } => {
            lifecycle::validate(msg)
        }
        ClientMsg::Dm {
            to,
            text,
            client_id,
            ..
        } => {
            check_nick(to).map_err(|_| Refusal::field("to: not a valid nick"))?;
            check_text(text)?;
            check_client_id(client_id)
        }
        ClientMsg::History {
            room, dm, limit, ..
        } => {
            match dm {
                Some(dm) if room.is_empty() => {
                    check_nick(dm).map_err(|_| Refusal::field("dm: not a valid nick"))?
                }
                Some(_) => return Err(Refusal::field("room and dm: one or the other")),
                None => check_room(room)?,
            }
            match limit {
                Some(l) if !(1..=MAX_HISTORY).contains(l) => {
                    Err(Refusal::field(format!("limit: 1 to {MAX_HISTORY}")))
                }
                _ => Ok(()),
            }
        }
        ClientMsg::Members {
            room,
            after,
            limit,
            q,
        } => {
            check_room(room)?;
            if let Some(a) = after {
                check_nick(a).map_err(|_| Refusal::field("after: not a valid nick"))?;
            }
            if let Some(q) = q
                && !q.is_empty()
            {
                check_nick(q)
                    .map_err(|_| Refusal::field("q: up to 24 letters, digits, '_', '-' or '.'"))?;
            }
            match limit {
                Some(l) if !(1..=MAX_MEMBERS).contains(l) => {
                    Err(Refusal::field(format!("limit: 1 to {MAX_MEMBERS}")))
                }
                _ => Ok(()),
            }
        }
        // The rest: issue 17's moderation requests.
        other => moderation::validate(other),
    }
}

/// Nicks: 1–24 characters, letters, digits, `_`, `-`, `.`.
pub fn check_nick(nick: &str) -> Result<(), Refusal> {
    let ok = (1..=24).contains(&nick.len())
        && nick
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Refusal::field(
            "nick: 1-24 letters, digits, '_', '-' or '.'",
        ))
    }
}

/// Exactly one of `room` and `dm` (a DM's other user), each valid: what
/// every request that may name either conversation carries.
fn check_where(room: Option<&str>, dm: Option<&str>) -> Result<(), Refusal> {
    match (room, dm) {
        (Some(room), None) => check_room(room),
        (None, Some(nick)) => check_nick(nick).map_err(|_| Refusal::field("dm: not a valid nick")),
        _ => Err(Refusal::field("room or dm: exactly one of them")),
    }
}

/// Rooms: 1–32 characters, lowercase letters, digits, `_`, `-`.
pub fn check_room(room: &str) -> Result<(), Refusal> {
    let ok = (1..=32).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Refusal::field(
            "room: 1-32 lowercase letters, digits, '_' or '-'",
        ))
    }
}

/// Message text: 1–[`MAX_TEXT`] bytes that show something. Control
/// characters other than newline and tab are refused (not stripped: the
/// sender learns its text was not sent as typed), and so is text made only
/// of characters that render as nothing ([`is_invisible`]).
pub(super) fn check_text(text: &str) -> Result<(), Refusal> {
    if text.len() > MAX_TEXT {
        return Err(Refusal::field(format!("text: at most {MAX_TEXT} bytes")));
    }
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Refusal::field(format!(
            "text: control character U+{:04X} (only newline and tab are allowed)",
            u32::from(c)
        )));
    }
    if text.chars().all(is_invisible) {
        return Err(Refusal::field("text: empty, or only invisible characters"));
    }
    Ok(())
}

/// Whether `c` renders as nothing visible on its own: Unicode `White_Space`,
/// the `Default_Ignorable_Code_Point` property (zero-width spaces and
/// joiners, bidirectional marks and controls, word joiner, invisible
/// operators, variation selectors, tags, the soft hyphen, the Hangul
/// fillers), and the blanks that are neither but show as a gap (Braille
/// pattern blank, Hangul filler). The ranges are those of Unicode 16's
/// `DerivedCoreProperties.txt`, written out so the list can be read.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'                       // soft hyphen
            | '\u{034F}'                     // combining grapheme joiner
            | '\u{061C}'                     // Arabic letter mark
            | '\u{115F}'..='\u{1160}'        // Hangul choseong/jungseong fillers
            | '\u{17B4}'..='\u{17B5}'        // Khmer inherent vowels
            | '\u{180B}'..='\u{180F}'        // Mongolian variation selectors, vowel separator
            | '\u{200B}'..='\u{200F}'        // zero-width space, (non-)joiner, LRM, RLM
            | '\u{202A}'..='\u{202E}'        // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{206F}'        // word joiner, invisible operators, isolates
            | '\u{2800}'                     // Braille pattern blank
            | '\u{3164}'                     // Hangul filler
            | '\u{FE00}'..='\u{FE0F}'        // variation selectors
            | '\u{FEFF}'                     // zero-width no-break space (BOM)
            | '\u{FFA0}'                     // halfwidth Hangul filler
            | '\u{FFF0}'..='\u{FFF8}'        // unassigned, default ignorable
            | '\u{1BCA0}'..='\u{1BCA3}'      // shorthand format controls
            | '\u{1D173}'..='\u{1D17A}'      // musical symbol format controls
            | '\u{E0000}'..='\u{E0FFF}' // tags, variation selectors supplement
        )
}

pub(super) fn check_client_id(id: &str) -> Result<(), Refusal> {
    if (1..=64).contains(&id.len()) {
        Ok(())
    } else {
        Err(Refusal::field("client_id: 1-64 characters"))
    }
}

/// A stored room message (or DM), as sent in `msg`, `dm` and `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// The room (for a DM, the conversation key; not sent).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub room: String,
    /// Increases by one per room.
    pub id: u64,
    /// The sender's nick.
    pub from: String,
    /// The text (latest, if edited); none once deleted.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// Server time, milliseconds since the Unix epoch.
    pub ts: u64,
    /// The message it replies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// When it was last edited (in `history`; live, an `edited` says so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_ts: Option<u64>,
    /// A tombstone: the message was deleted (and has no `text`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Each reaction and who has it (in `history`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub reactions: BTreeMap<String, Vec<String>>,
    /// Its writer was a guest (issue 17); omitted when not.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub guest: bool,
}

/// What the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg<'a> {
    /// The answer to `hello`.
    Welcome {
        /// The nick in use.
        user: &'a str,
        /// The secret that reclaims it.
        session: &'a str,
        /// The rooms joined.
        rooms: &'a [String],
        /// Messages by others after the user's last read, per conversation
        /// (a room's name, or `@nick` for a DM), capped at
        /// [`MAX_UNREAD`].
        unread: &'a BTreeMap<String, u64>,
        /// Of those, the ones that mention the user (every DM does).
        mentions: &'a BTreeMap<String, u64>,
        /// Whether the user is a guest (issue 17; omitted with
        /// `--accounts off`, where everyone is).
        #[serde(skip_serializing_if = "Option::is_none")]
        guest: Option<bool>,
    },
    /// A room message.
    Msg(&'a ChatMessage),
    /// A private message.
    Dm {
        /// Its id in the conversation.
        id: u64,
        /// The sender.
        from: &'a str,
        /// The recipient.
        to: &'a str,
        /// The text.
        text: &'a str,
        /// Server time, ms since the epoch.
        ts: u64,
        /// The message it replies to.
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        /// The sender was a guest (issue 17); omitted when not.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        guest: bool,
    },
    /// A message was edited (`id`: the message; `event_id`: the edit's
    /// own id in the stream, for `resume`).
    Edited {
        /// The room, or none in a DM.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        /// In a DM: the other party, as the receiver sees it.
        #[serde(skip_serializing_if = "Option::is_none")]
        dm: Option<&'a str>,
        /// The message.
        id: u64,
        /// Its new text.
        text: &'a str,
        /// When.
        edited_ts: u64,
        /// Who (its author).
        from: &'a str,
        /// The edit's own id.
        event_id: u64,
    },
    /// A message was deleted.
    Deleted {
        /// The room, or none in a DM.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        /// In a DM: the other party, as the receiver sees it.
        #[serde(skip_serializing_if = "Option::is_none")]
        dm: Option<&'a str>,
        /// The message.
        id: u64,
        /// Who.
        from: &'a str,
        /// The delete's own id.
        event_id: u64,
        /// Issue 17: the moderator, owner or admin who deleted someone
        /// else's message (none: its author did).
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<&'a str>,
    },
    /// A reaction was toggled: who has it now.
    Reaction {
        /// The room, or none in a DM.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        /// In a DM: the other party, as the receiver sees it.
        #[serde(skip_serializing_if = "Option::is_none")]
        dm: Option<&'a str>,
        /// The message.
        id: u64,
        /// The reaction.
        emoji: &'a str,
        /// Everyone who has it now, sorted (empty: nobody).
        users: &'a [String],
        /// Who toggled it.
        from: &'a str,
        /// The toggle's own id.
        event_id: u64,
    },
    /// A `msg` or `dm` was accepted and stored.
    Ack {
        /// The client's id.
        client_id: &'a str,
        /// The id it got.
        id: u64,
    },
    /// Who joined and left a room.
    Presence {
        /// The room.
        room: &'a str,
        /// Nicks that joined (right after our own join: the first page of
        /// members).
        joined: &'a [String],
        /// Nicks that left.
        left: &'a [String],
        /// Everyone in the room now, here and on other servers.
        count: usize,
        /// Only right after our own join (`Some`): the cursor of the next
        /// page of members, or `null` if `joined` is all of them.
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<Option<&'a str>>,
        /// More changed than one delta names: `joined` and `left` are
        /// empty, and the members must be paged again.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
        /// The room is large: its changes are not named, only counted
        /// (`joined` and `left` are empty). The members a client holds
        /// may be stale; page them again when they are shown.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        count_only: bool,
        /// Of `joined`, the guests (issue 17; omitted with `--accounts
        /// off`).
        #[serde(skip_serializing_if = "Option::is_none")]
        guests: Option<&'a [String]>,
    },
    /// A page of a room's members, the answer to `members`.
    Members {
        /// The room.
        room: &'a str,
        /// The request's prefix, if it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        q: Option<&'a str>,
        /// The request's cursor, if it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        after: Option<&'a str>,
        /// The nicks, in order.
        members: &'a [String],
        /// Everyone in the room, whatever `q`.
        count: usize,
        /// The cursor of the next page, or `null` at the end.
        next: Option<&'a str>,
        /// Of `members`, the guests (issue 17; omitted with `--accounts
        /// off`).
        #[serde(skip_serializing_if = "Option::is_none")]
        guests: Option<&'a [String]>,
    },
    /// Someone is typing.
    Typing {
        /// The room.
        room: &'a str,
        /// Who.
        user: &'a str,
    },
    /// A page of a room's messages, oldest first.
    History {
        /// The room.
        room: &'a str,
        /// The messages.
        messages: &'a [ChatMessage],
        /// Whether older ones exist.
        more: bool,
    },
    /// A resume skipped messages: those with `after < id < before` in
    /// `room` were not replayed (more were missed than one replay may
    /// hold). Sent before the replayed `msg`s; page back with `history`
    /// `{before}` to read them.
    Gap {
        /// The room.
        room: &'a str,
        /// The last id the client said it had seen.
        after: u64,
        /// The first id replayed.
        before: u64,
    },
    /// Someone read a conversation up to `id` (coalesced per tick).
    Receipt {
        /// The room (or `dm`).
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        /// The DM conversation, named by its other user (or `room`).
        #[serde(skip_serializing_if = "Option::is_none")]
        dm: Option<&'a str>,
        /// Who read.
        user: &'a str,
        /// Up to where.
        id: u64,
    },
    /// Who has read a conversation up to where, furthest first: after a
    /// join's history, and a DM's first `history` page.
    Receipts {
        /// The room (or `dm`).
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        /// The DM conversation, named by its other user (or `room`).
        #[serde(skip_serializing_if = "Option::is_none")]
        dm: Option<&'a str>,
        /// At most [`MAX_READERS`] of them.
        receipts: &'a [ReadMark],
    },
    /// The user was mentioned (or, for `dm`, sent a DM while away).
    Mention {
        /// The room (or `dm`).
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        /// The DM conversation, named by its other user (or `room`).
        #[serde(skip_serializing_if = "Option::is_none")]
        dm: Option<&'a str>,
        /// The message's id.
        id: u64,
        /// Its author.
        from: &'a str,
    },
    /// The answer to `dms`: the user's DM conversations, latest first.
    Dms {
        /// At most [`MAX_DMS`] of them.
        conversations: &'a [DmSummary],
    },
    /// A page of a DM conversation's messages, oldest first (the answer
    /// to `history` with `dm`).
    #[serde(rename = "history")]
    DmHistory {
        /// The other user.
        dm: &'a str,
        /// The messages.
        messages: &'a [ChatMessage],
        /// Whether older ones exist.
        more: bool,
    },
    /// The answer to `nick`: the nick in use now, and its new secret.
    Renamed {
        /// The new nick.
        user: &'a str,
        /// The nick before.
        old: &'a str,
        /// The secret that reclaims the new nick.
        session: &'a str,
    },
    // issue 17: moderation
    /// A moderation action, stored in the room's stream (`event_id`).
    Moderation(&'a ModEvent),
    /// A room's rules and the viewer's place in them: after each join,
    /// and when the viewer's role or mute changes.
    Room(&'a RoomState),
    /// The answer to `block`, `unblock` and `blocks`.
    Blocks {
        /// Whom the user blocks, sorted.
        users: &'a [String],
    },
    /// The answer to `audit`: entries newest first.
    Audit {
        /// The room (`*`: the server's own log).
        room: &'a str,
        /// The entries.
        entries: &'a [AuditEntry],
        /// Whether older ones exist.
        more: bool,
    },
    /// A refused request.
    Error {
        /// Why.
        code: ErrorCode,
        /// For a human.
        message: &'a str,
        /// The `client_id` of the refused `msg` or `dm`.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
    },
}

impl ServerMsg<'_> {
    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string
        // keys, no I/O.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    /// `bad` is refused as `invalid_field`, and the refusal names `field`
    /// (here and in the child modules' tests).
    pub(super) fn assert_invalid_field(bad: &str, field: &str) {
        let refusal = super::parse(bad).unwrap_err();
        assert_eq!(refusal.code, super::ErrorCode::InvalidField, "{bad}");
        assert!(
            refusal.message.contains(field),
            "{bad}: {}",
            refusal.message
        );
    }

    use super::*;

    #[test]
    fn a_wrong_type_or_range_names_its_field() {
        for (bad, field) in [
            (
                r#"{"type":"mute","room":"a","user":"b","minutes":"5"}"#,
                "`minutes`",
            ),
            (
                r#"{"type":"mute","room":"a","user":"b","seconds":-1}"#,
                "`seconds`",
            ),
            (r#"{"type":"history","room":"a","limit":1e10}"#, "`limit`"),
            (
                r#"{"type":"role","room":"a","user":"b","role":1}"#,
                "`role`",
            ),
            (r#"{"type":"msg","room":7,"text":"hi"}"#, "`room`"),
        ] {
            assert_invalid_field(bad, field);
        }
        // Two bad fields: the first one serde meets is named.
        assert_invalid_field(
            r#"{"type":"mute","room":"a","user":"b","minutes":"5","reason":3}"#,
            "`minutes`",
        );
    }

    #[test]
    fn hello_with_resume_parses() {
        let msg = parse(r#"{"type":"hello","nick":"alice","resume":{"general":41}}"#).unwrap();
        let ClientMsg::Hello { nick, resume, .. } = msg else {
            panic!()
        };
        assert_eq!(nick.as_deref(), Some("alice"));
        assert_eq!(resume.unwrap()["general"], 41);
    }

    #[test]
    fn bad_input_gets_the_right_code() {
        assert_eq!(parse("{").unwrap_err().code, ErrorCode::BadJson);
        assert_eq!(parse("[1]").unwrap_err().code, ErrorCode::BadJson);
        assert_eq!(
            parse(r#"{"type":"shout"}"#).unwrap_err().code,
            ErrorCode::UnknownType
        );
        assert_eq!(
            parse(r#"{"type":"join"}"#).unwrap_err().code,
            ErrorCode::InvalidField
        );
        assert_eq!(
            parse(r#"{"type":"join","room":"General"}"#)
                .unwrap_err()
                .code,
            ErrorCode::InvalidField
        );
        assert_eq!(
            parse(r#"{"type":"join","room":"a","x":1}"#)
                .unwrap_err()
                .code,
            ErrorCode::InvalidField
        );
        let long = "x".repeat(MAX_TEXT + 1);
        let msg = format!(r#"{{"type":"msg","room":"a","text":"{long}","client_id":"1"}}"#);
        assert_eq!(parse(&msg).unwrap_err().code, ErrorCode::InvalidField);
        assert_eq!(
            parse(r#"{"type":"msg","room":"a","text":"  ","client_id":"1"}"#)
                .unwrap_err()
                .code,
            ErrorCode::InvalidField
        );
        assert_eq!(
            parse(r#"{"type":"history","room":"a","limit":0}"#)
                .unwrap_err()
                .code,
            ErrorCode::InvalidField
        );
        assert_eq!(
            parse(r#"{"type":"hello","nick":"bad nick"}"#)
                .unwrap_err()
                .code,
            ErrorCode::InvalidField
        );
    }

    #[test]
    fn server_messages_serialize_as_documented() {
        let m = ChatMessage {
            room: "general".into(),
            id: 7,
            from: "bob".into(),
            text: "<b>hi</b>".into(),
            ts: 1,
            reply_to: None,
            edited_ts: None,
            deleted: false,
            reactions: BTreeMap::new(),
            guest: false,
        };
        assert_eq!(
            ServerMsg::Msg(&m).to_json(),
            r#"{"type":"msg","room":"general","id":7,"from":"bob","text":"<b>hi</b>","ts":1}"#
        );
        assert_eq!(
            ServerMsg::Error {
                code: ErrorCode::RateLimited,
                message: "slow down",
                client_id: None
            }
            .to_json(),
            r#"{"type":"error","code":"rate_limited","message":"slow down"}"#
        );
    }

    #[test]
    fn a_members_request_parses_and_a_bad_one_names_its_field() {
        assert_eq!(
            parse(r#"{"type":"members","room":"general","after":"bob","limit":5,"q":"Al"}"#)
                .unwrap(),
            ClientMsg::Members {
                room: "general".into(),
                after: Some("bob".into()),
                limit: Some(5),
                q: Some("Al".into()),
            }
        );
        assert!(parse(r#"{"type":"members","room":"general"}"#).is_ok());
        for (bad, field) in [
            (r#"{"type":"members"}"#, "room"),
            (r#"{"type":"members","room":"general","limit":0}"#, "limit"),
            (
                r#"{"type":"members","room":"general","limit":101}"#,
                "limit",
            ),
            (
                r#"{"type":"members","room":"general","after":"a b"}"#,
                "after",
            ),
            (r#"{"type":"members","room":"general","q":"<b>"}"#, "q"),
            (
                r#"{"type":"members","room":"general","cursor":"x"}"#,
                "cursor",
            ),
        ] {
            assert_invalid_field(bad, field);
        }
    }

    #[test]
    fn presence_and_members_serialize_as_documented() {
        let page = ["ann".to_owned(), "bob".to_owned()];
        let first = ServerMsg::Presence {
            room: "general",
            joined: &page,
            left: &[],
            count: 3,
            next: Some(Some("bob")),
            truncated: false,
            count_only: false,
            guests: None,
        };
        assert_eq!(
            first.to_json(),
            r#"{"type":"presence","room":"general","joined":["ann","bob"],"left":[],"count":3,"next":"bob"}"#
        );
        let whole = ServerMsg::Presence {
            room: "general",
            joined: &page,
            left: &[],
            count: 2,
            next: Some(None),
            truncated: false,
            count_only: false,
            guests: None,
        };
        assert!(whole.to_json().ends_with(r#""count":2,"next":null}"#));
        let storm = ServerMsg::Presence {
            room: "general",
            joined: &[],
            left: &[],
            count: 9000,
            next: None,
            truncated: true,
            count_only: false,
            guests: None,
        };
        assert_eq!(
            storm.to_json(),
            r#"{"type":"presence","room":"general","joined":[],"left":[],"count":9000,"truncated":true}"#
        );
        let large = ServerMsg::Presence {
            room: "general",
            joined: &[],
            left: &[],
            count: 19000,
            next: None,
            truncated: false,
            count_only: true,
            guests: None,
        };
        assert_eq!(
            large.to_json(),
            r#"{"type":"presence","room":"general","joined":[],"left":[],"count":19000,"count_only":true}"#
        );
        let reply = ServerMsg::Members {
            room: "general",
            q: Some("a"),
            after: None,
            members: &page[..1],
            count: 3,
            next: None,
            guests: None,
        };
        assert_eq!(
            reply.to_json(),
            r#"{"type":"members","room":"general","q":"a","members":["ann"],"count":3,"next":null}"#
        );
    }

    /// The string each code is on the wire, written out: changing one
    /// breaks every client that matches on it.
    fn wire(code: ErrorCode) -> &'static str {
        match code {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RoomsFull => "rooms_full",
            ErrorCode::UnknownUser => "unknown_user",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotAuthor => "not_author",
            ErrorCode::NoSuchMessage => "no_such_message",
            ErrorCode::Deleted => "deleted",
            ErrorCode::BadEmoji => "bad_emoji",
            ErrorCode::TooManyReactions => "too_many_reactions",
            ErrorCode::BeyondNewest => "beyond_newest",
            ErrorCode::NickTaken => "nick_taken",
            ErrorCode::NickFixed => "nick_fixed",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::NickReserved => "nick_reserved",
            ErrorCode::NickConfusable => "nick_confusable",
            ErrorCode::AccountRequired => "account_required",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Muted => "muted",
            ErrorCode::SlowMode => "slow_mode",
            ErrorCode::Banned => "banned",
            ErrorCode::Blocked => "blocked",
            ErrorCode::RulesFull => "rules_full",
        }
    }

    #[test]
    fn error_codes_serialize_as_their_wire_strings() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", wire(code))
            );
        }
    }

    /// `ErrorCode::ALL` is every variant once: `wire` matches every
    /// variant, and no two variants share a string.
    #[test]
    fn error_code_list_has_every_variant_once() {
        let strings: std::collections::BTreeSet<_> =
            ErrorCode::ALL.iter().map(|c| wire(*c)).collect();
        assert_eq!(strings.len(), ErrorCode::ALL.len());
    }

    /// The codes of `docs/PROTOCOL.md` ("Error codes") are exactly ours.
    #[test]
    fn error_codes_are_the_documented_ones() {
        let doc = include_str!("../../docs/PROTOCOL.md");
        let section = doc
            .split("\n## Error codes\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("PROTOCOL.md has an Error codes section");
        // Each code opens a backquoted span; parenthesised notes quote none.
        let documented: Vec<&str> = section.split('`').skip(1).step_by(2).collect();
        let ours: Vec<&str> = ErrorCode::ALL.iter().map(|c| wire(*c)).collect();
        assert_eq!(documented, ours);
    }
}
