//! The bus, `chat:bus`: one pub/sub channel every server subscribes to
//! once (not per client or room). What travels on it ([`Bus`], JSON
//! written and read by serde), the subscription that reads it and proves
//! itself with our own heartbeat, and where each event goes in the hub.
//!
//! The servers of one chat share this format and nothing negotiates it:
//! they run the same version (a stored event travels as
//! `{"t":"stored","id":…,"event":{…}}` since the backend seam; before it,
//! as `msg` and `dm` events; presence travels as numbered changes,
//! `presence_delta`, since issue 15, where it was each server's whole
//! list every tick).

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_core::Stream;
use redis::RedisResult;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{Backoff, IO_TIMEOUT, Redis};
use crate::chat::backend::{
    Conversation, Event, HubEvents, Kind, MsgState, NewEvent, PresenceChange, Scope, Signal,
    moderation,
};

/// The channel every server subscribes to.
pub(super) const BUS: &str = "chat:bus";

/// An event on the bus.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(super) enum Bus {
    /// An event was stored with `id` (published by the post script).
    Stored {
        /// Its id in its conversation.
        id: u64,
        /// The event.
        event: Posted,
        /// A reaction's users once toggled (the script knows them, not
        /// the writer); absent for the other kinds.
        #[serde(default)]
        users: Vec<String>,
    },
    /// Someone is typing.
    Typing {
        /// The room.
        room: String,
        /// Who.
        user: String,
    },
    /// All of one server's nicks in a room (`*`: who is online there;
    /// `~`: its guests),
    /// after it lost its link; rare.
    Presence {
        /// The server.
        s: String,
        /// Its presence sequence number (one more for each change).
        n: u64,
        /// The presence key ([`Scope::key`]).
        room: String,
        /// Its nicks there.
        nicks: Vec<String>,
    },
    /// The nicks that came to and left a room (`*`: online; `~`: guests) on one server
    /// within one presence tick: the usual presence event.
    PresenceDelta {
        /// The server.
        s: String,
        /// Its presence sequence number: one more than its last change.
        n: u64,
        /// The presence key ([`Scope::key`]).
        room: String,
        /// Nicks present there now, not before.
        joined: Vec<String>,
        /// Nicks gone from there.
        left: Vec<String>,
    },
    /// A nick's owner reconnected elsewhere, with its session secret:
    /// the server holding it closes that connection (4000).
    Replace {
        /// The server the owner is on now (which keeps its connection).
        s: String,
        /// The nick.
        nick: String,
    },
    /// Someone read a conversation up to `id`.
    Receipt {
        /// The conversation's key.
        conv: String,
        /// Who.
        user: String,
        /// Up to where.
        id: u64,
    },
    /// A nick logged out or was renamed: its connections close everywhere.
    Logout {
        /// The nick.
        nick: String,
        /// The nick it became, if renamed.
        #[serde(default)]
        renamed: Option<String>,
        /// The new nick's secret, if renamed.
        #[serde(default)]
        session: Option<String>,
        /// A guest's logout: its guest connections only.
        #[serde(default)]
        guest: bool,
    },
    /// A nick's account claimed it: guests holding it close (issue 17).
    Claimed {
        /// The account's nick.
        nick: String,
    },
    /// An account session was revoked: its connections close everywhere
    /// (issue 17).
    Revoked {
        /// Whose session.
        nick: String,
        /// The session id.
        session: String,
    },
    // issue 17: moderation
    /// A nick is banned from the server: its connections close everywhere.
    Banned {
        /// The nick.
        nick: String,
    },
    /// A nick's blocks changed: servers holding it read them again.
    Blocks {
        /// The nick.
        nick: String,
    },
    /// A server is alive.
    Hb {
        /// The server.
        s: String,
        /// The sequence number of its last presence change (so that a
        /// server heard from for the first time can be read from there).
        #[serde(default)]
        n: u64,
    },
}

impl Bus {
    pub(super) fn to_json(&self) -> String {
        // Strings and numbers only: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A stored event as the bus carries it, without its id (the script puts
/// that beside it, in [`Bus::Stored`]). The fields after `ts` came with
/// event kinds (issue 16); absent, the event is a message.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Posted {
    /// The conversation's key ([`Conversation::key`]).
    conv: String,
    from: String,
    text: String,
    ts: u64,
    /// [`Kind::name`]; absent: `msg`.
    #[serde(default, skip_serializing_if = "is_msg")]
    kind: String,
    /// The message an edit, delete or reaction acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<u64>,
    /// The message a message replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_to: Option<u64>,
    /// A reaction's emoji.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    emoji: String,
    /// A message's writer was a guest (issue 17).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    guest: bool,
}

fn is_msg(kind: &str) -> bool {
    kind.is_empty() || kind == "msg"
}

impl Posted {
    pub(super) fn of(event: &NewEvent) -> Self {
        let (reply_to, emoji) = match &event.kind {
            Kind::Msg(state) => (state.reply_to, String::new()),
            Kind::React { emoji, .. } => (None, emoji.clone()),
            _ => (None, String::new()),
        };
        Self {
            conv: event.conv.key(),
            from: event.from.clone(),
            text: event.text.clone(),
            ts: event.ts,
            kind: event.kind.name().to_owned(),
            target: event.kind.target(),
            reply_to,
            emoji,
            guest: matches!(&event.kind, Kind::Msg(state) if state.guest),
        }
    }

