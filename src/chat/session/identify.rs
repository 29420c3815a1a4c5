//! Who a `hello` is (issue 17): a token's user (one of our accounts, or
//! an external `--jwt-secret` token's), or a guest; and whether a guest
//! may have the nick it asks for.
//!
//! | hello | `--accounts off` | `open` | `required` |
//! |---|---|---|---|
//! | our token, live session | ignored: a guest | the account | the account |
//! | our token, revoked or expired | ignored: a guest | 4001 | 4001 |
//! | external token (`--jwt-secret`) | its user | its user | its user |
//! | any other token | ignored: a guest | 4001 | 4001 |
//! | no token, `--jwt-secret` set | 4001 | 4001 | 4001 |
//! | no token | a guest | a guest, unless the nick is reserved or confusable (`error`, may say `hello` again) | `account_required`, 4001 |
//!
//! "Ignored: a guest" holds without `--jwt-secret`; with it, any token
//! not ours is checked against the secret, in every mode.
//!
//! Our tokens are told from external ones by their issuer
//! (`accounts::tokens::ISSUER`): each is checked with its own key only.

use std::sync::Arc;

use super::super::accounts::{self, Accounts, Mode, TokenError, tokens};
use super::super::hub::{Client, Hub, Standing, banned_nick};
use super::super::protocol::{ErrorCode, Refusal};
use super::{Auth, verify};

/// The close code of a `hello` whose token is refused, or that needs
/// one (docs/PROTOCOL.md, close codes).
pub const UNAUTHORIZED: u16 = 4001;

/// What to do with a `hello`.
pub enum Identity {
    /// Register the connection.
    Admit {
        /// The nick (a guest's may be none: it gets `guestN`).
        nick: Option<String>,
        /// The hello's session secret (a guest's), or the account
        /// session's id.
        session: Option<String>,
        /// How it proved who it is.
        standing: Standing,
    },
    /// Refuse this `hello` with an `error`; the client may send another.
    Retry(Refusal),
    /// Close the connection: with an `error` first, if given.
    Close {
        /// The close code.
        code: u16,
        /// Its reason.
        reason: &'static str,
        /// An `error` sent before the close.
        error: Option<Refusal>,
    },
}

fn close(code: u16, reason: &'static str) -> Identity {
    Identity::Close {
        code,
        reason,
        error: None,
    }
}

/// Decides who a `hello` is ([module doc](self)'s table).
pub async fn identify(
    auth: &Auth,
    hub: &Hub,
    nick: Option<String>,
    token: Option<String>,
    session: Option<String>,
) -> Identity {
    if let Some(token) = token {
        if let Some(accounts) = &auth.accounts
            && tokens::is_ours(&token)
        {
            return match accounts.check(&token).await {
                Ok(who) => Identity::Admit {
                    nick: Some(who.nick),
                    session: Some(who.session),
                    standing: Standing::Verified { admin_claim: false },
                },
                Err(TokenError::Refused(why)) => close(UNAUTHORIZED, why),
                Err(TokenError::Unavailable) => Identity::Retry(Refusal::new(
                    ErrorCode::Unavailable,
                    "the account store is unreachable; try again",
                )),
            };
        }
        return match &auth.external {
            Some(key) => match verify(key, &token) {
                Ok((nick, admin_claim)) => Identity::Admit {
                    nick: Some(nick),
                    session: None,
                    standing: Standing::Verified { admin_claim },
                },
                Err(why) => close(UNAUTHORIZED, why),
            },
            // Accounts off and no secret: tokens mean nothing here, and
            // are ignored as they always were.
            None if auth.accounts.is_none() => guest(nick, session),
            None => close(UNAUTHORIZED, "invalid token"),
        };
    }
    if auth.external.is_some() {
        return close(UNAUTHORIZED, "a token is required");
    }
    let Some(accounts) = &auth.accounts else {
        return guest(nick, session);
    };
    if accounts.mode() == Mode::Required {
        return Identity::Close {
            code: UNAUTHORIZED,
            reason: "an account is required",
            error: Some(Refusal::new(
                ErrorCode::AccountRequired,
                "this server takes accounts only: log in first",
            )),
        };
    }
    match nick {
        Some(wanted) => match may_have(accounts, hub, &wanted).await {
            Ok(()) => guest(Some(wanted), session),
            Err(refusal) => Identity::Retry(refusal),
        },
        None => guest(None, session),
    }
}

