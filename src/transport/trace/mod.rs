//! A learner's Wireshark: a stream wrapper that prints every byte going in
//! and out, decoded: the opening handshake's two heads (RFC 6455 §4), then
//! one line per frame (§5.2).
//!
//! [`Traced`] wraps any `AsyncRead + AsyncWrite` and copies what passes
//! through it to a [`Trace`], which keeps one [`FrameLog`] per direction.
//! Each log prints its direction's HTTP head line by line, then decodes
//! frame headers with [`FrameHeader::parse`] and prints, per frame, FIN, the
//! RSV bits, the opcode, the mask, the length and what the payload says,
//! unmasked: text, a Close's status code with its meaning (§7.4.1) and
//! reason, or, for a message compressed with permessage-deflate (RFC 7692,
//! RSV1 on its first frame), how many bytes it inflates to. With
//! [`TraceMode::Hex`] (`rfc6455 client --trace=hex`) each frame's bytes
//! follow, the header's annotated field by field (`describe.rs`). With
//! [`TraceMode::Records`] nothing is printed: each head and frame is a
//! [`TraceEvent`] (`record.rs`), kept for [`Traced::take_events`], or
//! handed to a callback by [`Traced::with_events`], which is how
//! `rfc6455 client --trace=json` prints them as JSON.
//!
//! The tracer never changes a byte and never fails the connection: it
//! decodes on the side, and stops decoding (saying so) at the first header
//! that breaks §5.2.

mod describe;
mod record;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::proto::deflate::PERMESSAGE_DEFLATE;
use crate::proto::{FrameHeader, Header, OpCode, apply_mask, parse_extensions};
pub use describe::close_code_meaning;
// The chat's wire panel (src/chat/session/wire.rs) prints masking keys and
// payloads the way the tracer does.
#[cfg(feature = "chat")]
pub(crate) use describe::hex_word;
use describe::{HEX_MAX, Inflated, Seen};
pub use record::{Direction, FrameRecord, RECORD_MAX, TraceEvent};

/// Payload bytes kept unmasked per frame: all of a control frame's (at
/// most 125, §5.5), so that a Close can be decoded whole.
const KEEP: usize = 125;
/// The longest head printed; the handshake itself refuses one over 8 KiB
/// by default (`proto::Config::max_handshake_bytes`).
const MAX_HEAD: usize = 16 << 10;

/// How much a trace prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceMode {
    /// The heads, and one line per frame.
    Frames,
    /// As `Frames`, with each frame's bytes in hex, the header annotated.
    Hex,
    /// No lines: each head and frame as a [`TraceEvent`], for tools.
    Records,
}

/// Decodes one direction of a connection's bytes into printable lines.
#[derive(Debug)]
pub struct FrameLog {
    label: &'static str,
    mode: TraceMode,
    /// Still inside the HTTP head: its bytes so far (up to [`MAX_HEAD`]).
    head: Option<Vec<u8>>,
    /// This direction's head was a 101 response accepting permessage-deflate.
    accepts_deflate: bool,
    /// Header bytes not yet complete.
    pending: Vec<u8>,
    /// The frame whose payload is passing.
    current: Option<InFrame>,
    /// Inflates compressed messages, once permessage-deflate is agreed.
    inflate: Option<Inflate>,
    /// The data message in progress is compressed (RSV1 on its first
    /// frame, RFC 7692 §6).
    compressed: bool,
    /// The head was a response refusing the upgrade: what follows is an
    /// HTTP body, not frames.
    refused: bool,
    /// [`TraceMode::Records`]: what was seen, until taken.
    events: Vec<TraceEvent>,
}

#[derive(Debug)]
struct InFrame {
    header: FrameHeader,
    header_bytes: Vec<u8>,
    /// Payload bytes seen so far.
    seen: u64,
    /// The first [`HEX_MAX`] payload bytes as sent (hex mode only).
    wire: Vec<u8>,
    /// The first [`KEEP`] payload bytes, unmasked ([`RECORD_MAX`] in
    /// [`TraceMode::Records`]).
    clear: Vec<u8>,
    /// For a frame of a compressed message.
    inflated: Option<Inflated>,
}

impl FrameLog {
    /// A log whose lines start with `label` (e.g. `"<<"` for received).
    pub fn new(label: &'static str, mode: TraceMode) -> Self {
        Self {
            label,
            mode,
            head: Some(Vec::new()),
            accepts_deflate: false,
            pending: Vec::new(),
            current: None,
            inflate: None,
            compressed: false,
            refused: false,
            events: Vec::new(),
        }
    }

