//! The chat's front door, against a real server: which pages may open a
//! WebSocket (RFC 6455 §10.2, origins per RFC 6454), how many sockets a
//! server and one address may hold (counted from the accept, before any
//! request), what happens out of file descriptors, and that secrets stay
//! out of `--help` and the logs.
//!
//! Most tests run `chat::serve` in-process on a free loopback port; the
//! file-descriptor and command-line tests run the `rfc6455` binary.
//! The attacks of issue 13's table (rows 6 to 8) each run beside a
//! well-behaved client posting and timing its acks (`common::bystander`),
//! on another loopback address where the attacker fills its own.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bystander::Bystander;
use common::process::{Spawned, free_addr, rss_kib};
use common::server::{ChatServer, metric};
use rfc6455::chat::{ChatConfig, Origin};
use rfc6455::proto::{Message, WsUrl};
use rfc6455::transport::{self, Config, WebSocket};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

/// How long an attacker holds what it took while the bystander posts
/// beside it: ten posts' worth.
const HOLD: Duration = Duration::from_secs(2);

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("frontdoor", name)
}

fn config(name: &str) -> ChatConfig {
    let mut c = ChatConfig::new(temp_dir(name).join("chat.db"));
    c.close_timeout = Duration::from_millis(300);
    c
}

/// A TCP connection to `addr` from the loopback address `from`
/// (127.0.0.2 and up are other addresses on Linux, all on `lo`).
async fn connect_from(from: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A WebSocket upgrade request for `/ws` with this `Host` and, if any,
/// this `Origin`.
fn upgrade(host: &str, origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    common::request_for("/ws").replacen(
        "Host: localhost\r\n",
        &format!("Host: {host}\r\n{origin}"),
        1,
    )
}

/// Sends `request` on a new connection; the whole response up to EOF (or
/// the head only, for a 101, whose connection stays open).
async fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(WAIT, common::read_head(&mut s))
        .await
        .expect("no response head");
    if head.starts_with("HTTP/1.1 101 ") {
        return head;
    }
    let mut rest = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut rest))
        .await
        .expect("the server did not close")
        .unwrap();
    head + &rest
}

/// The status line of the answer to an upgrade with this `Host` and
/// `Origin`.
async fn status(addr: SocketAddr, host: &str, origin: Option<&str>) -> String {
    let response = exchange(addr, &upgrade(host, origin)).await;
    response.lines().next().unwrap_or_default().to_owned()
}

async fn http_get_from(from: IpAddr, addr: SocketAddr, path: &str) -> String {
    let mut s = connect_from(from, addr).await;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .expect("no response")
        .unwrap();
    out
}

/// `/metrics`, asked from 127.0.0.3 (so that a cap on 127.0.0.1 does not
/// refuse it), retried while the server is full.
async fn metrics(addr: SocketAddr) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = http_get_from(ip("127.0.0.3"), addr, "/metrics").await;
        if m.starts_with("HTTP/1.1 200 ") {
            return m;
        }
        assert!(Instant::now() < deadline, "no metrics: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A chat client on `stream` says hello and is welcomed: the client, and
/// the welcome.
async fn welcomed_on(
    stream: TcpStream,
    addr: SocketAddr,
    nick: &str,
) -> (WebSocket<TcpStream>, Value) {
    let url = WsUrl::parse(&format!("ws://{addr}/ws")).unwrap();
    let (mut ws, _) = transport::connect_with(stream, &url, Config::default())
        .await
        .expect("upgraded");
    let hello = serde_json::json!({"type": "hello", "nick": nick});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    let welcome = common::chat::next_of(&mut ws, "welcome").await;
    (ws, welcome)
}

/// A client from `from` is welcomed, retrying (for up to `within`) while
/// the server still refuses: slots come back when the server sees the
/// sockets that held them close.
async fn eventually_welcomed(from: IpAddr, addr: SocketAddr, nick: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut probe = connect_from(from, addr).await;
        probe
            .write_all(upgrade(&addr.to_string(), None).as_bytes())
            .await
            .unwrap();
        let head = tokio::time::timeout(WAIT, common::read_head(&mut probe))
            .await
            .unwrap_or_default();
        drop(probe);
        if head.starts_with("HTTP/1.1 101 ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused after {within:?}: {head}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_ws, welcome) = welcomed_on(connect_from(from, addr).await, addr, nick).await;
    assert_eq!(welcome["user"], nick, "{welcome}");
}

/// Reads what a socket that sent nothing receives within `window`:
/// `None` if nothing (it is held open), or the bytes until EOF.
async fn unprompted(s: &mut TcpStream, window: Duration) -> Option<String> {
    let mut out = Vec::new();
    match tokio::time::timeout(window, s.read_to_end(&mut out)).await {
        Err(_) if out.is_empty() => None,
        _ => Some(String::from_utf8_lossy(&out).into_owned()),
    }
}

// RFC 6455 §10.2: the Origin of the page that opens the WebSocket.

/// The hijacking attempt of a page from `origin`: the upgrade request,
/// then a hello right behind it, as the page's script would send once
/// open. The whole response, up to EOF.
async fn hijack(server: &ChatServer, origin: &str) -> String {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(upgrade(&server.host(), Some(origin)).as_bytes())
        .await
        .unwrap();
    let hello = serde_json::json!({"type": "hello", "nick": "mallory"}).to_string();
    let _ = s.write_all(&common::masked(0x81, hello.as_bytes())).await;
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut response))
        .await
        .expect("the server did not close")
        .ok();
    String::from_utf8_lossy(&response).into_owned()
}

