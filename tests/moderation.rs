//! Moderation (issue 17), end to end over loopback on one server: roles
//! and the permission table, kick, ban (room, server-wide, with expiry),
//! mute (and its end while connected), slow mode, topic, a moderator's
//! delete, blocking, the audit log, `chat admin add`, and resume.
//! Verified users come with `--jwt-secret` tokens (with and without the
//! admin claim); guests from a server without one.

mod common;

use std::time::Duration;

use common::chat::Client;
use common::server::ChatServer;
use rfc6455::chat::{AdminOp, ChatConfig};
use serde_json::{Value, json};

const SECRET: &str = "s3cret";

fn config(name: &str) -> ChatConfig {
    let mut c = ChatConfig::new(common::temp_dir("moderation", name).join("chat.db"));
    c.presence_interval = Duration::from_millis(20);
    c.close_timeout = Duration::from_millis(300);
    c.jwt_secret = Some(SECRET.into());
    c
}

/// With the chat's own accounts (`--accounts open`) and guests, no
/// `--jwt-secret`.
fn accounts_config(name: &str) -> ChatConfig {
    let mut c = config(name);
    c.jwt_secret = None;
    c.accounts.hash = rfc6455::chat::HashConfig::cheap();
    c
}

/// Registers the account `nick`: its access token.
async fn register(server: &ChatServer, nick: &str) -> Value {
    let creds = json!({"nick": nick, "password": "correct horse battery"});
    let made = common::server::http_post(server.addr, "/api/register", Some(&creds), None).await;
    assert_eq!(made.status, 201, "{made:?}");
    made.json["token"].clone()
}

fn token(name: &str, admin: bool) -> String {
    common::chat::token_as(SECRET, name, admin)
}

fn hello(name: &str, admin: bool) -> Value {
    json!({"type": "hello", "token": token(name, admin)})
}

/// Connects `name` and waits for its `room` event in `general`.
async fn user(server: &ChatServer, name: &str, admin: bool) -> (Client, Value) {
    let (mut c, _) = server.client(hello(name, admin)).await;
    let room = c.next_of("room").await;
    (c, room)
}

/// The next `moderation` event with this action.
async fn moderation(c: &mut Client, action: &str) -> Value {
    c.next(|e| e["type"] == "moderation" && e["action"] == action)
        .await
}

/// The next error (skipping other events).
async fn error(c: &mut Client) -> Value {
    c.next_of("error").await
}

/// Sends each request and asserts it is refused with `code`, naming its
/// `client_id`; the errors.
async fn refused_each<const N: usize>(
    c: &mut Client,
    code: &str,
    requests: [Value; N],
) -> Vec<Value> {
    let mut errors = Vec::new();
    for request in requests {
        c.send(request.clone()).await;
        let e = error(c).await;
        assert_eq!(
            (e["code"].as_str(), &e["client_id"]),
            (Some(code), &request["client_id"]),
            "{request}"
        );
        errors.push(e);
    }
    errors
}

