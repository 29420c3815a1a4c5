//! The split halves ([`WebSocket::split`]) against the unsplit socket, over
//! loopback TCP on a two-worker tokio runtime, the server's connections
//! written both ways:
//!
//! | group       | workload                                                               | `unsplit` server                          | `split` server                                   |
//! |-------------|------------------------------------------------------------------------|-------------------------------------------|--------------------------------------------------|
//! | `echo16`    | one client, 16 messages of 32 B in flight, then their 16 echoes        | `recv`, then `queue` (one task)           | the reader's data `forward`ed into the writer    |
//! | `broadcast` | 32 subscribers; one 32 B frame prepared once, sent to all, read by all | `select!` on `recv` and the broadcast     | a reader task draining, a writer task sending    |
//!
//! `cargo bench --bench split [-- GROUP]`. Elements are round trips
//! (`echo16`: 16 messages; `broadcast`: one frame to all 32). Run it on a
//! quiet machine: two peers share two cores here, so a loaded machine
//! measures the scheduler. `scripts/check.sh` only compiles it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use rfc6455::proto::{Message, PreparedFrame};
use rfc6455::transport::{self, Config, MaybeTlsStream, WebSocket};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::broadcast;

/// The tests' split echo (`forward_echo`).
#[path = "../tests/common/mod.rs"]
mod common;

const IN_FLIGHT: usize = 16;
const SUBSCRIBERS: usize = 32;

#[derive(Clone, Copy)]
enum Shape {
    Unsplit,
    Split,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Unsplit => "unsplit",
            Shape::Split => "split",
        }
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn echo_connection(ws: WebSocket<TcpStream>, shape: Shape) {
    match shape {
        Shape::Unsplit => {
            let mut ws = ws;
            while let Some(Ok(m)) = ws.recv().await {
                if matches!(m, Message::Text(_) | Message::Binary(_)) && ws.queue(m).is_err() {
                    break;
                }
            }
        }
        Shape::Split => common::forward_echo(ws).await,
    }
}

async fn broadcast_connection(
    ws: WebSocket<TcpStream>,
    shape: Shape,
    mut frames: broadcast::Receiver<PreparedFrame>,
) {
    match shape {
        Shape::Unsplit => {
            let mut ws = ws;
            loop {
                tokio::select! {
                    m = ws.recv() => if !matches!(m, Some(Ok(_))) { break },
                    f = frames.recv() => match f {
                        Ok(f) if ws.send_prepared(&f).await.is_ok() => {}
                        _ => break,
                    },
                }
            }
        }
        Shape::Split => {
            let (mut reader, mut writer) = ws.split();
            tokio::spawn(async move { while let Some(Ok(_)) = reader.recv().await {} });
            while let Ok(f) = frames.recv().await {
                if writer.send_prepared(&f).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// A server on a free loopback port; every connection runs `serve`.
async fn server<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(WebSocket<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            if let Ok(ws) = transport::accept(stream, Config::default()).await {
                tokio::spawn(serve(ws));
            }
        }
    });
    addr
}

async fn client(addr: SocketAddr) -> WebSocket<MaybeTlsStream> {
    transport::connect(&format!("ws://{addr}/"), Config::default())
        .await
        .unwrap()
        .0
}

fn echo16(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo16");
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    let rt = runtime();
    for shape in [Shape::Unsplit, Shape::Split] {
        let mut ws = rt.block_on(async {
            let addr = server(move |ws| echo_connection(ws, shape)).await;
            client(addr).await
        });
        group.bench_function(shape.name(), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for _ in 0..IN_FLIGHT {
                            ws.queue(Message::text("0123456789abcdef0123456789abcdef"))
                                .unwrap();
                        }
                        ws.flush().await.unwrap();
                        for _ in 0..IN_FLIGHT {
                            ws.recv().await.unwrap().unwrap();
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn broadcast(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast");
    group.throughput(Throughput::Elements(1));
    let rt = runtime();
    for shape in [Shape::Unsplit, Shape::Split] {
        let (frames, mut clients) = rt.block_on(async {
            let (frames, _) = broadcast::channel::<PreparedFrame>(1024);
            let subscribe = frames.clone();
            let addr =
                server(move |ws| broadcast_connection(ws, shape, subscribe.subscribe())).await;
            let mut clients = Vec::new();
            for _ in 0..SUBSCRIBERS {
                clients.push(client(addr).await);
            }
            // Every subscriber's server task has subscribed.
            while frames.receiver_count() < SUBSCRIBERS {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (frames, clients)
        });
        let frame = PreparedFrame::text("0123456789abcdef0123456789abcdef");
        group.bench_function(shape.name(), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        frames.send(frame.clone()).unwrap();
                        for ws in &mut clients {
                            ws.next().await.unwrap().unwrap();
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, echo16, broadcast);
criterion_main!(benches);
