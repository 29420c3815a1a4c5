//! RFC 6455 §5.4–§5.5 and §7: the connection state machine.
//!
//! The connection itself, its call order, its states and what a peer
//! cannot make it do are documented on [`Connection`] (the module is
//! private: `proto::Connection` is its one path).
//!
//! Reading (input and events) is in `read.rs`, writing (commands and
//! output) in `write.rs`; this file holds what both share.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::close::CloseFrame;
use super::config::Config;
use super::deflate::{DeflateParams, PerMessageDeflate};
use super::error::Error;
use super::frame::{FrameHeader, OpCode};
use super::observe::{Direction, FrameRing};
use super::rng::MaskRng;
use super::role::Role;
use super::utf8::{Utf8Bytes, Utf8Validator};

mod read;
mod split;
mod write;

#[cfg(feature = "transport")]
pub(crate) use split::contains_close;
pub use write::PreparedFrame;

/// The RFC's connection states after the handshake (§4.1, §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// "The WebSocket Connection is Established" (§4.1): data flows both ways.
    Open,
    /// "The WebSocket Closing Handshake is Started" (§7.1.3): we sent a
    /// Close frame and wait for the peer's.
    Closing,
    /// The close handshake is done, or the connection failed, or TCP ended:
    /// nothing more is read or sent.
    Closed,
}

/// What a data message holds (§5.6): the two data opcodes' payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    /// "interpreted as UTF-8 \[RFC3629\] text", opcode 0x1.
    Text,
    /// "entirely up to the application layer", opcode 0x2.
    Binary,
}

impl DataKind {
    /// The kind of message a Text or Binary frame begins; `None` for
    /// others.
    fn of(opcode: OpCode) -> Option<Self> {
        match opcode {
            OpCode::Text => Some(DataKind::Text),
            OpCode::Binary => Some(DataKind::Binary),
            OpCode::Continuation | OpCode::Close | OpCode::Ping | OpCode::Pong => None,
        }
    }

    /// The opcode of a message's first frame (§5.4).
    fn opcode(self) -> OpCode {
        match self {
            DataKind::Text => OpCode::Text,
            DataKind::Binary => OpCode::Binary,
        }
    }
}

/// A message or control frame, received or to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (§5.6), valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message (§5.6).
    Binary(Bytes),
    /// A Ping (§5.5.2). A received one has already been answered.
    Ping(Bytes),
    /// A Pong (§5.5.3).
    Pong(Bytes),
    /// A Close frame (§5.5.1); `None` when it carried no status code.
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Message::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Message::Binary(data.into())
    }
}

/// The frame being read: its header is parsed, its payload may not have
/// arrived yet.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    header: FrameHeader,
    header_len: usize,
    payload_len: usize,
    /// Payload bytes already unmasked (and UTF-8-checked, for text).
    done: usize,
    /// Whether the payload is text to validate as it arrives (not when
    /// compressed: then the inflated bytes are validated).
    check_utf8: bool,
}

/// A fragmented message being gathered (§5.4).
#[derive(Debug)]
struct InMessage {
    kind: DataKind,
    /// The payload so far; inflated, for a compressed message.
    buf: BytesMut,
    fragments: usize,
    /// Payload bytes received on the wire, for the message-size limit.
    wire_len: usize,
    /// RSV1 was set on its first frame (RFC 7692 §6).
    compressed: bool,
}

/// Bytes waiting to be written, whole frames in order.
#[derive(Debug, Default)]
struct Outgoing {
    /// Sealed chunks, oldest first.
    queue: VecDeque<Bytes>,
    /// Small frames being gathered; always after everything in `queue`.
    buf: BytesMut,
    /// Bytes in `queue`.
    queued: usize,
    /// The payload of the Pong owed for the latest Ping (§5.5.3); encoded
    /// at the tail when output is next taken, so a flood of pings costs one
    /// pending Pong.
    pong: Option<Bytes>,
}

impl Outgoing {
    fn seal(&mut self) {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.queued += chunk.len();
            self.queue.push_back(chunk);
        }
    }

    fn push(&mut self, chunk: Bytes) {
        self.seal();
        self.queued += chunk.len();
        self.queue.push_back(chunk);
    }

    fn pop(&mut self) -> Option<Bytes> {
        self.seal();
        let chunk = self.queue.pop_front()?;
        self.queued -= chunk.len();
        Some(chunk)
    }

    fn len(&self) -> usize {
        self.queued + self.buf.len()
    }
}

