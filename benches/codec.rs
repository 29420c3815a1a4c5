//! The codec's hot paths, side by side with tungstenite and fastwebsockets
//! where the same work can be asked of them through their public API:
//!
//! | group            | ours                              | tungstenite                  | fastwebsockets          |
//! |------------------|-----------------------------------|------------------------------|-------------------------|
//! | `mask`           | `apply_mask` (RFC 6455 §5.3), and the byte-at-a-time definition | (not public) | `unmask` |
//! | `header`         | `FrameHeader::parse` (§5.2)       | `FrameHeader::parse`         | (not public)            |
//! | `utf8`           | `Utf8Validator` (§8.1, streaming) | `std::str::from_utf8` as the baseline both peers use or beat | `simdutf8` is internal |
//! | `decode`         | `Connection`: 1 MiB of 32-byte masked text frames, as a server: parse, unmask, UTF-8, hand out | `WebSocket::read` | `WebSocket::read_frame` |
//! | `encode`         | `Connection::send` of a 32-byte text, server (unmasked) and client (masked) | `Frame::format` | `Frame::write` |
//! | `handshake`      | server: parse the request, check it, write the 101 | `accept` over an in-memory stream | (needs hyper) |
//!
//! `cargo bench --bench codec [-- GROUP]`. Throughput is in bytes (or
//! elements) per second; criterion prints the ratio's inputs side by side.
//! `scripts/check.sh` only compiles this (`cargo bench --no-run`).

use std::hint::black_box;
use std::io::{Cursor, Read, Write};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rfc6455::proto::{
    Config, Connection, FrameHeader, Message, OpCode, Role, ServerHandshake, Utf8Bytes,
    Utf8Validator, apply_mask, apply_mask_naive,
};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for size in [16usize, 125, 4096, 65536, 1 << 20] {
        let mut buf = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("rfc6455", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), 0))
        });
        group.bench_with_input(BenchmarkId::new("fastwebsockets", size), &size, |b, _| {
            b.iter(|| fastwebsockets::unmask(black_box(&mut buf), black_box(KEY)))
        });
        // The definition, byte by byte: what the block-at-a-time loop buys.
        group.bench_with_input(BenchmarkId::new("naive", size), &size, |b, _| {
            b.iter(|| apply_mask_naive(black_box(&mut buf), black_box(KEY), 0))
        });
    }
    group.finish();
}

/// The tests' hand-made masked client frame (§5.2), fixed key, minimal length.
#[path = "../tests/common/mod.rs"]
mod common;

/// A masked client frame with FIN set and `opcode`.
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    common::masked(0x80 | opcode, payload)
}

fn header(c: &mut Criterion) {
    let mut group = c.benchmark_group("header");
    group.throughput(Throughput::Elements(1));
    // The three length encodings of §5.2: 7-bit, 16-bit and 64-bit.
    for len in [32usize, 1000, 70_000] {
        let frame = masked_frame(0x1, &vec![b'a'; len]);
        let head = &frame[..14.min(frame.len())];
        group.bench_with_input(BenchmarkId::new("rfc6455", len), &len, |b, _| {
            b.iter(|| FrameHeader::parse(black_box(head)))
        });
        group.bench_with_input(BenchmarkId::new("tungstenite", len), &len, |b, _| {
            b.iter(|| {
                let mut cursor = Cursor::new(black_box(head));
                tungstenite::protocol::frame::FrameHeader::parse(&mut cursor)
            })
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let ascii = "The quick brown fox jumps over the lazy dog. ".repeat(1500);
    let mixed = "Κάποιο κείμενο, 一些文字, émojis 🎉🚀 and ASCII too. ".repeat(900);
    let mut group = c.benchmark_group("utf8");
    for (name, text) in [("ascii", &ascii), ("mixed", &mixed)] {
        let bytes = text.as_bytes();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::new("rfc6455", name), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                v.feed(black_box(bytes)).and_then(|()| v.finish())
            })
        });
        group.bench_function(BenchmarkId::new("std", name), |b| {
            b.iter(|| std::str::from_utf8(black_box(bytes)).is_ok())
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    // 1 MiB of 32-byte masked text frames, as a client would send them.
    let one = masked_frame(0x1, b"0123456789abcdef0123456789abcdef");
    let count = (1 << 20) / one.len();
    let stream: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(count * one.len())
        .collect();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("rfc6455", |b| {
        b.iter(|| {
            let mut conn = Connection::new(Role::Server, Config::default());
            conn.receive(black_box(&stream));
            let mut n = 0;
            while let Ok(Some(Message::Text(t))) = conn.poll_message() {
                n += t.len();
            }
            assert_eq!(n, count * 32);
        })
    });
    group.bench_function("tungstenite", |b| {
        b.iter(|| {
            let io = Duplex::new(black_box(&stream));
            let mut ws = tungstenite::WebSocket::from_raw_socket(
                io,
                tungstenite::protocol::Role::Server,
                None,
            );
            let mut n = 0;
            while let Ok(tungstenite::Message::Text(t)) = ws.read() {
                n += t.len();
            }
            assert_eq!(n, count * 32);
        })
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    group.bench_function("fastwebsockets", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let io = Cursor::new(black_box(stream.clone()));
                let mut ws =
                    fastwebsockets::WebSocket::after_handshake(io, fastwebsockets::Role::Server);
                let mut n = 0;
                for _ in 0..count {
                    let frame = ws.read_frame().await.unwrap();
                    assert_eq!(frame.opcode, fastwebsockets::OpCode::Text);
                    n += frame.payload.len();
                }
                assert_eq!(n, count * 32);
            })
        })
    });
    group.finish();
}

