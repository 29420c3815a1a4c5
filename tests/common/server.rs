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
        Self::start_on(listener, config).await
    }

    /// Serves `config` on `listener` (bound where the test wants it).
    pub async fn start_on(listener: TcpListener, config: ChatConfig) -> ChatServer {
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

/// What an HTTP request got: the status, the head, and the body as JSON
/// (`Value::Null` if empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The response head, lines and all.
    pub head: String,
    /// The body, parsed.
    pub json: Value,
}

impl Answer {
    /// The `error` code of a JSON error body.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

/// `POST path` with a JSON `body` (none: empty) and, if given, an
/// `Authorization: Bearer` token, on a connection of its own.
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    body: Option<&Value>,
    bearer: Option<&str>,
) -> Answer {
    let s = TcpStream::connect(addr).await.unwrap();
    post_on(s, path, body, bearer).await
}

/// [`http_post`] from the local address `from` (another loopback
/// address, say: the limits count per client address).
pub async fn http_post_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
    path: &str,
    body: Option<&Value>,
    bearer: Option<&str>,
) -> Answer {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let s = socket.connect(addr).await.unwrap();
    post_on(s, path, body, bearer).await
}

/// Sends raw `request` bytes on a connection of its own: the answer.
pub async fn http_raw(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    read_answer(s).await
}

async fn post_on(
    mut s: TcpStream,
    path: &str,
    body: Option<&Value>,
    bearer: Option<&str>,
) -> Answer {
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    read_answer(s).await
}

async fn read_answer(mut s: TcpStream) -> Answer {
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut out)).await;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_owned(),
        json: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}
