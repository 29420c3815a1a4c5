//! [`WebSocket`]: one connection's socket, state machine and timers.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::{Config, Error, Keepalive};
use crate::proto::{CloseCode, CloseFrame, Connection, Message, PreparedFrame, State};

/// At most this many chunks go into one vectored write (Linux allows 1024;
/// 64 covers a burst of queued frames without a large stack array).
const MAX_IOVECS: usize = 64;

/// Reads into an empty connection go through a buffer of this size on the
/// stack, so an idle connection holds no read buffer. 4 KiB is one page,
/// and more than a burst of small frames needs.
const STACK_READ: usize = 4096;

/// A frame that spans reads grows the read buffer by at most this much at
/// a time, so a peer that announces a large frame and sends it slowly gets
/// memory in proportion to what it sent, not to what it announced.
const MAX_READ_RESERVE: usize = 256 * 1024;

/// A WebSocket connection over a stream `S`.
///
/// Made by [`accept`](super::accept), [`connect`](super::connect) and their
/// variants, or from a finished handshake with [`from_parts`](Self::from_parts).
#[derive(Debug)]
pub struct WebSocket<S> {
    io: S,
    conn: Connection,
    /// Chunks taken from the connection and not yet fully written.
    out: VecDeque<Bytes>,
    close_timeout: Duration,
    close_timer: Option<Pin<Box<Sleep>>>,
    keepalive: Option<KeepaliveTimer>,
    /// [`Config::write_buffer_limit`].
    write_buffer_limit: usize,
    /// With [`Config::frame_timeout`] only, and boxed: a connection without
    /// it (the default) carries one pointer, not the timer (idle memory is
    /// counted in `tests/idle_memory.rs`).
    frame_timer: Option<Box<FrameTimer>>,
    /// [`Config::send_timeout`].
    send_timeout: Option<Duration>,
    /// The send timer: only while the socket refuses output (a write
    /// returned `Pending`), and boxed, so a connection whose socket keeps
    /// up holds one null pointer and allocates nothing for it.
    send_timer: Option<Pin<Box<Sleep>>>,
    /// A write took bytes since the send timer was last started. Set on
    /// every write, read only when one is refused: the socket keeping up
    /// costs a store, not a clock read.
    progressed: bool,
    /// The send timer fired: the connection is dead, and every later
    /// write, send and `recv` says so ([`Error::SendTimeout`]).
    send_timed_out: bool,
    /// We shut down our side of TCP and are draining the peer's (see
    /// "lingering close" in `poll_recv`).
    shut_down: bool,
    /// The peer's side of TCP ended (a read returned 0).
    read_eof: bool,
    /// The stream ended (or the socket failed); `poll_recv` returns `None`.
    finished: bool,
}

#[derive(Debug)]
struct KeepaliveTimer {
    config: Keepalive,
    sleep: Pin<Box<Sleep>>,
    last_read: Instant,
    awaiting_pong: bool,
}

/// The deadline of the frame being read ([`Config::frame_timeout`]).
#[derive(Debug)]
struct FrameTimer {
    timeout: Duration,
    /// The frame being timed ([`Connection::frame_in_progress`]); only
    /// meaningful while `sleep` is set.
    frame: u64,
    /// Set while part of a frame is buffered.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Since when reading has been paused by the write buffer limit: time
    /// in which the peer could not have sent the rest, so not charged to
    /// it.
    paused_since: Option<Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a stream whose handshake is done, with the connection state
    /// made for it (give any bytes read past the handshake to
    /// [`Connection::receive`] first).
    pub fn from_parts(io: S, conn: Connection, config: &Config) -> Self {
        let keepalive = config.keepalive.map(|k| KeepaliveTimer {
            config: k,
            sleep: Box::pin(tokio::time::sleep(k.interval)),
            last_read: Instant::now(),
            awaiting_pong: false,
        });
        Self {
            io,
            conn,
            out: VecDeque::new(),
            close_timeout: config.close_timeout,
            close_timer: None,
            keepalive,
            write_buffer_limit: config.write_buffer_limit,
            frame_timer: config.frame_timeout.map(|timeout| {
                Box::new(FrameTimer {
                    timeout,
                    frame: 0,
                    sleep: None,
                    paused_since: None,
                })
            }),
            send_timeout: config.send_timeout,
            send_timer: None,
            progressed: false,
            send_timed_out: false,
            shut_down: false,
            read_eof: false,
            finished: false,
        }
    }

