//! Who holds which role where: a moderation request's actor and target,
//! the room's owners and moderators (from memory, or folded from the
//! store for a room nobody here is in), and who may be given a role.

use std::collections::BTreeSet;

use super::super::super::accounts::skeleton::skeleton;
use super::super::super::backend::Kind as EventKind;
use super::super::super::lock;
use super::super::super::protocol::{ErrorCode, ModAction, Refusal, Role};
use super::super::{Client, Hub, Standing, down, now_ms};
use super::rules::Rules;

/// What a moderation request in a room is judged by: the room's owners
/// and moderators, and whether it fits the room's bounds.
pub(super) struct Roster {
    pub(super) owners: BTreeSet<String>,
    pub(super) mods: BTreeSet<String>,
    pub(super) fits: Result<(), Refusal>,
    /// `action` is a `role` event that leaves the room without an owner
    /// it had ([`Rules::leaves_ownerless`]).
    pub(super) ownerless: bool,
}

/// How the connections here that hold a nick stand.
#[derive(Clone, Copy)]
struct Held {
    /// One of them is verified (an account's or a token's).
    verified: bool,
    /// One of them claims admin by its token.
    admin_claim: bool,
}

impl Hub {
    /// How `nick` is held here: `None` by no connection.
    fn held_here(&self, nick: &str) -> Option<Held> {
        lock(&self.users).holders(nick).fold(None, |held, c| {
            let h = held.unwrap_or(Held {
                verified: false,
                admin_claim: false,
            });
            Some(Held {
                verified: h.verified || c.standing != Standing::Guest,
                admin_claim: h.admin_claim
                    || c.standing == (Standing::Verified { admin_claim: true }),
            })
        })
    }

    /// The role of `nick`, who may not be connected here, in `room`:
    /// an admin (stored, or claimed by a token of one of its connections
    /// here), else what the room's rules say.
    pub(super) async fn target_role(
        &self,
        nick: &str,
        owners: &BTreeSet<String>,
        mods: &BTreeSet<String>,
    ) -> Role {
        let here = self.held_here(nick);
        let claimed = here.is_some_and(|h| h.admin_claim);
        let guests_only = here.is_some_and(|h| !h.verified)
            || (self.config.mark_guests && self.guest_elsewhere(nick));
        // A nick held here by guests only is a guest's, whatever rights
        // are stored under it (an admin's, a role): those are for the
        // account or token user of that name, not for whoever took the
        // nick meanwhile (review finding 9).
        if guests_only {
            Role::Guest
        } else if claimed || self.backend.is_admin(nick).await.unwrap_or(false) {
            Role::Admin
        } else if owners.contains(nick) {
            Role::Owner
        } else if mods.contains(nick) {
            Role::Moderator
        } else {
            Role::Member
        }
    }

    /// With accounts on, a role goes to a registered nick (its account's
    /// exact spelling) or one a verified user holds now, here or on
    /// another server (a token's):
    /// not to a guest's, nor to a nick whoever registers it next would get
    /// the role with (review finding 9). Refused `unknown_user`. Without
    /// accounts, or with `--jwt-secret`, the nicks are the token issuer's,
    /// and any is taken.
    pub(super) async fn may_hold_a_role(&self, nick: &str) -> Result<(), Refusal> {
        let verified_here = self.held_here(nick).is_some_and(|h| h.verified);
        let verified_elsewhere = self.online_elsewhere(nick) && !self.guest_elsewhere(nick);
        // Without accounts, or with an external token issuer
        // (`--jwt-secret`), the nicks are the issuer's to vouch for.
        let vouched = !self.config.mark_guests || self.config.authenticated;
        if vouched || verified_here || verified_elsewhere {
            return Ok(());
        }
        match self.backend.account(&skeleton(nick)).await.map_err(down)? {
            Some(account) if account.nick == nick => Ok(()),
            _ => Err(Refusal::new(
                ErrorCode::UnknownUser,
                format!("no account holds {nick}: roles go to registered users"),
            )),
        }
    }

    /// `room`'s owners and moderators, and whether `action` fits its
    /// bounds ([`Rules::fits`]): from memory, or folded from the store's
    /// current rules for a room nobody here is in.
    pub(super) async fn roles_in(
        &self,
        room: &str,
        action: Option<&ModAction>,
    ) -> Result<Roster, Refusal> {
        let judge = |rules: &Rules| Roster {
            owners: rules.owners.clone(),
            mods: rules.moderators.clone(),
            fits: action.map_or(Ok(()), |a| rules.fits(a)),
            ownerless: action.is_some_and(|a| rules.leaves_ownerless(a)),
        };
        if let Some(room_arc) = self.find_room(room) {
            let r = lock(&room_arc);
            if !r.members.is_empty() {
                return Ok(r
                    .rules
                    .as_deref()
                    .map_or_else(|| judge(&Rules::default()), judge));
            }
        }
        let mut rules = Rules::default();
        for e in self.backend.rules(room).await.map_err(down)? {
            if let EventKind::Moderation(a) = &e.kind {
                rules.apply(e.id, a);
            }
        }
        rules.expire(now_ms());
        Ok(judge(&rules))
    }

    /// `client`'s role in `room`, and the room's roles.
    pub(super) async fn standing_in(
        &self,
        client: &Client,
        room: &str,
        action: Option<&ModAction>,
    ) -> Result<(Role, Roster), Refusal> {
        let admin = self.refresh_admin(&client.nick, client.standing).await;
        let roster = self.roles_in(room, action).await?;
        let role = match client.standing {
            Standing::Guest => Role::Guest,
            _ if admin => Role::Admin,
            _ if roster.owners.contains(&client.nick) => Role::Owner,
            _ if roster.mods.contains(&client.nick) => Role::Moderator,
            _ => Role::Member,
        };
        Ok((role, roster))
    }
}
