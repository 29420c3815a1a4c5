//! RFC 6455 §5.4–§5.5 and §7: the connection state machine.
//!
//! A [`Connection`] is what is left of a WebSocket once the handshake is
//! done: bytes in, messages out; messages in, bytes out. It does no I/O and
//! reads no clock. The I/O layer calls it in this order:
//!
//! 1. **Input.** Hand it what was read: [`receive`](Connection::receive)
//!    (or append to [`read_buffer`](Connection::read_buffer)), and
//!    [`receive_eof`](Connection::receive_eof) when the peer closed TCP.
//! 2. **Events.** Call [`poll_message`](Connection::poll_message) until it
//!    returns `Ok(None)` ("need more bytes"). Frames are parsed lazily here,
//!    so a caller that stops polling stops the buffer from growing beyond
//!    one frame. An `Err` is sticky and means the connection has failed: a
//!    Close frame with the error's code is already queued.
//! 3. **Commands**, any time: [`send_text`](Connection::send_text),
//!    [`send_binary`](Connection::send_binary), fragments, pings,
//!    [`send_prepared`](Connection::send_prepared) for an encode-once
//!    broadcast frame, and [`close`](Connection::close).
//! 4. **Output.** Write every chunk [`poll_transmit`](Connection::poll_transmit)
//!    returns, in order (several at once with a vectored write).
//! 5. **Closing.** When [`should_close_tcp`](Connection::should_close_tcp)
//!    is true, close TCP once the output is written, under a close timer:
//!    a peer that never reads would keep the output, and the connection,
//!    waiting for ever. While
//!    [`awaiting_close`](Connection::awaiting_close) is true, run a close
//!    timer; when it fires, close TCP.
//!
//! # States
//!
//! The RFC's CONNECTING state (§4) is the handshake's (`handshake.rs`); a
//! `Connection` is born OPEN. Every state change happens in
//! `Connection::transition`, one `match` over this table:
//!
//! | state   | input                 | next    | also                                   |
//! |---------|-----------------------|---------|----------------------------------------|
//! | Open    | we send Close         | Closing | await the peer's Close (close timer)   |
//! | Open    | peer's Close received | Closed  | echo its code (§5.5.1); server: close TCP, client: await TCP close |
//! | Closing | peer's Close received | Closed  | server: close TCP; client: await TCP close |
//! | any     | peer breaks the rules | Closed  | send Close with the code (§7.1.7); close TCP |
//! | any     | TCP EOF               | Closed  | before a Close frame: 1006 (§7.1.5)     |
//! | Closed  | anything              | Closed  | input discarded                        |
//!
//! # What a peer cannot make us do
//!
//! Every length is checked against [`Config`] as soon as the frame header
//! is read, before the payload is buffered. A text frame is unmasked and
//! UTF-8-checked as its bytes arrive, so invalid text fails at the frame,
//! even the TCP read, where it appears (§8.1). A single-frame message is
//! unmasked in place in the read buffer and split off as [`Bytes`] without a
//! copy; fragments are gathered into one buffer. Pings pile up into at most
//! one pending Pong (§5.5.3).

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::close::{CloseFrame, MAX_REASON_LEN};
use super::config::Config;
#[cfg(feature = "deflate")]
use super::deflate::codec::compress_once;
#[cfg(feature = "deflate")]
use super::deflate::codec::{Codec, InflateError};
#[cfg(feature = "deflate")]
use super::deflate::{DeflateConfig, DeflateParams};
use super::error::{Error, ProtocolError};
use super::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, OpCode};
use super::mask::apply_mask;
use super::rng::MaskRng;
use super::role::Role;
use super::utf8::{Utf8Bytes, Utf8Validator};

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

