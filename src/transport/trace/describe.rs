//! What the tracer prints about one frame: the summary line (§5.2's
//! fields) and, for `--trace=hex`, the header bytes annotated field by
//! field, the payload in hex and what it says (a Close's code and its
//! meaning from §7.4.1, text, or what a compressed payload inflates to).
//!
//! Pure functions of a frame's bytes, so `docs/WALKTHROUGH.md` shows the
//! very lines `rfc6455 client --trace=hex` prints.

use std::fmt::Write as _;

use crate::proto::{FrameHeader, OpCode};

/// How many payload bytes a summary line shows.
pub(super) const PREVIEW: usize = 24;
/// How many payload bytes the hex dump shows; the rest is counted.
pub(super) const HEX_MAX: usize = 64;

/// What inflating a compressed frame's payload gave (RFC 7692 §7.2.2).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Inflated {
    /// Bytes inflated from this frame (the last frame's include the flush
    /// tail put back).
    pub(super) len: u64,
    /// The first of them.
    pub(super) preview: Vec<u8>,
    /// Inflating failed (corrupt data) or this build cannot (no `deflate`
    /// feature): the size is unknown.
    pub(super) unknown: bool,
}

impl Inflated {
    #[cfg_attr(not(feature = "deflate"), allow(dead_code))] // nothing inflates then
    pub(super) fn add(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        let room = HEX_MAX.saturating_sub(self.preview.len()).min(bytes.len());
        self.preview.extend_from_slice(&bytes[..room]);
    }
}

/// One whole frame as the tracer saw it.
pub(super) struct Seen<'a> {
    pub(super) header: &'a FrameHeader,
    /// The header's bytes on the wire (2 to 14).
    pub(super) header_bytes: &'a [u8],
    /// The first [`HEX_MAX`] payload bytes as they were on the wire.
    pub(super) wire: &'a [u8],
    /// The first payload bytes unmasked: all of a control frame's.
    pub(super) clear: &'a [u8],
    /// For a frame of a compressed message.
    pub(super) inflated: Option<&'a Inflated>,
}

/// §7.4.1 (and the IANA registry since, §11.7): what a status code means,
/// for any `u16` a peer may put on the wire.
pub fn close_code_meaning(code: u16) -> &'static str {
    match code {
        0..=999 => "not a status code (never used)",
        1000 => "normal closure",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1004 => "reserved",
        1005 => "no status received: reserved, never sent",
        1006 => "abnormal closure: reserved, never sent",
        1007 => "invalid frame payload data",
        1008 => "policy violation",
        1009 => "message too big",
        1010 => "mandatory extension",
        1011 => "internal error",
        1012 => "service restart",
        1013 => "try again later",
        1014 => "bad gateway",
        1015 => "TLS handshake failure: reserved, never sent",
        1016..=2999 => "reserved for this protocol (invalid on the wire)",
        3000..=3999 => "for libraries and frameworks (IANA)",
        4000..=4999 => "private, for applications",
        5000..=u16::MAX => "not a status code (invalid)",
    }
}

/// The summary line of a frame: its header fields and what the payload
/// says.
pub(super) fn summary(label: &str, frame: &Seen<'_>) -> String {
    let h = frame.header;
    let bit = |b: bool| if b { '1' } else { '0' };
    let mask = h.mask.map_or("-".to_owned(), |k| hex_word(&k));
    let mut line = format!(
        "{label} FIN={} RSV={}{}{} {:?} mask={mask} len={}",
        bit(h.fin),
        bit(h.rsv1),
        bit(h.rsv2),
        bit(h.rsv3),
        h.opcode,
        h.payload_len,
    );
    let _ = write!(line, " {}", says(frame, PREVIEW));
    line
}

/// The hex dump of a frame, one annotated line per field.
pub(super) fn hex_lines(frame: &Seen<'_>) -> Vec<String> {
    let h = frame.header;
    let row = |bytes: &[u8], note: &str| {
        if note.is_empty() {
            hex(bytes)
        } else {
            format!("{:<24}  # {note}", hex(bytes))
        }
    };
    let key_len = if h.mask.is_some() { 4 } else { 0 };
    let fixed = frame.header_bytes.len() - key_len;
    let encoding = match fixed {
        2 => "7-bit",
        4 => "126: a 16-bit length follows",
        _ => "127: a 64-bit length follows",
    };
    let mut out = vec![
        row(
            &frame.header_bytes[..1],
            &format!(
                "FIN={} RSV1={} RSV2={} RSV3={} opcode={:#x} ({})",
                u8::from(h.fin),
                u8::from(h.rsv1),
                u8::from(h.rsv2),
                u8::from(h.rsv3),
                h.opcode.as_u8(),
                h.opcode.name(),
            ),
        ),
        row(
            &frame.header_bytes[1..fixed],
            &format!(
                "MASK={} payload length={} ({encoding})",
                u8::from(h.mask.is_some()),
                h.payload_len
            ),
        ),
    ];
    if h.mask.is_some() {
        out.push(row(&frame.header_bytes[fixed..], "masking key"));
    }
    if h.payload_len == 0 {
        return out;
    }
    let first = if h.mask.is_some() {
        "payload, masked"
    } else {
        "payload"
    };
    for (i, chunk) in frame.wire.chunks(16).enumerate() {
        out.push(row(chunk, if i == 0 { first } else { "" }));
    }
    let shown = frame.wire.len() as u64;
    if h.payload_len > shown {
        let more = h.payload_len - shown;
        out.push(format!("{:<24}  # and {more} more bytes", "…"));
    }
    let says = says(frame, HEX_MAX);
    let note = if h.mask.is_some() {
        let clear = &frame.clear[..frame.clear.len().min(16)];
        let more = if frame.clear.len() > 16 { " …" } else { "" };
        format!("unmasked: {}{more} = {says}", hex(clear))
    } else {
        format!("= {says}")
    };
    out.push(format!("{:<24}  # {note}", ""));
    out
}

/// What the payload says, its text cut after `max` bytes: text quoted, a
/// Close's code, meaning and reason, a compressed frame's inflated size.
fn says(frame: &Seen<'_>, max: usize) -> String {
    let h = frame.header;
    if let Some(inflated) = frame.inflated {
        if inflated.unknown {
            return "compressed, inflated size unknown".to_owned();
        }
        return format!(
            "compressed, inflates to {} bytes {}",
            inflated.len,
            quoted(&inflated.preview, inflated.len, max)
        );
    }
    match h.opcode {
        OpCode::Close => close(frame.clear),
        OpCode::Binary => format!("{} bytes", h.payload_len),
        _ => quoted(frame.clear, h.payload_len, max),
    }
}

/// §5.5.1: a Close body is empty, or a code and a UTF-8 reason.
fn close(body: &[u8]) -> String {
    match body {
        [] => "no status code (reported as 1005)".to_owned(),
        [_] => "invalid: a 1-byte Close body (§5.5.1)".to_owned(),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            format!(
                "code={code} ({}) reason={:?}",
                close_code_meaning(code),
                String::from_utf8_lossy(reason)
            )
        }
    }
}

/// The first `max` bytes as a quoted string, control characters as `.`,
/// and `…` if `total` is longer.
fn quoted(bytes: &[u8], total: u64, max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let text: String = String::from_utf8_lossy(shown)
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect();
    let more = if total > shown.len() as u64 {
        "…"
    } else {
        ""
    };
    format!("{text:?}{more}")
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `bytes` as lowercase hex, with no separator (a masking key: `37fa213d`).
pub(crate) fn hex_word(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
