//! Accounts scaled out (issue 17): two chat servers on one real
//! `redis-server` share accounts, sessions and the token signing key.
//! An account registered on one logs in on the other, a token issued by
//! one is taken by the other, and a logout on one closes the session's
//! connections on both (4005) and its token is refused by both.

mod common;

use std::time::Duration;

use common::chat::Client;
use common::redis::Redis;
use common::server::{ChatServer, http_post};

use rfc6455::chat::{ChatConfig, ClusterConfig, HashConfig};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);
const PASSWORD: &str = "correct horse battery";

fn config(redis: &Redis, name: &str) -> ChatConfig {
    let mut c = ChatConfig::new(common::temp_dir("cluster-accounts", name).join("chat.db"));
    c.redis = Some(ClusterConfig::new(redis.url()));
    c.presence_interval = Duration::from_millis(20);
    c.close_timeout = Duration::from_millis(300);
    c.accounts.hash = HashConfig::cheap();
    c
}

/// A `redis-server` and two chat servers on it (the Redis first: it
/// must outlive them).
async fn two_servers(name: &str) -> (Redis, ChatServer, ChatServer) {
    let redis = Redis::start(name).await;
    let a = ChatServer::start(config(&redis, &format!("{name}-a"))).await;
    let b = ChatServer::start(config(&redis, &format!("{name}-b"))).await;
    (redis, a, b)
}

#[tokio::test]
async fn two_servers_share_accounts_sessions_and_revocations() {
    let (_redis, a, b) = two_servers("cluster-accounts").await;
    let creds = json!({"nick": "alice", "password": PASSWORD});

    let registered = http_post(a.addr, "/api/register", Some(&creds), None).await;
    assert_eq!(registered.status, 201, "{registered:?}");
    // The same nick, or a look-alike, cannot be registered on B.
    let again = http_post(
        b.addr,
        "/api/register",
        Some(&json!({"nick": "Alice", "password": PASSWORD})),
        None,
    )
    .await;
    assert_eq!((again.status, again.error()), (409, "nick_confusable"));
    let logged = http_post(b.addr, "/api/login", Some(&creds), None).await;
    assert_eq!(logged.status, 200, "logged in on B: {logged:?}");

    // A's token on B (one signing key for both), and B's on A.
    let token_a = registered.json["token"].clone();
    let token_b = logged.json["token"].clone();
    let (mut on_b, welcome) = b.client(json!({"type": "hello", "token": token_a})).await;
    assert_eq!(
        (welcome["user"].as_str(), welcome["guest"].as_bool()),
        (Some("alice"), Some(false))
    );
    let (mut on_a, _) = a.client(json!({"type": "hello", "token": token_b})).await;
    let (mut also_on_a, _) = a.client(json!({"type": "hello", "token": token_a})).await;
    // The nick is reserved on both: a guest asking B for it is refused.
    let mut guest = Client::greet(b.addr, json!({"type": "hello", "nick": "alice"})).await;
    assert_eq!(guest.next_of("error").await["code"], "nick_reserved");

    // Logout on B of the session issued by B: its connection on A closes.
    let out = http_post(b.addr, "/api/logout", None, token_b.as_str()).await;
    assert_eq!(out.status, 204, "{out:?}");
    assert_eq!(on_a.close_code(WAIT).await, Some(4005), "closed on A");
    for server in [&a, &b] {
        let mut replayed =
            Client::greet(server.addr, json!({"type": "hello", "token": token_b})).await;
        assert_eq!(
            replayed.close_code(WAIT).await,
            Some(4001),
            "refused on {}",
            server.addr
        );
    }
    // The other session (A's token) lives on, on both servers.
    let ack = also_on_a
        .answer(common::chat::msg("general", "still in", "m1"))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let ack = on_b
        .answer(common::chat::msg("general", "me too", "m2"))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");

    a.stop().await;
    b.stop().await;
}

