//! A room's members as an ordered set, so that presence scales with the
//! room: a newcomer gets one page of it and the count, not the whole
//! roster, and pages through the rest with `members` (`docs/PROTOCOL.md`).
//!
//! The set is a `BTreeMap` keyed by nick in the order clients see (ASCII
//! case folded, then by bytes, so `Bob` and `bob` sit side by side and
//! a search for `b` finds both), holding how many sources hold the nick:
//! this server's connections count once, each other server once more. A
//! join or a leave is O(log N); the count is O(1); a page after a cursor
//! is O(log N + page), with or without a prefix. A cursor is a nick: a
//! page starts after it whether or not it is still present, so paging
//! while others come and go never repeats a member, and misses none that
//! stayed.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use super::super::lock;
use super::super::protocol::{ErrorCode, MAX_MEMBERS, Refusal};
use super::{Client, Hub};

/// The most nicks in one page: the roster a newcomer gets, and the
/// largest `members` reply ([`MAX_MEMBERS`]).
pub const MAX_PAGE: usize = MAX_MEMBERS as usize;

/// The most nicks one `presence` delta names; past it (a storm of joins
/// within one tick) the delta carries only the count and `truncated`,
/// and clients page again. The same bound as a page, for the same reasons.
pub const MAX_DELTA: usize = 100;

/// Past this many members a room is large: its `presence` events stop
/// naming who came and went and carry only the count (`count_only`), at
/// most once a [`COUNT_EVERY`]. Naming every join to every member costs
/// members × joins deliveries: 19,000 joins into one room, one delta per
/// 100 ms tick to every member, came to about 13 million frames. A large room's members page the list (`members`) when they
/// show it, which is what a list of thousands is for.
pub const LARGE_ROOM: usize = 1_000;

/// A large room leaves that mode only below this many members, so that a
/// room hovering around [`LARGE_ROOM`] does not switch at every join.
pub const LARGE_ROOM_UNTIL: usize = LARGE_ROOM * 9 / 10;

/// How often a large room tells its members its count, at most.
pub const COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A nick in the members' order: ASCII case folded, then by bytes (so the
/// order is total and the same on every server).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key(String);

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.iter()
            .map(u8::to_ascii_lowercase)
            .cmp(b.iter().map(u8::to_ascii_lowercase))
            .then_with(|| a.cmp(b))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One page of a room's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// The nicks, in order.
    pub members: Vec<String>,
    /// Everyone in the room, here and on other servers.
    pub count: usize,
    /// The cursor for the next page (the last nick of this one), if more
    /// follow.
    pub next: Option<String>,
    /// Of `members`, the guests, here or on other servers (issue 17;
    /// filled in by the hub when it marks guests).
    pub guests: Vec<String>,
}

/// Everyone in a room, here and elsewhere: see the module doc.
#[derive(Debug, Default)]
pub struct Roster {
    holders: BTreeMap<Key, u32>,
}

impl Roster {
    /// One more source holds `nick`; true if it was not present before.
    pub fn add(&mut self, nick: &str) -> bool {
        let held = self.holders.entry(Key(nick.to_owned())).or_insert(0);
        *held += 1;
        *held == 1
    }

    /// One source fewer holds `nick`; true if it is no longer present.
    pub fn remove(&mut self, nick: &str) -> bool {
        let key = Key(nick.to_owned());
        match self.holders.get_mut(&key) {
            Some(held) if *held > 1 => {
                *held -= 1;
                false
            }
            Some(_) => {
                self.holders.remove(&key);
                true
            }
            None => false,
        }
    }

    /// Whether `nick` is in the room.
    pub fn contains(&self, nick: &str) -> bool {
        self.holders.contains_key(&Key(nick.to_owned()))
    }