/// One 32-byte text frame onto the wire. The frame-level rows are alike:
/// a header and the payload written into a buffer that is reused. The
/// `rfc6455-connection` row is the whole send path a user of ours takes:
/// the state machine's checks, the frame, and an owned chunk handed to the
/// I/O layer (`Connection::send`, then `poll_transmit`).
fn encode(c: &mut Criterion) {
    const TEXT: &str = "0123456789abcdef0123456789abcdef";
    let text = TEXT;
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    for (role, masked) in [(Role::Server, "unmasked"), (Role::Client, "masked")] {
        let mut conn = Connection::new(role, Config::default());
        group.bench_function(BenchmarkId::new("rfc6455-connection", masked), |b| {
            b.iter(|| {
                let message = Message::Text(Utf8Bytes::from_static(black_box(TEXT)));
                conn.send(message).unwrap();
                while let Some(bytes) = conn.poll_transmit() {
                    black_box(bytes);
                }
            })
        });
        let mut out = BytesMut::with_capacity(64);
        group.bench_function(BenchmarkId::new("rfc6455", masked), |b| {
            b.iter(|| {
                out.clear();
                let payload = black_box(text).as_bytes();
                let mut header = FrameHeader::new(OpCode::Text, payload.len() as u64);
                if role == Role::Client {
                    header.mask = Some(KEY);
                }
                header.encode(&mut out);
                let start = out.len();
                out.extend_from_slice(payload);
                if let Some(key) = header.mask {
                    apply_mask(&mut out[start..], key, 0);
                }
                black_box(&out);
            })
        });
        let mut out = Vec::with_capacity(64);
        group.bench_function(BenchmarkId::new("tungstenite", masked), |b| {
            b.iter(|| {
                out.clear();
                let mut frame = tungstenite::protocol::frame::Frame::message(
                    Bytes::from_static(black_box(text).as_bytes()),
                    tungstenite::protocol::frame::coding::OpCode::Data(
                        tungstenite::protocol::frame::coding::Data::Text,
                    ),
                    true,
                );
                if role == Role::Client {
                    frame.header_mut().mask = Some(KEY);
                }
                frame.format(&mut out).unwrap();
                black_box(&out);
            })
        });
        let mut out = Vec::with_capacity(64);
        group.bench_function(BenchmarkId::new("fastwebsockets", masked), |b| {
            b.iter(|| {
                // Masking works in place, so a masked frame needs its own
                // copy of the payload (ours copies into the output buffer).
                let mut owned;
                let payload = if role == Role::Client {
                    owned = black_box(text).as_bytes().to_vec();
                    fastwebsockets::Payload::BorrowedMut(&mut owned)
                } else {
                    fastwebsockets::Payload::Borrowed(black_box(text).as_bytes())
                };
                let mut frame = fastwebsockets::Frame::text(payload);
                if role == Role::Client {
                    frame.mask();
                }
                black_box(frame.write(&mut out));
            })
        });
    }
    group.finish();
}

/// The RFC's sample request (§1.3).
const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Version: 13\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n\r\n";

fn handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    let config = Config::default();
    group.bench_function("rfc6455", |b| {
        b.iter(|| {
            let mut hs = ServerHandshake::new(&config);
            let (request, _) = hs.receive(black_box(REQUEST)).unwrap().unwrap();
            let response = request.upgrade().unwrap().accept(None).unwrap();
            black_box(response)
        })
    });
    group.bench_function("tungstenite", |b| {
        b.iter(|| {
            let io = Duplex::new(black_box(REQUEST));
            let ws = tungstenite::accept(io).unwrap();
            black_box(ws.get_ref().written.len())
        })
    });
    group.finish();
}

/// An in-memory stream for tungstenite's blocking API: reads from `input`,
/// collects what is written.
struct Duplex<'a> {
    input: &'a [u8],
    written: BytesMut,
}

impl<'a> Duplex<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            written: BytesMut::new(),
        }
    }
}

impl Read for Duplex<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Duplex<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

criterion_group!(benches, mask, header, utf8, decode, encode, handshake);
criterion_main!(benches);
