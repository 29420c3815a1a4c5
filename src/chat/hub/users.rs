//! Users, as opposed to connections (issue 16): one nick may hold several
//! connections (tabs, servers), bounded per user; a user may take
//! another nick, or log out everywhere; and a DM may go to a user who is
//! not online, if that nick ever said hello.
//!
//! A child module of the hub: the same users map and rooms, the same lock
//! order (a room, then the rooms map; the users map never while a room is
//! locked here).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::proto::{CloseCode, CloseFrame};

use super::super::accounts::skeleton::skeleton;
use super::super::backend::{Conversation, Signal};
use super::super::lock;
use super::super::protocol::{ErrorCode, Refusal, ServerMsg};
use super::{Client, Hub, Kind, Outbox, random_token};

/// How a connection proved who it is: what roles and moderation go by
/// (issue 17). A guest picked its nick and nobody vouches for it; a
/// verified user logged in with an account of this server, or came
/// with a token from elsewhere (`--jwt-secret`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Standing {
    /// Picked its own nick.
    #[default]
    Guest,
    /// An account's user, or an external token's.
    Verified {
        /// An external token's claim that the user is a server admin.
        admin_claim: bool,
    },
}

/// The users connected here: each nick's connections, keyed by the
/// nick's confusable skeleton (`accounts/skeleton.rs`; issue 17), so that
/// a look-alike of a nick online is found in one look-up, at no cost per
/// idle member (the key is the skeleton instead of the nick, and each
/// [`Client`] keeps its nick). Two look-alikes under one key (tokens from
/// elsewhere name what they name) are told apart by each client's nick.
#[derive(Debug, Default)]
pub(super) struct Users(HashMap<String, Vec<Arc<Client>>>);

impl Users {
    /// The connections holding exactly `nick`.
    pub fn holders<'a>(&'a self, nick: &'a str) -> impl Iterator<Item = &'a Arc<Client>> + 'a {
        self.0
            .get(&skeleton(nick))
            .into_iter()
            .flatten()
            .filter(move |c| c.nick == nick)
    }

    /// Whether a connection here holds `nick`.
    pub fn contains(&self, nick: &str) -> bool {
        self.holders(nick).next().is_some()
    }

    /// A nick online here that looks like `nick` but is not it.
    pub fn lookalike(&self, nick: &str) -> Option<&str> {
        self.0
            .get(&skeleton(nick))
            .into_iter()
            .flatten()
            .find(|c| c.nick != nick)
            .map(|c| c.nick.as_str())
    }

    /// Every connection holding `nick` or a look-alike of it.
    pub fn alike<'a>(&'a self, nick: &str) -> impl Iterator<Item = &'a Arc<Client>> + 'a {
        self.0.get(&skeleton(nick)).into_iter().flatten()
    }

    /// Adds a connection; true if its nick was not held here before.
    pub fn add(&mut self, client: Arc<Client>) -> bool {
        let new = !self.contains(&client.nick);
        let key = skeleton(&client.nick);
        let holders = self.0.entry(key).or_default();
        holders.push(client);
        new
    }

    /// Removes a connection; true if its nick is held here no more.
    pub fn remove(&mut self, client: &Client) -> bool {
        let key = skeleton(&client.nick);
        let Some(holders) = self.0.get_mut(&key) else {
            return false;
        };
        let before = holders.len();
        holders.retain(|c| c.id != client.id);
        let removed = holders.len() < before;
        let gone = !holders.iter().any(|c| c.nick == client.nick);
        if holders.is_empty() {
            self.0.remove(&key);
        }
        removed && gone
    }

    /// Every connection here.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.0.values().flatten()
    }

    /// Every nick held here, sorted, once each.
    pub fn nicks(&self) -> Vec<String> {
        let mut nicks: Vec<String> = self.all().map(|c| c.nick.clone()).collect();
        nicks.sort();
        nicks.dedup();
        nicks
    }
}

/// The most connections one user (one nick) may hold on one server: the
/// next `hello` is refused with `too_many_connections` and closed (4002).
pub const MAX_CONNECTIONS: usize = 10;

/// The close code of a connection whose user took another nick on
/// another connection: reconnect with the new nick and session.
const RENAMED: u16 = 4003;

/// The close code of a connection whose account session was revoked
/// (logout, a password change, a replayed refresh token; issue 17).
const REVOKED: u16 = 4005;

/// The close code of a guest's connection whose nick (or a look-alike of
/// it) was registered, or whose account's user connected: the nick is
/// the account's now; reconnect under another one (issue 17).
pub const CLAIMED: u16 = 4006;

impl Hub {
    /// [`admit_avoiding`](Self::admit_avoiding) nothing (the session
    /// always goes through `admit_avoiding`, which a banned or registered
    /// nick it was given sends round again).
    #[cfg(test)]
    pub fn admit(
        &self,
        wanted: Option<&str>,
        session: Option<&str>,
        remote_reclaim: bool,
        standing: Standing,
    ) -> Result<Arc<Client>, Refusal> {
        self.admit_avoiding(wanted, session, remote_reclaim, standing, &[])
    }