/// One WebSocket connection, after the handshake, as a state machine.
///
/// A [`Connection`] is what is left of a WebSocket once the handshake is
/// done: bytes in, messages out; messages in, bytes out. It does no I/O and
/// reads no clock. The I/O layer calls it in this order:
///
/// 1. **Input.** Hand it what was read: [`receive`](Connection::receive)
///    (or append to [`read_buffer`](Connection::read_buffer)), and
///    [`receive_eof`](Connection::receive_eof) when the peer closed TCP.
/// 2. **Events.** Call [`poll_message`](Connection::poll_message) until it
///    returns `Ok(None)` ("need more bytes"). Frames are parsed lazily here,
///    so a caller that stops polling stops the buffer from growing beyond
///    one frame. An `Err` is sticky and means the connection has failed: a
///    Close frame with the error's code is already queued.
/// 3. **Commands**, any time: [`send_text`](Connection::send_text),
///    [`send_binary`](Connection::send_binary), fragments, pings,
///    [`send_prepared`](Connection::send_prepared) for an encode-once
///    broadcast frame, and [`close`](Connection::close).
/// 4. **Output.** Write every chunk [`poll_transmit`](Connection::poll_transmit)
///    returns, in order (several at once with a vectored write).
/// 5. **Closing.** When [`should_close_tcp`](Connection::should_close_tcp)
///    is true, close TCP once the output is written, under a close timer:
///    a peer that never reads would keep the output, and the connection,
///    waiting for ever. While
///    [`awaiting_close`](Connection::awaiting_close) is true, run a close
///    timer; when it fires, close TCP.
///
/// # States
///
/// The RFC's CONNECTING state (§4) is the handshake's (`handshake/`); a
/// `Connection` is born OPEN. The state is not stored beside the facts that
/// decide it: the connection records three things as they happen (our
/// Close went out, the peer's Close came in, the connection failed) and
/// [`Connection::state`] derives the state from them in one `match`. This
/// table is what each input records, and the state that follows:
///
/// | state   | input                 | records        | next    | also                                   |
/// |---------|-----------------------|----------------|---------|----------------------------------------|
/// | Open    | we send Close         | Close sent     | Closing | await the peer's Close (close timer)   |
/// | Open    | peer's Close received | both Closes    | Closed  | echo its code (§5.5.1); server: close TCP, client: await TCP close |
/// | Closing | peer's Close received | Close received | Closed  | server: close TCP; client: await TCP close |
/// | any     | peer breaks the rules | failure        | Closed  | send Close with the code (§7.1.7); close TCP |
/// | any     | TCP EOF               | failure        | Closed  | before a Close frame: 1006 (§7.1.5)     |
/// | Closed  | anything              |                | Closed  | input discarded                        |
///
/// # What a peer cannot make us do
///
/// Every length is checked against [`Config`] as soon as the frame header
/// is read, before the payload is buffered. A text frame is unmasked and
/// UTF-8-checked as its bytes arrive, so invalid text fails at the frame,
/// even the TCP read, where it appears (§8.1). A single-frame message is
/// unmasked in place in the read buffer and split off as [`Bytes`] without a
/// copy; fragments are gathered into one buffer. Pings pile up into at most
/// one pending Pong (§5.5.3).
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    /// Our Close frame is queued or sent (§5.5.1).
    close_sent: bool,
    /// The peer's Close frame has arrived (§5.5.1).
    close_received: bool,
    /// The peer closed TCP.
    eof: bool,
    /// The sticky error, once the connection failed (§7.1.7, §7.1.5).
    failure: Option<Error>,
    /// Received bytes not yet consumed.
    rbuf: BytesMut,
    /// Frames completed so far: names the frame being read, for an I/O
    /// layer's per-frame deadline (see `frame_in_progress`).
    frames_received: u64,
    frame: Option<InFrame>,
    message: Option<InMessage>,
    rx_utf8: Utf8Validator,
    out: Outgoing,
    /// The kind of the fragmented message being sent, if one is.
    tx_message: Option<DataKind>,
    tx_utf8: Utf8Validator,
    /// Mask keys; created on a client's first frame, never on a server.
    /// Boxed (120 bytes of ChaCha20 state): a server connection, which
    /// never masks, holds a null pointer.
    rng: Option<Box<MaskRng>>,
    /// permessage-deflate, when negotiated: it gives RSV1 its meaning
    /// (RFC 7692 §6).
    deflate: PerMessageDeflate,
    /// The frame record, for those who asked (`observe.rs`); boxed, so a
    /// connection that did not ask holds one null pointer.
    ring: Option<Box<FrameRing>>,
}

impl Connection {
    /// A connection in the OPEN state, for the given role and limits.
    pub fn new(role: Role, config: Config) -> Self {
        // No agreement yet: RSV1 keeps no meaning until `with_deflate`.
        let deflate = PerMessageDeflate::new(role, None, &config);
        Self {
            role,
            config,
            close_sent: false,
            close_received: false,
            eof: false,
            failure: None,
            rbuf: BytesMut::new(),
            frames_received: 0,
            frame: None,
            message: None,
            rx_utf8: Utf8Validator::new(),
            out: Outgoing::default(),
            tx_message: None,
            tx_utf8: Utf8Validator::new(),
            rng: None,
            deflate,
            ring: None,
        }
    }

    /// Turns on permessage-deflate with the agreement the handshake reached
    /// (RFC 7692 §5), if it reached one, using the level and threshold of
    /// [`Config::deflate`] (or the defaults if it is unset). A build without
    /// the `deflate` feature never reaches one, and stays uncompressed.
    pub fn with_deflate(mut self, params: impl Into<Option<DeflateParams>>) -> Self {
        self.deflate = PerMessageDeflate::new(self.role, params.into().as_ref(), &self.config);
        self
    }

