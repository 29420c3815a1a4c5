//! The open connection: what is typed goes out, what arrives is printed,
//! until the closing handshake (RFC 6455 §7.1.2) ends it.
//!
//! One loop waits, with `tokio::select!`, on four things: the next message
//! ([`WebSocket::recv`], cancel-safe, so losing the race loses nothing),
//! the next line or chunk of stdin, the `--ping-interval` timer, and the
//! `--wait` deadline. Stdin's end starts the close: at once with 1000 and
//! the reason "bye", or, with `--wait`, once the deadline has passed.
//! After our Close the transport's close timer (5 s) bounds the wait for
//! the server's, so the client never hangs on a server that does not
//! answer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rfc6455::proto::{CloseCode, CloseFrame, Message};
use rfc6455::transport::trace::close_code_meaning;
use rfc6455::transport::{self, WebSocket};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::Exit;
use super::command::{self, Line};

/// The most stdin bytes one binary message carries: a read of up to this
/// much is sent as it comes (a pipe's buffer is 64 KiB on Linux, so a
/// fast writer fills whole messages, an interactive one sends what it
/// typed).
const CHUNK: usize = 64 << 10;

/// Pings sent and not yet answered that we remember, oldest first; an
/// older one is forgotten (its Pong, if it comes, is "unexpected").
const MAX_PINGS: usize = 64;

/// How the session behaves.
pub struct Options {
    /// Raw bytes in and out, not lines.
    pub binary: bool,
    /// Send a Ping this often.
    pub ping_interval: Option<Duration>,
    /// After stdin ends, print replies this long before closing.
    pub wait: Option<Duration>,
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading stdin.
    Typing,
    /// Stdin has ended; printing replies until this deadline.
    Waiting(tokio::time::Instant),
    /// Our Close is queued: waiting for the server's.
    Closing,
}

/// Runs the session to its end; the exit status.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(ws: WebSocket<S>, options: Options) -> Exit {
    match drive(ws, options).await {
        Ok(exit) => exit,
        Err(why) => {
            eprintln!("error: {why}");
            Exit::Failed
        }
    }
}

/// The loop of the module documentation; `Err` says why it failed.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocket<S>,
    options: Options,
) -> Result<Exit, String> {
    if !options.binary {
        eprintln!("type a line to send it (/help for commands), end with Ctrl-D");
    }
    let mut stdin = Stdin::new(options.binary);
    let mut ticker = options.ping_interval.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut s = Session {
        ws,
        binary: options.binary,
        stdout: tokio::io::stdout(),
        pings: Pings::default(),
        phase: Phase::Typing,
        peer_close: None,
        we_closed: false,
    };
    loop {
        let deadline = match s.phase {
            Phase::Waiting(at) => Some(at),
            _ => None,
        };
        tokio::select! {
            event = s.ws.recv() => {
                if let Some(exit) = s.received(event).await? {
                    return Ok(exit);
                }
            }
            input = stdin.next(), if s.phase == Phase::Typing => match input {
                Ok(input) => s.typed(input, options.wait).await?,
                // §5.6: a text message is UTF-8. The line is dropped
                // (the reader discards it); the next one is read.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => eprintln!(
                    "not sent: a line that is not UTF-8 (a text message must be, RFC 6455 §5.6); \
                     send raw bytes with --binary"
                ),
                Err(e) => return Err(format!("cannot read stdin: {e}")),
            },
            _ = tick(&mut ticker), if s.phase != Phase::Closing => {
                let payload = s.pings.next_payload();
                s.ping(payload).await?;
            }
            _ = until(deadline), if deadline.is_some() => s.close(goodbye()).await?,
        }
    }
}

/// The Close we send when input ends: 1000 (§7.4.1).
fn goodbye() -> CloseFrame {
    CloseFrame::new(CloseCode::NORMAL, "bye")
}

