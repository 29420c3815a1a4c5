//! A backend in memory, for the hub's unit tests: the test decides when
//! appended events are "committed" ([`Memory::commit`]) and when fills
//! are answered ([`Memory::answer_fills`]), so orderings that a real
//! store makes rare can be played out one step at a time.
//!
//! Edits, deletes and reactions have the stores' semantics: checked
//! against their message (as committed) when appended, a refused one
//! takes no id and its writer is told at the next commit; a committed one
//! updates its message, which `history` returns in its latest state
//! (messages only) and `range` with every other event.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::moderation::{self, AuditEntry, Moderation, Until, in_force, page};
use super::{
    Account, Accounts, Ack, Backend, Busy, Conversation, Convs, Event, HubEvents, Kind,
    MAX_REACTIONS, NewEvent, NewSession, Page, Peer, PresenceChange, Registered, Rejected, Reply,
    Rotation, Scope, Signal, Span, Unavailable, ready,
};
use crate::chat::lock;

type Waiting = (Result<Event, Rejected>, Box<dyn Ack>);
type Present = HashMap<Scope, Vec<(Peer, Vec<String>)>>;

/// Events in memory; ids given at append, delivered at [`commit`](Self::commit).
#[derive(Default)]
pub struct Memory {
    ids: Mutex<HashMap<Conversation, u64>>,
    log: Mutex<HashMap<Conversation, Vec<Event>>>,
    waiting: Mutex<Vec<Waiting>>,
    /// Fills asked for, not answered yet.
    pub fills: Mutex<Vec<(Conversation, Span)>>,
    /// Presence the hub published, in order.
    pub published: Mutex<Vec<(Scope, PresenceChange)>>,
    /// Signals the hub published, in order.
    pub signals: Mutex<Vec<Signal>>,
    /// Appends beyond this many waiting get [`Busy`].
    limit: Option<usize>,
    /// Presence other servers have, as [`Backend::presence`] answers it.
    pub others: Mutex<Present>,
    /// Whether presence is shared (as with Redis) or not (as locally).
    shared: bool,
    /// Read marks, by user and conversation.
    marks: Mutex<HashMap<(String, Conversation), u64>>,
    /// The nicks ever seen.
    known: Mutex<std::collections::HashSet<String>>,
    /// Admins, server bans, blocks and the server's audit log (issue 17).
    moderation: Mutex<ModState>,
    /// Accounts by skeleton, sessions (id → nick) and refresh tokens
    /// (digest → session, spent), as the stores keep them.
    accounts: Mutex<HashMap<String, Account>>,
    sessions: Mutex<HashMap<String, String>>,
    refreshes: Mutex<HashMap<String, (String, bool)>>,
    key: Mutex<Option<Vec<u8>>>,
    hub: OnceLock<Weak<dyn HubEvents>>,
    /// How many times a room's rules or an admin were read.
    pub moderation_reads: std::sync::atomic::AtomicUsize,
}

impl Memory {
    /// A backend whose presence is shared with other servers, as Redis's.
    pub fn shared() -> Self {
        Self {
            shared: true,
            ..Self::default()
        }
    }

    /// A backend that holds at most `limit` events waiting to be stored.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit: Some(limit),
            ..Self::default()
        }
    }

    fn hub(&self) -> Arc<dyn HubEvents> {
        self.hub
            .get()
            .and_then(Weak::upgrade)
            .expect("started, and the hub is alive")
    }

    /// Stores every waiting event for which `keep` says so, in append
    /// order, telling the hub and then the writer; the others fail.
    pub fn commit_where(&self, keep: impl Fn(&Event) -> bool) {
        let waiting = std::mem::take(&mut *lock(&self.waiting));
        let hub = self.hub();
        for (event, ack) in waiting {
            let mut event = match event {
                Ok(event) => event,
                Err(why) => {
                    ack.refused(why);
                    continue;
                }
            };
            if keep(&event) {
                let id = event.id;
                let mut log = lock(&self.log);
                let log = log.entry(event.conv.clone()).or_default();
                apply(log, &mut event);
                log.push(event.clone());
                hub.stored(event);
                ack.done(Ok(id));
            } else {
                ack.done(Err(Unavailable));
            }
        }
    }

    /// Stores every waiting event.
    pub fn commit(&self) {
        self.commit_where(|_| true);
    }

    /// Answers the fills asked for, from what is stored.
    pub fn answer_fills(&self) {
        let fills = std::mem::take(&mut *lock(&self.fills));
        let hub = self.hub();
        for (conv, span) in fills {
            let events: Vec<Event> = lock(&self.log)
                .get(&conv)
                .into_iter()
                .flatten()
                .filter(|e| span.contains(e.id))
                .cloned()
                .collect();
            hub.filled(&conv, span, events);
        }
    }

    /// Stores an event written elsewhere (another server) without telling
    /// the hub, as a bus that lost it would.
    pub fn store_unseen(&self, event: Event) {
        let mut ids = lock(&self.ids);
        let id = ids.entry(event.conv.clone()).or_insert(0);
        *id = (*id).max(event.id);
        lock(&self.log)
            .entry(event.conv.clone())
            .or_default()
            .push(event);
    }

    /// Events waiting for [`commit`](Self::commit).
    pub fn waiting(&self) -> usize {
        lock(&self.waiting).len()
    }
}

