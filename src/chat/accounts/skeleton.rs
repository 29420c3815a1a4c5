//! Confusable nicks (issue 17): the skeleton two nicks share when they
//! look alike, in the spirit of Unicode TR39 §4 ("Confusable
//! Detection": two strings are confusable when their skeletons are
//! equal), on a documented ASCII subset. Nicks are ASCII letters,
//! digits, `_`, `-` and `.` (`protocol::check_nick`), so a small table
//! is the whole of it; `docs/PROTOCOL.md` ("Accounts") prints the same
//! table.
//!
//! | in the nick | in the skeleton | why |
//! |---|---|---|
//! | `A`–`Z` | `a`–`z` | nicks compare without case |
//! | `I`, `i`, `L`, `l`, `1` | `l` | one vertical stroke in most fonts |
//! | `O`, `o`, `0` | `o` | one round letter |
//! | `rn` | `m` | kerned together, they read as `m` |
//! | `vv` | `w` | likewise |
//! | `_`, `-`, `.` | `-` | thin marks, easily mistaken for each other |
//! | `-` (any of the three) at the end | nothing | `alice.` reads as `alice` |
//!
//! The pairs are replaced after the letters are folded, left to right
//! (`rnn` is `mn`), and the trailing marks are dropped last, so `alice.`,
//! `aIice`, `a1ice` and `Alice` all have the skeleton of `alice`, `allce`.
//! Only the skeleton is compared, never shown: the nick keeps its own
//! spelling.

/// The confusable skeleton of `nick` (see the module doc's table).
pub fn skeleton(nick: &str) -> String {
    let folded: String = nick
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            'i' | 'l' | '1' => 'l',
            '0' => 'o',
            '_' | '.' => '-',
            other => other,
        })
        .collect();
    let mut out = String::with_capacity(folded.len());
    let mut chars = folded.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('r', Some('n')) => {
                chars.next();
                out.push('m');
            }
            ('v', Some('v')) => {
                chars.next();
                out.push('w');
            }
            _ => out.push(c),
        }
    }
    let kept = out.trim_end_matches('-').len();
    out.truncate(kept);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confusable(a: &str, b: &str) -> bool {
        skeleton(a) == skeleton(b)
    }

    /// The issue's own look-alikes of `alice`.
    #[test]
    fn the_issues_look_alikes_share_alices_skeleton() {
        for nick in [
            "Alice", "aIice", "a1ice", "alice.", "ALICE", "alice_", "aLice-",
        ] {
            assert_eq!(skeleton(nick), skeleton("alice"), "{nick}");
            assert!(confusable(nick, "alice"), "{nick}");
        }
        assert_eq!(skeleton("alice"), "allce");
    }

    #[test]
    fn round_letters_and_kerned_pairs_fold() {
        assert_eq!(skeleton("B0B"), "bob");
        assert!(confusable("modern", "rnodern"));
        assert!(confusable("wolf", "vvolf"));
        assert_eq!(skeleton("rnn"), "mn");
        assert!(confusable("a_b", "a.b") && confusable("a.b", "a-b"));
    }

    #[test]
    fn different_nicks_stay_different() {
        assert!(!confusable("alice", "alicia"));
        assert!(!confusable("bob", "bab"));
        assert!(!confusable("ab", "a-b"), "a mark inside the nick counts");
        assert!(!confusable("carol", "caro"));
    }

    #[test]
    fn only_trailing_marks_are_dropped() {
        assert_eq!(skeleton("-x"), "-x");
        assert_eq!(skeleton("x-._"), "x");
        assert_eq!(skeleton("..."), "");
    }
}
