//! A message's life after it is posted: edits, deletes, reactions and
//! replies, each an event of its own with its own id in the
//! conversation's stream ([`EventKind`]). The hub hands them to the
//! backend like any message ([`Hub::append_event`]), and they come back
//! through [`HubEvents::stored`](crate::chat::backend::HubEvents::stored),
//! so fan-out in id order, resume and replay across servers are the
//! message's own.
//!
//! The checks that need the store (does the message exist, who wrote it,
//! is it deleted, how many reactions it has) are the backend's, made
//! atomically with the write; it refuses through the writer's ack
//! (`pending.rs` says how a refusal reads). The hub checks only what it
//! knows: the writer is in the room.

use std::sync::Arc;

use super::super::backend::{Conversation, Event, Kind as EventKind};
use super::super::protocol::{ClientMsg, ErrorCode, ModEvent, Refusal, ServerMsg};
use super::{Client, Hub};

/// The frame a stored event is for its receivers: in a room, the same
/// for everyone (`viewer` none); in a DM, as `viewer` sees it (`dm` names
/// the other party, as `history {dm}` does).
pub(super) fn event_json(e: &Event, viewer: Option<&str>) -> String {
    let (room, dm) = match (&e.conv, viewer) {
        (Conversation::Room(room), _) => (Some(room.as_str()), None),
        (Conversation::Dm(a, b), viewer) => {
            let other = if viewer == Some(a.as_str()) { b } else { a };
            (None, Some(other.as_str()))
        }
    };
    match &e.kind {
        EventKind::Msg(state) => match &e.conv {
            Conversation::Room(_) => ServerMsg::Msg(&e.to_message()).to_json(),
            Conversation::Dm(a, b) => {
                let to = if e.from == *a { b } else { a };
                ServerMsg::Dm {
                    id: e.id,
                    from: &e.from,
                    to,
                    text: &e.text,
                    ts: e.ts,
                    reply_to: state.reply_to,
                    guest: state.guest,
                }
                .to_json()
            }
        },
        EventKind::Edit { target } => ServerMsg::Edited {
            room,
            dm,
            id: *target,
            text: &e.text,
            edited_ts: e.ts,
            from: &e.from,
            event_id: e.id,
        }
        .to_json(),
        EventKind::Delete { target } | EventKind::Remove { target } => ServerMsg::Deleted {
            room,
            dm,
            id: *target,
            from: &e.from,
            event_id: e.id,
            by: matches!(e.kind, EventKind::Remove { .. }).then_some(e.from.as_str()),
        }
        .to_json(),
        EventKind::Moderation(action) => ServerMsg::Moderation(&ModEvent {
            room: room.map(str::to_owned),
            action: (**action).clone(),
            by: e.from.clone(),
            ts: e.ts,
            event_id: Some(e.id),
        })
        .to_json(),
        EventKind::React {
            target,
            emoji,
            users,
        } => ServerMsg::Reaction {
            room,
            dm,
            id: *target,
            emoji,
            users,
            from: &e.from,
            event_id: e.id,
        }
        .to_json(),
    }
}

/// The other party of the DM that `msg` writes to (a reply, an edit or
/// a reaction there), with the request's `client_id`.
fn writes_to_dm(msg: &ClientMsg) -> Option<(&str, Option<&str>)> {
    match msg {
        ClientMsg::Dm { to, client_id, .. } => Some((to, Some(client_id))),
        ClientMsg::Edit {
            room: None,
            dm: Some(to),
            client_id,
            ..
        }
        | ClientMsg::React {
            room: None,
            dm: Some(to),
            client_id,
            ..
        } => Some((to, client_id.as_deref())),
        _ => None,
    }
}

/// The newest frames (oldest first) whose bytes fit in `max`, and
/// whether any were left out.
pub fn newest_that_fit(mut frames: Vec<(u64, String)>, max: usize) -> (Vec<(u64, String)>, bool) {
    let mut bytes = 0;
    let keep = frames
        .iter()
        .rev()
        .take_while(|(_, json)| {
            bytes += json.len();
            bytes <= max
        })
        .count();
    let cut = frames.len() - keep;
    (frames.split_off(cut), cut > 0)
}

impl Hub {
    /// An `edit`, `delete` or `react`, or a `msg` or `dm` with a
    /// `reply_to`, from `client`; a refusal comes with the request's
    /// `client_id`. Anything else is refused as out of place.
    ///
    /// Issue 17: what writes to a DM (a reply, an edit, a reaction) is
    /// refused `blocked` when the other party blocks the writer, as a
    /// plain `dm` is ([`Hub::check_dm`]); a delete only takes away.
    pub async fn act(
        &self,
        client: &Arc<Client>,
        msg: ClientMsg,
    ) -> Result<(), (Refusal, Option<String>)> {
        if let Some((to, client_id)) = writes_to_dm(&msg)
            && let Err(refusal) = self.check_dm(&client.nick, to).await
        {
            return Err((refusal, client_id.map(str::to_owned)));
        }
        let named = |client_id: Option<String>| move |r| (r, client_id);
        match msg {
            ClientMsg::Edit {
                room,
                dm,
                id,
                text,
                client_id,
            } => self
                .edit(
                    client,
                    room.as_deref(),
                    dm.as_deref(),
                    id,
                    &text,
                    client_id.as_deref(),
                )
                .map_err(named(client_id)),
            ClientMsg::Delete {
                room,
                dm,
                id,
                client_id,
            } => self
                .delete(
                    client,
                    room.as_deref(),
                    dm.as_deref(),
                    id,
                    client_id.as_deref(),
                )
                .map_err(named(client_id)),
            ClientMsg::React {
                room,
                dm,
                id,
                emoji,
                client_id,
            } => self
                .react(
                    client,
                    room.as_deref(),
                    dm.as_deref(),
                    id,
                    &emoji,
                    client_id.as_deref(),
                )
                .map_err(named(client_id)),
            ClientMsg::Msg {
                room,
                text,
                client_id,
                reply_to: Some(to),
            } => self
                .reply(client, Some(&room), None, &text, &client_id, to)
                .map_err(named(Some(client_id))),
            ClientMsg::Dm {
                to,
                text,
                client_id,
                reply_to: Some(reply_to),
            } => self
                .reply(client, None, Some(&to), &text, &client_id, reply_to)
                .map_err(named(Some(client_id))),
            _ => Err((
                Refusal::new(ErrorCode::InvalidField, "not a change to a message"),
                None,
            )),
        }
    }

