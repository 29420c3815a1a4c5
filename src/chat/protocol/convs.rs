//! The protocol's conversation state (issue 16): read marks, receipts,
//! unread counts, mentions and the DM list; their limits, their wire
//! shapes, and what counts as a mention.

use serde::Serialize;

use super::{Refusal, check_client_id, check_nick};

/// The most a `welcome`'s `unread` or `mentions` count (or a `dms`
/// conversation's `unread`) says: the counting reads at most this many of
/// the newest events after the read mark, so a count of 999 means
/// "999 or more" (show `999+`).
pub const MAX_UNREAD: u64 = 999;
/// The most readers a `receipts` event names: the ones furthest along.
pub const MAX_READERS: usize = 50;
/// The most DM conversations a `dms` answer lists (the latest ones).
pub const MAX_DMS: usize = 50;
/// The most DM conversations a `welcome` counts, and the most `mention`
/// events for DMs received while away that follow it.
pub const MAX_WELCOME_DMS: usize = 20;
/// The most nicks one message mentions: past this, the rest are text.
pub const MAX_MENTIONS: usize = 20;

/// One reader of a conversation, in `receipts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadMark {
    /// Who.
    pub user: String,
    /// The last id they read.
    pub id: u64,
}

/// One DM conversation, in `dms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DmSummary {
    /// The other user.
    pub with: String,
    /// The conversation's newest id.
    pub last_id: u64,
    /// Messages from them after the user's last read (at most
    /// [`MAX_UNREAD`]).
    pub unread: u64,
}

/// A `read` names a room or a DM's other user, not both.
pub(super) fn check_read(
    room: Option<&str>,
    dm: Option<&str>,
    client_id: Option<&str>,
) -> Result<(), Refusal> {
    super::check_where(room, dm)?;
    client_id.map_or(Ok(()), check_client_id)
}

fn nick_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-.".contains(&b)
}

