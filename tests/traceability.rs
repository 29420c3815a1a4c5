//! `docs/RFC6455.md` maps every requirement of RFC 6455 §4–§11 and RFC 7692
//! to the code that enforces it and the tests that prove it. This test
//! keeps the map honest: every file, function and test it names must
//! exist, every MUST row must have evidence (a test, an Autobahn case, or a
//! stated reason), and every section of RFC 6455 §4–§10 that holds a MUST
//! must have a row.

#[path = "doclinks/mod.rs"]
mod doclinks;

use std::path::Path;

const DOC: &str = include_str!("../docs/RFC6455.md");

/// The header every requirement table starts with.
const HEADER: &str = "| § | level | role | requirement | code | tests | Autobahn | status |";

/// The sections of RFC 6455 §4–§10 and of RFC 7692 whose text holds a MUST
/// or MUST NOT (read off the RFCs; §5.5.3's is a lower-case "must"). Each
/// needs at least one row.
const SECTIONS_WITH_A_MUST: &[&str] = &[
    "4.1",
    "4.2.1",
    "4.2.2",
    "4.3",
    "4.4",
    "5.1",
    "5.2",
    "5.3",
    "5.4",
    "5.5",
    "5.5.1",
    "5.5.2",
    "5.5.3",
    "5.6",
    "5.8",
    "6.1",
    "6.2",
    "7.1.2",
    "7.1.7",
    "7.2.1",
    "7.2.2",
    "7.4.1",
    "8.1",
    "9",
    "9.1",
    "10.3",
    "10.4",
    "10.6",
    "10.7",
    "7692 §5",
    "7692 §5.1",
    "7692 §6",
    "7692 §7",
    "7692 §7.1.1.1",
    "7692 §7.1.1.2",
    "7692 §7.1.2.1",
    "7692 §7.1.2.2",
    "7692 §7.2.1",
    "7692 §7.2.2",
];

/// One row of a requirement table.
#[derive(Debug)]
struct Row<'a> {
    line: usize,
    section: &'a str,
    level: &'a str,
    role: &'a str,
    code: &'a str,
    tests: &'a str,
    autobahn: &'a str,
    status: &'a str,
}

