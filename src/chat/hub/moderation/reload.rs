//! Reading a room's rules again from the store, whole.
//!
//! The rules are a fold of the room's moderation events in id order
//! ([`Rules::apply`] skips any id at or below the last one folded in), so
//! an event this server never folded in is lost for as long as the room
//! stays in memory: one delivered while the room had no member here yet
//! (its first join still reading the store), or one the store no longer
//! had when a lagging server filled a hole (a Redis stream is trimmed to
//! its length; the rules are kept whole apart from it). Either way the
//! room is marked stale, and its rules are read again and replace the
//! ones in memory: by the first join, before it lets its member in, or
//! else by the next tick ([`Hub::reload_stale_rules`]).

use std::sync::{Mutex, MutexGuard};

use super::super::super::backend::Kind;
use super::super::super::lock;
use super::super::super::protocol::Refusal;
use super::super::{Hub, Room, down};
use super::rules::Rules;

/// The most stale rooms read again in one tick: the rest wait for the
/// next (the tick also flushes presence, which should not wait long).
const RELOADS_PER_TICK: usize = 16;
/// How often one reload reads again when an event was folded in while
/// it read (moderation events are rare: twice in a row is rarer still).
const ATTEMPTS: usize = 4;

impl Hub {
    /// Marks `room`'s rules as possibly missing an event.
    pub(in super::super) fn rules_stale(&self, room: &str, r: &mut Room) {
        // Bumped so that a reload under way sees it and reads again.
        r.rules.get_or_insert_with(Box::default).generation += 1;
        self.remember_stale(room);
    }

    /// Puts `room` in the tick's set of stale rooms.
    fn remember_stale(&self, room: &str) {
        let mut stale = lock(&self.stale_rules);
        if !stale.contains(room) {
            stale.insert(room.to_owned());
        }
    }

    /// Whether `room` was marked stale (and no reload took it since).
    #[cfg(test)]
    pub(in super::super) fn is_stale(&self, room: &str) -> bool {
        lock(&self.stale_rules).contains(room)
    }

    /// For a join about to let its member in: `room` locked, unless it
    /// has no member yet and its rules are stale (then they are to be
    /// read again first), or `anyway`.
    pub(in super::super) fn unless_stale<'a>(
        &self,
        room: &str,
        room_arc: &'a Mutex<Room>,
        anyway: bool,
    ) -> Option<MutexGuard<'a, Room>> {
        let r = lock(room_arc);
        let stale = r.members.is_empty() && lock(&self.stale_rules).contains(room);
        (anyway || !stale).then_some(r)
    }

    /// Reads `room`'s rules from the store and replaces those in memory
    /// with their fold. What the store does not know is kept: the
    /// members' blocks, slow mode's stamps, an owner asked for. If an
    /// event was folded in (or missed) while the store was read, the read
    /// is done again; after [`ATTEMPTS`] the room stays stale, for the
    /// tick.
    pub(in super::super) async fn reload_rules(
        &self,
        room: &str,
        room_arc: &Mutex<Room>,
    ) -> Result<(), Refusal> {
        for _ in 0..ATTEMPTS {
            let before = {
                let r = lock(room_arc);
                lock(&self.stale_rules).remove(room);
                r.rules.as_ref().map_or(0, |x| x.generation)
            };
            let events = self.backend.rules(room).await.map_err(down)?;
            let mut r = lock(room_arc);
            let now = r.rules.as_ref().map_or(0, |x| x.generation);
            if now != before {
                continue;
            }
            if events.is_empty() && r.rules.is_none() {
                return Ok(()); // a room nobody moderates holds no rules
            }
            let mut fresh = Box::<Rules>::default();
            for e in &events {
                if let Kind::Moderation(a) = &e.kind {
                    fresh.apply(e.id, a);
                }
            }
            if let Some(old) = r.rules.take() {
                fresh.keep_local(*old);
            }
            let timed = fresh.has_timed();
            r.rules = Some(fresh);
            drop(r);
            if timed {
                self.keep_ticking(room);
            }
            return Ok(());
        }
        self.remember_stale(room);
        Ok(())
    }

    /// At the tick: reads the rules of up to [`RELOADS_PER_TICK`] stale
    /// rooms again (a room that left memory needs none: its next join
    /// reads them).
    pub async fn reload_stale_rules(&self) {
        let names: Vec<String> = lock(&self.stale_rules)
            .iter()
            .take(RELOADS_PER_TICK)
            .cloned()
            .collect();
        for name in names {
            let Some(room_arc) = self.find_room(&name) else {
                lock(&self.stale_rules).remove(&name);
                continue;
            };
            if self.reload_rules(&name, &room_arc).await.is_err() {
                // The store is down: try again at the next tick.
                self.remember_stale(&name);
            }
        }
    }
}
