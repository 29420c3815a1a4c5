//! Issue 22's wire panel, server side, over a real socket: a client that
//! masks with keys of its own choosing (`common::masked_with`) turns the
//! recording on, and reads back, in `wire` events, its own frames as the
//! server parsed them (the key it chose, the length's encoding) and the
//! server's frames as it sent them; turned off, nothing more is recorded.

mod common;

use std::time::Duration;

use common::server::{ChatServer, http_get, metric};
use common::{masked_with, read_frame, read_head, request_for};
use rfc6455::chat::ChatConfig;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A raw client: frames written and read by hand (RFC 6455 §5.2).
struct Raw {
    s: TcpStream,
}

impl Raw {
    async fn send(&mut self, key: [u8; 4], v: &Value) {
        let frame = masked_with(0x81, key, v.to_string().as_bytes());
        self.s.write_all(&frame).await.unwrap();
    }

    /// The next text frame's JSON (control frames skipped).
    async fn event(&mut self) -> Value {
        loop {
            let (b0, payload) = read_frame(&mut self.s).await;
            if b0 & 0x0f == 0x1 {
                return serde_json::from_slice(&payload).unwrap();
            }
        }
    }

    async fn next_of(&mut self, kind: &str) -> Value {
        tokio::time::timeout(common::chat::PATIENCE, async {
            loop {
                let e = self.event().await;
                if e["type"] == kind {
                    return e;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {kind} event"))
    }

    /// Frames of `wire` events until `want` accepts one; every frame seen.
    async fn wire_until(&mut self, want: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let e = self.next_of("wire").await;
            assert_eq!(e["on"], true);
            let frames = e["frames"].as_array().unwrap().clone();
            let done = frames.iter().any(&want);
            seen.extend(frames);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn the_wire_panel_sees_the_frames_of_its_own_connection() {
    let dir = common::temp_dir("chat_wire", "frames");
    let server = ChatServer::start(ChatConfig::new(dir.join("chat.db"))).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(request_for("/ws").as_bytes()).await.unwrap();
    assert!(read_head(&mut s).await.starts_with("HTTP/1.1 101 "));
    let mut c = Raw { s };
    c.send([1, 1, 1, 1], &json!({"type": "hello", "nick": "wendy"}))
        .await;
    c.next_of("history").await;

    // Bad input: a clear error, and the connection stays open.
    c.send([2, 2, 2, 2], &json!({"type": "wire", "on": "yes"}))
        .await;
    let refused = c.next_of("error").await;
    assert_eq!(refused["code"], "invalid_field", "{refused}");

    c.send([3, 3, 3, 3], &json!({"type": "wire", "on": true}))
        .await;
    let ack = c.next_of("wire").await;
    assert_eq!(
        (ack["on"].clone(), ack["frames"].clone()),
        (json!(true), json!([]))
    );
    assert_eq!(ack["keep"], 256);
    let metrics = http_get(server.addr, "/metrics").await;
    assert_eq!(metric(&metrics, "chat_wire_connections"), 1);

    // A message of 200 bytes: its frame needs a 16-bit length (§5.2).
    let text = "w".repeat(200);
    let key = [0x37, 0xfa, 0x21, 0x3d];
    c.send(
        key,
        &json!({"type": "msg", "room": "general", "text": text, "client_id": "c1"}),
    )
    .await;
    let frames = c
        .wire_until(|f| f["dir"] == "out" && f["payload"].as_str().unwrap().contains("\"c1\""))
        .await;
    let sent = frames
        .iter()
        .find(|f| f["dir"] == "in" && f["payload"].as_str().unwrap().contains("\"c1\""))
        .expect("the client's msg frame");
    assert_eq!(sent["key"], "37fa213d", "the key we masked with");
    assert_eq!(sent["mask"], true);
    assert_eq!(sent["op"], "text");
    assert_eq!(sent["fin"], true);
    assert_eq!(sent["len_encoding"], "16-bit");
    assert_eq!(sent["header_len"], 8, "2, 2 of length, 4 of key");
    let len = sent["len"].as_u64().unwrap();
    assert!(len > 200, "{len}");
    // Cut to the 256 bytes kept, out of the whole payload.
    assert_eq!(sent["kept"].as_u64().unwrap(), len.min(256));
    assert_eq!(sent["total"].as_u64().unwrap(), len);
    let echo = frames
        .iter()
        .find(|f| f["dir"] == "out" && f["payload"].as_str().unwrap().contains("\"c1\""))
        .unwrap();
    assert_eq!(echo["mask"], false, "a server never masks (§5.1)");
    assert!(echo.get("key").is_none());
    // The inspector's own frames are not among them.
    assert!(frames.iter().all(|f| {
        !f["payload"]
            .as_str()
            .unwrap()
            .starts_with("{\"type\":\"wire\"")
    }));

    // A ping, and the pong that answers it (§5.5.2).
    let ping = masked_with(0x89, [9, 8, 7, 6], b"hb");
    c.s.write_all(&ping).await.unwrap();
    let frames = c.wire_until(|f| f["op"] == "pong").await;
    let ping = frames.iter().find(|f| f["op"] == "ping").expect("the ping");
    assert_eq!(
        (ping["dir"].clone(), ping["key"].clone()),
        (json!("in"), json!("09080706"))
    );
    let pong = frames.iter().find(|f| f["op"] == "pong").unwrap();
    assert_eq!(
        (pong["dir"].clone(), pong["payload"].clone()),
        (json!("out"), json!("hb"))
    );

    // Off: the ring goes, and nothing more is recorded or sent.
    c.send([4, 4, 4, 4], &json!({"type": "wire", "on": false}))
        .await;
    let off = c.next_of("wire").await;
    assert_eq!(off["on"], false);
    let metrics = http_get(server.addr, "/metrics").await;
    assert_eq!(metric(&metrics, "chat_wire_connections"), 0);
    c.send(
        [5, 5, 5, 5],
        &json!({"type": "msg", "room": "general", "text": "after", "client_id": "c2"}),
    )
    .await;
    let quiet = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            let e = c.event().await;
            assert_ne!(e["type"], "wire", "recording is off: {e}");
        }
    })
    .await;
    assert!(
        quiet.is_err(),
        "the connection stayed open and sent no wire event"
    );
    server.stop().await;
}
