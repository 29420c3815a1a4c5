//! RFC 9110 §9.3.6, CONNECT: asking an HTTP proxy for a tunnel to
//! `host:port`, with `Proxy-Authorization: Basic` (RFC 9110 §11.7.2,
//! RFC 7617) when the proxy URL has credentials.
//!
//! The answer's head is read with [`TcpStream::peek`]: each peek shows
//! what has arrived, httparse says whether the head ends in it and where,
//! and exactly that much is then read. A proxy may send the first bytes
//! of the tunnel right behind its `200` (RFC 9110 §9.3.6: "the sender
//! ... will switch to tunnel mode immediately after the blank line that
//! concludes the successful response's header section"), and they must
//! reach the TLS or WebSocket handshake that follows, not be consumed
//! here. Peeking costs one system call per arrival more than reading
//! would; the head is a few hundred bytes, read once.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{MAX_HEAD_BYTES, MAX_HEAD_HEADERS, Proxy, ProxyFailure, Step};

/// Peeks see at most this much at a time.
const PEEK: usize = 2048;

/// Sends `CONNECT host:port` and reads the answer: `Ok` on a 2xx, the
/// stream then carrying the tunnel.
pub(super) async fn handshake(
    stream: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), Step> {
    stream
        .write_all(request(proxy, host, port).as_bytes())
        .await?;
    let mut budget = MAX_HEAD_BYTES;
    loop {
        let (code, reason, used) = read_head(stream, budget).await?;
        match code {
            // RFC 9110 §15.2: a client "MUST be able to parse one or more
            // 1xx responses received prior to a final response"; they
            // count against the same bound.
            100..=199 => budget -= used,
            // §9.3.6: "Any 2xx (Successful) response indicates that the
            // sender (and all inbound proxies) will switch to tunnel
            // mode"; "A client MUST ignore any Content-Length or
            // Transfer-Encoding header fields received in a successful
            // response to CONNECT", so none is looked at.
            200..=299 => return Ok(()),
            _ => return Err(ProxyFailure::Status { code, reason }.into()),
        }
    }
}

