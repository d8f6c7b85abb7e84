//! `cargo xtask globals` (also a step of `cargo xtask test` through its unit test): no
//! public mutable global outside a crate's `channels.rs`.
//!
//! State has one owner (a module, a task); others ask it through functions. A `pub` (or
//! `pub(crate)`, `pub(super)`, `pub(in …)`) `static` whose type can change behind a shared
//! reference (a mutex, a cell, an atomic, a signal, a channel, a static cell …), or any
//! non-private `static mut`, lets every module change it, so it is refused everywhere but in
//! `channels.rs`, the one file that lists the wake-ups between services. Private statics and
//! statics inside functions are the owner's business and pass.
//!
//! Owns the rule and its parsing (syn); reads the source files that `module_cycles` lists.

use std::path::Path;

use homemx_qemu::{repository_root, Result};
use syn::visit::Visit;

/// Type names that make a static mutable behind `&` (interior mutability), by their last
/// path segment (or prefix, for the atomics).
const MUTABLE_TYPES: &[&str] = &[
    "Mutex",
    "RwLock",
    "RefCell",
    "Cell",
    "UnsafeCell",
    "OnceCell",
    "OnceLock",
    "LazyLock",
    "Signal",
    "Watch",
    "Channel",
    "PubSubChannel",
    "Pipe",
    "StaticCell",
    "ConstStaticCell",
    "Wake",
];

/// One offending static: file (relative to the repository), line, name.
#[derive(Debug, PartialEq, Eq)]
pub struct PublicMutableGlobal {
    pub file: String,
    pub line: usize,
    pub name: String,
}

fn is_mutable_type(ty: &syn::Type) -> bool {
    struct Finder(bool);
    impl<'a> Visit<'a> for Finder {
        fn visit_path_segment(&mut self, segment: &'a syn::PathSegment) {
            let name = segment.ident.to_string();
            if name.starts_with("Atomic") || MUTABLE_TYPES.contains(&name.as_str()) {
                self.0 = true;
            }
            syn::visit::visit_path_segment(self, segment);
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    finder.0
}

/// The public mutable statics of one file's source (statics at module level, inline modules
/// included; not those inside function bodies, which are private by scope).
pub fn public_mutable_statics(source: &str) -> Result<Vec<(usize, String)>> {
    fn walk(items: &[syn::Item], found: &mut Vec<(usize, String)>) {
        for item in items {
            match item {
                syn::Item::Static(item) => {
                    let public = !matches!(item.vis, syn::Visibility::Inherited);
                    let mutable = matches!(item.mutability, syn::StaticMutability::Mut(_)) || is_mutable_type(&item.ty);
                    if public && mutable {
                        found.push((item.ident.span().start().line, item.ident.to_string()));
                    }
                }
                syn::Item::Mod(module) => {
                    if let Some((_, items)) = &module.content {
                        walk(items, found);
                    }
                }
                _ => {}
            }
        }
    }
    let file = syn::parse_file(source)?;
    let mut found = Vec::new();
    walk(&file.items, &mut found);
    Ok(found)
}

/// Every public mutable static of the repository's crates outside their `channels.rs`.
pub fn repository_globals(root: &Path) -> Result<Vec<PublicMutableGlobal>> {
    let mut all = Vec::new();
    for directory in crate::module_cycles::crate_directories(root)? {
        let mut paths = Vec::new();
        crate::module_cycles::rust_files(&directory.join("src"), &mut paths)?;
        paths.sort();
        for path in paths {
            if path.file_name().is_some_and(|name| name == "channels.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            let file = path.strip_prefix(root)?.to_string_lossy().into_owned();
            for (line, name) in public_mutable_statics(&text).map_err(|error| format!("{file}: {error}"))? {
                all.push(PublicMutableGlobal { file: file.clone(), line, name });
            }
        }
    }
    Ok(all)
}

/// `cargo xtask globals`: lists every public mutable global outside `channels.rs`; fails on one.
pub fn check(_arguments: &[String]) -> Result<()> {
    let found = repository_globals(&repository_root())?;
    for global in &found {
        eprintln!("{}:{}: public mutable global `{}`: make it private to its owner, or a signal in channels.rs", global.file, global.line, global.name);
    }
    if !found.is_empty() {
        return Err(format!("{} public mutable globals outside channels.rs", found.len()).into());
    }
    eprintln!("public mutable globals outside channels.rs: none");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_mutable_statics_are_found_and_private_or_immutable_ones_pass() {
        let source = r#"
            pub static VAULT: Mutex<CriticalSectionRawMutex, Option<Vault>> = Mutex::new(None);
            pub(crate) static COUNT: core::sync::atomic::AtomicU32 = AtomicU32::new(0);
            pub static mut RAW: [u8; 4] = [0; 4];
            pub static WAKE: embassy_sync::signal::Signal<M, ()> = Signal::new();
            static PRIVATE: Mutex<M, u8> = Mutex::new(0);
            pub static TABLE: [u16; 2] = [1, 2];
            pub static SUITE: SupportedCipherSuite = SUITE_VALUE;
            mod inner { pub static INNER: RefCell<u8> = RefCell::new(0); }
            fn f() { static mut LOCAL: u8 = 0; }
        "#;
        let names: Vec<String> = public_mutable_statics(source).unwrap().into_iter().map(|(_, name)| name).collect();
        assert_eq!(names, ["VAULT", "COUNT", "RAW", "WAKE", "INNER"]);
    }

    #[test]
    fn the_repository_has_no_public_mutable_global_outside_channels() {
        let found = repository_globals(&repository_root()).unwrap();
        assert!(found.is_empty(), "public mutable globals outside channels.rs: {found:#?}");
    }
}
