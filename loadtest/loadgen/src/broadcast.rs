//! `broadcast`: N subscribers, M senders at R messages a second each.
//!
//! Every message carries `L:<sender>:<seq>:<send time in ns>:` and padding
//! to `--size` bytes, wrapped as the protocol wants (a bare text frame, a
//! chat `msg`, a Socket.IO event). The server is to deliver each message to
//! every connection (senders included: `io.emit` and the chat do). Each
//! subscriber records latency from the send time (one clock: senders and
//! subscribers live in this process), counts what it got, and checks that
//! each sender's sequence only goes up. Loss is what was sent times the
//! number of subscribers, less what they got.
//!
//! Order of a run: connect and join every subscriber, then every sender;
//! send for `--secs`; wait until every subscriber has everything or 5 s
//! have passed; stop.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, timeout};

use crate::hist::Histogram;
use crate::wire::{self, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, ReadBuf, Target};
use crate::{
    MAX_CONNS, MAX_SECS, Proto, Report, common_fields, latency_text, merge, now_ns, procfs,
};

#[derive(clap::Args)]
pub struct Args {
    /// ws://127.0.0.1:PORT/PATH (for socketio: ws://127.0.0.1:PORT; the
    /// Engine.IO path is added).
    #[arg(long)]
    url: String,
    /// Subscribers.
    #[arg(long, default_value_t = 500)]
    subs: usize,
    /// Senders.
    #[arg(long, default_value_t = 5)]
    senders: usize,
    /// Messages a second per sender.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// How messages are wrapped.
    #[arg(long, value_enum, default_value_t = Proto::Raw)]
    proto: Proto,
    /// Length of the marker plus padding, in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The server's PID, to read its CPU time and RSS.
    #[arg(long)]
    pid: Option<u32>,
}

/// What one subscriber saw.
#[derive(Default)]
struct SubStats {
    hist: Histogram,
    received: u64,
    out_of_order: u64,
}

