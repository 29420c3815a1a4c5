//! `rfc6455`: the command-line face of the stack.
//!
//! - `rfc6455 chat`: the chat server on http://localhost:3000, history in
//!   `chat.db`; with `--tls-cert cert.pem --tls-key key.pem`, on https and
//!   `wss://`.
//! - `rfc6455 echo --listen 127.0.0.1:9001`: echoes every message back (the
//!   Autobahn fuzzingclient's testee, and the benchmarks' server); TLS with
//!   the same two options.
//! - `rfc6455 autobahn-client --url ws://127.0.0.1:9001 --agent rfc6455`:
//!   the client testee for the Autobahn fuzzingserver.
//! - `rfc6455 client URL`: a client for debugging servers (`src/cli/client/`):
//!   type lines, see replies, or raw bytes with `--binary`; headers,
//!   subprotocols, Pings, `/close CODE REASON`, and `--trace[=hex|json]`,
//!   the handshake and every frame decoded (`src/transport/trace/`).
//! - `rfc6455 completions bash|zsh|fish|elvish|powershell`: a completion
//!   script for the shell, generated from this file's definitions.
#![forbid(unsafe_code)]

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use rfc6455::chat::{Origin, RedactedUrl};
use rfc6455::proto::{CloseCode, CloseFrame, Message};
use rfc6455::transport::tls::{self, tokio_rustls::TlsAcceptor};
use rfc6455::transport::{self, Config, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tracing::{Instrument, debug, debug_span, info, info_span, warn};

#[derive(Parser)]
#[command(version, about = "A WebSocket stack written from RFC 6455 up")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Built once, from the command line: a variant's size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// The chat server: web UI at /, WebSocket at /ws, /healthz, /metrics.
    Chat {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// SQLite file for history (created if missing).
        #[arg(long, default_value = "chat.db")]
        db: std::path::PathBuf,
        /// How hard each commit of --db insists on the disk. normal: an
        /// acked message survives the server being killed (SIGKILL, a
        /// crash), but a power loss may take the last ones. full: it
        /// survives a power loss too, at an fsync per commit (commits are
        /// batched, so not one per message).
        #[arg(long, value_enum, default_value_t = DbSyncArg::Normal)]
        db_sync: DbSyncArg,
        /// Require HS256 tokens signed with this secret (also from
        /// RFC6455_JWT_SECRET).
        #[arg(long, env = "RFC6455_JWT_SECRET", hide_env_values = true)]
        jwt_secret: Option<String>,
        /// The chat's own accounts (POST /api/register, /api/login, …;
        /// passwords hashed with Argon2id). open: guests and accounts,
        /// a registered nick reserved for its owner. required: accounts
        /// only. off: anonymous, no accounts. With --jwt-secret, external
        /// tokens are accepted beside the server's own.
        #[arg(long, value_enum, default_value_t = AccountsArg::Open)]
        accounts: AccountsArg,
        /// A reverse proxy on this host says who the client is: the
        /// login limits count the last X-Forwarded-For address of a
        /// loopback peer (every header line joined; ip:port accepted).
        /// Off: the header is ignored. Only with a proxy that sets or
        /// appends it: else clients write it.
        #[arg(long)]
        trust_proxy: bool,
        /// Account requests (register, login, refresh, logout, password)
        /// one client address may make a minute, and at once: a token
        /// bucket. Raise it when many users share one address (an office
        /// behind NAT, a proxy without --trust-proxy).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        account_requests_per_minute: u32,
        #[command(flatten)]
        tls: TlsArgs,
        /// Most TCP connections open at once: WebSockets, page requests
        /// and handshakes in progress. Beyond it: HTTP 503. Default: what
        /// the file-descriptor limit allows (the soft limit is raised to
        /// the hard one, ulimit -Hn, less 192 kept for the server itself);
        /// a value above that is lowered to it, with a warning.
        #[arg(long)]
        max_connections: Option<usize>,
        /// Most rooms held in memory at once (a room with nobody in it
        /// leaves memory; its history stays in --db).
        #[arg(long, default_value_t = 50_000)]
        max_rooms: usize,
        /// Most TCP connections open at once from one client address (IPv6:
        /// one /64; loopback included). Beyond it: HTTP 429. 0: no limit.
        #[arg(long, default_value_t = 64, value_name = "N")]
        max_per_ip: usize,
        /// Most connections from one client address not yet upgraded to a
        /// WebSocket (TLS and HTTP handshakes, page requests). Beyond it:
        /// HTTP 429. 0: no limit.
        #[arg(long, default_value_t = 16, value_name = "N")]
        max_handshakes_per_ip: usize,
        /// The URL users open, e.g. https://chat.example.com/: its origin
        /// (RFC 6454) is the server's own, the one whose pages may open
        /// WebSockets. Default: the scheme served with each request's
        /// Host. Set it behind a proxy that terminates TLS or rewrites Host.
        #[arg(long, value_name = "URL", value_parser = parse_public_url)]
        public_url: Option<Origin>,
        /// Also let pages from ORIGIN (scheme://host[:port]) open
        /// WebSockets; repeat for more. '*' allows every origin, and
        /// Origin: null, turning the check off.
        #[arg(long, value_name = "ORIGIN", value_parser = parse_allowed_origin)]
        allow_origin: Vec<AllowedOrigin>,
        /// Lift the per-connection rate limit (for benchmarks only).
        #[arg(long)]
        no_rate_limit: bool,
        /// Decline permessage-deflate (RFC 7692), which is otherwise
        /// accepted with no context takeover.
        #[arg(long)]
        no_deflate: bool,
        /// Scale out: share rooms, ids, history and presence with every
        /// server on this Redis (e.g. redis://127.0.0.1:6379). History then
        /// lives in Redis streams, not in --db.
        /// The URL may hold a password (redis://:PASSWORD@host:port): it is
        /// masked in logs, and the variable's value is never shown here.
        #[arg(
            long,
            env = "RFC6455_REDIS",
            value_name = "URL",
            hide_env_values = true
        )]
        redis: Option<String>,
        /// With --redis: messages kept per room.
        #[arg(long, default_value_t = 10_000, requires = "redis")]
        redis_history: usize,
        /// With --redis: a server silent this long (ms) is dead and its
        /// users leave presence.
        #[arg(long, default_value_t = 5_000, requires = "redis")]
        presence_ttl_ms: u64,
        /// Instead of serving: manage the server admins (issue 17).
        #[command(subcommand)]
        action: Option<ChatAction>,
    },
    /// Echo every text and binary message back (max message 64 MiB).
    Echo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: SocketAddr,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Accept permessage-deflate (RFC 7692) offers.
        #[arg(long)]
        deflate: bool,
        /// End a connection whose socket accepts none of our output for
        /// this long (ms): a client that stopped reading. 0: never. The
        /// transport's default is 60,000 (nginx's send_timeout); the flag
        /// exists so tests can see it fire.
        #[arg(long, default_value_t = 60_000, value_name = "MS")]
        send_timeout_ms: u64,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Run every Autobahn TestSuite case against a fuzzingserver, as an
    /// echo client, then ask it to write its reports.
    AutobahnClient {
        /// The fuzzingserver's URL.
        #[arg(long, default_value = "ws://127.0.0.1:9001")]
        url: String,
        /// The agent name the reports are filed under.
        #[arg(long, default_value = "rfc6455")]
        agent: String,
        /// Offer permessage-deflate (RFC 7692) on every case.
        #[arg(long)]
        deflate: bool,
    },
    /// A client for debugging WebSocket servers: each line of stdin is
    /// sent as a text message (or raw bytes as binary ones, --binary), each
    /// message received is printed.
    #[command(after_help = cli::client::AFTER_HELP)]
    Client(cli::client::ClientArgs),
    /// Print a completion script for SHELL to stdout, e.g.
    /// `rfc6455 completions bash > /etc/bash_completion.d/rfc6455`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// What `rfc6455 chat` does instead of serving.
