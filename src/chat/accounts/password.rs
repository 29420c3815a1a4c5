//! Passwords (issue 17): what is refused, and how the rest are hashed.
//!
//! # Policy
//!
//! A password is refused (`weak_password`) if it is shorter than
//! [`MIN_CHARS`] characters, longer than [`MAX_BYTES`] bytes, the nick
//! itself (ignoring case), or one of the 1,000 most common passwords
//! (`common-passwords.txt`, shipped in the binary, compared ignoring
//! case). Length first, as NIST SP 800-63B §3.1.1.2 advises, with no
//! rules on character classes.
//!
//! # Hashing
//!
//! Argon2id (RFC 9106) through the `argon2` crate, with OWASP's first
//! recommended setting (Password Storage Cheat Sheet: m = 19 MiB, t = 2,
//! p = 1): about 20 ms of one core in a release build, and 19 MiB while it
//! runs. The parameters are stored in each hash (a PHC string), so
//! raising them later leaves old hashes verifiable.
//!
//! A hash costs memory and CPU, so at most [`HashConfig::max_at_once`]
//! run at once, each on tokio's blocking pool (`spawn_blocking`), never on
//! an async worker. A request that cannot get a permit within
//! [`HashConfig::max_wait`] is answered `Busy` (HTTP 503, `unavailable`):
//! a flood of logins then costs at most `max_at_once × 19 MiB` and the
//! waiters' connections, which the front door bounds.
//!
//! A login for a nick nobody has is verified against a dummy hash made
//! at start with the same parameters, so it takes as long as a wrong
//! password and the answer's timing does not tell which it was.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Fewest characters (Unicode scalar values) in a password.
pub const MIN_CHARS: usize = 10;
/// Most bytes in a password: Argon2 takes any length, but a bound keeps
/// a request's cost known; 256 bytes is longer than any pass phrase.
pub const MAX_BYTES: usize = 256;

/// The list, one a line, `#` lines being its header.
const COMMON: &str = include_str!("common-passwords.txt");

/// Why a password is refused: the `message` of a `weak_password`.
pub fn check(nick: &str, password: &str) -> Result<(), &'static str> {
    if password.chars().count() < MIN_CHARS {
        return Err("a password needs at least 10 characters");
    }
    if password.len() > MAX_BYTES {
        return Err("a password may be at most 256 bytes");
    }
    if password.eq_ignore_ascii_case(nick) {
        return Err("the password may not be the nick");
    }
    if is_common(password) {
        return Err("that password is among the 1,000 most common ones");
    }
    Ok(())
}

/// Whether `password` is on the list, ignoring case.
fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    COMMON
        .lines()
        .filter(|l| !l.starts_with('#'))
        .any(|l| l == lower)
}

/// Argon2id's cost and how many hashes may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashConfig {
    /// Memory, KiB. Default 19,456 (19 MiB, OWASP).
    pub memory_kib: u32,
    /// Passes. Default 2 (OWASP, with 19 MiB).
    pub passes: u32,
    /// Lanes. Default 1 (OWASP): one hash, one core.
    pub lanes: u32,
    /// Most hashes running at once. Default 2: on a small server, half
    /// its cores at most, and 38 MiB.
    pub max_at_once: usize,
    /// How long a request waits for a hash to be free before it is
    /// answered `unavailable`. Default 2 s.
    pub max_wait: Duration,
}

impl Default for HashConfig {
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            passes: Params::DEFAULT_T_COST,
            lanes: Params::DEFAULT_P_COST,
            max_at_once: 2,
            max_wait: Duration::from_secs(2),
        }
    }
}

impl HashConfig {
    /// The cheapest parameters Argon2 allows (8 KiB, one pass), for tests
    /// that hash many times; never for a real server.
    // A test hook (tests/accounts.rs and others): public for the
    // integration tests, hidden from the docs so no server reaches for it.
    #[doc(hidden)]
    pub fn cheap() -> Self {
        Self {
            memory_kib: Params::MIN_M_COST,
            passes: 1,
            ..Self::default()
        }
    }
}

