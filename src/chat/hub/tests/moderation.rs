//! Moderation through the hub, on the memory backend: the fan-out that
//! skips only the members who block a message's author (and checks
//! nobody in a room where nobody blocks), rules folded from delivered
//! events, and a stored admin's role.

use std::sync::Arc;

use serde_json::json;

use super::super::super::backend::memory::Memory;
use super::super::super::protocol::ClientMsg;
use super::super::{Client, Hub, Standing};
use super::{frames, hub, in_general, joined, rt};

/// A verified user (a token's), joined to `general`.
fn verified(hub: &Hub, nick: &str) -> Arc<Client> {
    let standing = Standing::Verified { admin_claim: false };
    let client = hub.register_as(Some(nick), None, false, standing);
    joined(hub, &client, "general");
    client
}

/// ann, owner of `general` (event 1), and bob, who posted message 2 there.
fn owner_and_poster(hub: &Hub, memory: &Memory) -> (Arc<Client>, Arc<Client>) {
    let ann = verified(hub, "ann");
    let bob = verified(hub, "bob");
    hub.post(&bob, "general", "mine", "b1").unwrap();
    memory.commit();
    (ann, bob)
}

/// A `mute` of `user` in `general`, until lifted.
fn mute(user: &str) -> ClientMsg {
    ClientMsg::Mute {
        room: "general".into(),
        user: user.into(),
        minutes: None,
        seconds: None,
        reason: None,
    }
}

fn blockers(hub: &Hub) -> Option<Vec<String>> {
    let room = hub.find_room("general")?;
    let r = super::super::lock(&room);
    r.rules
        .as_ref()
        .map(|rules| rules.blockers.iter().cloned().collect())
}

