//! What an idle chat member costs the server: N connections that said
//! `hello` and sit in `general` must hold less than a few KiB of heap
//! each (issue 15: 17–25 KiB of RSS each before).
//!
//! Heap is counted by dhat's allocator (live bytes), in a test binary of
//! its own, as `tests/idle_memory.rs` does for the bare transport. The
//! clients are blocking `std` sockets driven from this thread with frames
//! built before the count starts and stack buffers, so the growth
//! measured is the server's: its tasks, sockets, sessions, and the hub's
//! per-member state.
//!
//! Set `CHAT_IDLE_DHAT_OUT` to a file name to write dhat's profile there
//! instead of asserting: it says which allocation sites hold the bytes.

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use rfc6455::chat::ChatConfig;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Members held open; enough that fixed costs (runtime, hub, the room
/// itself) vanish in the average, few enough for the default
/// file-descriptor limit.
const N: usize = 400;

/// The budget per idle member, heap only: issue 15's target of 3 KiB of
/// RSS per idle member that said `hello`. Measured at 2,918 bytes (18,907
/// before issue 15): the boxed `WebSocket` (736), the task (640: its
/// future, now little more than the pointers to what is boxed, and
/// tokio's header), the boxed session future (560), the `Client` (264),
/// tokio's registration of the socket (256), the keepalive and frame
/// timers (160), the `JoinSet` entry (56), and the nick's and room's
/// entries in the hub's maps. Issue 22 gave each `Connection` the frame
/// ring's pointer (8 bytes, null unless the wire panel asked) and boxed
/// the client-only mask RNG (128 bytes a server never used): the
/// `WebSocket` is 608 bytes, and a release build measures about 2,775
/// per member (2,890 before).
const BUDGET: usize = 3 * 1024;

const REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A masked text frame (RFC 6455 §5.2, §5.3) with a short payload.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 125);
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![0x81, 0x80 | payload.len() as u8];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Opens a connection and says `hello` (`frame`), reading the 101.
fn connect(addr: std::net::SocketAddr, frame: &[u8]) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(REQUEST).unwrap();
    let mut head = [0u8; 512];
    let mut len = 0;
    // One byte at a time: what follows the head (the welcome) is read
    // later, with the rest.
    while !head[..len].ends_with(b"\r\n\r\n") {
        let n = s.read(&mut head[len..len + 1]).unwrap();
        assert!(n > 0, "server closed during the handshake");
        len += n;
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "not upgraded");
    s.write_all(frame).unwrap();
    s
}

/// Reads whatever the server has sent, without waiting; the bytes read.
fn drain(clients: &mut [std::net::TcpStream]) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    for c in clients.iter_mut() {
        c.set_nonblocking(true).unwrap();
        loop {
            match c.read(&mut buf) {
                Ok(0) => panic!("the server closed an idle member"),
                Ok(n) => total += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        c.set_nonblocking(false).unwrap();
    }
    total
}

#[test]
fn idle_members_hold_a_few_kib_each() {
    let out = std::env::var("CHAT_IDLE_DHAT_OUT").ok();
    let profiler = match &out {
        Some(file) => dhat::Profiler::builder().file_name(file).build(),
        None => dhat::Profiler::builder().testing().build(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("rfc6455-chat-idle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = ChatConfig::new(dir.join("chat.db"));
    // Every client here comes from 127.0.0.1, faster than a person.
    config.max_per_ip = 0;
    config.max_handshakes_per_ip = 0;
    config.rate_limit = None;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(rfc6455::chat::serve(listener, config, async {
        let _ = stopped.await;
    }));
    let hellos: Vec<Vec<u8>> = (0..=N)
        .map(|i| text_frame(format!(r#"{{"type":"hello","nick":"member{i}"}}"#).as_bytes()))
        .collect();
    let mut clients = Vec::with_capacity(N + 1);
    // Warm up: the first member pays for the room, the runtime's lazily
    // built structures and the history database; it is not counted.
    clients.push(connect(addr, &hellos[N]));
    std::thread::sleep(Duration::from_millis(300));
    drain(&mut clients);
    let before = dhat::HeapStats::get().curr_bytes;
    for hello in &hellos[..N] {
        clients.push(connect(addr, hello));
    }
    // Let every join finish and the presence ticks (100 ms) reach
    // everyone, then read it all: an idle member has nothing queued.
    std::thread::sleep(Duration::from_millis(500));
    let mut received = drain(&mut clients);
    std::thread::sleep(Duration::from_millis(300));
    received += drain(&mut clients);
    std::thread::sleep(Duration::from_millis(300));
    let after = dhat::HeapStats::get().curr_bytes;
    let per_member = after.saturating_sub(before) / N;
    eprintln!(
        "idle chat member: {per_member} bytes of heap each ({N} members, {received} bytes received)"
    );
    if out.is_none() {
        dhat::assert!(
            per_member < BUDGET,
            "{per_member} bytes per idle chat member"
        );
    }
    // With the members still connected: the profile's "at the end" is
    // what they hold.
    drop(profiler);
    drop(clients);
    let _ = stop.send(());
    let _ = runtime.block_on(server);
    let _ = std::fs::remove_dir_all(&dir);
}
