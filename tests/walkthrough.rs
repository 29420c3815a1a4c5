//! `docs/WALKTHROUGH.md` shows the bytes of one real session; this test
//! produces them again with the same fixed key and masks and compares
//! every `text step:NAME` and `hex step:NAME` block with them, so the
//! document cannot drift from the code. After a deliberate change to the
//! code, `cargo run --example walkthrough -- --write` rewrites the blocks
//! (then read the prose around each changed block again).

#[path = "doclinks/mod.rs"]
mod doclinks;
#[path = "walkthrough/session.rs"]
mod session;

use session::{Step, blocks, session};

const DOC: &str = include_str!("../docs/WALKTHROUGH.md");

/// A line-by-line diff of one block: `-` what the document shows, `+`
/// what the code emits.
fn diff(shown: &str, emitted: &str) -> String {
    let (a, b): (Vec<_>, Vec<_>) = (shown.lines().collect(), emitted.lines().collect());
    let mut out = String::new();
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) if x == y => out.push_str(&format!("  {x}\n")),
            (x, y) => {
                if let Some(x) = x {
                    out.push_str(&format!("- {x}\n"));
                }
                if let Some(y) = y {
                    out.push_str(&format!("+ {y}\n"));
                }
            }
        }
    }
    out
}

#[test]
fn every_block_of_the_walkthrough_is_what_the_code_emits() {
    let steps = session();
    let shown = blocks(DOC);
    let mut failures = Vec::new();
    for Step { name, text } in &steps {
        match shown.iter().find(|(n, _, _)| n == name) {
            None => failures.push(format!("step `{name}` has no block in docs/WALKTHROUGH.md")),
            Some((_, block, line)) if block != text => failures.push(format!(
                "step `{name}` (docs/WALKTHROUGH.md line {line}) changed:\n{}",
                diff(block, text)
            )),
            Some(_) => {}
        }
    }
    for (name, _, line) in &shown {
        if !steps.iter().any(|s| s.name == name) {
            failures.push(format!(
                "block `{name}` (line {line}) is not a step the session produces"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(run `cargo run --example walkthrough -- --write` after a deliberate change)",
        failures.join("\n")
    );
}

#[test]
fn the_accept_worked_by_hand_is_the_rfcs() {
    // §4.2.2 gives this key and this accept value; the walkthrough's key
    // is chosen to be the same so a reader can check it against the RFC.
    let steps = session();
    let get = |name| &steps.iter().find(|s| s.name == name).expect(name).text;
    assert_eq!(get("key").trim(), "dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(get("accept").trim(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert!(get("response").contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\n"));
}

#[test]
fn a_changed_block_is_reported_by_name() {
    // The comparison itself: a document with one byte changed fails and
    // names the step.
    let steps = session();
    let shown = "05                        # MASK=0 payload length=5";
    assert!(
        DOC.contains(shown),
        "the document shows an unmasked 5-byte frame"
    );
    let broken = DOC.replacen(
        shown,
        "06                        # MASK=0 payload length=6",
        1,
    );
    let changed: Vec<_> = blocks(&broken)
        .into_iter()
        .filter(|(n, t, _)| steps.iter().any(|s| s.name == n && &s.text != t))
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(changed, ["server-text"]);
}

#[test]
fn every_function_the_walkthrough_links_to_exists() {
    let broken = doclinks::broken_links(DOC);
    assert!(
        broken.is_empty(),
        "docs/WALKTHROUGH.md:\n{}",
        broken.join("\n")
    );
}

#[test]
fn a_link_to_a_missing_function_is_reported() {
    let broken = doclinks::broken_links(
        "see [`FrameHeader::parse`](../src/proto/frame.rs) and\n\
         [`FrameHeader::no_such_fn`](../src/proto/frame.rs), [x](../src/nowhere.rs)",
    );
    assert_eq!(
        broken,
        [
            "line 2: ../src/proto/frame.rs defines no `FrameHeader::no_such_fn`",
            "line 2: ../src/nowhere.rs does not exist",
        ]
    );
}