#[derive(Subcommand)]
enum ChatAction {
    /// Server admins, kept in the same store the servers use (--db's side
    /// file `<db>.admins`, or --redis), and safe while they run: servers
    /// read the admins again at every check.
    Admin {
        #[command(subcommand)]
        op: AdminArg,
    },
}

/// `rfc6455 chat admin …`.
#[derive(Subcommand)]
enum AdminArg {
    /// Make NICK a server admin.
    Add {
        /// The nick.
        nick: String,
    },
    /// NICK is no longer a server admin.
    Remove {
        /// The nick.
        nick: String,
    },
    /// List the server admins.
    List,
}

/// `--accounts`: who may say `hello`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum AccountsArg {
    Open,
    Required,
    Off,
}

/// `--db-sync`: SQLite's `synchronous` for the chat history.
#[derive(Clone, Copy, clap::ValueEnum)]
enum DbSyncArg {
    Normal,
    Full,
}

/// `--public-url`: the origin of the page's URL, which is http or https.
fn parse_public_url(s: &str) -> Result<Origin, String> {
    let origin = Origin::from_url(s).map_err(|e| e.to_string())?;
    match origin.scheme() {
        "http" | "https" => Ok(origin),
        other => Err(format!(
            "the page's URL is http:// or https://, not {other}://"
        )),
    }
}

/// One `--allow-origin`.
#[derive(Clone)]
enum AllowedOrigin {
    /// `*`: every origin.
    Any,
    /// That one.
    One(Origin),
}

