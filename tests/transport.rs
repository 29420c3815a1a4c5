//! The tokio transport end to end over loopback: our client against our
//! server, and raw TCP peers that misbehave on purpose.

mod common;

use common::{REQUEST, flood, masked, read_frame, read_head, read_until_closed};

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rfc6455::proto::{CloseCode, CloseFrame, Error as ProtoError, Message, ProtocolError};
use rfc6455::transport::{self, Config, Error, Keepalive, MaybeTlsStream, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Starts a server on a free loopback port; each accepted connection's
/// outcome (how its `recv` loop ended) is reported on the channel.
async fn server<F, Fut>(
    config: Config,
    handler: F,
) -> (SocketAddr, mpsc::UnboundedReceiver<Fut::Output>)
where
    F: Fn(WebSocket<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = std::sync::Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let config = config.clone();
            let handler = handler.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(ws) = transport::accept(stream, config).await {
                    let _ = tx.send(handler(ws).await);
                }
            });
        }
    });
    (addr, rx)
}

/// Echoes until the end; returns the error that ended it, if any.
async fn echo(mut ws: WebSocket<TcpStream>) -> Option<Error> {
    common::echo(&mut ws).await.error
}

async fn client(addr: SocketAddr) -> WebSocket<MaybeTlsStream> {
    transport::connect(&format!("ws://{addr}/"), Config::default())
        .await
        .unwrap()
        .0
}

async fn raw_connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(REQUEST.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    s
}

// Messages of every length class (§5.2: 7-bit, 16-bit and 64-bit lengths).

#[tokio::test]
async fn messages_of_every_length_class_round_trip() {
    let (addr, _) = server(Config::default(), echo).await;
    let mut ws = client(addr).await;
    for len in [0usize, 125, 126, 65535, 65536, 16 << 20] {
        let payload = Bytes::from((0..len).map(|i| (i * 7) as u8).collect::<Vec<_>>());
        ws.send(Message::Binary(payload.clone())).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::Binary(payload),
            "binary {len}"
        );
        let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text(text),
            "text {len}"
        );
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn fragmented_sends_arrive_as_one_message() {
    let (addr, _) = server(Config::default(), echo).await;
    let config = Config {
        protocol: rfc6455::proto::Config {
            fragment_size: Some(1000),
            ..Default::default()
        },
        ..Config::default()
    };
    let (mut ws, _) = transport::connect(&format!("ws://{addr}/"), config)
        .await
        .unwrap();
    let text = "é".repeat(5000);
    ws.send(Message::text(text.clone())).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(text));
}

#[tokio::test]
async fn ping_is_answered_by_the_peer() {
    let (addr, _) = server(Config::default(), echo).await;
    let mut ws = client(addr).await;
    common::assert_ping_answered(&mut ws).await;
}

// Every close path (§7).

#[tokio::test]
async fn client_initiated_close_is_clean_on_both_sides() {
    let (addr, mut outcomes) = server(Config::default(), echo).await;
    let mut ws = client(addr).await;
    ws.close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")))
        .await
        .unwrap();
    assert!(ws.recv().await.is_none());
    assert!(
        outcomes.recv().await.unwrap().is_none(),
        "server saw an error"
    );
}

#[tokio::test]
async fn server_initiated_close_reaches_the_client() {
    let (addr, _) = server(
        Config::default(),
        |mut ws: WebSocket<TcpStream>| async move {
            ws.close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "restarting")))
                .await
        },
    )
    .await;
    let mut ws = client(addr).await;
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::Close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "restarting")))
    );
    assert!(ws.recv().await.is_none());
}

