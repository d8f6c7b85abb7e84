//! `cargo xtask module-cycles` (and its unit test in the host test run): the import graph
//! between the modules of every crate in the repository, and its cycles.
//!
//! A module is one source file (`src/a/b.rs` or `src/a/b/mod.rs` is `a::b`). Module `A`
//! depends on module `B` when `A` names a path that resolves into `B` (`crate::b::…`,
//! `super::b::…`, `self::…`), in code, `use` items and inline modules alike; a `#[macro_export]`
//! macro is named at the crate root (`crate::event_info!`) but belongs to the module that defines
//! it, so naming it depends on that module. A module may
//! use its own ancestors and descendants (a parent re-exports its children, a child uses its
//! parent's items); every other dependency is an edge, and a cycle is a strongly connected
//! component of more than one module. Cycles make "who may call whom" unanswerable, so none
//! is allowed anywhere (the app had one of 15 modules until the store service, the channels and
//! the courier's jobs as children of `delivery` removed it).
//!
//! Owns the parsing (syn) and the graph; reads source files, calls nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use homemx_qemu::{repository_root, Result};
use syn::visit::Visit;


/// A module's path inside its crate (`""` is the crate root).
type ModulePath = Vec<String>;

/// The module graph of one crate.
#[derive(Debug, Default)]
pub struct CrateGraph {
    /// Every module and the modules it depends on.
    pub edges: BTreeMap<String, BTreeSet<String>>,
}

pub(crate) fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

/// The module of a source file at `relative` (to `src/`), or `None` for a file that is not
/// part of the library or binary crate's module tree (`src/bin/…`).
pub(crate) fn module_of_file(relative: &Path) -> Option<ModulePath> {
    let mut parts: Vec<String> = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    if parts.first().map(String::as_str) == Some("bin") {
        return None;
    }
    let file = parts.pop()?;
    let stem = file.strip_suffix(".rs")?;
    match stem {
        "lib" | "main" if parts.is_empty() => {}
        "mod" => {}
        _ => parts.push(stem.to_string()),
    }
    Some(parts)
}

/// Collects the module paths that one file names, resolved from the file's module (and the
/// inline modules around each path).
struct PathCollector<'a> {
    file_module: &'a [String],
    inline: Vec<String>,
    targets: Vec<ModulePath>,
}

