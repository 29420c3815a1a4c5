//! The session `docs/WALKTHROUGH.md` explains, produced by our own code.
//!
//! A client and a server `proto::Connection` (and their handshakes) talk to
//! each other in memory, sans-I/O, with a fixed `Sec-WebSocket-Key` and a
//! seeded mask generator, so every byte is the same on every run. Each step
//! is rendered as the text of one fenced block of the document: a head as
//! text; frames as our tracer prints them for the client
//! (`transport::trace`, what `rfc6455 client --trace=hex` shows: `>>`
//! sent, `<<` received). The same rendering is what `tests/walkthrough.rs`
//! compares and `examples/walkthrough.rs` writes.
//!
//! Shared by both through `#[path]`; it is not a test target of its own.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rfc6455::proto::deflate::codec::Compressor;
use rfc6455::proto::{
    ClientHandshake, CloseCode, CloseFrame, Config, Connection, DeflateConfig, GUID, MaskRng,
    Message, Role, ServerHandshake, State, WsUrl,
};
use rfc6455::transport::trace::{Trace, TraceMode};
use sha1::{Digest, Sha1};

/// §4.1 item 7: the key is 16 bytes, base64-encoded. These 16 are the
/// ones whose encoding is the RFC's own example key (§1.3, §4.2.2),
/// `dGhlIHNhbXBsZSBub25jZQ==`, so the accept can be checked against the RFC.
pub const NONCE: [u8; 16] = *b"the sample nonce";

/// The seed of the client's mask generator: a real client seeds it from the
/// OS (§5.3); a fixed seed makes the masking keys reproducible.
pub const MASK_SEED: [u8; 32] = [7; 32];

/// One fenced block of the walkthrough: its name (the block's info string
/// is `text step:NAME` or `hex step:NAME`) and its rendered text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub text: String,
}

/// Every step of both connections, in the order of the document. Panics
/// if the code stops behaving as the document says (a message not
/// delivered, a close not echoed), so a drift in behaviour shows too.
pub fn session() -> Vec<Step> {
    let mut steps = Vec::new();
    plain(&mut steps);
    compressed(&mut steps);
    steps
}

fn step(steps: &mut Vec<Step>, name: &'static str, text: String) {
    steps.push(Step { name, text });
}