#[tokio::test]
async fn roles_follow_the_permission_table() {
    let server = ChatServer::start(config("roles")).await;
    // The first verified user of a room with no owner owns it.
    let (mut ann, room) = user(&server, "ann", false).await;
    assert_eq!(room["room"], "general");
    let own = moderation(&mut ann, "role").await;
    assert_eq!(
        (own["user"].as_str(), own["role"].as_str()),
        (Some("ann"), Some("owner"))
    );
    assert!(own["event_id"].as_u64().is_some());
    let you = ann.next_of("room").await;
    assert_eq!(you["you"]["role"], "owner");
    let (mut bob, room) = user(&server, "bob", false).await;
    assert_eq!(room["owners"], json!(["ann"]));
    assert_eq!(room["you"]["role"], "member");
    let (mut root, room) = user(&server, "root", true).await;
    assert_eq!(room["you"]["role"], "admin");

    // A member may not kick; the refusal says which role would.
    bob.send(json!({"type": "kick", "room": "general", "user": "ann"}))
        .await;
    let e = error(&mut bob).await;
    assert_eq!(e["code"], "forbidden");
    assert!(e["message"].as_str().unwrap().contains("moderator"), "{e}");

    // The owner names bob moderator of general; bob is told.
    ann.send(json!({"type": "role", "room": "general", "user": "bob", "role": "moderator"}))
        .await;
    moderation(&mut bob, "role").await;
    let you = bob.next_of("room").await;
    assert_eq!(you["you"]["role"], "moderator");

    // ann owns dev too; bob, a moderator of general, acts outside his room.
    ann.send(json!({"type": "join", "room": "dev"})).await;
    ann.next(|e| e["type"] == "moderation" && e["room"] == "dev")
        .await;
    bob.send(json!({"type": "join", "room": "dev"})).await;
    bob.next(|e| e["type"] == "room" && e["room"] == "dev")
        .await;
    bob.send(json!({"type": "mute", "room": "dev", "user": "ann"}))
        .await;
    assert_eq!(error(&mut bob).await["code"], "forbidden");

    // An owner banning an admin; a moderator muting the owner.
    ann.send(json!({"type": "ban", "room": "general", "user": "root"}))
        .await;
    let e = error(&mut ann).await;
    assert_eq!(e["code"], "forbidden");
    assert!(e["message"].as_str().unwrap().contains("admin"), "{e}");
    bob.send(json!({"type": "mute", "room": "general", "user": "ann"}))
        .await;
    assert_eq!(error(&mut bob).await["code"], "forbidden");
    // Only an admin names an owner; the admin may.
    ann.send(json!({"type": "role", "room": "general", "user": "bob", "role": "owner"}))
        .await;
    assert_eq!(error(&mut ann).await["code"], "forbidden");
    root.send(json!({"type": "role", "room": "general", "user": "bob", "role": "owner"}))
        .await;
    let e = moderation(&mut bob, "role").await;
    assert_eq!(
        (e["role"].as_str(), e["by"].as_str()),
        (Some("owner"), Some("root"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_guest_may_do_nothing_of_moderation() {
    let mut c = config("guest");
    c.jwt_secret = None;
    let server = ChatServer::start(c).await;
    let (mut g, _) = server.client(json!({"type": "hello", "nick": "gus"})).await;
    let room = g.next_of("room").await;
    assert_eq!(room["you"]["role"], "guest");
    assert_eq!(room["owners"], json!([]), "a guest owns nothing");
    for request in [
        json!({"type": "kick", "room": "general", "user": "x"}),
        json!({"type": "topic", "room": "general", "topic": "mine"}),
        json!({"type": "ban", "user": "x"}),
        json!({"type": "audit", "room": "general"}),
    ] {
        g.send(request.clone()).await;
        let e = error(&mut g).await;
        assert_eq!(e["code"], "forbidden", "{request}");
        assert!(e["message"].as_str().unwrap().contains("guest"), "{e}");
    }
    server.stop().await;
}

/// With the chat's own accounts (`--accounts open`): a guest in a room
/// owns nothing and may do nothing; the first account's user to join
/// owns it, and moderates the guest.
#[tokio::test]
async fn an_accounts_user_owns_and_moderates_and_a_guest_beside_it_may_not() {
    let server = ChatServer::start(accounts_config("accounts")).await;
    let (mut gus, _) = server.client(json!({"type": "hello", "nick": "gus"})).await;
    assert_eq!(gus.next_of("room").await["owners"], json!([]));
    let token = register(&server, "ann").await;
    let (mut ann, welcome) = server
        .client(json!({"type": "hello", "token": token}))
        .await;
    assert_eq!(welcome["guest"], false);
    let own = moderation(&mut ann, "role").await;
    assert_eq!(
        (own["user"].as_str(), own["role"].as_str()),
        (Some("ann"), Some("owner"))
    );
    gus.send(json!({"type": "mute", "room": "general", "user": "ann"}))
        .await;
    assert_eq!(error(&mut gus).await["code"], "forbidden");
    ann.send(json!({"type": "mute", "room": "general", "user": "gus"}))
        .await;
    moderation(&mut gus, "mute").await;
    gus.send(common::chat::msg("general", "hello?", "g1")).await;
    assert_eq!(error(&mut gus).await["code"], "muted");
    ann.send(json!({"type": "kick", "room": "general", "user": "gus"}))
        .await;
    moderation(&mut gus, "kick").await;
    server.stop().await;
}

#[tokio::test]
async fn kick_ban_mute_slow_and_topic_take_effect() {
    let server = ChatServer::start(config("actions")).await;
    let (mut ann, _) = user(&server, "ann", false).await;
    moderation(&mut ann, "role").await;
    let (mut cat, _) = user(&server, "cat", false).await;

    // Kick: out now, may rejoin.
    ann.send(json!({"type": "kick", "room": "general", "user": "cat", "reason": "calm down"}))
        .await;
    let k = moderation(&mut cat, "kick").await;
    assert_eq!(
        (k["user"].as_str(), k["reason"].as_str()),
        (Some("cat"), Some("calm down"))
    );
    cat.send(common::chat::msg("general", "still here?", "k1"))
        .await;
    assert_eq!(error(&mut cat).await["code"], "not_in_room");
    cat.send(json!({"type": "join", "room": "general"})).await;
    cat.next_of("room").await;
    assert!(cat.acked("general", "back", "k2").await > 0);

    // Mute: may read, not post; unmute lifts it.
    ann.send(json!({"type": "mute", "room": "general", "user": "cat"}))
        .await;
    moderation(&mut cat, "mute").await;
    let you = cat.next_of("room").await;
    assert_eq!(you["you"]["muted_until"], 0, "until lifted");
    cat.send(common::chat::msg("general", "hello?", "m1")).await;
    let e = error(&mut cat).await;
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("muted"), Some("m1"))
    );
    ann.acked("general", "cat still reads", "a1").await;
    assert_eq!(cat.next_of("msg").await["text"], "cat still reads");
    ann.send(json!({"type": "unmute", "room": "general", "user": "cat"}))
        .await;
    moderation(&mut cat, "unmute").await;
    assert!(cat.acked("general", "free", "m2").await > 0);

    // Slow mode: one message per 60 s per member; the error says how long.
    ann.send(json!({"type": "slow", "room": "general", "seconds": 60}))
        .await;
    let s = moderation(&mut cat, "slow").await;
    assert_eq!(s["seconds"], 60);
    assert!(cat.acked("general", "one", "s1").await > 0);
    cat.send(common::chat::msg("general", "two", "s2")).await;
    let e = error(&mut cat).await;
    assert_eq!(e["code"], "slow_mode");
    assert!(e["message"].as_str().unwrap().contains("wait"), "{e}");
    ann.acked("general", "owners are not slowed", "a2").await;
    ann.acked("general", "not at all", "a3").await;

    // Topic: a moderation event, then in the `room` event of a join.
    ann.send(json!({"type": "topic", "room": "general", "topic": "be kind"}))
        .await;
    assert_eq!(moderation(&mut cat, "topic").await["topic"], "be kind");
    // Every member is sent the `room` event again, each with its own `you`.
    let room = cat
        .next(|e| e["type"] == "room" && e["topic"] == "be kind")
        .await;
    assert_eq!(
        (room["slow"].as_u64(), room["you"]["role"].as_str()),
        (Some(60), Some("member"))
    );
    let room = ann
        .next(|e| e["type"] == "room" && e["topic"] == "be kind")
        .await;
    assert_eq!(room["you"]["role"], "owner");
    let (_dan, room) = user(&server, "dan", false).await;
    assert_eq!(
        (room["topic"].as_str(), room["slow"].as_u64()),
        (Some("be kind"), Some(60))
    );

    // Ban from the room: out now, joins refused `banned`.
    ann.send(json!({"type": "ban", "room": "general", "user": "cat", "minutes": 10}))
        .await;
    let b = moderation(&mut cat, "ban").await;
    assert!(b["until"].as_u64().unwrap() > 0);
    cat.send(json!({"type": "join", "room": "general"})).await;
    assert_eq!(error(&mut cat).await["code"], "banned");
    ann.send(json!({"type": "unban", "room": "general", "user": "cat"}))
        .await;
    moderation(&mut ann, "unban").await;
    cat.send(json!({"type": "join", "room": "general"})).await;
    cat.next_of("room").await;
    server.stop().await;
}

#[tokio::test]
async fn a_mute_stops_edits_reactions_and_typing_and_slow_mode_only_new_messages() {
    let server = ChatServer::start(config("mute-edits")).await;
    let (mut ann, _) = user(&server, "ann", false).await;
    moderation(&mut ann, "role").await;
    let (mut cat, _) = user(&server, "cat", false).await;
    let mine = cat.acked("general", "mine", "c0").await;
    let theirs = ann.acked("general", "theirs", "a0").await;
    ann.send(json!({"type": "mute", "room": "general", "user": "cat"}))
        .await;
    moderation(&mut cat, "mute").await;
    cat.next_of("room").await;
    let refused = refused_each(
        &mut cat,
        "muted",
        [
            json!({"type": "edit", "room": "general", "id": mine, "text": "rewritten", "client_id": "e1"}),
            json!({"type": "react", "room": "general", "id": theirs, "emoji": "👍", "client_id": "r1"}),
        ],
    )
    .await;
    for e in refused {
        assert!(
            e["message"].as_str().unwrap().contains("until lifted"),
            "{e}"
        );
    }
    // Typing is dropped; deleting its own message is allowed.
    cat.send(json!({"type": "typing", "room": "general"})).await;
    cat.send(json!({"type": "delete", "room": "general", "id": mine}))
        .await;
    loop {
        let e = ann.event(Duration::from_secs(5)).await.expect("the delete");
        assert!(
            e["from"] != "cat" || e["type"] == "deleted",
            "a muted user reached the room: {e}"
        );
        assert_ne!(e["type"], "typing", "{e}");
        if e["type"] == "deleted" {
            break;
        }
    }
    ann.send(json!({"type": "unmute", "room": "general", "user": "cat"}))
        .await;
    moderation(&mut cat, "unmute").await;
    cat.send(json!({"type": "typing", "room": "general"})).await;
    let t = ann.next_of("typing").await;
    assert_eq!(t["user"], "cat", "unmuted, cat's typing is relayed");

    // Slow mode limits new messages only: an edit and a reaction pass.
    ann.send(json!({"type": "slow", "room": "general", "seconds": 60}))
        .await;
    moderation(&mut cat, "slow").await;
    let one = cat.acked("general", "one", "s1").await;
    cat.send(
        json!({"type": "edit", "room": "general", "id": one, "text": "one!", "client_id": "s2"}),
    )
    .await;
    assert_eq!(ann.next_of("edited").await["text"], "one!");
    cat.send(
        json!({"type": "react", "room": "general", "id": theirs, "emoji": "👍", "client_id": "s3"}),
    )
    .await;
    assert_eq!(ann.next_of("reaction").await["from"], "cat");
    cat.send(common::chat::msg("general", "two", "s4")).await;
    assert_eq!(error(&mut cat).await["code"], "slow_mode");
    server.stop().await;
}

#[tokio::test]
async fn a_short_mute_ends_while_connected_and_a_ban_with_expiry_ends() {
    let server = ChatServer::start(config("expiry")).await;
    let (mut ann, _) = user(&server, "ann", false).await;
    moderation(&mut ann, "role").await;
    let (mut cat, _) = user(&server, "cat", false).await;
    ann.send(json!({"type": "mute", "room": "general", "user": "cat", "seconds": 1}))
        .await;
    moderation(&mut cat, "mute").await;
    let muted = cat.next_of("room").await;
    assert!(muted["you"]["muted_until"].as_u64().unwrap() > 0);
    // When it ends, the user is told with a `room` event without it.
    let freed = cat.next_of("room").await;
    assert!(freed["you"].get("muted_until").is_none(), "{freed}");
    assert!(cat.acked("general", "free again", "c1").await > 0);

    ann.send(json!({"type": "ban", "room": "general", "user": "cat", "seconds": 1}))
        .await;
    moderation(&mut cat, "ban").await;
    cat.send(json!({"type": "join", "room": "general"})).await;
    assert_eq!(error(&mut cat).await["code"], "banned");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    cat.send(json!({"type": "join", "room": "general"})).await;
    cat.next_of("room").await;
    server.stop().await;
}

#[tokio::test]
async fn a_server_wide_ban_closes_with_4004_and_refuses_hello() {
    let server = ChatServer::start(config("server-ban")).await;
    let (mut root, _) = user(&server, "root", true).await;
    let (mut ann, _) = user(&server, "ann", false).await;
    let (mut eve, _) = user(&server, "eve", false).await;
    let (mut eve2, _) = user(&server, "eve", false).await;
    // Only admins ban server-wide.
    ann.send(json!({"type": "ban", "user": "eve"})).await;
    assert_eq!(error(&mut ann).await["code"], "forbidden");
    root.send(json!({"type": "ban", "user": "eve", "reason": "spam"}))
        .await;
    let said = moderation(&mut root, "ban").await;
    assert!(said.get("room").is_none());
    assert_eq!(eve.close_code(Duration::from_secs(5)).await, Some(4004));
    assert_eq!(eve2.close_code(Duration::from_secs(5)).await, Some(4004));
    let mut again = Client::greet(server.addr, hello("eve", false)).await;
    let refused = again.next_of("error").await;
    assert_eq!(refused["code"], "banned", "{refused}");
    assert_eq!(again.close_code(Duration::from_secs(5)).await, Some(4004));
    root.send(json!({"type": "unban", "user": "eve"})).await;
    moderation(&mut root, "unban").await;
    let (_, room) = user(&server, "eve", false).await;
    assert_eq!(room["room"], "general");
    server.stop().await;
}

#[tokio::test]
async fn a_banned_users_requests_after_the_ban_are_neither_stored_nor_relayed() {
    let server = ChatServer::start(config("ban-then-post")).await;
    let (mut root, _) = user(&server, "root", true).await;
    let (mut ann, _) = user(&server, "ann", false).await;
    let (mut eve, _) = user(&server, "eve", false).await;
    // eve reads nothing from here on: what the room says waits for her.
    for i in 0..5 {
        ann.acked("general", &format!("backlog {i}"), &format!("a{i}"))
            .await;
    }
    root.send(json!({"type": "ban", "user": "eve"})).await;
    moderation(&mut root, "ban").await;
    eve.send(common::chat::msg("general", "after the ban", "e1"))
        .await;
    eve.send(json!({"type": "dm", "to": "ann", "text": "after the ban", "client_id": "e2"}))
        .await;
    root.send(json!({"type": "dm", "to": "ann", "text": "marker", "client_id": "r1"}))
        .await;
    nothing_from_until(&mut ann, "eve", "marker").await;
    assert_eq!(eve.close_code(Duration::from_secs(5)).await, Some(4004));
    ann.send(json!({"type": "history", "room": "general"}))
        .await;
    let page = ann.next_of("history").await;
    assert!(
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["from"] != "eve"),
        "{page}"
    );
    server.stop().await;
}

/// A server-wide ban holds on the nick a guest is given, not only on the
/// one it asks for, and on a rename.
#[tokio::test]
async fn a_banned_nick_is_neither_handed_out_as_a_suffix_nor_taken_by_a_rename() {
    let c = accounts_config("ban-nick-given");
    let db = c.db.clone();
    let server = ChatServer::start(c).await;
    let token = register(&server, "root").await;
    rfc6455::chat::admin(&db, None, &AdminOp::Add("root".into()))
        .await
        .unwrap();
    let (mut root, _) = server
        .client(json!({"type": "hello", "token": token}))
        .await;
    root.send(json!({"type": "ban", "user": "bob-2"})).await;
    moderation(&mut root, "ban").await;
    let (_bob, welcome) = server.client(json!({"type": "hello", "nick": "bob"})).await;
    assert_eq!(welcome["user"], "bob");
    // bob is taken: the next free nick that is not banned.
    let (_other, welcome) = server.client(json!({"type": "hello", "nick": "bob"})).await;
    assert_eq!(welcome["user"], "bob-3", "{welcome}");
    // A rename to the banned nick is refused the same way.
    let (mut cat, _) = server.client(json!({"type": "hello", "nick": "cat"})).await;
    cat.send(json!({"type": "nick", "nick": "bob-2", "client_id": "n1"}))
        .await;
    let e = error(&mut cat).await;
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("banned"), Some("n1")),
        "{e}"
    );
    server.stop().await;
}

