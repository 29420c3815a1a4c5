//! The split halves ([`WebSocket::split`]) over loopback: the `futures`
//! traits (`Stream` on the reader, `Sink` on the writer, with
//! backpressure), and the RFC's rules when both halves run at once: a
//! Pong answers the latest Ping (§5.5.3), control frames go between
//! fragments and never inside a frame (§5.4), and either half can close
//! (§5.5.1, §7).

mod common;

use common::{REQUEST, masked, read_frame, read_head};

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{Sink, SinkExt, StreamExt};
use rfc6455::proto::{self, CloseCode, CloseFrame, Message};
use rfc6455::transport::{self, Config, Error, WebSocket};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Our server on one end of a loopback connection, a raw TCP peer (after
/// the RFC's example handshake) on the other.
async fn server_and_raw_peer(config: Config) -> (WebSocket<TcpStream>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(REQUEST.as_bytes()).await.unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        s
    });
    let (stream, _) = listener.accept().await.unwrap();
    let ws = transport::accept(stream, config).await.unwrap();
    (ws, peer.await.unwrap())
}

/// A server whose connections echo with `StreamExt`/`SinkExt` alone: the
/// reader's data messages forwarded into the writer.
async fn forwarding_echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let ws = transport::accept(stream, Config::default()).await.unwrap();
                common::forward_echo(ws).await;
            });
        }
    });
    addr
}

// The futures traits.

#[tokio::test]
async fn split_halves_round_trip_through_stream_and_sink() {
    let addr = forwarding_echo_server().await;
    let (ws, _) = transport::connect(&format!("ws://{addr}/"), Config::default())
        .await
        .unwrap();
    let (mut reader, mut writer) = ws.split();
    let sent: Vec<Message> = (0..100u32)
        .map(|i| match i % 2 {
            0 => Message::text(format!("text {i}")),
            _ => Message::binary(i.to_be_bytes().to_vec()),
        })
        .collect();
    let mut outgoing = futures_util::stream::iter(sent.clone().into_iter().map(Ok));
    writer.send_all(&mut outgoing).await.unwrap();
    let got: Vec<Message> = (&mut reader)
        .take(sent.len())
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(got, sent);
    // `SinkExt::close` sends our Close; the reader sees the server's
    // reply, then the end of the stream.
    SinkExt::close(&mut writer).await.unwrap();
    let rest: Vec<_> = reader.collect().await;
    assert!(
        matches!(rest[..], [Ok(Message::Close(None))]),
        "after our Close: {rest:?}"
    );
    // Nothing more may be sent after a Close (§5.5.1).
    let late = SinkExt::send(&mut writer, Message::text("late")).await;
    assert!(
        matches!(late, Err(Error::Protocol(proto::Error::Closed))),
        "{late:?}"
    );
}

