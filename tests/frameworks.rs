//! The hyper and axum examples (`examples/hyper_echo.rs`,
//! `examples/axum_echo.rs`), run: each serves echo at `/ws` on a free
//! loopback port in this process, and our client checks what RFC 6455
//! asks of an echo over it: text and binary (§5.6), a fragmented message
//! (§5.4), 16 MiB, a Ping answered (§5.5.2), a close code echoed
//! (§5.5.1), and invalid UTF-8 failing with 1007 (§8.1).

mod common;

#[path = "../examples/axum_echo.rs"]
#[allow(dead_code)] // its `main`
mod axum_echo;
#[path = "../examples/hyper_echo.rs"]
#[allow(dead_code)]
mod hyper_echo;

use common::{close_code, masked, read_head, request_for};

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use rfc6455::proto::{CloseCode, CloseFrame, Message};
use rfc6455::transport::{self, Config, MaybeTlsStream, WebSocket};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Starts an example's `serve` on a free loopback port.
async fn start<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener));
    addr
}

async fn client(addr: SocketAddr, config: Config) -> WebSocket<MaybeTlsStream> {
    transport::connect(&format!("ws://{addr}/ws"), config)
        .await
        .unwrap()
        .0
}

async fn round_trip(ws: &mut WebSocket<MaybeTlsStream>, message: Message) {
    ws.send(message.clone()).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(30), ws.recv())
        .await
        .expect("no echo")
        .unwrap()
        .unwrap();
    assert!(echoed == message, "the echo differs");
}

/// Everything the issue lists, against the echo at `addr`.
async fn echo_is_correct(addr: SocketAddr) {
    let mut ws = client(addr, Config::default()).await;
    round_trip(&mut ws, Message::text("héllo")).await;
    round_trip(&mut ws, Message::binary(vec![0u8, 1, 2, 255])).await;
    // 16 MiB, the default limit of a message (`proto::Config`).
    let big: Vec<u8> = (0..16 << 20).map(|i: usize| (i % 251) as u8).collect();
    round_trip(&mut ws, Message::binary(big)).await;
    // §5.5.2: the Pong carries the Ping's payload.
    common::assert_ping_answered(&mut ws).await;
    // §5.5.1: the server's Close echoes our code.
    let code = CloseCode::try_from(4001).unwrap();
    ws.send(Message::Close(Some(CloseFrame::new(code, "bye"))))
        .await
        .unwrap();
    let mut reply = None;
    while let Some(event) = ws.recv().await {
        if let Ok(Message::Close(frame)) = event {
            reply = frame.map(|f| f.code);
        }
    }
    assert_eq!(reply, Some(code));

    // §5.4: a text message in 1 KiB fragments, reassembled by the server.
    let mut config = Config::default();
    config.protocol.fragment_size = Some(1024);
    let mut ws = client(addr, config).await;
    round_trip(&mut ws, Message::text("fragment ".repeat(2000))).await;
    ws.close(None).await.unwrap();

    // §8.1: invalid UTF-8 in a text frame fails the connection with 1007.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(request_for("/ws").as_bytes()).await.unwrap();
    let head = read_head(&mut raw).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    raw.write_all(&masked(0x81, &[b'o', b'k', 0xff, 0xfe]))
        .await
        .unwrap();
    assert_eq!(
        close_code(&mut raw, Duration::from_secs(10)).await,
        Some(1007)
    );
}

/// A request that is not an upgrade is refused with the handshake's
/// status (§4.2.1: 400 for a missing key).
async fn a_bad_upgrade_is_refused(addr: SocketAddr) {
    let mut raw = TcpStream::connect(addr).await.unwrap();
    let without_key =
        request_for("/ws").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    raw.write_all(without_key.as_bytes()).await.unwrap();
    let head = read_head(&mut raw).await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
}

#[tokio::test]
async fn axum_example_echoes_as_the_rfc_asks() {
    let addr = start(axum_echo::serve).await;
    echo_is_correct(addr).await;
    a_bad_upgrade_is_refused(addr).await;
}

#[tokio::test]
async fn hyper_example_echoes_as_the_rfc_asks() {
    let addr = start(hyper_echo::serve).await;
    echo_is_correct(addr).await;
    a_bad_upgrade_is_refused(addr).await;
}
