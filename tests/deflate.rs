//! RFC 7692, permessage-deflate, end to end: a client and a server
//! `Connection` that agreed through the real handshake code, stepped in
//! memory with no sockets and no clock.
//!
//! - §7.1, §7.2: every agreement (context takeover or not, each way; every
//!   window from 2^8 to 2^15) carries every kind of message intact, in
//!   order, both ways, however it is fragmented and however the bytes are
//!   cut on the way; and a long repetitive message really is compressed,
//!   unless the sender's window is 2^8 (see `proto::deflate`'s module doc).
//! - §6.1 and RFC 6455 §7.4.1: RSV1 where it must not be is 1002, a
//!   compressed message that is not UTF-8 or not DEFLATE is 1007, and one
//!   that inflates past the message limit is 1009 with memory bounded.
//! - The memory and broadcast promises: no context takeover leaves nothing
//!   allocated between messages; a `PreparedFrame` is the same bytes for
//!   every recipient and leaves each connection's stream valid.

mod common;

use bytes::Bytes;
use common::workload::{Op, apply, drain, messages};
use proptest::prelude::*;
use rfc6455::proto::deflate::DeflateParams;
use rfc6455::proto::deflate::codec::Compressor;
use rfc6455::proto::{
    ClientHandshake, Config, Connection, DeflateConfig, Error, FrameHeader, MaskRng, Message,
    OpCode, PreparedFrame, Role, ServerHandshake, WsUrl,
};

// --- plumbing ----------------------------------------------------------------

/// Negotiates through the real handshake: the client offers `client`, the
/// server answers within `server`. Returns `(client's, server's)` view of
/// the agreement, which must be the same.
fn agree(client: &DeflateConfig, server: &DeflateConfig) -> (DeflateParams, DeflateParams) {
    let client_proto = Config {
        deflate: Some(client.clone()),
        ..Config::default()
    };
    let server_proto = Config {
        deflate: Some(server.clone()),
        ..Config::default()
    };
    let url = WsUrl::parse("ws://localhost/chat").unwrap();
    let (mut handshake, request) =
        ClientHandshake::with_key(&url, &[], &[], &client_proto, [7; 16]).unwrap();
    let (req, used) = ServerHandshake::new(&server_proto)
        .receive(&request)
        .unwrap()
        .expect("a whole request");
    assert_eq!(used, request.len());
    let upgrade = req.upgrade().unwrap();
    let server_params = upgrade
        .negotiate_deflate(server)
        .expect("every offer we make is acceptable");
    let response = upgrade.accept_with(None, Some(&server_params)).unwrap();
    let (resp, _) = handshake
        .receive(&response)
        .unwrap()
        .expect("a whole response");
    let client_params = resp.deflate.expect("the client takes the agreement");
    assert_eq!(client_params, server_params, "both ends agree");
    (client_params, server_params)
}

/// A client and a server that negotiated `client` against `server`; each
/// side splits what it sends at its `fragment_size`.
fn connect(
    client: &DeflateConfig,
    server: &DeflateConfig,
    client_fragment: Option<usize>,
    server_fragment: Option<usize>,
) -> (Connection, Connection, DeflateParams) {
    let (client_params, server_params) = agree(client, server);
    let c = Connection::new(
        Role::Client,
        Config {
            deflate: Some(client.clone()),
            fragment_size: client_fragment,
            ..Config::default()
        },
    )
    .with_rng(MaskRng::from_seed([1; 32]))
    .with_deflate(client_params);
    let s = Connection::new(
        Role::Server,
        Config {
            deflate: Some(server.clone()),
            fragment_size: server_fragment,
            ..Config::default()
        },
    )
    .with_deflate(server_params);
    (c, s, server_params)
}

/// A server with deflate agreed on the defaults, for the rule tests.
fn deflate_server(config: Config) -> Connection {
    let (_, params) = agree(&DeflateConfig::default(), &DeflateConfig::default());
    Connection::new(Role::Server, config).with_deflate(params)
}

/// A client's frame, masked with the all-zero key so that the payload
/// bytes appear on the wire as written (§5.3: XOR with zero).
fn client_frame(opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let b0 = u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode.as_u8();
    common::masked_with(b0, [0; 4], payload)
}