#[tokio::test]
async fn moderators_delete_anyones_message_and_members_only_their_own() {
    let server = ChatServer::start(config("delete")).await;
    let (mut ann, _) = user(&server, "ann", false).await;
    moderation(&mut ann, "role").await;
    let (mut bob, _) = user(&server, "bob", false).await;
    let (mut cat, _) = user(&server, "cat", false).await;
    let id = bob.acked("general", "regrettable", "b1").await;
    cat.send(json!({"type": "delete", "room": "general", "id": id}))
        .await;
    assert_eq!(error(&mut cat).await["code"], "not_author");
    ann.send(json!({"type": "delete", "room": "general", "id": id}))
        .await;
    let d = cat.next_of("deleted").await;
    assert_eq!(
        (d["id"].as_u64(), d["by"].as_str()),
        (Some(id), Some("ann"))
    );
    cat.send(json!({"type": "history", "room": "general"}))
        .await;
    let page = cat.next_of("history").await;
    let m = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(m["deleted"], true);
    assert!(m.get("text").is_none());
    // An author's own delete says no `by`.
    let own = cat.acked("general", "mine", "c1").await;
    cat.send(json!({"type": "delete", "room": "general", "id": own}))
        .await;
    let d = bob.next(|e| e["type"] == "deleted" && e["id"] == own).await;
    assert!(d.get("by").is_none(), "{d}");
    server.stop().await;
}

