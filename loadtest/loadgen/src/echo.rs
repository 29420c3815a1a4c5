//! `echo`: N connections, each with K messages of S bytes in flight.
//!
//! Each connection writes K copies of one pre-encoded frame, then for every
//! echo that comes back writes the same bytes again, so the client's cost
//! per message is a parse and a copy. Echoes come back in order on a
//! connection, so the send times wait in a queue and the payload carries
//! nothing. A message's latency is from the write that carried it to the
//! read that brought its echo; all messages of one read share its time.
//!
//! The first `--warmup` seconds are not measured (connections are made,
//! buffers grow), then `--secs` are. After that no new message is sent and
//! the ones in flight are drained, uncounted, for at most 5 s.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::timeout_at;

use crate::hist::Histogram;
use crate::wire::{self, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, ReadBuf, Target};
use crate::{MAX_CONNS, MAX_SECS, Report, common_fields, latency_text, merge, procfs};

#[derive(clap::Args)]
pub struct Args {
    /// ws://127.0.0.1:PORT/PATH
    #[arg(long)]
    url: String,
    /// Connections.
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Send binary frames (text by default).
    #[arg(long)]
    binary: bool,
    /// No WebSocket: connect without a handshake and write bare payloads
    /// of `--size` bytes, each echo complete when as many bytes came back.
    /// For the raw TCP echo peer (`peer-rawtcp`), the physical limit the
    /// WebSocket servers are measured against. The URL's path and
    /// `--binary` are ignored (bytes are bytes).
    #[arg(long)]
    raw: bool,
    /// The server's PID, to read its CPU time and RSS.
    #[arg(long)]
    pid: Option<u32>,
}

struct ConnResult {
    hist: Histogram,
    messages: u64,
}

pub async fn run(a: Args) -> Result<Report, String> {
    let target = Target::parse(&a.url)?;
    if a.conns == 0 || a.conns > MAX_CONNS || a.inflight == 0 || a.inflight > 1024 {
        return Err(format!("conns must be 1..={MAX_CONNS}, inflight 1..=1024"));
    }
    if a.secs == 0 || a.secs + a.warmup > MAX_SECS || a.size > 16 << 20 {
        return Err(format!("secs must be 1..={MAX_SECS}, size at most 16 MiB"));
    }
    if a.raw && a.size == 0 {
        return Err(
            "--raw needs --size of 1 byte or more (an empty echo has no bytes to count)".into(),
        );
    }
    // Printable bytes, so a text frame is valid UTF-8.
    let payload: Vec<u8> = (0..a.size).map(|i| b'a' + (i % 26) as u8).collect();
    let opcode = if a.binary { OP_BINARY } else { OP_TEXT };
    // Raw: what goes on the wire is the payload itself.
    let frame = Arc::new(if a.raw {
        payload.clone()
    } else {
        wire::encode(opcode, &payload)
    });

    // Connect everything first (at most 64 handshakes at a time), then
    // start every connection's clock together.
    let gate = Arc::new(Semaphore::new(64));
    let mut pending = Vec::with_capacity(a.conns);
    for _ in 0..a.conns {
        let target = target.clone();
        let gate = gate.clone();
        let raw = a.raw;
        pending.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            if raw {
                wire::connect_raw(&target).await.map(|s| (s, Vec::new()))
            } else {
                wire::connect(&target).await
            }
        }));
    }
    let mut conns = Vec::with_capacity(a.conns);
    let mut errors = 0u64;
    for p in pending {
        match p.await {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => {
                errors += 1;
                if errors == 1 {
                    eprintln!("loadgen: connect failed: {e}");
                }
            }
            Err(_) => errors += 1,
        }
    }
    if conns.is_empty() {
        return Err("no connection could be made".into());
    }

    let t0 = Instant::now();
    let measure_from = t0 + Duration::from_secs(a.warmup);
    let measure_to = measure_from + Duration::from_secs(a.secs);
    let mut tasks = Vec::with_capacity(conns.len());
    for (stream, rest) in conns {
        let frame = frame.clone();
        let inflight = a.inflight;
        let max = a.size + 64;
        let raw = a.raw;
        tasks.push(tokio::spawn(async move {
            if raw {
                return raw_connection(stream, &frame, inflight, measure_from, measure_to).await;
            }
            connection(
                stream,
                ReadBuf::new(rest, max),
                &frame,
                inflight,
                measure_from,
                measure_to,
            )
            .await
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let start = procfs::sample(a.pid);
    tokio::time::sleep_until(measure_to.into()).await;
    let end = procfs::sample(a.pid);

    let mut hist = Histogram::default();
    let mut messages = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(r)) => {
                hist.add(&r.hist);
                messages += r.messages;
            }
            Ok(Err(e)) => {
                errors += 1;
                if errors == 1 {
                    eprintln!("loadgen: connection failed: {e}");
                }
            }
            Err(_) => errors += 1,
        }
    }
    let secs = a.secs as f64;
    let rate = messages as f64 / secs;
    let common = common_fields(&hist, secs, &start, &end);
    let human = format!(
        "echo {} conns x {} in flight x {} B: {:.0} msgs/s; {}; {} errors",
        a.conns,
        a.inflight,
        a.size,
        rate,
        latency_text(&common),
        errors
    );
    let json = merge(
        json!({
            "scenario": "echo",
            "url": a.url,
            "raw": a.raw,
            "conns": a.conns,
            "inflight": a.inflight,
            "size": a.size,
            "secs": a.secs,
            "messages": messages,
            "msgs_per_s": rate.round(),
            "loss": 0,
            "errors": errors,
            "msgs_per_server_cpu_s": common["server_cpu_s"].as_f64().filter(|&c| c > 0.0).map(|c| (messages as f64 / c).round()),
        }),
        common,
    );
    Ok(Report { json, human })
}

