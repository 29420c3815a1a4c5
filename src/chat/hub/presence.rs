//! Who is where: the presence tick that turns roster changes into one
//! `presence` event per room (and publishes ours when presence is
//! shared), what the backend says of other servers' users before a
//! first join, a takeover or a DM, and the rooms a resync walks.
//!
//! A child module of the hub: the same rooms, the same lock order (a
//! room, then the rooms map; never the other way round).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::super::backend::{Conversation, PresenceChange, Scope};
use super::super::lock;
use super::super::protocol::{Refusal, ServerMsg};
use super::{COUNT_EVERY, Hub, Kind, LARGE_ROOM, LARGE_ROOM_UNTIL, Room, Standing, down};

impl Hub {
    /// Before the first local member joins `room`: learn its last id and
    /// who is in it on other servers. Events already delivered with ids
    /// up to that one are history for the new member.
    pub(super) async fn prepare_room(
        &self,
        room: &str,
        room_arc: &Mutex<Room>,
    ) -> Result<(), Refusal> {
        if !lock(room_arc).members.is_empty() {
            return Ok(());
        }
        let conv = Conversation::Room(room.to_owned());
        let last = self.backend.last_id(&conv).await.map_err(down)?;
        // After the last id: a rule stored since is then both loaded and
        // delivered, and applied once (`Rules::applied`).
        self.reload_rules(room, room_arc).await?;
        let others = self
            .backend
            .presence(&Scope::Room(room.to_owned()))
            .await
            .map_err(down)?;
        let mut r = lock(room_arc);
        if r.members.is_empty() {
            r.last_id = r.last_id.max(last);
            r.pending.retain(|id, _| *id > last);
        }
        for (server, nicks) in others {
            // What the bus said meanwhile (if anything) is only what
            // changed since: add the rest to it.
            let mut held = r.remote.remove(&server).unwrap_or_default();
            for nick in nicks {
                if !held.contains(&nick) {
                    r.hold(&nick);
                    held.insert(nick);
                }
            }
            if !held.is_empty() {
                r.remote.insert(server, held);
            }
        }
        Ok(())
    }

    /// Before [`register`](Self::register): whether `session` is the
    /// secret the backend keeps for `wanted` (its owner's, from any
    /// server, or from before a restart): then `register` may take the
    /// nick from another server, and keeps that secret when the nick is
    /// free, so that every tab of the user that reconnects with it is the
    /// same user again.
    pub async fn claim_remote(&self, wanted: Option<&str>, session: Option<&str>) -> bool {
        let (Some(nick), Some(session)) = (wanted, session) else {
            return false;
        };
        if self.config.authenticated {
            return false;
        }
        self.backend
            .session_of(nick)
            .await
            .ok()
            .flatten()
            .as_deref()
            == Some(session)
    }

    pub(super) fn online_elsewhere(&self, nick: &str) -> bool {
        lock(&self.remote_users)
            .values()
            .any(|held| held.contains(nick))
    }

    /// Sends one `presence` per room whose roster changed since the last
    /// call: the nicks that are now present as `joined`, the ones now gone
    /// as `left`, and the room's count. A storm of reconnects becomes one
    /// event per room per call, not one roster per connection per member,
    /// and one that changed more than [`MAX_DELTA`](super::MAX_DELTA) nicks carries only the
    /// count (`truncated`): its members page again.
    ///
    /// Only rooms marked since the last call are visited, so an idle
    /// server's tick costs nothing however many rooms it holds; a room
    /// left with nobody in it leaves memory here.
    pub fn flush_presence(&self) {
        self.flush_presence_at(Instant::now());
    }

    /// [`flush_presence`](Self::flush_presence) as if it were `now` (the
    /// tests' clock for [`COUNT_EVERY`]).
    pub(super) fn flush_presence_at(&self, now: Instant) {
        let dirty = std::mem::take(&mut *lock(&self.dirty));
        let shared = self.backend.shares_presence();
        // Large rooms whose count is not due yet: looked at again next tick.
        let mut again = Vec::new();
        if shared {
            let all = self.users_all.swap(false, Ordering::Relaxed);
            let changed = std::mem::take(&mut *lock(&self.users_changed));
            let users = lock(&self.users);
            let guest = |n: &str| {
                users
                    .holders(n)
                    .next()
                    .is_some_and(|c| c.standing == Standing::Guest)
            };
            // The guests among them, for the other servers' `guests`.
            let guests = match self.config.mark_guests {
                false => None,
                true if all => {
                    let mut nicks = users.nicks();
                    nicks.retain(|n| guest(n));
                    Some(PresenceChange::All(nicks))
                }
                true => delta(changed.clone(), guest),
            };
            let change = if all {
                Some(PresenceChange::All(users.nicks()))
            } else {
                delta(changed, |n| users.contains(n))
            };
            drop(users);
            if let Some(change) = change {
                self.backend.publish_presence(&Scope::Online, change);
            }
            if let Some(change) = guests {
                self.backend.publish_presence(&Scope::Guests, change);
            }
        }
        for name in dirty {
            let Some(room_arc) = self.find_room(&name) else {
                continue;
            };
            let mut r = lock(&room_arc);
            let all = std::mem::take(&mut r.local_all);
            let changed = std::mem::take(&mut r.local_changed);
            if shared {
                // Only the nicks that came or went since the last tick:
                // a join storm into a big room ships its joins, not the
                // room (all of it only when asked again).
                let change = if all {
                    let mut nicks: Vec<String> = r.nicks.keys().cloned().collect();
                    nicks.sort();
                    Some(PresenceChange::All(nicks))
                } else {
                    delta(changed, |n| r.nicks.contains_key(n))
                };
                if let Some(change) = change {
                    tracing::debug!(room = %name, ?change, "publishing our presence");
                    self.backend
                        .publish_presence(&Scope::Room(name.clone()), change);
                }
            }
            if (!r.changed.is_empty() || r.truncated) && !self.tell_presence(&name, &mut r, now) {
                again.push(name.clone());
            }
            self.drop_if_idle(&name, &room_arc, &mut r);
        }
        for name in again {
            self.mark(&name);
        }
    }

