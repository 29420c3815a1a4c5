//! A connection's outbound queue: everything a session sends, bounded in
//! bytes, with an explicit policy for a client that reads too slowly.
//!
//! Each connection has an [`Outbox`]. When it is full, ephemeral events
//! (typing, presence) are dropped; a chat message that would not fit
//! closes the connection with 1013 instead, since dropping it would lose
//! data; the client reconnects and resumes from history. A slow reader
//! never delays anyone else: nothing here waits on a socket.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Waker};

use crate::proto::{CloseCode, CloseFrame, PreparedFrame};

use super::lock;
use super::metrics::Metrics;

/// Whether an event may be dropped under pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Messages, acks: never dropped.
    Chat,
    /// Typing, presence: dropped first.
    Ephemeral,
}

/// A connection's queue of frames to send, bounded in bytes.
///
/// Everything a session sends goes through it, in two lanes that share
/// one byte count: the session's own replies (`welcome`, rosters, history
/// pages, replays, acks of refusals, `error`s), and events from the room
/// and everyone else (messages, presence, typing). Replies leave first, so
/// a join's roster and history precede the live messages that arrived
/// while they were being read, as the protocol promises.
///
/// Only events are refused for space (see [`Kind`]): a reply answers a
/// request, and the session reads no new request while its socket buffer
/// is full (the transport stops reading, RFC 6455 has no flow control of
/// its own), so replies can overshoot the bound by at most one.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    limit: usize,
}

#[derive(Debug, Default)]
struct OutboxState {
    /// The session's replies, sent before `frames`.
    replies: VecDeque<PreparedFrame>,
    /// Events for this connection.
    frames: VecDeque<PreparedFrame>,
    /// Bytes in both lanes.
    bytes: usize,
    /// A close was requested: nothing more is queued.
    closed: bool,
    /// The close frame, until the session takes it.
    close: Option<CloseFrame>,
    waker: Option<Waker>,
}

impl OutboxState {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn abort(&mut self, frame: CloseFrame) {
        self.closed = true;
        self.close = Some(frame);
        self.replies.clear();
        self.frames.clear();
        self.bytes = 0;
        self.wake();
    }
}

/// The close for a client that reads too slowly: 1013 (Try Again Later,
/// RFC 6455 §11.7); it reconnects and resumes from what it has.
pub fn slow_close() -> CloseFrame {
    CloseFrame::new(CloseCode::TRY_AGAIN_LATER, "too slow: reconnect and resume")
}

impl Outbox {
    /// An empty outbox that holds at most `limit` bytes of events.
    pub fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(OutboxState::default()),
            limit,
        }
    }

    /// Queues an event. Returns whether it was queued.
    pub fn push(&self, frame: &PreparedFrame, kind: Kind, metrics: &Metrics) -> bool {
        let mut s = lock(&self.state);
        if s.closed {
            return false;
        }
        let len = frame.as_bytes().len();
        if s.bytes + len > self.limit {
            match kind {
                Kind::Ephemeral => metrics.drops.inc(),
                Kind::Chat => {
                    metrics.slow_closes.inc();
                    s.abort(slow_close());
                }
            }
            return false;
        }
        s.frames.push_back(frame.clone());
        s.bytes += len;
        metrics.messages_out.inc();
        metrics.bytes_out.add(len as u64);
        s.wake();
        true
    }

    /// Queues the session's reply to a request, ahead of events.
    pub fn reply(&self, frame: PreparedFrame, metrics: &Metrics) {
        let mut s = lock(&self.state);
        if s.closed {
            return;
        }
        let len = frame.as_bytes().len();
        s.replies.push_back(frame);
        s.bytes += len;
        metrics.messages_out.inc();
        metrics.bytes_out.add(len as u64);
        s.wake();
    }

    /// Bytes waiting, in both lanes.
    pub fn len(&self) -> usize {
        lock(&self.state).bytes
    }

    /// The bound on events, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Drops whatever waits and asks the connection to close with `frame`
    /// now (unless a close was already requested).
    pub fn abort(&self, frame: CloseFrame) {
        let mut s = lock(&self.state);
        if s.closed && s.close.is_none() {
            return; // the close already went out
        }
        let frame = s.close.take().unwrap_or(frame);
        s.abort(frame);
    }

    /// Asks the connection to close with `frame` (the first such request
    /// wins). What is already queued still goes out first.
    pub fn close(&self, frame: CloseFrame) {
        let mut s = lock(&self.state);
        if !s.closed {
            s.closed = true;
            s.close = Some(frame);
        }
        s.wake();
    }

    /// Whether a close was requested (the connection is ending: the
    /// session reads no more requests from it).
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// Whether there is something to take; if not, wakes `cx` when there is.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> bool {
        let mut s = lock(&self.state);
        if s.replies.is_empty() && s.frames.is_empty() && s.close.is_none() {
            s.waker = Some(cx.waker().clone());
            false
        } else {
            true
        }
    }

    /// Takes frames worth up to `budget` bytes (at least one), replies
    /// first, and the close request once the lanes are empty (handed out
    /// once).
    pub fn take(&self, budget: usize) -> (Vec<PreparedFrame>, Option<CloseFrame>) {
        let mut s = lock(&self.state);
        let mut out = Vec::new();
        let mut taken = 0;
        loop {
            let state = &mut *s;
            let lane = if state.replies.is_empty() {
                &mut state.frames
            } else {
                &mut state.replies
            };
            let Some(len) = lane.front().map(|f| f.as_bytes().len()) else {
                break;
            };
            if !out.is_empty() && taken + len > budget {
                break;
            }
            taken += len;
            out.extend(lane.pop_front());
        }
        s.bytes -= taken;
        // An emptied lane gives its buffer back: an idle member's outbox
        // holds nothing (each lane keeps 288 bytes from its first frame
        // on otherwise, `tests/chat_idle_memory.rs`). It costs a busy one
        // an allocation per burst of frames, not per frame.
        let state = &mut *s;
        for lane in [&mut state.replies, &mut state.frames] {
            if lane.is_empty() && lane.capacity() > 0 {
                *lane = VecDeque::new();
            }
        }
        let close = if s.replies.is_empty() && s.frames.is_empty() {
            s.close.take()
        } else {
            None
        };
        (out, close)
    }
}