    pub(super) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn with_id(self, id: u64, users: Vec<String>) -> Event {
        let target = self.target.unwrap_or(0);
        let kind = match self.kind.as_str() {
            "edit" => Kind::Edit { target },
            "delete" => Kind::Delete { target },
            "react" => Kind::React {
                target,
                emoji: self.emoji,
                users,
            },
            other => moderation::decode(other, target, &self.text).unwrap_or_else(|| {
                Kind::Msg(MsgState {
                    reply_to: self.reply_to,
                    guest: self.guest,
                    ..MsgState::default()
                })
            }),
        };
        Event {
            conv: Conversation::from_key(&self.conv),
            id,
            from: self.from,
            text: self.text,
            ts: self.ts,
            kind,
        }
    }
}

impl Redis {
    /// Publishes a [`Signal`]; dropped if Redis is away or too slow.
    pub(super) fn publish_signal(&self, signal: Signal) {
        let event = match signal {
            // Every server relays it, this one too, when it comes back.
            Signal::Typing { room, user } => Bus::Typing { room, user },
            Signal::Replaced { nick } => Bus::Replace {
                s: self.id.clone(),
                nick,
            },
            Signal::Receipt { conv, user, id } => Bus::Receipt { conv, user, id },
            Signal::Logout {
                nick,
                renamed,
                session,
                guest,
            } => Bus::Logout {
                nick,
                renamed,
                session,
                guest,
            },
            Signal::Claimed { nick } => Bus::Claimed { nick },
            Signal::Revoked { nick, session } => Bus::Revoked { nick, session },
            Signal::Banned { nick } => Bus::Banned { nick },
            Signal::Blocks { nick } => Bus::Blocks { nick },
        };
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(BUS).arg(event.to_json());
        self.send(vec![cmd]);
    }

    pub(super) async fn subscriber(self: Arc<Self>, hub: Arc<dyn HubEvents>) {
        let mut backoff = Backoff::new();
        loop {
            let reason = self.subscribe_once(&hub, &mut backoff).await;
            self.set_state(None, Some(false));
            warn!(%reason, "redis: subscription lost; resubscribing");
            backoff.wait().await;
        }
    }

