//! Opening the connection: TCP, TLS for `wss://`, then the opening
//! request (RFC 6455 §4.1) with the user's headers, subprotocols and
//! origin, through [`connect_request_with`]; and, when that fails, a
//! sentence that says what went wrong.
//!
//! The commonest mistake is a scheme that does not match the port: a
//! `wss://` URL to a plain WebSocket port, where the server answers the
//! TLS ClientHello with an HTTP error (or closes), and rustls reports
//! "received corrupt message of type InvalidContentType"; or a `ws://` URL
//! to a TLS port, where the answer to our `GET` is a TLS alert. The first
//! byte the server sends tells them apart (a TLS record starts with its
//! content type, 0x14 to 0x17, RFC 8446 §5.1; an HTTP response with
//! `H`), so the client keeps it. A plain server may also
//! say nothing at all, waiting for the end of a request head that a
//! ClientHello never sends: when not one byte has come back within
//! [`TLS_ANSWER`] of the ClientHello being written (the clock starts then,
//! not before DNS and TCP), a second connection asks the port a plain HTTP
//! question. Its answer never ends the first connection, which is waited
//! for until TLS fails or the handshake timeout: nginx and Go answer a
//! plain request on their TLS port in plain HTTP too, at once, while their
//! TLS handshake may be slow, so the probe alone proves nothing. It only
//! words the error: a TLS attempt that got no byte back from a port that
//! answers plain HTTP is reported as the same mix-up.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rfc6455::proto::WsUrl;
use rfc6455::transport::http::{self, HeaderValue, header};
use rfc6455::transport::trace::{TraceMode, Traced};
use rfc6455::transport::{Config, Connector, Error, Proxy, connect_request_with, tls};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::either::Either;
use tokio_util::io::{InspectReader, InspectWriter};

use super::{ClientArgs, Exit, TraceArg, json, session};

/// Connects as `args` say, then runs the session; `Err` is why there is
/// no connection.
/// `proxy` is `--proxy`'s, parsed.
pub async fn connect(
    args: ClientArgs,
    proxy: Option<Proxy>,
    config: Config,
) -> Result<Exit, String> {
    let url = WsUrl::parse(&args.url).map_err(|e| format!("{}: {e}", args.url))?;
    let request = request(&args)?;
    let tls_config = match &args.ca {
        Some(ca) => tls::client_config(tls::root_store_from_pem(ca).map_err(|e| e.to_string())?),
        None => tls::webpki_client_config(),
    };
    let connector = Connector::with_tls(tls_config.clone());
    // Like curl: the environment's proxies unless told otherwise.
    let connector = match (proxy, args.no_proxy) {
        (Some(proxy), _) => connector.with_proxy(proxy),
        (None, true) => connector,
        (None, false) => connector.with_env_proxy(),
    };
    let proxy = connector.proxy_for(&url).map_err(|e| e.to_string())?;
    if let Some(proxy) = &proxy {
        eprintln!("through the proxy {proxy}");
    }
    let stream = open(
        &connector,
        tls_config,
        &url,
        proxy.is_none(),
        config.handshake_timeout,
    )
    .await?;
    // The first byte the server sends, kept for `handshake_failed`.
    let first = Arc::new(OnceLock::new());
    let noted = first.clone();
    let stream = InspectReader::new(stream, move |read: &[u8]| {
        if let Some(&b) = read.first() {
            let _ = noted.set(b);
        }
    });
    let options = session::Options {
        binary: args.binary,
        ping_interval: args.ping_interval,
        wait: args.wait,
    };
    let target = Target {
        url: &url,
        request: &request,
        first,
    };
    match args.trace {
        None => talk(stream, target, config, options).await,
        Some(TraceArg::Frames) => {
            let traced = Traced::with_mode(stream, TraceMode::Frames);
            talk(traced, target, config, options).await
        }
        Some(TraceArg::Hex) => {
            let traced = Traced::with_mode(stream, TraceMode::Hex);
            talk(traced, target, config, options).await
        }
        Some(TraceArg::Json) => {
            let start = Instant::now();
            let traced = Traced::with_events(stream, move |direction, event| {
                let t_ms = start.elapsed().as_micros() as f64 / 1000.0;
                eprintln!("{}", json::event(direction, &event, t_ms));
            });
            talk(traced, target, config, options).await
        }
    }
}

