//! `rfc6455 client --trace` against our own echo server (`rfc6455 echo`),
//! both real processes on a free loopback port: the lines a learner sees
//! for the opening handshake (RFC 6455 §4), text frames (§5.2, masked
//! one way, §5.3), a permessage-deflate message (RFC 7692 §7.2) and the
//! close handshake (§5.5.1, §7.4.1).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::{Spawned, free_addr, rfc6455};

/// How long a client run may take (a debug build on a busy machine).
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// An echo server, killed (by its PID) when dropped.
async fn echo_server(deflate: bool) -> (Spawned, String) {
    let addr = free_addr();
    let mut command = rfc6455("warn");
    command.args(["echo", "--listen", &addr.to_string(), "--threads", "1"]);
    if deflate {
        command.arg("--deflate");
    }
    let server = Spawned::listening(&mut command, addr, "the echo server").await;
    (server, format!("ws://{addr}/"))
}

/// Runs `rfc6455 client URL ARGS`, typing `lines` then end-of-input (the
/// client closes with 1000 "bye"); returns (stdout, stderr).
async fn client(url: &str, args: &[&str], lines: &[&str]) -> (String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rfc6455"));
    command
        .arg("client")
        .arg(url)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start rfc6455 client");
    let mut stdin = child.stdin.take().expect("piped");
    for line in lines {
        writeln!(stdin, "{line}").expect("type a line");
    }
    drop(stdin);
    let pid = child.id();
    let run = tokio::task::spawn_blocking(move || child.wait_with_output());
    let output = match tokio::time::timeout(RUN_TIMEOUT, run).await {
        Ok(done) => done.expect("joined").expect("ran"),
        Err(_) => {
            // Ours, by its PID.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("rfc6455 client did not finish in {RUN_TIMEOUT:?}");
        }
    };
    assert!(output.status.success(), "client failed: {output:?}");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The one line of `trace` that starts with `start` and ends with `end`.
fn line<'a>(trace: &'a str, start: &str, end: &str) -> &'a str {
    let found: Vec<&str> = trace
        .lines()
        .filter(|l| l.starts_with(start) && l.ends_with(end))
        .collect();
    assert_eq!(found.len(), 1, "lines {start:?}…{end:?} in:\n{trace}");
    found[0]
}

#[tokio::test]
async fn trace_hex_shows_the_heads_frames_compression_and_close() {
    let (_server, url) = echo_server(true).await;
    let long = "hello ".repeat(20);
    let (stdout, trace) = client(&url, &["--trace=hex", "--deflate"], &["Hello", &long]).await;
    assert_eq!(stdout, format!("Hello\n{long}\n"));

    // §4.1 and §4.2.2: both heads, line by line; the accept is the one
    // for the key shown.
    line(&trace, ">> GET / HTTP/1.1", "");
    line(&trace, ">> Sec-WebSocket-Version: 13", "");
    line(
        &trace,
        ">> Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        "",
    );
    line(&trace, "<< HTTP/1.1 101 Switching Protocols", "");
    line(
        &trace,
        "<< Sec-WebSocket-Extensions: permessage-deflate",
        "",
    );
    let key =
        line(&trace, ">> Sec-WebSocket-Key: ", "").trim_start_matches(">> Sec-WebSocket-Key: ");
    line(
        &trace,
        &format!(
            "<< Sec-WebSocket-Accept: {}",
            rfc6455::proto::accept_key(key.as_bytes())
        ),
        "",
    );

    // §5.2, §5.3: our "Hello" masked, the echo not; under the 64-byte
    // threshold, so not compressed.
    line(&trace, ">> FIN=1 RSV=000 Text mask=", " len=5 \"Hello\"");
    line(&trace, "<< FIN=1 RSV=000 Text mask=- len=5 \"Hello\"", "");
    // (Two such headers: "Hello", and the Close's code and "bye".)
    let masked_5 = ">>    85                        # MASK=1 payload length=5 (7-bit)";
    assert_eq!(
        trace.lines().filter(|l| *l == masked_5).count(),
        2,
        "{trace}"
    );
    line(&trace, ">>    ", "# unmasked: 48 65 6c 6c 6f = \"Hello\"");
    line(&trace, "<<    05 ", "# MASK=0 payload length=5 (7-bit)");

    // RFC 7692 §6, §7.2: 120 bytes go out compressed (RSV1) both ways,
    // shown with what they inflate to.
    let sent = line(&trace, ">> FIN=1 RSV=100 Text mask=", "…");
    assert!(
        sent.contains(" compressed, inflates to 120 bytes \"hello hello "),
        "{sent}"
    );
    let echoed = line(&trace, "<< FIN=1 RSV=100 Text mask=- ", "…");
    assert!(
        echoed.contains(" compressed, inflates to 120 bytes "),
        "{echoed}"
    );
    line(
        &trace,
        "<<    c1 ",
        "# FIN=1 RSV1=1 RSV2=0 RSV3=0 opcode=0x1 (text)",
    );

    // §5.5.1, §7.4.1: our Close and its echo, decoded.
    line(
        &trace,
        ">> FIN=1 RSV=000 Close mask=",
        " len=5 code=1000 (normal closure) reason=\"bye\"",
    );
    line(
        &trace,
        "<< FIN=1 RSV=000 Close mask=- len=2 code=1000 (normal closure) reason=\"\"",
        "",
    );
    line(
        &trace,
        ">>    ",
        "# unmasked: 03 e8 62 79 65 = code=1000 (normal closure) reason=\"bye\"",
    );
}

#[tokio::test]
async fn plain_trace_is_one_line_per_frame_without_hex() {
    let (_server, url) = echo_server(false).await;
    let long = "x".repeat(300);
    let (_, trace) = client(&url, &["--trace"], &[&long]).await;
    line(&trace, "<< HTTP/1.1 101 Switching Protocols", "");
    // No extension offered, none agreed.
    assert!(!trace.contains("Sec-WebSocket-Extensions"), "{trace}");
    // 300 bytes: the 16-bit length form (§5.2), the text cut in the line.
    let sent = line(&trace, ">> FIN=1 RSV=000 Text mask=", "…");
    assert!(sent.contains(" len=300 \"xxxxxxxx"), "{sent}");
    line(&trace, "<< FIN=1 RSV=000 Text mask=- len=300 ", "…");
    assert!(
        !trace.contains("# FIN="),
        "hex lines without --trace=hex:\n{trace}"
    );
    line(
        &trace,
        "<< FIN=1 RSV=000 Close mask=- len=2 code=1000",
        "reason=\"\"",
    );
}

#[tokio::test]
async fn trace_takes_no_separate_value() {
    // `--trace` must not swallow the URL after it: its value needs `=`.
    let (_server, url) = echo_server(false).await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_rfc6455"));
    let output = command
        .args(["client", "--trace", &url])
        .stdin(Stdio::null())
        .output()
        .expect("ran");
    assert!(output.status.success(), "{output:?}");
    let trace = String::from_utf8_lossy(&output.stderr);
    assert!(trace.contains(">> GET / HTTP/1.1"), "{trace}");
}
