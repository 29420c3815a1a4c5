//! What a backend keeps for moderation (issue 17): server admins,
//! server-wide bans, each user's blocks, and the audit log; and the
//! moderation event itself ([`ModAction`], the [`Kind::Moderation`] of a
//! room's stream).
//!
//! A room's rules (owners, moderators, topic, slow mode, its mutes and
//! bans) are not a table of their own: they are the room's moderation
//! events, stored in its stream like any event, with their own ids, and
//! kept apart from the trimmed history as well (SQLite: the `messages`
//! rows of kind `moderation`, never trimmed; Redis: the list
//! `chat:mod:{room}`, pushed by the same script that appends the event,
//! so the two never disagree). A room coming into memory folds them
//! ([`Moderation::rules`]); every server applies the later ones in id
//! order as they are delivered, so every server agrees. The same events
//! are the room's audit log ([`Moderation::audit`]).
//!
//! What is not a room's (admins, server-wide bans) is kept per server
//! store, and its changes are audited under the room `*`.

use super::{Event, Kind, Reply};
pub use crate::chat::protocol::{Action, AuditEntry, ModAction, Role};

/// The kinds of issue 17 as the stores name them, read back: a
/// moderation event from its text, a moderator's delete by its target.
pub fn decode(name: &str, target: u64, text: &str) -> Option<Kind> {
    match name {
        "moderation" => serde_json::from_str(text)
            .ok()
            .map(|a| Kind::Moderation(Box::new(a))),
        "remove" => Some(Kind::Remove { target }),
        _ => None,
    }
}

impl AuditEntry {
    /// The entry a room's stored moderation event (or moderator's
    /// delete) is; none for other kinds.
    pub fn of(event: &Event) -> Option<Self> {
        let (action, user, detail) = match &event.kind {
            Kind::Moderation(a) => {
                let detail = match a.action {
                    Action::Slow => a.seconds.map(|s| format!("{s} s")),
                    Action::Topic => a.topic.clone(),
                    Action::Role => a.role.map(|r| r.name().to_owned()),
                    _ => ban_detail(a.reason.as_deref(), a.until),
                };
                (a.action.name().to_owned(), a.user.clone(), detail)
            }
            Kind::Remove { target } => {
                ("delete".to_owned(), None, Some(format!("message {target}")))
            }
            _ => return None,
        };
        Some(Self {
            id: event.id,
            ts: event.ts,
            by: event.from.clone(),
            action,
            user,
            detail,
        })
    }
}

/// A server-wide ban: until when (ms since the epoch; none: until lifted).
pub type Until = Option<u64>;

/// What a backend keeps for moderation beside the rooms' streams. Its
/// own trait, beside [`super::Convs`]; every [`super::Backend`] is one.
pub trait Moderation: Send + Sync {
    /// Whether `nick` is a stored server admin. Read at each check (never
    /// cached), so that `rfc6455 chat admin add` is seen by running
    /// servers at once; changed only by that command ([`AdminOp`]).
    fn is_admin(&self, nick: &str) -> Reply<'_, bool>;

    /// `nick`'s server-wide ban, if one is in force at `now` (ms).
    fn server_ban(&self, nick: &str, now: u64) -> Reply<'_, Option<Until>>;

    /// Bans `nick` from the server (`Some(until)`) or lifts its ban
    /// (`None`), audited as `by`'s doing with `reason`.
    fn set_server_ban(
        &self,
        nick: &str,
        ban: Option<Until>,
        by: &str,
        reason: Option<&str>,
    ) -> Reply<'_, ()>;

    /// The moderation events that make `room`'s rules now, oldest first,
    /// to fold: the latest of each rule that still holds ([`current`]),
    /// never the whole history (bounded like the rules themselves:
    /// `MAX_ROOM_RESTRICTIONS`, `MAX_ROOM_ROLES`, a topic, a slow mode).
    /// The store may drop the mutes and bans that ended meanwhile.
    fn rules(&self, room: &str) -> Reply<'_, Vec<Event>>;

