//! `rfc6455 client`, the real binary, against servers the tests start on
//! free loopback ports: our echo server (`rfc6455 echo`), and small
//! servers of the tests' own (`accept_with_callback`) where a test needs
//! to see what the client sent: its opening request's headers, the
//! opcode of each message, the Close it sent (RFC 6455 §5.5.1, §7.4).

mod common;

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{Spawned, free_addr, rfc6455};
use common::socks::Socks5;
use rfc6455::proto::{CloseCode, CloseFrame, Message};
use rfc6455::transport::http::{self, HeaderValue};
use rfc6455::transport::tls::tokio_rustls::TlsAcceptor;
use rfc6455::transport::{
    self, Config, HandshakeDecision, ProxyEnv, WebSocket, accept_with_callback,
};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// How long one client run may take (a debug build on a busy machine).
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// How a client run ended.
struct Run {
    /// The exit status (`None`: killed by a signal).
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `rfc6455 client ARGS`, writes `input` to its stdin, then closes
/// stdin after `hold` (so a server can act first); waits for the exit.
async fn client_held(args: &[&str], input: &[u8], hold: Duration) -> Run {
    client_in_env(args, input, hold, &[]).await
}

/// As [`client_held`], with no proxy variable but those in `env`.
async fn client_in_env(args: &[&str], input: &[u8], hold: Duration, env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rfc6455"));
    // Every variable the client reads (ws_proxy and wss_proxy first), and
    // HTTP_PROXY, which it must not: none of the developer's own.
    for var in ProxyEnv::variable_names().chain(["HTTP_PROXY"]) {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let mut child = command
        .arg("client")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start rfc6455 client");
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    // Written from a task of its own: a large input fills the pipe while
    // the client's output waits to be read.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        tokio::time::sleep(hold).await;
        drop(stdin);
    });
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("rfc6455 client did not finish in {RUN_TIMEOUT:?}"))
        .expect("ran");
    writer.abort();
    Run {
        code: output.status.code(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// As [`client_held`], stdin closed as soon as `input` is written.
async fn client(args: &[&str], input: &[u8]) -> Run {
    client_held(args, input, Duration::ZERO).await
}

/// Our echo server, killed (by its PID) when dropped; its `ws://` URL.
async fn echo_server() -> (Spawned, String) {
    let addr = free_addr();
    let mut command = rfc6455("warn");
    command.args(["echo", "--listen", &addr.to_string(), "--threads", "1"]);
    let server = Spawned::listening(&mut command, addr, "the echo server").await;
    (server, format!("ws://{addr}/"))
}

/// What a test server saw of its one connection.
#[derive(Debug, Default)]
struct Seen {
    /// The opening request's headers.
    headers: http::HeaderMap,
    /// Every data message, in order.
    messages: Vec<Message>,
    /// The client's Close, once it came (`Some(None)`: one without a code).
    close: Option<Option<CloseFrame>>,
}

/// What a test server does once the handshake is done.
#[derive(Clone, Copy)]
enum Script {
    /// Echo each data message.
    Echo,
    /// Answer the first message this much later with "late reply",
    /// reading (and answering a Close) meanwhile.
    LateReply(Duration),
    /// Close with 4003 "go away" on the first message.
    CloseWith4003,
    /// Drop the TCP connection, without a Close, on the first message.
    Vanish,
}

/// A server of the test's own for one connection: it accepts choosing
/// `protocol` if offered, runs `script`, and notes what it saw.
async fn test_server(script: Script, protocol: Option<&'static str>) -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let noted = seen.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let headers_seen = noted.clone();
        let ws = accept_with_callback(stream, Config::default(), move |request, mut response| {
            headers_seen.lock().unwrap().headers = request.headers().clone();
            if let Some(p) = protocol {
                response.headers_mut().insert(
                    http::header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(p),
                );
            }
            HandshakeDecision::Accept(response)
        })
        .await
        .unwrap();
        serve(ws, script, &noted).await;
    });
    (url, seen)
}

