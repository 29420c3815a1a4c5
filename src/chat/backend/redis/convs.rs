//! Conversation state in Redis ([`Convs`] for [`Redis`]), so that it
//! follows a user to any server:
//!
//! | key                    | type                    | holds                                   |
//! |------------------------|-------------------------|-----------------------------------------|
//! | `chat:read:{user}`     | hash, conv key → id     | the user's read marks                   |
//! | `chat:readers:{conv}`  | sorted set, user by id  | the same marks, by conversation         |
//! | `chat:dms:{user}`      | sorted set, nick by ts  | the user's DM partners, by last message |
//! | `chat:users`           | set of nicks            | every nick that ever said hello         |
//!
//! A mark moves only forward, checked and written by one script
//! ([`READ_SCRIPT`]), so two servers marking at once keep the furthest.
//! DM partners are noted by the server whose post Redis took, once its id
//! is known ([`Redis::note_dm`]).

use redis::RedisResult;

use super::{Redis, key_id, key_session, unavailable};
use crate::chat::backend::{Conversation, Convs, Reply};

fn key_read(user: &str) -> String {
    format!("chat:read:{user}")
}
fn key_readers(conv: &str) -> String {
    format!("chat:readers:{conv}")
}
fn key_dms(user: &str) -> String {
    format!("chat:dms:{user}")
}
const KEY_USERS: &str = "chat:users";

/// Moves a read mark forward, never back. KEYS: the user's marks, the
/// conversation's readers. ARGV: conversation key, user, id. Returns 1 if
/// the mark moved.
const READ_SCRIPT: &str = r#"
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local id = tonumber(ARGV[3])
if id <= cur then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1
"#;

impl Redis {
    /// The commands that note a DM stored at `ts` (none for a room): each
    /// of its two users has the other as a partner, latest first. The
    /// caller sends a whole batch's at once.
    pub(super) fn note_dm(conv: &Conversation, ts: u64, cmds: &mut Vec<redis::Cmd>) {
        let Conversation::Dm(a, b) = conv else {
            return;
        };
        for (user, with) in [(a, b), (b, a)] {
            let mut c = redis::cmd("ZADD");
            c.arg(key_dms(user)).arg(ts).arg(with);
            cmds.push(c);
        }
    }

    async fn marks(&self, user: &str) -> RedisResult<Vec<(Conversation, u64)>> {
        let k = key_read(user);
        let all: Vec<(String, u64)> = self
            .with_conn(
                |mut c| async move { redis::cmd("HGETALL").arg(k).query_async(&mut c).await },
            )
            .await?;
        Ok(all
            .into_iter()
            .map(|(conv, id)| (Conversation::from_key(&conv), id))
            .collect())
    }

    async fn partners(&self, user: &str, limit: usize) -> RedisResult<Vec<(String, u64)>> {
        let k = key_dms(user);
        let stop = limit.max(1) as i64 - 1;
        let with: Vec<String> = self
            .with_conn(|mut c| async move {
                redis::cmd("ZREVRANGE")
                    .arg(k)
                    .arg(0)
                    .arg(stop)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if with.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = with
            .iter()
            .map(|w| key_id(&Conversation::dm(user, w).key()))
            .collect();
        let ids: Vec<Option<u64>> = self
            .with_conn(
                |mut c| async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await },
            )
            .await?;
        Ok(with
            .into_iter()
            .zip(ids)
            .map(|(w, id)| (w, id.unwrap_or(0)))
            .collect())
    }
}

impl Convs for Redis {
    fn mark_read(&self, user: &str, conv: &Conversation, id: u64) -> Reply<'_, bool> {
        let (user, key) = (user.to_owned(), conv.key());
        Box::pin(async move {
            // EVAL, not EVALSHA: the script is short, and a read mark is
            // rare beside posts.
            let moved: i64 = self
                .with_conn(|mut c| async move {
                    redis::cmd("EVAL")
                        .arg(READ_SCRIPT)
                        .arg(2)
                        .arg(key_read(&user))
                        .arg(key_readers(&key))
                        .arg(&key)
                        .arg(&user)
                        .arg(id)
                        .query_async(&mut c)
                        .await
                })
                .await
                .map_err(unavailable)?;
            Ok(moved == 1)
        })
    }

    fn reads(&self, user: &str) -> Reply<'_, Vec<(Conversation, u64)>> {
        let user = user.to_owned();
        Box::pin(async move { self.marks(&user).await.map_err(unavailable) })
    }

    fn readers(&self, conv: &Conversation, limit: usize) -> Reply<'_, Vec<(String, u64)>> {
        let k = key_readers(&conv.key());
        let stop = limit.max(1) as i64 - 1;
        Box::pin(async move {
            self.with_conn(|mut c| async move {
                redis::cmd("ZREVRANGE")
                    .arg(k)
                    .arg(0)
                    .arg(stop)
                    .arg("WITHSCORES")
                    .query_async(&mut c)
                    .await
            })
            .await
            .map_err(unavailable)
        })
    }

    fn dms(&self, user: &str, limit: usize) -> Reply<'_, Vec<(String, u64)>> {
        let user = user.to_owned();
        Box::pin(async move { self.partners(&user, limit).await.map_err(unavailable) })
    }

    fn remember_user(&self, nick: &str) {
        let mut c = redis::cmd("SADD");
        c.arg(KEY_USERS).arg(nick);
        self.send(vec![c]);
    }

    fn known_user(&self, nick: &str) -> Reply<'_, bool> {
        let nick = nick.to_owned();
        Box::pin(async move {
            self.with_conn(|mut c| async move {
                redis::cmd("SISMEMBER")
                    .arg(KEY_USERS)
                    .arg(nick)
                    .query_async(&mut c)
                    .await
            })
            .await
            .map_err(unavailable)
        })
    }

    fn forget_session(&self, nick: &str) {
        let mut c = redis::cmd("DEL");
        c.arg(key_session(nick));
        self.send(vec![c]);
    }
}