    /// [`register`](Self::register), unless the user it would add a
    /// connection to holds [`MAX_CONNECTIONS`] here already; and the nick
    /// is remembered as one that may get DMs while away. Never under one
    /// of the nicks in `avoid` (registered or banned ones a guest's
    /// suffix or `guestN` would have named).
    pub fn admit_avoiding(
        &self,
        wanted: Option<&str>,
        session: Option<&str>,
        remote_reclaim: bool,
        standing: Standing,
        avoid: &[String],
    ) -> Result<Arc<Client>, Refusal> {
        if let Some(nick) = wanted {
            let fixed = self.fixed(standing);
            let guest = standing == Standing::Guest;
            let users = lock(&self.users);
            // Counted by standing: a guest holding the nick never uses up
            // the connections of its account's user (nor the other way).
            let shared = users
                .holders(nick)
                .filter(|c| (c.standing == Standing::Guest) == guest)
                .filter(|c| fixed || Some(c.session.as_str()) == session)
                .count();
            if shared >= MAX_CONNECTIONS {
                return Err(Refusal::new(
                    ErrorCode::TooManyConnections,
                    format!("{nick} has {MAX_CONNECTIONS} connections already; close one"),
                ));
            }
        }
        let client = self.register_avoiding(wanted, session, remote_reclaim, standing, avoid);
        // A guest (no nick asked for) is not remembered: its name is
        // the connection's, and nobody can know it to write to later.
        if wanted.is_some() {
            self.backend.remember_user(&client.nick);
        }
        Ok(client)
    }

