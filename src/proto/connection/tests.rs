//! The state machine, one group per RFC section, inputs and outputs as wire
//! bytes.

use super::*;
use bytes::BytesMut;

use crate::proto::{CloseCode, MaskRng, ProtocolError, apply_mask};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame as a client sends it: masked with `KEY`.
fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut header = FrameHeader::parse(&[b0, 0])
        .ok()
        .flatten()
        .map(|(h, _)| h)
        .unwrap_or(FrameHeader::new(OpCode::Binary, 0));
    header.fin = b0 & 0x80 != 0;
    header.rsv1 = b0 & 0x40 != 0;
    header.payload_len = payload.len() as u64;
    header.mask = Some(KEY);
    let mut out = BytesMut::new();
    header.encode(&mut out);
    // Keep the raw opcode bits even when reserved.
    out[0] = b0;
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], KEY, 0);
    out.to_vec()
}

/// A frame as a server sends it: unmasked.
fn unmasked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut header = FrameHeader::new(OpCode::Binary, payload.len() as u64);
    header.fin = true;
    header.encode(&mut out);
    out[0] = b0;
    out.extend_from_slice(payload);
    out.to_vec()
}

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

fn client() -> Connection {
    Connection::new(Role::Client, Config::default()).with_rng(MaskRng::from_seed([9; 32]))
}

/// Every event until "need more" or an error.
fn events(conn: &mut Connection) -> Vec<Result<Message, Error>> {
    let mut out = Vec::new();
    loop {
        match conn.poll_message() {
            Ok(Some(m)) => out.push(Ok(m)),
            Ok(None) => return out,
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        }
    }
}

fn output(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        out.extend_from_slice(&chunk);
    }
    out
}

/// Decodes what `conn` sent by feeding it to a peer of the other role.
fn sent(conn: &mut Connection) -> Vec<Message> {
    let role = match conn.role() {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut peer = Connection::new(role, Config::default());
    peer.receive(&output(conn));
    events(&mut peer)
        .into_iter()
        .map(|e| e.expect("our own output is valid"))
        .collect()
}

/// The code of the one Close frame `conn` sent, if that is all it sent.
fn sent_close_code(conn: &mut Connection) -> Option<CloseCode> {
    match sent(conn).as_slice() {
        [Message::Close(Some(frame))] => Some(frame.code),
        _ => None,
    }
}

fn close_with(code: CloseCode) -> Message {
    Message::Close(Some(CloseFrame::new(code, "")))
}

/// Asserts that feeding `input` fails the connection with `error` and
/// sends a Close frame carrying the error's code, and nothing after it.
fn assert_fails(mut conn: Connection, input: &[u8], error: ProtocolError) {
    conn.receive(input);
    let got = events(&mut conn);
    assert_eq!(
        got.last(),
        Some(&Err(Error::Protocol(error))),
        "events: {got:?}"
    );
    let sent = sent(&mut conn);
    match sent.last() {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, error.close_code()),
        other => panic!("expected a Close frame last, got {other:?}"),
    }
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.should_close_tcp());
    // Sticky, and input after it is ignored.
    conn.receive(&masked(0x81, b"more"));
    assert_eq!(conn.poll_message(), Err(Error::Protocol(error)));
    assert!(conn.poll_transmit().is_none());
}

// §5.7, Examples, as received.