impl Accounts for Memory {
    fn signing_key(&self, candidate: Vec<u8>) -> Reply<'_, Vec<u8>> {
        ready(lock(&self.key).get_or_insert(candidate).clone())
    }

    fn create_account(&self, nick: &str, skeleton: &str, hash: &str) -> Reply<'_, Registered> {
        let mut accounts = lock(&self.accounts);
        if let Some(held) = accounts.get(skeleton) {
            return ready(Registered::Taken(held.nick.clone()));
        }
        let account = Account {
            nick: nick.to_owned(),
            hash: hash.to_owned(),
        };
        accounts.insert(skeleton.to_owned(), account);
        lock(&self.moderation).blocks.remove(nick);
        ready(Registered::Created)
    }

    fn account(&self, skeleton: &str) -> Reply<'_, Option<Account>> {
        ready(lock(&self.accounts).get(skeleton).cloned())
    }

    fn set_password(&self, skeleton: &str, hash: &str) -> Reply<'_, ()> {
        if let Some(a) = lock(&self.accounts).get_mut(skeleton) {
            a.hash = hash.to_owned();
        }
        ready(())
    }

    fn open_session(&self, s: NewSession) -> Reply<'_, ()> {
        lock(&self.sessions).insert(s.id.clone(), s.nick);
        lock(&self.refreshes).insert(s.refresh, (s.id, false));
        ready(())
    }

    fn rotate(&self, refresh: &str, next: &str, _expires: u64) -> Reply<'_, Rotation> {
        let mut refreshes = lock(&self.refreshes);
        let Some((session, spent)) = refreshes.get(refresh).cloned() else {
            return ready(Rotation::Unknown);
        };
        let Some(nick) = lock(&self.sessions).get(&session).cloned() else {
            return ready(Rotation::Unknown);
        };
        if spent {
            lock(&self.sessions).remove(&session);
            refreshes.retain(|_, (s, _)| *s != session);
            return ready(Rotation::Replayed { session, nick });
        }
        refreshes.insert(refresh.to_owned(), (session.clone(), true));
        refreshes.insert(next.to_owned(), (session.clone(), false));
        ready(Rotation::Rotated { session, nick })
    }

    fn session_live(&self, id: &str) -> Reply<'_, bool> {
        ready(lock(&self.sessions).contains_key(id))
    }

    fn revoke(&self, id: &str) -> Reply<'_, ()> {
        lock(&self.sessions).remove(id);
        lock(&self.refreshes).retain(|_, (s, _)| s != id);
        ready(())
    }

    fn revoke_all(&self, nick: &str, except: Option<&str>) -> Reply<'_, Vec<String>> {
        let mut sessions = lock(&self.sessions);
        let ids: Vec<String> = sessions
            .iter()
            .filter(|(id, n)| *n == nick && Some(id.as_str()) != except)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            sessions.remove(id);
        }
        lock(&self.refreshes).retain(|_, (s, _)| !ids.contains(s));
        ready(ids)
    }
}