async fn serve(mut ws: WebSocket<TcpStream>, script: Script, seen: &Mutex<Seen>) {
    let mut reply_at: Option<tokio::time::Instant> = None;
    loop {
        let late = async {
            match reply_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = ws.recv() => match event {
                Some(Ok(Message::Close(frame))) => seen.lock().unwrap().close = Some(frame),
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    seen.lock().unwrap().messages.push(m.clone());
                    match script {
                        Script::Echo => ws.queue(m).unwrap(),
                        Script::LateReply(delay) => {
                            reply_at.get_or_insert(tokio::time::Instant::now() + delay);
                        }
                        Script::CloseWith4003 => ws
                            .queue(Message::Close(Some(CloseFrame::new(CloseCode::try_from(4003).unwrap(), "go away"))))
                            .unwrap(),
                        Script::Vanish => return,
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
            _ = late => {
                reply_at = None;
                let _ = ws.send(Message::text("late reply")).await;
            }
        }
    }
}

/// The Close with a code that the test server received.
fn close_seen(seen: &Mutex<Seen>) -> CloseFrame {
    close_of(&seen.lock().unwrap())
}

fn close_of(seen: &Seen) -> CloseFrame {
    seen.close.clone().expect("a Close").expect("with a code")
}

// -H, --protocol, --origin (RFC 6455 §4.1, §1.9, §10.2).

#[tokio::test]
async fn headers_origin_and_subprotocols_reach_the_server_and_its_choice_is_printed() {
    let (url, seen) = test_server(Script::Echo, Some("chat.v1")).await;
    let run = client(
        &[
            &url,
            "-H",
            "Authorization: Bearer abc",
            "--header",
            "X-Trace-Id:  42 ",
            "--origin",
            "http://example.test",
            "--protocol",
            "chat.v2,chat.v1",
            "--protocol",
            "echo",
        ],
        b"hi\n",
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout(), "hi\n");
    assert!(
        run.stderr.contains("connected; subprotocol: chat.v1"),
        "{}",
        run.stderr
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.headers["authorization"], "Bearer abc");
    assert_eq!(seen.headers["x-trace-id"], "42");
    assert_eq!(seen.headers["origin"], "http://example.test");
    assert_eq!(
        seen.headers["sec-websocket-protocol"],
        "chat.v2, chat.v1, echo"
    );
}

#[tokio::test]
async fn a_server_choosing_no_subprotocol_is_said_so() {
    let (url, _seen) = test_server(Script::Echo, None).await;
    let run = client(&[&url, "--protocol", "chat"], b"").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the server chose none of the subprotocols offered"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn invalid_headers_and_subprotocols_are_refused_before_connecting() {
    // Nothing listens there: a refusal must come before any connection.
    let url = format!("ws://{}/", free_addr());
    for (args, says) in [
        (vec!["-H", "NoColon"], "is not 'Name: value' (no colon)"),
        (
            vec!["-H", "Bad Name: x"],
            "\"Bad Name\" is not a valid header name",
        ),
        (
            vec!["-H", "X-A: line\u{7f}"],
            "holds a character a header may not",
        ),
        (
            vec!["-H", "Sec-WebSocket-Key: abc"],
            "written by the opening handshake itself",
        ),
        (vec!["-H", "Sec-WebSocket-Protocol: chat"], "use --protocol"),
        // Every Sec-WebSocket-* name, as --help says, not only those the
        // handshake writes.
        (
            vec!["-H", "Sec-WebSocket-Accept: x"],
            "by the opening handshake",
        ),
        // http accepts bytes from 0x80 up; the handshake cannot write
        // them: refused here, not after connecting as "malformed HTTP".
        (vec!["-H", "X-User: café"], "x-user is not ASCII"),
        (
            vec!["--origin", "http://bücher.example"],
            "origin is not ASCII",
        ),
        (vec!["--protocol", "a b"], "is not a subprotocol name"),
        (
            vec!["--ping-interval", "0"],
            "is not a number of seconds above 0",
        ),
        // 1e-10 s rounds to a zero Duration, which tokio's interval
        // refuses with a panic; 1 ms would be a ping flood.
        (vec!["--ping-interval", "1e-10"], "at least 0.01 s"),
        (vec!["--ping-interval", "0.001"], "at least 0.01 s"),
        (vec!["--wait", "soon"], "is not a number of seconds above 0"),
    ] {
        let mut all = vec![url.as_str()];
        all.extend(args.iter().copied());
        let run = client(&all, b"").await;
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("connected"), "{}", run.stderr);
    }
}

// --binary.

#[tokio::test]
async fn binary_mode_round_trips_bytes_that_are_not_utf8_exactly() {
    // 200 KiB of every byte value in a scrambled order: invalid UTF-8
    // from the first bytes on, and more than one 64 KiB chunk.
    let input: Vec<u8> = (0..200 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(std::str::from_utf8(&input).is_err());
    let (url, seen) = test_server(Script::Echo, None).await;
    let run = client(&[&url, "--binary"], &input).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout == input,
        "stdout differs from stdin ({} bytes)",
        run.stdout.len()
    );
    // Sent as binary messages, none over the chunk bound, in order.
    let seen = seen.lock().unwrap();
    let mut joined = Vec::new();
    for m in &seen.messages {
        let Message::Binary(b) = m else {
            panic!("not binary: {m:?}")
        };
        assert!(!b.is_empty() && b.len() <= 64 * 1024, "{} bytes", b.len());
        joined.extend_from_slice(b);
    }
    assert!(joined == input, "the server got other bytes");
    assert!(seen.messages.len() >= 4, "{} messages", seen.messages.len());
}

#[tokio::test]
async fn binary_mode_writes_text_payloads_without_a_newline() {
    let (_server, url) = echo_server().await;
    let run = client(&[&url, "--binary"], b"no newline here").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, b"no newline here");
}