    /// How many are in the room.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    /// Up to `limit` nicks after `after` (from the start if `None`) that
    /// begin with `prefix` (ASCII case folded), and the cursor of the next
    /// page if there is one.
    pub fn page(&self, after: Option<&str>, prefix: &str, limit: usize) -> Members {
        // The smallest key folding to `prefix`: uppercase letters sort
        // before lowercase ones, so the all-uppercase spelling is first.
        let start = Key(prefix.to_ascii_uppercase());
        let lower = match after.map(|a| Key(a.to_owned())) {
            Some(a) if a > start => Bound::Excluded(a),
            _ => Bound::Included(start),
        };
        let folded = prefix.to_ascii_lowercase();
        let mut matching = self
            .holders
            .range((lower, Bound::Unbounded))
            .map(|(k, _)| &k.0)
            .take_while(|n| {
                n.len() >= folded.len() && n[..folded.len()].eq_ignore_ascii_case(&folded)
            });
        let members: Vec<String> = matching.by_ref().take(limit).cloned().collect();
        let next = match matching.next() {
            Some(_) => members.last().cloned(),
            None => None,
        };
        Members {
            members,
            count: self.len(),
            next,
            guests: Vec::new(),
        }
    }
}

impl Hub {
    /// A page of `room`'s members for a `members` request: see
    /// [`Roster::page`]. Only a member of the room may ask.
    pub fn members(
        &self,
        client: &Client,
        room: &str,
        after: Option<&str>,
        prefix: &str,
        limit: usize,
    ) -> Result<Members, Refusal> {
        let not_in = || Refusal::new(ErrorCode::NotInRoom, format!("join {room} first"));
        if !client.in_room(room) {
            return Err(not_in());
        }
        let room_arc = self.find_room(room).ok_or_else(not_in)?;
        let mut page = lock(&room_arc)
            .roster
            .page(after, prefix, limit.min(MAX_PAGE));
        page.guests = self.guests_among(&page.members);
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(nicks: &[&str]) -> Roster {
        let mut r = Roster::default();
        for n in nicks {
            r.add(n);
        }
        r
    }

    #[test]
    fn members_are_ordered_case_folded_then_by_bytes() {
        let r = roster(&["bob", "Alice", "alice", "Bob", "carol", "_x", "9"]);
        assert_eq!(
            r.page(None, "", 10).members,
            ["9", "_x", "Alice", "alice", "Bob", "bob", "carol"]
        );
    }

    #[test]
    fn a_nick_stays_while_any_source_holds_it() {
        let mut r = Roster::default();
        assert!(r.add("bob"));
        assert!(!r.add("bob"), "a second server holds it too");
        assert!(!r.remove("bob"));
        assert!(r.contains("bob"));
        assert!(r.remove("bob"));
        assert!(!r.contains("bob"));
        assert!(!r.remove("bob"), "removing the absent changes nothing");
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn a_prefix_finds_every_case_and_stops_at_its_end() {
        let r = roster(&["al", "AL", "Alice", "alex", "amy", "ak", "bob"]);
        let page = r.page(None, "Al", 10);
        assert_eq!(page.members, ["AL", "al", "alex", "Alice"]);
        assert_eq!(page.next, None);
        assert_eq!(page.count, 7, "the count is the room's");
        let first = r.page(None, "al", 2);
        assert_eq!(first.members, ["AL", "al"]);
        let rest = r.page(first.next.as_deref(), "al", 2);
        assert_eq!(rest.members, ["alex", "Alice"]);
        assert_eq!(rest.next, None, "nothing more matches");
        assert!(r.page(None, "z", 10).members.is_empty());
    }

    #[test]
    fn a_cursor_that_left_still_places_the_next_page() {
        let mut r = roster(&["a", "b", "c", "d"]);
        let first = r.page(None, "", 2);
        assert_eq!(first.next.as_deref(), Some("b"));
        r.remove("b");
        r.add("bb");
        assert_eq!(r.page(first.next.as_deref(), "", 2).members, ["bb", "c"]);
    }
}
