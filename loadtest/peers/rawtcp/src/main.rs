//! The physical limit of an echo on this runtime: TCP with no WebSocket at
//! all (issue 21, part 2).
//!
//! Each connection does what every WebSocket echo server beneath its
//! framing must do for one message: one `recv` of what arrived and one
//! `send` of it back. No handshake, no frame header, no mask, no UTF-8
//! check, no message boundaries. The load generator drives it with
//! `loadgen echo --raw`, which writes and counts bare payloads of
//! `--size` bytes, so a row of this server is what the same load costs
//! when nothing but the kernel's TCP and tokio's readiness is left.
//!
//! Same runtime and setup as the WebSocket servers in the tables: tokio's
//! multi-threaded runtime (pinned to one core by `taskset`, so one worker),
//! `TCP_NODELAY` on every accepted socket, one task per connection.
//!
//! `peer-rawtcp echo --listen 127.0.0.1:9103`
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Echo,
}

#[derive(Parser)]
struct Cli {
    /// Only `echo`: the raw TCP peer has no broadcast (a broadcast needs
    /// message boundaries, which is what WebSocket adds).
    #[arg(value_enum)]
    mode: Mode,
    #[arg(long, default_value = "127.0.0.1:9103")]
    listen: SocketAddr,
}

/// One read takes at most this much: enough for the large-message row's
/// 64 KiB payload in one `recv` when the kernel already holds all of it.
/// The buffer is the connection's for its whole life (this peer is for
/// the echo rows, not the idle one).
const READ_BUF: usize = 64 * 1024;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let Mode::Echo = cli.mode;
    let listener = TcpListener::bind(cli.listen).await?;
    println!("raw TCP echo listening on {}", cli.listen);
    loop {
        let (mut stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = vec![0u8; READ_BUF];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}
