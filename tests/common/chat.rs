//! A chat client for the tests (`docs/PROTOCOL.md`): JSON requests out,
//! JSON events in. The free functions work on any [`WebSocket`] (a raw
//! socket's, one upgraded from a chosen address); [`Client`] is the usual
//! connection to `ws://ADDR/ws`.

use std::net::SocketAddr;
use std::time::Duration;

use rfc6455::proto::Message;
use rfc6455::transport::{self, Config, MaybeTlsStream, WebSocket};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// The nicks of a `presence` or `members` list.
pub fn nicks(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// How long a test waits for an event it expects: generous, for a debug
/// build on a busy two-core machine; a test that fails waits this long.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The next event: a text frame's JSON object; a Close as
/// `{"type": "close", "code": …}`; a transport error as
/// `{"type": "transport_error", "error": …}`. Pings and pongs are skipped.
/// `None` when the connection has ended, or nothing came `within`.
pub async fn event<S>(ws: &mut WebSocket<S>, within: Duration) -> Option<Value>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.recv()).await.ok()?? {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Message::Close(frame)) => {
                return Some(json!({"type": "close", "code": frame.map(|f| f.code.as_u16())}));
            }
            Ok(_) => {}
            Err(e) => return Some(json!({"type": "transport_error", "error": e.to_string()})),
        }
    }
}

/// The first event `want` accepts, skipping others. Panics if the
/// connection ends first or none comes within [`PATIENCE`].
pub async fn next<S>(ws: &mut WebSocket<S>, want: impl Fn(&Value) -> bool) -> Value
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = event(ws, left)
            .await
            .expect("the connection ended, or the event did not come");
        if want(&e) {
            return e;
        }
    }
}

/// The next event of type `kind`, skipping others (see [`next`]).
pub async fn next_of<S>(ws: &mut WebSocket<S>, kind: &str) -> Value
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    next(ws, |e| e["type"] == kind).await
}

/// The code of the Close the server ends the connection with, reading
/// (and dropping) what comes before it for at most `within`; `None` if
/// the connection ends without one, or it does not come in time.
pub async fn close_code<S>(ws: &mut WebSocket<S>, within: Duration) -> Option<u64>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + within;
    while let Some(e) = event(ws, deadline.saturating_duration_since(Instant::now())).await {
        if e["type"] == "close" {
            return e["code"].as_u64();
        }
    }
    None
}

/// A `msg` request.
pub fn msg(room: &str, text: &str, client_id: &str) -> Value {
    json!({"type": "msg", "room": room, "text": text, "client_id": client_id})
}

/// A chat connection, over our own transport's client.
pub struct Client {
    /// The connection, for what the helpers do not cover.
    pub ws: WebSocket<MaybeTlsStream>,
}

impl Client {
    /// Upgrades at `ws://{addr}{path}`, says `hello` and waits for the
    /// `welcome`: the client, and the welcome.
    pub async fn connect(addr: SocketAddr, path: &str, hello: Value) -> (Client, Value) {
        let (ws, _) = transport::connect(&format!("ws://{addr}{path}"), Config::default())
            .await
            .unwrap();
        let mut c = Client { ws };
        c.send(hello).await;
        let welcome = c.next(|e| e["type"] == "welcome").await;
        (c, welcome)
    }

    /// Upgrades at `ws://{addr}/ws` and says `hello`, waiting for
    /// nothing: for a `hello` that may get an `error` or a close.
    pub async fn greet(addr: SocketAddr, hello: Value) -> Client {
        let (ws, _) = transport::connect(&format!("ws://{addr}/ws"), Config::default())
            .await
            .unwrap();
        let mut c = Client { ws };
        c.send(hello).await;
        c
    }

    /// Sends a request; panics if it cannot.
    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// Sends a `msg`, and waits for nothing.
    pub async fn send_msg(&mut self, room: &str, text: &str, client_id: &str) {
        self.send(msg(room, text, client_id)).await;
    }

    /// See [`event`].
    pub async fn event(&mut self, within: Duration) -> Option<Value> {
        event(&mut self.ws, within).await
    }

    /// See [`next`].
    pub async fn next(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        next(&mut self.ws, want).await
    }

    /// See [`next_of`].
    pub async fn next_of(&mut self, kind: &str) -> Value {
        next_of(&mut self.ws, kind).await
    }

    /// See [`close_code`].
    pub async fn close_code(&mut self, within: Duration) -> Option<u64> {
        close_code(&mut self.ws, within).await
    }

