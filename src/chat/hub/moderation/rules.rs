//! A room's rules in memory: who owns and moderates it, its topic and
//! slow mode, its mutes and bans, and which of its members here block
//! someone. Held by a [`Room`](super::super::Room) only once it has any
//! (`Option<Box<Rules>>`): a room nobody moderates costs one pointer.
//!
//! The rules are the fold of the room's moderation events, in id order
//! ([`Rules::apply`]): loaded with the room when it comes into memory,
//! then updated by each one delivered. An event is applied once even if
//! it is both loaded and delivered (`applied`). One this server missed
//! makes the room stale, and its rules are read again whole (`reload`).
//!
//! They are bounded ([`Rules::fits`]): at most [`MAX_ROOM_RESTRICTIONS`]
//! mutes and bans, at most [`MAX_ROOM_ROLES`] owners and moderators. The
//! presence tick drops the mutes and bans that ended, and costs nothing
//! until the first of them ends (`next_end`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::super::super::protocol::{
    Action, ErrorCode, MAX_ROOM_RESTRICTIONS, MAX_ROOM_ROLES, MAX_SLOW_STAMPS, ModAction, Refusal,
    Role,
};

/// A room's rules (see the module doc).
#[derive(Debug, Default)]
pub struct Rules {
    /// Its owners.
    pub owners: BTreeSet<String>,
    /// Its moderators.
    pub moderators: BTreeSet<String>,
    /// Its topic (empty: none).
    pub topic: String,
    /// Slow mode: seconds between one user's messages (0: off).
    pub slow: u64,
    /// Muted nicks, until when (ms; none: until lifted).
    pub mutes: BTreeMap<String, Option<u64>>,
    /// Banned nicks, until when.
    pub bans: BTreeMap<String, Option<u64>>,
    /// With slow mode on: when each nick last posted (ms), for those
    /// who posted within the interval (at most [`MAX_SLOW_STAMPS`]; older
    /// ones decide nothing and are dropped at the tick).
    pub last_post: HashMap<String, u64>,
    /// When `last_post` was last rid of its old stamps (ms).
    pub stamps_pruned: u64,
    /// Nicks of members here that block someone: only their connections
    /// are checked at fan-out (`super::Hub::send_filtered`).
    pub blockers: BTreeSet<String>,
    /// The earliest end of a timed mute or ban (ms): the tick does
    /// nothing before it.
    pub next_end: Option<u64>,
    /// The last moderation event's id folded in.
    pub applied: u64,
    /// An owner was asked for (the first verified join): not again until
    /// its event comes back.
    pub owner_asked: bool,
    /// The room has had an owner (an owner's event, or an `ownerless`
    /// one): its next verified joiner does not claim it.
    pub ever_owned: bool,
    /// Bumped by each event folded in, and by each one missed (see
    /// `reload`): a reload that sees it change while it reads the store
    /// reads again.
    pub generation: u64,
}

pub use super::super::super::backend::moderation::in_force;

impl Rules {
    /// Folds in moderation event `id`; false if it was folded in already.
    pub fn apply(&mut self, id: u64, a: &ModAction) -> bool {
        if id <= self.applied {
            return false;
        }
        self.applied = id;
        self.generation += 1;
        let user = a.user.clone().unwrap_or_default();
        match a.action {
            Action::Kick => {}
            Action::Ban => {
                self.ends_at(a.until);
                self.bans.insert(user, a.until);
            }
            Action::Unban => {
                self.bans.remove(&user);
            }
            Action::Mute => {
                self.ends_at(a.until);
                self.mutes.insert(user, a.until);
            }
            Action::Unmute => {
                self.mutes.remove(&user);
            }
            Action::Slow => {
                self.slow = a.seconds.unwrap_or(0);
                if self.slow == 0 {
                    self.last_post.clear();
                }
            }
            Action::Topic => self.topic = a.topic.clone().unwrap_or_default(),
            Action::Role => {
                self.owners.remove(&user);
                self.moderators.remove(&user);
                self.ever_owned |= a.ownerless;
                match a.role {
                    Some(Role::Owner) => {
                        self.owners.insert(user);
                        self.owner_asked = false;
                        self.ever_owned = true;
                    }
                    Some(Role::Moderator) => {
                        self.moderators.insert(user);
                    }
                    _ => {}
                }
            }
        }
        true
    }

