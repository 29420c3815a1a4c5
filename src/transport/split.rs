//! [`WebSocket::split`]: a reader and a writer for two tasks; the reader
//! is a `futures` `Stream`, the writer a `Sink`, as the unsplit
//! [`WebSocket`] is both.
//!
//! # Two sockets, one control block
//!
//! The halves own their state: the reader a `WebSocket` over the stream's
//! read half with the connection's reading side (parser, timers, its
//! replies), the writer a `WebSocket` over the write half with the sending
//! side ([`Connection::split_sender`](crate::proto::Connection::split_sender):
//! queued output, fragments, mask keys, compressor). Sending and receiving
//! take no lock on each other. What they share is one small control block:
//!
//! - **the reader's replies**, whole control frames: the Pong owed to the
//!   latest Ping (§5.5.3), the reply to the peer's Close (§5.5.1), the
//!   Close a failure sends (§7.1.7). The writer puts them at the tail of
//!   its output ([`queue_encoded`](crate::proto::Connection::queue_encoded)),
//!   so between its frames and never inside one (§5.4 lets control frames
//!   go between the fragments of a message);
//! - **the write half of the stream, while the writer is idle**: the
//!   writer keeps it while it has bytes to write and parks it here once
//!   all is written; a reader with replies takes it, writes them, and
//!   parks it again. So Pongs and Closes still go out while only the
//!   reader is polled. A writer in the middle of its output (a frame begun
//!   and the socket full) holds it: the reader's replies then wait for the
//!   writer's next write, which a live `send`, `flush` or `Sink` makes when
//!   the socket drains. A writer whose `send` was dropped mid-way holds
//!   them up until it is polled again;
//! - **close state**: whose Close went out first (§5.5.1: one Close per
//!   side; nothing after it). The writer's Close makes the reader stop
//!   answering and replying ([`note_close_sent`](crate::proto::Connection::note_close_sent))
//!   and wait for the peer's, under the close timer; the reader's Close
//!   ends the writer (`Error::Protocol(Closed)`), after the output queued
//!   before it;
//! - two flags: the writer's output is over
//!   [`Config::write_buffer_limit`](super::Config::write_buffer_limit), so
//!   the reader pauses as the unsplit socket does (see "Backpressure" in
//!   the [module documentation](super)), and the send timer fired, which
//!   the reader then returns too.
//!
//! The control block's mutex is held for a few field moves, never across
//! a system call. The stream itself is split with `tokio::io::split`,
//! which pairs the two directions of one stream (a TLS stream's are one
//! state) behind tokio's own lock, held for one read or write call.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};

use super::{Error, WebSocket};
use crate::proto::{self, CloseFrame, Message, PreparedFrame};

/// Close state: no Close sent yet.
const OPEN: u8 = 0;
/// The writer's Close is queued: the reader sends nothing more.
const WRITER_CLOSED: u8 = 1;
/// The reader's Close (a reply, or a failure's) is queued or written.
const READER_CLOSED: u8 = 2;

struct Shared<S> {
    control: Mutex<Control<S>>,
    /// [`OPEN`], [`WRITER_CLOSED`] or [`READER_CLOSED`]; changed under the
    /// control lock, read without it.
    close: AtomicU8,
    /// The reader's Close went to the socket directly (the writer was
    /// idle): the writer's later output must not follow it.
    close_written_by_reader: AtomicBool,
    /// The writer's output is over the write buffer limit.
    writer_over_limit: AtomicBool,
    /// The writer's send timer fired.
    send_timed_out: AtomicBool,
}

