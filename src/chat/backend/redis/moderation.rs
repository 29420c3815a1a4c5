//! Moderation state in Redis ([`Moderation`] for [`Redis`]), shared by
//! every server:
//!
//! | key                    | type                    | holds                                        |
//! |------------------------|-------------------------|----------------------------------------------|
//! | `chat:admins`          | set of nicks            | the server admins                            |
//! | `chat:bans`            | hash, nick → until (ms) | server-wide bans (`0`: until lifted)         |
//! | `chat:audit:*`         | list of JSON            | the server's own audit (admins, server bans) |
//! | `chat:audit:*:n`       | counter                 | the last id given in it                      |
//! | `chat:mod:{room}`      | list of JSON            | the room's moderation events (`posts.rs`)    |
//! | `chat:blocks:{nick}`   | set of nicks            | whom the nick blocks                         |
//!
//! Admins and bans are read at every check, never cached: `rfc6455 chat
//! admin add --redis URL` ([`admin_command`]) writes the set, and every
//! running server sees it at its next check. A server-wide ban is
//! published as well (`Signal::Banned`), so that every server closes the
//! user's connections at once.

use redis::RedisResult;
use redis::aio::MultiplexedConnection;
use serde::Deserialize;

use super::{Redis, unavailable};
use crate::chat::backend::moderation::{
    AdminOp, AuditEntry, Moderation, Until, admin_said, audit_page, ban_detail, in_force, page,
};
use crate::chat::backend::{Conversation, Event, Reply, moderation};

const KEY_ADMINS: &str = "chat:admins";
const KEY_BANS: &str = "chat:bans";
const KEY_AUDIT: &str = "chat:audit:*";
const KEY_AUDIT_N: &str = "chat:audit:*:n";

fn key_blocks(nick: &str) -> String {
    format!("chat:blocks:{nick}")
}

/// Appends an entry to the server's audit, giving it the next id.
/// KEYS: the list, its counter. ARGV: the entry's JSON (its id is set).
const AUDIT_SCRIPT: &str = r#"
local id = redis.call('INCR', KEYS[2])
local e = cjson.decode(ARGV[1])
e.id = id
redis.call('RPUSH', KEYS[1], cjson.encode(e))
return id
"#;

async fn note(
    c: &mut MultiplexedConnection,
    by: &str,
    action: &str,
    user: &str,
    detail: Option<String>,
) -> RedisResult<()> {
    let entry = AuditEntry {
        id: 0,
        ts: crate::chat::now_ms(),
        by: by.to_owned(),
        action: action.to_owned(),
        user: Some(user.to_owned()),
        detail,
    };
    let json = serde_json::to_string(&entry).unwrap_or_default();
    redis::cmd("EVAL")
        .arg(AUDIT_SCRIPT)
        .arg(2)
        .arg(KEY_AUDIT)
        .arg(KEY_AUDIT_N)
        .arg(json)
        .query_async::<i64>(c)
        .await
        .map(drop)
}

/// Adds or removes an admin, audited; whether it changed anything. The
/// one writer of admins, for the servers and for the command alike.
pub async fn set_admin(
    c: &mut MultiplexedConnection,
    nick: &str,
    admin: bool,
    by: &str,
) -> RedisResult<bool> {
    let changed: i64 = redis::cmd(if admin { "SADD" } else { "SREM" })
        .arg(KEY_ADMINS)
        .arg(nick)
        .query_async(c)
        .await?;
    if changed > 0 {
        let action = if admin { "admin_add" } else { "admin_remove" };
        note(c, by, action, nick, None).await?;
    }
    Ok(changed > 0)
}

/// Every admin, sorted.
pub async fn admins(c: &mut MultiplexedConnection) -> RedisResult<Vec<String>> {
    let mut all: Vec<String> = redis::cmd("SMEMBERS")
        .arg(KEY_ADMINS)
        .query_async(c)
        .await?;
    all.sort();
    Ok(all)
}

/// A stored moderation event, as the post script pushes it.
#[derive(Deserialize)]
struct Logged {
    id: u64,
    from: String,
    ts: u64,
    kind: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    target: u64,
}

