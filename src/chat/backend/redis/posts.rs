//! Appends: a bounded queue of posts, sent to Redis in pipelined batches
//! by one task, each run by a script that gives the id, appends to the
//! stream and publishes, as one atomic step; retried in order with
//! backoff while Redis is away, made idempotent by an operation id.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::RedisResult;
use tracing::warn;

use super::bus::{BUS, Posted};
use super::{
    Backoff, Redis, key_ends, key_id, key_log, key_mod, key_msgs, key_mutes, key_rules, key_states,
};
use crate::chat::backend::{Ack, Busy, Kind, MAX_REACTIONS, NewEvent, Rejected, Unavailable};
use crate::chat::{lock, random_token};

/// Posts sent to Redis in one pipeline.
const MAX_BATCH: usize = 256;

/// Checks an event against its message, assigns the next id of its
/// conversation, appends it to the stream, updates the message's state
/// and publishes it on the bus, as one atomic step: Redis runs one script
/// at a time, so nothing comes between the check and the write.
///
/// KEYS: id counter, stream, operation key, message ids (sorted set),
/// message states (hash), moderation log (list: a room's `moderation`
/// and `remove` events, its audit, never trimmed), mutes (hash:
/// nick → until, `0` until lifted), rules in force (hash: `ban:NICK`,
/// `mute:NICK`, `role:NICK`, `topic`, `slow` → the latest event of that
/// rule that still holds, as in the log; `~last` → the last one's id),
/// ends (sorted set: the timed rules by their end; those over are dropped
/// from the rules and the mutes by the next moderation event). ARGV: stream length, from, text, ts, channel,
/// the event's JSON ([`Posted`]), kind (`msg`, `edit`, `delete`,
/// `react`, `moderation`, `remove`), target (the message acted on, or a
/// message's `reply_to`; 0: none), emoji, the most distinct reactions,
/// `1` if a message's writer is a guest (issue 17: its entry and state
/// then say `guest`).
///
/// Returns the id, or a refusal as a negative code
/// ([`Rejected::from_code`]): -1 no such message, -2 not its author, -3
/// deleted, -4 too many reactions, -5 the writer is muted in the room.
/// A refused event takes no id.
///
/// What it publishes is an envelope, `{"t":"stored","id":…,"event":…}`
/// ([`super::bus::Bus::Stored`]): the event's JSON goes in whole, as
/// serde wrote it, beside the id Redis gave (and, for a reaction,
/// `"users"`: who has it now).
///
/// Each message's state (`{from, ts, text, reply_to, edited_ts, deleted,
/// reactions, edits}`, JSON by cjson) is a field of the hash, kept for the
/// newest `stream length` messages (the sorted set says which). Who has
/// which reaction is part of that state (a sorted list per emoji), not a
/// set of its own: the toggle is as atomic inside the script either way,
/// and a history page then reads every message's reactions with its
/// text, in the same `HMGET`. A delete
/// purges the text: the state keeps none, and the stream entries that
/// held it (the message's and its edits') are deleted (`XDEL`).
///
/// The counter is checked against the stream's newest entry: were the
/// counter lost (a Redis restored from an older snapshot), ids continue
/// after the stream instead of failing `XADD` forever.
pub(super) const POST_SCRIPT: &str = r#"
local done = redis.call('GET', KEYS[3])
if done then return tonumber(done) end
local kind, from, text, ts = ARGV[7], ARGV[2], ARGV[3], ARGV[4]
local target = tonumber(ARGV[8])
local function refuse(code)
  redis.call('SET', KEYS[3], code, 'EX', 300)
  return code
end
local state
if target > 0 then
  local raw = redis.call('HGET', KEYS[5], target)
  if not raw then return refuse(-1) end
  state = cjson.decode(raw)
  if state.deleted then return refuse(-3) end
  -- A moderator's delete (`remove`, its role checked by the hub) is
  -- let through whoever wrote the message.
  if (kind == 'edit' or kind == 'delete') and state.from ~= from then return refuse(-2) end
end
-- A room's mutes (KEYS[7]: nick -> until, 0 for until lifted), kept by
-- its mute and unmute events below: a muted writer's message, edit or
-- reaction is refused.
if kind == 'msg' or kind == 'edit' or kind == 'react' then
  local muted_until = redis.call('HGET', KEYS[7], from)
  if muted_until and (muted_until == '0' or tonumber(muted_until) > tonumber(ts)) then return refuse(-5) end
end
local users = '[]'
if kind == 'react' then
  local emoji = ARGV[9]
  if type(state.reactions) ~= 'table' then state.reactions = {} end
  local list = state.reactions[emoji]
  if list == nil then
    local n = 0
    for _ in pairs(state.reactions) do n = n + 1 end
    if n >= tonumber(ARGV[10]) then return refuse(-4) end
    list = {}
  end
  local at = nil
  for i, nick in ipairs(list) do if nick == from then at = i end end
  if at then table.remove(list, at) else table.insert(list, from); table.sort(list) end
  if #list > 0 then
    state.reactions[emoji] = list
    users = cjson.encode(list)
  else
    state.reactions[emoji] = nil
  end
