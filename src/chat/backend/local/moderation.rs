//! The single server's moderation state ([`Moderation`] for [`Local`]).
//!
//! A room's rules and audit are its `moderation` (and `remove`) rows of
//! the history, read on the history thread; each user's blocks are the
//! history database's `blocks` table (schema version 4).
//!
//! The server's admins, its server-wide bans and their audit live in a
//! side database beside the history, `<db>.admins` ([`server_path`]),
//! because the history database is held in exclusive locking mode for
//! the server's life (`store.rs`): `rfc6455 chat admin add` must be able
//! to write while a server runs. The side database is in SQLite's normal
//! locking mode with a busy timeout, so the command and the server take
//! turns; the server reads it again at every check (an admin check is
//! rare: a moderation request, a verified user's join), so a change is
//! seen by the running server at its next check, with no signal.
//!
//! ```sql
//! admins (nick)                            -- PRIMARY KEY (nick)
//! bans (nick, until)                       -- server-wide; until NULL: until lifted
//! audit (id, ts, by, action, user, detail) -- the server's own log (`*`)
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::store::{kinds_columns, prune_rules};
use super::{Local, Reply};
use crate::chat::backend::moderation::{
    AdminOp, AuditEntry, Moderation, Until, admin_said, ban_detail, in_force, page,
};
use crate::chat::backend::{Event, Unavailable};
use crate::chat::lock;

/// The side database of `db`: `chat.db` → `chat.db.admins`.
pub fn server_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".admins");
    PathBuf::from(name)
}

/// How long a write waits for the other process's (the command's, the
/// server's) to finish: each is one short transaction.
const BUSY: Duration = Duration::from_secs(5);

/// The side database: admins, server-wide bans, the server's audit.
pub struct ServerDb {
    db: Mutex<Connection>,
}

impl ServerDb {
    /// Opens (or creates) the side database at `path`.
    pub fn open(path: &Path) -> io::Result<Arc<Self>> {
        let failed = |e: rusqlite::Error| io::Error::other(format!("{}: {e}", path.display()));
        let db = Connection::open(path).map_err(failed)?;
        db.busy_timeout(BUSY).map_err(failed)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS admins (nick TEXT PRIMARY KEY) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS bans (nick TEXT PRIMARY KEY, until INTEGER) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS audit (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                ts INTEGER NOT NULL,
                by TEXT NOT NULL,
                action TEXT NOT NULL,
                user TEXT,
                detail TEXT
             );",
        )
        .map_err(failed)?;
        Ok(Arc::new(Self { db: Mutex::new(db) }))
    }

    /// Every admin, sorted.
    pub fn admins(&self) -> rusqlite::Result<Vec<String>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare_cached("SELECT nick FROM admins ORDER BY nick")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    /// Whether `nick` is an admin.
    pub fn is_admin(&self, nick: &str) -> rusqlite::Result<bool> {
        let db = lock(&self.db);
        db.prepare_cached("SELECT 1 FROM admins WHERE nick = ?1")?
            .query_row(params![nick], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
    }

    /// Adds or removes an admin, audited in the same transaction; whether
    /// it changed anything.
    pub fn set_admin(&self, nick: &str, admin: bool, by: &str) -> rusqlite::Result<bool> {
        let mut db = lock(&self.db);
        let tx = db.transaction()?;
        let changed = if admin {
            tx.execute(
                "INSERT OR IGNORE INTO admins (nick) VALUES (?1)",
                params![nick],
            )?
        } else {
            tx.execute("DELETE FROM admins WHERE nick = ?1", params![nick])?
        };
        if changed > 0 {
            let action = if admin { "admin_add" } else { "admin_remove" };
            note(&tx, by, action, nick, None)?;
        }
        tx.commit()?;
        Ok(changed > 0)
    }

    fn server_ban(&self, nick: &str, now: u64) -> rusqlite::Result<Option<Until>> {
        let db = lock(&self.db);
        let ban: Option<Option<i64>> = db
            .prepare_cached("SELECT until FROM bans WHERE nick = ?1")?
            .query_row(params![nick], |r| r.get(0))
            .optional()?;
        Ok(ban
            .map(|until| until.map(|u| u64::try_from(u).unwrap_or(0)))
            .filter(|until| in_force(*until, now)))
    }

    fn set_server_ban(
        &self,
        nick: &str,
        ban: Option<Until>,
        by: &str,
        reason: Option<&str>,
    ) -> rusqlite::Result<()> {
        let mut db = lock(&self.db);
        let tx = db.transaction()?;
        match ban {
            Some(until) => {
                let end = until.map(|u| i64::try_from(u).unwrap_or(i64::MAX));
                tx.execute(
                    "INSERT INTO bans (nick, until) VALUES (?1, ?2)
                     ON CONFLICT (nick) DO UPDATE SET until = excluded.until",
                    params![nick, end],
                )?;
                let detail = ban_detail(reason, until);
                note(&tx, by, "ban", nick, detail.as_deref())?;
            }
            None => {
                tx.execute("DELETE FROM bans WHERE nick = ?1", params![nick])?;
                note(&tx, by, "unban", nick, reason)?;
            }
        }
        tx.commit()
    }

    fn audit(&self, before: u64, limit: u32) -> rusqlite::Result<(Vec<AuditEntry>, bool)> {
        let db = lock(&self.db);
        let mut stmt = db.prepare_cached(
            "SELECT id, ts, by, action, user, detail FROM audit WHERE id < ?1
             ORDER BY id DESC LIMIT ?2",
        )?;
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![before, i64::from(limit) + 1], |r| {
            Ok(AuditEntry {
                id: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                ts: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                by: r.get(2)?,
                action: r.get(3)?,
                user: r.get(4)?,
                detail: r.get(5)?,
            })
        })?;
        Ok(page(rows.collect::<rusqlite::Result<_>>()?, limit))
    }
}