    /// One subscription's life; returns why it ended.
    async fn subscribe_once(
        self: &Arc<Self>,
        hub: &Arc<dyn HubEvents>,
        backoff: &mut Backoff,
    ) -> String {
        let made = tokio::time::timeout(IO_TIMEOUT, async {
            let mut ps = self.client.get_async_pubsub().await?;
            ps.subscribe(BUS).await?;
            RedisResult::Ok(ps)
        })
        .await;
        let ps = match made {
            Ok(Ok(ps)) => ps,
            Ok(Err(e)) => return format!("subscribe: {e}"),
            Err(_) => return "subscribe: timed out".into(),
        };
        let mut stream = ps.into_on_message();
        // Until our own heartbeat comes back, the path is not proven.
        self.beat().await;
        let mut confirmed = false;
        let mut last_own = Instant::now();
        let mut probe = tokio::time::interval(self.config.heartbeat);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)) => {
                    let Some(msg) = msg else {
                        return "the subscription's connection closed".into();
                    };
                    self.metrics.bus_in.fetch_add(1, Ordering::Relaxed);
                    match serde_json::from_slice::<Bus>(msg.get_payload_bytes()) {
                        Ok(Bus::Hb { s, .. }) if s == self.id => {
                            last_own = Instant::now();
                            if !confirmed {
                                confirmed = true;
                                backoff.reset();
                                // Whatever was published while we were not
                                // listening is in the streams; who is where
                                // is in the presence sets. Read both
                                // before saying we are up.
                                self.resync(hub).await;
                                self.set_state(None, Some(true));
                            }
                        }
                        Ok(event) => self.on_bus(hub, event).await,
                        Err(e) => {
                            self.metrics.bus_bad.fetch_add(1, Ordering::Relaxed);
                            warn!(error = %e, "redis: unreadable bus event");
                        }
                    }
                }
                _ = probe.tick() => {
                    if last_own.elapsed() > self.config.probe_timeout {
                        self.metrics.probe_failures.fetch_add(1, Ordering::Relaxed);
                        return format!(
                            "probe: our heartbeat did not come back within {:?}",
                            self.config.probe_timeout
                        );
                    }
                }
            }
        }
    }

    /// An event from another server (or, for stored events and typing,
    /// from this one too), to the hub. Awaited in the subscription's loop:
    /// a presence resync it starts ends before the next event is read.
    async fn on_bus(self: &Arc<Self>, hub: &Arc<dyn HubEvents>, event: Bus) {
        match event {
            Bus::Stored { id, event, users } => hub.stored(event.with_id(id, users)),
            Bus::Typing { room, user } => hub.signal(Signal::Typing { room, user }),
            Bus::Receipt { conv, user, id } => hub.signal(Signal::Receipt { conv, user, id }),
            Bus::Logout {
                nick,
                renamed,
                session,
                guest,
            } => hub.signal(Signal::Logout {
                nick,
                renamed,
                session,
                guest,
            }),
            Bus::Claimed { nick } => hub.signal(Signal::Claimed { nick }),
            Bus::Revoked { nick, session } => hub.signal(Signal::Revoked { nick, session }),
            Bus::Replace { s, nick } => {
                if s != self.id {
                    // Its owner came back on another server: the
                    // connections here are the stale ones.
                    hub.signal(Signal::Replaced { nick });
                }
            }
            Bus::Presence { s, n, room, nicks } => {
                if s != self.id {
                    let change = PresenceChange::All(nicks);
                    tracing::debug!(%room, ?change, "presence from another server");
                    self.on_presence(hub, &s, n, Scope::from_key(&room), change)
                        .await;
                }
            }
            Bus::PresenceDelta {
                s,
                n,
                room,
                joined,
                left,
            } => {
                if s != self.id {
                    let change = PresenceChange::Delta { joined, left };
                    tracing::debug!(%room, ?change, "presence from another server");
                    self.on_presence(hub, &s, n, Scope::from_key(&room), change)
                        .await;
                }
            }
            Bus::Banned { nick } => hub.signal(Signal::Banned { nick }),
            Bus::Blocks { nick } => hub.signal(Signal::Blocks { nick }),
            Bus::Hb { s, n } => self.on_heartbeat(hub, &s, n).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the script publishes, `{"t":"stored","id":…,"event":…}` around
    /// serde's JSON of the event, parses back to that event with that id,
    /// whatever the text holds.
    #[test]
    fn the_published_envelope_carries_the_id_redis_gives() {
        for text in [
            "hi",
            "0}",
            "\"id\":0}",
            "{\"t\":\"hb\"}",
            "é ✓ 0",
            "\"},\"id\":1",
        ] {
            for conv in [
                Conversation::Room("general".into()),
                Conversation::dm("bob", "alice"),
            ] {
                let posted = Posted::of(&NewEvent {
                    conv: conv.clone(),
                    from: "alice".into(),
                    text: text.into(),
                    ts: 1_700_000_000_000,
                    kind: Kind::default(),
                });
                let id = 4_294_967_301u64;
                // As the Lua script writes it.
                let published = format!(
                    "{{\"t\":\"stored\",\"id\":{id},\"event\":{}}}",
                    posted.to_json()
                );
                match serde_json::from_str::<Bus>(&published).unwrap() {
                    Bus::Stored { id: got, event, .. } => {
                        let event = event.with_id(got, Vec::new());
                        assert_eq!(event.id, id);
                        assert_eq!(event.conv, conv);
                        assert_eq!(event.text, text);
                        assert_eq!(event.ts, 1_700_000_000_000);
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    /// A reaction's envelope carries who has it now (the script adds
    /// `"users"`), and an envelope of before event kinds is a message.
    #[test]
    fn a_reaction_envelope_carries_its_users_and_an_old_one_is_a_message() {
        let posted = Posted::of(&NewEvent {
            conv: Conversation::Room("general".into()),
            from: "bob".into(),
            text: String::new(),
            ts: 5,
            kind: Kind::React {
                target: 3,
                emoji: "👍".into(),
                users: Vec::new(),
            },
        });
        let published = format!(
            "{{\"t\":\"stored\",\"id\":9,\"event\":{},\"users\":[\"ann\",\"bob\"]}}",
            posted.to_json()
        );
        let Bus::Stored { id, event, users } = serde_json::from_str(&published).unwrap() else {
            panic!("{published}");
        };
        let event = event.with_id(id, users);
        assert_eq!(
            event.kind,
            Kind::React {
                target: 3,
                emoji: "👍".into(),
                users: vec!["ann".into(), "bob".into()],
            }
        );
        let old =
            r#"{"t":"stored","id":2,"event":{"conv":"general","from":"a","text":"hi","ts":1}}"#;
        let Bus::Stored { id, event, users } = serde_json::from_str(old).unwrap() else {
            panic!("{old}");
        };
        let event = event.with_id(id, users);
        assert_eq!((event.kind, event.text.as_str()), (Kind::default(), "hi"));
    }
}
