//! An echo server at `/ws` in a plain hyper 1.x server: hyper parses the
//! request and sends the 101, our transport speaks WebSocket on the
//! connection hyper hands over (RFC 6455 §4.2, then §5).
//!
//! `cargo run --example hyper_echo --features hyper -- 127.0.0.1:9002`

use std::convert::Infallible;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rfc6455::proto::Message;
use rfc6455::transport::{Config, UpgradedStream, WebSocket, error_response, upgrade};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!("echo at ws://{}/ws", listener.local_addr()?);
    serve(listener).await
}

/// Serves every connection `listener` accepts, each in a task of its own.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            // `with_upgrades`: hyper hands the connection over after a 101.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(route))
                .with_upgrades()
                .await;
        });
    }
}

async fn route(mut request: Request<Incoming>) -> Result<Response<String>, Infallible> {
    if request.uri().path() != "/ws" {
        let mut missing = Response::new("not found\n".to_owned());
        *missing.status_mut() = StatusCode::NOT_FOUND;
        return Ok(missing);
    }
    match upgrade(&mut request, Config::default()) {
        Ok((response, upgrading)) => {
            // The socket comes once hyper has sent the response below.
            tokio::spawn(async move {
                if let Ok(socket) = upgrading.await {
                    echo(socket).await;
                }
            });
            Ok(response.map(|()| String::new()))
        }
        // Not a valid upgrade (§4.2.1): the status and the reason.
        Err(e) => Ok(error_response(&e)),
    }
}

/// Sends back every text and binary message; Pings are answered and the
/// peer's Close echoed inside `recv`.
async fn echo(mut socket: WebSocket<UpgradedStream>) {
    while let Some(Ok(message)) = socket.recv().await {
        let data = matches!(message, Message::Text(_) | Message::Binary(_));
        if data && socket.send(message).await.is_err() {
            break;
        }
    }
}
