//! One connection's life: `hello`, the rooms' rosters and history (or the
//! replay of what it missed), then requests in and events out until it
//! closes.

use std::collections::{BTreeMap, VecDeque};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{Instrument, debug};

use crate::proto::{CloseCode, CloseFrame, Message};
use crate::transport::WebSocket;

use super::RateLimit;
use super::hub::{Client, Hub};
use super::protocol::{self, ClientMsg, DEFAULT_HISTORY, DEFAULT_ROOM, Refusal, ServerMsg};

/// Outbox frames move to the socket while less than this is waiting to be
/// written; the rest waits in the outbox, where its bound applies.
const SOCKET_HIGH_WATER: usize = 64 * 1024;
/// How long a client has to say `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The most messages replayed on resume; a longer absence gets the newest
/// ones, and pages back through `history` for the rest.
const MAX_REPLAY: u32 = 1000;
/// Refusals within a minute that close the connection with 1008.
const ABUSE_LIMIT: usize = 100;

/// What to do about authentication.
pub enum Auth {
    /// Clients choose their nicks.
    Anonymous,
    /// A JWT (HS256) is required; its claims give the nick.
    Jwt(jsonwebtoken::DecodingKey),
}

/// Runs a session on an upgraded connection (over TCP or TLS) until it
/// ends.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    hub: Arc<Hub>,
    auth: Arc<Auth>,
    rate: Option<RateLimit>,
    query_token: Option<String>,
) {
    let Some(hello) = wait_for_hello(&mut ws).await else {
        return;
    };
    let ClientMsg::Hello {
        nick,
        token,
        session,
        resume,
    } = hello
    else {
        return;
    };
    let nick = match &*auth {
        Auth::Anonymous => nick,
        Auth::Jwt(key) => {
            let checked = match token.or(query_token) {
                Some(t) => verify(key, &t),
                None => Err("a token is required"),
            };
            match checked {
                Ok(nick) => Some(nick),
                Err(why) => {
                    let code = CloseCode::try_from(4001).unwrap_or(CloseCode::POLICY_VIOLATION);
                    let _ = ws.close(Some(CloseFrame::new(code, why))).await;
                    return;
                }
            }
        }
    };
    let remote_reclaim = hub.claim_remote(nick.as_deref(), session.as_deref()).await;
    let client = hub.register(nick.as_deref(), session.as_deref(), remote_reclaim);
    hub.metrics.connections.inc();
    hub.metrics.connections_total.inc();
    if ws.connection().deflate_enabled() {
        hub.metrics.connections_deflate.inc();
    }
    let span = tracing::debug_span!("chat", user = %client.nick, conn = client.id);
    let mut session = Session {
        ws,
        hub: hub.clone(),
        client: client.clone(),
        rate,
        bucket: rate.map_or(0.0, |r| r.burst),
        last_refill: Instant::now(),
        refusals: VecDeque::new(),
    };
    async {
        session.start(resume).await;
        session.serve().await;
    }
    .instrument(span)
    .await;
    hub.unregister(&client);
    hub.metrics.connections.dec();
}

/// Reads frames until a `hello`; anything else gets `hello_required`.
async fn wait_for_hello<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
) -> Option<ClientMsg> {
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    loop {
        let event = tokio::time::timeout_at(deadline, ws.recv()).await;
        match event {
            Err(_) => {
                let _ = ws
                    .close(Some(CloseFrame::new(
                        CloseCode::POLICY_VIOLATION,
                        "hello expected",
                    )))
                    .await;
                return None;
            }
            Ok(None | Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Text(t)))) => match protocol::parse(t.as_str()) {
                Ok(hello @ ClientMsg::Hello { .. }) => return Some(hello),
                Ok(_) => send_error(ws, &Refusal::new("hello_required", "say hello first"), None),
                Err(refusal) => send_error(ws, &refusal, None),
            },
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn send_error<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    refusal: &Refusal,
    client_id: Option<&str>,
) {
    let json = ServerMsg::Error {
        code: refusal.code,
        message: &refusal.message,
        client_id,
    }
    .to_json();
    let _ = ws.queue(Message::text(json));
}

