//! The history table's schema, its migrations, and how each kind of
//! event is written and read back.
//!
//! Every event is a row of `messages`, under its own id, whatever its
//! kind (`kind`: `msg`, `edit`, `delete`, `react`; [`Kind::name`]). Only
//! `msg` rows are messages: history pages and unread counts read those
//! (`WHERE kind = 'msg'`). A `msg` row holds the message's latest state
//! (its text, emptied once deleted; `edited_ts`, `deleted`, `reply_to`);
//! the others point at their message with `target`. Who has which
//! reaction is the `reactions` table.
//!
//! An edit, a delete or a reaction is checked against its message in the
//! batch's transaction, on the history thread that alone writes, so
//! nothing comes between the check and the write: a refused event is
//! written nowhere and takes no id.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::chat::backend::{
    Action, Event, Kind, MAX_REACTIONS, ModAction, MsgState, NewEvent, Rejected, moderation,
};

/// The schema's version now (`PRAGMA user_version`).
pub const VERSION: i64 = 5;

/// Version 1: messages only, one row per message (the backend seam). A
/// database from before versions were counted holds exactly this (the
/// tests that open one build it from here).
pub const V1: &str = "CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    id INTEGER NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;";

/// Brings the schema to [`VERSION`], one step per version, in the
/// caller's transaction. A database from before versions were counted
/// has `user_version` 0 and version 1's table.
pub fn migrate(db: &Connection) -> rusqlite::Result<()> {
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        db.execute_batch(V1)?;
    }
    if version < 2 {
        // 2 (issue 16): every kind of event is a row. Existing rows are
        // messages; `users` is a `react` row's list after its toggle
        // (JSON), for replays; an index finds a room's messages among
        // its other events.
        db.execute_batch(
            "ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'msg';
             ALTER TABLE messages ADD COLUMN target INTEGER;
             ALTER TABLE messages ADD COLUMN reply_to INTEGER;
             ALTER TABLE messages ADD COLUMN edited_ts INTEGER;
             ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE messages ADD COLUMN users TEXT;
             CREATE INDEX IF NOT EXISTS messages_by_kind ON messages (room, kind, id);
             CREATE TABLE IF NOT EXISTS reactions (
                room TEXT NOT NULL,
                id INTEGER NOT NULL,
                emoji TEXT NOT NULL,
                nick TEXT NOT NULL,
                PRIMARY KEY (room, id, emoji, nick)
             ) WITHOUT ROWID;",
        )?;
    }
    if version < 3 {
        // 3 (issue 17): accounts, unique on their nick's confusable
        // skeleton; their login sessions (a revoked one is deleted) and
        // refresh tokens (SHA-256 digests; a spent one is kept until it
        // expires, so that its replay is recognised); the server's token
        // signing key; and whether a message's writer was a guest.
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS accounts (
                skeleton TEXT PRIMARY KEY,
                nick TEXT NOT NULL UNIQUE,
                hash TEXT NOT NULL,
                created INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS account_sessions (
                id TEXT PRIMARY KEY,
                nick TEXT NOT NULL,
                expires INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS account_sessions_by_nick ON account_sessions (nick);
             CREATE INDEX IF NOT EXISTS account_sessions_by_expiry ON account_sessions (expires);
             CREATE TABLE IF NOT EXISTS refresh_tokens (
                hash TEXT PRIMARY KEY,
                session TEXT NOT NULL,
                spent INTEGER NOT NULL DEFAULT 0,
                expires INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS refresh_tokens_by_session ON refresh_tokens (session);
             CREATE INDEX IF NOT EXISTS refresh_tokens_by_expiry ON refresh_tokens (expires);
             CREATE TABLE IF NOT EXISTS server_keys (
                name TEXT PRIMARY KEY,
                key BLOB NOT NULL
             ) WITHOUT ROWID;
             ALTER TABLE messages ADD COLUMN guest INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    if version < 4 {
        // 4 (issue 17, moderation): each user's blocks. A room's rules
        // are its `moderation` rows (found by `messages_by_kind`); the
        // server's admins and bans are the side database's
        // (`super::super::moderation`).
        // `mutes`: each room's mutes in force, kept by its `mute` and
        // `unmute` rows in the same transaction, so that a message is
        // checked against them where it is written.
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS blocks (
                nick TEXT NOT NULL,
                blocked TEXT NOT NULL,
                PRIMARY KEY (nick, blocked)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS mutes (
                room TEXT NOT NULL,
                nick TEXT NOT NULL,
                until INTEGER,
                PRIMARY KEY (room, nick)
             ) WITHOUT ROWID;",
        )?;
    }
    if version < 5 {
        // 5 (review of issue 17): each room's rules in force, folded
        // (`keep_rule`): a room coming into memory reads these, not its
        // whole moderation history. Filled from the history once here.
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS rules (
                room TEXT NOT NULL,
                key TEXT NOT NULL,
                id INTEGER NOT NULL,
                until INTEGER,
                PRIMARY KEY (room, key)
             ) WITHOUT ROWID;",
        )?;
        let mut stmt = db.prepare(
            "SELECT room, id, text FROM messages WHERE kind = 'moderation' ORDER BY room, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (room, id, text) = row?;
            if let Ok(a) = serde_json::from_str::<ModAction>(&text) {
                keep_rule(db, &room, id as u64, &a, 0)?;
            }
        }
    }
    db.pragma_update(None, "user_version", VERSION)
}

/// A moderation event's effect on its room's folded rules (`rules`):
/// the latest event of each key ([`moderation::rule_key`]) that still
/// holds is kept, one that lifts removes it. A mute or ban also drops
/// the room's mutes and bans that ended by `now` (here and in `mutes`).
fn keep_rule(
    db: &Connection,
    room: &str,
    id: u64,
    a: &ModAction,
    now: u64,
) -> rusqlite::Result<()> {
    let Some(key) = moderation::rule_key(a) else {
        return Ok(());
    };
    if moderation::holds(a, 0) {
        let until = a.until.map(|u| i64::try_from(u).unwrap_or(i64::MAX));
        db.prepare_cached(
            "INSERT INTO rules (room, key, id, until) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (room, key) DO UPDATE SET id = excluded.id, until = excluded.until",
        )?
        .execute(params![room, key, id as i64, until])?;
    } else {
        db.prepare_cached("DELETE FROM rules WHERE room = ?1 AND key = ?2")?
            .execute(params![room, key])?;
    }
    if matches!(a.action, Action::Mute | Action::Ban) && now > 0 {
        prune_rules(db, room, now)?;
    }
    Ok(())
}

/// Drops `room`'s mutes and bans that ended by `now` (ms), from the
/// folded rules and from `mutes`: a room's store holds only what is in
/// force (and what is timed, until a write or a load after its end).
pub fn prune_rules(db: &Connection, room: &str, now: u64) -> rusqlite::Result<()> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    db.prepare_cached("DELETE FROM rules WHERE room = ?1 AND until IS NOT NULL AND until <= ?2")?
        .execute(params![room, now])?;
    db.prepare_cached("DELETE FROM mutes WHERE room = ?1 AND until IS NOT NULL AND until <= ?2")?
        .execute(params![room, now])?;
    Ok(())
}

/// The columns [`row`] reads, in its order.
pub const COLUMNS: &str =
    "room, id, sender, text, ts, kind, target, reply_to, edited_ts, deleted, users, guest";

fn id_of(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

/// An event read back (a message's reactions are added by
/// [`add_reactions`]).
pub fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let room: String = r.get(0)?;
    let text: String = r.get(3)?;
    let kind: String = r.get(5)?;
    let target = id_of(r.get(6)?).unwrap_or(0);
    let (kind, text) = match kind.as_str() {
        "edit" => (Kind::Edit { target }, text),
        "delete" => (Kind::Delete { target }, text),
        name @ ("moderation" | "remove") => match moderation::decode(name, target, &text) {
            Some(kind) => (kind, text),
            None => (Kind::default(), String::new()),
        },
        "react" => {
            let users: Option<String> = r.get(10)?;
            let users = users
                .and_then(|u| serde_json::from_str(&u).ok())
                .unwrap_or_default();
            let emoji = text;
            (
                Kind::React {
                    target,
                    emoji,
                    users,
                },
                String::new(),
            )
        }
        _ => (
            Kind::Msg(MsgState {
                reply_to: id_of(r.get(7)?),
                edited_ts: id_of(r.get(8)?),
                deleted: r.get::<_, i64>(9)? != 0,
                reactions: Default::default(),
                guest: r.get::<_, i64>(11)? != 0,
            }),
            text,
        ),
    };
    Ok(Event {
        conv: crate::chat::backend::Conversation::from_key(&room),
        id: id_of(Some(r.get(1)?)).unwrap_or(0),
        from: r.get(2)?,
        text,
        ts: id_of(Some(r.get(4)?)).unwrap_or(0),
        kind,
    })
}

/// Fills in the reactions of the messages among `events` (sorted by id),
/// in one read of the span they cover.
pub fn add_reactions(db: &Connection, room: &str, events: &mut [Event]) -> rusqlite::Result<()> {
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(());
    };
    let (lo, hi) = (first.id as i64, last.id as i64);
    let mut stmt = db.prepare_cached(
        "SELECT id, emoji, nick FROM reactions WHERE room = ?1 AND id BETWEEN ?2 AND ?3
         ORDER BY id, emoji, nick",
    )?;
    let mut rows = stmt.query(params![room, lo, hi])?;
    while let Some(r) = rows.next()? {
        let (id, emoji, nick): (i64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let found = events.binary_search_by_key(&(id as u64), |e| e.id);
        if let Ok(at) = found
            && let Kind::Msg(state) = &mut events[at].kind
        {
            state.reactions.entry(emoji).or_default().push(nick);
        }
    }
    Ok(())
}

/// Whether message `id` of `room` may be acted on (by its author only,
/// when `author` is given): a moderator's delete passes no `author`.
fn check(
    tx: &Transaction<'_>,
    room: &str,
    id: u64,
    author: Option<&str>,
) -> rusqlite::Result<Result<(), Rejected>> {
    let found: Option<(String, i64)> = tx
        .prepare_cached(
            "SELECT sender, deleted FROM messages WHERE room = ?1 AND id = ?2 AND kind = 'msg'",
        )?
        .query_row(params![room, id as i64], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match found {
        None => Err(Rejected::NoSuchMessage),
        // A tombstone is public (history shows it): said before whose.
        Some((_, deleted)) if deleted != 0 => Err(Rejected::Deleted),
        Some((sender, _)) if author.is_some_and(|a| a != sender) => Err(Rejected::NotAuthor),
        Some(_) => Ok(()),
    })
}

/// Whether `nick` is muted in `room` at `ts` (a DM has no mutes).
fn muted(tx: &Transaction<'_>, room: &str, nick: &str, ts: u64) -> rusqlite::Result<bool> {
    let until: Option<Option<i64>> = tx
        .prepare_cached("SELECT until FROM mutes WHERE room = ?1 AND nick = ?2")?
        .query_row(params![room, nick], |r| r.get(0))
        .optional()?;
    Ok(until.is_some_and(|u| u.is_none_or(|u| u > ts as i64)))
}

/// A `mute` or `unmute` event's effect on the room's mutes.
fn keep_mute(tx: &Transaction<'_>, room: &str, a: &ModAction) -> rusqlite::Result<()> {
    let nick = a.user.as_deref().unwrap_or_default();
    match a.action {
        Action::Mute => {
            let until = a.until.map(|u| i64::try_from(u).unwrap_or(i64::MAX));
            tx.prepare_cached(
                "INSERT INTO mutes (room, nick, until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (room, nick) DO UPDATE SET until = excluded.until",
            )?
            .execute(params![room, nick, until])?;
        }
        Action::Unmute => {
            tx.prepare_cached("DELETE FROM mutes WHERE room = ?1 AND nick = ?2")?
                .execute(params![room, nick])?;
        }
        _ => {}
    }
    Ok(())
}

/// Checks `new` against its message, applies it, and writes its row as
/// `id`: the event as stored, or why it was refused (nothing written).
pub fn apply(
    tx: &Transaction<'_>,
    room: &str,
    id: u64,
    new: &NewEvent,
) -> rusqlite::Result<Result<Event, Rejected>> {
    let mut event = new.clone().with_id(id);
    let (target, reply_to) = match &mut event.kind {
        Kind::Msg(state) => {
            if let Some(to) = state.reply_to
                && let Err(why) = check(tx, room, to, None)?
            {
                return Ok(Err(why));
            }
            if muted(tx, room, &new.from, new.ts)? {
                return Ok(Err(Rejected::Muted));
            }
            (None, state.reply_to)
        }
        Kind::Edit { target } => {
            if let Err(why) = check(tx, room, *target, Some(&new.from))? {
                return Ok(Err(why));
            }
            if muted(tx, room, &new.from, new.ts)? {
                return Ok(Err(Rejected::Muted));
            }
            tx.prepare_cached(
                "UPDATE messages SET text = ?1, edited_ts = ?2 WHERE room = ?3 AND id = ?4",
            )?
            .execute(params![new.text, new.ts as i64, room, *target as i64])?;
            (Some(*target), None)
        }
        Kind::Moderation(a) => {
            keep_mute(tx, room, a)?;
            keep_rule(tx, room, id, a, new.ts)?;
            (None, None)
        }
        Kind::Delete { target } | Kind::Remove { target } => {
            // A moderator's delete (`remove`, its role checked by the
            // hub) is let through whoever wrote the message.
            let author = matches!(new.kind, Kind::Delete { .. }).then_some(new.from.as_str());
            if let Err(why) = check(tx, room, *target, author)? {
                return Ok(Err(why));
            }
            // Purged: the message's text and every edit's; with
            // `secure_delete` the freed bytes are zeroed too, and the
            // commit empties the write-ahead log (`super::commit`).
            let t = *target as i64;
            tx.prepare_cached(
                "UPDATE messages SET text = '', deleted = 1 WHERE room = ?1 AND id = ?2",
            )?
            .execute(params![room, t])?;
            tx.prepare_cached(
                "UPDATE messages SET text = '' WHERE room = ?1 AND kind = 'edit' AND target = ?2",
            )?
            .execute(params![room, t])?;
            tx.prepare_cached("DELETE FROM reactions WHERE room = ?1 AND id = ?2")?
                .execute(params![room, t])?;
            event.text.clear();
            (Some(*target), None)
        }
        Kind::React {
            target,
            emoji,
            users,
        } => {
            if let Err(why) = check(tx, room, *target, None)? {
                return Ok(Err(why));
            }
            if muted(tx, room, &new.from, new.ts)? {
                return Ok(Err(Rejected::Muted));
            }
            let (t, emoji) = (*target as i64, emoji.as_str());
            let removed = tx
                .prepare_cached(
                    "DELETE FROM reactions WHERE room = ?1 AND id = ?2 AND emoji = ?3 AND nick = ?4",
                )?
                .execute(params![room, t, emoji, new.from])?;
            if removed == 0 {
                // The message's distinct reactions, and whether this one is
                // among them, in one read.
                let (distinct, has): (i64, bool) = tx
                    .prepare_cached(
                        "SELECT COUNT(DISTINCT emoji), COALESCE(MAX(emoji = ?3), 0)
                         FROM reactions WHERE room = ?1 AND id = ?2",
                    )?
                    .query_row(params![room, t, emoji], |r| Ok((r.get(0)?, r.get(1)?)))?;
                if !has && distinct as usize >= MAX_REACTIONS {
                    return Ok(Err(Rejected::TooManyReactions));
                }
                tx.prepare_cached(
                    "INSERT INTO reactions (room, id, emoji, nick) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![room, t, emoji, new.from])?;
            }
            let mut stmt = tx.prepare_cached(
                "SELECT nick FROM reactions WHERE room = ?1 AND id = ?2 AND emoji = ?3 ORDER BY nick",
            )?;
            let now: Vec<String> = stmt
                .query_map(params![room, t, emoji], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            *users = now;
            (Some(*target), None)
        }
    };
    let guest = matches!(&event.kind, Kind::Msg(state) if state.guest);
    let (text, users) = match &event.kind {
        Kind::React { emoji, users, .. } => (
            emoji.clone(),
            Some(serde_json::to_string(users).unwrap_or_default()),
        ),
        _ => (event.text.clone(), None),
    };
    // A plain INSERT: with one writer giving the ids, a conflict is a
    // bug, and it fails the batch loudly rather than dropping an event
    // that was about to be acked.
    tx.prepare_cached(
        "INSERT INTO messages (room, id, sender, text, ts, kind, target, reply_to, users, guest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        room,
        id as i64,
        event.from,
        text,
        event.ts as i64,
        event.kind.name(),
        target.map(|t| t as i64),
        reply_to.map(|t| t as i64),
        users,
        i64::from(guest),
    ])?;
    Ok(Ok(event))
}