    /// Tells `name`'s members (the room, locked) how its roster changed:
    /// the nicks that are now present as `joined`, the ones now gone as
    /// `left`, and the count. In a large room (past [`LARGE_ROOM`], until
    /// it shrinks below [`LARGE_ROOM_UNTIL`]) only the count, flagged
    /// `count_only`, and at most once a [`COUNT_EVERY`]: a join then costs
    /// the room one delivery per member per second at most, not one per
    /// tick. Returns `false` if the count is not due yet (the changes
    /// wait, and the room must be looked at again).
    fn tell_presence(&self, name: &str, r: &mut Room, now: Instant) -> bool {
        let count = r.roster.len();
        let large = match r.counted {
            Some(_) => count >= LARGE_ROOM_UNTIL,
            None => count > LARGE_ROOM,
        };
        let (joined, left, truncated, count_only) = if large {
            if r.counted
                .is_some_and(|(at, _)| now.duration_since(at) < COUNT_EVERY)
            {
                return false;
            }
            // A large room notes that something changed, never who.
            r.changed.clear();
            r.truncated = false;
            if r.counted.is_some_and(|(_, told)| told == count) {
                return true;
            }
            r.counted = Some((now, count));
            (Vec::new(), Vec::new(), false, true)
        } else {
            // Back from large: the lists members hold were not kept up
            // to date, so they page again.
            let truncated = std::mem::take(&mut r.truncated) | r.counted.take().is_some();
            let changed = std::mem::take(&mut r.changed);
            if truncated {
                (Vec::new(), Vec::new(), true, false)
            } else {
                // A nick noted twice within a tick (joined, then left) is
                // told as what it is now.
                let (joined, left): (Vec<String>, Vec<String>) =
                    changed.into_iter().partition(|n| r.roster.contains(n));
                (joined, left, false, false)
            }
        };
        if !r.members.is_empty() {
            let mut guests = r.guests_among(&joined);
            if self.marks_guests() {
                guests.extend(self.remote_guests_among(&joined));
                guests.sort();
                guests.dedup();
            }
            let frame = self.prepare(
                ServerMsg::Presence {
                    room: name,
                    joined: &joined,
                    left: &left,
                    count,
                    next: None,
                    truncated,
                    count_only,
                    guests: self.marks_guests().then_some(&guests),
                }
                .to_json(),
            );
            r.send_to_members(&frame, Kind::Ephemeral, &self.metrics);
        }
        true
    }

    /// The rooms with members here. Copied out of the map before any
    /// room is locked: the lock order is room, then map (see `rooms`).
    pub(super) fn rooms_with_members(&self) -> Vec<(String, Arc<Mutex<Room>>)> {
        let all: Vec<(String, Arc<Mutex<Room>>)> = lock(&self.rooms)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.into_iter()
            .filter(|(_, r)| !lock(r).members.is_empty())
            .collect()
    }

    /// Before a DM to a nick this server does not know to be online: ask
    /// the backend (it may have come online a moment ago, elsewhere).
    pub async fn refresh_online(&self, nick: &str) {
        if lock(&self.users).contains(nick) || self.online_elsewhere(nick) {
            return;
        }
        if let Ok(others) = self.backend.presence(&Scope::Online).await {
            let mut users = lock(&self.remote_users);
            for (server, nicks) in others {
                users.insert(server, nicks.into_iter().collect());
            }
        }
    }
}

/// The nicks of `changed` as a delta: the ones `present` says are here now
/// joined, the others left (a nick that came and went within a tick is
/// told as what it is now). `None` if nothing changed.
fn delta(changed: BTreeSet<String>, present: impl Fn(&str) -> bool) -> Option<PresenceChange> {
    if changed.is_empty() {
        return None;
    }
    let (joined, left) = changed.into_iter().partition(|n| present(n));
    Some(PresenceChange::Delta { joined, left })
}
