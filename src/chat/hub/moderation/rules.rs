//! A room's rules in memory: who owns and moderates it, its topic and
//! slow mode, its mutes and bans, and which of its members here block
//! someone. Held by a [`Room`](super::super::Room) only once it has any
//! (`Option<Box<Rules>>`): a room nobody moderates costs one pointer.
//!
//! The rules are the fold of the room's moderation events, in id order
//! ([`Rules::apply`]): loaded with the room when it comes into memory,
//! then updated by each one delivered. An event is applied once even if
//! it is both loaded and delivered (`applied`).
//!
//! They are bounded ([`Rules::fits`]): at most [`MAX_ROOM_RESTRICTIONS`]
//! mutes and bans, at most [`MAX_ROOM_ROLES`] owners and moderators. The
//! presence tick drops the mutes and bans that ended, and costs nothing
//! until the first of them ends (`next_end`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::super::super::protocol::{
    Action, ErrorCode, MAX_ROOM_RESTRICTIONS, MAX_ROOM_ROLES, ModAction, Refusal, Role,
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
    /// With slow mode on: when each nick last posted (ms).
    pub last_post: HashMap<String, u64>,
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
}

pub use super::super::super::backend::moderation::in_force;

impl Rules {
    /// Folds in moderation event `id`; false if it was folded in already.
    pub fn apply(&mut self, id: u64, a: &ModAction) -> bool {
        if id <= self.applied {
            return false;
        }
        self.applied = id;
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
                match a.role {
                    Some(Role::Owner) => {
                        self.owners.insert(user);
                        self.owner_asked = false;
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
}
