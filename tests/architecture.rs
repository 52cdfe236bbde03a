//! The layering of `src/`, checked from the source text: no two files import each other in a
//! circle, `nn` imports nothing above it, nothing but `http` (and the binary) imports `http`,
//! `serving` knows nothing of axum or hyper, and `http` holds no `unsafe` and no batching.
//!
//! How the file graph is made: every `.rs` file under `src/` is a module (`src/a/b.rs` and
//! `src/a/b/mod.rs` are `crate::a::b`; an inline `mod x { … }` belongs to its file). Comments,
//! strings and character literals are blanked, then every path that starts with `crate::`,
//! `super::` or `self::` — in `use` trees (braces expanded) and in code alike — is resolved to
//! the longest module prefix it names. When the next segment is an item that module re-exports
//! (`pub use …`, `pub(crate) use …`), the path is followed to where the item is defined, so a
//! facade `mod.rs` is not blamed for its children's items. A re-export itself is not an edge,
//! nor is a `mod x;` declaration: a folder's `mod.rs` may define the types its children share
//! and re-export what they define (the usual shape of a Rust module), as long as its own code
//! never calls into a child that imports it. An edge from a file to itself is ignored.
//! Paths through `mlp_lab::` (the binary's and the tests' view) are outside the crate's graph.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// One module of the crate: the file it lives in, and what it re-exports.
#[derive(Debug, Default)]
struct Module {
    file: String,
    /// Name → absolute path (segments after `crate`) of a `pub use` re-export.
    reexports: HashMap<String, Vec<String>>,
    /// Glob re-exports (`pub use x::*`): absolute module paths.
    glob_reexports: Vec<Vec<String>>,
}

/// A `use` or in-code path found in a file, from within module `module`.
#[derive(Debug)]
struct FoundPath {
    module: Vec<String>,
    segments: Vec<String>,
    /// Whether it was a `pub use` (a re-export, followed rather than counted).
    reexport: bool,
    glob: bool,
    line: usize,
}

