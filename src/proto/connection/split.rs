//! A connection split in two, for an I/O layer that reads and writes from
//! two tasks (RFC 6455 §5.4, §5.5, §7.1).
//!
//! [`split_sender`](Connection::split_sender) moves everything that sends
//! (queued output, the fragmented message being sent, the mask keys, the
//! compressor) into a second `Connection`; the first keeps everything that
//! reads, and still queues its own replies: the Pong owed to the latest
//! Ping (§5.5.3), the reply to the peer's Close (§5.5.1), the Close a
//! failure sends (§7.1.7). Those are whole control frames, which the I/O
//! layer hands to the sender with [`queue_encoded`](Connection::queue_encoded):
//! they go at the tail of its output, so between frames, never inside one,
//! and between the fragments of a message if one is being sent (§5.4:
//! "control frames MAY be injected in the middle of a fragmented
//! message"). Close state is the I/O layer's to share: it tells the reader
//! of the sender's Close with [`note_close_sent`](Connection::note_close_sent).

use bytes::Bytes;

use super::{Connection, Outgoing};
use crate::proto::frame::{FrameHeader, OpCode};
use crate::proto::utf8::Utf8Validator;

impl Connection {
    /// Moves the sending side into a new connection, which only sends:
    /// output queued so far (it goes out first, from there), the message
    /// being sent in fragments, the client's mask keys, and the
    /// permessage-deflate compressor with its context. This one keeps
    /// reading and queues only its replies, whole control frames, which the
    /// I/O layer hands to the sender with
    /// [`queue_encoded`](Self::queue_encoded).
    pub fn split_sender(&mut self) -> Connection {
        let pong = self.out.pong.take();
        let out = std::mem::take(&mut self.out);
        self.out.pong = pong;
        Connection {
            role: self.role,
            config: self.config.clone(),
            close_sent: self.close_sent,
            close_received: self.close_received,
            eof: false,
            failure: self.failure.clone(),
            rbuf: bytes::BytesMut::new(),
            frames_received: 0,
            frame: None,
            message: None,
            rx_utf8: Utf8Validator::new(),
            out: Outgoing { pong: None, ..out },
            tx_message: self.tx_message.take(),
            tx_utf8: std::mem::replace(&mut self.tx_utf8, Utf8Validator::new()),
            rng: self.rng.take(),
            deflate: self.deflate.split_sender(),
            ring: None,
        }
    }

    /// Queues frames encoded by the reading half of a split connection
    /// (its replies, whole control frames) at the tail of the output. A
    /// Close among them counts as ours: nothing is sent after it (§5.5.1).
    /// Once our Close is out they are dropped: nothing may follow it on the
    /// wire, and a Pong is not owed after it (the reader stays silent
    /// then too).
    ///
    /// Returns whether they were queued.
    pub fn queue_encoded(&mut self, frames: Bytes) -> bool {
        if self.close_sent || frames.is_empty() {
            return false;
        }
        if contains_close(&frames) {
            self.close_sent = true;
        }
        self.out.push(frames);
        true
    }

    /// The sending half of a split connection sent our Close: the reading
    /// half stops answering Pings, does not reply to the peer's Close
    /// (§5.5.1: only one who "did not previously send a Close frame" does)
    /// and waits for it ([`awaiting_close`](Self::awaiting_close)).
    pub fn note_close_sent(&mut self) {
        self.close_sent = true;
        self.out.pong = None;
    }
}

/// Whether the whole frames in `frames` (as our own encoder wrote them)
/// include a Close.
pub(crate) fn contains_close(mut frames: &[u8]) -> bool {
    while let Ok(Some((header, len))) = FrameHeader::parse(frames) {
        if header.opcode == OpCode::Close {
            return true;
        }
        let Some(rest) = usize::try_from(header.payload_len)
            .ok()
            .and_then(|n| frames.get(len + n..))
        else {
            return false;
        };
        frames = rest;
    }
    false
}

#[cfg(test)]
mod tests {
    use crate::proto::{Config, Connection, Error, Message, Role};

    /// A client frame with FIN, opcode `op`, key 0 (so the payload reads
    /// as is) and a 7-bit length (§5.2).
    fn client_frame(op: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x80 | op, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(payload);
        frame
    }

    fn output(conn: &mut Connection) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = conn.poll_transmit() {
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[test]
    fn sender_takes_the_queued_output_and_the_reader_keeps_its_replies() {
        let mut reader = Connection::new(Role::Server, Config::default());
        reader.send_text("before").unwrap();
        let mut sender = reader.split_sender();
        assert_eq!(output(&mut reader), b"");
        assert_eq!(output(&mut sender), b"\x81\x06before");
        // §5.5.2: the reader answers a Ping; its reply goes to the sender,
        // at the tail of what it has queued.
        reader.receive(&client_frame(0x9, b"hb"));
        assert_eq!(reader.poll_message(), Ok(Some(Message::Ping("hb".into()))));
        sender.send_text("data").unwrap();
        assert!(sender.queue_encoded(output(&mut reader).into()));
        assert_eq!(output(&mut sender), b"\x81\x04data\x8a\x02hb");
    }

    #[test]
    fn a_close_from_the_reader_ends_sending() {
        let mut reader = Connection::new(Role::Server, Config::default());
        let mut sender = reader.split_sender();
        // §5.5.1: the reader echoes the peer's Close...
        reader.receive(&client_frame(0x8, &1001u16.to_be_bytes()));
        assert!(matches!(reader.poll_message(), Ok(Some(Message::Close(_)))));
        assert!(sender.queue_encoded(output(&mut reader).into()));
        assert_eq!(output(&mut sender), b"\x88\x02\x03\xe9");
        // ... after which nothing is sent.
        assert_eq!(sender.send_text("late"), Err(Error::Closed));
    }

    #[test]
    fn after_the_senders_close_the_reader_is_silent_and_its_frames_dropped() {
        let mut reader = Connection::new(Role::Server, Config::default());
        let mut sender = reader.split_sender();
        reader.receive(&client_frame(0x9, b"early"));
        assert!(reader.poll_message().unwrap().is_some());
        let pong = output(&mut reader);
        sender.close(None).unwrap();
        reader.note_close_sent();
        // A Pong queued before is not sent after our Close.
        assert!(!sender.queue_encoded(pong.into()));
        // §5.5.1: the peer's Close answers ours; no reply to it.
        reader.receive(&client_frame(0x9, b"late"));
        reader.receive(&client_frame(0x8, &1000u16.to_be_bytes()));
        while reader.poll_message().unwrap().is_some() {}
        assert_eq!(output(&mut reader), b"");
        assert_eq!(output(&mut sender), b"\x88\x00");
    }

    #[test]
    fn a_client_sender_keeps_masking() {
        let mut reader = Connection::new(Role::Client, Config::default());
        let mut sender = reader.split_sender();
        sender.send_binary(vec![1u8, 2, 3]).unwrap();
        let out = output(&mut sender);
        // §5.3: mask bit set, a 4-byte key, 3 bytes of payload.
        assert_eq!((out[0], out[1], out.len()), (0x82, 0x83, 2 + 4 + 3));
    }
}
