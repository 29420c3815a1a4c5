//! The single server's conversation state in SQLite, beside the history
//! ([`Convs`] for [`Local`]): a table of read marks and a table of the
//! nicks ever seen, each created by a statement of its own, read and
//! written on the history thread ([`Store::run`]), so that a read mark
//! written after a message sees it committed. DM partners need no table:
//! the history's own keys (`@a|b`) are them, indexed in memory by user
//! ([`Partners`]: read once at start, then kept by each DM's commit), so
//! that a `hello` lists its DMs without walking every conversation.
//!
//! ```sql
//! reads (user, conv, id)     -- PRIMARY KEY (user, conv); INDEX (conv, id)
//! users (nick)               -- PRIMARY KEY (nick)
//! sessions (nick, token)     -- PRIMARY KEY (nick): each nick's last session
//! ```
//!
//! Neither the nicks nor the secrets are kept in memory: they grow with
//! every nick ever seen, and are asked for rarely (a DM to someone away,
//! a `hello` with a secret for a nick nobody holds). Writing them again
//! when they have not changed dirties no page.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::store::Store;
use super::{Local, Reply};
use crate::chat::backend::{Conversation, Convs, Event, Unavailable, ready};
use crate::chat::lock;

/// Each user's DM partners: the other user, and the id and time of the
/// conversation's newest event.
pub(super) type Partners = Arc<Mutex<HashMap<String, HashMap<String, (u64, u64)>>>>;

/// Notes a committed DM event in both of its users' partners.
pub(super) fn note_dm(partners: &Partners, event: &Event) {
    let Conversation::Dm(a, b) = &event.conv else {
        return;
    };
    let mut partners = lock(partners);
    for (user, with) in [(a, b), (b, a)] {
        partners
            .entry(user.clone())
            .or_default()
            .insert(with.clone(), (event.id, event.ts));
    }
}

/// Creates the tables if need be and indexes the DM conversations.
/// Blocks until the history thread has done it (once, at start).
pub(super) fn open(store: &Store) -> io::Result<Partners> {
    let (tx, rx) = std::sync::mpsc::channel();
    let keys = store.keys();
    store.run(Box::new(move |db| {
        let _ = tx.send(prepare(db).and_then(|()| partners(db, keys)));
    }));
    match rx.recv() {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => Err(io::Error::other(format!("history database: {e}"))),
        Err(_) => Err(io::Error::other("history database: its thread stopped")),
    }
}

fn prepare(db: &Connection) -> rusqlite::Result<()> {
    db.execute(
        "CREATE TABLE IF NOT EXISTS reads (
            user TEXT NOT NULL,
            conv TEXT NOT NULL,
            id INTEGER NOT NULL,
            PRIMARY KEY (user, conv)
         ) WITHOUT ROWID",
        [],
    )?;
    db.execute(
        "CREATE INDEX IF NOT EXISTS reads_by_conv ON reads (conv, id)",
        [],
    )?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS users (nick TEXT PRIMARY KEY) WITHOUT ROWID",
        [],
    )?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS sessions (nick TEXT PRIMARY KEY, token TEXT NOT NULL) WITHOUT ROWID",
        [],
    )?;
    Ok(())
}

/// The DM conversations among `keys`, each with its newest event.
fn partners(db: &Connection, keys: Vec<String>) -> rusqlite::Result<Partners> {
    let mut stmt =
        db.prepare("SELECT id, ts FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT 1")?;
    let mut all: HashMap<String, HashMap<String, (u64, u64)>> = HashMap::new();
    for key in keys {
        let Conversation::Dm(a, b) = Conversation::from_key(&key) else {
            continue;
        };
        let newest = stmt
            .query_row(params![key], |r| Ok((uint(r.get(0)?), uint(r.get(1)?))))
            .optional()?;
        if let Some(newest) = newest {
            all.entry(a.clone()).or_default().insert(b.clone(), newest);
            all.entry(b).or_default().insert(a, newest);
        }
    }
    Ok(Arc::new(Mutex::new(all)))
}

/// Runs one statement on the history thread, logging a failure.
fn write(store: &Store, sql: &'static str, args: Vec<String>) {
    store.run(Box::new(move |db| {
        if let Err(e) = db.execute(sql, rusqlite::params_from_iter(args)) {
            tracing::warn!(error = %e, "conversation state: write failed");
        }
    }));
}

