//! The workload both in-memory pair tests send (`tests/pair.rs` plain,
//! `tests/deflate.rs` compressed): messages whole, in fragments with a
//! control frame between them (RFC 6455 §5.4, §5.5), and pings; and how
//! both feed a `Connection` its peer's bytes in pieces.

use bytes::Bytes;
use rfc6455::proto::{Connection, Error, Message};

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

/// Feeds `bytes` to `conn` in pieces cut at `cuts` (taken modulo the
/// length, in any order), collecting every event up to and including the
/// first error (errors are sticky).
pub fn feed(conn: &mut Connection, bytes: &[u8], cuts: &[usize]) -> Vec<Result<Message, Error>> {
    let mut points: Vec<usize> = cuts.iter().map(|&c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.push(bytes.len());
    let mut events = Vec::new();
    let mut start = 0;
    for p in points {
        conn.receive(&bytes[start..p]);
        start = p;
        loop {
            match conn.poll_message() {
                Ok(Some(m)) => events.push(Ok(m)),
                Ok(None) => break,
                Err(e) => {
                    events.push(Err(e));
                    return events;
                }
            }
        }
    }
    events
}

/// [`feed`] for input that must be valid.
pub fn feed_in_pieces(conn: &mut Connection, bytes: &[u8], cuts: &[usize]) -> Vec<Message> {
    feed(conn, bytes, cuts)
        .into_iter()
        .map(|e| e.expect("valid input"))
        .collect()
}

/// [`feed_in_pieces`], without the pongs: what the peer sent as messages
/// and pings (the workload puts a pong between fragments).
pub fn messages(conn: &mut Connection, bytes: &[u8], cuts: &[usize]) -> Vec<Message> {
    feed_in_pieces(conn, bytes, cuts)
        .into_iter()
        .filter(|m| !matches!(m, Message::Pong(_)))
        .collect()
}
