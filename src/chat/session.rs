//! One connection's life: `hello`, the rooms' rosters and history (or the
//! replay of what it missed), then requests in and events out until it
//! closes.
//!
//! # What one client can cost the server
//!
//! Every request is paid for from a token bucket ([`Limiter`]) before it is
//! parsed, binary frames and requests before `hello` included, and every
//! refusal counts towards the abuse limit that closes the connection with
//! 1008. Every byte the session sends after `hello` goes through the
//! client's bounded [`Outbox`](super::hub::Outbox), replies included, and
//! from there to the socket only while the socket's own buffer is under
//! [`SOCKET_HIGH_WATER`]. The transport is configured to stop reading
//! while its buffer is over that same mark, so a client that does not read
//! stops being read: its requests wait in its own TCP buffers, not in our
//! memory. Replies themselves are bounded: a history page or a resume
//! replay holds at most [`MAX_REPLY`] bytes (a longer replay says so with a
//! `gap`, and the client pages back with `history`).

use std::collections::{BTreeMap, VecDeque};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{Instrument, debug};

use crate::proto::{CloseCode, CloseFrame, Message, PreparedFrame};
use crate::transport::WebSocket;

use super::RateLimit;
use super::accounts::Accounts;
use super::backend::Conversation;
use super::hub::{self, Client, Hub, JoinError, Standing, slow_close};
use super::protocol::{
    self, ChatMessage, ClientMsg, DEFAULT_HISTORY, DEFAULT_ROOM, ErrorCode, MAX_MEMBERS, MAX_ROOMS,
    Refusal, ServerMsg,
};

mod convs;
mod identify;
mod moderation;
mod wire;

use identify::Identity;

/// Outbox frames move to the socket while less than this is waiting to be
/// written; the rest waits in the outbox, where its bound applies. The
/// transport stops reading requests while more than this waits
/// (`transport::Config::write_buffer_limit`).
pub const SOCKET_HIGH_WATER: usize = 64 * 1024;
/// How long a client has to say `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The most messages replayed for one room on resume.
const MAX_REPLAY: u32 = 1000;
/// The most bytes of one reply's messages: a `history` page, or one room's
/// resume replay. A quarter of the default outbox, so that a reply always
/// fits beside the events that arrive meanwhile; 256 KiB is 60 messages
/// of the longest text, thousands of ordinary ones.
pub const MAX_REPLY: usize = 256 * 1024;
/// How long a join waits for the outbox to drain to half before it gives
/// up on a client that does not read (1013, as for any slow consumer).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Refusals within a minute that close the connection with 1008.
const ABUSE_LIMIT: usize = 100;

/// What to do about authentication (`session/identify.rs` has the
/// table of what each `hello` gets).
#[derive(Default)]
pub struct Auth {
    /// `--jwt-secret`: HS256 tokens signed by someone else, whose claims
    /// give the nick; with it, every `hello` needs a token.
    pub external: Option<jsonwebtoken::DecodingKey>,
    /// The server's own accounts; `None` with `--accounts off`.
    pub accounts: Option<Arc<Accounts>>,
}

/// A connection's token bucket and its record of refusals.
///
/// Each request costs a token: `hello` one per room it joins (it may run
/// the bucket into debt, paid back before the next request), anything else
/// one, including binary frames and requests refused before `hello`.
#[derive(Debug)]
pub struct Limiter {
    rate: Option<RateLimit>,
    bucket: f64,
    last_refill: Instant,
    refusals: VecDeque<Instant>,
}

impl Limiter {
    /// A full bucket; `None` lifts the limit.
    pub fn new(rate: Option<RateLimit>) -> Self {
        Self {
            rate,
            bucket: rate.map_or(0.0, |r| r.burst),
            last_refill: Instant::now(),
            refusals: VecDeque::new(),
        }
    }

    fn refill(&mut self) -> Option<RateLimit> {
        let rate = self.rate?;
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_refill).as_secs_f64();
        self.last_refill = now;
        self.bucket = (self.bucket + elapsed * rate.per_second).min(rate.burst);
        Some(rate)
    }

    /// Takes a token; false when the client is over its rate.
    pub fn allow(&mut self) -> bool {
        if self.refill().is_none() {
            return true;
        }
        if self.bucket >= 1.0 {
            self.bucket -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes `cost` more tokens, into debt if need be.
    pub fn charge(&mut self, cost: f64) {
        if self.refill().is_some() {
            self.bucket -= cost;
        }
    }

    /// Records a refusal; true when the client has had [`ABUSE_LIMIT`] of
    /// them within a minute and should be closed with 1008.
    pub fn refused(&mut self) -> bool {
        let now = Instant::now();
        self.refusals.push_back(now);
        while self
            .refusals
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.refusals.pop_front();
        }
        self.refusals.len() >= ABUSE_LIMIT
    }
}

