//! The backend of a single server: ids in memory, history in SQLite
//! ([`store`], its own thread), nobody to share presence with.
//!
//! An append queues the event for the history thread, which, first in
//! first out, gives each its conversation's next id, checks an edit,
//! delete or reaction against its message and writes it, in one
//! transaction per batch (a refused event takes no id, and its writer is
//! told why: [`Ack::refused`]). Once the batch holding an event commits,
//! the thread reports it to the hub
//! ([`HubEvents::stored`]) and then acks its writer: nobody sees an id the
//! disk does not have, and an ack means "on disk". A crash loses only ids
//! nobody saw, and the next server continues from the ids on disk.

mod accounts;
mod convs;
pub mod moderation;
pub mod store;

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use self::store::{DbSync, Outcome, Store};
use super::{
    Ack, Backend, Busy, Conversation, Event, HubEvents, NewEvent, Page, Peer, PresenceChange,
    Reply, Scope, Signal, Span, Unavailable, ready,
};
use crate::chat::metrics::Metrics;

/// Appends that may wait for the history thread (a stalled disk) before
/// new ones get [`Busy`]: each holds its event and its ack until its
/// commit. The same bound as the Redis queue's default
/// (`ClusterConfig::queue_limit`).
const QUEUE_LIMIT: usize = 10_000;

/// Most events one fill reads (as much as a hole can hold: ids are lost
/// only when a whole batch fails).
const MAX_FILL: u32 = 10_000;

/// One server's conversations, in SQLite.
pub struct Local {
    store: Store,
    /// Each user's DM partners ([`convs::Partners`]).
    partners: convs::Partners,
    /// Admins, server bans and their audit: the side database
    /// ([`moderation::server_path`]).
    server: Arc<moderation::ServerDb>,
    hub: OnceLock<Weak<dyn HubEvents>>,
}

impl Local {
    /// Opens (or creates) the history database and locks it for this
    /// process; fails, naming the file, if another process holds it.
    pub fn open(path: &Path, sync: DbSync, metrics: Arc<Metrics>) -> io::Result<Arc<Self>> {
        let store = Store::open(path, sync, metrics)?;
        let partners = convs::open(&store)?;
        let server = moderation::ServerDb::open(&moderation::server_path(path))?;
        Ok(Arc::new(Self {
            store,
            partners,
            server,
            hub: OnceLock::new(),
        }))
    }

    fn hub(&self) -> Option<Arc<dyn HubEvents>> {
        self.hub.get().and_then(Weak::upgrade)
    }
}

impl Backend for Local {
    fn start(self: Arc<Self>, hub: Arc<dyn HubEvents>) -> Vec<tokio::task::JoinHandle<()>> {
        let _ = self.hub.set(Arc::downgrade(&hub));
        Vec::new()
    }

    fn append(&self, event: NewEvent, ack: Box<dyn Ack>) -> Result<(), Busy> {
        if self.store.backlog() >= QUEUE_LIMIT {
            return Err(Busy);
        }
        let hub = self.hub.get().cloned();
        let partners = self.partners.clone();
        self.store.insert(
            event,
            Box::new(move |outcome| match outcome {
                Outcome::Committed(event) => {
                    let id = event.id;
                    convs::note_dm(&partners, &event);
                    if let Some(hub) = hub.as_ref().and_then(Weak::upgrade) {
                        hub.stored(event);
                    }
                    ack.done(Ok(id));
                }
                // No one saw it: its writer is told, and may send it again.
                Outcome::Failed => ack.done(Err(Unavailable)),
                Outcome::Refused(why) => ack.refused(why),
            }),
        );
        Ok(())
    }

    fn last_id(&self, conv: &Conversation) -> Reply<'_, u64> {
        ready(self.store.last_id(&conv.key()))
    }

    fn history(&self, conv: &Conversation, before: u64, limit: u32) -> Reply<'_, Page> {
        let key = conv.key();
        Box::pin(async move { Ok(self.store.history(&key, before, limit).await) })
    }

    fn range(&self, conv: &Conversation, span: Span, limit: u32) -> Reply<'_, Vec<Event>> {
        let key = conv.key();
        Box::pin(async move { Ok(self.store.range(&key, span.after, span.upto, limit).await) })
    }

    /// A hole here is a batch that failed: the read finds nothing of it,
    /// and the hub skips it. Runs on the history thread, which may be the
    /// caller's (a hub delivering from an `OnCommit`).
    fn fill(&self, conv: Conversation, span: Span) {
        let hub = self.hub.get().cloned();
        let key = conv.key();
        self.store.fill(
            key,
            span.after,
            span.upto,
            MAX_FILL,
            Box::new(move |events| {
                if let Some(hub) = hub.as_ref().and_then(Weak::upgrade) {
                    hub.filled(&conv, span, events);
                }
            }),
        );
    }

    fn publish(&self, signal: Signal) {
        match signal {
            Signal::Typing { .. } => {
                if let Some(hub) = self.hub() {
                    hub.signal(signal);
                }
            }
            // No other server holds the nick.
            Signal::Replaced { .. } => {}
            Signal::Receipt { .. }
            | Signal::Logout { .. }
            | Signal::Revoked { .. }
            | Signal::Claimed { .. }
            | Signal::Banned { .. }
            | Signal::Blocks { .. } => {
                if let Some(hub) = self.hub() {
                    hub.signal(signal);
                }
            }
        }
    }

    fn shares_presence(&self) -> bool {
        false
    }

    fn publish_presence(&self, _scope: &Scope, _change: PresenceChange) {}

    fn presence(&self, _scope: &Scope) -> Reply<'_, Vec<(Peer, Vec<String>)>> {
        ready(Vec::new())
    }

    /// Sessions live in the hub's own users: nothing to share.
    fn remember_session(&self, nick: &str, session: &str) {
        self.keep_session(nick, session);
    }

    fn session_of(&self, nick: &str) -> Reply<'_, Option<String>> {
        self.read_session(nick)
    }

    /// Acks wait for their commit: the last ones reach their clients
    /// before the connections are closed. A disk never times out here.
    fn drain(&self, _limit: Duration) -> Pin<Box<dyn Future<Output = usize> + Send + '_>> {
        Box::pin(async move {
            self.store.flush().await;
            0
        })
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let store = self.store.clone();
        Box::pin(async move {
            if let Err(e) = tokio::task::spawn_blocking(move || store.close()).await {
                tracing::warn!(error = %e, "the history thread did not stop cleanly");
            }
        })
    }

    fn health(&self) -> Result<(), Duration> {
        Ok(())
    }

    fn render_metrics(&self) -> String {
        String::new()
    }
}