/// The opening request: the URL, `-H` headers, `Origin`, and the
/// subprotocols offered.
fn request(args: &ClientArgs) -> Result<http::Request<()>, String> {
    let mut request = http::Request::builder()
        .uri(args.url.as_str())
        .body(())
        .map_err(|e| format!("{}: {e}", args.url))?;
    let headers = request.headers_mut();
    for h in &args.headers {
        headers.append(h.name.clone(), h.value.clone());
    }
    if let Some(origin) = &args.origin {
        headers.insert(header::ORIGIN, origin.clone());
    }
    if !args.protocols.is_empty() {
        // Tokens, checked by clap: the list is a valid value.
        let list = HeaderValue::from_str(&args.protocols.join(", "))
            .map_err(|_| "the subprotocol list is not a valid header value".to_owned())?;
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, list);
    }
    Ok(request)
}

/// Where the session goes.
struct Target<'a> {
    url: &'a WsUrl,
    request: &'a http::Request<()>,
    /// The first byte the server sent, once it has.
    first: Arc<OnceLock<u8>>,
}

/// The opening handshake over `stream`, then the session.
async fn talk<S>(
    stream: S,
    target: Target<'_>,
    config: Config,
    options: session::Options,
) -> Result<Exit, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let offered = target
        .request
        .headers()
        .contains_key(header::SEC_WEBSOCKET_PROTOCOL);
    let (ws, response) = connect_request_with(stream, target.request, config)
        .await
        .map_err(|e| handshake_failed(target.url, &e, target.first.get().copied()))?;
    let chosen = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    match (offered, chosen) {
        (_, Some(protocol)) => eprintln!("connected; subprotocol: {protocol}"),
        (true, None) => eprintln!("connected; the server chose none of the subprotocols offered"),
        (false, None) => eprintln!("connected"),
    }
    Ok(session::run(ws, options).await)
}

/// How long a `wss://` server may leave our ClientHello unanswered before
/// we ask whether the port speaks plain HTTP. A TLS server answers within
/// a round trip; one second is many round trips, even across the world.
const TLS_ANSWER: Duration = Duration::from_secs(1);

/// The connection the session runs over: TCP for `ws://`, TLS over
/// watched TCP for `wss://`.
type Stream = Either<TcpStream, tls::tokio_rustls::client::TlsStream<Watched>>;

/// TCP (through the connector's proxy, if any), and TLS for `wss://`,
/// within `timeout`; for a `wss://` URL to a port that speaks plain HTTP,
/// an error that says so. Only a `direct` connection asks the port
/// itself: through a proxy, the port may not be reachable from here.
async fn open(
    connector: &Connector,
    tls_config: Arc<tls::rustls::ClientConfig>,
    url: &WsUrl,
    direct: bool,
    timeout: Duration,
) -> Result<Stream, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let tcp = in_time(tokio::time::timeout_at(deadline, connector.open_tcp(url)).await)
        .map_err(|e| opening_failed(url, &e, false))?;
    if !url.secure {
        return Ok(Either::Left(tcp));
    }
    let watch = Arc::new(Watch::default());
    let watched = watched(tcp, &watch);
    let handshake =
        tokio::time::timeout_at(deadline, tls::connect_tls(watched, &url.host, tls_config));
    tokio::pin!(handshake);
    let done = |result, plain| {
        in_time(result)
            .map(Either::Right)
            .map_err(|e| opening_failed(url, &e, plain))
    };
    if !direct {
        return done(handshake.await, false);
    }
    // The clock starts once the ClientHello is written: DNS, the TCP
    // connection and a slow first write are not the server's silence.
    tokio::select! {
        result = &mut handshake => return done(result, false),
        _ = watch.hello_sent.notified() => {}
    }
    tokio::select! {
        result = &mut handshake => return done(result, false),
        _ = tokio::time::sleep(TLS_ANSWER) => {}
    }
    if watch.answered.load(Ordering::Relaxed) {
        // The server has begun to answer: TLS is progressing.
        return done(handshake.await, false);
    }
    // The probe runs beside the handshake, which keeps going: it never
    // ends the connection (a loaded TLS server may take seconds over its
    // handshake and answer a plain request at once, as nginx and Go do);
    // it only words the error, should TLS then fail or time out.
    let plain = tokio::select! {
        result = &mut handshake => return done(result, false),
        plain = speaks_plain_http(url) => plain,
    };
    let result = handshake.await;
    // Only if TLS never got a byte back: a server that began its TLS
    // answer and then failed (a certificate refused, say) is a TLS server,
    // whatever it says to plain HTTP.
    done(result, plain && !watch.answered.load(Ordering::Relaxed))
}