fn abuse_close() -> CloseFrame {
    CloseFrame::new(CloseCode::POLICY_VIOLATION, "too many refused requests")
}

/// Runs a session on an upgraded connection (over TCP or TLS) until it
/// ends.
///
/// The connection's task holds this future for the connection's whole
/// life, so what runs once (waiting for `hello`, checking it, the joins
/// and replays of `start`) and what is rare (a join, a history page, a
/// look-up for a DM) is boxed, and freed when done: an idle member's
/// future is then little more than its [`WebSocket`] (its size is
/// asserted in `tests/chat_idle_memory.rs`). The [`WebSocket`] comes
/// boxed for the same reason: an async fn keeps its arguments in its
/// future apart from the locals they are moved into, so a `WebSocket`
/// passed by value would be held twice, here and in the [`Session`].
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: Box<WebSocket<S>>,
    hub: Arc<Hub>,
    auth: Arc<Auth>,
    rate: Option<RateLimit>,
    query_token: Option<String>,
) {
    let mut limiter = Limiter::new(rate);
    // Each box is made in a statement of its own: a temporary lives to
    // the end of its statement, so `Box::pin(f()).await` would keep room
    // for the unboxed `f()` in this future after all.
    let greeting = Box::pin(greet(&mut ws, &mut limiter, &hub, &auth, query_token));
    let greeted = greeting.await;
    let Some((client, resume)) = greeted else {
        return;
    };
    hub.metrics.connections.inc();
    hub.metrics.connections_total.inc();
    let deflate = ws.connection().deflate_enabled();
    if deflate {
        hub.metrics.connections_deflate.inc();
    }
    let span = tracing::debug_span!("chat", user = %client.nick, conn = client.id);
    let mut session = Session {
        ws,
        hub: hub.clone(),
        client: client.clone(),
        limiter,
        deflate,
    };
    async {
        let starting = Box::pin(session.start(resume));
        starting.await;
        session.serve().await;
    }
    .instrument(span)
    .await;
    session.wire_end();
    // The session's client, which a rename may have replaced.
    hub.unregister(&session.client);
    hub.metrics.connections.dec();
}

/// The session's opening: its `hello`, checked (the token too, with
/// authentication), and the client registered under its nick; then the
/// rooms to resume, if it named any. `None`: the connection ended, or
/// was closed for its `hello`.
async fn greet<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    limiter: &mut Limiter,
    hub: &Hub,
    auth: &Auth,
    query_token: Option<String>,
) -> Option<(Arc<Client>, Option<BTreeMap<String, u64>>)> {
    let (nick, session, standing, resume) = loop {
        let ClientMsg::Hello {
            nick,
            token,
            session,
            resume,
        } = wait_for_hello(ws, limiter, hub).await?
        else {
            return None;
        };
        let token = token.or_else(|| query_token.clone());
        match identify::identify(auth, hub, nick, token, session).await {
            Identity::Admit {
                nick,
                session,
                standing,
            } => break (nick, session, standing, resume),
            // Another `hello` may follow (a reserved nick, say).
            Identity::Retry(refusal) => {
                hub.metrics.errors.inc();
                let _ = ws.queue(Message::text(error_json(&refusal, None)));
                if limiter.refused() {
                    let _ = ws.close(Some(abuse_close())).await;
                    return None;
                }
            }
            Identity::Close {
                code,
                reason,
                error,
            } => {
                if let Some(refusal) = error {
                    hub.metrics.errors.inc();
                    let _ = ws.queue(Message::text(error_json(&refusal, None)));
                }
                let code = CloseCode::try_from(code).unwrap_or(CloseCode::POLICY_VIOLATION);
                let _ = ws.close(Some(CloseFrame::new(code, reason))).await;
                return None;
            }
        }
    };
    // A guest's secret may prove it owns a nick held on another server;
    // a token's user owns its nick anyway.
    let remote_reclaim = match standing {
        Standing::Guest => hub.claim_remote(nick.as_deref(), session.as_deref()).await,
        Standing::Verified { .. } => false,
    };
    match identify::admit(
        auth,
        hub,
        nick.as_deref(),
        session.as_deref(),
        remote_reclaim,
        standing,
    )
    .await
    {
        Ok(client) => Some((client, resume)),
        Err(refusal) => {
            hub.metrics.errors.inc();
            let _ = ws.queue(Message::text(error_json(&refusal, None)));
            // Issue 17: a nick banned from the server says no more than
            // this (4004); a store that cannot say whether it is, 1013.
            let (code, reason) = match refusal.code {
                ErrorCode::Banned => (hub::BANNED_CLOSE, "banned"),
                ErrorCode::Unavailable => (1013, "try again later"),
                ErrorCode::TooManyConnections => (4002, "too many connections"),
                _ => (4002, "no nick to give: ask for another"),
            };
            let code = CloseCode::try_from(code).unwrap_or(CloseCode::POLICY_VIOLATION);
            let _ = ws.close(Some(CloseFrame::new(code, reason))).await;
            None
        }
    }
}

