//! The opening handshake in the `http` crate's types (RFC 6455 §4):
//! a server callback that sees the `http::Request<()>` and accepts with a
//! subprotocol and extra headers or refuses with any status and body, and
//! a client that sends an `http::Request<()>` and gets the
//! `http::Response<()>` back.

mod common;

use common::{read_head, request_for};

use std::net::SocketAddr;

use bytes::Bytes;
use http::{StatusCode, header};
use rfc6455::proto::{HandshakeError, Message};
use rfc6455::transport::{
    self, Config, Error, HandshakeDecision, WebSocket, accept_with_callback, connect_request,
    connect_request_with,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// What the callback saw of the request.
#[derive(Debug)]
struct Seen {
    path: String,
    query: Option<String>,
    cookie: Option<String>,
    origin: Option<String>,
    protocols: Option<String>,
}

/// One connection accepted with `callback`; the request as it saw it and
/// the outcome (an echo of one message, if accepted) come back.
async fn serve_one<F>(
    callback: F,
) -> (
    SocketAddr,
    oneshot::Receiver<Seen>,
    tokio::task::JoinHandle<Result<(), Error>>,
)
where
    F: FnOnce(&http::Request<()>, http::Response<()>) -> HandshakeDecision + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen_rx) = oneshot::channel();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws: WebSocket<TcpStream> =
            accept_with_callback(stream, Config::default(), move |request, response| {
                let text = |name| {
                    request
                        .headers()
                        .get(name)
                        .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
                };
                let _ = seen_tx.send(Seen {
                    path: request.uri().path().to_owned(),
                    query: request.uri().query().map(str::to_owned),
                    cookie: text(header::COOKIE),
                    origin: text(header::ORIGIN),
                    protocols: text(header::SEC_WEBSOCKET_PROTOCOL),
                });
                callback(request, response)
            })
            .await?;
        if let Some(Ok(m)) = ws.recv().await {
            ws.send(m).await?;
        }
        while ws.recv().await.is_some() {}
        Ok(())
    });
    (addr, seen_rx, server)
}

