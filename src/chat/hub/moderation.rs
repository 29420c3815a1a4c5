//! Moderation (issue 17): roles, the moderation requests, their effects,
//! per-user blocking and the audit log.
//!
//! Every room action (kick, ban, mute, slow, topic, role, …) is a
//! [`EventKind::Moderation`] event appended to the room's stream like a
//! message: it reaches every server and every resuming client, in id
//! order, and its effect is the room's [`Rules`], the fold of those
//! events (`moderation/rules.rs`), which each server updates as it
//! delivers them ([`Hub::on_moderation`]). So a mute stored through
//! server A refuses posts on server B as soon as B has delivered it.
//!
//! Who may do what is one function, [`table::may`]. A role is held only
//! by a verified user (`Standing::Verified`); server admins are stored
//! (`rfc6455 chat admin add`, read again at every check) or claimed by
//! an external token.
//!
//! Server-wide bans are not a room's: they are stored by the backend and
//! published ([`Signal::Banned`]), and every server closes the user's
//! connections with 4004; a `hello` for a banned nick is refused (4004).
//!
//! Blocks are each user's, stored by the backend; the hub keeps those of
//! its own users who block someone (`Hub::blocks`), and each room the
//! nicks among its members that do ([`Rules::blockers`]): fan-out checks
//! only those members, so a room where nobody blocks anyone costs
//! nothing more.

mod reload;
mod roles;
mod rules;
pub mod table;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::proto::{CloseCode, CloseFrame, PreparedFrame};

pub(super) use rules::Rules;
use table::{Act, may};

use super::super::backend::{Conversation, Event, Kind as EventKind, Signal};
use super::super::lock;
use super::super::protocol::{
    Action, ClientMsg, DEFAULT_HISTORY, ErrorCode, MAX_BLOCKS, ModAction, ModEvent, Refusal, Role,
    RoomState, ServerMsg, YouState,
};
use super::pending::After;
use super::{Client, Hub, Kind, Room, Standing, down, now_ms};

/// The close code of a connection whose user is banned from the server.
pub const BANNED: u16 = 4004;

fn banned_close() -> CloseFrame {
    CloseFrame::new(
        CloseCode::try_from(BANNED).unwrap_or(CloseCode::POLICY_VIOLATION),
        "banned from this server",
    )
}

/// A ban's or mute's end, `minutes` (or `seconds`) from now.
fn until(minutes: Option<u64>, seconds: Option<u64>) -> Option<u64> {
    let ms = minutes
        .map(|m| m.saturating_mul(60_000))
        .or(seconds.map(|s| s.saturating_mul(1000)))?;
    Some(now_ms().saturating_add(ms))
}

/// `r`'s rules as the `room` event shows them (`you` left to the caller).
fn room_state(room: &str, r: &Room) -> RoomState {
    let rules = r.rules.as_deref();
    RoomState {
        room: room.to_owned(),
        topic: rules.map(|x| x.topic.clone()).unwrap_or_default(),
        slow: rules.map_or(0, |x| x.slow),
        owners: rules
            .map(|x| x.owners.iter().cloned().collect())
            .unwrap_or_default(),
        moderators: rules
            .map(|x| x.moderators.iter().cloned().collect())
            .unwrap_or_default(),
        you: YouState {
            role: Role::Guest,
            muted_until: None,
        },
    }
}

/// The events a blocker does not get from the nick it blocks: that
/// nick's messages, edits and reactions.
pub(super) fn hidden_author(e: &Event) -> Option<&str> {
    match e.kind {
        EventKind::Msg(_) | EventKind::Edit { .. } | EventKind::React { .. } => Some(&e.from),
        _ => None,
    }
}

/// Refused (`muted`, saying until when) if `client` is muted by `rules`
/// at `now`.
fn unmuted(client: &Client, rules: &Rules, now: u64) -> Result<(), Refusal> {
    match rules.muted(&client.nick, now) {
        Some(until) => {
            let when = until.map_or_else(|| "until lifted".to_owned(), |u| format!("until {u}"));
            Err(Refusal::new(
                ErrorCode::Muted,
                format!("you are muted here {when}"),
            ))
        }
        None => Ok(()),
    }
}