    /// A DM to `to`, who is not online ([`dm`](Self::dm) said so): stored
    /// for when it comes back, if that nick ever said hello (on any
    /// server sharing the store); `unknown_user` otherwise.
    pub async fn dm_offline(
        &self,
        client: &Arc<Client>,
        to: &str,
        text: &str,
        client_id: &str,
    ) -> Result<(), Refusal> {
        match self.backend.known_user(to).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(Refusal::new(
                    ErrorCode::UnknownUser,
                    format!("nobody called {to} has ever been here"),
                ));
            }
            Err(unavailable) => return Err(super::down(unavailable)),
        }
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "the server is shutting down",
            ));
        }
        self.append(client, Conversation::dm(&client.nick, to), text, client_id)
    }

    /// Gives `old`'s user the nick `wanted`, if nobody holds it: a new
    /// connection record with a new session secret joins `old`'s rooms
    /// (their members see `wanted` join and the old nick leave), and `old`
    /// is unregistered. The user's other connections with the old nick
    /// are told (a `renamed` with the new secret) and closed (4003), to
    /// reconnect as `wanted`; the old nick's secret is forgotten. Read
    /// marks and DMs stay with the old nick.
    pub async fn rename(&self, old: &Arc<Client>, wanted: &str) -> Result<Arc<Client>, Refusal> {
        if self.fixed(old.standing) {
            return Err(Refusal::new(
                ErrorCode::NickFixed,
                "the nick comes from your token",
            ));
        }
        if self.config.mark_guests {
            // Accounts are on: a registered nick, or a look-alike of one,
            // is not a guest's to take.
            match super::super::accounts::reservation(&*self.backend, wanted).await {
                Ok(found) => {
                    if let Some(refusal) = super::super::accounts::refusal(wanted, &found) {
                        return Err(refusal);
                    }
                }
                Err(unavailable) => return Err(super::down(unavailable)),
            }
        }
        // Issue 17: a nick banned from the server is not taken back by a
        // rename (as a `hello` with it is refused).
        if self.banned_from_server(wanted).await? {
            return Err(banned_nick(wanted));
        }
        self.refresh_online(wanted).await;
        let client = {
            let mut users = lock(&self.users);
            if users.contains(wanted) || self.online_elsewhere(wanted) {
                return Err(Refusal::new(
                    ErrorCode::NickTaken,
                    format!("{wanted} is taken"),
                ));
            }
            // (Its own look-alike is the user's to take: a change of case.)
            let lookalike = users.lookalike(wanted).filter(|held| *held != old.nick);
            if let Some(held) = lookalike.filter(|_| self.config.mark_guests) {
                return Err(Refusal::new(
                    ErrorCode::NickConfusable,
                    format!("{wanted} looks too much like {held}, who is online"),
                ));
            }
            let client = Arc::new(Client {
                id: self.next_conn.fetch_add(1, Ordering::Relaxed),
                nick: wanted.to_owned(),
                session: random_token(),
                outbox: Outbox::new(self.config.outbox_limit),
                rooms: Mutex::new(Vec::new()),
                gone: AtomicBool::new(false),
                standing: Standing::default(),
            });
            lock(&self.users_changed).insert(wanted.to_owned());
            users.add(client.clone());
            client
        };
        self.backend.remember_session(wanted, &client.session);
        self.backend.remember_user(wanted);
        for room in old.rooms() {
            // Joined before the old nick leaves: no event of the room
            // falls between the two (a few may reach both: ids dedupe).
            if self.join(&client, &room).await.is_err() {
                tracing::debug!(%room, "a renamed user could not rejoin");
            }
            self.leave(old, &room);
        }
        self.unregister(old);
        self.backend.forget_session(&old.nick);
        self.backend.publish(Signal::Logout {
            nick: old.nick.clone(),
            renamed: Some(wanted.to_owned()),
            session: Some(client.session.clone()),
            guest: old.standing == Standing::Guest,
        });
        Ok(client)
    }

    /// Logs `client`'s user out everywhere: its session secret is
    /// forgotten and every connection with its nick, on every server, is
    /// closed (1000); the nick is free once they are gone.
    pub fn logout(&self, client: &Arc<Client>) {
        self.backend.forget_session(&client.nick);
        self.backend.publish(Signal::Logout {
            nick: client.nick.clone(),
            renamed: None,
            session: None,
            guest: client.standing == Standing::Guest,
        });
    }

    /// A [`Signal::Logout`] arrived: close the nick's connections here.
    /// After a rename (`renamed`: the new nick and its secret), each is
    /// told first, with a `renamed` of its own, so that it reconnects as
    /// the new nick.
    /// A guest's logout (`guest`) closes the nick's guest connections
    /// only; a verified user's, its verified ones only.
    pub(super) fn close_user(&self, nick: &str, renamed: Option<(&str, &str)>, guest: bool) {
        let (close, told) = match renamed {
            Some((to, session)) => (
                CloseFrame::new(
                    CloseCode::try_from(RENAMED).unwrap_or(CloseCode::NORMAL),
                    &format!("renamed to {to}"),
                ),
                Some(
                    self.prepare(
                        ServerMsg::Renamed {
                            user: to,
                            old: nick,
                            session,
                        }
                        .to_json(),
                    ),
                ),
            ),
            None => (CloseFrame::new(CloseCode::NORMAL, "logged out"), None),
        };
        let users = lock(&self.users);
        for c in users
            .holders(nick)
            .filter(|c| (c.standing == Standing::Guest) == guest)
        {
            // Gone from now on: a `hello` with the old secret is not one
            // more connection of this user while these close.
            c.gone.store(true, Ordering::Relaxed);
            if let Some(frame) = &told {
                c.outbox.push(frame, Kind::Chat, &self.metrics);
            }
            c.outbox.close(close.clone());
        }
    }

    /// A [`Signal::Revoked`] arrived: close the connections of `nick`'s
    /// account session `session` here (4005). Their `session` is the
    /// account session's id (`session/identify.rs`).
    pub(super) fn close_session(&self, nick: &str, session: &str) {
        let close = CloseFrame::new(
            CloseCode::try_from(REVOKED).unwrap_or(CloseCode::POLICY_VIOLATION),
            "session revoked: log in again",
        );
        for c in lock(&self.users).holders(nick) {
            if c.session == session && c.standing != Standing::Guest {
                // Now, dropping what waits: a revoked session reads no more.
                c.gone.store(true, Ordering::Relaxed);
                c.outbox.abort(close.clone());
            }
        }
    }

    /// `nick` is an account's ([`Signal::Claimed`]): the guest
    /// connections here holding it or a look-alike of it close (4006).
    pub(super) fn close_guests_like(&self, nick: &str) {
        close_guests_like(&lock(&self.users), nick);
    }

    /// A guest's nick online here that looks like `nick` but is not it
    /// (issue 17: such a `hello` gets `nick_confusable`).
    pub fn lookalike_online(&self, nick: &str) -> Option<String> {
        lock(&self.users).lookalike(nick).map(str::to_owned)
    }

    /// Whether connections of `standing` keep the nick they come with (a
    /// token's user, whose nick is its own) rather than getting a
    /// suffixed one when it is taken.
    pub(super) fn fixed(&self, standing: Standing) -> bool {
        self.config.authenticated || matches!(standing, Standing::Verified { .. })
    }

    /// Whether messages, `welcome`, `presence` and `members` mark guests
    /// (accounts are on).
    pub fn marks_guests(&self) -> bool {
        self.config.mark_guests
    }
}

/// The refusal of `nick`, banned from the server, to a `hello` or a
/// rename.
pub fn banned_nick(nick: &str) -> Refusal {
    Refusal::new(
        ErrorCode::Banned,
        format!("{nick} is banned from this server"),
    )
}

/// The guest connections in `users` holding `nick` or a look-alike of it
/// close (4006): the nick is an account's (issue 17).
pub(super) fn close_guests_like(users: &Users, nick: &str) {
    let close = CloseFrame::new(
        CloseCode::try_from(CLAIMED).unwrap_or(CloseCode::POLICY_VIOLATION),
        &format!("{nick} is a registered nick: reconnect under another"),
    );
    for c in users.alike(nick).filter(|c| c.standing == Standing::Guest) {
        // Now, dropping what waits: the nick is no longer this guest's.
        c.gone.store(true, Ordering::Relaxed);
        c.outbox.abort(close.clone());
    }
}
