//! Cancellation safety of `transport::WebSocket::recv`: a structured stream
//! of messages (text, binary, fragmented, with Pings between) arrives at a
//! server `WebSocket` a few bytes at a time, and `recv()` futures are
//! dropped after an arbitrary number of polls, in the middle of a frame
//! header, a payload or a fragmented message, as a `tokio::select!` that
//! loses a race drops them.
//!
//! The promise (`# Cancel safety` on `recv`, STYLE §13): dropping the
//! future loses nothing. So every message must come out of later `recv`s
//! exactly once, intact and in order, however often reads were cut short;
//! no byte of the stream may be read twice or skipped; and what the server
//! wrote back (its Pongs) must be a valid frame stream answering the Pings
//! (§5.5.3: the latest one at least).
//!
//! No runtime drives the futures: they are polled by hand with a waker
//! that does nothing, and the stream says `Pending` whenever the bytes the
//! input let arrive so far are used up, so the input alone decides where
//! each poll stops. The timers the transport could start are off; a
//! current-thread runtime is entered only so that creating one would not
//! panic.
#![no_main]

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rfc6455::proto::{self, Connection, MaskRng, Message, Role};
use rfc6455::transport::{self, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Arbitrary, Debug)]
enum Send {
    Text(String),
    Binary(Vec<u8>),
    /// One message in frames cut at `cuts` (text may be cut inside a code
    /// point, §5.4 and §8.1).
    Fragments {
        text: bool,
        data: String,
        cuts: Vec<u8>,
    },
    Ping(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// This many more bytes of the stream become readable.
    Arrive(u8),
    /// A fresh `recv()` is polled up to this many times (at least once),
    /// then dropped if it has not finished.
    Poll(u8),
    /// From now on a read hands over at most this many bytes (at least 1).
    ReadSize(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u8,
    sends: Vec<Send>,
    steps: Vec<Step>,
}

/// The client's side of the pipe: the stream it wrote, let through as the
/// input says; and what the server wrote back. Shared between the test and
/// the `WebSocket`, which owns the [`Pipe`].
struct Shared {
    wire: Vec<u8>,
    /// Bytes the server has read: never past `arrived`, never twice.
    read: usize,
    /// Bytes readable so far.
    arrived: usize,
    read_size: usize,
    written: Vec<u8>,
}

struct Pipe(Rc<RefCell<Shared>>);

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.0.borrow_mut();
        let n = (s.arrived - s.read).min(s.read_size).min(buf.remaining());
        if n == 0 {
            // Not arrived yet. No EOF: the connection stays open.
            return Poll::Pending;
        }
        let start = s.read;
        buf.put_slice(&s.wire[start..start + n]);
        s.read += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.borrow_mut().written.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Encodes the sends as a client would (masked), and the messages the
/// server must see, in order.
fn client_stream(seed: u8, sends: &[Send]) -> (Vec<u8>, Vec<Message>) {
    let mut client = Connection::new(Role::Client, proto::Config::default())
        .with_rng(MaskRng::from_seed([seed; 32]));
    let mut expected = Vec::new();
    for send in sends {
        match send {
            Send::Text(text) => {
                client.send_text(text.clone()).expect("open");
                expected.push(Message::text(text.clone()));
            }
            Send::Binary(data) => {
                client.send_binary(data.clone()).expect("open");
                expected.push(Message::binary(data.clone()));
            }
            Send::Fragments { text, data, cuts } => {
                let bytes = data.as_bytes();
                let mut at = 0;
                for &cut in cuts {
                    let end = (at + usize::from(cut)).min(bytes.len());
                    let piece = Bytes::copy_from_slice(&bytes[at..end]);
                    if *text {
                        client
                            .send_text_fragment(piece, false)
                            .expect("valid so far");
                    } else {
                        client.send_binary_fragment(piece, false).expect("open");
                    }
                    at = end;
                }
                let last = Bytes::copy_from_slice(&bytes[at..]);
                if *text {
                    client.send_text_fragment(last, true).expect("valid UTF-8");
                    expected.push(Message::text(data.clone()));
                } else {
                    client.send_binary_fragment(last, true).expect("open");
                    expected.push(Message::binary(data.clone().into_bytes()));
                }
            }
            Send::Ping(data) => {
                let payload = &data[..data.len().min(proto::MAX_CONTROL_PAYLOAD)];
                client.send_ping(payload.to_vec()).expect("open");
                expected.push(Message::Ping(Bytes::copy_from_slice(payload)));
            }
        }
    }
    let mut wire = Vec::new();
    while let Some(chunk) = client.poll_transmit() {
        wire.extend_from_slice(&chunk);
    }
    (wire, expected)
}

/// Polls a fresh `recv()` up to `polls` times; drops it if unfinished.
fn recv_polled(ws: &mut WebSocket<Pipe>, polls: usize) -> Option<Message> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut recv = std::pin::pin!(ws.recv());
    for _ in 0..polls {
        if let Poll::Ready(event) = recv.as_mut().poll(&mut cx) {
            match event {
                Some(Ok(message)) => return Some(message),
                other => panic!("recv ended on a valid open stream: {other:?}"),
            }
        }
    }
    None // dropped here, mid-read: the cancellation under test
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|input: Input| {
    let _entered = runtime().enter();
    let (wire, expected) = client_stream(input.seed, &input.sends);
    let total = wire.len();
    let shared = Rc::new(RefCell::new(Shared {
        wire,
        read: 0,
        arrived: 0,
        read_size: 1,
        written: Vec::new(),
    }));
    let config = transport::Config {
        keepalive: None,
        frame_timeout: None,
        send_timeout: None,
        ..transport::Config::default()
    };
    let conn = Connection::new(Role::Server, config.protocol.clone());
    let mut ws = WebSocket::from_parts(Pipe(shared.clone()), conn, &config);
    let mut got = Vec::new();

    for step in &input.steps {
        match *step {
            Step::Arrive(n) => {
                let mut s = shared.borrow_mut();
                s.arrived = (s.arrived + usize::from(n)).min(total);
            }
            Step::ReadSize(n) => shared.borrow_mut().read_size = usize::from(n).max(1),
            Step::Poll(n) => got.extend(recv_polled(&mut ws, usize::from(n).max(1))),
        }
        let s = shared.borrow();
        assert!(s.read <= s.arrived, "read bytes that had not arrived");
    }

    // Everything arrives; every message not yet received must come out
    // now, in order, each once.
    shared.borrow_mut().arrived = total;
    while got.len() < expected.len() {
        match recv_polled(&mut ws, 64 + total) {
            Some(message) => got.push(message),
            None => panic!(
                "message {} of {} lost: {} of {total} bytes read, got {got:?}",
                got.len() + 1,
                expected.len(),
                shared.borrow().read
            ),
        }
    }
    assert_eq!(got, expected, "messages changed, duplicated or reordered");
    assert_eq!(
        shared.borrow().read,
        total,
        "bytes left unread after the last message"
    );
    assert!(
        recv_polled(&mut ws, 8).is_none(),
        "a message out of nothing"
    );

    // What the server wrote: Pongs only, a valid server-to-client stream,
    // the last one answering the last Ping (§5.5.3).
    let mut peer = Connection::new(Role::Client, proto::Config::default());
    peer.receive(&shared.borrow().written);
    let mut pongs = Vec::new();
    loop {
        match peer.poll_message() {
            Ok(Some(Message::Pong(p))) => pongs.push(p),
            Ok(Some(other)) => panic!("the server wrote {other:?}"),
            Ok(None) => break,
            Err(e) => panic!("the server wrote an invalid stream: {e}"),
        }
    }
    let last_ping = expected.iter().rev().find_map(|m| match m {
        Message::Ping(p) => Some(p.clone()),
        _ => None,
    });
    assert_eq!(
        pongs.last().cloned(),
        last_ping,
        "the last Ping went unanswered"
    );
});
