//! Shared presence: who is in each room (and online) on each server, as
//! a set per (server, scope) in Redis and as changes on the bus; the
//! sequence numbers that show a receiver it missed a change, and the
//! resync that repairs it from the sets; heartbeats, which prove the
//! subscription and keep a server alive in the others' eyes; the sweep
//! that takes a silent server's users out of every room; and the session
//! secrets that let a nick be reclaimed on any server.
//!
//! A tick costs what changed, not the room: a server publishes only the
//! nicks that came and went (`presence_delta`), and applies the same to
//! its set with `SADD`/`SREM` in the same pipeline, before the `PUBLISH`
//! (so whoever hears of a change finds it in the set). All of a server's
//! nicks travel only when it publishes all again after losing its link
//! (`presence`, and `DEL` + `SADD`). Each change carries the server's
//! next sequence number `n`; a receiver that sees one beyond the next, or
//! hears from a server for the first time (a heartbeat carries `n` too),
//! reads that server's sets for every scope it holds (`SMEMBERS`), inline
//! in the subscription's loop so that no later change is applied before
//! it. Changes are idempotent, so one replayed over a fresher read does
//! no harm.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::RedisResult;

use super::bus::{BUS, Bus};
use super::{Redis, key_alive, key_nicks, key_present, key_session};
use crate::chat::backend::{HubEvents, Peer, PresenceChange, Scope};
use crate::chat::lock;

impl Redis {
    /// Applies a change of this server's nicks in `scope` to its set in
    /// Redis and publishes it, with the next sequence number.
    pub(super) fn publish_change(&self, scope: &Scope, change: PresenceChange) {
        let n = self.presence_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let (set, index) = (key_nicks(&self.id, scope), key_present(scope));
        let mut cmds = Vec::new();
        let room = scope.key().to_owned();
        let s = self.id.clone();
        let event = match change {
            PresenceChange::All(nicks) => {
                cmds.push(redis::cmd("DEL").arg(&set).to_owned());
                if nicks.is_empty() {
                    cmds.push(redis::cmd("SREM").arg(&index).arg(&self.id).to_owned());
                } else {
                    cmds.push(redis::cmd("SADD").arg(&set).arg(&nicks).to_owned());
                    cmds.push(redis::cmd("SADD").arg(&index).arg(&self.id).to_owned());
                }
                Bus::Presence { s, n, room, nicks }
            }
            PresenceChange::Delta { joined, left } => {
                if !joined.is_empty() {
                    cmds.push(redis::cmd("SADD").arg(&set).arg(&joined).to_owned());
                    cmds.push(redis::cmd("SADD").arg(&index).arg(&self.id).to_owned());
                }
                if !left.is_empty() {
                    cmds.push(redis::cmd("SREM").arg(&set).arg(&left).to_owned());
                }
                Bus::PresenceDelta {
                    s,
                    n,
                    room,
                    joined,
                    left,
                }
            }
        };
        cmds.push(
            redis::cmd("PUBLISH")
                .arg(BUS)
                .arg(event.to_json())
                .to_owned(),
        );
        if !self.send(cmds) {
            // Others see the gap in `n`, but the set misses it too.
            self.presence_lost.store(true, Ordering::Relaxed);
        }
    }

    /// A presence change from another server, numbered `n`: first checks
    /// that none before it was missed (if one was, or if `server` is new
    /// to us, its sets are read again), then hands it to the hub.
    pub(super) async fn on_presence(
        &self,
        hub: &Arc<dyn HubEvents>,
        server: &str,
        n: u64,
        scope: Scope,
        change: PresenceChange,
    ) {
        let last = lock(&self.heard).get(server).copied();
        if last.is_none_or(|last| n > last + 1) {
            tracing::debug!(%server, ?last, n, "presence changes missed: reading its sets");
            self.metrics
                .presence_resyncs
                .fetch_add(1, Ordering::Relaxed);
            if self.resync_server(hub, server).await.is_err() {
                // Not known yet: the next change tries again.
                return;
            }
        }
        let mut heard = lock(&self.heard);
        let last = heard.entry(server.to_owned()).or_insert(n);
        *last = (*last).max(n);
        drop(heard);
        let holds = match &change {
            PresenceChange::All(nicks) => Some(!nicks.is_empty()),
            PresenceChange::Delta { joined, .. } => (!joined.is_empty()).then_some(true),
        };
        self.seen(server, &scope, holds);
        hub.presence(server, &scope, change);
    }

    /// A heartbeat from `server`, whose last presence change is `n`: a
    /// server we do not know (or had given up on) has its sets read.
    pub(super) async fn on_heartbeat(&self, hub: &Arc<dyn HubEvents>, server: &str, n: u64) {
        lock(&self.servers).insert(server.to_owned(), Instant::now());
        if server == self.id || lock(&self.heard).contains_key(server) {
            return;
        }
        if self.resync_server(hub, server).await.is_ok() {
            let mut heard = lock(&self.heard);
            let last = heard.entry(server.to_owned()).or_insert(n);
            *last = (*last).max(n);
        }
    }

    /// Reads `server`'s sets for the online list and every room with
    /// members here, and gives each to the hub whole.
    async fn resync_server(&self, hub: &Arc<dyn HubEvents>, server: &str) -> RedisResult<()> {
        let scopes: Vec<Scope> = [Scope::Online, Scope::Guests]
            .into_iter()
            .chain(hub.rooms().into_iter().map(Scope::Room))
            .collect();
        let mut pipe = redis::pipe();
        for scope in &scopes {
            pipe.cmd("SMEMBERS").arg(key_nicks(server, scope));
        }
        let sets: Vec<Vec<String>> = self
            .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        for (scope, nicks) in scopes.into_iter().zip(sets) {
            self.seen(server, &scope, Some(!nicks.is_empty()));
            hub.presence(server, &scope, PresenceChange::All(nicks));
        }
        Ok(())
    }