impl PathCollector<'_> {
    fn current(&self) -> ModulePath {
        let mut module = self.file_module.to_vec();
        module.extend(self.inline.iter().cloned());
        module
    }

    /// Resolves segments that start with `crate`, `super` or `self` to an absolute path.
    fn resolve(&self, segments: &[String]) -> Option<ModulePath> {
        let mut rest = segments;
        let mut base = match rest.first().map(String::as_str) {
            Some("crate") => {
                rest = &rest[1..];
                Vec::new()
            }
            Some("self") => {
                rest = &rest[1..];
                self.current()
            }
            Some("super") => self.current(),
            _ => return None,
        };
        while rest.first().map(String::as_str) == Some("super") {
            base.pop()?;
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn add(&mut self, segments: &[String]) {
        if let Some(path) = self.resolve(segments) {
            self.targets.push(path);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                prefix.push(name.ident.to_string());
                self.add(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Rename(rename) => {
                prefix.push(rename.ident.to_string());
                self.add(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.add(&prefix.clone()),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for PathCollector<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.inline.push(item.ident.to_string());
        syn::visit::visit_item_mod(self, item);
        self.inline.pop();
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|segment| segment.ident.to_string()).collect();
        self.add(&segments);
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Paths inside macro calls (`crate::event_info!(…)`, `matches!(x, crate::a::B)`): the
        // tokens are not parsed as Rust, so take every `crate`/`super`/`self` path in them.
        let mut segments: Vec<String> = Vec::new();
        let mut previous_was_separator = false;
        for token in mac.tokens.clone() {
            match token {
                proc_macro2::TokenTree::Ident(ident) => {
                    let name = ident.to_string();
                    if previous_was_separator || segments.is_empty() && matches!(name.as_str(), "crate" | "super" | "self") {
                        segments.push(name);
                    } else {
                        if segments.len() > 1 {
                            self.add(&segments);
                        }
                        segments.clear();
                        if matches!(name.as_str(), "crate" | "super" | "self") {
                            segments.push(name);
                        }
                    }
                    previous_was_separator = false;
                }
                proc_macro2::TokenTree::Punct(punct) if punct.as_char() == ':' => previous_was_separator = !segments.is_empty(),
                _ => {
                    if segments.len() > 1 {
                        self.add(&segments);
                    }
                    segments.clear();
                    previous_was_separator = false;
                }
            }
        }
        if segments.len() > 1 {
            self.add(&segments);
        }
        syn::visit::visit_macro(self, mac);
    }
}

/// The `#[macro_export]` macros one file defines (they are named `crate::name` anywhere).
#[derive(Default)]
struct ExportedMacros {
    names: Vec<String>,
}

impl<'ast> Visit<'ast> for ExportedMacros {
    fn visit_item_macro(&mut self, item: &'ast syn::ItemMacro) {
        let exported = item.attrs.iter().any(|attribute| attribute.path().is_ident("macro_export"));
        if let (true, Some(name)) = (exported && item.mac.path.is_ident("macro_rules"), &item.ident) {
            self.names.push(name.to_string());
        }
        syn::visit::visit_item_macro(self, item);
    }
}

/// Whether `a` is `b` or one of its ancestors or descendants.
fn related(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The module graph of the crate whose sources are `files` (path relative to `src/`, text).
pub fn graph_of(files: &[(PathBuf, String)]) -> Result<CrateGraph> {
    let mut parsed = Vec::new();
    for (path, text) in files {
        let Some(file_module) = module_of_file(path) else { continue };
        let syntax = syn::parse_file(text).map_err(|error| format!("{}: {error}", path.display()))?;
        parsed.push((file_module, syntax));
    }
    let modules: BTreeSet<ModulePath> = parsed.iter().map(|(module, _)| module.clone()).collect();
    // `crate::name` of an exported macro → the module that defines it.
    let mut macro_homes: BTreeMap<ModulePath, ModulePath> = BTreeMap::new();
    for (file_module, syntax) in &parsed {
        let mut exported = ExportedMacros::default();
        exported.visit_file(syntax);
        for name in exported.names {
            macro_homes.insert(vec![name], file_module.clone());
        }
    }
    let mut graph = CrateGraph::default();
    for (file_module, syntax) in &parsed {
        let mut collector = PathCollector { file_module, inline: Vec::new(), targets: Vec::new() };
        collector.visit_file(syntax);
        let entry = graph.edges.entry(display(file_module)).or_default();
        for target in collector.targets {
            // The module file that holds the target: its longest prefix that is a file.
            let holder = match macro_homes.get(&target) {
                Some(home) => Some(home.clone()),
                None => (0..=target.len()).rev().map(|length| target[..length].to_vec()).find(|prefix| modules.contains(prefix)),
            };
            if let Some(holder) = holder {
                if !related(&holder, file_module) {
                    entry.insert(display(&holder));
                }
            }
        }
    }
    Ok(graph)
}

/// The strongly connected components of more than one module (Tarjan's algorithm).
pub fn cycles(graph: &CrateGraph) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        graph: &'a CrateGraph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    fn connect<'a>(state: &mut State<'a>, node: &'a str) {
        let number = state.index.len();
        state.index.insert(node, number);
        state.low.insert(node, number);
        state.stack.push(node);
        state.on_stack.insert(node);
        let graph = state.graph;
        for next in graph.edges.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                connect(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = BTreeSet::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.insert(member.to_string());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                state.found.push(component);
            }
        }
    }
    let mut state =
        State { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), found: Vec::new() };
    for node in graph.edges.keys() {
        if !state.index.contains_key(node.as_str()) {
            connect(&mut state, node);
        }
    }
    state.found
}

pub(crate) fn rust_files(directory: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(directory)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The Rust files of the crate in `directory`: path relative to its `src/`, text.
pub(crate) fn source_files(directory: &Path) -> Result<Vec<(PathBuf, String)>> {
    let source = directory.join("src");
    let mut paths = Vec::new();
    rust_files(&source, &mut paths)?;
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        files.push((path.strip_prefix(&source)?.to_path_buf(), text));
    }
    Ok(files)
}

/// Every crate of the repository: a directory with `Cargo.toml` and `src/`, outside `target`
/// directories and fuzz crates' build output.
pub(crate) fn crate_directories(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        if directory.join("Cargo.toml").is_file() && directory.join("src").is_dir() {
            found.push(directory.clone());
        }
        for entry in std::fs::read_dir(&directory)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if path.is_dir() && !name.starts_with('.') && !matches!(name.as_str(), "target" | "run" | "src" | "tests" | "peers" | "plugin") {
                pending.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The cycles of every crate under `root`, by crate directory (relative to `root`).
pub fn repository_cycles(root: &Path) -> Result<Vec<(String, BTreeSet<String>)>> {
    let mut all = Vec::new();
    for directory in crate_directories(root)? {
        let files = source_files(&directory)?;
        let name = directory.strip_prefix(root)?.to_string_lossy().into_owned();
        for cycle in cycles(&graph_of(&files)?) {
            all.push((name.clone(), cycle));
        }
    }
    Ok(all)
}


/// `cargo xtask module-cycles`: prints every cycle; fails on any.
pub fn check(_arguments: &[String]) -> Result<()> {
    let found = repository_cycles(&repository_root())?;
    for (directory, cycle) in &found {
        let members: Vec<&str> = cycle.iter().map(String::as_str).collect();
        eprintln!("import cycle in {directory}: {}", members.join(", "));
    }
    if !found.is_empty() {
        return Err(format!("{} import cycles between modules; a module may depend only on modules that do not depend on it", found.len()).into());
    }
    eprintln!("module import cycles: none");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sources: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        sources.iter().map(|(path, text)| (PathBuf::from(path), text.to_string())).collect()
    }

    #[test]
    fn a_cycle_through_use_paths_and_macros_is_found() {
        let crate_files = files(&[
            ("lib.rs", "mod a; mod b; mod c; pub use a::Thing;"),
            ("a.rs", "use crate::b::helper; pub struct Thing;"),
            ("b.rs", "pub fn helper() { crate::c::log!(\"x\"); }"),
            ("c.rs", "macro_rules! log { ($x:expr) => {} } pub fn f() -> crate::a::Thing { crate::a::Thing }"),
        ]);
        let graph = graph_of(&crate_files).unwrap();
        let found = cycles(&graph);
        assert_eq!(found.len(), 1, "{graph:?}");
        assert_eq!(found[0], ["a", "b", "c"].iter().map(|name| name.to_string()).collect());
    }

    #[test]
    fn parents_children_and_test_modules_are_not_cycles() {
        let crate_files = files(&[
            ("lib.rs", "pub mod net; pub use net::Socket; fn f() { net::tcp::open(); }"),
            ("net/mod.rs", "pub mod tcp; pub struct Socket; pub use tcp::open;"),
            ("net/tcp.rs", "use super::Socket; pub fn open() -> Socket { crate::helper(); Socket } #[cfg(test)] mod tests { use super::*; }"),
            ("store.rs", "use crate::net::Socket;"),
        ]);
        assert!(cycles(&graph_of(&crate_files).unwrap()).is_empty());
    }

    #[test]
    fn sibling_paths_through_super_are_edges() {
        let crate_files = files(&[
            ("lib.rs", "mod crypto;"),
            ("crypto/mod.rs", "mod aead; mod hash;"),
            ("crypto/aead.rs", "use super::hash::Digest;"),
            ("crypto/hash.rs", "pub struct Digest; fn f() { super::super::crypto::aead::seal(); }"),
        ]);
        let found = cycles(&graph_of(&crate_files).unwrap());
        assert_eq!(found, vec![["crypto::aead", "crypto::hash"].iter().map(|name| name.to_string()).collect()]);
    }

    #[test]
    fn an_exported_macro_belongs_to_the_module_that_defines_it() {
        let crate_files = files(&[
            ("main.rs", "mod log; mod mx; mod net;"),
            ("log.rs", "#[macro_export] macro_rules! event { ($x:expr) => {} } macro_rules! local { () => {} }"),
            ("mx.rs", "fn f() { crate::event!(\"x\"); }"),
            ("net.rs", "use crate::event; fn f() { crate::local!(); }"),
        ]);
        let graph = graph_of(&crate_files).unwrap();
        assert_eq!(graph.edges["mx"], ["log".to_string()].into_iter().collect());
        assert_eq!(graph.edges["net"], ["log".to_string()].into_iter().collect());
        assert!(graph.edges["log"].is_empty());
    }

    #[test]
    fn the_repository_has_no_import_cycle() {
        let found = repository_cycles(&repository_root()).unwrap();
        assert!(found.is_empty(), "import cycles: {found:?}");
    }
}
