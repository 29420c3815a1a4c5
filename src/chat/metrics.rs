//! Counters for `/metrics`, in the Prometheus text format (version 0.0.4).

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    /// Takes one away.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    /// Sets the value.
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A latency summary: count, sum and maximum, in microseconds.
#[derive(Debug, Default)]
pub struct Latency {
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Latency {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }
}

/// Everything `/metrics` reports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// WebSocket connections accepted since start.
    pub connections_total: Counter,
    /// TCP connections refused because `max_connections` sockets were
    /// open (HTTP 503).
    pub connections_refused: Counter,
    /// Open TCP connections of every kind: TLS and HTTP handshakes in
    /// progress, page requests and WebSockets (what `max_connections`
    /// counts).
    pub sockets: Gauge,
    /// Open TCP connections not yet upgraded to a WebSocket.
    pub handshakes: Gauge,
    /// TCP connections refused because their address had `max_per_ip`
    /// open (HTTP 429).
    pub refused_per_ip: Counter,
    /// TCP connections refused because their address had
    /// `max_handshakes_per_ip` handshakes in flight (HTTP 429).
    pub refused_handshakes: Counter,
    /// WebSocket handshakes refused for their `Origin` (HTTP 403).
    pub origin_refused: Counter,
    /// `accept` failures (out of file descriptors, mostly).
    pub accept_errors: Counter,
    /// Connections that negotiated permessage-deflate (RFC 7692).
    pub connections_deflate: Counter,
    /// Connections recording their frames for the page's wire panel
    /// (issue 22).
    pub wire_connections: Gauge,
    /// Frames received from clients.
    pub messages_in: Counter,
    /// Frames queued to clients.
    pub messages_out: Counter,
    /// Bytes queued to clients.
    pub bytes_out: Counter,
    /// Ephemeral events (typing, presence) dropped for full queues.
    pub drops: Counter,
    /// Connections closed with 1013 because they read too slowly.
    pub slow_closes: Counter,
    /// Requests refused with an `error` event.
    pub errors: Counter,
    /// Rooms in memory (with members, or left a moment ago).
    pub rooms: Gauge,
    /// From accepting a message to its commit in SQLite.
    pub history_write: Latency,
    /// Failed history commits.
    pub history_write_errors: Counter,
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, u64); 19] = [
            (
                "chat_connections",
                "gauge",
                "Open WebSocket connections.",
                self.connections.get(),
            ),
            (
                "chat_connections_total",
                "counter",
                "WebSocket connections accepted.",
                self.connections_total.get(),
            ),
            (
                "chat_connections_deflate_total",
                "counter",
                "WebSocket connections with permessage-deflate.",
                self.connections_deflate.get(),
            ),
            (
                "chat_wire_connections",
                "gauge",
                "WebSocket connections recording their frames for the wire panel.",
                self.wire_connections.get(),
            ),
            (
                "chat_connections_refused_total",
                "counter",
                "TCP connections refused: max-connections sockets open (503).",
                self.connections_refused.get(),
            ),
            (
                "chat_sockets",
                "gauge",
                "Open TCP connections: handshakes, page requests and WebSockets.",
                self.sockets.get(),
            ),
            (
                "chat_handshakes",
                "gauge",
                "Open TCP connections not yet upgraded to a WebSocket.",
                self.handshakes.get(),
            ),
            (
                "chat_refused_per_ip_total",
                "counter",
                "TCP connections refused: max-per-ip sockets open from the address (429).",
                self.refused_per_ip.get(),
            ),
            (
                "chat_refused_handshakes_per_ip_total",
                "counter",
                "TCP connections refused: max-handshakes-per-ip in flight from the address (429).",
                self.refused_handshakes.get(),
            ),
            (
                "chat_origin_refused_total",
                "counter",
                "WebSocket handshakes refused for their Origin (403).",
                self.origin_refused.get(),
            ),
            (
                "chat_accept_errors_total",
                "counter",
                "Failed accepts (out of file descriptors, mostly).",
                self.accept_errors.get(),
            ),
            (
                "chat_messages_in_total",
                "counter",
                "Frames received from clients.",
                self.messages_in.get(),
            ),
            (
                "chat_messages_out_total",
                "counter",
                "Frames queued to clients.",
                self.messages_out.get(),
            ),
            (
                "chat_bytes_out_total",
                "counter",
                "Bytes queued to clients.",
                self.bytes_out.get(),
            ),
            (
                "chat_drops_total",
                "counter",
                "Ephemeral events dropped for full queues.",
                self.drops.get(),
            ),
            (
                "chat_slow_consumer_closes_total",
                "counter",
                "Connections closed (1013) for reading too slowly.",
                self.slow_closes.get(),
            ),
            (
                "chat_errors_total",
                "counter",
                "Requests refused with an error event.",
                self.errors.get(),
            ),
            ("chat_rooms", "gauge", "Rooms in memory.", self.rooms.get()),
            (
                "chat_history_write_errors_total",
                "counter",
                "Failed history commits.",
                self.history_write_errors.get(),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            write(&mut out, name, kind, help, value);
        }
        let h = &self.history_write;
        let seconds = |us: &AtomicU64| us.load(Relaxed) as f64 / 1e6;
        write_samples(
            &mut out,
            "chat_history_write_seconds",
            "summary",
            "From accepting a message to its commit.",
            &[
                ("_sum", &seconds(&h.sum_us)),
                ("_count", &h.count.load(Relaxed)),
            ],
        );
        write(
            &mut out,
            "chat_history_write_seconds_max",
            "gauge",
            "Longest write so far.",
            seconds(&h.max_us),
        );
        out
    }
}

/// One metric in the text exposition: its help, its type, its value.
pub fn write(out: &mut String, name: &str, kind: &str, help: &str, value: impl Display) {
    write_samples(out, name, kind, help, &[("", &value)]);
}

/// One metric family: its help and type lines, then a line per sample,
/// named `name` and the sample's suffix (a summary's `_sum` and
/// `_count`). Every line of `/metrics` is written here.
pub fn write_samples(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(&str, &dyn Display)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (suffix, value) in samples {
        let _ = writeln!(out, "{name}{suffix} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text format (version 0.0.4): each family's `# HELP` and
    /// `# TYPE`, then its samples; a summary's `_sum` and `_count` share
    /// one family.
    #[test]
    fn render_writes_each_family_in_the_text_format() {
        let m = Metrics::default();
        m.connections.inc();
        m.history_write.observe(Duration::from_micros(1500));
        let text = m.render();
        assert!(text.starts_with(
            "# HELP chat_connections Open WebSocket connections.\n# TYPE chat_connections gauge\nchat_connections 1\n# HELP chat_connections_total "
        ));
        assert!(text.ends_with(
            "chat_history_write_errors_total 0\n# HELP chat_history_write_seconds From accepting a message to its commit.\n# TYPE chat_history_write_seconds summary\nchat_history_write_seconds_sum 0.0015\nchat_history_write_seconds_count 1\n# HELP chat_history_write_seconds_max Longest write so far.\n# TYPE chat_history_write_seconds_max gauge\nchat_history_write_seconds_max 0.0015\n"
        ));
        assert_eq!(text.matches("# TYPE ").count(), 21);
    }
}
