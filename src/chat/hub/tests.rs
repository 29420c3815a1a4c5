//! The hub against an in-memory backend ([`Memory`]): each test plays out
//! one ordering of appends, commits, fills and presence, and checks the
//! frames that reach each connection's outbox.

use std::sync::Arc;

use serde_json::{Value, json};

use super::super::backend::memory::Memory;
use super::super::backend::{
    Backend, Conversation, Event, HubEvents, PresenceChange, Scope, Signal, Span,
};
use super::super::metrics::Metrics;
use super::super::protocol::ErrorCode;
use super::{Client, Hub, HubConfig};

mod presence;

mod accounts;
mod convs;
mod lifecycle;
mod moderation;

fn config() -> HubConfig {
    HubConfig {
        outbox_limit: 1 << 20,
        authenticated: false,
        mark_guests: false,
        deflate: None,
        max_rooms: 100,
    }
}

fn hub_on(memory: Memory, config: HubConfig) -> (Arc<Hub>, Arc<Memory>) {
    let memory = Arc::new(memory);
    let hub = Arc::new(Hub::new(
        memory.clone(),
        Arc::new(Metrics::default()),
        config,
    ));
    let tasks = memory.clone().start(hub.clone());
    assert!(tasks.is_empty());
    (hub, memory)
}

fn hub() -> (Arc<Hub>, Arc<Memory>) {
    hub_on(Memory::default(), config())
}

/// The JSON of every frame waiting in `client`'s outbox (taken), and the
/// close code it was asked to close with, if any.
fn drain(client: &Client) -> (Vec<Value>, Option<u16>) {
    let (frames, close) = client.outbox.take(usize::MAX);
    let json = frames
        .iter()
        .map(|f| {
            // A server frame, unmasked, uncompressed: FIN+opcode, then a
            // 7-bit length or 126 and 16 bits (RFC 6455 §5.2).
            let bytes = f.as_bytes();
            let start = if bytes[1] & 0x7f == 126 { 4 } else { 2 };
            serde_json::from_slice(&bytes[start..]).unwrap()
        })
        .collect();
    (json, close.map(|c| c.code.as_u16()))
}

fn frames(client: &Client) -> Vec<Value> {
    drain(client).0
}

/// `(type, id)` of each frame: the shape of a delivery.
fn kinds(frames: &[Value]) -> Vec<(String, u64)> {
    frames
        .iter()
        .map(|f| {
            let kind = f["type"].as_str().unwrap().to_owned();
            (kind, f["id"].as_u64().unwrap_or(0))
        })
        .collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Joins: the first page of members, and the last id.
fn joined(hub: &Hub, client: &Arc<Client>, room: &str) -> (Vec<String>, u64) {
    let (page, last) = rt().block_on(hub.join(client, room)).unwrap();
    (page.members, last)
}

/// Connections with these nicks, each joined to `general`.
fn in_general<const N: usize>(hub: &Hub, nicks: [&str; N]) -> [Arc<Client>; N] {
    nicks.map(|nick| {
        let client = hub.register(Some(nick), None, false);
        joined(hub, &client, "general");
        client
    })
}

/// A delivered message and then its ack, as its sender sees them.
fn msg_then_ack(id: u64) -> [(String, u64); 2] {
    [("msg".into(), id), ("ack".into(), id)]
}

fn event(room: &str, id: u64, text: &str) -> Event {
    Event {
        conv: Conversation::Room(room.into()),
        id,
        from: "carol".into(),
        text: text.into(),
        ts: 1,
        kind: Default::default(),
    }
}

#[test]
fn ids_follow_the_order_of_posts_and_members_get_them_only_once_stored() {
    let (hub, memory) = hub();
    let [alice, bob] = in_general(&hub, ["alice", "bob"]);
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        hub.post(&alice, "general", text, &format!("c{i}")).unwrap();
    }
    // Nothing is seen before the store has it.
    assert!(frames(&bob).is_empty());
    assert!(frames(&alice).is_empty());
    memory.commit();
    let got = frames(&bob);
    assert_eq!(
        kinds(&got),
        [("msg".into(), 1), ("msg".into(), 2), ("msg".into(), 3)]
    );
    assert_eq!(got[1]["text"], "two");
    assert_eq!(got[1]["from"], "alice");
    // The sender sees its message, then its ack naming the id it got.
    let mine = frames(&alice);
    assert_eq!(
        kinds(&mine),
        [
            ("msg".into(), 1),
            ("ack".into(), 1),
            ("msg".into(), 2),
            ("ack".into(), 2),
            ("msg".into(), 3),
            ("ack".into(), 3)
        ]
    );
    assert_eq!(mine[3]["client_id"], "c1");
}