fn parse_allowed_origin(s: &str) -> Result<AllowedOrigin, String> {
    if s.trim() == "*" {
        return Ok(AllowedOrigin::Any);
    }
    Origin::from_url(s)
        .map(AllowedOrigin::One)
        .map_err(|e| e.to_string())
}

/// Serve TLS (https, wss://): both files, or neither.
#[derive(clap::Args)]
struct TlsArgs {
    /// PEM file with the server's certificate chain, its own certificate
    /// first.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM file with the private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The server configuration, if TLS was asked for.
    fn load(&self) -> Result<Option<Arc<tls::rustls::ServerConfig>>, tls::TlsConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => tls::server_config_from_pem(cert, key).map(Some),
            // clap's `requires` rules out one without the other.
            _ => Ok(None),
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "rfc6455",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let threads = match &cli.command {
        Command::Echo { threads, .. } => *threads,
        Command::Chat { .. } => None,
        _ => Some(1),
    };
    let mut builder = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(n) = threads.filter(|&n| n > 1) {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = match cli.command {
        Command::Client(args) => {
            let config = ws_config(args.deflate);
            let status = runtime.block_on(cli::client::run(args, config));
            // Stdin is read on a blocking thread, which may still wait for
            // a line nobody will type: end without waiting for it.
            runtime.shutdown_background();
            return status;
        }
        other => other,
    };
    let result = runtime.block_on(async {
        match command {
            Command::Chat {
                listen,
                db,
                db_sync,
                jwt_secret,
                accounts,
                trust_proxy,
                account_requests_per_minute,
                tls,
                max_connections,
                max_rooms,
                max_per_ip,
                max_handshakes_per_ip,
                public_url,
                allow_origin,
                no_rate_limit,
                no_deflate,
                redis,
                redis_history,
                presence_ttl_ms,
                action,
            } => {
                if let Some(ChatAction::Admin { op }) = action {
                    let op = match op {
                        AdminArg::Add { nick } => rfc6455::chat::AdminOp::Add(nick),
                        AdminArg::Remove { nick } => rfc6455::chat::AdminOp::Remove(nick),
                        AdminArg::List => rfc6455::chat::AdminOp::List,
                    };
                    let said = rfc6455::chat::admin(&db, redis.as_deref(), &op).await?;
                    if !said.is_empty() {
                        println!("{said}");
                    }
                    return Ok(());
                }
                let mut config = rfc6455::chat::ChatConfig::new(db);
                config.db_sync = match db_sync {
                    DbSyncArg::Normal => rfc6455::chat::DbSync::Normal,
                    DbSyncArg::Full => rfc6455::chat::DbSync::Full,
                };
                config.jwt_secret = jwt_secret;
                config.accounts.trust_proxy = trust_proxy;
                let per_minute = f64::from(account_requests_per_minute);
                config.accounts.limits.ip_burst = per_minute;
                config.accounts.limits.ip_per_minute = per_minute;
                config.accounts.mode = match accounts {
                    AccountsArg::Open => rfc6455::chat::AccountsMode::Open,
                    AccountsArg::Required => rfc6455::chat::AccountsMode::Required,
                    AccountsArg::Off => rfc6455::chat::AccountsMode::Off,
                };
                config.tls = tls.load()?;
                let scheme = if config.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                config.max_connections = max_connections;
                config.max_rooms = max_rooms;
                config.max_per_ip = max_per_ip;
                config.max_handshakes_per_ip = max_handshakes_per_ip;
                config.public_origin = public_url;
                for allowed in allow_origin {
                    match allowed {
                        AllowedOrigin::Any => config.allow_any_origin = true,
                        AllowedOrigin::One(origin) => config.allowed_origins.push(origin),
                    }
                }
                if no_rate_limit {
                    config.rate_limit = None;
                }
                if no_deflate {
                    config.deflate = None;
                }
                if let Some(url) = redis {
                    let mut cluster = rfc6455::chat::ClusterConfig::new(url);
                    cluster.history_len = redis_history;
                    cluster.presence_ttl = std::time::Duration::from_millis(presence_ttl_ms);
                    cluster.probe_timeout = cluster.probe_timeout.min(cluster.presence_ttl);
                    config.redis = Some(cluster);
                }
                let listener = bind(listen)?;
                match &config.redis {
                    Some(r) => {
                        println!(
                            "chat: {scheme}://{listen}/  (scaled out through {})",
                            RedactedUrl(&r.url)
                        )
                    }
                    None => println!(
                        "chat: {scheme}://{listen}/  (history in {})",
                        config.db.display()
                    ),
                }
                rfc6455::chat::serve(listener, config, shutdown_signal()).await?;
                Ok(())
            }
            Command::Echo {
                listen,
                deflate,
                send_timeout_ms,
                tls,
                ..
            } => {
                let tls = tls.load()?.map(TlsAcceptor::from);
                let mut config = ws_config(deflate);
                config.send_timeout = (send_timeout_ms > 0)
                    .then(|| std::time::Duration::from_millis(send_timeout_ms));
                echo_server(listen, config, tls).await
            }
            Command::AutobahnClient {
                url,
                agent,
                deflate,
            } => autobahn_client(&url, &agent, ws_config(deflate)).await,
            // Handled above.
            Command::Client(_) | Command::Completions { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot watch SIGTERM; Ctrl-C still works");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The transport's defaults, with permessage-deflate's if asked for. The
/// send timeout stays at 60 s: Autobahn's fuzzing client and server read
/// all the time, their largest cases (16 MiB) included, so only a peer
/// that stops reading for a minute trips it.
fn ws_config(deflate: bool) -> Config {
    let mut config = Config::default();
    if deflate {
        config.protocol.deflate = Some(rfc6455::proto::DeflateConfig::default());
    }
    config
}

/// Listens on `addr` with room for 1,024 connections waiting to be
/// accepted (the kernel caps it at `net.core.somaxconn`). The standard
/// library's 128 is a reconnect storm's undoing: past it the kernel drops
/// SYNs, and each dropped one costs its client a retransmission 1 s, then
/// 3 s, later (19,000 members reconnecting after a restart saw dozens).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // A restarted server can listen again at once, whatever its last
    // connections left in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn echo_server(
    listen: SocketAddr,
    config: Config,
    tls: Option<TlsAcceptor>,
) -> Result<(), BoxError> {
    let listener = bind(listen)?;
    info!(%listen, tls = tls.is_some(), "echo server listening");
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => {
                info!("shutting down");
                return Ok(());
            }
        };
        next_id += 1;
        // Debug level: at the default (info) filter the span is disabled
        // and costs an idle connection nothing (an enabled one is a
        // registry entry of a few hundred bytes per connection).
        let span = debug_span!("conn", id = next_id, %peer, role = "server");
        let config = config.clone();
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "set_nodelay failed");
        }
        // One task type per stream type: a task is as large as its largest
        // state, so a plain connection must not carry room for a TLS one.
        // `let ... else` (not `match ... { Ok(ws) => echo(ws).await }`) so
        // the handshake's `Result` is not kept beside the `WebSocket` for
        // the connection's whole life: 3,056 -> 2,140 bytes per idle
        // connection, measured with loadtest's `idle` scenario.
        match &tls {
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(
                    async move {
                        let Ok(ws) = tls::accept(stream, &acceptor, config)
                            .await
                            .inspect_err(|e| debug!(error = %e, "handshake failed"))
                        else {
                            return;
                        };
                        echo(ws).await;
                    }
                    .instrument(span),
                );
            }
            None => {
                tokio::spawn(
                    async move {
                        let Ok(ws) = transport::accept(stream, config)
                            .await
                            .inspect_err(|e| debug!(error = %e, "handshake failed"))
                        else {
                            return;
                        };
                        echo(ws).await;
                    }
                    .instrument(span),
                );
            }
        }
    }
}

