//! `rfc6455 chat --redis` processes, on a `redis-server` of
//! [`super::redis`] (`tests/cluster.rs`, `tests/cluster_moderation.rs`).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use super::chat::Client;
use super::process::{Spawned, free_addr, rfc6455};
use super::redis::{Redis, wait_for};
use super::server::{http_get, metric};

pub const WAIT: Duration = Duration::from_secs(10);
/// What the servers here take as a dead server's silence.
pub const PRESENCE_TTL: Duration = Duration::from_millis(1500);

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