#[tokio::test]
async fn protocol_error_sends_1002_and_closes_tcp() {
    let (addr, mut outcomes) = server(Config::default(), echo).await;
    let mut raw = raw_connect(addr).await;
    // A reserved opcode (§5.2).
    raw.write_all(&masked(0x83, b"")).await.unwrap();
    let (b0, payload) = read_frame(&mut raw).await;
    assert_eq!(b0, 0x88);
    assert_eq!(&payload[..2], &1002u16.to_be_bytes());
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "the server closed TCP after its Close");
    // Hang up, as a peer does on seeing the server's FIN; until then the
    // server lingers, draining.
    drop(raw);
    let outcome = outcomes.recv().await.unwrap();
    assert!(
        matches!(
            outcome,
            Some(Error::Protocol(ProtoError::Protocol(
                ProtocolError::ReservedOpcode(3)
            )))
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn peer_that_never_answers_close_is_dropped_at_the_close_timeout() {
    let config = Config {
        close_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let (addr, mut outcomes) = server(config, |mut ws: WebSocket<TcpStream>| async move {
        ws.close(None).await
    })
    .await;
    let mut raw = raw_connect(addr).await;
    let started = std::time::Instant::now();
    assert_eq!(read_frame(&mut raw).await.0, 0x88);
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(matches!(
        outcomes.recv().await.unwrap(),
        Err(Error::CloseTimeout)
    ));
}

#[tokio::test]
async fn abrupt_eof_is_an_abnormal_closure() {
    let (addr, mut outcomes) = server(Config::default(), echo).await;
    let mut raw = raw_connect(addr).await;
    // Half a frame, then gone.
    raw.write_all(&masked(0x81, b"hello")[..4]).await.unwrap();
    drop(raw);
    let outcome = outcomes.recv().await.unwrap();
    assert!(
        matches!(outcome, Some(Error::Protocol(ProtoError::AbnormalClosure))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn first_frame_pipelined_behind_the_request_is_not_lost() {
    let (addr, _) = server(Config::default(), echo).await;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    let mut bytes = REQUEST.as_bytes().to_vec();
    bytes.extend(masked(0x81, b"early"));
    raw.write_all(&bytes).await.unwrap();
    assert!(read_head(&mut raw).await.starts_with("HTTP/1.1 101 "));
    assert_eq!(read_frame(&mut raw).await, (0x81, b"early".to_vec()));
}

/// RFC 6455 §4.1 item 4: "If the connection could not be opened ... the
/// client MUST _Fail the WebSocket Connection_": an error, nothing sent.
#[tokio::test]
async fn connecting_to_a_closed_port_fails_with_an_io_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let result = transport::connect(&format!("ws://{addr}/"), Config::default()).await;
    assert!(matches!(result, Err(Error::Io(_))), "{:?}", result.err());
}

#[tokio::test]
async fn bad_handshakes_get_http_errors() {
    let (addr, _) = server(Config::default(), echo).await;
    for (request, status) in [
        (REQUEST.replace("Version: 13", "Version: 8"), "426"),
        (REQUEST.replace("Upgrade: websocket\r\n", ""), "400"),
        (
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000)),
            "431",
        ),
    ] {
        let mut raw = TcpStream::connect(addr).await.unwrap();
        // The server may answer and close before reading all of a long head.
        let _ = raw.write_all(request.as_bytes()).await;
        let head = read_head(&mut raw).await;
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
    }
}

#[tokio::test]
async fn slowloris_handshake_is_cut_at_the_timeout() {
    let config = Config {
        handshake_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        transport::accept(stream, config).await.map(|_| ())
    });
    let mut raw = TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    for b in REQUEST.as_bytes() {
        // Once the server gives up, the socket breaks: that is the point.
        if raw.write_all(std::slice::from_ref(b)).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if accept.is_finished() {
            break;
        }
    }
    assert!(matches!(
        accept.await.unwrap(),
        Err(Error::HandshakeTimeout)
    ));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

// Cancel safety and concurrency.

#[tokio::test]
async fn recv_is_cancel_safe_in_select() {
    let (addr, _) = server(
        Config::default(),
        |mut ws: WebSocket<TcpStream>| async move {
            // Send a 1 MiB message in slow pieces so that recv is cancelled
            // many times in the middle of it.
            for i in 0..64u8 {
                ws.queue(Message::binary(vec![i; 16 * 1024])).unwrap();
                ws.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            ws.close(None).await
        },
    )
    .await;
    let mut ws = client(addr).await;
    let mut ticker = tokio::time::interval(Duration::from_micros(300));
    let mut got = Vec::new();
    let mut ticks = 0u32;
    loop {
        tokio::select! {
            event = ws.recv() => match event {
                Some(Ok(Message::Binary(b))) => got.push(b),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("{e}"),
                None => break,
            },
            _ = ticker.tick() => ticks += 1,
        }
    }
    assert!(ticks > 10, "recv was never cancelled");
    assert_eq!(got.len(), 64);
    for (i, b) in got.iter().enumerate() {
        assert!(
            b.len() == 16 * 1024 && b.iter().all(|&x| x == i as u8),
            "message {i} damaged"
        );
    }
}

#[tokio::test]
async fn split_halves_work_from_two_tasks() {
    let (addr, _) = server(Config::default(), echo).await;
    let (mut reader, mut writer) = client(addr).await.split();
    let sender = tokio::spawn(async move {
        for i in 0..1000u32 {
            writer
                .send(Message::binary(i.to_be_bytes().to_vec()))
                .await
                .unwrap();
        }
        writer.close(None).await.unwrap();
    });
    let mut expected = 0u32;
    while let Some(event) = reader.recv().await {
        match event.unwrap() {
            Message::Binary(b) => {
                assert_eq!(b[..], expected.to_be_bytes());
                expected += 1;
            }
            Message::Close(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(expected, 1000);
    sender.await.unwrap();
}

#[tokio::test]
async fn reader_alone_answers_pings() {
    // The server pings; the client only ever polls its reader half.
    let (addr, mut outcomes) = server(
        Config::default(),
        |mut ws: WebSocket<TcpStream>| async move {
            ws.send(Message::Ping(Bytes::from_static(b"hb")))
                .await
                .unwrap();
            match ws.recv().await {
                Some(Ok(Message::Pong(p))) => p,
                other => panic!("{other:?}"),
            }
        },
    )
    .await;
    let (mut reader, _writer) = client(addr).await.split();
    let reading = tokio::spawn(async move { while reader.recv().await.is_some() {} });
    assert_eq!(outcomes.recv().await.unwrap(), Bytes::from_static(b"hb"));
    reading.abort();
}

#[tokio::test]
async fn stream_and_sink_impls_work() {
    let (addr, _) = server(Config::default(), echo).await;
    let mut ws = client(addr).await;
    ws.send(Message::text("via sink")).await.unwrap();
    SinkExt::send(&mut ws, Message::text("again"))
        .await
        .unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("via sink"));
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("again"));
    SinkExt::close(&mut ws).await.unwrap();
}

// Keepalive.

#[tokio::test]
async fn keepalive_pings_an_idle_peer_and_drops_a_silent_one() {
    let keepalive = Some(Keepalive {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(100),
    });
    let config = Config {
        keepalive,
        ..Config::default()
    };
    let (addr, mut outcomes) = server(config, echo).await;
    // A live client: its reader answers, so the server keeps it.
    let mut live = client(addr).await;
    let live_task = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(Ok(m)) = live.recv().await {
            if matches!(m, Message::Ping(_)) {
                pings += 1;
                if pings == 3 {
                    live.close(None).await.unwrap();
                    break;
                }
            }
        }
        pings
    });
    assert_eq!(live_task.await.unwrap(), 3);
    assert!(outcomes.recv().await.unwrap().is_none());
    // A silent client: reads nothing, answers nothing.
    let mut raw = raw_connect(addr).await;
    assert_eq!(read_frame(&mut raw).await.0, 0x89);
    assert!(matches!(
        outcomes.recv().await.unwrap(),
        Some(Error::PongTimeout)
    ));
}

// Backpressure: the write buffer limit (`Config::write_buffer_limit`).

/// An echo that notes the most output it ever held queued; returns that,
/// the messages it echoed, and how it ended.
async fn echo_noting_backlog(mut ws: WebSocket<TcpStream>) -> (usize, usize, Option<Error>) {
    let echoed = common::echo(&mut ws).await;
    (echoed.most_queued, echoed.messages, echoed.error)
}

/// Message `i` of a flood: its number, then filler.
fn numbered(i: u32, len: usize) -> Vec<u8> {
    let mut payload = vec![(i % 251) as u8; len];
    payload[..4].copy_from_slice(&i.to_be_bytes());
    payload
}

/// Waits until `written` stops growing for `quiet`; false if `done` comes
/// first or nothing stalls within `within`.
async fn stalls(
    written: &std::sync::atomic::AtomicU64,
    done: &tokio::task::JoinHandle<()>,
    quiet: Duration,
    within: Duration,
) -> bool {
    let started = std::time::Instant::now();
    let mut last = (written.load(std::sync::atomic::Ordering::Relaxed), started);
    while started.elapsed() < within && !done.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = written.load(std::sync::atomic::Ordering::Relaxed);
        if now != last.0 {
            last = (now, std::time::Instant::now());
        } else if last.1.elapsed() >= quiet {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn echo_loop_stops_reading_from_a_peer_that_never_reads_and_loses_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    const LEN: usize = 16 * 1024;
    // 128 MiB: past what the two directions' socket buffers can hold
    // (Linux's defaults let each grow to 4 MiB sent plus 32 MiB received;
    // the stall came after about 7 MiB when measured).
    const COUNT: u32 = 8192;
    let limit = Config::default().write_buffer_limit;
    let (addr, mut outcomes) = server(Config::default(), echo_noting_backlog).await;
    let raw = raw_connect(addr).await;
    let (rx, mut tx) = raw.into_split();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let writer = tokio::spawn(async move {
        for i in 0..COUNT {
            tx.write_all(&masked(0x82, &numbered(i, LEN)))
                .await
                .unwrap();
            counter.fetch_add(1, Ordering::Relaxed);
        }
        tx.write_all(&masked(0x88, &1000u16.to_be_bytes()))
            .await
            .unwrap();
    });
    // Not reading: the server must stop reading too, so our writes block.
    assert!(
        stalls(
            &written,
            &writer,
            Duration::from_secs(1),
            Duration::from_secs(60)
        )
        .await,
        "all {COUNT} frames were taken by a server whose replies nobody read"
    );
    let stalled_at = written.load(Ordering::Relaxed);
    eprintln!(
        "flood of {LEN} B frames stalled after {stalled_at} frames ({} MiB)",
        (stalled_at * LEN as u64) >> 20
    );
    // Now read: every message comes back, in order.
    let reading = tokio::time::timeout(Duration::from_secs(120), async {
        let mut rx = rx;
        for i in 0..COUNT {
            let (b0, payload) = read_frame(&mut rx).await;
            assert_eq!(b0, 0x82, "frame {i}");
            assert!(payload == numbered(i, LEN), "echo {i} is not message {i}");
        }
        let (b0, payload) = read_frame(&mut rx).await;
        assert_eq!((b0, &payload[..]), (0x88, &1000u16.to_be_bytes()[..]));
    });
    reading
        .await
        .expect("echoes did not all come back in 120 s");
    writer.await.unwrap();
    let (most, echoed, error) = outcomes.recv().await.unwrap();
    eprintln!("server's largest backlog: {most} B (limit {limit} B, message {LEN} B)");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(echoed, COUNT as usize);
    // The limit, one message and its header (at most 10 bytes, §5.2).
    assert!(most <= limit + LEN + 10, "backlog reached {most} B");
}

#[tokio::test]
async fn sink_is_not_ready_while_output_is_over_the_limit() {
    use futures_util::Sink;
    use std::future::poll_fn;
    use std::pin::Pin;
    let limit = Config::default().write_buffer_limit;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(raw_connect(addr));
    let (stream, _) = listener.accept().await.unwrap();
    let mut ws = transport::accept(stream, Config::default()).await.unwrap();
    let mut peer = peer.await.unwrap();
    // 64 MiB: more than the peer's socket buffers take unread.
    let big = Bytes::from(vec![7u8; 64 << 20]);
    poll_fn(|cx| Pin::new(&mut ws).poll_ready(cx))
        .await
        .unwrap();
    Pin::new(&mut ws)
        .start_send(Message::Binary(big.clone()))
        .unwrap();
    let waited = tokio::time::timeout(
        Duration::from_millis(500),
        poll_fn(|cx| Pin::new(&mut ws).poll_ready(cx)),
    )
    .await;
    assert!(
        waited.is_err(),
        "ready with {} bytes queued",
        ws.pending_output_len()
    );
    assert!(ws.pending_output_len() > limit);
    // The peer reads: ready once the socket has taken all but the limit.
    let reader = tokio::spawn(async move { read_frame(&mut peer).await });
    tokio::time::timeout(
        Duration::from_secs(30),
        poll_fn(|cx| Pin::new(&mut ws).poll_ready(cx)),
    )
    .await
    .expect("not ready after the peer read")
    .unwrap();
    assert!(ws.pending_output_len() <= limit);
    SinkExt::flush(&mut ws).await.unwrap();
    let (b0, payload) = reader.await.unwrap();
    assert_eq!(b0, 0x82);
    assert!(payload == big, "the message arrived damaged");
}

#[tokio::test]
async fn split_reader_waits_on_the_writers_backlog_and_wakes_when_it_drains() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(raw_connect(addr));
    let (stream, _) = listener.accept().await.unwrap();
    let ws = transport::accept(stream, Config::default()).await.unwrap();
    let mut peer = peer.await.unwrap();
    let (mut reader, mut writer) = ws.split();
    // 32 MiB: more than the peer's socket buffers take unread.
    let big = vec![9u8; 32 << 20];
    let writing = tokio::spawn(async move {
        writer.send(Message::binary(big)).await.unwrap();
        writer
    });
    let (tx, mut got) = mpsc::unbounded_channel();
    let reading = tokio::spawn(async move {
        while let Some(Ok(m)) = reader.recv().await {
            let _ = tx.send(m);
        }
    });
    peer.write_all(&masked(0x81, b"after the backlog"))
        .await
        .unwrap();
    // The writer's backlog is over the limit: the reader returns nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        got.try_recv().is_err(),
        "the reader read past the writer's backlog"
    );
    // The peer reads it; the writer's flush drains it and must wake the
    // reader, which then delivers what waited.
    let (b0, payload) = read_frame(&mut peer).await;
    assert_eq!((b0, payload.len()), (0x82, 32 << 20));
    let message = tokio::time::timeout(Duration::from_secs(10), got.recv())
        .await
        .expect("the reader was not woken");
    assert_eq!(message, Some(Message::text("after the backlog")));
    let _writer = writing.await.unwrap();
    reading.abort();
}

/// A peer that sends 16 KiB binary frames and never reads, in a task of
/// its own, until the server hangs up (or, at worst, 30 s): see [`flood`].
fn flood_16_kib_frames(
    mut tx: tokio::net::tcp::OwnedWriteHalf,
) -> tokio::task::JoinHandle<(u32, Option<Duration>)> {
    tokio::spawn(async move {
        let frame = masked(0x82, &[1; 16 * 1024]);
        flood(&mut tx, &frame, Duration::from_secs(30)).await
    })
}

#[tokio::test]
async fn keepalive_drops_a_peer_that_floods_and_neither_reads_nor_answers() {
    // Before the limit, such a peer kept the server reading, so the
    // keepalive never found the silence it waits for. Paused, the server
    // reads nothing: it pings, the Ping waits behind the backlog, and the
    // Pong never comes.
    let config = Config {
        keepalive: Some(Keepalive {
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(300),
        }),
        ..Config::default()
    };
    let (addr, mut outcomes) = server(config, echo_noting_backlog).await;
    let raw = raw_connect(addr).await;
    let (_rx, tx) = raw.into_split();
    let flooding = flood_16_kib_frames(tx);
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(20), outcomes.recv())
        .await
        .expect("the server kept the flooder for 20 s")
        .unwrap();
    eprintln!("flooder dropped after {:?}", started.elapsed());
    assert!(matches!(outcome.2, Some(Error::PongTimeout)), "{outcome:?}");
    flooding.abort();
}

// Frame timeout (`Config::frame_timeout`).

#[tokio::test]
async fn half_a_frame_then_silence_ends_with_frame_timeout_and_1008() {
    let config = Config {
        frame_timeout: Some(Duration::from_millis(300)),
        ..Config::default()
    };
    let (addr, mut outcomes) = server(config, echo).await;
    let mut raw = raw_connect(addr).await;
    let started = std::time::Instant::now();
    raw.write_all(&masked(0x81, b"hello")[..5]).await.unwrap();
    let (b0, payload) = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut raw))
        .await
        .expect("no Close in 10 s");
    let waited = started.elapsed();
    eprintln!("half a frame: Close after {waited:?}");
    assert_eq!(b0, 0x88);
    assert_eq!(&payload[..2], &1008u16.to_be_bytes());
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    let outcome = outcomes.recv().await.unwrap();
    assert!(matches!(outcome, Some(Error::FrameTimeout)), "{outcome:?}");
    assert_eq!(
        outcome.unwrap().close_code(),
        Some(CloseCode::POLICY_VIOLATION)
    );
    // And the server is gone: EOF, not more frames.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut rest))
        .await
        .expect("TCP still open after the Close")
        .unwrap();
    assert!(rest.is_empty(), "{rest:02x?}");
}

