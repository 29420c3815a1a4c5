//! The shape of the code, checked on every `cargo test`: the rules a
//! reader relies on when they open `src/` (the README's "The code, mapped
//! to the RFC" draws the layers).
//!
//! - **Layers point down**: `proto` (the sans-I/O codec) names nothing of
//!   tokio, the transport or the chat; `transport` names nothing of the
//!   chat; inside the chat, the hub (rooms, members, fan-out) names nothing
//!   of Redis: it reaches where messages live through its backend seam.
//! - **No import cycle**: among the modules inside any one module, the
//!   "uses something of" relation has no cycle. A child using its parent's
//!   items (`super::Foo`) is containment, not a cycle; two siblings that
//!   use each other (directly, or through others) are.
//! - **No file over 700 lines of code** (blank lines, comments and
//!   `#[cfg(test)]` items not counted): past that a file is doing more
//!   than one job.
//!
//! Sources are parsed with `syn`, so paths in strings or comments don't
//! count and `use` trees are read as the compiler reads them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The most lines of code one file in `src/` may hold.
const MAX_CODE_LINES: usize = 700;

/// A module path inside the library, e.g. `["chat", "hub"]`; the crate root
/// is `[]`. `src/main.rs` (the binary) is a root of its own, `["main"]`.
type ModPath = Vec<String>;

/// One source file and what it refers to.
struct Source {
    module: ModPath,
    file: PathBuf,
    /// Absolute paths (crate-relative segments) this file names, outside
    /// `#[cfg(test)]` items.
    paths: BTreeSet<Vec<String>>,
    /// First segments of paths that leave the crate (`tokio`, `redis`, …).
    external: BTreeSet<String>,
    /// Every identifier, lower-cased, outside `#[cfg(test)]` items.
    idents: BTreeSet<String>,
    code_lines: usize,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    files.iter().map(|f| read(&root, f)).collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/chat/hub.rs` → `chat::hub`, `src/chat/mod.rs` → `chat`.
fn module_of(root: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(root).expect("under src/");
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.last().map(String::as_str) {
        Some("lib") | Some("mod") => {
            parts.pop();
        }
        _ => {}
    }
    parts
}

fn read(root: &Path, file: &Path) -> Source {
    let text = fs::read_to_string(file).expect("a readable source file");
    let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let module = module_of(root, file);
    let mut walker = Walker {
        module: module.clone(),
        children: ast
            .items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Mod(m) => Some(m.ident.to_string()),
                _ => None,
            })
            .collect(),
        paths: BTreeSet::new(),
        external: BTreeSet::new(),
        idents: BTreeSet::new(),
        test_spans: Vec::new(),
    };
    walker.visit_file(&ast);
    let code_lines = count_code_lines(&text, &walker.test_spans);
    Source {
        module,
        file: file
            .strip_prefix(root.parent().expect("src/ has a parent"))
            .expect("under the crate")
            .to_path_buf(),
        paths: walker.paths,
        external: walker.external,
        idents: walker.idents,
        code_lines,
    }
}

/// Collects the paths and identifiers of one file, skipping `#[cfg(test)]`.
struct Walker {
    module: ModPath,
    /// Modules declared in this file (`mod x;`): a bare `x::y` means them.
    children: BTreeSet<String>,
    paths: BTreeSet<Vec<String>>,
    external: BTreeSet<String>,
    idents: BTreeSet<String>,
    /// Line ranges (1-based, inclusive) of `#[cfg(test)]` items.
    test_spans: Vec<(usize, usize)>,
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

impl Walker {
    /// Resolves a path as written in this file to crate-absolute segments,
    /// or records it as external.
    fn resolve(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else {
            return;
        };
        let binary = self.module.first().is_some_and(|m| m == "main");
        let absolute: Vec<String> = match first.as_str() {
            "crate" if binary => std::iter::once("main".to_string())
                .chain(segments[1..].iter().cloned())
                .collect(),
            "crate" => segments[1..].to_vec(),
            "rfc6455" => segments[1..].to_vec(),
            "self" => self.module.iter().chain(&segments[1..]).cloned().collect(),
            "super" => {
                let mut base = self.module.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                base.into_iter().chain(rest.iter().cloned()).collect()
            }
            name if self.children.contains(name) => {
                self.module.iter().chain(segments).cloned().collect()
            }
            name if segments.len() > 1 && name.chars().next().is_some_and(char::is_lowercase) => {
                self.external.insert(name.to_string());
                return;
            }
            _ => return,
        };
        self.paths.insert(absolute);
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix.clone();
                if n.ident != "self" {
                    full.push(n.ident.to_string());
                }
                // `use tokio;` alone is a path of one segment.
                if full.len() == 1 && !["crate", "self", "super"].contains(&full[0].as_str()) {
                    self.external.insert(full[0].clone());
                } else {
                    self.resolve(&full);
                }
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                full.push(r.ident.to_string());
                self.resolve(&full);
            }
            syn::UseTree::Glob(_) => {
                let full = prefix.clone();
                self.resolve(&full);
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    fn skip(&mut self, attrs: &[syn::Attribute], span: proc_macro2::Span) -> bool {
        if is_cfg_test(attrs) {
            self.test_spans.push((span.start().line, span.end().line));
            return true;
        }
        false
    }
}

impl<'ast> Visit<'ast> for Walker {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Trait(t) => &t.attrs,
            syn::Item::Type(t) => &t.attrs,
            syn::Item::Macro(m) => &m.attrs,
            _ => &[],
        };
        if self.skip(attrs, syn::spanned::Spanned::span(item)) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if self.skip(&f.attrs, syn::spanned::Spanned::span(f)) {
            return;
        }
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve(&segments);
        syn::visit::visit_path(self, path);
    }