#[tokio::test]
async fn callback_sees_the_request_and_accepts_with_a_subprotocol_and_extra_headers() {
    let (addr, seen, server) = serve_one(|_request, mut response| {
        // §4.2.2 item 5.4: the second protocol the client offered.
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static("chat.v2"),
        );
        response.headers_mut().insert(
            header::SET_COOKIE,
            http::HeaderValue::from_static("session=abc"),
        );
        HandshakeDecision::Accept(response)
    })
    .await;
    let request = http::Request::builder()
        .uri(format!("ws://{addr}/rooms/lobby?since=42"))
        .header(header::ORIGIN, "https://example.com")
        .header(header::COOKIE, "theme=dark")
        .header(header::SEC_WEBSOCKET_PROTOCOL, "chat.v1, chat.v2")
        .body(())
        .unwrap();
    let (mut ws, response) = connect_request(request, Config::default()).await.unwrap();
    let seen = seen.await.unwrap();
    assert_eq!(seen.path, "/rooms/lobby");
    assert_eq!(seen.query.as_deref(), Some("since=42"));
    assert_eq!(seen.cookie.as_deref(), Some("theme=dark"));
    assert_eq!(seen.origin.as_deref(), Some("https://example.com"));
    assert_eq!(seen.protocols.as_deref(), Some("chat.v1, chat.v2"));
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        response
            .headers()
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .unwrap(),
        "chat.v2"
    );
    assert_eq!(
        response.headers().get(header::SET_COOKIE).unwrap(),
        "session=abc"
    );
    assert!(
        response
            .headers()
            .contains_key(header::SEC_WEBSOCKET_ACCEPT)
    );
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("hello"));
    ws.close(None).await.unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn callback_refuses_with_its_status_headers_and_body() {
    let (addr, _seen, server) = serve_one(|request, _response| {
        let mut refusal = http::Response::new(Bytes::from_static(b"not from there\n"));
        *refusal.status_mut() = StatusCode::FORBIDDEN;
        refusal
            .headers_mut()
            .insert("x-reason", http::HeaderValue::from_static("origin"));
        assert!(request.headers().get(header::ORIGIN).is_none());
        HandshakeDecision::Refuse(refusal)
    })
    .await;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(request_for("/ws").as_bytes()).await.unwrap();
    let head = read_head(&mut raw).await;
    assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nx-reason: origin\r\n"), "{head}");
    assert!(lower.contains("\r\ncontent-length: 15\r\n"), "{head}");
    assert!(lower.contains("\r\nconnection: close\r\n"), "{head}");
    let mut body = Vec::new();
    raw.read_to_end(&mut body).await.unwrap();
    assert_eq!(body, b"not from there\n");
    let outcome = server.await.unwrap();
    assert!(
        matches!(outcome, Err(Error::Rejected(StatusCode::FORBIDDEN))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_client_refused_sees_the_status() {
    let (addr, _seen, server) = serve_one(|_request, _response| {
        let mut refusal = http::Response::new(Bytes::new());
        *refusal.status_mut() = StatusCode::UNAUTHORIZED;
        HandshakeDecision::Refuse(refusal)
    })
    .await;
    let request = http::Request::builder()
        .uri(format!("ws://{addr}/"))
        .header(header::AUTHORIZATION, "Bearer wrong")
        .body(())
        .unwrap();
    let result = connect_request(request, Config::default()).await;
    assert!(
        matches!(
            result,
            Err(Error::Handshake(HandshakeError::NotSwitchingProtocols(401)))
        ),
        "{:?}",
        result.map(|(_, r)| r)
    );
    assert!(matches!(server.await.unwrap(), Err(Error::Rejected(_))));
}

#[tokio::test]
async fn a_subprotocol_the_client_did_not_offer_is_refused_with_500() {
    let (addr, _seen, server) = serve_one(|_request, mut response| {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static("never.offered"),
        );
        HandshakeDecision::Accept(response)
    })
    .await;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(request_for("/").as_bytes()).await.unwrap();
    let head = read_head(&mut raw).await;
    assert!(head.starts_with("HTTP/1.1 500 "), "{head}");
    let outcome = server.await.unwrap();
    assert!(
        matches!(
            outcome,
            Err(Error::Handshake(HandshakeError::ProtocolNotOffered))
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn an_invalid_upgrade_is_refused_before_the_callback_runs() {
    let (addr, seen, server) =
        serve_one(|_request, response| HandshakeDecision::Accept(response)).await;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    let without_key =
        request_for("/").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    raw.write_all(without_key.as_bytes()).await.unwrap();
    let head = read_head(&mut raw).await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(seen.await.is_err(), "the callback ran");
    assert!(matches!(
        server.await.unwrap(),
        Err(Error::Handshake(HandshakeError::InvalidKey))
    ));
}

#[tokio::test]
async fn the_handshake_fields_stay_ours_whatever_the_callback_writes() {
    let (addr, _seen, server) = serve_one(|_request, mut response| {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_ACCEPT,
            http::HeaderValue::from_static("forged"),
        );
        HandshakeDecision::Accept(response)
    })
    .await;
    // The client checks Sec-WebSocket-Accept (§4.1 item 4): it connects.
    let (mut ws, _) = transport::connect(&format!("ws://{addr}/"), Config::default())
        .await
        .unwrap();
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::binary(vec![1, 2, 3])
    );
    ws.close(None).await.unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_header_value_that_is_not_ascii_is_refused_naming_it_before_anything_is_sent() {
    let (near, mut far) = tokio::io::duplex(4096);
    let request = http::Request::builder()
        .uri("ws://example.com/")
        .header(
            "X-User",
            http::HeaderValue::from_bytes("café".as_bytes()).unwrap(),
        )
        .body(())
        .unwrap();
    match connect_request_with(near, &request, Config::default()).await {
        Err(Error::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains("x-user header"), "{e}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let mut sent = Vec::new();
    far.read_to_end(&mut sent).await.unwrap();
    assert!(sent.is_empty(), "{}", String::from_utf8_lossy(&sent));
}