#[test]
fn an_event_after_a_hole_waits_for_the_fill_and_all_go_out_in_id_order() {
    let (hub, memory) = hub();
    let bob = hub.register(Some("bob"), None, false);
    joined(&hub, &bob, "general");
    // Another server wrote 1 and 2; this one's bus lost them.
    memory.store_unseen(event("general", 1, "a"));
    memory.store_unseen(event("general", 2, "b"));
    hub.stored(event("general", 3, "c"));
    assert!(frames(&bob).is_empty(), "3 must wait for 1 and 2");
    assert_eq!(
        *memory.fills.lock().unwrap(),
        [(
            Conversation::Room("general".into()),
            Span { after: 0, upto: 2 }
        )]
    );
    // A fourth arrives while the fill runs: it waits too, and asks for
    // no second fill.
    hub.stored(event("general", 4, "d"));
    memory.answer_fills();
    assert_eq!(
        kinds(&frames(&bob)),
        [
            ("msg".into(), 1),
            ("msg".into(), 2),
            ("msg".into(), 3),
            ("msg".into(), 4)
        ]
    );
    // A late copy of one already delivered is dropped.
    hub.stored(event("general", 2, "b"));
    assert!(frames(&bob).is_empty());
    assert!(memory.fills.lock().unwrap().is_empty());
}

#[test]
fn an_append_that_fails_is_refused_to_its_writer_and_its_hole_is_skipped() {
    let (hub, memory) = hub();
    let [alice, bob] = in_general(&hub, ["alice", "bob"]);
    for i in 1..=3 {
        hub.post(&alice, "general", "x", &format!("c{i}")).unwrap();
    }
    memory.commit_where(|e| e.id != 2);
    assert_eq!(kinds(&frames(&bob)), [("msg".into(), 1)]);
    let mine = frames(&alice);
    assert_eq!(mine[1]["type"], "ack");
    assert_eq!(mine[2]["type"], "error");
    assert_eq!(mine[2]["code"], "unavailable");
    assert_eq!(mine[2]["client_id"], "c2");
    // The store has nothing for 2: the fill finds nothing, 3 goes out.
    memory.answer_fills();
    assert_eq!(kinds(&frames(&bob)), [("msg".into(), 3)]);
}

#[test]
fn a_join_gives_the_last_id_and_resume_reads_exactly_the_range_after_it() {
    let (hub, memory) = hub();
    let alice = hub.register(Some("alice"), None, false);
    assert_eq!(joined(&hub, &alice, "general"), (vec!["alice".into()], 0));
    for i in 1..=5 {
        hub.post(&alice, "general", &format!("m{i}"), "c").unwrap();
    }
    memory.commit();
    let bob = hub.register(Some("bob"), None, false);
    let (roster, last) = joined(&hub, &bob, "general");
    assert_eq!((roster, last), (vec!["alice".into(), "bob".into()], 5));
    let rt = rt();
    let ids = |after, upto, limit| -> Vec<u64> {
        let range = rt
            .block_on(hub.replay("x", "general", after, upto, limit))
            .unwrap();
        range.iter().map(|(id, _)| *id).collect()
    };
    assert_eq!(ids(2, 5, 100), [3, 4, 5]);
    assert_eq!(ids(2, 5, 2), [4, 5], "the newest `limit`");
    assert_eq!(ids(5, 5, 100), Vec::<u64>::new());
    let (page, more) = rt.block_on(hub.history("general", 4, 2)).unwrap();
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), [2, 3]);
    assert!(more);
    // Posted after the join: live, not in the range the join covers.
    hub.post(&alice, "general", "m6", "c").unwrap();
    memory.commit();
    assert_eq!(kinds(&frames(&bob)), [("msg".into(), 6)]);
}