/// One connection's session.
struct Session<S> {
    ws: WebSocket<S>,
    binary: bool,
    stdout: tokio::io::Stdout,
    pings: Pings,
    phase: Phase,
    /// The server's Close, once it came.
    peer_close: Option<Option<CloseFrame>>,
    /// Our Close went first.
    we_closed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// What `recv` gave; `Some` once the connection has ended.
    async fn received(
        &mut self,
        event: Option<Result<Message, transport::Error>>,
    ) -> Result<Option<Exit>, String> {
        match event {
            Some(Ok(Message::Text(t))) if self.binary => self.write(t.as_bytes()).await?,
            Some(Ok(Message::Text(t))) => self.write(format!("{t}\n").as_bytes()).await?,
            Some(Ok(Message::Binary(b))) if self.binary => self.write(&b).await?,
            Some(Ok(Message::Binary(b))) => {
                self.write(format!("<binary, {} bytes>\n", b.len()).as_bytes())
                    .await?
            }
            Some(Ok(Message::Pong(payload))) => self.pings.answered(&payload),
            // Answered by the transport already (§5.5.2).
            Some(Ok(Message::Ping(_))) => {}
            Some(Ok(Message::Close(frame))) => {
                report_close(frame.as_ref(), self.we_closed);
                self.peer_close = Some(frame);
                // §5.5.1: the transport has queued our reply; stop reading
                // stdin, whatever it still holds.
                self.phase = Phase::Closing;
            }
            // The server closing TCP after the close handshake is the end
            // we wanted (§7.1.1).
            Some(Err(transport::Error::Protocol(rfc6455::proto::Error::AbnormalClosure)))
                if self.ws.connection().close_received() =>
            {
                return Ok(Some(self.outcome()));
            }
            Some(Err(e)) => return Err(failure(&e)),
            None => return Ok(Some(self.outcome())),
        }
        Ok(None)
    }

    /// What stdin gave (`None`: its end).
    async fn typed(&mut self, input: Option<Input>, wait: Option<Duration>) -> Result<(), String> {
        let line = match input {
            Some(Input::Line(line)) => line,
            Some(Input::Chunk(bytes)) => return self.send(Message::Binary(bytes)).await,
            None => {
                let Some(wait) = wait else {
                    // §7.1.2: start the closing handshake, and keep
                    // printing what was already on its way until the
                    // server's Close ends the stream.
                    return self.close(goodbye()).await;
                };
                eprintln!(
                    "end of input; printing replies for {} s",
                    wait.as_secs_f64()
                );
                self.phase = Phase::Waiting(tokio::time::Instant::now() + wait);
                return Ok(());
            }
        };
        match command::parse(&line) {
            Line::Send(text) => self.send(Message::text(text)).await,
            Line::Ping(payload) => self.ping(payload).await,
            Line::Close(frame) => self.close(frame).await,
            Line::Help => {
                eprintln!("{}", command::HELP);
                Ok(())
            }
            Line::Refused(why) => {
                eprintln!("not sent: {why}");
                Ok(())
            }
        }
    }

    async fn send(&mut self, message: Message) -> Result<(), String> {
        self.ws.send(message).await.map_err(|e| failure(&e))
    }

    /// Sends a Ping, noting when, to time its Pong.
    async fn ping(&mut self, payload: Bytes) -> Result<(), String> {
        self.pings.sent(payload.clone());
        self.send(Message::Ping(payload)).await
    }

    /// Starts the closing handshake (§7.1.2): nothing more is read from
    /// stdin; the transport's close timer bounds the wait for the answer.
    async fn close(&mut self, frame: CloseFrame) -> Result<(), String> {
        self.we_closed = true;
        self.phase = Phase::Closing;
        self.send(Message::Close(Some(frame))).await
    }

    /// Writes and flushes, so a reader of a pipe sees each message at once.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let written = async {
            self.stdout.write_all(bytes).await?;
            self.stdout.flush().await
        };
        written
            .await
            .map_err(|e| format!("cannot write to stdout: {e}"))
    }

    /// The exit status once the connection has closed cleanly.
    fn outcome(&self) -> Exit {
        match &self.peer_close {
            _ if self.we_closed => Exit::Normal,
            Some(Some(f)) if f.code == CloseCode::NORMAL => Exit::Normal,
            Some(_) => Exit::PeerClosed,
            // The stream ended without a Close from either side: the
            // transport reports that as an error, so this is not reached
            // in practice; count it as a failure.
            None => Exit::Failed,
        }
    }
}

