//! The hub's side of scaling out (`--redis`): what happens when another
//! server's events arrive on the bus (messages, in id order with holes
//! filled from the room's stream; presence; heartbeats), and what a first
//! local join or a resubscription must read from Redis first.
//!
//! A child module of the hub, so it works on the same rooms under the same
//! lock order (a room, then the rooms map; never the other way round).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proto::{CloseCode, CloseFrame};

use super::super::cluster::Bus;
use super::super::lock;
use super::super::protocol::{ChatMessage, Refusal, ServerMsg};
use super::{Hub, Kind, ONLINE, Room, down};

impl Hub {
    /// Scaled out, before the first local member joins `room`: learn its
    /// last id and who is in it on other servers. Messages already on the
    /// bus with ids up to that one are history for the new member.
    pub(super) async fn prepare_room(
        &self,
        room: &str,
        room_arc: &Mutex<Room>,
    ) -> Result<(), Refusal> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        if !lock(room_arc).members.is_empty() {
            return Ok(());
        }
        let last = cluster.last_id(room).await.map_err(|_| down())?;
        let others = cluster.presence(room).await.map_err(|_| down())?;
        let mut r = lock(room_arc);
        if r.members.is_empty() {
            r.last_id = r.last_id.max(last);
            r.pending.retain(|id, _| *id > last);
        }
        let mut servers = lock(&self.servers);
        for (server, nicks) in others {
            servers.entry(server.clone()).or_insert_with(Instant::now);
            r.remote
                .entry(server)
                .or_insert_with(|| nicks.into_iter().collect());
        }
        Ok(())
    }

    /// Scaled out, before [`register`](Self::register): whether `wanted`,
    /// online on another server, may be taken over with `session` (the
    /// secret its owner got in `welcome`, checked against Redis).
    pub async fn claim_remote(&self, wanted: Option<&str>, session: Option<&str>) -> bool {
        let (Some(cluster), Some(nick), Some(session)) = (self.cluster(), wanted, session) else {
            return false;
        };
        let held_elsewhere = lock(&self.remote_users)
            .values()
            .any(|held| held.contains(nick));
        if self.config.authenticated || !held_elsewhere {
            return false;
        }
        cluster.session_of(nick).await.ok().flatten().as_deref() == Some(session)
    }

    /// An event from the bus (scaled out).
    pub fn on_bus(self: &Arc<Self>, event: Bus) {
        match event {
            Bus::Replace { s, nick } => {
                if self.cluster().is_some_and(|c| c.id == s) {
                    return;
                }
                // Its owner came back on another server: this connection is
                // the stale one.
                for c in lock(&self.users).get(&nick).into_iter().flatten() {
                    c.outbox.close(CloseFrame::new(
                        CloseCode::try_from(4000).unwrap_or(CloseCode::NORMAL),
                        "replaced by a newer connection",
                    ));
                }
            }
            Bus::Msg {
                room,
                from,
                text,
                ts,
                id,
            } => self.deliver(ChatMessage {
                room,
                id,
                from,
                text,
                ts,
            }),
            Bus::Dm {
                conv: _,
                from,
                to,
                text,
                ts,
                id,
            } => {
                let frame = self.prepare(
                    ServerMsg::Dm {
                        id,
                        from: &from,
                        to: &to,
                        text: &text,
                        ts,
                    }
                    .to_json(),
                );
                let users = lock(&self.users);
                let mut nicks = vec![&to];
                if from != to {
                    nicks.push(&from);
                }
                for c in nicks.into_iter().filter_map(|n| users.get(n)).flatten() {
                    c.outbox.push(&frame, Kind::Chat, &self.metrics);
                }
            }
            Bus::Typing { room, user } => {
                // Looked up, not created: typing in a room nobody here is
                // in needs no entry.
                let Some(room_arc) = lock(&self.rooms).get(&room).cloned() else {
                    return;
                };
                let r = lock(&room_arc);
                if r.members.is_empty() {
                    return;
                }
                let frame = self.prepare(
                    ServerMsg::Typing {
                        room: &room,
                        user: &user,
                    }
                    .to_json(),
                );
                for member in r.members.values().filter(|m| m.nick != user) {
                    member.outbox.push(&frame, Kind::Ephemeral, &self.metrics);
                }
            }
            Bus::Presence { s, room, nicks } => {
                if self.cluster().is_some_and(|c| c.id == s) {
                    return;
                }
                lock(&self.servers).insert(s.clone(), Instant::now());
                let nicks: BTreeSet<String> = nicks.into_iter().collect();
                if room == ONLINE {
                    lock(&self.remote_users).insert(s, nicks);
                    return;
                }
                {
                    let mut rooms = lock(&self.remote_rooms);
                    let held = rooms.entry(s.clone()).or_default();
                    if nicks.is_empty() {
                        held.remove(&room);
                    } else {
                        held.insert(room.clone());
                    }
                }
                // Looked up, not created: a room nobody here is in needs no
                // roster (a first join reads it from Redis).
                let Some(room_arc) = self.find_room(&room) else {
                    return;
                };
                let mut r = lock(&room_arc);
                let old = if nicks.is_empty() {
                    r.remote.remove(&s).unwrap_or_default()
                } else {
                    r.remote.insert(s, nicks.clone()).unwrap_or_default()
                };
                let diff: Vec<String> = old.symmetric_difference(&nicks).cloned().collect();
                tracing::debug!(%room, ?diff, "presence from another server");
                if !diff.is_empty() {
                    r.changed.extend(diff);
                    self.mark(&room);
                }
            }
            Bus::Hb { s } => {
                let new = lock(&self.servers)
                    .insert(s.clone(), Instant::now())
                    .is_none();
                if new && self.cluster().is_some_and(|c| c.id != s) {
                    // A server we did not know (or had given up on): learn
                    // where its users are.
                    let hub = self.clone();
                    tokio::spawn(async move { hub.load_presence().await });
                }
            }
        }
    }

    /// Delivers a room message from the bus in id order: a hole before it
    /// is filled from the room's stream first.
    fn deliver(self: &Arc<Self>, message: ChatMessage) {
        let Some(room_arc) = self.find_room(&message.room) else {
            return; // nobody here is in it: a later join asks Redis
        };
        let mut r = lock(&room_arc);
        if message.id <= r.last_id {
            return; // already delivered, or history for everyone here
        }
        if r.members.is_empty() {
            // Nobody to deliver to: just keep count (a later join asks
            // Redis anyway), and let the tick see whether the room can
            // leave memory.
            r.last_id = message.id;
            r.pending.clear();
            self.mark(&message.room);
            return;
        }
        r.pending.insert(message.id, message);
        self.drain(&mut r);
    }

    /// Sends the pending messages that follow `last_id` without a hole, and
    /// starts a fill if a hole is left.
    fn drain(self: &Arc<Self>, r: &mut Room) {
        while let Some(entry) = r.pending.first_entry() {
            if *entry.key() != r.last_id + 1 {
                break;
            }
            let m = entry.remove();
            r.last_id = m.id;
            let frame = self.prepare(ServerMsg::Msg(&m).to_json());
            r.send_to_members(&frame, &self.metrics);
        }
        if let (Some((&next, m)), false, Some(cluster)) =
            (r.pending.first_key_value(), r.filling, self.cluster())
        {
            r.filling = true;
            cluster.fill(self, m.room.clone(), r.last_id, next - 1);
        }
    }

    /// A fill's result: the messages `after < id <= upto` that the stream
    /// still had.
    pub fn filled(self: &Arc<Self>, room: &str, upto: u64, messages: Vec<ChatMessage>) {
        let Some(room_arc) = self.find_room(room) else {
            return;
        };
        let mut r = lock(&room_arc);
        r.filling = false;
        self.mark(room);
        for m in messages {
            if m.id > r.last_id {
                r.pending.insert(m.id, m);
            }
        }
        if r.members.is_empty() {
            // Everyone left while the fill ran: as in `deliver`, nothing
            // waits for anyone, so the room may leave memory.
            if let Some((&newest, _)) = r.pending.last_key_value() {
                r.last_id = r.last_id.max(newest);
            }
            r.pending.clear();
        } else {
            // Whatever the stream no longer has (trimmed past its length)
            // is lost for live delivery: skip it rather than wait forever.
            let first = r.pending.first_key_value().map(|(&k, _)| k);
            if let Some(first) = first
                && first > r.last_id + 1
                && first <= upto + 1
            {
                r.last_id = first - 1;
            }
            self.drain(&mut r);
        }
    }

    /// After (re)subscribing: ids missed meanwhile are read from the
    /// streams, our presence is published again (others may have timed us
    /// out), and theirs is read again.
    pub async fn resync(self: &Arc<Self>) {
        let hub = self;
        {
            let Some(cluster) = hub.cluster().cloned() else {
                return;
            };
            let rooms = hub.rooms_with_members();
            let names: Vec<String> = rooms.iter().map(|(n, _)| n.clone()).collect();
            if let Ok(last) = cluster.last_ids(&names).await {
                for ((name, room_arc), last) in rooms.iter().zip(last) {
                    let mut r = lock(room_arc);
                    let known = r.pending.last_key_value().map_or(r.last_id, |(&k, _)| k);
                    if last > known && !r.filling && !r.members.is_empty() {
                        r.filling = true;
                        cluster.fill(hub, name.clone(), r.last_id, last);
                    }
                }
            }
            for (name, room_arc) in &rooms {
                lock(room_arc).local_changed = true;
                self.mark(name);
            }
            hub.users_changed.store(true, Ordering::Relaxed);
            hub.load_presence().await;
        }
    }

    /// Scaled out, before a DM to a nick this server does not know to be
    /// online: ask Redis (it may have come online a moment ago, elsewhere).
    pub async fn refresh_online(&self, nick: &str) {
        let known = lock(&self.users).contains_key(nick)
            || lock(&self.remote_users).values().any(|s| s.contains(nick));
        if !known {
            self.load_online().await;
        }
    }

    async fn load_online(&self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        if let Ok(others) = cluster.presence(ONLINE).await {
            let mut servers = lock(&self.servers);
            let mut users = lock(&self.remote_users);
            for (server, nicks) in others {
                servers.entry(server.clone()).or_insert_with(Instant::now);
                users.insert(server, nicks.into_iter().collect());
            }
        }
    }

    /// Reads who is where on other servers, for every room with members
    /// here and for the online list.
    async fn load_presence(&self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        self.load_online().await;
        for (name, room_arc) in self.rooms_with_members() {
            let Ok(others) = cluster.presence(&name).await else {
                return;
            };
            // Lock order, here as in `prepare_room`: the room, then servers.
            let mut r = lock(&room_arc);
            let mut servers = lock(&self.servers);
            for (server, nicks) in others {
                servers.entry(server.clone()).or_insert_with(Instant::now);
                let nicks: BTreeSet<String> = nicks.into_iter().collect();
                let old = r.remote.insert(server, nicks.clone()).unwrap_or_default();
                let diff: Vec<String> = old.symmetric_difference(&nicks).cloned().collect();
                r.changed.extend(diff);
            }
            self.mark(&name);
        }
    }

    /// Forgets servers not heard from for `ttl`: their users leave every
    /// room and the online list, here and in Redis's presence hashes.
    pub fn sweep_servers(&self, ttl: Duration) {
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
        let mut users = lock(&self.remote_users);
        for s in &dead {
            users.remove(s);
        }
        drop(users);
        // Every room a dead server had users in, in memory here or not.
        let mut forget: BTreeSet<(String, String)> = {
            let mut held = lock(&self.remote_rooms);
            dead.iter()
                .flat_map(|s| {
                    let rooms = held.remove(s).unwrap_or_default();
                    rooms.into_iter().map(move |room| (room, s.clone()))
                })
                .collect()
        };
        let rooms: Vec<(String, Arc<Mutex<Room>>)> = lock(&self.rooms)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, room_arc) in rooms {
            let mut r = lock(&room_arc);
            for s in &dead {
                if let Some(nicks) = r.remote.remove(s) {
                    r.changed.extend(nicks);
                    self.mark(&name);
                    forget.insert((name.clone(), s.clone()));
                }
            }
        }
        if let Some(cluster) = self.cluster() {
            for (room, s) in &forget {
                cluster.forget(room, s);
            }
            for s in &dead {
                cluster.forget(ONLINE, s);
            }
        }
    }
}