#[tokio::test]
async fn text_mode_refuses_a_line_that_is_not_utf8_and_goes_on() {
    let (_server, url) = echo_server().await;
    let run = client(&[&url], b"fine\n\xff\xfe\nafter\n").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout(), "fine\nafter\n");
    assert!(
        run.stderr.contains("not sent: a line that is not UTF-8"),
        "{}",
        run.stderr
    );
}

// /close, /ping, // and the Close the peer sends.

#[tokio::test]
async fn close_with_a_code_and_reason_is_what_the_server_receives() {
    let (url, seen) = test_server(Script::Echo, None).await;
    // Nothing typed after /close is sent: the client is closing.
    let run = client(&[&url], b"/close 4001 done for today\nafter\n").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let seen = seen.lock().unwrap();
    let frame = close_of(&seen);
    assert_eq!(
        (frame.code.as_u16(), frame.reason.as_str()),
        (4001, "done for today")
    );
    assert!(seen.messages.is_empty(), "{:?}", seen.messages);
    assert!(
        run.stderr
            .contains("the server answered our Close: 4001 (private, for applications)"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_close_code_that_may_not_be_sent_is_refused_and_a_doubled_slash_escapes() {
    let (url, seen) = test_server(Script::Echo, None).await;
    let run = client(
        &[&url],
        b"/close 1006\n/nope\n//ping is text\n/close 1000 \xce\xb1\n",
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "not sent: close code 1006 may not be sent (RFC 6455 §7.4): abnormal closure"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("unknown command /nope"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout(), "/ping is text\n");
    let seen = seen.lock().unwrap();
    // The valid /close (a 2-byte reason) is the one that went out.
    let frame = close_of(&seen);
    assert_eq!((frame.code.as_u16(), frame.reason.as_str()), (1000, "α"));
    assert_eq!(seen.messages, [Message::text("/ping is text")]);
}

#[tokio::test]
async fn how_the_server_ends_the_connection_is_printed_and_sets_the_exit_status() {
    for (script, status, says) in [
        // §7.4.1: the code, its meaning and the reason.
        (
            Script::CloseWith4003,
            3,
            "the server closed: 4003 (private, for applications), reason \"go away\"",
        ),
        // §7.1.5: no Close at all is 1006, reported, never sent.
        (Script::Vanish, 4, "without a Close frame (1006"),
    ] {
        let (url, _seen) = test_server(script, None).await;
        // Stdin stays open for 20 s: the server ends it first, and the
        // client must not wait for stdin's end to notice.
        let started = Instant::now();
        let run = client_held(&[&url], b"hi\n", Duration::from_secs(20)).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}: the client waited for stdin",
            started.elapsed()
        );
        assert_eq!(run.code, Some(status), "{}", run.stderr);
        assert!(run.stderr.contains(says), "{}", run.stderr);
    }
}

#[tokio::test]
async fn ping_command_and_ping_interval_print_round_trips() {
    let (_server, url) = echo_server().await;
    let run = client(
        &[&url, "--ping-interval", "0.2", "--wait", "1"],
        b"/ping are you there\n",
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("pong \"are you there\": round trip "),
        "{}",
        run.stderr
    );
    // About five interval Pings in the second of --wait; at least two.
    let timed = run
        .stderr
        .lines()
        .filter(|l| {
            l.starts_with("pong \"ping ") && l.contains("\": round trip ") && l.ends_with(" ms")
        })
        .count();
    assert!(timed >= 2, "{}", run.stderr);
}

// --wait.

#[tokio::test]
async fn wait_prints_replies_that_arrive_after_stdin_closes_then_closes_with_1000() {
    // The reply is due 700 ms in, well inside the 3 s of --wait.
    let (url, seen) = test_server(Script::LateReply(Duration::from_millis(700)), None).await;
    let started = Instant::now();
    let run = client(&[&url, "--wait", "3"], b"hello\n").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout(), "late reply\n");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "closed before --wait ended"
    );
    let frame = close_seen(&seen);
    assert_eq!(frame.code, CloseCode::NORMAL);
}