#[tokio::test]
async fn a_slow_frame_within_the_frame_timeout_is_delivered() {
    let config = Config {
        frame_timeout: Some(Duration::from_secs(2)),
        ..Config::default()
    };
    let (addr, _) = server(config, echo).await;
    let mut raw = raw_connect(addr).await;
    raw.set_nodelay(true).unwrap();
    let frame = masked(0x81, b"slowly but surely");
    // Four pieces, 100 ms apart: 300 ms for the frame.
    for piece in frame.chunks(frame.len().div_ceil(4)) {
        raw.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let echoed = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut raw))
        .await
        .expect("no echo in 10 s");
    assert_eq!(echoed, (0x81, b"slowly but surely".to_vec()));
}

#[tokio::test]
async fn frames_each_within_the_frame_timeout_never_trip_it() {
    // Six frames of 300 ms each (1.8 s in all) under a 1 s timeout. Each
    // write ends one frame and begins the next, so the server never sees
    // a frame boundary at the end of its buffer: the timer must restart
    // per frame, fragments included, not per empty buffer.
    let config = Config {
        frame_timeout: Some(Duration::from_secs(1)),
        ..Config::default()
    };
    let (addr, mut outcomes) = server(config, echo).await;
    let mut raw = raw_connect(addr).await;
    raw.set_nodelay(true).unwrap();
    let frames = [
        masked(0x01, b"f0"),
        masked(0x00, b"f1"),
        masked(0x80, b"f2"),
        masked(0x81, b"f3"),
        masked(0x81, b"f4"),
        masked(0x81, b"f5"),
    ];
    let mut carry: &[u8] = &[];
    for frame in &frames {
        let (head, tail) = frame.split_at(3);
        raw.write_all(&[carry, head].concat()).await.unwrap();
        carry = tail;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    raw.write_all(carry).await.unwrap();
    for expected in ["f0f1f2", "f3", "f4", "f5"] {
        let echoed = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut raw))
            .await
            .expect("no echo in 10 s");
        assert_eq!(echoed, (0x81, expected.as_bytes().to_vec()));
    }
    raw.write_all(&masked(0x88, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut raw).await.0, 0x88);
    drop(raw);
    let outcome = outcomes.recv().await.unwrap();
    assert!(outcome.is_none(), "{outcome:?}");
}

