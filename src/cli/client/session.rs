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
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    options: Options,
) -> Exit {
    if !options.binary {
        eprintln!("type a line to send it (/help for commands), end with Ctrl-D");
    }
    let mut stdin = Stdin::new(options.binary);
    let mut stdout = tokio::io::stdout();
    let mut pings = Pings::default();
    let mut ticker = options.ping_interval.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut phase = Phase::Typing;
    // The server's Close, once it came, and whether ours went first.
    let mut peer_close: Option<Option<CloseFrame>> = None;
    let mut we_closed = false;
    loop {
        let deadline = match phase {
            Phase::Waiting(at) => Some(at),
            _ => None,
        };
        tokio::select! {
            event = ws.recv() => match event {
                Some(Ok(Message::Text(t))) => {
                    let written = if options.binary {
                        write_raw(&mut stdout, t.as_bytes()).await
                    } else {
                        write_raw(&mut stdout, format!("{t}\n").as_bytes()).await
                    };
                    if let Err(e) = written {
                        eprintln!("error: cannot write to stdout: {e}");
                        return Exit::Failed;
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    let written = if options.binary {
                        write_raw(&mut stdout, &b).await
                    } else {
                        write_raw(&mut stdout, format!("<binary, {} bytes>\n", b.len()).as_bytes()).await
                    };
                    if let Err(e) = written {
                        eprintln!("error: cannot write to stdout: {e}");
                        return Exit::Failed;
                    }
                }
                Some(Ok(Message::Pong(payload))) => pings.answered(&payload),
                // Answered by the transport already (§5.5.2).
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    report_close(frame.as_ref(), we_closed);
                    peer_close = Some(frame);
                    // §5.5.1: the transport has queued our reply; stop
                    // reading stdin, whatever it still holds.
                    phase = Phase::Closing;
                }
                // The server closing TCP after the close handshake is the
                // end we wanted (§7.1.1).
                Some(Err(transport::Error::Protocol(rfc6455::proto::Error::AbnormalClosure)))
                    if ws.connection().close_received() => return outcome(peer_close.as_ref(), we_closed),
                Some(Err(e)) => {
                    eprintln!("error: {}", failure(&e));
                    return Exit::Failed;
                }
                None => return outcome(peer_close.as_ref(), we_closed),
            },
            input = stdin.next(), if phase == Phase::Typing => match input {
                Ok(Some(Input::Line(line))) => {
                    let sent = match command::parse(&line) {
                        Line::Send(text) => ws.send(Message::text(text)).await,
                        Line::Ping(payload) => {
                            pings.sent(payload.clone());
                            ws.send(Message::Ping(payload)).await
                        }
                        Line::Close(frame) => {
                            we_closed = true;
                            phase = Phase::Closing;
                            ws.send(Message::Close(Some(frame))).await
                        }
                        Line::Help => {
                            eprintln!("{}", command::HELP);
                            Ok(())
                        }
                        Line::Refused(why) => {
                            eprintln!("not sent: {why}");
                            Ok(())
                        }
                    };
                    if let Err(e) = sent {
                        eprintln!("error: {}", failure(&e));
                        return Exit::Failed;
                    }
                }
                Ok(Some(Input::Chunk(bytes))) => {
                    if let Err(e) = ws.send(Message::Binary(bytes)).await {
                        eprintln!("error: {}", failure(&e));
                        return Exit::Failed;
                    }
                }
                Ok(None) => match options.wait {
                    Some(wait) => {
                        eprintln!("end of input; printing replies for {} s", wait.as_secs_f64());
                        phase = Phase::Waiting(tokio::time::Instant::now() + wait);
                    }
                    None => {
                        // §7.1.2: start the closing handshake, and keep
                        // printing what was already on its way until the
                        // server's Close ends the stream.
                        we_closed = true;
                        phase = Phase::Closing;
                        if let Err(e) = ws.queue(Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")))) {
                            eprintln!("error: {}", failure(&e));
                            return Exit::Failed;
                        }
                    }
                },
                Err(e) => {
                    eprintln!("error: cannot read stdin: {e}");
                    return Exit::Failed;
                }
            },
            _ = tick(&mut ticker), if phase != Phase::Closing => {
                let payload = pings.next_payload();
                pings.sent(payload.clone());
                if let Err(e) = ws.send(Message::Ping(payload)).await {
                    eprintln!("error: {}", failure(&e));
                    return Exit::Failed;
                }
            }
            _ = until(deadline), if deadline.is_some() => {
                we_closed = true;
                phase = Phase::Closing;
                if let Err(e) = ws.queue(Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")))) {
                    eprintln!("error: {}", failure(&e));
                    return Exit::Failed;
                }
            }
        }
    }
}

/// Writes and flushes, so a reader of a pipe sees each message at once.
async fn write_raw(out: &mut tokio::io::Stdout, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes).await?;
    out.flush().await
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

/// The exit status once the connection has closed cleanly.
fn outcome(peer_close: Option<&Option<CloseFrame>>, we_closed: bool) -> Exit {
    match peer_close {
        _ if we_closed => Exit::Normal,
        Some(Some(f)) if f.code == CloseCode::NORMAL => Exit::Normal,
        Some(_) => Exit::PeerClosed,
        // The stream ended without a Close from either side: the
        // transport reports that as an error, so this is not reached in
        // practice; count it as a failure.
        None => Exit::Failed,
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
