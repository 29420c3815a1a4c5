//! Issue 22's frame inspector, the server's half: a `wire` request turns
//! the recording of the connection's own frames on or off
//! (`proto::observe`), and while it is on, `wire` events carry the records
//! to the page in batches (`docs/PROTOCOL.md`, "The wire panel").
//!
//! Nothing is kept for a connection that did not ask: its `Connection`
//! holds a null pointer where the ring would be. Everything is bounded:
//! [`WIRE_FRAMES`] records in the ring (older ones are dropped and
//! counted), [`WIRE_KEEP`] payload bytes each, and a batch is queued only
//! when it fits under the outbox's bound beside what waits there (the
//! records wait in the ring meanwhile).
//!
//! The frames that carry the inspector's own traffic (its `wire` requests
//! and the `wire` events) would otherwise be recorded, sent in a batch
//! that is itself recorded, and so on for ever: they are left out of the
//! batches, and counted (`skipped`), so the panel says how many.

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::proto::{Direction, FrameRecord, FrameRing, OpCode};
use crate::transport::trace::{close_code_meaning, hex_word};

/// The most frames a connection's ring holds between two batches.
pub const WIRE_FRAMES: usize = 64;
/// The most payload bytes kept (and sent) per frame.
pub const WIRE_KEEP: usize = 256;
/// How every frame of the inspector's own traffic begins: its requests,
/// and the events that carry its records (`type` comes first in both:
/// the page writes it so, and serde writes the tag first).
const OWN: &[u8] = br#"{"type":"wire""#;

/// A `wire` event.
#[derive(Serialize)]
struct WireEvent<'a> {
    r#type: &'static str,
    /// Whether the connection is recording.
    on: bool,
    /// The frames recorded since the last batch, oldest first.
    frames: &'a [WireFrame],
    /// Frames recorded and pushed out of the ring before they could be
    /// sent, since recording began.
    dropped: u64,
    /// Frames of the inspector's own traffic left out of this batch.
    skipped: u64,
    /// [`WIRE_KEEP`]: the most payload bytes a frame shows.
    keep: usize,
}

/// One recorded frame on the wire (`docs/PROTOCOL.md` has each field).
#[derive(Serialize)]
struct WireFrame {
    seq: u64,
    /// `"in"`: from the client; `"out"`: to it.
    dir: &'static str,
    fin: bool,
    rsv1: bool,
    rsv2: bool,
    rsv3: bool,
    /// The 4-bit value, and its name.
    opcode: u8,
    op: &'static str,
    mask: bool,
    /// The masking key in hex, when MASK is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// The payload length on the wire, and how the header encodes it.
    len: u64,
    len_encoding: &'static str,
    header_len: usize,
    /// A compressed frame's inflated size (RFC 7692).
    #[serde(skip_serializing_if = "Option::is_none")]
    inflated: Option<u64>,
    /// The payload's first bytes, unmasked and inflated: as text (UTF-8,
    /// lossy), or hex for binary data.
    payload: String,
    /// `"text"` or `"hex"`.
    payload_format: &'static str,
    /// How many payload bytes `payload` holds, and how many there are.
    kept: usize,
    total: u64,
    /// A Close frame's status code, its meaning and reason (§5.5.1,
    /// §7.4.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    close: Option<WireClose>,
}

#[derive(Serialize)]
struct WireClose {
    /// Absent when the Close carried no status code.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    meaning: &'static str,
    reason: String,
}

