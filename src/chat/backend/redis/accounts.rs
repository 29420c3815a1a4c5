//! Accounts in Redis ([`Accounts`] for [`Redis`], issue 17), so that an
//! account registered on one server logs in on any other, and a session
//! revoked on one is revoked on all:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `chat:acct:key` | string | the token signing key (set once, `NX`) |
//! | `chat:acct:n:{skeleton}` | hash `{nick, hash}` | the account whose nick has that skeleton (its own namespace: the nick `key` is no signing key) |
//! | `chat:asess:{id}` | hash `{nick}` | a live session (deleted when revoked; expires with its refresh token) |
//! | `chat:asessions:{nick}` | sorted set of ids, by expiry (ms) | the user's sessions: each login drops the expired ones, and the set expires with the newest |
//! | `chat:refresh:{digest}` | string `live:{id}` / `spent:{id}` | a refresh token, by its SHA-256 (expires with it) |
//!
//! Registration ([`CREATE_SCRIPT`]) and rotation ([`ROTATE_SCRIPT`]) are
//! scripts: Redis runs one at a time, so two servers registering
//! look-alikes at once, or spending one refresh token at once, are
//! decided one after the other.

use redis::RedisResult;

use super::{Redis, unavailable};
use crate::chat::backend::{Account, Accounts, NewSession, Registered, Reply, Rotation};

const KEY_SIGNING: &str = "chat:acct:key";

fn key_account(skeleton: &str) -> String {
    format!("chat:acct:n:{skeleton}")
}
fn key_session(id: &str) -> String {
    format!("chat:asess:{id}")
}
fn key_sessions(nick: &str) -> String {
    format!("chat:asessions:{nick}")
}
fn key_refresh(digest: &str) -> String {
    format!("chat:refresh:{digest}")
}

/// Creates an account unless its skeleton is held, and drops the blocks a
/// guest stored under its nick. KEYS: the account, the nick's blocks.
/// ARGV: nick, hash. Returns `""` if created, else the holder's nick.
const CREATE_SCRIPT: &str = r#"
local held = redis.call('HGET', KEYS[1], 'nick')
if held then return held end
redis.call('HSET', KEYS[1], 'nick', ARGV[1], 'hash', ARGV[2])
redis.call('DEL', KEYS[2])
return ''
"#;

/// Spends a refresh token. KEYS: the token, its successor. ARGV: the
/// successor's expiry (ms since the epoch), the session key prefix, the
/// sessions-by-nick key prefix. Returns `{0, nil, nil}` unknown, `{1, id, nick}`
/// rotated, `{2, id, nick}` replayed (the session is revoked).
const ROTATE_SCRIPT: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return {0, false, false} end
local state, id = string.match(v, '^(%a+):(.*)$')
local skey = ARGV[2] .. id
local nick = redis.call('HGET', skey, 'nick')
if not nick then return {0, false, false} end
if state == 'spent' then
  redis.call('DEL', skey)
  redis.call('ZREM', ARGV[3] .. nick, id)
  redis.call('DEL', KEYS[1])
  return {2, id, nick}
end
redis.call('SET', KEYS[1], 'spent:' .. id, 'PXAT', ARGV[1])
redis.call('SET', KEYS[2], 'live:' .. id, 'PXAT', ARGV[1])
redis.call('PEXPIREAT', skey, ARGV[1])
redis.call('ZADD', ARGV[3] .. nick, ARGV[1], id)
redis.call('PEXPIREAT', ARGV[3] .. nick, ARGV[1])
return {1, id, nick}
"#;

impl Redis {
    async fn query<T: redis::FromRedisValue + Send>(&self, cmd: redis::Cmd) -> RedisResult<T> {
        self.with_conn(|mut c| async move { cmd.query_async(&mut c).await })
            .await
    }
}