    /// The protocol state machine, to inspect.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Starts (`Some`) or stops (`None`) recording this connection's
    /// frames ([`Connection::set_frame_ring`]); returns the ring there
    /// was. The opt-in hook of a frame inspector: read it with
    /// `connection().frame_ring()`, take records with
    /// [`frame_ring_mut`](Self::frame_ring_mut).
    pub fn set_frame_ring(
        &mut self,
        ring: Option<Box<crate::proto::FrameRing>>,
    ) -> Option<Box<crate::proto::FrameRing>> {
        self.conn.set_frame_ring(ring)
    }

    /// The frame record, if one is kept, to take records from.
    pub fn frame_ring_mut(&mut self) -> Option<&mut crate::proto::FrameRing> {
        self.conn.frame_ring_mut()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Bytes queued and not yet written: what a server checks to bound a
    /// slow client's backlog, and what [`Config::write_buffer_limit`]
    /// bounds.
    pub fn pending_output_len(&self) -> usize {
        self.conn.pending_output_len() + self.out.iter().map(Bytes::len).sum::<usize>()
    }

    /// Whether queued output is over [`Config::write_buffer_limit`]: then
    /// `poll_recv` neither reads nor returns messages, and
    /// `Sink::poll_ready` waits, until the socket takes enough of it.
    fn over_write_limit(&self) -> bool {
        self.pending_output_len() > self.write_buffer_limit
    }

    /// Receives the next message or control frame; `None` once the
    /// connection is closed. Pings are answered and Close frames replied to
    /// automatically; they are returned too, for the curious.
    ///
    /// Keep calling it until it returns `None`: it also writes queued output
    /// and completes the close handshake.
    ///
    /// While more than [`Config::write_buffer_limit`] bytes are queued, it
    /// returns nothing, not even a message already read, and reads
    /// nothing: it writes, and waits for the socket to take the excess
    /// (timers still run). So a loop that answers each message
    /// (`recv`, then [`queue`](Self::queue)) holds at most the limit plus
    /// one answer, however fast the peer sends and however slowly it reads.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: partial frames, messages read but not yet returned, and
    /// queued output live in the `WebSocket`, not in the future, so
    /// dropping it (say, in `tokio::select!`) and calling `recv` again
    /// loses nothing. That holds while it waits on the write buffer limit
    /// too.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Queues a message without writing it; the next [`flush`](Self::flush),
    /// [`send`](Self::send) or [`recv`](Self::recv) writes it, together with
    /// anything else queued, in as few system calls as it can.
    ///
    /// It never waits and never refuses for lack of room: the
    /// [write buffer limit](Config::write_buffer_limit) is applied by
    /// `recv` (which stops returning messages while over it) and by
    /// `Sink::poll_ready`. A caller that queues without ever calling those,
    /// or `send`, bounds its output itself, with
    /// [`pending_output_len`](Self::pending_output_len).
    ///
    /// After [`Error::SendTimeout`] it refuses with that error: nothing
    /// queued would ever be written.
    pub fn queue(&mut self, message: Message) -> Result<(), Error> {
        if self.send_timed_out {
            return Err(Error::SendTimeout);
        }
        Ok(self.conn.send(message)?)
    }

    /// Queues a frame encoded once for many connections (servers only).
    pub fn queue_prepared(&mut self, frame: &PreparedFrame) -> Result<(), Error> {
        if self.send_timed_out {
            return Err(Error::SendTimeout);
        }
        Ok(self.conn.send_prepared(frame)?)
    }

    /// Sends a message: queues it, then writes everything queued. It
    /// returns once the socket has taken it all, so a loop of `send`s never
    /// leaves more than one message queued, within
    /// [`Config::write_buffer_limit`] (unless that one message is larger).
    /// A peer that stops reading makes it wait at most
    /// [`Config::send_timeout`] from the last write that made progress,
    /// then fail with [`Error::SendTimeout`].
    ///
    /// # Cancel safety
    ///
    /// The message is queued when the future is first polled. If the future
    /// is dropped after that, the message still goes out, once and whole,
    /// with the next `flush`, `send` or `recv`.
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        self.queue(message)?;
        self.flush().await
    }

