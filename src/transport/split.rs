//! [`WebSocket::split`]: a reader and a writer for two tasks; the reader
//! is a `futures` `Stream`, the writer a `Sink`, as the unsplit
//! [`WebSocket`] is both.
//!
//! Both halves drive one [`WebSocket`]. The reader's automatic replies
//! (Pongs, the reply to a Close) go out from the reader itself, so they
//! leave even when nobody polls the writer.
//!
//! The halves share the `WebSocket` behind a `std::sync::Mutex` that is held
//! only inside a single `poll` (one parse step or one write, never across an
//! `.await`), so neither half can stall the other for longer than a system
//! call. It is still a lock on the data path: a reader answering a Ping
//! waits for a writer's system call to end (`benches/split.rs` measures
//! what that costs against the unsplit socket). tokio's streams keep one
//! waker per direction, and both halves may wait on the socket being
//! writable, so a write that cannot finish registers a waker that wakes
//! both.
//!
//! The reader drives [`WebSocket::poll_recv`], so it obeys the write buffer
//! limit too ([`Config::write_buffer_limit`](super::Config::write_buffer_limit)):
//! while the writer's output is over it, the reader returns nothing and
//! waits until the socket can take more; the waker the halves share then
//! wakes the reader, whichever half wrote last.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Error, WebSocket};
use crate::proto::{CloseFrame, Message, PreparedFrame, State};

struct Shared<S> {
    socket: Mutex<WebSocket<S>>,
    wakers: Arc<BothWakers>,
}

/// Wakes whichever halves wait on the socket.
#[derive(Default)]
struct BothWakers {
    reader: Mutex<Option<Waker>>,
    writer: Mutex<Option<Waker>>,
}

impl Wake for BothWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in [&self.reader, &self.writer] {
            if let Some(w) = lock(slot).take() {
                w.wake();
            }
        }
    }
}

/// A poisoned lock means a panic elsewhere while polling; the data it
/// guards holds no invariant a panic can break mid-way, so carry on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn split<S>(socket: WebSocket<S>) -> (WsReader<S>, WsWriter<S>) {
    let shared = Arc::new(Shared {
        socket: Mutex::new(socket),
        wakers: Arc::new(BothWakers::default()),
    });
    (
        WsReader {
            shared: shared.clone(),
        },
        WsWriter { shared },
    )
}

impl<S> Shared<S> {
    /// Runs `f` with a context whose waker wakes both halves, after noting
    /// that `mine` (the caller's slot) wants waking.
    fn poll_with<T>(
        &self,
        cx: &mut Context<'_>,
        reader: bool,
        f: impl FnOnce(&mut WebSocket<S>, &mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let slot = if reader {
            &self.wakers.reader
        } else {
            &self.wakers.writer
        };
        *lock(slot) = Some(cx.waker().clone());
        let waker = Waker::from(self.wakers.clone());
        let mut both = Context::from_waker(&waker);
        f(&mut lock(&self.socket), &mut both)
    }
}

/// The receiving half of a split [`WebSocket`].
pub struct WsReader<S> {
    shared: Arc<Shared<S>>,
}

/// The sending half of a split [`WebSocket`].
pub struct WsWriter<S> {
    shared: Arc<Shared<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    /// Receives the next message; see [`WebSocket::recv`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The poll behind [`recv`](Self::recv) and the `Stream` impl: the I/O
    /// loop of [`WebSocket::poll_recv`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        self.shared.poll_with(cx, true, |ws, cx| ws.poll_recv(cx))
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
    /// Sends a message; see [`WebSocket::send`].
    ///
    /// # Cancel safety
    ///
    /// As [`WebSocket::send`]: once first polled, the message is queued and
    /// goes out whole with the next write from either half.
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        self.queue(message)?;
        self.flush().await
    }

    /// Queues a message without writing it; see [`WebSocket::queue`].
    /// Several queued messages leave together with the next
    /// [`flush`](Self::flush) (one vectored write while they fit).
    pub fn queue(&mut self, message: Message) -> Result<(), Error> {
        lock(&self.shared.socket).queue(message)
    }

    /// Queues a prepared frame without writing it (servers only); see
    /// [`WebSocket::queue_prepared`].
    pub fn queue_prepared(&mut self, frame: &PreparedFrame) -> Result<(), Error> {
        lock(&self.shared.socket).queue_prepared(frame)
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

    /// Bytes queued and not yet written, by either half; see
    /// [`WebSocket::pending_output_len`].
    pub fn pending_output_len(&self) -> usize {
        lock(&self.shared.socket).pending_output_len()
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
        self.shared
            .poll_with(cx, false, |ws, cx| ws.poll_write_out(cx))
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
/// bytes are queued (by either half), writing meanwhile, and is woken when
/// the socket takes enough of them; `start_send` queues; `poll_flush`
/// writes all. `poll_close` sends a Close without a code unless one was
/// sent (§7.1.2) and writes it: the handshake's end (the peer's Close,
/// then `None`) is the reader's to see.
///
/// # Cancel safety
///
/// As [`WebSocket`]'s `Sink`: state lives in the connection, not in the
/// futures `SinkExt` builds.
impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut()
            .shared
            .poll_with(cx, false, |ws, cx| ws.poll_ready_to_queue(cx))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().queue(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_flush_out(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        {
            let mut ws = lock(&this.shared.socket);
            if ws.connection().state() == State::Open {
                ws.queue(Message::Close(None))?;
            }
        }
        this.poll_flush_out(cx)
    }
}
