//! The link itself: the command connection (made again after any error,
//! which also marks Redis down), the up/down state `/healthz` and
//! `/metrics` report, and the writer of commands nobody waits for
//! (presence, heartbeats' companions, sessions), pipelined in order.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};
use tracing::{debug, info, warn};

use super::{IO_TIMEOUT, Redis, posts};
use crate::chat::lock;

/// What the command writer sends: commands, pipelined; or a marker to
/// answer once everything before it is written.
pub(super) enum Command {
    Cmds(Vec<redis::Cmd>),
    Sync(tokio::sync::oneshot::Sender<()>),
}

impl Redis {
    /// Records whether the command connection (`cmd`) and the
    /// subscription (`sub`) work; Redis is up when both do.
    pub(super) fn set_state(&self, cmd: Option<bool>, sub: Option<bool>) {
        if let Some(c) = cmd {
            self.cmd_up.store(c, Ordering::Relaxed);
        }
        if let Some(s) = sub {
            self.sub_up.store(s, Ordering::Relaxed);
        }
        let up = self.cmd_up.load(Ordering::Relaxed) && self.sub_up.load(Ordering::Relaxed);
        let was = self.metrics.up.swap(up, Ordering::Relaxed);
        let mut since = lock(&self.down_since);
        match (was, up) {
            (false, true) => {
                if let Some(t) = since.take() {
                    info!(after = ?t.elapsed(), "redis: up");
                }
            }
            (true, false) => {
                warn!("redis: down; serving local clients, retrying");
                *since = Some(Instant::now());
            }
            _ => {}
        }
    }

    /// The command connection, made (and the script loaded) if needed.
    async fn conn(&self) -> RedisResult<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(IO_TIMEOUT));
        let mut c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(posts::POST_SCRIPT)
            .query_async(&mut c)
            .await?;
        self.metrics.reconnects.fetch_add(1, Ordering::Relaxed);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `f` on the command connection; any error drops the connection
    /// (the next call makes a new one) and marks Redis down.
    pub(super) async fn with_conn<T, F, Fut>(&self, f: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let result = match self.conn().await {
            Ok(c) => f(c).await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.set_state(Some(true), None),
            Err(e) => {
                debug!(error = %e, "redis command failed");
                *self.conn.lock().await = None;
                self.set_state(Some(false), None);
            }
        }
        result
    }

    /// Queues commands for the writer; dropped if Redis is away or too
    /// slow (what they carry is sent again: presence at a resync,
    /// sessions at the next connection).
    /// Returns whether they were queued.
    pub(super) fn send(&self, cmds: Vec<redis::Cmd>) -> bool {
        self.commands.try_send(Command::Cmds(cmds)).is_ok()
    }

    /// Waits (up to `limit`) until the commands queued before this call
    /// are written.
    pub(super) async fn sync_commands(&self, limit: Duration) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.commands.send(Command::Sync(tx)).await.is_ok() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }

    pub(super) async fn command_writer(
        self: std::sync::Arc<Self>,
        mut rx: tokio::sync::mpsc::Receiver<Command>,
    ) {
        let mut next = rx.recv().await;
        while let Some(first) = next.take() {
            let mut pipe = redis::pipe();
            let mut synced = Vec::new();
            let mut add = |command: Command| match command {
                Command::Cmds(cmds) => {
                    for c in cmds {
                        pipe.add_command(c).ignore();
                    }
                }
                Command::Sync(done) => synced.push(done),
            };
            add(first);
            while let Ok(more) = rx.try_recv() {
                add(more);
            }
            let written: RedisResult<()> = self
                .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
                .await;
            if written.is_err() {
                // Some presence may have been in it: the sets in Redis
                // would miss it until we publish all of ours again.
                self.presence_lost.store(true, Ordering::Relaxed);
            }
            for done in synced {
                let _ = done.send(());
            }
            next = rx.recv().await;
        }
    }
}
