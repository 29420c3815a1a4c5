//! Issue 17's moderation requests, checked as far as the frame alone
//! allows (the room, the nick, the bounds of a reason, a topic, a
//! duration), and the types the `moderation`, `room` and `audit` events
//! carry. Who may do what is the hub's to say (`hub/moderation.rs`).

use serde::{Deserialize, Serialize};

use super::{ClientMsg, Refusal, check_nick, check_room};

/// The longest `reason`, in bytes.
pub const MAX_REASON: usize = 200;
/// The longest topic, in bytes.
pub const MAX_TOPIC: usize = 300;
/// The longest ban or mute, in minutes: a year. Longer is "until lifted"
/// (no `minutes`).
pub const MAX_MINUTES: u64 = 525_600;
/// The longest slow mode, in seconds: an hour.
pub const MAX_SLOW: u64 = 3600;
/// The most users one user may block: its blocks are held in memory
/// while it is online, so they are bounded like everything else.
pub const MAX_BLOCKS: usize = 1000;
/// The most mutes and bans in force in one room, together: a room's
/// rules are held in memory while it is, and read whole when it comes
/// back, so they are bounded (one more: `rules_full`).
pub const MAX_ROOM_RESTRICTIONS: usize = 10_000;
/// The most owners and moderators of one room, together: every `room`
/// event lists them all.
pub const MAX_ROOM_ROLES: usize = 100;
/// With slow mode on, the most nicks one room remembers the last post
/// of (those who posted within its interval): one more nick's post waits
/// (`slow_mode`) until the oldest stamps are over.
pub const MAX_SLOW_STAMPS: usize = 10_000;

/// A role in a room, lowest first: the order is the permission table's
/// "nobody acts on someone of a higher or equal role, except admins".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Picked its own nick: holds no role, may do nothing of moderation.
    Guest,
    /// A verified user with no role in the room.
    Member,
    /// Named by an owner.
    Moderator,
    /// The room's first verified user, or named by an admin.
    Owner,
    /// A server admin (`rfc6455 chat admin add`, or a token's claim).
    Admin,
}

impl Role {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Guest => "guest",
            Self::Member => "member",
            Self::Moderator => "moderator",
            Self::Owner => "owner",
            Self::Admin => "admin",
        }
    }
}

/// What a moderation event does (its `action` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Out of the room now; may rejoin.
    Kick,
    /// Out of the room (or, server-wide, off the server) until `until`.
    Ban,
    /// The ban is lifted.
    Unban,
    /// May read, may not post, until `until`.
    Mute,
    /// The mute is lifted.
    Unmute,
    /// One message per `seconds` per user (0: off).
    Slow,
    /// The room's topic is `topic`.
    Topic,
    /// `user`'s role in the room is `role`.
    Role,
}

impl Action {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kick => "kick",
            Self::Ban => "ban",
            Self::Unban => "unban",
            Self::Mute => "mute",
            Self::Unmute => "unmute",
            Self::Slow => "slow",
            Self::Topic => "topic",
            Self::Role => "role",
        }
    }
}

/// A moderation event's content: the stores keep it as its JSON (the
/// event's `text`), the wire's `moderation` event shows its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModAction {
    /// What.
    pub action: Action,
    /// On whom (kick, ban, unban, mute, unmute, role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A ban's or mute's end, ms since the Unix epoch; none: until lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// Why, as the moderator said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Slow mode's interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// The new topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The role given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// On a `role` event: the room has had an owner and has none now. The
    /// stores keep such an event as a rule in force, so that a room whose
    /// owners were all made members is not claimed again by its next
    /// verified joiner (only an admin names its owners from then on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ownerless: bool,
}

impl ModAction {
    /// An action with no fields but its kind.
    pub fn new(action: Action) -> Self {
        Self {
            action,
            user: None,
            until: None,
            reason: None,
            seconds: None,
            topic: None,
            role: None,
            ownerless: false,
        }
    }

    /// The JSON the stores keep as the event's text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its id: a room's moderation event's id in the room's stream; for
    /// the server's own log (`*`), its place in that log.
    pub id: u64,
    /// When, ms since the Unix epoch.
    pub ts: u64,
    /// Who did it.
    pub by: String,
    /// What (`kick`, …, `delete`, `admin_add`, `admin_remove`).
    pub action: String,
    /// On whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The rest (a reason, a duration, a topic, a role, a message id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Role {
    /// The role a `role` request names (`owner`, `moderator`, `member`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "owner" => Some(Self::Owner),
            "moderator" => Some(Self::Moderator),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// The `moderation` event: an action, who did it, and (for one stored
/// in a room's stream) its id there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModEvent {
    /// The room; none for a server-wide ban.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The action and its fields.
    #[serde(flatten)]
    pub action: ModAction,
    /// Who did it.
    pub by: String,
    /// When, ms since the Unix epoch.
    pub ts: u64,
    /// Its id in the room's stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<u64>,
}

/// The viewer's place in a room's rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct YouState {
    /// `guest`, `member`, `moderator`, `owner` or `admin`.
    pub role: Role,
    /// Muted until then (ms since the epoch; 0: until lifted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<u64>,
}

/// The `room` event: a room's rules, as the viewer sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomState {
    /// The room.
    pub room: String,
    /// Its topic (empty: none).
    pub topic: String,
    /// Slow mode's interval in seconds (0: off).
    pub slow: u64,
    /// Its owners, sorted.
    pub owners: Vec<String>,
    /// Its moderators, sorted.
    pub moderators: Vec<String>,
    /// The viewer.
    pub you: YouState,
}