pub async fn run(mut a: Args) -> Result<Report, String> {
    if a.proto == Proto::Socketio && !a.url.contains("/socket.io/") {
        a.url = format!(
            "{}/socket.io/?EIO=4&transport=websocket",
            a.url.trim_end_matches('/')
        );
    }
    let target = Target::parse(&a.url)?;
    if a.subs == 0 || a.subs + a.senders > MAX_CONNS || a.senders == 0 || a.senders > 1000 {
        return Err(format!(
            "subs 1.., senders 1..=1000, together at most {MAX_CONNS}"
        ));
    }
    if a.secs == 0 || a.secs > MAX_SECS || a.rate == 0 || a.rate > 100_000 || a.size > 4000 {
        return Err(format!(
            "secs 1..={MAX_SECS}, rate 1..=100000, size at most 4000 (the chat's limit is 4096)"
        ));
    }

    let received_total = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(64));

    // 1. Subscribers, all joined before anyone sends.
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(a.subs + a.senders);
    let mut subs = Vec::with_capacity(a.subs);
    for i in 0..a.subs {
        let (target, gate, ready, stop) = (
            target.clone(),
            gate.clone(),
            ready_tx.clone(),
            stop_rx.clone(),
        );
        let (proto, senders, total) = (a.proto, a.senders, received_total.clone());
        subs.push(tokio::spawn(async move {
            let (stream, rb) = {
                let _permit = gate.acquire().await;
                join(&target, proto, &format!("lg-sub{i}"), i).await?
            };
            let _ = ready.send(()).await;
            subscriber(stream, rb, proto, senders, stop, total).await
        }));
    }
    let joined = wait_ready(&mut ready_rx, a.subs, "subscribers").await?;

    // 2. Senders: join, then wait for the start.
    let (start_tx, start_rx) = watch::channel::<Option<Instant>>(None);
    let sent_total = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::with_capacity(a.senders);
    for id in 0..a.senders {
        let (target, ready, stop, start) = (
            target.clone(),
            ready_tx.clone(),
            stop_rx.clone(),
            start_rx.clone(),
        );
        let (proto, rate, secs, size, sent) = (a.proto, a.rate, a.secs, a.size, sent_total.clone());
        let n_senders = a.senders;
        let a_subs = a.subs;
        senders.push(tokio::spawn(async move {
            let (stream, rb) = join(&target, proto, &format!("lg-send{id}"), a_subs + id).await?;
            let _ = ready.send(()).await;
            let plan = SendPlan {
                id,
                senders: n_senders,
                rate,
                secs,
                size,
            };
            sender(stream, rb, proto, plan, start, stop, sent).await
        }));
    }
    drop(ready_tx);
    wait_ready(&mut ready_rx, a.senders, "senders").await?;

    // 3. Send for `secs`, then drain.
    let begin = procfs::sample(a.pid);
    let started = Instant::now();
    let _ = start_tx.send(Some(started + Duration::from_millis(10)));
    tokio::time::sleep(Duration::from_secs(a.secs) + Duration::from_millis(20)).await;
    let drain_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < drain_until {
        let expected = sent_total.load(Ordering::Relaxed) * joined as u64;
        if received_total.load(Ordering::Relaxed) >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let end = procfs::sample(a.pid);
    let _ = stop_tx.send(true);

    let mut hist = Histogram::default();
    let (mut received, mut out_of_order, mut errors) = (0u64, 0u64, 0u64);
    for s in subs {
        match s.await {
            Ok(Ok(st)) => {
                hist.add(&st.hist);
                received += st.received;
                out_of_order += st.out_of_order;
            }
            Ok(Err(e)) => {
                errors += 1;
                if errors == 1 {
                    eprintln!("loadgen: subscriber failed: {e}");
                }
            }
            Err(_) => errors += 1,
        }
    }
    for s in senders {
        if let Ok(Err(e)) = s.await {
            errors += 1;
            eprintln!("loadgen: sender failed: {e}");
        }
    }
    let sent = sent_total.load(Ordering::Relaxed);
    // Expected: every message to every subscriber that joined. A
    // subscriber that failed after joining has its missing messages lost.
    let expected = sent * joined as u64;
    let loss = expected.saturating_sub(received);
    let secs = a.secs as f64;
    let rate = received as f64 / secs;
    let common = common_fields(&hist, secs, &begin, &end);
    let human = format!(
        "broadcast {:?} {} subs x {} senders x {}/s: {} sent, {:.0} deliveries/s, loss {} of {}, {} out of order; {}; {} errors",
        a.proto,
        a.subs,
        a.senders,
        a.rate,
        sent,
        rate,
        loss,
        expected,
        out_of_order,
        latency_text(&common),
        errors
    );
    let json = merge(
        json!({
            "scenario": "broadcast",
            "proto": format!("{:?}", a.proto).to_lowercase(),
            "url": a.url,
            "subs": a.subs,
            "senders": a.senders,
            "rate": a.rate,
            "secs": a.secs,
            "size": a.size,
            "sent": sent,
            "expected": expected,
            "received": received,
            "messages": received,
            "msgs_per_s": rate.round(),
            "loss": loss,
            "out_of_order": out_of_order,
            "errors": errors,
            "msgs_per_server_cpu_s": common["server_cpu_s"].as_f64().filter(|&c| c > 0.0).map(|c| (received as f64 / c).round()),
        }),
        common,
    );
    Ok(Report { json, human })
}

async fn wait_ready(rx: &mut mpsc::Receiver<()>, n: usize, what: &str) -> Result<usize, String> {
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(())) => got += 1,
            Ok(None) | Err(_) => break,
        }
    }
    if got < n {
        return Err(format!("only {got} of {n} {what} joined within 60 s"));
    }
    Ok(got)
}