// Closing under a peer that never reads: the close timer bounds the wait
// for our last output (RFC 6455 §7.1.1, §7.1.7: TCP closes after it).

/// Floods an echo server (whose write buffer limit is too high to pause
/// it, so it reads everything) with 16 MiB of messages, reading none of
/// the echoes, then writes `tail` and still never reads. Returns how the
/// server's loop ended and how long after `tail` was written.
async fn flood_then(tail: Vec<u8>) -> (Option<Error>, Duration) {
    const LEN: usize = 16 * 1024;
    // 16 MiB of echoes: past what the two directions' socket buffers take
    // on loopback (about 4 MiB sent plus 128 KiB received, unread), so our
    // reply to `tail` is stuck behind the rest.
    const COUNT: u32 = 1024;
    let config = Config {
        close_timeout: Duration::from_millis(300),
        write_buffer_limit: 64 << 20,
        ..Config::default()
    };
    let (addr, mut outcomes) = server(config, echo).await;
    let raw = raw_connect(addr).await;
    let (_rx, mut tx) = raw.into_split();
    let frame = masked(0x82, &[7; LEN]);
    for _ in 0..COUNT {
        tx.write_all(&frame).await.unwrap();
    }
    tx.write_all(&tail).await.unwrap();
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(10), outcomes.recv())
        .await
        .expect("the server still held the connection after 10 s")
        .unwrap();
    // `_rx` and `tx` live to here: the peer is still there, never reading.
    (outcome, started.elapsed())
}