    /// Up to `limit` audit entries of `room` (`*`: the server's own) with
    /// ids below `before`, newest first, and whether older ones exist.
    fn audit(&self, room: &str, before: u64, limit: u32) -> Reply<'_, (Vec<AuditEntry>, bool)>;

    /// The nicks `nick` blocks, sorted.
    fn blocks(&self, nick: &str) -> Reply<'_, Vec<String>>;

    /// `nick` blocks `other` (`on`), or no longer does.
    fn set_block(&self, nick: &str, other: &str, on: bool) -> Reply<'_, ()>;
}

/// Whether a ban or mute ending at `until` (none: never) is in force
/// at `now` (ms).
pub fn in_force(until: Until, now: u64) -> bool {
    until.is_none_or(|u| u > now)
}

/// The key of the room rule a moderation event sets or lifts (the
/// latest event of each key is the rule in force): a ban and an unban
/// of one nick share one, and so on; a kick sets none.
pub fn rule_key(a: &ModAction) -> Option<String> {
    let user = a.user.as_deref().unwrap_or_default();
    match a.action {
        Action::Kick => None,
        Action::Ban | Action::Unban => Some(format!("ban:{user}")),
        Action::Mute | Action::Unmute => Some(format!("mute:{user}")),
        Action::Role => Some(format!("role:{user}")),
        Action::Topic => Some("topic".to_owned()),
        Action::Slow => Some("slow".to_owned()),
    }
}

/// Whether the rule a moderation event sets still holds at `now`: not a
/// lifting (unban, unmute, a role back to member, unless it left an owned
/// room `ownerless`: that is kept, as the room's memory of its owners),
/// not a ban or mute that ended.
pub fn holds(a: &ModAction, now: u64) -> bool {
    match a.action {
        Action::Kick | Action::Unban | Action::Unmute => false,
        Action::Ban | Action::Mute => in_force(a.until, now),
        Action::Role => a.ownerless || matches!(a.role, Some(Role::Owner | Role::Moderator)),
        Action::Topic | Action::Slow => true,
    }
}

/// The events of a room's moderation history (oldest first) that make
/// its rules at `now`: the latest of each [`rule_key`], if it
/// [`holds`]. Folding them gives the rules folding all of them would.
pub fn current(events: Vec<Event>, now: u64) -> Vec<Event> {
    let mut latest: std::collections::HashMap<String, Event> = std::collections::HashMap::new();
    for e in events {
        if let Kind::Moderation(a) = &e.kind
            && let Some(key) = rule_key(a)
        {
            latest.insert(key, e);
        }
    }
    let mut kept: Vec<Event> = latest
        .into_values()
        .filter(|e| matches!(&e.kind, Kind::Moderation(a) if holds(a, now)))
        .collect();
    kept.sort_by_key(|e| e.id);
    kept
}

/// An audit entry's `detail` for a ban or mute: its reason and its end.
pub fn ban_detail(reason: Option<&str>, until: Until) -> Option<String> {
    match (reason, until) {
        (Some(r), Some(u)) => Some(format!("{r} (until {u})")),
        (Some(r), None) => Some(r.to_owned()),
        (None, Some(u)) => Some(format!("until {u}")),
        (None, None) => None,
    }
}

/// The first `limit` of `entries` (newest first), and whether more exist.
pub fn page(mut entries: Vec<AuditEntry>, limit: u32) -> (Vec<AuditEntry>, bool) {
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    (entries, more)
}

/// What `rfc6455 chat admin` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOp {
    /// `admin add NICK`.
    Add(String),
    /// `admin remove NICK`.
    Remove(String),
    /// `admin list`.
    List,
}

/// What the command says it did.
pub fn admin_said(op: &AdminOp, changed: bool) -> String {
    match (op, changed) {
        (AdminOp::Add(n), true) => format!("{n} is now a server admin"),
        (AdminOp::Add(n), false) => format!("{n} was a server admin already"),
        (AdminOp::Remove(n), true) => format!("{n} is no longer a server admin"),
        (AdminOp::Remove(n), false) => format!("{n} was not a server admin"),
        (AdminOp::List, _) => String::new(),
    }
}
