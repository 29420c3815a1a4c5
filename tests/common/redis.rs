//! A real `redis-server` on a free loopback port, for the scale-out
//! tests (`cluster*.rs`), and a probe that waits for a server's answer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::process::{Spawned, cpu_seconds, free_port};

/// How long a server has to come up.
const WAIT: Duration = Duration::from_secs(10);

/// Waits until `addr` accepts TCP and answers `probe` with a line
/// starting with `expect`.
pub async fn wait_for(addr: SocketAddr, probe: &[u8], expect: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(mut s) = TcpStream::connect(addr).await {
            let _ = s.write_all(probe).await;
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            let until = tokio::time::Instant::now() + Duration::from_secs(1);
            while let Ok(Ok(n @ 1..)) = tokio::time::timeout_at(until, s.read(&mut buf)).await {
                got.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&got).contains(expect) {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "{addr} did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `redis-server` with an append-only file fsynced at every write, so a
/// SIGKILL loses nothing Redis acknowledged.
pub struct Redis {
    port: u16,
    dir: PathBuf,
    process: Option<Spawned>,
}

impl Redis {
    /// A fresh one, its files under a directory named after `name`.
    pub async fn start(name: &str) -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: super::temp_dir("redis", name),
            process: None,
        };
        r.spawn().await;
        r
    }

    /// Starts (or restarts) the process, and waits for its PONG.
    pub async fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null());
        let what = "redis-server (scripts/check.sh installs Debian's redis-server)";
        self.process = Some(Spawned::start(&mut command, what));
        wait_for(self.addr(), b"PING\r\n", "+PONG").await;
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its URL, for `--redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs it.
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// CPU seconds the server has used (user + system), from /proc.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.process.as_ref().map_or(0, Spawned::pid))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