#[tokio::test]
async fn close_from_a_peer_that_never_reads_ends_at_the_close_timeout() {
    let (outcome, took) = flood_then(masked(0x88, &1000u16.to_be_bytes())).await;
    eprintln!("Close, then no reading: the server ended after {took:?}: {outcome:?}");
    // Our reply never went out, so the close did not complete.
    assert!(matches!(outcome, Some(Error::CloseTimeout)), "{outcome:?}");
    assert!(took >= Duration::from_millis(250), "ended after {took:?}");
    assert!(took < Duration::from_millis(300) + Duration::from_secs(5));
}

#[tokio::test]
async fn violation_from_a_peer_that_never_reads_ends_at_the_close_timeout() {
    // An unmasked client frame (§5.1: the server MUST close the
    // connection).
    let (outcome, took) = flood_then(vec![0x82, 0x00]).await;
    eprintln!("violation, then no reading: the server ended after {took:?}: {outcome:?}");
    // The failure is what the caller sees, not the timeout that ended it.
    assert!(
        matches!(
            outcome,
            Some(Error::Protocol(ProtoError::Protocol(
                ProtocolError::UnmaskedFrame
            )))
        ),
        "{outcome:?}"
    );
    assert!(took >= Duration::from_millis(250), "ended after {took:?}");
    assert!(took < Duration::from_millis(300) + Duration::from_secs(5));
}