struct Control<S> {
    /// The write half, while no half is writing.
    parked: Option<Parked<S>>,
    /// Reply frames from the reader, for the writer's tail.
    replies: Vec<Bytes>,
    /// Wakers of halves waiting for the write half or for the writer.
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// The write half, with the bytes that must precede anything else on it:
/// the rest of reply frames the reader began to write.
struct Parked<S> {
    io: WriteHalf<S>,
    inflight: VecDeque<Bytes>,
}

impl<S: AsyncWrite> Parked<S> {
    /// Writes `inflight` until none is left or the socket is full.
    fn poll_inflight(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(front) = self.inflight.front_mut() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, front))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            front.advance(n);
            if front.is_empty() {
                self.inflight.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S> Shared<S> {
    /// A poisoned lock means a panic elsewhere while polling; the block
    /// holds no invariant a panic can break mid-way, so carry on.
    fn lock(&self) -> MutexGuard<'_, Control<S>> {
        self.control
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Parks the write half, and wakes the other half if it waits for it.
    /// `waiting` is the caller's waker, if it must hear when the other half
    /// is done with the write half.
    fn park(&self, parked: Parked<S>, by_reader: bool, waiting: Option<Waker>) {
        let mut c = self.lock();
        c.parked = Some(parked);
        let other = if by_reader {
            if waiting.is_some() {
                c.reader = waiting;
            }
            c.writer.take()
        } else {
            if waiting.is_some() {
                c.writer = waiting;
            }
            c.reader.take()
        };
        drop(c);
        if let Some(w) = other {
            w.wake();
        }
    }

    fn wake_reader(&self) {
        let waker = self.lock().reader.take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The reader's stream: reads from the read half; what its connection
/// writes (replies only) goes to the writer's tail, or straight to the
/// write half while it is parked.
struct ReadIo<S> {
    read: ReadHalf<S>,
    shared: Arc<Shared<S>>,
}

impl<S: AsyncRead> AsyncRead for ReadIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> ReadIo<S> {
    /// Takes the parked write half with the replies waiting for it, or
    /// `None` if the writer holds it.
    fn take_parked(&self) -> Option<Parked<S>> {
        let mut c = self.shared.lock();
        let mut parked = c.parked.take()?;
        parked.inflight.extend(c.replies.drain(..));
        Some(parked)
    }
}

impl<S: AsyncWrite> AsyncWrite for ReadIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let shared = &this.shared;
        let mut c = shared.lock();
        if shared.close.load(Ordering::Acquire) == WRITER_CLOSED {
            // §5.5.1: nothing follows our Close, a reply included (the
            // connection stays silent after its own Close too).
            return Poll::Ready(Ok(buf.len()));
        }
        let closing = proto::contains_close(buf);
        if closing {
            shared.close.store(READER_CLOSED, Ordering::Release);
        }
        let frames = Bytes::copy_from_slice(buf);
        let Some(mut parked) = c.parked.take() else {
            // The writer holds the write half: its next write puts these
            // at the tail of its output.
            c.replies.push(frames);
            let writer = c.writer.take();
            drop(c);
            if let Some(w) = writer {
                w.wake();
            }
            return Poll::Ready(Ok(buf.len()));
        };
        parked.inflight.extend(c.replies.drain(..));
        parked.inflight.push_back(frames);
        if closing {
            shared
                .close_written_by_reader
                .store(true, Ordering::Release);
        }
        drop(c);
        let result = parked.poll_inflight(cx);
        let waiting = result.is_pending().then(|| cx.waker().clone());
        shared.park(parked, true, waiting);
        match result {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // Accepted: what the socket did not take yet stays at the
            // front of the write half, for whichever half writes next.
            _ => Poll::Ready(Ok(buf.len())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(mut parked) = this.take_parked() else {
            // The writer holds the write half: our replies are its to
            // write, under its own send timer.
            return Poll::Ready(Ok(()));
        };
        let result = match parked.poll_inflight(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut parked.io).poll_flush(cx),
            other => other,
        };
        let waiting = result.is_pending().then(|| cx.waker().clone());
        this.shared.park(parked, true, waiting);
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(mut parked) = this.take_parked() else {
            // Our FIN waits for the writer to finish what it began (the
            // close timer bounds the wait).
            this.shared.lock().reader = Some(cx.waker().clone());
            return Poll::Pending;
        };
        let result = match parked.poll_inflight(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut parked.io).poll_shutdown(cx),
            other => other,
        };
        let waiting = result.is_pending().then(|| cx.waker().clone());
        this.shared.park(parked, true, waiting);
        result
    }
}

/// The writer's stream: the write half, held while there is output and
/// parked in the control block once all is written.
struct WriteIo<S> {
    held: Option<Parked<S>>,
    shared: Arc<Shared<S>>,
    vectored: bool,
}

impl<S> WriteIo<S> {
    /// The write half, taken from the control block if parked there.
    fn poll_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut Parked<S>>> {
        if self.held.is_none() {
            let mut c = self.shared.lock();
            if self.shared.close_written_by_reader.load(Ordering::Acquire) {
                // §5.5.1: the reader's Close is on the wire; nothing of
                // ours may follow it.
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the connection is closed",
                )));
            }
            match c.parked.take() {
                Some(parked) => self.held = Some(parked),
                None => {
                    // The reader is writing with it, for one call.
                    c.writer = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
        match &mut self.held {
            Some(parked) => Poll::Ready(Ok(parked)),
            None => Poll::Pending,
        }
    }
}

impl<S> AsyncRead for WriteIo<S> {
    /// Never called: the writer's socket only writes.
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

impl<S: AsyncWrite> AsyncWrite for WriteIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let parked = ready!(self.get_mut().poll_held(cx))?;
        ready!(parked.poll_inflight(cx))?;
        Pin::new(&mut parked.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let parked = ready!(self.get_mut().poll_held(cx))?;
        ready!(parked.poll_inflight(cx))?;
        Pin::new(&mut parked.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let parked = ready!(self.get_mut().poll_held(cx))?;
        ready!(parked.poll_inflight(cx))?;
        Pin::new(&mut parked.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let parked = ready!(self.get_mut().poll_held(cx))?;
        ready!(parked.poll_inflight(cx))?;
        Pin::new(&mut parked.io).poll_shutdown(cx)
    }
}

pub(super) fn split<S>(socket: WebSocket<S>) -> (WsReader<S>, WsWriter<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let vectored = socket.get_ref().is_write_vectored();
    let (io, mut conn, started, config) = socket.into_split_parts();
    let sender = conn.split_sender();
    let close = match (conn.close_sent(), conn.state()) {
        (true, _) => WRITER_CLOSED,
        (false, proto::State::Closed) => READER_CLOSED,
        (false, _) => OPEN,
    };
    let (read, write) = tokio::io::split(io);
    let shared = Arc::new(Shared {
        control: Mutex::new(Control {
            parked: None,
            replies: Vec::new(),
            reader: None,
            writer: None,
        }),
        close: AtomicU8::new(close),
        close_written_by_reader: AtomicBool::new(false),
        writer_over_limit: AtomicBool::new(false),
        send_timed_out: AtomicBool::new(false),
    });
    // Chunks taken and not yet written (a frame maybe begun) go first.
    let writer_io = WriteIo {
        held: Some(Parked {
            io: write,
            inflight: started,
        }),
        shared: shared.clone(),
        vectored,
    };
    let reader_io = ReadIo {
        read,
        shared: shared.clone(),
    };
    let limit = config.write_buffer_limit;
    let mut writer = WsWriter {
        ws: WebSocket::from_parts(writer_io, sender, &config),
        shared: shared.clone(),
        limit,
    };
    // The writer parks the write half once its output is written.
    writer.settle();
    let reader = WsReader {
        ws: WebSocket::from_parts(reader_io, conn, &config),
        shared,
        reported_send_timeout: false,
    };
    (reader, writer)
}

/// The receiving half of a split [`WebSocket`]: a `Stream` of messages,
/// answering Pings and replying to the peer's Close itself; its replies go
/// out at the writer's next frame boundary, or at once while the writer is
/// idle.
pub struct WsReader<S> {
    ws: WebSocket<ReadIo<S>>,
    shared: Arc<Shared<S>>,
    reported_send_timeout: bool,
}

/// The sending half of a split [`WebSocket`]: a `Sink` of messages.
pub struct WsWriter<S> {
    ws: WebSocket<WriteIo<S>>,
    shared: Arc<Shared<S>>,
    limit: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    /// Receives the next message; see [`WebSocket::recv`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`WebSocket::recv`]: its state lives in the half.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The poll behind [`recv`](Self::recv) and the `Stream` impl: the I/O
    /// loop of [`WebSocket::poll_recv`] on the read half. It pauses while
    /// the writer's output is over the write buffer limit, and returns
    /// [`Error::SendTimeout`] once the writer's send timer has fired.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        if self.shared.send_timed_out.load(Ordering::Acquire) {
            if std::mem::replace(&mut self.reported_send_timeout, true) {
                return Poll::Ready(None);
            }
            return Poll::Ready(Some(Err(Error::SendTimeout)));
        }
        if self.shared.close.load(Ordering::Acquire) == WRITER_CLOSED
            && !self.ws.connection().close_sent()
        {
            self.ws.connection_mut().note_close_sent();
        }
        if self.shared.writer_over_limit.load(Ordering::Acquire) {
            self.shared.lock().reader = Some(cx.waker().clone());
            // Checked again: the writer may have drained meanwhile.
            if self.shared.writer_over_limit.load(Ordering::Acquire)
                && !self.shared.send_timed_out.load(Ordering::Acquire)
            {
                return Poll::Pending;
            }
        }
        self.ws.poll_recv(cx)
    }
}

/// `poll_next` is [`WsReader::poll_recv`]: cancel-safe, as
/// [`WebSocket::recv`].
impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WsReader<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    /// Puts the reader's replies at the tail of our output (between
    /// frames, §5.4), and notes a Close of the reader's that went out
    /// directly: nothing queued after it may follow (§5.5.1).
    fn absorb(&mut self) {
        let replies = std::mem::take(&mut self.shared.lock().replies);
        for frames in replies {
            self.ws.connection_mut().queue_encoded(frames);
        }
        if self.shared.close_written_by_reader.load(Ordering::Acquire)
            && !self.ws.connection().close_sent()
        {
            self.ws.connection_mut().note_close_sent();
        }
    }

    /// After each operation: parks the write half once everything is
    /// written (unless replies came meanwhile: `false`, write them), and
    /// tells the reader whether our output is over the limit.
    fn settle(&mut self) -> bool {
        let over = self.ws.pending_output_len() > self.limit;
        if self.shared.writer_over_limit.swap(over, Ordering::AcqRel) && !over {
            self.shared.wake_reader();
        }
        if self.ws.pending_output_len() > 0 || !self.ws.nothing_in_flight() {
            return true;
        }
        let io = self.ws.get_mut();
        let Some(parked) = io.held.take() else {
            return true;
        };
        if !parked.inflight.is_empty() {
            io.held = Some(parked);
            return true;
        }
        let mut c = self.shared.lock();
        if !c.replies.is_empty() {
            drop(c);
            io.held = Some(parked);
            return false;
        }
        c.parked = Some(parked);
        let reader = c.reader.take();
        drop(c);
        if let Some(w) = reader {
            w.wake();
        }
        true
    }

    /// Runs one writer operation between `absorb` and `settle`, until no
    /// reply arrived during it; maps the failures the halves share.
    fn poll_op<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&mut WebSocket<WriteIo<S>>, &mut Context<'_>) -> Poll<Result<T, Error>>,
    ) -> Poll<Result<T, Error>> {
        loop {
            self.absorb();
            let result = op(&mut self.ws, cx);
            let result = self.shared_failure(result);
            if self.settle() {
                return result;
            }
        }
    }