    fn visit_ident(&mut self, ident: &'ast proc_macro2::Ident) {
        self.idents.insert(ident.to_string().to_lowercase());
    }
}

/// Lines that are neither blank nor only a comment, outside `skip`.
fn count_code_lines(text: &str, skip: &[(usize, usize)]) -> usize {
    let mut in_block = false;
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let s = line.trim();
        if in_block {
            in_block = !s.contains("*/");
            continue;
        }
        if s.starts_with("/*") {
            in_block = !s.contains("*/");
            continue;
        }
        if s.is_empty() || s.starts_with("//") {
            continue;
        }
        if skip.iter().any(|&(a, b)| (a..=b).contains(&number)) {
            continue;
        }
        n += 1;
    }
    n
}

/// The longest prefix of `path` that is a module.
fn module_named<'a>(modules: &'a BTreeSet<ModPath>, path: &[String]) -> Option<&'a ModPath> {
    (0..=path.len()).rev().find_map(|k| modules.get(&path[..k]))
}

fn is_within(module: &[String], ancestor: &[String]) -> bool {
    module.len() >= ancestor.len() && module[..ancestor.len()] == *ancestor
}

fn display(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Edges between the children of each module: `a::b::c` using `a::d::e`
/// is the edge `b → d` inside `a`.
fn sibling_edges(sources: &[Source]) -> BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> {
    let modules: BTreeSet<ModPath> = sources.iter().map(|s| s.module.clone()).collect();
    let mut graph: BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    // A `tests.rs` is a `#[cfg(test)] mod tests;`: it may reach anywhere.
    for s in sources
        .iter()
        .filter(|s| s.module.last().is_none_or(|m| m != "tests"))
    {
        for path in &s.paths {
            let Some(target) = module_named(&modules, path) else {
                continue;
            };
            let common = s
                .module
                .iter()
                .zip(target)
                .take_while(|(a, b)| a == b)
                .count();
            // One contains the other: a child using its parent, or a
            // parent naming its child.
            if common == s.module.len() || common == target.len() {
                continue;
            }
            graph
                .entry(s.module[..common].to_vec())
                .or_default()
                .entry(s.module[common].clone())
                .or_default()
                .insert(target[common].clone());
        }
    }
    graph
}

/// A cycle in `edges`, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn dfs(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = stack.iter().position(|n| n == next).expect("on the stack");
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = dfs(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node.as_str())
            && let Some(c) = dfs(node, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn within<'a>(sources: &'a [Source], layer: &[&str]) -> impl Iterator<Item = &'a Source> {
    let layer: Vec<String> = layer.iter().map(|s| s.to_string()).collect();
    sources.iter().filter(move |s| is_within(&s.module, &layer))
}

