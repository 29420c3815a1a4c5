//! `wss://` and https end to end over loopback (RFC 6455 §4.1, §11.1.2),
//! with a test CA and a server certificate made at test time by rcgen:
//! the transport in both roles over TLS, certificate checks that must
//! fail, PEM files that are wrong in each way, the chat served over TLS,
//! and the `rfc6455 client --ca` command.

mod common;

use common::server::ChatServer;
use common::tls::{Outcome, Pki, echo, outcome, tls_echo_server};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rcgen::KeyPair;
use rfc6455::chat::ChatConfig;
use rfc6455::proto::{CloseCode, CloseFrame, Message};
use rfc6455::transport::tls::rustls::{self, CertificateError, pki_types::ServerName};
use rfc6455::transport::tls::tokio_rustls::TlsConnector;
use rfc6455::transport::tls::{self, TlsConfigError};
use rfc6455::transport::{self, Config, Error, WebSocket};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The longest any step may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);

// The transport over TLS.

#[tokio::test]
async fn text_and_binary_echo_over_wss_and_the_close_handshake_completes() {
    let pki = Pki::new("echo");
    let (port, mut outcomes) = tls_echo_server(pki.server_config()).await;
    let url = format!("wss://localhost:{port}/echo");
    let (mut ws, response) = pki
        .connector()
        .connect(&url, Config::default())
        .await
        .unwrap();
    assert_eq!(response.protocol, None);
    assert!(ws.get_ref().is_tls(), "a wss:// URL gives a TLS stream");

    // Small, and larger than a TLS record (16 KiB), so that a message spans
    // records and reads.
    for len in [0usize, 5, 125, 70_000, 1 << 20] {
        let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text(text),
            "text {len}"
        );
        let binary = Bytes::from((0..len).map(|i| (i * 7) as u8).collect::<Vec<_>>());
        ws.send(Message::Binary(binary.clone())).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::Binary(binary),
            "binary {len}"
        );
    }

    ws.close(Some(CloseFrame::new(CloseCode::NORMAL, "done")))
        .await
        .unwrap();
    assert!(ws.connection().close_sent());
    // §7.1.1: after the close handshake the server closes TCP (and TLS
    // with close_notify): the client's stream ends cleanly.
    assert!(
        ws.recv().await.is_none(),
        "the stream ends after the close handshake"
    );
    match outcome(&mut outcomes).await {
        Outcome::Served { sni, ended } => {
            assert_eq!(sni.as_deref(), Some("localhost"), "SNI is the URL's host");
            assert!(
                ended.is_none(),
                "the server's loop ended cleanly: {ended:?}"
            );
        }
        other => panic!("the server refused the connection: {other:?}"),
    }
}

#[tokio::test]
async fn split_halves_work_over_tls() {
    let pki = Pki::new("split");
    let (port, _outcomes) = tls_echo_server(pki.server_config()).await;
    let url = format!("wss://localhost:{port}/");
    let (ws, _) = pki
        .connector()
        .connect(&url, Config::default())
        .await
        .unwrap();
    let (mut reader, mut writer) = ws.split();
    let sending = tokio::spawn(async move {
        for i in 0..100 {
            writer.send(Message::text(format!("m{i}"))).await.unwrap();
        }
        writer
    });
    for i in 0..100 {
        let got = tokio::time::timeout(WAIT, reader.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::text(format!("m{i}")));
    }
    let mut writer = sending.await.unwrap();
    writer
        .close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
        .await
        .unwrap();
}

// Certificate checks (RFC 6455 §10.6 and §4.1: the client verifies the
// server it asked for).

#[tokio::test]
async fn a_client_without_the_test_ca_refuses_the_certificate_as_unknown_issuer() {
    let pki = Pki::new("unknown-issuer");
    let (port, mut outcomes) = tls_echo_server(pki.server_config()).await;
    // transport::connect trusts Mozilla's roots only.
    let result = transport::connect(&format!("wss://localhost:{port}/"), Config::default()).await;
    match result {
        Err(Error::Tls(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))) => {}
        Err(other) => panic!("expected an unknown-issuer certificate error, got {other:?}"),
        Ok(_) => panic!("a certificate from an unknown CA was accepted"),
    }
    // The client said why, in a TLS alert.
    match outcome(&mut outcomes).await {
        Outcome::Refused(Error::Tls(rustls::Error::AlertReceived(alert))) => {
            assert_eq!(alert, rustls::AlertDescription::UnknownCA)
        }
        other => panic!("expected the server to receive an alert, got {other:?}"),
    }
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let pki = Pki::new("wrong-name");
    let (port, _outcomes) = tls_echo_server(pki.server_config()).await;
    // The certificate names `localhost` only; 127.0.0.1 is the same socket
    // under another name.
    let result = pki
        .connector()
        .connect(&format!("wss://127.0.0.1:{port}/"), Config::default())
        .await;
    match result {
        Err(Error::Tls(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ))) => {}
        Err(other) => panic!("expected a wrong-name certificate error, got {other:?}"),
        Ok(_) => panic!("a certificate for another name was accepted"),
    }
}