    fn shared_failure<T>(&self, result: Poll<Result<T, Error>>) -> Poll<Result<T, Error>> {
        match result {
            Poll::Ready(Err(Error::SendTimeout)) => {
                self.shared.send_timed_out.store(true, Ordering::Release);
                self.shared.wake_reader();
                Poll::Ready(Err(Error::SendTimeout))
            }
            Poll::Ready(Err(Error::Io(e)))
                if self.shared.close_written_by_reader.load(Ordering::Acquire) =>
            {
                let _ = e;
                Poll::Ready(Err(Error::Protocol(proto::Error::Closed)))
            }
            other => other,
        }
    }

    /// Sends a message; see [`WebSocket::send`].
    ///
    /// # Cancel safety
    ///
    /// As [`WebSocket::send`]: once first polled, the message is queued and
    /// goes out whole with the writer's next write.
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        self.queue(message)?;
        self.flush().await
    }

    /// Queues a message without writing it; see [`WebSocket::queue`].
    /// Several queued messages leave together with the next
    /// [`flush`](Self::flush) (one vectored write while they fit). After
    /// the reader's Close (a reply to the peer's, or a failure's) it
    /// refuses with `Error::Protocol(Closed)` (§5.5.1).
    pub fn queue(&mut self, message: Message) -> Result<(), Error> {
        self.absorb();
        if let Message::Close(frame) = message {
            return self.queue_close(frame);
        }
        self.ws.queue(message)
    }

    /// Our Close (§7.1.2), unless the reader's went first: the reader's
    /// replies so far go before it, none after.
    fn queue_close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        let mut c = self.shared.lock();
        if self.shared.close.load(Ordering::Acquire) != OPEN {
            return Err(Error::Protocol(proto::Error::Closed));
        }
        let replies = std::mem::take(&mut c.replies);
        for frames in replies {
            self.ws.connection_mut().queue_encoded(frames);
        }
        self.ws.queue(Message::Close(frame))?;
        self.shared.close.store(WRITER_CLOSED, Ordering::Release);
        drop(c);
        // The reader notes it, and waits for the peer's Close.
        self.shared.wake_reader();
        Ok(())
    }

    /// Queues a prepared frame without writing it (servers only); see
    /// [`WebSocket::queue_prepared`].
    pub fn queue_prepared(&mut self, frame: &PreparedFrame) -> Result<(), Error> {
        self.absorb();
        self.ws.queue_prepared(frame)
    }

    /// Sends a prepared frame (servers only).
    ///
    /// # Cancel safety
    ///
    /// As [`send`](Self::send).
    pub async fn send_prepared(&mut self, frame: &PreparedFrame) -> Result<(), Error> {
        self.queue_prepared(frame)?;
        self.flush().await
    }

    /// Bytes this half has queued and not yet written; see
    /// [`WebSocket::pending_output_len`].
    pub fn pending_output_len(&self) -> usize {
        self.ws.pending_output_len()
    }

    /// Writes everything queued; see [`WebSocket::flush`]. When the send
    /// timeout fires ([`Error::SendTimeout`]), the reader is woken and
    /// returns the same error.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: what is left stays queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush_out(cx)).await
    }

    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_op(cx, |ws, cx| ws.poll_write_out(cx))
    }

    /// Queues a Close frame and writes it. The reader sees the peer's reply
    /// and then the end of the stream.
    ///
    /// # Cancel safety
    ///
    /// As [`send`](Self::send).
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.queue(Message::Close(frame))?;
        self.flush().await
    }
}

/// As [`WebSocket`]'s `Sink`, but for one half: `poll_ready` waits while
/// more than [`Config::write_buffer_limit`](super::Config::write_buffer_limit)
/// bytes are queued, writing meanwhile, and is woken when the socket takes
/// enough of them; `start_send` queues; `poll_flush` writes all.
/// `poll_close` sends a Close without a code unless one was sent (§7.1.2)
/// and writes it: the handshake's end (the peer's Close, then `None`) is
/// the reader's to see.
///
/// # Cancel safety
///
/// As [`WebSocket`]'s `Sink`: state lives in the half, not in the futures
/// `SinkExt` builds.
impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut()
            .poll_op(cx, |ws, cx| ws.poll_ready_to_queue(cx))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().queue(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_flush_out(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.shared.close.load(Ordering::Acquire) == OPEN {
            // Refused only if the reader's Close came first: then ours is
            // not needed.
            let _ = this.queue_close(None);
        }
        this.poll_flush_out(cx)
    }
}