#[tokio::test]
async fn without_wait_the_close_goes_at_once_and_a_late_reply_is_not_awaited() {
    // The reply is due long after the Close should have gone (5 s): a
    // client and server stalled on a busy machine still close first.
    let (url, seen) = test_server(Script::LateReply(Duration::from_secs(5)), None).await;
    let run = client(&[&url], b"hello\n").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // The server answered our Close before its reply was due.
    assert_eq!(run.stdout(), "");
    let frame = close_seen(&seen);
    assert_eq!(
        (frame.code, frame.reason.as_str()),
        (CloseCode::NORMAL, "bye")
    );
}

// The scheme and the port disagree.

#[tokio::test]
async fn wss_to_a_plain_port_fails_saying_so() {
    // Our echo server waits for the end of a request head that a
    // ClientHello never sends; this one answers any bytes with a 400 at
    // once, as nginx does.
    let answering = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let answering_addr = answering.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = answering.accept().await.unwrap();
        let mut hello = [0u8; 1];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut hello).await;
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
    });
    let (_server, url) = echo_server().await;
    let silent_addr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    for (addr, silent) in [(silent_addr, true), (answering_addr.to_string(), false)] {
        let started = Instant::now();
        let run = client(&[&format!("wss://{addr}/")], b"").await;
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "the server at {addr} did not answer TLS; is it a plain ws:// port?"
            )),
            "{}",
            run.stderr
        );
        if silent {
            // The probe found plain HTTP on the port but did not end the
            // attempt: the handshake timeout (10 s) or the server did.
            assert!(
                started.elapsed() >= Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
        } else {
            // An HTTP answer to the ClientHello fails TLS at once.
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "{:?}",
                started.elapsed()
            );
        }
    }
}