/// Feeds `bytes` to `conn` and returns the close code it failed with,
/// after checking that the Close frame it queued carries the same code
/// (RFC 6455 §7.1.7).
fn fails_with(conn: &mut Connection, bytes: &[u8]) -> u16 {
    conn.receive(bytes);
    let code = loop {
        match conn.poll_message() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the connection did not fail"),
            Err(e) => break e.close_code().expect("a protocol error").as_u16(),
        }
    };
    let mut peer = Connection::new(Role::Client, Config::default());
    peer.receive(&drain(conn));
    match peer.poll_message() {
        Ok(Some(Message::Close(Some(frame)))) => assert_eq!(frame.code.as_u16(), code),
        other => panic!("expected a Close frame, got {other:?}"),
    }
    code
}

/// A text long and repetitive enough to shrink a lot, and to refer back
/// further than 2^9 bytes.
fn long_text(seed: usize) -> String {
    (0..200)
        .map(|i| format!("{{\"n\":{},\"room\":\"general\"}} ", (i * 7 + seed) % 13))
        .collect()
}

/// Whether a message's first frame has RSV1, "Per-Message Compressed"
/// (RFC 7692 §6).
fn rsv1(wire: &[u8]) -> bool {
    wire.first().is_some_and(|b| b & 0x40 != 0)
}

/// The payload bytes of every data frame in `wire`, headers left out, so
/// that compression is measured whatever the fragment size.
fn payload_len(mut wire: &[u8]) -> usize {
    let mut total = 0;
    while let Some((header, header_len)) = FrameHeader::parse(wire).expect("a valid frame") {
        let len = usize::try_from(header.payload_len).unwrap();
        if !header.opcode.is_control() {
            total += len;
        }
        wire = &wire[header_len + len..];
    }
    assert!(wire.is_empty(), "whole frames only");
    total
}

// --- the workload ----------------------------------------------------------------

/// Payloads, empty ones included: random, which does not shrink, and
/// repetitive, which does.
fn bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        (proptest::collection::vec(any::<u8>(), 1..8), 1usize..300)
            .prop_map(|(unit, n)| unit.repeat(n)),
    ]
}

fn text_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,60}",
        ("[a-z é€]{1,10}", 1usize..200).prop_map(|(unit, n)| unit.repeat(n)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        text_strategy().prop_map(Op::Text),
        bytes_strategy().prop_map(Op::Binary),
        (
            any::<bool>(),
            text_strategy(),
            bytes_strategy(),
            proptest::collection::vec(0usize..400, 0..5)
        )
            .prop_map(|(text, s, b, cuts)| Op::Fragmented {
                text,
                data: if text { s.into_bytes() } else { b },
                cuts
            }),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Op::Ping),
    ]
}

/// Sends `ops` from `from` to `to`, delivered in pieces cut at `cuts`;
/// every message must arrive intact and in order.
fn exchange(from: &mut Connection, to: &mut Connection, ops: &[Op], cuts: &[usize]) {
    let expected: Vec<Message> = ops.iter().map(|op| apply(from, op)).collect();
    let got = messages(to, &drain(from), cuts);
    assert_eq!(got, expected);
}

/// Sends one long repetitive text from `from` to `to` and checks that it
/// was compressed exactly when `compressed` says it must be.
fn check_long_text(from: &mut Connection, to: &mut Connection, compressed: bool, seed: usize) {
    // Pongs owed for earlier pings go first, so that the text's first
    // frame leads the bytes.
    assert_eq!(messages(to, &drain(from), &[]), vec![]);
    let text = long_text(seed);
    from.send_text(text.as_str()).unwrap();
    let wire = drain(from);
    assert_eq!(rsv1(&wire), compressed, "RSV1 on the first frame");
    let sent = payload_len(&wire);
    if compressed {
        assert!(
            sent < text.len() / 4,
            "{sent} bytes sent for {}",
            text.len()
        );
    } else {
        assert_eq!(sent, text.len());
    }
    assert_eq!(messages(to, &wire, &[]), vec![Message::text(text)]);
}