    /// Takes from `old` (the rules these replace, read again from the
    /// store) what the store does not keep: which members here block
    /// someone, slow mode's stamps, an owner asked for, the generation.
    pub fn keep_local(&mut self, old: Rules) {
        self.blockers = old.blockers;
        self.last_post = old.last_post;
        self.stamps_pruned = old.stamps_pruned;
        self.owner_asked = old.owner_asked && self.owners.is_empty();
        self.generation = old.generation;
    }

    /// Whether `a` (a `role` event) leaves this room, which has had an
    /// owner, with none: then it is stored `ownerless`.
    pub fn leaves_ownerless(&self, a: &ModAction) -> bool {
        let user = a.user.as_deref().unwrap_or_default();
        self.ever_owned
            && a.action == Action::Role
            && a.role != Some(Role::Owner)
            && self.owners.iter().all(|o| o == user)
    }

    /// Whether the room's next verified joiner is made its owner: it has
    /// never had one, and none was asked for yet.
    pub fn claimable(&self) -> bool {
        self.owners.is_empty() && !self.owner_asked && !self.ever_owned
    }

    /// `nick`'s role by these rules alone (admins are the hub's to know).
    pub fn role(&self, nick: &str) -> Role {
        if self.owners.contains(nick) {
            Role::Owner
        } else if self.moderators.contains(nick) {
            Role::Moderator
        } else {
            Role::Member
        }
    }

    /// `nick`'s mute in force at `now`: `Some(until)`.
    pub fn muted(&self, nick: &str, now: u64) -> Option<Option<u64>> {
        self.mutes
            .get(nick)
            .copied()
            .filter(|until| in_force(*until, now))
    }

    /// Whether `nick` is banned from the room at `now`.
    pub fn banned(&self, nick: &str, now: u64) -> bool {
        self.bans
            .get(nick)
            .is_some_and(|until| in_force(*until, now))
    }

    /// Whether a mute or ban here ends by itself.
    pub fn has_timed(&self) -> bool {
        self.next_end.is_some()
    }

    /// Notes a mute or ban ending at `until`.
    fn ends_at(&mut self, until: Option<u64>) {
        if let Some(u) = until {
            self.next_end = Some(self.next_end.map_or(u, |n| n.min(u)));
        }
    }

    /// Drops the mutes and bans over at `now`; the nicks whose mute ended.
    /// Nothing to do (and nothing scanned) before the first end.
    pub fn expire(&mut self, now: u64) -> Vec<String> {
        if self.next_end.is_none_or(|end| end > now) {
            return Vec::new();
        }
        let ended: Vec<String> = self
            .mutes
            .iter()
            .filter(|(_, until)| !in_force(**until, now))
            .map(|(nick, _)| nick.clone())
            .collect();
        for nick in &ended {
            self.mutes.remove(nick);
        }
        self.bans.retain(|_, until| in_force(*until, now));
        self.next_end = self
            .mutes
            .values()
            .chain(self.bans.values())
            .flatten()
            .min()
            .copied();
        ended
    }

    /// Whether the tick has anything to do here: a timed mute or ban, or
    /// slow-mode stamps to drop once they are old.
    pub fn busy(&self) -> bool {
        self.has_timed() || !self.last_post.is_empty()
    }

    /// The tick at `now`: the mutes and bans that ended are dropped
    /// ([`expire`](Self::expire)), and, at most once per slow-mode
    /// interval, the stamps older than the interval. The nicks whose mute
    /// ended.
    pub fn tick(&mut self, now: u64) -> Vec<String> {
        let every = self.slow.saturating_mul(1000);
        if !self.last_post.is_empty() && now >= self.stamps_pruned.saturating_add(every) {
            self.prune_stamps(now);
        }
        self.expire(now)
    }

