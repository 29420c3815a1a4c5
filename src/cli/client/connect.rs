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
//! ClientHello never sends (ours does): when TLS has no answer within
//! [`TLS_ANSWER`], a second connection asks the port a plain HTTP question,
//! and an HTTP answer ends the wait with the same message.

use std::io;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rfc6455::proto::WsUrl;
use rfc6455::transport::http::{self, HeaderValue, header};
use rfc6455::transport::trace::{TraceMode, Traced};
use rfc6455::transport::{Config, Connector, Error, MaybeTlsStream, connect_request_with, tls};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::io::InspectReader;

use super::{ClientArgs, Exit, TraceArg, json, session};

/// Connects as `args` say, then runs the session; `Err` is why there is
/// no connection.
pub async fn connect(args: ClientArgs, config: Config) -> Result<Exit, String> {
    let url = WsUrl::parse(&args.url).map_err(|e| format!("{}: {e}", args.url))?;
    let request = request(&args)?;
    let connector = match &args.ca {
        Some(ca) => Connector::with_tls(tls::client_config(
            tls::root_store_from_pem(ca).map_err(|e| e.to_string())?,
        )),
        None => Connector::new(),
    };
    // Like curl: the environment's proxies unless told otherwise.
    let connector = match (&args.proxy, args.no_proxy) {
        (Some(proxy), _) => connector.with_proxy(proxy.clone()),
        (None, true) => connector,
        (None, false) => connector.with_env_proxy(),
    };
    let proxy = connector.proxy_for(&url).map_err(|e| e.to_string())?;
    if let Some(proxy) = &proxy {
        eprintln!("through the proxy {proxy}");
    }
    let stream = open(&connector, &url, proxy.is_none(), config.handshake_timeout).await?;
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

/// TCP (through the connector's proxy, if any), and TLS for `wss://`,
/// within `timeout`; for a `wss://` URL to a port that speaks plain HTTP,
/// an error that says so. Only a `direct` connection asks the port
/// itself: through a proxy, the port may not be reachable from here.
async fn open(
    connector: &Connector,
    url: &WsUrl,
    direct: bool,
    timeout: Duration,
) -> Result<MaybeTlsStream, String> {
    let opening = connector.open(url, timeout);
    tokio::pin!(opening);
    if url.secure && direct {
        tokio::select! {
            opened = &mut opening => return opened.map_err(|e| opening_failed(url, &e)),
            _ = tokio::time::sleep(TLS_ANSWER) => {}
        }
        if speaks_plain_http(url).await {
            return Err(format!(
                "the server at {} did not answer TLS; is it a plain ws:// port? \
                 (it answers plain HTTP)",
                server(url)
            ));
        }
    }
    opening.await.map_err(|e| opening_failed(url, &e))
}

/// Whether the port answers a plain HTTP request with an HTTP response,
/// within [`TLS_ANSWER`].
async fn speaks_plain_http(url: &WsUrl) -> bool {
    let probe = async {
        let mut tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .ok()?;
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            url.host
        );
        tcp.write_all(request.as_bytes()).await.ok()?;
        let mut answer = [0u8; 5];
        tcp.read_exact(&mut answer).await.ok()?;
        Some(&answer == b"HTTP/")
    };
    matches!(
        tokio::time::timeout(TLS_ANSWER, probe).await,
        Ok(Some(true))
    )
}

/// `host:port`, as the messages name the server.
fn server(url: &WsUrl) -> String {
    format!("{}:{}", url.host, url.port)
}

/// Why TCP or TLS failed, in words.
fn opening_failed(url: &WsUrl, e: &Error) -> String {
    let plain = match e {
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
        return format!(
            "the server at {} did not answer TLS; is it a plain ws:// port? ({e})",
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
