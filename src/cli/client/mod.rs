//! `rfc6455 client URL`: a WebSocket client for debugging servers, in the
//! spirit of websocat and wscat, on this crate's own stack.
//!
//! - `connect.rs`: the route (direct, `--proxy`, or the environment's
//!   proxy as curl picks it), the opening request (`-H`, `--protocol`,
//!   `--origin`, RFC 6455 §4.1) sent with [`transport::connect_request_with`], and
//!   failures said in words: a `wss://` URL to a plain port names the
//!   mix-up instead of showing rustls' error.
//! - `session.rs`: stdin to messages and messages to stdout, in lines
//!   (text) or raw bytes (`--binary`); Pings and their round trips; the
//!   closing handshake (§7.1.2), `--wait`, and the exit code.
//! - `command.rs`: the typed commands `/ping`, `/close`, `//`.
//! - `json.rs`: `--trace=json`, one object per frame.
//!
//! [`transport::connect_request_with`]: rfc6455::transport::connect_request_with

mod command;
mod connect;
mod json;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use rfc6455::transport::http::{self, HeaderName, HeaderValue};
use rfc6455::transport::{Config, Proxy};

/// What `--help` says after the options: the exit codes, and the text
/// mode's commands.
pub const AFTER_HELP: &str = "\
Text mode (the default): each line typed is sent as a text message and each
text message received is printed on a line of its own; a binary message is
shown as <binary, N bytes>. Lines starting with / are commands:
  /ping [PAYLOAD]         send a Ping; its Pong's round trip is printed
  /close [CODE [REASON]]  close with CODE (1000 if none; codes RFC 6455
                          §7.4 forbids, like 1005 or 1006, are refused)
  //TEXT                  send the message /TEXT
  /help                   list the commands
A line that is not UTF-8 is not sent (a text message must be, RFC 6455 §5.6).
Binary mode (--binary): stdin is read as raw bytes, each read (at most
64 KiB) sent as one binary message as it arrives; the payload of every message
received, text or binary, is written to stdout as it is, with nothing added.
No commands: every byte is data. (websocat -b does the same.)

At the end of stdin the client closes with 1000 and prints what still
arrives until the server's Close (at most the close timeout, 5 s); with
--wait SECS it first goes on printing replies for SECS, then closes. The
server's Close is printed with its code's meaning.

Exit status:
  0  the closing handshake completed: we closed and the server answered,
     or the server closed with 1000 (normal closure)
  1  no connection: bad URL, DNS, TCP, TLS, or the server refused the
     opening handshake
  2  bad command line (an invalid -H header, --protocol, --proxy, ...)
  3  the server closed with a code other than 1000 (or none)
  4  the connection failed once open: a protocol error, the server
     vanished without a Close, or it did not finish the close in time";

/// `rfc6455 client`'s options.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// A ws:// or wss:// URL.
    url: String,
    /// For wss://, trust only the CA certificate(s) in this PEM file
    /// (a self-signed test server's), not Mozilla's roots.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Send this header with the opening request, e.g. -H 'Authorization:
    /// Bearer abc'; repeat for more. The headers the handshake writes
    /// itself (Host, Upgrade, Connection, Sec-WebSocket-*) are refused,
    /// and so are values that are not visible ASCII (percent-encode them,
    /// or use RFC 8187's encoding).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<Header>,
    /// Offer this subprotocol (Sec-WebSocket-Protocol, §1.9, §4.1);
    /// repeat it or give a comma-separated list, in order of preference.
    /// The one the server chose is printed.
    #[arg(long = "protocol", value_name = "P", value_delimiter = ',', value_parser = parse_protocol)]
    protocols: Vec<String>,
    /// Send `Origin: ORIGIN`, as a browser would (§4.1, §10.2).
    #[arg(long, value_name = "ORIGIN", value_parser = parse_origin)]
    origin: Option<HeaderValue>,
    /// Raw bytes: stdin's bytes go out as binary messages, and received
    /// payloads go to stdout as they are (see below).
    #[arg(long)]
    binary: bool,
    /// Send a Ping every SECS seconds (at least 0.01) and print each
    /// Pong's round trip on stderr.
    #[arg(long, value_name = "SECS", value_parser = parse_ping_interval)]
    ping_interval: Option<Duration>,
    /// After the end of stdin, go on printing what arrives for SECS
    /// seconds (or until the server closes), then close with 1000.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    wait: Option<Duration>,
    /// Print the opening handshake's two heads and every frame in and
    /// out, decoded, to stderr: Close codes with their meaning (RFC 6455
    /// §7.4.1), compressed messages with their inflated size.
    /// `--trace=hex` adds each frame's bytes, the header annotated;
    /// `--trace=json` prints one JSON object per head and frame instead,
    /// for tools.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "frames")]
    trace: Option<TraceArg>,
    /// Offer permessage-deflate (RFC 7692).
    #[arg(long)]
    pub deflate: bool,
    /// Connect through this proxy: http://[user:pass@]host[:port] (HTTP
    /// CONNECT), socks5:// or socks5h:// (SOCKS5, the name resolved here
    /// or by the proxy). Without it, as curl does: https_proxy (wss://),
    /// http_proxy (ws://), ALL_PROXY, and NO_PROXY for the hosts to reach
    /// directly. A password here is visible to other users of the
    /// machine (ps) and in shell history: put it in ALL_PROXY or
    /// https_proxy instead.
    // A String, parsed by `run`: clap would quote a value its parser
    // refused, password and all, in its error.
    #[arg(long, value_name = "URL", conflicts_with = "no_proxy")]
    proxy: Option<String>,
    /// Connect directly, whatever the proxy variables say.
    #[arg(long)]
    no_proxy: bool,
}

