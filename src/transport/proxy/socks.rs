//! RFC 1928, SOCKS Protocol Version 5, with RFC 1929's username/password
//! authentication: asking a SOCKS5 proxy for a TCP connection (CONNECT).
//!
//! Three exchanges, each a short message whose length the protocol fixes
//! or announces, so every reply is read exactly and nothing of the tunnel
//! is consumed:
//!
//! 1. Method selection (§3): the methods we can do (X'00' no
//!    authentication; X'02' username/password too when the URL has
//!    credentials), and the one the proxy picks.
//! 2. If it picked X'02', RFC 1929 §2: the user name and password, and a
//!    status (X'00' is success).
//! 3. The request (§4): CONNECT, the destination (§5: an IPv4 or IPv6
//!    address, or a domain name), and the reply (§6), whose bound address
//!    we read and do not need.
//!
//! `socks5://` resolves the destination here and sends an address;
//! `socks5h://` sends the name (curl's two schemes). An address in the URL
//! goes as an address either way.

use std::net::IpAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Proxy, ProxyFailure, ProxyKind, Step};

/// §3 and §4: VER is X'05'.
const VERSION: u8 = 0x05;
/// §3: the method values.
const NO_AUTHENTICATION: u8 = 0x00;
const USERNAME_PASSWORD: u8 = 0x02;
const NO_ACCEPTABLE_METHODS: u8 = 0xff;
/// RFC 1929 §2: "The VER field contains the current version of the
/// subnegotiation, which is X'01'".
const AUTH_VERSION: u8 = 0x01;
/// §4: CMD CONNECT.
const CONNECT: u8 = 0x01;
/// §5: the address types.
const IPV4: u8 = 0x01;
const DOMAIN_NAME: u8 = 0x03;
const IPV6: u8 = 0x04;

/// Where the tunnel should go, as §5 can say it.
enum Destination<'a> {
    Address(IpAddr),
    Name(&'a str),
}

/// Runs the three exchanges; `Ok` once the proxy reports success (§6:
/// REP X'00'), the stream then carrying the tunnel.
pub(super) async fn handshake(
    stream: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), Step> {
    let destination = destination(proxy.kind, host, port).await?;

    // 1. Method selection (§3).
    let greeting: &[u8] = match proxy.credentials {
        Some(_) => &[VERSION, 2, NO_AUTHENTICATION, USERNAME_PASSWORD],
        None => &[VERSION, 1, NO_AUTHENTICATION],
    };
    stream.write_all(greeting).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice[0] != VERSION {
        return Err(ProxyFailure::Malformed("not a SOCKS5 proxy (version byte)").into());
    }
    match (choice[1], &proxy.credentials) {
        (NO_AUTHENTICATION, _) => {}
        (USERNAME_PASSWORD, Some(c)) => authenticate(stream, &c.user, &c.password).await?,
        // §3: "If the selected METHOD is X'FF', none of the methods listed
        // by the client are acceptable, and the client MUST close the
        // connection" (we return, and the stream is dropped).
        (NO_ACCEPTABLE_METHODS, _) => return Err(ProxyFailure::SocksNoAcceptableMethod.into()),
        _ => return Err(ProxyFailure::Malformed("chose a method we did not offer").into()),
    }

    // 3. The request (§4): VER, CMD, RSV, ATYP, DST.ADDR, DST.PORT.
    let mut request = vec![VERSION, CONNECT, 0x00];
    match destination {
        Destination::Address(IpAddr::V4(a)) => {
            request.push(IPV4);
            request.extend_from_slice(&a.octets());
        }
        Destination::Address(IpAddr::V6(a)) => {
            request.push(IPV6);
            request.extend_from_slice(&a.octets());
        }
        Destination::Name(name) => {
            // §5: "the first octet of the address field contains the
            // number of octets of name that follow, there is no
            // terminating NUL octet."
            let len = u8::try_from(name.len()).map_err(|_| {
                ProxyFailure::SocksTarget("a host name over 255 bytes cannot be sent in SOCKS5")
            })?;
            request.push(DOMAIN_NAME);
            request.push(len);
            request.extend_from_slice(name.as_bytes());
        }
    }
    // "in network octet order"
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await?;

    // The reply (§6): VER, REP, RSV, ATYP, BND.ADDR, BND.PORT.
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await?;
    if reply[0] != VERSION {
        return Err(ProxyFailure::Malformed("not a SOCKS5 reply (version byte)").into());
    }
    if reply[1] != 0x00 {
        // §6: "When a reply (REP value other than X'00') indicates a
        // failure, the SOCKS server MUST terminate the TCP connection
        // shortly after sending the reply." Nothing more to read.
        return Err(ProxyFailure::SocksReply(reply[1]).into());
    }
    // The bound address and port, read so that none of it is taken for
    // the tunnel's first bytes.
    let address_len = match reply[3] {
        IPV4 => 4,
        IPV6 => 16,
        DOMAIN_NAME => usize::from(stream.read_u8().await?),
        _ => return Err(ProxyFailure::Malformed("an unknown address type in the reply").into()),
    };
    let mut bound = vec![0u8; address_len + 2];
    stream.read_exact(&mut bound).await?;
    Ok(())
}

