//! Helpers shared by the integration tests: a peer that speaks the
//! protocol by hand, to misbehave on purpose; the well-behaved client that
//! posts beside it (`bystander`); what a server process costs (`process`).
#![allow(dead_code)] // each test binary uses a different subset

pub mod bystander;
pub mod process;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

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
    let key = [0xa1, 0xb2, 0xc3, 0xd4];
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
