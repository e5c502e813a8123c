//! The module layers of `docs/architecture.md`, checked against the code: every path into
//! another module (`crate::…`, `super::…`, in `use` lines, expressions, types and macros)
//! is an arrow, and no arrow may run up the layers, nor any set of modules call each other
//! round in a cycle. Service-free: it reads `src/` and the plan, and runs no binary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module: its path from the crate root (`["config", "yaml"]`; `[]` is `lib.rs`).
type Module = Vec<String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Every module of the library with its source file, `main.rs` aside (the binary, above all).
fn modules() -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, prefix: &Module, out: &mut BTreeMap<Module, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut m = prefix.clone();
                m.push(name);
                walk(&path, &m, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                if prefix.is_empty() && name == "main" {
                    continue;
                }
                let mut m = prefix.clone();
                if name != "mod" && !(prefix.is_empty() && name == "lib") {
                    m.push(name);
                }
                out.insert(m, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&root().join("src"), &Vec::new(), &mut out);
    out
}

/// `source` without comments, string and char literals, and without the unit tests
/// (`#[cfg(test)]` to the end of its item: they test the module from inside, where `super`
/// is the module itself).
fn code_of(source: &str) -> String {
    let without_tests = strip_test_modules(source);
    let b = without_tests.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' || (b[i] == b'r' && matches!(b.get(i + 1), Some(b'"' | b'#'))) {
            i = skip_string(b, i);
            out.push_str("\"\"");
        } else if b[i] == b'\'' && is_char_literal(b, i) {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// `'x'` or `'\n'` is a char; `'a` in `&'a str` is a lifetime.
fn is_char_literal(b: &[u8], i: usize) -> bool {
    match b.get(i + 1) {
        Some(b'\\') => true,
        Some(_) => {
            // A multi-byte character or a one-byte one, then the closing quote.
            let mut j = i + 2;
            while j < b.len() && j < i + 6 && (b[j] & 0xC0) == 0x80 {
                j += 1;
            }
            b.get(j) == Some(&b'\'')
        }
        None => false,
    }
}

/// The index just past the string literal that starts at `i` (plain or raw).
fn skip_string(b: &[u8], mut i: usize) -> usize {
    if b[i] == b'r' {
        i += 1;
        let mut hashes = 0;
        while b[i] == b'#' {
            hashes += 1;
            i += 1;
        }
        if b[i] != b'"' {
            return i; // `r#ident`: not a string
        }
        i += 1;
        let close: Vec<u8> = std::iter::once(b'"')
            .chain(std::iter::repeat_n(b'#', hashes))
            .collect();
        while i < b.len() && !b[i..].starts_with(&close) {
            i += 1;
        }
        return i + close.len();
    }
    i += 1;
    while i < b.len() && b[i] != b'"' {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// Removes each `#[cfg(test)]` item (an inline `mod tests { … }` or a single `fn`/`use`).
fn strip_test_modules(source: &str) -> String {
    let mut out = String::new();
    let mut rest = source;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // The item ends at its closing brace at depth 0, or at a `;` before any brace.
        let mut depth = 0usize;
        let mut end = after.len();
        for (k, c) in after.char_indices().skip("#[cfg(test)]".len()) {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The module paths `code` (of module `at`) names, each as written from the crate root.
fn paths_named(code: &str, at: &Module) -> Vec<Module> {
    let b = code.as_bytes();
    let mut found = Vec::new();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(k) = code[from..].find(start) {
            let pos = from + k;
            from = pos + start.len();
            if pos > 0 && (b[pos - 1].is_ascii_alphanumeric() || b[pos - 1] == b'_') {
                continue; // `mycrate::` (a macro's `$crate::` counts: it is ours)
            }
            let base: Module = if start == "crate::" {
                Vec::new()
            } else {
                let mut m = at.clone();
                m.pop();
                m
            };
            let mut i = pos + start.len();
            // `super::super::x`
            let mut base = base;
            while code[i..].starts_with("super::") {
                base.pop();
                i += "super::".len();
            }
            for tail in use_tree(code, &mut i) {
                let mut m = base.clone();
                m.extend(tail);
                found.push(m);
            }
        }
    }
    found
}

/// In `lib.rs`, a path may start at a module without `crate::` (`invite::KIND`): each such
/// path names that module.
fn bare_paths(code: &str, tops: &BTreeSet<String>) -> Vec<Module> {
    let b = code.as_bytes();
    let mut found = Vec::new();
    for top in tops {
        let needle = format!("{top}::");
        let mut from = 0;
        while let Some(k) = code[from..].find(&needle) {
            let pos = from + k;
            from = pos + needle.len();
            let before = pos.checked_sub(1).map(|p| b[p]);
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':') {
                continue;
            }
            found.push(vec![top.clone()]);
        }
    }
    found
}

/// Reads a path tail (`a::b::{c, d::e}`) at `*i`; each full path as a list of segments.
fn use_tree(code: &str, i: &mut usize) -> Vec<Vec<String>> {
    let b = code.as_bytes();
    skip_space(b, i);
    if b.get(*i) == Some(&b'{') {
        *i += 1;
        let mut all = Vec::new();
        loop {
            skip_space(b, i);
            match b.get(*i) {
                Some(b'}') => {
                    *i += 1;
                    return all;
                }
                Some(b',') => *i += 1,
                None => return all,
                _ => {
                    let before = *i;
                    all.extend(use_tree(code, i));
                    if *i == before {
                        *i += 1; // `*` or `self`: nothing more to name
                    }
                }
            }
        }
    }
    let start = *i;
    while *i < b.len() && (b[*i].is_ascii_alphanumeric() || b[*i] == b'_') {
        *i += 1;
    }
    let ident = code[start..*i].to_owned();
    if ident.is_empty() {
        return vec![Vec::new()];
    }
    if code[*i..].starts_with("::") {
        *i += 2;
        return use_tree(code, i)
            .into_iter()
            .map(|mut t| {
                t.insert(0, ident.clone());
                t
            })
            .collect();
    }
    if ident == "self" {
        return vec![Vec::new()];
    }
    vec![vec![ident]]
}

fn skip_space(b: &[u8], i: &mut usize) {
    while *i < b.len() && b[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

/// The module a path names: its longest prefix that is a module.
fn module_of(path: &Module, modules: &BTreeMap<Module, PathBuf>) -> Module {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| modules.contains_key(m))
        .unwrap_or_default()
}

/// Every arrow between two different modules: (from, to) → the first path that makes it.
fn arrows() -> BTreeMap<(Module, Module), String> {
    let modules = modules();
    let mut out = BTreeMap::new();
    for (module, file) in &modules {
        let code = code_of(&std::fs::read_to_string(file).expect("read module"));
        let mut paths = paths_named(&code, module);
        if module.is_empty() {
            let tops = modules.keys().filter(|m| m.len() == 1).map(top).collect();
            paths.extend(bare_paths(&code, &tops));
        }
        for path in paths {
            let to = module_of(&path, &modules);
            // A parent naming its own child (`self::x`, `mod x`) is the module's own inside.
            if to == *module || to.starts_with(module) && !module.is_empty() {
                continue;
            }
            out.entry((module.clone(), to))
                .or_insert_with(|| path.join("::"));
        }
    }
    out
}

/// The layers of `docs/architecture.md`'s ```layers block, top first: each line lists the
/// top-level modules of one layer (`crate` is `lib.rs`'s own items). A module may call down
/// and within its layer; the cycle check holds everywhere.
fn layers() -> Vec<Vec<String>> {
    let plan = std::fs::read_to_string(root().join("docs/architecture.md")).expect("plan");
    let block = plan
        .split("```layers\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/architecture.md has a ```layers block");
    block
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| !l.is_empty())
        .collect()
}

fn top(module: &Module) -> String {
    module
        .first()
        .cloned()
        .unwrap_or_else(|| "crate".to_owned())
}

#[test]
fn every_module_has_a_layer() {
    let placed: BTreeSet<String> = layers().into_iter().flatten().collect();
    let tops: BTreeSet<String> = modules().keys().map(top).collect();
    let missing: Vec<_> = tops.difference(&placed).collect();
    let unknown: Vec<_> = placed.difference(&tops).collect();
    assert!(
        missing.is_empty(),
        "modules without a layer in docs/architecture.md: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "layers name modules that do not exist: {unknown:?}"
    );
}

#[test]
fn no_arrow_runs_up_the_layers() {
    let layers = layers();
    let rank = |m: &Module| layers.iter().position(|l| l.contains(&top(m)));
    let up: Vec<String> = arrows()
        .into_iter()
        .filter(|((from, to), _)| top(from) != top(to))
        .filter(|((from, to), _)| match (rank(from), rank(to)) {
            (Some(f), Some(t)) => t < f,
            _ => true,
        })
        .map(|((from, to), path)| format!("{} → {} ({path})", name(&from), name(&to)))
        .collect();
    assert!(
        up.is_empty(),
        "arrows running up the layers:\n{}",
        up.join("\n")
    );
}

#[test]
fn no_cycle_between_modules() {
    let arrows = arrows();
    let mut next: BTreeMap<&Module, Vec<&Module>> = BTreeMap::new();
    for (from, to) in arrows.keys() {
        next.entry(from).or_default().push(to);
    }
    let cycles = strongly_connected(&next)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.iter().map(|m| name(m)).collect::<Vec<_>>().join(" ⇄ "))
        .collect::<Vec<_>>();
    assert!(
        cycles.is_empty(),
        "modules that call each other round:\n{}",
        cycles.join("\n")
    );
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "crate".to_owned()
    } else {
        m.join("::")
    }
}

/// Tarjan's strongly connected components of the arrow graph.
fn strongly_connected<'a>(next: &BTreeMap<&'a Module, Vec<&'a Module>>) -> Vec<Vec<&'a Module>> {
    struct Walk<'a, 'b> {
        next: &'b BTreeMap<&'a Module, Vec<&'a Module>>,
        index: BTreeMap<&'a Module, (usize, usize)>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        out: Vec<Vec<&'a Module>>,
    }
    impl<'a> Walk<'a, '_> {
        fn visit(&mut self, v: &'a Module) {
            let n = self.index.len();
            self.index.insert(v, (n, n));
            self.stack.push(v);
            self.on_stack.insert(v);
            for &w in self.next.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.index[v].1.min(self.index[w].1);
                    self.index.get_mut(v).unwrap().1 = low;
                } else if self.on_stack.contains(w) {
                    let low = self.index[v].1.min(self.index[w].0);
                    self.index.get_mut(v).unwrap().1 = low;
                }
            }
            if self.index[v].0 == self.index[v].1 {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                self.out.push(component);
            }
        }
    }
    let mut walk = Walk {
        next,
        index: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in next.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.out
}

/// The checker reads what it must: a grouped `use`, `super`, a path in an expression, and
/// nothing inside comments, strings or unit tests.
#[test]
fn the_checker_reads_paths_as_the_compiler_does() {
    let at: Module = vec!["a".into(), "b".into()];
    let code = code_of(
        "use crate::{x::Y, z::{w, v::U}};\n// crate::comment\nlet s = \"crate::string\";\n\
         fn f() { super::sibling::g(); crate::lock(&m); }\n#[cfg(test)]\nmod tests { use crate::hidden; }\n",
    );
    let found: Vec<String> = paths_named(&code, &at)
        .iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(found, ["x::Y", "z::w", "z::v::U", "lock", "a::sibling::g"]);
}
