//! Who may do what: the permission table, in one function ([`may`]),
//! written out as `docs/PROTOCOL.md` ("Moderation") shows it.
//!
//! | act                                         | needs at least |
//! |---------------------------------------------|----------------|
//! | kick, ban, unban, mute, unmute (in a room)  | moderator      |
//! | slow, topic, delete someone else's message  | moderator      |
//! | name a moderator or a member (`role`)       | owner          |
//! | read the room's audit log                   | owner          |
//! | name an owner (`role`)                      | admin          |
//! | ban or unban server-wide, read `audit *`    | admin          |
//!
//! And on a person: nobody but an admin may act on someone of a higher
//! or equal role (an owner may not ban an admin, nor another owner; a
//! moderator may not mute a moderator). A guest holds no role: it may do
//! none of these. A role is a room's: a moderator of one room is a
//! member of the next.

use super::super::super::protocol::{ErrorCode, Refusal, Role};

/// What someone asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Kick, ban, unban, mute or unmute someone in a room.
    Discipline,
    /// Slow mode or the topic.
    RoomSetting,
    /// Delete someone else's message.
    Delete,
    /// Name a moderator, or make someone a member again.
    NameModerator,
    /// Read the room's audit log.
    Audit,
    /// Name an owner.
    NameOwner,
    /// Ban or unban server-wide; read the server's audit log.
    Server,
}

impl Act {
    /// The least role that may do it.
    pub fn needs(self) -> Role {
        match self {
            Act::Discipline | Act::RoomSetting | Act::Delete => Role::Moderator,
            Act::NameModerator | Act::Audit => Role::Owner,
            Act::NameOwner | Act::Server => Role::Admin,
        }
    }
}

/// May someone of role `by` do `act` (to someone of role `target`, if it
/// acts on someone)? The refusal says which role would do.
pub fn may(by: Role, act: Act, target: Option<(&str, Role)>) -> Result<(), Refusal> {
    let needs = act.needs();
    if by == Role::Guest {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            format!(
                "guests hold no role: log in (this needs a {})",
                needs.name()
            ),
        ));
    }
    if by < needs {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            format!(
                "you are a {} here: this needs a {} (or higher)",
                by.name(),
                needs.name()
            ),
        ));
    }
    if let Some((nick, role)) = target
        && by != Role::Admin
        && role >= by
    {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            format!(
                "{nick} is a {} here: only an admin may act on them",
                role.name()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of the table, and the rule on persons.
    #[test]
    fn the_permission_table_row_by_row() {
        use Role::*;
        let rows = [
            (Act::Discipline, Moderator),
            (Act::RoomSetting, Moderator),
            (Act::Delete, Moderator),
            (Act::NameModerator, Owner),
            (Act::Audit, Owner),
            (Act::NameOwner, Admin),
            (Act::Server, Admin),
        ];
        for (act, needs) in rows {
            for by in [Guest, Member, Moderator, Owner, Admin] {
                let allowed = may(by, act, None).is_ok();
                assert_eq!(allowed, by != Guest && by >= needs, "{by:?} {act:?}");
            }
        }
        let refused = |r: Result<(), Refusal>| r.unwrap_err();
        // An owner banning an admin; a moderator muting a moderator.
        let e = refused(may(Owner, Act::Discipline, Some(("root", Admin))));
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(e.message.contains("admin"), "{}", e.message);
        assert!(may(Moderator, Act::Discipline, Some(("m", Moderator))).is_err());
        assert!(may(Owner, Act::NameModerator, Some(("o", Owner))).is_err());
        // Down the ladder is fine; an admin acts on anyone.
        assert!(may(Moderator, Act::Discipline, Some(("g", Guest))).is_ok());
        assert!(may(Owner, Act::Discipline, Some(("m", Moderator))).is_ok());
        assert!(may(Admin, Act::Discipline, Some(("a", Admin))).is_ok());
        // The refusal names the role that would do.
        let e = refused(may(Member, Act::Audit, None));
        assert!(e.message.contains("owner"), "{}", e.message);
        let e = refused(may(Guest, Act::Discipline, Some(("x", Guest))));
        assert!(e.message.contains("guest"), "{}", e.message);
    }
}
