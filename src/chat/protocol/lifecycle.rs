//! The requests that act on a stored message, `edit`, `delete` and
//! `react`, checked as far as the frame alone allows: where (exactly one
//! of `room` and `dm`), the text, the emoji, the `client_id`. Whether the
//! message exists, who wrote it and whether it is deleted are the store's
//! to say, atomically with the write (`backend::Rejected`).

use unicode_segmentation::UnicodeSegmentation;

use super::{ClientMsg, ErrorCode, Refusal, check_client_id, check_text};

/// The most bytes of an emoji reaction (one grapheme: a family emoji with
/// skin tones is 25–35 bytes; `:name:` is at most 34).
pub const MAX_EMOJI: usize = 32;

/// A reaction: one extended grapheme cluster (UAX #29) of at most
/// [`MAX_EMOJI`] bytes that shows something and holds no control
/// character, or a `:name:` of 1–32 `[a-z0-9_+-]`.
pub fn check_emoji(emoji: &str) -> Result<(), Refusal> {
    let named = emoji
        .strip_prefix(':')
        .and_then(|e| e.strip_suffix(':'))
        .is_some_and(|name| {
            (1..=32).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_+-".contains(&b))
        });
    let grapheme = emoji.len() <= MAX_EMOJI
        && emoji.graphemes(true).count() == 1
        && !emoji.chars().any(char::is_control)
        && !emoji.chars().all(super::is_invisible);
    if named || grapheme {
        Ok(())
    } else {
        Err(Refusal::new(
            ErrorCode::BadEmoji,
            format!("emoji: one grapheme of at most {MAX_EMOJI} bytes, or :name: of a-z 0-9 _ + -"),
        ))
    }
}

/// Checks an `edit`, `delete` or `react` (anything else passes).
pub(super) fn validate(msg: &ClientMsg) -> Result<(), Refusal> {
    let (room, dm, client_id) = match msg {
        ClientMsg::Edit {
            room,
            dm,
            text,
            client_id,
            ..
        } => {
            check_text(text)?;
            (room, dm, client_id)
        }
        ClientMsg::Delete {
            room,
            dm,
            client_id,
            ..
        } => (room, dm, client_id),
        ClientMsg::React {
            room,
            dm,
            emoji,
            client_id,
            ..
        } => {
            check_emoji(emoji)?;
            (room, dm, client_id)
        }
        _ => return Ok(()),
    };
    super::check_where(room.as_deref(), dm.as_deref())?;
    client_id.as_deref().map_or(Ok(()), check_client_id)
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn an_emoji_is_one_grapheme_or_a_short_name() {
        for good in [
            "👍",
            "❤️",
            "👩‍👩‍👧‍👦",
            "🇫🇷",
            "👍🏽",
            "a",
            ":thumbsup:",
            ":+1:",
            ":a_b-c:",
        ] {
            assert!(check_emoji(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "👍👍",
            "ab",
            "::",
            ":Thumbs:",
            ":a b:",
            " ",
            "\u{200B}",
            "\u{7}",
            &format!(":{}:", "a".repeat(33)),
            &format!("e{}", "\u{301}".repeat(20)),
        ] {
            assert_eq!(
                check_emoji(bad).unwrap_err().code,
                ErrorCode::BadEmoji,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn lifecycle_requests_parse_and_need_one_conversation() {
        assert_eq!(
            parse(r#"{"type":"edit","room":"general","id":3,"text":"fixed","client_id":"e1"}"#)
                .unwrap(),
            ClientMsg::Edit {
                room: Some("general".into()),
                dm: None,
                id: 3,
                text: "fixed".into(),
                client_id: Some("e1".into()),
            }
        );
        assert!(parse(r#"{"type":"delete","dm":"bob","id":3}"#).is_ok());
        assert!(parse(r#"{"type":"react","room":"general","id":3,"emoji":"👍"}"#).is_ok());
        for (bad, code) in [
            (r#"{"type":"delete","id":3}"#, ErrorCode::InvalidField),
            (
                r#"{"type":"delete","room":"general","dm":"bob","id":3}"#,
                ErrorCode::InvalidField,
            ),
            (
                r#"{"type":"edit","room":"general","id":3,"text":" "}"#,
                ErrorCode::InvalidField,
            ),
            (
                r#"{"type":"react","room":"general","id":3,"emoji":"ab"}"#,
                ErrorCode::BadEmoji,
            ),
            (
                r#"{"type":"react","room":"general","id":-1,"emoji":"a"}"#,
                ErrorCode::InvalidField,
            ),
            (
                r#"{"type":"delete","room":"general","id":3,"client_id":""}"#,
                ErrorCode::InvalidField,
            ),
        ] {
            assert_eq!(parse(bad).unwrap_err().code, code, "{bad}");
        }
    }

    /// The new events' wire form, pinned: clients match on these names.
    #[test]
    fn lifecycle_events_serialize_as_documented() {
        use super::super::ServerMsg;
        let users = ["alice".to_owned(), "bob".to_owned()];
        assert_eq!(
            ServerMsg::Edited {
                room: Some("general"),
                dm: None,
                id: 3,
                text: "fixed",
                edited_ts: 9,
                from: "alice",
                event_id: 7,
            }
            .to_json(),
            r#"{"type":"edited","room":"general","id":3,"text":"fixed","edited_ts":9,"from":"alice","event_id":7}"#
        );
        assert_eq!(
            ServerMsg::Deleted {
                room: None,
                dm: Some("bob"),
                id: 3,
                from: "alice",
                event_id: 8,
                by: None,
            }
            .to_json(),
            r#"{"type":"deleted","dm":"bob","id":3,"from":"alice","event_id":8}"#
        );
        assert_eq!(
            ServerMsg::Deleted {
                room: Some("general"),
                dm: None,
                id: 3,
                from: "mod",
                event_id: 9,
                by: Some("mod"),
            }
            .to_json(),
            r#"{"type":"deleted","room":"general","id":3,"from":"mod","event_id":9,"by":"mod"}"#
        );
        assert_eq!(
            ServerMsg::Reaction {
                room: Some("general"),
                dm: None,
                id: 3,
                emoji: "👍",
                users: &users,
                from: "bob",
                event_id: 9,
            }
            .to_json(),
            r#"{"type":"reaction","room":"general","id":3,"emoji":"👍","users":["alice","bob"],"from":"bob","event_id":9}"#
        );
        let tombstone = super::super::ChatMessage {
            room: "general".into(),
            id: 3,
            from: "alice".into(),
            text: String::new(),
            ts: 1,
            reply_to: Some(2),
            edited_ts: None,
            deleted: true,
            reactions: Default::default(),
            guest: false,
        };
        assert_eq!(
            ServerMsg::Msg(&tombstone).to_json(),
            r#"{"type":"msg","room":"general","id":3,"from":"alice","ts":1,"reply_to":2,"deleted":true}"#
        );
    }
}
