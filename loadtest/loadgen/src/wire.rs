//! The little of RFC 6455 a load generator needs: a hand-written opening
//! handshake (§4.1), masked client frames encoded once (§5.2, §5.3), and a
//! parser for the server's unmasked frames that returns payload ranges
//! without copying.
//!
//! This is not a conforming client: it checks only the status line of the
//! handshake, uses one fixed nonce and one fixed mask, and never validates
//! UTF-8. The servers under test are the ones that must be correct; the
//! generator must be cheap, so that the server, not the generator, is what
//! the numbers measure.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The masking key of every frame we send.
///
/// §5.3 says the key "MUST be derived from a strong source of entropy" and
/// be fresh for each frame: it protects proxies from cache poisoning by
/// script in a browser. A load generator talking to 127.0.0.1 has neither
/// proxies nor hostile script, and drawing and applying a fresh key per
/// message would make the client cost more than the server it measures. So
/// every frame carries this key, and a frame's bytes can be encoded once and
/// written again and again. Servers must (and do) accept it: the key is
/// opaque to them.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Opcodes (§5.2).
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A `ws://` URL taken apart. Only loopback addresses are accepted: the
/// generator must never load anything but this machine.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url}: only ws:// URLs"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{addr} is not a loopback address; refusing to load it"
            ));
        }
        Ok(Self {
            addr,
            host: host.to_string(),
            path: path.to_string(),
        })
    }
}

/// Connects and runs the opening handshake (§4.1). Returns the stream and
/// any bytes the server sent after its response (the first frames may come
/// in the same segment).
///
/// The nonce is the RFC's own sample (§1.3), the same for every
/// connection: §4.1 wants it random, for the same proxy reasons as the
/// mask, which do not apply on loopback.
pub async fn connect(target: &Target) -> io::Result<(TcpStream, Vec<u8>)> {
    connect_as(target, None).await
}

/// The local address for connection `n` of this run when the server is on
/// loopback: `127.A.B.C`, port 20,000 + `n` mod 40,000, with `A.B` drawn
/// once per run (so a run never meets the last run's TIME_WAIT sockets).
///
/// Why not let the kernel choose: every connection of a run goes to the
/// same server address, so an ephemeral port is a search of the 4-tuples
/// already used, and past about half of `ip_local_port_range` (28,000
/// ports here) each `connect` scans thousands of them. At 19,000
/// connections that search, not the server, was the limit (the kernel's
/// `__inet_check_established` on top of the generator's profile). Real
/// clients come from many addresses; so do these.
pub fn source_for(target: &Target, n: usize) -> Option<SocketAddr> {
    use std::sync::OnceLock;
    static RUN: OnceLock<(u8, u8)> = OnceLock::new();
    let IpAddr::V4(ip) = target.addr.ip() else {
        return None;
    };
    if !ip.is_loopback() {
        return None;
    }
    let &(a, b) = RUN.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
            ^ std::process::id();
        // 127.0.x.x is left alone: servers and tests live there.
        (1 + (t % 254) as u8, (t >> 8) as u8)
    });
    let host = u8::try_from(1 + n / 40_000).ok()?;
    let port = 20_000 + (n % 40_000) as u16;
    Some(SocketAddr::new(Ipv4Addr::new(127, a, b, host).into(), port))
}

/// [`connect`] from `source` (see [`source_for`]); if that address cannot
/// be bound, from one the kernel picks.
pub async fn connect_as(
    target: &Target,
    source: Option<SocketAddr>,
) -> io::Result<(TcpStream, Vec<u8>)> {
    let bound = source.and_then(|src| {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(src).ok()?;
        Some(socket)
    });
    let mut stream = match bound {
        Some(socket) => socket.connect(target.addr).await?,
        None => TcpStream::connect(target.addr).await?,
    };
    stream.set_nodelay(true)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.path, target.host
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() > 16 * 1024 {
            return Err(io::Error::other("handshake response over 16 KiB"));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::other("server closed during the handshake"));
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let status = buf.split(|&b| b == b'\n').next().unwrap_or_default();
            if !status.starts_with(b"HTTP/1.1 101") {
                return Err(io::Error::other(format!(
                    "handshake refused: {}",
                    String::from_utf8_lossy(status).trim_end()
                )));
            }
            let rest = buf.split_off(end + 4);
            return Ok((stream, rest));
        }
    }
}

