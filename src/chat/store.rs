//! Chat history in SQLite, off the hot path.
//!
//! One thread owns the database. Everything goes to it through one queue:
//! writes (every accepted message) and reads (history pages, resume
//! replays). That order is the design:
//!
//! - Writes are batched: the thread takes every insert waiting in the
//!   queue and commits them in one transaction, so a burst costs one
//!   `fsync`, and the hub, which only enqueues, never waits on the disk.
//! - A read queued after a write sees it, because the thread commits all
//!   earlier inserts before it answers. A resume that asks for "everything
//!   after id N up to id L" gets all of it, even messages accepted a
//!   microsecond before.
//! - Shutting down drains the queue: every accepted message is on disk
//!   before [`Store::close`] returns.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::metrics::Metrics;
use super::protocol::ChatMessage;

/// A page of history: messages oldest first, and whether older ones exist.
pub type Page = (Vec<ChatMessage>, bool);

enum Command {
    Insert(ChatMessage, Instant),
    History {
        room: String,
        before: u64,
        limit: u32,
        reply: oneshot::Sender<Page>,
    },
    Range {
        room: String,
        after: u64,
        upto: u64,
        limit: u32,
        reply: oneshot::Sender<Vec<ChatMessage>>,
    },
    /// Commit what came before, then stop.
    Shutdown,
}

/// The handle to the history thread. Cloning shares the thread.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Command>,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

/// Most inserts committed in one transaction.
const MAX_BATCH: usize = 1024;

impl Store {
    /// Opens (or creates) the database and starts its thread. Returns the
    /// highest message id of every room, for the hub to continue from.
    pub fn open(
        path: &Path,
        metrics: Arc<Metrics>,
    ) -> rusqlite::Result<(Self, Vec<(String, u64)>)> {
        let db = Connection::open(path)?;
        // WAL: readers never block the writer; NORMAL: a commit survives a
        // process crash (the WAL is fsynced at checkpoints, the OS keeps
        // the rest), which is what "accepted means kept" needs here.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS messages (
                room TEXT NOT NULL,
                id INTEGER NOT NULL,
                sender TEXT NOT NULL,
                text TEXT NOT NULL,
                ts INTEGER NOT NULL,
                PRIMARY KEY (room, id)
            ) WITHOUT ROWID;",
        )?;
        let last_ids = {
            let mut stmt = db.prepare("SELECT room, MAX(id) FROM messages GROUP BY room")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            rows.map(|r| r.map(|(room, id)| (room, u64::try_from(id).unwrap_or(0))))
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("chat-history".into())
            .spawn(move || run(db, rx, &metrics))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok((
            Self {
                tx,
                thread: Arc::new(std::sync::Mutex::new(Some(thread))),
            },
            last_ids,
        ))
    }

    /// Queues a message for writing. Never blocks.
    pub fn insert(&self, message: ChatMessage) {
        // A closed queue means the server is shutting down after the
        // final flush; nothing is accepted then (the hub stops first).
        let _ = self.tx.send(Command::Insert(message, Instant::now()));
    }

    /// Up to `limit` messages of `room` with ids below `before`, oldest
    /// first, and whether there are older ones.
    pub async fn history(&self, room: &str, before: u64, limit: u32) -> Page {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Command::History {
            room: room.to_owned(),
            before,
            limit,
            reply,
        });
        rx.await.unwrap_or_default()
    }

    /// The messages of `room` with `after < id <= upto`, oldest first; if
    /// there are more than `limit`, the newest `limit` of them.
    pub async fn range(&self, room: &str, after: u64, upto: u64, limit: u32) -> Vec<ChatMessage> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Command::Range {
            room: room.to_owned(),
            after,
            upto,
            limit,
            reply,
        });
        rx.await.unwrap_or_default()
    }

    /// Commits everything queued and stops the thread. Blocks (call from
    /// `spawn_blocking`, or at the very end). Inserts after this are lost:
    /// the hub stops accepting messages first.
    pub fn close(&self) {
        let _ = self.tx.send(Command::Shutdown);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

fn run(mut db: Connection, rx: mpsc::Receiver<Command>, metrics: &Metrics) {
    let mut batch: Vec<(ChatMessage, Instant)> = Vec::new();
    // Ends when every `Store` handle is dropped and the queue is empty.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Insert(m, at) => {
                    batch.push((m, at));
                    if batch.len() < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                    if next.is_none() || !matches!(next, Some(Command::Insert(..))) {
                        commit(&mut db, &mut batch, metrics);
                    }
                }
                Command::History {
                    room,
                    before,
                    limit,
                    reply,
                } => {
                    let _ = reply.send(history(&db, &room, before, limit).unwrap_or_default());
                }
                Command::Range {
                    room,
                    after,
                    upto,
                    limit,
                    reply,
                } => {
                    let _ = reply.send(range(&db, &room, after, upto, limit).unwrap_or_default());
                }
                Command::Shutdown => {
                    commit(&mut db, &mut batch, metrics);
                    return;
                }
            }
        }
    }
    commit(&mut db, &mut batch, metrics);
}

fn commit(db: &mut Connection, batch: &mut Vec<(ChatMessage, Instant)>, metrics: &Metrics) {
    if batch.is_empty() {
        return;
    }
    let result = (|| -> rusqlite::Result<()> {
        let tx = db.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO messages (room, id, sender, text, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (m, _) in batch.iter() {
                stmt.execute(params![m.room, m.id as i64, m.from, m.text, m.ts as i64])?;
            }
        }
        tx.commit()
    })();
    match result {
        Ok(()) => {
            for (_, queued) in batch.iter() {
                metrics.history_write.observe(queued.elapsed());
            }
        }
        Err(e) => {
            metrics.history_write_errors.inc();
            tracing::warn!(error = %e, lost = batch.len(), "history write failed");
        }
    }
    batch.clear();
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChatMessage> {
    Ok(ChatMessage {
        room: r.get(0)?,
        id: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
        from: r.get(2)?,
        text: r.get(3)?,
        ts: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
    })
}

fn history(db: &Connection, room: &str, before: u64, limit: u32) -> rusqlite::Result<Page> {
    let before = i64::try_from(before).unwrap_or(i64::MAX);
    let mut stmt = db.prepare_cached(
        "SELECT room, id, sender, text, ts FROM messages WHERE room = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
    )?;
    let mut page = stmt
        .query_map(params![room, before, i64::from(limit) + 1], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    page.reverse();
    Ok((page, more))
}

fn range(
    db: &Connection,
    room: &str,
    after: u64,
    upto: u64,
    limit: u32,
) -> rusqlite::Result<Vec<ChatMessage>> {
    let mut stmt = db.prepare_cached(
        "SELECT room, id, sender, text, ts FROM messages WHERE room = ?1 AND id > ?2 AND id <= ?3 ORDER BY id DESC LIMIT ?4",
    )?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let upto = i64::try_from(upto).unwrap_or(i64::MAX);
    let mut page = stmt
        .query_map(params![room, after, upto, i64::from(limit)], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    page.reverse();
    Ok(page)
}
