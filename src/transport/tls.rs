//! TLS for `wss://` (RFC 6455 §4.1, §11.1.2) and for servers that serve
//! https: rustls configurations, PEM files, and the server-side accept.
//!
//! RFC 6455 §4.1: "If /secure/ is true, the client MUST perform a TLS
//! handshake over the connection after opening the connection and before
//! sending the handshake data", and it MUST use the Server Name Indication
//! extension (RFC 6066) with the URL's host. §11.1.2 gives `wss` the
//! default port 443. Everything after the TLS handshake is the same
//! protocol over a different stream, which is why the rest of the
//! transport only asks for `AsyncRead + AsyncWrite`: this module makes the
//! stream, the others never know.
//!
//! What lives here:
//!
//! - Client configurations: [`webpki_client_config`] (Mozilla's roots,
//!   compiled in from `webpki-roots`, the default for `wss://`) and
//!   [`client_config`] for a root store of your own, such as the CA of a
//!   self-signed test certificate read by [`root_store_from_pem`]. Hand
//!   either to [`Connector::with_tls`](super::Connector::with_tls).
//! - Server configurations: [`server_config_from_pem`] reads a certificate
//!   chain and a private key from PEM files (with `rustls-pki-types`' PEM
//!   parser), [`server_config`] takes them already decoded.
//! - [`accept`]: the TLS handshake, then the WebSocket one, each within
//!   [`Config::handshake_timeout`].
//!
//! # One crypto provider
//!
//! rustls needs a crypto provider. This crate compiles in exactly one,
//! *ring*, and names it when it builds a configuration
//! (`builder_with_provider`), so it never depends on a process-wide
//! default. With two providers compiled in and none installed,
//! `rustls::ClientConfig::builder()` panics at run time; if your own code
//! calls it, install one first with
//! `rustls::crypto::ring::default_provider().install_default()`.
//!
//! # ALPN
//!
//! The configurations built here offer and accept only `http/1.1`: the
//! RFC 6455 handshake is an HTTP/1.1 upgrade, and a server that picked
//! `h2` could not answer it.
//!
//! The versions of `rustls` and `tokio-rustls` this crate is built
//! against are re-exported, so your configuration types are the ones
//! [`Connector`](super::Connector) and [`accept`] take.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{Config, Error, WebSocket};

/// The `rustls` crate, whose configurations this module builds and takes,
/// re-exported so a caller names the same version.
pub use rustls;
/// The `tokio-rustls` crate, whose streams carry `wss://`, re-exported so a
/// caller names the same version.
pub use tokio_rustls;

/// The ALPN protocol both sides name: the opening handshake is HTTP/1.1
/// (§4.1: "The method of the request MUST be GET, and the HTTP version
/// MUST be at least 1.1").
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// The one crypto provider compiled in.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that trusts `roots`, on the ring provider, with
/// rustls' safe default protocol versions (TLS 1.3 and 1.2) and ALPN
/// `http/1.1`. No client certificate.
pub fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        // ring's default provider has suites for both default versions,
        // which is all this checks.
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Arc::new(config)
}

/// The default client configuration for `wss://`: Mozilla's root
/// certificates (the `webpki-roots` crate, compiled in, so no system file
/// is read). Built once and shared.
pub fn webpki_client_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            client_config(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        })
        .clone()
}

/// A root store holding every certificate in the PEM file at `path`: the
/// CA (or the self-signed certificate) a test server's certificate chains
/// to. Fails if the file cannot be read, is not PEM, holds no certificate,
/// or holds one rustls cannot use as a trust anchor.
pub fn root_store_from_pem(path: impl AsRef<Path>) -> Result<RootCertStore, TlsConfigError> {
    let path = path.as_ref();
    let certs = read_certificates(path, "CA certificate")?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|source| TlsConfigError::Rejected {
            what: "CA certificate",
            path: Some(path.to_owned()),
            source,
        })?;
    }
    Ok(roots)
}

/// A server configuration from PEM files: `cert` holds the certificate
/// chain, the server's own certificate first, then any intermediates;
/// `key` holds its private key (PKCS#8, PKCS#1 or SEC1). Each error names
/// the file and what was wrong with it; a key that does not match the
/// certificate is [`TlsConfigError::Rejected`].
pub fn server_config_from_pem(
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain = read_certificates(cert.as_ref(), "certificate")?;
    let key_path = key.as_ref();
    let bytes = read_file(key_path, "private key")?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsConfigError::Missing {
            what: "private key",
            path: key_path.to_owned(),
        },
        source => TlsConfigError::Pem {
            what: "private key",
            path: key_path.to_owned(),
            source,
        },
    })?;
    server_config(chain, key).map_err(|e| match e {
        TlsConfigError::Rejected { what, source, .. } => TlsConfigError::Rejected {
            what,
            path: Some(cert.as_ref().to_owned()),
            source,
        },
        other => other,
    })
}

