//! TLS for the tests: a test CA and a server certificate made at test
//! time by rcgen, and an echo server over TLS that reports what it saw of
//! each connection (`tls.rs`, `proxy.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rfc6455::transport::tls::tokio_rustls::TlsAcceptor;
use rfc6455::transport::tls::{self, rustls};
use rfc6455::transport::{Config, Connector, Error, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The longest the server may take to report.
const WAIT: Duration = Duration::from_secs(10);

/// A test CA and a server certificate it signed, for `localhost` only (no
/// IP address), written as PEM files into a directory of their own.
pub struct Pki {
    /// The directory the files are in (removed on drop).
    pub dir: PathBuf,
    /// The CA's certificate.
    pub ca: PathBuf,
    /// The server's certificate, for `localhost`.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("rfc6455-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "rfc6455 test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &ca).unwrap();

        let pki = Pki {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        std::fs::write(&pki.ca, ca.pem()).unwrap();
        std::fs::write(&pki.cert, cert.pem()).unwrap();
        std::fs::write(&pki.key, key.serialize_pem()).unwrap();
        pki
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        tls::server_config_from_pem(&self.cert, &self.key).unwrap()
    }

    /// A client that trusts the test CA and nothing else.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        tls::client_config(tls::root_store_from_pem(&self.ca).unwrap())
    }

    pub fn connector(&self) -> Connector {
        Connector::with_tls(self.client_config())
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the server saw of one connection.
#[derive(Debug)]
pub enum Outcome {
    /// The TLS and WebSocket handshakes passed; the SNI the client sent;
    /// how the echo loop ended (`None`: a clean close).
    Served {
        sni: Option<String>,
        ended: Option<Error>,
    },
    /// `tls::accept` failed.
    Refused(Error),
}

/// An echo server over TLS on a free loopback port: each connection's
/// outcome is reported on the channel.
pub async fn tls_echo_server(
    config: Arc<rustls::ServerConfig>,
) -> (u16, mpsc::UnboundedReceiver<Outcome>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = TlsAcceptor::from(config);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let outcome = match tls::accept(stream, &acceptor, Config::default()).await {
                    Ok(mut ws) => {
                        let sni = ws.get_ref().get_ref().1.server_name().map(str::to_owned);
                        let ended = echo(&mut ws).await;
                        Outcome::Served { sni, ended }
                    }
                    Err(e) => Outcome::Refused(e),
                };
                let _ = tx.send(outcome);
            });
        }
    });
    (port, rx)
}

/// Echoes until the end; returns the error that ended it, if any.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) -> Option<Error> {
    super::echo(ws).await.error
}

pub async fn outcome(rx: &mut mpsc::UnboundedReceiver<Outcome>) -> Outcome {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the server reported nothing in time")
        .expect("the server stopped")
}
