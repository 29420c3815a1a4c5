//! Chat history in SQLite, off the hot path, and the rule that makes an
//! ack mean "on disk".
//!
//! One thread owns the database. Everything goes to it through one queue:
//! writes (every accepted message) and reads (history pages, resume
//! replays). That order is the design:
//!
//! - Writes are batched: the thread takes every insert waiting in the
//!   queue and commits them in one transaction, so a burst costs one
//!   commit, and the hub, whose appends only enqueue, never waits on the
//!   disk.
//! - Each insert carries what to do once it is on disk ([`OnCommit`]):
//!   the local backend's report to the hub (which delivers to the
//!   recipients) and the ack to the sender (`super::Local`). The
//!   thread runs these after the batch's commit, in queue order, so no one
//!   ever sees an id the disk does not have. An id lost in a crash was
//!   seen by nobody, and the next server continues from the ids on disk.
//!   If a batch fails, its inserts are told [`Outcome::Failed`] instead.
//! - A read queued after a write sees it, because the thread commits all
//!   earlier inserts before it answers. A resume that asks for "everything
//!   after id N up to id L" gets all of it, even messages accepted a
//!   microsecond before.
//! - Shutting down drains the queue: every accepted message is on disk
//!   before [`Store::close`] returns.
//!
//! The database is SQLite in WAL mode, `synchronous` as [`DbSync`] says,
//! and held in exclusive locking mode for the server's life: a second
//! server on the same file would hand out the same ids, so it is refused
//! at [`Store::open`].

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, params};
use tokio::sync::oneshot;

use crate::chat::metrics::Metrics;
use crate::chat::protocol::ChatMessage;

/// A page of history: messages oldest first, and whether older ones exist.
pub type Page = (Vec<ChatMessage>, bool);

/// What became of the batch holding a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed: the message survives the server's process.
    Committed,
    /// Not written (the transaction failed, or the store was closed).
    Failed,
}

/// Run by the history thread once the batch holding a message has
/// committed or failed, in the order the inserts were queued. It runs on
/// that thread between batches, so it must be quick and must not block:
/// handing frames to outboxes is both.
pub type OnCommit = Box<dyn FnOnce(Outcome) + Send>;

/// How hard a commit insists on reaching the disk: SQLite's `synchronous`
/// setting, in WAL mode.
///
/// In WAL mode a commit appends to the `-wal` file. With `Normal` that
/// file is fsynced only at checkpoints, so a commit is in the kernel's
/// page cache when it returns: it survives the process being killed
/// (SIGKILL, a panic, the OOM killer), but a power loss or kernel crash
/// may roll back the last commits (the database stays consistent). With
/// `Full` the WAL is fsynced at every commit, which here is once per batch,
/// not per message: a commit then survives power loss too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DbSync {
    /// Survives a process crash; the default.
    #[default]
    Normal,
    /// Survives a power loss, at an fsync per batch.
    Full,
}

impl DbSync {
    fn pragma(self) -> &'static str {
        match self {
            DbSync::Normal => "NORMAL",
            DbSync::Full => "FULL",
        }
    }
}

struct Queued {
    message: ChatMessage,
    at: Instant,
    on_commit: OnCommit,
}

enum Command {
    Insert(Queued),
    History {
        room: String,
        before: u64,
        limit: u32,
        reply: oneshot::Sender<Page>,
    },
    /// Answered by running `then` on the history thread: a resume's
    /// replay sends it on to its task, a fill hands it to the hub.
    Range {
        room: String,
        after: u64,
        upto: u64,
        limit: u32,
        then: Box<dyn FnOnce(Vec<ChatMessage>) + Send>,
    },
    /// Commit what came before (and run its `OnCommit`s), then answer.
    Flush(oneshot::Sender<()>),
    /// Commit what came before, then run this with the database: the
    /// conversation state's own reads and writes (`super::convs`).
    Run(Box<dyn FnOnce(&Connection) + Send>),
    /// Commit what came before, then stop.
    Shutdown,
}

/// The handle to the history thread. Cloning shares the thread.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Command>,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
    /// Inserts queued whose [`OnCommit`] has not run yet.
    backlog: Arc<AtomicUsize>,
}

/// Most inserts committed in one transaction.
const MAX_BATCH: usize = 1024;

