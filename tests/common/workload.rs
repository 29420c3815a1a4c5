//! The workload both in-memory pair tests send (`tests/pair.rs` plain,
//! `tests/deflate.rs` compressed): messages whole, in fragments with a
//! control frame between them (RFC 6455 §5.4, §5.5), and pings.

use bytes::Bytes;
use rfc6455::proto::{Connection, Message};

/// One thing the sender does.
#[derive(Debug, Clone)]
pub enum Op {
    Text(String),
    Binary(Vec<u8>),
    /// A message sent in fragments of these sizes (the last takes the rest).
    Fragmented {
        text: bool,
        data: Vec<u8>,
        cuts: Vec<usize>,
    },
    Ping(Vec<u8>),
}

/// Queues `op` on `conn`, and returns what the peer should see.
pub fn apply(conn: &mut Connection, op: &Op) -> Message {
    match op {
        Op::Text(s) => {
            conn.send_text(s.as_str()).unwrap();
            Message::text(s.as_str())
        }
        Op::Binary(b) => {
            conn.send_binary(b.clone()).unwrap();
            Message::binary(b.clone())
        }
        Op::Fragmented { text, data, cuts } => {
            let mut rest = Bytes::from(data.clone());
            for &cut in cuts {
                let piece = rest.split_to(cut.min(rest.len()));
                if *text {
                    conn.send_text_fragment(piece, false).unwrap();
                } else {
                    conn.send_binary_fragment(piece, false).unwrap();
                }
                // A control frame between fragments (§5.5); never compressed
                // (RFC 7692 §6.1).
                conn.send_pong(Bytes::new()).unwrap();
            }
            if *text {
                conn.send_text_fragment(rest, true).unwrap();
                Message::text(String::from_utf8(data.clone()).unwrap())
            } else {
                conn.send_binary_fragment(rest, true).unwrap();
                Message::binary(data.clone())
            }
        }
        Op::Ping(p) => {
            conn.send_ping(p.clone()).unwrap();
            Message::Ping(Bytes::from(p.clone()))
        }
    }
}

/// Everything `conn` has to send, as one byte string.
pub fn drain(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        out.extend_from_slice(&chunk);
    }
    out
}