#[test]
fn client_receives_unmasked_hello() {
    let mut c = client();
    c.receive(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(events(&mut c), [Ok(Message::text("Hello"))]);
}

#[test]
fn server_receives_masked_hello() {
    let mut s = server();
    s.receive(&[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ]);
    assert_eq!(events(&mut s), [Ok(Message::text("Hello"))]);
}

#[test]
fn client_receives_fragmented_hel_lo() {
    let mut c = client();
    c.receive(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
    assert_eq!(events(&mut c), []);
    c.receive(&[0x80, 0x02, 0x6c, 0x6f]);
    assert_eq!(events(&mut c), [Ok(Message::text("Hello"))]);
}

#[test]
fn client_receives_ping_and_server_receives_masked_pong() {
    let mut c = client();
    c.receive(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(
        events(&mut c),
        [Ok(Message::Ping(Bytes::from_static(b"Hello")))]
    );
    let mut s = server();
    s.receive(&[
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ]);
    assert_eq!(
        events(&mut s),
        [Ok(Message::Pong(Bytes::from_static(b"Hello")))]
    );
}

#[test]
fn client_receives_256_and_65536_byte_binary() {
    for len in [256usize, 65536] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut wire = if len == 256 {
            vec![0x82, 0x7E, 0x01, 0x00]
        } else {
            vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]
        };
        wire.extend_from_slice(&payload);
        let mut c = client();
        c.receive(&wire);
        assert_eq!(events(&mut c), [Ok(Message::Binary(Bytes::from(payload)))]);
    }
}

// §5.7, Examples, as sent.

#[test]
fn server_sends_unmasked_hello_and_256_byte_binary() {
    let mut s = server();
    s.send_text("Hello").unwrap();
    assert_eq!(output(&mut s), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    s.send_binary(vec![7u8; 256]).unwrap();
    let out = output(&mut s);
    assert_eq!(&out[..4], &[0x82, 0x7E, 0x01, 0x00]);
    assert_eq!(out.len(), 4 + 256);
}

#[test]
fn server_sends_64_kib_binary_without_copying_the_payload() {
    let mut s = server();
    let payload = Bytes::from(vec![1u8; 65536]);
    s.send_binary(payload.clone()).unwrap();
    assert_eq!(
        s.poll_transmit().unwrap()[..],
        [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]
    );
    let chunk = s.poll_transmit().unwrap();
    assert_eq!(chunk.as_ptr(), payload.as_ptr(), "the payload was copied");
    assert!(s.poll_transmit().is_none());
}

#[test]
fn client_masks_every_frame_with_a_fresh_key() {
    let mut c = client();
    c.send_text("Hello").unwrap();
    c.send_text("Hello").unwrap();
    let out = output(&mut c);
    let (h1, n1) = FrameHeader::parse(&out).unwrap().unwrap();
    let (h2, _) = FrameHeader::parse(&out[n1 + 5..]).unwrap().unwrap();
    assert!(h1.mask.is_some() && h2.mask.is_some());
    assert_ne!(h1.mask, h2.mask);
    let mut payload = out[n1..n1 + 5].to_vec();
    assert_ne!(payload, b"Hello");
    apply_mask(&mut payload, h1.mask.unwrap(), 0);
    assert_eq!(payload, b"Hello");
}

#[test]
fn a_single_frame_message_is_not_copied_out_of_the_read_buffer() {
    let mut s = server();
    s.receive(&masked(0x82, &[5u8; 1000]));
    let start = s.rbuf.as_ptr() as usize;
    let Ok(Some(Message::Binary(b))) = s.poll_message() else {
        panic!()
    };
    let at = b.as_ptr() as usize;
    assert!(
        at >= start && at < start + 1100,
        "payload does not point into the read buffer"
    );
}

// §5.1 and §5.2: who masks, and reserved bits.

#[test]
fn server_rejects_unmasked_frame() {
    assert_fails(
        server(),
        &unmasked(0x81, b"hi"),
        ProtocolError::UnmaskedFrame,
    );
}

#[test]
fn client_rejects_masked_frame() {
    assert_fails(client(), &masked(0x81, b"hi"), ProtocolError::MaskedFrame);
}

#[test]
fn rsv_bits_without_extension_are_rejected() {
    for b0 in [0xC1u8, 0xA1, 0x91] {
        assert_fails(server(), &masked(b0, b"x"), ProtocolError::ReservedBitsSet);
    }
}

#[test]
fn reserved_opcodes_are_rejected() {
    for op in [3u8, 7, 0xB, 0xF] {
        assert_fails(
            server(),
            &masked(0x80 | op, b""),
            ProtocolError::ReservedOpcode(op),
        );
    }
}

// §5.4, Fragmentation.

#[test]
fn control_frames_may_come_between_fragments() {
    let mut s = server();
    let mut wire = masked(0x01, b"Hel");
    wire.extend(masked(0x89, b"p"));
    wire.extend(masked(0x80, b"lo"));
    s.receive(&wire);
    assert_eq!(
        events(&mut s),
        [
            Ok(Message::Ping(Bytes::from_static(b"p"))),
            Ok(Message::text("Hello"))
        ]
    );
    assert_eq!(sent(&mut s), [Message::Pong(Bytes::from_static(b"p"))]);
}

#[test]
fn continuation_without_a_message_is_rejected() {
    assert_fails(
        server(),
        &masked(0x80, b"x"),
        ProtocolError::UnexpectedContinuation,
    );
}

#[test]
fn new_message_inside_a_fragmented_one_is_rejected() {
    let mut wire = masked(0x01, b"a");
    wire.extend(masked(0x81, b"b"));
    assert_fails(server(), &wire, ProtocolError::ExpectedContinuation);
}

#[test]
fn empty_fragments_make_an_empty_message() {
    let mut s = server();
    let mut wire = masked(0x02, b"");
    wire.extend(masked(0x00, b""));
    wire.extend(masked(0x80, b""));
    s.receive(&wire);
    assert_eq!(events(&mut s), [Ok(Message::Binary(Bytes::new()))]);
}

#[test]
fn frame_in_progress_names_each_partial_frame_and_ends_at_a_boundary() {
    // What a transport's per-frame deadline watches: a new number per
    // frame, fragments included, and `None` on a frame boundary.
    let mut s = server();
    assert_eq!(s.frame_in_progress(), None);
    let first = masked(0x01, b"Hel");
    let second = masked(0x80, b"lo");
    s.receive(&first[..1]);
    assert_eq!(events(&mut s), []);
    assert_eq!(s.frame_in_progress(), Some(0));
    // The rest of the first fragment and the start of the second, in one
    // read: frame 0 is done and frame 1 has begun.
    let mut wire = first[1..].to_vec();
    wire.extend_from_slice(&second[..3]);
    s.receive(&wire);
    assert_eq!(events(&mut s), []);
    assert_eq!(s.frame_in_progress(), Some(1));
    s.receive(&second[3..]);
    assert_eq!(events(&mut s), [Ok(Message::text("Hello"))]);
    assert_eq!(s.frame_in_progress(), None);
    // After the peer's Close, input is discarded: nothing is in progress.
    let mut wire = masked(0x88, b"");
    wire.extend_from_slice(&masked(0x81, b"late")[..2]);
    s.receive(&wire);
    events(&mut s);
    assert_eq!(s.frame_in_progress(), None);
}

#[test]
fn configured_fragment_size_splits_outgoing_messages() {
    let config = Config {
        fragment_size: Some(2),
        ..Config::default()
    };
    let mut s = Connection::new(Role::Server, config);
    s.send_text("Hello").unwrap();
    assert_eq!(
        output(&mut s),
        [0x01, 2, b'H', b'e', 0x00, 2, b'l', b'l', 0x80, 1, b'o']
    );
}

#[test]
fn fragments_sent_by_hand_may_split_a_code_point() {
    let mut s = server();
    s.send_text_fragment(&b"caf\xc3"[..], false).unwrap();
    s.send_ping("between").unwrap();
    s.send_text_fragment(&b"\xa9"[..], true).unwrap();
    assert_eq!(
        sent(&mut s),
        [
            Message::Ping(Bytes::from_static(b"between")),
            Message::text("café")
        ]
    );
}

#[test]
fn invalid_utf8_fragments_are_refused_before_sending() {
    let mut s = server();
    s.send_text_fragment(&b"ok"[..], false).unwrap();
    assert_eq!(
        s.send_text_fragment(&b"\xff"[..], false),
        Err(Error::InvalidUtf8Sent)
    );
    assert_eq!(
        s.send_text_fragment(&b"\xe2\x82"[..], true),
        Err(Error::InvalidUtf8Sent)
    );
    assert_eq!(s.send_text("x"), Err(Error::FragmentedMessageInProgress));
    assert_eq!(
        s.send_binary_fragment(&b"x"[..], true),
        Err(Error::NoFragmentedMessage)
    );
    s.send_text_fragment(&b"!"[..], true).unwrap();
    assert_eq!(sent(&mut s), [Message::text("ok!")]);
}

// §5.5, Control Frames.

#[test]
fn ping_is_answered_with_a_pong_of_the_same_payload() {
    let mut s = server();
    s.receive(&masked(0x89, b"Hello"));
    assert_eq!(
        events(&mut s),
        [Ok(Message::Ping(Bytes::from_static(b"Hello")))]
    );
    assert_eq!(output(&mut s), [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
}

#[test]
fn only_the_latest_pong_is_kept_when_pings_pile_up() {
    let mut s = server();
    for i in 0..1000u32 {
        s.receive(&masked(0x89, &i.to_be_bytes()));
    }
    assert_eq!(events(&mut s).len(), 1000);
    assert!(s.pending_output_len() < 32);
    assert_eq!(
        sent(&mut s),
        [Message::Pong(Bytes::copy_from_slice(&999u32.to_be_bytes()))]
    );
}

#[test]
fn fragmented_ping_is_rejected() {
    assert_fails(
        server(),
        &masked(0x09, b""),
        ProtocolError::FragmentedControlFrame,
    );
}

#[test]
fn control_frame_over_125_bytes_is_rejected() {
    assert_fails(
        server(),
        &masked(0x89, &[0; 126]),
        ProtocolError::ControlFrameTooLong,
    );
}

#[test]
fn oversized_ping_is_refused_before_sending() {
    let mut s = server();
    assert_eq!(s.send_ping(vec![0; 126]), Err(Error::ControlPayloadTooLong));
    assert!(s.poll_transmit().is_none());
}

// §5.5.1 and §7: the close handshake.

#[test]
fn peer_close_is_echoed_with_its_code() {
    let mut s = server();
    s.receive(&masked(0x88, b"\x0b\xb8bye"));
    assert_eq!(
        events(&mut s),
        [Ok(Message::Close(Some(CloseFrame::new(
            CloseCode::try_from(3000).unwrap(),
            "bye"
        ))))]
    );
    assert_eq!(output(&mut s), [0x88, 0x02, 0x0b, 0xb8]);
    assert_eq!(s.state(), State::Closed);
    assert!(s.should_close_tcp(), "the server closes TCP first");
}

#[test]
fn empty_close_is_answered_with_an_empty_close() {
    let mut c = client();
    c.receive(&[0x88, 0x00]);
    assert_eq!(events(&mut c), [Ok(Message::Close(None))]);
    assert_eq!(sent(&mut c), [Message::Close(None)]);
    assert!(
        !c.should_close_tcp(),
        "the client waits for the server to close TCP"
    );
    assert!(c.awaiting_close());
    c.receive_eof();
    assert_eq!(events(&mut c), []);
    assert!(c.should_close_tcp());
}

#[test]
fn closing_first_waits_for_the_peer_close() {
    let mut s = server();
    s.close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "restart")))
        .unwrap();
    assert_eq!(s.state(), State::Closing);
    assert!(s.awaiting_close() && !s.should_close_tcp());
    assert_eq!(
        sent(&mut s),
        [Message::Close(Some(CloseFrame::new(
            CloseCode::GOING_AWAY,
            "restart"
        )))]
    );
    // Messages still arrive; pings are no longer answered.
    s.receive(&masked(0x81, b"late"));
    s.receive(&masked(0x89, b""));
    s.receive(&masked(0x88, b"\x03\xe9"));
    assert_eq!(
        events(&mut s),
        [
            Ok(Message::text("late")),
            Ok(Message::Ping(Bytes::new())),
            Ok(close_with(CloseCode::GOING_AWAY))
        ]
    );
    assert!(s.poll_transmit().is_none(), "nothing may follow our Close");
    assert_eq!(s.state(), State::Closed);
    assert!(s.should_close_tcp());
}

#[test]
fn nothing_is_sent_after_close() {
    let mut s = server();
    s.close(None).unwrap();
    assert_eq!(s.send_text("x"), Err(Error::Closed));
    assert_eq!(s.send_ping(""), Err(Error::Closed));
    assert_eq!(s.close(None), Err(Error::Closed));
    assert_eq!(sent(&mut s), [Message::Close(None)]);
}

#[test]
fn frames_after_the_peer_close_are_ignored() {
    let mut s = server();
    let mut wire = masked(0x88, b"\x03\xe8");
    wire.extend(masked(0x81, b"after"));
    wire.extend(masked(0x89, b"after"));
    s.receive(&wire);
    assert_eq!(events(&mut s), [Ok(close_with(CloseCode::NORMAL))]);
    s.receive(&masked(0x81, b"later"));
    assert_eq!(events(&mut s), []);
    assert_eq!(sent(&mut s), [close_with(CloseCode::NORMAL)]);
}

#[test]
fn invalid_close_codes_are_rejected() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let payload = code.to_be_bytes();
        assert_fails(
            server(),
            &masked(0x88, &payload),
            ProtocolError::InvalidCloseCode(code),
        );
    }
}

