//! The hub's side of the seam: what it does with what its backend tells
//! it ([`HubEvents`]), whichever backend that is. Stored events are
//! delivered here, in id order, with holes filled first; presence from
//! other servers updates the rosters; signals are relayed.
//!
//! A child module of the hub, so it works on the same rooms under the same
//! lock order (a room, then the rooms map; never the other way round).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;

use crate::proto::{CloseCode, CloseFrame, PreparedFrame};

use super::super::backend::{
    Conversation, Event, HubEvents, Kind as EventKind, Peer, PresenceChange, Scope, Signal, Span,
};
use super::super::lock;
use super::super::protocol::ServerMsg;
use super::lifecycle::event_json;
use super::moderation::hidden_author;
use super::reads::is_message;
use super::{Hub, Kind, Room, Standing};

impl HubEvents for Hub {
    fn stored(&self, event: Event) {
        match &event.conv {
            Conversation::Room(_) => {
                // Mentions are derived where the event is delivered: the
                // stored event reaches every server, each tells its own.
                let mentioning =
                    (is_message(&event) && event.text.contains('@')).then(|| event.clone());
                self.deliver(event);
                if let Some(event) = mentioning {
                    self.notify_mentions(&event);
                }
            }
            Conversation::Dm(..) => {
                // To every connection of both parties, each seeing the
                // event as its own (an edit's `dm` is the other party).
                // Encoded before the users lock is taken: every session's
                // lookup waits on that lock.
                // Issue 17: none of a blocked user's messages, edits or
                // reactions to the blocker (as in a room's fan-out), even
                // one the store took before the block reached it.
                let hidden =
                    |me: &str| hidden_author(&event).is_some_and(|a| self.blocks_author(me, a));
                let frames: Vec<(&str, PreparedFrame)> = event
                    .conv
                    .parties()
                    .into_iter()
                    .filter(|&(me, _)| !hidden(me))
                    .map(|(me, _)| (me, self.prepare(event_json(&event, Some(me)))))
                    .collect();
                let users = lock(&self.users);
                for (me, frame) in &frames {
                    // A nick an account's user holds is the account's: a
                    // guest still holding it (until its close) reads none.
                    let verified = users.holders(me).any(|c| c.standing != Standing::Guest);
                    for c in users
                        .holders(me)
                        .filter(|c| !verified || c.standing != Standing::Guest)
                    {
                        c.outbox.push(frame, Kind::Chat, &self.metrics);
                    }
                }
            }
        }
    }

    fn filled(&self, conv: &Conversation, span: Span, events: Vec<Event>) {
        let Conversation::Room(room) = conv else {
            return; // DMs are delivered as they come: never filled
        };
        let Some(room_arc) = self.find_room(room) else {
            return;
        };
        let mut r = lock(&room_arc);
        r.filling = false;
        self.mark(room);
        // Only what was asked for: anything else comes, in order, by `stored`.
        for e in events {
            if span.contains(e.id) && e.id > r.last_id {
                r.pending.insert(e.id, e);
            }
        }
        if r.members.is_empty() {
            // Everyone left while the fill ran: as in `deliver`, nothing
            // waits for anyone, so the room may leave memory.
            if let Some((&newest, _)) = r.pending.last_key_value() {
                r.last_id = r.last_id.max(newest);
            }
            if r.pending.values().any(is_moderation) {
                self.rules_stale(room, &mut r);
            }
            r.pending.clear();
        } else {
            // Whatever the store no longer has (a Redis stream trimmed
            // past its length, a local batch that failed) is lost for live
            // delivery: skip it rather than wait forever.
            let first = r.pending.first_key_value().map(|(&k, _)| k);
            if let Some(first) = first
                && first > r.last_id + 1
                && first <= span.upto + 1
            {
                r.last_id = first - 1;
                // The hole may have held a rule: the store keeps the
                // rules whole, apart from the stream.
                self.rules_stale(room, &mut r);
            }
            self.drain(room, &mut r);
        }
    }