/// Checks an HS256 token; its `name` claim (or `sub`) is the nick.
fn verify(key: &jsonwebtoken::DecodingKey, token: &str) -> Result<String, &'static str> {
    #[derive(serde::Deserialize)]
    struct Claims {
        sub: Option<String>,
        name: Option<String>,
    }
    let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    let data =
        jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired",
            _ => "invalid token",
        })?;
    let nick = data
        .claims
        .name
        .or(data.claims.sub)
        .ok_or("token names no user")?;
    protocol::check_nick(&nick).map_err(|_| "token's user name is not a valid nick")?;
    Ok(nick)
}

struct Session<S> {
    ws: WebSocket<S>,
    hub: Arc<Hub>,
    client: Arc<Client>,
    rate: Option<RateLimit>,
    bucket: f64,
    last_refill: Instant,
    refusals: VecDeque<Instant>,
}

enum Next {
    Event(Option<Result<Message, crate::transport::Error>>),
    Outbox,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn queue(&mut self, msg: &ServerMsg<'_>) {
        let _ = self.ws.queue(Message::text(msg.to_json()));
        self.hub.metrics.messages_out.inc();
    }

    fn refuse(&mut self, refusal: &Refusal, client_id: Option<&str>) {
        self.hub.metrics.errors.inc();
        send_error(&mut self.ws, refusal, client_id);
    }

    /// The message store could not be read while joining: what the client
    /// missed cannot be sent now, and sending later messages would leave a
    /// hole. Close with 1013 (Try Again Later, from the close code registry
    /// of RFC 6455 §11.7);
    /// the client reconnects and resumes from what it has.
    fn unavailable(&mut self, refusal: &Refusal) {
        self.refuse(refusal, None);
        self.client.outbox.close(CloseFrame::new(
            CloseCode::TRY_AGAIN_LATER,
            "message store unreachable: reconnect and resume",
        ));
    }

    /// `welcome`, then each room's roster and its history or replay.
    async fn start(&mut self, resume: Option<BTreeMap<String, u64>>) {
        let rooms: Vec<(String, Option<u64>)> = match resume {
            Some(r) if !r.is_empty() => r
                .into_iter()
                .map(|(room, seen)| (room, Some(seen)))
                .collect(),
            _ => vec![(DEFAULT_ROOM.to_owned(), None)],
        };
        let names: Vec<String> = rooms.iter().map(|(r, _)| r.clone()).collect();
        let client = self.client.clone();
        self.queue(&ServerMsg::Welcome {
            user: &client.nick,
            session: &client.session,
            rooms: &names,
        });
        for (room, seen) in rooms {
            self.join(&room, seen).await;
        }
    }

    /// Joins a room and sends its roster, then either the replay of what
    /// came after `seen` or the latest page of history. Live messages that
    /// arrive meanwhile wait in the outbox, so they follow in order.
    async fn join(&mut self, room: &str, seen: Option<u64>) {
        if let Err(refusal) = self.hub.prepare_room(room).await {
            return self.unavailable(&refusal);
        }
        let (roster, last) = match self.hub.join(&self.client, room) {
            Ok(joined) => joined,
            Err(refusal) => return self.refuse(&refusal, None),
        };
        self.queue(&ServerMsg::Presence {
            room,
            joined: &roster,
            left: &[],
        });
        match seen {
            Some(seen) => match self.hub.range(room, seen, last, MAX_REPLAY).await {
                Ok(missed) => {
                    for m in missed {
                        self.queue(&ServerMsg::Msg(&m));
                    }
                }
                Err(refusal) => self.unavailable(&refusal),
            },
            None => {
                let (messages, more) = match self.hub.history(room, last + 1, DEFAULT_HISTORY).await
                {
                    Ok(page) => page,
                    Err(refusal) => return self.unavailable(&refusal),
                };
                self.queue(&ServerMsg::History {
                    room,
                    messages: &messages,
                    more,
                });
            }
        }
    }

