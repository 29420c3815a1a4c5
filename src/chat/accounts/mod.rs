//! Accounts in the chat itself (issue 17): a nick that is yours.
//!
//! With `--accounts open` (the default) anyone may still come as a guest,
//! and anyone may register a nick with a password and log in; with
//! `required` only accounts may say `hello`; with `off` the chat is
//! anonymous as it was before. `docs/PROTOCOL.md`, "Accounts", is the
//! wire contract; this module is what stands behind it:
//!
//! | file | what |
//! |---|---|
//! | `api.rs` | the HTTP endpoints (`POST /api/register`, …): body, JSON, status codes |
//! | `password.rs` | the password policy, Argon2id, at most a few hashes at once |
//! | `tokens.rs` | access tokens (HS256 JWTs, our key) and refresh tokens |
//! | `limiter.rs` | login limits per account and per address, bounded |
//! | `skeleton.rs` | confusable nicks: the skeleton registration is unique on |
//!
//! Accounts, sessions and the signing key live in the backend
//! ([`backend::Accounts`](super::backend::Accounts): SQLite, or Redis
//! when scaled out), so every server sharing a store shares them. A
//! session's access token is checked at each `hello` against the store:
//! a revoked session's tokens stop working at once, everywhere, and its
//! live connections are closed (4005) through a published
//! [`Signal::Revoked`].

pub mod api;
pub mod limiter;
pub mod password;
pub mod skeleton;
pub mod tokens;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::admission::client_key;
use super::backend::Unavailable;
use super::backend::{Backend, NewSession, Registered, Rotation, Signal};
use super::protocol::{ErrorCode, Refusal, check_nick};
use super::{lock, now_ms};
use limiter::{LimitConfig, Limiter};
use password::{HashConfig, Hasher};
use tokens::{ACCESS_TTL, Keys, REFRESH_TTL, Refused, Verified};

/// Who may say `hello` (`--accounts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Guests and accounts (the default).
    #[default]
    Open,
    /// Accounts only: a guest `hello` gets `account_required` and 4001.
    Required,
    /// No accounts: anonymous, as before issue 17 (the endpoints answer
    /// 404).
    Off,
}

/// The accounts' settings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AccountsConfig {
    /// Who may say `hello`.
    pub mode: Mode,
    /// Argon2id's cost and concurrency.
    pub hash: HashConfig,
    /// Login limits.
    pub limits: LimitConfig,
    /// `--trust-proxy`: a reverse proxy on this host (a loopback peer)
    /// says who the client is in `X-Forwarded-For`, and the login limits
    /// count that address (`api::client_ip`). Off: the header is ignored.
    pub trust_proxy: bool,
}

/// An error of an account request: its HTTP status, its `error` code and
/// message, and for 429 the seconds of `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The `error` code (docs/PROTOCOL.md, "Accounts").
    pub code: &'static str,
    /// A sentence for a human.
    pub message: String,
    /// With 429: when to try again.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn limited(wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::new(429, "rate_limited", "too many attempts; try again later")
        }
    }

    fn unavailable() -> Self {
        Self::new(
            503,
            "unavailable",
            "the account store is busy or unreachable; try again",
        )
    }

    fn bad_credentials() -> Self {
        Self::new(401, "bad_credentials", "wrong nick or password")
    }

    fn bad_token(message: &str) -> Self {
        Self::new(401, "bad_token", message)
    }
}

impl From<super::backend::Unavailable> for ApiError {
    fn from(_: super::backend::Unavailable) -> Self {
        Self::unavailable()
    }
}

impl From<password::Busy> for ApiError {
    fn from(_: password::Busy) -> Self {
        Self::unavailable()
    }
}

/// What register, login and refresh answer: a session's tokens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issued {
    /// The account's nick, as registered.
    pub nick: String,
    /// The access token (`hello.token`, `?token=`).
    pub token: String,
    /// The refresh token (`POST /api/refresh`).
    pub refresh: String,
    /// Seconds the access token is good for.
    pub expires_in: u64,
}

/// Why a guest may not have a nick: an account holds it, or a look-alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Nobody's account.
    Free,
    /// An account has exactly this nick.
    Reserved,
    /// An account has a look-alike of it (the account's nick).
    Confusable(String),
}

/// The accounts of one server (shared with every server on its store).
pub struct Accounts {
    store: Arc<dyn Backend>,
    /// The signing key, read from the store (or stored) when first
    /// needed: a server starts while its Redis is away, as it always has.
    keys: tokio::sync::OnceCell<Keys>,
    hasher: Hasher,
    limiter: Mutex<Limiter>,
    mode: Mode,
    trust_proxy: bool,
}

impl Accounts {
    /// The accounts on `store`, with a hasher of `config`'s parameters
    /// (its dummy hash made now, off the async threads). Limits that make
    /// no sense ([`LimitConfig::check`]) are refused, naming the setting.
    pub async fn open(store: Arc<dyn Backend>, config: AccountsConfig) -> Result<Self, String> {
        config.limits.check()?;
        let hash = config.hash;
        let hasher = tokio::task::spawn_blocking(move || Hasher::new(hash))
            .await
            .map_err(|e| e.to_string())??;
        Ok(Self {
            store,
            keys: tokio::sync::OnceCell::new(),
            hasher,
            limiter: Mutex::new(Limiter::new(config.limits)),
            mode: config.mode,
            trust_proxy: config.trust_proxy,
        })
    }

