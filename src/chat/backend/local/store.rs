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
//! - Ids are given here, on the thread, in queue order (the order of the
//!   appends): an edit, a delete or a reaction is checked against its
//!   message in the batch's transaction ([`kinds`]), and one refused
//!   ([`Outcome::Refused`]) takes no id. The ids become visible
//!   ([`Store::last_id`]) once their batch commits; a batch that fails
//!   gives its ids again.
//!
//! The database is SQLite in WAL mode, `synchronous` as [`DbSync`] says,
//! and held in exclusive locking mode for the server's life: a second
//! server on the same file would hand out the same ids, so it is refused
//! at [`Store::open`].

mod kinds;
pub use kinds::prune_rules;

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, params};
use tokio::sync::oneshot;

use crate::chat::backend::{Event, Kind, NewEvent, Rejected};
use crate::chat::lock;
use crate::chat::metrics::Metrics;

#[cfg(test)]
use kinds::VERSION;

/// The columns [`read_row`] reads, for other tables' queries of the
/// history (`super::moderation`).
pub fn kinds_columns() -> &'static str {
    kinds::COLUMNS
}

/// An event read back from a row of [`kinds_columns`].
pub fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    kinds::row(r)
}

/// A page of history: messages oldest first, and whether older ones exist.
pub type Page = (Vec<Event>, bool);

/// What became of an event queued for writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed with its id: it survives the server's process.
    Committed(Event),
    /// Not written (the transaction failed, or the store was closed).
    Failed,
    /// Refused by its checks ([`kinds::apply`]): not written, no id.
    Refused(Rejected),
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
    event: NewEvent,
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
        then: Box<dyn FnOnce(Vec<Event>) + Send>,
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
    /// The last id committed per conversation key: written only by the
    /// thread, after each commit.
    ids: Ids,
}

/// The last id committed per conversation key.
type Ids = Arc<Mutex<HashMap<String, u64>>>;

/// Most inserts committed in one transaction.
const MAX_BATCH: usize = 1024;

impl Store {
    /// Opens (or creates) the database, locks it for this process, and
    /// starts its thread. [`last_id`](Self::last_id) continues from the
    /// highest id of every conversation on disk.
    ///
    /// Fails, naming the file, if another process holds the database.
    pub fn open(path: &Path, sync: DbSync, metrics: Arc<Metrics>) -> io::Result<Self> {
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
        let ids: Ids = Arc::new(Mutex::new(last_ids.into_iter().collect()));
        let (tx, rx) = mpsc::channel();
        let thread_ids = ids.clone();
        let thread = std::thread::Builder::new()
            .name("chat-history".into())
            .spawn(move || run(db, rx, &thread_ids, &metrics))?;
        Ok(Self {
            tx,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
            backlog: Arc::new(AtomicUsize::new(0)),
            ids,
        })
    }

    /// The last id committed in the conversation `key` (0 if none).
    pub fn last_id(&self, key: &str) -> u64 {
        lock(&self.ids).get(key).copied().unwrap_or(0)
    }

    /// The keys of every conversation with a committed event.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.ids).keys().cloned().collect()
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
        // A deleted message's text is purged: the bytes SQLite frees or
        // rewrites are zeroed, not left in free pages.
        db.pragma_update(None, "secure_delete", "ON")?;
        // Take the lock now, so that a second server is refused at start
        // rather than at its first message.
        db.execute_batch("BEGIN EXCLUSIVE;")?;
        kinds::migrate(db)?;
        db.execute_batch("COMMIT;")
    }

    /// Queues an event for writing; `on_commit` runs once its batch is
    /// committed (or has failed), with the event as stored. Never blocks.
    pub fn insert(&self, event: NewEvent, on_commit: OnCommit) {
        self.backlog.fetch_add(1, Ordering::Relaxed);
        let backlog = self.backlog.clone();
        let on_commit: OnCommit = Box::new(move |outcome| {
            backlog.fetch_sub(1, Ordering::Relaxed);
            on_commit(outcome);
        });
        let queued = Queued {
            event,
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
    pub async fn range(&self, room: &str, after: u64, upto: u64, limit: u32) -> Vec<Event> {
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
        then: Box<dyn FnOnce(Vec<Event>) + Send>,
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

fn run(mut db: Connection, rx: mpsc::Receiver<Command>, ids: &Ids, metrics: &Metrics) {
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
                        commit(&mut db, &mut batch, ids, metrics);
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
                    commit(&mut db, &mut batch, ids, metrics);
                    let _ = reply.send(());
                }
                Command::Run(job) => {
                    commit(&mut db, &mut batch, ids, metrics);
                    job(&db);
                }
                Command::Shutdown => {
                    commit(&mut db, &mut batch, ids, metrics);
                    return;
                }
            }
        }
    }
    commit(&mut db, &mut batch, ids, metrics);
}

