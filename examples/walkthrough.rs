//! Prints the session `docs/WALKTHROUGH.md` explains, or (`--write`)
//! rewrites the document's blocks with it after a deliberate change to
//! the code. `tests/walkthrough.rs` checks that they agree.
//!
//! ```text
//! cargo run --example walkthrough            # print every step
//! cargo run --example walkthrough -- --write # update docs/WALKTHROUGH.md
//! ```

#[path = "../tests/walkthrough/session.rs"]
mod session;

fn main() -> std::io::Result<()> {
    let steps = session::session();
    if std::env::args().any(|a| a == "--write") {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/WALKTHROUGH.md");
        let doc = std::fs::read_to_string(path)?;
        let missing: Vec<_> = steps
            .iter()
            .filter(|s| !session::blocks(&doc).iter().any(|(n, _, _)| n == s.name))
            .map(|s| s.name)
            .collect();
        std::fs::write(path, session::rewrite(&doc, &steps))?;
        if !missing.is_empty() {
            eprintln!("steps with no block in the document: {missing:?}");
        }
        return Ok(());
    }
    for step in steps {
        println!("--- {}\n{}", step.name, step.text);
    }
    Ok(())
}
