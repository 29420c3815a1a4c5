//! An opt-in record of the frames one connection reads and writes, header
//! field by header field (RFC 6455 §5.2), for a learner's frame inspector.
//!
//! A [`Connection`](super::Connection) holds an `Option<Box<FrameRing>>`:
//! `None` (the default) costs one pointer and one branch per frame, and
//! records nothing. Given a ring ([`Connection::set_frame_ring`](super::Connection::set_frame_ring)),
//! it adds a [`FrameRecord`] for every frame it parses from the peer and
//! every frame it queues for sending, where the header is known: the
//! masking key a client chose (§5.3), the length's encoding (§5.2), what a
//! compressed payload inflated to (RFC 7692 §7.2), and the first bytes of
//! the payload as the application sees them (unmasked; inflated when
//! compressed).
//!
//! Everything is bounded by the ring: at most `capacity` records (the
//! oldest go first, and are counted), at most `keep` payload bytes each
//! (copied, so a record never holds a large frame's buffer alive).

use std::collections::VecDeque;

use super::frame::{FrameHeader, LengthEncoding};

/// Which way a frame went, seen from this end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Parsed from the peer's bytes.
    Received,
    /// Queued for sending to the peer.
    Sent,
}

/// One frame as the connection saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRecord {
    /// Counts every frame recorded by this ring from 0, both ways, so a
    /// reader can tell what it already has and what was dropped.
    pub seq: u64,
    /// Received or sent.
    pub direction: Direction,
    /// The header as on the wire: FIN, RSV1–3, opcode, the masking key
    /// (present exactly when MASK is set), the payload length.
    pub header: FrameHeader,
    /// For a frame of a compressed message (RFC 7692 §6: RSV1 on its
    /// first frame): the bytes its payload inflated to, where that is
    /// known for the frame alone (every frame received; a message or
    /// fragment sent whole); for a compressed message that
    /// `Config::fragment_size` cut after compressing, the whole message's
    /// size, on its first frame, and `None` on the others.
    pub inflated_len: Option<u64>,
    /// The first bytes of the payload as the application sees them:
    /// unmasked (§5.3) and, for a compressed message, inflated. At most
    /// the ring's `keep`.
    pub payload: Vec<u8>,
    /// How many bytes `payload` would be if nothing were cut: the payload
    /// length, or the inflated length.
    pub payload_total: u64,
}

impl FrameRecord {
    /// The length's encoding in the header (§5.2).
    pub fn length_encoding(&self) -> LengthEncoding {
        self.header.length_encoding()
    }

    /// The header's size on the wire: 2 bytes, the extended length, the
    /// masking key.
    pub fn header_len(&self) -> usize {
        self.header.encoded_len()
    }
}

/// A bounded ring of [`FrameRecord`]s, oldest first.
#[derive(Debug)]
pub struct FrameRing {
    records: VecDeque<FrameRecord>,
    capacity: usize,
    keep: usize,
    next_seq: u64,
    dropped: u64,
}

impl FrameRing {
    /// A ring of at most `capacity` records (at least 1), each keeping at
    /// most `keep` payload bytes.
    pub fn new(capacity: usize, keep: usize) -> Self {
        Self {
            records: VecDeque::new(),
            capacity: capacity.max(1),
            keep,
            next_seq: 0,
            dropped: 0,
        }
    }

    /// The records held, oldest first.
    pub fn records(&self) -> impl ExactSizeIterator<Item = &FrameRecord> {
        self.records.iter()
    }

    /// Takes every record held, oldest first, leaving the ring empty.
    pub fn take(&mut self) -> Vec<FrameRecord> {
        self.records.drain(..).collect()
    }

    /// Drops every record held (they do not count as dropped).
    pub fn clear(&mut self) {
        self.records.clear();
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records pushed out by newer ones before they were taken, in all.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The most payload bytes a record keeps.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Adds a record; the oldest goes if the ring is full.
    pub(crate) fn push(
        &mut self,
        direction: Direction,
        header: FrameHeader,
        payload: &[u8],
        inflated_len: Option<u64>,
    ) {
        if self.records.len() >= self.capacity {
            self.records.pop_front();
            self.dropped += 1;
        }
        let kept = &payload[..payload.len().min(self.keep)];
        self.records.push_back(FrameRecord {
            seq: self.next_seq,
            direction,
            header,
            inflated_len,
            payload: kept.to_vec(),
            payload_total: inflated_len.unwrap_or(header.payload_len),
        });
        self.next_seq += 1;
    }

    /// Records a frame our own encoder wrote whole (a prepared broadcast
    /// frame, `PreparedFrame`): its header is read back from its bytes.
    /// `plain` is the same message's uncompressed frame when `frame` is
    /// its compressed form.
    pub(crate) fn push_encoded(&mut self, frame: &[u8], plain: Option<&[u8]>) {
        let Some((header, payload)) = split_frame(frame) else {
            return;
        };
        match plain.and_then(split_frame) {
            Some((_, plain)) => {
                self.push(Direction::Sent, header, plain, Some(plain.len() as u64));
            }
            None => self.push(Direction::Sent, header, payload, None),
        }
    }
}

/// A whole frame's header and payload.
fn split_frame(frame: &[u8]) -> Option<(FrameHeader, &[u8])> {
    let (header, len) = FrameHeader::parse(frame).ok()??;
    Some((header, frame.get(len..)?))
}

#[cfg(test)]
mod tests;
