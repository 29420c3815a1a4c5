//! The chat server, end to end over loopback, driven by this crate's own
//! client: rooms, DMs, presence, typing, history, resume, restart,
//! shutdown, slow consumers, authentication and bad input.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rfc6455::chat::{self, ChatConfig};
use rfc6455::proto::Message;
use rfc6455::transport::{self, Config, Keepalive, MaybeTlsStream, WebSocket};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    db: PathBuf,
}

impl Server {
    async fn start(config: ChatConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let db = config.db.clone();
        let task = tokio::spawn(chat::serve(listener, config, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
            db,
        }
    }

    /// Shuts down gracefully and waits for `serve` to return.
    async fn stop(mut self) -> PathBuf {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        self.db.clone()
    }

    async fn client(&self, hello: Value) -> (Client, Value) {
        Client::connect(self.addr, "/ws", hello).await
    }

    async fn metrics(&self) -> String {
        http_get(self.addr, "/metrics").await
    }
}

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rfc6455-chat-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("chat.db")
}

fn config(name: &str) -> ChatConfig {
    let mut c = ChatConfig::new(temp_db(name));
    c.presence_interval = Duration::from_millis(20);
    // Test clients that stop reading would hold shutdown up for the full
    // default of 5 s.
    c.close_timeout = Duration::from_millis(300);
    c
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

struct Client {
    ws: WebSocket<MaybeTlsStream>,
}

impl Client {
    async fn connect(addr: SocketAddr, path: &str, hello: Value) -> (Client, Value) {
        let (ws, _) = transport::connect(&format!("ws://{addr}{path}"), Config::default())
            .await
            .unwrap();
        let mut c = Client { ws };
        c.send(hello).await;
        let welcome = c.next("welcome").await;
        (c, welcome)
    }

    async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next event, whatever its type.
    async fn event(&mut self) -> Option<Value> {
        match tokio::time::timeout(WAIT, self.ws.recv())
            .await
            .expect("no event in time")?
        {
            Ok(Message::Text(t)) => Some(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Message::Close(frame)) => {
                Some(json!({"type": "close", "code": frame.map(|f| f.code.as_u16())}))
            }
            Ok(_) => Some(json!({"type": "control"})),
            Err(e) => Some(json!({"type": "error_transport", "message": e.to_string()})),
        }
    }

    /// The next event of `kind`, skipping others.
    async fn next(&mut self, kind: &str) -> Value {
        loop {
            let e = self
                .event()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for {kind}"));
            if e["type"] == kind {
                return e;
            }
        }
    }

    /// Every event that arrives within `window`.
    async fn drain(&mut self, window: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, self.ws.recv()).await {
            if let Message::Text(t) = m {
                out.push(serde_json::from_str(t.as_str()).unwrap());
            }
        }
        out
    }

    async fn post(&mut self, room: &str, text: &str, client_id: &str) -> u64 {
        self.send(json!({"type": "msg", "room": room, "text": text, "client_id": client_id}))
            .await;
        loop {
            let e = self.event().await.expect("closed");
            if e["type"] == "ack" && e["client_id"] == client_id {
                return e["id"].as_u64().unwrap();
            }
            assert_ne!(e["type"], "error", "refused: {e}");
        }
    }

    /// The close code the server ends the connection with.
    async fn close_code(&mut self) -> Option<u64> {
        loop {
            match self.event().await {
                Some(e) if e["type"] == "close" => return e["code"].as_u64(),
                Some(_) => {}
                None => return None,
            }
        }
    }
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
    let server = Server::start(config("rooms")).await;
    let (mut alice, welcome) = server.client(hello("alice")).await;
    assert_eq!(welcome["user"], "alice");
    assert_eq!(welcome["rooms"], json!(["general"]));
    let (mut bob, _) = server.client(hello("bob")).await;
    let (mut carol, _) = server.client(hello("carol")).await;
    alice.send(json!({"type": "join", "room": "dev"})).await;
    while alice.next("history").await["room"] != "dev" {}
    bob.send(json!({"type": "join", "room": "dev"})).await;
    while bob.next("history").await["room"] != "dev" {}
    let id = alice.post("dev", "in dev", "c1").await;
    assert_eq!(id, 1);
    let got = bob.next("msg").await;
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
        alice.post("general", "to all", "c2").await,
        1,
        "ids count per room"
    );
    let seen = carol.next("msg").await;
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
    let server = Server::start(config("dm")).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    let (mut bob, _) = server.client(hello("bob")).await;
    let (mut carol, _) = server.client(hello("carol")).await;
    alice
        .send(json!({"type": "dm", "to": "bob", "text": "psst", "client_id": "d1"}))
        .await;
    let dm = bob.next("dm").await;
    assert_eq!(
        (dm["from"].as_str(), dm["to"].as_str(), dm["text"].as_str()),
        (Some("alice"), Some("bob"), Some("psst"))
    );
    assert_eq!(
        alice.next("dm").await["text"],
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
    let err = alice.next("error").await;
    assert_eq!(
        (err["code"].as_str(), err["client_id"].as_str()),
        (Some("unknown_user"), Some("d2"))
    );
    server.stop().await;
}