#[tokio::test]
async fn split_writer_is_not_ready_while_the_peer_stops_reading_and_is_woken_once_it_reads() {
    let limit = Config::default().write_buffer_limit;
    let (ws, mut peer) = server_and_raw_peer(Config::default()).await;
    let (_reader, mut writer) = ws.split();
    // 64 MiB: more than the peer's socket buffers take unread.
    let big = vec![7u8; 64 << 20];
    poll_fn(|cx| Pin::new(&mut writer).poll_ready(cx))
        .await
        .unwrap();
    Pin::new(&mut writer)
        .start_send(Message::binary(big.clone()))
        .unwrap();
    // Not ready: the peer reads nothing, and the backlog is over the limit.
    let waited = tokio::time::timeout(
        Duration::from_millis(500),
        poll_fn(|cx| Pin::new(&mut writer).poll_ready(cx)),
    )
    .await;
    assert!(
        waited.is_err(),
        "ready with {} bytes queued",
        writer.pending_output_len()
    );
    assert!(writer.pending_output_len() > limit);
    // Waiting in a task of its own: only a wake-up (the socket taking
    // more) can finish it.
    let ready = tokio::spawn(async move {
        poll_fn(|cx| Pin::new(&mut writer).poll_ready(cx))
            .await
            .map(|()| writer)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!ready.is_finished(), "ready before the peer read");
    let reading = tokio::spawn(async move { read_frame(&mut peer).await });
    let mut writer = tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .expect("the writer was not woken once the peer read")
        .unwrap()
        .unwrap();
    assert!(writer.pending_output_len() <= limit);
    SinkExt::flush(&mut writer).await.unwrap();
    let (b0, payload) = reading.await.unwrap();
    assert_eq!(b0, 0x82);
    assert!(payload == big, "the message arrived damaged");
}

// Both halves at once.

/// What a raw peer saw of our server's output, frame by frame.
#[derive(Debug, Default)]
struct Seen {
    /// Data messages, whole: each one's length, all bytes checked equal to
    /// its index.
    messages: Vec<usize>,
    /// The Pongs' payloads (our Pings' counters), in arrival order.
    pongs: Vec<u32>,
    /// Pongs that arrived after the first data frame and before the last.
    pongs_amid_data: usize,
    /// The Close frame's code, if one came.
    close: Option<u16>,
}

/// Reads the server's frames until its Close, checking every frame is
/// whole and in a legal place (§5.4: a message is its first frame, then
/// continuations up to the one with FIN; control frames only between
/// frames) and that data bytes are the message's index. Sends each Pong's
/// counter on `pongs` as it arrives.
async fn read_until_close(
    rx: &mut tokio::net::tcp::OwnedReadHalf,
    messages: usize,
    pongs: tokio::sync::mpsc::UnboundedSender<u32>,
) -> Seen {
    let mut seen = Seen::default();
    // The length so far of the message being read, if one is.
    let mut current: Option<usize> = None;
    loop {
        let (b0, payload) = read_frame(rx).await;
        let fin = b0 & 0x80 != 0;
        match b0 & 0x0f {
            0x2 | 0x0 => {
                let index = seen.messages.len();
                assert_eq!(
                    b0 & 0x0f == 0x0,
                    current.is_some(),
                    "frame {b0:#x} out of place in message {index}"
                );
                assert!(
                    payload.iter().all(|&b| b == index as u8),
                    "message {index} damaged"
                );
                let len = current.unwrap_or(0) + payload.len();
                current = (!fin).then_some(len);
                if fin {
                    seen.messages.push(len);
                }
            }
            0xA => {
                assert!(fin, "a fragmented Pong");
                let counter = u32::from_be_bytes(payload[..].try_into().expect("4 bytes"));
                if !seen.messages.is_empty() && seen.messages.len() < messages {
                    seen.pongs_amid_data += 1;
                }
                seen.pongs.push(counter);
                let _ = pongs.send(counter);
            }
            0x8 => {
                assert!(current.is_none(), "a Close inside a message");
                seen.close =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                return seen;
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

fn fragmenting(fragment: usize) -> Config {
    let mut config = Config::default();
    config.protocol.fragment_size = Some(fragment);
    config
}

#[tokio::test]
async fn a_ping_flood_during_a_large_fragmented_stream_is_answered_between_frames() {
    const MESSAGES: usize = 16;
    const LEN: usize = 1 << 20;
    // 16 KiB fragments: each message is 64 frames (§5.4). The write
    // buffer limit is above one message, so that the reader is not paused
    // by the writer's backlog (see "Backpressure") and reads the Pings
    // while the data goes out.
    let mut config = fragmenting(16 * 1024);
    config.write_buffer_limit = 4 * LEN;
    let (ws, peer) = server_and_raw_peer(config).await;
    let (mut reader, mut writer) = ws.split();
    let (peer_rx, mut peer_tx) = peer.into_split();
    let (start_tx, start_rx) = tokio::sync::oneshot::channel::<()>();
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
    let (sent_tx, mut sent_rx) = tokio::sync::oneshot::channel::<()>();
    let writing = tokio::spawn(async move {
        start_rx.await.unwrap();
        for i in 0..MESSAGES {
            writer
                .send(Message::binary(vec![i as u8; LEN]))
                .await
                .unwrap();
        }
        sent_tx.send(()).unwrap();
        close_rx.await.unwrap();
        writer
            .close(Some(CloseFrame::new(CloseCode::NORMAL, "done")))
            .await
            .unwrap();
    });
    // The reader alone answers: nothing else polls it.
    let reading = tokio::spawn(async move {
        let mut pings = 0usize;
        let mut end = None;
        while let Some(event) = reader.recv().await {
            match event {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(Message::Close(frame)) => end = frame.map(|f| f.code),
                Ok(other) => panic!("{other:?}"),
                Err(e) => panic!("{e}"),
            }
        }
        (pings, end)
    });
    let (pongs_tx, mut pongs) = tokio::sync::mpsc::unbounded_channel();
    let mut peer_rx = peer_rx;
    let seeing = tokio::spawn(async move {
        let seen = read_until_close(&mut peer_rx, MESSAGES, pongs_tx).await;
        (seen, peer_rx)
    });
    // The flood: Pings numbered from 0, 50 to a write, until the data has
    // all arrived, then one last Ping, whose Pong must come (§5.5.3: at
    // least the most recent Ping is answered).
    let mut counter = 0u32;
    let batch = |n: u32, counter: &mut u32| {
        let mut bytes = Vec::new();
        for _ in 0..n {
            bytes.extend(masked(0x89, &counter.to_be_bytes()));
            *counter += 1;
        }
        bytes
    };
    peer_tx.write_all(&batch(1, &mut counter)).await.unwrap();
    assert_eq!(pongs.recv().await, Some(0));
    start_tx.send(()).unwrap();
    while sent_rx.try_recv().is_err() {
        peer_tx.write_all(&batch(50, &mut counter)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let last = counter;
    peer_tx.write_all(&batch(1, &mut counter)).await.unwrap();
    let answered_last = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(pong) = pongs.recv().await {
            if pong == last {
                return true;
            }
        }
        false
    })
    .await
    .expect("no Pong for the last Ping");
    assert!(answered_last);
    close_tx.send(()).unwrap();
    let (seen, _peer_rx) = seeing.await.unwrap();
    assert_eq!(seen.messages, vec![LEN; MESSAGES]);
    assert_eq!(seen.close, Some(1000));
    // §5.5.3: each Pong answers a Ping later than the one before it, and
    // the last answers the last Ping.
    assert!(
        seen.pongs.windows(2).all(|w| w[0] < w[1]),
        "Pongs out of order: {:?}",
        seen.pongs
    );
    assert_eq!(seen.pongs.last(), Some(&last));
    assert!(
        seen.pongs_amid_data > 0,
        "no Pong went out while the data did: {seen:?}"
    );
    // Our Close is answered: the reader sees it, then the end.
    peer_tx
        .write_all(&masked(0x88, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    writing.await.unwrap();
    let (pings, end) = tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("the reader did not end")
        .unwrap();
    assert_eq!(pings as u32, counter);
    assert_eq!(end, Some(CloseCode::NORMAL));
}

#[tokio::test]
async fn the_peers_close_read_by_the_reader_stops_the_writer_after_whole_frames() {
    const LEN: usize = 256 * 1024;
    let (ws, peer) = server_and_raw_peer(fragmenting(16 * 1024)).await;
    let (mut reader, mut writer) = ws.split();
    let (mut peer_rx, mut peer_tx) = peer.into_split();
    // The writer sends until it is refused.
    let writing = tokio::spawn(async move {
        let mut sent = 0usize;
        loop {
            match writer.send(Message::binary(vec![sent as u8; LEN])).await {
                Ok(()) => sent += 1,
                Err(e) => return (sent, e),
            }
        }
    });
    let reading = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(event) = reader.recv().await {
            events.push(event.map_err(|e| e.to_string()));
        }
        events
    });
    // Some messages in, the peer closes (§7.4.1: 1001, "going away").
    let closing = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peer_tx
            .write_all(&masked(0x88, &1001u16.to_be_bytes()))
            .await
            .unwrap();
        peer_tx
    });
    // Whatever the writer had queued comes out whole before the reply
    // (`read_until_close` refuses a Close inside a message).
    let (pongs_tx, _pongs) = tokio::sync::mpsc::unbounded_channel();
    let seen = read_until_close(&mut peer_rx, usize::MAX, pongs_tx).await;
    // §5.5.1: the reply echoes the code.
    assert_eq!(seen.close, Some(1001));
    // And nothing follows it (§5.5.1: no data after a Close); TCP ends.
    let mut rest = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut peer_rx, &mut rest),
    )
    .await
    .expect("the server did not close TCP")
    .unwrap();
    assert!(rest.is_empty(), "{} bytes after the Close", rest.len());
    let _peer_tx = closing.await.unwrap();
    let (sent, error) = writing.await.unwrap();
    assert!(!seen.messages.is_empty(), "the Close came before any data");
    assert_eq!(seen.messages, vec![LEN; seen.messages.len()]);
    assert!(sent >= seen.messages.len(), "{sent} sent, {seen:?}");
    assert!(
        matches!(error, Error::Protocol(proto::Error::Closed)),
        "{error:?}"
    );
    let events = reading.await.unwrap();
    assert!(
        matches!(
            events[..],
            [Ok(Message::Close(Some(CloseFrame {
                code: CloseCode::GOING_AWAY,
                ..
            })))]
        ),
        "{events:?}"
    );
}

#[tokio::test]
async fn split_writer_queues_several_messages_and_writes_them_on_flush() {
    let (ws, mut peer) = server_and_raw_peer(Config::default()).await;
    let (_reader, mut writer) = ws.split();
    for i in 0..10u8 {
        writer.queue(Message::binary(vec![i; 100])).unwrap();
    }
    // Ten frames of 2 header bytes and 100 payload bytes (§5.2), held.
    assert_eq!(writer.pending_output_len(), 10 * 102);
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(
        Duration::from_millis(200),
        tokio::io::AsyncReadExt::read(&mut peer, &mut byte),
    )
    .await;
    assert!(early.is_err(), "queue() wrote before the flush");
    writer.flush().await.unwrap();
    assert_eq!(writer.pending_output_len(), 0);
    for i in 0..10u8 {
        assert_eq!(read_frame(&mut peer).await, (0x82, vec![i; 100]));
    }
}

#[cfg(feature = "deflate")]
#[tokio::test]
async fn a_compressor_keeps_its_context_across_the_split() {
    // RFC 7692 §7.2.1: with context takeover, a message may refer back to
    // the ones before it, so the writer must carry on the compressor the
    // socket used before the split.
    let mut config = Config::default();
    config.protocol.deflate = Some(proto::DeflateConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_config = config.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let ws = transport::accept(stream, server_config).await.unwrap();
        common::forward_echo(ws).await;
    });
    let (mut ws, _) = transport::connect(&format!("ws://{addr}/"), config)
        .await
        .unwrap();
    assert!(ws.connection().deflate_enabled(), "deflate not negotiated");
    let text = "the same words, again and again; ".repeat(100);
    ws.send(Message::text(text.clone())).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text(text.clone())
    );
    let (mut reader, mut writer) = ws.split();
    for i in 0..3 {
        let message = Message::text(format!("{text}{i}"));
        writer.send(message.clone()).await.unwrap();
        assert_eq!(reader.recv().await.unwrap().unwrap(), message);
    }
}