/// One line of the server's audit log.
fn note(
    tx: &rusqlite::Transaction<'_>,
    by: &str,
    action: &str,
    user: &str,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO audit (ts, by, action, user, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            i64::try_from(crate::chat::now_ms()).unwrap_or(0),
            by,
            action,
            user,
            detail
        ],
    )?;
    Ok(())
}

/// Runs a side-database job off the runtime's threads (it may wait for
/// the command's write).
fn blocking<T: Send + 'static>(
    db: &Arc<ServerDb>,
    job: impl FnOnce(&ServerDb) -> rusqlite::Result<T> + Send + 'static,
) -> Reply<'static, T> {
    let db = db.clone();
    Box::pin(async move {
        match tokio::task::spawn_blocking(move || job(&db)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "admins database: query failed");
                Err(Unavailable)
            }
            Err(_) => Err(Unavailable),
        }
    })
}

impl Moderation for Local {
    fn is_admin(&self, nick: &str) -> Reply<'_, bool> {
        let nick = nick.to_owned();
        blocking(&self.server, move |db| db.is_admin(&nick))
    }

    fn server_ban(&self, nick: &str, now: u64) -> Reply<'_, Option<Until>> {
        let nick = nick.to_owned();
        blocking(&self.server, move |db| db.server_ban(&nick, now))
    }

    fn set_server_ban(
        &self,
        nick: &str,
        ban: Option<Until>,
        by: &str,
        reason: Option<&str>,
    ) -> Reply<'_, ()> {
        let (nick, by, reason) = (nick.to_owned(), by.to_owned(), reason.map(str::to_owned));
        blocking(&self.server, move |db| {
            db.set_server_ban(&nick, ban, &by, reason.as_deref())
        })
    }

    fn rules(&self, room: &str) -> Reply<'_, Vec<Event>> {
        let room = room.to_owned();
        self.ask(move |db| {
            prune_rules(db, &room, crate::chat::now_ms())?;
            let mut stmt = db.prepare_cached(&format!(
                "SELECT {} FROM messages WHERE room = ?1 AND kind = 'moderation'
                 AND id IN (SELECT id FROM rules WHERE room = ?1) ORDER BY id",
                kinds_columns()
            ))?;
            let rows = stmt.query_map(params![room], super::store::read_row)?;
            rows.collect()
        })
    }

    fn audit(&self, room: &str, before: u64, limit: u32) -> Reply<'_, (Vec<AuditEntry>, bool)> {
        if room == "*" {
            return blocking(&self.server, move |db| db.audit(before, limit));
        }
        let room = room.to_owned();
        self.ask(move |db| {
            let mut stmt = db.prepare_cached(&format!(
                "SELECT {} FROM messages WHERE room = ?1 AND kind IN ('moderation', 'remove')
                 AND id < ?2 ORDER BY id DESC LIMIT ?3",
                kinds_columns()
            ))?;
            let before = i64::try_from(before).unwrap_or(i64::MAX);
            let rows = stmt.query_map(
                params![room, before, i64::from(limit) + 1],
                super::store::read_row,
            )?;
            let events: Vec<Event> = rows.collect::<rusqlite::Result<_>>()?;
            Ok(page(
                events.iter().filter_map(AuditEntry::of).collect(),
                limit,
            ))
        })
    }

    fn blocks(&self, nick: &str) -> Reply<'_, Vec<String>> {
        let nick = nick.to_owned();
        self.ask(move |db| {
            let mut stmt =
                db.prepare_cached("SELECT blocked FROM blocks WHERE nick = ?1 ORDER BY blocked")?;
            let rows = stmt.query_map(params![nick], |r| r.get(0))?;
            rows.collect()
        })
    }

    fn set_block(&self, nick: &str, other: &str, on: bool) -> Reply<'_, ()> {
        let (nick, other) = (nick.to_owned(), other.to_owned());
        self.ask(move |db| {
            if on {
                db.execute(
                    "INSERT OR IGNORE INTO blocks (nick, blocked) VALUES (?1, ?2)",
                    params![nick, other],
                )?;
            } else {
                db.execute(
                    "DELETE FROM blocks WHERE nick = ?1 AND blocked = ?2",
                    params![nick, other],
                )?;
            }
            Ok(())
        })
    }
}

/// `rfc6455 chat admin … --db FILE`: runs `op` on the side database of
/// `db` (safe while a server runs on it), and says what it did.
pub fn admin_command(db: &Path, op: &AdminOp) -> io::Result<String> {
    let server = ServerDb::open(&server_path(db))?;
    let failed = |e: rusqlite::Error| io::Error::other(e.to_string());
    match op {
        AdminOp::Add(nick) => server
            .set_admin(nick, true, "cli")
            .map(|changed| admin_said(op, changed))
            .map_err(failed),
        AdminOp::Remove(nick) => server
            .set_admin(nick, false, "cli")
            .map(|changed| admin_said(op, changed))
            .map_err(failed),
        AdminOp::List => server.admins().map(|all| all.join("\n")).map_err(failed),
    }
}