    /// Every text event that arrives within `window`.
    pub async fn drain(&mut self, window: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        let deadline = Instant::now() + window;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, self.ws.recv()).await {
            if let Message::Text(t) = m {
                out.push(serde_json::from_str(t.as_str()).unwrap());
            }
        }
        out
    }

    /// Posts, and waits for the answer to this `client_id`: its `ack` or
    /// its `error`. `None` if the post could not be sent, or the
    /// connection ended (or fell silent for [`PATIENCE`]) first.
    pub async fn post(&mut self, room: &str, text: &str, client_id: &str) -> Option<Value> {
        let request = msg(room, text, client_id).to_string();
        if self.ws.send(Message::text(request)).await.is_err() {
            return None;
        }
        loop {
            let e = self.event(PATIENCE).await?;
            if (e["type"] == "ack" || e["type"] == "error") && e["client_id"] == client_id {
                return Some(e);
            }
        }
    }

    /// Sends `request`, which carries a `client_id`, and waits for the
    /// answer to it: its `ack` or its `error` (skipping other events).
    pub async fn answer(&mut self, request: Value) -> Value {
        let client_id = request["client_id"].clone();
        self.send(request).await;
        self.next(|e| (e["type"] == "ack" || e["type"] == "error") && e["client_id"] == client_id)
            .await
    }

    /// Posts, and returns the events that arrived before its ack (those
    /// stored before it, in the room: the fan-out keeps id order); panics
    /// if it is refused or not answered.
    pub async fn before_ack(&mut self, room: &str, text: &str, client_id: &str) -> Vec<Value> {
        self.send(msg(room, text, client_id)).await;
        let mut seen = Vec::new();
        loop {
            let e = self.event(PATIENCE).await.expect("the ack");
            if e["client_id"] == client_id {
                assert_eq!(e["type"], "ack", "refused: {e}");
                return seen;
            }
            seen.push(e);
        }
    }

    /// Posts, and returns the id it is acked with; panics if it is not.
    pub async fn acked(&mut self, room: &str, text: &str, client_id: &str) -> u64 {
        let answer = self.post(room, text, client_id).await;
        let answer = answer.expect("the connection ended before the ack");
        assert_eq!(answer["type"], "ack", "refused: {answer}");
        answer["id"].as_u64().unwrap()
    }

    /// Closes (the close handshake, §7.1.2), whatever comes of it.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// An HS256 token signed with `secret`, as another service would issue
/// it for `--jwt-secret`: `name` is the nick, expiring `exp_in` seconds
/// from now (negative: expired).
pub fn token(secret: &str, name: &str, exp_in: i64) -> String {
    signed(
        secret,
        json!({"sub": "id-42", "name": name, "exp": now_s() + exp_in}),
    )
}

/// A token for `name`, valid for ten minutes, with the admin claim
/// (`"admin": true`) if `admin` (issue 17's moderation tests).
pub fn token_as(secret: &str, name: &str, admin: bool) -> String {
    signed(
        secret,
        json!({"sub": name, "name": name, "exp": now_s() + 600, "admin": admin}),
    )
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn signed(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Review finding 2's moderation history of `room`, sent by `owner` (its
/// owner) one by one, each awaited: 14 events whose rules in force are
/// bob muted for an hour, eve banned, topic "second", slow mode 45 s, fay
/// a moderator and cat muted for one second (dan's ban and cat's role
/// lifted, bob's first mute replaced).
pub async fn rule_history(owner: &mut Client, room: &str) {
    let steps = [
        json!({"type": "mute", "room": room, "user": "bob"}),
        json!({"type": "unmute", "room": room, "user": "bob"}),
        json!({"type": "mute", "room": room, "user": "bob", "minutes": 60}),
        json!({"type": "ban", "room": room, "user": "eve"}),
        json!({"type": "ban", "room": room, "user": "dan"}),
        json!({"type": "unban", "room": room, "user": "dan"}),
        json!({"type": "topic", "room": room, "topic": "first"}),
        json!({"type": "topic", "room": room, "topic": "second"}),
        json!({"type": "slow", "room": room, "seconds": 30}),
        json!({"type": "slow", "room": room, "seconds": 45}),
        json!({"type": "role", "room": room, "user": "cat", "role": "moderator"}),
        json!({"type": "role", "room": room, "user": "cat", "role": "member"}),
        json!({"type": "role", "room": room, "user": "fay", "role": "moderator"}),
        json!({"type": "mute", "room": room, "user": "cat", "seconds": 1}),
    ];
    for step in steps {
        let action = step["type"].clone();
        owner.send(step).await;
        owner
            .next(|e| e["type"] == "moderation" && e["action"] == action)
            .await;
    }
}