    /// [`TraceMode::Records`]: the heads, frames and notes seen since the
    /// last call, in order.
    pub fn take_events(&mut self) -> Vec<TraceEvent> {
        std::mem::take(&mut self.events)
    }

    /// Keeps what a line says as an event too, in [`TraceMode::Records`].
    fn note(&mut self, text: String, lines: &mut Vec<String>) {
        if self.mode == TraceMode::Records {
            self.events.push(TraceEvent::Note(text.clone()));
        }
        lines.push(format!("{} {text}", self.label));
    }

    /// Whether this direction's head accepted permessage-deflate: then
    /// both directions may carry compressed messages.
    pub fn accepts_deflate(&self) -> bool {
        self.accepts_deflate
    }

    /// Inflates compressed messages from now on, to show their size. A
    /// decompressor with the largest window (2^15) and context kept reads
    /// whatever the agreement was: a smaller window's output, or a message
    /// compressed from a fresh context, is valid input to it too.
    pub fn enable_inflate(&mut self) {
        if self.inflate.is_none() {
            self.inflate = Some(Inflate::new());
        }
    }

    /// Takes bytes passing in this direction; returns the lines they
    /// complete: head lines, then a line (or, in hex mode, a block) per
    /// frame. Lines for bad input say so and stop decoding.
    pub fn observe(&mut self, mut data: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        while !data.is_empty() && !self.refused {
            if let Some(head) = &mut self.head {
                let mut used = 0;
                let mut done = false;
                for &b in data {
                    used += 1;
                    if head.len() < MAX_HEAD {
                        head.push(b);
                    }
                    if head.ends_with(b"\r\n\r\n") {
                        done = true;
                        break;
                    }
                }
                data = &data[used..];
                if done || head.len() >= MAX_HEAD {
                    let head = self.head.take().unwrap_or_default();
                    self.head_lines(&head, done, &mut lines);
                }
                continue;
            }
            if self.current.is_some() {
                data = self.payload(data, &mut lines);
                continue;
            }
            self.pending.push(data[0]);
            data = &data[1..];
            match FrameHeader::parse(&self.pending) {
                Ok(None) => {}
                Ok(Some((header, _))) => self.start_frame(header, &mut lines),
                Err(e) => {
                    self.note(format!("invalid frame header: {e}"), &mut lines);
                    self.head = Some(Vec::new());
                    self.pending.clear();
                    return lines;
                }
            }
        }
        lines
    }

