//! fastwebsockets behind hyper's HTTP/1 server, upgraded the way its README
//! shows (`upgrade::upgrade`, then the future in a task). Echo reads whole
//! messages through a `FragmentCollector` and writes each frame back.
//! Broadcast splits the socket, as its `echo_server_split` example does,
//! and feeds every peer's write half from an unbounded channel.
//!
//! `peer-fastwebsockets echo --listen 127.0.0.1:9102`
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use clap::{Parser, ValueEnum};
use fastwebsockets::{
    FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError, upgrade,
};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Echo,
    Broadcast,
}

#[derive(Parser)]
struct Cli {
    #[arg(value_enum)]
    mode: Mode,
    #[arg(long, default_value = "127.0.0.1:9102")]
    listen: SocketAddr,
}

#[derive(Default)]
struct Hub {
    next_id: AtomicU64,
    peers: Mutex<HashMap<u64, UnboundedSender<Bytes>>>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(cli.listen).await?;
    println!("fastwebsockets listening on {}", cli.listen);
    let hub = Arc::new(Hub::default());
    let mode = cli.mode;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            let service = service_fn(move |req| server_upgrade(req, mode, hub.clone()));
            let _ = http1::Builder::new()
                .serve_connection(io, service)
                .with_upgrades()
                .await;
        });
    }
}

async fn server_upgrade(
    mut req: Request<Incoming>,
    mode: Mode,
    hub: Arc<Hub>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let result = match mode {
            Mode::Echo => echo(fut).await,
            Mode::Broadcast => broadcast(fut, hub).await,
        };
        if let Err(e) = result {
            // Peers that just go away are the normal end of a benchmark.
            if !matches!(
                e,
                WebSocketError::UnexpectedEOF | WebSocketError::ConnectionClosed
            ) {
                eprintln!("websocket error: {e}");
            }
        }
    });
    Ok(response)
}

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn broadcast(fut: upgrade::UpgradeFut, hub: Arc<Hub>) -> Result<(), WebSocketError> {
    let ws = fut.await?;
    let (rx, mut tx) = ws.split(tokio::io::split);
    let mut rx = FragmentCollectorRead::new(rx);
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let (out_tx, mut out_rx) = unbounded_channel::<Bytes>();
    hub.peers.lock().unwrap().insert(id, out_tx);
    let writer = tokio::spawn(async move {
        while let Some(text) = out_rx.recv().await {
            if tx
                .write_frame(Frame::text(Payload::Borrowed(&text)))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let result = async {
        loop {
            // The load generator never pings, so there is no obligated write
            // (a pong) to hand over; a close ends the loop.
            let frame = rx
                .read_frame::<_, WebSocketError>(&mut |_| async { Ok(()) })
                .await?;
            match frame.opcode {
                OpCode::Close => return Ok(()),
                OpCode::Text => {
                    let text = Bytes::copy_from_slice(&frame.payload);
                    for peer in hub.peers.lock().unwrap().values() {
                        let _ = peer.send(text.clone());
                    }
                }
                _ => {}
            }
        }
    }
    .await;
    hub.peers.lock().unwrap().remove(&id);
    writer.abort();
    result
}