end
local id = redis.call('INCR', KEYS[1])
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if top[1] then
  local last = tonumber(string.match(top[1][1], '^(%d+)'))
  if last >= id then
    id = last + 1
    redis.call('SET', KEYS[1], id)
  end
end
local entry = {'from', from, 'text', text, 'ts', ts, 'kind', kind}
local logged
if kind == 'moderation' or kind == 'remove' then
  -- The room's audit: never trimmed with the stream.
  logged = cjson.encode({id = id, from = from, ts = tonumber(ts), kind = kind, text = text, target = target})
  redis.call('RPUSH', KEYS[6], logged)
end
if kind == 'moderation' then
  local a = cjson.decode(text)
  if a.action == 'mute' then
    redis.call('HSET', KEYS[7], a.user, a['until'] or 0)
  elseif a.action == 'unmute' then
    redis.call('HDEL', KEYS[7], a.user)
  end
  -- The rules in force (KEYS[8]: rule -> its latest event), what a room
  -- coming into memory reads; KEYS[9] orders the timed ones by their
  -- end, so that those over are dropped here at no cost of a scan.
  local over = redis.call('ZRANGEBYSCORE', KEYS[9], '-inf', ts)
  for _, rule in ipairs(over) do
    redis.call('HDEL', KEYS[8], rule)
    if string.sub(rule, 1, 5) == 'mute:' then redis.call('HDEL', KEYS[7], string.sub(rule, 6)) end
  end
  if #over > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', ts) end
  local act, user = a.action, a.user or ''
  local rule
  if act == 'ban' or act == 'unban' then rule = 'ban:' .. user
  elseif act == 'mute' or act == 'unmute' then rule = 'mute:' .. user
  elseif act == 'role' then rule = 'role:' .. user
  elseif act == 'topic' or act == 'slow' then rule = act end
  if rule then
    if act == 'unban' or act == 'unmute' or (act == 'role' and a.role ~= 'owner' and a.role ~= 'moderator' and not a.ownerless) then
      redis.call('HDEL', KEYS[8], rule)
      redis.call('ZREM', KEYS[9], rule)
    else
      redis.call('HSET', KEYS[8], rule, logged)
      if type(a['until']) == 'number' then
        redis.call('ZADD', KEYS[9], a['until'], rule)
      else
        redis.call('ZREM', KEYS[9], rule)
      end
    end
  end
  -- Never empty once written by this script (see `rules`).
  redis.call('HSET', KEYS[8], '~last', id)
elseif kind == 'msg' then
  local m = {from = from, ts = tonumber(ts), text = text, reactions = {}}
  if ARGV[11] == '1' then
    m.guest = true
    table.insert(entry, 'guest'); table.insert(entry, '1')
  end
  if target > 0 then
    m.reply_to = target
    table.insert(entry, 'reply_to'); table.insert(entry, target)
  end
  redis.call('HSET', KEYS[5], id, cjson.encode(m))
  redis.call('ZADD', KEYS[4], id, id)
  while redis.call('ZCARD', KEYS[4]) > tonumber(ARGV[1]) do
    local oldest = redis.call('ZPOPMIN', KEYS[4])
    redis.call('HDEL', KEYS[5], oldest[1])
  end
else
  table.insert(entry, 'target'); table.insert(entry, target)
  if kind == 'edit' then
    state.text = text
    state.edited_ts = tonumber(ts)
    if type(state.edits) ~= 'table' then state.edits = {} end
    table.insert(state.edits, id)
  elseif kind == 'delete' or kind == 'remove' then
    redis.call('XDEL', KEYS[2], target .. '-0')
    if type(state.edits) == 'table' then
      for _, e in ipairs(state.edits) do redis.call('XDEL', KEYS[2], e .. '-0') end
    end
    state.text = nil
    state.edits = nil
    state.reactions = {}
    state.deleted = true
  elseif kind == 'react' then
    entry[4] = ARGV[9]
    table.insert(entry, 'users'); table.insert(entry, users)
  end
  redis.call('HSET', KEYS[5], target, cjson.encode(state))
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], id .. '-0', unpack(entry))
redis.call('SET', KEYS[3], id, 'EX', 300)
local extra = ''
if kind == 'react' then extra = ',"users":' .. users end
redis.call('PUBLISH', ARGV[5], '{"t":"stored","id":' .. id .. ',"event":' .. ARGV[6] .. extra .. '}')
return id
"#;

/// An append waiting for its id.
pub(super) struct Post {
    /// Makes a retried post idempotent.
    op: String,
    /// The conversation's key.
    key: String,
    /// What the bus carries, [`Posted`] as JSON.
    json: String,
    event: NewEvent,
    ack: Box<dyn Ack>,
}

