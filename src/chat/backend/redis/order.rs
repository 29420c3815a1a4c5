//! The streams, `chat:log:{key}`: resume ranges and the reads that keep
//! live delivery in id order; and history pages, read from the messages'
//! states (`chat:msgs:{key}`, `chat:msg:{key}`; see `posts::POST_SCRIPT`).
//!
//! One script assigns the id, appends to the stream and publishes, so the
//! bus carries each conversation's events in id order, and every id seen
//! on the bus is already in the stream. The hub delivers a room's events
//! in id order: an id beyond the next one means the subscription missed
//! some, and the hub asks for the hole ([`Redis::spawn_fill`]), read here
//! from the stream. After a subscription was lost, [`Redis::resync`]
//! tells the hub where each of its rooms' streams has got to.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::RedisResult;
use tracing::debug;

use super::{Backoff, Redis, key_id, key_log, key_msgs, key_states};
use crate::chat::backend::{
    Conversation, Event, HubEvents, Kind, MsgState, Page, Span, moderation,
};

/// A page of messages with their states, in one round trip: the ids
/// below `ARGV[1]` (`(id` or `+inf`), newest first, at most `ARGV[2]`, each
/// followed by its state's JSON (empty if it has none).
const PAGE_SCRIPT: &str = r#"
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'LIMIT', 0, ARGV[2])
if #ids == 0 then return {} end
local states = redis.call('HMGET', KEYS[2], unpack(ids))
local out = {}
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = states[i] or ''
end
return out
"#;

/// A message's state as the post script keeps it (cjson's JSON: numbers
/// may come as floats, and an empty table as `{}`).
#[derive(Debug, serde::Deserialize)]
struct State {
    from: String,
    ts: f64,
    #[serde(default)]
    text: String,
    #[serde(default)]
    reply_to: Option<f64>,
    #[serde(default)]
    edited_ts: Option<f64>,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    reactions: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    guest: bool,
}

/// Message `id` of `conv` from its state's JSON; `None` if unreadable.
fn from_state(conv: &Conversation, id: u64, json: &str) -> Option<Event> {
    let s: State = serde_json::from_str(json).ok()?;
    Some(Event {
        conv: conv.clone(),
        id,
        from: s.from,
        text: s.text,
        ts: s.ts as u64,
        kind: Kind::Msg(MsgState {
            reply_to: s.reply_to.map(|r| r as u64),
            edited_ts: s.edited_ts.map(|t| t as u64),
            deleted: s.deleted,
            reactions: s.reactions,
            guest: s.guest,
        }),
    })
}

/// Most messages read to fill one gap.
const MAX_FILL: usize = 10_000;