/// Writes `batch` in one transaction, giving each event the next id of
/// its conversation (a refused one takes none), then tells each insert
/// how it went, in order.
fn commit(db: &mut Connection, batch: &mut Vec<Queued>, ids: &Ids, metrics: &Metrics) {
    if batch.is_empty() {
        return;
    }
    // This batch's ids, published once it commits.
    let mut given: HashMap<String, u64> = HashMap::new();
    let result = (|| -> rusqlite::Result<Vec<Result<Event, Rejected>>> {
        let tx = db.transaction()?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for q in batch.iter() {
            let key = q.event.conv.key();
            let last = match given.get(&key) {
                Some(&id) => id,
                None => lock(ids).get(&key).copied().unwrap_or(0),
            };
            let outcome = kinds::apply(&tx, &key, last + 1, &q.event)?;
            if outcome.is_ok() {
                given.insert(key, last + 1);
            }
            outcomes.push(outcome);
        }
        tx.commit()?;
        Ok(outcomes)
    })();
    match result {
        Ok(outcomes) => {
            lock(ids).extend(given);
            let deleted = outcomes
                .iter()
                .any(|o| matches!(o, Ok(e) if matches!(e.kind, Kind::Delete { .. } | Kind::Remove { .. })));
            if deleted {
                // The log still holds the pages with the purged text: copy
                // it into the database and empty it before anyone hears of
                // the delete. Deletes are rare; this costs one checkpoint.
                if let Err(e) = db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "the checkpoint after a delete failed");
                }
            }
            for (q, outcome) in batch.drain(..).zip(outcomes) {
                metrics.history_write.observe(q.at.elapsed());
                (q.on_commit)(match outcome {
                    Ok(event) => Outcome::Committed(event),
                    Err(why) => Outcome::Refused(why),
                });
            }
        }
        Err(e) => {
            metrics.history_write_errors.inc();
            tracing::warn!(error = %e, lost = batch.len(), "history write failed: posts refused");
            for q in batch.drain(..) {
                (q.on_commit)(Outcome::Failed);
            }
        }
    }
}

/// Messages only, each in its latest state.
fn history(db: &Connection, room: &str, before: u64, limit: u32) -> rusqlite::Result<Page> {
    let before = i64::try_from(before).unwrap_or(i64::MAX);
    let mut stmt = db.prepare_cached(&format!(
        "SELECT {} FROM messages WHERE room = ?1 AND kind = 'msg' AND id < ?2 ORDER BY id DESC LIMIT ?3",
        kinds::COLUMNS
    ))?;
    let (mut page, stopped) = newest(stmt.query(params![room, before, i64::from(limit) + 1])?)?;
    let more = stopped || page.len() > limit as usize;
    page.truncate(limit as usize);
    page.reverse();
    kinds::add_reactions(db, room, &mut page)?;
    Ok((page, more))
}

fn range(
    db: &Connection,
    room: &str,
    after: u64,
    upto: u64,
    limit: u32,
) -> rusqlite::Result<Vec<Event>> {
    // Every kind, in id order; messages in their latest state. The edits
    // of a message deleted since are left out: their text is purged (the
    // Redis store deletes their entries).
    let mut stmt = db.prepare_cached(&format!(
        "SELECT {} FROM messages WHERE room = ?1 AND id > ?2 AND id <= ?3
         AND NOT (kind = 'edit' AND text = '') ORDER BY id DESC LIMIT ?4",
        kinds::COLUMNS
    ))?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let upto = i64::try_from(upto).unwrap_or(i64::MAX);
    let (mut page, _) = newest(stmt.query(params![room, after, upto, i64::from(limit)])?)?;
    page.reverse();
    kinds::add_reactions(db, room, &mut page)?;
    Ok(page)
}