impl Store {
    /// Opens (or creates) the database, locks it for this process, and
    /// starts its thread. Returns the highest message id of every room,
    /// for the hub to continue from.
    ///
    /// Fails, naming the file, if another process holds the database.
    pub fn open(
        path: &Path,
        sync: DbSync,
        metrics: Arc<Metrics>,
    ) -> io::Result<(Self, Vec<(String, u64)>)> {
        let failed = |e: rusqlite::Error| {
            let busy = matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            );
            if busy {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "history database {} is in use by another process \
                         (is another chat server running on it?): one server per database",
                        path.display()
                    ),
                )
            } else {
                io::Error::other(format!("history database {}: {e}", path.display()))
            }
        };
        let db = Connection::open(path).map_err(failed)?;
        Self::prepare(&db, sync).map_err(failed)?;
        let last_ids = {
            let mut stmt = db
                .prepare("SELECT room, MAX(id) FROM messages GROUP BY room")
                .map_err(failed)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(failed)?;
            rows.map(|r| r.map(|(room, id)| (room, u64::try_from(id).unwrap_or(0))))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(failed)?
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("chat-history".into())
            .spawn(move || run(db, rx, &metrics))?;
        Ok((
            Self {
                tx,
                thread: Arc::new(std::sync::Mutex::new(Some(thread))),
                backlog: Arc::new(AtomicUsize::new(0)),
            },
            last_ids,
        ))
    }

    /// Settings, the lock and the schema.
    fn prepare(db: &Connection, sync: DbSync) -> rusqlite::Result<()> {
        // A second server must fail now, not wait for the lock: it would
        // only get it when the first one exits.
        db.busy_timeout(Duration::ZERO)?;
        // One server per database: with ids taken from MAX(id) at start,
        // two writers would hand out the same ids. In exclusive locking
        // mode the first write takes a lock that is kept until the
        // connection closes (or the process dies, which the OS cleans up
        // after); set before WAL mode, it also keeps the WAL index in
        // this process's memory instead of a shared `-shm` file. The cost:
        // other processes cannot read the file while the server runs.
        db.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        // WAL: a commit is one append to the log, and readers never
        // block the writer.
        let mode: String = db.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "SQLite refused WAL mode; commits will be slower");
        }
        // See `DbSync`: NORMAL survives a process crash, FULL a power loss.
        db.pragma_update(None, "synchronous", sync.pragma())?;
        // Take the lock now, so that a second server is refused at start
        // rather than at its first message.
        db.execute_batch(
            "BEGIN EXCLUSIVE;
             CREATE TABLE IF NOT EXISTS messages (
                room TEXT NOT NULL,
                id INTEGER NOT NULL,
                sender TEXT NOT NULL,
                text TEXT NOT NULL,
                ts INTEGER NOT NULL,
                PRIMARY KEY (room, id)
             ) WITHOUT ROWID;
             COMMIT;",
        )
    }

    /// Queues a message for writing; `on_commit` runs once its batch is
    /// committed (or has failed). Never blocks.
    pub fn insert(&self, message: ChatMessage, on_commit: OnCommit) {
        self.backlog.fetch_add(1, Ordering::Relaxed);
        let backlog = self.backlog.clone();
        let on_commit: OnCommit = Box::new(move |outcome| {
            backlog.fetch_sub(1, Ordering::Relaxed);
            on_commit(outcome);
        });
        let queued = Queued {
            message,
            at: Instant::now(),
            on_commit,
        };
        // A closed queue means the server is shutting down after the
        // final flush: the message is not kept, and its sender is told.
        if let Err(mpsc::SendError(Command::Insert(q))) = self.tx.send(Command::Insert(queued)) {
            (q.on_commit)(Outcome::Failed);
        }
    }

    /// Inserts queued and not yet committed (or failed): what a stalled
    /// disk leaves waiting, each with its delivery.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Waits until everything queued before it is committed and its
    /// [`OnCommit`]s have run (acks are in the outboxes).
    pub async fn flush(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(reply)).is_ok() {
            let _ = rx.await;
        }
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
        self.fill(
            room.to_owned(),
            after,
            upto,
            limit,
            Box::new(move |messages| {
                let _ = reply.send(messages);
            }),
        );
        rx.await.unwrap_or_default()
    }

    /// Reads what [`range`](Self::range) reads and runs `then` with it,
    /// on the history thread (so it needs no runtime: a fill may be asked
    /// for from an [`OnCommit`]). It must be quick and must not block.
    pub fn fill(
        &self,
        room: String,
        after: u64,
        upto: u64,
        limit: u32,
        then: Box<dyn FnOnce(Vec<ChatMessage>) + Send>,
    ) {
        let command = Command::Range {
            room,
            after,
            upto,
            limit,
            then,
        };
        // Closed (the server is past its final flush): nobody waits for
        // live delivery any more, so `then` is dropped, not run. Running it
        // here could also take a lock its caller holds.
        let _ = self.tx.send(command);
    }

    /// Runs `job` on the history thread, after everything queued before
    /// it is committed. It must be quick; it answers through a channel of
    /// its own. Dropped if the store is closed.
    pub fn run(&self, job: Box<dyn FnOnce(&Connection) + Send>) {
        let _ = self.tx.send(Command::Run(job));
    }

    /// Commits everything queued and stops the thread, which releases the
    /// database's lock. Blocks (call from `spawn_blocking`, or at the very
    /// end). Inserts after this fail: the hub stops accepting messages
    /// first.
    pub fn close(&self) {
        let _ = self.tx.send(Command::Shutdown);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

fn run(mut db: Connection, rx: mpsc::Receiver<Command>, metrics: &Metrics) {
    let mut batch: Vec<Queued> = Vec::new();
    // Ends when every `Store` handle is dropped and the queue is empty.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Insert(q) => {
                    batch.push(q);
                    if batch.len() < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                    if !matches!(next, Some(Command::Insert(..))) {
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
                    then,
                } => then(range(&db, &room, after, upto, limit).unwrap_or_default()),
                Command::Flush(reply) => {
                    commit(&mut db, &mut batch, metrics);
                    let _ = reply.send(());
                }
                Command::Run(job) => {
                    commit(&mut db, &mut batch, metrics);
                    job(&db);
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

/// Writes `batch` in one transaction, then tells each insert how it went,
/// in order.
fn commit(db: &mut Connection, batch: &mut Vec<Queued>, metrics: &Metrics) {
    if batch.is_empty() {
        return;
    }
    let result = (|| -> rusqlite::Result<()> {
        let tx = db.transaction()?;
        {
            // A plain INSERT: with one writer and ids continued from the
            // disk, a conflict is a bug, and it fails the batch loudly
            // rather than dropping a message that was about to be acked.
            let mut stmt = tx.prepare_cached(
                "INSERT INTO messages (room, id, sender, text, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for q in batch.iter() {
                let m = &q.message;
                stmt.execute(params![m.room, m.id as i64, m.from, m.text, m.ts as i64])?;
            }
        }
        tx.commit()
    })();
    let outcome = match result {
        Ok(()) => {
            for q in batch.iter() {
                metrics.history_write.observe(q.at.elapsed());
            }
            Outcome::Committed
        }
        Err(e) => {
            metrics.history_write_errors.inc();
            tracing::warn!(error = %e, lost = batch.len(), "history write failed: posts refused");
            Outcome::Failed
        }
    };
    for q in batch.drain(..) {
        (q.on_commit)(outcome);
    }
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
    let (mut page, stopped) = newest(stmt.query(params![room, before, i64::from(limit) + 1])?)?;
    let more = stopped || page.len() > limit as usize;
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
    let (mut page, _) = newest(stmt.query(params![room, after, upto, i64::from(limit)])?)?;
    page.reverse();
    Ok(page)
}

/// The most text one read collects: twice what a reply may carry
/// (`session::MAX_REPLY`), so the session always has enough to fill one,
/// and a request for a thousand long messages costs no more than that.
const READ_BUDGET: usize = 512 * 1024;

/// Rows, newest first, until [`READ_BUDGET`] bytes of text are collected;
/// and whether it stopped there.
fn newest(mut rows: rusqlite::Rows<'_>) -> rusqlite::Result<(Vec<ChatMessage>, bool)> {
    let mut page = Vec::new();
    let mut bytes = 0;
    while let Some(r) = rows.next()? {
        let m = row(r)?;
        bytes += m.text.len() + m.from.len();
        page.push(m);
        if bytes > READ_BUDGET {
            return Ok((page, true));
        }
    }
    Ok((page, false))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::*;

    fn temp_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rfc6455-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("chat.db")
    }

    fn message(room: &str, id: u64, text: &str) -> ChatMessage {
        ChatMessage {
            room: room.into(),
            id,
            from: "alice".into(),
            text: text.into(),
            ts: 1,
        }
    }

    type Log = Arc<Mutex<Vec<(String, u64, Outcome)>>>;

    fn recorder(log: &Log, m: &ChatMessage) -> OnCommit {
        let (log, room, id) = (log.clone(), m.room.clone(), m.id);
        Box::new(move |outcome| log.lock().unwrap().push((room, id, outcome)))
    }

    #[test]
    fn a_second_open_of_the_same_database_is_refused_naming_the_file() {
        let path = temp_db("lock");
        let metrics = Arc::new(Metrics::default());
        let (store, _) = Store::open(&path, DbSync::Normal, metrics.clone()).unwrap();
        let Err(e) = Store::open(&path, DbSync::Normal, metrics.clone()) else {
            panic!("a second open succeeded");
        };
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(e.to_string().contains("in use"), "{e}");
        store.close();
        let (again, _) = Store::open(&path, DbSync::Full, metrics).unwrap();
        again.close();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn on_commit_runs_once_per_insert_in_queue_order() {
        let path = temp_db("order");
        let metrics = Arc::new(Metrics::default());
        let (store, last) = Store::open(&path, DbSync::Normal, metrics.clone()).unwrap();
        assert!(last.is_empty());
        let log: Log = Arc::default();
        let mut expected = Vec::new();
        // More than one batch's worth, across two rooms.
        for i in 1..=3000u64 {
            let room = if i % 3 == 0 { "b" } else { "a" };
            let m = message(room, i, &format!("m{i}"));
            expected.push((room.to_owned(), i, Outcome::Committed));
            store.insert(m.clone(), recorder(&log, &m));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(store.flush());
        assert_eq!(*log.lock().unwrap(), expected);
        assert_eq!(metrics.history_write_errors.get(), 0);
        store.close();
        let (store, mut last) = Store::open(&path, DbSync::Normal, metrics).unwrap();
        last.sort();
        assert_eq!(last, vec![("a".into(), 2999), ("b".into(), 3000)]);
        let b = rt.block_on(store.range("b", 0, 3000, 2000));
        assert_eq!(b.len(), 1000);
        assert!(b.iter().all(|m| m.text == format!("m{}", m.id)));
        store.close();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_batch_that_fails_is_reported_failed_and_nothing_of_it_is_kept() {
        let path = temp_db("fail");
        {
            // A trigger stands in for a failing disk: it aborts any
            // transaction that inserts the text "poison".
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE messages (room TEXT NOT NULL, id INTEGER NOT NULL,
                    sender TEXT NOT NULL, text TEXT NOT NULL, ts INTEGER NOT NULL,
                    PRIMARY KEY (room, id)) WITHOUT ROWID;
                 CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.text = 'poison'
                 BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
            )
            .unwrap();
        }
        let metrics = Arc::new(Metrics::default());
        let (store, _) = Store::open(&path, DbSync::Normal, metrics.clone()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let log: Log = Arc::default();
        let first = message("a", 1, "kept");
        store.insert(first.clone(), recorder(&log, &first));
        rt.block_on(store.flush());
        let poison = message("a", 2, "poison");
        store.insert(poison.clone(), recorder(&log, &poison));
        rt.block_on(store.flush());
        let after = message("a", 3, "after");
        store.insert(after.clone(), recorder(&log, &after));
        rt.block_on(store.flush());
        // A conflict is refused too: INSERT OR IGNORE would have dropped
        // this one silently and reported it kept.
        let dup = message("a", 1, "same id");
        store.insert(dup.clone(), recorder(&log, &dup));
        rt.block_on(store.flush());
        assert_eq!(
            *log.lock().unwrap(),
            vec![
                ("a".into(), 1, Outcome::Committed),
                ("a".into(), 2, Outcome::Failed),
                ("a".into(), 3, Outcome::Committed),
                ("a".into(), 1, Outcome::Failed),
            ]
        );
        assert_eq!(metrics.history_write_errors.get(), 2);
        let kept = rt.block_on(store.range("a", 0, 10, 10));
        let kept: Vec<(u64, &str)> = kept.iter().map(|m| (m.id, m.text.as_str())).collect();
        assert_eq!(kept, vec![(1, "kept"), (3, "after")]);
        store.close();
        // After close, an insert fails at once rather than vanishing.
        let late = message("a", 4, "late");
        store.insert(late.clone(), recorder(&log, &late));
        assert_eq!(
            log.lock().unwrap().last(),
            Some(&("a".into(), 4, Outcome::Failed))
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