/// Part 1: RFC 6455 alone, no extension.
fn plain(steps: &mut Vec<Step>) {
    let url = WsUrl::parse("ws://example.com/chat").expect("a valid URL");
    let config = Config::default();
    let (mut client_hs, request) = ClientHandshake::with_key(
        &url,
        &[],
        &[("Origin", "http://example.com")],
        &config,
        NONCE,
    )
    .expect("a request");
    // What `rfc6455 client --trace=hex` would print for this client.
    let mut trace = Trace::new(TraceMode::Hex);
    trace.sent(&request);
    step(steps, "request", head(&request));

    // §4.2.2 item 5.4, worked by hand.
    let key = BASE64.encode(NONCE);
    step(steps, "key", format!("{key}\n"));
    let concatenated = format!("{key}{GUID}");
    step(steps, "concatenated", format!("{concatenated}\n"));
    let digest = Sha1::digest(concatenated.as_bytes());
    step(
        steps,
        "sha1",
        hex_rows(&digest, "SHA-1 of the line above (20 bytes)"),
    );
    step(steps, "accept", format!("{}\n", BASE64.encode(digest)));

    let mut server_hs = ServerHandshake::new(&config);
    let (req, used) = server_hs
        .receive(&request)
        .expect("a valid request")
        .expect("a whole head");
    assert_eq!(used, request.len());
    let response = req
        .upgrade()
        .expect("an upgrade")
        .accept(None)
        .expect("a response");
    trace.received(&response);
    step(steps, "response", head(&response));
    let (resp, _) = client_hs
        .receive(&response)
        .expect("a valid response")
        .expect("a whole head");
    assert_eq!(resp.deflate, None);

    let mut client =
        Connection::new(Role::Client, config.clone()).with_rng(MaskRng::from_seed(MASK_SEED));
    let mut server = Connection::new(Role::Server, config);

    // §5.2, §5.3: the first text frame, masked, and the server's, not.
    client.send_text("Hello").expect("open");
    let wire = transmit(&mut client);
    step(steps, "client-text", lines(trace.sent(&wire)));
    assert_eq!(deliver(&mut server, &wire), [Message::text("Hello")]);
    server.send_text("Hello").expect("open");
    let wire = transmit(&mut server);
    step(steps, "server-text", lines(trace.received(&wire)));
    assert_eq!(deliver(&mut client, &wire), [Message::text("Hello")]);

    // §5.4: one message in two frames, the RFC's "Hel" + "lo".
    client.send_text_fragment("Hel", false).expect("open");
    client.send_text_fragment("lo", true).expect("open");
    let wire = transmit(&mut client);
    step(steps, "fragments", lines(trace.sent(&wire)));
    assert_eq!(deliver(&mut server, &wire), [Message::text("Hello")]);

    // §5.5.2–3: the server pings, the client's Pong echoes the payload.
    server.send_ping("Hello").expect("open");
    let wire = transmit(&mut server);
    step(steps, "ping", lines(trace.received(&wire)));
    assert_eq!(deliver(&mut client, &wire), [Message::Ping("Hello".into())]);
    let wire = transmit(&mut client);
    step(steps, "pong", lines(trace.sent(&wire)));
    assert_eq!(deliver(&mut server, &wire), [Message::Pong("Hello".into())]);

    // §5.5.1, §7.1.2: the client closes, the server echoes the code.
    let bye = CloseFrame::new(CloseCode::NORMAL, "bye");
    client.close(Some(bye.clone())).expect("open");
    assert_eq!(client.state(), State::Closing);
    let wire = transmit(&mut client);
    step(steps, "client-close", lines(trace.sent(&wire)));
    assert_eq!(deliver(&mut server, &wire), [Message::Close(Some(bye))]);
    assert_eq!(server.state(), State::Closed);
    let wire = transmit(&mut server);
    step(steps, "server-close", lines(trace.received(&wire)));
    let echoed = CloseFrame::new(CloseCode::NORMAL, "");
    assert_eq!(deliver(&mut client, &wire), [Message::Close(Some(echoed))]);
    assert_eq!(client.state(), State::Closed);
    // §7.1.1: the server closes TCP first; the client waits for it.
    assert!(server.should_close_tcp());
    assert!(!client.should_close_tcp());
}

/// Part 2: the same handshake offering permessage-deflate (RFC 7692).
fn compressed(steps: &mut Vec<Step>) {
    let url = WsUrl::parse("ws://example.com/chat").expect("a valid URL");
    let client_config = Config {
        deflate: Some(DeflateConfig::default()),
        ..Config::default()
    };
    // The server compresses every message, however short, so that "Hello"
    // is compressed as in RFC 7692 §7.2.3.1 (the default threshold, 64
    // bytes, would send it as it is).
    let server_config = Config {
        deflate: Some(DeflateConfig {
            threshold: 0,
            ..DeflateConfig::default()
        }),
        ..Config::default()
    };
    let (mut client_hs, request) =
        ClientHandshake::with_key(&url, &[], &[], &client_config, NONCE).expect("a request");
    let mut trace = Trace::new(TraceMode::Hex);
    trace.sent(&request);
    step(steps, "deflate-request", head(&request));
    let mut server_hs = ServerHandshake::new(&server_config);
    let (req, _) = server_hs
        .receive(&request)
        .expect("a valid request")
        .expect("a whole head");
    let upgrade = req.upgrade().expect("an upgrade");
    let params = upgrade.negotiate_deflate(
        server_config
            .deflate
            .as_ref()
            .expect("configured just above"),
    );
    assert!(params.is_some(), "the server accepts the offer");
    let response = upgrade
        .accept_with(None, params.as_ref())
        .expect("a response");
    trace.received(&response);
    step(steps, "deflate-response", head(&response));
    let (resp, _) = client_hs
        .receive(&response)
        .expect("a valid response")
        .expect("a whole head");
    assert_eq!(resp.deflate, params);

    let mut client = Connection::new(Role::Client, client_config)
        .with_rng(MaskRng::from_seed(MASK_SEED))
        .with_deflate(resp.deflate);
    let mut server = Connection::new(Role::Server, server_config).with_deflate(params);

    // RFC 7692 §7.2.1: what DEFLATE with a sync flush gives for "Hello",
    // before the tail is removed.
    let mut raw = Compressor::new(6, 15, false);
    let flushed = raw.compress(b"Hello", false).expect("compresses");
    step(
        steps,
        "deflate-raw",
        hex_rows(&flushed, "DEFLATE(\"Hello\") ending in a sync flush"),
    );

    server.send_text("Hello").expect("open");
    let wire = transmit(&mut server);
    step(steps, "deflate-first", lines(trace.received(&wire)));
    assert_eq!(deliver(&mut client, &wire), [Message::text("Hello")]);
    // §7.2.3.2: the second "Hello" refers back to the first.
    server.send_text("Hello").expect("open");
    let wire = transmit(&mut server);
    step(steps, "deflate-second", lines(trace.received(&wire)));
    assert_eq!(deliver(&mut client, &wire), [Message::text("Hello")]);

    // The server closes this time (§7.1.2); the client's echo is masked.
    let away = CloseFrame::new(CloseCode::GOING_AWAY, "");
    server.close(Some(away.clone())).expect("open");
    let wire = transmit(&mut server);
    step(steps, "deflate-close", lines(trace.received(&wire)));
    assert_eq!(deliver(&mut client, &wire), [Message::Close(Some(away))]);
    let wire = transmit(&mut client);
    step(steps, "deflate-close-echo", lines(trace.sent(&wire)));
    assert_eq!(deliver(&mut server, &wire).len(), 1);
    assert!(server.should_close_tcp());
}