impl Post {
    pub(super) fn new(event: NewEvent, ack: Box<dyn Ack>) -> Self {
        Self {
            op: random_token(),
            key: event.conv.key(),
            json: Posted::of(&event).to_json(),
            event,
            ack,
        }
    }
}

impl Redis {
    /// Queues a post; [`Busy`] when the queue is at its limit.
    pub(super) fn enqueue(&self, post: Post) -> Result<(), Busy> {
        let mut q = lock(&self.queue);
        if q.len() >= self.config.queue_limit {
            return Err(Busy);
        }
        q.push_back(post);
        self.metrics.queued.store(q.len() as u64, Ordering::Relaxed);
        drop(q);
        self.queued.notify_one();
        Ok(())
    }

    /// Waits until every queued post is acked or `limit` passes. Returns
    /// how many were left.
    pub(super) async fn flush(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let left = lock(&self.queue).len() + self.in_flight.load(Ordering::Relaxed) as usize;
            if left == 0 || Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The next batch, once there is one.
    async fn next_batch(&self) -> Vec<Post> {
        loop {
            let notified = self.queued.notified();
            {
                let mut q = lock(&self.queue);
                // A client that left before Redis took its post never
                // got an ack: its page shows it unsent. Drop it rather
                // than deliver something its sender was told failed.
                let before = q.len();
                q.retain(|p| !p.ack.abandoned());
                self.metrics
                    .abandoned
                    .fetch_add((before - q.len()) as u64, Ordering::Relaxed);
                if !q.is_empty() {
                    let n = q.len().min(MAX_BATCH);
                    self.in_flight.store(n as u64, Ordering::Relaxed);
                    let batch = q.drain(..n).collect();
                    self.metrics.queued.store(q.len() as u64, Ordering::Relaxed);
                    return batch;
                }
            }
            notified.await;
        }
    }

    pub(super) async fn publisher(self: Arc<Self>) {
        let mut backoff = Backoff::new();
        loop {
            let batch = self.next_batch().await;
            let mut pipe = redis::pipe();
            for p in &batch {
                let (target, emoji) = match &p.event.kind {
                    Kind::Msg(state) => (state.reply_to.unwrap_or(0), ""),
                    Kind::Edit { target } | Kind::Delete { target } | Kind::Remove { target } => {
                        (*target, "")
                    }
                    Kind::Moderation(_) => (0, ""),
                    Kind::React { target, emoji, .. } => (*target, emoji.as_str()),
                };
                let guest = matches!(&p.event.kind, Kind::Msg(state) if state.guest);
                pipe.cmd("EVALSHA")
                    .arg(&self.sha)
                    .arg(9)
                    .arg(key_id(&p.key))
                    .arg(key_log(&p.key))
                    .arg(format!("chat:op:{}", p.op))
                    .arg(key_msgs(&p.key))
                    .arg(key_states(&p.key))
                    .arg(key_mod(&p.key))
                    .arg(key_mutes(&p.key))
                    .arg(key_rules(&p.key))
                    .arg(key_ends(&p.key))
                    .arg(self.config.history_len)
                    .arg(&p.event.from)
                    .arg(&p.event.text)
                    .arg(p.event.ts)
                    .arg(BUS)
                    .arg(&p.json)
                    .arg(p.event.kind.name())
                    .arg(target)
                    .arg(emoji)
                    .arg(MAX_REACTIONS)
                    .arg(u8::from(guest));
            }
            let result: RedisResult<Vec<i64>> = self
                .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
                .await;
            match result {
                Ok(ids) => {
                    backoff.reset();
                    self.metrics
                        .published
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    let mut partners = Vec::new();
                    for (p, id) in batch.into_iter().zip(ids) {
                        match u64::try_from(id) {
                            Ok(id) => {
                                Self::note_dm(&p.event.conv, p.event.ts, &mut partners);
                                p.ack.done(Ok(id));
                            }
                            Err(_) => match Rejected::from_code(id) {
                                Some(why) => p.ack.refused(why),
                                None => p.ack.done(Err(Unavailable)),
                            },
                        }
                    }
                    if !partners.is_empty() {
                        self.send(partners);
                    }
                    self.in_flight.store(0, Ordering::Relaxed);
                }
                Err(e) => {
                    warn!(error = %e, waiting = batch.len(), "redis: posts wait for redis");
                    // Back to the front, in order; their op ids make the
                    // retry safe if Redis ran them before failing.
                    {
                        let mut q = lock(&self.queue);
                        for p in batch.into_iter().rev() {
                            q.push_front(p);
                        }
                        self.metrics.queued.store(q.len() as u64, Ordering::Relaxed);
                        self.in_flight.store(0, Ordering::Relaxed);
                    }
                    backoff.wait().await;
                }
            }
        }
    }
}