impl Local {
    /// Keeps `nick`'s session secret.
    pub(super) fn keep_session(&self, nick: &str, session: &str) {
        write(
            &self.store,
            "INSERT INTO sessions (nick, token) VALUES (?1, ?2)
             ON CONFLICT (nick) DO UPDATE SET token = excluded.token
             WHERE token <> excluded.token",
            vec![nick.to_owned(), session.to_owned()],
        );
    }

    /// The session secret kept for `nick`.
    pub(super) fn read_session(&self, nick: &str) -> Reply<'_, Option<String>> {
        let nick = nick.to_owned();
        self.ask(move |db| {
            db.prepare_cached("SELECT token FROM sessions WHERE nick = ?1")?
                .query_row(params![nick], |r| r.get(0))
                .optional()
        })
    }
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Local {
    /// Runs `job` on the history thread and waits for its answer; a
    /// failed query answers as [`Unavailable`].
    pub(super) fn ask<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Reply<'_, T> {
        let (tx, rx) = oneshot::channel();
        self.store.run(Box::new(move |db| {
            let _ = tx.send(job(db).map_err(|e| {
                tracing::warn!(error = %e, "conversation state: query failed");
                Unavailable
            }));
        }));
        Box::pin(async move { rx.await.map_err(|_| Unavailable)? })
    }
}

impl Convs for Local {
    fn mark_read(&self, user: &str, conv: &Conversation, id: u64) -> Reply<'_, bool> {
        let (user, conv) = (user.to_owned(), conv.key());
        self.ask(move |db| {
            let changed = db.execute(
                "INSERT INTO reads (user, conv, id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user, conv) DO UPDATE SET id = excluded.id
                 WHERE excluded.id > reads.id",
                params![user, conv, int(id)],
            )?;
            Ok(changed > 0)
        })
    }

    fn reads(&self, user: &str) -> Reply<'_, Vec<(Conversation, u64)>> {
        let user = user.to_owned();
        self.ask(move |db| {
            let mut stmt = db.prepare_cached("SELECT conv, id FROM reads WHERE user = ?1")?;
            let rows = stmt.query_map(params![user], |r| {
                Ok((
                    Conversation::from_key(&r.get::<_, String>(0)?),
                    uint(r.get(1)?),
                ))
            })?;
            rows.collect()
        })
    }

    fn readers(&self, conv: &Conversation, limit: usize) -> Reply<'_, Vec<(String, u64)>> {
        let conv = conv.key();
        self.ask(move |db| {
            let mut stmt = db.prepare_cached(
                "SELECT user, id FROM reads WHERE conv = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![conv, limit as i64], |r| {
                Ok((r.get::<_, String>(0)?, uint(r.get(1)?)))
            })?;
            rows.collect()
        })
    }

    /// From the index in memory: no query.
    fn dms(&self, user: &str, limit: usize) -> Reply<'_, Vec<(String, u64)>> {
        let mut found: Vec<(u64, String, u64)> = lock(&self.partners)
            .get(user)
            .map(|with| {
                with.iter()
                    .map(|(w, &(id, ts))| (ts, w.clone(), id))
                    .collect()
            })
            .unwrap_or_default();
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        ready(
            found
                .into_iter()
                .take(limit)
                .map(|(_, with, id)| (with, id))
                .collect(),
        )
    }

    fn remember_user(&self, nick: &str) {
        write(
            &self.store,
            "INSERT OR IGNORE INTO users (nick) VALUES (?1)",
            vec![nick.to_owned()],
        );
    }

    fn known_user(&self, nick: &str) -> Reply<'_, bool> {
        let nick = nick.to_owned();
        self.ask(move |db| {
            let found = db
                .prepare_cached("SELECT 1 FROM users WHERE nick = ?1")?
                .query_row(params![nick], |_| Ok(()))
                .optional()?;
            Ok(found.is_some())
        })
    }

    fn forget_session(&self, nick: &str) {
        write(
            &self.store,
            "DELETE FROM sessions WHERE nick = ?1",
            vec![nick.to_owned()],
        );
    }
}