#[tokio::test]
async fn close_queued_behind_a_paused_backlog_ends_at_the_close_timeout() {
    // The default write buffer limit: the flood pauses the server, then
    // the server closes, and its Close waits behind output nobody reads.
    let config = Config {
        close_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let limit = config.write_buffer_limit;
    let (addr, mut outcomes) = server(config, |mut ws: WebSocket<TcpStream>| async move {
        // Echo until nothing comes for 500 ms: paused (or the flood ended).
        loop {
            tokio::select! {
                event = ws.recv() => match event {
                    Some(Ok(m @ Message::Binary(_))) => ws.queue(m).unwrap(),
                    other => panic!("{other:?}"),
                },
                _ = tokio::time::sleep(Duration::from_millis(500)) => break,
            }
        }
        let backlog = ws.pending_output_len();
        let started = std::time::Instant::now();
        let result = ws.close(None).await;
        (backlog, started.elapsed(), result)
    })
    .await;
    let raw = raw_connect(addr).await;
    let (_rx, tx) = raw.into_split();
    let flooding = flood_16_kib_frames(tx);
    let (backlog, took, result) = tokio::time::timeout(Duration::from_secs(20), outcomes.recv())
        .await
        .expect("close() still waited after 20 s")
        .unwrap();
    eprintln!("close() behind a {backlog} B backlog returned after {took:?}: {result:?}");
    assert!(
        backlog > limit,
        "the server was not paused: {backlog} B queued"
    );
    assert!(matches!(result, Err(Error::CloseTimeout)), "{result:?}");
    assert!(took >= Duration::from_millis(250), "ended after {took:?}");
    assert!(took < Duration::from_millis(300) + Duration::from_secs(5));
    flooding.abort();
}

// Send timeout (`Config::send_timeout`): a peer that stops reading.

/// A server's config with a 300 ms send timeout.
fn send_timeout_300ms() -> Config {
    Config {
        send_timeout: Some(Duration::from_millis(300)),
        ..Config::default()
    }
}

/// A server connection and a raw peer that never reads from it (until
/// the test says so), over one accepted socket.
async fn pair_with_silent_peer(
    config: Config,
) -> (
    WebSocket<TcpStream>,
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(raw_connect(addr));
    let (stream, _) = listener.accept().await.unwrap();
    let ws = transport::accept(stream, config).await.unwrap();
    let (rx, tx) = peer.await.unwrap().into_split();
    (ws, rx, tx)
}

/// 16 MiB: past what loopback's socket buffers take unread (about 4 MiB
/// sent plus 128 KiB received), so the write is refused for good.
const UNREADABLE: usize = 16 << 20;

#[tokio::test]
async fn peer_that_floods_and_never_reads_is_dropped_at_the_send_timeout() {
    // The hole the write buffer limit left: paused, the server reads
    // nothing and the connection is open, so no close timer runs and (no
    // keepalive) nothing ended it. The send timer does.
    let (addr, mut outcomes) = server(send_timeout_300ms(), echo_noting_backlog).await;
    let raw = raw_connect(addr).await;
    let (mut rx, tx) = raw.into_split();
    let started = std::time::Instant::now();
    let flooding = flood_16_kib_frames(tx);
    let (most, echoed, error) = tokio::time::timeout(Duration::from_secs(20), outcomes.recv())
        .await
        .expect("the server kept the flooder for 20 s")
        .unwrap();
    let took = started.elapsed();
    assert!(matches!(error, Some(Error::SendTimeout)), "{error:?}");
    // Its socket closed with it: our reads end, and so do our writes.
    let end = read_until_closed(&mut rx, Duration::from_secs(20)).await;
    let hung_up = tokio::time::timeout(Duration::from_secs(20), flooding)
        .await
        .expect("the flooder could still write 20 s later")
        .unwrap()
        .1
        .is_some();
    eprintln!(
        "flooder ended with SendTimeout {took:?} after its first frame ({echoed} echoed, \
         backlog at most {most} B); then its read gave {end:?}"
    );
    assert!(hung_up, "the flooder's writes never failed");
    assert!(took >= Duration::from_millis(300), "ended after {took:?}");
}

#[tokio::test]
async fn peer_reading_slowly_but_steadily_is_never_cut_by_the_send_timeout() {
    // Small socket buffers on both sides (the server's inherited from its
    // listener), so the server's writes are refused within the first
    // few messages and progress comes in small steps: Linux wakes a
    // blocked writer once a third of its send buffer is free, which with
    // loopback's autotuned buffers (up to 4 MiB) would take this reader
    // seconds. Here it is a few KiB, every read or so.
    const LEN: usize = 16 * 1024;
    const COUNT: u32 = 24;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(16 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = transport::accept(stream, send_timeout_300ms())
            .await
            .unwrap();
        // One long wait: all of it queued, then one flush, so only the
        // restart on progress keeps the timer from firing.
        for i in 0..COUNT {
            ws.queue(Message::binary(numbered(i, LEN))).unwrap();
        }
        let started = std::time::Instant::now();
        let result = ws.flush().await;
        (result, started.elapsed(), ws)
    });
    let client = tokio::net::TcpSocket::new_v4().unwrap();
    client.set_recv_buffer_size(16 * 1024).unwrap();
    let mut peer = client.connect(addr).await.unwrap();
    peer.write_all(REQUEST.as_bytes()).await.unwrap();
    assert!(read_head(&mut peer).await.starts_with("HTTP/1.1 101 "));
    // 16 KiB every 100 ms: 160 KiB/s.
    let total = COUNT as usize * (LEN + 4);
    let mut got = Vec::with_capacity(total);
    let mut chunk = vec![0u8; 16 * 1024];
    let reading = std::time::Instant::now();
    while got.len() < total && reading.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = tokio::time::timeout(Duration::from_secs(5), peer.read(&mut chunk))
            .await
            .expect("nothing to read for 5 s")
            .unwrap();
        assert!(n > 0, "the server closed after {} of {total} B", got.len());
        got.extend_from_slice(&chunk[..n]);
    }
    let (result, took, _ws) = server.await.unwrap();
    eprintln!(
        "slow reader: {} B in {:?}; the server's flush waited {took:?}: {result:?}",
        got.len(),
        reading.elapsed()
    );
    assert!(result.is_ok(), "{result:?}");
    // The flush outlasted several timeouts, so it was the restarts that
    // kept it alive, not a socket fast enough to never refuse.
    assert!(
        took >= Duration::from_secs(1),
        "the flush took only {took:?}"
    );
    // Everything, in order: a 16 KiB binary frame has a 4-byte header.
    for (i, frame) in got.chunks(LEN + 4).enumerate() {
        assert_eq!(frame[..4], [0x82, 126, 0x40, 0x00], "frame {i}'s header");
        assert!(frame[4..] == numbered(i as u32, LEN), "frame {i}'s payload");
    }
}

