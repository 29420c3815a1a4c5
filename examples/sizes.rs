//! Prints the in-memory size of the types an idle server connection holds.
use rfc6455::proto::{Config as ProtoConfig, Connection, Message};
use rfc6455::transport::{self, Config, WebSocket};
use tokio::net::TcpStream;

fn main() {
    println!("Connection: {} bytes", std::mem::size_of::<Connection>());
    println!(
        "proto::Config: {} bytes",
        std::mem::size_of::<ProtoConfig>()
    );
    println!("transport::Config: {} bytes", std::mem::size_of::<Config>());
    println!(
        "WebSocket<TcpStream>: {} bytes",
        std::mem::size_of::<WebSocket<TcpStream>>()
    );
    let task = async move {
        let stream: TcpStream = unreachable_stream().await;
        if let Ok(mut ws) = transport::accept(stream, Config::default()).await {
            while let Some(Ok(m)) = ws.recv().await {
                if let Message::Text(_) | Message::Binary(_) = m {
                    let _ = ws.queue(m);
                }
            }
        }
    };
    println!(
        "connection task future: {} bytes",
        std::mem::size_of_val(&task)
    );
}

async fn unreachable_stream() -> TcpStream {
    std::future::pending().await
}
