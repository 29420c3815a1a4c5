//! Read state (issue 16): read marks and the receipts they send,
//! unread and mention counts, mentions as they are delivered, and the
//! user's DM conversations.
//!
//! A receipt is a [`Signal`], not a stored event: were it in the stream,
//! every read would count as unread for the others and make them read
//! again. Its latest value is the read mark the backend keeps, so a
//! client joining a room learns who read up to where
//! ([`receipts_of`](Hub::receipts_of)). Receipts heard are coalesced and
//! sent at the presence tick: at most one per user and conversation per
//! tick (100 ms).
//!
//! A child module of the hub: a room's lock is never held while the users
//! map is taken here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::super::backend::{Conversation, Event, Kind, Scope, Signal, Span};
use super::super::lock;
use super::super::protocol::{
    ChatMessage, DmSummary, ErrorCode, MAX_DMS, MAX_READERS, MAX_UNREAD, MAX_WELCOME_DMS, ReadMark,
    Refusal, ServerMsg, mentions,
};
use super::Kind as Delivery;
use super::{Client, Hub, down};

/// What a conversation holds for a user after its read mark.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Count {
    /// Messages by others (at most [`MAX_UNREAD`]).
    pub unread: u64,
    /// Of those, the ones that mention the user (in a DM: all of them).
    pub mentions: u64,
    /// The newest of them: its id and author.
    pub newest: Option<(u64, String)>,
}

/// What a `welcome` says of the user's conversations.
#[derive(Debug, Default)]
pub struct Unread {
    /// Per conversation: a room's name, or `@nick` for a DM.
    pub unread: BTreeMap<String, u64>,
    /// The same keys, mentions only.
    pub mentions: BTreeMap<String, u64>,
    /// DM conversations with unread messages (such as DMs received while
    /// away): the other user and the newest unread id.
    pub away: Vec<(String, u64)>,
}

/// Whether an event counts as a message: not an edit, a delete or a
/// reaction, and not deleted since.
pub(super) fn is_message(event: &Event) -> bool {
    matches!(&event.kind, Kind::Msg(m) if !m.deleted)
}

impl Hub {
    /// Marks `conv` read by `client` up to `id`. `id` beyond the newest
    /// is refused (`beyond_newest`); one below the mark kept is ignored.
    /// A mark that moves sends a receipt to the conversation's members.
    pub async fn read(
        &self,
        client: &Arc<Client>,
        conv: Conversation,
        id: u64,
    ) -> Result<(), Refusal> {
        if let Conversation::Room(room) = &conv
            && !client.in_room(room)
        {
            return Err(Refusal::new(
                ErrorCode::NotInRoom,
                format!("join {room} first"),
            ));
        }
        if id == 0 {
            return Ok(()); // below every mark: ignored, as a mark never moves back
        }
        let newest = self.backend.last_id(&conv).await.map_err(down)?;
        if id > newest {
            return Err(Refusal::new(
                ErrorCode::BeyondNewest,
                format!("id {id} is beyond the newest, {newest}"),
            ));
        }
        let moved = self
            .backend
            .mark_read(&client.nick, &conv, id)
            .await
            .map_err(down)?;
        if moved {
            self.backend.publish(Signal::Receipt {
                conv: conv.key(),
                user: client.nick.clone(),
                id,
            });
        }
        Ok(())
    }

    /// A receipt heard (from any server): kept for the next tick, the
    /// furthest per user.
    pub(super) fn heard_receipt(&self, conv: String, user: String, id: u64) {
        let mut pending = lock(&self.receipts);
        let mark = pending.entry(conv).or_default().entry(user).or_insert(0);
        *mark = (*mark).max(id);
    }