impl Convs for Memory {
    fn mark_read(&self, user: &str, conv: &Conversation, id: u64) -> Reply<'_, bool> {
        let mut marks = lock(&self.marks);
        let mark = marks.entry((user.to_owned(), conv.clone())).or_insert(0);
        let moved = id > *mark;
        *mark = (*mark).max(id);
        ready(moved)
    }

    fn reads(&self, user: &str) -> Reply<'_, Vec<(Conversation, u64)>> {
        let marks = lock(&self.marks);
        ready(
            marks
                .iter()
                .filter(|((u, _), _)| u == user)
                .map(|((_, c), id)| (c.clone(), *id))
                .collect(),
        )
    }

    fn readers(&self, conv: &Conversation, limit: usize) -> Reply<'_, Vec<(String, u64)>> {
        let mut found: Vec<(String, u64)> = lock(&self.marks)
            .iter()
            .filter(|((_, c), _)| c == conv)
            .map(|((u, _), id)| (u.clone(), *id))
            .collect();
        found.sort_by_key(|f| std::cmp::Reverse(f.1));
        found.truncate(limit);
        ready(found)
    }

    fn dms(&self, user: &str, limit: usize) -> Reply<'_, Vec<(String, u64)>> {
        let log = lock(&self.log);
        let mut found: Vec<(u64, String, u64)> = log
            .iter()
            .filter_map(|(conv, events)| {
                let Conversation::Dm(a, b) = conv else {
                    return None;
                };
                let with = if a == user {
                    b
                } else if b == user {
                    a
                } else {
                    return None;
                };
                let last = events.last()?;
                Some((last.ts, with.clone(), last.id))
            })
            .collect();
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        ready(
            found
                .into_iter()
                .take(limit)
                .map(|(_, w, id)| (w, id))
                .collect(),
        )
    }

    fn remember_user(&self, nick: &str) {
        lock(&self.known).insert(nick.to_owned());
    }

    fn known_user(&self, nick: &str) -> Reply<'_, bool> {
        ready(lock(&self.known).contains(nick))
    }

    fn forget_session(&self, _nick: &str) {}
}

impl Backend for Memory {
    fn start(self: Arc<Self>, hub: Arc<dyn HubEvents>) -> Vec<tokio::task::JoinHandle<()>> {
        let _ = self.hub.set(Arc::downgrade(&hub));
        Vec::new()
    }

    fn append(&self, event: NewEvent, ack: Box<dyn Ack>) -> Result<(), Busy> {
        let mut waiting = lock(&self.waiting);
        if self.limit.is_some_and(|l| waiting.len() >= l) {
            return Err(Busy);
        }
        let checked = check(
            lock(&self.log)
                .get(&event.conv)
                .map_or(&[][..], |l| l.as_slice()),
            &event,
        );
        if let Err(why) = checked {
            waiting.push((Err(why), ack));
            return Ok(());
        }
        let mut ids = lock(&self.ids);
        let id = ids.entry(event.conv.clone()).or_insert(0);
        *id += 1;
        waiting.push((Ok(event.with_id(*id)), ack));
        Ok(())
    }

    fn last_id(&self, conv: &Conversation) -> Reply<'_, u64> {
        ready(lock(&self.ids).get(conv).copied().unwrap_or(0))
    }

    fn history(&self, conv: &Conversation, before: u64, limit: u32) -> Reply<'_, Page> {
        let older: Vec<Event> = lock(&self.log)
            .get(conv)
            .into_iter()
            .flatten()
            .filter(|e| e.id < before && matches!(e.kind, Kind::Msg(_)))
            .cloned()
            .collect();
        let skip = older.len().saturating_sub(limit as usize);
        ready((older[skip..].to_vec(), skip > 0))
    }

    fn range(&self, conv: &Conversation, span: Span, limit: u32) -> Reply<'_, Vec<Event>> {
        let within: Vec<Event> = lock(&self.log)
            .get(conv)
            .into_iter()
            .flatten()
            .filter(|e| span.contains(e.id))
            .cloned()
            .collect();
        let skip = within.len().saturating_sub(limit as usize);
        ready(within[skip..].to_vec())
    }

    fn fill(&self, conv: Conversation, span: Span) {
        lock(&self.fills).push((conv, span));
    }

    fn publish(&self, signal: Signal) {
        lock(&self.signals).push(signal.clone());
        if let Signal::Typing { .. }
        | Signal::Receipt { .. }
        | Signal::Logout { .. }
        | Signal::Revoked { .. }
        | Signal::Claimed { .. }
        | Signal::Banned { .. }
        | Signal::Blocks { .. } = signal
        {
            self.hub().signal(signal);
        }
    }

    fn shares_presence(&self) -> bool {
        self.shared
    }

    fn publish_presence(&self, scope: &Scope, change: PresenceChange) {
        lock(&self.published).push((scope.clone(), change));
    }

    fn presence(&self, scope: &Scope) -> Reply<'_, Vec<(Peer, Vec<String>)>> {
        ready(lock(&self.others).get(scope).cloned().unwrap_or_default())
    }

    fn remember_session(&self, _nick: &str, _session: &str) {}

    fn session_of(&self, _nick: &str) -> Reply<'_, Option<String>> {
        ready(None)
    }

    fn drain(&self, _limit: Duration) -> Pin<Box<dyn Future<Output = usize> + Send + '_>> {
        Box::pin(std::future::ready(self.waiting()))
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }

    fn health(&self) -> Result<(), Duration> {
        Ok(())
    }

    fn render_metrics(&self) -> String {
        String::new()
    }
}