    /// Drops the slow-mode stamps older than the interval at `now`.
    fn prune_stamps(&mut self, now: u64) {
        let every = self.slow.saturating_mul(1000);
        self.last_post
            .retain(|_, last| now < last.saturating_add(every));
        self.stamps_pruned = now;
    }

    /// Slow mode for a post by `nick` at `now` (slow mode on, `nick` not
    /// exempt): refused (`slow_mode`) sooner than the interval after its
    /// last post, or while [`MAX_SLOW_STAMPS`] others have posted within
    /// the interval; else its stamp is kept.
    pub fn slow_post(&mut self, nick: &str, now: u64) -> Result<(), Refusal> {
        let every = self.slow.saturating_mul(1000);
        if let Some(&last) = self.last_post.get(nick)
            && now < last.saturating_add(every)
        {
            let left = (last + every - now).div_ceil(1000);
            return Err(Refusal::new(
                ErrorCode::SlowMode,
                format!(
                    "slow mode: wait {left} s more (one message per {} s)",
                    self.slow
                ),
            ));
        }
        if self.last_post.len() >= MAX_SLOW_STAMPS && !self.last_post.contains_key(nick) {
            self.prune_stamps(now);
            if self.last_post.len() >= MAX_SLOW_STAMPS {
                return Err(Refusal::new(
                    ErrorCode::SlowMode,
                    format!(
                        "slow mode: {MAX_SLOW_STAMPS} users posted here in the last {} s; wait",
                        self.slow
                    ),
                ));
            }
        }
        self.last_post.insert(nick.to_owned(), now);
        Ok(())
    }