impl Hub {
    /// Whether `nick` is a server admin: stored (asked of the backend
    /// each time, so `chat admin add` is seen at once; remembered for the
    /// `room` events that follow) or, for `client`, claimed by its token.
    pub(super) async fn refresh_admin(&self, nick: &str, standing: Standing) -> bool {
        if standing == Standing::Guest {
            return false;
        }
        let stored = self.backend.is_admin(nick).await.unwrap_or(false);
        let mut known = lock(&self.admins_seen);
        if stored {
            known.insert(nick.to_owned());
        } else {
            known.remove(nick);
        }
        stored || standing == (Standing::Verified { admin_claim: true })
    }

    /// `client`'s role in a room by `rules` (none: nobody has one), as
    /// last known of admins ([`refresh_admin`](Self::refresh_admin)).
    fn role_of(&self, client: &Client, rules: Option<&Rules>) -> Role {
        match client.standing {
            Standing::Guest => Role::Guest,
            Standing::Verified { admin_claim: true } => Role::Admin,
            Standing::Verified { .. } if lock(&self.admins_seen).contains(&client.nick) => {
                Role::Admin
            }
            Standing::Verified { .. } => rules.map_or(Role::Member, |r| r.role(&client.nick)),
        }
    }

    /// A moderation request from `client`: checked against the
    /// permission table, then stored as an event of the room (or, for a
    /// server-wide ban, kept by the backend and published). Returns a
    /// reply to send, if the request has one of its own (`blocks`,
    /// `audit`, a server-wide ban's `moderation`).
    pub async fn moderate(
        &self,
        client: &Arc<Client>,
        msg: ClientMsg,
    ) -> Result<Option<String>, Refusal> {
        let (room, act, mut action) = match msg {
            ClientMsg::Kick { room, user, reason } => {
                let mut a = ModAction::new(Action::Kick);
                (a.user, a.reason) = (Some(user), reason);
                (room, Act::Discipline, a)
            }
            ClientMsg::Ban {
                room: Some(room),
                user,
                minutes,
                seconds,
                reason,
            } => {
                let mut a = ModAction::new(Action::Ban);
                (a.user, a.until, a.reason) = (Some(user), until(minutes, seconds), reason);
                (room, Act::Discipline, a)
            }
            ClientMsg::Unban {
                room: Some(room),
                user,
            } => {
                let mut a = ModAction::new(Action::Unban);
                a.user = Some(user);
                (room, Act::Discipline, a)
            }
            ClientMsg::Ban {
                room: None,
                user,
                minutes,
                seconds,
                reason,
            } => {
                let ban = Some(until(minutes, seconds));
                return self.server_ban(client, &user, ban, reason).await;
            }
            ClientMsg::Unban { room: None, user } => {
                return self.server_ban(client, &user, None, None).await;
            }
            ClientMsg::Mute {
                room,
                user,
                minutes,
                seconds,
                reason,
            } => {
                let mut a = ModAction::new(Action::Mute);
                (a.user, a.until, a.reason) = (Some(user), until(minutes, seconds), reason);
                (room, Act::Discipline, a)
            }
            ClientMsg::Unmute { room, user } => {
                let mut a = ModAction::new(Action::Unmute);
                a.user = Some(user);
                (room, Act::Discipline, a)
            }
            ClientMsg::Slow { room, seconds } => {
                let mut a = ModAction::new(Action::Slow);
                a.seconds = Some(seconds);
                (room, Act::RoomSetting, a)
            }
            ClientMsg::Topic { room, topic } => {
                let mut a = ModAction::new(Action::Topic);
                a.topic = Some(topic);
                (room, Act::RoomSetting, a)
            }
            ClientMsg::Role { room, user, role } => {
                let role = Role::parse(&role).unwrap_or(Role::Member);
                let act = if role == Role::Owner {
                    Act::NameOwner
                } else {
                    Act::NameModerator
                };
                let mut a = ModAction::new(Action::Role);
                (a.user, a.role) = (Some(user), Some(role));
                (room, act, a)
            }
            ClientMsg::Block { user } => return self.block(client, &user, true).await.map(Some),
            ClientMsg::Unblock { user } => {
                return self.block(client, &user, false).await.map(Some);
            }
            ClientMsg::Blocks {} => {
                let users = self.backend.blocks(&client.nick).await.map_err(down)?;
                return Ok(Some(ServerMsg::Blocks { users: &users }.to_json()));
            }
            ClientMsg::Audit {
                room,
                before,
                limit,
            } => return self.audit(client, &room, before, limit).await.map(Some),
            _ => {
                return Err(Refusal::new(
                    ErrorCode::InvalidField,
                    "not a moderation request",
                ));
            }
        };
        // A guest never holds a role: refused before any store read.
        if client.standing == Standing::Guest {
            may(Role::Guest, act, None)?;
        }
        let (by, roster) = self.standing_in(client, &room, Some(&action)).await?;
        let target = match &action.user {
            Some(user) => {
                let role = self.target_role(user, &roster.owners, &roster.mods).await;
                Some((user.as_str(), role))
            }
            None => None,
        };
        may(by, act, target)?;
        roster.fits?;
        if action.action == Action::Role
            && matches!(action.role, Some(Role::Owner | Role::Moderator))
            && let Some(user) = &action.user
        {
            self.may_hold_a_role(user).await?;
        }
        action.ownerless = roster.ownerless;
        // Not a member: the room's fan-out will not reach the actor, so
        // it is sent its event once stored (review finding 14).
        let after = if client.in_room(&room) {
            After::Nothing
        } else {
            After::Echo(Box::new(ModEvent {
                room: Some(room.clone()),
                action: action.clone(),
                by: client.nick.clone(),
                ts: now_ms(),
                event_id: None,
            }))
        };
        let text = action.to_text();
        let event = (
            Conversation::Room(room),
            text.as_str(),
            EventKind::Moderation(Box::new(action)),
        );
        self.append_then(client, event, None, after)?;
        Ok(None)
    }

