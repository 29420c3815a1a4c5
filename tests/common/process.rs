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
/// Between the release and the child's bind another test may take it:
/// [`Spawned::listening_itself`] checks who listens, and a test that needs
/// a port where connections are refused uses [`refusing_port`].
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A loopback port where connections are refused for as long as the
/// socket returned lives: it is bound but never listens, so a connection
/// gets a RST, and (without `SO_REUSEADDR`) nobody else can bind it in
/// the meantime, as they could a port [`free_port`] released.
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind a loopback port");
    let port = socket.local_addr().expect("its address").port();
    (socket, port)
}

/// Whether process `pid` itself holds a socket listening on TCP `port`:
/// the inodes of the listening sockets (state 0A) in /proc/net/tcp and
/// tcp6, against the `socket:[INODE]` links of /proc/PID/fd.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1).and_then(|a| a.rsplit_once(':'));
            let port_here = local.and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if port_here == Some(port)
                && f.get(3) == Some(&"0A")
                && let Some(inode) = f.get(9)
            {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|link| inodes.iter().any(|i| link.as_os_str() == i.as_str()))
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
        spawned
            .wait_until(what, || async { TcpStream::connect(addr).await.is_ok() })
            .await;
        spawned
    }

    /// As [`Spawned::listening`], but only once the process itself
    /// listens on `addr`'s port ([`listens_on`]): a [`free_port`] another
    /// test took in the meantime is not taken for the child's.
    pub async fn listening_itself(command: &mut Command, addr: SocketAddr, what: &str) -> Spawned {
        let spawned = Spawned::start(command, what);
        let pid = spawned.pid();
        spawned
            .wait_until(what, || async move { listens_on(pid, addr.port()) })
            .await;
        spawned
    }

    /// Polls `ready` until it holds, for at most [`START_TIMEOUT`].
    async fn wait_until<F: std::future::Future<Output = bool>>(
        &self,
        what: &str,
        ready: impl Fn() -> F,
    ) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !ready().await {
            assert!(Instant::now() < deadline, "{what} did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