/// Connects and does what the protocol needs before messages flow.
/// Connects (as connection `n` of the run: see [`wire::source_for`]) and
/// joins as `nick`.
async fn join(
    target: &Target,
    proto: Proto,
    nick: &str,
    n: usize,
) -> io::Result<(TcpStream, ReadBuf)> {
    let (mut stream, rest) = wire::connect_as(target, wire::source_for(target, n)).await?;
    let mut rb = ReadBuf::new(rest, 1 << 20);
    let fut = async {
        match proto {
            Proto::Raw => Ok(()),
            Proto::Chat => {
                let hello = format!(r#"{{"type":"hello","nick":"{nick}"}}"#);
                stream
                    .write_all(&wire::encode(OP_TEXT, hello.as_bytes()))
                    .await?;
                // The history of `general` ends the join (docs/PROTOCOL.md).
                wait_for(&mut stream, &mut rb, |p| {
                    p.starts_with(br#"{"type":"history""#)
                })
                .await
            }
            Proto::Socketio => {
                // Engine.IO open packet `0{...}`, then connect to the main
                // namespace: `40`, answered by `40{"sid":...}`.
                wait_for(&mut stream, &mut rb, |p| p.starts_with(b"0{")).await?;
                stream.write_all(&wire::encode(OP_TEXT, b"40")).await?;
                wait_for(&mut stream, &mut rb, |p| p.starts_with(b"40")).await
            }
        }
    };
    timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| io::Error::other("join timed out"))??;
    Ok((stream, rb))
}

/// Reads until a text message matching `done` (answering pings meanwhile).
async fn wait_for(
    stream: &mut TcpStream,
    rb: &mut ReadBuf,
    done: impl Fn(&[u8]) -> bool,
) -> io::Result<()> {
    loop {
        let mut reply = Vec::new();
        let mut found = false;
        while let Some((f, payload)) = rb.next_frame()? {
            match f.opcode {
                OP_TEXT if done(payload) => found = true,
                OP_TEXT if payload == b"2" => wire::encode_into(&mut reply, OP_TEXT, b"3"),
                OP_PING => wire::encode_into(&mut reply, OP_PONG, payload),
                OP_CLOSE => return Err(io::Error::other("server sent Close while joining")),
                _ => {}
            }
        }
        if !reply.is_empty() {
            stream.write_all(&reply).await?;
        }
        if found {
            return Ok(());
        }
        if rb.fill(stream).await? == 0 {
            return Err(io::Error::other("server closed while joining"));
        }
    }
}

/// The marker in a delivered message: (sender, sequence, send time).
fn extract(proto: Proto, payload: &[u8]) -> Option<(usize, u64, u64)> {
    let rest = match proto {
        Proto::Raw => payload.strip_prefix(b"L:")?,
        Proto::Chat => {
            if !payload.starts_with(br#"{"type":"msg""#) {
                return None;
            }
            let key = br#""text":"L:"#;
            let at = payload.windows(key.len()).position(|w| w == key)?;
            &payload[at + key.len()..]
        }
        Proto::Socketio => payload.strip_prefix(br#"42["chat message","L:"#)?,
    };
    let mut parts = rest.splitn(4, |&b| b == b':');
    let mut num = || -> Option<u64> { std::str::from_utf8(parts.next()?).ok()?.parse().ok() };
    let sender = usize::try_from(num()?).ok()?;
    let seq = num()?;
    let ts = num()?;
    Some((sender, seq, ts))
}

async fn subscriber(
    mut stream: TcpStream,
    mut rb: ReadBuf,
    proto: Proto,
    senders: usize,
    mut stop: watch::Receiver<bool>,
    total: Arc<AtomicU64>,
) -> io::Result<SubStats> {
    let mut st = SubStats::default();
    let mut last_seq: Vec<Option<u64>> = vec![None; senders];
    let mut reply = Vec::new();
    loop {
        // Bytes already buffered (from the join) first, then read.
        let now = now_ns();
        let before = st.received;
        while let Some((f, payload)) = rb.next_frame()? {
            match f.opcode {
                OP_TEXT if f.fin => {
                    if let Some((sender, seq, ts)) = extract(proto, payload) {
                        st.hist.record(now.saturating_sub(ts));
                        st.received += 1;
                        if let Some(last) = last_seq.get_mut(sender) {
                            match *last {
                                Some(l) if seq <= l => st.out_of_order += 1,
                                _ => *last = Some(seq),
                            }
                        }
                    } else if proto == Proto::Socketio && payload == b"2" {
                        // Engine.IO ping: answer with a pong.
                        wire::encode_into(&mut reply, OP_TEXT, b"3");
                    }
                }
                OP_PING => wire::encode_into(&mut reply, OP_PONG, payload),
                OP_CLOSE => return Err(io::Error::other("server sent Close")),
                _ => {}
            }
        }
        total.fetch_add(st.received - before, Ordering::Relaxed);
        if !reply.is_empty() {
            stream.write_all(&reply).await?;
            reply.clear();
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return Ok(st),
            n = rb.fill(&mut stream) => {
                if n? == 0 {
                    return Err(io::Error::other("server closed the connection"));
                }
            }
        }
    }
}

struct SendPlan {
    id: usize,
    senders: usize,
    rate: u32,
    secs: u64,
    size: usize,
}

async fn sender(
    mut stream: TcpStream,
    mut rb: ReadBuf,
    proto: Proto,
    plan: SendPlan,
    mut start: watch::Receiver<Option<Instant>>,
    mut stop: watch::Receiver<bool>,
    sent: Arc<AtomicU64>,
) -> io::Result<()> {
    let begin = loop {
        if let Some(t) = *start.borrow_and_update() {
            break t;
        }
        if start.changed().await.is_err() {
            return Ok(());
        }
    };
    let until = begin + Duration::from_secs(plan.secs);
    let period = Duration::from_nanos(1_000_000_000 / u64::from(plan.rate));
    // Spread the senders over one period so they do not all fire at once.
    let offset = period.mul_f64(plan.id as f64 / plan.senders as f64);
    let mut tick = tokio::time::interval_at(begin + offset, period);
    // If the generator falls behind, catch up: the rate is the rate.
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut seq = 0u64;
    let mut sending = true;
    let mut text = String::with_capacity(plan.size + 64);
    let mut frame = Vec::with_capacity(plan.size + 80);
    let mut reply = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return Ok(()),
            now = tick.tick(), if sending => {
                if now >= until {
                    sending = false;
                    continue;
                }
                text.clear();
                message(&mut text, proto, plan.id, seq, now_ns(), plan.size);
                frame.clear();
                wire::encode_into(&mut frame, OP_TEXT, text.as_bytes());
                stream.write_all(&frame).await?;
                seq += 1;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            n = rb.fill(&mut stream) => {
                if n? == 0 {
                    return Err(io::Error::other("server closed a sender"));
                }
                // Senders get every broadcast too; they only answer pings.
                while let Some((f, payload)) = rb.next_frame()? {
                    match f.opcode {
                        OP_TEXT if proto == Proto::Socketio && payload == b"2" => {
                            wire::encode_into(&mut reply, OP_TEXT, b"3");
                        }
                        OP_PING => wire::encode_into(&mut reply, OP_PONG, payload),
                        _ => {}
                    }
                }
                if !reply.is_empty() {
                    stream.write_all(&reply).await?;
                    reply.clear();
                }
            }
        }
    }
}

/// Writes one message's text: the marker, padding, and the protocol's
/// wrapping.
fn message(out: &mut String, proto: Proto, sender: usize, seq: u64, ts: u64, size: usize) {
    use std::fmt::Write;
    let mut body = format!("L:{sender}:{seq}:{ts}:");
    while body.len() < size {
        body.push('x');
    }
    let _ = match proto {
        Proto::Raw => write!(out, "{body}"),
        Proto::Chat => write!(
            out,
            r#"{{"type":"msg","room":"general","text":"{body}","client_id":"{sender}-{seq}"}}"#
        ),
        Proto::Socketio => write!(out, r#"42["chat message","{body}"]"#),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_survive_each_wrapping() {
        for proto in [Proto::Raw, Proto::Socketio] {
            let mut s = String::new();
            message(&mut s, proto, 3, 17, 123_456_789, 64);
            assert_eq!(extract(proto, s.as_bytes()), Some((3, 17, 123_456_789)));
        }
        // The chat echoes the text inside its own `msg` event.
        let event = br#"{"type":"msg","room":"general","id":5,"from":"lg-send3","text":"L:3:17:99:xxxx","ts":1}"#;
        assert_eq!(extract(Proto::Chat, event), Some((3, 17, 99)));
        assert_eq!(
            extract(Proto::Chat, br#"{"type":"ack","client_id":"3-17","id":5}"#),
            None
        );
    }
}