    /// Sends the receipts heard since the last call: in a room to its
    /// members here; in a DM to both ends' connections. Called by the
    /// presence tick.
    pub fn flush_receipts(&self) {
        let pending = std::mem::take(&mut *lock(&self.receipts));
        for (key, readers) in pending {
            let conv = Conversation::from_key(&key);
            match &conv {
                Conversation::Room(room) => {
                    let Some(room_arc) = self.find_room(room) else {
                        continue;
                    };
                    let r = lock(&room_arc);
                    for (user, id) in readers {
                        let frame = self.prepare(
                            ServerMsg::Receipt {
                                room: Some(room),
                                dm: None,
                                user: &user,
                                id,
                            }
                            .to_json(),
                        );
                        r.send_to_members(&frame, Delivery::Ephemeral, &self.metrics);
                    }
                }
                Conversation::Dm(..) => {
                    let users = lock(&self.users);
                    for (user, id) in readers {
                        for (me, other) in conv.parties() {
                            let frame = self.prepare(
                                ServerMsg::Receipt {
                                    room: None,
                                    dm: Some(other),
                                    user: &user,
                                    id,
                                }
                                .to_json(),
                            );
                            for c in users.holders(me) {
                                c.outbox.push(&frame, Delivery::Ephemeral, &self.metrics);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Who read `conv` up to where, furthest first (at most
    /// [`MAX_READERS`]).
    pub async fn receipts_of(&self, conv: &Conversation) -> Vec<ReadMark> {
        self.backend
            .readers(conv, MAX_READERS)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(user, id)| ReadMark { user, id })
            .collect()
    }

    /// What `conv` holds for `nick` after `after`: the newest
    /// [`MAX_UNREAD`] events are read, and if there are more the count is
    /// that cap.
    pub async fn count(
        &self,
        nick: &str,
        conv: &Conversation,
        after: u64,
    ) -> Result<Count, Refusal> {
        let newest = self.backend.last_id(conv).await.map_err(down)?;
        if newest <= after {
            return Ok(Count::default());
        }
        let span = Span {
            after,
            upto: newest,
        };
        let events = self
            .backend
            .range(conv, span, MAX_UNREAD as u32)
            .await
            .map_err(down)?;
        let more = events.first().is_some_and(|e| e.id > after + 1);
        let others: Vec<&Event> = events
            .iter()
            .filter(|e| e.from != nick && is_message(e))
            .collect();
        let dm = matches!(conv, Conversation::Dm(..));
        let mut count = Count {
            unread: others.len() as u64,
            mentions: others
                .iter()
                .filter(|e| dm || mentions(&e.text).contains(&nick))
                .count() as u64,
            newest: others.last().map(|e| (e.id, e.from.clone())),
        };
        if more {
            count.unread = MAX_UNREAD;
        }
        count.unread = count.unread.min(MAX_UNREAD);
        count.mentions = count.mentions.min(count.unread);
        Ok(count)
    }

    /// The user's read marks, by conversation (none if the store is away).
    async fn marks(&self, nick: &str) -> HashMap<Conversation, u64> {
        self.backend
            .reads(nick)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    /// The counts a `welcome` carries: for each of `rooms` the user has a
    /// read mark in (a room never read counts nothing), and for the
    /// [`MAX_WELCOME_DMS`] latest DM conversations (a DM never read counts
    /// from its start). What the store cannot answer is left out.
    pub async fn unread(&self, nick: &str, rooms: &[String]) -> Unread {
        let marks = self.marks(nick).await;
        let mut out = Unread::default();
        for room in rooms {
            let conv = Conversation::Room(room.clone());
            let Some(&mark) = marks.get(&conv) else {
                continue;
            };
            if let Ok(c) = self.count(nick, &conv, mark).await
                && c.unread > 0
            {
                out.unread.insert(room.clone(), c.unread);
                out.mentions.insert(room.clone(), c.mentions);
            }
        }
        let dms = self
            .backend
            .dms(nick, MAX_WELCOME_DMS)
            .await
            .unwrap_or_default();
        for (with, _) in dms {
            let conv = Conversation::dm(nick, &with);
            let mark = marks.get(&conv).copied().unwrap_or(0);
            if let Ok(c) = self.count(nick, &conv, mark).await
                && let Some((id, _)) = c.newest
            {
                let key = format!("@{with}");
                out.unread.insert(key.clone(), c.unread);
                out.mentions.insert(key, c.mentions);
                out.away.push((with, id));
            }
        }
        out
    }

    /// The user's DM conversations, latest first (at most [`MAX_DMS`]),
    /// each with its unread count.
    pub async fn dm_list(&self, nick: &str) -> Result<Vec<DmSummary>, Refusal> {
        let dms = self.backend.dms(nick, MAX_DMS).await.map_err(down)?;
        let marks = self.marks(nick).await;
        let mut out = Vec::with_capacity(dms.len());
        for (with, last_id) in dms {
            let conv = Conversation::dm(nick, &with);
            let mark = marks.get(&conv).copied().unwrap_or(0);
            let unread = self.count(nick, &conv, mark).await?.unread;
            out.push(DmSummary {
                with,
                last_id,
                unread,
            });
        }
        Ok(out)
    }

    /// A page of the DM conversation of `nick` and `with` before
    /// `before`: only ever the caller's own conversation, whose key is
    /// made of its own nick.
    pub async fn dm_history(
        &self,
        nick: &str,
        with: &str,
        before: u64,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), Refusal> {
        let conv = Conversation::dm(nick, with);
        let (page, more) = self
            .backend
            .history(&conv, before, limit)
            .await
            .map_err(down)?;
        let messages = page
            .iter()
            .map(|e| ChatMessage {
                room: String::new(),
                ..e.to_message()
            })
            .collect();
        Ok((messages, more))
    }

    /// A stored room message mentions nicks: each one that is in the
    /// room (here or elsewhere) and connected here gets a `mention` on
    /// every connection, in the room or not. A stranger is never
    /// notified: a mention cannot be used to reach someone outside the
    /// room.
    ///
    /// Where the room is in memory its roster says who is in it, on every
    /// server. Where it is not (nobody here is in it), a mentioned user
    /// connected here may still be in it on another server: scaled out,
    /// the backend's presence is asked, off this call (it runs on the
    /// bus's task, which must not wait).
    pub(super) fn notify_mentions(&self, event: &Event) {
        let Conversation::Room(room) = &event.conv else {
            return;
        };
        if !is_message(event) || !event.text.contains('@') {
            return;
        }
        // Issue 17: nobody is told of a mention by someone they block.
        let named: Vec<&str> = mentions(&event.text)
            .into_iter()
            .filter(|n| *n != event.from && !self.blocks_author(n, &event.from))
            .collect();
        let roster = self.find_room(room).map(|room_arc| {
            let r = lock(&room_arc);
            named
                .iter()
                .map(|n| r.roster.contains(n))
                .collect::<Vec<bool>>()
        });
        let targets: Vec<(String, Vec<Arc<Client>>, bool)> = {
            let users = lock(&self.users);
            named
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let here: Vec<Arc<Client>> = users.holders(n).cloned().collect();
                    if here.is_empty() {
                        return None;
                    }
                    let member = roster.as_ref().is_some_and(|r| r[i]);
                    Some(((*n).to_owned(), here, member))
                })
                .collect()
        };
        if targets.is_empty() {
            return;
        }
        let frame = self.prepare(
            ServerMsg::Mention {
                room: Some(room),
                dm: None,
                id: event.id,
                from: &event.from,
            }
            .to_json(),
        );
        let mut unknown = Vec::new();
        for (nick, connections, member) in targets {
            if member {
                for c in &connections {
                    c.outbox.push(&frame, Delivery::Chat, &self.metrics);
                }
            } else if roster.is_none() {
                unknown.push((nick, connections));
            }
        }
        if unknown.is_empty() || !self.backend.shares_presence() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (backend, metrics) = (self.backend.clone(), self.metrics.clone());
        let scope = Scope::Room(room.clone());
        runtime.spawn(async move {
            let Ok(others) = backend.presence(&scope).await else {
                return;
            };
            for (nick, connections) in unknown {
                if others.iter().any(|(_, nicks)| nicks.contains(&nick)) {
                    for c in &connections {
                        c.outbox.push(&frame, Delivery::Chat, &metrics);
                    }
                }
            }
        });
    }
}