#[tokio::test]
async fn a_blocked_user_is_refused_dms_and_hidden_live_in_history_and_on_resume() {
    let server = ChatServer::start(config("blocks")).await;
    let (mut cat, _) = user(&server, "cat", false).await;
    let (mut dan, _) = user(&server, "dan", false).await;
    let (mut eve, _) = user(&server, "eve", false).await;
    let before = dan.acked("general", "before the block", "d0").await;
    cat.send(json!({"type": "block", "user": "dan"})).await;
    assert_eq!(cat.next_of("blocks").await["users"], json!(["dan"]));
    dan.send(json!({"type": "dm", "to": "cat", "text": "hi", "client_id": "dm1"}))
        .await;
    let e = error(&mut dan).await;
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("blocked"), Some("dm1"))
    );
    // Live: eve gets dan's message, cat does not (eve's comes next).
    let hidden = dan.acked("general", "you cannot see me", "d1").await;
    eve.next(|e| e["type"] == "msg" && e["id"] == hidden).await;
    let shown = eve.acked("general", "but me", "e1").await;
    loop {
        let m = cat.next_of("msg").await;
        assert_ne!(
            m["id"], hidden,
            "a blocked user's message reached the blocker"
        );
        if m["id"] == shown {
            break;
        }
    }
    // History.
    cat.send(json!({"type": "history", "room": "general"}))
        .await;
    let page = cat.next_of("history").await;
    let froms: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["from"].as_str().unwrap())
        .collect();
    assert!(!froms.contains(&"dan"), "{page}");
    // Resume.
    let (mut back, _) = server
        .client(
            json!({"type": "hello", "token": token("cat", false), "resume": {"general": before}}),
        )
        .await;
    dan.acked("general", "while away", "d2").await;
    let last = eve.acked("general", "after", "e2").await;
    let mut seen = Vec::new();
    loop {
        let m = back.next_of("msg").await;
        seen.push(m["from"].as_str().unwrap().to_owned());
        if m["id"] == last {
            break;
        }
    }
    assert!(!seen.contains(&"dan".to_owned()), "{seen:?}");
    cat.send(json!({"type": "unblock", "user": "dan"})).await;
    assert_eq!(cat.next_of("blocks").await["users"], json!([]));
    cat.send(json!({"type": "blocks"})).await;
    assert_eq!(cat.next_of("blocks").await["users"], json!([]));
    let seen = dan.acked("general", "visible again", "d3").await;
    cat.next(|e| e["type"] == "msg" && e["id"] == seen).await;
    server.stop().await;
}