/// Every combination of the four parameters an agreement has.
fn agreements() -> Vec<DeflateConfig> {
    let mut out = Vec::new();
    for server_no_context_takeover in [false, true] {
        for client_no_context_takeover in [false, true] {
            for server_max_window_bits in 8..=15 {
                for client_max_window_bits in 8..=15 {
                    out.push(DeflateConfig {
                        server_no_context_takeover,
                        client_no_context_takeover,
                        server_max_window_bits,
                        client_max_window_bits,
                        ..DeflateConfig::default()
                    });
                }
            }
        }
    }
    out
}

// --- RFC 7692 §7.1, §7.2: round trips ----------------------------------------

#[test]
fn every_agreement_carries_a_fixed_workload_both_ways() {
    let workload = [
        Op::Text(long_text(0)),
        Op::Text("short, under the threshold".into()),
        Op::Binary((0..=255).cycle().take(1000).collect()),
        Op::Fragmented {
            text: true,
            data: "fragmented é€ 😀 ".repeat(40).into_bytes(),
            cuts: vec![1, 0, 100, 3],
        },
        Op::Ping(b"between".to_vec()),
        // Refers back into the first message with context takeover.
        Op::Text(long_text(0)),
    ];
    for client in agreements() {
        // Offered by the client, accepted as is by a default server.
        let (mut c, mut s, params) = connect(&client, &DeflateConfig::default(), None, None);
        assert_eq!(
            (
                params.server_no_context_takeover,
                params.client_no_context_takeover,
                params.server_max_window_bits,
                params.client_max_window_bits
            ),
            (
                client.server_no_context_takeover,
                client.client_no_context_takeover,
                client.server_max_window_bits,
                client.client_max_window_bits
            )
        );
        exchange(&mut c, &mut s, &workload, &[5, 77, 300]);
        exchange(&mut s, &mut c, &workload, &[1, 2, 3]);
        check_long_text(&mut c, &mut s, params.client_max_window_bits > 8, 1);
        check_long_text(&mut s, &mut c, params.server_max_window_bits > 8, 2);
    }
}