/// Whether `event` may act on its message in `log` (the stores' checks).
fn check(log: &[Event], event: &NewEvent) -> Result<(), Rejected> {
    let (target, author) = match &event.kind {
        Kind::Msg(_) | Kind::Edit { .. } | Kind::React { .. } if muted(log, event) => {
            return Err(Rejected::Muted);
        }
        Kind::Msg(state) => match state.reply_to {
            Some(to) => (to, None),
            None => return Ok(()),
        },
        Kind::Edit { target } | Kind::Delete { target } => (*target, Some(&event.from)),
        Kind::React { target, .. } | Kind::Remove { target } => (*target, None),
        Kind::Moderation(_) => return Ok(()),
    };
    let Some(m) = log.iter().find(|m| m.id == target) else {
        return Err(Rejected::NoSuchMessage);
    };
    match &m.kind {
        Kind::Msg(state) if state.deleted => Err(Rejected::Deleted),
        Kind::Msg(_) if author.is_some_and(|a| *a != m.from) => Err(Rejected::NotAuthor),
        Kind::Msg(state) => match &event.kind {
            Kind::React { emoji, .. }
                if !state.reactions.contains_key(emoji)
                    && state.reactions.len() >= MAX_REACTIONS =>
            {
                Err(Rejected::TooManyReactions)
            }
            _ => Ok(()),
        },
        _ => Err(Rejected::NoSuchMessage),
    }
}

/// Whether the writer of `event` is muted in its room by the events of
/// `log` (the stores keep the same in a table, or a hash).
fn muted(log: &[Event], event: &NewEvent) -> bool {
    let mut until = None;
    for e in log {
        if let Kind::Moderation(a) = &e.kind
            && a.user.as_deref() == Some(event.from.as_str())
        {
            match a.action {
                super::Action::Mute => until = Some(a.until),
                super::Action::Unmute => until = None,
                _ => {}
            }
        }
    }
    until.is_some_and(|u| in_force(u, event.ts))
}

/// Applies a committed `event` to its message in `log`.
fn apply(log: &mut [Event], event: &mut Event) {
    let Some(target) = event.kind.target() else {
        return;
    };
    let Some(m) = log.iter_mut().find(|m| m.id == target) else {
        return;
    };
    let Kind::Msg(state) = &mut m.kind else {
        return;
    };
    match &mut event.kind {
        Kind::Edit { .. } => {
            m.text = event.text.clone();
            state.edited_ts = Some(event.ts);
        }
        Kind::Delete { .. } | Kind::Remove { .. } => {
            m.text.clear();
            state.deleted = true;
            state.reactions.clear();
            for e in log.iter_mut() {
                if matches!(e.kind, Kind::Edit { target: t } if t == target) {
                    e.text.clear();
                }
            }
        }
        Kind::React { emoji, users, .. } => {
            let holders = state.reactions.entry(emoji.clone()).or_default();
            match holders.binary_search(&event.from) {
                Ok(at) => {
                    holders.remove(at);
                }
                Err(at) => holders.insert(at, event.from.clone()),
            }
            *users = holders.clone();
            if holders.is_empty() {
                state.reactions.remove(emoji);
            }
        }
        Kind::Msg(_) | Kind::Moderation(_) => {}
    }
}