/// The request: §9.3.6 "the request-target consists of only the host and
/// port number of the tunnel destination, separated by a colon" (the
/// authority-form of RFC 9112 §3.2.3, an IPv6 address in brackets), and
/// a `Host` field with the same (RFC 9112 §3.2: sent in every HTTP/1.1
/// request). `host` comes from a parsed [`WsUrl`](crate::proto::WsUrl):
/// it holds no space, CR or LF.
fn request(proxy: &Proxy, host: &str, port: u16) -> String {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(c) = &proxy.credentials {
        // RFC 7617 §2: the user-id and password joined by a single colon,
        // in UTF-8 (the charset §2.1 lets a server ask for; ASCII is the
        // same bytes), then Base64.
        let token = BASE64.encode(format!("{}:{}", c.user, c.password));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// Reads one response head of at most `budget` bytes and nothing after
/// it: its status code, reason phrase and length.
async fn read_head(stream: &mut TcpStream, budget: usize) -> Result<(u16, String, usize), Step> {
    let mut head: Vec<u8> = Vec::new();
    loop {
        let start = head.len();
        // One byte past the budget, to tell "exactly at the limit" from
        // "over it".
        let room = (budget + 1 - start).min(PEEK);
        head.resize(start + room, 0);
        let seen = stream.peek(&mut head[start..]).await?;
        #[cfg(test)]
        tests::PEEKS.with(|p| p.set(p.get() + 1));
        head.truncate(start + seen);
        if seen == 0 {
            return Err(ProxyFailure::Closed.into());
        }
        let (take, done) = match parse(&head)? {
            Some((code, reason, len)) => (len - start, Some((code, reason, len))),
            None => (seen, None),
        };
        if start + take > budget {
            return Err(ProxyFailure::HeadTooLarge.into());
        }
        // The same bytes the peek showed, now taken off the socket: up to
        // the head's end and no further.
        head.truncate(start);
        head.resize(start + take, 0);
        stream.read_exact(&mut head[start..]).await?;
        if let Some(done) = done {
            return Ok(done);
        }
    }
}

/// The head in `buf`, if it is complete: status code, reason, length.
fn parse(buf: &[u8]) -> Result<Option<(u16, String, usize)>, ProxyFailure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEAD_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let code = response.code.unwrap_or_default();
            let reason = response.reason.unwrap_or_default().to_owned();
            Ok(Some((code, reason, len)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(ProxyFailure::HeadTooLarge),
        Err(_) => Err(ProxyFailure::Malformed("not an HTTP/1.x response")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A loopback pair: (our end, the proxy's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (ours.unwrap(), theirs.unwrap().0)
    }

    #[test]
    fn the_request_is_authority_form_with_host_and_basic_credentials() {
        let proxy = Proxy::parse("http://Aladdin:open%20sesame@p:3128").unwrap();
        // RFC 7617 §2's example credentials.
        assert_eq!(
            request(&proxy, "example.com", 443),
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
             Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        );
        let proxy = Proxy::parse("http://p:3128").unwrap();
        assert_eq!(
            request(&proxy, "::1", 9001),
            "CONNECT [::1]:9001 HTTP/1.1\r\nHost: [::1]:9001\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn the_head_is_read_to_its_end_and_the_tunnel_bytes_after_it_stay() {
        let (mut ours, mut theirs) = pair().await;
        // One write: the head, then the first bytes of the tunnel.
        theirs
            .write_all(b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\nTUNNEL")
            .await
            .unwrap();
        let (code, reason, len) = read_head(&mut ours, MAX_HEAD_BYTES).await.unwrap();
        assert_eq!(
            (code, reason.as_str(), len),
            (200, "Connection established", 47)
        );
        let mut rest = [0u8; 6];
        ours.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"TUNNEL");
    }

    thread_local! {
        /// How many peeks `read_head` has completed on this thread: the
        /// pieces test writes a piece only once the last one was seen
        /// (a `#[tokio::test]` runs its tasks on its own thread).
        pub(super) static PEEKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    #[tokio::test]
    async fn a_head_that_arrives_in_pieces_is_put_together() {
        let (mut ours, mut theirs) = pair().await;
        let before = PEEKS.with(|p| p.get());
        let writer = tokio::spawn(async move {
            for (k, piece) in [
                &b"HTTP/1.1 407 Proxy Auth"[..],
                b"entication Required\r",
                b"\n\r\nbody",
            ]
            .into_iter()
            .enumerate()
            {
                theirs.write_all(piece).await.unwrap();
                // The next piece goes only once a peek has shown this one:
                // the pieces cannot coalesce, however loaded the machine.
                while PEEKS.with(|p| p.get()) <= before + k {
                    tokio::task::yield_now().await;
                }
            }
            theirs
        });
        let (code, reason, _) = read_head(&mut ours, MAX_HEAD_BYTES).await.unwrap();
        assert_eq!(
            (code, reason.as_str()),
            (407, "Proxy Authentication Required")
        );
        drop(writer.await.unwrap());
        let mut rest = Vec::new();
        ours.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"body");
    }

    #[tokio::test]
    async fn a_head_over_the_bound_is_refused_without_reading_on() {
        let (mut ours, mut theirs) = pair().await;
        let mut head = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
        head.resize(MAX_HEAD_BYTES * 2, b'a');
        theirs.write_all(&head).await.unwrap();
        match read_head(&mut ours, MAX_HEAD_BYTES).await {
            Err(Step::Failed(ProxyFailure::HeadTooLarge)) => {}
            other => panic!("{other:?}"),
        }
        // Not a byte past the bound was taken off the socket.
        drop(theirs);
        let mut rest = Vec::new();
        ours.read_to_end(&mut rest).await.unwrap();
        assert!(
            rest.len() >= MAX_HEAD_BYTES && rest.len() <= MAX_HEAD_BYTES * 2,
            "{} bytes left of {}",
            rest.len(),
            MAX_HEAD_BYTES * 2
        );
        // A head of exactly the bound is still read.
        let (mut ours, mut theirs) = pair().await;
        let mut head = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
        head.resize(MAX_HEAD_BYTES - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        theirs.write_all(&head).await.unwrap();
        let (_, _, len) = read_head(&mut ours, MAX_HEAD_BYTES).await.unwrap();
        assert_eq!(len, MAX_HEAD_BYTES);
    }

    #[tokio::test]
    async fn too_many_fields_garbage_and_an_early_close_are_told_apart() {
        let (mut ours, mut theirs) = pair().await;
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEAD_HEADERS {
            head.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        theirs.write_all(&head).await.unwrap();
        assert!(matches!(
            read_head(&mut ours, MAX_HEAD_BYTES).await,
            Err(Step::Failed(ProxyFailure::HeadTooLarge))
        ));

        let (mut ours, mut theirs) = pair().await;
        theirs.write_all(b"\x05\x00garbage\r\n\r\n").await.unwrap();
        assert!(matches!(
            read_head(&mut ours, MAX_HEAD_BYTES).await,
            Err(Step::Failed(ProxyFailure::Malformed(_)))
        ));

        let (mut ours, mut theirs) = pair().await;
        theirs.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        drop(theirs);
        assert!(matches!(
            read_head(&mut ours, MAX_HEAD_BYTES).await,
            Err(Step::Failed(ProxyFailure::Closed))
        ));
    }

    #[tokio::test]
    async fn an_interim_1xx_answer_is_skipped_and_the_final_one_counts() {
        let (mut ours, mut theirs) = pair().await;
        let proxy = Proxy::parse("http://p:1").unwrap();
        let server = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let _ = theirs.read(&mut buf).await.unwrap();
            theirs
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 502 Bad Gateway\r\n\r\n")
                .await
                .unwrap();
            theirs
        });
        match handshake(&mut ours, &proxy, "h", 80).await {
            Err(Step::Failed(ProxyFailure::Status { code: 502, reason })) => {
                assert_eq!(reason, "Bad Gateway")
            }
            other => panic!("{other:?}"),
        }
        drop(server.await.unwrap());
    }
}