/// The crate's files, modules and import edges.
#[derive(Debug, Default)]
struct Graph {
    modules: BTreeMap<Vec<String>, Module>,
    /// file → (file it imports → first line that does).
    edges: BTreeMap<String, BTreeMap<String, usize>>,
    /// file → its source with comments and literals blanked.
    code: BTreeMap<String, String>,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `["a", "b"]`; `src/a/mod.rs` → `["a"]`; `src/lib.rs` → `[]`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

/// The source with comments, string literals and character literals replaced by spaces
/// (newlines kept, so line numbers hold).
fn blank(source: &str) -> String {
    let b = source.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let wipe = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
                wipe(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                wipe(&mut out, i, j);
                i = j;
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // A raw string r"…" or r#"…"#: find its hashes, then the closing quote.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let end = b[j + 1..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |p| j + 1 + p + close.len());
                wipe(&mut out, i, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(b.len());
                wipe(&mut out, i, end);
                i = end;
            }
            b'\'' => {
                // A character literal ('a', '\n', '\u{1F600}'), or else a lifetime.
                let end = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .map(|p| i + 2 + p + 1)
                } else {
                    let len = source[i + 1..].chars().next().map_or(1, char::len_utf8);
                    (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 2 + len)
                };
                match end {
                    Some(end) => {
                        wipe(&mut out, i, end);
                        i = end;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8: it only writes spaces over whole literals")
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Punct(&'static str),
}

fn tokens(code: &str) -> Vec<(Token, usize)> {
    let b = code.as_bytes();
    let (mut out, mut i, mut line) = (Vec::new(), 0, 1);
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((Token::Ident(code[start..i].to_owned()), line));
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push((Token::Punct("::"), line));
            i += 2;
        } else {
            let p = match c {
                b'{' => "{",
                b'}' => "}",
                b',' => ",",
                b';' => ";",
                b'*' => "*",
                b'(' => "(",
                b')' => ")",
                b'#' => "#",
                b'[' => "[",
                b']' => "]",
                _ => "",
            };
            if !p.is_empty() {
                out.push((Token::Punct(p), line));
            }
            i += if c.is_ascii() {
                1
            } else {
                code[i..].chars().next().map_or(1, char::len_utf8)
            };
        }
    }
    out
}

fn is(t: Option<&(Token, usize)>, p: &str) -> bool {
    matches!(t, Some((Token::Punct(q), _)) if *q == p)
}

fn ident(t: Option<&(Token, usize)>) -> Option<&str> {
    match t {
        Some((Token::Ident(s), _)) => Some(s),
        _ => None,
    }
}

/// Expands the `use` tree starting at `toks[*i]` (after `use`) into paths; stops after `;`.
fn use_tree(
    toks: &[(Token, usize)],
    i: &mut usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, bool)>,
) {
    let mut path = prefix.to_vec();
    loop {
        match toks.get(*i) {
            Some((Token::Ident(s), _)) if s == "as" => {
                *i += 2; // `as name`: the alias does not change what is imported
            }
            Some((Token::Ident(s), _)) => {
                path.push(s.clone());
                *i += 1;
            }
            Some((Token::Punct("::"), _)) => *i += 1,
            Some((Token::Punct("*"), _)) => {
                out.push((path.clone(), true));
                *i += 1;
                return;
            }
            Some((Token::Punct("{"), _)) => {
                *i += 1;
                loop {
                    use_tree(toks, i, &path, out);
                    match toks.get(*i) {
                        Some((Token::Punct(","), _)) => {
                            *i += 1;
                            if is(toks.get(*i), "}") {
                                *i += 1;
                                return;
                            }
                        }
                        Some((Token::Punct("}"), _)) => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                }
            }
            _ => {
                if path.len() > prefix.len() {
                    out.push((path, false));
                }
                return;
            }
        }
    }
}

/// Every path of `file` (module `base`), with inline modules tracked by brace depth.
fn paths_of(code: &str, base: &[String]) -> Vec<FoundPath> {
    let toks = tokens(code);
    let mut found = Vec::new();
    // (module path, brace depth at which it closes)
    let mut inline: Vec<(Vec<String>, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let current = |inline: &Vec<(Vec<String>, usize)>| {
        inline
            .last()
            .map_or_else(|| base.to_vec(), |(m, _)| m.clone())
    };
    while i < toks.len() {
        let (tok, line) = (&toks[i].0, toks[i].1);
        match tok {
            Token::Punct("{") => {
                depth += 1;
                i += 1;
            }
            Token::Punct("}") => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Token::Ident(k) if k == "mod" => {
                if let (Some(name), true) = (ident(toks.get(i + 1)), is(toks.get(i + 2), "{")) {
                    let mut m = current(&inline);
                    m.push(name.to_owned());
                    depth += 1;
                    inline.push((m, depth));
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Token::Ident(k) if k == "use" => {
                // `pub use`, `pub(crate) use`, `pub(super) use` re-export.
                let reexport = i >= 1
                    && (ident(toks.get(i - 1)) == Some("pub")
                        || (is(toks.get(i - 1), ")")
                            && i >= 4
                            && ident(toks.get(i - 4)) == Some("pub")));
                i += 1;
                let mut trees = Vec::new();
                use_tree(&toks, &mut i, &[], &mut trees);
                for (segments, glob) in trees {
                    found.push(FoundPath {
                        module: current(&inline),
                        segments,
                        reexport,
                        glob,
                        line,
                    });
                }
            }
            // A path in code: from the crate's root, a parent, this module, or (resolved
            // later, when the name is a child module) relative to this module.
            Token::Ident(k)
                if k != "use"
                    && is(toks.get(i + 1), "::")
                    && !(i >= 1 && is(toks.get(i - 1), "::")) =>
            {
                let mut segments = vec![k.clone()];
                let mut j = i + 1;
                while is(toks.get(j), "::") {
                    match ident(toks.get(j + 1)) {
                        Some(s) => segments.push(s.to_owned()),
                        None => break,
                    }
                    j += 2;
                }
                found.push(FoundPath {
                    module: current(&inline),
                    segments,
                    reexport: false,
                    glob: false,
                    line,
                });
                i = j;
            }
            _ => i += 1,
        }
    }
    found
}

/// `path` as seen from `module`, made absolute (segments after `crate`); `None` for a path
/// that leaves the crate (`std::…`, an external crate).
fn absolute(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut at = module.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            at.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                at.pop()?;
                rest = &rest[1..];
            }
        }
        // A path relative to the current module: a child module's name.
        _ => {}
    }
    at.extend(rest.iter().cloned());
    Some(at)
}

impl Graph {
    fn load() -> Self {
        let src = src_dir();
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut graph = Graph::default();
        let mut found: Vec<(String, Vec<FoundPath>)> = Vec::new();
        for path in files {
            let relative = path.strip_prefix(&src).expect("under src/").to_path_buf();
            let name = format!("src/{}", relative.display());
            if name == "src/main.rs" {
                continue; // the binary: it sees the crate as `mlp_lab`, from outside
            }
            let base = module_of(&relative);
            let code = blank(&fs::read_to_string(&path).expect("a source file"));
            let paths = paths_of(&code, &base);
            graph.modules.entry(base.clone()).or_default().file = name.clone();
            for p in &paths {
                // Inline modules live in this file.
                graph
                    .modules
                    .entry(p.module.clone())
                    .or_insert_with(|| Module {
                        file: name.clone(),
                        ..Module::default()
                    });
            }
            graph.code.insert(name.clone(), code);
            found.push((name, paths));
        }
        // Re-exports first: resolving an import follows them.
        for (_, paths) in &found {
            for p in paths.iter().filter(|p| p.reexport) {
                let Some(target) = absolute(&p.module, &p.segments) else {
                    continue;
                };
                let external = !matches!(
                    p.segments.first().map(String::as_str),
                    Some("crate" | "self" | "super")
                ) && !graph.modules.contains_key(&target[..p.module.len() + 1]);
                let module = graph.modules.get_mut(&p.module).expect("registered above");
                if external {
                    // `pub use axum::Json`: outside the crate, so no file of ours.
                    if let Some(name) = target.last() {
                        module.reexports.insert(name.clone(), Vec::new());
                    }
                } else if p.glob {
                    module.glob_reexports.push(target);
                } else if let Some(name) = target.last() {
                    module.reexports.insert(name.clone(), target);
                }
            }
        }
        for (file, paths) in &found {
            for p in paths.iter().filter(|p| !p.reexport) {
                let relative_to_child = !matches!(
                    p.segments.first().map(String::as_str),
                    Some("crate" | "self" | "super")
                );
                let Some(target) = absolute(&p.module, &p.segments) else {
                    continue;
                };
                // A plain `use name::…` only concerns us when `name` is a child module.
                if relative_to_child && !graph.modules.contains_key(&target[..p.module.len() + 1]) {
                    continue;
                }
                if let Some(to) = graph.resolve(&target, 0) {
                    if &to != file {
                        graph
                            .edges
                            .entry(file.clone())
                            .or_default()
                            .entry(to)
                            .or_insert(p.line);
                    }
                }
            }
        }
        graph
    }

    /// The file that defines what `path` (absolute) names.
    fn resolve(&self, path: &[String], hops: usize) -> Option<String> {
        let prefix = (0..=path.len())
            .rev()
            .find(|&n| self.modules.contains_key(&path[..n]))?;
        let module = &self.modules[&path[..prefix]];
        if hops < 8 {
            if let Some(next) = path.get(prefix) {
                if let Some(target) = module.reexports.get(next) {
                    if target.is_empty() {
                        return None; // re-exported from outside the crate
                    }
                    let mut followed = target.clone();
                    followed.extend(path[prefix + 1..].iter().cloned());
                    return self.resolve(&followed, hops + 1);
                }
            }
        }
        Some(module.file.clone())
    }

    /// The files of every import circle (strongly connected component of more than one file).
    fn circles(&self) -> Vec<Vec<String>> {
        // Tarjan's algorithm, iterative over the small graph.
        let nodes: Vec<&String> = self.code.keys().collect();
        let index_of: HashMap<&String, usize> =
            nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let adj: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| {
                self.edges
                    .get(*n)
                    .map(|e| e.keys().filter_map(|t| index_of.get(t).copied()).collect())
                    .unwrap_or_default()
            })
            .collect();
        let n = nodes.len();
        let (mut index, mut low, mut on_stack) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
        let (mut stack, mut next, mut out) = (Vec::new(), 0, Vec::new());
        for start in 0..n {
            if index[start] != usize::MAX {
                continue;
            }
            let mut work = vec![(start, 0usize)];
            while let Some((v, child)) = work.pop() {
                if child == 0 {
                    index[v] = next;
                    low[v] = next;
                    next += 1;
                    stack.push(v);
                    on_stack[v] = true;
                }
                if let Some(&w) = adj[v].get(child) {
                    work.push((v, child + 1));
                    if index[w] == usize::MAX {
                        work.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                if low[v] == index[v] {
                    let mut component = Vec::new();
                    loop {
                        let w = stack.pop().expect("v is on the stack");
                        on_stack[w] = false;
                        component.push(nodes[w].clone());
                        if w == v {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        component.sort();
                        out.push(component);
                    }
                }
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
            }
        }
        out
    }

    /// `file → import (line)` for the edges inside `component`, for the failure message.
    fn describe(&self, component: &[String]) -> String {
        let members: BTreeSet<&String> = component.iter().collect();
        let mut lines = Vec::new();
        for from in component {
            for (to, line) in self.edges.get(from).into_iter().flatten() {
                if members.contains(to) {
                    lines.push(format!("  {from}:{line} imports {to}"));
                }
            }
        }
        lines.join("\n")
    }

    fn files_under<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a String, &'a String)> {
        self.code.iter().filter(move |(f, _)| f.starts_with(dir))
    }
}

/// The top-level layer a file belongs to (`src/http/v2/infer.rs` → `http`).
fn layer(file: &str) -> &str {
    let rest = file.trim_start_matches("src/");
    rest.split(['/', '.']).next().unwrap_or(rest)
}

#[test]
fn no_two_files_of_src_import_each_other_in_a_circle() {
    let graph = Graph::load();
    let circles = graph.circles();
    let report: Vec<String> = circles.iter().map(|c| graph.describe(c)).collect();
    assert!(
        circles.is_empty(),
        "import circles between files of src/ (move the shared item down a layer or into its \
         own file):\n{}",
        report.join("\n\n")
    );
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    // Which layers each layer may import (besides itself); `config` is read by all.
    let allowed: &[(&str, &[&str])] = &[
        ("nn", &[]),
        ("store", &["nn"]),
        ("registry", &["store", "nn", "config"]),
        ("jobs", &["registry", "store", "nn", "config"]),
        (
            "experiments",
            &["jobs", "registry", "store", "nn", "config"],
        ),
        (
            "follower",
            &["experiments", "jobs", "registry", "store", "nn", "config"],
        ),
        ("plot", &["nn"]),
        ("serving", &["registry", "nn", "config"]),
        ("config", &["nn"]),
    ];
    let graph = Graph::load();
    let mut wrong = Vec::new();
    for (from, edges) in &graph.edges {
        let Some((_, may)) = allowed.iter().find(|(l, _)| *l == layer(from)) else {
            continue; // http and lib.rs may import any layer
        };
        for (to, line) in edges {
            let to_layer = layer(to);
            if to_layer != layer(from) && to_layer != "lib" && !may.contains(&to_layer) {
                wrong.push(format!("  {from}:{line} imports {to}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports up the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn serving_knows_nothing_of_http_and_http_holds_no_unsafe_or_batching() {
    let graph = Graph::load();
    let mut wrong = Vec::new();
    for (file, code) in graph.files_under("src/serving/") {
        for word in ["axum", "hyper", "tower"] {
            if tokens(code)
                .iter()
                .any(|(t, _)| *t == Token::Ident(word.to_owned()))
            {
                wrong.push(format!("{file} names `{word}`"));
            }
        }
    }
    for (file, code) in graph.files_under("src/http/") {
        if tokens(code)
            .iter()
            .any(|(t, _)| *t == Token::Ident("unsafe".to_owned()))
        {
            wrong.push(format!("{file} has `unsafe`"));
        }
        if file.contains("batch") {
            wrong.push(format!("{file}: batching belongs to serving"));
        }
    }
    assert!(
        graph.files_under("src/serving/").next().is_some(),
        "src/serving/ exists"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The checker itself, on a made-up crate: a circle through a `use` tree, a re-export that is
/// followed, and a path in code.
#[test]
fn the_checker_finds_a_circle_and_follows_re_exports() {
    let mut graph = Graph::default();
    let files = [
        (
            vec!["a".to_owned()],
            "src/a/mod.rs",
            "pub use inner::Thing;\nuse crate::b::{x::{self, Y}};",
        ),
        (
            vec!["a".to_owned(), "inner".to_owned()],
            "src/a/inner.rs",
            "pub struct Thing; // crate::b::Z",
        ),
        (
            vec!["b".to_owned()],
            "src/b/mod.rs",
            "fn f() { let s = \"crate::a::Q\"; }",
        ),
        (
            vec!["b".to_owned(), "x".to_owned()],
            "src/b/x.rs",
            "fn g() -> super::super::a::Thing { crate::a::f() }",
        ),
    ];
    let mut found = Vec::new();
    for (module, file, source) in files {
        let code = blank(source);
        graph.modules.insert(
            module.clone(),
            Module {
                file: file.to_owned(),
                ..Module::default()
            },
        );
        found.push((file.to_owned(), paths_of(&code, &module)));
        graph.code.insert(file.to_owned(), code);
    }
    for (_, paths) in &found {
        for p in paths.iter().filter(|p| p.reexport) {
            let target = absolute(&p.module, &p.segments).expect("inside");
            let name = target.last().expect("named").clone();
            graph
                .modules
                .get_mut(&p.module)
                .expect("known")
                .reexports
                .insert(name, target);
        }
    }
    for (file, paths) in &found {
        for p in paths.iter().filter(|p| !p.reexport) {
            let target = absolute(&p.module, &p.segments).expect("inside");
            let to = graph.resolve(&target, 0).expect("resolves");
            if &to != file {
                graph
                    .edges
                    .entry(file.clone())
                    .or_default()
                    .insert(to, p.line);
            }
        }
    }
    let edges = |f: &str| {
        graph
            .edges
            .get(f)
            .map(|e| e.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    // The comment and the string name no module.
    assert!(edges("src/a/inner.rs").is_empty());
    assert!(edges("src/b/mod.rs").is_empty());
    // `Thing` is followed to inner.rs; `crate::a::f` stays in a/mod.rs.
    assert_eq!(edges("src/b/x.rs"), ["src/a/inner.rs", "src/a/mod.rs"]);
    assert_eq!(edges("src/a/mod.rs"), ["src/b/x.rs"]);
    assert_eq!(
        graph.circles(),
        [vec!["src/a/mod.rs".to_owned(), "src/b/x.rs".to_owned()]]
    );
}