#[test]
fn a_room_that_left_memory_continues_its_ids_from_the_backend() {
    let (hub, memory) = hub();
    let [alice] = in_general(&hub, ["alice"]);
    hub.post(&alice, "general", "x", "c").unwrap();
    hub.post(&alice, "general", "y", "c").unwrap();
    memory.commit();
    hub.leave(&alice, "general");
    hub.flush_presence();
    assert_eq!(hub.rooms_in_memory(), 0);
    let (_, last) = joined(&hub, &alice, "general");
    assert_eq!(last, 2);
    drain(&alice);
    hub.post(&alice, "general", "z", "c").unwrap();
    memory.commit();
    assert_eq!(kinds(&frames(&alice)), msg_then_ack(3));
}

#[test]
fn presence_changes_between_ticks_coalesce_into_one_event_per_room() {
    let (hub, _memory) = hub();
    let bob = hub.register(Some("bob"), None, false);
    joined(&hub, &bob, "general");
    hub.flush_presence();
    assert_eq!(
        frames(&bob),
        [json!({"type":"presence","room":"general","joined":["bob"],"left":[],"count":1})]
    );
    let carol = hub.register(Some("carol"), None, false);
    let dave = hub.register(Some("dave"), None, false);
    let carol2 = hub.register(Some("carol"), None, false);
    assert_eq!(carol2.nick, "carol-2", "nicks are unique without tokens");
    joined(&hub, &carol, "general");
    joined(&hub, &dave, "general");
    hub.unregister(&dave);
    assert!(frames(&bob).is_empty(), "nothing before the tick");
    hub.flush_presence();
    assert_eq!(
        frames(&bob),
        [json!({"type":"presence","room":"general","joined":["carol"],"left":["dave"],"count":2})]
    );
    hub.flush_presence();
    assert!(frames(&bob).is_empty(), "no change, no event");
}

#[test]
fn a_tick_publishes_only_the_nicks_that_came_and_went_until_all_are_asked_for() {
    let (hub, memory) = hub_on(Memory::shared(), config());
    let clients: Vec<_> = ["ann", "bea", "cy"]
        .iter()
        .map(|n| hub.register(Some(n), None, false))
        .collect();
    for c in &clients {
        joined(&hub, c, "general");
    }
    hub.flush_presence();
    memory.published.lock().unwrap().clear();
    // One leaves, one comes, one comes and goes within the tick.
    hub.leave(&clients[0], "general");
    let dan = hub.register(Some("dan"), None, false);
    joined(&hub, &dan, "general");
    let eve = hub.register(Some("eve"), None, false);
    joined(&hub, &eve, "general");
    hub.leave(&eve, "general");
    hub.flush_presence();
    let room = Scope::Room("general".into());
    let published = std::mem::take(&mut *memory.published.lock().unwrap());
    let in_room: Vec<_> = published.iter().filter(|(s, _)| *s == room).collect();
    assert_eq!(
        in_room,
        [&(
            room.clone(),
            PresenceChange::Delta {
                joined: vec!["dan".into()],
                left: vec!["ann".into(), "eve".into()],
            }
        )]
    );
    // After a resync, all of them, once.
    hub.republish();
    hub.flush_presence();
    let published = std::mem::take(&mut *memory.published.lock().unwrap());
    assert_eq!(
        published,
        [
            (
                Scope::Online,
                PresenceChange::All(vec![
                    "ann".into(),
                    "bea".into(),
                    "cy".into(),
                    "dan".into(),
                    "eve".into()
                ])
            ),
            (
                room,
                PresenceChange::All(vec!["bea".into(), "cy".into(), "dan".into()])
            )
        ]
    );
}

#[test]
fn remote_deltas_join_and_leave_the_roster_and_repeating_one_changes_nothing() {
    let (hub, _memory) = hub_on(Memory::shared(), config());
    let ann = hub.register(Some("ann"), None, false);
    joined(&hub, &ann, "general");
    hub.flush_presence();
    drain(&ann);
    let room = Scope::Room("general".into());
    let delta = PresenceChange::Delta {
        joined: vec!["zed".into(), "yan".into()],
        left: vec!["nobody".into()],
    };
    hub.presence("peer", &room, delta.clone());
    hub.flush_presence();
    assert_eq!(
        frames(&ann),
        [json!({"type":"presence","room":"general","joined":["yan","zed"],"left":[],"count":3})]
    );
    hub.presence("peer", &room, delta);
    hub.flush_presence();
    assert!(frames(&ann).is_empty(), "a replayed delta is a no-op");
    hub.presence(
        "peer",
        &room,
        PresenceChange::Delta {
            joined: vec![],
            left: vec!["zed".into()],
        },
    );
    hub.flush_presence();
    assert_eq!(frames(&ann)[0]["left"], json!(["zed"]));
}