    /// The conversation a request names: a room the client is in, or
    /// the DM conversation with `dm` (whether or not they are online:
    /// the store says whether the message is there).
    fn conversation(
        &self,
        client: &Client,
        room: Option<&str>,
        dm: Option<&str>,
    ) -> Result<Conversation, Refusal> {
        match (room, dm) {
            (Some(room), _) if client.in_room(room) => Ok(Conversation::Room(room.to_owned())),
            (Some(room), _) => Err(Refusal::new(
                ErrorCode::NotInRoom,
                format!("join {room} first"),
            )),
            (None, Some(nick)) => Ok(Conversation::dm(&client.nick, nick)),
            (None, None) => Err(Refusal::new(ErrorCode::InvalidField, "room or dm")),
        }
    }

    /// Whether `client` may edit or react in `conv` (issue 17: not in a
    /// room where it is muted; nothing stops it in a DM).
    fn may_change_in(&self, client: &Client, conv: &Conversation) -> Result<(), Refusal> {
        match conv {
            Conversation::Room(room) => self.may_change(client, room),
            Conversation::Dm(..) => Ok(()),
        }
    }

    /// Edits message `id`: its author's only ([`Rejected::NotAuthor`]).
    pub fn edit(
        &self,
        client: &Arc<Client>,
        room: Option<&str>,
        dm: Option<&str>,
        id: u64,
        text: &str,
        client_id: Option<&str>,
    ) -> Result<(), Refusal> {
        let conv = self.conversation(client, room, dm)?;
        self.may_change_in(client, &conv)?;
        let kind = EventKind::Edit { target: id };
        self.append_event(client, conv, text, kind, client_id)
    }

    /// Deletes message `id`, purging its text: its author's only (a room
    /// moderator's delete of anyone's is [`Hub::delete_in_room`]).
    pub fn delete(
        &self,
        client: &Arc<Client>,
        room: Option<&str>,
        dm: Option<&str>,
        id: u64,
        client_id: Option<&str>,
    ) -> Result<(), Refusal> {
        let conv = self.conversation(client, room, dm)?;
        let kind = EventKind::Delete { target: id };
        self.append_event(client, conv, "", kind, client_id)
    }

    /// Toggles the client's `emoji` (checked by the protocol) on message
    /// `id`.
    pub fn react(
        &self,
        client: &Arc<Client>,
        room: Option<&str>,
        dm: Option<&str>,
        id: u64,
        emoji: &str,
        client_id: Option<&str>,
    ) -> Result<(), Refusal> {
        let conv = self.conversation(client, room, dm)?;
        self.may_change_in(client, &conv)?;
        let kind = EventKind::React {
            target: id,
            emoji: emoji.to_owned(),
            users: Vec::new(),
        };
        self.append_event(client, conv, "", kind, client_id)
    }

    /// A message replying to `reply_to` (a message of the same room, or
    /// DM conversation with `dm`, not deleted: the store checks). A reply
    /// in a DM needs no one online: its conversation exists.
    pub fn reply(
        &self,
        client: &Arc<Client>,
        room: Option<&str>,
        dm: Option<&str>,
        text: &str,
        client_id: &str,
        reply_to: u64,
    ) -> Result<(), Refusal> {
        let conv = self.conversation(client, room, dm)?;
        let after = match room {
            Some(room) => self.may_post(client, room)?,
            None => super::pending::After::Nothing,
        };
        let kind = EventKind::msg(Some(reply_to));
        self.append_then(client, (conv, text, kind), Some(client_id), after)
    }

    /// `room`'s events with `after < id <= upto` (the newest `limit`), as
    /// frames, with their ids: what a resume replays, every kind in order.
    /// Without what `viewer` does not see (its blocked users' messages).
    pub async fn replay(
        &self,
        viewer: &str,
        room: &str,
        after: u64,
        upto: u64,
        limit: u32,
    ) -> Result<Vec<(u64, String)>, Refusal> {
        let conv = Conversation::Room(room.to_owned());
        let span = super::Span { after, upto };
        let events = self
            .backend
            .range(&conv, span, limit)
            .await
            .map_err(super::down)?;
        let blocked = self.blocked_by(viewer).unwrap_or_default();
        Ok(events
            .iter()
            .filter(|e| super::moderation::hidden_author(e).is_none_or(|a| !blocked.contains(a)))
            .map(|e| (e.id, event_json(e, None)))
            .collect())
    }
}