/// Step 2, RFC 1929 §2: VER, ULEN, UNAME, PLEN, PASSWD; the reply is VER
/// and STATUS, where "A STATUS field of X'00' indicates success. If the
/// server returns a 'failure' (STATUS value other than X'00') status, it
/// MUST close the connection." The lengths were checked when the URL was
/// parsed (1 to 255 bytes each).
async fn authenticate(stream: &mut TcpStream, user: &str, password: &str) -> Result<(), Step> {
    let len = |s: &str| {
        u8::try_from(s.len()).map_err(|_| ProxyFailure::Malformed("credentials over 255 bytes"))
    };
    let mut message = vec![AUTH_VERSION, len(user)?];
    message.extend_from_slice(user.as_bytes());
    message.push(len(password)?);
    message.extend_from_slice(password.as_bytes());
    stream.write_all(&message).await?;
    let mut status = [0u8; 2];
    stream.read_exact(&mut status).await?;
    if status[0] != AUTH_VERSION {
        return Err(ProxyFailure::Malformed("not an RFC 1929 reply (version byte)").into());
    }
    if status[1] != 0x00 {
        return Err(ProxyFailure::SocksAuthFailed(status[1]).into());
    }
    Ok(())
}

/// The destination as it goes to the proxy: an address in the URL as
/// itself; a name resolved here for `socks5://` (the first address the
/// resolver gives), sent as it is for `socks5h://`.
async fn destination(kind: ProxyKind, host: &str, port: u16) -> Result<Destination<'_>, Step> {
    if let Ok(address) = host.parse::<IpAddr>() {
        return Ok(Destination::Address(address));
    }
    if kind == ProxyKind::Socks5h {
        return Ok(Destination::Name(host));
    }
    // A lookup that fails is the server's name failing here, not the
    // proxy: said so, rather than as an I/O error beside the proxy's name.
    let unresolved = ProxyFailure::SocksTarget(
        "the server's name did not resolve here (socks5:// resolves locally, socks5h:// at the proxy)",
    );
    match tokio::net::lookup_host((host, port)).await {
        Ok(mut addresses) => match addresses.next() {
            Some(address) => Ok(Destination::Address(address.ip())),
            None => Err(unresolved.into()),
        },
        Err(_) => Err(unresolved.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// What a scripted proxy must receive, and what it answers.
    type Script = Vec<(Vec<u8>, Vec<u8>)>;

    /// A script, and the failure it must end in.
    type Case = (Script, fn(&ProxyFailure) -> bool);

    /// A scripted proxy: for each step, the bytes it must receive and the
    /// bytes it answers; then it sends `after` (the tunnel's first bytes).
    async fn scripted(steps: Script, after: &'static [u8]) -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.unwrap();
            for (expect, answer) in steps {
                let mut got = vec![0u8; expect.len()];
                peer.read_exact(&mut got).await.unwrap();
                assert_eq!(got, expect, "the client's bytes");
                peer.write_all(&answer).await.unwrap();
            }
            peer.write_all(after).await.unwrap();
            let _ = peer.read(&mut [0u8; 1]).await;
        });
        TcpStream::connect(addr).await.unwrap()
    }

    #[tokio::test]
    async fn socks5h_with_credentials_sends_these_bytes_and_leaves_the_tunnel_unread() {
        let mut stream = scripted(
            vec![
                // §3: VER 5, two methods, X'00' and X'02'; the proxy picks X'02'.
                (vec![5, 2, 0, 2], vec![5, 2]),
                // RFC 1929 §2: VER 1, ULEN 3 "bob", PLEN 4 "p@ss"; success.
                (b"\x01\x03bob\x04p@ss".to_vec(), vec![1, 0]),
                // §4: VER 5, CONNECT, RSV, ATYP 3, 9 "localhost", port 8080;
                // §6: success, bound to a name (ATYP 3) this time.
                (
                    b"\x05\x01\x00\x03\x09localhost\x1f\x90".to_vec(),
                    b"\x05\x00\x00\x03\x04host\x00\x50".to_vec(),
                ),
            ],
            b"TUNNEL",
        )
        .await;
        let proxy = Proxy::parse("socks5h://bob:p%40ss@127.0.0.1:1").unwrap();
        handshake(&mut stream, &proxy, "localhost", 8080)
            .await
            .unwrap();
        let mut rest = [0u8; 6];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"TUNNEL");
    }

    #[tokio::test]
    async fn an_address_goes_as_an_address_without_credentials() {
        let mut stream = scripted(
            vec![
                (vec![5, 1, 0], vec![5, 0]),
                // ATYP 4, ::1, port 443; bound to 127.0.0.1:1080.
                (
                    [&[5, 1, 0, 4][..], &[0; 15], &[1, 0x01, 0xbb]].concat(),
                    vec![5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38],
                ),
            ],
            b"",
        )
        .await;
        let proxy = Proxy::parse("socks5://127.0.0.1:1").unwrap();
        handshake(&mut stream, &proxy, "::1", 443).await.unwrap();
    }

    #[tokio::test]
    async fn refusals_are_told_apart() {
        let proxy = Proxy::parse("socks5h://u:p@127.0.0.1:1").unwrap();
        let cases: Vec<Case> = vec![
            (vec![(vec![5, 2, 0, 2], vec![5, 0xff])], |f| {
                matches!(f, ProxyFailure::SocksNoAcceptableMethod)
            }),
            (
                vec![
                    (vec![5, 2, 0, 2], vec![5, 2]),
                    (b"\x01\x01u\x01p".to_vec(), vec![1, 7]),
                ],
                |f| matches!(f, ProxyFailure::SocksAuthFailed(7)),
            ),
            (vec![(vec![5, 2, 0, 2], vec![4, 0])], |f| {
                matches!(f, ProxyFailure::Malformed(_))
            }),
            (vec![(vec![5, 2, 0, 2], vec![5, 1])], |f| {
                matches!(
                    f,
                    ProxyFailure::Malformed("chose a method we did not offer")
                )
            }),
            (
                vec![
                    (vec![5, 2, 0, 2], vec![5, 0]),
                    (b"\x05\x01\x00\x03\x01h\x00\x50".to_vec(), vec![5, 2, 0, 1]),
                ],
                |f| matches!(f, ProxyFailure::SocksReply(2)),
            ),
        ];
        for (steps, expected) in cases {
            let mut stream = scripted(steps, b"").await;
            match handshake(&mut stream, &proxy, "h", 80).await {
                Err(Step::Failed(f)) if expected(&f) => {}
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn socks5_says_when_the_name_does_not_resolve_here() {
        // RFC 6761 §6.4: .invalid never resolves.
        match destination(ProxyKind::Socks5, "nowhere.invalid", 80).await {
            Err(Step::Failed(ProxyFailure::SocksTarget(why))) => assert!(why.contains("socks5h")),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("nowhere.invalid resolved"),
        }
        // socks5h leaves it to the proxy.
        assert!(matches!(
            destination(ProxyKind::Socks5h, "nowhere.invalid", 80).await,
            Ok(Destination::Name("nowhere.invalid"))
        ));
    }

    #[tokio::test]
    async fn a_name_over_255_bytes_cannot_be_sent() {
        let mut stream = scripted(vec![(vec![5, 1, 0], vec![5, 0])], b"").await;
        let proxy = Proxy::parse("socks5h://127.0.0.1:1").unwrap();
        let long = "a".repeat(256);
        assert!(matches!(
            handshake(&mut stream, &proxy, &long, 80).await,
            Err(Step::Failed(ProxyFailure::SocksTarget(_)))
        ));
    }
}
