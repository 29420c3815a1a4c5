//! Moderation (issue 17) across two servers on one real `redis-server`
//! (`tests/common/cluster.rs`): a server-wide ban through A closes the
//! user on B (4004) and B refuses its `hello`; a mute through A refuses
//! posts on B (and the post script refuses a muted writer's edit and
//! reaction itself); roles named through A hold on B; a block made on B holds
//! for DMs sent through A and for messages posted through A; and
//! `rfc6455 chat admin add --redis` (the real binary) makes an admin
//! both servers know at once.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::chat::Client;
use common::cluster::{Chat, PRESENCE_TTL};
use common::process::rfc6455;
use common::redis::Redis;
use serde_json::{Value, json};

const SECRET: &str = "s3cret";

async fn server(redis: &Redis) -> Chat {
    Chat::start_with_args(&redis.url(), PRESENCE_TTL, &["--jwt-secret", SECRET]).await
}

/// `name` on `chat`, past its first `room` event.
async fn user(chat: &Chat, name: &str, admin: bool) -> Client {
    let hello = json!({"type": "hello", "token": common::chat::token_as(SECRET, name, admin)});
    let (mut c, _) = chat.client(hello).await;
    c.next_of("room").await;
    c
}

async fn moderation(c: &mut Client, action: &str) -> Value {
    c.next(|e| e["type"] == "moderation" && e["action"] == action)
        .await
}

