//! A client and a server state machine connected back to back, driven by an
//! arbitrary workload: sends of every kind, fragments, pings, closes, and
//! deliveries of arbitrary sizes in either direction. Every message sent
//! must arrive intact and in order, neither side may ever see a protocol
//! error, and a close handshake must leave both sides CLOSED.
#![no_main]

use std::collections::VecDeque;

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rfc6455::proto::{CloseCode, CloseFrame, Config, Connection, MaskRng, Message, Role, State};

#[derive(Arbitrary, Debug)]
enum Op {
    Text {
        from_client: bool,
        text: String,
    },
    Binary {
        from_client: bool,
        data: Vec<u8>,
    },
    Fragments {
        from_client: bool,
        text: String,
        binary: bool,
        cuts: Vec<u8>,
    },
    Ping {
        from_client: bool,
        data: Vec<u8>,
    },
    Close {
        from_client: bool,
        code: u16,
    },
    Deliver {
        to_server: bool,
        max: u16,
    },
}

/// One direction: bytes in flight and what the receiver must see.
#[derive(Default)]
struct Pipe {
    wire: VecDeque<u8>,
    expected: VecDeque<Message>,
}

struct Pair {
    client: Connection,
    server: Connection,
    to_server: Pipe,
    to_client: Pipe,
    /// Whether each side has queued a Close: `[server, client]`.
    closed: [bool; 2],
}

impl Pair {
    fn sender(&mut self, from_client: bool) -> (&mut Connection, &mut Pipe) {
        if from_client {
            (&mut self.client, &mut self.to_server)
        } else {
            (&mut self.server, &mut self.to_client)
        }
    }

    /// Moves up to `max` bytes to the receiving side and checks its events.
    fn deliver(&mut self, to_server: bool, max: usize) {
        let receiver_side = usize::from(!to_server);
        let (sender, receiver, pipe, back) = if to_server {
            (
                &mut self.client,
                &mut self.server,
                &mut self.to_server,
                &mut self.to_client,
            )
        } else {
            (
                &mut self.server,
                &mut self.client,
                &mut self.to_client,
                &mut self.to_server,
            )
        };
        while let Some(chunk) = sender.poll_transmit() {
            pipe.wire.extend(chunk.iter());
        }
        let n = max.min(pipe.wire.len());
        let bytes: Vec<u8> = pipe.wire.drain(..n).collect();
        receiver.receive(&bytes);
        loop {
            match receiver.poll_message() {
                Ok(None) => break,
                Err(e) => panic!("valid traffic failed: {e}"),
                // Pongs are automatic, and may be coalesced (§5.5.3).
                Ok(Some(Message::Pong(_))) => {}
                Ok(Some(message)) => {
                    let expected = pipe.expected.pop_front();
                    assert_eq!(Some(&message), expected.as_ref(), "out of order or damaged");
                    if let Message::Close(frame) = message {
                        // §5.5.1: the receiver answers, echoing the code,
                        // unless it had sent its own Close first.
                        if !self.closed[receiver_side] {
                            self.closed[receiver_side] = true;
                            back.expected.push_back(Message::Close(
                                frame.map(|f| CloseFrame::new(f.code, "")),
                            ));
                        }
                    }
                }
            }
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut pair = Pair {
        client: Connection::new(Role::Client, Config::default())
            .with_rng(MaskRng::from_seed([3; 32])),
        server: Connection::new(Role::Server, Config::default()),
        to_server: Pipe::default(),
        to_client: Pipe::default(),
        closed: [false, false],
    };
    for op in ops.into_iter().take(64) {
        match op {
            Op::Text { from_client, text } => {
                let (conn, pipe) = pair.sender(from_client);
                if conn.send_text(text.as_str()).is_ok() {
                    pipe.expected.push_back(Message::text(text));
                }
            }
            Op::Binary { from_client, data } => {
                let (conn, pipe) = pair.sender(from_client);
                if conn.send_binary(data.clone()).is_ok() {
                    pipe.expected.push_back(Message::binary(data));
                }
            }
            Op::Fragments {
                from_client,
                text,
                binary,
                cuts,
            } => {
                let (conn, pipe) = pair.sender(from_client);
                let mut rest = Bytes::from(text.clone().into_bytes());
                let mut ok = true;
                let mut started = false;
                for cut in cuts.into_iter().take(8) {
                    let piece = rest.split_to(usize::from(cut).min(rest.len()));
                    let r = if binary {
                        conn.send_binary_fragment(piece, false)
                    } else {
                        conn.send_text_fragment(piece, false)
                    };
                    ok &= r.is_ok();
                    if !ok {
                        // Only the first fragment may fail (the connection is
                        // closed); once a message is begun it can be finished.
                        assert!(!started, "a middle fragment failed: {r:?}");
                        break;
                    }
                    started = true;
                }
                if ok {
                    let r = if binary {
                        conn.send_binary_fragment(rest, true)
                    } else {
                        conn.send_text_fragment(rest, true)
                    };
                    assert!(r.is_ok() || !started, "the last fragment failed: {r:?}");
                    if r.is_ok() {
                        pipe.expected.push_back(if binary {
                            Message::binary(text.into_bytes())
                        } else {
                            Message::text(text)
                        });
                    }
                }
            }
            Op::Ping {
                from_client,
                mut data,
            } => {
                data.truncate(125);
                let (conn, pipe) = pair.sender(from_client);
                if conn.send_ping(data.clone()).is_ok() {
                    pipe.expected.push_back(Message::Ping(Bytes::from(data)));
                }
            }
            Op::Close { from_client, code } => {
                let code = CloseCode::try_from(code).unwrap_or(CloseCode::NORMAL);
                let (conn, pipe) = pair.sender(from_client);
                let frame = CloseFrame::new(code, "fuzz");
                let closed = !conn.close_sent() && conn.close(Some(frame.clone())).is_ok();
                if closed {
                    pipe.expected.push_back(Message::Close(Some(frame)));
                    pair.closed[usize::from(from_client)] = true;
                }
            }
            Op::Deliver { to_server, max } => pair.deliver(to_server, usize::from(max)),
        }
    }
    // Deliver everything, both ways, until nothing moves.
    for _ in 0..4 {
        pair.deliver(true, usize::MAX);
        pair.deliver(false, usize::MAX);
    }
    assert!(
        pair.to_server.expected.is_empty(),
        "lost toward the server: {:?}",
        pair.to_server.expected
    );
    assert!(
        pair.to_client.expected.is_empty(),
        "lost toward the client: {:?}",
        pair.to_client.expected
    );
    if pair.closed.iter().any(|&c| c) {
        assert_eq!(pair.client.state(), State::Closed);
        assert_eq!(pair.server.state(), State::Closed);
    }
});
