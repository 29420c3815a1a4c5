//! Helpers shared by the integration tests: a peer that speaks the
//! protocol by hand, to misbehave on purpose (here); a chat client
//! (`chat`); the well-behaved client that posts beside an attack
//! (`bystander`); the processes we start and what they cost (`process`);
//! the chat server in-process, and HTTP requests to it (`server`); the
//! in-memory pair tests' workload (`workload`); a test CA and a TLS echo
//! server (`tls`); a SOCKS5 server (`socks`).
#![allow(dead_code)] // each test binary uses a different subset
//
// The proto-only tests (`pair`) build with `--no-default-features` too
// (scripts/check.sh lints them so), so what needs the transport or the
// chat is compiled only with them.

#[cfg(feature = "chat")]
pub mod bystander;
#[cfg(feature = "chat")]
pub mod chat;
#[cfg(feature = "chat")]
pub mod cluster;
pub mod process;
#[cfg(feature = "chat")]
pub mod redis;
#[cfg(feature = "chat")]
pub mod server;
#[cfg(feature = "tls")]
pub mod socks;
#[cfg(feature = "tls")]
pub mod tls;
pub mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

#[cfg(feature = "transport")]
use rfc6455::proto::Message;
#[cfg(feature = "transport")]
use rfc6455::transport::{Error, WebSocket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A fresh, empty directory for test `name` of the suite `suite`, under
/// the system's temporary directory and named after this process, so
/// that runs and suites do not meet.
pub fn temp_dir(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rfc6455-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The RFC's example opening handshake (§1.3), for the resource `/`.
pub const REQUEST: &str = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The same request for another resource, e.g. `/ws`.
pub fn request_for(path: &str) -> String {
    REQUEST.replacen("GET / ", &format!("GET {path} "), 1)
}

/// Reads a response head, one byte at a time (so nothing after it is
/// consumed); stops early if the peer closes.
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).await.unwrap_or(0) == 1 {
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A client frame written by hand: first byte `b0`, masked with a fixed
/// key, length in its minimal form (§5.2).
pub fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    masked_with(b0, [0xa1, 0xb2, 0xc3, 0xd4], payload)
}

/// A client frame written by hand (§5.2): first byte `b0` (FIN, RSV1-3
/// and the opcode), the mask bit and the length in its minimal form, the
/// masking key `key`, and the payload masked with it (§5.3).
pub fn masked_with(b0: u8, key: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Reads one frame by hand (§5.2), masked or not: its first byte and its
/// unmasked payload. Reads exactly the frame, so what follows it stays in
/// the socket (or read half). Panics if TCP closes first.
pub async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.expect("a frame before EOF");
    let len = match h[1] & 0x7f {
        126 => s.read_u16().await.unwrap() as usize,
        127 => s.read_u64().await.unwrap() as usize,
        n => n as usize,
    };
    let mut key = [0u8; 4];
    if h[1] & 0x80 != 0 {
        s.read_exact(&mut key).await.unwrap();
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    (h[0], payload)
}

/// Reads frames until a Close; returns its status code (None if empty).
/// Panics if TCP closes first or no Close comes `within`.
pub async fn close_code(s: &mut TcpStream, within: Duration) -> Option<u16> {
    tokio::time::timeout(within, async {
        loop {
            let (b0, payload) = read_frame(s).await;
            if b0 & 0x0f == 0x8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no Close within {within:?}"))
}

/// How an echo loop ([`echo`]) went.
#[cfg(feature = "transport")]
#[derive(Debug)]
pub struct Echoed {
    /// Messages echoed.
    pub messages: usize,
    /// The most output it ever held queued, in bytes.
    pub most_queued: usize,
    /// The error that ended it, if any.
    pub error: Option<Error>,
}

/// A `recv` → `queue` echo of every text and binary message, until the
/// end.
#[cfg(feature = "transport")]
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) -> Echoed {
    let mut echoed = Echoed {
        messages: 0,
        most_queued: 0,
        error: None,
    };
    while let Some(event) = ws.recv().await {
        match event {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                ws.queue(m).unwrap();
                echoed.messages += 1;
                echoed.most_queued = echoed.most_queued.max(ws.pending_output_len());
            }
            Ok(_) => {}
            Err(e) => {
                echoed.error = Some(e);
                break;
            }
        }
    }
    echoed
}

/// Sends a Ping and checks that the next message is its Pong, with the
/// same payload (§5.5.2, §5.5.3).
#[cfg(feature = "transport")]
pub async fn assert_ping_answered<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) {
    let payload = bytes::Bytes::from_static(b"are you there");
    ws.send(Message::Ping(payload.clone())).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::Pong(payload));
}

/// An echo from two tasks' worth of halves, with the `futures` traits
/// alone: the split reader's data messages forwarded into the writer
/// (Pings and the peer's Close are answered by the reader itself).
#[cfg(feature = "transport")]
pub async fn forward_echo<S: AsyncRead + AsyncWrite + Unpin>(ws: WebSocket<S>) {
    use futures_util::{StreamExt, TryStreamExt};
    let (reader, writer) = ws.split();
    let _ = reader
        .try_filter(|m| std::future::ready(matches!(m, Message::Text(_) | Message::Binary(_))))
        .forward(writer)
        .await;
}

/// Writes `frame` again and again, never reading, until a write fails
/// (the peer hung up) or `for_at_most` has passed: how many were written
/// whole, and how long until the write failed (`None` if none did).
pub async fn flood<W: AsyncWrite + Unpin>(
    tx: &mut W,
    frame: &[u8],
    for_at_most: Duration,
) -> (u32, Option<Duration>) {
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < for_at_most {
        if tx.write_all(frame).await.is_err() {
            return (sent, Some(started.elapsed()));
        }
        sent += 1;
    }
    (sent, None)
}

/// Reads and discards until the peer's end of TCP: `Ok` on EOF, the error
/// kind on a reset. Panics if the socket is still open after `within`.
pub async fn read_until_closed<R: AsyncRead + Unpin>(
    rx: &mut R,
    within: Duration,
) -> Result<(), std::io::ErrorKind> {
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(within, async {
        loop {
            match rx.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.kind()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the socket was still open after {within:?}"))
}