#[test]
fn shared_presence_is_published_once_per_tick_and_remote_nicks_join_the_roster() {
    let memory = Memory::shared();
    memory.others.lock().unwrap().insert(
        Scope::Room("general".into()),
        vec![("peer".into(), vec!["zed".into()])],
    );
    let (hub, memory) = hub_on(memory, config());
    let bob = hub.register(Some("bob"), None, false);
    let bo = hub.register(Some("bo"), None, false);
    assert_eq!(joined(&hub, &bob, "general").0, ["bob", "zed"]);
    joined(&hub, &bo, "general");
    hub.flush_presence();
    let published = std::mem::take(&mut *memory.published.lock().unwrap());
    let both = PresenceChange::Delta {
        joined: vec!["bo".to_owned(), "bob".to_owned()],
        left: vec![],
    };
    assert_eq!(
        published,
        [
            (Scope::Online, both.clone()),
            (Scope::Room("general".into()), both)
        ]
    );
    hub.flush_presence();
    assert!(memory.published.lock().unwrap().is_empty());
    drain(&bob);
    // The other server's user leaves; then the server itself is gone.
    hub.presence(
        "peer",
        &Scope::Room("general".into()),
        PresenceChange::All(vec![]),
    );
    hub.flush_presence();
    assert_eq!(frames(&bob)[0]["left"], json!(["zed"]));
    hub.presence(
        "peer",
        &Scope::Online,
        PresenceChange::All(vec!["yan".to_owned()]),
    );
    assert!(hub.dm(&bob, "yan", "hi", "c").is_ok(), "online elsewhere");
    hub.peer_gone("peer");
    assert_eq!(
        hub.dm(&bob, "yan", "hi", "c").unwrap_err().code,
        ErrorCode::UnknownUser
    );
}

#[test]
fn a_dm_reaches_every_connection_of_both_ends_and_no_one_else() {
    let authenticated = HubConfig {
        authenticated: true,
        mark_guests: false,
        ..config()
    };
    let (hub, memory) = hub_on(Memory::default(), authenticated);
    let alice1 = hub.register(Some("alice"), None, false);
    let alice2 = hub.register(Some("alice"), None, false);
    let bob1 = hub.register(Some("bob"), None, false);
    let bob2 = hub.register(Some("bob"), None, false);
    let carol = hub.register(Some("carol"), None, false);
    assert_eq!(alice2.nick, "alice", "a token's nick may connect twice");
    hub.dm(&alice1, "bob", "psst", "d1").unwrap();
    memory.commit();
    let dm = json!({"type":"dm","id":1,"from":"alice","to":"bob","text":"psst","ts":0});
    let strip_ts = |mut f: Vec<Value>| {
        for v in &mut f {
            if v["type"] == "dm" {
                v["ts"] = json!(0);
            }
        }
        f
    };
    for c in [&alice2, &bob1, &bob2] {
        assert_eq!(strip_ts(frames(c)), std::slice::from_ref(&dm), "{}", c.id);
    }
    let mine = strip_ts(frames(&alice1));
    assert_eq!(mine, [dm, json!({"type":"ack","client_id":"d1","id":1})]);
    assert!(frames(&carol).is_empty());
    // Either end writes in the same conversation: its ids go on.
    hub.dm(&bob2, "alice", "hi", "d2").unwrap();
    memory.commit();
    assert_eq!(kinds(&frames(&alice1)), [("dm".into(), 2)]);
    assert_eq!(
        hub.dm(&alice1, "nobody", "x", "d3").unwrap_err().code,
        ErrorCode::UnknownUser
    );
}

