//! tokio-tungstenite, used the way its README and examples show: echo
//! forwards the read half into the write half, and broadcast keeps a map of
//! peers, each fed through an unbounded channel that is forwarded into its
//! socket. The only change: broadcast relays to every peer, the sender
//! included, as the other servers of the benchmark do.
//!
//! `peer-tungstenite echo --listen 127.0.0.1:9101`
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use clap::{Parser, ValueEnum};
use futures_channel::mpsc::{UnboundedSender, unbounded};
use futures_util::{StreamExt, TryStreamExt, future};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Echo,
    Broadcast,
}

#[derive(Parser)]
struct Cli {
    #[arg(value_enum)]
    mode: Mode,
    #[arg(long, default_value = "127.0.0.1:9101")]
    listen: SocketAddr,
}

type Peers = Arc<Mutex<HashMap<SocketAddr, UnboundedSender<Message>>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(cli.listen).await?;
    println!("tungstenite listening on {}", cli.listen);
    let peers = Peers::default();
    loop {
        let (stream, addr) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        match cli.mode {
            Mode::Echo => {
                tokio::spawn(echo(stream));
            }
            Mode::Broadcast => {
                tokio::spawn(broadcast(stream, addr, peers.clone()));
            }
        }
    }
}

async fn echo(stream: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|m| future::ready(m.is_text() || m.is_binary()))
        .forward(write)
        .await;
}

async fn broadcast(stream: TcpStream, addr: SocketAddr, peers: Peers) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (tx, rx) = unbounded();
    peers.lock().unwrap().insert(addr, tx);
    let (outgoing, incoming) = ws.split();
    let relay = incoming.try_for_each(|m| {
        if m.is_text() || m.is_binary() {
            for tx in peers.lock().unwrap().values() {
                let _ = tx.unbounded_send(m.clone());
            }
        }
        future::ok(())
    });
    let deliver = rx.map(Ok).forward(outgoing);
    futures_util::pin_mut!(relay, deliver);
    future::select(relay, deliver).await;
    peers.lock().unwrap().remove(&addr);
}