#[tokio::test]
async fn send_to_a_peer_that_never_reads_fails_with_send_timeout() {
    let (mut ws, mut rx, _tx) = pair_with_silent_peer(send_timeout_300ms()).await;
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        ws.send(Message::binary(vec![3u8; UNREADABLE])),
    )
    .await
    .expect("send() still waited after 20 s");
    let took = started.elapsed();
    eprintln!("send() of 16 MiB to a silent peer: {result:?} after {took:?}");
    assert!(matches!(result, Err(Error::SendTimeout)), "{result:?}");
    assert!(took >= Duration::from_millis(300), "failed after {took:?}");
    // The output is gone, and the error sticks: every later call says so,
    // and `recv` ends the stream with it.
    assert_eq!(ws.pending_output_len(), 0);
    assert!(matches!(ws.flush().await, Err(Error::SendTimeout)));
    assert!(matches!(
        ws.queue(Message::text("more")),
        Err(Error::SendTimeout)
    ));
    assert!(matches!(ws.recv().await, Some(Err(Error::SendTimeout))));
    assert!(ws.recv().await.is_none());
    drop(ws);
    read_until_closed(&mut rx, Duration::from_secs(20))
        .await
        .ok();
}

#[tokio::test]
async fn sink_flush_to_a_peer_that_never_reads_fails_with_send_timeout() {
    let (mut ws, _rx, _tx) = pair_with_silent_peer(send_timeout_300ms()).await;
    // `SinkExt::send`: `poll_ready`, `start_send`, then `poll_flush`.
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        SinkExt::send(&mut ws, Message::binary(vec![3u8; UNREADABLE])),
    )
    .await
    .expect("the Sink still waited after 20 s");
    assert!(matches!(result, Err(Error::SendTimeout)), "{result:?}");
    // And `poll_ready` after it.
    let ready =
        std::future::poll_fn(|cx| futures_util::Sink::poll_ready(std::pin::Pin::new(&mut ws), cx))
            .await;
    assert!(matches!(ready, Err(Error::SendTimeout)), "{ready:?}");
}