    /// Prints a head line by line and notes whether it accepted
    /// permessage-deflate (a `101` whose `Sec-WebSocket-Extensions` names
    /// it, RFC 7692 §5).
    fn head_lines(&mut self, head: &[u8], complete: bool, lines: &mut Vec<String>) {
        let text = String::from_utf8_lossy(head);
        let mut headers = Vec::new();
        let mut head_lines = Vec::new();
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            lines.push(format!("{} {line}", self.label));
            if self.mode == TraceMode::Records {
                head_lines.push(line.to_owned());
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push(Header {
                    name: name.trim().to_owned(),
                    value: value.trim().as_bytes().to_vec(),
                });
            }
        }
        if self.mode == TraceMode::Records {
            self.events.push(TraceEvent::Head(head_lines));
        }
        if !complete {
            self.note(
                format!("(head longer than {MAX_HEAD} bytes: the rest is not shown)"),
                lines,
            );
        }
        // §4.1: a status other than 101 is handled "per HTTP procedures":
        // no frames follow.
        self.refused = text.starts_with("HTTP/") && !text.starts_with("HTTP/1.1 101 ");
        if self.refused {
            self.note(
                "(no upgrade: what follows is not WebSocket frames)".to_owned(),
                lines,
            );
        }
        self.accepts_deflate = text.starts_with("HTTP/1.1 101 ")
            && parse_extensions(&headers).is_ok_and(|e| e.iter().any(|e| e.is(PERMESSAGE_DEFLATE)));
    }

    fn start_frame(&mut self, header: FrameHeader, lines: &mut Vec<String>) {
        let header_bytes = std::mem::take(&mut self.pending);
        let data = !header.opcode.is_control();
        if data && header.opcode != OpCode::Continuation {
            self.compressed = header.rsv1;
        }
        let compressed = data && self.compressed;
        self.current = Some(InFrame {
            header,
            header_bytes,
            seen: 0,
            wire: Vec::new(),
            clear: Vec::new(),
            inflated: compressed.then(|| Inflated {
                unknown: self.inflate.is_none(),
                ..Inflated::default()
            }),
        });
        if header.payload_len == 0 {
            self.end_frame(lines);
        }
    }

    /// Takes payload bytes of the current frame; returns what is left.
    fn payload<'a>(&mut self, data: &'a [u8], lines: &mut Vec<String>) -> &'a [u8] {
        let hex = self.mode == TraceMode::Hex;
        let keep = if self.mode == TraceMode::Records {
            RECORD_MAX
        } else {
            KEEP
        };
        let Some(frame) = &mut self.current else {
            return data;
        };
        let left = frame.header.payload_len - frame.seen;
        let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
        let piece = &data[..take];
        if hex && frame.wire.len() < HEX_MAX {
            let room = (HEX_MAX - frame.wire.len()).min(take);
            frame.wire.extend_from_slice(&piece[..room]);
        }
        let inflating = frame.inflated.as_ref().is_some_and(|i| !i.unknown);
        if frame.clear.len() < keep || inflating {
            let mut clear = piece.to_vec();
            if let Some(key) = frame.header.mask {
                // The key's phase continues from where the last piece ended.
                apply_mask(&mut clear, key, (frame.seen % 4) as usize);
            }
            let room = keep.saturating_sub(frame.clear.len()).min(take);
            frame.clear.extend_from_slice(&clear[..room]);
            if let (true, Some(inflate), Some(sink)) =
                (inflating, &mut self.inflate, &mut frame.inflated)
            {
                inflate.feed(&clear, false, sink);
            }
        }
        frame.seen += take as u64;
        if frame.seen == frame.header.payload_len {
            self.end_frame(lines);
        }
        &data[take..]
    }

    /// The current frame is complete: finish inflating a compressed
    /// message's last frame (§7.2.2: the `00 00 ff ff` tail goes back on)
    /// and print it.
    fn end_frame(&mut self, lines: &mut Vec<String>) {
        let Some(mut frame) = self.current.take() else {
            return;
        };
        if let (Some(inflate), Some(sink)) = (&mut self.inflate, &mut frame.inflated)
            && frame.header.fin
            && !sink.unknown
        {
            inflate.feed(&[], true, sink);
        }
        if frame.header.fin && !frame.header.opcode.is_control() {
            self.compressed = false;
        }
        if self.mode == TraceMode::Records {
            let inflated = frame.inflated.as_ref();
            self.events.push(TraceEvent::Frame(Box::new(FrameRecord {
                header: frame.header,
                header_len: frame.header_bytes.len(),
                payload: frame.clear,
                compressed: inflated.is_some(),
                inflated_len: inflated.filter(|i| !i.unknown).map(|i| i.len),
            })));
            return;
        }
        let seen = Seen {
            header: &frame.header,
            header_bytes: &frame.header_bytes,
            wire: &frame.wire,
            clear: &frame.clear,
            inflated: frame.inflated.as_ref(),
        };
        lines.push(describe::summary(self.label, &seen));
        if self.mode == TraceMode::Hex {
            for line in describe::hex_lines(&seen) {
                lines.push(format!("{}    {line}", self.label));
            }
        }
    }
}

/// One direction's decompressor (RFC 7692 §7.2.2), to count what a
/// compressed message inflates to.
#[cfg(feature = "deflate")]
#[derive(Debug)]
struct Inflate {
    codec: crate::proto::deflate::codec::Decompressor,
    out: bytes::BytesMut,
}

/// Each piece inflates into `out`, which is counted and emptied, so the
/// limit bounds one piece's output: 64 MiB, the default message limit.
#[cfg(feature = "deflate")]
const INFLATE_LIMIT: usize = 64 << 20;

#[cfg(feature = "deflate")]
impl Inflate {
    fn new() -> Self {
        Self {
            codec: crate::proto::deflate::codec::Decompressor::new(15, false),
            out: bytes::BytesMut::new(),
        }
    }

    fn feed(&mut self, piece: &[u8], last: bool, sink: &mut Inflated) {
        self.out.clear();
        let mut result = self.codec.decompress(piece, &mut self.out, INFLATE_LIMIT);
        if last && result.is_ok() {
            result = self.codec.finish(&mut self.out, INFLATE_LIMIT);
        }
        sink.add(&self.out);
        self.out.clear();
        if result.is_err() {
            // The stream is lost from here on; start afresh for the next.
            sink.unknown = true;
            *self = Self::new();
        }
    }
}

/// Without the `deflate` feature nothing is inflated: sizes are unknown.
#[cfg(not(feature = "deflate"))]
#[derive(Debug)]
struct Inflate;