/// The nicks `text` mentions, in order, each once, at most
/// [`MAX_MENTIONS`]: an `@` at the start or after a character that
/// cannot be in a nick (space, punctuation, any non-ASCII), then the
/// longest run of nick characters, less any trailing `.` (the end of a
/// sentence), if that is a valid nick (1–24 characters). Nicks compare
/// as everywhere else: exactly, case included. So `@bob, hi` and
/// `(@bob)` mention `bob`; `mail@bob.org` mentions nobody.
pub fn mentions(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut found: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < bytes.len() && found.len() < MAX_MENTIONS {
        if bytes[i] != b'@' || (i > 0 && nick_byte(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < bytes.len() && nick_byte(bytes[end]) {
            end += 1;
        }
        i = end.max(start);
        let mut nick = &text[start..end];
        while let Some(n) = nick.strip_suffix('.') {
            nick = n;
        }
        if check_nick(nick).is_ok() && !found.contains(&nick) {
            found.push(nick);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_follow_the_documented_tokenization() {
        assert_eq!(mentions("@bob hi"), vec!["bob"]);
        assert_eq!(mentions("hi @bob, and (@cy) @bob."), vec!["bob", "cy"]);
        assert_eq!(mentions("mail@bob.org"), Vec::<&str>::new());
        assert_eq!(mentions("@@bob"), vec!["bob"]);
        assert_eq!(mentions("é@bob"), vec!["bob"]);
        assert_eq!(mentions("@Bob"), vec!["Bob"]);
        assert_eq!(mentions("@ @. @"), Vec::<&str>::new());
        assert_eq!(
            mentions(&format!("@{}", "a".repeat(25))),
            Vec::<&str>::new()
        );
        let many: String = (0..30).map(|i| format!("@u{i} ")).collect();
        assert_eq!(mentions(&many).len(), MAX_MENTIONS);
    }

    #[test]
    fn the_conversation_requests_parse_and_bad_ones_name_their_field() {
        use super::super::{ClientMsg, parse};
        assert_eq!(
            parse(r#"{"type":"read","dm":"bob","id":7}"#).unwrap(),
            ClientMsg::Read {
                room: None,
                dm: Some("bob".into()),
                id: 7,
                client_id: None,
            }
        );
        assert_eq!(parse(r#"{"type":"dms"}"#).unwrap(), ClientMsg::Dms {});
        assert_eq!(parse(r#"{"type":"logout"}"#).unwrap(), ClientMsg::Logout {});
        assert!(matches!(
            parse(r#"{"type":"history","dm":"bob","limit":5}"#).unwrap(),
            ClientMsg::History { dm: Some(d), .. } if d == "bob"
        ));
        for (bad, field) in [
            (r#"{"type":"read","room":"general"}"#, "id"),
            (r#"{"type":"read","id":1}"#, "room or dm"),
            (r#"{"type":"read","room":"general","id":-1}"#, "u64"),
            (
                r#"{"type":"history","room":"general","dm":"bob"}"#,
                "room and dm",
            ),
            (r#"{"type":"history","dm":"b b"}"#, "dm"),
            (r#"{"type":"history"}"#, "room"),
            (r#"{"type":"nick","nick":"a b"}"#, "nick"),
            (r#"{"type":"dms","x":1}"#, "x"),
        ] {
            super::super::tests::assert_invalid_field(bad, field);
        }
    }

    #[test]
    fn the_conversation_events_serialize_as_documented() {
        use super::super::{ChatMessage, ServerMsg};
        use std::collections::BTreeMap;
        let unread = BTreeMap::from([("@bob".to_owned(), 2), ("general".to_owned(), 3)]);
        let mentions = BTreeMap::from([("@bob".to_owned(), 2)]);
        let rooms = ["general".to_owned()];
        assert_eq!(
            ServerMsg::Welcome {
                user: "al",
                session: "s",
                rooms: &rooms,
                unread: &unread,
                mentions: &mentions,
                guest: None,
            }
            .to_json(),
            r#"{"type":"welcome","user":"al","session":"s","rooms":["general"],"unread":{"@bob":2,"general":3},"mentions":{"@bob":2}}"#
        );
        assert_eq!(
            ServerMsg::Receipt {
                room: None,
                dm: Some("bob"),
                user: "bob",
                id: 4,
            }
            .to_json(),
            r#"{"type":"receipt","dm":"bob","user":"bob","id":4}"#
        );
        let marks = [ReadMark {
            user: "al".into(),
            id: 3,
        }];
        assert_eq!(
            ServerMsg::Receipts {
                room: Some("general"),
                dm: None,
                receipts: &marks,
            }
            .to_json(),
            r#"{"type":"receipts","room":"general","receipts":[{"user":"al","id":3}]}"#
        );
        assert_eq!(
            ServerMsg::Mention {
                room: Some("general"),
                dm: None,
                id: 9,
                from: "bob",
            }
            .to_json(),
            r#"{"type":"mention","room":"general","id":9,"from":"bob"}"#
        );
        let list = [DmSummary {
            with: "bob".into(),
            last_id: 4,
            unread: 1,
        }];
        assert_eq!(
            ServerMsg::Dms {
                conversations: &list
            }
            .to_json(),
            r#"{"type":"dms","conversations":[{"with":"bob","last_id":4,"unread":1}]}"#
        );
        let m = ChatMessage {
            room: String::new(),
            id: 1,
            from: "bob".into(),
            text: "hi".into(),
            ts: 5,
            reply_to: None,
            edited_ts: None,
            deleted: false,
            reactions: BTreeMap::new(),
            guest: false,
        };
        let page = ServerMsg::DmHistory {
            dm: "bob",
            messages: std::slice::from_ref(&m),
            more: false,
        }
        .to_json();
        assert!(
            page.starts_with(r#"{"type":"history","dm":"bob","messages":[{"id":1,"from":"bob","text":"hi","ts":5"#),
            "{page}"
        );
        assert_eq!(
            ServerMsg::Renamed {
                user: "b",
                old: "a",
                session: "s",
            }
            .to_json(),
            r#"{"type":"renamed","user":"b","old":"a","session":"s"}"#
        );
    }

    #[test]
    fn a_read_names_one_conversation() {
        assert!(check_read(Some("general"), None, None).is_ok());
        assert!(check_read(None, Some("bob"), Some("c1")).is_ok());
        assert!(check_read(Some("general"), Some("bob"), None).is_err());
        assert!(check_read(None, None, None).is_err());
        assert!(check_read(None, Some("b o b"), None).is_err());
    }
}