    /// Whether `X-Forwarded-For` from a loopback peer is believed
    /// ([`AccountsConfig::trust_proxy`]).
    pub fn trusts_proxy(&self) -> bool {
        self.trust_proxy
    }

    /// Who may say `hello`.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The signing key: the store's, or a new one stored now if it has
    /// none (the first server to ask sets it for all).
    async fn keys(&self) -> Result<&Keys, Unavailable> {
        self.keys
            .get_or_try_init(|| async {
                let key = self.store.signing_key(tokens::new_key()).await?;
                Ok(Keys::new(&key))
            })
            .await
    }

    /// One attempt from `ip` (every request pays one).
    fn attempt(&self, ip: IpAddr) -> Result<(), ApiError> {
        lock(&self.limiter)
            .attempt(client_key(ip), Instant::now())
            .map_err(ApiError::limited)
    }

    /// `POST /api/register`.
    pub async fn register(&self, ip: IpAddr, nick: &str, pass: &str) -> Result<Issued, ApiError> {
        check_nick(nick).map_err(|r| ApiError::new(400, "invalid_field", r.message))?;
        password::check(nick, pass).map_err(|why| ApiError::new(400, "weak_password", why))?;
        self.attempt(ip)?;
        let skeleton = skeleton::skeleton(nick);
        if let Some(held) = self.store.account(&skeleton).await? {
            return Err(taken(nick, &held.nick));
        }
        let hash = self.hasher.hash(pass).await?;
        match self.store.create_account(nick, &skeleton, &hash).await? {
            Registered::Created => {
                // Its address is known to it: past any lockout later.
                lock(&self.limiter).succeeded(&skeleton, client_key(ip), Instant::now());
                // Only the account's connections hold the nick from now
                // on: guests holding it or a look-alike close (4006).
                self.store.publish(Signal::Claimed {
                    nick: nick.to_owned(),
                });
                self.issue(nick).await
            }
            // Registered meanwhile by someone else.
            Registered::Taken(held) => Err(taken(nick, &held)),
        }
    }

    /// `POST /api/login`: the same answer, after the same work, for a
    /// nick nobody has and for a wrong password.
    pub async fn login(&self, ip: IpAddr, nick: &str, pass: &str) -> Result<Issued, ApiError> {
        self.attempt(ip)?;
        // A nick no account can have is simply wrong, and never tracked
        // (a flood of made-up ones costs the account limit nothing).
        if check_nick(nick).is_err() {
            return Err(ApiError::bad_credentials());
        }
        let skeleton = skeleton::skeleton(nick);
        // Counted as a failure from here (`limiter.rs`): logins sent at
        // once cannot all pass the lock before the first has failed.
        lock(&self.limiter)
            .begin(&skeleton, client_key(ip), Instant::now())
            .map_err(ApiError::limited)?;
        // An over-long password is simply wrong (never hashed: its cost).
        let pass = if pass.len() > password::MAX_BYTES {
            ""
        } else {
            pass
        };
        let account = self.store.account(&skeleton).await?;
        let hash = account.as_ref().map(|a| a.hash.as_str());
        if !self.hasher.verify(pass, hash).await? {
            return Err(ApiError::bad_credentials());
        }
        lock(&self.limiter).succeeded(&skeleton, client_key(ip), Instant::now());
        let nick = account.map(|a| a.nick).unwrap_or_default();
        self.issue(&nick).await
    }

    /// `POST /api/refresh`: spends `refresh`, answers a new pair.
    pub async fn refresh(&self, ip: IpAddr, refresh: &str) -> Result<Issued, ApiError> {
        self.attempt(ip)?;
        let next = tokens::new_refresh();
        let expires = now_ms() + REFRESH_TTL * 1000;
        let rotated = self
            .store
            .rotate(&tokens::digest(refresh), &tokens::digest(&next), expires)
            .await?;
        match rotated {
            Rotation::Rotated { session, nick } => Ok(Issued {
                token: self.keys().await?.sign(&nick, &session, now_ms() / 1000),
                nick,
                refresh: next,
                expires_in: ACCESS_TTL,
            }),
            Rotation::Replayed { session, nick } => {
                tracing::info!(%nick, "a spent refresh token was replayed: its session is revoked");
                self.store.publish(Signal::Revoked { nick, session });
                Err(ApiError::bad_token(
                    "refresh token already used; the session is revoked",
                ))
            }
            Rotation::Unknown => Err(ApiError::bad_token("unknown or expired refresh token")),
        }
    }

    /// `POST /api/logout`: the session of `token` is revoked. It costs
    /// `ip` an attempt, as every account request does (a look-up each).
    pub async fn logout(&self, ip: IpAddr, token: &str) -> Result<(), ApiError> {
        self.attempt(ip)?;
        let who = self.live(token).await?;
        self.revoke(&who.nick, &who.session).await
    }