/// Every permit was taken for [`HashConfig::max_wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Hashes and verifies passwords, a bounded number at once.
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    max_wait: Duration,
    /// A hash of nothing anyone knows, for logins of unknown nicks.
    dummy: String,
}

impl Hasher {
    /// A hasher with `config`'s parameters (checked: out of Argon2's
    /// ranges is an error naming them).
    pub fn new(config: HashConfig) -> Result<Self, String> {
        let params = Params::new(config.memory_kib, config.passes, config.lanes, None)
            .map_err(|e| format!("Argon2 parameters: {e}"))?;
        let mut hasher = Self {
            params,
            permits: Arc::new(Semaphore::new(config.max_at_once.max(1))),
            max_wait: config.max_wait,
            dummy: String::new(),
        };
        hasher.dummy = hash_blocking(&hasher.params, &crate::chat::random_token())?;
        Ok(hasher)
    }

    /// The PHC string of `password`'s hash, with a fresh salt.
    pub async fn hash(&self, password: &str) -> Result<String, Busy> {
        let _permit = self.permit().await?;
        let (params, password) = (self.params.clone(), password.to_owned());
        let hashed = tokio::task::spawn_blocking(move || hash_blocking(&params, &password)).await;
        match hashed {
            Ok(Ok(hash)) => Ok(hash),
            // Neither happens with checked parameters; told as busy, the
            // client may try again.
            Ok(Err(_)) | Err(_) => Err(Busy),
        }
    }

    /// Whether `password` matches `hash`; with no hash (no such user),
    /// checked against the dummy hash all the same, and false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, Busy> {
        let _permit = self.permit().await?;
        let known = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy).to_owned();
        let password = password.to_owned();
        let verified = tokio::task::spawn_blocking(move || {
            // The parameters come from the stored hash (its PHC string).
            Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await;
        Ok(known && verified.unwrap_or(false))
    }

    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Busy> {
        let acquire = self.permits.clone().acquire_owned();
        match tokio::time::timeout(self.max_wait, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(Busy),
        }
    }
}

fn hash_blocking(params: &Params, password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("Argon2: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_long_nick_and_common_passwords_are_refused() {
        assert!(check("alice", "123456789").is_err(), "9 characters");
        assert!(
            check("alice", "ééééééééé").is_err(),
            "9 characters, 18 bytes"
        );
        assert!(check("alice", "correct horse").is_ok());
        assert!(check("alice", &"x".repeat(257)).is_err());
        assert!(check("alice", &"x7".repeat(128)).is_ok(), "256 bytes");
        assert!(check("alicealice", "AliceAlice").is_err());
        for common in ["qwertyuiop", "1234567890", "Password123", "1Q2W3E4R5T"] {
            assert_eq!(
                check("alice", common),
                Err("that password is among the 1,000 most common ones"),
                "{common}"
            );
        }
    }

    #[test]
    fn the_shipped_list_has_a_thousand_passwords() {
        let list: Vec<&str> = COMMON.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(list.len(), 1000);
        assert_eq!(list[0], "123456");
        assert!(list.iter().all(|p| *p == p.to_lowercase() && !p.is_empty()));
    }

    /// The real parameters (OWASP's 19 MiB, 2 passes), once: the hash
    /// says so in its PHC string, and verifies.
    #[tokio::test]
    async fn the_default_parameters_hash_and_verify() {
        let hasher = Hasher::new(HashConfig::default()).unwrap();
        let hash = hasher.hash("correct horse battery").await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hasher
                .verify("correct horse battery", Some(&hash))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("correct horse battery!", Some(&hash))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("correct horse battery", None).await.unwrap());
    }

    #[tokio::test]
    async fn a_hash_waits_at_most_max_wait_for_a_permit() {
        let config = HashConfig {
            max_at_once: 1,
            max_wait: Duration::from_millis(50),
            ..HashConfig::cheap()
        };
        let hasher = Hasher::new(config).unwrap();
        let held = hasher.permit().await.unwrap();
        assert_eq!(hasher.hash("anything at all").await, Err(Busy));
        drop(held);
        assert!(hasher.hash("anything at all").await.is_ok());
    }
}