/// The most text one read collects: twice what a reply may carry
/// (`session::MAX_REPLY`), so the session always has enough to fill one,
/// and a request for a thousand long messages costs no more than that.
const READ_BUDGET: usize = 512 * 1024;

/// Rows, newest first, until [`READ_BUDGET`] bytes of text are collected;
/// and whether it stopped there.
fn newest(mut rows: rusqlite::Rows<'_>) -> rusqlite::Result<(Vec<Event>, bool)> {
    let mut page = Vec::new();
    let mut bytes = 0;
    while let Some(r) = rows.next()? {
        let m = kinds::row(r)?;
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
    use crate::chat::backend::Conversation;

    fn temp_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rfc6455-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("chat.db")
    }

    fn event(room: &str, from: &str, text: &str, kind: Kind) -> NewEvent {
        NewEvent {
            conv: Conversation::Room(room.into()),
            from: from.into(),
            text: text.into(),
            ts: 1,
            kind,
        }
    }

    fn message(room: &str, text: &str) -> NewEvent {
        event(room, "alice", text, Kind::default())
    }

    /// What each insert was told: its room and its id, or why not.
    type Log = Arc<Mutex<Vec<(String, Result<u64, String>)>>>;

    fn recorder(log: &Log, e: &NewEvent) -> OnCommit {
        let (log, room) = (log.clone(), e.conv.key());
        Box::new(move |outcome| {
            let told = match outcome {
                Outcome::Committed(e) => Ok(e.id),
                Outcome::Failed => Err("failed".to_owned()),
                Outcome::Refused(why) => Err(format!("{why:?}")),
            };
            log.lock().unwrap().push((room, told));
        })
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn a_second_open_of_the_same_database_is_refused_naming_the_file() {
        let path = temp_db("lock");
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(&path, DbSync::Normal, metrics.clone()).unwrap();
        let Err(e) = Store::open(&path, DbSync::Normal, metrics.clone()) else {
            panic!("a second open succeeded");
        };
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(e.to_string().contains("in use"), "{e}");
        store.close();
        let again = Store::open(&path, DbSync::Full, metrics).unwrap();
        again.close();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn on_commit_runs_once_per_insert_in_queue_order() {
        let path = temp_db("order");
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(&path, DbSync::Normal, metrics.clone()).unwrap();
        assert_eq!(store.last_id("a"), 0);
        let log: Log = Arc::default();
        let mut expected = Vec::new();
        let (mut a, mut b) = (0, 0);
        // More than one batch's worth, across two rooms.
        for i in 1..=3000u64 {
            let (room, id) = if i % 3 == 0 {
                b += 1;
                ("b", b)
            } else {
                a += 1;
                ("a", a)
            };
            let m = message(room, &format!("m{id}"));
            expected.push((room.to_owned(), Ok(id)));
            store.insert(m.clone(), recorder(&log, &m));
        }
        let rt = runtime();
        rt.block_on(store.flush());
        assert_eq!(*log.lock().unwrap(), expected);
        assert_eq!(metrics.history_write_errors.get(), 0);
        store.close();
        let store = Store::open(&path, DbSync::Normal, metrics).unwrap();
        assert_eq!((store.last_id("a"), store.last_id("b")), (2000, 1000));
        let got = rt.block_on(store.range("b", 0, 3000, 2000));
        assert_eq!(got.len(), 1000);
        assert!(got.iter().all(|m| m.text == format!("m{}", m.id)));
        store.close();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_batch_that_fails_is_reported_failed_and_nothing_of_it_is_kept() {
        let path = temp_db("fail");
        {
            // A trigger stands in for a failing disk: it aborts any
            // transaction that inserts the text "poison". The table is
            // the schema of before versions (migrated at open).
            let db = Connection::open(&path).unwrap();
            db.execute_batch(kinds::V1).unwrap();
            db.execute_batch(
                "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.text = 'poison'
                 BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
            )
            .unwrap();
        }
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(&path, DbSync::Normal, metrics.clone()).unwrap();
        let rt = runtime();
        let log: Log = Arc::default();
        for text in ["kept", "poison", "after"] {
            let m = message("a", text);
            store.insert(m.clone(), recorder(&log, &m));
            rt.block_on(store.flush());
        }
        // The failed batch's id is given again: no hole.
        assert_eq!(
            *log.lock().unwrap(),
            vec![
                ("a".into(), Ok(1)),
                ("a".into(), Err("failed".into())),
                ("a".into(), Ok(2)),
            ]
        );
        assert_eq!(metrics.history_write_errors.get(), 1);
        let kept = rt.block_on(store.range("a", 0, 10, 10));
        let kept: Vec<(u64, &str)> = kept.iter().map(|m| (m.id, m.text.as_str())).collect();
        assert_eq!(kept, vec![(1, "kept"), (2, "after")]);
        store.close();
        // After close, an insert fails at once rather than vanishing.
        let late = message("a", "late");
        store.insert(late.clone(), recorder(&log, &late));
        assert_eq!(
            log.lock().unwrap().last(),
            Some(&("a".into(), Err("failed".into())))
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A database written before event kinds (no `user_version`, the old
    /// table) opens, keeps its messages as messages, and takes the new
    /// kinds.
    #[test]
    fn a_database_of_the_old_schema_is_migrated() {
        let path = temp_db("migrate");
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(kinds::V1).unwrap();
            db.execute_batch(
                "INSERT INTO messages VALUES ('general', 1, 'alice', 'old one', 5);
                 INSERT INTO messages VALUES ('general', 2, 'bob', 'old two', 6);",
            )
            .unwrap();
        }
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(&path, DbSync::Normal, metrics.clone()).unwrap();
        assert_eq!(store.last_id("general"), 2);
        let rt = runtime();
        let log: Log = Arc::default();
        let edit = event("general", "alice", "old, edited", Kind::Edit { target: 1 });
        store.insert(edit.clone(), recorder(&log, &edit));
        rt.block_on(store.flush());
        assert_eq!(*log.lock().unwrap(), vec![("general".into(), Ok(3))]);
        let (page, more) = rt.block_on(store.history("general", u64::MAX, 10));
        assert!(!more);
        let texts: Vec<_> = page.iter().map(|m| (m.id, m.text.as_str())).collect();
        assert_eq!(texts, vec![(1, "old, edited"), (2, "old two")]);
        store.close();
        let db = Connection::open(&path).unwrap();
        let version: i64 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, VERSION);
        drop(db);
        // Opening again at the current version changes nothing.
        let store = Store::open(&path, DbSync::Normal, metrics).unwrap();
        assert_eq!(store.last_id("general"), 3);
        store.close();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn edits_deletes_and_reactions_are_checked_against_their_message() {
        let path = temp_db("kinds");
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(&path, DbSync::Normal, metrics).unwrap();
        let rt = runtime();
        let log: Log = Arc::default();
        let react = |from: &str, emoji: &str| {
            event(
                "r",
                from,
                "",
                Kind::React {
                    target: 1,
                    emoji: emoji.into(),
                    users: vec![],
                },
            )
        };
        let steps = [
            message("r", "first"),                                   // 1
            event("r", "bob", "no", Kind::Edit { target: 1 }),       // not author
            event("r", "alice", "x", Kind::Edit { target: 9 }),      // no such
            event("r", "alice", "first!", Kind::Edit { target: 1 }), // 2
            react("bob", "👍"),                                      // 3
            react("carol", "👍"),                                    // 4
            react("bob", "👍"),                                      // 5 (off)
            event("r", "alice", "", Kind::Edit { target: 3 }),       // a reaction
            event("r", "bob", "re", Kind::msg(Some(1))),             // 6
            event("r", "alice", "", Kind::Delete { target: 1 }),     // 7
            event("r", "alice", "again", Kind::Edit { target: 1 }),  // deleted
            react("bob", "👍"),                                      // deleted
            event("r", "bob", "re", Kind::msg(Some(1))),             // deleted
        ];
        for e in steps {
            store.insert(e.clone(), recorder(&log, &e));
        }
        rt.block_on(store.flush());
        let told: Vec<_> = log.lock().unwrap().iter().map(|(_, t)| t.clone()).collect();
        let refused = |w: &str| Err(w.to_owned());
        assert_eq!(
            told,
            vec![
                Ok(1),
                refused("NotAuthor"),
                refused("NoSuchMessage"),
                Ok(2),
                Ok(3),
                Ok(4),
                Ok(5),
                refused("NoSuchMessage"),
                Ok(6),
                Ok(7),
                refused("Deleted"),
                refused("Deleted"),
                refused("Deleted"),
            ]
        );
        let all = rt.block_on(store.range("r", 0, 100, 100));
        let users: Vec<_> = all
            .iter()
            .filter_map(|e| match &e.kind {
                Kind::React { users, .. } => Some(users.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            users,
            vec![
                vec!["bob".to_owned()],
                vec!["bob".into(), "carol".into()],
                vec!["carol".into()]
            ]
        );
        // The tombstone and the edit hold no text; the reply is a message.
        let (page, _) = rt.block_on(store.history("r", u64::MAX, 10));
        let ids: Vec<u64> = page.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![1, 6]);
        assert!(page[0].text.is_empty());
        assert!(matches!(&page[0].kind, Kind::Msg(s) if s.deleted && s.reactions.is_empty()));
        assert!(matches!(&page[1].kind, Kind::Msg(s) if s.reply_to == Some(1)));
        assert!(all.iter().all(|e| !e.text.contains("first")));
        store.close();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// Issue 17: a room's mutes are kept by its moderation rows in the
    /// batch's transaction, and a muted writer's message (edit, reaction) is refused where
    /// it is written (a mute that has ended refuses nothing).
    #[test]
    fn a_muted_writer_is_refused_by_the_store() {
        use crate::chat::backend::{Action, ModAction};
        let path = temp_db("mutes");
        let store = Store::open(&path, DbSync::Normal, Arc::new(Metrics::default())).unwrap();
        let rt = runtime();
        let log: Log = Arc::default();
        let react = |target| Kind::React {
            target,
            emoji: "👍".into(),
            users: Vec::new(),
        };
        let act = |action: Action, until: Option<u64>| {
            let mut a = ModAction::new(action);
            (a.user, a.until) = (Some("bob".into()), until);
            event("r", "ann", &a.to_text(), Kind::Moderation(Box::new(a)))
        };
        let steps = [
            event("r", "bob", "one", Kind::default()),           // 1
            act(Action::Mute, None),                             // 2
            event("r", "bob", "two", Kind::default()),           // muted
            event("r", "bob", "one!", Kind::Edit { target: 1 }), // muted
            event("r", "bob", "", react(1)),                     // muted
            event("r", "ann", "three", Kind::default()),         // 3
            act(Action::Unmute, None),                           // 4
            event("r", "bob", "four", Kind::default()),          // 5
            act(Action::Mute, Some(1)),                          // 6: over at ts 1
            event("r", "bob", "five", Kind::default()),          // 7
        ];
        for e in steps {
            store.insert(e.clone(), recorder(&log, &e));
        }
        rt.block_on(store.flush());
        let told: Vec<_> = log.lock().unwrap().iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(
            told,
            vec![
                Ok(1),
                Ok(2),
                Err("Muted".into()),
                Err("Muted".into()),
                Err("Muted".into()),
                Ok(3),
                Ok(4),
                Ok(5),
                Ok(6),
                Ok(7)
            ]
        );
        let rules = rt.block_on(store.range("r", 0, 10, 10));
        assert!(matches!(&rules[1].kind, Kind::Moderation(a) if a.action == Action::Mute));
        store.close();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