/// Refresh tokens and password changes through Redis: a pair issued by
/// A is rotated on B, the spent token replayed on A revokes the session
/// (its connection on B closes), and a password changed on B revokes the
/// user's other sessions on A.
#[tokio::test]
async fn refresh_replay_and_password_change_reach_every_server() {
    let (_redis, a, b) = two_servers("cluster-accounts-refresh").await;
    let creds = json!({"nick": "bob", "password": PASSWORD});
    let first = http_post(a.addr, "/api/register", Some(&creds), None)
        .await
        .json;
    let spent = json!({"refresh": first["refresh"]});
    let second = http_post(b.addr, "/api/refresh", Some(&spent), None).await;
    assert_eq!(second.status, 200, "rotated on B: {second:?}");
    let (mut on_b, _) = b
        .client(json!({"type": "hello", "token": second.json["token"]}))
        .await;
    let replay = http_post(a.addr, "/api/refresh", Some(&spent), None).await;
    assert_eq!((replay.status, replay.error()), (401, "bad_token"));
    assert_eq!(on_b.close_code(WAIT).await, Some(4005), "revoked on B by A");
    let next = json!({"refresh": second.json["refresh"]});
    let after = http_post(b.addr, "/api/refresh", Some(&next), None).await;
    assert_eq!(after.status, 401, "the whole session is gone");

    let mine = http_post(b.addr, "/api/login", Some(&creds), None)
        .await
        .json;
    let theirs = http_post(a.addr, "/api/login", Some(&creds), None)
        .await
        .json;
    let (mut on_a, _) = a
        .client(json!({"type": "hello", "token": theirs["token"]}))
        .await;
    let change = json!({"old": PASSWORD, "new": "another long password"});
    let token = mine["token"].as_str();
    let done = http_post(b.addr, "/api/password", Some(&change), token).await;
    assert_eq!(done.status, 204, "{done:?}");
    assert_eq!(
        on_a.close_code(WAIT).await,
        Some(4005),
        "the other session, on A"
    );
    let new = json!({"nick": "bob", "password": "another long password"});
    assert_eq!(
        http_post(a.addr, "/api/login", Some(&new), None)
            .await
            .status,
        200
    );
    assert_eq!(
        http_post(a.addr, "/api/login", Some(&creds), None)
            .await
            .status,
        401
    );
    a.stop().await;
    b.stop().await;
}

/// A guest on one server is listed in `guests` on the other: in the
/// presence that announces it, and in `members`; its messages carry
/// `guest: true` there too.
#[tokio::test]
async fn a_guest_on_one_server_is_marked_on_the_other() {
    let (_redis, a, b) = two_servers("cluster-accounts-guests").await;
    let creds = json!({"nick": "alice", "password": PASSWORD});
    let issued = http_post(a.addr, "/api/register", Some(&creds), None)
        .await
        .json;
    let (mut alice, _) = b
        .client(json!({"type": "hello", "token": issued["token"]}))
        .await;
    let (mut carol, _) = a.client(json!({"type": "hello", "nick": "carol"})).await;
    let told = alice
        .next(|e| {
            e["type"] == "presence"
                && e["joined"]
                    .as_array()
                    .is_some_and(|j| j.contains(&json!("carol")))
        })
        .await;
    assert_eq!(told["guests"], json!(["carol"]), "{told}");
    alice
        .send(json!({"type": "members", "room": "general"}))
        .await;
    let members = alice.next_of("members").await;
    assert_eq!(members["guests"], json!(["carol"]), "{members}");
    carol.send_msg("general", "hello from A", "c1").await;
    let m = alice
        .next(|e| e["type"] == "msg" && e["from"] == "carol")
        .await;
    assert_eq!(m["guest"], true, "{m}");
    a.stop().await;
    b.stop().await;
}

/// One `redis-server` command's answer, for looking at the keys.
async fn redis_query<T: redis::FromRedisValue>(redis: &Redis, cmd: &mut redis::Cmd) -> T {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut conn).await.unwrap()
}

