//! `cargo xtask module-docs` (and its unit test in the host test run): every module of the
//! firmware's services and app says in its module doc what it owns and whom it calls, and the calls are true.
//!
//! The last paragraph of a file's `//!` doc reads `Owns: <its state>. Calls: <modules>.`; the
//! modules named in backticks after `Calls:` must be exactly the modules it depends on in
//! `module_cycles`'s import graph: not its ancestors and descendants (the crate root's doc
//! names none: every module is its child), and the module of an exported macro it uses
//! (`crate::event_info!` is `event_log`'s). A doc that omits a dependency or names one the code
//! does not use fails.
//!
//! Owns: the rule and the doc's parsing. Calls: `module_cycles`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use homemx_qemu::{repository_root, Result};

use crate::module_cycles::{display, graph_of, module_of_file, source_files};

/// The crates whose modules must carry the doc, relative to the repository.
const CHECKED_CRATES: [&str; 2] = ["firmware/services", "firmware/app"];

/// The file's module doc: its leading `//!` lines, without the marker.
fn module_doc(text: &str) -> Vec<&str> {
    text.lines().map_while(|line| line.strip_prefix("//!")).map(|line| line.strip_prefix(' ').unwrap_or(line)).collect()
}

/// What the doc's last paragraph says after `Owns:` and after `Calls:`, or why it has none.
fn owns_and_calls(doc: &[&str]) -> std::result::Result<(String, String), String> {
    let last = doc.split(|line| line.trim().is_empty()).rfind(|paragraph| !paragraph.is_empty());
    let Some(last) = last else { return Err("no module doc (`//!`)".into()) };
    let paragraph = last.iter().map(|line| line.trim()).collect::<Vec<_>>().join(" ");
    let Some(rest) = paragraph.strip_prefix("Owns:") else {
        return Err("the module doc's last paragraph does not start with `Owns:`".into());
    };
    let Some((owns, calls)) = rest.split_once("Calls:") else {
        return Err("the module doc's last paragraph has no `Calls:`".into());
    };
    if owns.trim().trim_end_matches('.').is_empty() {
        return Err("`Owns:` says nothing (write `nothing` for a module without state)".into());
    }
    if calls.trim().trim_end_matches('.').is_empty() {
        return Err("`Calls:` says nothing (write `nothing` for a module that calls none)".into());
    }
    Ok((owns.trim().to_string(), calls.trim().to_string()))
}

/// The names in backticks in `text`.
fn backticked(text: &str) -> BTreeSet<String> {
    text.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// What is wrong with the module docs of the crate whose sources are `files` (path relative to
/// `src/`, text): one line per problem, naming the file.
pub fn doc_problems(files: &[(PathBuf, String)]) -> Result<Vec<String>> {
    let graph = graph_of(files)?;
    let mut problems = Vec::new();
    for (path, text) in files {
        let Some(module) = module_of_file(path) else { continue };
        let Some(dependencies) = graph.edges.get(&display(&module)) else { continue };
        let calls = match owns_and_calls(&module_doc(text)) {
            Ok((_, calls)) => calls,
            Err(problem) => {
                problems.push(format!("{}: {problem}", path.display()));
                continue;
            }
        };
        let named = backticked(&calls);
        for missing in dependencies.difference(&named) {
            problems.push(format!("{}: `Calls:` omits `{missing}`, which the module uses", path.display()));
        }
        for unused in named.difference(dependencies) {
            problems.push(format!("{}: `Calls:` names `{unused}`, which the module does not use", path.display()));
        }
    }
    Ok(problems)
}

/// The problems of the checked crates' docs, each naming its file from the repository's root.
fn app_doc_problems() -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for checked in CHECKED_CRATES {
        let found = doc_problems(&source_files(&repository_root().join(checked))?)?;
        problems.extend(found.into_iter().map(|problem| format!("{checked}/src/{problem}")));
    }
    Ok(problems)
}

/// `cargo xtask module-docs`: prints every module doc without a true `Owns:`/`Calls:`; fails on one.
pub fn check(_arguments: &[String]) -> Result<()> {
    let problems = app_doc_problems()?;
    for problem in &problems {
        eprintln!("{problem}");
    }
    if !problems.is_empty() {
        return Err(format!("{} module doc problems: each module's doc ends with `Owns: …. Calls: `a`, `b`.`", problems.len()).into());
    }
    eprintln!("module docs of {}: every one says what it owns and whom it calls", CHECKED_CRATES.join(" and "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sources: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        sources.iter().map(|(path, text)| (PathBuf::from(path), text.to_string())).collect()
    }

    const ROOT: &str = "//! The crate.\n//!\n//! Owns: nothing. Calls: its children.\nmod log; mod mx; mod store;";
    const LOG: &str = "//! Owns: the log. Calls: nothing.\n#[macro_export] macro_rules! event { ($x:expr) => {} }";
    const STORE_ROOT: &str = "//! Owns: the vault. Calls: nothing.\nmod vault; fn f() { vault::open(); }";
    const VAULT: &str = "//! Owns: the keys.\n//! Calls: nothing.\npub fn open() { super::f(); }";

    fn crate_with_mx(mx: &str) -> Vec<(PathBuf, String)> {
        files(&[("main.rs", ROOT), ("log.rs", LOG), ("mx.rs", mx), ("store/mod.rs", STORE_ROOT), ("store/vault.rs", VAULT)])
    }

    const MX_USES: &str = "use crate::store::vault;\nfn f() { crate::event!(\"x\"); vault::open(); }";

    #[test]
    fn a_doc_naming_exactly_the_dependencies_passes() {
        let mx = format!("//! The MX.\n//!\n//! Owns: the sessions.\n//! Calls: `store::vault`, `log`.\n{MX_USES}");
        assert_eq!(doc_problems(&crate_with_mx(&mx)).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_doc_that_omits_a_dependency_or_names_an_unused_one_fails() {
        let omits = format!("//! Owns: the sessions. Calls: `store::vault`.\n{MX_USES}");
        assert_eq!(doc_problems(&crate_with_mx(&omits)).unwrap(), ["mx.rs: `Calls:` omits `log`, which the module uses"]);
        let extra = format!("//! Owns: the sessions. Calls: `store::vault`, `log`, `store`.\n{MX_USES}");
        assert_eq!(doc_problems(&crate_with_mx(&extra)).unwrap(), ["mx.rs: `Calls:` names `store`, which the module does not use"]);
    }

    #[test]
    fn a_doc_without_owns_or_calls_fails() {
        let cases = [
            (String::from(MX_USES), "no module doc"),
            (format!("//! The MX.\n{MX_USES}"), "does not start with `Owns:`"),
            (format!("//! Owns: the sessions; calls `log`.\n{MX_USES}"), "has no `Calls:`"),
            (format!("//! Owns: . Calls: `log`, `store::vault`.\n{MX_USES}"), "`Owns:` says nothing"),
            (format!("//! Owns: the sessions. Calls:\n{MX_USES}"), "`Calls:` says nothing"),
        ];
        for (mx, expected) in cases {
            let problems = doc_problems(&crate_with_mx(&mx)).unwrap();
            assert!(problems.len() == 1 && problems[0].contains(expected), "{mx}: {problems:?}");
        }
    }

    #[test]
    fn every_app_module_doc_names_its_owned_state_and_its_calls() {
        let problems = app_doc_problems().unwrap();
        assert!(problems.is_empty(), "module docs:\n{}", problems.join("\n"));
    }
}