#[tokio::test]
async fn a_slow_but_progressing_tls_handshake_is_not_taken_for_a_plain_port() {
    // A TLS port that answers a plain GET in plain HTTP, as nginx and
    // Go's net/http do, and whose TLS answer comes slowly (a lost
    // segment, a loaded server): the first byte of its ServerHello at
    // once and the rest 1.5 s later, or all of it 2.5 s later. The
    // client's one-second probe fires meanwhile and gets `HTTP/`; the
    // handshake is still under way, so the client must go on and connect.
    let pki = common::tls::Pki::new("cli-slow-tls");
    let ca = pki.ca.to_string_lossy().into_owned();
    for (first, rest) in [(Duration::ZERO, 1500), (Duration::from_millis(2500), 0)] {
        let acceptor = TlsAcceptor::from(pki.server_config());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let delays = (first, Duration::from_millis(rest));
                tokio::spawn(slow_tls_or_plain_400(stream, acceptor.clone(), delays));
            }
        });
        let url = format!("wss://localhost:{port}/");
        let run = client(&[&url, "--ca", &ca], b"slow\n").await;
        assert_eq!(run.code, Some(0), "{first:?}: {}", run.stderr);
        assert_eq!(run.stdout(), "slow\n");
        assert!(!run.stderr.contains("did not answer TLS"), "{}", run.stderr);
    }
}

/// One connection of the slow TLS server above: a plain request gets
/// nginx's 400; a ClientHello (0x16, RFC 8446 §5.1) gets a TLS echo
/// server whose first reply byte goes after `delays.0` and the rest of
/// its first flight `delays.1` after that.
async fn slow_tls_or_plain_400(
    mut stream: TcpStream,
    acceptor: TlsAcceptor,
    delays: (Duration, Duration),
) {
    use tokio::io::AsyncReadExt;
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await.unwrap_or(0) == 0 {
        return;
    }
    if first[0] != 0x16 {
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    }
    let (near, far) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Ok(mut ws) = transport::tls::accept(far, &acceptor, Config::default()).await {
            common::tls::echo(&mut ws).await;
        }
    });
    let (mut from_client, mut to_client) = stream.into_split();
    let (mut from_server, mut to_server) = tokio::io::split(near);
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
    });
    let mut reply = vec![0u8; 64 * 1024];
    let Ok(n @ 1..) = from_server.read(&mut reply).await else {
        return;
    };
    tokio::time::sleep(delays.0).await;
    let _ = to_client.write_all(&reply[..1]).await;
    tokio::time::sleep(delays.1).await;
    let _ = to_client.write_all(&reply[1..n]).await;
    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
}

#[tokio::test]
async fn ws_to_a_tls_port_fails_saying_so() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = common::temp_dir("cli_client", "ws-to-tls");
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let config =
        transport::tls::server_config_from_pem(dir.join("cert.pem"), dir.join("key.pem")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        // Our GET is no ClientHello: rustls answers with an alert.
        let _ = TlsAcceptor::from(config).accept(stream).await;
    });
    let run = client(&[&format!("ws://{addr}/")], b"").await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "the server at {addr} answered in TLS; is it a wss:// port?"
        )),
        "{}",
        run.stderr
    );
    let _ = std::fs::remove_dir_all(dir);
}

// --proxy, --no-proxy, and the environment's proxies (curl's variables).

#[tokio::test]
async fn proxy_sends_the_connection_through_a_socks5_proxy() {
    let socks = Socks5::start(None).await;
    let (_server, url) = echo_server().await;
    let proxy = format!("socks5h://{}", socks.addr);
    let run = client(&[&url, "--proxy", &proxy], b"through\n").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout(), "through\n");
    assert!(
        run.stderr.contains(&format!("through the proxy {proxy}")),
        "{}",
        run.stderr
    );
    assert_eq!(socks.seen.tunnels.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_environments_proxy_is_used_unless_no_proxy_is_given() {
    let socks = Socks5::start(None).await;
    let (_server, url) = echo_server().await;
    let proxy = format!("socks5h://{}", socks.addr);
    let env = [("ALL_PROXY", proxy.as_str())];
    let run = client_in_env(&[&url], b"via env\n", Duration::ZERO, &env).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout(), "via env\n");
    assert_eq!(socks.seen.tunnels.load(Ordering::SeqCst), 1);

    let run = client_in_env(&[&url, "--no-proxy"], b"direct\n", Duration::ZERO, &env).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout(), "direct\n");
    assert!(!run.stderr.contains("through the proxy"), "{}", run.stderr);
    assert_eq!(
        socks.seen.tunnels.load(Ordering::SeqCst),
        1,
        "no second tunnel"
    );
}