fn deflate_config() -> impl Strategy<Value = DeflateConfig> {
    (
        any::<bool>(),
        any::<bool>(),
        8u8..=15,
        8u8..=15,
        prop_oneof![Just(0usize), Just(64)],
        prop_oneof![Just(1u8), Just(6), Just(9)],
    )
        .prop_map(
            |(snct, cnct, sbits, cbits, threshold, level)| DeflateConfig {
                server_no_context_takeover: snct,
                client_no_context_takeover: cnct,
                server_max_window_bits: sbits,
                client_max_window_bits: cbits,
                threshold,
                level,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever each end is configured with, whatever is sent, fragmented
    /// by `fragment_size` or by hand, and however the bytes are cut: every
    /// message arrives intact and in order, both ways, and a long
    /// repetitive message is compressed unless the sender's window is 2^8.
    #[test]
    fn any_configurations_round_trip_any_workload(
        client in deflate_config(),
        server in deflate_config(),
        client_fragment in proptest::option::of(1usize..200),
        server_fragment in proptest::option::of(1usize..200),
        rounds in proptest::collection::vec(
            (
                proptest::collection::vec(op(), 0..6),
                proptest::collection::vec(op(), 0..6),
                proptest::collection::vec(any::<usize>(), 0..8),
            ),
            1..3,
        ),
    ) {
        let (mut c, mut s, params) = connect(&client, &server, client_fragment, server_fragment);
        for (to_server, to_client, cuts) in &rounds {
            exchange(&mut c, &mut s, to_server, cuts);
            exchange(&mut s, &mut c, to_client, cuts);
        }
        check_long_text(&mut c, &mut s, params.client_max_window_bits > 8, 3);
        check_long_text(&mut s, &mut c, params.server_max_window_bits > 8, 4);
        // No context takeover: nothing is held between messages.
        prop_assert_eq!(
            s.deflate_state_allocated(),
            (
                !params.server_no_context_takeover && params.server_max_window_bits > 8,
                !params.client_no_context_takeover && params.client_max_window_bits > 8
            )
        );
    }
}

// --- RFC 7692 §7.2.3: the examples on the wire ---------------------------------

#[test]
fn server_inflates_the_rfc_7692_hello_frames() {
    let mut server = deflate_server(Config::default());
    // §7.2.3.1: "Hello" in one frame, then in two.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let mut wire = client_frame(OpCode::Text, true, true, &hello);
    wire.extend(client_frame(OpCode::Text, false, true, &hello[..3]));
    wire.extend(client_frame(OpCode::Continuation, true, false, &hello[3..]));
    // §7.2.3.2: with context takeover, "Hello" again as a back-reference.
    wire.extend(client_frame(
        OpCode::Text,
        true,
        true,
        &[0xf2, 0x00, 0x11, 0x00, 0x00],
    ));
    // §7.2.3.3: a stored block.
    wire.extend(client_frame(
        OpCode::Binary,
        true,
        true,
        &[
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ],
    ));
    // §7.2.3.6: the empty message.
    wire.extend(client_frame(OpCode::Text, true, true, &[0x00]));
    assert_eq!(
        messages(&mut server, &wire, &[1, 9, 20]),
        vec![
            Message::text("Hello"),
            Message::text("Hello"),
            Message::text("Hello"),
            Message::binary(&b"Hello"[..]),
            Message::text(""),
        ]
    );
}

// --- RFC 7692 §6.1 and RFC 6455 §5.2: RSV1 where it must not be ---------------

#[test]
fn server_with_deflate_fails_a_ping_with_rsv1_with_1002() {
    let mut server = deflate_server(Config::default());
    let ping = client_frame(OpCode::Ping, true, true, b"");
    assert_eq!(fails_with(&mut server, &ping), 1002);
}

#[test]
fn server_fails_rsv1_on_a_continuation_frame_with_1002() {
    let mut server = deflate_server(Config::default());
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let mut wire = client_frame(OpCode::Text, false, true, &hello[..3]);
    wire.extend(client_frame(OpCode::Continuation, true, true, &hello[3..]));
    assert_eq!(fails_with(&mut server, &wire), 1002);
}

#[test]
fn server_without_deflate_fails_rsv1_with_1002() {
    let mut server = Connection::new(Role::Server, Config::default());
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let wire = client_frame(OpCode::Text, true, true, &hello);
    assert_eq!(fails_with(&mut server, &wire), 1002);
}

// --- RFC 6455 §7.4.1: what the payload inflates to --------------------------------

#[test]
fn compressed_text_that_inflates_to_invalid_utf8_fails_with_1007() {
    let mut server = deflate_server(Config::default());
    let z = Compressor::new(6, 15, true)
        .compress(b"valid so far \xff\xfe", true)
        .unwrap();
    let wire = client_frame(OpCode::Text, true, true, &z);
    assert_eq!(fails_with(&mut server, &wire), 1007);
    // The same bytes as binary are fine.
    let mut server = deflate_server(Config::default());
    let wire = client_frame(OpCode::Binary, true, true, &z);
    assert_eq!(
        messages(&mut server, &wire, &[]),
        vec![Message::binary(&b"valid so far \xff\xfe"[..])]
    );
}

#[test]
fn garbage_compressed_data_fails_with_1007() {
    for garbage in [&[0xffu8; 10][..], &[0x07, 0x00, 0x00, 0x00]] {
        let mut server = deflate_server(Config::default());
        let wire = client_frame(OpCode::Binary, true, true, garbage);
        assert_eq!(fails_with(&mut server, &wire), 1007, "{garbage:02x?}");
    }
}

#[test]
fn zip_bomb_fails_with_1009_and_memory_stays_bounded() {
    const LIMIT: usize = 1 << 20;
    // 8 MiB of zeros compress to a few KiB.
    let bomb = Compressor::new(9, 15, true)
        .compress(&vec![0u8; 8 << 20], true)
        .unwrap();
    assert!(bomb.len() < 16 << 10, "{}", bomb.len());
    let mut server = deflate_server(Config {
        max_message_size: LIMIT,
        ..Config::default()
    });
    let wire = client_frame(OpCode::Binary, true, true, &bomb);
    let mut code = None;
    for piece in wire.chunks(1000) {
        server.receive(piece);
        match server.poll_message() {
            Ok(None) => {}
            Ok(Some(_)) => panic!("the bomb was delivered"),
            Err(e) => {
                code = Some(e.close_code().unwrap().as_u16());
                break;
            }
        }
        // At most the limit and one byte inflated, plus one frame.
        assert!(server.buffered_len() <= LIMIT + 1 + wire.len());
    }
    assert_eq!(code, Some(1009));
    assert!(
        server.buffered_len() < LIMIT,
        "{} bytes held after the failure",
        server.buffered_len()
    );
    // Sticky (RFC 6455 §7.1.7): later input is discarded.
    server.receive(&wire);
    assert!(matches!(server.poll_message(), Err(Error::Protocol(_))));
    assert_eq!(server.buffered_len(), 0);
}

// --- RFC 7692 §7.1.1: context takeover and memory ---------------------------------

#[test]
fn no_context_takeover_leaves_nothing_allocated_between_messages() {
    let config = DeflateConfig::no_context_takeover();
    let (mut c, mut s, _) = connect(&config, &config, None, None);
    check_long_text(&mut c, &mut s, true, 0);
    check_long_text(&mut s, &mut c, true, 1);
    assert_eq!(s.deflate_state_allocated(), (false, false));
    assert_eq!(c.deflate_state_allocated(), (false, false));
    // With takeover, both contexts outlive the message.
    let config = DeflateConfig::default();
    let (mut c, mut s, _) = connect(&config, &config, None, None);
    check_long_text(&mut c, &mut s, true, 0);
    check_long_text(&mut s, &mut c, true, 1);
    assert_eq!(s.deflate_state_allocated(), (true, true));
    assert_eq!(c.deflate_state_allocated(), (true, true));
}

#[test]
fn prepared_deflated_frame_is_the_same_for_every_recipient_and_keeps_streams_valid() {
    let text = long_text(5);
    let prepared = PreparedFrame::text_deflated(text.as_str(), &DeflateConfig::default());
    let deflated = prepared
        .deflated_bytes()
        .expect("long enough to compress")
        .clone();
    assert!(rsv1(&deflated) && payload_len(&deflated) < text.len() / 4);

    // One recipient without context takeover, one with, whose compressor
    // has already written a message that the next one could refer back to.
    let reset = DeflateConfig::no_context_takeover();
    let (mut c1, mut s1, _) = connect(&reset, &reset, None, None);
    let takeover = DeflateConfig::default();
    let (mut c2, mut s2, _) = connect(&takeover, &takeover, None, None);
    let first = long_text(0);
    s2.send_text(first.as_str()).unwrap();
    assert_eq!(
        messages(&mut c2, &drain(&mut s2), &[]),
        vec![Message::text(first.as_str())]
    );

    s1.send_prepared(&prepared).unwrap();
    s2.send_prepared(&prepared).unwrap();
    let (w1, w2) = (drain(&mut s1), drain(&mut s2));
    assert_eq!(w1, w2, "the same bytes for both");
    assert_eq!(&w1[..], &deflated[..]);
    assert_eq!(
        messages(&mut c1, &w1, &[3]),
        vec![Message::text(text.as_str())]
    );
    assert_eq!(
        messages(&mut c2, &w2, &[3]),
        vec![Message::text(text.as_str())]
    );

    // The first message again: without the compressor's reset it would
    // refer back past the prepared frame, which the client's window holds
    // in between.
    s2.send_text(first.as_str()).unwrap();
    let wire = drain(&mut s2);
    assert!(rsv1(&wire));
    assert_eq!(
        messages(&mut c2, &wire, &[7]),
        vec![Message::text(first.as_str())]
    );
}

// --- RFC 7692 §7.1.2: window sizes -----------------------------------------------

#[test]
fn client_decodes_a_server_limited_to_a_512_byte_window() {
    let client = DeflateConfig {
        server_max_window_bits: 9,
        ..DeflateConfig::default()
    };
    let (mut c, mut s, params) = connect(&client, &DeflateConfig::default(), None, None);
    assert_eq!(params.server_max_window_bits, 9);
    // Repeats at distances both under and over 512 bytes.
    for seed in 0..4 {
        check_long_text(&mut s, &mut c, true, seed);
    }
    let mut random = Vec::new();
    let mut rng = MaskRng::from_seed([9; 32]);
    for _ in 0..64 {
        let mut block = [0u8; 32];
        rng.fill(&mut block);
        random.extend_from_slice(&block);
        random.extend_from_slice(&block);
    }
    // Pieces that repeat 700 bytes later: outside the window.
    let far: Vec<u8> = random.iter().chain(random.iter()).copied().collect();
    s.send_binary(far.clone()).unwrap();
    assert_eq!(
        messages(&mut c, &drain(&mut s), &[100]),
        vec![Message::binary(far)]
    );
}

#[test]
fn connection_whose_compress_window_is_256_bytes_sends_uncompressed() {
    // The client's own window is 2^8, which zlib cannot compress with.
    let client = DeflateConfig {
        client_max_window_bits: 8,
        ..DeflateConfig::default()
    };
    let (mut c, mut s, params) = connect(&client, &DeflateConfig::default(), None, None);
    assert_eq!(params.client_max_window_bits, 8);
    check_long_text(&mut c, &mut s, false, 0);
    // Fragments too: RSV1 clear on the first, and everything arrives.
    let text = long_text(1);
    let (a, b) = text.split_at(1000);
    c.send_text_fragment(Bytes::copy_from_slice(a.as_bytes()), false)
        .unwrap();
    c.send_text_fragment(Bytes::copy_from_slice(b.as_bytes()), true)
        .unwrap();
    let wire = drain(&mut c);
    assert!(!rsv1(&wire));
    assert_eq!(
        messages(&mut s, &wire, &[]),
        vec![Message::text(text.as_str())]
    );
    // The other way is compressed as usual.
    check_long_text(&mut s, &mut c, true, 2);
}

// --- regressions found by fuzz/fuzz_targets/inflate.rs --------------------------

/// With context takeover, a sync flush of no new data writes nothing at all
/// (zlib does not repeat a flush), so the sender's payload is empty
/// instead of RFC 7692 §7.2.3.6's `0x00`. The receiver appends
/// `00 00 ff ff` (§7.2.2) to nothing, which starts a stored block 0xff00
/// bytes long, and the next message is read as its contents.
#[test]
fn an_empty_last_fragment_keeps_the_stream_valid() {
    let config = DeflateConfig::default();
    let (mut c, mut s, _) = connect(&config, &config, None, None);
    c.send_text_fragment(Bytes::from_static(b"Hello"), false)
        .unwrap();
    c.send_text_fragment(Bytes::new(), true).unwrap();
    c.send_text(long_text(0).as_str()).unwrap();
    assert_eq!(
        messages(&mut s, &drain(&mut c), &[]),
        vec![Message::text("Hello"), Message::text(long_text(0))]
    );
}

/// The same, for a whole empty message compressed (threshold 0) after
/// another.
#[test]
fn an_empty_message_after_a_compressed_one_keeps_the_stream_valid() {
    let config = DeflateConfig {
        threshold: 0,
        ..DeflateConfig::default()
    };
    let (mut c, mut s, _) = connect(&config, &config, None, None);
    for text in ["Hello", "", "Hello again"] {
        s.send_text(text).unwrap();
    }
    assert_eq!(
        messages(&mut c, &drain(&mut s), &[]),
        vec![
            Message::text("Hello"),
            Message::text(""),
            Message::text("Hello again")
        ]
    );
}

/// RFC 7692 §7.2.1: with context takeover a message may refer back to
/// the ones before it; a connection split in two
/// (`Connection::split_sender`) hands its compressor over with that
/// context, so a message repeated after the split still costs a few bytes.
#[test]
fn split_sender_carries_on_the_compressors_context() {
    let config = DeflateConfig::default();
    let (_, params) = agree(&config, &config);
    let proto = Config {
        deflate: Some(config),
        ..Config::default()
    };
    // Hard to compress on its own (about 4 KiB of hash-like hex), easy
    // to compress as a copy of a message the window holds.
    let text: String = (0..512u32)
        .map(|i| format!("{:08x}", i.wrapping_mul(2_654_435_761)))
        .collect();
    let wire = |conn: &mut Connection| {
        let mut n = 0;
        while let Some(chunk) = conn.poll_transmit() {
            n += chunk.len();
        }
        n
    };
    let mut conn = Connection::new(Role::Server, proto).with_deflate(params);
    conn.send_text(text.clone()).unwrap();
    let first = wire(&mut conn);
    let mut sender = conn.split_sender();
    sender.send_text(text).unwrap();
    let again = wire(&mut sender);
    assert!(
        first > 1000 && again * 10 < first,
        "{again} bytes after the split against {first} for the first copy"
    );
}