impl WireFrame {
    fn of(r: &FrameRecord, binary: bool) -> Self {
        let h = &r.header;
        let hex_payload = binary || h.opcode == OpCode::Close;
        Self {
            seq: r.seq,
            dir: match r.direction {
                Direction::Received => "in",
                Direction::Sent => "out",
            },
            fin: h.fin,
            rsv1: h.rsv1,
            rsv2: h.rsv2,
            rsv3: h.rsv3,
            opcode: h.opcode.as_u8(),
            op: h.opcode.name(),
            mask: h.mask.is_some(),
            key: h.mask.as_ref().map(|k| hex_word(k)),
            len: h.payload_len,
            len_encoding: r.length_encoding().name(),
            header_len: r.header_len(),
            inflated: r.inflated_len,
            payload: if hex_payload {
                hex_word(&r.payload)
            } else {
                String::from_utf8_lossy(&r.payload).into_owned()
            },
            payload_format: if hex_payload { "hex" } else { "text" },
            kept: r.payload.len(),
            total: r.payload_total,
            close: (h.opcode == OpCode::Close).then(|| close(&r.payload)),
        }
    }
}

/// §5.5.1: a Close body is empty, or a code and a UTF-8 reason.
///
/// Not `CloseFrame::parse`: that one refuses what the RFC refuses (a
/// reserved code, a reason that is not UTF-8), and the panel must show
/// whatever was on the wire, including a payload the ring kept only the
/// start of (which may end inside a UTF-8 sequence).
fn close(body: &[u8]) -> WireClose {
    match body {
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            WireClose {
                code: Some(code),
                meaning: close_code_meaning(code),
                reason: String::from_utf8_lossy(reason).into_owned(),
            }
        }
        _ => WireClose {
            code: None,
            meaning: "no status code",
            reason: String::new(),
        },
    }
}

/// Whether a record is of the inspector's own traffic: an event we wrote
/// (`type` first), or a request of type `wire`, whatever the order of its
/// fields (one is short enough to be kept whole).
fn is_own(r: &FrameRecord) -> bool {
    if r.payload.starts_with(OWN) {
        return true;
    }
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        r#type: &'a str,
    }
    r.direction == Direction::Received
        && r.payload.len() as u64 == r.payload_total
        && r.payload.windows(6).any(|w| w == b"\"wire\"")
        && serde_json::from_slice::<Typed<'_>>(&r.payload).is_ok_and(|t| t.r#type == "wire")
}