#[test]
fn fan_out_skips_only_the_members_who_block_the_author() {
    let (hub, memory) = hub();
    let [ann, bob, cat] = in_general(&hub, ["ann", "bob", "cat"]);
    // Guests only: nobody owns the room, and it holds no rules at all.
    assert_eq!(blockers(&hub), None);
    let block = ClientMsg::Block { user: "bob".into() };
    let reply = rt().block_on(hub.moderate(&ann, block)).unwrap().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&reply).unwrap(),
        json!({"type": "blocks", "users": ["bob"]})
    );
    assert_eq!(blockers(&hub), Some(vec!["ann".to_owned()]));
    frames(&ann);
    frames(&cat);
    hub.post(&bob, "general", "from bob", "b1").unwrap();
    hub.post(&cat, "general", "from cat", "c1").unwrap();
    memory.commit();
    let texts = |c: &Client| -> Vec<String> {
        frames(c)
            .into_iter()
            .filter(|f| f["type"] == "msg")
            .map(|f| f["text"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(texts(&ann), ["from cat"], "ann blocks bob");
    assert_eq!(texts(&cat), ["from bob", "from cat"]);
    // Leaving takes ann out of the room's blockers.
    hub.leave(&ann, "general");
    assert_eq!(blockers(&hub), Some(vec![]));
}

#[test]
fn a_delivered_mute_refuses_posts_and_a_stored_admin_outranks_an_owner() {
    let (hub, memory) = hub();
    let ann = verified(&hub, "ann");
    memory.commit(); // ann's ownership of general
    let bob = verified(&hub, "bob");
    rt().block_on(hub.moderate(&ann, mute("bob"))).unwrap();
    // Stored, not yet delivered: the rules have not changed.
    assert!(hub.post(&bob, "general", "before", "b1").is_ok());
    memory.commit();
    let refused = hub.post(&bob, "general", "after", "b2").unwrap_err();
    assert_eq!(refused.code, super::super::ErrorCode::Muted);
    // bob may not kick the owner; once a stored admin, he may.
    let kick = || ClientMsg::Kick {
        room: "general".into(),
        user: "ann".into(),
        reason: None,
    };
    let e = rt().block_on(hub.moderate(&bob, kick())).unwrap_err();
    assert_eq!(e.code, super::super::ErrorCode::Forbidden);
    assert!(memory.set_admin("bob", true, "cli"));
    rt().block_on(hub.moderate(&bob, kick())).unwrap();
    frames(&ann);
    memory.commit();
    let seen = frames(&ann);
    assert!(
        seen.iter()
            .any(|f| f["type"] == "moderation" && f["action"] == "kick")
    );
    assert!(!ann.in_room("general"), "kicked: out of the room");
}

#[test]
fn a_blocker_is_not_told_the_blocked_user_types_and_blocks_are_bounded() {
    let (hub, _memory) = hub();
    let [ann, bob, cat] = in_general(&hub, ["ann", "bob", "cat"]);
    let block = |user: &str| ClientMsg::Block { user: user.into() };
    rt().block_on(hub.moderate(&ann, block("bob"))).unwrap();
    frames(&ann);
    frames(&cat);
    hub.typing(&bob, "general").unwrap();
    assert!(frames(&ann).is_empty(), "ann blocks bob");
    assert_eq!(frames(&cat).len(), 1);
    // At most MAX_BLOCKS; blocking one already blocked is no new one.
    let max = super::super::super::protocol::MAX_BLOCKS;
    for i in 1..max {
        rt().block_on(hub.moderate(&ann, block(&format!("u{i}"))))
            .unwrap();
    }
    let e = rt()
        .block_on(hub.moderate(&ann, block("one-more")))
        .unwrap_err();
    assert_eq!(e.code, super::super::ErrorCode::InvalidField);
    assert!(e.message.contains(&max.to_string()), "{}", e.message);
    rt().block_on(hub.moderate(&ann, block("bob"))).unwrap();
}

#[test]
fn a_dm_the_store_took_before_the_block_does_not_reach_the_blocker() {
    let (hub, memory) = hub();
    let [ann, bob] = in_general(&hub, ["ann", "bob"]);
    // Queued for the store before ann's block: delivered after it.
    hub.dm(&bob, "ann", "sent before the block", "b1").unwrap();
    let block = ClientMsg::Block { user: "bob".into() };
    rt().block_on(hub.moderate(&ann, block)).unwrap();
    frames(&ann);
    frames(&bob);
    memory.commit();
    assert!(
        frames(&ann).iter().all(|f| f["type"] != "dm"),
        "ann blocks bob"
    );
    let to_bob: Vec<_> = frames(&bob)
        .into_iter()
        .map(|f| f["type"].clone())
        .collect();
    assert_eq!(
        to_bob,
        [json!("dm"), json!("ack")],
        "bob's own copy and ack"
    );
}

#[test]
fn a_mute_the_store_took_refuses_an_edit_and_a_reaction_not_yet_delivered() {
    use super::super::super::backend::{Action, Conversation, Event, Kind, ModAction};
    let (hub, memory) = hub();
    let (_ann, bob) = owner_and_poster(&hub, &memory);
    // Another server stored ann's mute of bob; this one has not delivered it.
    let mut mute = ModAction::new(Action::Mute);
    mute.user = Some("bob".into());
    memory.store_unseen(Event {
        conv: Conversation::Room("general".into()),
        id: 3,
        from: "ann".into(),
        text: mute.to_text(),
        ts: 1,
        kind: Kind::Moderation(Box::new(mute)),
    });
    // The hub lets them by, the store does not.
    let general = Some("general");
    hub.edit(&bob, general, None, 2, "rewritten", Some("e1"))
        .unwrap();
    hub.react(&bob, general, None, 2, "👍", Some("r1")).unwrap();
    frames(&bob);
    memory.commit();
    let refused: Vec<_> = frames(&bob)
        .into_iter()
        .map(|f| (f["type"].clone(), f["code"].clone(), f["client_id"].clone()))
        .collect();
    let muted = |id| (json!("error"), json!("muted"), json!(id));
    assert_eq!(refused, [muted("e1"), muted("r1")]);
}

#[test]
fn a_delivered_mute_refuses_an_edit_and_a_reaction_and_drops_typing() {
    let (hub, memory) = hub();
    let (ann, bob) = owner_and_poster(&hub, &memory);
    rt().block_on(hub.moderate(&ann, mute("bob"))).unwrap();
    memory.commit();
    let general = Some("general");
    let e = hub.edit(&bob, general, None, 2, "again", None).unwrap_err();
    assert_eq!(e.code, super::super::ErrorCode::Muted);
    let e = hub.react(&bob, general, None, 2, "👍", None).unwrap_err();
    assert_eq!(e.code, super::super::ErrorCode::Muted);
    frames(&ann);
    hub.typing(&bob, "general").unwrap();
    assert!(
        frames(&ann).is_empty(),
        "bob is muted: his typing is dropped"
    );
    // Their own message they may still take away.
    hub.delete(&bob, general, None, 2, Some("d1")).unwrap();
    memory.commit();
    assert!(frames(&ann).iter().any(|f| f["type"] == "deleted"));
}

#[test]
fn a_banned_connection_closes_at_once_and_writes_nothing_more() {
    use super::super::super::backend::{HubEvents, Signal};
    let (hub, memory) = hub();
    let [ann, eve] = in_general(&hub, ["ann", "eve"]);
    // eve reads slowly: ann's message waits in her queue.
    hub.post(&ann, "general", "queued for eve", "a1").unwrap();
    memory.commit();
    hub.signal(Signal::Banned { nick: "eve".into() });
    let (queued, close) = super::drain(&eve);
    assert_eq!(
        (queued.len(), close),
        (0, Some(4004)),
        "the close goes out now, ahead of what waited"
    );
    assert!(eve.is_gone());
    // What eve sent meanwhile is not stored.
    assert!(hub.post(&eve, "general", "after the ban", "e1").is_err());
    assert!(hub.dm(&eve, "ann", "after the ban", "e2").is_err());
    assert_eq!(memory.waiting(), 0);
}