    fn signal(&self, signal: Signal) {
        match signal {
            Signal::Typing { room, user } => {
                // Looked up, not created: typing in a room nobody here is
                // in needs no entry.
                let Some(room_arc) = self.find_room(&room) else {
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
                // Issue 17: not to those who block the typist (only the
                // room's blockers are asked).
                let hidden: BTreeSet<&String> = r
                    .blockers()
                    .into_iter()
                    .flatten()
                    .filter(|b| self.blocks_author(b, &user))
                    .collect();
                for member in r
                    .members
                    .values()
                    .filter(|m| m.nick != user && !hidden.contains(&m.nick))
                {
                    member.outbox.push(&frame, Kind::Ephemeral, &self.metrics);
                }
            }
            Signal::Receipt { conv, user, id } => self.heard_receipt(conv, user, id),
            Signal::Logout {
                nick,
                renamed,
                session,
                guest,
            } => self.close_user(&nick, renamed.as_deref().zip(session.as_deref()), guest),
            Signal::Claimed { nick } => self.close_guests_like(&nick),
            Signal::Revoked { nick, session } => self.close_session(&nick, &session),
            Signal::Banned { nick } => self.close_banned(&nick),
            Signal::Blocks { nick } => self.blocks_changed(nick),
            Signal::Replaced { nick } => {
                for c in lock(&self.users).holders(&nick) {
                    c.outbox.close(CloseFrame::new(
                        CloseCode::try_from(4000).unwrap_or(CloseCode::NORMAL),
                        "replaced by a newer connection",
                    ));
                }
            }
        }
    }

    fn presence(&self, peer: &str, scope: &Scope, change: PresenceChange) {
        let room = match scope {
            Scope::Online => return apply(&mut lock(&self.remote_users), peer, change),
            Scope::Guests => return apply(&mut lock(&self.remote_guests), peer, change),
            Scope::Room(room) => room,
        };
        // Looked up, not created: a room nobody here is in needs no
        // roster (a first join asks the backend).
        let Some(room_arc) = self.find_room(room) else {
            return;
        };
        let mut r = lock(&room_arc);
        let mut held = r.remote.remove(peer).unwrap_or_default();
        let mut changed = false;
        match change {
            // All of its nicks: what changed is the difference from what
            // it said before (a resync, or a server's first word).
            PresenceChange::All(nicks) => {
                let nicks: BTreeSet<String> = nicks.into_iter().collect();
                for nick in nicks.difference(&held) {
                    r.hold(nick);
                    changed = true;
                }
                for nick in held.difference(&nicks) {
                    r.release(nick);
                    changed = true;
                }
                held = nicks;
            }
            // Only what changed: the cost is the change, not the room. A
            // nick told twice (a delta replayed after a resync) is a no-op.
            PresenceChange::Delta { joined, left } => {
                for nick in joined {
                    if !held.contains(&nick) {
                        r.hold(&nick);
                        held.insert(nick);
                        changed = true;
                    }
                }
                for nick in left {
                    if held.remove(&nick) {
                        r.release(&nick);
                        changed = true;
                    }
                }
            }
        }
        if !held.is_empty() {
            r.remote.insert(peer.to_owned(), held);
        }
        if changed {
            self.mark(room);
        }
    }

    fn peer_gone(&self, peer: &str) {
        lock(&self.remote_users).remove(peer);
        lock(&self.remote_guests).remove(peer);
        let rooms: Vec<_> = lock(&self.rooms)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, room_arc) in rooms {
            let mut r = lock(&room_arc);
            if let Some(nicks) = r.remote.remove(peer) {
                for nick in &nicks {
                    r.release(nick);
                }
                self.mark(&name);
            }
        }
    }