#[test]
fn one_byte_close_payload_is_rejected() {
    assert_fails(
        server(),
        &masked(0x88, b"\x03"),
        ProtocolError::ClosePayloadTooShort,
    );
}

#[test]
fn close_reason_with_invalid_utf8_is_rejected() {
    assert_fails(
        server(),
        &masked(0x88, b"\x03\xe8\xce\xba\xe1"),
        ProtocolError::InvalidUtf8,
    );
}

#[test]
fn eof_without_close_is_an_abnormal_closure() {
    let mut s = server();
    s.receive(&masked(0x81, b"hi")[..4]);
    s.receive_eof();
    assert_eq!(events(&mut s), [Err(Error::AbnormalClosure)]);
    assert_eq!(Error::AbnormalClosure.close_code(), None);
    assert!(s.should_close_tcp());
    assert!(s.poll_transmit().is_none(), "no Close frame after EOF");
}

// §8.1: UTF-8, fail fast.

#[test]
fn invalid_text_fails_before_the_frame_is_complete() {
    let mut s = server();
    let wire = masked(0x81, b"valid, then \xf4\x90 and more to come");
    // Deliver up to and including the hopeless byte only.
    let cut = wire.len() - b" and more to come".len();
    s.receive(&wire[..cut]);
    assert_eq!(
        events(&mut s),
        [Err(Error::Protocol(ProtocolError::InvalidUtf8))]
    );
    assert_eq!(sent_close_code(&mut s), Some(CloseCode::INVALID_PAYLOAD));
}

