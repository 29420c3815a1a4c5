//! Writing: commands in, bytes out (RFC 6455 §5.3–§5.5, §7.1.2).
//!
//! Every `send_*` and [`close`](Connection::close) encodes its frames at
//! the tail of the output at once (masked for a client, §5.3; compressed
//! if negotiated, RFC 7692 §7.2.1); [`poll_transmit`](Connection::poll_transmit)
//! hands the bytes out in order. A frame encoded once for a broadcast is a
//! [`PreparedFrame`].

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::{Connection, DataKind, Direction, Message, State};
use crate::proto::close::{CloseFrame, MAX_REASON_LEN};
use crate::proto::config::DeflateConfig;
use crate::proto::deflate;
use crate::proto::error::Error;
use crate::proto::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, OpCode};
use crate::proto::mask::apply_mask;
use crate::proto::rng::MaskRng;
use crate::proto::role::Role;
use crate::proto::utf8::Utf8Bytes;

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
    /// The compressed frame, and the window it was compressed with; never
    /// in a build without the `deflate` feature.
    deflated: Option<(Bytes, u8)>,
}

impl PreparedFrame {
    /// A text message in one frame.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::new(OpCode::Text, text.into().as_bytes(), None)
    }

    /// A binary message in one frame.
    pub fn binary(data: impl AsRef<[u8]>) -> Self {
        Self::new(OpCode::Binary, data.as_ref(), None)
    }

    /// A text message in one frame, also compressed once (RFC 7692 §7.2.1)
    /// with the level and window of `config` if it is at least
    /// `config.threshold` bytes long (and the build has feature `deflate`).
    pub fn text_deflated(text: impl Into<Utf8Bytes>, config: &DeflateConfig) -> Self {
        Self::new(OpCode::Text, text.into().as_bytes(), Some(config))
    }

    fn new(opcode: OpCode, payload: &[u8], deflate: Option<&DeflateConfig>) -> Self {
        let compressed = deflate.and_then(|config| deflate::compress_once(payload, config));
        let deflated = compressed.map(|(compressed, bits)| {
            // RFC 7692 §6: RSV1 marks the message compressed.
            let mut header = FrameHeader::new(opcode, compressed.len() as u64);
            header.rsv1 = true;
            (encode_frame(header, &compressed), bits)
        });
        Self {
            plain: encode_frame(FrameHeader::new(opcode, payload.len() as u64), payload),
            deflated,
        }
    }

    /// The frame's bytes on the wire, uncompressed.
    pub fn as_bytes(&self) -> &Bytes {
        &self.plain
    }

    /// The compressed frame's bytes on the wire, if there is one.
    pub fn deflated_bytes(&self) -> Option<&Bytes> {
        self.deflated.as_ref().map(|(bytes, _)| bytes)
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

impl Connection {
    // --- commands --------------------------------------------------------

    fn check_can_send(&self) -> Result<(), Error> {
        // §5.5.1: "After sending a Close frame, the application MUST NOT
        // send any more data frames." Only OPEN sends: CLOSING means our
        // Close is out, CLOSED that the connection is over.
        if self.state() != State::Open {
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

    /// Queues a text message (split at [`Config::fragment_size`](crate::proto::Config::fragment_size), if set).
    pub fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), Error> {
        self.send_message(DataKind::Text, text.into().into_bytes())
    }

    /// Queues a binary message (split at [`Config::fragment_size`](crate::proto::Config::fragment_size), if set).
    pub fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.send_message(DataKind::Binary, data.into())
    }

    fn send_message(&mut self, kind: DataKind, payload: Bytes) -> Result<(), Error> {
        self.check_can_send()?;
        if self.tx_message.is_some() {
            return Err(Error::FragmentedMessageInProgress);
        }
        // The frame record shows a compressed message's plain bytes: kept
        // (a reference, not a copy) only while a ring is.
        let plain = self.ring.is_some().then(|| payload.clone());
        let (payload, mut rsv1) = self.deflate.compress_message(payload)?;
        let mut plain = plain.filter(|_| rsv1);
        match self.config.fragment_size {
            Some(size) if size > 0 && payload.len() > size => {
                // §5.4: the first frame carries the opcode, the rest are
                // continuations, and only the last has FIN. RFC 7692 §6.1:
                // RSV1 goes on the first frame only.
                let mut rest = payload;
                let mut op = kind.opcode();
                while rest.len() > size {
                    let piece = rest.split_to(size);
                    self.queue_frame(op, false, rsv1, piece, plain.take().as_deref());
                    op = OpCode::Continuation;
                    rsv1 = false;
                }
                self.queue_frame(op, true, rsv1, rest, plain.as_deref());
            }
            _ => self.queue_frame(kind.opcode(), true, rsv1, payload, plain.as_deref()),
        }
        Ok(())
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
        self.send_fragment(DataKind::Text, payload.into(), fin)
    }

    /// Queues one fragment of a binary message (§5.4).
    pub fn send_binary_fragment(
        &mut self,
        payload: impl Into<Bytes>,
        fin: bool,
    ) -> Result<(), Error> {
        self.send_fragment(DataKind::Binary, payload.into(), fin)
    }

    fn send_fragment(&mut self, kind: DataKind, payload: Bytes, fin: bool) -> Result<(), Error> {
        self.check_can_send()?;
        let opcode = match self.tx_message {
            None => kind.opcode(),
            Some(sending) if sending == kind => OpCode::Continuation,
            Some(_) => return Err(Error::NoFragmentedMessage),
        };
        if kind == DataKind::Text {
            let mut validator = self.tx_utf8.clone();
            validator
                .feed(&payload)
                .map_err(|_| Error::InvalidUtf8Sent)?;
            if fin {
                validator.finish().map_err(|_| Error::InvalidUtf8Sent)?;
            }
            self.tx_utf8 = validator;
        }
        let first = opcode != OpCode::Continuation;
        let plain = self.ring.is_some().then(|| payload.clone());
        let (payload, rsv1) = self.deflate.compress_fragment(payload, first, fin)?;
        // Each fragment is compressed by itself (RSV1 on the first only),
        // so its plain bytes are this frame's; one not compressed comes
        // back as it went in.
        let plain = plain.filter(|p| p.as_ptr() != payload.as_ptr() || p.len() != payload.len());
        self.tx_message = if fin { None } else { Some(kind) };
        self.queue_frame(opcode, fin, rsv1, payload, plain.as_deref());
        Ok(())
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
        self.queue_frame(opcode, true, false, payload, None);
        Ok(())
    }

    /// Starts the close handshake (§7.1.2): queues a Close frame, with a
    /// status code and reason or (`None`) without. Nothing may be sent after
    /// it; messages may still arrive until the peer's Close does.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.check_can_send()?;
        if let Some(f) = &frame
            && f.reason.len() > MAX_REASON_LEN
        {
            return Err(Error::ControlPayloadTooLong);
        }
        self.queue_close(frame.as_ref());
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
        let (bytes, plain) = match &frame.deflated {
            Some((bytes, bits)) if self.deflate.take_prepared(*bits) => (bytes, Some(&frame.plain)),
            _ => (&frame.plain, None),
        };
        if let Some(ring) = &mut self.ring {
            ring.push_encoded(bytes, plain.map(|p| &p[..]));
        }
        self.out.push(bytes.clone());
        Ok(())
    }

    pub(super) fn queue_close(&mut self, frame: Option<&CloseFrame>) {
        let mut payload = BytesMut::new();
        if let Some(frame) = frame {
            frame.encode(&mut payload);
        }
        // A Pong owed from before goes out first; none may follow the Close.
        self.queue_pong();
        self.queue_frame(OpCode::Close, true, false, payload.freeze(), None);
        self.close_sent = true;
    }

    /// Encodes one frame at the tail of the output: unmasked for a server;
    /// for a client, masked with a fresh key (§5.3), which means copying.
    /// RSV1 ("Per-Message Compressed", RFC 7692 §6) is set on the first
    /// frame of a compressed message. `plain`, for the frame record only:
    /// the uncompressed bytes of a compressed frame, when known.
    fn queue_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        payload: Bytes,
        plain: Option<&[u8]>,
    ) {
        let mut header = FrameHeader::new(opcode, payload.len() as u64);
        header.fin = fin;
        header.rsv1 = rsv1;
        if self.ring.is_some() {
            if self.role == Role::Client {
                // The key is drawn now so that the record shows it.
                header.mask = Some(self.mask_key());
            }
            match plain {
                Some(plain) => {
                    self.record(Direction::Sent, header, plain, Some(plain.len() as u64));
                }
                None => self.record(Direction::Sent, header, &payload, None),
            }
        }
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
                let key = match header.mask {
                    Some(key) => key,
                    None => self.mask_key(),
                };
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

    /// A fresh masking key (§5.3), from a stream seeded on first use.
    fn mask_key(&mut self) -> [u8; 4] {
        self.rng
            .get_or_insert_with(|| Box::new(MaskRng::from_entropy()))
            .mask_key()
    }

    // --- output ----------------------------------------------------------

    /// The next chunk of bytes to write, or `None` when all is written.
    /// Chunks must be written in the order returned; a chunk may be a part
    /// of a frame, a frame, or several.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.queue_pong();
        self.out.pop()
    }

    /// Encodes the Pong owed for the latest Ping (§5.5.3), if one is owed.
    fn queue_pong(&mut self) {
        if let Some(pong) = self.out.pong.take() {
            self.queue_frame(OpCode::Pong, true, false, pong, None);
        }
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