/// The messages of one connection in flight, and what the measured window
/// recorded of them: the accounting both [`connection`] and
/// [`raw_connection`] do.
struct Flight<'a> {
    /// What one message is on the wire (a frame, or a bare payload).
    message: &'a [u8],
    /// Send times of the messages in flight, oldest first.
    sent: VecDeque<Instant>,
    measure_from: Instant,
    measure_to: Instant,
    hist: Histogram,
    messages: u64,
}

impl<'a> Flight<'a> {
    /// `inflight` messages, all sent now: returns them and their bytes.
    fn start(
        message: &'a [u8],
        inflight: usize,
        measure_from: Instant,
        measure_to: Instant,
    ) -> (Self, Vec<u8>) {
        let now = Instant::now();
        let mut out = Vec::with_capacity(message.len() * inflight);
        let mut sent = VecDeque::with_capacity(inflight);
        for _ in 0..inflight {
            out.extend_from_slice(message);
            sent.push_back(now);
        }
        let flight = Self {
            message,
            sent,
            measure_from,
            measure_to,
            hist: Histogram::default(),
            messages: 0,
        };
        (flight, out)
    }

    fn in_flight(&self) -> bool {
        !self.sent.is_empty()
    }

    /// The oldest message's echo came back at `now`: records it if inside
    /// the window, and (until the window ends) queues the next one to `out`.
    fn echoed(&mut self, now: Instant, out: &mut Vec<u8>) -> io::Result<()> {
        let Some(t) = self.sent.pop_front() else {
            return Err(io::Error::other("an echo nobody sent"));
        };
        if now >= self.measure_from && now < self.measure_to {
            self.hist.record(now.duration_since(t).as_nanos() as u64);
            self.messages += 1;
        }
        if now < self.measure_to {
            out.extend_from_slice(self.message);
            self.sent.push_back(now);
        }
        Ok(())
    }

    /// Echoes still missing 5 s after the window: stop waiting for them.
    fn give_up(&self) -> Instant {
        self.measure_to + Duration::from_secs(5)
    }

    fn result(self) -> ConnResult {
        ConnResult {
            hist: self.hist,
            messages: self.messages,
        }
    }
}

/// One read that must bring bytes before `give_up`: `None` when the time
/// is up (echoes still missing then are left), an error when the server
/// closed the connection.
async fn read_until(
    give_up: Instant,
    read: impl std::future::Future<Output = io::Result<usize>>,
) -> io::Result<Option<usize>> {
    match timeout_at(give_up.into(), read).await {
        Err(_) => Ok(None),
        Ok(Ok(0)) => Err(io::Error::other("server closed the connection")),
        Ok(r) => r.map(Some),
    }
}

async fn connection(
    mut stream: tokio::net::TcpStream,
    mut rb: ReadBuf,
    frame: &[u8],
    inflight: usize,
    measure_from: Instant,
    measure_to: Instant,
) -> io::Result<ConnResult> {
    let (mut flight, mut out) = Flight::start(frame, inflight, measure_from, measure_to);
    stream.write_all(&out).await?;
    let give_up = flight.give_up();
    while flight.in_flight() {
        if read_until(give_up, rb.fill(&mut stream)).await?.is_none() {
            break;
        }
        let now = Instant::now();
        out.clear();
        while let Some((f, payload)) = rb.next_frame()? {
            match f.opcode {
                // A whole message is back (a fragmented echo counts at its
                // last frame).
                OP_TEXT | OP_BINARY | 0 if f.fin => flight.echoed(now, &mut out)?,
                OP_PING => wire::encode_into(&mut out, OP_PONG, payload),
                OP_CLOSE => return Err(io::Error::other("server sent Close")),
                _ => {}
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
    }
    // Say goodbye (1000), without waiting for the reply.
    let _ = stream
        .write_all(&wire::encode(OP_CLOSE, &1000u16.to_be_bytes()))
        .await;
    Ok(flight.result())
}

/// [`connection`] without WebSocket: `inflight` payloads written, and each
/// payload's length in bytes that come back complete the oldest one. TCP keeps no
/// message boundaries, so an echo may arrive split over reads or several
/// in one; counting bytes is what makes the two the same.
async fn raw_connection(
    mut stream: tokio::net::TcpStream,
    payload: &[u8],
    inflight: usize,
    measure_from: Instant,
    measure_to: Instant,
) -> io::Result<ConnResult> {
    let (mut flight, mut out) = Flight::start(payload, inflight, measure_from, measure_to);
    stream.write_all(&out).await?;
    let size = payload.len();
    let mut buf = vec![0u8; (size * inflight).clamp(4096, 1 << 20)];
    // Bytes read past the last complete echo.
    let mut partial = 0usize;
    let give_up = flight.give_up();
    while flight.in_flight() {
        let Some(n) = read_until(give_up, stream.read(&mut buf)).await? else {
            break;
        };
        let now = Instant::now();
        out.clear();
        partial += n;
        while partial >= size {
            partial -= size;
            flight.echoed(now, &mut out)?;
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
    }
    Ok(flight.result())
}
