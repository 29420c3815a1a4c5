//! A broadcast server on rfc6455's transport, for the load benchmarks:
//! every text message a client sends goes to every connected client (the
//! sender too), encoded once as a [`PreparedFrame`] and shared by all.
//!
//! Each connection is one task that waits on its socket and on its queue
//! of prepared frames at once (`recv` is cancel-safe), and writes whatever
//! has queued up in one go.
//!
//! `ours-broadcast --listen 127.0.0.1:9104`
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use clap::Parser;
use rfc6455::proto::{Message, PreparedFrame};
use rfc6455::transport::{self, Config};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:9104")]
    listen: SocketAddr,
}

type Peers = Arc<Mutex<HashMap<u64, UnboundedSender<PreparedFrame>>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(cli.listen).await?;
    println!("ours-broadcast listening on {}", cli.listen);
    let peers = Peers::default();
    let mut next_id = 0u64;
    loop {
        let (stream, _) = listener.accept().await?;
        next_id += 1;
        tokio::spawn(connection(stream, next_id, peers.clone()));
    }
}

async fn connection(stream: TcpStream, id: u64, peers: Peers) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = transport::accept(stream, Config::default()).await else {
        return;
    };
    let (tx, mut rx) = unbounded_channel();
    peers.lock().unwrap().insert(id, tx);
    loop {
        tokio::select! {
            event = ws.recv() => match event {
                Some(Ok(Message::Text(text))) => {
                    let frame = PreparedFrame::text(text);
                    for peer in peers.lock().unwrap().values() {
                        let _ = peer.send(frame.clone());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            Some(frame) = rx.recv() => {
                // Queue everything waiting, then write it in one go.
                let mut ok = ws.queue_prepared(&frame).is_ok();
                while let (true, Ok(more)) = (ok, rx.try_recv()) {
                    ok = ws.queue_prepared(&more).is_ok();
                }
                if !ok || ws.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    peers.lock().unwrap().remove(&id);
}