/// Row 6 of issue 13: an evil page upgrading, again and again, beside a
/// user of the real page.
#[tokio::test]
async fn a_page_from_another_origin_gets_403_and_no_upgrade() {
    let server = ChatServer::start(config("evil")).await;
    let bystander = Bystander::start(server.addr).await;
    let response = hijack(&server, "http://evil.example").await;
    assert!(
        response.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{response}"
    );
    assert!(
        response.ends_with("pages from your origin may not connect here\n"),
        "{response}"
    );
    assert!(
        !response.contains("101") && !response.contains("welcome"),
        "{response}"
    );
    assert!(
        response.contains("Referrer-Policy: no-referrer\r\n"),
        "{response}"
    );
    // Pages keep trying, from another origin and from none (`null`).
    let mut attempts = 1;
    let until = Instant::now() + HOLD;
    while Instant::now() < until {
        for origin in ["http://evil.example", "null"] {
            let response = hijack(&server, origin).await;
            assert!(response.starts_with("HTTP/1.1 403 "), "{response}");
            assert!(!response.contains("welcome"), "{response}");
            attempts += 1;
        }
    }
    println!("{attempts} hijacking attempts in {HOLD:?}, every one 403");
    bystander.finish_and_reread("evil pages").await;
    let m = metrics(server.addr).await;
    assert_eq!(metric(&m, "chat_origin_refused_total"), attempts);
    assert_eq!(
        metric(&m, "chat_connections_total"),
        1,
        "nobody got in but the bystander"
    );
    server.stop().await;
}