impl Accounts for Redis {
    fn signing_key(&self, candidate: Vec<u8>) -> Reply<'_, Vec<u8>> {
        Box::pin(async move {
            let mut set = redis::cmd("SET");
            set.arg(KEY_SIGNING).arg(candidate).arg("NX");
            let _: Option<String> = self.query(set).await.map_err(unavailable)?;
            let mut get = redis::cmd("GET");
            get.arg(KEY_SIGNING);
            self.query(get).await.map_err(unavailable)
        })
    }

    fn create_account(&self, nick: &str, skeleton: &str, hash: &str) -> Reply<'_, Registered> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CREATE_SCRIPT)
            .arg(2)
            .arg(key_account(skeleton))
            .arg(super::key_blocks(nick))
            .arg(nick)
            .arg(hash);
        Box::pin(async move {
            let held: String = self.query(cmd).await.map_err(unavailable)?;
            Ok(if held.is_empty() {
                Registered::Created
            } else {
                Registered::Taken(held)
            })
        })
    }

    fn account(&self, skeleton: &str) -> Reply<'_, Option<Account>> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(key_account(skeleton)).arg("nick").arg("hash");
        Box::pin(async move {
            let (nick, hash): (Option<String>, Option<String>) =
                self.query(cmd).await.map_err(unavailable)?;
            Ok(nick.zip(hash).map(|(nick, hash)| Account { nick, hash }))
        })
    }

    fn set_password(&self, skeleton: &str, hash: &str) -> Reply<'_, ()> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(key_account(skeleton)).arg("hash").arg(hash);
        Box::pin(async move {
            let _: i64 = self.query(cmd).await.map_err(unavailable)?;
            Ok(())
        })
    }

    fn open_session(&self, s: NewSession) -> Reply<'_, ()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("HSET")
            .arg(key_session(&s.id))
            .arg("nick")
            .arg(&s.nick);
        pipe.cmd("PEXPIREAT").arg(key_session(&s.id)).arg(s.expires);
        // The newest session expires last: the set lasts as long, and
        // sheds the sessions that expired on their own.
        let sessions = key_sessions(&s.nick);
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&sessions)
            .arg("-inf")
            .arg(crate::chat::now_ms());
        pipe.cmd("ZADD").arg(&sessions).arg(s.expires).arg(&s.id);
        pipe.cmd("PEXPIREAT").arg(&sessions).arg(s.expires);
        pipe.cmd("SET")
            .arg(key_refresh(&s.refresh))
            .arg(format!("live:{}", s.id))
            .arg("PXAT")
            .arg(s.expires);
        Box::pin(async move {
            self.with_conn(|mut c| async move { pipe.query_async::<()>(&mut c).await })
                .await
                .map_err(unavailable)
        })
    }

    fn rotate(&self, refresh: &str, next: &str, expires: u64) -> Reply<'_, Rotation> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ROTATE_SCRIPT)
            .arg(2)
            .arg(key_refresh(refresh))
            .arg(key_refresh(next))
            .arg(expires)
            .arg(key_session(""))
            .arg(key_sessions(""));
        Box::pin(async move {
            let (code, session, nick): (i64, Option<String>, Option<String>) =
                self.query(cmd).await.map_err(unavailable)?;
            Ok(match (code, session, nick) {
                (1, Some(session), Some(nick)) => Rotation::Rotated { session, nick },
                (2, Some(session), Some(nick)) => Rotation::Replayed { session, nick },
                _ => Rotation::Unknown,
            })
        })
    }

    fn session_live(&self, id: &str) -> Reply<'_, bool> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(key_session(id));
        Box::pin(async move {
            let n: i64 = self.query(cmd).await.map_err(unavailable)?;
            Ok(n == 1)
        })
    }

    /// The session's refresh tokens stay until they expire, but point at
    /// a session that is gone: [`ROTATE_SCRIPT`] answers them unknown.
    fn revoke(&self, id: &str) -> Reply<'_, ()> {
        let key = key_session(id);
        let id = id.to_owned();
        Box::pin(async move {
            let mut get = redis::cmd("HGET");
            get.arg(&key).arg("nick");
            let nick: Option<String> = self.query(get).await.map_err(unavailable)?;
            let mut del = redis::cmd("DEL");
            del.arg(&key);
            let _: i64 = self.query(del).await.map_err(unavailable)?;
            if let Some(nick) = nick {
                let mut srem = redis::cmd("ZREM");
                srem.arg(key_sessions(&nick)).arg(&id);
                let _: i64 = self.query(srem).await.map_err(unavailable)?;
            }
            Ok(())
        })
    }

    fn revoke_all(&self, nick: &str, except: Option<&str>) -> Reply<'_, Vec<String>> {
        let nick = nick.to_owned();
        let except = except.map(str::to_owned);
        Box::pin(async move {
            let mut members = redis::cmd("ZRANGE");
            members.arg(key_sessions(&nick)).arg(0).arg(-1);
            let ids: Vec<String> = self.query(members).await.map_err(unavailable)?;
            let ids: Vec<String> = ids
                .into_iter()
                .filter(|id| Some(id) != except.as_ref())
                .collect();
            for id in &ids {
                self.revoke(id).await?;
            }
            Ok(ids)
        })
    }
}