    /// Requests in, events out, until the connection ends.
    async fn serve(&mut self) {
        loop {
            let next = {
                let ws = &mut self.ws;
                let outbox = &self.client.outbox;
                poll_fn(|cx| {
                    if ws.pending_output_len() < SOCKET_HIGH_WATER && outbox.poll_ready(cx) {
                        return Poll::Ready(Next::Outbox);
                    }
                    match ws.poll_recv(cx) {
                        Poll::Ready(event) => Poll::Ready(Next::Event(event)),
                        // Writing may have made room for the outbox.
                        Poll::Pending
                            if ws.pending_output_len() < SOCKET_HIGH_WATER
                                && outbox.poll_ready(cx) =>
                        {
                            Poll::Ready(Next::Outbox)
                        }
                        Poll::Pending => Poll::Pending,
                    }
                })
                .await
            };
            match next {
                Next::Outbox => {
                    let budget = SOCKET_HIGH_WATER.saturating_sub(self.ws.pending_output_len());
                    let (frames, close) = self.client.outbox.take(budget);
                    for frame in &frames {
                        let _ = self.ws.queue_prepared(frame);
                    }
                    if let Some(frame) = close
                        && !self.ws.connection().close_sent()
                    {
                        debug!(code = %frame.code, "closing");
                        let _ = self.ws.queue(Message::Close(Some(frame)));
                    }
                }
                Next::Event(Some(Ok(Message::Text(text)))) => {
                    self.hub.metrics.messages_in.inc();
                    self.handle(text.as_str()).await;
                }
                Next::Event(Some(Ok(Message::Binary(_)))) => {
                    self.hub.metrics.messages_in.inc();
                    self.refuse(
                        &Refusal::new("bad_json", "binary frames are not part of the protocol"),
                        None,
                    );
                }
                Next::Event(Some(Ok(_))) => {}
                Next::Event(Some(Err(e))) => {
                    debug!(error = %e, "connection ended");
                    return;
                }
                Next::Event(None) => return,
            }
        }
    }

    /// Takes a token from the bucket; false when the client is over its rate.
    fn allow(&mut self) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_refill).as_secs_f64();
        self.last_refill = now;
        self.bucket = (self.bucket + elapsed * rate.per_second).min(rate.burst);
        if self.bucket >= 1.0 {
            self.bucket -= 1.0;
            true
        } else {
            false
        }
    }

    async fn handle(&mut self, text: &str) {
        if self.ws.connection().close_sent() {
            return;
        }
        if !self.allow() {
            let now = Instant::now();
            self.refusals.push_back(now);
            while self
                .refusals
                .front()
                .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
            {
                self.refusals.pop_front();
            }
            if self.refusals.len() >= ABUSE_LIMIT {
                let _ = self.ws.queue(Message::Close(Some(CloseFrame::new(
                    CloseCode::POLICY_VIOLATION,
                    "too many requests",
                ))));
                return;
            }
            return self.refuse(&Refusal::new("rate_limited", "slow down"), None);
        }
        let msg = match protocol::parse(text) {
            Ok(msg) => msg,
            Err(refusal) => return self.refuse(&refusal, None),
        };
        match msg {
            ClientMsg::Hello { .. } => self.refuse(
                &Refusal::new("invalid_field", "hello was already said"),
                None,
            ),
            ClientMsg::Join { room } => self.join(&room, None).await,
            ClientMsg::Leave { room } => self.hub.leave(&self.client, &room),
            ClientMsg::Msg {
                room,
                text,
                client_id,
            } => {
                if let Err(refusal) = self.hub.post(&self.client, &room, &text, &client_id) {
                    self.refuse(&refusal, Some(&client_id));
                }
            }
            ClientMsg::Dm {
                to,
                text,
                client_id,
            } => {
                self.hub.refresh_online(&to).await;
                if let Err(refusal) = self.hub.dm(&self.client, &to, &text, &client_id) {
                    self.refuse(&refusal, Some(&client_id));
                }
            }
            ClientMsg::Typing { room } => {
                if let Err(refusal) = self.hub.typing(&self.client, &room) {
                    self.refuse(&refusal, None);
                }
            }
            ClientMsg::History {
                room,
                before,
                limit,
            } => {
                if !self.client.in_room(&room) {
                    return self.refuse(
                        &Refusal::new("not_in_room", format!("join {room} first")),
                        None,
                    );
                }
                let before = before.unwrap_or(u64::MAX);
                let limit = limit.unwrap_or(DEFAULT_HISTORY);
                let (messages, more) = match self.hub.history(&room, before, limit).await {
                    Ok(page) => page,
                    Err(refusal) => return self.refuse(&refusal, None),
                };
                self.queue(&ServerMsg::History {
                    room: &room,
                    messages: &messages,
                    more,
                });
            }
        }
    }
}
