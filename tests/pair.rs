//! A client and a server `Connection` exchanging bytes in memory, stepped by
//! hand: no sockets, no clock. Properties of RFC 6455 §5.4 (fragmentation),
//! §5.5 (control frames between fragments) and §5.2 (framing, whatever the
//! read boundaries) over arbitrary inputs.

mod common;

use common::workload::{Op, apply, drain, feed, feed_in_pieces, messages};
use proptest::prelude::*;
use rfc6455::proto::{CloseCode, CloseFrame, Config, Connection, MaskRng, Message, Role, State};

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        ".{0,40}".prop_map(Op::Text),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Op::Binary),
        (
            any::<bool>(),
            ".{0,40}",
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(0usize..50, 0..6)
        )
            .prop_map(|(text, s, b, cuts)| Op::Fragmented {
                text,
                data: if text { s.into_bytes() } else { b },
                cuts
            }),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Op::Ping),
    ]
}

fn pair() -> (Connection, Connection) {
    let client =
        Connection::new(Role::Client, Config::default()).with_rng(MaskRng::from_seed([1; 32]));
    let server = Connection::new(Role::Server, Config::default());
    (client, server)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Everything a client sends arrives at the server intact and in order,
    /// however the bytes are cut; and the server's automatic pongs make it
    /// back to the client.
    #[test]
    fn client_to_server_round_trip(ops in proptest::collection::vec(op(), 0..12), cuts in proptest::collection::vec(any::<usize>(), 0..10)) {
        let (mut client, mut server) = pair();
        let expected: Vec<Message> = ops.iter().map(|op| apply(&mut client, op)).collect();
        let wire = drain(&mut client);
        let got = messages(&mut server, &wire, &cuts);
        prop_assert_eq!(&got, &expected);
        let pings: Vec<_> = expected.iter().filter_map(|m| match m { Message::Ping(p) => Some(p.clone()), _ => None }).collect();
        let back = feed_in_pieces(&mut client, &drain(&mut server), &[]);
        let pongs: Vec<_> = back.into_iter().filter_map(|m| match m { Message::Pong(p) => Some(p), _ => None }).collect();
        // §5.5.3: pings that piled up may be answered by one pong, the latest.
        prop_assert_eq!(pongs.last(), pings.last());
    }

    /// The same for a server sending, with messages split by the
    /// configured fragment size.
    #[test]
    fn server_to_client_round_trip(ops in proptest::collection::vec(op(), 0..12), cuts in proptest::collection::vec(any::<usize>(), 0..10), fragment in proptest::option::of(1usize..64)) {
        let config = Config { fragment_size: fragment, ..Config::default() };
        let mut server = Connection::new(Role::Server, config);
        let mut client = Connection::new(Role::Client, Config::default());
        let expected: Vec<Message> = ops.iter().map(|op| apply(&mut server, op)).collect();
        let got = messages(&mut client, &drain(&mut server), &cuts);
        prop_assert_eq!(got, expected);
    }

    /// Feeding the same bytes split at arbitrary points gives the same
    /// events, whatever the bytes are, valid or not.
    #[test]
    fn any_split_gives_the_same_events(bytes in proptest::collection::vec(any::<u8>(), 0..400), cuts in proptest::collection::vec(any::<usize>(), 0..12), server_role in any::<bool>()) {
        let role = if server_role { Role::Server } else { Role::Client };
        let run = |cuts: &[usize]| {
            let mut conn = Connection::new(role, Config::default()).with_rng(MaskRng::from_seed([2; 32]));
            let events = feed(&mut conn, &bytes, cuts);
            (events, drain(&mut conn), conn.state())
        };
        prop_assert_eq!(run(&cuts), run(&[]));
    }

    /// A valid stream of well-formed messages with some bytes mutated never
    /// panics and always ends in a result the RFC allows: messages, or a
    /// failure with a Close frame of 1002, 1007 or 1009.
    #[test]
    fn corrupted_streams_fail_with_a_protocol_close_code(ops in proptest::collection::vec(op(), 1..6), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let (mut client, mut server) = pair();
        for op in &ops { apply(&mut client, op); }
        let mut wire = drain(&mut client);
        for (at, x) in flips { let i = at % wire.len(); wire[i] ^= x; }
        server.receive(&wire);
        loop {
            match server.poll_message() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => {
                    let code = e.close_code().expect("a protocol error has a code");
                    prop_assert!([1002, 1007, 1009].contains(&code.as_u16()));
                    let echoed = feed_in_pieces(&mut client, &drain(&mut server), &[]);
                    prop_assert!(matches!(echoed.last(), Some(Message::Close(Some(f))) if f.code == code));
                    break;
                }
            }
        }
    }
}

/// The close handshake ends in the same state on both sides (§7.1.1–7.1.4).
#[test]
fn close_handshake_started_by_the_client() {
    let (mut client, mut server) = pair();
    client
        .close(Some(CloseFrame::new(CloseCode::NORMAL, "done")))
        .unwrap();
    assert_eq!(client.state(), State::Closing);
    let to_server = drain(&mut client);
    assert_eq!(
        feed_in_pieces(&mut server, &to_server, &[]),
        [Message::Close(Some(CloseFrame::new(
            CloseCode::NORMAL,
            "done"
        )))]
    );
    assert!(server.should_close_tcp());
    let to_client = drain(&mut server);
    assert_eq!(
        feed_in_pieces(&mut client, &to_client, &[]),
        [Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")))]
    );
    assert_eq!(
        (client.state(), server.state()),
        (State::Closed, State::Closed)
    );
    // The client waits for the server's TCP close, then closes too.
    assert!(client.awaiting_close());
    client.receive_eof();
    assert_eq!(client.poll_message(), Ok(None));
    assert!(client.should_close_tcp());
}

#[test]
fn close_handshake_started_by_the_server() {
    let (mut client, mut server) = pair();
    server
        .close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "")))
        .unwrap();
    feed_in_pieces(&mut client, &drain(&mut server), &[]);
    assert_eq!(client.state(), State::Closed);
    assert!(!server.should_close_tcp());
    assert_eq!(
        feed_in_pieces(&mut server, &drain(&mut client), &[]),
        [Message::Close(Some(CloseFrame::new(
            CloseCode::GOING_AWAY,
            ""
        )))]
    );
    assert_eq!(server.state(), State::Closed);
    assert!(server.should_close_tcp());
}