#[test]
fn invalid_text_fails_at_the_fragment_where_it_appears() {
    let mut s = server();
    s.receive(&masked(0x01, "κόσμε".as_bytes()));
    assert_eq!(events(&mut s), []);
    s.receive(&masked(0x00, b"\xed\xa0\x80"));
    assert_eq!(
        events(&mut s),
        [Err(Error::Protocol(ProtocolError::InvalidUtf8))]
    );
}

#[test]
fn code_point_split_across_fragments_is_valid() {
    let mut s = server();
    s.receive(&masked(0x01, b"\xce"));
    s.receive(&masked(0x80, b"\xba"));
    assert_eq!(events(&mut s), [Ok(Message::text("κ"))]);
}

#[test]
fn unfinished_code_point_at_message_end_is_rejected() {
    assert_fails(server(), &masked(0x81, b"\xce"), ProtocolError::InvalidUtf8);
}

#[test]
fn binary_is_not_checked_for_utf8() {
    let mut s = server();
    s.receive(&masked(0x82, b"\xff\xfe"));
    assert_eq!(
        events(&mut s),
        [Ok(Message::Binary(Bytes::from_static(b"\xff\xfe")))]
    );
}

// Limits (§10.4: "implementations SHOULD impose a limit on frame sizes and
// the total message size after reassembly").

