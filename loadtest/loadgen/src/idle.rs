//! `idle`: N connections opened and held; the server's RSS per connection.
//!
//! The server's VmRSS is read before the first connection, once all are
//! open and a second has passed, and at the end of `--hold`; the report
//! divides the growth at the end by the number of connections. Connections
//! stay silent (they only answer pings), as a real idle client would.
//!
//! With `--hello`, each connection is a chat member: it says `hello` (nick
//! `idle<N>`, which joins `general`) and counts as open once its history
//! page has come, so the time to connect is the time to connect and join
//! them all. The kernel's TCP memory (`/proc/net/sockstat`, both sides'
//! sockets) is reported apart from the server's RSS, and so is the kernel's
//! slab growth per socket (`Slab:` of /proc/meminfo: the socket's own
//! structures, which an idle socket holds however empty its buffers).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::wire::{self, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, ReadBuf, Target};
use crate::{MAX_CONNS, MAX_SECS, Report, procfs, round3};

#[derive(clap::Args)]
pub struct Args {
    /// ws://127.0.0.1:PORT/PATH
    #[arg(long)]
    url: String,
    /// Connections.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 10)]
    hold: u64,
    /// The server's PID (required: its RSS is the point).
    #[arg(long)]
    pid: u32,
    /// Handshakes at a time.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Each connection says `hello` to the chat (joining `general`) and
    /// waits for its history before it counts as open.
    #[arg(long)]
    hello: bool,
}

/// The kernel's TCP socket memory, in bytes: the `mem` pages of the `TCP:`
/// line of /proc/net/sockstat (every TCP socket of the machine's network
/// namespace, ours and the server's).
fn tcp_mem_bytes() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mem" {
            return words.next()?.parse::<u64>().ok().map(|pages| pages * 4096);
        }
    }
    None
}