#[test]
fn a_slow_reader_loses_typing_first_and_is_closed_with_1013_before_losing_a_message() {
    let text = "x".repeat(200);
    // Room for two messages and not a third (each frame is ~280 bytes).
    let small = HubConfig {
        outbox_limit: 600,
        ..config()
    };
    let (hub, memory) = hub_on(Memory::default(), small);
    let [alice, bob] = in_general(&hub, ["alice", "bob"]);
    // Alice reads hers; Bob does not.
    for _ in 0..2 {
        hub.post(&alice, "general", &text, "c").unwrap();
        memory.commit();
        drain(&alice);
    }
    assert!(bob.outbox.len() > 500, "{}", bob.outbox.len());
    hub.typing(&alice, "general").unwrap();
    assert_eq!(hub.metrics.drops.get(), 1, "typing dropped for bob");
    assert_eq!(hub.metrics.slow_closes.get(), 0);
    hub.post(&alice, "general", &text, "c").unwrap();
    memory.commit();
    assert_eq!(hub.metrics.slow_closes.get(), 1);
    let (left, close) = drain(&bob);
    assert_eq!(close, Some(1013));
    assert!(left.is_empty(), "a slow close drops what waited");
    // Nobody else was held up.
    assert_eq!(kinds(&frames(&alice)), msg_then_ack(3));
}

#[test]
fn typing_reaches_the_others_in_the_room_at_most_once_per_two_seconds() {
    let (hub, memory) = hub();
    let [alice, bob] = in_general(&hub, ["alice", "bob"]);
    hub.typing(&alice, "general").unwrap();
    hub.typing(&alice, "general").unwrap();
    assert_eq!(
        frames(&bob),
        [json!({"type":"typing","room":"general","user":"alice"})]
    );
    assert!(frames(&alice).is_empty());
    assert_eq!(memory.signals.lock().unwrap().len(), 1);
    assert_eq!(
        hub.typing(&alice, "other").unwrap_err().code,
        ErrorCode::NotInRoom
    );
    // Another server's typing (through the backend) is relayed too.
    hub.signal(Signal::Typing {
        room: "general".into(),
        user: "zed".into(),
    });
    assert_eq!(frames(&alice).len(), 1);
}

#[test]
fn a_busy_backend_refuses_posts_with_unavailable() {
    let limited = Memory::with_limit(1);
    let (hub, memory) = hub_on(limited, config());
    let [alice] = in_general(&hub, ["alice"]);
    hub.post(&alice, "general", "one", "c").unwrap();
    let refused = hub.post(&alice, "general", "two", "c").unwrap_err();
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert!(refused.message.contains("too many"), "{}", refused.message);
    memory.commit();
    hub.post(&alice, "general", "two", "c").unwrap();
}

#[test]
fn shutdown_refuses_new_posts_lets_the_last_acks_out_then_closes_everyone_with_1001() {
    let (hub, memory) = hub();
    let [alice, bob] = in_general(&hub, ["alice", "bob"]);
    hub.post(&alice, "general", "last", "c").unwrap();
    hub.stop_posts();
    assert!(hub.is_shutting_down());
    assert_eq!(
        hub.post(&alice, "general", "late", "c").unwrap_err().code,
        ErrorCode::Unavailable
    );
    assert_eq!(
        hub.dm(&alice, "bob", "late", "c").unwrap_err().code,
        ErrorCode::Unavailable
    );
    assert_eq!(memory.waiting(), 1, "only the post before the stop");
    // What was accepted is stored and acked before anyone is closed.
    memory.commit();
    hub.shutdown();
    let (mine, close) = drain(&alice);
    assert_eq!(kinds(&mine), [("msg".into(), 1), ("ack".into(), 1)]);
    assert_eq!(close, Some(1001));
    let (theirs, close) = drain(&bob);
    assert_eq!(kinds(&theirs), [("msg".into(), 1)]);
    assert_eq!(close, Some(1001));
}

#[test]
fn a_replaced_signal_closes_the_nick_here_with_4000() {
    let (hub, _memory) = hub();
    let alice = hub.register(Some("alice"), None, false);
    let bob = hub.register(Some("bob"), None, false);
    hub.signal(Signal::Replaced {
        nick: "alice".into(),
    });
    assert_eq!(drain(&alice).1, Some(4000));
    assert_eq!(drain(&bob).1, None);
}
