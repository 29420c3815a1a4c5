//! The chat server, end to end over loopback, driven by this crate's own
//! client: rooms, DMs, presence, typing, history, resume, restart,
//! shutdown, slow consumers, authentication and bad input.

mod common;

use std::time::{Duration, Instant};

use common::chat::{Client, nicks, token};
use common::server::{ChatServer, http_get};
use rfc6455::chat::ChatConfig;
use rfc6455::proto::Message;
use rfc6455::transport::{self, Config, Keepalive};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

fn config(name: &str) -> ChatConfig {
    let mut c = ChatConfig::new(common::temp_dir("chat", name).join("chat.db"));
    c.presence_interval = Duration::from_millis(20);
    // Test clients that stop reading would hold shutdown up for the full
    // default of 5 s.
    c.close_timeout = Duration::from_millis(300);
    c
}

/// Upgrades a raw socket by hand and says `hello`; reads nothing back.
async fn raw_hello(s: &mut TcpStream, nick: &str) {
    s.write_all(common::request_for("/ws").as_bytes())
        .await
        .unwrap();
    let hello = json!({"type": "hello", "nick": nick}).to_string();
    s.write_all(&common::masked(0x81, hello.as_bytes()))
        .await
        .unwrap();
}

fn hello(nick: &str) -> Value {
    json!({"type": "hello", "nick": nick})
}

// Rooms and messages.

