//! Checks that what a document in `docs/` points at in the code exists:
//! shared by `tests/walkthrough.rs` and `tests/traceability.rs` through
//! `#[path]` (not a test target of its own).

#![allow(dead_code)] // each includer uses its own part

use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `file` (relative to the root) defines an item called `name`:
/// a `fn`, `struct`, `enum`, `const`, `type`, `trait`, `mod` or `static`,
/// or an enum variant written `NAME,` / `NAME(` / `NAME {` at the start of
/// a line. Only the last `::` segment of `name` counts (`FrameHeader::parse`
/// is found by `fn parse`).
pub fn defines(file: &Path, name: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(root().join(file)) else {
        return false;
    };
    let item = name.rsplit("::").next().unwrap_or(name);
    let item = item.trim_end_matches("()");
    let keyword = [
        "fn", "struct", "enum", "const", "type", "trait", "mod", "static",
    ]
    .iter()
    .any(|kw| {
        let wanted = format!("{kw} {item}");
        text.match_indices(&wanted).any(|(at, m)| {
            let next = text[at + m.len()..].chars().next();
            !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    });
    keyword
        || text.lines().any(|line| {
            let line = line.trim_start();
            [",", "(", " {", " ="]
                .iter()
                .any(|end| line.starts_with(&format!("{item}{end}")))
        })
}

/// Every Markdown link in `doc` whose target starts with `prefix`
/// (relative to the document in `docs/`): (link text, target without
/// any `#fragment`, line number).
pub fn links<'a>(doc: &'a str, prefix: &str) -> Vec<(&'a str, &'a str, usize)> {
    let mut out = Vec::new();
    for (n, line) in doc.lines().enumerate() {
        let mut rest = line;
        while let Some(open) = rest.find("](") {
            let before = &rest[..open];
            let text = before.rfind('[').map_or("", |s| &before[s + 1..]);
            let after = &rest[open + 2..];
            let Some(close) = after.find(')') else { break };
            let target = after[..close].split('#').next().unwrap_or("");
            if target.starts_with(prefix) {
                out.push((text, target, n + 1));
            }
            rest = &after[close..];
        }
    }
    out
}

/// Problems with the links from a document in `docs/` into the code: a
/// file that does not exist, or a link written as code
/// (`` [`name`](file) ``) whose file defines no item of that name (unless
/// `name` is the file's own name).
pub fn broken_links(doc: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for prefix in [
        "../src/",
        "../tests/",
        "../fuzz/",
        "../examples/",
        "../scripts/",
    ] {
        for (text, target, line) in links(doc, prefix) {
            let file = Path::new(&target[3..]);
            if !root().join(file).exists() {
                problems.push(format!("line {line}: {target} does not exist"));
                continue;
            }
            let Some(name) = text.strip_prefix('`').and_then(|t| t.strip_suffix('`')) else {
                continue;
            };
            // `[`frame_header`](…/frame_header.rs)` names the file itself.
            let is_path = name.contains('/')
                || name.ends_with(".rs")
                || file.file_stem().is_some_and(|stem| stem == name);
            if !is_path && file.extension().is_some_and(|e| e == "rs") && !defines(file, name) {
                problems.push(format!("line {line}: {target} defines no `{name}`"));
            }
        }
    }
    problems
}
