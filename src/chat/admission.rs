//! Who gets in: a slot for every TCP connection, from the moment it is
//! accepted, and an accept loop that waits instead of spinning when the
//! process is out of file descriptors.
//!
//! Every accepted socket costs a file descriptor and a task whether or
//! not it ever sends a request, so the limits count sockets, not chat
//! sessions: a TLS handshake in progress, a request head still arriving,
//! a page being served and a WebSocket all hold one [`Slot`], taken in the
//! accept loop and given back when the connection's task drops it. Three
//! limits ([`Limits`]):
//!
//! - all open sockets (`max_connections`): beyond it the server is full
//!   (HTTP 503);
//! - open sockets from one client address (`max_per_ip`), so one client
//!   cannot take every slot from everyone else (HTTP 429);
//! - sockets from one address that have not yet finished the WebSocket
//!   upgrade (`max_handshakes_per_ip`): each may sit for the whole request
//!   timeout without sending a byte, which makes them the cheap way to hold
//!   slots (HTTP 429).
//!
//! An IPv6 client is counted by its /64: one host usually holds a whole
//! /64 (RFC 4291 §2.5.1, RFC 7421) and can pick a fresh address from it
//! for every connection. An IPv4-mapped IPv6 address counts as its IPv4
//! address. Loopback is not exempt: a local process can exhaust the
//! server as well as a remote one, and tests that need many loopback
//! connections say so (`max_per_ip: 0`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::metrics::Metrics;

/// The limits on open sockets (see the module doc). `0` lifts a per-IP
/// limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// All open sockets.
    pub max_connections: usize,
    /// Open sockets per client address (IPv6: per /64).
    pub max_per_ip: usize,
    /// Sockets per client address not yet upgraded to a WebSocket.
    pub max_handshakes_per_ip: usize,
}

/// Why a connection was refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` sockets are open.
    Full,
    /// `max_per_ip` sockets are open from this client's address.
    PerIp,
    /// `max_handshakes_per_ip` sockets from this address have not yet
    /// finished their handshake.
    Handshakes,
}

/// Open sockets from one address.
#[derive(Debug, Default)]
struct PerIp {
    open: usize,
    handshakes: usize,
}

#[derive(Debug, Default)]
struct State {
    open: usize,
    handshakes: usize,
    ips: HashMap<IpAddr, PerIp>,
}

/// The counts behind the limits, shared by the accept loop (which takes
/// slots) and the connections' tasks (which give them back).
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

/// The address a client is counted under: IPv4 as it is, IPv6 by its /64.
pub(super) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Whether `count` has reached `limit` (`0`: no limit).
fn at(limit: usize, count: usize) -> bool {
    limit != 0 && count >= limit
}

impl Admission {
    /// No socket open yet.
    pub fn new(limits: Limits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(State::default()),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The counts are updated in single statements under the lock, so a
        // panic elsewhere cannot leave them half-changed.
        super::lock(&self.state)
    }

    /// A slot for a socket just accepted from `ip`, counted as a handshake
    /// until [`Slot::upgraded`]; or why not. The server-wide limit is
    /// checked first, so a full server says so (503) to everyone.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = client_key(ip);
        let mut state = self.lock();
        if state.open >= self.limits.max_connections {
            return Err(Refusal::Full);
        }
        let per_ip = state.ips.get(&key);
        if at(self.limits.max_per_ip, per_ip.map_or(0, |p| p.open)) {
            return Err(Refusal::PerIp);
        }
        if at(
            self.limits.max_handshakes_per_ip,
            per_ip.map_or(0, |p| p.handshakes),
        ) {
            return Err(Refusal::Handshakes);
        }
        let per_ip = state.ips.entry(key).or_default();
        per_ip.open += 1;
        per_ip.handshakes += 1;
        state.open += 1;
        state.handshakes += 1;
        self.publish(&state);
        Ok(Slot {
            admission: self.clone(),
            key,
            handshaking: true,
        })
    }

    /// Copies the totals to `/metrics` (under the lock, so they never
    /// show a moment that did not happen).
    fn publish(&self, state: &State) {
        self.metrics.sockets.set(state.open as u64);
        self.metrics.handshakes.set(state.handshakes as u64);
    }
}

/// One open socket's place in the counts, given back on drop.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    key: IpAddr,
    handshaking: bool,
}