    /// `POST /api/password`: the user's other sessions are revoked.
    pub async fn change_password(
        &self,
        ip: IpAddr,
        token: &str,
        old: &str,
        new: &str,
    ) -> Result<(), ApiError> {
        let who = self.live(token).await?;
        self.attempt(ip)?;
        let skeleton = skeleton::skeleton(&who.nick);
        lock(&self.limiter)
            .begin(&skeleton, client_key(ip), Instant::now())
            .map_err(ApiError::limited)?;
        let account = self.store.account(&skeleton).await?;
        let hash = account.as_ref().map(|a| a.hash.as_str());
        let old = if old.len() > password::MAX_BYTES {
            ""
        } else {
            old
        };
        if !self.hasher.verify(old, hash).await? {
            return Err(ApiError::bad_credentials());
        }
        lock(&self.limiter).succeeded(&skeleton, client_key(ip), Instant::now());
        password::check(&who.nick, new).map_err(|why| ApiError::new(400, "weak_password", why))?;
        let hash = self.hasher.hash(new).await?;
        self.store.set_password(&skeleton, &hash).await?;
        for session in self.store.revoke_all(&who.nick, Some(&who.session)).await? {
            self.store.publish(Signal::Revoked {
                nick: who.nick.clone(),
                session,
            });
        }
        Ok(())
    }

    /// Checks one of our access tokens at `hello` (and for logout): its
    /// signature and expiry, then that its session is not revoked.
    pub async fn check(&self, token: &str) -> Result<Verified, TokenError> {
        let keys = self.keys().await.map_err(|_| TokenError::Unavailable)?;
        let who = keys.verify(token).map_err(|why| match why {
            Refused::Expired => TokenError::Refused("token expired"),
            Refused::NotOurs | Refused::Invalid => TokenError::Refused("invalid token"),
        })?;
        match self.store.session_live(&who.session).await {
            Ok(true) => Ok(who),
            Ok(false) => Err(TokenError::Refused("session revoked")),
            Err(_) => Err(TokenError::Unavailable),
        }
    }

    /// Whether a guest may have `nick` ([`reservation`]).
    pub async fn reservation(&self, nick: &str) -> Result<Reservation, Unavailable> {
        reservation(&*self.store, nick).await
    }

    async fn live(&self, token: &str) -> Result<Verified, ApiError> {
        self.check(token).await.map_err(|e| match e {
            TokenError::Refused(why) => ApiError::bad_token(why),
            TokenError::Unavailable => ApiError::unavailable(),
        })
    }

    async fn revoke(&self, nick: &str, session: &str) -> Result<(), ApiError> {
        self.store.revoke(session).await?;
        self.store.publish(Signal::Revoked {
            nick: nick.to_owned(),
            session: session.to_owned(),
        });
        Ok(())
    }

    /// A new session for `nick`, and its tokens.
    async fn issue(&self, nick: &str) -> Result<Issued, ApiError> {
        let keys = self.keys().await?;
        let session = super::random_token();
        let refresh = tokens::new_refresh();
        self.store
            .open_session(NewSession {
                id: session.clone(),
                nick: nick.to_owned(),
                refresh: tokens::digest(&refresh),
                expires: now_ms() + REFRESH_TTL * 1000,
            })
            .await?;
        Ok(Issued {
            nick: nick.to_owned(),
            token: keys.sign(nick, &session, now_ms() / 1000),
            refresh,
            expires_in: ACCESS_TTL,
        })
    }
}

/// Whether an account holds `nick` or a look-alike of it, in `store`.
pub async fn reservation(store: &dyn Backend, nick: &str) -> Result<Reservation, Unavailable> {
    Ok(match store.account(&skeleton::skeleton(nick)).await? {
        None => Reservation::Free,
        Some(a) if a.nick == nick => Reservation::Reserved,
        Some(a) => Reservation::Confusable(a.nick),
    })
}

/// The `error` a guest gets for asking for `wanted`, if an account holds
/// it or a look-alike (`None`: free).
pub fn refusal(wanted: &str, reservation: &Reservation) -> Option<Refusal> {
    match reservation {
        Reservation::Free => None,
        Reservation::Reserved => Some(Refusal::new(
            ErrorCode::NickReserved,
            format!("{wanted} is a registered account: log in, or pick another nick"),
        )),
        Reservation::Confusable(held) => Some(Refusal::new(
            ErrorCode::NickConfusable,
            format!("{wanted} looks too much like {held}, a registered account"),
        )),
    }
}

/// Why a token was not accepted at `hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Refused: the reason of close 4001.
    Refused(&'static str),
    /// The store could not say whether its session is live.
    Unavailable,
}

/// `nick_taken` (the same nick) or `nick_confusable` (a look-alike).
fn taken(nick: &str, held: &str) -> ApiError {
    if held == nick {
        ApiError::new(409, "nick_taken", format!("{nick} is registered already"))
    } else {
        ApiError::new(
            409,
            "nick_confusable",
            format!("{nick} looks too much like {held}, which is registered"),
        )
    }
}