// Presence and typing.

#[tokio::test]
async fn presence_sends_a_roster_then_coalesced_deltas() {
    let server = Server::start(config("presence")).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    let roster = alice.next("presence").await;
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
        late.next("presence").await["joined"]
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
    let server = Server::start(config("typing")).await;
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
    let server = Server::start(c).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    for i in 1..=120 {
        alice
            .post("general", &format!("m{i}"), &format!("c{i}"))
            .await;
    }
    let (mut bob, _) = server.client(hello("bob")).await;
    let page = bob.next("history").await;
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
    let older = bob.next("history").await;
    assert_eq!(older["messages"].as_array().unwrap().len(), 70);
    assert_eq!(older["messages"][0]["text"], "m1");
    assert_eq!(older["more"], false);
    bob.send(json!({"type": "history", "room": "elsewhere"}))
        .await;
    assert_eq!(bob.next("error").await["code"], "not_in_room");
    server.stop().await;
}

#[tokio::test]
async fn resume_replays_exactly_what_was_missed_while_others_keep_posting() {
    let mut c = config("resume");
    c.rate_limit = None;
    let server = Server::start(c).await;
    let (mut bob, welcome) = server.client(hello("bob")).await;
    let session = welcome["session"].as_str().unwrap().to_owned();
    let (mut alice, _) = server.client(hello("alice")).await;
    for i in 0..5 {
        alice
            .post("general", &format!("before {i}"), &format!("b{i}"))
            .await;
    }
    let mut last_seen = 0;
    while last_seen < 5 {
        last_seen = bob.next("msg").await["id"].as_u64().unwrap();
    }
    drop(bob);
    // Alice keeps posting while bob is away and while he comes back.
    let poster = tokio::spawn(async move {
        for i in 0..200 {
            alice
                .post("general", &format!("during {i}"), &format!("d{i}"))
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
        let m = bob.next("msg").await;
        ids.push(m["id"].as_u64().unwrap());
    }
    assert_eq!(ids, (6..=205).collect::<Vec<_>>(), "a gap or a duplicate");
    server.stop().await;
}

#[tokio::test]
async fn history_survives_a_restart_and_ids_continue() {
    let c = config("restart");
    let db = c.db.clone();
    let server = Server::start(c.clone()).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    for i in 1..=3 {
        alice
            .post("general", &format!("kept {i}"), &format!("k{i}"))
            .await;
    }
    assert_eq!(server.stop().await, db);
    let server = Server::start(c).await;
    let (mut bob, _) = server.client(hello("bob")).await;
    let page = bob.next("history").await;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["kept 1", "kept 2", "kept 3"]);
    assert_eq!(bob.post("general", "after", "a").await, 4);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_with_1001_after_saving_every_accepted_message() {
    let mut c = config("shutdown");
    c.rate_limit = None;
    let server = Server::start(c).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    let mut acked = 0;
    for i in 0..500 {
        alice
            .post("general", &format!("n{i}"), &format!("n{i}"))
            .await;
        acked += 1;
    }
    let stopping = tokio::spawn(server.stop());
    assert_eq!(alice.close_code().await, Some(1001));
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
    let server = Server::start(c).await;
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
            if fast.next("msg").await["from"] == "sender" {
                n += 1;
            }
        }
        fast
    });
    for i in 0..3000 {
        sender.post("general", &text, &format!("s{i}")).await;
    }
    receiver.await.unwrap();
    let took = started.elapsed();
    let metrics = server.metrics().await;
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
    let server = Server::start(config("bad")).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    alice.ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(alice.next("error").await["code"], "bad_json");
    alice.send(json!({"type": "shout"})).await;
    assert_eq!(alice.next("error").await["code"], "unknown_type");
    alice
        .send(
            json!({"type": "msg", "room": "general", "text": "x".repeat(5000), "client_id": "big"}),
        )
        .await;
    assert_eq!(alice.next("error").await["code"], "invalid_field");
    alice
        .send(json!({"type": "msg", "room": "nowhere", "text": "x", "client_id": "n"}))
        .await;
    let e = alice.next("error").await;
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("not_in_room"), Some("n"))
    );
    assert_eq!(alice.post("general", "still here", "ok").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn hello_must_come_first() {
    let server = Server::start(config("hello")).await;
    let (ws, _) = transport::connect(&format!("ws://{}/ws", server.addr), Config::default())
        .await
        .unwrap();
    let mut c = Client { ws };
    c.send(json!({"type": "join", "room": "x"})).await;
    assert_eq!(c.next("error").await["code"], "hello_required");
    c.send(hello("late")).await;
    assert_eq!(c.next("welcome").await["user"], "late");
    server.stop().await;
}

#[tokio::test]
async fn sustained_abuse_is_closed_with_1008() {
    let server = Server::start(config("abuse")).await;
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
            match alice.event().await {
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
async fn nicks_are_unique_and_a_session_reclaims_one() {
    let server = Server::start(config("nicks")).await;
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
    assert_eq!(first.close_code().await, Some(4000));
    server.stop().await;
}

#[tokio::test]
async fn a_dead_client_leaves_presence_within_the_keepalive_timeout() {
    let mut c = config("keepalive");
    c.keepalive = Keepalive {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
    };
    let server = Server::start(c).await;
    let (mut alice, _) = server.client(hello("alice")).await;
    // A client that says hello and then never answers a ping again.
    let mut dead = TcpStream::connect(server.addr).await.unwrap();
    raw_hello(&mut dead, "ghost").await;
    let started = Instant::now();
    loop {
        let p = alice.next("presence").await;
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

fn token(secret: &str, name: &str, exp_in: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"sub": "id-42", "name": name, "exp": now + exp_in});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn tokens_are_required_and_checked_when_a_secret_is_set() {
    let mut c = config("jwt");
    c.jwt_secret = Some("s3cret".into());
    let server = Server::start(c).await;
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
        assert_eq!(c.close_code().await, Some(4001), "{bad}");
    }
    server.stop().await;
}

// The HTTP side.

#[tokio::test]
async fn pages_probes_and_limits_are_served_on_the_same_port() {
    let mut c = config("http");
    // Every TCP connection counts, from its accept: alice's WebSocket and
    // one idle socket fill the server.
    c.max_connections = 2;
    let server = Server::start(c).await;
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
        let m = server.metrics().await;
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

#[tokio::test]
async fn a_frame_trickled_past_the_frame_timeout_is_closed_with_1008() {
    let mut c = config("trickle");
    c.frame_timeout = Duration::from_millis(500);
    let server = Server::start(c).await;
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
    let mut conn = rfc6455::proto::Connection::new(
        rfc6455::proto::Role::Client,
        rfc6455::proto::Config::default(),
    );
    let mut buf = vec![0u8; 64 * 1024];
    let code = 'read: loop {
        let n = match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break None,
        };
        conn.receive(&buf[..n]);
        while let Ok(Some(m)) = conn.poll_message() {
            if let Message::Close(frame) = m {
                break 'read frame.map(|f| f.code.as_u16());
            }
        }
    };
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
    ok.post("general", "whole frames", "q1").await;
    server.stop().await;
}
