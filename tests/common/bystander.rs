//! The well-behaved client of issue 13's hostile battery: while an attack
//! runs, it posts every 200 ms and times each post's ack, so a test can
//! say what the attack cost everyone else (the bystander's p50 and p99)
//! and that nothing it was acked went missing.
//!
//! It needs only the server's address: it connects its own TCP socket,
//! from 127.0.0.1 or from another loopback address (127.0.0.2 and up are
//! other addresses on Linux, all on `lo`), so that per-address caps an
//! attacker fills on one address leave it alone.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rfc6455::proto::{Message, WsUrl};
use rfc6455::transport::{self, Config, WebSocket};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};

/// Between one ack and the next post: 5 posts a second, within the
/// chat's default rate limit (10 a second).
const INTERVAL: Duration = Duration::from_millis(200);

/// How long any answer may take before the bystander gives up: far beyond
/// the p99 bound, so that a slow server fails on the bound, with figures.
const PATIENCE: Duration = Duration::from_secs(20);

/// The p99 a bystander must stay under: generous, for a debug build on a
/// busy 2-core machine; the figures themselves are printed.
pub const P99_BOUND: Duration = Duration::from_secs(5);

/// A user posting in one room until told to stop.
pub struct Bystander {
    room: String,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Run>,
}

/// What a bystander did.
struct Run {
    ws: WebSocket<TcpStream>,
    latencies: Vec<Duration>,
    acked: Vec<(u64, String)>,
}

/// What a bystander saw: its ack latencies and what it was acked.
#[derive(Debug)]
pub struct Report {
    /// Posts acked.
    pub posts: usize,
    /// Median time from post to ack.
    pub p50: Duration,
    /// 99th percentile time from post to ack.
    pub p99: Duration,
    /// The slowest ack.
    pub max: Duration,
    /// Each acked post: its id in the room, and its text.
    pub acked: Vec<(u64, String)>,
}

impl Bystander {
    /// Connects from 127.0.0.1 as `bystander`, waits for `general`'s
    /// history, and starts posting there.
    pub async fn start(addr: SocketAddr) -> Bystander {
        Self::start_from(IpAddr::V4(Ipv4Addr::LOCALHOST), addr, "general").await
    }

    /// Connects from the loopback address `from`, joins `room` (besides
    /// `general`) and starts posting there.
    pub async fn start_from(from: IpAddr, addr: SocketAddr, room: &str) -> Bystander {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let url = WsUrl::parse(&format!("ws://{addr}/ws")).unwrap();
        let (mut ws, _) = transport::connect_with(stream, &url, Config::default())
            .await
            .expect("the bystander was not upgraded");
        send(&mut ws, json!({"type": "hello", "nick": "bystander"})).await;
        next_history(&mut ws, "general").await;
        if room != "general" {
            send(&mut ws, json!({"type": "join", "room": room})).await;
            next_history(&mut ws, room).await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let posting_in = room.to_owned();
        let task = tokio::spawn(async move {
            let mut run = Run {
                ws,
                latencies: Vec::new(),
                acked: Vec::new(),
            };
            let mut n = 0;
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                let cid = format!("b{n}");
                let text = format!("hello {n}");
                let sent = Instant::now();
                let post =
                    json!({"type": "msg", "room": posting_in, "text": text, "client_id": cid});
                send(&mut run.ws, post).await;
                loop {
                    let e = event(&mut run.ws).await;
                    assert_ne!(e["type"], "close", "the bystander was closed: {e}");
                    if e["type"] == "error" && e["client_id"] == cid {
                        panic!("the bystander's post was refused: {e}");
                    }
                    if e["type"] == "ack" && e["client_id"] == cid {
                        run.latencies.push(sent.elapsed());
                        run.acked.push((e["id"].as_u64().unwrap(), text));
                        break;
                    }
                }
                tokio::time::sleep(INTERVAL).await;
            }
            run
        });
        Bystander {
            room: room.to_owned(),
            stop,
            task,
        }
    }

    /// Stops it; checks it got acks throughout, fast enough (p99 under
    /// [`P99_BOUND`]); prints and returns its figures.
    pub async fn finish(self, what: &str) -> Report {
        self.stop(what).await.1
    }

    /// [`finish`](Self::finish), then reads its room's history back on
    /// its own connection: every post it was acked is there, with its id.
    pub async fn finish_and_reread(self, what: &str) -> Report {
        let room = self.room.clone();
        let (mut ws, report) = self.stop(what).await;
        let mut kept = std::collections::HashMap::new();
        let (Some(first), Some(last)) = (report.acked.first(), report.acked.last()) else {
            unreachable!("finish asserts at least 3 acks");
        };
        let (first, mut before) = (first.0, last.0 + 1);
        // Oldest first, at most 100 a page: page back to the first post.
        while before > first {
            send(
                &mut ws,
                json!({"type": "history", "room": room, "before": before, "limit": 100}),
            )
            .await;
            let page = next_history(&mut ws, &room).await;
            let messages = page["messages"].as_array().unwrap();
            for m in messages {
                kept.insert(
                    m["id"].as_u64().unwrap(),
                    m["text"].as_str().unwrap().to_owned(),
                );
            }
            match messages.first().and_then(|m| m["id"].as_u64()) {
                Some(oldest) if page["more"] == true => before = oldest,
                _ => break,
            }
        }
        let lost: Vec<_> = report
            .acked
            .iter()
            .filter(|(id, text)| kept.get(id) != Some(text))
            .collect();
        assert!(
            lost.is_empty(),
            "{what}: acked but not in history: {lost:?}"
        );
        report
    }

    async fn stop(self, what: &str) -> (WebSocket<TcpStream>, Report) {
        self.stop.store(true, Ordering::Relaxed);
        let Run {
            ws,
            mut latencies,
            acked,
        } = self.task.await.unwrap();
        assert!(
            latencies.len() >= 3,
            "{what}: only {} acks",
            latencies.len()
        );
        latencies.sort();
        let n = latencies.len();
        let report = Report {
            posts: n,
            p50: latencies[n / 2],
            p99: latencies[(n * 99 / 100).min(n - 1)],
            max: latencies[n - 1],
            acked,
        };
        println!(
            "{what}: bystander {} posts, ack p50 {:?} p99 {:?} max {:?}",
            report.posts, report.p50, report.p99, report.max
        );
        assert!(
            report.p99 < P99_BOUND,
            "{what}: bystander p99 {:?}",
            report.p99
        );
        (ws, report)
    }
}

async fn send(ws: &mut WebSocket<TcpStream>, v: Value) {
    ws.send(Message::text(v.to_string()))
        .await
        .expect("the bystander could not send");
}

/// The next JSON event ([`super::chat::event`]). Panics if the connection
/// fails, ends or stays silent for [`PATIENCE`].
async fn event(ws: &mut WebSocket<TcpStream>) -> Value {
    let e = super::chat::event(ws, PATIENCE)
        .await
        .expect("the bystander heard nothing for 20 s, or its connection ended");
    assert_ne!(
        e["type"], "transport_error",
        "the bystander's connection failed: {e}"
    );
    e
}

async fn next_history(ws: &mut WebSocket<TcpStream>, room: &str) -> Value {
    loop {
        let e = event(ws).await;
        assert_ne!(e["type"], "close", "the bystander was closed: {e}");
        if e["type"] == "history" && e["room"] == room {
            return e;
        }
    }
}