/// The rows of every requirement table in `doc`, or the lines that are
/// not well-formed rows.
fn rows(doc: &str) -> (Vec<Row<'_>>, Vec<String>) {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut in_table = false;
    for (n, line) in doc.lines().enumerate() {
        let line_no = n + 1;
        if line.trim() == HEADER {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let [section, level, role, _words, code, tests, autobahn, status] = cells[..] else {
            problems.push(format!(
                "line {line_no}: a row needs 8 cells, has {}",
                cells.len()
            ));
            continue;
        };
        rows.push(Row {
            line: line_no,
            section,
            level,
            role,
            code,
            tests,
            autobahn,
            status,
        });
    }
    (rows, problems)
}

/// The backticked references in a cell (`path` or `path::Item::fn`).
fn references(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Whether `file` has `fn name` (a test is always a function).
fn has_fn(file: &Path, name: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(doclinks::root().join(file)) else {
        return false;
    };
    let wanted = format!("fn {name}");
    text.match_indices(&wanted).any(|(at, m)| {
        let next = text[at + m.len()..].chars().next();
        !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// A reference's problem, if it has one: a missing file, or an item the
/// file does not define (for tests: no `fn` of that name).
fn check_reference(reference: &str, is_test: bool) -> Option<String> {
    let (path, item) = match reference.split_once("::") {
        Some((path, item)) => (path, Some(item)),
        None => (reference, None),
    };
    let file = Path::new(path);
    if !doclinks::root().join(file).exists() {
        return Some(format!("`{reference}`: {path} does not exist"));
    }
    let item = item?;
    let found = if is_test {
        has_fn(file, item)
    } else {
        doclinks::defines(file, item)
    };
    (!found).then(|| {
        let what = if is_test { "test" } else { "item" };
        format!("`{reference}`: {path} has no {what} `{item}`")
    })
}

/// Whether an Autobahn cell is `—` or a list of cases: `all`, `7.1.3`,
/// `9.*`, `5.9–5.20`, each maybe followed by a role in parentheses.
fn autobahn_cell_is_valid(cell: &str) -> bool {
    if cell == "—" {
        return true;
    }
    let case = |s: &str| {
        s == "all"
            || s.split('.').enumerate().all(|(i, part)| {
                (part == "*" && i > 0)
                    || (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            })
    };
    cell.split(", ").all(|item| {
        let item = match item.split_once(" (") {
            Some((cases, role)) if role.ends_with(" role)") => cases,
            Some(_) => return false,
            None => item,
        };
        item.split('–').all(case)
    })
}

/// The section a row's § cell names, without the item it may add:
/// `4.1 item 2` is `4.1`, `7692 §7.1.2.1` stays as it is.
fn section_of(cell: &str) -> String {
    match cell.strip_prefix("7692 §") {
        Some(rest) => format!("7692 §{}", rest.split(' ').next().unwrap_or("")),
        None => cell.split(' ').next().unwrap_or("").to_owned(),
    }
}

/// Every problem with the matrix in `doc`.
fn problems(doc: &str) -> Vec<String> {
    let (rows, mut problems) = rows(doc);
    for row in &rows {
        let at = |what: String| format!("line {} (§{}): {what}", row.line, row.section);
        if !["MUST", "MUST NOT", "SHOULD", "SHOULD NOT"].contains(&row.level) {
            problems.push(at(format!(
                "level `{}` is not a requirement keyword",
                row.level
            )));
        }
        if ![
            "client",
            "server",
            "both",
            "intermediary",
            "extension author",
        ]
        .contains(&row.role)
        {
            problems.push(at(format!("role `{}` is not one of ours", row.role)));
        }
        for reference in references(row.code) {
            problems.extend(check_reference(reference, false).map(&at));
        }
        let tests = references(row.tests);
        for reference in &tests {
            problems.extend(check_reference(reference, true).map(&at));
        }
        if !autobahn_cell_is_valid(row.autobahn) {
            problems.push(at(format!(
                "Autobahn cell `{}` is not a list of cases",
                row.autobahn
            )));
        }
        let reason = row.status.split_once(": ").map(|(_, why)| why);
        let status = row.status.split([':', ' ']).next().unwrap_or("");
        let known = ["followed", "partly", "not", "n/a"];
        if !known.contains(&status) || (status != "followed" && reason.is_none()) {
            problems.push(at(format!(
                "status `{}` is not `followed`, or `partly:`/`not followed:`/`n/a:` with a reason",
                row.status
            )));
        }
        let enforced = matches!(status, "followed" | "partly");
        if enforced && references(row.code).is_empty() {
            problems.push(at("followed, but no code site is named".to_owned()));
        }
        let must = row.level.starts_with("MUST");
        if must && tests.is_empty() && row.autobahn == "—" && reason.is_none() {
            problems.push(at(
                "a MUST row with no test, no Autobahn case and no stated reason".to_owned(),
            ));
        }
    }
    for section in SECTIONS_WITH_A_MUST {
        let covered = rows
            .iter()
            .any(|r| r.level.starts_with("MUST") && section_of(r.section) == *section);
        if !covered {
            problems.push(format!("§{section} holds a MUST but has no MUST row"));
        }
    }
    problems
}

#[test]
fn every_row_of_the_matrix_names_code_and_tests_that_exist() {
    let found = problems(DOC);
    assert!(found.is_empty(), "docs/RFC6455.md:\n{}", found.join("\n"));
}

#[test]
fn the_matrix_has_its_rows() {
    // Guards the parser: a table it silently skipped would pass the test
    // above with nothing checked.
    let (rows, _) = rows(DOC);
    assert!(rows.len() > 130, "only {} rows parsed", rows.len());
    let musts = rows.iter().filter(|r| r.level.starts_with("MUST")).count();
    assert!(musts > 100, "only {musts} MUST rows");
}

#[test]
fn a_broken_row_is_reported() {
    let doc = format!(
        "{HEADER}\n|---|---|---|---|---|---|---|---|\n\
         | 5.1 | MUST | client | mask | `src/proto/frame.rs::FrameHeader::gone` | `src/proto/frame.rs::no_such_test` | — | followed |\n\
         | 5.2 | MUST | both | bits | `src/proto/frame.rs::FrameHeader::parse` | — | — | followed |\n\
         | 5.3 | MAY | nobody | key | `src/nowhere.rs` | — | 1.x | maybe |\n"
    );
    let found = problems(&doc);
    for expected in [
        "line 3 (§5.1): `src/proto/frame.rs::FrameHeader::gone`: src/proto/frame.rs has no item `FrameHeader::gone`",
        "line 3 (§5.1): `src/proto/frame.rs::no_such_test`: src/proto/frame.rs has no test `no_such_test`",
        "line 4 (§5.2): a MUST row with no test, no Autobahn case and no stated reason",
        "line 5 (§5.3): level `MAY` is not a requirement keyword",
        "line 5 (§5.3): role `nobody` is not one of ours",
        "line 5 (§5.3): `src/nowhere.rs`: src/nowhere.rs does not exist",
        "line 5 (§5.3): Autobahn cell `1.x` is not a list of cases",
        "§4.1 holds a MUST but has no MUST row",
    ] {
        assert!(
            found.iter().any(|p| p == expected),
            "missing {expected:?} in {found:#?}"
        );
    }
    assert!(
        !found.iter().any(|p| p.starts_with("§5.1 ")),
        "§5.1 has a row"
    );
}

#[test]
fn every_link_into_the_code_exists() {
    // This page, and docs/FUZZING.md, which names every fuzz target.
    for (name, doc) in [
        ("docs/RFC6455.md", DOC),
        ("docs/FUZZING.md", include_str!("../docs/FUZZING.md")),
    ] {
        let broken = doclinks::broken_links(doc);
        assert!(broken.is_empty(), "{name}:\n{}", broken.join("\n"));
    }
}