/// Connects with no handshake at all, for the raw TCP echo peer
/// (`loadgen echo --raw`): the same socket setup as [`connect`]
/// (`TCP_NODELAY`), and nothing else.
pub async fn connect_raw(target: &Target) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Encodes one masked frame with FIN set.
pub fn encode(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    encode_into(&mut out, opcode, payload);
    out
}

/// Appends one masked frame with FIN set to `out`.
pub fn encode_into(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
}

/// One frame found in the read buffer: its opcode and where its payload is.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub opcode: u8,
    pub fin: bool,
    pub start: usize,
    pub end: usize,
}

/// Parses the server frame at the front of `buf`: `Ok(None)` if it is not
/// all there yet, and `Err` for a frame we cannot take (masked, or longer
/// than `max`).
pub fn parse(buf: &[u8], max: usize) -> io::Result<Option<Frame>> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err(io::Error::other("server sent a masked frame"));
    }
    let (len, header) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(&[h, l]) => (usize::from(u16::from_be_bytes([h, l])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                let len = u64::from_be_bytes(be);
                (usize::try_from(len).unwrap_or(usize::MAX), 10)
            }
            None => return Ok(None),
        },
        n => (usize::from(n), 2),
    };
    if len > max {
        return Err(io::Error::other(format!(
            "frame of {len} bytes, over {max}"
        )));
    }
    if buf.len() < header + len {
        return Ok(None);
    }
    Ok(Some(Frame {
        opcode: b0 & 0x0F,
        fin: b0 & 0x80 != 0,
        start: header,
        end: header + len,
    }))
}

/// A read buffer that frames are parsed from in place.
pub struct ReadBuf {
    buf: Vec<u8>,
    pos: usize,
    max: usize,
}

impl ReadBuf {
    pub fn new(initial: Vec<u8>, max: usize) -> Self {
        Self {
            buf: initial,
            pos: 0,
            max,
        }
    }

    /// Reads more bytes; `Ok(0)` at EOF.
    pub async fn fill(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        stream.read_buf(&mut self.buf).await
    }

    /// The bytes not yet parsed, for a new buffer.
    pub fn into_rest(mut self) -> Vec<u8> {
        self.buf.drain(..self.pos);
        self.buf
    }

    /// The next whole frame, its payload borrowed from the buffer.
    pub fn next_frame(&mut self) -> io::Result<Option<(Frame, &[u8])>> {
        let rest = &self.buf[self.pos..];
        match parse(rest, self.max)? {
            Some(f) => {
                let payload = &rest[f.start..f.end];
                self.pos += f.end;
                Ok(Some((f, payload)))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
    #[test]
    fn encodes_the_rfc_masked_hello() {
        assert_eq!(
            encode(OP_TEXT, b"Hello"),
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }

    #[test]
    fn parses_unmasked_frames_and_waits_for_more() {
        let frame = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
        for n in 0..frame.len() {
            assert!(parse(&frame[..n], 100).unwrap().is_none());
        }
        let f = parse(&frame, 100).unwrap().unwrap();
        assert_eq!((f.opcode, f.fin, f.start, f.end), (OP_TEXT, true, 2, 7));
        let long = encode(OP_BINARY, &[0u8; 300]);
        // Our own frames are masked: the parser refuses them.
        assert!(parse(&long, 1000).is_err());
    }

    #[test]
    fn refuses_other_than_loopback() {
        assert!(Target::parse("ws://127.0.0.1:9001/").is_ok());
        assert!(Target::parse("ws://10.0.0.1:9001/").is_err());
        assert!(Target::parse("wss://127.0.0.1:9001/").is_err());
    }
}