#[cfg(not(feature = "deflate"))]
impl Inflate {
    fn new() -> Self {
        Self
    }

    fn feed(&mut self, _: &[u8], _: bool, sink: &mut Inflated) {
        sink.unknown = true;
    }
}

/// Both directions of one connection, seen from our end: `>>` what we
/// send, `<<` what we receive.
#[derive(Debug)]
pub struct Trace {
    sent: FrameLog,
    received: FrameLog,
}

impl Trace {
    /// A trace printing as much as `mode` says.
    pub fn new(mode: TraceMode) -> Self {
        Self {
            sent: FrameLog::new(">>", mode),
            received: FrameLog::new("<<", mode),
        }
    }

    /// Lines for bytes we sent.
    pub fn sent(&mut self, data: &[u8]) -> Vec<String> {
        let lines = self.sent.observe(data);
        self.agree();
        lines
    }

    /// Lines for bytes we received.
    pub fn received(&mut self, data: &[u8]) -> Vec<String> {
        let lines = self.received.observe(data);
        self.agree();
        lines
    }

    /// [`TraceMode::Records`]: what was seen since the last call, each
    /// direction in order (the two directions' relative order is that of
    /// the calls to [`sent`](Self::sent) and [`received`](Self::received)).
    pub fn take_events(&mut self) -> Vec<(Direction, TraceEvent)> {
        let sent = self.sent.take_events().into_iter();
        let received = self.received.take_events().into_iter();
        sent.map(|e| (Direction::Sent, e))
            .chain(received.map(|e| (Direction::Received, e)))
            .collect()
    }

    /// Once either head (the response) accepted permessage-deflate, both
    /// directions may be compressed.
    fn agree(&mut self) {
        if self.sent.accepts_deflate() || self.received.accepts_deflate() {
            self.sent.enable_inflate();
            self.received.enable_inflate();
        }
    }
}

/// A stream that prints the bytes passing through it to stderr, decoded,
/// or hands them to a callback as [`TraceEvent`]s
/// ([`with_events`](Self::with_events)).
#[derive(Debug)]
pub struct Traced<S> {
    inner: S,
    trace: Trace,
    /// Where events go in [`TraceMode::Records`] (`None`: kept until taken).
    sink: Option<EventSink>,
}

/// The callback of [`Traced::with_events`].
struct EventSink(Box<dyn FnMut(Direction, TraceEvent) + Send>);

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

impl<S> Traced<S> {
    /// Wraps `inner`, one line per frame; received bytes print as `<<`,
    /// sent ones as `>>`.
    pub fn new(inner: S) -> Self {
        Self::with_mode(inner, TraceMode::Frames)
    }

    /// Wraps `inner`, printing as much as `mode` says. In
    /// [`TraceMode::Records`] it prints nothing and keeps each head and
    /// frame until [`take_events`](Self::take_events) takes them (take
    /// them often: they are kept until then); [`with_events`](Self::with_events)
    /// hands them to a callback instead.
    pub fn with_mode(inner: S, mode: TraceMode) -> Self {
        Self {
            inner,
            trace: Trace::new(mode),
            sink: None,
        }
    }

    /// Wraps `inner`, printing nothing: each head and each whole frame,
    /// in either direction, is given to `on_event` as it completes.
    pub fn with_events(
        inner: S,
        on_event: impl FnMut(Direction, TraceEvent) + Send + 'static,
    ) -> Self {
        Self {
            inner,
            trace: Trace::new(TraceMode::Records),
            sink: Some(EventSink(Box::new(on_event))),
        }
    }

    /// [`TraceMode::Records`] (from [`with_mode`](Self::with_mode)): the
    /// heads and frames seen since the last call, as
    /// [`Trace::take_events`] gives them.
    pub fn take_events(&mut self) -> Vec<(Direction, TraceEvent)> {
        self.trace.take_events()
    }

    /// Prints `lines`, or hands the events over.
    fn emit(&mut self, lines: Vec<String>) {
        match &mut self.sink {
            Some(sink) => {
                for (direction, event) in self.trace.take_events() {
                    (sink.0)(direction, event);
                }
            }
            // In Records mode nothing is printed; the events stay in the
            // trace until taken.
            None if self.trace.sent.mode == TraceMode::Records => {}
            None => {
                for line in lines {
                    eprintln!("{line}");
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Traced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let lines = self.trace.received(&buf.filled()[before..]);
            self.emit(lines);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Traced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = result {
            let lines = self.trace.sent(&data[..n]);
            self.emit(lines);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