#[tokio::test]
async fn split_writer_to_a_peer_that_never_reads_fails_and_the_reader_sees_it() {
    let (ws, _rx, _tx) = pair_with_silent_peer(send_timeout_300ms()).await;
    let (mut reader, mut writer) = ws.split();
    // The reader waits on the writer's backlog (over the write buffer
    // limit) and must be woken by the timeout, not left waiting.
    let reading = tokio::spawn(async move { reader.recv().await });
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        writer.send(Message::binary(vec![3u8; UNREADABLE])),
    )
    .await
    .expect("the writer still waited after 20 s");
    assert!(matches!(result, Err(Error::SendTimeout)), "{result:?}");
    let read = tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("the reader was not woken")
        .unwrap();
    assert!(matches!(read, Some(Err(Error::SendTimeout))), "{read:?}");
}

#[tokio::test]
async fn without_a_send_timeout_a_peer_that_never_reads_is_waited_for() {
    let config = Config {
        send_timeout: None,
        ..Config::default()
    };
    let (mut ws, mut rx, _tx) = pair_with_silent_peer(config).await;
    let sending = tokio::spawn(async move {
        let result = ws.send(Message::binary(vec![3u8; UNREADABLE])).await;
        (result, ws)
    });
    // Many times what the timeout is elsewhere in these tests.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!sending.is_finished(), "send() gave up without a timeout");
    // Still open and whole: reading lets it finish.
    let (b0, payload) = read_frame(&mut rx).await;
    assert_eq!((b0, payload.len()), (0x82, UNREADABLE));
    let (result, _ws) = tokio::time::timeout(Duration::from_secs(20), sending)
        .await
        .expect("send() did not finish once the peer read")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}
