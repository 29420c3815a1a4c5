//! Measures the chat server's fan-out: N subscribers in `general`, one
//! sender posting M messages as fast as acks come back; counts deliveries
//! per second and checks that every subscriber got every message in order.
//!
//! ```sh
//! rfc6455 chat --listen 127.0.0.1:3999 --db /tmp/fanout.db --no-rate-limit --max-per-ip 0 --max-handshakes-per-ip 0 &
//! cargo run --release --example chat_fanout -- 127.0.0.1:3999 500 2000
//! ```
//! Bounded: N connections, M messages, a 60 s limit; loopback only.

use std::time::{Duration, Instant};

use rfc6455::proto::Message;
use rfc6455::transport::{self, Config};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:3999".into());
    let subscribers: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(500);
    let messages: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let url = format!("ws://{addr}/ws");
    let mut tasks = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subscribers);
    for i in 0..subscribers {
        let url = url.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = transport::connect(&url, Config::default())
                .await
                .expect("connect");
            ws.send(Message::text(format!(
                r#"{{"type":"hello","nick":"sub{i}"}}"#
            )))
            .await
            .unwrap();
            let mut next_expected = None;
            let mut got = 0u64;
            let mut ready = Some(ready);
            while let Some(Ok(m)) = ws.recv().await {
                let Message::Text(t) = m else { continue };
                let t = t.as_str();
                if t.starts_with(r#"{"type":"history""#) {
                    if let Some(r) = ready.take() {
                        r.send(()).await.unwrap();
                    }
                } else if t.starts_with(r#"{"type":"msg""#) && t.contains(r#""from":"sender""#) {
                    let id: u64 = t
                        .split(r#""id":"#)
                        .nth(1)
                        .and_then(|s| s.split(',').next())
                        .and_then(|s| s.parse().ok())
                        .unwrap();
                    if let Some(n) = next_expected {
                        assert_eq!(id, n, "out of order or lost");
                    }
                    next_expected = Some(id + 1);
                    got += 1;
                    if got == messages {
                        return got;
                    }
                }
            }
            got
        }));
    }
    drop(ready_tx);
    for _ in 0..subscribers {
        ready_rx.recv().await.expect("a subscriber failed to join");
    }
    let (mut sender, _) = transport::connect(&url, Config::default()).await.unwrap();
    sender
        .send(Message::text(r#"{"type":"hello","nick":"sender"}"#))
        .await
        .unwrap();
    let started = Instant::now();
    let payload = "x".repeat(100);
    for i in 0..messages {
        sender
            .send(Message::text(format!(
                r#"{{"type":"msg","room":"general","text":"{payload}","client_id":"{i}"}}"#
            )))
            .await
            .unwrap();
        // One message in flight: wait for its ack.
        loop {
            match sender.recv().await {
                Some(Ok(Message::Text(t))) if t.as_str().starts_with(r#"{"type":"ack""#) => break,
                Some(Ok(_)) => {}
                other => panic!("sender: {other:?}"),
            }
        }
    }
    let mut delivered = 0;
    for t in tasks {
        delivered += tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("subscribers stalled")
            .unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{subscribers} subscribers x {messages} messages: {delivered} deliveries in {secs:.2} s = {:.0} deliveries/s, none lost or reordered",
        delivered as f64 / secs
    );
}
