//! A session's requests about conversations (issue 16): read marks,
//! the DM list and DM history, DMs to users who are away, rename and
//! logout; and what `welcome` and a join add (unread counts, mentions of
//! DMs received while away, receipts).

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::backend::{Conversation, Signal};
use super::super::hub::{Client, Standing};
use super::super::protocol::{ClientMsg, DEFAULT_HISTORY, ErrorCode, ServerMsg};
use super::{Session, newest_that_fit};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// `read`, `dms`, `nick` and `logout`.
    pub(super) async fn handle_convs(&mut self, msg: ClientMsg) {
        match msg {
            ClientMsg::Read {
                room,
                dm,
                id,
                client_id,
            } => {
                let conv = match (room, dm) {
                    (Some(room), _) => Conversation::Room(room),
                    (None, with) => Conversation::dm(&self.client.nick, &with.unwrap_or_default()),
                };
                let read = Box::pin(self.hub.read(&self.client, conv, id)).await;
                if let Err(refusal) = read {
                    self.refuse(&refusal, client_id.as_deref());
                }
            }
            ClientMsg::Dms {} => match Box::pin(self.hub.dm_list(&self.client.nick)).await {
                Ok(conversations) => {
                    // Each conversation's count is a read of the store:
                    // one token more per 10 of them, as `hello` pays per
                    // room.
                    self.limiter.charge(conversations.len() as f64 / 10.0);
                    self.reply(&ServerMsg::Dms {
                        conversations: &conversations,
                    });
                }
                Err(refusal) => self.refuse(&refusal, None),
            },
            ClientMsg::Nick { nick, client_id } => Box::pin(self.rename(&nick, client_id)).await,
            ClientMsg::Logout {} => {
                // An account's user leaves every session of the account
                // (none of its tokens works again), and its connections
                // close as revoked (4005). Only a connection holding one
                // of our sessions may: an external token's user of the
                // same nick has none to end (docs/PROTOCOL.md, Accounts).
                let backend = self.hub.backend();
                let ours = self.client.standing != Standing::Guest
                    && matches!(
                        Box::pin(backend.session_live(&self.client.session)).await,
                        Ok(true)
                    );
                if ours {
                    let nick = &self.client.nick;
                    match Box::pin(backend.revoke_all(nick, None)).await {
                        Ok(sessions) => {
                            for session in sessions {
                                backend.publish(Signal::Revoked {
                                    nick: nick.clone(),
                                    session,
                                });
                            }
                            return;
                        }
                        Err(_) => {
                            tracing::warn!("logout: the account's sessions could not be revoked");
                        }
                    }
                }
                self.hub.logout(&self.client)
            }
            _ => {}
        }
    }

    /// `welcome`, with the user's unread and mention counts, then one
    /// `mention` per DM conversation that received messages while away.
    pub(super) async fn welcome(&mut self, client: &Client, rooms: &[String]) {
        let unread = self.hub.unread(&client.nick, rooms).await;
        self.reply(&ServerMsg::Welcome {
            user: &client.nick,
            session: &client.session,
            rooms,
            unread: &unread.unread,
            mentions: &unread.mentions,
            guest: self
                .hub
                .marks_guests()
                .then_some(client.standing == Standing::Guest),
        });
        for (with, id) in &unread.away {
            self.reply(&ServerMsg::Mention {
                room: None,
                dm: Some(with),
                id: *id,
                from: with,
            });
        }
    }

    /// Who read `conv` up to where (`name`: the room, or the DM's other
    /// user), if anyone did.
    pub(super) async fn send_receipts(&mut self, conv: Conversation, name: &str) {
        let receipts = self.hub.receipts_of(&conv).await;
        if receipts.is_empty() {
            return;
        }
        let (room, dm) = match conv {
            Conversation::Room(_) => (Some(name), None),
            Conversation::Dm(..) => (None, Some(name)),
        };
        self.reply(&ServerMsg::Receipts {
            room,
            dm,
            receipts: &receipts,
        });
    }

    /// A DM without a reply: to `to` online, or, if not, stored for when
    /// it comes back if that nick was ever here.
    pub(super) async fn dm(&mut self, to: &str, text: &str, client_id: &str) {
        self.hub.refresh_online(to).await;
        // Issue 17: nothing from a user the recipient blocks.
        if let Err(refusal) = self.hub.check_dm(&self.client.nick, to).await {
            return self.refuse(&refusal, Some(client_id));
        }
        let sent = match self.hub.dm(&self.client, to, text, client_id) {
            Err(r) if r.code == ErrorCode::UnknownUser => {
                self.hub.dm_offline(&self.client, to, text, client_id).await
            }
            sent => sent,
        };
        if let Err(refusal) = sent {
            self.refuse(&refusal, Some(client_id));
        }
    }

    /// A page of one of the user's DM conversations; the first page is
    /// followed by who read it up to where.
    pub(super) async fn send_dm_history(
        &mut self,
        with: &str,
        before: Option<u64>,
        limit: Option<u32>,
    ) {
        let nick = self.client.nick.clone();
        let page = self
            .hub
            .dm_history(
                &nick,
                with,
                before.unwrap_or(u64::MAX),
                limit.unwrap_or(DEFAULT_HISTORY),
            )
            .await;
        let (messages, more) = match page {
            Ok(page) => page,
            Err(refusal) => return self.refuse(&refusal, None),
        };
        let (messages, cut) = newest_that_fit(messages);
        self.reply(&ServerMsg::DmHistory {
            dm: with,
            messages: &messages,
            more: more || cut,
        });
        if before.is_none() {
            self.send_receipts(Conversation::dm(&nick, with), with)
                .await;
        }
    }

    /// Takes another nick: what the old connection record still holds
    /// goes to the socket first, then the new one carries on.
    async fn rename(&mut self, nick: &str, client_id: Option<String>) {
        if self.move_outbox(usize::MAX) {
            return; // closing
        }
        let old = self.client.clone();
        match self.hub.rename(&old, nick).await {
            Ok(client) => {
                let (frames, _) = old.outbox.take(usize::MAX);
                for frame in &frames {
                    let _ = self.ws.queue_prepared(frame);
                }
                self.client = client;
                let client = self.client.clone();
                self.reply(&ServerMsg::Renamed {
                    user: &client.nick,
                    old: &old.nick,
                    session: &client.session,
                });
            }
            Err(refusal) => self.refuse(&refusal, client_id.as_deref()),
        }
    }
}
