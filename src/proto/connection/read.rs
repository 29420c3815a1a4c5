//! Reading: bytes in, messages out (RFC 6455 §5.2–§5.5, §7.1.5, §7.1.7).
//!
//! Input goes into the read buffer; [`poll_message`](Connection::poll_message)
//! parses frames from it lazily, checks each header against the rules that
//! need our role and history and against the limits before any payload is
//! buffered, unmasks and UTF-8-checks payloads as they arrive, gathers
//! fragments (§5.4), answers Pings and Closes, and fails the connection with
//! the right close code on the first broken rule.

use bytes::{Buf, Bytes, BytesMut};

use super::{Connection, DataKind, Direction, InFrame, InMessage, Message};
use crate::proto::close::CloseFrame;
use crate::proto::error::{Error, ProtocolError};
use crate::proto::frame::{FrameHeader, OpCode};
use crate::proto::mask::apply_mask;
use crate::proto::role::Role;
use crate::proto::utf8::Utf8Bytes;

/// What reading one frame produced.
enum Step {
    /// The buffer ends inside a frame.
    NeedMore,
    /// A frame was consumed and produced nothing to hand out (a fragment).
    Continue,
    /// A message or control frame for the caller.
    Deliver(Message),
}

impl Connection {
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
    pub(super) fn discarding(&self) -> bool {
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
                if frame.check_utf8 {
                    self.rx_utf8.feed(piece)?;
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
        let (kind, compressed) = match (header.opcode, &self.message) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(m)) => (Some(m.kind), m.compressed),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            // Length and FIN of control frames were checked by the parser
            // (§5.5).
            (opcode, _) => (DataKind::of(opcode), header.rsv1),
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
            check_utf8: kind == Some(DataKind::Text) && !compressed,
        })
    }

    fn on_frame(&mut self, header: FrameHeader, payload: Bytes) -> Result<Step, ProtocolError> {
        if header.opcode.is_control() {
            self.record(Direction::Received, header, &payload, None);
        }
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
                let frame = CloseFrame::parse(payload)?;
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
                Ok(Step::Deliver(Message::Close(frame)))
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                self.on_data_frame(header, payload)
            }
        }
    }

    /// A frame of a data message (§5.4): a whole message when it is the
    /// first and last frame and not compressed (the payload is handed out
    /// without a copy); otherwise added to the message being gathered, which
    /// is handed out after its frame with FIN.
    fn on_data_frame(
        &mut self,
        header: FrameHeader,
        payload: Bytes,
    ) -> Result<Step, ProtocolError> {
        let mut message = match (DataKind::of(header.opcode), self.message.take()) {
            (Some(kind), _) if header.fin && !header.rsv1 => {
                self.record(Direction::Received, header, &payload, None);
                return Ok(Step::Deliver(self.complete(kind, payload)?));
            }
            // A new message while one is gathered was refused by
            // `check_header` (§5.4), so nothing is dropped here.
            (Some(kind), _) => InMessage {
                kind,
                buf: BytesMut::new(),
                fragments: 0,
                wire_len: 0,
                compressed: header.rsv1,
            },
            (None, Some(message)) => message,
            // `check_header` lets no such continuation through.
            (None, None) => return Err(ProtocolError::UnexpectedContinuation),
        };
        message.wire_len += payload.len();
        message.fragments += 1;
        if message.compressed {
            // RFC 7692 §7.2.2: inflated as it comes, the text checked as it
            // comes out.
            let start = message.buf.len();
            let limit = self.config.max_message_size;
            self.deflate
                .inflate(&payload, &mut message.buf, header.fin, limit)?;
            let fresh = message.buf.get(start..).unwrap_or_default();
            // What this frame inflated to, for the frame record.
            self.record(Direction::Received, header, fresh, Some(fresh.len() as u64));
            if message.kind == DataKind::Text {
                self.rx_utf8.feed(fresh)?;
            }
        } else {
            self.record(Direction::Received, header, &payload, None);
            message.buf.extend_from_slice(&payload);
        }
        if !header.fin {
            self.message = Some(message);
            return Ok(Step::Continue);
        }
        Ok(Step::Deliver(
            self.complete(message.kind, message.buf.freeze())?,
        ))
    }

    /// A whole message has arrived; text was validated on the way in, so
    /// all that is left is a code point cut off at the end.
    fn complete(&mut self, kind: DataKind, payload: Bytes) -> Result<Message, ProtocolError> {
        match kind {
            DataKind::Text => {
                self.rx_utf8.finish()?;
                Ok(Message::Text(Utf8Bytes::from_validated(payload)))
            }
            DataKind::Binary => Ok(Message::Binary(payload)),
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
        self.failure = Some(Error::Protocol(e));
    }
}
