//! Moderation state in Redis ([`Moderation`] for [`Redis`]), shared by
//! every server:
//!
//! | key                    | type                    | holds                                        |
//! |------------------------|-------------------------|----------------------------------------------|
//! | `chat:admins`          | set of nicks            | the server admins                            |
//! | `chat:bans`            | hash, nick → until (ms) | server-wide bans (`0`: until lifted)         |
//! | `chat:audit:*`         | list of JSON            | the server's own audit (admins, server bans) |
//! | `chat:audit:*:n`       | counter                 | the last id given in it                      |
//! | `chat:mod:{room}`      | list of JSON            | the room's moderation events: its audit (`posts.rs`) |
//! | `chat:rules:{room}`    | hash, rule → JSON       | its rules in force, folded by `posts.rs`     |
//! | `chat:ends:{room}`     | sorted set, rule by end | the timed ones, to drop once over            |
//! | `chat:blocks:{nick}`   | set of nicks            | whom the nick blocks                         |
//!
//! Admins and bans are read at every check, never cached: `rfc6455 chat
//! admin add --redis URL` ([`admin_command`]) writes the set, and every
//! running server sees it at its next check. A server-wide ban is
//! published as well (`Signal::Banned`), so that every server closes the
//! user's connections at once.

use redis::RedisResult;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

use super::{Redis, key_blocks, unavailable};
use crate::chat::backend::moderation::{
    AdminOp, AuditEntry, Moderation, Until, admin_said, ban_detail, in_force, page,
};
use crate::chat::backend::{Conversation, Event, Reply, moderation};

const KEY_ADMINS: &str = "chat:admins";
const KEY_BANS: &str = "chat:bans";
const KEY_AUDIT: &str = "chat:audit:*";
const KEY_AUDIT_N: &str = "chat:audit:*:n";

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
#[derive(Deserialize, Serialize)]
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

/// Fills a room's rules in force (`chat:rules:{room}`, `chat:ends:{room}`)
/// from its log, for a room written before the post script kept them:
/// only if they are still absent and the log has not grown meanwhile (a
/// post script run since would have kept them itself). KEYS: the rules,
/// the ends, the log. ARGV: the log's length, the last id, then (rule,
/// logged JSON, end or 0) triples.
const BACKFILL_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('LLEN', KEYS[3]) ~= tonumber(ARGV[1]) then
  return 0
end
for i = 3, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  if ARGV[i + 2] ~= '0' then redis.call('ZADD', KEYS[2], ARGV[i + 2], ARGV[i]) end
end
redis.call('HSET', KEYS[1], '~last', ARGV[2])
return 1
"#;

/// One page of a list of JSON entries in id order (a room's log, the
/// server's audit): the `ARGV[2]` entries before id `ARGV[1]`, oldest
/// first, found by a binary search (`LINDEX`), never reading the rest.
const PAGE_SCRIPT: &str = r#"
local before, want = tonumber(ARGV[1]), tonumber(ARGV[2])
local lo, hi = 0, redis.call('LLEN', KEYS[1])
while lo < hi do
  local mid = math.floor((lo + hi) / 2)
  if cjson.decode(redis.call('LINDEX', KEYS[1], mid)).id < before then lo = mid + 1 else hi = mid end
end
if lo == 0 then return {} end
return redis.call('LRANGE', KEYS[1], math.max(lo - want, 0), lo - 1)
"#;

/// Events from their logged JSON (moderation and remove kinds only).
fn decode_logged<'a>(room: &str, raw: impl Iterator<Item = &'a String>) -> Vec<Event> {
    let conv = Conversation::Room(room.to_owned());
    raw.filter_map(|j| serde_json::from_str::<Logged>(j).ok())
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
        .collect()
}

impl Redis {
    /// The room's whole log, oldest first: read once per room, for a room
    /// written before the rules in force were kept ([`Self::in_force`]).
    async fn logged(&self, room: &str) -> RedisResult<(Vec<Event>, usize)> {
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
        Ok((decode_logged(room, raw.iter()), raw.len()))
    }

    /// The room's rules in force at `now`, as the post script keeps them
    /// (bounded like the rules); folded from the log once, and kept, if
    /// the room has a log but no rules yet.
    async fn in_force(&self, room: &str, now: u64) -> RedisResult<Vec<Event>> {
        let key = super::key_rules(room);
        let raw: std::collections::HashMap<String, String> = self
            .with_conn(
                |mut c| async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await },
            )
            .await?;
        if !raw.is_empty() {
            return Ok(moderation::current(decode_logged(room, raw.values()), now));
        }
        let (all, len) = self.logged(room).await?;
        let Some(last) = all.last().map(|e| e.id) else {
            return Ok(Vec::new());
        };
        let kept = moderation::current(all, now);
        let mut script = redis::cmd("EVAL");
        script
            .arg(BACKFILL_SCRIPT)
            .arg(3)
            .arg(super::key_rules(room))
            .arg(super::key_ends(room))
            .arg(super::key_mod(room))
            .arg(len)
            .arg(last);
        for e in &kept {
            let crate::chat::backend::Kind::Moderation(a) = &e.kind else {
                continue;
            };
            let logged = Logged {
                id: e.id,
                from: e.from.clone(),
                ts: e.ts,
                kind: "moderation".to_owned(),
                text: e.text.clone(),
                target: 0,
            };
            script
                .arg(moderation::rule_key(a).unwrap_or_default())
                .arg(serde_json::to_string(&logged).unwrap_or_default())
                .arg(a.until.unwrap_or(0));
        }
        self.with_conn(|mut c| {
            let script = script.clone();
            async move { script.query_async::<i64>(&mut c).await }
        })
        .await?;
        Ok(kept)
    }

    /// A page of the JSON list `key` ([`PAGE_SCRIPT`]), newest first.
    async fn page_of(&self, key: String, before: u64, want: u32) -> RedisResult<Vec<String>> {
        let mut raw: Vec<String> = self
            .with_conn(|mut c| {
                let key = key.clone();
                async move {
                    redis::cmd("EVAL")
                        .arg(PAGE_SCRIPT)
                        .arg(1)
                        .arg(key)
                        .arg(before)
                        .arg(want)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        raw.reverse();
        Ok(raw)
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
            self.in_force(&room, crate::chat::now_ms())
                .await
                .map_err(unavailable)
        })
    }

    fn audit(&self, room: &str, before: u64, limit: u32) -> Reply<'_, (Vec<AuditEntry>, bool)> {
        let room = room.to_owned();
        Box::pin(async move {
            let want = limit.saturating_add(1);
            if room == "*" {
                let raw = self
                    .page_of(KEY_AUDIT.to_owned(), before, want)
                    .await
                    .map_err(unavailable)?;
                let all: Vec<AuditEntry> = raw
                    .iter()
                    .filter_map(|j| serde_json::from_str::<AuditEntry>(j).ok())
                    .collect();
                return Ok(page(all, limit));
            }
            let raw = self
                .page_of(super::key_mod(&room), before, want)
                .await
                .map_err(unavailable)?;
            let events = decode_logged(&room, raw.iter());
            Ok(page(
                events.iter().filter_map(AuditEntry::of).collect(),
                limit,
            ))
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
