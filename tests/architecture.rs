//! The house rules, checked on the source text: arrows run one way (sans-IO cores ftp, tftp, tls <- config <-
//! io/server), the cores do no IO, FTP's and TFTP's io never import each other, and no files
//! of `src/` import each other in a circle. Each rule is also shown to fail on a bad sample.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The sans-IO cores: FTP and TFTP protocol rules, and the TLS adapter FTPS runs through.
const CORES: [&str; 3] = ["ftp", "tftp", "tls"];

/// Leaf modules with no IO that the protocol cores may use.
const CORE_LEAVES: &[&str] = &["calendar", "file_error"];

/// Paths a protocol core may not name: crates that do IO or run things, and the parts of std
/// that touch the outside world or read a clock (`now` is passed in).
const CORE_FORBIDDEN: &[&str] = &[
    "tokio::",
    "tokio_uring::",
    "io_uring::",
    "nix::",
    "libc::",
    "socket2::",
    "caps::",
    "figment::",
    "tracing_subscriber::",
    "tracing_journald::",
    "argon2::",
    "clap::",
    "toml::",
    "std::fs",
    "std::process",
    "std::thread",
    "std::env",
    "std::os::fd",
    "std::os::unix::net",
    "std::os::unix::io",
    "std::os::unix::fs",
    "std::net::TcpListener",
    "std::net::TcpStream",
    "std::net::UdpSocket",
    "std::io::stdin",
    "std::io::stdout",
    "Instant::now()",
    "SystemTime::now()",
    "unsafe ",
];

/// One source file: its module path (`["io", "ftp", "control"]`) and its text without
/// comments and test-only code.
struct Source {
    module: Vec<String>,
    path: PathBuf,
    text: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every non-test `.rs` file below `dir`.
fn sources(dir: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir).expect("below src");
            if path.extension().is_none_or(|e| e != "rs") || is_test_file(rel) {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            out.push(Source { module: module_of(rel), path: rel.to_path_buf(), text: strip(&text) });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn is_test_file(rel: &Path) -> bool {
    let name = rel.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    name == "tests" || name.ends_with("_tests") || rel.components().any(|c| c.as_os_str() == "tests")
}

/// `io/ftp/mod.rs` -> `["io", "ftp"]`; `lib.rs` and `main.rs` -> `[]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> =
        rel.with_extension("").components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        parts.clear();
    }
    parts
}

/// Drops line comments and `#[cfg(test)]` items (a module body, a function), so only code
/// that ships is judged.
fn strip(text: &str) -> String {
    let no_comments: String = text
        .lines()
        .map(|l| match l.find("//") {
            // `//` inside a string literal would be cut too; no rule here looks at strings.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::with_capacity(no_comments.len());
    let mut rest = no_comments.as_str();
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        // The item ends at its `;` (`mod tests;`) or at the brace closing its body.
        let (semi, brace) = (after.find(';'), after.find('{'));
        let end = match (semi, brace) {
            (Some(s), Some(b)) if s < b => s + 1,
            (_, Some(b)) => matching_brace(after, b),
            (Some(s), None) => s + 1,
            (None, None) => after.len(),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn matching_brace(text: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i + 1;
                }
            }
            _ => {}
        }
    }
    text.len()
}

/// The modules a file names through `crate::a::b`, `super::x` or `use child::`, resolved to
/// the longest known module path.
fn imports(src: &Source, known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    let text = &src.text;
    let bytes = text.as_bytes();
    for head in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(head).map(|i| i + from) {
            from = at + head.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let mut base: Vec<String> = if head == "crate::" {
                Vec::new()
            } else {
                // `super` of a.rs or a/mod.rs is a's parent.
                src.module[..src.module.len().saturating_sub(1)].to_vec()
            };
            let (path, brace) = path_at(&text[from..]);
            let mut tail = path.as_slice();
            while tail.first().is_some_and(|t| t == "super") {
                base.pop();
                tail = &tail[1..];
            }
            let full: Vec<String> = base.iter().cloned().chain(tail.iter().cloned()).collect();
            found.extend(resolve(known, &full));
            for item in brace {
                let mut child = full.clone();
                child.push(item);
                found.extend(resolve(known, &child));
            }
        }
    }
    // `use child::Item` inside a module names its child's file.
    for line in text.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("use ") {
            let first = rest.split("::").next().unwrap_or("").trim();
            let mut child = src.module.clone();
            child.push(first.to_string());
            if known.contains(&child) {
                found.insert(child);
            }
        }
    }
    found.remove(&src.module);
    found.remove(&Vec::new());
    found
}