/// A server frame encoded once, to be sent to many connections.
///
/// Server frames are not masked (§5.1), so the bytes of a message are the
/// same for every recipient: a broadcast encodes once and each connection
/// queues a reference-counted copy of the same buffer.
///
/// With permessage-deflate (RFC 7692), a frame compressed with a fresh
/// context refers to nothing sent before it, so it too is the same for
/// every recipient: [`text_deflated`](Self::text_deflated) compresses once
/// and keeps both forms; each connection sends the compressed one if it
/// negotiated deflate with a large enough window, the plain one otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedFrame {
    plain: Bytes,
    /// The compressed frame, and the window it was compressed with.
    #[cfg(feature = "deflate")]
    deflated: Option<(Bytes, u8)>,
}

impl PreparedFrame {
    /// A text message in one frame.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::new(OpCode::Text, text.into().as_bytes())
    }

    /// A binary message in one frame.
    pub fn binary(data: impl AsRef<[u8]>) -> Self {
        Self::new(OpCode::Binary, data.as_ref())
    }

    /// A text message in one frame, also compressed once (RFC 7692 §7.2.1)
    /// with the level and window of `config` if it is at least
    /// `config.threshold` bytes long.
    #[cfg(feature = "deflate")]
    pub fn text_deflated(text: impl Into<Utf8Bytes>, config: &DeflateConfig) -> Self {
        let text = text.into();
        Self::new(OpCode::Text, text.as_bytes()).with_deflated(
            OpCode::Text,
            text.as_bytes(),
            config,
        )
    }

    /// A binary message in one frame, also compressed once.
    #[cfg(feature = "deflate")]
    pub fn binary_deflated(data: impl AsRef<[u8]>, config: &DeflateConfig) -> Self {
        let data = data.as_ref();
        Self::new(OpCode::Binary, data).with_deflated(OpCode::Binary, data, config)
    }

    #[cfg(feature = "deflate")]
    fn with_deflated(mut self, opcode: OpCode, payload: &[u8], config: &DeflateConfig) -> Self {
        self.deflated = compress_once(payload, config).map(|(compressed, bits)| {
            let mut header = FrameHeader::new(opcode, compressed.len() as u64);
            header.rsv1 = true;
            (encode_frame(header, &compressed), bits)
        });
        self
    }

    fn new(opcode: OpCode, payload: &[u8]) -> Self {
        Self {
            plain: encode_frame(FrameHeader::new(opcode, payload.len() as u64), payload),
            #[cfg(feature = "deflate")]
            deflated: None,
        }
    }

    /// The frame's bytes on the wire, uncompressed.
    pub fn as_bytes(&self) -> &Bytes {
        &self.plain
    }

    /// The compressed frame's bytes on the wire, if there is one.
    pub fn deflated_bytes(&self) -> Option<&Bytes> {
        #[cfg(feature = "deflate")]
        {
            self.deflated.as_ref().map(|(bytes, _)| bytes)
        }
        #[cfg(not(feature = "deflate"))]
        {
            None
        }
    }
}

fn encode_frame(header: FrameHeader, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(header.encoded_len() + payload.len());
    header.encode(&mut buf);
    buf.extend_from_slice(payload);
    buf.freeze()
}

/// Payloads up to this size are copied behind their header so that a frame
/// goes out as one chunk; larger ones are queued as their own `Bytes` (no
/// copy) and leave with the header in one vectored write. Copying 4 KiB
/// costs well under the price of a system call, and is about the size at
/// which one more I/O vector beats one more copy.
const INLINE_PAYLOAD_MAX: usize = 4096;

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
    text: bool,
}

/// A fragmented message being gathered (§5.4).
#[derive(Debug)]
struct InMessage {
    text: bool,
    /// The payload so far; inflated, for a compressed message.
    buf: BytesMut,
    fragments: usize,
    /// Payload bytes received on the wire, for the message-size limit.
    wire_len: usize,
    /// RSV1 was set on its first frame (RFC 7692 §6).
    compressed: bool,
}

/// What reading one frame produced.
enum Step {
    /// The buffer ends inside a frame.
    NeedMore,
    /// A frame was consumed and produced nothing to hand out (a fragment).
    Continue,
    /// A message or control frame for the caller.
    Deliver(Message),
}