    /// Whether permessage-deflate is in use.
    pub fn deflate_enabled(&self) -> bool {
        self.deflate.is_enabled()
    }

    /// Whether a compressor or decompressor is held between messages (for
    /// memory tests): `(compressor, decompressor)`.
    // A test hook (tests/deflate.rs): public for the integration tests,
    // hidden from the docs because no user needs it.
    #[doc(hidden)]
    pub fn deflate_state_allocated(&self) -> (bool, bool) {
        self.deflate.is_allocated()
    }

    /// Uses the given mask key stream instead of one seeded from the OS:
    /// for reproducible client output in tests and fuzzing.
    pub fn with_rng(mut self, rng: MaskRng) -> Self {
        self.rng = Some(Box::new(rng));
        self
    }

    // --- the frame record (`observe.rs`) ----------------------------------

    /// Starts recording every frame parsed and queued from now on into
    /// `ring`, or (`None`) stops recording and frees the ring; returns the
    /// ring there was. A split connection's sending half
    /// ([`split_sender`](Self::split_sender)) records nothing: the ring
    /// stays with the reading half.
    pub fn set_frame_ring(&mut self, ring: Option<Box<FrameRing>>) -> Option<Box<FrameRing>> {
        std::mem::replace(&mut self.ring, ring)
    }

    /// The frame record, if one is kept.
    pub fn frame_ring(&self) -> Option<&FrameRing> {
        self.ring.as_deref()
    }

    /// The frame record, if one is kept, to take records from.
    pub fn frame_ring_mut(&mut self) -> Option<&mut FrameRing> {
        self.ring.as_deref_mut()
    }

    /// Records a frame if a ring is kept: one branch when none is.
    #[inline]
    fn record(
        &mut self,
        direction: Direction,
        header: FrameHeader,
        payload: &[u8],
        inflated_len: Option<u64>,
    ) {
        if let Some(ring) = &mut self.ring {
            ring.push(direction, header, payload, inflated_len);
        }
    }

    // --- getters -------------------------------------------------------

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current state, from what has happened (the module doc's
    /// table): failing and the peer's Close both end the connection; our
    /// Close alone starts the close handshake.
    pub fn state(&self) -> State {
        let ended = self.close_received || self.failure.is_some();
        match (ended, self.close_sent) {
            (true, _) => State::Closed,
            (false, true) => State::Closing,
            (false, false) => State::Open,
        }
    }

    /// Whether the peer's Close frame has arrived.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// Whether our Close frame is queued or sent.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Received bytes held, not yet consumed.
    pub fn buffered_len(&self) -> usize {
        self.rbuf.len() + self.message.as_ref().map_or(0, |m| m.buf.len())
    }

    /// Bytes queued for sending and not yet taken by
    /// [`poll_transmit`](Self::poll_transmit). A server uses it to bound
    /// each client's outbound queue.
    pub fn pending_output_len(&self) -> usize {
        self.out.len() + self.out.pong.as_ref().map_or(0, |p| p.len() + 14)
    }

    /// `Some(n)` while part of frame `n` is buffered (its header, or its
    /// header and some of its payload), counting every frame received from
    /// 0, control frames and continuations included; `None` when the buffer
    /// ends on a frame boundary, or input is being discarded (§7.1.7,
    /// §5.5.1). Right after [`poll_message`](Self::poll_message) returned
    /// `Ok(None)`, this is the frame the peer has begun and not finished;
    /// an I/O layer that bounds how long a frame may take watches it, and
    /// restarts its timer when `n` changes.
    pub fn frame_in_progress(&self) -> Option<u64> {
        (!self.discarding() && !self.rbuf.is_empty()).then_some(self.frames_received)
    }

    /// How many more bytes the frame being read needs, at least 1: a hint
    /// for sizing the next read.
    pub fn read_hint(&self) -> usize {
        match &self.frame {
            Some(f) => (f.header_len + f.payload_len)
                .saturating_sub(self.rbuf.len())
                .max(1),
            None => 2,
        }
    }

    /// Whether the I/O layer should close TCP once all output is written:
    /// the server closes first after the close handshake (§7.1.1: "the
    /// server MUST close the underlying TCP connection immediately"), and
    /// either side closes after failing (§7.1.7) or after the peer closed.
    /// Waiting for the output to be written needs a timer too: a peer that
    /// sends a Close, or breaks a rule, and then never reads would
    /// otherwise hold the connection for ever.
    pub fn should_close_tcp(&self) -> bool {
        self.state() == State::Closed
            && (self.role == Role::Server || self.failure.is_some() || self.eof)
    }

    /// Whether the I/O layer should run its close timer: we sent Close and
    /// wait for the peer's, or (as a client) the handshake is done and we
    /// wait for the server to close TCP (§7.1.1: "the client SHOULD wait for
    /// the server to close the connection but MAY close the connection at
    /// any time after sending and receiving a Close message"). When the
    /// timer fires, close TCP.
    pub fn awaiting_close(&self) -> bool {
        self.close_sent && !self.should_close_tcp()
    }
}

#[cfg(test)]
mod tests;