fn check_reason(reason: Option<&String>) -> Result<(), Refusal> {
    match reason {
        Some(r) if r.len() > MAX_REASON => Err(Refusal::field(format!(
            "reason: at most {MAX_REASON} bytes"
        ))),
        Some(r) if r.chars().any(char::is_control) => {
            Err(Refusal::field("reason: no control characters"))
        }
        _ => Ok(()),
    }
}

fn check_minutes(minutes: Option<u64>, seconds: Option<u64>) -> Result<(), Refusal> {
    if minutes.is_some() && seconds.is_some() {
        return Err(Refusal::field("minutes or seconds: one of them"));
    }
    if let Some(s) = seconds
        && !(1..=MAX_MINUTES * 60).contains(&s)
    {
        return Err(Refusal::field(format!(
            "seconds: 1 to {} (none: until lifted)",
            MAX_MINUTES * 60
        )));
    }
    match minutes {
        Some(m) if !(1..=MAX_MINUTES).contains(&m) => Err(Refusal::field(format!(
            "minutes: 1 to {MAX_MINUTES} (none: until lifted)"
        ))),
        _ => Ok(()),
    }
}

fn check_user(user: &str) -> Result<(), Refusal> {
    check_nick(user).map_err(|_| Refusal::field("user: not a valid nick"))
}

/// Checks a moderation request (anything else passes).
pub(super) fn validate(msg: &ClientMsg) -> Result<(), Refusal> {
    match msg {
        ClientMsg::Kick { room, user, reason } => {
            check_room(room)?;
            check_user(user)?;
            check_reason(reason.as_ref())
        }
        ClientMsg::Ban {
            room,
            user,
            minutes,
            seconds,
            reason,
        } => {
            room.as_deref().map_or(Ok(()), check_room)?;
            check_user(user)?;
            check_minutes(*minutes, *seconds)?;
            check_reason(reason.as_ref())
        }
        ClientMsg::Mute {
            room,
            user,
            minutes,
            seconds,
            reason,
        } => {
            check_room(room)?;
            check_user(user)?;
            check_minutes(*minutes, *seconds)?;
            check_reason(reason.as_ref())
        }
        ClientMsg::Unban { room, user } => {
            room.as_deref().map_or(Ok(()), check_room)?;
            check_user(user)
        }
        ClientMsg::Unmute { room, user } => {
            check_room(room)?;
            check_user(user)
        }
        ClientMsg::Slow { room, seconds } => {
            check_room(room)?;
            if *seconds > MAX_SLOW {
                return Err(Refusal::field(format!("seconds: 0 to {MAX_SLOW}")));
            }
            Ok(())
        }
        ClientMsg::Topic { room, topic } => {
            check_room(room)?;
            if topic.len() > MAX_TOPIC {
                return Err(Refusal::field(format!("topic: at most {MAX_TOPIC} bytes")));
            }
            if topic.chars().any(|c| c.is_control()) {
                return Err(Refusal::field("topic: no control characters"));
            }
            Ok(())
        }
        ClientMsg::Role { room, user, role } => {
            check_room(room)?;
            check_user(user)?;
            match Role::parse(role) {
                Some(_) => Ok(()),
                None => Err(Refusal::field("role: owner, moderator or member")),
            }
        }
        ClientMsg::Block { user } | ClientMsg::Unblock { user } => check_user(user),
        ClientMsg::Audit { room, limit, .. } => {
            if room != "*" {
                check_room(room)?;
            }
            match limit {
                Some(l) if !(1..=super::MAX_HISTORY).contains(l) => Err(Refusal::field(format!(
                    "limit: 1 to {}",
                    super::MAX_HISTORY
                ))),
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::tests::assert_invalid_field;
    use super::*;

    #[test]
    fn moderation_requests_parse_and_bad_ones_name_their_field() {
        assert!(parse(r#"{"type":"kick","room":"general","user":"bob"}"#).is_ok());
        assert!(parse(r#"{"type":"ban","user":"bob","minutes":5}"#).is_ok());
        assert!(parse(r#"{"type":"role","room":"a","user":"bob","role":"moderator"}"#).is_ok());
        assert!(parse(r#"{"type":"audit","room":"*"}"#).is_ok());
        for (bad, field) in [
            (r#"{"type":"kick","room":"general"}"#, "user"),
            (r#"{"type":"kick","room":"general","user":"a b"}"#, "user"),
            (r#"{"type":"ban","user":"bob","minutes":0}"#, "minutes"),
            (
                r#"{"type":"mute","room":"a","user":"bob","minutes":999999999}"#,
                "minutes",
            ),
            (r#"{"type":"slow","room":"a","seconds":99999}"#, "seconds"),
            (
                r#"{"type":"role","room":"a","user":"bob","role":"admin"}"#,
                "role",
            ),
            (r#"{"type":"audit","room":"a","limit":0}"#, "limit"),
        ] {
            assert_invalid_field(bad, field);
        }
        let long = "x".repeat(MAX_TOPIC + 1);
        assert_invalid_field(
            &format!(r#"{{"type":"topic","room":"a","topic":"{long}"}}"#),
            "topic",
        );
    }

    #[test]
    fn a_moderation_event_serializes_flat() {
        let mut action = ModAction::new(Action::Mute);
        action.user = Some("bob".into());
        action.until = Some(5);
        let e = ModEvent {
            room: Some("general".into()),
            action,
            by: "ann".into(),
            ts: 7,
            event_id: Some(9),
        };
        assert_eq!(
            super::super::ServerMsg::Moderation(&e).to_json(),
            r#"{"type":"moderation","room":"general","action":"mute","user":"bob","until":5,"by":"ann","ts":7,"event_id":9}"#
        );
    }
}