/// `client --trace[=hex|json]`: how much the tracer prints.
#[derive(Clone, Copy, clap::ValueEnum)]
enum TraceArg {
    /// The heads, and one line per frame.
    Frames,
    /// Each frame's bytes too, the header annotated field by field.
    Hex,
    /// One JSON object per line for each head and frame.
    Json,
}

/// One `-H` header.
#[derive(Clone, Debug)]
struct Header {
    name: HeaderName,
    value: HeaderValue,
}

/// `-H 'Name: value'`: an HTTP field (RFC 9110 §5) the handshake does not
/// own.
fn parse_header(s: &str) -> Result<Header, String> {
    let Some((name, value)) = s.split_once(':') else {
        return Err(format!("{s:?} is not 'Name: value' (no colon)"));
    };
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of {name} holds a character a header may not"))?;
    ascii(&value, &name)?;
    // Every Sec-WebSocket-* name is the handshake's (RFC 6455 §11.3):
    // those it writes, and Accept, which only a server sends.
    if rfc6455::transport::is_handshake_header(&name) || name.as_str().starts_with("sec-websocket-")
    {
        return Err(format!(
            "{name} is written by the opening handshake itself (RFC 6455 §4.1){}",
            if name == "sec-websocket-protocol" {
                ": use --protocol"
            } else {
                ""
            }
        ));
    }
    Ok(Header { name, value })
}

/// `--protocol`: §4.1 item 10, each element a token (RFC 9110 §5.6.2).
fn parse_protocol(s: &str) -> Result<String, String> {
    let s = s.trim();
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if s.is_empty() || !s.chars().all(tchar) {
        return Err(format!(
            "{s:?} is not a subprotocol name (an HTTP token, RFC 6455 §4.1)"
        ));
    }
    Ok(s.to_owned())
}

/// A header value the opening request can carry: the handshake writes
/// only visible ASCII (`HeaderValue::to_str`), so bytes from 0x80 up,
/// which `http` accepts, would fail only after connecting, as if the
/// server were at fault.
fn ascii(value: &HeaderValue, name: &HeaderName) -> Result<(), String> {
    value.to_str().map(|_| ()).map_err(|_| {
        format!("the value of {name} is not ASCII; percent-encode it, or use RFC 8187's encoding")
    })
}

/// `--origin`: any ASCII value a header may carry (§10.2: the server
/// decides; RFC 6454 §6.2 serializes a non-ASCII host as its A-label).
fn parse_origin(s: &str) -> Result<HeaderValue, String> {
    let value = HeaderValue::from_str(s).map_err(|_| format!("{s:?} cannot be a header value"))?;
    ascii(&value, &http::header::ORIGIN)?;
    Ok(value)
}

/// Seconds, fractions allowed, more than zero.
fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() && secs < 1e9 => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(format!("{s:?} is not a number of seconds above 0")),
    }
}

/// The shortest `--ping-interval`: 10 ms. Below it the Pings are a flood
/// rather than a keepalive, and below half a nanosecond the interval
/// rounds to zero, which tokio's timer refuses with a panic.
const MIN_PING_INTERVAL: Duration = Duration::from_millis(10);

/// `--ping-interval`: seconds, at least [`MIN_PING_INTERVAL`].
fn parse_ping_interval(s: &str) -> Result<Duration, String> {
    let interval = parse_secs(s)?;
    if interval < MIN_PING_INTERVAL {
        return Err(format!(
            "{s} s is too short a ping interval: at least 0.01 s (10 ms)"
        ));
    }
    Ok(interval)
}

/// How the client ended: its exit status (see [`AFTER_HELP`]; clap
/// exits with 2, a bad command line, itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// The closing handshake completed, normally.
    Normal = 0,
    /// No connection.
    NoConnection = 1,
    /// A bad command line found after clap's parse (`--proxy`).
    Usage = 2,
    /// The server closed with another code than 1000.
    PeerClosed = 3,
    /// The connection failed once open.
    Failed = 4,
}

/// Runs `rfc6455 client` with `config` (the transport's, deflate set).
pub async fn run(args: ClientArgs, config: Config) -> ExitCode {
    // Proxy::parse's error never holds the password (clap's would).
    let proxy = match args.proxy.as_deref().map(Proxy::parse).transpose() {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("error: --proxy: {e}");
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    let exit = match connect::connect(args, proxy, config).await {
        Ok(exit) => exit,
        Err(why) => {
            eprintln!("error: {why}");
            Exit::NoConnection
        }
    };
    ExitCode::from(exit as u8)
}