fn guest(nick: Option<String>, session: Option<String>) -> Identity {
    Identity::Admit {
        nick,
        session,
        standing: Standing::Guest,
    }
}

/// Whether a guest may have `wanted`: no account holds it or a
/// look-alike, and no look-alike of it is online.
async fn may_have(accounts: &Accounts, hub: &Hub, wanted: &str) -> Result<(), Refusal> {
    match accounts.reservation(wanted).await {
        Ok(found) => {
            if let Some(refusal) = accounts::refusal(wanted, &found) {
                return Err(refusal);
            }
        }
        Err(_) => {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "the account store is unreachable; try again",
            ));
        }
    }
    match hub.lookalike_online(wanted) {
        Some(held) => Err(Refusal::new(
            ErrorCode::NickConfusable,
            format!("{wanted} looks too much like {held}, who is online"),
        )),
        None => Ok(()),
    }
}

/// Whether `given`, the nick a `hello` asking for `asked` was given, is
/// one it may not keep: registered (for a guest, with `accounts`), or
/// banned from the server. A store that cannot answer refuses nothing
/// here: the nick asked for was checked moments ago.
async fn unfit(hub: &Hub, accounts: Option<&Accounts>, asked: Option<&str>, given: &str) -> bool {
    if asked != Some(given) && hub.banned_from_server(given).await.unwrap_or(false) {
        return true;
    }
    match accounts {
        Some(accounts) => accounts
            .reservation(given)
            .await
            .is_ok_and(|found| accounts::refusal(given, &found).is_some()),
        None => false,
    }
}

/// The most nicks a guest's `hello` tries before it is refused: each one
/// tried and found registered costs a look-up in the store.
const MAX_TRIES: usize = 16;

/// Registers the connection ([`Hub::admit_avoiding`]). A guest's nick is checked
/// once more against the accounts once the guest holds it: the nick it
/// asked for may have been registered since [`identify`] looked, and a
/// suffixed nick (`bob-2`) or a `guestN` was never looked up at all.
/// A registered one (or a look-alike of one) is given up and the next
/// one tried, so that a guest never holds an account's nick. So is a
/// given nick other than the one asked for that is banned from the
/// server (issue 17: asking for `bob` while `bob` is online must not
/// hand back a banned `bob-2`; the one asked for was checked before).
pub async fn admit(
    auth: &Auth,
    hub: &Hub,
    nick: Option<&str>,
    session: Option<&str>,
    remote_reclaim: bool,
    standing: Standing,
) -> Result<Arc<Client>, Refusal> {
    let accounts = auth
        .accounts
        .as_deref()
        .filter(|_| standing == Standing::Guest);
    // Issue 17: a nick banned from the server is refused (then closed
    // with 4004). A store that cannot say is not taken as "not banned".
    let bans = hub.bans_signalled();
    if let Some(nick) = nick {
        match hub.banned_from_server(nick).await {
            Ok(false) => {}
            Ok(true) => return Err(banned_nick(nick)),
            Err(_) => {
                return Err(Refusal::new(
                    ErrorCode::Unavailable,
                    "the server cannot tell now whether this nick may connect; try again",
                ));
            }
        }
    }
    let mut avoid = Vec::new();
    loop {
        let client = hub.admit_avoiding(nick, session, remote_reclaim, standing, &avoid)?;
        if !unfit(hub, accounts, nick, &client.nick).await {
            // A ban signalled while this hello was admitted found no
            // connection of the nick to close: checked again then
            // (review finding 11), failing closed.
            if hub.bans_signalled() != bans
                && hub.banned_from_server(&client.nick).await.unwrap_or(true)
            {
                hub.unregister(&client);
                return Err(banned_nick(&client.nick));
            }
            return Ok(client);
        }
        hub.unregister(&client);
        avoid.push(client.nick.clone());
        if avoid.len() >= MAX_TRIES {
            return Err(Refusal::new(
                ErrorCode::NickReserved,
                "every nick tried is registered or banned: ask for another",
            ));
        }
    }
}
