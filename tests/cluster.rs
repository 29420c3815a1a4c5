//! Scale-out through Redis, end to end: real `redis-server` processes (from
//! Debian's `redis-server` package, which `scripts/check.sh` installs) on
//! free loopback ports, and real `rfc6455 chat --redis` processes, which
//! the tests kill with SIGKILL when a crash is the point.
//!
//! - two servers on one Redis share rooms, DMs, presence and history, and a
//!   client moving from one to the other resumes without gap or duplicate;
//! - a killed server's users reconnect to the other and resume, and its
//!   users that do not come back leave presence within the bound;
//! - Redis killed and restarted mid-conversation: no accepted message is
//!   lost or duplicated, live delivery resumes;
//! - the benchmarks' broadcast scenario across two servers, with its
//!   figures printed (deliveries/s, p99, Redis CPU).

mod common;

use common::cluster::{Chat, PRESENCE_TTL, WAIT};

use common::chat::{Client, nicks};
use common::process::cpu_seconds;
use common::redis::{Redis, wait_for};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rfc6455::proto::Message;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn is_msg_from<'a>(from: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e| e["type"] == "msg" && e["from"] == from
}

fn is_presence<'a>(key: &'a str, nick: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e| {
        e["type"] == "presence"
            && e[key]
                .as_array()
                .is_some_and(|a| a.iter().any(|n| n == nick))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_rooms_dms_presence_history_and_resume() {
    let redis = Redis::start("share").await;
    let a = Chat::start(&redis).await;

    // alice on A first. Once A has stored her presence in Redis, B starts:
    // it never saw A's presence event, and its first member's roster comes
    // from the servers' presence sets.
    let (mut alice, _) = a.client(json!({"type": "hello", "nick": "alice"})).await;
    wait_for(redis.addr(), b"SCARD chat:present:general\r\n", ":1").await;
    let b = Chat::start(&redis).await;
    let (mut bob, welcome) = b.client(json!({"type": "hello", "nick": "bob"})).await;
    let bob_session = welcome["session"].as_str().unwrap().to_owned();
    bob.next(|e| {
        e["type"] == "presence"
            && e["joined"]
                .as_array()
                .is_some_and(|j| j.contains(&json!("alice")) && j.contains(&json!("bob")))
    })
    .await;
    // ... and alice, on A, hears that bob joined on B.
    alice.next(is_presence("joined", "bob")).await;

    // A room message crosses servers; ids come from Redis.
    alice.send_msg("general", "hello from A", "c1").await;
    let ack = alice.next(|e| e["type"] == "ack").await;
    assert_eq!(ack["client_id"], "c1");
    let id = ack["id"].as_u64().unwrap();
    assert_eq!(id, 1);
    let got = bob.next(is_msg_from("alice")).await;
    assert_eq!(
        (got["id"].as_u64(), got["text"].as_str()),
        (Some(id), Some("hello from A"))
    );

    // A DM from B to A, and "unknown_user" only for someone online nowhere.
    bob.send(json!({"type": "dm", "to": "alice", "text": "psst", "client_id": "d1"}))
        .await;
    let dm = alice.next(|e| e["type"] == "dm").await;
    assert_eq!(
        (dm["from"].as_str(), dm["text"].as_str()),
        (Some("bob"), Some("psst"))
    );
    bob.next(|e| e["type"] == "ack" && e["client_id"] == "d1")
        .await;
    bob.send(json!({"type": "dm", "to": "nobody", "text": "x", "client_id": "d2"}))
        .await;
    let err = bob.next(|e| e["type"] == "error").await;
    assert_eq!(err["code"], "unknown_user");

    // Nicks are unique across servers: another "alice" on B is "alice-2";
    // without alice's session secret she cannot take the nick.
    let (imposter, welcome) = b
        .client(json!({"type": "hello", "nick": "alice", "session": "0123456789abcdef"}))
        .await;
    assert_eq!(welcome["user"], "alice-2");
    imposter.close().await;

    // History is shared: carol, new on B, gets A's message in her first page.
    let (mut carol, _) = b.client(json!({"type": "hello", "nick": "carol"})).await;
    let page = carol.next(|e| e["type"] == "history").await;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello from A"]);
    // Presence is coalesced per interval: wait until A has seen her, so
    // that her leaving below is news to alice.
    alice.next(is_presence("joined", "carol")).await;

    // bob moves from B to A while carol (on B) keeps posting: he resumes
    // on A with exactly the ids he missed.
    let poster = tokio::spawn(async move {
        for i in 0..200 {
            carol
                .send_msg("general", &format!("n{i}"), &format!("p{i}"))
                .await;
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let mut acked = 0;
        while acked < 200 {
            if carol.next(|e| e["type"] == "ack").await.is_object() {
                acked += 1;
            }
        }
        carol
    });
    let mut seen = vec![id];
    while seen.len() < 40 {
        let m = bob.next(|e| e["type"] == "msg").await;
        seen.push(m["id"].as_u64().unwrap());
    }
    let welcome_session = {
        bob.close().await;
        let last = *seen.last().unwrap();
        let (mut bob2, welcome) = a
            .client(json!({"type": "hello", "nick": "bob", "session": bob_session, "resume": {"general": last}}))
            .await;
        assert_eq!(welcome["user"], "bob", "his session secret keeps his nick");
        while seen.len() < 201 {
            let m = bob2.next(|e| e["type"] == "msg").await;
            seen.push(m["id"].as_u64().unwrap());
        }
        bob2
    };
    let carol = poster.await.unwrap();
    let expected: Vec<u64> = (1..=201).collect();
    assert_eq!(
        seen, expected,
        "resume across servers: no gap, no duplicate"
    );

    // Leaving is seen across servers too.
    carol.close().await;
    alice.next(is_presence("left", "carol")).await;
    drop(welcome_session);
    assert_eq!(a.metric("chat_redis_up").await, 1);
    assert!(b.metric("chat_redis_published_total").await >= 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_users_resume_elsewhere_and_leave_presence_in_time() {
    let redis = Redis::start("kill").await;
    let a = Chat::start(&redis).await;
    let mut b = Chat::start(&redis).await;
    let (mut alice, _) = a.client(json!({"type": "hello", "nick": "alice"})).await;
    let (mut bob, welcome) = b.client(json!({"type": "hello", "nick": "bob"})).await;
    let session = welcome["session"].as_str().unwrap().to_owned();
    let (mut dave, _) = b.client(json!({"type": "hello", "nick": "dave"})).await;
    alice.next(is_presence("joined", "dave")).await;
    // dave is also in a room nobody on A is in: A never holds it in
    // memory, yet must clear B's entry from the room's presence sets when B dies.
    dave.send(json!({"type": "join", "room": "only-b"})).await;
    dave.next(|e| e["type"] == "history" && e["room"] == "only-b")
        .await;
    let redis_client = redis::Client::open(redis.url()).unwrap();
    let mut con = redis_client
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let fields = |con: &mut redis::aio::MultiplexedConnection| {
        let mut con = con.clone();
        async move {
            redis::cmd("SCARD")
                .arg("chat:present:only-b")
                .query_async::<u64>(&mut con)
                .await
                .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while fields(&mut con).await == 0 {
        assert!(Instant::now() < deadline, "B never published only-b");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..10 {
        alice
            .send_msg("general", &format!("before {i}"), &format!("b{i}"))
            .await;
    }
    let mut last = 0;
    while last < 10 {
        last = bob.next(|e| e["type"] == "msg").await["id"]
            .as_u64()
            .unwrap();
    }

    // B dies without a word. dave never comes back; bob reconnects to A.
    let killed = Instant::now();
    b.kill();
    for i in 0..10 {
        alice
            .send_msg("general", &format!("after {i}"), &format!("a{i}"))
            .await;
    }
    // With his session secret he keeps his nick on A, though B's presence
    // still holds it until B's heartbeat times out.
    let (mut bob2, welcome) = a
        .client(json!({"type": "hello", "nick": "bob", "session": session, "resume": {"general": last}}))
        .await;
    assert_eq!(welcome["user"], "bob");
    let mut ids = Vec::new();
    while ids.len() < 10 {
        ids.push(
            bob2.next(|e| e["type"] == "msg").await["id"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(ids, (11..=20).collect::<Vec<u64>>());

    alice.next(is_presence("left", "dave")).await;
    let gone_after = killed.elapsed();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fields(&mut con).await != 0 {
        assert!(
            Instant::now() < deadline,
            "B stayed in only-b's presence sets"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("dave left presence {gone_after:?} after his server was killed");
    assert!(
        gone_after < PRESENCE_TTL + Duration::from_secs(2),
        "presence bound: {gone_after:?}"
    );
    // bob is on A now: he never left the room as far as anyone sees.
    let roster_check = a.client(json!({"type": "hello", "nick": "erin"})).await.0;
    let mut erin = roster_check;
    let p = erin.next(|e| e["type"] == "presence").await;
    let joined = p["joined"].as_array().unwrap();
    assert!(joined.contains(&json!("bob")) && !joined.contains(&json!("dave")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_loses_no_accepted_message() {
    let mut redis = Redis::start("restart").await;
    let a = Chat::start(&redis).await;
    let b = Chat::start(&redis).await;
    let (mut alice, _) = a.client(json!({"type": "hello", "nick": "alice"})).await;
    let (mut bob, _) = b.client(json!({"type": "hello", "nick": "bob"})).await;
    alice.next(is_presence("joined", "bob")).await;

    const TOTAL: usize = 150;
    let sender = tokio::spawn(async move {
        // One message every 20 ms; acks are collected as they come.
        let mut acked: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..TOTAL {
            alice
                .send_msg("general", &format!("m{i}"), &format!("c{i}"))
                .await;
            while let Some(e) = alice.event(Duration::from_millis(20)).await {
                if e["type"] == "ack" {
                    acked.insert(
                        e["client_id"].as_str().unwrap().into(),
                        e["id"].as_u64().unwrap(),
                    );
                }
                assert_ne!(e["type"], "error", "a post was refused: {e}");
            }
        }
        while acked.len() < TOTAL {
            let e = alice.next(|e| e["type"] == "ack").await;
            acked.insert(
                e["client_id"].as_str().unwrap().into(),
                e["id"].as_u64().unwrap(),
            );
        }
        acked
    });

    // Redis dies with SIGKILL a third of the way in, and is back 1 s later.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    redis.kill();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = a.get("/healthz").await;
    assert!(health.contains("degraded: redis unreachable"), "{health}");
    let strict = a.get("/healthz?strict").await;
    assert!(strict.starts_with("HTTP/1.1 503"), "{strict}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.spawn().await;
    eprintln!("redis was down for {:?}", killed.elapsed());

    let mut received = Vec::new();
    while received.len() < TOTAL {
        let m = bob.next(|e| e["type"] == "msg").await;
        received.push((
            m["id"].as_u64().unwrap(),
            m["text"].as_str().unwrap().to_owned(),
        ));
    }
    let acked = sender.await.unwrap();
    // Every accepted (acked) message arrived once, in id order, with the
    // text that was sent under its client id.
    let ids: Vec<u64> = received.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=TOTAL as u64).collect::<Vec<u64>>());
    for (id, text) in &received {
        let cid = text.replacen('m', "c", 1);
        assert_eq!(acked.get(&cid), Some(id), "{text}");
    }
    // No duplicate afterwards either.
    assert!(
        bob.event(Duration::from_millis(500))
            .await
            .is_none_or(|e| e["type"] != "msg")
    );
    b.wait_healthy().await;
    assert_eq!(b.metric("chat_redis_up").await, 1);
    let fills = b.metric("chat_redis_gap_fills_total").await;
    let queued_max = a.metric("chat_redis_published_total").await;
    eprintln!(
        "sent {TOTAL}, acked {}, received {}, lost 0; B's gap fills {fills}; A published {queued_max}",
        acked.len(),
        received.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_an_outage_flushes_queued_posts_first() {
    let mut redis = Redis::start("shutdown").await;
    let a = Chat::start(&redis).await;
    let b = Chat::start(&redis).await;
    let (mut alice, _) = a.client(json!({"type": "hello", "nick": "alice"})).await;
    let (mut bob, _) = b.client(json!({"type": "hello", "nick": "bob"})).await;
    alice.next(is_presence("joined", "bob")).await;

    // Redis goes away; alice's posts wait in A's queue, unacked.
    redis.kill();
    for i in 0..20 {
        alice
            .send_msg("general", &format!("m{i}"), &format!("c{i}"))
            .await;
    }
    assert!(
        alice
            .event(Duration::from_millis(300))
            .await
            .is_none_or(|e| e["type"] != "ack"),
        "nothing is acked while Redis is away"
    );
    // A is told to stop (SIGTERM), and Redis comes back within A's close
    // timeout: A hands the queue to Redis, acks, and only then says 1001.
    a.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.spawn().await;
    let (mut acks, mut close) = (0, None);
    loop {
        match tokio::time::timeout(WAIT, alice.ws.recv()).await.unwrap() {
            Some(Ok(Message::Text(t))) => {
                let e: Value = serde_json::from_str(t.as_str()).unwrap();
                assert!(close.is_none(), "nothing after the Close: {e}");
                if e["type"] == "ack" {
                    acks += 1;
                }
            }
            Some(Ok(Message::Close(frame))) => close = frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{e}"),
            None => break,
        }
    }
    assert_eq!(close, Some(1001), "closed with going away after the acks");
    assert_eq!(acks, 20, "every queued post acked before the close");
    let mut ids = Vec::new();
    while ids.len() < 20 {
        ids.push(
            bob.next(|e| e["type"] == "msg").await["id"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(ids, (1..=20).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_users_leave_presence_at_once() {
    // A long heartbeat bound (30 s): leaving within seconds can only come
    // from the stopping server saying so, not from its silence.
    let redis = Redis::start("stop").await;
    let a = Chat::start_opts(&redis.url(), Duration::from_secs(30)).await;
    let b = Chat::start_opts(&redis.url(), Duration::from_secs(30)).await;
    let (mut alice, _) = a.client(json!({"type": "hello", "nick": "alice"})).await;
    let (mut bob, _) = b.client(json!({"type": "hello", "nick": "bob"})).await;
    alice.next(is_presence("joined", "bob")).await;
    // bob reads on, as a browser would, so he answers the server's Close.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = bob.ws.recv().await {} });
    let stopped = Instant::now();
    b.terminate();
    alice.next(is_presence("left", "bob")).await;
    let took = stopped.elapsed();
    eprintln!("bob left presence {took:?} after his server was told to stop");
    assert!(took < Duration::from_secs(3), "{took:?}");
    reader.await.unwrap();
    // A DM to him now waits for him (he has been here): acked, stored,
    // delivered to nobody.
    alice
        .send(json!({"type": "dm", "to": "bob", "text": "still there?", "client_id": "d"}))
        .await;
    let answer = alice.next(|e| e["client_id"] == "d").await;
    assert_eq!(answer["type"], "ack", "{answer}");
}

/// A TCP proxy to Redis that can go silent: after `blackhole()`, the
/// connections open at that moment stay open but nothing crosses them any
/// more, in either direction (a half-dead path: a NAT that dropped its
/// entry, a stuck proxy). Connections made later work.
struct Proxy {
    addr: SocketAddr,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let generation = std::sync::Arc::new(AtomicU64::new(0));
        let g = generation.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let born = g.load(Ordering::SeqCst);
                let g = g.clone();
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    let pipe = |mut r: tokio::net::tcp::OwnedReadHalf,
                                mut w: tokio::net::tcp::OwnedWriteHalf,
                                g: std::sync::Arc<AtomicU64>| async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match r.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if g.load(Ordering::SeqCst) != born {
                                // Silence: keep both sockets, forward nothing.
                                std::future::pending::<()>().await;
                            }
                            if w.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let up_task = tokio::spawn(pipe(dr, uw, g.clone()));
                    pipe(ur, dw, g).await;
                    up_task.abort();
                });
            }
        });
        Proxy { addr, generation }
    }

    fn blackhole(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silently_dead_subscription_is_probed_and_nothing_is_lost() {
    let redis = Redis::start("probe").await;
    let proxy = Proxy::start(redis.addr()).await;
    let a = Chat::start(&redis).await;
    let b = Chat::start_with_url(&format!("redis://{}", proxy.addr)).await;
    let (mut alice, _) = a.client(json!({"type": "hello", "nick": "alice"})).await;
    let (mut bob, _) = b.client(json!({"type": "hello", "nick": "bob"})).await;
    alice.next(is_presence("joined", "bob")).await;

    // B's links to Redis go silent; its sockets stay open. alice goes on
    // posting on A: B must notice by its probe, not by a closed socket.
    proxy.blackhole();
    let silenced = Instant::now();
    const TOTAL: u64 = 60;
    for i in 0..TOTAL {
        alice
            .send_msg("general", &format!("m{i}"), &format!("c{i}"))
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ids = Vec::new();
    while ids.len() < TOTAL as usize {
        ids.push(
            bob.next(|e| e["type"] == "msg").await["id"]
                .as_u64()
                .unwrap(),
        );
    }
    let caught_up = silenced.elapsed();
    assert_eq!(
        ids,
        (1..=TOTAL).collect::<Vec<u64>>(),
        "in order, none lost, none twice"
    );
    let probes = b.metric("chat_redis_probe_failures_total").await;
    let fills = b.metric("chat_redis_gap_fills_total").await;
    let filled = b.metric("chat_redis_gap_messages_total").await;
    eprintln!(
        "silent subscription: B caught up {caught_up:?} after the silence began; \
         probe failures {probes}, gap fills {fills} ({filled} messages)"
    );
    assert!(probes >= 1, "the probe noticed");
    assert!(
        fills >= 1 && filled >= 1,
        "missed ids were read from the stream"
    );
    assert_eq!(a.metric("chat_redis_probe_failures_total").await, 0);
}

/// The benchmarks' broadcast scenario across two servers: subscribers split
/// over A and B, senders on both, each message stamped with its send time.
/// Sizes come from CLUSTER_LOAD_SUBS / _SENDERS / _RATE / _SECS (defaults
/// small enough for a debug build in CI; the README's figures use the
/// benchmark's 500 × 5 × 100/s in release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_load_across_two_servers() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let subs = env("CLUSTER_LOAD_SUBS", 100);
    let senders = env("CLUSTER_LOAD_SENDERS", 5);
    let rate = env("CLUSTER_LOAD_RATE", 50);
    let secs = env("CLUSTER_LOAD_SECS", 3);
    let per_sender = rate * secs;
    let total = senders * per_sender;

    let redis = Redis::start("load").await;
    let servers = [Chat::start(&redis).await, Chat::start(&redis).await];
    let started = Instant::now();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subs);
    let mut receivers = Vec::new();
    for i in 0..subs {
        let addr = servers[i % 2].addr;
        let ready = ready_tx.clone();
        receivers.push(tokio::spawn(async move {
            let (mut c, _) = Client::connect(
                addr,
                "/ws",
                json!({"type": "hello", "nick": format!("sub{i}")}),
            )
            .await;
            c.next(|e| e["type"] == "history").await;
            ready.send(()).await.unwrap();
            let mut latencies = Vec::with_capacity(total);
            let mut last_id = 0u64;
            while latencies.len() < total {
                let Some(e) = c.event(Duration::from_secs(10)).await else {
                    break;
                };
                if e["type"] != "msg" {
                    continue;
                }
                let text = e["text"].as_str().unwrap();
                let (sent_us, _) = text.split_once(' ').unwrap();
                let sent_us: u64 = sent_us.parse().unwrap();
                latencies.push(now_us().saturating_sub(sent_us));
                // In order per room: ids only go up.
                let id = e["id"].as_u64().unwrap();
                assert!(id > last_id, "out of order: {id} after {last_id}");
                last_id = id;
            }
            latencies
        }));
    }
    drop(ready_tx);
    for _ in 0..subs {
        ready_rx.recv().await.unwrap();
    }
    eprintln!("{subs} subscribers connected in {:?}", started.elapsed());

    let cpu_before = (
        redis.cpu_seconds(),
        cpu_seconds(servers[0].pid()),
        cpu_seconds(servers[1].pid()),
    );
    let t0 = Instant::now();
    let mut send_tasks = Vec::new();
    for s in 0..senders {
        let addr = servers[s % 2].addr;
        send_tasks.push(tokio::spawn(async move {
            let (mut c, _) = Client::connect(
                addr,
                "/ws",
                json!({"type": "hello", "nick": format!("sender{s}")}),
            )
            .await;
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
            for i in 0..per_sender {
                tick.tick().await;
                c.send_msg(
                    "general",
                    &format!("{} s{s}-{i}", now_us()),
                    &format!("{s}-{i}"),
                )
                .await;
                while c.event(Duration::ZERO).await.is_some() {}
            }
            c
        }));
    }
    let mut senders_done = Vec::new();
    for t in send_tasks {
        senders_done.push(t.await.unwrap());
    }
    let mut all = Vec::new();
    for r in receivers {
        all.extend(r.await.unwrap());
    }
    let elapsed = t0.elapsed();
    let cpu = (
        redis.cpu_seconds() - cpu_before.0,
        cpu_seconds(servers[0].pid()) - cpu_before.1,
        cpu_seconds(servers[1].pid()) - cpu_before.2,
    );
    let expected = subs * total;
    let lost = expected - all.len();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    eprintln!(
        "broadcast across 2 servers: {subs} subscribers, {senders} senders x {rate}/s for {secs} s: \
         {} deliveries in {:.2} s = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; \
         lost {lost}; CPU s: redis {:.2}, server A {:.2}, server B {:.2}",
        all.len(),
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        pct(0.999),
        cpu.0,
        cpu.1,
        cpu.2,
    );
    assert_eq!(lost, 0, "every subscriber gets every message");
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_and_the_member_pages_include_the_other_servers_users() {
    let redis = Redis::start("members").await;
    let a = Chat::start(&redis).await;
    let b = Chat::start(&redis).await;
    let (mut alice, _) = a.client(json!({"type": "hello", "nick": "alice"})).await;
    let mut on_b = b.users((0..6).map(|i| format!("b{i}"))).await;
    // Deltas from B reach A, each with the room's count.
    alice
        .next(|e| e["type"] == "presence" && e["count"] == 7)
        .await;
    // A newcomer on A: the count and the first page hold B's users.
    let (mut carol, _) = a.client(json!({"type": "hello", "nick": "carol"})).await;
    let first = carol.next_of("presence").await;
    assert_eq!(first["count"], 8);
    assert_eq!(
        nicks(&first["joined"]),
        ["alice", "b0", "b1", "b2", "b3", "b4", "b5", "carol"]
    );
    assert_eq!(first["next"], Value::Null);
    // Paged three at a time from A: everyone once, B's users included.
    let mut all = Vec::new();
    let mut after = Value::Null;
    loop {
        let mut request = json!({"type": "members", "room": "general", "limit": 3});
        if !after.is_null() {
            request["after"] = after.clone();
        }
        alice.send(request).await;
        let page = alice.next_of("members").await;
        assert_eq!(page["count"], 8);
        all.extend(nicks(&page["members"]));
        after = page["next"].clone();
        if after.is_null() {
            break;
        }
    }
    assert_eq!(all, nicks(&first["joined"]));
    alice
        .send(json!({"type": "members", "room": "general", "q": "B"}))
        .await;
    let found = alice.next_of("members").await;
    assert_eq!(
        nicks(&found["members"]),
        ["b0", "b1", "b2", "b3", "b4", "b5"]
    );
    // One leaves B: A's count follows.
    on_b.pop();
    alice
        .next(|e| e["type"] == "presence" && e["left"] == json!(["b5"]) && e["count"] == 7)
        .await;
}

/// Everyone in `room` as `client`'s server knows them, paged to the end.
async fn all_members(client: &mut Client, room: &str) -> (u64, Vec<String>) {
    let (mut all, mut after, mut count) = (Vec::new(), Value::Null, 0);
    loop {
        let mut request = json!({"type": "members", "room": room, "limit": 100});
        if !after.is_null() {
            request["after"] = after.clone();
        }
        client.send(request).await;
        let page = client.next_of("members").await;
        count = page["count"].as_u64().unwrap_or(count);
        all.extend(nicks(&page["members"]));
        after = page["next"].clone();
        if after.is_null() {
            return (count, all);
        }
    }
}

/// Waits until `client`'s server has exactly `want` in `room`.
async fn members_become(client: &mut Client, room: &str, want: &[String], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (count, got) = all_members(client, room).await;
        if got == want && count == want.len() as u64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {count} members, {} expected; missing {:?}, extra {:?}",
            want.len(),
            want.iter().filter(|n| !got.contains(n)).collect::<Vec<_>>(),
            got.iter().filter(|n| !want.contains(n)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_joins_and_leaves_converges_and_a_missed_change_is_read_again() {
    let redis = Redis::start("deltas").await;
    let a = Chat::start(&redis).await;
    let b = Chat::start(&redis).await;
    let mut on_a = a.users((0..5).map(|i| format!("a{i}"))).await;
    // 300 join on B, then 100 of them leave: A hears only the changes.
    let mut on_b = b.users((0..300).map(|i| format!("b{i:03}"))).await;
    for client in on_b.drain(..100) {
        client.close().await;
    }
    let mut want: Vec<String> = (0..5)
        .map(|i| format!("a{i}"))
        .chain((100..300).map(|i| format!("b{i:03}")))
        .collect();
    want.sort();
    members_become(&mut on_a[0], "general", &want, "after the burst").await;

    // B's set in Redis, and its last change's number (its heartbeat says).
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let servers: Vec<String> = redis::cmd("SMEMBERS")
        .arg("chat:present:general")
        .query_async(&mut con)
        .await
        .unwrap();
    let mut b_id = None;
    for s in servers {
        let b100: bool = redis::cmd("SISMEMBER")
            .arg(format!("chat:nicks:{s}:general"))
            .arg("b100")
            .query_async(&mut con)
            .await
            .unwrap();
        if b100 {
            b_id = Some(s);
        }
    }
    let b_id = b_id.expect("B has a set for general");
    let b_set = format!("chat:nicks:{b_id}:general");
    let members: u64 = redis::cmd("SCARD")
        .arg(&b_set)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(members, 200, "B's set holds what B has");
    let mut ps = client.get_async_pubsub().await.unwrap();
    ps.subscribe("chat:bus").await.unwrap();
    let n = {
        use futures_util::StreamExt;
        let mut bus = ps.on_message();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), bus.next())
                .await
                .expect("a heartbeat from B")
                .unwrap();
            let event: Value = serde_json::from_slice(msg.get_payload_bytes()).unwrap();
            if event["t"] == "hb" && event["s"] == b_id.as_str() {
                break event["n"].as_u64().unwrap();
            }
        }
    };

    // A change A never heard of (its bus event lost: in the set only),
    // then one numbered past it: A must read B's set again.
    redis::pipe()
        .cmd("SADD")
        .arg(&b_set)
        .arg("ghost")
        .arg("late")
        .ignore()
        .cmd("SREM")
        .arg(&b_set)
        .arg("b100")
        .ignore()
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    let resyncs = a.metric("chat_redis_presence_resyncs_total").await;
    let delta = json!({"t": "presence_delta", "s": b_id, "n": n + 2, "room": "general",
        "joined": ["late"], "left": []});
    redis::cmd("PUBLISH")
        .arg("chat:bus")
        .arg(delta.to_string())
        .query_async::<u64>(&mut con)
        .await
        .unwrap();
    want.retain(|n| n != "b100");
    want.extend(["ghost".to_owned(), "late".to_owned()]);
    want.sort();
    members_become(&mut on_a[0], "general", &want, "after the gap").await;
    assert!(a.metric("chat_redis_presence_resyncs_total").await > resyncs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_on_two_servers_is_one_member_and_read_state_follows_it() {
    let redis = Redis::start("convs").await;
    let a = Chat::start(&redis).await;
    let b = Chat::start(&redis).await;
    let (mut alice, welcome) = a.client(json!({"type": "hello", "nick": "alice"})).await;
    let session = welcome["session"].clone();
    let (mut bob, _) = b.client(json!({"type": "hello", "nick": "bob"})).await;
    bob.next(is_presence("joined", "alice")).await;
    // alice's second tab, on B, proves her session: the same nick.
    let (mut tab, w) = b
        .client(json!({"type": "hello", "nick": "alice", "session": session}))
        .await;
    assert_eq!(w["user"], "alice", "{w}");
    let id = bob.acked("general", "to both servers", "b1").await;
    for c in [&mut alice, &mut tab] {
        let m = c.next(|e| e["type"] == "msg" && e["id"] == id).await;
        assert_eq!(m["from"], "bob");
    }
    // Presence counts her once; her tab leaving keeps her.
    bob.send(json!({"type": "members", "room": "general"}))
        .await;
    let members = bob.next_of("members").await;
    assert_eq!(members["count"], 2, "{members}");
    tab.close().await;
    let later = bob.drain(Duration::from_millis(500)).await;
    assert!(
        later
            .iter()
            .all(|e| e["type"] != "presence" || !nicks(&e["left"]).contains(&"alice".to_owned())),
        "{later:?}"
    );
    // A read on A is a receipt on B, and the mark is kept in Redis.
    alice
        .send(json!({"type": "read", "room": "general", "id": id}))
        .await;
    assert_eq!(
        bob.next_of("receipt").await,
        json!({"type": "receipt", "room": "general", "user": "alice", "id": id})
    );
    alice
        .send(json!({"type": "read", "room": "general", "id": id + 5, "client_id": "r"}))
        .await;
    assert_eq!(alice.next_of("error").await["code"], "beyond_newest");
    alice.close().await;
    bob.acked("general", "@alice, on B now?", "b2").await;
    bob.acked("general", "and this", "b3").await;
    // Her session secret keeps her nick on B, whether or not B has heard
    // yet that she left A.
    let (mut alice, welcome) = b
        .client(json!({"type": "hello", "nick": "alice", "session": session, "resume": {"general": id}}))
        .await;
    assert_eq!(welcome["user"], "alice", "{welcome}");
    assert_eq!(welcome["unread"], json!({"general": 2}), "{welcome}");
    assert_eq!(welcome["mentions"], json!({"general": 1}), "{welcome}");
    let receipts = alice.next_of("receipts").await;
    assert_eq!(receipts["receipts"], json!([{"user": "alice", "id": id}]));
    // A rename on B closes her tab on A (4003); a logout on B then closes
    // every connection of the new nick, on A too (1000), and its secret
    // is forgotten in Redis.
    let (mut on_a, w) = a
        .client(json!({"type": "hello", "nick": "alice", "session": session}))
        .await;
    assert_eq!(w["user"], "alice", "{w}");
    alice.send(json!({"type": "nick", "nick": "alicia"})).await;
    let renamed = alice.next_of("renamed").await;
    assert_eq!(on_a.next_of("renamed").await, renamed, "told on A too");
    assert_eq!(on_a.close_code(WAIT).await, Some(4003));
    let new_session = renamed["session"].clone();
    let key = b"GET chat:session:alicia\r\n";
    wait_for(redis.addr(), key, new_session.as_str().unwrap()).await;
    let (mut on_a, w) = a
        .client(json!({"type": "hello", "nick": "alicia", "session": new_session}))
        .await;
    assert_eq!(w["user"], "alicia", "{w}");
    alice.send(json!({"type": "logout"})).await;
    assert_eq!(alice.close_code(WAIT).await, Some(1000));
    assert_eq!(on_a.close_code(WAIT).await, Some(1000));
    wait_for(redis.addr(), b"EXISTS chat:session:alicia\r\n", ":0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_dm_through_redis_reaches_its_user_on_the_other_server() {
    let redis = Redis::start("offline-dm").await;
    let a = Chat::start(&redis).await;
    let b = Chat::start(&redis).await;
    let (frank, _) = b.client(json!({"type": "hello", "nick": "frank"})).await;
    frank.close().await;
    wait_for(redis.addr(), b"SISMEMBER chat:users frank\r\n", ":1").await;
    let (mut alice, _) = a.client(json!({"type": "hello", "nick": "alice"})).await;
    // frank is offline everywhere, but has been here: the DM is stored.
    alice
        .send(json!({"type": "dm", "to": "frank", "text": "when you are back", "client_id": "d1"}))
        .await;
    let ack = alice.next(|e| e["client_id"] == "d1").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let id = ack["id"].as_u64().unwrap();
    alice
        .send(json!({"type": "dm", "to": "nobody", "text": "x", "client_id": "d2"}))
        .await;
    assert_eq!(
        alice.next(|e| e["client_id"] == "d2").await["code"],
        "unknown_user"
    );
    let (mut frank, welcome) = b.client(json!({"type": "hello", "nick": "frank"})).await;
    assert_eq!(welcome["unread"], json!({"@alice": 1}), "{welcome}");
    assert_eq!(
        frank.next_of("mention").await,
        json!({"type": "mention", "dm": "alice", "id": id, "from": "alice"})
    );
    frank.send(json!({"type": "dms"})).await;
    assert_eq!(
        frank.next_of("dms").await["conversations"],
        json!([{"with": "alice", "last_id": id, "unread": 1}])
    );
    frank.send(json!({"type": "history", "dm": "alice"})).await;
    let page = frank.next_of("history").await;
    assert_eq!(page["messages"][0]["text"], "when you are back", "{page}");
    frank
        .send(json!({"type": "read", "dm": "alice", "id": id}))
        .await;
    assert_eq!(
        alice.next_of("receipt").await,
        json!({"type": "receipt", "dm": "frank", "user": "frank", "id": id})
    );
}

/// One command in Redis's inline protocol: whatever it answers within
/// half a second.
async fn redis_says(redis: &Redis, command: &str) -> String {
    let mut s = TcpStream::connect(redis.addr()).await.unwrap();
    s.write_all(format!("{command}\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Ok(n @ 1..)) = tokio::time::timeout_at(until, s.read(&mut buf)).await {
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The `ack` id of `request` (which carries a `client_id`); panics on a
/// refusal.
async fn acked_request(c: &mut Client, request: Value) -> u64 {
    let answer = c.answer(request).await;
    assert_eq!(answer["type"], "ack", "refused: {answer}");
    answer["id"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_deletes_reactions_and_replies_cross_servers_and_redis_purges_deleted_text() {
    let redis = Redis::start("lifecycle").await;
    let a = Chat::start(&redis).await;
    let b = Chat::start(&redis).await;
    let (mut alice, _) = a.client(json!({"type": "hello", "nick": "alice"})).await;
    let (mut bob, welcome) = b.client(json!({"type": "hello", "nick": "bob"})).await;
    let bob_session = welcome["session"].as_str().unwrap().to_owned();
    // Bob's join is done once his history page is in: what alice posts
    // after that reaches him live.
    bob.next_of("history").await;
    let at = |kind: &str, id: u64, client_id: &str| json!({"type": kind, "room": "general", "id": id, "client_id": client_id});
    assert_eq!(alice.acked("general", "first", "m1").await, 1);
    assert_eq!(alice.acked("general", "secret two", "m2").await, 2);
    while bob.next_of("msg").await["id"] != 2 {}
    // A reply from B reaches A with its reply_to.
    let reply =
        json!({"type": "msg", "room": "general", "text": "re", "client_id": "r", "reply_to": 1});
    assert_eq!(acked_request(&mut bob, reply).await, 3);
    let m = alice.next(|e| e["type"] == "msg" && e["id"] == 3).await;
    assert_eq!(m["reply_to"], 1);
    // An edit on A reaches B.
    let mut edit = at("edit", 1, "e1");
    edit["text"] = json!("first, fixed");
    assert_eq!(acked_request(&mut alice, edit).await, 4);
    let edited = bob.next_of("edited").await;
    assert_eq!(
        (edited["id"].as_u64(), edited["text"].as_str()),
        (Some(1), Some("first, fixed"))
    );
    // Refusals come from the script, with their client_id.
    let mut steal = at("edit", 1, "no");
    steal["text"] = json!("mine");
    let refused = bob.answer(steal).await;
    assert_eq!(
        (refused["code"].as_str(), refused["client_id"].as_str()),
        (Some("not_author"), Some("no"))
    );
    let mut missing = at("react", 99, "nx");
    missing["emoji"] = json!("👍");
    assert_eq!(bob.answer(missing).await["code"], "no_such_message");
    // Bob leaves; a reaction, an edit and a delete happen meanwhile.
    bob.close().await;
    let mut react = at("react", 1, "x1");
    react["emoji"] = json!("👍");
    // (Scaled out, the writer's own event may come before or after its
    // ack: what it says is checked on bob's replay.)
    assert_eq!(acked_request(&mut alice, react).await, 5);
    let mut edit = at("edit", 2, "e2");
    edit["text"] = json!("secret edited");
    assert_eq!(acked_request(&mut alice, edit).await, 6);
    assert_eq!(acked_request(&mut alice, at("delete", 2, "d")).await, 7);
    let mut gone = at("react", 2, "x2");
    gone["emoji"] = json!("👍");
    assert_eq!(alice.answer(gone).await["code"], "deleted");
    // Resuming on B replays them in order; the purged edit is not there.
    let (mut bob, _) = b
        .client(json!({"type": "hello", "nick": "bob", "session": bob_session, "resume": {"general": 4}}))
        .await;
    let first = bob
        .next(|e| e["type"] == "reaction" || e["type"] == "deleted" || e["type"] == "edited")
        .await;
    let second = bob
        .next(|e| e["type"] == "reaction" || e["type"] == "deleted" || e["type"] == "edited")
        .await;
    assert_eq!(
        [
            (&first["type"], &first["event_id"]),
            (&second["type"], &second["event_id"])
        ],
        [
            (&json!("reaction"), &json!(5)),
            (&json!("deleted"), &json!(7))
        ]
    );
    assert_eq!(first["users"], json!(["alice"]));
    // The script bounds the distinct reactions of a message (20).
    for i in 0..20 {
        let mut r = at("react", 3, &format!("many{i}"));
        r["emoji"] = json!(format!(":r{i}:"));
        acked_request(&mut alice, r).await;
    }
    let mut r = at("react", 3, "too-many");
    r["emoji"] = json!(":one-more:");
    assert_eq!(alice.answer(r).await["code"], "too_many_reactions");
    // Live again: bob's reaction crosses back to A.
    let mut react = at("react", 1, "x3");
    react["emoji"] = json!("👍");
    assert_eq!(acked_request(&mut bob, react).await, 8 + 20);
    let live = alice
        .next(|e| e["type"] == "reaction" && e["event_id"] == 8 + 20)
        .await;
    assert_eq!(live["users"], json!(["alice", "bob"]));
    // History on B: each message as it is now.
    let (mut carol, _) = b.client(json!({"type": "hello", "nick": "carol"})).await;
    let page = carol.next_of("history").await;
    let messages: BTreeMap<u64, Value> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_u64().unwrap(), m.clone()))
        .collect();
    assert_eq!(messages.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(messages[&1]["text"], "first, fixed");
    assert!(messages[&1]["edited_ts"].as_u64().is_some());
    assert_eq!(messages[&1]["reactions"], json!({"👍": ["alice", "bob"]}));
    assert_eq!(messages[&2]["deleted"], true);
    assert!(messages[&2].get("text").is_none(), "{}", messages[&2]);
    assert_eq!(messages[&3]["reply_to"], 1);
    assert_eq!(messages[&3]["reactions"].as_object().unwrap().len(), 20);
    // In a DM across servers, each side names the other.
    // (Until A hears that bob is back online, on B, a DM to him is
    // refused as to an unknown user.)
    let deadline = Instant::now() + WAIT;
    loop {
        let dm = json!({"type": "dm", "to": "bob", "text": "psst", "client_id": "dm1"});
        let answer = alice.answer(dm).await;
        if answer["type"] == "ack" {
            assert_eq!(answer["id"], 1);
            break;
        }
        assert_eq!(answer["code"], "unknown_user", "{answer}");
        assert!(
            Instant::now() < deadline,
            "A never heard that bob is online"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bob.next_of("dm").await["id"], 1);
    let r = json!({"type": "react", "dm": "alice", "id": 1, "emoji": ":eyes:", "client_id": "dx"});
    assert_eq!(acked_request(&mut bob, r).await, 2);
    let seen = alice.next_of("reaction").await;
    assert_eq!(
        (seen["dm"].as_str(), seen["users"].clone()),
        (Some("bob"), json!(["bob"]))
    );
    let d = json!({"type": "delete", "dm": "bob", "id": 1, "client_id": "dd"});
    assert_eq!(acked_request(&mut alice, d).await, 3);
    let deleted = bob.next_of("deleted").await;
    assert_eq!(
        (deleted["dm"].as_str(), deleted["id"].as_u64()),
        (Some("alice"), Some(1))
    );
    let dm_states = redis_says(&redis, "HGETALL chat:msg:@alice|bob").await;
    assert!(
        dm_states.contains("deleted") && !dm_states.contains("psst"),
        "{dm_states}"
    );
    // The deleted text is in none of Redis's keys for the room.
    let stream = redis_says(&redis, "XRANGE chat:log:general - +").await;
    assert!(stream.contains("first, fixed"), "{stream}");
    let states = redis_says(&redis, "HGETALL chat:msg:general").await;
    assert!(states.contains("first, fixed"), "{states}");
    for held in [&stream, &states] {
        assert!(
            !held.contains("secret"),
            "a deleted text is still in Redis: {held}"
        );
    }
}

/// A room stored before message states (its messages in the stream only)
/// keeps its history: pages reach back from the new messages into the
/// stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_from_before_message_states_is_still_read() {
    let redis = Redis::start("legacy").await;
    for id in 1..=2 {
        let added = redis_says(
            &redis,
            &format!("XADD chat:log:legacy {id}-0 from old text before{id} ts {id}"),
        )
        .await;
        assert!(added.contains(&format!("{id}-0")), "{added}");
    }
    assert!(
        redis_says(&redis, "SET chat:id:legacy 2")
            .await
            .contains("OK")
    );
    let a = Chat::start(&redis).await;
    let (mut alice, _) = a.client(json!({"type": "hello", "nick": "alice"})).await;
    alice.send(json!({"type": "join", "room": "legacy"})).await;
    let page = alice
        .next(|e| e["type"] == "history" && e["room"] == "legacy")
        .await;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["before1", "before2"]);
    assert_eq!(alice.acked("legacy", "after", "n").await, 3);
    alice
        .send(json!({"type": "history", "room": "legacy"}))
        .await;
    let newest = alice
        .next(|e| e["type"] == "history" && e["room"] == "legacy")
        .await;
    assert_eq!(newest["messages"].as_array().unwrap().len(), 1);
    assert_eq!(newest["more"], true);
    alice
        .send(json!({"type": "history", "room": "legacy", "before": 3}))
        .await;
    let older = alice
        .next(|e| e["type"] == "history" && e["room"] == "legacy")
        .await;
    let ids: Vec<u64> = older["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(older["more"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_reaches_a_members_tab_on_a_server_where_nobody_is_in_the_room() {
    let redis = Redis::start("mention").await;
    let a = Chat::start(&redis).await;
    let b = Chat::start(&redis).await;
    let (mut alice, welcome) = a.client(json!({"type": "hello", "nick": "alice"})).await;
    let (mut bob, _) = a.client(json!({"type": "hello", "nick": "bob"})).await;
    bob.next(|e| e["type"] == "history").await;
    // Wait until B knows alice is online on A: her tab on B is her.
    let (mut probe, _) = b.client(json!({"type": "hello", "nick": "probe"})).await;
    probe.next(is_presence("joined", "alice")).await;
    probe.close().await;
    let (mut tab, w) = b
        .client(json!({"type": "hello", "nick": "alice", "session": welcome["session"]}))
        .await;
    assert_eq!(w["user"], "alice", "{w}");
    tab.next(|e| e["type"] == "history").await;
    tab.send(json!({"type": "leave", "room": "general"})).await;
    // carol, on B, is in no room: a mention of her reaches no one.
    let (mut carol, _) = b.client(json!({"type": "hello", "nick": "carol"})).await;
    carol.next(|e| e["type"] == "history").await;
    carol
        .send(json!({"type": "leave", "room": "general"}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = bob.acked("general", "@alice @carol look", "m").await;
    let mention = json!({"type": "mention", "room": "general", "id": id, "from": "bob"});
    assert_eq!(alice.next_of("mention").await, mention);
    assert_eq!(tab.next_of("mention").await, mention, "her tab on B too");
    let got = carol.drain(Duration::from_millis(500)).await;
    assert!(got.iter().all(|e| e["type"] != "mention"), "{got:?}");
}
