//! Scale-out test helpers: a real `redis-server` on a free loopback port
//! and `rfc6455 chat --redis` processes on it (`tests/cluster.rs`,
//! `tests/cluster_moderation.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::chat::Client;
use super::process::{Spawned, cpu_seconds, free_addr, free_port, rfc6455};
use super::server::{http_get, metric};

pub const WAIT: Duration = Duration::from_secs(10);
/// What the servers here take as a dead server's silence.
pub const PRESENCE_TTL: Duration = Duration::from_millis(1500);

pub fn temp_dir(name: &str) -> PathBuf {
    super::temp_dir("cluster", name)
}

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
    pub port: u16,
    pub dir: PathBuf,
    pub process: Option<Spawned>,
}

impl Redis {
    pub async fn start(name: &str) -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: temp_dir(name),
            process: None,
        };
        r.spawn().await;
        r
    }

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

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

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

/// A `rfc6455 chat --redis` process.
pub struct Chat {
    pub addr: SocketAddr,
    pub process: Option<Spawned>,
}

impl Chat {
    pub async fn start(redis: &Redis) -> Chat {
        Chat::start_with_url(&redis.url()).await
    }

    pub async fn start_with_url(redis_url: &str) -> Chat {
        Chat::start_opts(redis_url, PRESENCE_TTL).await
    }

    pub async fn start_opts(redis_url: &str, presence_ttl: Duration) -> Chat {
        Chat::start_with_args(redis_url, presence_ttl, &[]).await
    }

    /// A server with more arguments of `rfc6455 chat` (`--jwt-secret S`).
    pub async fn start_with_args(redis_url: &str, presence_ttl: Duration, extra: &[&str]) -> Chat {
        let addr = free_addr();
        let log = std::env::var("CHAT_LOG").unwrap_or_else(|_| "error".into());
        let mut command = rfc6455(&log);
        command
            .args(["chat", "--listen", &addr.to_string(), "--redis", redis_url])
            .args(["--no-rate-limit", "--no-deflate"])
            // The load test opens its subscribers at once, all from
            // 127.0.0.1.
            .args(["--max-per-ip", "0", "--max-handshakes-per-ip", "0"])
            .args(["--presence-ttl-ms", &presence_ttl.as_millis().to_string()])
            .args(extra)
            .stderr(Stdio::inherit());
        let process = Some(Spawned::start(&mut command, "rfc6455 chat --redis"));
        let chat = Chat { addr, process };
        chat.wait_healthy().await;
        chat
    }

    /// Waits until `/healthz` says `ok` (Redis reached, subscription proven).
    pub async fn wait_healthy(&self) {
        wait_for(
            self.addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            "\r\n\r\nok",
        )
        .await;
    }

    pub async fn get(&self, path: &str) -> String {
        http_get(self.addr, path).await
    }

    /// A metric's value from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        metric(&self.get("/metrics").await, name)
    }

    pub fn kill(&mut self) {
        self.process = None;
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, Spawned::pid)
    }

    /// SIGTERM: a graceful stop.
    pub fn terminate(&self) {
        self.process.as_ref().expect("running").terminate();
    }

    pub async fn client(&self, hello: Value) -> (Client, Value) {
        Client::connect(self.addr, "/ws", hello).await
    }

    /// One connection per nick, each past its `hello`.
    pub async fn users(&self, nicks: impl IntoIterator<Item = String>) -> Vec<Client> {
        let mut users = Vec::new();
        for nick in nicks {
            users.push(self.client(json!({"type": "hello", "nick": nick})).await.0);
        }
        users
    }
}