/// The result of a step run under `timeout_at`: its own, or
/// [`Error::HandshakeTimeout`] (the deadline of TCP, the proxy and TLS).
fn in_time<T>(result: Result<Result<T, Error>, tokio::time::error::Elapsed>) -> Result<T, Error> {
    result.map_err(|_| Error::HandshakeTimeout)?
}

/// What [`Watched`] has seen of the TLS handshake.
#[derive(Default)]
struct Watch {
    /// Notified once the first bytes (the ClientHello) are written.
    hello_sent: Notify,
    /// Whether the server has sent a byte.
    answered: AtomicBool,
}

/// The TCP connection under TLS, noting the first write and the first
/// byte read (into a [`Watch`]), so that [`open`] can tell a silent server
/// from a slow one.
type Watched = InspectReader<InspectWriter<TcpStream, Note>, Note>;
type Note = Box<dyn FnMut(&[u8]) + Send>;

fn watched(tcp: TcpStream, watch: &Arc<Watch>) -> Watched {
    let sent = watch.clone();
    let answered = watch.clone();
    let writer = InspectWriter::new(
        tcp,
        Box::new(move |wrote: &[u8]| {
            if !wrote.is_empty() {
                // notify_one keeps a permit if nobody waits yet.
                sent.hello_sent.notify_one();
            }
        }) as Note,
    );
    InspectReader::new(
        writer,
        Box::new(move |read: &[u8]| {
            if !read.is_empty() {
                answered.answered.store(true, Ordering::Relaxed);
            }
        }) as Note,
    )
}

/// Whether the port answers a plain HTTP request with an HTTP response,
/// within [`TLS_ANSWER`].
async fn speaks_plain_http(url: &WsUrl) -> bool {
    let probe = async {
        let mut tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .ok()?;
        tcp.write_all(probe_request(url).as_bytes()).await.ok()?;
        let mut answer = [0u8; 5];
        tcp.read_exact(&mut answer).await.ok()?;
        Some(&answer == b"HTTP/")
    };
    matches!(
        tokio::time::timeout(TLS_ANSWER, probe).await,
        Ok(Some(true))
    )
}

/// The probe's plain HTTP question. `Host` as RFC 9112 §3.2 wants it (an
/// IPv6 address in brackets, RFC 3986 §3.2.2): a strict server would
/// close on `Host: ::1` instead of answering.
fn probe_request(url: &WsUrl) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        url.host_header()
    )
}

/// `host:port`, as the messages name the server (`[v6]:port`).
fn server(url: &WsUrl) -> String {
    if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    }
}

/// Why TCP or TLS failed, in words; `answers_http`: a plain HTTP
/// request to the port got an HTTP answer.
fn opening_failed(url: &WsUrl, e: &Error, answers_http: bool) -> String {
    let plain = answers_http
        || match e {
            // Not a TLS record at all: an HTTP error page, most likely.
            Error::Tls(tls::rustls::Error::InvalidMessage(_)) => true,
            // A plain server that gave up on the ClientHello without a word.
            Error::Io(io) => {
                url.secure
                    && matches!(
                        io.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    )
            }
            _ => false,
        };
    if plain {
        let why = if answers_http {
            format!("it answers plain HTTP; {e}")
        } else {
            e.to_string()
        };
        return format!(
            "the server at {} did not answer TLS; is it a plain ws:// port? ({why})",
            server(url)
        );
    }
    format!("cannot connect to {}: {e}", server(url))
}

/// Why the opening handshake failed, in words; `first` is the first byte
/// the server sent.
fn handshake_failed(url: &WsUrl, e: &Error, first: Option<u8>) -> String {
    if !url.secure && matches!(first, Some(0x14..=0x17)) {
        return format!(
            "the server at {} answered in TLS; is it a wss:// port? ({e})",
            server(url)
        );
    }
    format!("the opening handshake with {} failed: {e}", server(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_server_is_written_in_brackets_in_messages_and_the_probe() {
        let url = WsUrl::parse("wss://[::1]:9001/").unwrap();
        assert_eq!(server(&url), "[::1]:9001");
        assert!(
            probe_request(&url).contains("\r\nHost: [::1]:9001\r\n"),
            "{}",
            probe_request(&url)
        );
        let url = WsUrl::parse("wss://example.com/").unwrap();
        assert_eq!(server(&url), "example.com:443");
        assert!(probe_request(&url).contains("\r\nHost: example.com\r\n"));
    }
}
