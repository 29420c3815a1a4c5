//! The file-descriptor limit is handled, not hit: under a hard
//! `RLIMIT_NOFILE` of 256 the chat server takes `max_connections` from
//! it (256 less `chat::fdlimit::RESERVED_FDS`), lowers a larger
//! `--max-connections` with a warning, answers the connections beyond it
//! with 503, and keeps serving the ones it holds and new ones once some
//! close, never running out of descriptors.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::{Spawned, free_addr, open_fds};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The hard limit the server runs under (bash's `ulimit -n` sets the soft
/// and the hard one, so the server cannot raise it).
const FD_LIMIT: u64 = 256;

/// What the server should allow under it.
const ALLOWED: usize = (FD_LIMIT - rfc6455::chat::fdlimit::RESERVED_FDS) as usize;

/// Opens a connection, asks for `path` (upgrading at `/ws`) and returns the
/// response's status line with the stream.
async fn request(addr: std::net::SocketAddr, path: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(common::request_for(path).as_bytes())
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), common::read_head(&mut s))
        .await
        .expect("a response in time");
    let status = head.lines().next().unwrap_or("").to_owned();
    (status, s)
}

#[tokio::test]
async fn connections_beyond_the_fd_limit_get_503_and_the_server_keeps_serving() {
    let addr = free_addr();
    let dir = common::temp_dir("fd_limit", "503");
    let log = dir.join("server.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!(
            r#"ulimit -n {FD_LIMIT} && exec "$0" chat --listen {addr} --db "$1" --max-per-ip 0 --max-handshakes-per-ip 0 --max-connections 1000"#
        ))
        .arg(env!("CARGO_BIN_EXE_rfc6455"))
        .arg(dir.join("chat.db"))
        .env("RUST_LOG", "info")
        // Plain text, to search (tracing-subscriber colours a log otherwise).
        .env("NO_COLOR", "1")
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file));
    let server = Spawned::listening(&mut command, addr, "chat under ulimit -n 256").await;
    // The probe connection of `listening` must be gone before we count.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut held = Vec::new();
    for _ in 0..ALLOWED {
        let (status, s) = request(addr, "/ws").await;
        assert!(status.contains(" 101 "), "{status}");
        held.push(s);
    }
    // Beyond the limit: refused at the door, with 503, not left in the
    // backlog by a failing `accept`.
    for _ in 0..40 {
        let (status, _) = request(addr, "/ws").await;
        assert!(status.starts_with("HTTP/1.1 503 "), "{status}");
    }
    let fds = open_fds(server.pid());
    assert!(
        (fds as u64) < FD_LIMIT,
        "{fds} descriptors open, the limit is {FD_LIMIT}"
    );
    // Those it holds still work: a ping is answered.
    let ping = common::masked(0x89, b"hi");
    for s in held.iter_mut().step_by(16) {
        s.write_all(&ping).await.unwrap();
        let mut pong = [0u8; 4];
        tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_exact(s, &mut pong),
        )
        .await
        .expect("a pong in time")
        .unwrap();
        assert_eq!(pong, [0x8a, 2, b'h', b'i']);
    }
    // Once some close, new ones get in again.
    held.truncate(ALLOWED - 4);
    let mut status = String::new();
    for _ in 0..50 {
        status = request(addr, "/healthz").await.0;
        if status.contains(" 200 ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(status.contains(" 200 "), "{status}");
    let (status, _ws) = request(addr, "/ws").await;
    assert!(status.contains(" 101 "), "{status}");

    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("lowered") && log.contains(&format!("max_connections={ALLOWED}")),
        "the server says it lowered --max-connections 1000 to {ALLOWED}:\n{log}"
    );
    assert!(!log.contains("accept failed"), "{log}");
}