impl Slot {
    /// The socket is a WebSocket now (past the 101): it no longer counts
    /// against `max_handshakes_per_ip`.
    pub fn upgraded(&mut self) {
        if std::mem::take(&mut self.handshaking) {
            let mut state = self.admission.lock();
            state.handshakes -= 1;
            if let Some(p) = state.ips.get_mut(&self.key) {
                p.handshakes -= 1;
            }
            self.admission.publish(&state);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        state.open -= 1;
        if self.handshaking {
            state.handshakes -= 1;
        }
        if let Some(p) = state.ips.get_mut(&self.key) {
            p.open -= 1;
            if self.handshaking {
                p.handshakes -= 1;
            }
            // Forget the address with its last socket: the map holds only
            // addresses with sockets open, so it is bounded by them.
            if p.open == 0 {
                state.ips.remove(&self.key);
            }
        }
        self.admission.publish(&state);
    }
}

/// The first wait after a failed `accept`.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest wait: descriptors freed by closing connections are used
/// within a second.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per this long, however fast accepts fail.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// What to do after `accept` fails with something other than a single
/// connection's trouble: out of file descriptors (EMFILE, ENFILE) or of
/// kernel memory (ENOBUFS, ENOMEM). The listening socket stays readable
/// while the backlog holds connections, so retrying at once would spin a
/// core and starve the connections whose closing would free a descriptor.
/// The wait starts at 10 ms and doubles up to 1 s; a successful accept
/// resets it. Time comes in as an argument.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    delay: Option<Duration>,
    unlogged: u64,
    last_log: Option<Instant>,
}

impl AcceptBackoff {
    /// An accept succeeded: the next failure waits the least again.
    pub fn success(&mut self) {
        self.delay = None;
    }

    /// An accept failed at `now`: how long to wait before the next, and,
    /// when it is time to log (at most once a second), how many failures
    /// there were since the last line.
    pub fn failure(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let delay = self.delay.map_or(BACKOFF_MIN, |d| (d * 2).min(BACKOFF_MAX));
        self.delay = Some(delay);
        self.unlogged += 1;
        let due = self
            .last_log
            .is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY);
        if due {
            self.last_log = Some(now);
            (delay, Some(std::mem::take(&mut self.unlogged)))
        } else {
            (delay, None)
        }
    }
}

/// Whether an `accept` error is one connection's (it was reset before we
/// took it): the next accept may succeed at once, no wait needed.
pub fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_connections: usize, max_per_ip: usize, hs: usize) -> Arc<Admission> {
        Admission::new(
            Limits {
                max_connections,
                max_per_ip,
                max_handshakes_per_ip: hs,
            },
            Arc::default(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_server_limit_counts_every_socket_and_frees_on_drop() {
        let a = admission(2, 0, 0);
        let one = a.admit(ip("10.0.0.1")).unwrap();
        let _two = a.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(a.admit(ip("10.0.0.3")).unwrap_err(), Refusal::Full);
        drop(one);
        assert!(a.admit(ip("10.0.0.3")).is_ok());
        assert_eq!(a.metrics.sockets.get(), 1, "the admitted one was dropped");
    }

    #[test]
    fn one_address_cannot_take_more_than_its_share() {
        let a = admission(100, 3, 0);
        let held: Vec<_> = (0..3).map(|_| a.admit(ip("127.0.0.1")).unwrap()).collect();
        assert_eq!(a.admit(ip("127.0.0.1")).unwrap_err(), Refusal::PerIp);
        assert!(
            a.admit(ip("127.0.0.2")).is_ok(),
            "another address is not affected"
        );
        drop(held);
        assert!(a.admit(ip("127.0.0.1")).is_ok());
        assert_eq!(
            a.lock().ips.len(),
            0,
            "addresses are forgotten with their sockets"
        );
    }

    #[test]
    fn handshakes_in_flight_are_limited_apart_from_open_sockets() {
        let a = admission(100, 10, 2);
        let mut first = a.admit(ip("10.0.0.1")).unwrap();
        let _second = a.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(a.admit(ip("10.0.0.1")).unwrap_err(), Refusal::Handshakes);
        first.upgraded();
        first.upgraded(); // twice is once
        let _third = a.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(a.metrics.handshakes.get(), 2);
        assert_eq!(a.metrics.sockets.get(), 3);
        drop(first);
        assert_eq!(a.metrics.handshakes.get(), 2);
        assert_eq!(a.metrics.sockets.get(), 2);
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let a = admission(100, 1, 0);
        let _held = a.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            a.admit(ip("2001:db8:1:2:ffff::9")).unwrap_err(),
            Refusal::PerIp
        );
        assert!(a.admit(ip("2001:db8:1:3::1")).is_ok());
        let _v4 = a.admit(ip("192.0.2.7")).unwrap();
        assert_eq!(a.admit(ip("::ffff:192.0.2.7")).unwrap_err(), Refusal::PerIp);
    }

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets_on_success() {
        let mut b = AcceptBackoff::default();
        let t = Instant::now();
        let waits: Vec<_> = (0..9).map(|_| b.failure(t).0.as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.success();
        assert_eq!(b.failure(t).0, BACKOFF_MIN);
    }

    #[test]
    fn accept_failures_are_logged_at_most_once_a_second_with_their_count() {
        let mut b = AcceptBackoff::default();
        let t = Instant::now();
        assert_eq!(b.failure(t).1, Some(1), "the first is logged at once");
        for ms in [1, 100, 999] {
            assert_eq!(b.failure(t + Duration::from_millis(ms)).1, None);
        }
        assert_eq!(b.failure(t + Duration::from_millis(1000)).1, Some(4));
        assert_eq!(b.failure(t + Duration::from_millis(1500)).1, None);
    }
}
