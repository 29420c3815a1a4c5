//! `loadgen`: the load generator of the benchmarks (issue 6).
//!
//! Three scenarios, each bounded in connections and time, each stopping by
//! itself, each refusing any address but loopback:
//!
//! - `echo`: N connections, each keeping K messages of S bytes in flight;
//!   measures the round trip of every message.
//! - `broadcast`: N subscribers and M senders at R messages a second each;
//!   every message carries its sender, sequence number and send time, and
//!   every subscriber must get every message, in order.
//! - `idle`: N connections held open; the server's RSS per connection.
//!
//! Each run prints one JSON line (for `compare.sh`) and one line for people.
//! Given the server's PID, the generator also reads the server's CPU time
//! and RSS at the start and end of the measured window, so the table can
//! say which side was saturated.
//!
//! The generator runs on one thread (tokio's current-thread runtime): with
//! the server pinned to one core and the generator to the other, one core is
//! all it gets, and one thread wastes none of it on synchronisation.
#![forbid(unsafe_code)]

mod broadcast;
mod echo;
mod hist;
mod idle;
mod procfs;
mod wire;

use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "WebSocket load generator (loopback only)")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// N connections, K messages in flight on each; round-trip latency.
    Echo(echo::Args),
    /// N subscribers, M senders at R msgs/s each; latency, loss, order.
    Broadcast(broadcast::Args),
    /// N idle connections; the server's RSS per connection.
    Idle(idle::Args),
}

/// How broadcast messages are wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    /// A text frame, relayed as is to every connection.
    Raw,
    /// rfc6455's chat protocol (docs/PROTOCOL.md): `msg` to room `general`.
    Chat,
    /// Socket.IO v4 over Engine.IO v4, WebSocket transport only:
    /// `42["chat message", ...]`.
    Socketio,
}

/// Nanoseconds since the generator started: the clock of every timestamp.
pub fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Hard bounds, so a typo cannot turn into a flood.
pub const MAX_CONNS: usize = 20_000;
pub const MAX_SECS: u64 = 600;

fn main() -> ExitCode {
    now_ns();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.scenario {
            Scenario::Echo(a) => echo::run(a).await,
            Scenario::Broadcast(a) => broadcast::run(a).await,
            Scenario::Idle(a) => idle::run(a).await,
        }
    });
    // Connections still open are dropped with the runtime; no task outlives
    // this.
    drop(runtime);
    match result {
        Ok(report) => {
            println!("{}", report.json);
            println!("# {}", report.human);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The outcome of a run: one JSON object and a line for people.
pub struct Report {
    pub json: Value,
    pub human: String,
}

/// Fields every scenario reports: latency quantiles (µs), CPU and
/// saturation. `secs` is the measured window.
pub fn common_fields(
    h: &hist::Histogram,
    secs: f64,
    start: &procfs::Sample,
    end: &procfs::Sample,
) -> Value {
    let us = |q: f64| h.quantile(q) as f64 / 1000.0;
    let gen_cpu = end.own_cpu - start.own_cpu;
    let server_cpu = match (start.server_cpu, end.server_cpu) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    // A side that used 90 % or more of its one core was the limit.
    let server_busy = server_cpu.map(|s| s / secs >= 0.9);
    let gen_busy = gen_cpu / secs >= 0.9;
    let saturated = match (server_busy, gen_busy) {
        (Some(true), true) => "both",
        (Some(true), false) => "server-bound",
        (_, true) => "generator-bound",
        (Some(false), false) => "neither (latency-bound)",
        (None, false) => "unknown",
    };
    json!({
        "latency_samples": h.count(),
        "p50_us": us(0.5),
        "p99_us": us(0.99),
        "p999_us": us(0.999),
        "max_us": h.max() as f64 / 1000.0,
        "gen_cpu_s": round3(gen_cpu),
        "server_cpu_s": server_cpu.map(round3),
        "server_rss_bytes": end.server_rss,
        "saturated": saturated,
    })
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Merges `extra` into the object `base`.
pub fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// The human line's latency part.
pub fn latency_text(v: &Value) -> String {
    format!(
        "p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs; generator CPU {:.2} s, server CPU {}: {}",
        v["p50_us"].as_f64().unwrap_or(0.0),
        v["p99_us"].as_f64().unwrap_or(0.0),
        v["p999_us"].as_f64().unwrap_or(0.0),
        v["gen_cpu_s"].as_f64().unwrap_or(0.0),
        v["server_cpu_s"]
            .as_f64()
            .map_or("?".to_string(), |s| format!("{s:.2} s")),
        v["saturated"].as_str().unwrap_or("?"),
    )
}
