//! What a writer is told once the backend has stored its event, or
//! failed to: the hub's [`Ack`].

use std::sync::{Arc, Mutex, Weak};

use crate::proto::{DeflateConfig, PreparedFrame};

use super::super::backend::{Ack, MAX_REACTIONS, Rejected, Unavailable};
use super::super::lock;
use super::super::metrics::Metrics;
use super::super::protocol::{ErrorCode, ModEvent, Refusal, ServerMsg};
use super::{Client, Kind, Room, prepare};

/// What the writer of a `msg` or `dm` (or an edit, delete or reaction)
/// is told once the backend has stored it, or failed to: its [`Ack`].
pub(super) struct Pending {
    pub(super) sender: Arc<Client>,
    /// None: an edit, delete or reaction sent without one gets no `ack`
    /// (its event says it is done), and a refusal names no post.
    pub(super) client_id: Option<String>,
    /// The message the event acts on (or replies to), for a refusal.
    pub(super) target: Option<u64>,
    pub(super) deflate: Option<DeflateConfig>,
    pub(super) metrics: Arc<Metrics>,
    /// What else follows the outcome.
    pub(super) after: After,
}

/// What else a writer is owed once its event is stored, or is not.
pub(super) enum After {
    /// Nothing: its `ack` (if it gave a `client_id`), or its `error`.
    Nothing,
    /// A moderator acting on a room it is not in: the room's fan-out does
    /// not reach it, so it is sent the `moderation` event it made (with
    /// its id) once stored.
    Echo(Box<ModEvent>),
    /// The ownership claim of a room's first verified user: if it is not
    /// stored, the room is claimable again (by the next verified join).
    Unclaim(Weak<Mutex<Room>>),
    /// A post in slow mode, stamped `at`: if it is not stored, the stamp
    /// is withdrawn (the writer is not slowed by a post nobody saw).
    Unstamp {
        /// The room.
        room: Weak<Mutex<Room>>,
        /// The stamp kept for the post (ms).
        at: u64,
    },
}

impl After {
    /// The part of this that undoes (no echo): kept by the hub for a
    /// refusal before the store takes the event, since the `After` itself
    /// goes with the ack.
    pub(super) fn undoing(&self) -> After {
        match self {
            After::Unclaim(room) => After::Unclaim(room.clone()),
            After::Unstamp { room, at } => After::Unstamp {
                room: room.clone(),
                at: *at,
            },
            After::Nothing | After::Echo(_) => After::Nothing,
        }
    }

    /// `nick`'s event was not stored: an ownership claim, or a post's
    /// slow-mode stamp, is withdrawn.
    pub(super) fn undo(&self, nick: &str) {
        match self {
            After::Unclaim(room) => {
                if let Some(room) = room.upgrade()
                    && let Some(rules) = lock(&room).rules.as_mut()
                {
                    rules.owner_asked = false;
                }
            }
            After::Unstamp { room, at } => unstamp(room, nick, *at),
            After::Nothing | After::Echo(_) => {}
        }
    }
}

/// Withdraws `nick`'s slow-mode stamp `at` in `room`, unless a later post
/// replaced it.
fn unstamp(room: &Weak<Mutex<Room>>, nick: &str, at: u64) {
    if let Some(room) = room.upgrade()
        && let Some(rules) = lock(&room).rules.as_mut()
        && rules.last_post.get(nick) == Some(&at)
    {
        rules.last_post.remove(nick);
    }
}

impl Ack for Pending {
    fn abandoned(&self) -> bool {
        self.sender.is_gone()
    }

    fn refused(self: Box<Self>, why: Rejected) {
        self.metrics.errors.inc();
        self.after.undo(&self.sender.nick);
        let refusal = refusal(why, self.target.unwrap_or(0));
        let frame = PreparedFrame::text(
            ServerMsg::Error {
                code: refusal.code,
                message: &refusal.message,
                client_id: self.client_id.as_deref(),
            }
            .to_json(),
        );
        self.sender.outbox.push(&frame, Kind::Chat, &self.metrics);
    }

    fn done(self: Box<Self>, outcome: Result<u64, Unavailable>) {
        let frame = match outcome {
            Ok(id) => {
                if let After::Echo(mut event) = self.after {
                    event.event_id = Some(id);
                    let json = ServerMsg::Moderation(&event).to_json();
                    let frame = prepare(self.deflate.as_ref(), json);
                    self.sender.outbox.push(&frame, Kind::Chat, &self.metrics);
                    return;
                }
                let Some(client_id) = &self.client_id else {
                    return;
                };
                prepare(
                    self.deflate.as_ref(),
                    ServerMsg::Ack { client_id, id }.to_json(),
                )
            }
            Err(Unavailable) => {
                // No one saw it: the sender's UI marks the post failed, and
                // it may send it again.
                self.metrics.errors.inc();
                self.after.undo(&self.sender.nick);
                PreparedFrame::text(
                    ServerMsg::Error {
                        code: ErrorCode::Unavailable,
                        message: "the message could not be saved; try again",
                        client_id: self.client_id.as_deref(),
                    }
                    .to_json(),
                )
            }
        };
        self.sender.outbox.push(&frame, Kind::Chat, &self.metrics);
    }
}

/// How the store's refusal of an event acting on message `id` reads.
fn refusal(why: Rejected, id: u64) -> Refusal {
    match why {
        Rejected::NoSuchMessage => {
            Refusal::new(ErrorCode::NoSuchMessage, format!("no message {id} here"))
        }
        Rejected::NotAuthor => Refusal::new(
            ErrorCode::NotAuthor,
            format!("message {id} is someone else's: only its author may change it"),
        ),
        Rejected::Deleted => Refusal::new(ErrorCode::Deleted, format!("message {id} is deleted")),
        Rejected::Muted => Refusal::new(ErrorCode::Muted, "you are muted in this room"),
        Rejected::TooManyReactions => Refusal::new(
            ErrorCode::TooManyReactions,
            format!("message {id} has {MAX_REACTIONS} different reactions already"),
        ),
    }
}