/// Review finding 3: the nick `key` (skeleton `key`) registered first on
/// a new store does not take the signing key's place: it logs in on
/// both servers, and accounts registered after it still work.
#[tokio::test]
async fn an_account_called_key_leaves_the_signing_key_alone() {
    let (_redis, a, b) = two_servers("cluster-accounts-key").await;
    let creds = json!({"nick": "key", "password": PASSWORD});
    let first = http_post(a.addr, "/api/register", Some(&creds), None).await;
    assert_eq!(first.status, 201, "{first:?}");
    let logged = http_post(b.addr, "/api/login", Some(&creds), None).await;
    assert_eq!(logged.status, 200, "{logged:?}");
    let other = json!({"nick": "alice", "password": PASSWORD});
    let second = http_post(b.addr, "/api/register", Some(&other), None).await;
    assert_eq!(second.status, 201, "{second:?}");
    let (_, welcome) = a
        .client(json!({"type": "hello", "token": second.json["token"]}))
        .await;
    assert_eq!(welcome["user"], "alice");
    a.stop().await;
    b.stop().await;
}

/// Review finding 7: an account's list of sessions expires with its
/// newest session and drops the ones revoked, so logins do not grow it
/// for ever.
#[tokio::test]
async fn an_accounts_session_list_expires_and_sheds_revoked_sessions() {
    let (redis, a, b) = two_servers("cluster-accounts-sessions").await;
    let creds = json!({"nick": "dave", "password": PASSWORD});
    let first = http_post(a.addr, "/api/register", Some(&creds), None).await;
    assert_eq!(first.status, 201, "{first:?}");
    for _ in 0..2 {
        assert_eq!(
            http_post(b.addr, "/api/login", Some(&creds), None)
                .await
                .status,
            200
        );
    }
    let key = "chat:asessions:dave";
    let ttl: i64 = redis_query(&redis, redis::cmd("PTTL").arg(key)).await;
    assert!(ttl > 0, "the list expires (PTTL {ttl})");
    let token = first.json["token"].as_str();
    assert_eq!(
        http_post(a.addr, "/api/logout", None, token).await.status,
        204
    );
    let left: i64 = redis_query(&redis, redis::cmd("ZCARD").arg(key)).await;
    assert_eq!(left, 2);
    a.stop().await;
    b.stop().await;
}

/// Review finding 2, scaled out: registering a nick on one server closes
/// the guest holding it on the other (4006).
#[tokio::test]
async fn registering_a_nick_closes_its_guest_on_the_other_server() {
    let (_redis, a, b) = two_servers("cluster-accounts-claim").await;
    let (mut guest, _) = b.client(json!({"type": "hello", "nick": "erin"})).await;
    let creds = json!({"nick": "erin", "password": PASSWORD});
    let issued = http_post(a.addr, "/api/register", Some(&creds), None).await;
    assert_eq!(issued.status, 201, "{issued:?}");
    assert_eq!(guest.close_code(WAIT).await, Some(4006));
    a.stop().await;
    b.stop().await;
}

/// Review finding 12, scaled out: registering a nick drops the blocks a
/// guest stored under it (`chat:blocks:{nick}`), in the same script.
#[tokio::test]
async fn registering_drops_the_blocks_a_guest_stored_under_the_nick() {
    let (_redis, a, b) = two_servers("cluster-inherit").await;
    let (mut guest, _) =
        Client::connect(a.addr, "/ws", json!({"type": "hello", "nick": "alice"})).await;
    guest.send(json!({"type": "block", "user": "bob"})).await;
    assert_eq!(guest.next_of("blocks").await["users"], json!(["bob"]));
    guest.close().await;
    let creds = json!({"nick": "alice", "password": PASSWORD});
    let registered = http_post(b.addr, "/api/register", Some(&creds), None).await;
    assert_eq!(registered.status, 201, "{registered:?}");
    let hello = json!({"type": "hello", "token": registered.json["token"].clone()});
    let (mut alice, _) = Client::connect(a.addr, "/ws", hello).await;
    alice.send(json!({"type": "blocks"})).await;
    assert_eq!(alice.next_of("blocks").await["users"], json!([]));
}