/// Reads `a::b::{c, d::e}` into (["a", "b"], ["c", "d"]).
fn path_at(text: &str) -> (Vec<String>, Vec<String>) {
    let mut path = Vec::new();
    let mut rest = text;
    loop {
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        path.push(rest[..end].to_string());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => return (path, Vec::new()),
        }
    }
    let brace = rest
        .strip_prefix('{')
        .and_then(|r| r.find('}').map(|e| &r[..e]))
        .map(|inner| {
            inner
                .split(',')
                .filter_map(|i| {
                    i.trim().split("::").next().map(|s| s.split(' ').next().unwrap_or("").to_string())
                })
                .filter(|i| !i.is_empty() && i != "self")
                .collect()
        })
        .unwrap_or_default();
    (path, brace)
}

fn resolve(known: &BTreeSet<Vec<String>>, parts: &[String]) -> Option<Vec<String>> {
    (1..=parts.len()).rev().map(|k| parts[..k].to_vec()).find(|p| known.contains(p))
}

/// Groups of files that import each other in a circle (Tarjan's strongly connected
/// components). An arrow from a child to its ancestor (`super::Item` of a `mod.rs` that only
/// declares and re-exports) is not counted.
fn circles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        out: Vec<Vec<Vec<String>>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a Vec<String>) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            let edges = self.edges;
            for w in edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    group.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    self.out.push(group);
                }
            }
        }
    }
    let mut t =
        Tarjan { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), out: Vec::new() };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out
}

fn arrows(files: &[Source]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let known: BTreeSet<Vec<String>> = files.iter().map(|s| s.module.clone()).collect();
    files
        .iter()
        .map(|s| {
            let targets = imports(s, &known)
                .into_iter()
                .filter(|t| !(t.len() < s.module.len() && s.module.starts_with(t)));
            (s.module.clone(), targets.collect())
        })
        .collect()
}