    fn rooms(&self) -> Vec<String> {
        self.rooms_with_members()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    fn stream_head(&self, room: &str, last: u64) {
        let Some(room_arc) = self.find_room(room) else {
            return;
        };
        let mut r = lock(&room_arc);
        let known = r.pending.last_key_value().map_or(r.last_id, |(&k, _)| k);
        if last > known && !r.filling && !r.members.is_empty() {
            r.filling = true;
            self.backend.fill(
                Conversation::Room(room.to_owned()),
                Span {
                    after: r.last_id,
                    upto: last,
                },
            );
        }
    }

    fn republish(&self) {
        for (name, room_arc) in self.rooms_with_members() {
            lock(&room_arc).local_all = true;
            self.mark(&name);
        }
        self.users_all.store(true, Ordering::Relaxed);
    }

    fn is_shutting_down(&self) -> bool {
        Hub::is_shutting_down(self)
    }
}

impl Hub {
    /// Sends a room event to its members, but not to those who block
    /// its author (issue 17): only the room's blockers are checked, so a
    /// room where nobody blocks anyone pays nothing.
    fn send_filtered(&self, r: &Room, e: &Event, frame: &PreparedFrame) {
        let hidden = match (r.blockers(), hidden_author(e)) {
            (Some(blockers), Some(author)) => blockers
                .iter()
                .filter(|b| self.blocks_author(b, author))
                .cloned()
                .collect::<BTreeSet<String>>(),
            _ => BTreeSet::new(),
        };
        if hidden.is_empty() {
            return r.send_to_members(frame, Kind::Chat, &self.metrics);
        }
        for member in r.members.values().filter(|m| !hidden.contains(&m.nick)) {
            member.outbox.push(frame, Kind::Chat, &self.metrics);
        }
    }

    /// Delivers a stored room event in id order: a hole before it is
    /// filled by the backend first.
    fn deliver(&self, event: Event) {
        let Conversation::Room(room) = &event.conv else {
            return;
        };
        let Some(room_arc) = self.find_room(room) else {
            return; // nobody here is in it: a later join asks the backend
        };
        let room = room.clone();
        let mut r = lock(&room_arc);
        if event.id <= r.last_id {
            return; // already delivered, or history for everyone here
        }
        if r.members.is_empty() {
            // Nobody to deliver to: just keep count (a later join asks the
            // backend anyway), and let the tick see whether the room can
            // leave memory. A rule is not folded in here, out of order
            // with the store's read by a join under way: the rules are
            // read again instead.
            if is_moderation(&event) {
                self.rules_stale(&room, &mut r);
            }
            r.last_id = event.id;
            r.pending.clear();
            self.mark(&room);
            return;
        }
        r.pending.insert(event.id, event);
        self.drain(&room, &mut r);
    }

    /// Sends the pending events that follow `last_id` without a hole, and
    /// asks for a fill if a hole is left.
    fn drain(&self, room: &str, r: &mut Room) {
        while let Some(entry) = r.pending.first_entry() {
            if *entry.key() != r.last_id + 1 {
                break;
            }
            let e = entry.remove();
            r.last_id = e.id;
            self.on_moderation(room, r, &e);
            let frame = self.prepare(event_json(&e, None));
            let removed = self.take_removed(room, r, &e);
            self.send_filtered(r, &e, &frame);
            for c in removed {
                c.outbox.push(&frame, Kind::Chat, &self.metrics);
            }
            self.after_moderation(room, r, &e);
        }
        if let (Some(&next), false) = (r.pending.keys().next(), r.filling) {
            r.filling = true;
            self.backend.fill(
                Conversation::Room(room.to_owned()),
                Span {
                    after: r.last_id,
                    upto: next - 1,
                },
            );
        }
    }
}

/// Whether `e` is a moderation event (a rule, or a kick).
fn is_moderation(e: &Event) -> bool {
    matches!(e.kind, EventKind::Moderation(_))
}

/// What `peer` says of its nicks in a server-wide scope (online, guests),
/// applied to what `held` keeps of each other server's.
fn apply(held: &mut HashMap<Peer, BTreeSet<String>>, peer: &str, change: PresenceChange) {
    match change {
        PresenceChange::All(nicks) => {
            held.insert(peer.to_owned(), nicks.into_iter().collect());
        }
        PresenceChange::Delta { joined, left } => {
            let nicks = held.entry(peer.to_owned()).or_default();
            nicks.extend(joined);
            for nick in &left {
                nicks.remove(nick);
            }
            if nicks.is_empty() {
                held.remove(peer);
            }
        }
    }
}
