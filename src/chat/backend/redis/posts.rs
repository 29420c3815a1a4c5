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
use super::{Backoff, Redis, key_id, key_log};
use crate::chat::backend::{Ack, Busy, NewEvent};
use crate::chat::{lock, random_token};

/// Posts sent to Redis in one pipeline.
const MAX_BATCH: usize = 256;

/// Assigns the next id of a conversation, appends the event to its stream
/// and publishes it on the bus, as one atomic step.
///
/// KEYS: id counter, stream, operation key. ARGV: stream length, from,
/// text, ts, channel, the event's JSON ([`Posted`]).
///
/// What it publishes is an envelope, `{"t":"stored","id":…,"event":…}`
/// ([`super::bus::Bus::Stored`]): the event's JSON goes in whole, as
/// serde wrote it, beside the id Redis gave.
///
/// The counter is checked against the stream's newest entry: were the
/// counter lost (a Redis restored from an older snapshot), ids continue
/// after the stream instead of failing `XADD` forever.
pub(super) const POST_SCRIPT: &str = r#"
local done = redis.call('GET', KEYS[3])
if done then return tonumber(done) end
local id = redis.call('INCR', KEYS[1])
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if top[1] then
  local last = tonumber(string.match(top[1][1], '^(%d+)'))
  if last >= id then
    id = last + 1
    redis.call('SET', KEYS[1], id)
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], id .. '-0',
  'from', ARGV[2], 'text', ARGV[3], 'ts', ARGV[4])
redis.call('SET', KEYS[3], id, 'EX', 300)
redis.call('PUBLISH', ARGV[5], '{"t":"stored","id":' .. id .. ',"event":' .. ARGV[6] .. '}')
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
                pipe.cmd("EVALSHA")
                    .arg(&self.sha)
                    .arg(3)
                    .arg(key_id(&p.key))
                    .arg(key_log(&p.key))
                    .arg(format!("chat:op:{}", p.op))
                    .arg(self.config.history_len)
                    .arg(&p.event.from)
                    .arg(&p.event.text)
                    .arg(p.event.ts)
                    .arg(BUS)
                    .arg(&p.json);
            }
            let result: RedisResult<Vec<u64>> = self
                .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
                .await;
            match result {
                Ok(ids) => {
                    backoff.reset();
                    self.metrics
                        .published
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    for (p, id) in batch.into_iter().zip(ids) {
                        self.note_dm(&p.event.conv, p.event.ts);
                        p.ack.done(Ok(id));
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
