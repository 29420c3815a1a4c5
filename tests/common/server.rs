//! The chat server, `chat::serve`, in the test's own runtime on a free
//! loopback port; and what tests ask of a server over plain HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rfc6455::chat::{self, ChatConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::chat::Client;

/// A running `chat::serve`.
pub struct ChatServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    db: PathBuf,
}

impl ChatServer {
    /// Serves `config` until [`stop`](Self::stop).
    pub async fn start(config: ChatConfig) -> ChatServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let db = config.db.clone();
        let task = tokio::spawn(chat::serve(listener, config, async move {
            let _ = stopped.await;
        }));
        ChatServer {
            addr,
            stop: Some(stop),
            task,
            db,
        }
    }

    /// Shuts down gracefully (as on SIGTERM) and waits, at most 15 s, for
    /// `serve` to return, which it must do without an error; its database.
    pub async fn stop(mut self) -> PathBuf {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        self.db.clone()
    }

    /// Its `Host`: `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// A client connected to `/ws` that said `hello`, and its welcome.
    pub async fn client(&self, hello: Value) -> (Client, Value) {
        Client::connect(self.addr, "/ws", hello).await
    }
}

/// `GET path` on a connection of its own: the whole response, up to EOF;
/// what came before a failure (empty if none could connect).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    if s.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

/// The value of the metric `name` in a `/metrics` body; panics if it is
/// not there.
pub fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
}
