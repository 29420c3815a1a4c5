//! Shared presence: who is in each room (and online) on each server, in
//! a hash per scope and on the bus; heartbeats, which prove the
//! subscription and keep a server alive in the others' eyes; the sweep
//! that takes a silent server's users out of every room; and the session
//! secrets that let a nick be reclaimed on any server.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::RedisResult;

use super::bus::{BUS, Bus};
use super::{Redis, key_alive, key_presence, key_session};
use crate::chat::backend::{HubEvents, Peer, Scope};
use crate::chat::lock;

impl Redis {
    /// Publishes this server's nicks in `scope` and stores them in its
    /// presence hash, for servers that start later.
    pub(super) fn publish_nicks(&self, scope: &Scope, nicks: Vec<String>) {
        let mut store = if nicks.is_empty() {
            let mut c = redis::cmd("HDEL");
            c.arg(key_presence(scope)).arg(&self.id);
            c
        } else {
            let mut c = redis::cmd("HSET");
            c.arg(key_presence(scope))
                .arg(&self.id)
                .arg(serde_json::to_string(&nicks).unwrap_or_default());
            c
        };
        let event = Bus::Presence {
            s: self.id.clone(),
            room: scope.key().to_owned(),
            nicks,
        };
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(BUS).arg(event.to_json());
        self.send(vec![std::mem::take(&mut store), publish]);
    }

    /// Notes that `server` is alive and has (or no longer has) users in
    /// `scope`.
    pub(super) fn seen(&self, server: &str, scope: &Scope, has_users: bool) {
        lock(&self.servers).insert(server.to_owned(), Instant::now());
        if let Scope::Room(room) = scope {
            let mut rooms = lock(&self.rooms_of);
            let held = rooms.entry(server.to_owned()).or_default();
            if has_users {
                held.insert(room.clone());
            } else {
                held.remove(room);
            }
        }
    }

    /// Who is in `scope` on each live server other than us, from its
    /// presence hash (servers whose heartbeat key expired are skipped).
    pub(super) async fn read_presence(
        &self,
        scope: &Scope,
    ) -> RedisResult<Vec<(Peer, Vec<String>)>> {
        let k = key_presence(scope);
        let all: Vec<(String, String)> = self
            .with_conn(
                |mut c| async move { redis::cmd("HGETALL").arg(k).query_async(&mut c).await },
            )
            .await?;
        let others: Vec<(String, String)> =
            all.into_iter().filter(|(s, _)| *s != self.id).collect();
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let alive_keys: Vec<String> = others.iter().map(|(s, _)| key_alive(s)).collect();
        let mut pipe = redis::pipe();
        for k in &alive_keys {
            pipe.cmd("EXISTS").arg(k);
        }
        let alive: Vec<bool> = self
            .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let live: Vec<(Peer, Vec<String>)> = others
            .into_iter()
            .zip(alive)
            .filter(|(_, a)| *a)
            .map(|((s, nicks), _)| (s, serde_json::from_str(&nicks).unwrap_or_default()))
            .collect();
        for (server, nicks) in &live {
            // Known from now on (if not already): a server read here and
            // then silent is swept like any other.
            lock(&self.servers)
                .entry(server.clone())
                .or_insert_with(Instant::now);
            if let Scope::Room(room) = scope
                && !nicks.is_empty()
            {
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
        let scopes = std::iter::once(Scope::Online).chain(hub.rooms().into_iter().map(Scope::Room));
        for scope in scopes {
            let Ok(others) = self.read_presence(&scope).await else {
                return;
            };
            for (server, nicks) in others {
                hub.presence(&server, &scope, nicks.into_iter().collect());
            }
        }
    }

    pub(super) async fn heartbeat(self: Arc<Self>, hub: Arc<dyn HubEvents>) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.beat().await;
            self.sweep(&hub, self.config.presence_ttl);
        }
    }

    /// Says we are alive: a key that expires, and an event on the bus
    /// that our own subscription must bring back.
    pub(super) async fn beat(&self) {
        let hb = Bus::Hb { s: self.id.clone() }.to_json();
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
    /// scope, in the hub and in Redis's presence hashes.
    fn sweep(&self, hub: &Arc<dyn HubEvents>, ttl: Duration) {
        let dead: Vec<String> = {
            let mut servers = lock(&self.servers);
            let dead: Vec<String> = servers
                .iter()
                .filter(|(_, seen)| seen.elapsed() > ttl)
                .map(|(s, _)| s.clone())
                .collect();
            for s in &dead {
                servers.remove(s);
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
            for scope in scopes.iter().chain([&Scope::Online]) {
                let mut c = redis::cmd("HDEL");
                c.arg(key_presence(scope)).arg(s);
                self.send(vec![c]);
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
