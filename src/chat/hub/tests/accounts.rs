//! Issue 17 in the hub: the users map keyed by skeleton (look-alikes
//! found, exact nicks kept apart), a revoked session closing its
//! connections only, and guests marked on what they post.

use super::super::Standing;
use super::super::users::MAX_CONNECTIONS;
use super::*;
use crate::chat::lock;

const VERIFIED: Standing = Standing::Verified { admin_claim: false };

#[test]
fn a_lookalike_of_a_nick_online_is_found_and_exact_nicks_stay_apart() {
    let (hub, _) = hub();
    let alice = hub.register(Some("alice"), None, false);
    assert_eq!(hub.lookalike_online("aIice").as_deref(), Some("alice"));
    assert_eq!(hub.lookalike_online("alice."), Some("alice".to_owned()));
    assert_eq!(
        hub.lookalike_online("alice"),
        None,
        "the same nick is no look-alike"
    );
    assert_eq!(hub.lookalike_online("bob"), None);
    // Two look-alikes under one key (tokens name what they name): each
    // keeps its own nick, and leaving one leaves the other online.
    let upper = hub.register_as(Some("Alice"), None, false, VERIFIED);
    assert_eq!(upper.nick, "Alice", "a token's user keeps its nick");
    assert_eq!(lock(&hub.users).holders("alice").count(), 1);
    assert_eq!(lock(&hub.users).nicks(), vec!["Alice", "alice"]);
    hub.unregister(&alice);
    assert!(!lock(&hub.users).contains("alice"));
    assert!(lock(&hub.users).contains("Alice"));
    assert_eq!(hub.lookalike_online("alice").as_deref(), Some("Alice"));
}

#[test]
fn a_verified_user_keeps_its_nick_and_its_session_id() {
    let (hub, _) = hub();
    let guest = hub.register(Some("carol"), None, false);
    let account = hub.register_as(Some("carol"), Some("sid-1"), false, VERIFIED);
    assert_eq!(
        (account.nick.as_str(), account.session.as_str()),
        ("carol", "sid-1")
    );
    // A second guest asking for it gets a suffix, as before.
    let other = hub.register(Some("carol"), None, false);
    assert_eq!(other.nick, "carol-2");
    drop(guest);
}

#[test]
fn a_revoked_session_closes_its_connections_with_4005_and_no_others() {
    let (hub, _) = hub();
    let one = hub.register_as(Some("alice"), Some("sid-1"), false, VERIFIED);
    let two = hub.register_as(Some("alice"), Some("sid-2"), false, VERIFIED);
    hub.signal(Signal::Revoked {
        nick: "alice".into(),
        session: "sid-1".into(),
    });
    assert_eq!(drain(&one).1, Some(4005));
    assert_eq!(drain(&two).1, None);
}

#[tokio::test]
async fn a_guests_messages_are_stored_marked_when_guests_are() {
    let marked = HubConfig {
        mark_guests: true,
        ..config()
    };
    let (hub, memory) = hub_on(Memory::default(), marked);
    let guest = hub.register(Some("bob"), None, false);
    let account = hub.register_as(Some("alice"), Some("s"), false, VERIFIED);
    for c in [&guest, &account] {
        hub.join(c, "general").await.unwrap();
    }
    hub.post(&guest, "general", "hi", "g1").unwrap();
    hub.post(&account, "general", "hello", "a1").unwrap();
    memory.commit();
    let (page, _) = memory
        .history(&Conversation::Room("general".into()), u64::MAX, 10)
        .await
        .unwrap();
    let flags: Vec<(String, bool)> = page
        .iter()
        .map(|e| (e.from.clone(), e.to_message().guest))
        .collect();
    assert_eq!(flags, vec![("bob".into(), true), ("alice".into(), false)]);
    let (frames, _) = drain(&account);
    let bobs = frames
        .iter()
        .find(|f| f["type"] == "msg" && f["from"] == "bob");
    assert_eq!(bobs.map(|f| f["guest"].clone()), Some(json!(true)));
    assert_eq!(
        hub.guests_among(&["bob".into(), "alice".into()]),
        vec!["bob"]
    );
}

/// Review finding 2: a guest and an account's user holding one nick
/// (guests unmarked, as here, or before the guest's close): the guest's
/// logout closes guests only, the connection limit counts each standing
/// apart, and DMs to the nick reach the account's connections only.
#[tokio::test]
async fn a_guest_sharing_an_accounts_nick_cannot_log_it_out_lock_it_out_or_read_its_dms() {
    let (hub, memory) = hub();
    let guest = hub.register(Some("carol"), None, false);
    for _ in 1..MAX_CONNECTIONS {
        hub.admit(Some("carol"), Some(&guest.session), false, Standing::Guest)
            .unwrap();
    }
    let account = hub
        .admit(Some("carol"), Some("sid-1"), false, VERIFIED)
        .expect("a guest's connections do not count against the account");
    let sender = hub.register(Some("dave"), None, false);
    hub.dm(&sender, "carol", "for carol", "d1").unwrap();
    memory.commit();
    let (frames, _) = drain(&account);
    assert!(frames.iter().any(|f| f["type"] == "dm"), "{frames:?}");
    let (frames, _) = drain(&guest);
    assert!(!frames.iter().any(|f| f["type"] == "dm"), "{frames:?}");
    hub.logout(&guest);
    assert_eq!(drain(&guest).1, Some(1000));
    assert_eq!(drain(&account).1, None);
}
