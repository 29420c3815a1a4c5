//! Users, as opposed to connections (issue 16): one nick may hold several
//! connections (tabs, servers), bounded per user; a user may take
//! another nick, or log out everywhere; and a DM may go to a user who is
//! not online, if that nick ever said hello.
//!
//! A child module of the hub: the same users map and rooms, the same lock
//! order (a room, then the rooms map; the users map never while a room is
//! locked here).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::proto::{CloseCode, CloseFrame};

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

/// The most connections one user (one nick) may hold on one server: the
/// next `hello` is refused with `too_many_connections` and closed (4002).
pub const MAX_CONNECTIONS: usize = 10;

/// The close code of a connection whose user took another nick on
/// another connection: reconnect with the new nick and session.
const RENAMED: u16 = 4003;

impl Hub {
    /// [`register`](Self::register), unless the user it would add a
    /// connection to holds [`MAX_CONNECTIONS`] here already; and the nick
    /// is remembered as one that may get DMs while away.
    pub fn admit(
        &self,
        wanted: Option<&str>,
        session: Option<&str>,
        remote_reclaim: bool,
        standing: Standing,
    ) -> Result<Arc<Client>, Refusal> {
        if let Some(nick) = wanted {
            let users = lock(&self.users);
            let shared = users.get(nick).map_or(0, |holders| {
                holders
                    .iter()
                    .filter(|c| self.config.authenticated || Some(c.session.as_str()) == session)
                    .count()
            });
            if shared >= MAX_CONNECTIONS {
                return Err(Refusal::new(
                    ErrorCode::TooManyConnections,
                    format!("{nick} has {MAX_CONNECTIONS} connections already; close one"),
                ));
            }
        }
        let client = self.register_as(wanted, session, remote_reclaim, standing);
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
        if self.config.authenticated {
            return Err(Refusal::new(
                ErrorCode::NickFixed,
                "the nick comes from your token",
            ));
        }
        self.refresh_online(wanted).await;
        let client = {
            let mut users = lock(&self.users);
            if users.contains_key(wanted) || self.online_elsewhere(wanted) {
                return Err(Refusal::new(
                    ErrorCode::NickTaken,
                    format!("{wanted} is taken"),
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
            users.insert(wanted.to_owned(), vec![client.clone()]);
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
        });
    }

    /// A [`Signal::Logout`] arrived: close the nick's connections here.
    /// After a rename (`renamed`: the new nick and its secret), each is
    /// told first, with a `renamed` of its own, so that it reconnects as
    /// the new nick.
    pub(super) fn close_user(&self, nick: &str, renamed: Option<(&str, &str)>) {
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
        for c in lock(&self.users).get(nick).into_iter().flatten() {
            // Gone from now on: a `hello` with the old secret is not one
            // more connection of this user while these close.
            c.gone.store(true, Ordering::Relaxed);
            if let Some(frame) = &told {
                c.outbox.push(frame, Kind::Chat, &self.metrics);
            }
            c.outbox.close(close.clone());
        }
    }
}
