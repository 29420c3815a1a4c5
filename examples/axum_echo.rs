//! An echo server at `/ws` in an axum application: the [`WsUpgrade`]
//! extractor checks the upgrade (RFC 6455 §4.2.1), `on_upgrade` returns the
//! 101 and runs the socket task once it has been sent.
//!
//! `cargo run --example axum_echo --features axum -- 127.0.0.1:9002`

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use rfc6455::proto::Message;
use rfc6455::transport::WsUpgrade;
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

/// Serves the application on `listener`.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, Router::new().route("/ws", get(ws))).await
}

async fn ws(upgrade: WsUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        // Pings are answered and the peer's Close echoed inside `recv`.
        while let Some(Ok(message)) = socket.recv().await {
            let data = matches!(message, Message::Text(_) | Message::Binary(_));
            if data && socket.send(message).await.is_err() {
                break;
            }
        }
    })
}