    /// Whether `a` keeps the room within its bounds: a mute or ban of a
    /// nick not muted (banned) yet needs room among the
    /// [`MAX_ROOM_RESTRICTIONS`], an owner or moderator named anew among
    /// the [`MAX_ROOM_ROLES`]; lifting and replacing always fit.
    pub fn fits(&self, a: &ModAction) -> Result<(), Refusal> {
        let user = a.user.as_deref().unwrap_or_default();
        let restricted = self.mutes.len() + self.bans.len();
        let roles = self.owners.len() + self.moderators.len();
        let held = match a.action {
            Action::Mute => self.mutes.contains_key(user),
            Action::Ban => self.bans.contains_key(user),
            _ => true,
        };
        match a.action {
            Action::Mute | Action::Ban if restricted >= MAX_ROOM_RESTRICTIONS && !held => {
                Err(Refusal::new(
                    ErrorCode::RulesFull,
                    format!(
                        "the room has {MAX_ROOM_RESTRICTIONS} mutes and bans in force already; lift one first"
                    ),
                ))
            }
            Action::Role
                if matches!(a.role, Some(Role::Owner | Role::Moderator))
                    && roles >= MAX_ROOM_ROLES
                    && self.role(user) == Role::Member =>
            {
                Err(Refusal::new(
                    ErrorCode::RulesFull,
                    format!(
                        "the room has {MAX_ROOM_ROLES} owners and moderators already; make one a member first"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(action: Action, user: &str) -> ModAction {
        let mut a = ModAction::new(action);
        a.user = Some(user.into());
        a
    }

    #[test]
    fn the_rules_are_the_fold_of_the_events_each_applied_once() {
        let mut rules = Rules::default();
        let mut owner = act(Action::Role, "ann");
        owner.role = Some(Role::Owner);
        assert!(rules.apply(1, &owner));
        let mut muted = act(Action::Mute, "bob");
        muted.until = Some(1_000);
        assert!(rules.apply(2, &muted));
        assert!(rules.apply(3, &act(Action::Ban, "eve")));
        assert!(!rules.apply(3, &act(Action::Unban, "eve")), "id 3 twice");
        assert_eq!(rules.role("ann"), Role::Owner);
        assert_eq!(rules.muted("bob", 999), Some(Some(1_000)));
        assert_eq!(rules.muted("bob", 1_000), None, "over at its end");
        assert!(rules.banned("eve", u64::MAX));
        assert!(rules.has_timed());
        assert_eq!(rules.next_end, Some(1_000));
        assert!(
            rules.expire(999).is_empty(),
            "nothing over before the first end"
        );
        assert_eq!(rules.mutes.len(), 1);
        assert_eq!(rules.expire(1_000), vec!["bob".to_owned()]);
        assert!(rules.mutes.is_empty(), "the ended mute is gone");
        assert_eq!(rules.next_end, None);
        assert!(!rules.has_timed());
        assert!(rules.apply(4, &act(Action::Unban, "eve")));
        assert!(!rules.banned("eve", 0));
        let mut demoted = act(Action::Role, "ann");
        demoted.role = Some(Role::Member);
        assert!(rules.apply(5, &demoted));
        assert_eq!(rules.role("ann"), Role::Member);
    }

    #[test]
    fn a_room_that_had_an_owner_is_never_claimable_again_even_refolded() {
        use super::super::super::super::backend::{Conversation, Event, Kind};
        let mut rules = Rules::default();
        assert!(rules.claimable(), "a new room");
        let mut owner = act(Action::Role, "ann");
        owner.role = Some(Role::Owner);
        let mut demoted = act(Action::Role, "ann");
        demoted.role = Some(Role::Member);
        assert!(!rules.leaves_ownerless(&owner));
        assert!(!rules.leaves_ownerless(&demoted), "no owner yet");
        rules.apply(1, &owner);
        assert!(!rules.claimable());
        assert!(rules.leaves_ownerless(&demoted), "ann is the only owner");
        demoted.ownerless = true;
        rules.apply(2, &demoted);
        assert!(rules.owners.is_empty());
        assert!(!rules.claimable(), "owned once");
        // What a store keeps of those two events, folded again.
        let as_event = |id, a: &ModAction| Event {
            conv: Conversation::Room("r".into()),
            id,
            from: "root".into(),
            text: a.to_text(),
            ts: 1,
            kind: Kind::Moderation(Box::new(a.clone())),
        };
        let kept = super::super::super::super::backend::moderation::current(
            vec![as_event(1, &owner), as_event(2, &demoted)],
            0,
        );
        assert_eq!(kept.len(), 1, "the ownerless demotion is a rule in force");
        let mut again = Rules::default();
        for e in &kept {
            if let Kind::Moderation(a) = &e.kind {
                again.apply(e.id, a);
            }
        }
        assert!(again.owners.is_empty());
        assert!(!again.claimable());
        // With another owner left, a demotion leaves the room owned.
        let mut bob = act(Action::Role, "bob");
        bob.role = Some(Role::Owner);
        rules.apply(3, &owner);
        rules.apply(4, &bob);
        assert!(!rules.leaves_ownerless(&act(Action::Role, "ann")));
    }

    #[test]
    fn slow_mode_keeps_at_most_the_bound_of_stamps_within_its_interval() {
        let mut rules = Rules {
            slow: 1,
            ..Rules::default()
        };
        for i in 0..MAX_SLOW_STAMPS {
            rules.slow_post(&format!("n{i}"), 10_000).unwrap();
        }
        let e = rules.slow_post("n0", 10_500).unwrap_err();
        assert_eq!(e.code, ErrorCode::SlowMode);
        assert!(e.message.contains("wait 1 s"), "{}", e.message);
        // Full: one more nick waits until the oldest stamps are over.
        let e = rules.slow_post("one-more", 10_999).unwrap_err();
        assert_eq!(e.code, ErrorCode::SlowMode);
        assert_eq!(rules.last_post.len(), MAX_SLOW_STAMPS);
        rules.slow_post("one-more", 11_000).unwrap();
        assert_eq!(rules.last_post.len(), 1, "the old ones dropped");
        // The tick drops old stamps too, at most once per interval.
        assert!(rules.tick(11_500).is_empty());
        assert_eq!(rules.last_post.len(), 1);
        rules.tick(12_000);
        assert!(rules.last_post.is_empty());
        assert!(!rules.busy());
    }
}