/// Reads frames until a `hello`; anything else gets `hello_required`.
///
/// There is no outbox yet: refusals are queued on the socket itself, whose
/// buffer the transport bounds by no longer reading, and each one costs a
/// token and counts towards the abuse limit like any other.
async fn wait_for_hello<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    limiter: &mut Limiter,
    hub: &Hub,
) -> Option<ClientMsg> {
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    loop {
        let event = tokio::time::timeout_at(deadline, ws.recv()).await;
        // A refused request that carried a client_id is named by it.
        let mut client_id = None;
        let refusal = match event {
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
            Ok(Some(Ok(Message::Text(t)))) if !limiter.allow() => {
                client_id = protocol::client_id_of(t.as_str());
                Refusal::new(ErrorCode::RateLimited, "slow down")
            }
            Ok(Some(Ok(Message::Binary(_)))) if !limiter.allow() => {
                Refusal::new(ErrorCode::RateLimited, "slow down")
            }
            Ok(Some(Ok(Message::Text(t)))) => match protocol::parse(t.as_str()) {
                Ok(hello @ ClientMsg::Hello { .. }) => {
                    let ClientMsg::Hello { resume, .. } = &hello else {
                        unreachable!("matched as a hello just above");
                    };
                    // One token per room joined: the first was taken above.
                    let rooms = resume.as_ref().map_or(1, |r| r.len().clamp(1, MAX_ROOMS));
                    limiter.charge(rooms as f64 - 1.0);
                    return Some(hello);
                }
                other => {
                    client_id = protocol::client_id_of(t.as_str());
                    match other {
                        Ok(_) => Refusal::new(ErrorCode::HelloRequired, "say hello first"),
                        Err(refusal) => refusal,
                    }
                }
            },
            Ok(Some(Ok(Message::Binary(_)))) => binary_refusal(),
            Ok(Some(Ok(_))) => continue,
        };
        hub.metrics.errors.inc();
        let json = error_json(&refusal, client_id.as_deref());
        let _ = ws.queue(Message::text(json));
        if limiter.refused() {
            let _ = ws.close(Some(abuse_close())).await;
            return None;
        }
    }
}

fn binary_refusal() -> Refusal {
    Refusal::new(
        ErrorCode::BadJson,
        "binary frames are not part of the protocol",
    )
}

fn error_json(refusal: &Refusal, client_id: Option<&str>) -> String {
    ServerMsg::Error {
        code: refusal.code,
        message: &refusal.message,
        client_id,
    }
    .to_json()
}

/// Checks an HS256 token; its `name` claim (or `sub`) is the nick, and
/// `"admin": true` or `"role": "admin"` claims a server admin's role.
fn verify(key: &jsonwebtoken::DecodingKey, token: &str) -> Result<(String, bool), &'static str> {
    #[derive(serde::Deserialize)]
    struct Claims {
        sub: Option<String>,
        name: Option<String>,
        #[serde(default)]
        admin: bool,
        role: Option<String>,
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
    let admin = data.claims.admin || data.claims.role.as_deref() == Some("admin");
    Ok((nick, admin))
}

/// The newest messages of `messages` (oldest first) whose frames fit in
/// [`MAX_REPLY`] bytes, and whether any were left out.
fn newest_that_fit(mut messages: Vec<ChatMessage>) -> (Vec<ChatMessage>, bool) {
    let mut bytes = 0;
    let keep = messages
        .iter()
        .rev()
        .take_while(|m| {
            bytes += ServerMsg::Msg(m).to_json().len();
            bytes <= MAX_REPLY
        })
        .count();
    let cut = messages.len() - keep;
    (messages.split_off(cut), cut > 0)
}