/// True when `text` has `word` not glued to a longer identifier (`unix::` is not `nix::`).
fn names(text: &str, word: &str) -> bool {
    text.match_indices(word)
        .any(|(i, _)| !text[..i].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_'))
}

fn starts(module: &[String], prefix: &[&str]) -> bool {
    module.len() >= prefix.len() && module.iter().zip(prefix).all(|(a, b)| a == b)
}

/// What `src` breaks of the arrow rules, one line per offence.
fn arrow_offences(files: &[Source]) -> Vec<String> {
    let mut bad = Vec::new();
    let edges = arrows(files);
    for src in files {
        let m = &src.module;
        let show = src.path.display();
        let targets = &edges[m];
        let core = CORES.into_iter().find(|c| starts(m, &[c]));
        if let Some(own) = core {
            for t in targets {
                let top = t[0].as_str();
                if top != own && !CORE_LEAVES.contains(&top) {
                    bad.push(format!("{show}: the {own} core imports crate::{}", t.join("::")));
                }
            }
            for word in CORE_FORBIDDEN {
                if names(&src.text, word) {
                    bad.push(format!("{show}: the {own} core names `{}`", word.trim()));
                }
            }
        }
        if CORE_LEAVES.iter().any(|l| starts(m, &[l])) {
            for t in targets {
                bad.push(format!("{show}: leaf module imports crate::{}", t.join("::")));
            }
        }
        if starts(m, &["config"]) {
            for t in targets.iter().filter(|t| t[0] != "config" && !CORES.contains(&t[0].as_str())) {
                if !CORE_LEAVES.contains(&t[0].as_str()) {
                    bad.push(format!(
                        "{show}: config imports crate::{} (config sits below io)",
                        t.join("::")
                    ));
                }
            }
        }
        for (mine, other) in [("ftp", "tftp"), ("tftp", "ftp")] {
            if starts(m, &["io", mine]) && targets.iter().any(|t| starts(t, &["io", other])) {
                bad.push(format!("{show}: io/{mine} imports io/{other} (only io/worker.rs knows both)"));
            }
        }
        if starts(m, &["io", "ring"]) || starts(m, &["io", "context"]) {
            for t in targets.iter().filter(|t| starts(t, &["io", "ftp"]) || starts(t, &["io", "tftp"])) {
                bad.push(format!("{show}: the protocol-free io floor imports crate::{}", t.join("::")));
            }
        }
    }
    for group in circles(&edges) {
        let names: Vec<String> = group.iter().map(|m| m.join("/")).collect();
        bad.push(format!("import circle: {}", names.join(", ")));
    }
    bad
}

#[test]
fn arrows_run_one_way_and_cores_do_no_io() {
    let files = sources(&src_dir());
    assert!(files.len() > 50, "found only {} source files under src/", files.len());
    let bad = arrow_offences(&files);
    assert!(bad.is_empty(), "architecture rules broken:\n{}", bad.join("\n"));
}

fn sample(path: &str, text: &str) -> Source {
    Source { module: module_of(Path::new(path)), path: PathBuf::from(path), text: strip(text) }
}

/// A small tree that obeys every rule; each bad sample below adds one offence to it.
fn good_tree() -> Vec<Source> {
    vec![
        sample("lib.rs", "pub mod config; pub mod ftp; pub mod io; pub mod calendar; pub mod tls;"),
        sample("calendar.rs", "pub fn civil() {}"),
        sample("ftp/mod.rs", "pub mod session; pub use session::Session;"),
        sample(
            "ftp/session.rs",
            "use super::mod_item; use crate::calendar::civil;\n#[cfg(test)]\nmod tests { use crate::config::X; }",
        ),
        sample("config/mod.rs", "use crate::ftp::Session; use crate::tls::TlsServer;"),
        sample("tls/mod.rs", "pub mod conn; use crate::calendar::civil;"),
        sample("tls/conn.rs", "use super::store::Store; use rustls::ServerConnection;"),
        sample("io/mod.rs", "pub mod ftp; pub mod tftp; pub mod ring;"),
        sample("io/ftp/mod.rs", "use crate::io::ring::ops; use crate::config::Config;"),
        sample("io/tftp/mod.rs", "use crate::io::ring::ops;"),
        sample("io/ring/mod.rs", "pub mod ops;"),
        sample("io/ring/ops.rs", "pub fn op() {}"),
    ]
}

fn offences_with(extra: Source) -> Vec<String> {
    let mut tree: Vec<Source> = good_tree().into_iter().filter(|s| s.path != extra.path).collect();
    tree.push(extra);
    arrow_offences(&tree)
}

#[test]
fn the_checker_passes_a_good_tree_and_fails_each_offence() {
    assert_eq!(arrow_offences(&good_tree()), Vec::<String>::new());
    let cases = [
        ("ftp/session.rs", "use crate::config::ftp::Permission;", "the ftp core imports crate::config"),
        ("ftp/session.rs", "use crate::io::ring::ops;", "the ftp core imports crate::io"),
        ("ftp/session.rs", "fn f() { let t = std::time::Instant::now(); }", "names `Instant::now()`"),
        ("ftp/session.rs", "use tokio::net::TcpStream;", "names `tokio::`"),
        ("tftp/request.rs", "fn f() { nix::unistd::getpid(); }", "names `nix::`"),
        ("tls/conn.rs", "use crate::io::ring::ops;", "the tls core imports crate::io"),
        ("tls/conn.rs", "use crate::ftp::Session;", "the tls core imports crate::ftp"),
        ("tls/conn.rs", "fn f() { std::fs::read(\"cert.pem\"); }", "the tls core names `std::fs`"),
        ("ftp/session.rs", "fn f() { std::fs::read(\"x\"); }", "names `std::fs`"),
        ("config/mod.rs", "use crate::io::ring::ops::op;", "config imports crate::io"),
        ("io/ftp/mod.rs", "use crate::io::tftp::X;", "io/ftp imports io/tftp"),
        ("io/ring/ops.rs", "use crate::io::ftp::X;", "protocol-free io floor"),
        ("calendar.rs", "use crate::ftp::Session;", "leaf module imports"),
        ("io/ring/mod.rs", "pub mod ops; use crate::io::ftp::Y;", "protocol-free io floor"),
    ];
    for (path, text, expect) in cases {
        let bad = offences_with(sample(path, text));
        assert!(
            bad.iter().any(|b| b.contains(expect)),
            "{path} with `{text}`: expected `{expect}`, got {bad:?}"
        );
    }
    // A circle between two io files.
    let mut tree = good_tree();
    tree.retain(|s| s.path != Path::new("io/tftp/mod.rs") && s.path != Path::new("io/ring/ops.rs"));
    tree.push(sample("io/tftp/mod.rs", "use crate::io::ring::ops;"));
    tree.push(sample("io/ring/ops.rs", "use crate::io::tftp::Z;"));
    let bad = arrow_offences(&tree);
    assert!(bad.iter().any(|b| b.starts_with("import circle")), "circle not found: {bad:?}");
}

#[test]
fn unit_tests_follow_one_file_convention() {
    // Short tests inline in `mod tests { }`, long ones in a child file reached by a plain
    // `mod tests;`: a `#[path]` attribute hides where a module lives.
    let mut stack = vec![src_dir()];
    let mut bad = Vec::new();
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && std::fs::read_to_string(&path).expect("read").contains("#[path")
            {
                bad.push(path.display().to_string());
            }
        }
    }
    assert!(bad.is_empty(), "#[path] attributes in: {bad:?}");
}