#[tokio::test]
async fn a_bad_proxy_url_or_both_flags_are_refused() {
    let url = format!("ws://{}/", free_addr());
    let run = client(&[&url, "--proxy", "ftp://proxy.example"], b"").await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("ftp://proxy.example"), "{}", run.stderr);
    // clap quotes a value its parser refuses; the password must not
    // reach stderr (and CI logs) that way.
    let run = client(
        &[&url, "--proxy", "http://alice:s3cret@proxy.example:99999"],
        b"",
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("invalid port"), "{}", run.stderr);
    assert!(
        run.stderr.contains("http://proxy.example:99999"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("s3cret"), "{}", run.stderr);
    let run = client(&[&url, "--proxy", "http://p:1", "--no-proxy"], b"").await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
}

// --trace=json.

#[tokio::test]
async fn trace_json_prints_one_object_per_head_and_frame_with_the_header_fields() {
    let (_server, url) = echo_server().await;
    let long = "x".repeat(300);
    let run = client(
        &[&url, "--trace=json"],
        format!("Hello\n{long}\n").as_bytes(),
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let objects: Vec<Value> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let find = |kind: &str, direction: &str, what: &dyn Fn(&Value) -> bool| -> Value {
        let found: Vec<&Value> = objects
            .iter()
            .filter(|o| o["type"] == kind && o["direction"] == direction && what(o))
            .collect();
        assert_eq!(found.len(), 1, "{kind} {direction} in {objects:#?}");
        found[0].clone()
    };
    let head = find("head", "sent", &|_| true);
    assert_eq!(head["lines"][0], "GET / HTTP/1.1");
    let head = find("head", "received", &|_| true);
    assert_eq!(head["lines"][0], "HTTP/1.1 101 Switching Protocols");

    // §5.2, §5.3: ours masked, with its key; the echo not.
    let hello = find("frame", "sent", &|o| o["payload_text"] == "Hello");
    for (field, value) in [
        ("fin", Value::from(true)),
        ("rsv1", false.into()),
        ("rsv2", false.into()),
        ("rsv3", false.into()),
        ("opcode", "text".into()),
        ("opcode_value", 1.into()),
        ("masked", true.into()),
        ("payload_len", 5.into()),
        ("length_encoding", "7-bit".into()),
        ("payload_truncated", false.into()),
        ("compressed", false.into()),
    ] {
        assert_eq!(hello[field], value, "{field} in {hello}");
    }
    let key = hello["mask_key"].as_str().expect("a key");
    assert!(
        key.len() == 8 && key.chars().all(|c| c.is_ascii_hexdigit()),
        "{key}"
    );
    assert!(hello["t_ms"].as_f64().is_some(), "{hello}");
    let echo = find("frame", "received", &|o| o["payload_text"] == "Hello");
    assert_eq!(
        (&echo["masked"], &echo["mask_key"]),
        (&Value::from(false), &Value::Null)
    );
    let long_frame = find("frame", "sent", &|o| o["payload_len"] == 300);
    assert_eq!(long_frame["length_encoding"], "16-bit");
    assert_eq!(long_frame["payload_text"], long.as_str());

    // §5.5.1, §7.4.1: the Closes, decoded.
    let close = find("frame", "sent", &|o| o["opcode"] == "close");
    assert_eq!(close["close_code"], 1000);
    assert_eq!(close["close_meaning"], "normal closure");
    assert_eq!(close["close_reason"], "bye");
    assert_eq!(close["opcode_value"], 8);
    let close = find("frame", "received", &|o| o["opcode"] == "close");
    assert_eq!(close["close_code"], 1000);
    assert_eq!(objects.len(), 2 + 6, "{objects:#?}");
}

// Completions.

#[tokio::test]
async fn completions_print_a_script_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_rfc6455()"),
        ("zsh", "#compdef rfc6455"),
        ("fish", "complete -c rfc6455"),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_rfc6455"))
            .args(["completions", shell])
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{shell}: {output:?}");
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        // The client's options are in it.
        assert!(script.contains("ping-interval"), "{shell}");
    }
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_rfc6455"))
        .args(["completions", "tcsh"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
