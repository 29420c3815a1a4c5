//! `rfc6455 client --trace=json`: one JSON object per line on stderr for
//! each head and each frame, in and out, for tools (`jq`, a test, a
//! script). The fields are the §5.2 header's, named as the RFC names
//! them, plus what the payload says:
//!
//! | field | what |
//! | --- | --- |
//! | `type` | `"head"`, `"frame"` or `"note"` |
//! | `direction` | `"sent"` or `"received"` |
//! | `t_ms` | milliseconds since the opening handshake began (after TCP, the proxy and TLS) |
//! | `lines` | (head) the HTTP head's lines |
//! | `fin`, `rsv1`, `rsv2`, `rsv3` | the header bits |
//! | `opcode` | `"continuation"`, `"text"`, `"binary"`, `"close"`, `"ping"`, `"pong"` |
//! | `opcode_value` | the opcode's number (§5.2: 0x0 to 0xA) |
//! | `masked`, `mask_key` | the MASK bit; the key in hex, or `null` |
//! | `payload_len`, `length_encoding` | the length, and how it was written: `"7-bit"`, `"16-bit"`, `"64-bit"` |
//! | `payload_text` / `payload_base64` | the payload, unmasked: text when it is UTF-8 (text, continuation, ping and pong frames), else base64 (binary, close, compressed) |
//! | `payload_truncated` | only the first 64 KiB is given |
//! | `compressed`, `inflated_len` | permessage-deflate (RFC 7692): the frame is compressed; what it inflated to |
//! | `close_code`, `close_meaning`, `close_reason` | (close) the status code (§7.4), its meaning, the reason; `close_code` is `null` for an empty Close (1005) and for a 1-byte one, which §5.5.1 forbids (`close_meaning` says so) |
//! | `text` | (note) why decoding stopped |
//!
//! Every trace line starts with `{`; the client's own messages on stderr
//! never do.

use base64::Engine as _;
use rfc6455::proto::OpCode;
use rfc6455::transport::trace::{Direction, FrameRecord, TraceEvent, close_code_meaning};
use serde_json::{Value, json};

/// The JSON object for one event, `t_ms` after the start.
pub fn event(direction: Direction, event: &TraceEvent, t_ms: f64) -> Value {
    let direction = match direction {
        Direction::Sent => "sent",
        Direction::Received => "received",
    };
    match event {
        TraceEvent::Head(lines) => {
            json!({"type": "head", "direction": direction, "t_ms": t_ms, "lines": lines})
        }
        TraceEvent::Frame(frame) => {
            let mut object = self::frame(frame);
            object["direction"] = direction.into();
            object["t_ms"] = t_ms.into();
            object
        }
        TraceEvent::Note(text) => {
            json!({"type": "note", "direction": direction, "t_ms": t_ms, "text": text})
        }
        // A kind of event this client does not know yet.
        _ => json!({"type": "unknown", "direction": direction, "t_ms": t_ms}),
    }
}

/// A frame's fields (without `direction` and `t_ms`).
fn frame(frame: &FrameRecord) -> Value {
    let h = &frame.header;
    let mut object = json!({
        "type": "frame",
        "fin": h.fin,
        "rsv1": h.rsv1,
        "rsv2": h.rsv2,
        "rsv3": h.rsv3,
        "opcode": h.opcode.name(),
        "opcode_value": h.opcode.as_u8(),
        "masked": h.mask.is_some(),
        "mask_key": h.mask.map(|k| k.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        "payload_len": h.payload_len,
        "length_encoding": frame.length_encoding().name(),
        "payload_truncated": frame.truncated(),
        "compressed": frame.compressed,
        "inflated_len": frame.inflated_len,
    });
    let as_text = !frame.compressed
        && matches!(
            h.opcode,
            OpCode::Text | OpCode::Continuation | OpCode::Ping | OpCode::Pong
        );
    match std::str::from_utf8(&frame.payload) {
        Ok(text) if as_text => object["payload_text"] = text.into(),
        _ => {
            object["payload_base64"] = base64::engine::general_purpose::STANDARD
                .encode(&frame.payload)
                .into()
        }
    }
    if h.opcode == OpCode::Close {
        // §5.5.1: empty, or a 2-byte code then a UTF-8 reason; one byte
        // is neither (a peer that sends it fails the connection, 1002).
        let (code, meaning, reason) = match frame.payload.as_slice() {
            [hi, lo, reason @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                (Some(code), close_code_meaning(code), reason)
            }
            [_] => (None, "invalid: a 1-byte Close body (§5.5.1)", &[][..]),
            [] => (None, "no status code (reported as 1005)", &[][..]),
        };
        object["close_code"] = code.into();
        object["close_meaning"] = meaning.into();
        object["close_reason"] = String::from_utf8_lossy(reason).into();
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use rfc6455::proto::FrameHeader;

    fn record(opcode: OpCode, mask: Option<[u8; 4]>, payload: &[u8], len: u64) -> TraceEvent {
        let mut header = FrameHeader::new(opcode, len);
        header.mask = mask;
        let header_len = 2 + if len > 125 { 2 } else { 0 } + if mask.is_some() { 4 } else { 0 };
        TraceEvent::Frame(Box::new(FrameRecord {
            header,
            header_len,
            payload: payload.to_vec(),
            compressed: false,
            inflated_len: None,
        }))
    }

    #[test]
    fn a_masked_text_frame_has_every_header_field_and_its_text() {
        // RFC 6455 §5.7's masked "Hello".
        let e = record(OpCode::Text, Some([0x37, 0xfa, 0x21, 0x3d]), b"Hello", 5);
        let v = event(Direction::Sent, &e, 1.5);
        assert_eq!(
            v,
            json!({"type": "frame", "direction": "sent", "t_ms": 1.5, "fin": true,
                "rsv1": false, "rsv2": false, "rsv3": false, "opcode": "text",
                "opcode_value": 1, "masked": true, "mask_key": "37fa213d",
                "payload_len": 5, "length_encoding": "7-bit", "payload_truncated": false,
                "compressed": false, "inflated_len": null, "payload_text": "Hello"})
        );
    }

    #[test]
    fn binary_is_base64_and_a_close_is_decoded() {
        let v = event(
            Direction::Received,
            &record(OpCode::Binary, None, &[0xff, 0, 0x80], 3),
            0.0,
        );
        assert_eq!(v["payload_base64"], "/wCA");
        assert_eq!(v["mask_key"], Value::Null);
        // A received Close, its payload as given.
        let close = |payload: &[u8]| {
            let len = payload.len() as u64;
            event(
                Direction::Received,
                &record(OpCode::Close, None, payload, len),
                0.0,
            )
        };
        let v = close(b"\x0f\xa0bye");
        assert_eq!(v["close_code"], 4000);
        assert_eq!(v["close_meaning"], "private, for applications");
        assert_eq!(v["close_reason"], "bye");
        let v = close(b"");
        assert_eq!(v["close_code"], Value::Null);
        assert_eq!(v["close_meaning"], "no status code (reported as 1005)");
        // One byte is no code at all, and breaks §5.5.1: said so, not
        // taken for an empty Close.
        let v = close(b"\x03");
        assert_eq!(v["close_code"], Value::Null);
        assert_eq!(v["close_meaning"], "invalid: a 1-byte Close body (§5.5.1)");
    }

    #[test]
    fn a_cut_payload_says_so_and_the_16_bit_length_is_named() {
        let v = event(
            Direction::Sent,
            &record(OpCode::Text, None, b"abc", 300),
            0.0,
        );
        assert_eq!(v["payload_truncated"], true);
        assert_eq!(v["length_encoding"], "16-bit");
    }
}
