//! The frame record, through a real `Connection`: each test feeds or
//! sends the frames of one RFC 6455 rule and reads back what was recorded.

use bytes::BytesMut;

use super::{Direction, FrameRecord, FrameRing};
use crate::proto::frame::{FrameHeader, LengthEncoding, OpCode};
use crate::proto::{CloseCode, CloseFrame, Config, Connection, Message, PreparedFrame, Role};

/// A client frame (§5.2): FIN and opcode in `b0`, masked with `key`.
fn masked(b0: u8, key: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut header = FrameHeader::new(OpCode::from_u8(b0 & 0x0F).unwrap(), payload.len() as u64);
    header.fin = b0 & 0x80 != 0;
    header.rsv1 = b0 & 0x40 != 0;
    header.mask = Some(key);
    let mut out = BytesMut::new();
    header.encode(&mut out);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out.to_vec()
}

fn recording(role: Role, capacity: usize, keep: usize) -> Connection {
    let mut conn = Connection::new(role, Config::default());
    assert!(
        conn.set_frame_ring(Some(Box::new(FrameRing::new(capacity, keep))))
            .is_none()
    );
    conn
}

fn records(conn: &mut Connection) -> Vec<FrameRecord> {
    conn.frame_ring_mut().expect("recording").take()
}

fn drain_output(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        out.extend_from_slice(&chunk);
    }
    out
}

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

#[test]
fn a_masked_client_text_frame_is_recorded_with_its_key_and_7_bit_length() {
    let mut server = recording(Role::Server, 8, 64);
    // §5.7's masked "Hello".
    server.receive(&masked(0x81, KEY, b"Hello"));
    assert_eq!(server.poll_message(), Ok(Some(Message::text("Hello"))));
    let [r] = &records(&mut server)[..] else {
        panic!()
    };
    assert_eq!(r.direction, Direction::Received);
    assert_eq!(r.header.mask, Some(KEY));
    assert!(r.header.fin && !r.header.rsv1 && !r.header.rsv2 && !r.header.rsv3);
    assert_eq!(r.header.opcode, OpCode::Text);
    assert_eq!(r.header.payload_len, 5);
    assert_eq!(r.length_encoding(), LengthEncoding::Bits7);
    assert_eq!(r.header_len(), 6, "2 bytes and the key");
    // Unmasked, as the application sees it.
    assert_eq!(r.payload, b"Hello");
    assert_eq!((r.payload_total, r.inflated_len), (5, None));
}

#[test]
fn a_16_bit_length_is_recorded_and_the_payload_cut_to_keep() {
    let mut server = recording(Role::Server, 8, 16);
    server.send_binary(vec![7u8; 256]).unwrap();
    let out = drain_output(&mut server);
    assert_eq!(&out[..4], &[0x82, 126, 0x01, 0x00]);
    let [r] = &records(&mut server)[..] else {
        panic!()
    };
    assert_eq!(r.direction, Direction::Sent);
    assert_eq!(r.header.mask, None, "a server never masks (§5.1)");
    assert_eq!(r.length_encoding(), LengthEncoding::Bits16);
    assert_eq!(r.header_len(), 4);
    assert_eq!(r.payload, vec![7u8; 16]);
    assert_eq!(r.payload_total, 256);
}

#[test]
fn a_64_bit_length_is_recorded() {
    let mut server = recording(Role::Server, 8, 4);
    let payload = vec![b'x'; 65536];
    server.receive(&masked(0x82, [1, 2, 3, 4], &payload));
    assert!(matches!(server.poll_message(), Ok(Some(Message::Binary(b))) if b.len() == 65536));
    let [r] = &records(&mut server)[..] else {
        panic!()
    };
    assert_eq!(r.length_encoding(), LengthEncoding::Bits64);
    assert_eq!(r.header_len(), 14, "2, 8 of length, 4 of key");
    assert_eq!(r.header.payload_len, 65536);
    assert_eq!(r.payload, b"xxxx");
}