/// The inputs of the state machine (see the module doc's table).
#[derive(Debug, Clone, Copy)]
enum Input {
    SendClose,
    ReceiveClose,
    Fail,
    Eof,
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
/// See the [module documentation](self) for the order of calls.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    state: State,
    close_sent: bool,
    close_received: bool,
    eof: bool,
    /// The sticky error, once the connection failed.
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
    /// The type of the fragmented message being sent (`true` for text).
    tx_message: Option<bool>,
    tx_utf8: Utf8Validator,
    /// Mask keys; created on a client's first frame, never on a server.
    rng: Option<MaskRng>,
    /// permessage-deflate, when negotiated: it gives RSV1 its meaning
    /// (RFC 7692 §6).
    #[cfg(feature = "deflate")]
    deflate: Option<Box<Codec>>,
}

impl Connection {
    /// A connection in the OPEN state, for the given role and limits.
    pub fn new(role: Role, config: Config) -> Self {
        Self {
            role,
            config,
            state: State::Open,
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
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }

    /// Turns on permessage-deflate with the agreement the handshake reached
    /// (RFC 7692 §5), using the level and threshold of
    /// [`Config::deflate`] (or the defaults if it is unset).
    #[cfg(feature = "deflate")]
    pub fn with_deflate(mut self, params: DeflateParams) -> Self {
        let config = self.config.deflate.clone().unwrap_or_default();
        self.deflate = Some(Box::new(Codec::new(self.role, &params, &config)));
        self
    }

    /// Whether permessage-deflate is in use.
    pub fn deflate_enabled(&self) -> bool {
        #[cfg(feature = "deflate")]
        {
            self.deflate.is_some()
        }
        #[cfg(not(feature = "deflate"))]
        {
            false
        }
    }

    /// Whether a compressor or decompressor is held between messages (for
    /// memory tests): `(compressor, decompressor)`.
    pub fn deflate_state_allocated(&self) -> (bool, bool) {
        #[cfg(feature = "deflate")]
        if let Some(codec) = &self.deflate {
            return (codec.tx.is_allocated(), codec.rx.is_allocated());
        }
        (false, false)
    }

    /// Uses the given mask key stream instead of one seeded from the OS:
    /// for reproducible client output in tests and fuzzing.
    pub fn with_rng(mut self, rng: MaskRng) -> Self {
        self.rng = Some(rng);
        self
    }

    // --- getters -------------------------------------------------------

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
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
        self.state == State::Closed
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

    // --- input -----------------------------------------------------------

    /// Hands over bytes read from the peer.
    pub fn receive(&mut self, data: &[u8]) {
        if !self.discarding() {
            self.rbuf.extend_from_slice(data);
        }
    }

    /// The buffer received bytes go into, for an I/O layer that reads into
    /// it directly (tokio's `read_buf`) to save a copy. Only append to it.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        if self.discarding() {
            self.rbuf.clear();
        }
        &mut self.rbuf
    }

    /// The peer closed its side of TCP: no more bytes will come.
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    /// §7.1.7 ("MUST NOT continue to attempt to process data") after a
    /// failure, and §5.5.1 after the peer's Close (nothing may follow it).
    fn discarding(&self) -> bool {
        self.failure.is_some() || self.close_received
    }

    // --- events ----------------------------------------------------------

    /// The next message or control frame, `Ok(None)` if more bytes are
    /// needed (or nothing more will come), or the error the connection
    /// failed with.
    pub fn poll_message(&mut self) -> Result<Option<Message>, Error> {
        loop {
            if let Some(e) = &self.failure {
                return Err(e.clone());
            }
            if self.close_received {
                self.rbuf.clear();
                return Ok(None);
            }
            match self.read_frame() {
                Ok(Step::Deliver(message)) => return Ok(Some(message)),
                Ok(Step::Continue) => {}
                Ok(Step::NeedMore) if self.eof => {
                    // §7.1.5: TCP closed before a Close frame arrived.
                    self.rbuf.clear();
                    self.transition(Input::Eof);
                    self.failure = Some(Error::AbnormalClosure);
                }
                Ok(Step::NeedMore) => return Ok(None),
                Err(e) => self.fail(e),
            }
        }
    }

    fn read_frame(&mut self) -> Result<Step, ProtocolError> {
        let mut frame = match self.frame {
            Some(frame) => frame,
            None => {
                let Some((header, header_len)) = FrameHeader::parse(&self.rbuf)? else {
                    return Ok(Step::NeedMore);
                };
                self.check_header(header, header_len)?
            }
        };
        // Unmask, and check text, as far as the payload has arrived.
        let arrived = self
            .rbuf
            .len()
            .saturating_sub(frame.header_len)
            .min(frame.payload_len);
        if arrived > frame.done {
            let range = frame.header_len + frame.done..frame.header_len + arrived;
            if let Some(piece) = self.rbuf.get_mut(range) {
                if let Some(key) = frame.header.mask {
                    apply_mask(piece, key, frame.done);
                }
                if frame.text {
                    self.rx_utf8
                        .feed(piece)
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                }
            }
            frame.done = arrived;
        }
        if frame.done < frame.payload_len {
            self.frame = Some(frame);
            return Ok(Step::NeedMore);
        }
        self.frame = None;
        self.frames_received = self.frames_received.wrapping_add(1);
        let mut raw = self.rbuf.split_to(frame.header_len + frame.payload_len);
        raw.advance(frame.header_len);
        self.on_frame(frame.header, raw.freeze())
    }

    /// The rules that need to know our role, what was negotiated and what
    /// came before (those that do not are in `FrameHeader::parse`), then the
    /// limits, all before any payload is buffered.
    fn check_header(
        &self,
        header: FrameHeader,
        header_len: usize,
    ) -> Result<InFrame, ProtocolError> {
        // §5.2: "RSV1, RSV2, RSV3: 1 bit each. MUST be 0 unless an extension
        // is negotiated that defines meanings for non-zero values."
        if (header.rsv1 && !self.deflate_enabled()) || header.rsv2 || header.rsv3 {
            return Err(ProtocolError::ReservedBitsSet);
        }
        // RFC 7692 §6.1: "An endpoint MUST NOT set the "Per-Message
        // Compressed" bit of control frames and non-first fragments of a
        // data message. An endpoint receiving such a frame MUST _Fail the
        // WebSocket Connection_."
        if header.rsv1 && header.opcode.is_control() {
            return Err(ProtocolError::CompressedControlFrame);
        }
        if header.rsv1 && header.opcode == OpCode::Continuation {
            return Err(ProtocolError::CompressedContinuation);
        }
        // §5.1: "a client MUST mask all frames that it sends to the server"
        // and "A server MUST NOT mask any frames that it sends to the client".
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let payload_len =
            usize::try_from(header.payload_len).map_err(|_| ProtocolError::FrameTooLarge)?;
        // §5.4: a fragmented message is a first frame (FIN clear, opcode
        // Text or Binary), continuations (opcode 0), and a last frame with
        // FIN set; only control frames may come in between.
        let (text, compressed) = match (header.opcode, &self.message) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(m)) => (m.text, m.compressed),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            (OpCode::Text, None) => (true, header.rsv1),
            (OpCode::Binary, None) => (false, header.rsv1),
            // Length and FIN were checked by the parser (§5.5).
            (OpCode::Close | OpCode::Ping | OpCode::Pong, _) => (false, false),
        };
        if !header.opcode.is_control() {
            if payload_len > self.config.max_frame_size {
                return Err(ProtocolError::FrameTooLarge);
            }
            let (so_far, fragments) = self
                .message
                .as_ref()
                .map_or((0, 0), |m| (m.wire_len, m.fragments));
            if so_far.saturating_add(payload_len) > self.config.max_message_size {
                return Err(ProtocolError::MessageTooLarge);
            }
            if fragments >= self.config.max_fragments.max(1) {
                return Err(ProtocolError::TooManyFragments);
            }
        }
        Ok(InFrame {
            header,
            header_len,
            payload_len,
            done: 0,
            text: text && !compressed,
        })
    }

    fn on_frame(&mut self, header: FrameHeader, payload: Bytes) -> Result<Step, ProtocolError> {
        match header.opcode {
            OpCode::Ping => {
                // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send
                // a Pong frame in response, unless it already received a
                // Close frame." We also stay silent once our own Close is
                // out: nothing may follow it on the wire.
                // §5.5.3: "If an endpoint receives a Ping frame and has not
                // yet sent Pong frame(s) in response to previous Ping
                // frame(s), the endpoint MAY elect to send a Pong frame for
                // only the most recently processed Ping frame."
                if !self.close_sent {
                    self.out.pong = Some(payload.clone());
                }
                Ok(Step::Deliver(Message::Ping(payload)))
            }
            OpCode::Pong => Ok(Step::Deliver(Message::Pong(payload))),
            OpCode::Close => {
                let frame = CloseFrame::parse(payload).map_err(|e| match e {
                    super::close::ClosePayloadError::OneByte => ProtocolError::ClosePayloadTooShort,
                    super::close::ClosePayloadError::InvalidCode(c) => {
                        ProtocolError::InvalidCloseCode(c.0)
                    }
                    super::close::ClosePayloadError::InvalidReason(_) => ProtocolError::InvalidUtf8,
                })?;
                self.close_received = true;
                if !self.close_sent {
                    // §5.5.1: "If an endpoint receives a Close frame and did
                    // not previously send a Close frame, the endpoint MUST
                    // send a Close frame in response. (When sending a Close
                    // frame in response, the endpoint typically echos the
                    // status code it received.)" We echo the code, not the
                    // reason.
                    let reply = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                    self.queue_close(reply.as_ref());
                }
                self.transition(Input::ReceiveClose);
                Ok(Step::Deliver(Message::Close(frame)))
            }
            OpCode::Text | OpCode::Binary if header.fin && !header.rsv1 => {
                let text = header.opcode == OpCode::Text;
                Ok(Step::Deliver(self.complete(text, payload)?))
            }
            OpCode::Text | OpCode::Binary => {
                let mut message = InMessage {
                    text: header.opcode == OpCode::Text,
                    buf: BytesMut::new(),
                    fragments: 1,
                    wire_len: payload.len(),
                    compressed: header.rsv1,
                };
                // A single-frame message gets here only when compressed.
                self.take_payload(&mut message, &payload, header.fin)?;
                self.deliver_or_gather(message, header.fin)
            }
            OpCode::Continuation => {
                let Some(mut message) = self.message.take() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                message.wire_len += payload.len();
                message.fragments += 1;
                self.take_payload(&mut message, &payload, header.fin)?;
                self.deliver_or_gather(message, header.fin)
            }
        }
    }

    /// The message is whole after its last frame (`fin`); until then it
    /// waits for its continuations (§5.4).
    fn deliver_or_gather(&mut self, message: InMessage, fin: bool) -> Result<Step, ProtocolError> {
        if fin {
            Ok(Step::Deliver(
                self.complete(message.text, message.buf.freeze())?,
            ))
        } else {
            self.message = Some(message);
            Ok(Step::Continue)
        }
    }

    /// Adds one frame's payload to the message being gathered: as it is, or
    /// inflated (RFC 7692 §7.2.2), text checked as it comes out.
    fn take_payload(
        &mut self,
        message: &mut InMessage,
        payload: &[u8],
        fin: bool,
    ) -> Result<(), ProtocolError> {
        if !message.compressed {
            message.buf.extend_from_slice(payload);
            return Ok(());
        }
        #[cfg(feature = "deflate")]
        if let Some(codec) = self.deflate.as_deref_mut() {
            let start = message.buf.len();
            let limit = self.config.max_message_size;
            let inflated = codec
                .rx
                .decompress(payload, &mut message.buf, limit)
                .and_then(|()| {
                    if fin {
                        codec.rx.finish(&mut message.buf, limit)
                    } else {
                        Ok(())
                    }
                });
            match inflated {
                Ok(()) => {}
                Err(InflateError::TooLarge) => return Err(ProtocolError::MessageTooLarge),
                Err(InflateError::Corrupt) => return Err(ProtocolError::InvalidCompressedData),
            }
            if message.text {
                let fresh = message.buf.get(start..).unwrap_or_default();
                self.rx_utf8
                    .feed(fresh)
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            return Ok(());
        }
        // `check_header` lets RSV1 through only with deflate negotiated.
        let _ = fin;
        Err(ProtocolError::ReservedBitsSet)
    }

    /// A whole message has arrived; text was validated on the way in, so
    /// all that is left is a code point cut off at the end.
    fn complete(&mut self, text: bool, payload: Bytes) -> Result<Message, ProtocolError> {
        if text {
            self.rx_utf8
                .finish()
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Message::Text(Utf8Bytes::from_validated(payload)))
        } else {
            Ok(Message::Binary(payload))
        }
    }

    /// §7.1.7, _Fail the WebSocket Connection_: "the endpoint MUST
    /// _Close the WebSocket Connection_, and MAY report the problem to the
    /// user ... an endpoint SHOULD first send a Close frame with an
    /// appropriate status code" and §7.1.7 again, it "MUST NOT continue to
    /// attempt to process data (including a responding Close frame) from the
    /// remote endpoint".
    fn fail(&mut self, e: ProtocolError) {
        if !self.close_sent {
            self.queue_close(Some(&CloseFrame {
                code: e.close_code(),
                reason: Utf8Bytes::from_static(e.reason()),
            }));
        }
        self.rbuf.clear();
        self.frame = None;
        self.message = None;
        self.transition(Input::Fail);
        self.failure = Some(Error::Protocol(e));
    }

    /// Every state change, in one place (the module doc's table).
    fn transition(&mut self, input: Input) {
        self.state = match (self.state, input) {
            (State::Open, Input::SendClose) => State::Closing,
            (State::Open | State::Closing, Input::ReceiveClose) => State::Closed,
            // `close` refuses a second Close before it gets here; were one
            // to arrive, we would still be waiting for the peer's.
            (State::Closing, Input::SendClose) => State::Closing,
            (_, Input::Fail | Input::Eof) => State::Closed,
            (State::Closed, _) => State::Closed,
        };
    }

    // --- commands --------------------------------------------------------

    fn check_can_send(&self) -> Result<(), Error> {
        // §5.5.1: "After sending a Close frame, the application MUST NOT
        // send any more data frames."
        if self.close_sent || self.state == State::Closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Queues a message: text, binary, ping, pong, or close.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        match message {
            Message::Text(text) => self.send_text(text),
            Message::Binary(data) => self.send_binary(data),
            Message::Ping(payload) => self.send_ping(payload),
            Message::Pong(payload) => self.send_pong(payload),
            Message::Close(frame) => self.close(frame),
        }
    }

    /// Queues a text message (split at [`Config::fragment_size`], if set).
    pub fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), Error> {
        self.send_message(OpCode::Text, text.into().into_bytes())
    }

    /// Queues a binary message (split at [`Config::fragment_size`], if set).
    pub fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.send_message(OpCode::Binary, data.into())
    }

    fn send_message(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), Error> {
        self.check_can_send()?;
        if self.tx_message.is_some() {
            return Err(Error::FragmentedMessageInProgress);
        }
        let (payload, mut rsv1) = self.compress_message(payload)?;
        match self.config.fragment_size {
            Some(size) if size > 0 && payload.len() > size => {
                // §5.4: the first frame carries the opcode, the rest are
                // continuations, and only the last has FIN. RFC 7692 §6.1:
                // RSV1 goes on the first frame only.
                let mut rest = payload;
                let mut op = opcode;
                while rest.len() > size {
                    let piece = rest.split_to(size);
                    self.queue_data_frame(op, false, rsv1, piece);
                    op = OpCode::Continuation;
                    rsv1 = false;
                }
                self.queue_data_frame(op, true, rsv1, rest);
            }
            _ => self.queue_data_frame(opcode, true, rsv1, payload),
        }
        Ok(())
    }

    /// A whole message's payload as it goes on the wire, and whether it is
    /// compressed (RFC 7692 §7.2.1): with deflate negotiated, messages of
    /// at least the threshold are.
    fn compress_message(&mut self, payload: Bytes) -> Result<(Bytes, bool), Error> {
        #[cfg(feature = "deflate")]
        if let Some(codec) = self.deflate.as_deref_mut()
            && codec.should_compress(payload.len())
        {
            let compressed = codec
                .tx
                .compress(&payload, true)
                .map_err(|_| Error::CompressionFailed)?;
            return Ok((compressed, true));
        }
        Ok((payload, false))
    }

    /// Queues one fragment of a text message (§5.4): the first call starts
    /// the message, the call with `fin` ends it. Fragments may split a code
    /// point; all of them together must be UTF-8, or this returns
    /// [`Error::InvalidUtf8Sent`] and queues nothing.
    pub fn send_text_fragment(
        &mut self,
        payload: impl Into<Bytes>,
        fin: bool,
    ) -> Result<(), Error> {
        self.send_fragment(true, payload.into(), fin)
    }

    /// Queues one fragment of a binary message (§5.4).
    pub fn send_binary_fragment(
        &mut self,
        payload: impl Into<Bytes>,
        fin: bool,
    ) -> Result<(), Error> {
        self.send_fragment(false, payload.into(), fin)
    }

    fn send_fragment(&mut self, text: bool, payload: Bytes, fin: bool) -> Result<(), Error> {
        self.check_can_send()?;
        let opcode = match self.tx_message {
            None if text => OpCode::Text,
            None => OpCode::Binary,
            Some(t) if t == text => OpCode::Continuation,
            Some(_) => return Err(Error::NoFragmentedMessage),
        };
        if text {
            let mut validator = self.tx_utf8.clone();
            validator
                .feed(&payload)
                .map_err(|_| Error::InvalidUtf8Sent)?;
            if fin {
                validator.finish().map_err(|_| Error::InvalidUtf8Sent)?;
            }
            self.tx_utf8 = validator;
        }
        let (payload, rsv1) = self.compress_fragment(opcode, payload, fin)?;
        self.tx_message = if fin { None } else { Some(text) };
        self.queue_data_frame(opcode, fin, rsv1, payload);
        Ok(())
    }

    /// One fragment's payload as it goes on the wire, and its RSV1. With
    /// deflate negotiated, a message sent in fragments is compressed
    /// whatever its size (it is not known at the first fragment), each
    /// fragment with a sync flush so that it leaves at once.
    fn compress_fragment(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        fin: bool,
    ) -> Result<(Bytes, bool), Error> {
        #[cfg(feature = "deflate")]
        // Whether this side can compress is fixed by the agreement, so every
        // fragment of a message makes the same choice as its first.
        if let Some(codec) = self.deflate.as_deref_mut()
            && codec.tx.can_compress()
        {
            let compressed = codec
                .tx
                .compress(&payload, fin)
                .map_err(|_| Error::CompressionFailed)?;
            return Ok((compressed, opcode != OpCode::Continuation));
        }
        let _ = (opcode, fin);
        Ok((payload, false))
    }

    /// Queues a Ping (§5.5.2) with at most 125 bytes of payload.
    pub fn send_ping(&mut self, payload: impl Into<Bytes>) -> Result<(), Error> {
        self.send_control(OpCode::Ping, payload.into())
    }

    /// Queues an unsolicited Pong (§5.5.3: "A Pong frame MAY be sent
    /// unsolicited. This serves as a unidirectional heartbeat.").
    pub fn send_pong(&mut self, payload: impl Into<Bytes>) -> Result<(), Error> {
        self.send_control(OpCode::Pong, payload.into())
    }

    fn send_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), Error> {
        self.check_can_send()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::ControlPayloadTooLong);
        }
        self.queue_frame(opcode, true, payload);
        Ok(())
    }

    /// Starts the close handshake (§7.1.2): queues a Close frame, with a
    /// status code and reason or (`None`) without. Nothing may be sent after
    /// it; messages may still arrive until the peer's Close does.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.check_can_send()?;
        if frame
            .as_ref()
            .is_some_and(|f| f.reason.len() > MAX_REASON_LEN)
        {
            return Err(Error::ControlPayloadTooLong);
        }
        self.queue_close(frame.as_ref());
        self.transition(Input::SendClose);
        Ok(())
    }

    /// Queues a frame prepared once for many connections (servers only:
    /// it is unmasked).
    pub fn send_prepared(&mut self, frame: &PreparedFrame) -> Result<(), Error> {
        if self.role == Role::Client {
            return Err(Error::PreparedFrameFromClient);
        }
        self.check_can_send()?;
        if self.tx_message.is_some() {
            return Err(Error::FragmentedMessageInProgress);
        }
        #[cfg(feature = "deflate")]
        if let (Some(codec), Some((bytes, bits))) = (self.deflate.as_deref_mut(), &frame.deflated)
            && codec.tx.can_compress()
            && *bits <= codec.tx.window_bits()
        {
            // The peer's window now holds a message our compressor did not
            // write: its next message must not refer back past it.
            codec.tx.reset();
            self.out.push(bytes.clone());
            return Ok(());
        }
        self.out.push(frame.plain.clone());
        Ok(())
    }

    fn queue_close(&mut self, frame: Option<&CloseFrame>) {
        let mut payload = BytesMut::new();
        if let Some(frame) = frame {
            frame.encode(&mut payload);
        }
        // A Pong owed from before goes out first; none may follow the Close.
        if let Some(pong) = self.out.pong.take() {
            self.queue_frame(OpCode::Pong, true, pong);
        }
        self.queue_frame(OpCode::Close, true, payload.freeze());
        self.close_sent = true;
    }

    /// Encodes one frame at the tail of the output: unmasked for a server;
    /// for a client, masked with a fresh key (§5.3), which means copying.
    fn queue_frame(&mut self, opcode: OpCode, fin: bool, payload: Bytes) {
        self.queue_data_frame(opcode, fin, false, payload);
    }

    /// As `queue_frame`, with RSV1 ("Per-Message Compressed", RFC 7692 §6)
    /// set on the first frame of a compressed message.
    fn queue_data_frame(&mut self, opcode: OpCode, fin: bool, rsv1: bool, payload: Bytes) {
        let mut header = FrameHeader::new(opcode, payload.len() as u64);
        header.fin = fin;
        header.rsv1 = rsv1;
        match self.role {
            Role::Server if payload.len() > INLINE_PAYLOAD_MAX => {
                header.encode(&mut self.out.buf);
                self.out.push(payload);
            }
            Role::Server => {
                header.encode(&mut self.out.buf);
                self.out.buf.extend_from_slice(&payload);
            }
            Role::Client => {
                let key = self
                    .rng
                    .get_or_insert_with(MaskRng::from_entropy)
                    .mask_key();
                header.mask = Some(key);
                header.encode(&mut self.out.buf);
                let start = self.out.buf.len();
                self.out.buf.extend_from_slice(&payload);
                if let Some(tail) = self.out.buf.get_mut(start..) {
                    apply_mask(tail, key, 0);
                }
            }
        }
    }

    // --- output ----------------------------------------------------------

    /// The next chunk of bytes to write, or `None` when all is written.
    /// Chunks must be written in the order returned; a chunk may be a part
    /// of a frame, a frame, or several.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if let Some(pong) = self.out.pong.take() {
            self.queue_frame(OpCode::Pong, true, pong);
        }
        self.out.pop()
    }

    /// Releases the memory of empty buffers, for an idle connection. The
    /// next read or send allocates again.
    pub fn shrink_buffers(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.out.buf.is_empty() {
            self.out.buf = BytesMut::new();
        }
        if self.out.queue.is_empty() {
            self.out.queue = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests;
