//! Read marks, receipts, unread counts, mentions and users with several
//! connections through the hub, on the memory backend.

use serde_json::json;

use super::super::super::backend::Conversation;
use super::super::super::protocol::{ErrorCode, MAX_UNREAD};
use super::super::Standing;
use super::{frames, hub, in_general, kinds, rt};

fn general() -> Conversation {
    Conversation::Room("general".into())
}

/// Several reads within a tick are one receipt, the furthest, to every
/// member (the reader too); a read that does not move the mark sends
/// none; a read past the newest, or in a room the reader is not in, is
/// refused.
#[test]
fn reads_within_a_tick_are_one_receipt_and_a_mark_never_moves_back() {
    let (hub, memory) = hub();
    let [alice, bob] = in_general(&hub, ["alice", "bob"]);
    for i in 1..=3 {
        hub.post(&bob, "general", &format!("m{i}"), &format!("c{i}"))
            .unwrap();
    }
    memory.commit();
    frames(&alice);
    frames(&bob);
    let rt = rt();
    for id in [1, 3, 2] {
        rt.block_on(hub.read(&alice, general(), id)).unwrap();
    }
    assert!(frames(&bob).is_empty(), "not before the tick");
    hub.flush_receipts();
    let receipt = json!({"type": "receipt", "room": "general", "user": "alice", "id": 3});
    assert_eq!(frames(&bob), std::slice::from_ref(&receipt));
    assert_eq!(frames(&alice), [receipt], "the reader's own tabs learn it");
    rt.block_on(hub.read(&alice, general(), 2)).unwrap();
    rt.block_on(hub.read(&alice, Conversation::dm("alice", "nobody"), 0))
        .unwrap();
    hub.flush_receipts();
    assert!(frames(&bob).is_empty(), "a mark never moves back");
    assert!(
        frames(&alice).is_empty(),
        "nor does a read of nothing (id 0)"
    );
    let beyond = rt.block_on(hub.read(&alice, general(), 4)).unwrap_err();
    assert_eq!(beyond.code, ErrorCode::BeyondNewest);
    let elsewhere = rt
        .block_on(hub.read(&alice, Conversation::Room("side".into()), 1))
        .unwrap_err();
    assert_eq!(elsewhere.code, ErrorCode::NotInRoom);
    let marks = rt.block_on(hub.receipts_of(&general()));
    assert_eq!((marks[0].user.as_str(), marks[0].id), ("alice", 3));
}

/// A mention reaches every connection of a member, in the room or not,
/// and never someone outside the room, nor the author.
#[test]
fn a_mention_reaches_members_only_on_every_connection() {
    let (hub, memory) = hub();
    let [alice, bob] = in_general(&hub, ["alice", "bob"]);
    let carol = hub.register(Some("carol"), None, false);
    let tab = hub
        .admit(Some("alice"), Some(&alice.session), false, Standing::Guest)
        .unwrap();
    assert_eq!(tab.nick, "alice", "the session adds a connection");
    hub.post(&bob, "general", "@alice @carol @bob hi", "c1")
        .unwrap();
    memory.commit();
    let mention = json!({"type": "mention", "room": "general", "id": 1, "from": "bob"});
    assert_eq!(
        kinds(&frames(&alice)),
        [("msg".into(), 1), ("mention".into(), 1)]
    );
    assert_eq!(frames(&tab), [mention]);
    assert!(frames(&carol).is_empty());
    assert_eq!(kinds(&frames(&bob)), [("msg".into(), 1), ("ack".into(), 1)]);
}

/// Counts stop at the cap; only others' messages count; mentions are
/// counted among them.
#[test]
fn unread_counts_only_others_messages_up_to_the_cap() {
    let (hub, memory) = hub();
    let [alice, bob] = in_general(&hub, ["alice", "bob"]);
    let rt = rt();
    hub.post(&alice, "general", "mine", "a").unwrap();
    hub.post(&bob, "general", "hey @alice", "b").unwrap();
    hub.post(&bob, "general", "hey", "c").unwrap();
    memory.commit();
    let count = rt.block_on(hub.count("alice", &general(), 0)).unwrap();
    assert_eq!((count.unread, count.mentions), (2, 1));
    assert_eq!(count.newest, Some((3, "bob".to_owned())));
    for i in 0..MAX_UNREAD + 5 {
        hub.post(&bob, "general", "x", &format!("x{i}")).unwrap();
    }
    memory.commit();
    let count = rt.block_on(hub.count("alice", &general(), 0)).unwrap();
    assert_eq!(count.unread, MAX_UNREAD);
    // A room with a read mark is counted in welcome; one without is not.
    rt.block_on(hub.read(&alice, general(), 3)).unwrap();
    let unread = rt.block_on(hub.unread("alice", &["general".into(), "side".into()]));
    assert_eq!(unread.unread.get("general"), Some(&MAX_UNREAD));
    assert_eq!(unread.unread.get("side"), None);
}

/// A user holds at most `MAX_CONNECTIONS` connections; others' nicks
/// are not affected.
#[test]
fn a_user_holds_a_bounded_number_of_connections() {
    let (hub, _) = hub();
    let first = hub
        .admit(Some("alice"), None, false, Standing::Guest)
        .unwrap();
    let session = first.session.clone();
    let tabs: Vec<_> = (1..super::super::users::MAX_CONNECTIONS)
        .map(|_| {
            hub.admit(Some("alice"), Some(&session), false, Standing::Guest)
                .unwrap()
        })
        .collect();
    assert!(
        tabs.iter()
            .all(|t| t.nick == "alice" && t.session == session)
    );
    let refused = hub
        .admit(Some("alice"), Some(&session), false, Standing::Guest)
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::TooManyConnections);
    let other = hub
        .admit(Some("alice"), None, false, Standing::Guest)
        .unwrap();
    assert_eq!(other.nick, "alice-2", "without the session, another user");
}