/// Issue 17's state, in memory.
#[derive(Default)]
pub struct ModState {
    admins: std::collections::BTreeSet<String>,
    bans: HashMap<String, Until>,
    blocks: HashMap<String, std::collections::BTreeSet<String>>,
    audit: Vec<AuditEntry>,
}

impl Memory {
    fn note(&self, by: &str, action: &str, user: &str, detail: Option<String>) {
        let mut m = lock(&self.moderation);
        let id = m.audit.len() as u64 + 1;
        m.audit.push(AuditEntry {
            id,
            ts: crate::chat::now_ms(),
            by: by.to_owned(),
            action: action.to_owned(),
            user: Some(user.to_owned()),
            detail,
        });
    }
}

impl Memory {
    /// Makes `nick` an admin (or not), as `rfc6455 chat admin` does.
    pub fn set_admin(&self, nick: &str, admin: bool, by: &str) -> bool {
        let changed = {
            let mut m = lock(&self.moderation);
            if admin {
                m.admins.insert(nick.to_owned())
            } else {
                m.admins.remove(nick)
            }
        };
        if changed {
            let action = if admin { "admin_add" } else { "admin_remove" };
            self.note(by, action, nick, None);
        }
        changed
    }
}

impl Moderation for Memory {
    fn is_admin(&self, nick: &str) -> Reply<'_, bool> {
        self.moderation_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ready(lock(&self.moderation).admins.contains(nick))
    }

    fn server_ban(&self, nick: &str, now: u64) -> Reply<'_, Option<Until>> {
        let ban = lock(&self.moderation).bans.get(nick).copied();
        ready(ban.filter(|until| in_force(*until, now)))
    }

    fn set_server_ban(
        &self,
        nick: &str,
        ban: Option<Until>,
        by: &str,
        reason: Option<&str>,
    ) -> Reply<'_, ()> {
        match ban {
            Some(until) => lock(&self.moderation).bans.insert(nick.to_owned(), until),
            None => lock(&self.moderation).bans.remove(nick),
        };
        let action = if ban.is_some() { "ban" } else { "unban" };
        self.note(by, action, nick, reason.map(str::to_owned));
        ready(())
    }

    fn rules(&self, room: &str) -> Reply<'_, Vec<Event>> {
        self.moderation_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let conv = Conversation::Room(room.to_owned());
        let all = lock(&self.log)
            .get(&conv)
            .into_iter()
            .flatten()
            .filter(|e| matches!(e.kind, Kind::Moderation(_)))
            .cloned()
            .collect();
        ready(moderation::current(all, crate::chat::now_ms()))
    }

    fn audit(&self, room: &str, before: u64, limit: u32) -> Reply<'_, (Vec<AuditEntry>, bool)> {
        if room == "*" {
            let m = lock(&self.moderation);
            let all: Vec<AuditEntry> = m
                .audit
                .iter()
                .rev()
                .filter(|e| e.id < before)
                .cloned()
                .collect();
            return ready(page(all, limit));
        }
        let conv = Conversation::Room(room.to_owned());
        let log = lock(&self.log);
        let events = log.get(&conv).map(Vec::as_slice).unwrap_or_default();
        ready(audit_page(events, before, limit))
    }

    fn blocks(&self, nick: &str) -> Reply<'_, Vec<String>> {
        ready(
            lock(&self.moderation)
                .blocks
                .get(nick)
                .map(|b| b.iter().cloned().collect())
                .unwrap_or_default(),
        )
    }

    fn set_block(&self, nick: &str, other: &str, on: bool) -> Reply<'_, ()> {
        let mut m = lock(&self.moderation);
        let set = m.blocks.entry(nick.to_owned()).or_default();
        if on {
            set.insert(other.to_owned());
        } else {
            set.remove(other);
        }
        ready(())
    }
}

/// Folds the audit entries of a room's events (newest first, below
/// `before`, at most `limit`), as the memory store reads them whole.
fn audit_page(events: &[Event], before: u64, limit: u32) -> (Vec<AuditEntry>, bool) {
    let all: Vec<AuditEntry> = events
        .iter()
        .rev()
        .filter(|e| e.id < before)
        .filter_map(AuditEntry::of)
        .collect();
    page(all, limit)
}