impl Redis {
    /// The room's moderation events, oldest first.
    async fn logged(&self, room: &str) -> RedisResult<Vec<Event>> {
        let key = super::key_mod(room);
        let raw: Vec<String> = self
            .with_conn(|mut c| async move {
                redis::cmd("LRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let conv = Conversation::Room(room.to_owned());
        Ok(raw
            .iter()
            .filter_map(|j| serde_json::from_str::<Logged>(j).ok())
            .filter_map(|l| {
                let kind = moderation::decode(&l.kind, l.target, &l.text)?;
                Some(Event {
                    conv: conv.clone(),
                    id: l.id,
                    from: l.from,
                    text: l.text,
                    ts: l.ts,
                    kind,
                })
            })
            .collect())
    }
}

impl Moderation for Redis {
    fn is_admin(&self, nick: &str) -> Reply<'_, bool> {
        let nick = nick.to_owned();
        Box::pin(async move {
            self.with_conn(|mut c| async move {
                redis::cmd("SISMEMBER")
                    .arg(KEY_ADMINS)
                    .arg(nick)
                    .query_async(&mut c)
                    .await
            })
            .await
            .map_err(unavailable)
        })
    }

    fn server_ban(&self, nick: &str, now: u64) -> Reply<'_, Option<Until>> {
        let nick = nick.to_owned();
        Box::pin(async move {
            let until: Option<u64> = self
                .with_conn(|mut c| async move {
                    redis::cmd("HGET")
                        .arg(KEY_BANS)
                        .arg(nick)
                        .query_async(&mut c)
                        .await
                })
                .await
                .map_err(unavailable)?;
            Ok(until
                .map(|u| (u > 0).then_some(u))
                .filter(|until| in_force(*until, now)))
        })
    }

    fn set_server_ban(
        &self,
        nick: &str,
        ban: Option<Until>,
        by: &str,
        reason: Option<&str>,
    ) -> Reply<'_, ()> {
        let (nick, by, reason) = (nick.to_owned(), by.to_owned(), reason.map(str::to_owned));
        Box::pin(async move {
            self.with_conn(|mut c| async move {
                match ban {
                    Some(until) => {
                        redis::cmd("HSET")
                            .arg(KEY_BANS)
                            .arg(&nick)
                            .arg(until.unwrap_or(0))
                            .query_async::<i64>(&mut c)
                            .await?;
                        let detail = ban_detail(reason.as_deref(), until);
                        note(&mut c, &by, "ban", &nick, detail).await
                    }
                    None => {
                        redis::cmd("HDEL")
                            .arg(KEY_BANS)
                            .arg(&nick)
                            .query_async::<i64>(&mut c)
                            .await?;
                        note(&mut c, &by, "unban", &nick, reason).await
                    }
                }
            })
            .await
            .map_err(unavailable)
        })
    }

    fn rules(&self, room: &str) -> Reply<'_, Vec<Event>> {
        let room = room.to_owned();
        Box::pin(async move {
            let all = self.logged(&room).await.map_err(unavailable)?;
            Ok(moderation::current(all, crate::chat::now_ms()))
        })
    }

    fn audit(&self, room: &str, before: u64, limit: u32) -> Reply<'_, (Vec<AuditEntry>, bool)> {
        let room = room.to_owned();
        Box::pin(async move {
            if room == "*" {
                let raw: Vec<String> = self
                    .with_conn(|mut c| async move {
                        redis::cmd("LRANGE")
                            .arg(KEY_AUDIT)
                            .arg(0)
                            .arg(-1)
                            .query_async(&mut c)
                            .await
                    })
                    .await
                    .map_err(unavailable)?;
                let all: Vec<AuditEntry> = raw
                    .iter()
                    .rev()
                    .filter_map(|j| serde_json::from_str::<AuditEntry>(j).ok())
                    .filter(|e| e.id < before)
                    .collect();
                return Ok(page(all, limit));
            }
            let events = self.logged(&room).await.map_err(unavailable)?;
            Ok(audit_page(&events, before, limit))
        })
    }

    fn blocks(&self, nick: &str) -> Reply<'_, Vec<String>> {
        let key = key_blocks(nick);
        Box::pin(async move {
            let mut all: Vec<String> = self
                .with_conn(|mut c| async move {
                    redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await
                })
                .await
                .map_err(unavailable)?;
            all.sort();
            Ok(all)
        })
    }

    fn set_block(&self, nick: &str, other: &str, on: bool) -> Reply<'_, ()> {
        let (key, other) = (key_blocks(nick), other.to_owned());
        Box::pin(async move {
            self.with_conn(|mut c| async move {
                redis::cmd(if on { "SADD" } else { "SREM" })
                    .arg(key)
                    .arg(other)
                    .query_async::<i64>(&mut c)
                    .await
                    .map(drop)
            })
            .await
            .map_err(unavailable)
        })
    }
}

/// `rfc6455 chat admin … --redis URL`: connects, runs `op`, and says
/// what it did.
pub async fn admin_command(url: &str, op: &AdminOp) -> Result<String, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let result = match op {
        AdminOp::Add(nick) => set_admin(&mut c, nick, true, "cli")
            .await
            .map(|changed| admin_said(op, changed)),
        AdminOp::Remove(nick) => set_admin(&mut c, nick, false, "cli")
            .await
            .map(|changed| admin_said(op, changed)),
        AdminOp::List => admins(&mut c).await.map(|all| all.join("\n")),
    };
    result.map_err(|e| e.to_string())
}