/// Everything a connection has queued to send.
fn transmit(conn: &mut Connection) -> Vec<u8> {
    let mut wire = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        wire.extend_from_slice(&chunk);
    }
    wire
}

/// Feeds `wire` to `conn` and returns the messages it yields.
fn deliver(conn: &mut Connection, wire: &[u8]) -> Vec<Message> {
    conn.receive(wire);
    let mut out = Vec::new();
    while let Some(message) = conn.poll_message().expect("no protocol error") {
        out.push(message);
    }
    out
}

/// An HTTP head as text: one line per header line, the CRLFs shown as
/// line ends (the document says they are CRLF on the wire).
fn head(bytes: &[u8]) -> String {
    let text = std::str::from_utf8(bytes).expect("a head is ASCII");
    text.replace("\r\n", "\n")
}

/// Bytes as hex, 16 to a row, the first row annotated.
fn hex_rows(bytes: &[u8], note: &str) -> String {
    let mut out = String::new();
    for (i, row) in bytes.chunks(16).enumerate() {
        let hex = hex(row);
        if i == 0 {
            out.push_str(&format!("{hex:<48}  # {note}\n"));
        } else {
            out.push_str(&format!("{hex}\n"));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Trace lines as a block's text.
fn lines(lines: Vec<String>) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The fenced blocks of a document whose info string is `text step:NAME`
/// or `hex step:NAME`: each name, its text and the line it starts on.
pub fn blocks(doc: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    let mut open: Option<(String, String, usize)> = None;
    for (n, line) in doc.lines().enumerate() {
        match &mut open {
            Some((_, text, _)) if line.trim_end() == "```" => {
                let _ = text;
                out.extend(open.take());
            }
            Some((_, text, _)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {
                if let Some(name) = line
                    .strip_prefix("```text step:")
                    .or_else(|| line.strip_prefix("```hex step:"))
                {
                    open = Some((name.trim().to_owned(), String::new(), n + 1));
                }
            }
        }
    }
    out
}

/// `doc` with every step's block replaced by the step's current text.
#[allow(dead_code)] // the example uses it; the test only compares
pub fn rewrite(doc: &str, steps: &[Step]) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in doc.lines() {
        if skipping {
            if line.trim_end() == "```" {
                skipping = false;
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if let Some(name) = line
            .strip_prefix("```text step:")
            .or_else(|| line.strip_prefix("```hex step:"))
            && let Some(step) = steps.iter().find(|s| s.name == name.trim())
        {
            out.push_str(&step.text);
            skipping = true;
        }
    }
    out
}