/// The kernel's slab memory, in bytes (`Slab:` of /proc/meminfo): where a
/// socket's own structures live (`TCP`, `sock_inode_cache`, `filp`,
/// `eventpoll_epi`, `dentry`), whether or not it holds data. Machine-wide,
/// both sides' sockets, and anything else the machine did meanwhile.
fn slab_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("Slab:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub async fn run(a: Args) -> Result<Report, String> {
    let target = Target::parse(&a.url)?;
    if a.conns == 0 || a.conns > MAX_CONNS || a.hold > MAX_SECS {
        return Err(format!("conns 1..={MAX_CONNS}, hold at most {MAX_SECS} s"));
    }
    let pid = a.pid.to_string();
    let before = procfs::rss_bytes(&pid).ok_or("cannot read the server's RSS")?;
    let cpu_before = procfs::sample(Some(a.pid));
    let tcp_before = tcp_mem_bytes().unwrap_or(0);
    let slab_before = slab_bytes().unwrap_or(0);
    let started = Instant::now();

    let gate = Arc::new(Semaphore::new(a.concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<bool>(a.conns);
    let mut tasks = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        let hello = a.hello.then(|| {
            let json = json!({"type": "hello", "nick": format!("idle{i}")}).to_string();
            wire::encode(OP_TEXT, json.as_bytes())
        });
        let (target, gate, open, mut stop) = (
            target.clone(),
            gate.clone(),
            open_tx.clone(),
            stop_rx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let conn = {
                let _permit = gate.acquire().await;
                joined(&target, hello.as_deref(), i).await
            };
            let (mut stream, rest) = match conn {
                Ok(c) => c,
                Err(e) => {
                    let _ = open.send(false).await;
                    return Err(e);
                }
            };
            let _ = open.send(true).await;
            drop(open);
            let mut rb = ReadBuf::new(rest, 1 << 16);
            loop {
                let mut reply = Vec::new();
                while let Some((f, payload)) = rb.next_frame()? {
                    match f.opcode {
                        OP_PING => wire::encode_into(&mut reply, OP_PONG, payload),
                        OP_TEXT if payload == b"2" => wire::encode_into(&mut reply, OP_TEXT, b"3"),
                        OP_CLOSE => return Err(std::io::Error::other("server sent Close")),
                        _ => {}
                    }
                }
                if !reply.is_empty() {
                    stream.write_all(&reply).await?;
                }
                tokio::select! {
                    _ = stop.changed() => return Ok(()),
                    n = rb.fill(&mut stream) => if n? == 0 {
                        return Err(std::io::Error::other("server closed an idle connection"));
                    },
                }
            }
        }));
    }
    drop(open_tx);
    let (mut open, mut failed) = (0usize, 0usize);
    let deadline = started + Duration::from_secs(120);
    while open + failed < a.conns {
        match tokio::time::timeout_at(deadline, open_rx.recv()).await {
            Ok(Some(true)) => open += 1,
            Ok(Some(false)) => failed += 1,
            _ => break,
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_open = procfs::rss_bytes(&pid).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(a.hold)).await;
    let end = procfs::rss_bytes(&pid).unwrap_or(0);
    let cpu_end = procfs::sample(Some(a.pid));
    let tcp_end = tcp_mem_bytes().unwrap_or(0);
    let slab_end = slab_bytes().unwrap_or(0);
    let _ = stop_tx.send(true);
    let mut dropped = 0usize;
    for t in tasks {
        if let Ok(Err(_)) = t.await {
            dropped += 1;
        }
    }
    // Connections that failed to open are in `dropped` too.
    let dropped = dropped.saturating_sub(failed);
    let per_conn = if open > 0 {
        end.saturating_sub(before) as f64 / open as f64
    } else {
        0.0
    };
    // Both ends of each connection are sockets on this machine.
    let slab_per_socket = if open > 0 {
        slab_end.saturating_sub(slab_before) as f64 / (2 * open) as f64
    } else {
        0.0
    };
    let server_cpu = match (cpu_before.server_cpu, cpu_end.server_cpu) {
        (Some(a), Some(b)) => Some(round3(b - a)),
        _ => None,
    };
    let human = format!(
        "idle {} conns{} ({} open, {} failed, {} dropped while held) in {:.1} s: server RSS {:.1} MiB -> {:.1} MiB = {:.0} bytes per connection ({:.2} KiB); kernel TCP memory +{:.1} MiB; kernel slab +{:.0} bytes per socket (both sides)",
        a.conns,
        if a.hello { " said hello" } else { "" },
        open,
        failed,
        dropped,
        connect_secs,
        before as f64 / 1048576.0,
        end as f64 / 1048576.0,
        per_conn,
        per_conn / 1024.0,
        tcp_end.saturating_sub(tcp_before) as f64 / 1048576.0,
        slab_per_socket
    );
    let json = json!({
        "scenario": "idle",
        "url": a.url,
        "conns": a.conns,
        "open": open,
        "failed": failed,
        "dropped": dropped,
        "hold": a.hold,
        "connect_secs": round3(connect_secs),
        "rss_before_bytes": before,
        "rss_open_bytes": after_open,
        "rss_end_bytes": end,
        "hello": a.hello,
        "tcp_mem_before_bytes": tcp_before,
        "tcp_mem_end_bytes": tcp_end,
        "slab_before_bytes": slab_before,
        "slab_end_bytes": slab_end,
        "slab_per_socket_bytes": slab_per_socket.round(),
        "bytes_per_conn": per_conn.round(),
        "server_cpu_s": server_cpu,
        "gen_cpu_s": round3(cpu_end.own_cpu - cpu_before.own_cpu),
    });
    Ok(Report { json, human })
}

/// What the history page, and only it, carries.
const HISTORY: &[u8] = br#""type":"history""#;

/// Connects (as connection `n`: see [`wire::source_for`]), and with `hello` says it and reads until the history page
/// (the last reply to a `hello` that joins one room); the stream and the
/// bytes read past what was waited for.
async fn joined(
    target: &Target,
    hello: Option<&[u8]>,
    n: usize,
) -> std::io::Result<(tokio::net::TcpStream, Vec<u8>)> {
    let (mut stream, rest) = wire::connect_as(target, wire::source_for(target, n)).await?;
    let Some(hello) = hello else {
        return Ok((stream, rest));
    };
    stream.write_all(hello).await?;
    let mut rb = ReadBuf::new(rest, 1 << 20);
    loop {
        while let Some((f, payload)) = rb.next_frame()? {
            if f.opcode == OP_CLOSE {
                return Err(std::io::Error::other("server sent Close while joining"));
            }
            if f.opcode == OP_TEXT && payload.windows(HISTORY.len()).any(|w| w == HISTORY) {
                return Ok((stream, rb.into_rest()));
            }
        }
        if rb.fill(&mut stream).await? == 0 {
            return Err(std::io::Error::other("server closed while joining"));
        }
    }
}