#[test]
fn frame_declaring_2_pow_63_minus_1_bytes_fails_without_buffering() {
    let mut s = server();
    let mut wire = vec![0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    wire.extend_from_slice(&KEY);
    s.receive(&wire);
    assert_eq!(
        events(&mut s),
        [Err(Error::Protocol(ProtocolError::FrameTooLarge))]
    );
    assert_eq!(s.buffered_len(), 0);
    assert_eq!(sent_close_code(&mut s), Some(CloseCode::MESSAGE_TOO_BIG));
}

#[test]
fn message_over_the_limit_fails_at_the_fragment_that_crosses_it() {
    let config = Config {
        max_message_size: 10,
        ..Config::default()
    };
    let mut s = Connection::new(Role::Server, config);
    s.receive(&masked(0x02, &[0; 6]));
    assert_eq!(events(&mut s), []);
    // Only the header of the crossing fragment is needed to decide.
    s.receive(&masked(0x80, &[0; 6])[..6]);
    assert_eq!(
        events(&mut s),
        [Err(Error::Protocol(ProtocolError::MessageTooLarge))]
    );
}

#[test]
fn too_many_fragments_fail_with_1009() {
    let config = Config {
        max_fragments: 3,
        ..Config::default()
    };
    let mut wire = masked(0x02, b"a");
    wire.extend(masked(0x00, b"b"));
    wire.extend(masked(0x00, b"c"));
    wire.extend(masked(0x80, b"d"));
    assert_fails(
        Connection::new(Role::Server, config),
        &wire,
        ProtocolError::TooManyFragments,
    );
}

#[test]
fn frame_at_exactly_the_limit_is_accepted() {
    let config = Config {
        max_frame_size: 4,
        max_message_size: 4,
        ..Config::default()
    };
    let mut s = Connection::new(Role::Server, config);
    s.receive(&masked(0x82, b"abcd"));
    assert_eq!(
        events(&mut s),
        [Ok(Message::Binary(Bytes::from_static(b"abcd")))]
    );
}

// Broadcast: encode once.

#[test]
fn prepared_frame_is_shared_not_copied() {
    let frame = PreparedFrame::text("to everyone");
    let mut a = server();
    let mut b = server();
    a.send_prepared(&frame).unwrap();
    b.send_prepared(&frame).unwrap();
    let (x, y) = (a.poll_transmit().unwrap(), b.poll_transmit().unwrap());
    assert_eq!(x.as_ptr(), y.as_ptr());
    assert_eq!(&x[..], &[&[0x81, 11][..], b"to everyone"].concat()[..]);
}

#[test]
fn clients_cannot_send_prepared_frames() {
    assert_eq!(
        client().send_prepared(&PreparedFrame::binary(b"x")),
        Err(Error::PreparedFrameFromClient)
    );
}

// Reading in any chunks.

#[test]
fn byte_at_a_time_gives_the_same_events() {
    let mut wire = masked(0x01, "día ".as_bytes());
    wire.extend(masked(0x89, b"ping"));
    wire.extend(masked(0x80, "señor".as_bytes()));
    wire.extend(masked(0x82, &[1, 2, 3]));
    let mut whole = server();
    whole.receive(&wire);
    let expected = events(&mut whole);
    let mut trickle = server();
    let mut got = Vec::new();
    for b in &wire {
        trickle.receive(std::slice::from_ref(b));
        got.extend(events(&mut trickle));
    }
    assert_eq!(got, expected);
    assert_eq!(expected.len(), 3);
}

#[test]
fn shrink_buffers_releases_idle_memory() {
    let mut s = server();
    s.receive(&masked(0x82, &[0; 3000]));
    events(&mut s);
    s.send_text("x").unwrap();
    output(&mut s);
    s.shrink_buffers();
    assert_eq!(s.rbuf.capacity(), 0);
    assert_eq!(s.out.buf.capacity(), 0);
}