#[test]
fn a_fragmented_message_is_one_record_per_frame() {
    let mut server = recording(Role::Server, 8, 64);
    // §5.4: "Hel" with FIN clear, then a continuation "lo" with FIN.
    server.receive(&masked(0x01, KEY, b"Hel"));
    server.receive(&masked(0x80, [9, 9, 9, 9], b"lo"));
    assert_eq!(server.poll_message(), Ok(Some(Message::text("Hello"))));
    let rs = records(&mut server);
    let seen: Vec<_> = rs
        .iter()
        .map(|r| {
            (
                r.seq,
                r.header.fin,
                r.header.opcode,
                r.payload.as_slice(),
                r.header.mask,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (0, false, OpCode::Text, &b"Hel"[..], Some(KEY)),
            (
                1,
                true,
                OpCode::Continuation,
                &b"lo"[..],
                Some([9, 9, 9, 9])
            ),
        ]
    );
}

#[test]
fn a_ping_and_the_pong_that_answers_it_are_recorded() {
    let mut server = recording(Role::Server, 8, 64);
    server.receive(&masked(0x89, KEY, b"hb"));
    assert_eq!(server.poll_message(), Ok(Some(Message::Ping("hb".into()))));
    // §5.5.3: the Pong is encoded when output is taken.
    assert_eq!(drain_output(&mut server), b"\x8a\x02hb");
    let rs = records(&mut server);
    let seen: Vec<_> = rs
        .iter()
        .map(|r| {
            (
                r.direction,
                r.header.opcode,
                r.header.mask.is_some(),
                r.payload.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Direction::Received, OpCode::Ping, true, &b"hb"[..]),
            (Direction::Sent, OpCode::Pong, false, &b"hb"[..]),
        ]
    );
}

#[test]
fn a_close_is_recorded_with_its_code_both_ways() {
    let mut server = recording(Role::Server, 8, 64);
    let mut body = 1001u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"bye");
    server.receive(&masked(0x88, KEY, &body));
    assert!(matches!(
        server.poll_message(),
        Ok(Some(Message::Close(Some(_))))
    ));
    drain_output(&mut server);
    let rs = records(&mut server);
    assert_eq!(rs.len(), 2);
    assert_eq!(
        (rs[0].direction, rs[0].header.opcode),
        (Direction::Received, OpCode::Close)
    );
    assert_eq!(rs[0].payload, b"\x03\xe9bye");
    // §5.5.1: the echo carries the code, not the reason.
    assert_eq!(
        (rs[1].direction, rs[1].header.opcode),
        (Direction::Sent, OpCode::Close)
    );
    assert_eq!(rs[1].payload, b"\x03\xe9");
}

#[test]
fn a_client_records_the_key_it_masked_with() {
    let mut client =
        recording(Role::Client, 8, 64).with_rng(crate::proto::MaskRng::from_seed([5; 32]));
    client.send_text("hi").unwrap();
    client
        .close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
        .unwrap();
    let out = drain_output(&mut client);
    let rs = records(&mut client);
    let key = rs[0].header.mask.expect("a client masks (§5.3)");
    assert_eq!(&out[2..6], &key, "the key recorded is the key on the wire");
    assert_eq!(rs[0].payload, b"hi", "recorded before masking");
    // "hi" took 2 + 4 + 2 bytes; the Close's key follows its 2 bytes.
    assert_eq!(&out[10..14], &rs[1].header.mask.unwrap());
    assert_ne!(
        rs[0].header.mask, rs[1].header.mask,
        "a fresh key per frame"
    );
}

#[test]
fn the_ring_keeps_the_newest_and_counts_what_it_dropped() {
    let mut server = recording(Role::Server, 3, 64);
    for i in 0..5u8 {
        server.send_text(format!("m{i}")).unwrap();
    }
    let ring = server.frame_ring().unwrap();
    assert_eq!(ring.dropped(), 2);
    let kept: Vec<_> = ring.records().map(|r| (r.seq, r.payload.clone())).collect();
    assert_eq!(
        kept,
        [
            (2, b"m2".to_vec()),
            (3, b"m3".to_vec()),
            (4, b"m4".to_vec())
        ]
    );
    assert!(!records(&mut server).is_empty());
    assert!(server.frame_ring().unwrap().is_empty());
}