/// What the store keeps of `nick`'s mute in `general` (`chat:mutes:general`).
async fn mute_of(r: &mut redis::aio::MultiplexedConnection, nick: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg("chat:mutes:general")
        .arg(nick)
        .query_async(r)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_wide_ban_through_one_server_closes_the_user_on_the_other() {
    let redis = Redis::start("mod-ban").await;
    let (a, b) = (server(&redis).await, server(&redis).await);
    let mut root = user(&a, "root", true).await;
    let mut eve = user(&b, "eve", false).await;
    root.send(json!({"type": "ban", "user": "eve", "reason": "spam"}))
        .await;
    moderation(&mut root, "ban").await;
    assert_eq!(eve.close_code(Duration::from_secs(10)).await, Some(4004));
    let hello = json!({"type": "hello", "token": common::chat::token_as(SECRET, "eve", false)});
    let mut again = Client::greet(b.addr, hello).await;
    assert_eq!(again.next_of("error").await["code"], "banned");
    assert_eq!(again.close_code(Duration::from_secs(10)).await, Some(4004));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutes_roles_blocks_and_admins_hold_on_both_servers() {
    let redis = Redis::start("mod-rules").await;
    let (a, b) = (server(&redis).await, server(&redis).await);
    let mut ann = user(&a, "ann", false).await;
    let own = moderation(&mut ann, "role").await;
    assert_eq!(own["user"], "ann", "ann owns general");
    let mut bob = user(&b, "bob", false).await;
    let mut cat = user(&b, "cat", false).await;
    let mut dan = user(&a, "dan", false).await;

    // A mute through A refuses bob's posts on B.
    ann.send(json!({"type": "mute", "room": "general", "user": "bob"}))
        .await;
    moderation(&mut bob, "mute").await;
    bob.send(common::chat::msg("general", "hi", "b1")).await;
    assert_eq!(bob.next_of("error").await["code"], "muted");
    // The store keeps the room's mutes beside the event (the post script
    // refuses a muted writer's message itself).
    let mut r = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    assert_eq!(
        mute_of(&mut r, "bob").await.as_deref(),
        Some("0"),
        "until lifted"
    );

    // A role named through A is in force on B: cat moderates there.
    ann.send(json!({"type": "role", "room": "general", "user": "cat", "role": "moderator"}))
        .await;
    moderation(&mut cat, "role").await;
    assert_eq!(cat.next_of("room").await["you"]["role"], "moderator");
    cat.send(json!({"type": "unmute", "room": "general", "user": "bob"}))
        .await;
    moderation(&mut bob, "unmute").await;
    assert!(bob.acked("general", "free", "b2").await > 0);
    assert_eq!(mute_of(&mut r, "bob").await, None);

    // A block made on B holds for a DM through A and for posts through A,
    // on cat's tab on B and on its tab on A (told through Redis).
    let mut cat_on_a = user(&a, "cat", false).await;
    cat.send(json!({"type": "block", "user": "dan"})).await;
    assert_eq!(cat.next_of("blocks").await["users"], json!(["dan"]));
    // The signal's way: through Redis to A, which reads cat's blocks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    dan.send(json!({"type": "dm", "to": "cat", "text": "psst", "client_id": "d1"}))
        .await;
    assert_eq!(dan.next_of("error").await["code"], "blocked");
    let hidden = dan.acked("general", "unseen by cat", "d2").await;
    let shown = ann.acked("general", "seen by cat", "a1").await;
    for tab in [&mut cat, &mut cat_on_a] {
        loop {
            let m = tab.next_of("msg").await;
            assert_ne!(m["id"], hidden, "dan's message reached a tab of cat");
            if m["id"] == shown {
                break;
            }
        }
    }

    // `chat admin add --redis` (the real binary): an admin on both.
    let out = rfc6455("error")
        .args(["chat", "--redis", &redis.url(), "admin", "add", "bob"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("bob"));
    bob.send(json!({"type": "audit", "room": "*"})).await;
    let audit = bob.next_of("audit").await;
    assert_eq!(audit["entries"][0]["action"], "admin_add", "{audit}");
    let mut bob_on_a = user(&a, "bob", false).await;
    bob_on_a
        .send(json!({"type": "kick", "room": "general", "user": "ann"}))
        .await;
    let kick = moderation(&mut ann, "kick").await;
    assert_eq!(kick["by"], "bob", "an admin acts on an owner");
}

/// The post script refuses a muted writer's edit and reaction itself, as
/// its message: here the mute is in the store (`chat:mutes:general`) but no
/// server has delivered its event, as when an edit races the mute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_refuses_a_muted_writers_edit_and_reaction() {
    let redis = Redis::start("mod-mute-edit").await;
    let a = server(&redis).await;
    let mut bob = user(&a, "bob", false).await;
    let id = bob.acked("general", "mine", "b0").await;
    let mut r = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let set = |op: &str| {
        let mut cmd = redis::cmd(op);
        cmd.arg("chat:mutes:general").arg("bob");
        cmd
    };
    let _: () = set("HSET").arg("0").query_async(&mut r).await.unwrap();
    let edit = |client_id: &str| json!({"type": "edit", "room": "general", "id": id, "text": "rewritten", "client_id": client_id});
    for request in [
        edit("e1"),
        json!({"type": "react", "room": "general", "id": id, "emoji": "👍", "client_id": "r1"}),
    ] {
        bob.send(request.clone()).await;
        let e = bob.next_of("error").await;
        assert_eq!(
            (e["code"].as_str(), &e["client_id"]),
            (Some("muted"), &request["client_id"]),
            "{request}"
        );
    }
    let _: () = set("HDEL").query_async(&mut r).await.unwrap();
    bob.send(edit("e2")).await;
    assert_eq!(bob.next_of("ack").await["client_id"], "e2");
}

/// `c` joins `room` and gets its `room` event.
async fn join(c: &mut Client, room: &str) -> Value {
    c.send(json!({"type": "join", "room": room})).await;
    c.next(|e| e["type"] == "room" && e["room"] == room).await
}

async fn hlen(r: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("HLEN").arg(key).query_async(r).await.unwrap()
}

/// Review finding 2, scaled out: the post script keeps each room's rules
/// in force (`chat:rules:{room}`), dropping timed ones once over, and a
/// room coming into memory on another server reads those, not its log;
/// a room from before (no such hash) is folded from its log once; audit
/// pages read one page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_load_reads_the_rules_in_force_and_audit_reads_a_page() {
    let redis = Redis::start("mod-fold").await;
    let (a, b) = (server(&redis).await, server(&redis).await);
    let mut r = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut ann = user(&a, "ann", false).await;
    join(&mut ann, "lab").await;
    moderation(&mut ann, "role").await;
    common::chat::rule_history(&mut ann, "lab").await;
    // role:ann, mute:bob, ban:eve, topic, slow, role:fay, mute:cat, ~last.
    assert_eq!(hlen(&mut r, "chat:rules:lab").await, 8);
    tokio::time::sleep(Duration::from_millis(1100)).await; // cat's mute ends
    ann.send(json!({"type": "topic", "room": "lab", "topic": "third"}))
        .await;
    moderation(&mut ann, "topic").await;
    assert_eq!(
        hlen(&mut r, "chat:rules:lab").await,
        7,
        "cat's mute dropped"
    );
    assert_eq!(hlen(&mut r, "chat:mutes:lab").await, 1, "bob's only");

    // B has never held `lab`: it reads the rules in force.
    let check = async |chat: &Chat| {
        let mut dan = user(chat, "dan", false).await;
        let room = join(&mut dan, "lab").await;
        assert_eq!(
            (
                room["topic"].as_str(),
                room["slow"].as_u64(),
                room["owners"].clone(),
                room["moderators"].clone()
            ),
            (Some("third"), Some(45), json!(["ann"]), json!(["fay"]))
        );
        let mut bob = user(chat, "bob", false).await;
        join(&mut bob, "lab").await;
        bob.send(common::chat::msg("lab", "muted?", "b1")).await;
        assert_eq!(bob.next_of("error").await["code"], "muted");
        let mut eve = user(chat, "eve", false).await;
        eve.send(json!({"type": "join", "room": "lab"})).await;
        assert_eq!(eve.next_of("error").await["code"], "banned");
        for c in [dan, bob, eve] {
            c.close().await;
        }
    };
    check(&b).await;

    // A room from before the rules were kept: folded from its log once.
    redis::cmd("DEL")
        .arg("chat:rules:lab")
        .arg("chat:ends:lab")
        .query_async::<i64>(&mut r)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // `lab` leaves B's memory
    check(&b).await;
    assert_eq!(hlen(&mut r, "chat:rules:lab").await, 7, "kept again");

    // Audit: pages of the log, newest first.
    ann.send(json!({"type": "audit", "room": "lab", "limit": 5}))
        .await;
    let first = ann.next_of("audit").await;
    let ids: Vec<u64> = first["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 5);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert_eq!(first["more"], true);
    assert_eq!(first["entries"][0]["action"], "topic");
    let before = ids[4];
    ann.send(json!({"type": "audit", "room": "lab", "before": before, "limit": 100}))
        .await;
    let rest = ann.next_of("audit").await;
    let older = rest["entries"].as_array().unwrap();
    assert_eq!(older.len(), 16 - 5, "the role claim and 15 more, 16 in all");
    assert!(older.iter().all(|e| e["id"].as_u64().unwrap() < before));
    assert_eq!(rest["more"], false);
}

/// Review finding 4, scaled out: the post script keeps the demotion that
/// left a room ownerless as a rule, so a server that loads the room later
/// does not let its next verified joiner claim it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_left_ownerless_is_not_claimed_on_another_server() {
    let redis = Redis::start("mod-ownerless").await;
    let (a, b) = (server(&redis).await, server(&redis).await);
    let mut ann = user(&a, "ann", false).await;
    join(&mut ann, "lab").await;
    moderation(&mut ann, "role").await;
    let mut root = user(&a, "root", true).await;
    join(&mut root, "lab").await;
    root.send(json!({"type": "role", "room": "lab", "user": "ann", "role": "member"}))
        .await;
    let demoted = moderation(&mut root, "role").await;
    assert_eq!(demoted["ownerless"], true, "{demoted}");
    // B has never held `lab`: dan, verified, is its first member there.
    let mut dan = user(&b, "dan", false).await;
    let room = join(&mut dan, "lab").await;
    assert_eq!(room["owners"], json!([]), "{room}");
    assert_eq!(room["you"]["role"], "member");
    // A claim would be stored before this message: it is not.
    let seen = dan.before_ack("lab", "hello", "d1").await;
    assert!(!seen.iter().any(|e| e["type"] == "moderation"), "{seen:?}");
    dan.send(json!({"type": "topic", "room": "lab", "topic": "mine"}))
        .await;
    let e = dan.next_of("error").await;
    assert_eq!(e["code"], "forbidden", "{e}");
}

/// Review finding 11: a store that cannot say whether a nick is banned
/// from the server does not let it in (fails closed): the `hello` gets
/// `unavailable` and the close says to try again later (1013).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_the_store_cannot_check_for_a_ban_is_refused_not_let_in() {
    let mut redis = Redis::start("mod-ban-down").await;
    let a = server(&redis).await;
    user(&a, "ann", false).await;
    redis.kill();
    let hello = json!({"type": "hello", "token": common::chat::token_as(SECRET, "troll", false)});
    let mut c = Client::greet(a.addr, hello).await;
    // Refused at once: no `welcome` first.
    let first = c.event(Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(
        (first["type"].as_str(), first["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{first}"
    );
    assert_eq!(c.close_code(Duration::from_secs(5)).await, Some(1013));
}