/// Echoes text and binary messages until the connection ends. Echoes are
/// queued, and leave together when `recv` next finds nothing buffered.
/// `recv` returns nothing more while over the transport's write buffer
/// limit (64 KiB by default), so a client that sends without reading
/// holds at most that plus one message here, not every echo, and only
/// until the send timeout (`--send-timeout-ms`) ends it.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocket<S>) {
    while let Some(event) = ws.recv().await {
        match event {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                if let Err(e) = ws.queue(message) {
                    debug!(error = %e, "cannot echo");
                }
            }
            Ok(other) => debug!(?other, "control frame"),
            Err(e) => {
                debug!(error = %e, "connection ended with an error");
                return;
            }
        }
    }
    debug!("closed");
}

async fn autobahn_client(url: &str, agent: &str, config: Config) -> Result<(), BoxError> {
    let base = url.trim_end_matches('/');
    let (mut ws, _) =
        transport::connect(&format!("{base}/getCaseCount"), Config::default()).await?;
    let count: u32 = match ws.recv().await {
        Some(Ok(Message::Text(t))) => t.as_str().trim().parse()?,
        other => return Err(format!("expected the case count, got {other:?}").into()),
    };
    ws.close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
        .await
        .ok();
    info!(count, "running Autobahn cases");
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let span = info_span!("case", case);
        async {
            match transport::connect(&url, config.clone()).await {
                Ok((ws, _)) => echo(ws).await,
                Err(e) => warn!(error = %e, "cannot connect"),
            }
        }
        .instrument(span)
        .await;
        if case % 50 == 0 {
            info!(case, count, "progress");
        }
    }
    let (mut ws, _) = transport::connect(
        &format!("{base}/updateReports?agent={agent}"),
        Config::default(),
    )
    .await?;
    while ws.recv().await.is_some() {}
    info!("reports updated");
    Ok(())
}