    /// Notes that `server` is alive and has (`Some(true)`), no longer has
    /// (`Some(false)`) or may still have (`None`) users in `scope`.
    fn seen(&self, server: &str, scope: &Scope, holds: Option<bool>) {
        lock(&self.servers).insert(server.to_owned(), Instant::now());
        if let (Scope::Room(room), Some(holds)) = (scope, holds) {
            let mut rooms = lock(&self.rooms_of);
            let held = rooms.entry(server.to_owned()).or_default();
            if holds {
                held.insert(room.clone());
            } else {
                held.remove(room);
            }
        }
    }

    /// Who is in `scope` on each live server other than us, from their
    /// sets (servers whose heartbeat key expired are skipped).
    pub(super) async fn read_presence(
        &self,
        scope: &Scope,
    ) -> RedisResult<Vec<(Peer, Vec<String>)>> {
        let k = key_present(scope);
        let all: Vec<String> = self
            .with_conn(
                |mut c| async move { redis::cmd("SMEMBERS").arg(k).query_async(&mut c).await },
            )
            .await?;
        let others: Vec<String> = all.into_iter().filter(|s| *s != self.id).collect();
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for s in &others {
            pipe.cmd("EXISTS").arg(key_alive(s));
            pipe.cmd("SMEMBERS").arg(key_nicks(s, scope));
        }
        let replies: Vec<redis::Value> = self
            .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let mut live = Vec::new();
        for (server, pair) in others.into_iter().zip(replies.chunks(2)) {
            let [alive, nicks] = pair else { continue };
            let alive: bool = redis::from_redis_value(alive.clone()).unwrap_or(false);
            let nicks: Vec<String> = redis::from_redis_value(nicks.clone()).unwrap_or_default();
            if alive && !nicks.is_empty() {
                live.push((server, nicks));
            }
        }
        for (server, _) in &live {
            // Known from now on (if not already): a server read here and
            // then silent is swept like any other.
            lock(&self.servers)
                .entry(server.clone())
                .or_insert_with(Instant::now);
            if let Scope::Room(room) = scope {
                let mut rooms = lock(&self.rooms_of);
                rooms
                    .entry(server.clone())
                    .or_default()
                    .insert(room.clone());
            }
        }
        Ok(live)
    }

    /// Reads who is where on other servers, for the online list and every
    /// room with members here.
    pub(super) async fn load_presence(&self, hub: &Arc<dyn HubEvents>) {
        let scopes = [Scope::Online, Scope::Guests]
            .into_iter()
            .chain(hub.rooms().into_iter().map(Scope::Room));
        for scope in scopes {
            let Ok(others) = self.read_presence(&scope).await else {
                return;
            };
            for (server, nicks) in others {
                hub.presence(&server, &scope, PresenceChange::All(nicks));
            }
        }
    }

    pub(super) async fn heartbeat(self: Arc<Self>, hub: Arc<dyn HubEvents>) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.presence_lost.swap(false, Ordering::Relaxed) {
                hub.republish();
            }
            self.beat().await;
            self.sweep(&hub, self.config.presence_ttl);
        }
    }

    /// Says we are alive: a key that expires, and an event on the bus
    /// that our own subscription must bring back.
    pub(super) async fn beat(&self) {
        let hb = Bus::Hb {
            s: self.id.clone(),
            n: self.presence_seq.load(Ordering::Relaxed),
        }
        .to_json();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key_alive(&self.id))
            .arg(1)
            .arg("PX")
            .arg(self.config.presence_ttl.as_millis() as u64)
            .ignore()
            .cmd("PUBLISH")
            .arg(BUS)
            .arg(hb)
            .ignore();
        let _: RedisResult<()> = self
            .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
            .await;
    }

    /// Forgets servers not heard from for `ttl`: their users leave every
    /// scope, in the hub and in Redis's presence sets.
    fn sweep(&self, hub: &Arc<dyn HubEvents>, ttl: Duration) {
        let dead: Vec<String> = {
            let mut servers = lock(&self.servers);
            let dead: Vec<String> = servers
                .iter()
                .filter(|(_, seen)| seen.elapsed() > ttl)
                .map(|(s, _)| s.clone())
                .collect();
            let mut heard = lock(&self.heard);
            for s in &dead {
                servers.remove(s);
                heard.remove(s);
            }
            dead
        };
        if dead.is_empty() {
            return;
        }
        tracing::info!(servers = ?dead, "servers silent too long: their users leave");
        for s in &dead {
            hub.peer_gone(s);
            let rooms = lock(&self.rooms_of).remove(s).unwrap_or_default();
            let scopes: BTreeSet<Scope> = rooms.into_iter().map(Scope::Room).collect();
            for scope in scopes.iter().chain([&Scope::Online, &Scope::Guests]) {
                self.send(vec![
                    redis::cmd("SREM").arg(key_present(scope)).arg(s).to_owned(),
                    redis::cmd("DEL").arg(key_nicks(s, scope)).to_owned(),
                ]);
            }
        }
    }

    /// Stores the session secret of `nick`, so that its owner can reclaim
    /// it on any server (kept a day after its last connection).
    pub(super) fn keep_session(&self, nick: &str, session: &str) {
        let mut c = redis::cmd("SET");
        c.arg(key_session(nick)).arg(session).arg("EX").arg(86_400);
        self.send(vec![c]);
    }

    /// The session secret last given for `nick`.
    pub(super) async fn read_session(&self, nick: &str) -> RedisResult<Option<String>> {
        let k = key_session(nick);
        self.with_conn(|mut c| async move { redis::cmd("GET").arg(k).query_async(&mut c).await })
            .await
    }
}
