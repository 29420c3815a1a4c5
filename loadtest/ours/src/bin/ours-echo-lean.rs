//! An experiment for the idle-memory target (see BENCHMARKS.md): the echo
//! of `rfc6455 echo`, minus what makes its task large. The handshake's
//! result is unwrapped before the echo loop starts, so the task does not
//! keep a `Result<WebSocket, Error>` beside the `WebSocket` the loop owns,
//! and no tracing span or config clone rides along.
//!
//! `ours-echo-lean --listen 127.0.0.1:9106`
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use clap::Parser;
use rfc6455::proto::Message;
use rfc6455::transport::{self, Config, WebSocket};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:9106")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(cli.listen).await?;
    println!("ours-echo-lean listening on {}", cli.listen);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(connection(stream));
    }
}

async fn connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = transport::accept(stream, Config::default()).await else {
        return;
    };
    echo(ws).await;
}

async fn echo(mut ws: WebSocket<TcpStream>) {
    while let Some(Ok(message)) = ws.recv().await {
        if let Message::Text(_) | Message::Binary(_) = message
            && ws.queue(message).is_err()
        {
            return;
        }
    }
}