/// What `c` receives until `marker` (a DM from someone else), asserting
/// none of it comes from `from`.
async fn nothing_from_until(c: &mut Client, from: &str, marker: &str) {
    loop {
        let e = c.event(Duration::from_secs(5)).await.expect("the marker");
        assert_ne!(e["from"], from, "{e}");
        if e["type"] == "dm" && e["text"] == marker {
            return;
        }
    }
}

#[tokio::test]
async fn a_blocked_user_cannot_reach_the_blocker_by_a_dm_reply_edit_or_reaction() {
    let server = ChatServer::start(config("dm-blocks")).await;
    let (mut ann, _) = user(&server, "ann", false).await;
    let (mut bob, _) = user(&server, "bob", false).await;
    let (mut cat, _) = user(&server, "cat", false).await;
    bob.send(json!({"type": "dm", "to": "ann", "text": "hi", "client_id": "b0"}))
        .await;
    let id = bob.next_of("ack").await["id"].as_u64().unwrap();
    ann.next(|e| e["type"] == "dm" && e["id"] == id).await;
    ann.send(json!({"type": "block", "user": "bob"})).await;
    assert_eq!(ann.next_of("blocks").await["users"], json!(["bob"]));
    refused_each(
        &mut bob,
        "blocked",
        [
            json!({"type": "dm", "to": "ann", "text": "still here", "client_id": "b1", "reply_to": id}),
            json!({"type": "edit", "dm": "ann", "id": id, "text": "edited", "client_id": "b2"}),
            json!({"type": "react", "dm": "ann", "id": id, "emoji": "👍", "client_id": "b3"}),
        ],
    )
    .await;
    cat.send(json!({"type": "dm", "to": "ann", "text": "marker", "client_id": "c1"}))
        .await;
    nothing_from_until(&mut ann, "bob", "marker").await;
    server.stop().await;
}