/// A server configuration from a decoded certificate chain (the server's
/// certificate first) and its private key: ring provider, safe default
/// versions, ALPN `http/1.1`, no client certificates.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let rejected = |source| TlsConfigError::Rejected {
        what: "certificate and private key",
        path: None,
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_no_client_auth()
        // Checks that the key parses and matches the certificate.
        .with_single_cert(chain, key)
        .map_err(rejected)?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file; at least one.
fn read_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let bytes = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::Pem {
            what,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::Missing {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Runs the client's TLS handshake on `stream` with `config` and `host`
/// (the URL's host) as the server name, sent as SNI (§4.1) and checked
/// against the certificate. The caller applies the timeout.
/// [`Connector::open`](super::Connector::open) runs it over the TCP
/// connection; a caller that wants to watch the handshake's bytes runs it
/// over a wrapper of [`Connector::open_tcp`](super::Connector::open_tcp)'s
/// stream.
///
/// A server whose certificate does not verify gives [`Error::Tls`]
/// holding `rustls::Error::InvalidCertificate(..)`; a `host` that is
/// neither a DNS name nor an IP address, [`Error::Io`] of kind
/// `InvalidInput`.
///
/// # Cancel safety
///
/// Not cancel-safe: dropping the future drops the half-done handshake.
pub async fn connect_tls<S>(
    stream: S,
    host: &str,
    config: Arc<ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
        Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is not a valid TLS server name"),
        ))
    })?;
    TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(handshake_error)
}

/// Accepts a WebSocket connection over TLS (server side): the TLS
/// handshake within [`Config::handshake_timeout`], then
/// [`accept`](super::accept), which has its own. A client that fails the
/// TLS handshake gives [`Error::Tls`] with rustls' reason (an alert it
/// sent, a protocol it does not speak).
///
/// Make the acceptor once, from [`server_config_from_pem`] or
/// [`server_config`]: `TlsAcceptor::from(server_config)`.
///
/// # Cancel safety
///
/// Not cancel-safe: dropping the future drops the half-done handshake.
/// Drop the stream too.
pub async fn accept<S>(
    stream: S,
    acceptor: &TlsAcceptor,
    config: Config,
) -> Result<WebSocket<tokio_rustls::server::TlsStream<S>>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let tls = tokio::time::timeout(config.handshake_timeout, acceptor.accept(stream))
        .await
        .map_err(|_| Error::HandshakeTimeout)?
        .map_err(handshake_error)?;
    super::accept(tls, config).await
}

/// tokio-rustls reports TLS failures as I/O errors wrapping a
/// `rustls::Error`; unwrap them, so that callers can tell a certificate
/// the client refused from a socket that failed.
pub(super) fn handshake_error(e: io::Error) -> Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Error::Tls(tls.clone()),
        None => Error::Io(e),
    }
}

/// Why a TLS configuration could not be built from files.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// The file could not be read: missing, a directory, no permission.
    Read {
        /// What the file should hold ("certificate", "private key", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The file is not valid PEM (a section without its end, bad base64).
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        source: pem::Error,
    },
    /// The file is PEM but holds nothing of the kind wanted (no
    /// `CERTIFICATE` section, no `PRIVATE KEY` section): often the
    /// certificate and key paths swapped.
    Missing {
        /// What was looked for.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// rustls refused what the files hold: a key that does not match the
    /// certificate, a key type it does not support, a CA certificate it
    /// cannot parse.
    Rejected {
        /// What was refused.
        what: &'static str,
        /// The file, when the items came from one.
        path: Option<PathBuf>,
        /// rustls' reason.
        source: rustls::Error,
    },
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::Read { what, path, source } => {
                write!(f, "cannot read {what} file {}: {source}", path.display())
            }
            TlsConfigError::Pem { what, path, source } => {
                write!(
                    f,
                    "{what} file {} is not valid PEM: {source}",
                    path.display()
                )
            }
            TlsConfigError::Missing { what, path } => {
                write!(f, "no {what} found in {}", path.display())
            }
            TlsConfigError::Rejected {
                what,
                path: Some(path),
                source,
            } => write!(f, "{what} from {} refused: {source}", path.display()),
            TlsConfigError::Rejected {
                what,
                path: None,
                source,
            } => write!(f, "{what} refused: {source}"),
        }
    }
}

impl std::error::Error for TlsConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsConfigError::Read { source, .. } => Some(source),
            TlsConfigError::Pem { source, .. } => Some(source),
            TlsConfigError::Missing { .. } => None,
            TlsConfigError::Rejected { source, .. } => Some(source),
        }
    }
}