    /// A server-wide ban (`Some(until)`) or its lifting (`None`): admins
    /// only. Every connection of the user closes (4004) on every server.
    async fn server_ban(
        &self,
        client: &Arc<Client>,
        user: &str,
        ban: Option<Option<u64>>,
        reason: Option<String>,
    ) -> Result<Option<String>, Refusal> {
        if client.standing == Standing::Guest {
            may(Role::Guest, Act::Server, None)?;
        }
        let admin = self.refresh_admin(&client.nick, client.standing).await;
        let by = if admin { Role::Admin } else { Role::Member };
        let none = BTreeSet::new();
        let target = self.target_role(user, &none, &none).await;
        may(by, Act::Server, Some((user, target)))?;
        self.backend
            .set_server_ban(user, ban, &client.nick, reason.as_deref())
            .await
            .map_err(down)?;
        if ban.is_some() {
            self.backend.publish(Signal::Banned {
                nick: user.to_owned(),
            });
        }
        let mut action = ModAction::new(if ban.is_some() {
            Action::Ban
        } else {
            Action::Unban
        });
        (action.user, action.until, action.reason) = (Some(user.to_owned()), ban.flatten(), reason);
        let event = ModEvent {
            room: None,
            action,
            by: client.nick.clone(),
            ts: now_ms(),
            event_id: None,
        };
        Ok(Some(ServerMsg::Moderation(&event).to_json()))
    }

    /// How many server bans were signalled here so far: a `hello` that
    /// sees it change while it is admitted checks its nick's ban again.
    pub fn bans_signalled(&self) -> u64 {
        self.bans_signalled.load(Ordering::Relaxed)
    }

    /// Whether `nick` is banned from the server now (a `hello` is refused).
    pub async fn banned_from_server(&self, nick: &str) -> Result<bool, Refusal> {
        let ban = self
            .backend
            .server_ban(nick, now_ms())
            .await
            .map_err(down)?;
        Ok(ban.is_some())
    }

    /// A [`Signal::Banned`] arrived: the nick's connections here close
    /// now. What waits for them is dropped (a banned user reads no more),
    /// and they are gone at once: a post of theirs still waiting for the
    /// store may be dropped, and the hub takes no more from them.
    pub(super) fn close_banned(&self, nick: &str) {
        self.bans_signalled.fetch_add(1, Ordering::Relaxed);
        for c in lock(&self.users).holders(nick) {
            c.gone.store(true, Ordering::Relaxed);
            c.outbox.abort(banned_close());
        }
    }