#[tokio::test]
async fn the_audit_log_records_actions_for_owners_and_admins_and_chat_admin_add_works_live() {
    let config = config("audit");
    let db = config.db.clone();
    let server = ChatServer::start(config).await;
    let (mut ann, _) = user(&server, "ann", false).await;
    moderation(&mut ann, "role").await;
    let (mut bob, _) = user(&server, "bob", false).await;
    ann.send(
        json!({"type": "mute", "room": "general", "user": "bob", "minutes": 5, "reason": "loud"}),
    )
    .await;
    moderation(&mut ann, "mute").await;
    ann.send(json!({"type": "audit", "room": "general"})).await;
    let audit = ann.next_of("audit").await;
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries[0]["action"], "mute", "newest first: {audit}");
    assert_eq!(
        (entries[0]["by"].as_str(), entries[0]["user"].as_str()),
        (Some("ann"), Some("bob"))
    );
    assert!(entries[0]["detail"].as_str().unwrap().contains("loud"));
    assert!(entries[0]["ts"].as_u64().unwrap() > 0);
    assert_eq!(entries[1]["action"], "role");
    bob.send(json!({"type": "audit", "room": "general"})).await;
    assert_eq!(error(&mut bob).await["code"], "forbidden");

    // `chat admin add` (the real binary) while the server runs on the
    // same --db: bob is an admin at once.
    let out = common::process::rfc6455("error")
        .args(["chat", "--db"])
        .arg(&db)
        .args(["admin", "add", "bob"])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("bob is now a server admin"));
    // The library function it calls refuses a bad nick, naming the rule.
    let bad = rfc6455::chat::admin(&db, None, &AdminOp::Add("not a nick".into())).await;
    assert!(bad.unwrap_err().to_string().contains("nick"));
    let list = rfc6455::chat::admin(&db, None, &AdminOp::List)
        .await
        .unwrap();
    assert_eq!(list, "bob");
    bob.send(json!({"type": "audit", "room": "*"})).await;
    let audit = bob.next_of("audit").await;
    assert_eq!(audit["entries"][0]["action"], "admin_add", "{audit}");
    bob.send(json!({"type": "unmute", "room": "general", "user": "bob"}))
        .await;
    moderation(&mut bob, "unmute").await;
    rfc6455::chat::admin(&db, None, &AdminOp::Remove("bob".into()))
        .await
        .unwrap();
    bob.send(json!({"type": "audit", "room": "*"})).await;
    assert_eq!(error(&mut bob).await["code"], "forbidden");
    server.stop().await;
}