/// The `wire` event for `records`: those of the inspector's own traffic
/// left out and counted. A continuation frame shows as text or hex as the
/// message it continues did, when that message began in the same batch.
/// Also how many frames it shows.
fn event<'r>(
    records: impl Iterator<Item = &'r FrameRecord>,
    on: bool,
    dropped: u64,
) -> (String, usize) {
    let mut skipped = 0;
    let mut frames = Vec::new();
    // Per direction (received, sent): the data message under way is binary.
    let mut binary = [false; 2];
    for r in records {
        let side = usize::from(r.direction == Direction::Sent);
        match r.header.opcode {
            OpCode::Text => binary[side] = false,
            OpCode::Binary => binary[side] = true,
            _ => {}
        }
        if is_own(r) {
            skipped += 1;
            continue;
        }
        let is_binary = match r.header.opcode {
            OpCode::Continuation => binary[side],
            op => op == OpCode::Binary,
        };
        frames.push(WireFrame::of(r, is_binary));
    }
    let event = WireEvent {
        r#type: "wire",
        on,
        frames: &frames,
        dropped,
        skipped,
        keep: WIRE_KEEP,
    };
    (
        serde_json::to_string(&event).unwrap_or_default(),
        frames.len(),
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// `wire {on}`: starts or stops recording (asked again, keeps what it
    /// does), and says so with a `wire` event (no frames).
    pub(super) fn wire(&mut self, on: bool) {
        let was = self.ws.connection().frame_ring().is_some();
        if on && !was {
            let ring = FrameRing::new(WIRE_FRAMES, WIRE_KEEP);
            self.ws.set_frame_ring(Some(Box::new(ring)));
            self.hub.metrics.wire_connections.inc();
        } else if !on && was {
            self.ws.set_frame_ring(None);
            self.hub.metrics.wire_connections.dec();
        }
        let (json, _) = event([].iter(), on, 0);
        self.reply_json(json);
    }

    /// While recording: sends what was recorded since the last batch, if
    /// anything but the inspector's own frames was, and if the batch fits
    /// under the outbox's bound (else the records wait in the ring, where
    /// the oldest make way and are counted).
    pub(super) fn push_wire(&mut self) {
        let Some(ring) = self.ws.frame_ring_mut() else {
            return;
        };
        let (json, shown) = event(ring.records(), true, ring.dropped());
        if shown == 0 {
            // Only our own frames: not answered, so that they make no
            // more. They wait to be counted in the next batch; each batch
            // leaves one (the frame that carried it), so they never pile up.
            return;
        }
        let outbox = &self.client.outbox;
        if outbox.len() + json.len() > outbox.limit() {
            // No room now: the records wait in the ring.
            return;
        }
        ring.clear();
        self.reply_json(json);
    }

    /// The connection ends: it no longer counts as recording.
    pub(super) fn wire_end(&mut self) {
        if self.ws.set_frame_ring(None).is_some() {
            self.hub.metrics.wire_connections.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::FrameHeader;

    fn record(seq: u64, direction: Direction, opcode: OpCode, payload: &[u8]) -> FrameRecord {
        let mut header = FrameHeader::new(opcode, payload.len() as u64);
        if direction == Direction::Received {
            header.mask = Some([0x37, 0xfa, 0x21, 0x3d]);
        }
        FrameRecord {
            seq,
            direction,
            header,
            inflated_len: None,
            payload: payload.to_vec(),
            payload_total: payload.len() as u64,
        }
    }

    fn frames(json: &str) -> serde_json::Value {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_masked_text_frame_shows_its_key_and_encoding() {
        let r = record(3, Direction::Received, OpCode::Text, b"Hello");
        let v = frames(&event([r].iter(), true, 0).0);
        let f = &v["frames"][0];
        assert_eq!(v["type"], "wire");
        assert_eq!(f["dir"], "in");
        assert_eq!(f["op"], "text");
        assert_eq!(f["opcode"], 1);
        assert_eq!(f["mask"], true);
        assert_eq!(f["key"], "37fa213d");
        assert_eq!(f["len_encoding"], "7-bit");
        assert_eq!(f["header_len"], 6);
        assert_eq!(f["payload"], "Hello");
        assert_eq!(f["payload_format"], "text");
    }

    #[test]
    fn the_inspectors_own_frames_are_skipped_and_counted() {
        let records = [
            record(
                0,
                Direction::Received,
                OpCode::Text,
                br#"{"on":true,"type":"wire"}"#,
            ),
            record(
                1,
                Direction::Sent,
                OpCode::Text,
                br#"{"type":"wire","on":true,"frames":[]}"#,
            ),
            record(
                2,
                Direction::Sent,
                OpCode::Text,
                br#"{"type":"msg","text":"{\"type\":\"wire\"}"}"#,
            ),
        ];
        let v = frames(&event(records.iter(), true, 7).0);
        assert_eq!(v["skipped"], 2);
        assert_eq!(v["dropped"], 7);
        assert_eq!(v["frames"].as_array().unwrap().len(), 1);
        assert_eq!(v["frames"][0]["seq"], 2);
    }

    #[test]
    fn a_close_shows_its_code_and_meaning_and_binary_shows_hex() {
        let records = [
            record(0, Direction::Sent, OpCode::Binary, &[0xde, 0xad]),
            record(1, Direction::Sent, OpCode::Continuation, &[0xbe, 0xef]),
            record(2, Direction::Received, OpCode::Close, b"\x03\xe9bye"),
        ];
        let v = frames(&event(records.iter(), true, 0).0);
        assert_eq!(v["frames"][0]["payload"], "dead");
        assert_eq!(
            v["frames"][1]["payload"], "beef",
            "continues a binary message"
        );
        let close = &v["frames"][2]["close"];
        assert_eq!(close["code"], 1001);
        assert_eq!(close["meaning"], "going away");
        assert_eq!(close["reason"], "bye");
    }
}