/// `{id}-0`, a stream entry id, back to our id.
fn entry_id(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn to_event(conv: &Conversation, entry: &redis::streams::StreamId) -> Event {
    let field = |name: &str| -> String {
        entry
            .map
            .get(name)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .unwrap_or_default()
    };
    let target = field("target").parse().unwrap_or(0);
    let (kind, text) = match field("kind").as_str() {
        "edit" => (Kind::Edit { target }, field("text")),
        "delete" => (Kind::Delete { target }, String::new()),
        "react" => {
            let users = serde_json::from_str(&field("users")).unwrap_or_default();
            let emoji = field("text");
            (
                Kind::React {
                    target,
                    emoji,
                    users,
                },
                String::new(),
            )
        }
        name @ ("moderation" | "remove") => {
            let text = field("text");
            match moderation::decode(name, target, &text) {
                Some(kind) => (kind, text),
                None => (Kind::default(), String::new()),
            }
        }
        // A message; entries from before kinds have no `kind`.
        _ => (
            Kind::Msg(MsgState {
                reply_to: field("reply_to").parse().ok(),
                guest: field("guest") == "1",
                ..MsgState::default()
            }),
            field("text"),
        ),
    };
    Event {
        conv: conv.clone(),
        id: entry_id(&entry.id),
        from: field("from"),
        text,
        ts: field("ts").parse().unwrap_or(0),
        kind,
    }
}

impl Redis {
    /// The last id given in `key` (0 if none).
    pub(super) async fn last_id_of(&self, key: &str) -> RedisResult<u64> {
        let k = key_id(key);
        let id: Option<u64> = self
            .with_conn(|mut c| async move { redis::cmd("GET").arg(k).query_async(&mut c).await })
            .await?;
        Ok(id.unwrap_or(0))
    }

    /// Up to `limit` messages of `key` with ids below `before`, oldest
    /// first, each in its latest state, and whether older ones exist.
    pub(super) async fn read_page(
        &self,
        conv: &Conversation,
        before: u64,
        limit: u32,
    ) -> RedisResult<Page> {
        let below = if before == u64::MAX {
            "+inf".to_owned()
        } else {
            format!("({before}")
        };
        let keys = [key_msgs(&conv.key()), key_states(&conv.key())];
        let flat: Vec<String> = self
            .with_conn(|mut c| async move {
                redis::cmd("EVAL")
                    .arg(PAGE_SCRIPT)
                    .arg(2)
                    .arg(&keys)
                    .arg(below)
                    .arg(u64::from(limit) + 1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if flat.is_empty() {
            // A conversation written before message states (issue 16)
            // has its messages in the stream only.
            return self.read_stream_page(conv, before, limit).await;
        }
        let mut page: Vec<Event> = flat
            .chunks(2)
            .filter_map(|pair| from_state(conv, pair[0].parse().ok()?, pair.get(1)?))
            .collect();
        // Older ones may also be in the stream alone (written before
        // message states, or past the states' bound): a page that reaches
        // back to neither id 1 nor its limit says `more`, and the next one
        // reads the stream.
        let more = page.len() > limit as usize || page.last().is_some_and(|m| m.id > 1);
        page.truncate(limit as usize);
        page.reverse();
        Ok((page, more))
    }

    /// A page read from the stream, messages only, as they were posted.
    async fn read_stream_page(
        &self,
        conv: &Conversation,
        before: u64,
        limit: u32,
    ) -> RedisResult<Page> {
        let end = if before == u64::MAX {
            "+".to_owned()
        } else {
            format!("({before}-0")
        };
        let k = key_log(&conv.key());
        let reply: redis::streams::StreamRangeReply = self
            .with_conn(|mut c| async move {
                redis::cmd("XREVRANGE")
                    .arg(k)
                    .arg(end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(u64::from(limit) + 1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut page: Vec<Event> = reply
            .ids
            .iter()
            .map(|e| to_event(conv, e))
            .filter(|e| matches!(e.kind, Kind::Msg(_)))
            .collect();
        let more = page.len() > limit as usize;
        page.truncate(limit as usize);
        page.reverse();
        Ok((page, more))
    }

    /// The events of `conv` in `span`, oldest first; the newest `limit`
    /// if there are more.
    pub(super) async fn read_range(
        &self,
        conv: &Conversation,
        span: Span,
        limit: usize,
    ) -> RedisResult<Vec<Event>> {
        let Span { after, upto } = span;
        if upto <= after {
            return Ok(Vec::new());
        }
        let k = key_log(&conv.key());
        let reply: redis::streams::StreamRangeReply = self
            .with_conn(|mut c| async move {
                redis::cmd("XREVRANGE")
                    .arg(k)
                    .arg(format!("{upto}-0"))
                    .arg(format!("({after}-0"))
                    .arg("COUNT")
                    .arg(limit)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut page: Vec<Event> = reply.ids.iter().map(|e| to_event(conv, e)).collect();
        page.reverse();
        Ok(page)
    }

    /// Fills a hole in `conv`'s delivery, `span`, from its stream,
    /// retrying until Redis answers or the server shuts down.
    pub(super) fn spawn_fill(&self, conv: Conversation, span: Span) {
        let (Some(hub), Some(this)) = (self.hub(), self.me.upgrade()) else {
            return;
        };
        tokio::spawn(async move {
            let mut backoff = Backoff::new();
            loop {
                match this.read_range(&conv, span, MAX_FILL).await {
                    Ok(events) => {
                        this.metrics.gap_fills.fetch_add(1, Ordering::Relaxed);
                        this.metrics
                            .gap_messages
                            .fetch_add(events.len() as u64, Ordering::Relaxed);
                        debug!(%conv, ?span, got = events.len(), "gap filled");
                        hub.filled(&conv, span, events);
                        return;
                    }
                    Err(_) if hub.is_shutting_down() => return,
                    Err(_) => backoff.wait().await,
                }
            }
        });
    }

    /// The last ids of `rooms`.
    async fn last_ids(&self, rooms: &[String]) -> RedisResult<Vec<u64>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = rooms.iter().map(|r| key_id(r)).collect();
        let ids: Vec<Option<u64>> = self
            .with_conn(
                |mut c| async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await },
            )
            .await?;
        Ok(ids.into_iter().map(|i| i.unwrap_or(0)).collect())
    }

    /// After (re)subscribing: ids missed meanwhile are read from the
    /// streams, our presence is published again (others may have timed us
    /// out), and theirs is read again.
    pub(super) async fn resync(self: &Arc<Self>, hub: &Arc<dyn HubEvents>) {
        let rooms = hub.rooms();
        if let Ok(last) = self.last_ids(&rooms).await {
            for (room, last) in rooms.iter().zip(last) {
                hub.stream_head(room, last);
            }
        }
        hub.republish();
        self.load_presence(hub).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_entry_ids_are_message_ids() {
        assert_eq!(entry_id("42-0"), 42);
        assert_eq!(entry_id("18446744073709551615-0"), u64::MAX);
        assert_eq!(entry_id("garbage"), 0);
    }
}