struct Session<S> {
    ws: Box<WebSocket<S>>,
    hub: Arc<Hub>,
    client: Arc<Client>,
    limiter: Limiter,
    /// The connection negotiated permessage-deflate: replies are
    /// compressed too.
    deflate: bool,
}

enum Next {
    Event(Option<Result<Message, crate::transport::Error>>),
    Outbox,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Queues a reply in the outbox, ahead of events.
    fn reply(&mut self, msg: &ServerMsg<'_>) {
        self.reply_json(msg.to_json());
    }

    /// Queues a reply already in JSON (a replayed event).
    fn reply_json(&mut self, json: String) {
        let frame = if self.deflate {
            self.hub.prepare(json)
        } else {
            PreparedFrame::text(json)
        };
        self.client.outbox.reply(frame, &self.hub.metrics);
    }

    fn refuse(&mut self, refusal: &Refusal, client_id: Option<&str>) {
        self.hub.metrics.errors.inc();
        let json = error_json(refusal, client_id);
        self.client
            .outbox
            .reply(PreparedFrame::text(json), &self.hub.metrics);
        if self.limiter.refused() {
            debug!("closing an abusive client");
            self.client.outbox.abort(abuse_close());
        }
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
        self.welcome(&client, &names).await;
        self.hub.load_blocks(&client).await;
        for (room, seen) in rooms {
            if !self.drain().await {
                return;
            }
            self.join(&room, seen).await;
        }
    }

    /// Moves frames worth up to `budget` bytes from the outbox to the
    /// socket, and the close request once the outbox is empty; true if
    /// that close was taken.
    fn move_outbox(&mut self, budget: usize) -> bool {
        let (frames, close) = self.client.outbox.take(budget);
        for frame in &frames {
            let _ = self.ws.queue_prepared(frame);
        }
        let Some(frame) = close else {
            return false;
        };
        if !self.ws.connection().close_sent() {
            debug!(code = %frame.code, "closing");
            let _ = self.ws.queue(Message::Close(Some(frame)));
        }
        true
    }