#[tokio::test]
async fn a_plain_ws_url_through_a_tls_connector_stays_plain() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = transport::accept(stream, Config::default()).await.unwrap();
        echo(&mut ws).await;
    });
    let pki = Pki::new("plain");
    let (mut ws, _) = pki
        .connector()
        .connect(&format!("ws://{addr}/"), Config::default())
        .await
        .unwrap();
    assert!(!ws.get_ref().is_tls());
    ws.send(Message::text("plain")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("plain"));
}

// PEM files: each way of being wrong gives its own error, naming the file.

#[test]
fn missing_and_malformed_pem_files_give_errors_that_name_the_file() {
    let pki = Pki::new("bad-files");
    let missing = pki.dir.join("missing.pem");

    let err = tls::server_config_from_pem(&missing, &pki.key).unwrap_err();
    assert!(
        matches!(&err, TlsConfigError::Read { what: "certificate", path, source }
            if path == &missing && source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("cannot read certificate file ") && message.contains("missing.pem"),
        "{message}"
    );

    let err = tls::server_config_from_pem(&pki.cert, &missing).unwrap_err();
    assert!(
        matches!(&err, TlsConfigError::Read { what: "private key", path, .. } if path == &missing),
        "{err:?}"
    );

    // A certificate section that never ends.
    let truncated = write(
        &pki.dir,
        "truncated.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n",
    );
    let err = tls::server_config_from_pem(&truncated, &pki.key).unwrap_err();
    assert!(
        matches!(&err, TlsConfigError::Pem { what: "certificate", path, .. } if path == &truncated),
        "{err:?}"
    );
    assert!(err.to_string().contains("is not valid PEM"), "{err}");

    // Not PEM at all: no certificate in it.
    let text = write(&pki.dir, "text.pem", "hello\n");
    let err = tls::server_config_from_pem(&text, &pki.key).unwrap_err();
    assert!(
        matches!(&err, TlsConfigError::Missing { what: "certificate", path } if path == &text),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("no certificate found in {}", text.display())
    );

    // The paths swapped: the "key" file holds a certificate.
    let err = tls::server_config_from_pem(&pki.key, &pki.cert).unwrap_err();
    assert!(
        matches!(
            &err,
            TlsConfigError::Missing {
                what: "certificate",
                ..
            }
        ),
        "{err:?}"
    );
    let err = tls::server_config_from_pem(&pki.cert, &pki.cert).unwrap_err();
    assert!(
        matches!(&err, TlsConfigError::Missing { what: "private key", path } if path == &pki.cert),
        "{err:?}"
    );

    // A well-formed key that belongs to another certificate.
    let other_key = write(
        &pki.dir,
        "other-key.pem",
        &KeyPair::generate().unwrap().serialize_pem(),
    );
    let err = tls::server_config_from_pem(&pki.cert, &other_key).unwrap_err();
    assert!(
        matches!(
            &err,
            TlsConfigError::Rejected {
                source: rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch),
                ..
            }
        ),
        "{err:?}"
    );

    // A CA file with no certificate, and one that is missing.
    let err = tls::root_store_from_pem(&text).unwrap_err();
    assert!(
        matches!(
            &err,
            TlsConfigError::Missing {
                what: "CA certificate",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        tls::root_store_from_pem(&missing),
        Err(TlsConfigError::Read { .. })
    ));
    // And the good files load.
    assert_eq!(tls::root_store_from_pem(&pki.ca).unwrap().len(), 1);
    tls::server_config_from_pem(&pki.cert, &pki.key).unwrap();
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

// The chat over TLS.

async fn chat_over_tls(pki: &Pki, name: &str) -> ChatServer {
    let mut config = ChatConfig::new(common::temp_dir("tls-chat", name).join("chat.db"));
    config.tls = Some(pki.server_config());
    config.close_timeout = Duration::from_millis(300);
    ChatServer::start(config).await
}

/// One https request; the whole response (the server closes after it).
async fn https_get(port: u16, path: &str, config: Arc<rustls::ClientConfig>) -> String {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = TlsConnector::from(config).connect(name, tcp).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn the_chat_answers_healthz_over_https_and_hello_over_wss() {
    let pki = Pki::new("chat");
    let server = chat_over_tls(&pki, "chat").await;
    let port = server.addr.port();

    let health = tokio::time::timeout(WAIT, https_get(port, "/healthz", pki.client_config()))
        .await
        .unwrap();
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");

    let page = https_get(port, "/", pki.client_config()).await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    // 'self' covers the page's own wss: URL (CSP Level 3), and nothing else.
    assert!(page.contains("connect-src 'self';"), "{page}");

    // Over TLS the server's own origin is https (RFC 6454: scheme, host,
    // port); the same host over http is another origin.
    let own = format!("https://localhost:{port}");
    let status = wss_upgrade_status(port, &own, pki.client_config()).await;
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols", "{own}");
    let plain = format!("http://localhost:{port}");
    let status = wss_upgrade_status(port, &plain, pki.client_config()).await;
    assert_eq!(status, "HTTP/1.1 403 Forbidden", "{plain}");

    let url = format!("wss://localhost:{port}/ws");
    let (mut ws, _) = pki
        .connector()
        .connect(&url, Config::default())
        .await
        .unwrap();
    ws.send(Message::text(
        json!({"type": "hello", "nick": "alice"}).to_string(),
    ))
    .await
    .unwrap();
    let welcome = next_event(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["user"], "alice", "{welcome}");
    ws.send(Message::text(
        json!({"type": "msg", "room": "general", "text": "over TLS", "client_id": "c1"})
            .to_string(),
    ))
    .await
    .unwrap();
    loop {
        let event = next_event(&mut ws).await;
        if event["type"] == "ack" {
            assert_eq!(event["client_id"], "c1");
            break;
        }
        assert_ne!(event["type"], "error", "{event}");
    }
    ws.close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")))
        .await
        .unwrap();
    server.stop().await;
}

/// The status line of a wss:// upgrade to `/ws` sent with `Origin: origin`.
async fn wss_upgrade_status(port: u16, origin: &str, config: Arc<rustls::ClientConfig>) -> String {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = TlsConnector::from(config).connect(name, tcp).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n") && stream.read(&mut b).await.unwrap_or(0) == 1 {
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).trim_end().to_owned()
}

async fn next_event<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) -> Value {
    match tokio::time::timeout(WAIT, ws.recv()).await.unwrap() {
        Some(Ok(Message::Text(t))) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_tls_client_does_not_hold_up_other_connections() {
    let pki = Pki::new("silent");
    let server = chat_over_tls(&pki, "silent").await;
    let port = server.addr.port();
    // Connected, and says nothing: not even a ClientHello.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Well under the server's 10 s for a TLS handshake and request head,
    // so that an accept loop waiting out the silent client fails this.
    let soon = Duration::from_secs(3);
    let health = tokio::time::timeout(soon, https_get(port, "/healthz", pki.client_config()))
        .await
        .expect("a silent client blocked the accept loop");
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    silent
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, silent.read_to_end(&mut answer))
        .await
        .expect("the server did not close a plain-HTTP connection");
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    server.stop().await;
}

// The command line: `rfc6455 client wss://... --ca FILE`.

#[tokio::test]
async fn the_cli_client_connects_with_ca_and_refuses_without() {
    let pki = Pki::new("cli");
    let (port, _outcomes) = tls_echo_server(pki.server_config()).await;
    let url = format!("wss://localhost:{port}/");

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rfc6455"))
        .args(["client", &url, "--ca"])
        .arg(&pki.ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    stdin.write_all(b"hello over wss\n").await.unwrap();
    let line = tokio::time::timeout(WAIT, stdout.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line.as_deref(), Some("hello over wss"));
    drop(stdin); // end of input: the client closes and exits
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");

    // Without --ca, Mozilla's roots do not know the test CA.
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rfc6455"))
            .args(["client", &url])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
}

#[tokio::test]
async fn the_cli_refuses_to_start_with_a_missing_certificate() {
    let pki = Pki::new("cli-bad");
    let missing = pki.dir.join("nope.pem");
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rfc6455"))
            .args(["chat", "--listen", "127.0.0.1:0", "--db"])
            .arg(pki.dir.join("chat.db"))
            .arg("--tls-cert")
            .arg(&missing)
            .arg("--tls-key")
            .arg(&pki.key)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read certificate file") && stderr.contains("nope.pem"),
        "{stderr}"
    );

    // One without the other is a usage error.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_rfc6455"))
        .args(["echo", "--tls-cert"])
        .arg(&pki.cert)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "clap's usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
}