    /// A page of `room`'s audit log (`*`: the server's): owners and
    /// admins of the room (admins for `*`).
    async fn audit(
        &self,
        client: &Arc<Client>,
        room: &str,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<String, Refusal> {
        let act = if room == "*" { Act::Server } else { Act::Audit };
        if client.standing == Standing::Guest {
            may(Role::Guest, act, None)?;
        }
        let by = if room == "*" {
            let admin = self.refresh_admin(&client.nick, client.standing).await;
            match client.standing {
                Standing::Guest => Role::Guest,
                _ if admin => Role::Admin,
                _ => Role::Member,
            }
        } else {
            self.standing_in(client, room, None).await?.0
        };
        may(by, act, None)?;
        let (entries, more) = self
            .backend
            .audit(
                room,
                before.unwrap_or(u64::MAX),
                limit.unwrap_or(DEFAULT_HISTORY),
            )
            .await
            .map_err(down)?;
        Ok(ServerMsg::Audit {
            room,
            entries: &entries,
            more,
        }
        .to_json())
    }

    /// `block` / `unblock`: stored, then in force here at once, and told
    /// to the other servers (the user's connections there).
    async fn block(&self, client: &Arc<Client>, user: &str, on: bool) -> Result<String, Refusal> {
        if on {
            let held = self.backend.blocks(&client.nick).await.map_err(down)?;
            if held.len() >= MAX_BLOCKS && !held.iter().any(|b| b == user) {
                return Err(Refusal::new(
                    ErrorCode::InvalidField,
                    format!("user: you block {MAX_BLOCKS} users already; unblock one first"),
                ));
            }
        }
        self.backend
            .set_block(&client.nick, user, on)
            .await
            .map_err(down)?;
        let users = self.backend.blocks(&client.nick).await.map_err(down)?;
        self.keep_blocks(&client.nick, users.clone());
        self.backend.publish(Signal::Blocks {
            nick: client.nick.clone(),
        });
        Ok(ServerMsg::Blocks { users: &users }.to_json())
    }

    /// Keeps `nick`'s blocks (none: forgets them), and notes it as a
    /// blocker in the rooms its connections here are in.
    fn keep_blocks(&self, nick: &str, users: Vec<String>) {
        let blocking = !users.is_empty();
        {
            let mut blocks = lock(&self.blocks);
            if blocking {
                blocks.insert(nick.to_owned(), users.into_iter().collect());
            } else {
                blocks.remove(nick);
            }
        }
        if blocking {
            self.mark_blocker(nick);
        }
    }

    /// Notes `nick` among the blockers of the rooms its connections here
    /// are in, so that fan-out checks its blocks there. Noting one that
    /// blocks nobody only costs that check.
    fn mark_blocker(&self, nick: &str) {
        let rooms: BTreeSet<String> = lock(&self.users)
            .holders(nick)
            .flat_map(|c| c.rooms())
            .collect();
        for name in rooms {
            if let Some(room_arc) = self.find_room(&name) {
                let mut r = lock(&room_arc);
                let rules = r.rules.get_or_insert_with(Box::default);
                rules.blockers.insert(nick.to_owned());
            }
        }
    }

    /// At `hello`: reads the user's blocks, if it blocks anyone.
    pub async fn load_blocks(&self, client: &Client) {
        if let Ok(users) = self.backend.blocks(&client.nick).await
            && !users.is_empty()
        {
            self.keep_blocks(&client.nick, users);
        }
    }

    /// A [`Signal::Blocks`] arrived: if the nick is here, read its blocks
    /// again (in a task of its own: the signal comes on the backend's).
    pub(super) fn blocks_changed(self: &Hub, nick: String) {
        if !lock(&self.users).contains(&nick) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // At once, before the blocks are read: a message meanwhile is
        // checked against what this server knew of them.
        self.mark_blocker(&nick);
        let backend = self.backend.clone();
        let blocks = self.blocks.clone();
        runtime.spawn(async move {
            if let Ok(users) = backend.blocks(&nick).await {
                let mut blocks = lock(&blocks);
                if users.is_empty() {
                    blocks.remove(&nick);
                } else {
                    blocks.insert(nick, users.into_iter().collect());
                }
            }
        });
    }

    /// Whether `viewer` blocks `author` (as this server knows it).
    pub(super) fn blocks_author(&self, viewer: &str, author: &str) -> bool {
        lock(&self.blocks)
            .get(viewer)
            .is_some_and(|b| b.contains(author))
    }

    /// A DM from `from` to `to`: refused (`blocked`) if `to` blocks `from`.
    pub async fn check_dm(&self, from: &str, to: &str) -> Result<(), Refusal> {
        let here = lock(&self.users).contains(to);
        let blocked = if here {
            self.blocks_author(to, from)
        } else {
            let blocks = self.backend.blocks(to).await.map_err(down)?;
            blocks.iter().any(|b| b == from)
        };
        if blocked {
            return Err(Refusal::new(
                ErrorCode::Blocked,
                format!("{to} does not take messages from you"),
            ));
        }
        Ok(())
    }

    /// Before a post to `room` (locked by the caller as `r`): refused if
    /// `client` is muted there, or posts sooner than slow mode allows.
    /// The slow-mode stamp it kept for the post, if any (to be withdrawn
    /// if the post is not stored after all).
    pub(super) fn check_post(&self, client: &Client, r: &mut Room) -> Result<Option<u64>, Refusal> {
        let role = self.role_of(client, r.rules.as_deref());
        let Some(rules) = r.rules.as_mut() else {
            return Ok(None);
        };
        let now = now_ms();
        unmuted(client, rules, now)?;
        if rules.slow > 0 && role < Role::Moderator {
            rules.slow_post(&client.nick, now)?;
            return Ok(Some(now));
        }
        Ok(None)
    }

    /// Before an edit of or a reaction to a message of `room`: refused if
    /// `client` is muted there (a mute stops every write to the room;
    /// slow mode limits new messages only, as Discord's slowmode does).
    pub(super) fn may_change(&self, client: &Client, room: &str) -> Result<(), Refusal> {
        let Some(room_arc) = self.find_room(room) else {
            return Ok(());
        };
        let r = lock(&room_arc);
        match r.rules.as_deref() {
            Some(rules) => unmuted(client, rules, now_ms()),
            None => Ok(()),
        }
    }

    /// Keeps `room` in the tick's round ([`expire_rules`](Self::expire_rules))
    /// while its rules have something to end or drop.
    pub(super) fn keep_ticking(&self, room: &str) {
        let mut expiring = lock(&self.expiring);
        if !expiring.contains(room) {
            expiring.insert(room.to_owned());
        }
    }

    /// A delete of message `id` in `room`: someone else's too for the
    /// room's moderators, owners and admins (the store's author check is
    /// relaxed for them only: [`EventKind::Remove`]).
    pub async fn delete_in_room(
        &self,
        client: &Arc<Client>,
        room: &str,
        id: u64,
        client_id: Option<&str>,
    ) -> Result<(), Refusal> {
        if !client.in_room(room) {
            return Err(Refusal::new(
                ErrorCode::NotInRoom,
                format!("join {room} first"),
            ));
        }
        let kind = if client.standing == Standing::Guest {
            EventKind::Delete { target: id }
        } else {
            let (role, _) = self.standing_in(client, room, None).await?;
            if may(role, Act::Delete, None).is_ok() {
                EventKind::Remove { target: id }
            } else {
                EventKind::Delete { target: id }
            }
        };
        self.append_event(
            client,
            Conversation::Room(room.to_owned()),
            "",
            kind,
            client_id,
        )
    }

    /// `room`'s rules as `client` sees them: the `room` event.
    pub(super) fn room_json(&self, client: &Client, room: &str, r: &Room) -> String {
        let mut state = room_state(room, r);
        state.you = self.you(client, r, now_ms());
        ServerMsg::Room(&state).to_json()
    }

    /// `client`'s place in `r`'s rules at `now`.
    fn you(&self, client: &Client, r: &Room, now: u64) -> YouState {
        let rules = r.rules.as_deref();
        YouState {
            role: self.role_of(client, rules),
            muted_until: rules
                .and_then(|x| x.muted(&client.nick, now))
                .map(|until| until.unwrap_or(0)),
        }
    }

    /// The `room` event again to every member here, after a change every
    /// member sees (topic, slow mode, owners, moderators): one frame per
    /// distinct `you` (most members share one: a member, not muted), so
    /// a large room costs a few encodings, not one per member.
    fn tell_room(&self, room: &str, r: &Room) {
        let now = now_ms();
        let mut state = room_state(room, r);
        let mut frames: HashMap<YouState, PreparedFrame> = HashMap::new();
        for member in r.members.values() {
            let you = self.you(member, r, now);
            let frame = frames.entry(you.clone()).or_insert_with(|| {
                state.you = you;
                self.prepare(ServerMsg::Room(&state).to_json())
            });
            member.outbox.push(frame, Kind::Chat, &self.metrics);
        }
    }

    /// After a join: the `room` event for `client`, and, if it is the
    /// first verified user in a room that never had an owner, its
    /// ownership (an event like any role). Refused (`banned`) if it is
    /// banned there.
    pub(super) fn admitted(
        &self,
        client: &Arc<Client>,
        room: &str,
        r: &mut Room,
    ) -> Result<(String, bool), Refusal> {
        if let Some(rules) = r.rules.as_ref()
            && rules.banned(&client.nick, now_ms())
        {
            return Err(Refusal::new(
                ErrorCode::Banned,
                format!("you are banned from {room}"),
            ));
        }
        let verified = client.standing != Standing::Guest;
        let claim = verified && r.rules.as_ref().is_none_or(|x| x.claimable());
        if claim {
            r.rules.get_or_insert_with(Box::default).owner_asked = true;
        }
        if lock(&self.blocks).contains_key(&client.nick) {
            let rules = r.rules.get_or_insert_with(Box::default);
            rules.blockers.insert(client.nick.clone());
        }
        Ok((self.room_json(client, room, r), claim))
    }

    /// Appends the ownership of `room` by `client` (its first verified
    /// user): out of the room's lock, as every append.
    pub(super) fn claim_owner(&self, client: &Arc<Client>, room: &str) {
        let mut a = ModAction::new(Action::Role);
        (a.user, a.role) = (Some(client.nick.clone()), Some(Role::Owner));
        let weak = self
            .find_room(room)
            .map_or_else(Weak::new, |room_arc| Arc::downgrade(&room_arc));
        let text = a.to_text();
        let event = (
            Conversation::Room(room.to_owned()),
            text.as_str(),
            EventKind::Moderation(Box::new(a)),
        );
        // Not taken (shutting down, the store busy), now or after all:
        // `After::Unclaim` lets the next verified join ask again.
        let _ = self.append_then(client, event, None, After::Unclaim(weak));
    }

    /// A moderation event of `room` is being delivered: folds it into the
    /// rules (before it is sent, so that a post after it is judged by it).
    pub(super) fn on_moderation(&self, room: &str, r: &mut Room, e: &Event) {
        let EventKind::Moderation(a) = &e.kind else {
            return;
        };
        let rules = r.rules.get_or_insert_with(Box::default);
        if rules.apply(e.id, a) && rules.has_timed() {
            self.keep_ticking(room);
        }
    }

    /// Before a moderation event goes to the room's members: a kicked or
    /// banned nick's connections leave the room, and are returned, to be
    /// sent the event all the same. They leave first, so that a post
    /// they make once they have it is already refused (`not_in_room`).
    pub(super) fn take_removed(&self, room: &str, r: &mut Room, e: &Event) -> Vec<Arc<Client>> {
        let EventKind::Moderation(a) = &e.kind else {
            return Vec::new();
        };
        let (Action::Kick | Action::Ban, Some(user)) = (a.action, a.user.as_deref()) else {
            return Vec::new();
        };
        let theirs: Vec<Arc<Client>> = r
            .members
            .values()
            .filter(|m| m.nick == user)
            .cloned()
            .collect();
        for c in &theirs {
            c.exit(room);
            self.remove_member(room, r, c);
        }
        theirs
    }

    /// After a moderation event went to the room's members: a nick whose
    /// mute changed is sent the `room` event again; after a change of
    /// topic, slow mode or roles, every member is.
    pub(super) fn after_moderation(&self, room: &str, r: &Room, e: &Event) {
        let EventKind::Moderation(a) = &e.kind else {
            return;
        };
        match (a.action, a.user.as_deref()) {
            (Action::Mute | Action::Unmute, Some(user)) => {
                for c in r.members.values().filter(|m| m.nick == user) {
                    let frame = self.prepare(self.room_json(c, room, r));
                    c.outbox.push(&frame, Kind::Chat, &self.metrics);
                }
            }
            (Action::Topic | Action::Slow | Action::Role, _) => self.tell_room(room, r),
            _ => {}
        }
    }

    /// At each tick: mutes and bans that ended are lifted, old slow-mode
    /// stamps dropped ([`Rules::tick`]); the nicks
    /// whose mute ended are sent the `room` event again (`muted_until`
    /// gone).
    pub fn expire_rules(&self) {
        let names: Vec<String> = lock(&self.expiring).iter().cloned().collect();
        let now = now_ms();
        for name in names {
            let Some(room_arc) = self.find_room(&name) else {
                lock(&self.expiring).remove(&name);
                continue;
            };
            let mut r = lock(&room_arc);
            let Some(rules) = r.rules.as_mut() else {
                lock(&self.expiring).remove(&name);
                continue;
            };
            let ended = rules.tick(now);
            if !rules.busy() {
                lock(&self.expiring).remove(&name);
            }
            for nick in ended {
                for c in r.members.values().filter(|m| m.nick == nick) {
                    let frame = self.prepare(self.room_json(c, &name, &r));
                    c.outbox.push(&frame, Kind::Chat, &self.metrics);
                }
            }
        }
    }
}