#[tokio::test]
async fn messages_reach_the_room_and_only_the_room() {
    let server = ChatServer::start(config("rooms")).await;
    let (mut alice, welcome) = server.client(hello("alice")).await;
    assert_eq!(welcome["user"], "alice");
    assert_eq!(welcome["rooms"], json!(["general"]));
    let (mut bob, _) = server.client(hello("bob")).await;
    let (mut carol, _) = server.client(hello("carol")).await;
    alice.send(json!({"type": "join", "room": "dev"})).await;
    while alice.next_of("history").await["room"] != "dev" {}
    bob.send(json!({"type": "join", "room": "dev"})).await;
    while bob.next_of("history").await["room"] != "dev" {}
    let id = alice.acked("dev", "in dev", "c1").await;
    assert_eq!(id, 1);
    let got = bob.next_of("msg").await;
    assert_eq!(
        (
            got["room"].as_str(),
            got["id"].as_u64(),
            got["from"].as_str(),
            got["text"].as_str()
        ),
        (Some("dev"), Some(1), Some("alice"), Some("in dev"))
    );
    assert!(got["ts"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(
        alice.acked("general", "to all", "c2").await,
        1,
        "ids count per room"
    );
    let seen = carol.next_of("msg").await;
    assert_eq!(
        (seen["room"].as_str(), seen["text"].as_str()),
        (Some("general"), Some("to all"))
    );
    assert!(
        carol
            .drain(Duration::from_millis(200))
            .await
            .iter()
            .all(|e| e["room"] != "dev"),
        "carol got a dev message"
    );
    server.stop().await;
}

#[tokio::test]
async fn direct_messages_reach_only_their_target() {
    let server = ChatServer::start(config("dm")).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    let (mut bob, _) = server.client(hello("bob")).await;
    let (mut carol, _) = server.client(hello("carol")).await;
    alice
        .send(json!({"type": "dm", "to": "bob", "text": "psst", "client_id": "d1"}))
        .await;
    let dm = bob.next_of("dm").await;
    assert_eq!(
        (dm["from"].as_str(), dm["to"].as_str(), dm["text"].as_str()),
        (Some("alice"), Some("bob"), Some("psst"))
    );
    assert_eq!(
        alice.next_of("dm").await["text"],
        "psst",
        "the sender's own copy"
    );
    assert!(
        carol
            .drain(Duration::from_millis(200))
            .await
            .iter()
            .all(|e| e["type"] != "dm")
    );
    alice
        .send(json!({"type": "dm", "to": "nobody", "text": "hi", "client_id": "d2"}))
        .await;
    let err = alice.next_of("error").await;
    assert_eq!(
        (err["code"].as_str(), err["client_id"].as_str()),
        (Some("unknown_user"), Some("d2"))
    );
    server.stop().await;
}

// Presence and typing.

#[tokio::test]
async fn presence_sends_a_roster_then_coalesced_deltas() {
    let server = ChatServer::start(config("presence")).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    let roster = alice.next_of("presence").await;
    assert_eq!(roster["joined"], json!(["alice"]));
    alice.drain(Duration::from_millis(100)).await;
    // A storm: 30 clients at once.
    let mut others = Vec::new();
    for i in 0..30 {
        others.push(server.client(hello(&format!("u{i}"))).await.0);
    }
    let events: Vec<Value> = alice
        .drain(Duration::from_millis(500))
        .await
        .into_iter()
        .filter(|e| e["type"] == "presence")
        .collect();
    let mut joined: Vec<String> = events
        .iter()
        .flat_map(|e| {
            e["joined"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
        })
        .collect();
    joined.sort();
    joined.dedup();
    assert_eq!(joined.len(), 30, "{events:?}");
    assert!(
        events.len() < 30,
        "{} presence events for 30 joins: not coalesced",
        events.len()
    );
    // A newcomer's roster has everyone.
    let (mut late, _) = server.client(hello("late")).await;
    assert_eq!(
        late.next_of("presence").await["joined"]
            .as_array()
            .unwrap()
            .len(),
        32
    );
    drop(others);
    let left: usize = alice
        .drain(Duration::from_millis(500))
        .await
        .iter()
        .filter(|e| e["type"] == "presence")
        .map(|e| e["left"].as_array().unwrap().len())
        .sum();
    assert_eq!(left, 30);
    server.stop().await;
}

#[tokio::test]
async fn typing_is_relayed_at_most_once_per_two_seconds() {
    let server = ChatServer::start(config("typing")).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    let (mut bob, _) = server.client(hello("bob")).await;
    alice.drain(Duration::from_millis(100)).await;
    for _ in 0..5 {
        bob.send(json!({"type": "typing", "room": "general"})).await;
    }
    let typing: Vec<Value> = alice
        .drain(Duration::from_millis(300))
        .await
        .into_iter()
        .filter(|e| e["type"] == "typing")
        .collect();
    assert_eq!(
        typing,
        [json!({"type": "typing", "room": "general", "user": "bob"})]
    );
    assert!(
        bob.drain(Duration::from_millis(100))
            .await
            .iter()
            .all(|e| e["type"] != "typing"),
        "echoed to the typist"
    );
    server.stop().await;
}

// History, resume, restart, shutdown.

#[tokio::test]
async fn history_pages_back_through_a_room() {
    let mut c = config("history");
    c.rate_limit = None;
    let server = ChatServer::start(c).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    for i in 1..=120 {
        alice
            .acked("general", &format!("m{i}"), &format!("c{i}"))
            .await;
    }
    let (mut bob, _) = server.client(hello("bob")).await;
    let page = bob.next_of("history").await;
    let ids: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (71..=120).collect::<Vec<_>>());
    assert_eq!(page["more"], true);
    bob.send(json!({"type": "history", "room": "general", "before": 71, "limit": 100}))
        .await;
    let older = bob.next_of("history").await;
    assert_eq!(older["messages"].as_array().unwrap().len(), 70);
    assert_eq!(older["messages"][0]["text"], "m1");
    assert_eq!(older["more"], false);
    bob.send(json!({"type": "history", "room": "elsewhere"}))
        .await;
    assert_eq!(bob.next_of("error").await["code"], "not_in_room");
    server.stop().await;
}

#[tokio::test]
async fn resume_replays_exactly_what_was_missed_while_others_keep_posting() {
    let mut c = config("resume");
    c.rate_limit = None;
    let server = ChatServer::start(c).await;
    let (mut bob, welcome) = server.client(hello("bob")).await;
    let session = welcome["session"].as_str().unwrap().to_owned();
    let (mut alice, _) = server.client(hello("alice")).await;
    for i in 0..5 {
        alice
            .acked("general", &format!("before {i}"), &format!("b{i}"))
            .await;
    }
    let mut last_seen = 0;
    while last_seen < 5 {
        last_seen = bob.next_of("msg").await["id"].as_u64().unwrap();
    }
    drop(bob);
    // Alice keeps posting while bob is away and while he comes back.
    let poster = tokio::spawn(async move {
        for i in 0..200 {
            alice
                .acked("general", &format!("during {i}"), &format!("d{i}"))
                .await;
        }
        alice
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (mut bob, welcome) = server.client(json!({"type": "hello", "nick": "bob", "session": session, "resume": {"general": last_seen}})).await;
    assert_eq!(welcome["user"], "bob", "the session reclaims the nick");
    let _alice = poster.await.unwrap();
    let mut ids = Vec::new();
    while ids.last() != Some(&205) {
        let m = bob.next_of("msg").await;
        ids.push(m["id"].as_u64().unwrap());
    }
    assert_eq!(ids, (6..=205).collect::<Vec<_>>(), "a gap or a duplicate");
    server.stop().await;
}

#[tokio::test]
async fn history_survives_a_restart_and_ids_continue() {
    let c = config("restart");
    let db = c.db.clone();
    let server = ChatServer::start(c.clone()).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    for i in 1..=3 {
        alice
            .acked("general", &format!("kept {i}"), &format!("k{i}"))
            .await;
    }
    assert_eq!(server.stop().await, db);
    let server = ChatServer::start(c).await;
    let (mut bob, _) = server.client(hello("bob")).await;
    let page = bob.next_of("history").await;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["kept 1", "kept 2", "kept 3"]);
    assert_eq!(bob.acked("general", "after", "a").await, 4);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_with_1001_after_saving_every_accepted_message() {
    let mut c = config("shutdown");
    c.rate_limit = None;
    let server = ChatServer::start(c).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    let mut acked = 0;
    for i in 0..500 {
        alice
            .acked("general", &format!("n{i}"), &format!("n{i}"))
            .await;
        acked += 1;
    }
    let stopping = tokio::spawn(server.stop());
    assert_eq!(alice.close_code(WAIT).await, Some(1001));
    let db = stopping.await.unwrap();
    let conn = rusqlite::Connection::open(db).unwrap();
    let stored: i64 = conn
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, acked as i64);
}

// Pressure and abuse.

#[tokio::test]
async fn a_slow_consumer_is_closed_with_1013_and_delays_no_one() {
    let mut c = config("slow");
    c.rate_limit = None;
    c.outbox_limit = 64 * 1024;
    let server = ChatServer::start(c).await;
    // The slow client: upgraded by hand, says hello, then never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(server.addr).await.unwrap();
    raw_hello(&mut slow, "slow").await;
    let (mut fast, _) = server.client(hello_value("fast")).await;
    let (mut sender, _) = server.client(hello_value("sender")).await;
    let text = "x".repeat(4000);
    let started = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut n = 0;
        while n < 3000 {
            if fast.next_of("msg").await["from"] == "sender" {
                n += 1;
            }
        }
        fast
    });
    for i in 0..3000 {
        sender.acked("general", &text, &format!("s{i}")).await;
    }
    receiver.await.unwrap();
    let took = started.elapsed();
    let metrics = http_get(server.addr, "/metrics").await;
    assert!(
        metrics.contains("chat_slow_consumer_closes_total 1"),
        "{metrics}"
    );
    assert!(
        took < Duration::from_secs(20),
        "the fast client waited {took:?}"
    );
    drop(slow);
    server.stop().await;
}

fn hello_value(nick: &str) -> Value {
    hello(nick)
}

#[tokio::test]
async fn bad_input_gets_an_error_event_and_the_connection_stays() {
    let server = ChatServer::start(config("bad")).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    alice.ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(alice.next_of("error").await["code"], "bad_json");
    alice.send(json!({"type": "shout"})).await;
    assert_eq!(alice.next_of("error").await["code"], "unknown_type");
    alice
        .send(
            json!({"type": "msg", "room": "general", "text": "x".repeat(5000), "client_id": "big"}),
        )
        .await;
    assert_eq!(alice.next_of("error").await["code"], "invalid_field");
    alice
        .send(json!({"type": "msg", "room": "nowhere", "text": "x", "client_id": "n"}))
        .await;
    let e = alice.next_of("error").await;
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("not_in_room"), Some("n"))
    );
    assert_eq!(alice.acked("general", "still here", "ok").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn hello_must_come_first() {
    let server = ChatServer::start(config("hello")).await;
    let (ws, _) = transport::connect(&format!("ws://{}/ws", server.addr), Config::default())
        .await
        .unwrap();
    let mut c = Client { ws };
    c.send(json!({"type": "join", "room": "x"})).await;
    assert_eq!(c.next_of("error").await["code"], "hello_required");
    c.send(hello("late")).await;
    assert_eq!(c.next_of("welcome").await["user"], "late");
    server.stop().await;
}

#[tokio::test]
async fn sustained_abuse_is_closed_with_1008() {
    let server = ChatServer::start(config("abuse")).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    for i in 0..150 {
        let _ = alice.ws.queue(Message::text(
            json!({"type": "typing", "room": "general", "n": i}).to_string(),
        ));
    }
    alice.ws.flush().await.unwrap();
    let events = {
        let mut codes = Vec::new();
        loop {
            match alice.event(WAIT).await {
                Some(e) if e["type"] == "close" => break (codes, e["code"].as_u64()),
                Some(e) if e["type"] == "error" => {
                    codes.push(e["code"].as_str().unwrap().to_owned())
                }
                Some(_) => {}
                None => break (codes, None),
            }
        }
    };
    assert_eq!(events.1, Some(1008));
    // Every refusal counts towards the limit: the first 19 requests (the
    // bucket's burst of 20 less hello's token) are refused for their
    // unknown field, the rest for their rate.
    assert!(events.0.len() >= 90, "{} errors", events.0.len());
    assert_eq!(events.0[..19], vec!["invalid_field"; 19]);
    assert!(events.0[19..].iter().all(|c| c == "rate_limited"));
    server.stop().await;
}

#[tokio::test]
async fn nicks_are_unique_and_a_session_adds_a_connection_to_its_nick() {
    let server = ChatServer::start(config("nicks")).await;
    let (mut first, w1) = server.client(hello("sam")).await;
    let (_second, w2) = server.client(hello("sam")).await;
    assert_eq!(
        (w1["user"].as_str(), w2["user"].as_str()),
        (Some("sam"), Some("sam-2"))
    );
    let (_third, w3) = server
        .client(json!({"type": "hello", "nick": "sam", "session": w1["session"]}))
        .await;
    assert_eq!(w3["user"], "sam");
    assert_eq!(w3["session"], w1["session"], "the same user, one more tab");
    assert_eq!(
        first.close_code(Duration::from_millis(300)).await,
        None,
        "the first tab stays"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_dead_client_leaves_presence_within_the_keepalive_timeout() {
    let mut c = config("keepalive");
    c.keepalive = Keepalive {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
    };
    let server = ChatServer::start(c).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    // A client that says hello and then never answers a ping again.
    let mut dead = TcpStream::connect(server.addr).await.unwrap();
    raw_hello(&mut dead, "ghost").await;
    let started = Instant::now();
    loop {
        let p = alice.next_of("presence").await;
        if p["left"].as_array().unwrap().iter().any(|n| n == "ghost") {
            break;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(dead);
    server.stop().await;
}

// Authentication.

#[tokio::test]
async fn tokens_are_required_and_checked_when_a_secret_is_set() {
    let mut c = config("jwt");
    c.jwt_secret = Some("s3cret".into());
    let server = ChatServer::start(c).await;
    let (_, welcome) = server
        .client(json!({"type": "hello", "nick": "ignored", "token": token("s3cret", "dana", 600)}))
        .await;
    assert_eq!(welcome["user"], "dana", "the nick comes from the token");
    let (_, welcome) = Client::connect(
        server.addr,
        &format!("/ws?token={}", token("s3cret", "eve", 600)),
        json!({"type": "hello"}),
    )
    .await;
    assert_eq!(welcome["user"], "eve", "a token in the query works");
    for bad in [
        json!({"type": "hello", "nick": "x"}),
        json!({"type": "hello", "token": token("wrong", "x", 600)}),
        json!({"type": "hello", "token": token("s3cret", "x", -600)}),
    ] {
        let (ws, _) = transport::connect(&format!("ws://{}/ws", server.addr), Config::default())
            .await
            .unwrap();
        let mut c = Client { ws };
        c.send(bad.clone()).await;
        assert_eq!(c.close_code(WAIT).await, Some(4001), "{bad}");
    }
    server.stop().await;
}

// The HTTP side.

#[tokio::test]
async fn pages_probes_and_limits_are_served_on_the_same_port() {
    let mut c = config("http");
    // Every TCP connection counts, from its accept: alice's WebSocket and
    // one idle socket fill the server.
    c.max_connections = Some(2);
    let server = ChatServer::start(c).await;
    assert!(
        http_get(server.addr, "/healthz")
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    let page = http_get(server.addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200 OK") && page.contains("text/html"));
    assert!(
        http_get(server.addr, "/app.js")
            .await
            .contains("text/javascript")
    );
    assert!(
        http_get(server.addr, "/nope")
            .await
            .starts_with("HTTP/1.1 404 ")
    );
    let (_alice, _) = server.client(hello("alice")).await;
    let idle = TcpStream::connect(server.addr).await.unwrap();
    let refused = transport::connect(&format!("ws://{}/ws", server.addr), Config::default()).await;
    assert!(
        matches!(refused, Err(transport::Error::Handshake(_))),
        "a third connection got in"
    );
    // The idle socket's slot comes back when the server sees it close.
    drop(idle);
    let deadline = Instant::now() + WAIT;
    let metrics = loop {
        let m = http_get(server.addr, "/metrics").await;
        if m.starts_with("HTTP/1.1 200 ") {
            break m;
        }
        assert!(Instant::now() < deadline, "still full: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for name in [
        "chat_connections 1",
        "chat_connections_refused_total 1",
        "chat_rooms 1",
        "chat_history_write_seconds_count",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    server.stop().await;
}

/// The route table's method rule: HEAD is GET without the body (RFC 9110
/// §9.3.2), any other method is 405 on every path, known or not.
#[tokio::test]
async fn head_gets_the_head_alone_and_other_methods_get_405() {
    let server = ChatServer::start(config("methods")).await;
    let exchange = |request: &'static str| async move {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let get = exchange("GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = exchange("HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (get_head, body) = get.split_once("\r\n\r\n").unwrap();
    assert!(!body.is_empty());
    assert_eq!(head, format!("{get_head}\r\n\r\n"));
    for (request, allowed) in [
        (
            "POST /app.js HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "GET only",
        ),
        ("GET /api/login HTTP/1.1\r\nHost: x\r\n\r\n", "POST only"),
        (
            "DELETE /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET or POST only",
        ),
    ] {
        let answer = exchange(request).await;
        assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
        assert!(
            answer.ends_with(&format!("\r\n\r\n{allowed}\n")),
            "{answer}"
        );
    }
    let missing = exchange("HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404 ") && missing.ends_with("\r\n\r\n"));
    server.stop().await;
}

#[tokio::test]
async fn a_frame_trickled_past_the_frame_timeout_is_closed_with_1008() {
    let mut c = config("trickle");
    c.frame_timeout = Duration::from_millis(500);
    let server = ChatServer::start(c).await;
    // Row 13 of issue 13: a user posting whole frames beside the trickle.
    let bystander = common::bystander::Bystander::start(server.addr).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    raw_hello(&mut s, "slow").await;
    let head = common::read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // Six bytes of a frame, one every 200 ms: the frame's first byte is
    // 1.2 s old before it could be complete.
    let frame = common::masked(0x81, br#"{"type":"typing","room":"general"}"#);
    let started = Instant::now();
    for b in &frame[..6] {
        let _ = s.write_all(&[*b]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let code = common::close_code(&mut s, WAIT).await;
    assert_eq!(code, Some(1008));
    assert!(
        started.elapsed() < WAIT,
        "closed after {:?}",
        started.elapsed()
    );
    // Clients that send whole frames are unaffected: the one that posted
    // throughout, and one that connects now.
    bystander.finish_and_reread("trickle").await;
    let (mut ok, _) = server.client(hello("quick")).await;
    ok.acked("general", "whole frames", "q1").await;
    server.stop().await;
}

// Limits and timers the chat hands its transport (`ChatConfig::transport_config`).

/// 100 KiB: three times the chat's largest request (32 KiB,
/// `protocol::MAX_REQUEST`), and within what the transport's defaults
/// would accept (16 MiB frames), so only the chat's own limit refuses it.
const OVERSIZE: usize = 100 * 1024;

/// Upgrades a raw socket, says `hello`, then sends the header of a
/// 100 KiB text frame and its first 16 payload bytes, and never the rest.
async fn announce_oversize_frame(server: &ChatServer) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    raw_hello(&mut s, "big").await;
    let head = common::read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let frame = common::masked(0x81, &vec![b'x'; OVERSIZE]);
    // 2 bytes, a 64-bit length (§5.2) and the masking key: 14 bytes.
    s.write_all(&frame[..14 + 16]).await.unwrap();
    s
}

/// RFC 6455 §7.4.1: 1009 "indicates that an endpoint is terminating the
/// connection because it has received a message that is too big for it
/// to process". The server knows from the header alone: the Close must
/// come while all but 16 bytes of the payload are still unsent, so it
/// cannot have waited for (or buffered) the frame.
#[tokio::test]
async fn a_100_kib_text_frame_is_closed_with_1009_from_its_header_alone() {
    let server = ChatServer::start(config("oversize")).await;
    let mut s = announce_oversize_frame(&server).await;
    assert_eq!(common::close_code(&mut s, WAIT).await, Some(1009));
    // The server failed the connection (§7.1.7): its FIN follows its Close.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "{} bytes after the Close", rest.len());
    server.stop().await;
}

/// `ChatConfig::close_timeout` is the transport's close timer: a client
/// that never answers the server's Close (nor closes TCP) is dropped once
/// it runs out, not at the transport's default.
#[tokio::test]
async fn a_client_that_never_answers_the_close_is_dropped_at_the_chats_close_timeout() {
    const CLOSE_TIMEOUT: Duration = Duration::from_millis(300);
    // Far above 300 ms for a busy machine, and below the transport's
    // default, so a chat that kept the default fails here.
    const BOUND: Duration = Duration::from_millis(2500);
    assert!(BOUND < transport::Config::default().close_timeout);
    let mut c = config("close-timeout");
    c.close_timeout = CLOSE_TIMEOUT;
    let server = ChatServer::start(c).await;
    let started = Instant::now();
    let mut s = announce_oversize_frame(&server).await;
    assert_eq!(common::close_code(&mut s, WAIT).await, Some(1009));
    // We never answer, and keep our side of TCP open. While the server
    // lingers it reads (and drops) what we send; once it has closed its
    // socket, what we send is answered with a reset (RFC 9293 §3.10.7.1).
    let dropped = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 64];
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if s.write_all(b"?").await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await {
                Ok(Err(_)) => return,
                Ok(Ok(0)) | Err(_) => {}
                Ok(Ok(n)) => panic!("{n} bytes after the server's Close"),
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    assert!(dropped.is_ok(), "still connected after {elapsed:?}");
    // The close timer starts after our header reached the server, so the
    // drop cannot come sooner than the timeout after we sent it.
    assert!(elapsed >= CLOSE_TIMEOUT, "dropped after {elapsed:?}");
    assert!(elapsed < BOUND, "dropped after {elapsed:?}");
    server.stop().await;
}

// Presence that scales with the room.

#[tokio::test]
async fn a_big_room_sends_a_newcomer_one_page_and_the_count_and_pages_the_rest() {
    let mut c = config("members");
    c.max_per_ip = 200;
    c.max_handshakes_per_ip = 200;
    let server = ChatServer::start(c).await;
    let mut crowd = Vec::new();
    for i in 0..120 {
        crowd.push(server.client(hello(&format!("m{i:03}"))).await.0);
    }
    let (mut late, _) = server.client(hello("zz-late")).await;
    let first = late.next_of("presence").await;
    assert_eq!(first["count"], 121);
    let mut all = nicks(&first["joined"]);
    assert_eq!(all.len(), 100, "one page, not the room");
    assert_eq!(first["next"], "m099");
    // Paged with the cursor, then searched by prefix.
    let mut after = first["next"].clone();
    while !after.is_null() {
        late.send(json!({"type": "members", "room": "general", "after": after, "limit": 7}))
            .await;
        let page = late.next_of("members").await;
        assert_eq!(page["count"], 121);
        assert_eq!(page["after"], after);
        let got = nicks(&page["members"]);
        assert!(got.len() <= 7);
        all.extend(got);
        after = page["next"].clone();
    }
    let expected: Vec<String> = (0..120)
        .map(|i| format!("m{i:03}"))
        .chain(["zz-late".to_owned()])
        .collect();
    assert_eq!(all, expected, "everyone once, in order");
    late.send(json!({"type": "members", "room": "general", "q": "M11"}))
        .await;
    let found = late.next_of("members").await;
    assert_eq!(found["q"], "M11");
    assert_eq!(
        nicks(&found["members"]),
        (110..120).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert_eq!(found["next"], Value::Null);
    // A bad request is refused and named; the connection carries on.
    late.send(json!({"type": "members", "room": "general", "limit": 500}))
        .await;
    let refused = late.next_of("error").await;
    assert_eq!(refused["code"], "invalid_field");
    assert!(refused["message"].as_str().unwrap().contains("limit"));
    late.send(json!({"type": "members", "room": "elsewhere"}))
        .await;
    assert_eq!(late.next_of("error").await["code"], "not_in_room");
    // Deltas carry the count.
    late.drain(Duration::from_millis(100)).await;
    crowd.pop();
    let delta = late.next_of("presence").await;
    assert_eq!(delta["left"], json!(["m119"]));
    assert_eq!(delta["count"], 120);
    drop(crowd);
    server.stop().await;
}

// Conversations: read marks, receipts, unread, mentions, DMs that last,
// one user in many tabs, rename and logout.

/// The events of `c` within a short window, of type `kind`.
async fn drained_of(c: &mut Client, kind: &str) -> Vec<Value> {
    c.drain(Duration::from_millis(300))
        .await
        .into_iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

#[tokio::test]
async fn a_read_mark_sends_a_receipt_and_unread_and_mentions_come_back_in_welcome() {
    let server = ChatServer::start(config("reads")).await;
    let (mut alice, welcome) = server.client(hello("alice")).await;
    assert_eq!(welcome["unread"], json!({}));
    assert_eq!(welcome["mentions"], json!({}));
    let (mut bob, _) = server.client(hello("bob")).await;
    for i in 1..=3 {
        bob.acked("general", &format!("m{i}"), &format!("b{i}"))
            .await;
    }
    alice
        .send(json!({"type": "read", "room": "general", "id": 2, "client_id": "r1"}))
        .await;
    let receipt = bob.next_of("receipt").await;
    assert_eq!(
        receipt,
        json!({"type": "receipt", "room": "general", "user": "alice", "id": 2})
    );
    // A mark never moves back: no receipt for a lower id.
    alice
        .send(json!({"type": "read", "room": "general", "id": 1}))
        .await;
    assert!(drained_of(&mut bob, "receipt").await.is_empty());
    // Beyond the newest: refused with its own code, naming the request.
    alice
        .send(json!({"type": "read", "room": "general", "id": 99, "client_id": "r2"}))
        .await;
    let err = alice.next_of("error").await;
    assert_eq!(
        (err["code"].as_str(), err["client_id"].as_str()),
        (Some("beyond_newest"), Some("r2"))
    );
    // A room the client is not in.
    alice
        .send(json!({"type": "read", "room": "elsewhere", "id": 1}))
        .await;
    assert_eq!(alice.next_of("error").await["code"], "not_in_room");
    alice.close().await;
    // Edits and reactions are events with ids, not messages: not unread.
    bob.send(json!({"type": "react", "room": "general", "id": 1, "emoji": "👍"}))
        .await;
    bob.next_of("reaction").await;
    bob.send(json!({"type": "edit", "room": "general", "id": 3, "text": "m3!"}))
        .await;
    bob.next_of("edited").await;
    bob.acked("general", "hey @alice, look", "b4").await;
    bob.acked("general", "mail@alice.org is not a mention", "b5")
        .await;
    let (mut alice, welcome) = server
        .client(json!({"type": "hello", "nick": "alice", "resume": {"general": 7}}))
        .await;
    assert_eq!(welcome["unread"], json!({"general": 3}), "{welcome}");
    assert_eq!(welcome["mentions"], json!({"general": 1}), "{welcome}");
    // Who read up to where comes after the join's messages.
    let receipts = alice.next_of("receipts").await;
    assert_eq!(
        receipts["receipts"],
        json!([{"user": "alice", "id": 2}]),
        "{receipts}"
    );
    // Coalesced: three reads within a tick are one receipt, the furthest.
    for id in [3, 5, 7] {
        alice
            .send(json!({"type": "read", "room": "general", "id": id}))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let receipts = drained_of(&mut bob, "receipt").await;
    assert!(
        !receipts.is_empty() && receipts.len() < 3,
        "coalesced: {receipts:?}"
    );
    assert_eq!(receipts.last().unwrap()["id"], 7);
    server.stop().await;
}

#[tokio::test]
async fn a_mention_reaches_every_connection_of_a_member_and_never_a_stranger() {
    let server = ChatServer::start(config("mentions")).await;
    let (mut alice, welcome) = server.client(hello("alice")).await;
    let session = welcome["session"].clone();
    // A second tab of alice's that is not in the room at all.
    let (mut tab, _) = server
        .client(json!({"type": "hello", "nick": "alice", "session": session}))
        .await;
    tab.send(json!({"type": "leave", "room": "general"})).await;
    alice.send(json!({"type": "join", "room": "side"})).await;
    let (mut bob, _) = server.client(hello("bob")).await;
    let (mut carol, _) = server.client(hello("carol")).await;
    bob.send(json!({"type": "join", "room": "side"})).await;
    bob.next(|e| e["type"] == "history" && e["room"] == "side")
        .await;
    // alice joined side before bob: she is a member of it.
    let id = bob.acked("side", "@alice and @carol: see this", "m1").await;
    let mention = json!({"type": "mention", "room": "side", "id": id, "from": "bob"});
    assert_eq!(alice.next_of("mention").await, mention);
    assert_eq!(tab.next_of("mention").await, mention, "every connection");
    assert!(
        drained_of(&mut carol, "mention").await.is_empty(),
        "carol is not in side: a mention cannot reach a stranger"
    );
    // Mentioning yourself is no notification.
    bob.acked("side", "I am @bob", "m2").await;
    assert!(drained_of(&mut bob, "mention").await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn dms_last_offline_ones_wait_and_history_reads_only_your_own() {
    let c = config("dms");
    let server = ChatServer::start(c.clone()).await;
    let (frank, _) = server.client(hello("frank")).await;
    frank.close().await;
    let (mut alice, _) = server.client(hello("alice")).await;
    let (mut bob, _) = server.client(hello("bob")).await;
    // frank is offline but has been here: stored for him.
    alice
        .send(json!({"type": "dm", "to": "frank", "text": "while you were out", "client_id": "d1"}))
        .await;
    let ack = alice.next(|e| e["client_id"] == "d1").await;
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_u64()),
        (Some("ack"), Some(1))
    );
    // Nobody ever called "nobody".
    alice
        .send(json!({"type": "dm", "to": "nobody", "text": "x", "client_id": "d2"}))
        .await;
    let err = alice.next(|e| e["client_id"] == "d2").await;
    assert_eq!(err["code"], "unknown_user");
    alice
        .send(json!({"type": "dm", "to": "bob", "text": "secret", "client_id": "d3"}))
        .await;
    bob.next_of("dm").await;
    // frank comes back: counted, notified, listed, readable.
    let (mut frank, welcome) = server.client(hello("frank")).await;
    assert_eq!(welcome["unread"], json!({"@alice": 1}), "{welcome}");
    assert_eq!(welcome["mentions"], json!({"@alice": 1}), "{welcome}");
    assert_eq!(
        frank.next_of("mention").await,
        json!({"type": "mention", "dm": "alice", "id": 1, "from": "alice"})
    );
    frank.send(json!({"type": "dms"})).await;
    assert_eq!(
        frank.next_of("dms").await["conversations"],
        json!([{"with": "alice", "last_id": 1, "unread": 1}])
    );
    frank.send(json!({"type": "history", "dm": "alice"})).await;
    let page = frank.next_of("history").await;
    assert_eq!(page["dm"], "alice");
    assert_eq!(page["more"], false);
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        (messages[0]["from"].as_str(), messages[0]["text"].as_str()),
        (Some("alice"), Some("while you were out"))
    );
    assert!(messages[0].get("room").is_none(), "{page}");
    // Someone else's DM cannot be named: "dm: bob" is frank's own (empty)
    // conversation with bob, never alice's.
    frank.send(json!({"type": "history", "dm": "bob"})).await;
    assert_eq!(frank.next_of("history").await["messages"], json!([]));
    // Reading the DM tells alice, and the list says so.
    frank
        .send(json!({"type": "read", "dm": "alice", "id": 1}))
        .await;
    assert_eq!(
        alice.next_of("receipt").await,
        json!({"type": "receipt", "dm": "frank", "user": "frank", "id": 1})
    );
    frank.send(json!({"type": "dms"})).await;
    assert_eq!(frank.next_of("dms").await["conversations"][0]["unread"], 0);
    // A bad read: both room and dm.
    frank
        .send(json!({"type": "read", "room": "general", "dm": "alice", "id": 1, "client_id": "x"}))
        .await;
    let err = frank.next_of("error").await;
    assert_eq!(
        (err["code"].as_str(), err["client_id"].as_str()),
        (Some("invalid_field"), Some("x"))
    );
    // The list is latest first.
    bob.send(json!({"type": "dm", "to": "frank", "text": "me too", "client_id": "b1"}))
        .await;
    bob.next(|e| e["client_id"] == "b1").await;
    frank
        .next(|e| e["type"] == "dm" && e["from"] == "bob")
        .await;
    frank.send(json!({"type": "dms"})).await;
    let list = frank.next_of("dms").await;
    let with: Vec<&str> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["with"].as_str().unwrap())
        .collect();
    assert_eq!(with, ["bob", "alice"], "{list}");
    frank
        .send(json!({"type": "read", "dm": "bob", "id": 1}))
        .await;
    // The read is in once bob hears of it: a stop may come before the
    // server has read a request still on the wire, and drop it.
    assert_eq!(bob.next_of("receipt").await["user"], "frank");
    // The DM survives a restart, unread again for nobody.
    server.stop().await;
    let server = ChatServer::start(c).await;
    let (mut frank, welcome) = server.client(hello("frank")).await;
    assert_eq!(welcome["unread"], json!({}), "read before the restart");
    frank.send(json!({"type": "dms"})).await;
    assert_eq!(
        frank.next_of("dms").await["conversations"],
        json!([
            {"with": "bob", "last_id": 1, "unread": 0},
            {"with": "alice", "last_id": 1, "unread": 0}
        ])
    );
    server.stop().await;
}

#[tokio::test]
async fn two_connections_of_one_user_are_one_member_and_both_get_everything() {
    let server = ChatServer::start(config("tabs")).await;
    let (mut one, welcome) = server.client(hello("alice")).await;
    let hello_again = json!({"type": "hello", "nick": "alice", "session": welcome["session"]});
    let (mut two, w2) = server.client(hello_again.clone()).await;
    assert_eq!(w2["user"], "alice");
    let (mut bob, _) = server.client(hello("bob")).await;
    let presence = bob.next_of("presence").await;
    assert_eq!(presence["count"], 2, "alice counts once: {presence}");
    assert_eq!(nicks(&presence["joined"]), ["alice", "bob"]);
    let id = bob.acked("general", "to both tabs", "b1").await;
    for tab in [&mut one, &mut two] {
        let m = tab.next(|e| e["type"] == "msg" && e["id"] == id).await;
        assert_eq!(m["text"], "to both tabs");
    }
    bob.send(json!({"type": "dm", "to": "alice", "text": "psst", "client_id": "d1"}))
        .await;
    for tab in [&mut one, &mut two] {
        assert_eq!(tab.next_of("dm").await["text"], "psst");
    }
    // One tab closes: alice is still there.
    two.close().await;
    let later = bob.drain(Duration::from_millis(300)).await;
    assert!(
        later
            .iter()
            .all(|e| e["type"] != "presence" || !nicks(&e["left"]).contains(&"alice".to_owned())),
        "{later:?}"
    );
    let id = bob.acked("general", "still here?", "b2").await;
    one.next(|e| e["type"] == "msg" && e["id"] == id).await;
    // At most 10 connections per user: the 11th is refused and closed.
    let mut tabs = Vec::new();
    for _ in 0..9 {
        tabs.push(server.client(hello_again.clone()).await.0);
    }
    let (ws, _) = transport::connect(&format!("ws://{}/ws", server.addr), Config::default())
        .await
        .unwrap();
    let mut eleventh = Client { ws };
    eleventh.send(hello_again).await;
    let err = eleventh.next_of("error").await;
    assert_eq!(err["code"], "too_many_connections");
    assert_eq!(eleventh.close_code(WAIT).await, Some(4002));
    server.stop().await;
}

#[tokio::test]
async fn a_user_renames_to_a_free_nick_and_logs_out_everywhere() {
    let server = ChatServer::start(config("rename")).await;
    let (mut alice, welcome) = server.client(hello("alice")).await;
    let (mut other_tab, _) = server
        .client(json!({"type": "hello", "nick": "alice", "session": welcome["session"]}))
        .await;
    let (mut bob, _) = server.client(hello("bob")).await;
    alice
        .send(json!({"type": "nick", "nick": "bob", "client_id": "n1"}))
        .await;
    let err = alice.next_of("error").await;
    assert_eq!(
        (err["code"].as_str(), err["client_id"].as_str()),
        (Some("nick_taken"), Some("n1"))
    );
    alice.send(json!({"type": "nick", "nick": "b@d"})).await;
    assert_eq!(alice.next_of("error").await["code"], "invalid_field");
    alice.send(json!({"type": "nick", "nick": "alicia"})).await;
    let renamed = alice.next_of("renamed").await;
    assert_eq!(
        (renamed["user"].as_str(), renamed["old"].as_str()),
        (Some("alicia"), Some("alice"))
    );
    let session = renamed["session"].as_str().unwrap().to_owned();
    assert_ne!(session, welcome["session"].as_str().unwrap());
    // The other tab is told the new nick and secret, and closed (4003)
    // to reconnect with them.
    assert_eq!(other_tab.next_of("renamed").await, renamed);
    assert_eq!(other_tab.close_code(WAIT).await, Some(4003));
    // The room sees alicia come and alice go.
    let mut joined = false;
    let mut left = false;
    while !(joined && left) {
        let p = bob.next_of("presence").await;
        joined |= nicks(&p["joined"]).contains(&"alicia".to_owned());
        left |= nicks(&p["left"]).contains(&"alice".to_owned());
    }
    alice.acked("general", "new name", "a1").await;
    assert_eq!(bob.next_of("msg").await["from"], "alicia");
    // The new session secret adds a tab to the new nick.
    let (mut tab, w) = server
        .client(json!({"type": "hello", "nick": "alicia", "session": session}))
        .await;
    assert_eq!(w["user"], "alicia");
    // Logout closes every connection of the user (1000) and frees the nick.
    alice.send(json!({"type": "logout"})).await;
    assert_eq!(alice.close_code(WAIT).await, Some(1000));
    assert_eq!(tab.close_code(WAIT).await, Some(1000));
    loop {
        let p = bob.next_of("presence").await;
        if nicks(&p["left"]).contains(&"alicia".to_owned()) {
            break;
        }
    }
    let (_again, w) = server.client(hello("alicia")).await;
    assert_eq!(w["user"], "alicia", "the nick is free again");
    assert_ne!(w["session"].as_str(), Some(session.as_str()));
    server.stop().await;
}

#[tokio::test]
async fn with_tokens_one_user_is_every_connection_with_its_token_and_cannot_rename() {
    let mut c = config("jwt-tabs");
    c.jwt_secret = Some("s3cret".into());
    let server = ChatServer::start(c).await;
    let hello = json!({"type": "hello", "token": token("s3cret", "dana", 600)});
    let (mut one, w1) = server.client(hello.clone()).await;
    let (mut two, w2) = server.client(hello).await;
    assert_eq!(
        (w1["user"].as_str(), w2["user"].as_str()),
        (Some("dana"), Some("dana"))
    );
    let presence = two.next_of("presence").await;
    assert_eq!(presence["count"], 1, "one user: {presence}");
    one.send(json!({"type": "nick", "nick": "diana", "client_id": "n"}))
        .await;
    let err = one.next_of("error").await;
    assert_eq!(
        (err["code"].as_str(), err["client_id"].as_str()),
        (Some("nick_fixed"), Some("n"))
    );
    // A read on one tab is a receipt on the other (the same user).
    let id = one.acked("general", "hi", "c1").await;
    one.send(json!({"type": "read", "room": "general", "id": id}))
        .await;
    assert_eq!(
        two.next_of("receipt").await,
        json!({"type": "receipt", "room": "general", "user": "dana", "id": id})
    );
    server.stop().await;
}

// A message's life: edits, deletes, reactions, replies (issue 16).

/// The `ack` id of `request`; panics on a refusal.
async fn acked_request(c: &mut Client, request: Value) -> u64 {
    let answer = c.answer(request).await;
    assert_eq!(answer["type"], "ack", "refused: {answer}");
    answer["id"].as_u64().unwrap()
}

/// The `error` code `request` is refused with, after checking that it
/// names the request's `client_id`.
async fn refused(c: &mut Client, request: Value) -> String {
    let client_id = request["client_id"].clone();
    let answer = c.answer(request).await;
    assert_eq!(answer["type"], "error", "accepted: {answer}");
    assert_eq!(answer["client_id"], client_id);
    answer["code"].as_str().unwrap().to_owned()
}

fn room_request(kind: &str, id: u64, client_id: &str) -> Value {
    json!({"type": kind, "room": "general", "id": id, "client_id": client_id})
}

fn edit(id: u64, text: &str, client_id: &str) -> Value {
    let mut r = room_request("edit", id, client_id);
    r["text"] = json!(text);
    r
}

fn react(id: u64, emoji: &str, client_id: &str) -> Value {
    let mut r = room_request("react", id, client_id);
    r["emoji"] = json!(emoji);
    r
}

fn reply(text: &str, reply_to: u64, client_id: &str) -> Value {
    let mut r = common::chat::msg("general", text, client_id);
    r["reply_to"] = json!(reply_to);
    r
}

/// The messages of a `history` page, by id.
fn by_id(page: &Value) -> std::collections::BTreeMap<u64, Value> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_u64().unwrap(), m.clone()))
        .collect()
}

#[tokio::test]
async fn edits_deletes_reactions_and_replies_reach_the_room_and_history() {
    let mut c = config("lifecycle");
    c.rate_limit = None;
    let db = c.db.clone();
    let server = ChatServer::start(c).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    let (mut bob, _) = server.client(hello("bob")).await;
    assert_eq!(alice.acked("general", "first", "m1").await, 1);
    assert_eq!(alice.acked("general", "secret two", "m2").await, 2);
    // A reply carries its reply_to back, to everyone.
    assert_eq!(acked_request(&mut bob, reply("re first", 1, "r1")).await, 3);
    let m = alice.next(|e| e["type"] == "msg" && e["id"] == 3).await;
    assert_eq!(
        (m["reply_to"].as_u64(), m["from"].as_str()),
        (Some(1), Some("bob"))
    );
    // An edit: its own id (4) in the stream, acked, to everyone.
    assert_eq!(
        acked_request(&mut alice, edit(1, "first, fixed", "e1")).await,
        4
    );
    let e = bob.next_of("edited").await;
    assert_eq!(
        (
            e["room"].as_str(),
            e["id"].as_u64(),
            e["text"].as_str(),
            e["event_id"].as_u64()
        ),
        (Some("general"), Some(1), Some("first, fixed"), Some(4))
    );
    assert!(e["edited_ts"].as_u64().unwrap() > 1_700_000_000_000);
    // Reactions toggle, and each event names everyone who has it now.
    assert_eq!(acked_request(&mut bob, react(1, "👍", "x1")).await, 5);
    assert_eq!(alice.next_of("reaction").await["users"], json!(["bob"]));
    assert_eq!(acked_request(&mut alice, react(1, "👍", "x2")).await, 6);
    assert_eq!(
        bob.next_of("reaction").await["users"],
        json!(["alice", "bob"])
    );
    assert_eq!(acked_request(&mut bob, react(1, "👍", "x3")).await, 7);
    let r = alice.next_of("reaction").await;
    assert_eq!(
        (
            r["id"].as_u64(),
            r["emoji"].as_str(),
            r["from"].as_str(),
            r["users"].clone()
        ),
        (Some(1), Some("👍"), Some("bob"), json!(["alice"]))
    );
    assert_eq!(acked_request(&mut bob, react(3, ":tada:", "x4")).await, 8);
    // An edit, then a delete: both texts are purged.
    assert_eq!(
        acked_request(&mut alice, edit(2, "secret edited", "e2")).await,
        9
    );
    alice.send(room_request("delete", 2, "d1")).await;
    let d = bob.next_of("deleted").await;
    assert_eq!(
        (d["id"].as_u64(), d["event_id"].as_u64()),
        (Some(2), Some(10))
    );
    // Once the delete is out, its text is in none of the database's files,
    // the write-ahead log included, even while the server runs.
    let holds_secret = || {
        std::fs::read_dir(db.parent().unwrap())
            .unwrap()
            .any(|file| {
                let bytes = std::fs::read(file.unwrap().path()).unwrap();
                bytes.windows(6).any(|w| w == b"secret")
            })
    };
    assert!(
        !holds_secret(),
        "a deleted text is still in the database's files"
    );
    // Without a client_id: no ack, the event alone.
    alice
        .send(json!({"type": "react", "room": "general", "id": 3, "emoji": "❤️"}))
        .await;
    assert_eq!(bob.next_of("reaction").await["event_id"], 11);
    // History: messages only, each as it is now.
    let (mut carol, _) = server.client(hello("carol")).await;
    let page = carol.next_of("history").await;
    let messages = by_id(&page);
    assert_eq!(messages.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    let first = &messages[&1];
    assert_eq!(first["text"], "first, fixed");
    assert!(first["edited_ts"].as_u64().is_some());
    assert_eq!(first["reactions"], json!({"👍": ["alice"]}));
    let tombstone = &messages[&2];
    assert_eq!(tombstone["deleted"], true);
    assert!(tombstone.get("text").is_none(), "{tombstone}");
    assert!(tombstone.get("reactions").is_none(), "{tombstone}");
    let third = &messages[&3];
    assert_eq!(third["reply_to"], 1);
    assert_eq!(
        third["reactions"],
        json!({":tada:": ["bob"], "❤️": ["alice"]})
    );
    assert!(third.get("edited_ts").is_none());
    // Paging by id still works around the events that are no messages.
    carol
        .send(json!({"type": "history", "room": "general", "before": 3, "limit": 1}))
        .await;
    let older = carol.next_of("history").await;
    assert_eq!(by_id(&older).keys().copied().collect::<Vec<_>>(), [2]);
    assert_eq!(older["more"], true);
    server.stop().await;
    // Purged from the file itself: no row holds the text, and neither do
    // the file's bytes (the WAL is checkpointed into it at close).
    let conn = rusqlite::Connection::open(&db).unwrap();
    let holding: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE text LIKE '%secret%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(holding, 0);
    let kinds: Vec<(i64, String)> = conn
        .prepare("SELECT id, kind FROM messages WHERE room = 'general' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let kinds: Vec<&str> = kinds.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "msg", "msg", "msg", "edit", "react", "react", "react", "react", "edit", "delete",
            "react"
        ]
    );
    drop(conn);
    assert!(
        !holds_secret(),
        "a deleted text is back in the database's files"
    );
}

#[tokio::test]
async fn each_bad_lifecycle_request_gets_its_own_code_and_client_id_and_changes_nothing() {
    let mut c = config("lifecycle-bad");
    c.rate_limit = None;
    let server = ChatServer::start(c).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    let (mut bob, _) = server.client(hello("bob")).await;
    assert_eq!(alice.acked("general", "alice's", "m1").await, 1);
    assert_eq!(acked_request(&mut bob, react(1, "👍", "x1")).await, 2);
    assert_eq!(alice.acked("general", "gone soon", "m3").await, 3);
    assert_eq!(
        acked_request(&mut alice, room_request("delete", 3, "d")).await,
        4
    );
    let cases = [
        (edit(1, "mine now", "c1"), "not_author"),
        (room_request("delete", 1, "c2"), "not_author"),
        (edit(99, "x", "c3"), "no_such_message"),
        (room_request("delete", 2, "c4"), "no_such_message"),
        (react(2, "👍", "c5"), "no_such_message"),
        (room_request("delete", 3, "c6"), "deleted"),
        (react(3, "👍", "c7"), "deleted"),
        (reply("re", 99, "c8"), "no_such_message"),
        (reply("re", 3, "c9"), "deleted"),
        (react(1, "👍👍", "c10"), "bad_emoji"),
        (react(1, ":Nope:", "c11"), "bad_emoji"),
        (
            json!({"type": "react", "room": "elsewhere", "id": 1, "emoji": "👍", "client_id": "c12"}),
            "not_in_room",
        ),
        (
            json!({"type": "edit", "room": "general", "dm": "bob", "id": 1, "text": "x", "client_id": "c13"}),
            "invalid_field",
        ),
    ];
    for (request, code) in cases {
        let shown = request.to_string();
        assert_eq!(refused(&mut bob, request).await, code, "{shown}");
    }
    // Ids are per conversation: message 1 of general is no message of dev.
    bob.send(json!({"type": "join", "room": "dev"})).await;
    while bob.next_of("history").await["room"] != "dev" {}
    let mut elsewhere = reply("re", 1, "c14");
    elsewhere["room"] = json!("dev");
    assert_eq!(refused(&mut bob, elsewhere).await, "no_such_message");
    // The twenty-first distinct reaction is refused; an existing one
    // still toggles.
    for i in 0..19 {
        acked_request(&mut bob, react(1, &format!(":r{i}:"), &format!("r{i}"))).await;
    }
    assert_eq!(
        refused(&mut bob, react(1, ":one-more:", "r20")).await,
        "too_many_reactions"
    );
    acked_request(&mut alice, react(1, ":r0:", "r0-alice")).await;
    // Nothing changed, and the connection works.
    let id = bob.acked("general", "still here", "ok").await;
    let (mut carol, _) = server.client(hello("carol")).await;
    let page = carol.next_of("history").await;
    let messages = by_id(&page);
    assert_eq!(messages[&1]["text"], "alice's");
    assert!(messages[&1].get("edited_ts").is_none());
    assert_eq!(messages[&1]["reactions"].as_object().unwrap().len(), 20);
    assert_eq!(messages[&1]["reactions"][":r0:"], json!(["alice", "bob"]));
    assert_eq!(messages[&3]["deleted"], true);
    assert_eq!(messages[&id]["text"], "still here");
    // Refused events took no id: the next one follows on.
    let ids: Vec<u64> = messages.keys().copied().collect();
    assert_eq!(ids, [1, 3, id]);
    assert_eq!(id, 4 + 19 + 1 + 1);
    server.stop().await;
}

#[tokio::test]
async fn a_rate_limited_request_names_its_client_id() {
    let mut c = config("lifecycle-rate");
    c.rate_limit = Some(rfc6455::chat::RateLimit {
        per_second: 0.01,
        burst: 3.0,
    });
    let server = ChatServer::start(c).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    assert_eq!(alice.acked("general", "one", "m1").await, 1);
    for i in 0..4 {
        alice
            .send(edit(1, &format!("v{i}"), &format!("e{i}")))
            .await;
    }
    let mut answers = Vec::new();
    while answers.len() < 4 {
        let e = alice
            .next(|e| e["type"] == "ack" || e["type"] == "error")
            .await;
        answers.push((
            e["type"].as_str().unwrap().to_owned(),
            e["client_id"].clone(),
        ));
    }
    // The bucket held three: one went to hello, one to the post, one to
    // the first edit; the other three are refused, each by name.
    let limited: Vec<&Value> = answers
        .iter()
        .filter(|(kind, _)| kind == "error")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(
        limited,
        [&json!("e1"), &json!("e2"), &json!("e3")],
        "{answers:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn resume_replays_edits_deletes_and_reactions_made_while_away_in_order() {
    let mut c = config("lifecycle-resume");
    c.rate_limit = None;
    let server = ChatServer::start(c).await;
    let (mut bob, welcome) = server.client(hello("bob")).await;
    let session = welcome["session"].as_str().unwrap().to_owned();
    // Joined once the history page is in: later posts reach him live.
    bob.next_of("history").await;
    let (mut alice, _) = server.client(hello("alice")).await;
    alice.acked("general", "one", "m1").await;
    alice.acked("general", "two", "m2").await;
    while bob.next_of("msg").await["id"] != 2 {}
    bob.close().await;
    assert_eq!(
        acked_request(&mut alice, edit(2, "two, edited", "e")).await,
        3
    );
    assert_eq!(acked_request(&mut alice, react(2, "🎉", "r")).await, 4);
    assert_eq!(
        acked_request(&mut alice, room_request("delete", 1, "d")).await,
        5
    );
    assert_eq!(alice.acked("general", "three", "m3").await, 6);
    let (mut bob, _) = server
        .client(
            json!({"type": "hello", "nick": "bob", "session": session, "resume": {"general": 2}}),
        )
        .await;
    let mut replayed = Vec::new();
    while replayed.len() < 4 {
        let e = bob
            .next(|e| {
                ["msg", "edited", "reaction", "deleted"].contains(&e["type"].as_str().unwrap())
            })
            .await;
        replayed.push(e);
    }
    let order: Vec<(&str, u64)> = replayed
        .iter()
        .map(|e| {
            let id = e.get("event_id").unwrap_or(&e["id"]).as_u64().unwrap();
            (e["type"].as_str().unwrap(), id)
        })
        .collect();
    assert_eq!(
        order,
        [("edited", 3), ("reaction", 4), ("deleted", 5), ("msg", 6)]
    );
    assert_eq!(replayed[0]["text"], "two, edited");
    assert_eq!(replayed[1]["users"], json!(["alice"]));
    assert_eq!(replayed[2]["id"], 1);
    server.stop().await;
}

#[tokio::test]
async fn edits_deletes_reactions_and_replies_work_in_a_dm() {
    let mut c = config("lifecycle-dm");
    c.rate_limit = None;
    let server = ChatServer::start(c).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    let (mut bob, _) = server.client(hello("bob")).await;
    let (mut carol, _) = server.client(hello("carol")).await;
    let sent = alice
        .answer(json!({"type": "dm", "to": "bob", "text": "psst", "client_id": "d1"}))
        .await;
    assert_eq!(sent["id"], 1);
    assert_eq!(bob.next_of("dm").await["id"], 1);
    // Each side names the conversation by the other party.
    let r = json!({"type": "react", "dm": "alice", "id": 1, "emoji": "👀", "client_id": "x"});
    bob.send(r).await;
    // The writer's own copy comes before its ack.
    assert_eq!(bob.next_of("reaction").await["dm"], "alice");
    assert_eq!(bob.next_of("ack").await["id"], 2);
    let seen_by_alice = alice.next_of("reaction").await;
    assert_eq!(
        (seen_by_alice["dm"].as_str(), seen_by_alice["users"].clone()),
        (Some("bob"), json!(["bob"]))
    );
    assert!(seen_by_alice.get("room").is_none());
    let e = json!({"type": "edit", "dm": "bob", "id": 1, "text": "psst!", "client_id": "e"});
    assert_eq!(acked_request(&mut alice, e).await, 3);
    let edited = bob.next_of("edited").await;
    assert_eq!(
        (edited["dm"].as_str(), edited["text"].as_str()),
        (Some("alice"), Some("psst!"))
    );
    let reply =
        json!({"type": "dm", "to": "alice", "text": "what?", "client_id": "r", "reply_to": 1});
    assert_eq!(acked_request(&mut bob, reply).await, 4);
    assert_eq!(
        alice.next(|e| e["type"] == "dm" && e["id"] == 4).await["reply_to"],
        1
    );
    // Only its author deletes it; carol's DM with alice has no message 1.
    let d = json!({"type": "delete", "dm": "alice", "id": 1, "client_id": "bd"});
    assert_eq!(refused(&mut bob, d).await, "not_author");
    let d = json!({"type": "delete", "dm": "alice", "id": 1, "client_id": "cd"});
    assert_eq!(refused(&mut carol, d).await, "no_such_message");
    let d = json!({"type": "delete", "dm": "bob", "id": 1, "client_id": "ad"});
    assert_eq!(acked_request(&mut alice, d).await, 5);
    let deleted = bob.next_of("deleted").await;
    assert_eq!(
        (deleted["dm"].as_str(), deleted["id"].as_u64()),
        (Some("alice"), Some(1))
    );
    assert!(
        carol
            .drain(Duration::from_millis(200))
            .await
            .iter()
            .all(|e| !["edited", "deleted", "reaction", "dm"]
                .contains(&e["type"].as_str().unwrap_or(""))),
        "carol saw the DM's events"
    );
    server.stop().await;
}

#[tokio::test]
async fn tabs_reconnecting_with_the_secret_are_the_same_user_again_even_after_a_restart() {
    let c = config("tabs-again");
    let server = ChatServer::start(c.clone()).await;
    let (one, welcome) = server.client(hello("alice")).await;
    let session = welcome["session"].clone();
    let again = json!({"type": "hello", "nick": "alice", "session": session});
    let (two, _) = server.client(again.clone()).await;
    // Both tabs drop (a network blip); each comes back with the secret.
    one.close().await;
    two.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (one, w1) = server.client(again.clone()).await;
    let (two, w2) = server.client(again.clone()).await;
    for w in [&w1, &w2] {
        assert_eq!(
            (&w["user"], &w["session"]),
            (&json!("alice"), &session),
            "{w}"
        );
    }
    one.close().await;
    two.close().await;
    // The secret outlives a restart too.
    server.stop().await;
    let server = ChatServer::start(c).await;
    let (mut one, w) = server.client(again.clone()).await;
    assert_eq!(
        (&w["user"], &w["session"]),
        (&json!("alice"), &session),
        "{w}"
    );
    let (mut two, w) = server.client(again.clone()).await;
    assert_eq!(w["user"], "alice", "{w}");
    // After a logout the old secret proves nothing: a new one.
    one.send(json!({"type": "logout"})).await;
    assert_eq!(one.close_code(WAIT).await, Some(1000));
    assert_eq!(two.close_code(WAIT).await, Some(1000));
    // Past the close timeout (300 ms here): both connections are gone.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_three, w) = server.client(again).await;
    assert_eq!(w["user"], "alice", "the nick is free");
    assert_ne!(w["session"], session, "with a new secret");
    server.stop().await;
}

#[tokio::test]
async fn a_request_refused_before_hello_names_its_client_id() {
    let server = ChatServer::start(config("hello-client-id")).await;
    let (ws, _) = transport::connect(&format!("ws://{}/ws", server.addr), Config::default())
        .await
        .unwrap();
    let mut c = Client { ws };
    c.send_msg("general", "too early", "early").await;
    let e = c.next_of("error").await;
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("hello_required"), Some("early"))
    );
    c.send(json!({"type": "edit", "room": "general", "id": 1, "client_id": "bad"}))
        .await;
    let e = c.next_of("error").await;
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("invalid_field"), Some("bad"))
    );
    c.send(hello("late")).await;
    assert_eq!(c.next_of("welcome").await["user"], "late");
    server.stop().await;
}
