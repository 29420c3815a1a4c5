//! File descriptors: every connection holds one from `accept` on, so the
//! process's limit on them (`RLIMIT_NOFILE`, POSIX `setrlimit`) is the
//! hard bound on connections, and `--max-connections` must sit below it.
//!
//! At start the server raises its soft limit to the hard one (which an
//! unprivileged process may do; the soft limit is 1,024 by default on most
//! Linux systems, the hard one often far higher), then takes
//! `max_connections` from what it got, less [`RESERVED_FDS`]: the
//! connections beyond it are answered 503 by admission (`admission.rs`)
//! instead of `accept` failing with EMFILE, which no client is ever told
//! about.

use std::io;

/// Descriptors kept back from connections: 64 for the process itself
/// (stdin, stdout and stderr; the listening sockets; the runtime's epoll
/// and its waker; the signal pipe; SQLite's database, WAL and
/// shared-memory files; Redis's connections; TLS files read at start;
/// with room to spare), 64 for refused connections lingering after their
/// 503 (`http::MAX_LINGERING`), and 64 for refusals still being written
/// and connections accepted while one of them is being refused.
pub const RESERVED_FDS: u64 = 64 + super::http::MAX_LINGERING as u64 + 64;

/// What the process may open, after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit found at start.
    pub was: u64,
    /// The soft limit now, the one that applies.
    pub soft: u64,
    /// The hard limit, the most the soft one may be raised to (`None`:
    /// unlimited).
    pub hard: Option<u64>,
}

/// Treated as the limit when the system reports none: Linux's default
/// ceiling for any process (`/proc/sys/fs/nr_open`, 2^20).
const UNLIMITED: u64 = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, and says what it
/// is now. If raising fails, the limit stays as it was (and says so).
#[cfg(unix)]
pub fn raise() -> io::Result<FdLimit> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let was = limit.current.unwrap_or(UNLIMITED);
    let mut soft = was;
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => soft = limit.maximum.unwrap_or(UNLIMITED),
            // macOS refuses a soft limit above OPEN_MAX even when the hard
            // one is unlimited: keep what we had.
            Err(e) => {
                tracing::warn!(error = %e, soft = was, "could not raise the file-descriptor limit")
            }
        }
    }
    Ok(FdLimit {
        was,
        soft,
        hard: limit.maximum,
    })
}

/// Without `setrlimit`: the limit is unknown.
#[cfg(not(unix))]
pub fn raise() -> io::Result<FdLimit> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no RLIMIT_NOFILE here",
    ))
}

/// The most connections `soft` descriptors leave room for: the rest after
/// [`RESERVED_FDS`], and at least one.
pub fn connections_for(soft: u64) -> usize {
    usize::try_from(soft.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX)
}

/// `max_connections` for a soft limit of `soft` descriptors: `requested`
/// if given and within it, else what the limit allows
/// ([`connections_for`]); and whether a request was lowered to fit.
pub fn max_connections(requested: Option<usize>, soft: u64) -> (usize, bool) {
    let allowed = connections_for(soft);
    match requested {
        Some(n) if n <= allowed => (n, false),
        Some(_) => (allowed, true),
        None => (allowed, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_leaves_the_reserve_free() {
        assert_eq!(max_connections(None, 20_000), (20_000 - 192, false));
        assert_eq!(max_connections(None, 1_024), (1_024 - 192, false));
    }

    #[test]
    fn a_request_within_the_limit_is_kept_and_one_beyond_is_lowered() {
        assert_eq!(max_connections(Some(500), 1_024), (500, false));
        assert_eq!(max_connections(Some(832), 1_024), (832, false));
        assert_eq!(max_connections(Some(833), 1_024), (832, true));
    }

    #[test]
    fn a_tiny_limit_still_allows_one() {
        assert_eq!(max_connections(None, 10), (1, false));
        assert_eq!(max_connections(Some(5), 10), (1, true));
    }

    #[cfg(unix)]
    #[test]
    fn raising_reaches_the_hard_limit() {
        let limit = raise().unwrap();
        assert!(limit.soft >= limit.was);
        if let Some(hard) = limit.hard {
            assert!(limit.soft <= hard);
        }
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(now.current.unwrap_or(UNLIMITED), limit.soft);
    }
}