#[test]
fn the_module_graph_has_no_cycle() {
    let sources = sources();
    let graph = sibling_edges(&sources);
    // The graph itself, for `cargo test --test architecture -- --nocapture`.
    for (parent, edges) in &graph {
        for (from, to) in edges {
            let to: Vec<&str> = to.iter().map(String::as_str).collect();
            println!("inside {}: {from} → {}", display(parent), to.join(", "));
        }
    }
    let cycles: Vec<String> = graph
        .iter()
        .filter_map(|(parent, edges)| {
            find_cycle(edges).map(|c| format!("inside {}: {}", display(parent), c.join(" → ")))
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle() {
    // The detector itself: a → b → c → a is found, a → b, a → c is not.
    let edges = |pairs: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            m.entry(a.to_string()).or_default().insert(b.to_string());
        }
        m
    };
    let cycle = find_cycle(&edges(&[("a", "b"), ("b", "c"), ("c", "a")]));
    assert_eq!(cycle.map(|c| c.len()), Some(4));
    assert_eq!(
        find_cycle(&edges(&[("a", "b"), ("a", "c"), ("b", "c")])),
        None
    );
}

#[test]
fn layers_point_down() {
    let sources = sources();
    let mut wrong = Vec::new();
    for s in within(&sources, &["proto"]) {
        for crate_name in ["tokio", "futures", "futures_util"] {
            if s.external.contains(crate_name) {
                wrong.push(format!("{}: proto names {crate_name}", s.file.display()));
            }
        }
        for path in &s.paths {
            if path
                .first()
                .is_some_and(|p| p == "transport" || p == "chat")
            {
                wrong.push(format!(
                    "{}: proto names {}",
                    s.file.display(),
                    path.join("::")
                ));
            }
        }
    }
    for s in within(&sources, &["transport"]) {
        for path in &s.paths {
            if path.first().is_some_and(|p| p == "chat") {
                wrong.push(format!(
                    "{}: transport names {}",
                    s.file.display(),
                    path.join("::")
                ));
            }
        }
    }
    for s in within(&sources, &["chat", "hub"]) {
        if s.external.contains("redis") {
            wrong.push(format!(
                "{}: the hub uses the redis crate",
                s.file.display()
            ));
        }
        for ident in &s.idents {
            if ident.contains("redis") || ident.contains("cluster") {
                wrong.push(format!("{}: the hub names `{ident}`", s.file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "layers that point the wrong way:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_file_is_over_700_lines_of_code() {
    let sources = sources();
    let long: Vec<String> = sources
        .iter()
        .filter(|s| s.code_lines > MAX_CODE_LINES)
        .map(|s| format!("{}: {} lines of code", s.file.display(), s.code_lines))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_CODE_LINES} lines of code:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_walker_resolves_paths_as_the_compiler_does() {
    let text = "use super::outbox::Outbox; use crate::proto::{self, Role}; \
                use tokio::sync::mpsc; mod inner; fn f() { inner::g(); std::mem::drop(1); }";
    let ast = syn::parse_file(text).expect("valid Rust");
    let mut w = Walker {
        module: vec!["chat".into(), "session".into()],
        children: ["inner".to_string()].into(),
        paths: BTreeSet::new(),
        external: BTreeSet::new(),
        idents: BTreeSet::new(),
        test_spans: Vec::new(),
    };
    w.visit_file(&ast);
    let paths: BTreeSet<String> = w.paths.iter().map(|p| p.join("::")).collect();
    for expected in [
        "chat::outbox::Outbox",
        "proto",
        "proto::Role",
        "chat::session::inner::g",
    ] {
        assert!(
            paths.contains(expected),
            "{expected} missing from {paths:?}"
        );
    }
    assert!(w.external.contains("tokio") && w.external.contains("std"));
}