    /// Sends a prepared frame (servers only); see [`send`](Self::send).
    ///
    /// # Cancel safety
    ///
    /// As for [`send`](Self::send).
    pub async fn send_prepared(&mut self, frame: &PreparedFrame) -> Result<(), Error> {
        self.queue_prepared(frame)?;
        self.flush().await
    }

    /// Writes everything queued; [`Error::SendTimeout`] if the socket
    /// accepts none of it for [`Config::send_timeout`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: what is left to write stays queued in the `WebSocket`,
    /// and the send timer with it (a new `flush` does not restart it).
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_write_out(cx)).await
    }

    /// Starts the close handshake (§7.1.2) and drives it to the end:
    /// waits for the peer's Close (messages arriving meanwhile are
    /// dropped), for our output to be written and for TCP to close, at most
    /// [`Config::close_timeout`] in all; [`Error::CloseTimeout`] if the
    /// peer did not answer or did not read (see "Timers" in the
    /// [module documentation](super)).
    ///
    /// # Cancel safety
    ///
    /// The Close frame is queued on the first poll; if the future is
    /// dropped, calling [`recv`](Self::recv) until `None` finishes the job.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        if !self.conn.close_sent() {
            self.conn.close(frame)?;
        }
        while let Some(event) = self.recv().await {
            match event {
                Ok(_) => {}
                // The peer closing TCP after our Close is the end we wanted.
                Err(Error::Protocol(crate::proto::Error::AbnormalClosure))
                    if self.conn.close_received() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Splits into a reader and a writer for use from two tasks: see
    /// [`WsReader`](super::WsReader) and [`WsWriter`](super::WsWriter).
    /// Timers start anew in the halves.
    pub fn split(self) -> (super::WsReader<S>, super::WsWriter<S>) {
        super::split::split(self)
    }

    /// What [`split`](Self::split) builds the halves from: the stream, the
    /// connection, the chunks taken from it and not yet written (the first
    /// maybe in part), and the settings it was made with.
    pub(super) fn into_split_parts(self) -> (S, Connection, VecDeque<Bytes>, Config) {
        let config = Config {
            close_timeout: self.close_timeout,
            keepalive: self.keepalive.as_ref().map(|k| k.config),
            write_buffer_limit: self.write_buffer_limit,
            frame_timeout: self.frame_timer.as_ref().map(|t| t.timeout),
            send_timeout: self.send_timeout,
            ..Config::default()
        };
        (self.io, self.conn, self.out, config)
    }

    /// The connection, for the split halves to share close state.
    pub(super) fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The stream, for the split writer to hand its write half over.
    pub(super) fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Whether everything taken from the connection has been written.
    pub(super) fn nothing_in_flight(&self) -> bool {
        self.out.is_empty()
    }

    /// The I/O loop of the [module documentation](super).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            if self.send_timed_out {
                // A `flush`, `send` or the split writer saw it first.
                return self.write_failed(Error::SendTimeout);
            }
            // 1. Events from bytes already read, unless our output is over
            //    its limit: a caller that answers every message must stop
            //    getting them, or a peer that sends and never reads makes
            //    it queue without end. What is buffered stays there, in
            //    order, Pings and Closes included, until the socket takes
            //    our output; replies already queued are never dropped.
            let paused = self.over_write_limit();
            if !paused && let Ok(Some(message)) = self.conn.poll_message() {
                match &message {
                    Message::Pong(_) => {
                        if let Some(k) = &mut self.keepalive {
                            k.awaiting_pong = false;
                        }
                    }
                    // Replies are queued: give them a chance to leave now,
                    // in case the caller does not poll again soon.
                    Message::Ping(_) | Message::Close(_) => {
                        if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                            return self.write_failed(e);
                        }
                    }
                    Message::Text(_) | Message::Binary(_) => {}
                }
                return Poll::Ready(Some(Ok(message)));
            }
            // 2. Output; a full socket stops us reading only past the
            //    write buffer limit (step 5).
            let flushed = match self.poll_write_out(cx) {
                Poll::Ready(Ok(())) => true,
                Poll::Ready(Err(e)) => return self.write_failed(e),
                Poll::Pending => false,
            };
            // 3. Closing TCP: after the close handshake (server), a failure,
            //    or the peer's FIN.
            if self.conn.should_close_tcp() {
                if !self.shut_down {
                    // Our output goes first (our Close among it: §7.1.1's
                    // server closes "immediately" after the handshake and
                    // §7.1.7 "SHOULD first send a Close frame"), then our
                    // FIN. The peer may already be gone; its absence is not
                    // our error, so a failed shutdown still counts as done.
                    if flushed && Pin::new(&mut self.io).poll_shutdown(cx).is_ready() {
                        self.shut_down = true;
                    } else if self.close_timer_expired(cx) {
                        // A peer that never reads keeps our socket full for
                        // ever, and with it this connection and its task:
                        // the close timer bounds the wait, as it bounds the
                        // lingering close below. What is left unwritten is
                        // dropped.
                        let error = self.failure().unwrap_or(Error::CloseTimeout);
                        return self.finish(Some(error));
                    } else {
                        // Woken by the socket (it can take more) or by the
                        // close timer, whichever comes first.
                        return Poll::Pending;
                    }
                }
                // Lingering close: closing a socket with unread input makes
                // the kernel answer with RST, which can destroy our Close
                // frame before the peer reads it. So after our FIN, read and
                // discard until the peer's FIN or the close timer, as
                // nginx's `lingering_close` does. A well-behaved peer sends
                // its FIN at once, and this costs nothing.
                if self.read_eof || self.close_timer_expired(cx) {
                    // Everything we had to send went out: the close itself
                    // succeeded, whatever the peer does with its side.
                    let error = self.failure();
                    return self.finish(error);
                }
                match self.poll_read_more(cx) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => self.read_eof = true,
                    // Discarded: a closed connection ignores input.
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            let reading = !self.over_write_limit();
            if paused && reading {
                // The write made room: what is buffered comes before the
                // timers (the frame timer needs it parsed) and new reads.
                continue;
            }
            // 4. Timers.
            if let Poll::Ready(result) = self.poll_timers(cx, reading) {
                return self.finish(result);
            }
            // 5. More bytes, unless our output is still over the limit: then
            //    wait for the socket to take some. Step 2's write returned
            //    Pending (nothing short of that leaves output over the
            //    limit), so the socket will wake us when it is writable;
            //    the timers will if they fire first.
            if !reading {
                return Poll::Pending;
            }
            match self.poll_read_more(cx) {
                Poll::Ready(Ok(0)) => {
                    self.read_eof = true;
                    self.conn.receive_eof();
                }
                Poll::Ready(Ok(_)) => {
                    if let Some(k) = &mut self.keepalive {
                        k.last_read = Instant::now();
                    }
                }
                Poll::Ready(Err(e)) => return self.finish(Some(Error::Io(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn finish(&mut self, error: Option<Error>) -> Poll<Option<Result<Message, Error>>> {
        self.finished = true;
        self.close_timer = None;
        self.keepalive = None;
        self.frame_timer = None;
        self.send_timer = None;
        self.out.clear();
        Poll::Ready(error.map(Err))
    }

    /// Ends the stream on a write that failed or timed out. A send timeout
    /// on a connection that had failed (a protocol violation whose Close
    /// was stuck behind output the peer did not read) returns that
    /// failure, as the close timer does: errors are sticky, and the
    /// timeout is only how the failure ended.
    fn write_failed(&mut self, error: Error) -> Poll<Option<Result<Message, Error>>> {
        let error = match error {
            Error::SendTimeout if self.conn.state() == State::Closed => {
                self.failure().unwrap_or(Error::SendTimeout)
            }
            e => e,
        };
        self.finish(Some(error))
    }

    /// The error the connection failed with, if it did (sticky, §7.1.7).
    /// Only called once the connection is closed: then `poll_message`
    /// returns that error or `Ok(None)` (after the peer's Close, input is
    /// discarded, §5.5.1), never a message, so nothing is lost.
    fn failure(&mut self) -> Option<Error> {
        self.conn.poll_message().err().map(Error::Protocol)
    }

    /// Whether the close timer, started now if it is not running yet, has
    /// fired: closing, from our Close (or the first poll that finds TCP
    /// must close) to the end of the lingering close, takes at most
    /// [`Config::close_timeout`] in all.
    fn close_timer_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.close_timeout;
        let timer = self
            .close_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        timer.as_mut().poll(cx).is_ready()
    }

    /// `Ready(Some(..))` when a timer ends the connection. `reading` is
    /// false while the write buffer limit pauses reading; every timer runs
    /// then but the frame timer, which waits for bytes we are not reading.
    fn poll_timers(&mut self, cx: &mut Context<'_>, reading: bool) -> Poll<Option<Error>> {
        if self.conn.awaiting_close() && self.close_timer_expired(cx) {
            // A client waiting for the server's FIN after a complete close
            // handshake may close itself (§7.1.1): not an error, once its
            // reply to the server's Close has gone out. Still queued, the
            // peer never read it: the close did not complete.
            return Poll::Ready(match self.conn.state() {
                State::Closed if self.pending_output_len() == 0 => None,
                State::Open | State::Closing | State::Closed => Some(Error::CloseTimeout),
            });
        }
        if let Some(k) = &mut self.keepalive {
            while k.sleep.as_mut().poll(cx).is_ready() {
                if k.awaiting_pong {
                    return Poll::Ready(Some(Error::PongTimeout));
                }
                let due = k.last_read + k.config.interval;
                let now = Instant::now();
                if now >= due && self.conn.state() == State::Open {
                    // A sent Ping carries nothing; the Pong echoes it.
                    let _ = self.conn.send_ping(Bytes::new());
                    k.awaiting_pong = true;
                    k.sleep.as_mut().reset(now + k.config.timeout);
                } else {
                    k.sleep
                        .as_mut()
                        .reset(due.max(now + Duration::from_millis(1)));
                }
            }
            if k.awaiting_pong {
                // The Ping just queued should not wait for the next read.
                if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                    return Poll::Ready(Some(e));
                }
            }
        }
        self.poll_frame_timer(cx, reading)
    }

    /// The frame timer ([`Config::frame_timeout`]): one deadline per frame,
    /// from the poll that first finds part of it buffered until the poll
    /// that finds it complete.
    fn poll_frame_timer(&mut self, cx: &mut Context<'_>, reading: bool) -> Poll<Option<Error>> {
        let Some(timer) = &mut self.frame_timer else {
            return Poll::Pending;
        };
        // Exact when step 1 has just parsed all it could, which it has
        // unless reading is paused; then this is at worst a frame already
        // whole in the buffer, whose timer is paused too.
        let Some(frame) = self.conn.frame_in_progress() else {
            timer.sleep = None;
            timer.paused_since = None;
            return Poll::Pending;
        };
        let sleep = match &mut timer.sleep {
            Some(sleep) if timer.frame == frame => sleep,
            // A new frame (or the first): its own full timeout.
            slot => {
                timer.frame = frame;
                timer.paused_since = None;
                slot.insert(Box::pin(tokio::time::sleep(timer.timeout)))
            }
        };
        if !reading {
            timer.paused_since.get_or_insert_with(Instant::now);
            return Poll::Pending;
        }
        if let Some(since) = timer.paused_since.take() {
            let deadline = sleep.deadline() + since.elapsed();
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if self.conn.state() == State::Open {
            // §7.4.1: 1008 "indicates that an endpoint is terminating the
            // connection because it has received a message that violates
            // its policy"; ours is that a frame arrives within the timeout.
            let _ = self.conn.close(Some(CloseFrame::new(
                CloseCode::POLICY_VIOLATION,
                "frame timeout",
            )));
            // One try, no waiting: a peer this slow to send may be as slow
            // to read, and waiting on it is what the timer ends. When it
            // all went out, our FIN follows, so the peer sees the end now
            // rather than when the application drops the socket.
            if let Poll::Ready(Ok(())) = self.poll_write_out(cx) {
                let _ = Pin::new(&mut self.io).poll_shutdown(cx);
            }
        }
        Poll::Ready(Some(Error::FrameTimeout))
    }

    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.conn.read_buffer().is_empty() {
            // Uninitialised (safely: `ReadBuf` tracks what the reader has
            // written, and only that is read back), so each read does not
            // first zero 4 KiB: 1.2 % of the server's CPU on small echoes,
            // in loadtest's profile.
            let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); STACK_READ];
            let mut buf = ReadBuf::uninit(&mut stack);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Pending => {
                    // About to wait for the peer: hold no buffers meanwhile.
                    if self.out.is_empty() {
                        self.out = VecDeque::new();
                    }
                    self.conn.shrink_buffers();
                    Poll::Pending
                }
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    self.conn.receive(buf.filled());
                    Poll::Ready(Ok(n))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            }
        } else {
            let want = self.conn.read_hint().clamp(STACK_READ, MAX_READ_RESERVE);
            let rbuf = self.conn.read_buffer();
            rbuf.reserve(want);
            tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, rbuf)
        }
    }

    /// Writes queued output until none is left (`Ready(Ok)`) or the socket
    /// is full (`Pending`), under the send timer: `Err(SendTimeout)` once
    /// the socket has refused output for [`Config::send_timeout`], and
    /// for ever after.
    pub(super) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.send_timed_out {
            return Poll::Ready(Err(Error::SendTimeout));
        }
        match self.poll_write_queued(cx) {
            Poll::Ready(Ok(())) => {
                // All written: the timer stops, and its memory goes.
                self.send_timer = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(Error::Io(e))),
            // A refused write, or a stream's flush that cannot finish
            // (TLS, whose own buffer waits on the socket): either way our
            // output is not being taken.
            Poll::Pending => self.poll_send_timer(cx),
        }
    }

    /// The socket refused output: starts the send timer, or restarts it if
    /// a write took bytes since it last started, and polls it. `Pending`
    /// until it fires; then the connection ends (`Err(SendTimeout)`).
    fn poll_send_timer(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let Some(timeout) = self.send_timeout else {
            return Poll::Pending;
        };
        // Progress made before the timer started counts for nothing: it
        // starts full now.
        let progressed = std::mem::take(&mut self.progressed);
        let timer = match &mut self.send_timer {
            Some(timer) => {
                if progressed {
                    timer.as_mut().reset(Instant::now() + timeout);
                }
                timer
            }
            slot => slot.insert(Box::pin(tokio::time::sleep(timeout))),
        };
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // The peer took nothing for the whole timeout. No Close frame:
        // it would wait behind what the peer is not reading. The output
        // (ours and the connection's) is freed now, not when the
        // application drops the socket; the shutdown (one try, no
        // waiting) closes our side of TCP even if it never does.
        self.send_timed_out = true;
        self.send_timer = None;
        self.out = VecDeque::new();
        while self.conn.poll_transmit().is_some() {}
        let _ = Pin::new(&mut self.io).poll_shutdown(cx);
        Poll::Ready(Err(Error::SendTimeout))
    }

    /// [`poll_write_out`](Self::poll_write_out)'s writes, without the
    /// timer.
    fn poll_write_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            while self.out.len() < MAX_IOVECS {
                match self.conn.poll_transmit() {
                    Some(chunk) => self.out.push_back(chunk),
                    None => break,
                }
            }
            if self.out.is_empty() {
                return Pin::new(&mut self.io).poll_flush(cx);
            }
            let written = if self.io.is_write_vectored() && self.out.len() > 1 {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = slices
                    .iter_mut()
                    .zip(&self.out)
                    .map(|(s, c)| *s = IoSlice::new(c))
                    .count();
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]))?
            } else {
                let first = self.out.front().map_or(&[][..], |c| &c[..]);
                ready!(Pin::new(&mut self.io).poll_write(cx, first))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.progressed = true;
            let mut left = written;
            while left > 0 {
                let Some(front) = self.out.front_mut() else {
                    break;
                };
                if front.len() <= left {
                    left -= front.len();
                    self.out.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// `Sink::poll_ready`: `Pending` while more than
    /// [`Config::write_buffer_limit`] bytes are queued, writing meanwhile;
    /// the socket wakes the task when it takes more, and then this is
    /// `Ready` once the backlog is back within the limit.
    pub(super) fn poll_ready_to_queue(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.send_timed_out {
            // Sticky: nothing sent now would be written.
            return Poll::Ready(Err(Error::SendTimeout));
        }
        if self.over_write_limit() {
            if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                return Poll::Ready(Err(e));
            }
            // Still over means the write returned Pending: the socket wakes
            // us when it can take more.
            if self.over_write_limit() {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// `Sink::poll_close`: queues a Close without a code if none was sent
    /// (§7.1.2), then runs the I/O loop until the stream ends, dropping
    /// what arrives meanwhile.
    pub(super) fn poll_close_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if !self.conn.close_sent() && !self.finished {
            self.conn.close(None)?;
        }
        loop {
            match ready!(self.poll_recv(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(_)) => {}
                // The peer closing TCP after our Close is the end we wanted.
                Some(Err(Error::Protocol(crate::proto::Error::AbnormalClosure))) => {}
                Some(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// `poll_next` is [`WebSocket::poll_recv`], so the `Stream` is cancel-safe
/// as [`recv`](WebSocket::recv) is: `StreamExt::next` can sit in a
/// `tokio::select!`.
impl<S: AsyncRead + AsyncWrite + Unpin> futures_core::Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

/// `poll_ready` waits while more than [`Config::write_buffer_limit`] bytes
/// are queued, writing meanwhile; `start_send` queues; `poll_flush` writes
/// all; `poll_close` runs the close handshake to its end. Each returns
/// [`Error::SendTimeout`] once the send timer has fired
/// ([`Config::send_timeout`]).
///
/// # Cancel safety
///
/// Everything lives in the `WebSocket`, none of it in the futures that
/// `SinkExt` builds: dropping `SinkExt::send` after `start_send` leaves
/// the message queued (it goes out with the next write, as for
/// [`WebSocket::send`]); dropping it before leaves nothing. `SinkExt::flush`
/// and `SinkExt::close` can be dropped and called again.
impl<S: AsyncRead + AsyncWrite + Unpin> futures_sink::Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_ready_to_queue(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().queue(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_write_out(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_close_handshake(cx)
    }
}