#[tokio::test]
async fn origin_null_gets_403() {
    let server = ChatServer::start(config("null")).await;
    let response = exchange(server.addr, &upgrade(&server.host(), Some("null"))).await;
    assert!(response.starts_with("HTTP/1.1 403 "), "{response}");
    assert!(
        response.contains("Origin: null"),
        "the body says why: {response}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_servers_own_origin_and_clients_without_origin_are_upgraded() {
    let server = ChatServer::start(config("own")).await;
    let port = server.addr.port();
    let host = server.host();
    let own = format!("http://127.0.0.1:{port}");
    assert_eq!(
        status(server.addr, &host, Some(&own)).await,
        "HTTP/1.1 101 Switching Protocols"
    );
    assert_eq!(
        status(server.addr, &host, None).await,
        "HTTP/1.1 101 Switching Protocols"
    );
    // Host compared case-insensitively, against the Host it was reached at.
    assert_eq!(
        status(
            server.addr,
            &format!("localhost:{port}"),
            Some(&format!("http://LocalHost:{port}"))
        )
        .await,
        "HTTP/1.1 101 Switching Protocols"
    );
    // Another scheme, port or host is another origin (RFC 6454 §5).
    for other in [
        format!("https://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        format!("http://localhost:{port}"),
        "http://127.0.0.1".to_owned(),
    ] {
        assert_eq!(
            status(server.addr, &host, Some(&other)).await,
            "HTTP/1.1 403 Forbidden",
            "{other}"
        );
    }
    // Two Origin headers are not one page's origin.
    let twice =
        upgrade(&host, Some(&own)).replacen("\r\n\r\n", &format!("\r\nOrigin: {own}\r\n\r\n"), 1);
    assert!(
        exchange(server.addr, &twice)
            .await
            .starts_with("HTTP/1.1 403 ")
    );
    server.stop().await;
}

#[tokio::test]
async fn allow_origin_adds_one_and_only_that_one() {
    let mut c = config("allow");
    c.allowed_origins = vec![Origin::from_url("https://app.example").unwrap()];
    let server = ChatServer::start(c).await;
    let host = server.host();
    // A default port written out is the same origin.
    for allowed in ["https://app.example", "https://APP.example:443"] {
        assert_eq!(
            status(server.addr, &host, Some(allowed)).await,
            "HTTP/1.1 101 Switching Protocols",
            "{allowed}"
        );
    }
    for refused in [
        "http://app.example",
        "https://app.example:8443",
        "https://evil.example",
    ] {
        assert_eq!(
            status(server.addr, &host, Some(refused)).await,
            "HTTP/1.1 403 Forbidden",
            "{refused}"
        );
    }
    // The server's own origin still is.
    let own = format!("http://{host}");
    assert_eq!(
        status(server.addr, &host, Some(&own)).await,
        "HTTP/1.1 101 Switching Protocols"
    );
    server.stop().await;
}

#[tokio::test]
async fn public_url_sets_the_own_origin_instead_of_host() {
    let mut c = config("public");
    c.public_origin = Some(Origin::from_url("https://chat.example/").unwrap());
    let server = ChatServer::start(c).await;
    let host = server.host();
    // Behind a proxy that terminates TLS: the page is https, we serve http.
    assert_eq!(
        status(server.addr, &host, Some("https://chat.example")).await,
        "HTTP/1.1 101 Switching Protocols"
    );
    // The Host no longer makes an origin the server's own.
    assert_eq!(
        status(server.addr, &host, Some(&format!("http://{host}"))).await,
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(
        status(server.addr, "evil.example", Some("http://evil.example")).await,
        "HTTP/1.1 403 Forbidden",
        "DNS rebinding: a hostile name pointed at us"
    );
    server.stop().await;
}

#[tokio::test]
async fn allow_any_origin_turns_the_check_off() {
    let mut c = config("any");
    c.allow_any_origin = true;
    let server = ChatServer::start(c).await;
    for origin in ["http://evil.example", "null"] {
        assert_eq!(
            status(server.addr, &server.host(), Some(origin)).await,
            "HTTP/1.1 101 Switching Protocols"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn every_response_has_the_policies() {
    let server = ChatServer::start(config("headers")).await;
    let page = http_get_from(ip("127.0.0.1"), server.addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
    assert!(page.contains("Referrer-Policy: no-referrer\r\n"), "{page}");
    // The page may connect to its own origin only (ws/wss included).
    assert!(page.contains("connect-src 'self';"), "{page}");
    assert!(!page.contains("ws:") && !page.contains("wss:"), "{page}");
    let missing = http_get_from(ip("127.0.0.1"), server.addr, "/nope").await;
    assert!(
        missing.contains("Referrer-Policy: no-referrer\r\n"),
        "{missing}"
    );
    server.stop().await;
}

// Connection limits, counted from the accept.

#[tokio::test]
async fn max_connections_counts_sockets_that_never_send_a_request() {
    let mut c = config("max");
    c.max_connections = Some(20);
    c.max_per_ip = 0;
    c.max_handshakes_per_ip = 0;
    let server = ChatServer::start(c).await;
    // Row 7 of issue 13: a user, connected before the flood, holds one of
    // the 20 slots and keeps posting while the others are taken.
    let bystander = Bystander::start(server.addr).await;
    let mut sockets = Vec::new();
    for _ in 0..60 {
        sockets.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The 20th socket and later: 503 at once, without a request; the
    // first 19 are held open, waiting for theirs.
    let started = Instant::now();
    for (i, s) in sockets.iter_mut().enumerate().skip(19) {
        let got = unprompted(s, WAIT).await.unwrap_or_default();
        assert!(
            got.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "socket {i}: {got}"
        );
        assert!(got.contains("\r\nRetry-After: 5\r\n"), "{got}");
    }
    eprintln!("41 refusals read in {:?}", started.elapsed());
    for (i, s) in sockets.iter_mut().enumerate().take(19) {
        assert_eq!(
            unprompted(s, Duration::from_millis(100)).await,
            None,
            "socket {i}"
        );
    }
    // Full: a real client is refused too.
    let refused = transport::connect(&format!("ws://{}/ws", server.addr), Config::default()).await;
    assert!(
        matches!(refused, Err(transport::Error::Handshake(_))),
        "{refused:?}"
    );
    tokio::time::sleep(HOLD).await;
    bystander
        .finish_and_reread("max connections held by silent sockets")
        .await;
    drop(sockets);
    eventually_welcomed(ip("127.0.0.1"), server.addr, "alice", WAIT).await;
    let m = metrics(server.addr).await;
    assert!(metric(&m, "chat_connections_refused_total") >= 42, "{m}");
    server.stop().await;
}

#[tokio::test]
async fn one_address_is_capped_at_max_per_ip_and_another_is_not() {
    let mut c = config("per-ip");
    c.max_handshakes_per_ip = 0; // this test is about open sockets only
    assert_eq!(c.max_per_ip, 64, "the default");
    let server = ChatServer::start(c).await;
    // Row 8 of issue 13: a user on another address posts throughout.
    let bystander = Bystander::start_from(ip("127.0.0.2"), server.addr, "general").await;
    let local = ip("127.0.0.1");
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(connect_from(local, server.addr).await);
    }
    let mut over = connect_from(local, server.addr).await;
    let got = unprompted(&mut over, WAIT).await.unwrap_or_default();
    assert!(
        got.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{got}"
    );
    assert!(
        got.contains("Retry-After: 5\r\n") && got.contains("too many connections"),
        "{got}"
    );
    for (i, s) in held.iter_mut().enumerate() {
        assert_eq!(
            unprompted(s, Duration::from_millis(20)).await,
            None,
            "socket {i}"
        );
    }
    // Another address is not affected.
    let (_bob, welcome) = welcomed_on(
        connect_from(ip("127.0.0.2"), server.addr).await,
        server.addr,
        "bob",
    )
    .await;
    assert_eq!(welcome["user"], "bob");
    let m = metrics(server.addr).await;
    assert_eq!(metric(&m, "chat_refused_per_ip_total"), 1);
    assert_eq!(
        metric(&m, "chat_connections_refused_total"),
        0,
        "the server is not full"
    );
    // 64 idle, bob, the bystander and the metrics request itself.
    assert_eq!(metric(&m, "chat_sockets"), 67);
    tokio::time::sleep(HOLD).await;
    bystander
        .finish_and_reread("127.0.0.1 at max-per-ip, bystander on 127.0.0.2")
        .await;
    drop(held);
    eventually_welcomed(local, server.addr, "alice", WAIT).await;
    server.stop().await;
}

#[tokio::test]
async fn handshakes_in_flight_are_capped_and_websockets_no_longer_count() {
    let mut c = config("handshakes");
    assert_eq!(c.max_handshakes_per_ip, 16, "the default");
    c.max_per_ip = 64;
    let server = ChatServer::start(c).await;
    // Row 8 of issue 13: a user on another address posts throughout.
    let bystander = Bystander::start_from(ip("127.0.0.2"), server.addr, "general").await;
    let local = ip("127.0.0.1");
    // Five WebSockets, past their upgrade: they do not count as handshakes.
    let mut upgraded = Vec::new();
    for i in 0..5 {
        let mut s = connect_from(local, server.addr).await;
        s.write_all(upgrade(&server.host(), None).as_bytes())
            .await
            .unwrap();
        let head = tokio::time::timeout(WAIT, common::read_head(&mut s))
            .await
            .unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "websocket {i}: {head}");
        upgraded.push(s);
    }
    let mut pending = Vec::new();
    for _ in 0..16 {
        pending.push(connect_from(local, server.addr).await);
    }
    let mut over = connect_from(local, server.addr).await;
    let got = unprompted(&mut over, WAIT).await.unwrap_or_default();
    assert!(
        got.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{got}"
    );
    assert!(got.contains("still opening"), "{got}");
    for (i, s) in pending.iter_mut().enumerate() {
        assert_eq!(
            unprompted(s, Duration::from_millis(20)).await,
            None,
            "pending {i}"
        );
    }
    let m = metrics(server.addr).await;
    assert_eq!(metric(&m, "chat_refused_handshakes_per_ip_total"), 1);
    assert_eq!(metric(&m, "chat_refused_per_ip_total"), 0);
    // 16 pending from 127.0.0.1, and the metrics request itself.
    assert_eq!(metric(&m, "chat_handshakes"), 17);
    tokio::time::sleep(HOLD).await;
    bystander
        .finish_and_reread("127.0.0.1 at max-handshakes-per-ip, bystander on 127.0.0.2")
        .await;
    // One pending socket finishing its upgrade makes room for another.
    let mut first = pending.remove(0);
    first
        .write_all(upgrade(&server.host(), None).as_bytes())
        .await
        .unwrap();
    let head = tokio::time::timeout(WAIT, common::read_head(&mut first))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let mut next = connect_from(local, server.addr).await;
    assert_eq!(
        unprompted(&mut next, Duration::from_millis(200)).await,
        None,
        "admitted"
    );
    server.stop().await;
}

// The binary: file descriptors and the command line.

/// `rfc6455 chat` as a child process (killed by its PID on drop), its
/// stdout and stderr in files.
struct Binary {
    process: Spawned,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Binary {
    /// Starts `rfc6455 chat` with `args`, under `ulimit -n nofile` if
    /// given, with `env` set, and waits for it to listen.
    async fn start(name: &str, nofile: Option<u32>, args: &[&str], env: &[(&str, &str)]) -> Binary {
        let dir = temp_dir(name);
        let addr = free_addr();
        let bin = env!("CARGO_BIN_EXE_rfc6455");
        // `exec` keeps the PID: the child is the server itself.
        let limit = nofile.map_or(String::new(), |n| format!("ulimit -n {n} && "));
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(format!("{limit}exec \"$0\" \"$@\""))
            .arg(bin)
            .args(["chat", "--listen", &addr.to_string(), "--db"])
            .arg(dir.join("chat.db"))
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("RFC6455_REDIS")
            .env_remove("RFC6455_JWT_SECRET")
            .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let process = Spawned::listening(&mut cmd, addr, "rfc6455 chat").await;
        Binary { process, addr, dir }
    }

    /// Everything it printed so far, without the log's colours.
    fn output(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        strip_ansi(&(read("stdout") + &read("stderr")))
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// CPU time used so far (user + system), from /proc/PID/stat.
    fn cpu_time(&self) -> Duration {
        Duration::from_secs_f64(common::process::cpu_seconds(self.pid()))
    }

    fn open_fds(&self) -> usize {
        common::process::open_fds(self.pid())
    }
}

/// `text` without ANSI SGR sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Row 8 of issue 13, and item 4 of issue 15: more sockets than the
/// server has descriptors for. The server takes `max_connections` from its
/// descriptor limit (`chat::fdlimit`), so the ones beyond get 503 at the
/// door instead of `accept` failing with EMFILE and leaving them in the
/// backlog; it never spins, and a user connected before keeps posting.
/// (The accept loop's wait after a failed `accept`, for descriptors that
/// run out anyway, is `admission::AcceptBackoff`'s unit tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_sockets_than_descriptors_are_refused_at_the_door() {
    const NOFILE: u64 = 256;
    let server = Binary::start(
        "emfile",
        Some(NOFILE as u32),
        &["--max-per-ip", "0", "--max-handshakes-per-ip", "0"],
        &[("RUST_LOG", "warn")],
    )
    .await;
    let bystander = Bystander::start(server.addr).await;
    let base_fds = server.open_fds();
    let rss_before = rss_kib(server.pid());
    // More sockets than the server has descriptors: those within
    // `max_connections` hold their slots (they send nothing), the rest are
    // refused.
    let mut sockets = Vec::new();
    for _ in 0..(NOFILE as usize + 50) {
        sockets.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.cpu_time();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = server.cpu_time() - before;
    let window = t0.elapsed();
    let fds = server.open_fds();
    let log = server.output();
    eprintln!(
        "{} sockets ({base_fds} fds at start, {fds} now): {cpu:?} of CPU in {window:?}",
        sockets.len()
    );
    assert!((fds as u64) < NOFILE, "{fds} descriptors open of {NOFILE}");
    // A spinning accept loop burns a whole core (about 2 s here). 300 ms
    // leaves room for a busy machine.
    assert!(
        cpu < Duration::from_millis(300),
        "{cpu:?} of CPU in {window:?}"
    );
    assert!(!log.contains("accept failed"), "{log}");
    let rss_after = rss_kib(server.pid());
    let grown = rss_after.saturating_sub(rss_before) as f64 / 1024.0;
    println!(
        "more sockets than descriptors: server RSS {:.1} MiB, +{grown:.1} MiB",
        rss_after as f64 / 1024.0
    );
    assert!(grown < 16.0, "server RSS grew {grown:.1} MiB");
    bystander
        .finish_and_reread("more sockets than descriptors")
        .await;
    drop(sockets);
    eventually_welcomed(
        ip("127.0.0.1"),
        server.addr,
        "alice",
        Duration::from_secs(20),
    )
    .await;
    let m = http_get_from(ip("127.0.0.1"), server.addr, "/metrics").await;
    assert!(metric(&m, "chat_connections_refused_total") >= 1, "{m}");
    assert_eq!(metric(&m, "chat_accept_errors_total"), 0, "{m}");
}

const REDIS_SECRET: &str = "s3cret-redis-pw";
const JWT_SECRET: &str = "s3cret-jwt-key";

fn secret_env() -> [(&'static str, String); 2] {
    [
        (
            "RFC6455_REDIS",
            format!("redis://:{REDIS_SECRET}@127.0.0.1:1"),
        ),
        ("RFC6455_JWT_SECRET", JWT_SECRET.to_owned()),
    ]
}

#[test]
fn help_never_prints_the_secrets_in_the_environment() {
    for args in [
        &["chat", "--help"][..],
        &["chat", "-h"],
        &["--help"],
        &["chat", "--no-such-flag"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_rfc6455"))
            .args(args)
            .envs(secret_env())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let all = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(!all.is_empty(), "{args:?} printed nothing");
        for secret in [REDIS_SECRET, JWT_SECRET] {
            assert!(!all.contains(secret), "{args:?} shows {secret}:\n{all}");
        }
        if args == ["chat", "--help"] {
            assert!(all.contains("[env: RFC6455_REDIS]"), "{all}");
            assert!(all.contains("[env: RFC6455_JWT_SECRET]"), "{all}");
        }
    }
}

#[tokio::test]
async fn the_startup_output_masks_the_redis_password() {
    let env = secret_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Binary::start("redis-log", None, &[], &env).await;
    // The startup lines come before the port opens; give the log a moment.
    let deadline = Instant::now() + WAIT;
    let mut out = server.output();
    while !out.contains("scaled out through redis") {
        assert!(Instant::now() < deadline, "no startup log:\n{out}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        out = server.output();
    }
    // Redis (port 1) is unreachable: let the retries log something too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = server.output();
    assert!(
        !out.contains(REDIS_SECRET) && !out.contains(JWT_SECRET),
        "{out}"
    );
    assert!(
        out.contains("(scaled out through redis://:***@127.0.0.1:1)"),
        "{out}"
    );
    assert!(out.contains("redis=redis://:***@127.0.0.1:1"), "{out}");
}

#[tokio::test]
async fn origin_refusals_are_logged_at_info_once_a_minute_with_a_hint() {
    let server = Binary::start("origin-log", None, &[], &[]).await;
    let host = server.addr.to_string();
    for _ in 0..3 {
        let got = status(server.addr, &host, Some("http://evil.example")).await;
        assert_eq!(got, "HTTP/1.1 403 Forbidden");
    }
    let out = server.output();
    assert_eq!(
        out.matches("WebSocket refused for its Origin").count(),
        1,
        "{out}"
    );
    assert!(out.contains("set --public-url"), "{out}");
}

/// `--no-deflate` reaches the transport: the same offer of
/// permessage-deflate (RFC 7692 §5) is accepted by a server started
/// without it and declined (no `Sec-WebSocket-Extensions` in the 101)
/// by one started with it.
#[tokio::test]
async fn no_deflate_on_the_command_line_declines_permessage_deflate() {
    let offer = common::request_for("/ws").replacen(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        1,
    );
    for (name, args, accepted) in [
        ("deflate", &[][..], true),
        ("no-deflate", &["--no-deflate"][..], false),
    ] {
        let server = Binary::start(name, None, args, &[]).await;
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(offer.as_bytes()).await.unwrap();
        let head = tokio::time::timeout(WAIT, common::read_head(&mut s))
            .await
            .unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        let agreed = head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions: permessage-deflate");
        assert_eq!(agreed, accepted, "{name}: {head}");
    }
}