/// The next interval tick, or never.
async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Prints the server's Close: its code, the code's meaning (§7.4.1) and
/// the reason.
fn report_close(frame: Option<&CloseFrame>, we_closed: bool) {
    let who = if we_closed {
        "the server answered our Close"
    } else {
        "the server closed"
    };
    match frame {
        Some(f) => {
            let code = f.code.as_u16();
            eprintln!(
                "{who}: {code} ({}), reason {:?}",
                close_code_meaning(code),
                f.reason.as_str()
            );
        }
        None => eprintln!("{who}: no status code (reported as 1005)"),
    }
}

/// A failure, said for the user.
fn failure(e: &transport::Error) -> String {
    match e {
        transport::Error::Protocol(rfc6455::proto::Error::AbnormalClosure) => {
            "the server closed the TCP connection without a Close frame (1006, RFC 6455 §7.1.5)"
                .to_owned()
        }
        transport::Error::CloseTimeout => {
            "the server did not complete the closing handshake in time".to_owned()
        }
        e => e.to_string(),
    }
}

/// What stdin gave.
enum Input {
    /// A line, without its newline (text mode).
    Line(String),
    /// Some bytes (binary mode).
    Chunk(Bytes),
}

/// Stdin, as lines or as chunks.
enum Stdin {
    Lines(tokio::io::Lines<BufReader<tokio::io::Stdin>>),
    Raw(tokio::io::Stdin, Vec<u8>),
}

impl Stdin {
    fn new(binary: bool) -> Stdin {
        if binary {
            Stdin::Raw(tokio::io::stdin(), vec![0; CHUNK])
        } else {
            Stdin::Lines(BufReader::new(tokio::io::stdin()).lines())
        }
    }

    /// The next line or chunk; `None` at the end. Cancel-safe, as `select!` needs:
    /// `Lines::next_line` and `read` keep partial input in the reader.
    async fn next(&mut self) -> std::io::Result<Option<Input>> {
        match self {
            Stdin::Lines(lines) => Ok(lines.next_line().await?.map(Input::Line)),
            Stdin::Raw(stdin, buf) => match stdin.read(buf).await? {
                0 => Ok(None),
                n => Ok(Some(Input::Chunk(Bytes::copy_from_slice(&buf[..n])))),
            },
        }
    }
}

/// Pings in flight, to time their Pongs (§5.5.3: "A Pong frame sent in
/// response to a Ping frame must have identical Application data").
#[derive(Default)]
struct Pings {
    in_flight: VecDeque<(Bytes, Instant)>,
    /// Interval Pings sent, for their payloads.
    count: u64,
}

impl Pings {
    /// An interval Ping's payload: its number, so each Pong is matched.
    fn next_payload(&mut self) -> Bytes {
        self.count += 1;
        Bytes::from(format!("ping {}", self.count))
    }

    fn sent(&mut self, payload: Bytes) {
        if self.in_flight.len() == MAX_PINGS {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back((payload, Instant::now()));
    }

    /// Prints the round trip of the Ping this Pong answers.
    fn answered(&mut self, payload: &Bytes) {
        let shown = String::from_utf8_lossy(payload);
        match self.in_flight.iter().position(|(p, _)| p == payload) {
            Some(i) => {
                // Pongs may answer only the latest Ping (§5.5.3): earlier
                // ones are answered too, as far as we can tell.
                let (_, at) = self.in_flight[i].clone();
                self.in_flight.drain(..=i);
                let rtt = at.elapsed().as_secs_f64() * 1000.0;
                eprintln!("pong {shown:?}: round trip {rtt:.3} ms");
            }
            None => eprintln!("pong {shown:?} (answers no Ping we sent)"),
        }
    }
}
