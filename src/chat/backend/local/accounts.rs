//! The single server's accounts in SQLite ([`Accounts`] for [`Local`]),
//! on the history thread like the conversation state (`convs.rs`), in
//! the tables of schema version 3 (`store/kinds.rs`):
//!
//! ```sql
//! accounts (skeleton, nick, hash, created)  -- PRIMARY KEY (skeleton); UNIQUE (nick)
//! account_sessions (id, nick, expires)      -- a revoked session is deleted; INDEX (nick), (expires)
//! refresh_tokens (hash, session, spent, expires)  -- INDEX (session), (expires)
//! server_keys (name, key)                   -- 'token': the signing key
//! ```
//!
//! Every check-and-write is one job on the one thread that writes, so
//! nothing comes between them: two registrations of look-alikes, or two
//! uses of one refresh token, are decided one after the other.

use rusqlite::{OptionalExtension, params};

use super::{Local, Reply};
use crate::chat::backend::{Account, Accounts, NewSession, Registered, Rotation};
use crate::chat::now_ms;

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Accounts for Local {
    fn signing_key(&self, candidate: Vec<u8>) -> Reply<'_, Vec<u8>> {
        self.ask(move |db| {
            db.execute(
                "INSERT OR IGNORE INTO server_keys (name, key) VALUES ('token', ?1)",
                params![candidate],
            )?;
            db.query_row(
                "SELECT key FROM server_keys WHERE name = 'token'",
                [],
                |r| r.get(0),
            )
        })
    }

    fn create_account(&self, nick: &str, skeleton: &str, hash: &str) -> Reply<'_, Registered> {
        let (nick, skeleton, hash) = (nick.to_owned(), skeleton.to_owned(), hash.to_owned());
        self.ask(move |db| {
            let held: Option<String> = db
                .prepare_cached("SELECT nick FROM accounts WHERE skeleton = ?1")?
                .query_row(params![skeleton], |r| r.get(0))
                .optional()?;
            if let Some(held) = held {
                return Ok(Registered::Taken(held));
            }
            db.prepare_cached(
                "INSERT INTO accounts (skeleton, nick, hash, created) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![skeleton, nick, hash, int(now_ms())])?;
            // Blocks a guest stored under this nick are not the account's
            // (review finding 12).
            db.prepare_cached("DELETE FROM blocks WHERE nick = ?1")?
                .execute(params![nick])?;
            Ok(Registered::Created)
        })
    }

    fn account(&self, skeleton: &str) -> Reply<'_, Option<Account>> {
        let skeleton = skeleton.to_owned();
        self.ask(move |db| {
            db.prepare_cached("SELECT nick, hash FROM accounts WHERE skeleton = ?1")?
                .query_row(params![skeleton], |r| {
                    Ok(Account {
                        nick: r.get(0)?,
                        hash: r.get(1)?,
                    })
                })
                .optional()
        })
    }

    fn set_password(&self, skeleton: &str, hash: &str) -> Reply<'_, ()> {
        let (skeleton, hash) = (skeleton.to_owned(), hash.to_owned());
        self.ask(move |db| {
            db.prepare_cached("UPDATE accounts SET hash = ?1 WHERE skeleton = ?2")?
                .execute(params![hash, skeleton])?;
            Ok(())
        })
    }

    fn open_session(&self, s: NewSession) -> Reply<'_, ()> {
        self.ask(move |db| {
            let tx = db.unchecked_transaction()?;
            // Sessions past their refresh token's expiry are dead: each
            // login sweeps them (and their tokens), so the tables hold
            // the sessions of the last 30 days, not of all time.
            let now = int(now_ms());
            tx.prepare_cached("DELETE FROM account_sessions WHERE expires <= ?1")?
                .execute(params![now])?;
            tx.prepare_cached("DELETE FROM refresh_tokens WHERE expires <= ?1")?
                .execute(params![now])?;
            tx.prepare_cached(
                "INSERT INTO account_sessions (id, nick, expires) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![s.id, s.nick, int(s.expires)])?;
            tx.prepare_cached(
                "INSERT INTO refresh_tokens (hash, session, expires) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![s.refresh, s.id, int(s.expires)])?;
            tx.commit()
        })
    }

    fn rotate(&self, refresh: &str, next: &str, expires: u64) -> Reply<'_, Rotation> {
        let (refresh, next) = (refresh.to_owned(), next.to_owned());
        self.ask(move |db| {
            let now = int(now_ms());
            let tx = db.unchecked_transaction()?;
            // Expired tokens are gone first: neither live nor replayable.
            tx.prepare_cached("DELETE FROM refresh_tokens WHERE expires <= ?1")?
                .execute(params![now])?;
            let found: Option<(String, bool)> = tx
                .prepare_cached("SELECT session, spent FROM refresh_tokens WHERE hash = ?1")?
                .query_row(params![refresh], |r| {
                    Ok((r.get(0)?, r.get::<_, i64>(1)? != 0))
                })
                .optional()?;
            let Some((session, spent)) = found else {
                return Ok(Rotation::Unknown);
            };
            let nick: Option<String> = tx
                .prepare_cached("SELECT nick FROM account_sessions WHERE id = ?1")?
                .query_row(params![session], |r| r.get(0))
                .optional()?;
            let Some(nick) = nick else {
                return Ok(Rotation::Unknown); // revoked already
            };
            let outcome = if spent {
                revoke(&tx, &session)?;
                Rotation::Replayed { session, nick }
            } else {
                tx.prepare_cached("UPDATE refresh_tokens SET spent = 1 WHERE hash = ?1")?
                    .execute(params![refresh])?;
                tx.prepare_cached(
                    "INSERT INTO refresh_tokens (hash, session, expires) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![next, session, int(expires)])?;
                tx.prepare_cached("UPDATE account_sessions SET expires = ?1 WHERE id = ?2")?
                    .execute(params![int(expires), session])?;
                Rotation::Rotated { session, nick }
            };
            tx.commit()?;
            Ok(outcome)
        })
    }

    fn session_live(&self, id: &str) -> Reply<'_, bool> {
        let id = id.to_owned();
        self.ask(move |db| {
            let found = db
                .prepare_cached("SELECT 1 FROM account_sessions WHERE id = ?1 AND expires > ?2")?
                .query_row(params![id, int(now_ms())], |_| Ok(()))
                .optional()?;
            Ok(found.is_some())
        })
    }

    fn revoke(&self, id: &str) -> Reply<'_, ()> {
        let id = id.to_owned();
        self.ask(move |db| revoke(db, &id))
    }

    fn revoke_all(&self, nick: &str, except: Option<&str>) -> Reply<'_, Vec<String>> {
        let (nick, except) = (nick.to_owned(), except.unwrap_or_default().to_owned());
        self.ask(move |db| {
            let ids: Vec<String> = db
                .prepare_cached("SELECT id FROM account_sessions WHERE nick = ?1 AND id <> ?2")?
                .query_map(params![nick, except], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for id in &ids {
                revoke(db, id)?;
            }
            Ok(ids)
        })
    }
}

/// Deletes a session and its refresh tokens, spent ones included: a
/// token of a revoked session is unknown from then on.
fn revoke(db: &rusqlite::Connection, id: &str) -> rusqlite::Result<()> {
    db.prepare_cached("DELETE FROM account_sessions WHERE id = ?1")?
        .execute(params![id])?;
    db.prepare_cached("DELETE FROM refresh_tokens WHERE session = ?1")?
        .execute(params![id])?;
    Ok(())
}
