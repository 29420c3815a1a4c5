//! A small SOCKS5 server (RFC 1928) for `tests/proxy.rs`: CONNECT only,
//! no authentication or username/password (RFC 1929), on a free loopback
//! port; it records what each client asked for and counts the bytes it
//! relayed. A packaged server (Debian's dante `sockd`) would relay as
//! well, but could not tell the test what it was asked for: whether the
//! client sent an address (`socks5://`) or a name (`socks5h://`) is
//! exactly what the tests check, so they bring a server of their own. It
//! is the peer of our client code, not the code under test, and it
//! checks the bytes it reads (RFC 1928 §3, §4; RFC 1929 §2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a client asked the server to connect to (RFC 1928 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// ATYP X'01' or X'04': an address (the client resolved the name).
    Address(SocketAddr),
    /// ATYP X'03': a name, for the server to resolve.
    Name(String, u16),
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Tunnels opened to the destination.
    pub tunnels: AtomicUsize,
    /// Bytes relayed client → destination and back, counted once each
    /// tunnel ends.
    pub up: AtomicU64,
    /// The same, destination → client.
    pub down: AtomicU64,
    /// Tunnels that ended (both directions closed).
    pub ended: AtomicUsize,
    /// Every destination asked for, in order.
    pub asked: Mutex<Vec<Asked>>,
}

/// A running SOCKS5 server; stops when dropped (its task is aborted).
pub struct Socks5 {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Socks5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Socks5 {
    /// Starts one; with `credentials`, it requires username/password
    /// (RFC 1929) and refuses clients that offer no such method.
    pub async fn start(credentials: Option<(&str, &str)>) -> Socks5 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let seen = seen.clone();
                    let credentials = credentials.clone();
                    tokio::spawn(async move {
                        let _ = serve(client, credentials.as_ref(), &seen).await;
                    });
                }
            })
        };
        Socks5 { addr, seen, task }
    }

    /// Its URL with `scheme` (`socks5` or `socks5h`) and `userinfo`
    /// (`"user:pass@"` or `""`).
    pub fn url(&self, scheme: &str, userinfo: &str) -> String {
        format!("{scheme}://{userinfo}{}", self.addr)
    }

    /// The destinations asked for so far.
    pub fn asked(&self) -> Vec<Asked> {
        self.seen.asked.lock().unwrap().clone()
    }
}

/// One client: method selection (§3), authentication (RFC 1929 §2), the
/// request (§4), the reply (§6), then the relay.
async fn serve(
    mut client: TcpStream,
    credentials: Option<&(String, String)>,
    seen: &Seen,
) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    assert_eq!(head[0], 5, "the client speaks SOCKS5");
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods).await?;
    let wanted = if credentials.is_some() { 0x02 } else { 0x00 };
    if !methods.contains(&wanted) {
        client.write_all(&[5, 0xff]).await?;
        return Ok(());
    }
    client.write_all(&[5, wanted]).await?;
    if let Some((user, password)) = credentials {
        let mut b = [0u8; 2];
        client.read_exact(&mut b).await?;
        assert_eq!(b[0], 1, "RFC 1929 subnegotiation version");
        let mut u = vec![0u8; usize::from(b[1])];
        client.read_exact(&mut u).await?;
        let mut plen = [0u8; 1];
        client.read_exact(&mut plen).await?;
        let mut p = vec![0u8; usize::from(plen[0])];
        client.read_exact(&mut p).await?;
        if u != user.as_bytes() || p != password.as_bytes() {
            client.write_all(&[1, 0x01]).await?;
            return Ok(());
        }
        client.write_all(&[1, 0x00]).await?;
    }

    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    assert_eq!(request[..3], [5, 1, 0], "VER 5, CMD CONNECT, RSV 0");
    let asked = match request[3] {
        0x01 => {
            let mut a = [0u8; 4];
            client.read_exact(&mut a).await?;
            Asked::Address(SocketAddr::new(
                Ipv4Addr::from(a).into(),
                client.read_u16().await?,
            ))
        }
        0x04 => {
            let mut a = [0u8; 16];
            client.read_exact(&mut a).await?;
            Asked::Address(SocketAddr::new(
                Ipv6Addr::from(a).into(),
                client.read_u16().await?,
            ))
        }
        0x03 => {
            let mut name = vec![0u8; usize::from(client.read_u8().await?)];
            client.read_exact(&mut name).await?;
            Asked::Name(String::from_utf8(name).unwrap(), client.read_u16().await?)
        }
        _ => {
            // §6: X'08' address type not supported.
            client.write_all(&[5, 0x08, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            return Ok(());
        }
    };
    seen.asked.lock().unwrap().push(asked.clone());
    let target = match &asked {
        Asked::Address(a) => TcpStream::connect(a).await,
        Asked::Name(n, p) => TcpStream::connect((n.as_str(), *p)).await,
    };
    let mut target = match target {
        Ok(t) => t,
        Err(_) => {
            // §6: X'05' connection refused.
            client.write_all(&[5, 0x05, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            return Ok(());
        }
    };
    // The bound address: ours, as the RFC asks; IPv4 or IPv6 as it is.
    let bound = target.local_addr()?;
    let mut reply = vec![5, 0x00, 0];
    match bound.ip() {
        IpAddr::V4(a) => {
            reply.push(1);
            reply.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            reply.push(4);
            reply.extend_from_slice(&a.octets());
        }
    }
    reply.extend_from_slice(&bound.port().to_be_bytes());
    client.write_all(&reply).await?;
    seen.tunnels.fetch_add(1, Ordering::SeqCst);
    let relayed = tokio::io::copy_bidirectional(&mut client, &mut target).await;
    if let Ok((up, down)) = relayed {
        seen.up.fetch_add(up, Ordering::SeqCst);
        seen.down.fetch_add(down, Ordering::SeqCst);
    }
    seen.ended.fetch_add(1, Ordering::SeqCst);
    Ok(())
}