#[test]
fn nothing_is_recorded_once_the_ring_is_taken_away() {
    let mut server = recording(Role::Server, 8, 64);
    server.send_text("on").unwrap();
    let ring = server.set_frame_ring(None).expect("the ring");
    assert_eq!(ring.records().len(), 1);
    server.send_text("off").unwrap();
    server.receive(&masked(0x81, KEY, b"off too"));
    assert!(server.poll_message().unwrap().is_some());
    assert!(server.frame_ring().is_none());
    assert_eq!(ring.records().len(), 1);
}

#[test]
fn a_prepared_frame_is_recorded_from_its_bytes() {
    let mut server = recording(Role::Server, 8, 64);
    server
        .send_prepared(&PreparedFrame::text("to all"))
        .unwrap();
    let [r] = &records(&mut server)[..] else {
        panic!()
    };
    assert_eq!((r.header.opcode, r.header.payload_len), (OpCode::Text, 6));
    assert_eq!(r.payload, b"to all");
}

#[cfg(feature = "deflate")]
mod compressed {
    use super::*;
    use crate::proto::DeflateConfig;
    use crate::proto::deflate;

    fn pair() -> (Connection, Connection) {
        let params = deflate::accept(&[], &DeflateConfig::default()).expect("an agreement");
        let server = recording(Role::Server, 8, 200).with_deflate(params);
        let client = recording(Role::Client, 8, 200).with_deflate(params);
        (server, client)
    }

    #[test]
    fn a_compressed_message_is_recorded_with_both_sizes_both_ways() {
        let (mut server, mut client) = pair();
        let text = "hello ".repeat(40);
        client.send_text(text.clone()).unwrap();
        let wire = drain_output(&mut client);
        // RFC 7692 §6: RSV1 on the (only) frame.
        assert_eq!(wire[0], 0xC1);
        server.receive(&wire);
        assert_eq!(server.poll_message(), Ok(Some(Message::text(text.clone()))));
        let [sent] = &records(&mut client)[..] else {
            panic!()
        };
        let [got] = &records(&mut server)[..] else {
            panic!()
        };
        for r in [sent, got] {
            assert!(r.header.rsv1);
            assert!(
                r.header.payload_len < 240 / 4,
                "compressed: {}",
                r.header.payload_len
            );
            assert_eq!(r.inflated_len, Some(240));
            assert_eq!(r.payload_total, 240);
            // The plain text, cut to the ring's 200 bytes.
            assert_eq!(r.payload, &text.as_bytes()[..200]);
        }
        assert_eq!(sent.header, got.header, "the same header both ends");
    }

    #[test]
    fn a_deflated_prepared_frame_is_recorded_with_its_plain_text() {
        let (mut server, _) = pair();
        let text = "broadcast ".repeat(20);
        let frame = PreparedFrame::text_deflated(text.clone(), &DeflateConfig::default());
        server.send_prepared(&frame).unwrap();
        let [r] = &records(&mut server)[..] else {
            panic!()
        };
        assert!(r.header.rsv1);
        assert_eq!(r.inflated_len, Some(200));
        assert!(r.header.payload_len < 200);
        assert_eq!(r.payload, text.as_bytes());
    }

    #[test]
    fn compressed_fragments_each_record_what_they_inflate_to() {
        let (mut server, mut client) = pair();
        client.send_text_fragment("first half, ", false).unwrap();
        client.send_text_fragment("second half", true).unwrap();
        server.receive(&drain_output(&mut client));
        assert_eq!(
            server.poll_message(),
            Ok(Some(Message::text("first half, second half")))
        );
        let sent = records(&mut client);
        let got = records(&mut server);
        for rs in [&sent, &got] {
            let seen: Vec<_> = rs
                .iter()
                .map(|r| (r.header.rsv1, r.inflated_len, r.payload.as_slice()))
                .collect();
            assert_eq!(
                seen,
                [
                    (true, Some(12), &b"first half, "[..]),
                    (false, Some(11), &b"second half"[..]),
                ]
            );
        }
    }
}