    /// Before a reply that may be large: sends what the outbox holds until
    /// it is at most half full, so that 20 rooms' replays never sit in
    /// memory at once. False if the client did not read in time (it is
    /// closed with 1013) or the connection is ending.
    async fn drain(&mut self) -> bool {
        let half = self.client.outbox.limit() / 2;
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while self.client.outbox.len() > half {
                if self.move_outbox(SOCKET_HIGH_WATER) {
                    // Closing: `serve` sends the Close and sees the end.
                    return false;
                }
                if self.ws.flush().await.is_err() {
                    return false;
                }
            }
            true
        })
        .await;
        match drained {
            Ok(ok) => ok,
            Err(_) => {
                self.hub.metrics.slow_closes.inc();
                self.client.outbox.abort(slow_close());
                false
            }
        }
    }

    /// Joins a room and sends its roster, then either the replay of what
    /// came after `seen` or the latest page of history. Live messages that
    /// arrive meanwhile wait behind these replies in the outbox, so they
    /// follow in order.
    async fn join(&mut self, room: &str, seen: Option<u64>) {
        let (page, last) = match self.hub.join(&self.client, room).await {
            Ok(joined) => joined,
            Err(JoinError::Refused(refusal)) => return self.refuse(&refusal, None),
            Err(JoinError::Unavailable(refusal)) => return self.unavailable(&refusal),
        };
        self.reply(&ServerMsg::Presence {
            room,
            joined: &page.members,
            left: &[],
            count: page.count,
            next: Some(page.next.as_deref()),
            truncated: false,
            count_only: false,
            guests: self.hub.marks_guests().then_some(&page.guests),
        });
        // Issue 17: the room's rules and the user's place in them.
        if let Some(json) = self.hub.room_event(&self.client, room) {
            self.reply_json(json);
        }
        match seen {
            // Every kind of event, in id order: a message, and the edits,
            // deletes and reactions made while the client was away.
            Some(seen) => match self
                .hub
                .replay(&self.client.nick, room, seen, last, MAX_REPLAY)
                .await
            {
                Ok(missed) => {
                    let full = missed.len() >= MAX_REPLAY as usize;
                    let (missed, cut) = hub::newest_frames_that_fit(missed, MAX_REPLY);
                    if let Some(&(first, _)) = missed.first()
                        && (cut || full)
                        && first > seen + 1
                    {
                        self.reply(&ServerMsg::Gap {
                            room,
                            after: seen,
                            before: first,
                        });
                    }
                    for (_, json) in missed {
                        self.reply_json(json);
                    }
                }
                Err(refusal) => self.unavailable(&refusal),
            },
            None => self.send_history(room, last + 1, DEFAULT_HISTORY).await,
        }
        self.send_receipts(Conversation::Room(room.to_owned()), room)
            .await;
    }

    /// A page of history before `before`, cut to [`MAX_REPLY`] bytes.
    async fn send_history(&mut self, room: &str, before: u64, limit: u32) {
        let (mut messages, more) = match self.hub.history(room, before, limit).await {
            Ok(page) => page,
            Err(refusal) => return self.unavailable(&refusal),
        };
        // Issue 17: not the messages of users the viewer blocks.
        if let Some(blocked) = self.hub.blocked_by(&self.client.nick) {
            messages.retain(|m| !blocked.contains(&m.from));
        }
        let (messages, cut) = newest_that_fit(messages);
        self.reply(&ServerMsg::History {
            room,
            messages: &messages,
            more: more || cut,
        });
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
                    self.move_outbox(budget);
                }
                Next::Event(Some(Ok(Message::Text(text)))) => {
                    self.hub.metrics.messages_in.inc();
                    // Boxed: a request is parsed into a `ClientMsg` and
                    // may join, page history or look a user up, all of
                    // which an idle member would otherwise carry room for;
                    // one allocation per request, beside the parse's own.
                    let handling = Box::pin(self.handle(text.as_str()));
                    handling.await;
                }
                Next::Event(Some(Ok(Message::Binary(_)))) => {
                    self.hub.metrics.messages_in.inc();
                    if self.ws.connection().close_sent() || self.client.outbox.is_closed() {
                        continue;
                    }
                    let refusal = if self.limiter.allow() {
                        binary_refusal()
                    } else {
                        Refusal::new(ErrorCode::RateLimited, "slow down")
                    };
                    self.refuse(&refusal, None);
                }
                Next::Event(Some(Ok(_))) => {}
                Next::Event(Some(Err(e))) => {
                    debug!(error = %e, "connection ended");
                    return;
                }
                Next::Event(None) => return,
            }
            // Issue 22: what the wire panel asked to see, if it did.
            self.push_wire();
        }
    }

    async fn handle(&mut self, text: &str) {
        // Once the server has begun to close this connection (a ban, a
        // revoked session, a claimed nick, a shutdown), nothing more it
        // sends is acted on, though its queue may still be draining.
        if self.ws.connection().close_sent() || self.client.outbox.is_closed() {
            return;
        }
        if !self.limiter.allow() {
            let client_id = protocol::client_id_of(text);
            let refusal = Refusal::new(ErrorCode::RateLimited, "slow down");
            return self.refuse(&refusal, client_id.as_deref());
        }
        let msg = match protocol::parse(text) {
            Ok(msg) => msg,
            Err(refusal) => {
                let client_id = protocol::client_id_of(text);
                return self.refuse(&refusal, client_id.as_deref());
            }
        };
        match msg {
            ClientMsg::Hello { .. } => self.refuse(
                &Refusal::new(ErrorCode::InvalidField, "hello was already said"),
                None,
            ),
            ClientMsg::Join { room } => Box::pin(self.join(&room, None)).await,
            ClientMsg::Leave { room } => self.hub.leave(&self.client, &room),
            // Issue 17: a room's moderators may delete anyone's message.
            ClientMsg::Delete {
                room: Some(room),
                id,
                client_id,
                ..
            } => {
                let deleting =
                    self.hub
                        .delete_in_room(&self.client, &room, id, client_id.as_deref());
                if let Err(refusal) = Box::pin(deleting).await {
                    self.refuse(&refusal, client_id.as_deref());
                }
            }
            // A message's life after it is posted (`hub/lifecycle.rs`).
            msg @ (ClientMsg::Edit { .. }
            | ClientMsg::Delete { .. }
            | ClientMsg::React { .. }
            | ClientMsg::Msg {
                reply_to: Some(_), ..
            }
            | ClientMsg::Dm {
                reply_to: Some(_), ..
            }) => {
                if let Err((refusal, client_id)) = Box::pin(self.hub.act(&self.client, msg)).await {
                    self.refuse(&refusal, client_id.as_deref());
                }
            }
            ClientMsg::Msg {
                room,
                text,
                client_id,
                reply_to: None,
            } => {
                if let Err(refusal) = self.hub.post(&self.client, &room, &text, &client_id) {
                    self.refuse(&refusal, Some(&client_id));
                }
            }
            ClientMsg::Dm {
                to,
                text,
                client_id,
                reply_to: None,
            } => {
                Box::pin(self.dm(&to, &text, &client_id)).await;
            }
            ClientMsg::Typing { room } => {
                if let Err(refusal) = self.hub.typing(&self.client, &room) {
                    self.refuse(&refusal, None);
                }
            }
            ClientMsg::History {
                dm: Some(with),
                before,
                limit,
                ..
            } => Box::pin(self.send_dm_history(&with, before, limit)).await,
            ClientMsg::History {
                room,
                before,
                limit,
                ..
            } => {
                if !self.client.in_room(&room) {
                    return self.refuse(
                        &Refusal::new(ErrorCode::NotInRoom, format!("join {room} first")),
                        None,
                    );
                }
                let before = before.unwrap_or(u64::MAX);
                let limit = limit.unwrap_or(DEFAULT_HISTORY);
                Box::pin(self.send_history(&room, before, limit)).await;
            }
            ClientMsg::Members {
                room,
                after,
                limit,
                q,
            } => {
                let limit = limit.unwrap_or(MAX_MEMBERS) as usize;
                let prefix = q.as_deref().unwrap_or_default();
                match self
                    .hub
                    .members(&self.client, &room, after.as_deref(), prefix, limit)
                {
                    Ok(page) => self.reply(&ServerMsg::Members {
                        room: &room,
                        q: q.as_deref(),
                        after: after.as_deref(),
                        members: &page.members,
                        count: page.count,
                        next: page.next.as_deref(),
                        guests: self.hub.marks_guests().then_some(&page.guests),
                    }),
                    Err(refusal) => self.refuse(&refusal, None),
                }
            }
            msg @ (ClientMsg::Read { .. }
            | ClientMsg::Dms {}
            | ClientMsg::Nick { .. }
            | ClientMsg::Logout {}) => Box::pin(self.handle_convs(msg)).await,
            ClientMsg::Wire { on } => self.wire(on),
            msg => Box::pin(self.handle_moderation(msg)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u64, text: &str) -> ChatMessage {
        ChatMessage {
            room: "general".into(),
            id,
            from: "alice".into(),
            text: text.into(),
            ts: 1,
            reply_to: None,
            edited_ts: None,
            deleted: false,
            reactions: Default::default(),
            guest: false,
        }
    }

    #[test]
    fn a_reply_keeps_the_newest_messages_that_fit() {
        let big = "x".repeat(4096);
        let messages: Vec<ChatMessage> = (1..=100).map(|id| message(id, &big)).collect();
        let (kept, cut) = newest_that_fit(messages);
        assert!(cut);
        let bytes: usize = kept.iter().map(|m| ServerMsg::Msg(m).to_json().len()).sum();
        assert!(bytes <= MAX_REPLY, "{bytes}");
        assert_eq!(kept.last().unwrap().id, 100);
        // Nothing more would have fitted.
        assert!(bytes + ServerMsg::Msg(&message(1, &big)).to_json().len() > MAX_REPLY);
        // Contiguous, oldest first.
        assert!(kept.windows(2).all(|w| w[1].id == w[0].id + 1));
    }

    #[test]
    fn a_small_reply_is_kept_whole() {
        let messages: Vec<ChatMessage> = (1..=50).map(|id| message(id, "hi")).collect();
        let (kept, cut) = newest_that_fit(messages.clone());
        assert!(!cut);
        assert_eq!(kept, messages);
    }

    #[test]
    fn hello_may_run_the_bucket_into_debt() {
        let mut limiter = Limiter::new(Some(RateLimit {
            per_second: 0.001,
            burst: 20.0,
        }));
        assert!(limiter.allow());
        limiter.charge(19.0);
        assert!(!limiter.allow(), "the bucket is empty after 20 rooms");
    }

    #[test]
    fn refusals_reach_the_abuse_limit() {
        let mut limiter = Limiter::new(None);
        for _ in 1..ABUSE_LIMIT {
            assert!(!limiter.refused());
        }
        assert!(limiter.refused());
    }
}
