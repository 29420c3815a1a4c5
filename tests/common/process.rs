//! Processes the tests start: this package's binary and others, killed
//! by their PIDs when dropped; and what they cost, read from /proc (Linux).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// Resident set size in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds used so far (user + system), from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th fields of the whole line, in clock ticks: USER_HZ,
    // which Linux fixes at 100 for /proc whatever the kernel's own HZ.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

/// A free loopback port: bound, noted, released for a child to bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Open file descriptors of process `pid` (the entries of /proc/PID/fd).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A loopback address with a free port (see [`free_port`]).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// This package's binary, `rfc6455`, logging at `log` (`RUST_LOG`), its
/// output thrown away unless the caller redirects it.
pub fn rfc6455(log: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rfc6455"));
    command
        .env("RUST_LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// How long a server we started may take to listen: a debug build on a
/// busy two-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A process we started, killed (SIGKILL, by the PID we were given) and
/// reaped when dropped.
pub struct Spawned(Child);

impl Spawned {
    /// Starts `command`; panics, naming `what`, if it cannot.
    pub fn start(command: &mut Command, what: &str) -> Spawned {
        Spawned(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("start {what}: {e}")),
        )
    }

    /// Starts `command` and waits until `addr` accepts TCP connections.
    pub async fn listening(command: &mut Command, addr: SocketAddr, what: &str) -> Spawned {
        let spawned = Spawned::start(command, what);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "{what} did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        spawned
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL: no flush, no goodbye. Once it is dead, does nothing.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM: a graceful stop.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}