#[tokio::test]
async fn resume_replays_moderation_events_in_order() {
    let server = ChatServer::start(config("resume")).await;
    let (mut ann, _) = user(&server, "ann", false).await;
    let own = moderation(&mut ann, "role").await;
    let seen = own["event_id"].as_u64().unwrap();
    ann.send(json!({"type": "topic", "room": "general", "topic": "new"}))
        .await;
    moderation(&mut ann, "topic").await;
    let last = ann.acked("general", "after the topic", "a1").await;
    let (mut back, _) = server
        .client(json!({"type": "hello", "token": token("bob", false), "resume": {"general": seen}}))
        .await;
    let topic = moderation(&mut back, "topic").await;
    assert_eq!(
        (topic["topic"].as_str(), topic["by"].as_str()),
        (Some("new"), Some("ann"))
    );
    let m = back.next_of("msg").await;
    assert_eq!(m["id"], last);
    assert!(topic["event_id"].as_u64().unwrap() < last);
    server.stop().await;
}

/// Review finding 2: a room coming into memory reads its rules in force
/// (folded by the store), not its whole moderation history; a mute that
/// ended is dropped from the store when the room is loaded.
#[tokio::test]
async fn a_room_load_reads_its_rules_in_force_not_its_history() {
    let cfg = config("fold");
    let server = ChatServer::start(cfg.clone()).await;
    let (mut ann, _) = user(&server, "ann", false).await;
    moderation(&mut ann, "role").await;
    common::chat::rule_history(&mut ann, "general").await;
    let db = server.stop().await;
    let count = |sql: &str| -> i64 {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    let history = "SELECT count(*) FROM messages WHERE room = 'general' AND kind = 'moderation'";
    assert_eq!(count(history), 15, "the audit log keeps every event");
    let in_force = "SELECT count(*) FROM rules WHERE room = 'general'";
    // role:ann, mute:bob, ban:eve, topic, slow, role:fay, mute:cat.
    assert_eq!(count(in_force), 7);
    tokio::time::sleep(Duration::from_millis(1100)).await; // cat's mute ends

    let server = ChatServer::start(cfg).await;
    let (_ann, room) = user(&server, "ann", false).await;
    assert_eq!(
        (
            room["topic"].as_str(),
            room["slow"].as_u64(),
            room["owners"].clone(),
            room["moderators"].clone()
        ),
        (Some("second"), Some(45), json!(["ann"]), json!(["fay"]))
    );
    let (mut bob, _) = user(&server, "bob", false).await;
    bob.send(common::chat::msg("general", "still muted?", "b1"))
        .await;
    assert_eq!(error(&mut bob).await["code"], "muted");
    let (mut cat, room) = user(&server, "cat", false).await;
    assert!(room["you"].get("muted_until").is_none(), "{room}");
    assert!(cat.acked("general", "my mute ended", "c1").await > 0);
    user(&server, "dan", false).await; // unbanned: joins
    let (mut eve, _) = server.client(hello("eve", false)).await;
    assert_eq!(error(&mut eve).await["code"], "banned");
    let db = server.stop().await;
    let count = |sql: &str| -> i64 {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    assert_eq!(count(in_force), 6, "cat's ended mute dropped at the load");
    let mutes = "SELECT count(*) FROM mutes WHERE room = 'general'";
    assert_eq!(count(mutes), 1, "only bob's");
}

/// Review finding 4: an admin making a room's only owner a member leaves
/// the room ownerless, for good: neither the demoted owner coming back nor
/// a new verified user claims it, across a restart too, until an admin
/// names an owner.
#[tokio::test]
async fn a_room_whose_only_owner_was_demoted_is_not_claimed_again() {
    let cfg = config("ownerless");
    let server = ChatServer::start(cfg.clone()).await;
    let (mut ann, _) = user(&server, "ann", false).await;
    moderation(&mut ann, "role").await;
    let (mut root, _) = user(&server, "root", true).await;
    root.send(json!({"type": "role", "room": "general", "user": "ann", "role": "member"}))
        .await;
    let demoted = moderation(&mut ann, "role").await;
    assert_eq!(
        (demoted["role"].as_str(), demoted["ownerless"].as_bool()),
        (Some("member"), Some(true)),
        "{demoted}"
    );
    assert_eq!(ann.next_of("room").await["owners"], json!([]));
    drop(ann);
    drop(root);
    server.stop().await;

    let server = ChatServer::start(cfg).await;
    for name in ["ann", "bob"] {
        let (mut c, room) = user(&server, name, false).await;
        assert_eq!(room["owners"], json!([]), "{name}: {room}");
        assert_eq!(room["you"]["role"], "member", "{name}");
        // A claim would be stored before this message: it is not.
        let seen = c.before_ack("general", "hello", "h1").await;
        assert!(!seen.iter().any(|e| e["type"] == "moderation"), "{seen:?}");
        c.send(json!({"type": "topic", "room": "general", "topic": "mine"}))
            .await;
        assert_eq!(error(&mut c).await["code"], "forbidden", "{name}");
    }
    let (mut root, _) = user(&server, "root", true).await;
    root.send(json!({"type": "role", "room": "general", "user": "bob", "role": "owner"}))
        .await;
    let named = moderation(&mut root, "role").await;
    assert_eq!(
        (named["user"].as_str(), named["role"].as_str()),
        (Some("bob"), Some("owner"))
    );
    assert!(named.get("ownerless").is_none(), "{named}");
    server.stop().await;
}

/// Review finding 9: with accounts on, rights stored under a nick are the
/// account's. A guest holding a stored admin's nick (before its account
/// exists) is a guest to moderators, and a role goes only to a nick an
/// account or a verified user holds: not to a guest's, nor to one nobody
/// registered (whoever registered it next would get the role).
#[tokio::test]
async fn stored_rights_are_an_accounts_not_a_guests_holding_the_nick() {
    let c = accounts_config("rights");
    let db = c.db.clone();
    let server = ChatServer::start(c).await;
    let token = register(&server, "ann").await;
    let (mut ann, _) = server
        .client(json!({"type": "hello", "token": token}))
        .await;
    moderation(&mut ann, "role").await; // ann owns general
    // The operator made "root" an admin before root signed up; a guest
    // took the nick meanwhile.
    rfc6455::chat::admin(&db, None, &AdminOp::Add("root".into()))
        .await
        .unwrap();
    let (mut guest, welcome) = server
        .client(json!({"type": "hello", "nick": "root"}))
        .await;
    assert_eq!(
        (welcome["user"].as_str(), welcome["guest"].as_bool()),
        (Some("root"), Some(true))
    );
    guest.next_of("room").await;
    // The owner may act on that guest: it is no admin.
    ann.send(json!({"type": "mute", "room": "general", "user": "root"}))
        .await;
    let muted = moderation(&mut guest, "mute").await;
    assert_eq!(muted["by"], "ann");
    // No role for the guest's nick, nor for a nick nobody registered.
    for user in ["root", "dave"] {
        ann.send(json!({"type": "role", "room": "general", "user": user, "role": "moderator"}))
            .await;
        let e = error(&mut ann).await;
        assert_eq!(e["code"], "unknown_user", "{user}: {e}");
        assert!(e["message"].as_str().unwrap().contains(user), "{e}");
    }
    // A registered nick may be named, online or not.
    register(&server, "bob").await;
    ann.send(json!({"type": "role", "room": "general", "user": "bob", "role": "moderator"}))
        .await;
    let named = moderation(&mut ann, "role").await;
    assert_eq!(
        (named["user"].as_str(), named["role"].as_str()),
        (Some("bob"), Some("moderator"))
    );
    server.stop().await;
}

/// Review finding 14: a moderator acting on a room it is not in is told,
/// by the `moderation` event it made (the room's fan-out does not reach
/// it); a member is told by the fan-out, once.
#[tokio::test]
async fn an_actor_outside_the_room_gets_its_moderation_event() {
    let server = ChatServer::start(config("outside")).await;
    let (mut ann, _) = user(&server, "ann", false).await;
    moderation(&mut ann, "role").await;
    ann.send(json!({"type": "join", "room": "dev"})).await;
    ann.next(|e| e["type"] == "moderation" && e["room"] == "dev")
        .await;
    let (mut root, _) = user(&server, "root", true).await;
    root.send(json!({"type": "topic", "room": "dev", "topic": "from outside"}))
        .await;
    let told = moderation(&mut root, "topic").await;
    assert_eq!(
        (
            told["room"].as_str(),
            told["topic"].as_str(),
            told["by"].as_str()
        ),
        (Some("dev"), Some("from outside"), Some("root"))
    );
    let seen = moderation(&mut ann, "topic").await;
    assert_eq!(seen["event_id"], told["event_id"], "the same stored event");
    // In the room: the fan-out's copy only.
    root.send(json!({"type": "topic", "room": "general", "topic": "inside"}))
        .await;
    moderation(&mut root, "topic").await;
    let after = root.drain(Duration::from_millis(300)).await;
    assert!(
        !after.iter().any(|e| e["type"] == "moderation"),
        "once: {after:?}"
    );
    server.stop().await;
}

/// Review finding 12: blocks a guest stored under a nick are not
/// inherited by the account that registers that nick.
#[tokio::test]
async fn an_account_does_not_inherit_the_blocks_a_guest_stored_under_its_nick() {
    let server = ChatServer::start(accounts_config("inherit")).await;
    let (mut guest, _) = server
        .client(json!({"type": "hello", "nick": "alice"}))
        .await;
    guest.send(json!({"type": "block", "user": "bob"})).await;
    assert_eq!(guest.next_of("blocks").await["users"], json!(["bob"]));
    guest.close().await;
    let token = register(&server, "alice").await;
    let (mut alice, welcome) = server
        .client(json!({"type": "hello", "token": token}))
        .await;
    assert_eq!(welcome["guest"], false);
    alice.send(json!({"type": "blocks"})).await;
    assert_eq!(alice.next_of("blocks").await["users"], json!([]));
    server.stop().await;
}
