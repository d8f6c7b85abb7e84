//! Where the firmware image's bytes go, read from the ELF's symbol table: flash per crate
//! (`cargo bloat`-style: each function and constant counted for the crate its demangled path
//! starts with) and static RAM per owner (each embassy task's pool under the task's name, the
//! other statics under their module). Used by `cargo xtask bench`, so that a regression shows
//! where it happened. Reads only the ELF file; calls nothing else.

use std::collections::BTreeMap;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

use homemx_qemu::Result;

/// Which memory a symbol occupies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Code and constants (`.vector_table`, `.text`, `.rodata`).
    Flash,
    /// Statics (`.data`, `.bss`, `.uninit`).
    Ram,
}

/// One sized symbol of the image.
#[derive(Clone, Debug)]
pub struct Symbol {
    /// Demangled, without the trailing hash.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Where it lives.
    pub region: Region,
}

/// The sized symbols of an image, and the section totals they are checked against.
#[derive(Debug)]
pub struct ImageMap {
    /// Every symbol with a size in an allocated section.
    pub symbols: Vec<Symbol>,
    /// Sum of the flash sections' sizes (symbols do not cover padding and unnamed constants).
    pub flash_sections: u64,
    /// Sum of the RAM sections' sizes.
    pub ram_sections: u64,
}

fn region_of(name: &str, kind: SectionKind) -> Option<Region> {
    match name {
        ".vector_table" | ".text" | ".rodata" => Some(Region::Flash),
        ".data" | ".bss" | ".uninit" => Some(Region::Ram),
        _ if name.starts_with(".text") || name.starts_with(".rodata") => Some(Region::Flash),
        _ => match kind {
            SectionKind::Text | SectionKind::ReadOnlyData | SectionKind::ReadOnlyString => Some(Region::Flash),
            SectionKind::Data | SectionKind::UninitializedData => Some(Region::Ram),
            _ => None,
        },
    }
}

impl ImageMap {
    /// Reads the symbol table of `elf`.
    pub fn read(elf: &Path) -> Result<ImageMap> {
        let bytes = std::fs::read(elf)?;
        let file = object::File::parse(&*bytes)?;
        let mut map = ImageMap { symbols: Vec::new(), flash_sections: 0, ram_sections: 0 };
        for section in file.sections() {
            match region_of(section.name().unwrap_or(""), section.kind()) {
                Some(Region::Flash) => map.flash_sections += section.size(),
                Some(Region::Ram) => map.ram_sections += section.size(),
                None => {}
            }
        }
        for symbol in file.symbols() {
            if symbol.size() == 0 || !matches!(symbol.kind(), SymbolKind::Text | SymbolKind::Data | SymbolKind::Unknown) {
                continue;
            }
            let Some(index) = symbol.section_index() else { continue };
            let Ok(section) = file.section_by_index(index) else { continue };
            let Some(region) = region_of(section.name().unwrap_or(""), section.kind()) else { continue };
            let raw = symbol.name().unwrap_or("");
            let name = format!("{:#}", rustc_demangle::demangle(raw));
            map.symbols.push(Symbol { name, size: symbol.size(), region });
        }
        Ok(map)
    }

    /// Bytes per crate in `region`, largest first; `[unattributed]` is what no symbol covers.
    pub fn by_crate(&self, region: Region) -> Vec<(String, u64)> {
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for symbol in self.symbols.iter().filter(|symbol| symbol.region == region) {
            *totals.entry(crate_of(&symbol.name)).or_default() += symbol.size;
        }
        let section_total = match region {
            Region::Flash => self.flash_sections,
            Region::Ram => self.ram_sections,
        };
        let covered: u64 = totals.values().sum();
        if section_total > covered {
            totals.insert("[unattributed]".into(), section_total - covered);
        }
        sorted(totals)
    }

    /// Static RAM per owner, largest first: an embassy task's pool under `task <path>`, any
    /// other static under its module path (the name without its last segment).
    pub fn ram_by_owner(&self) -> Vec<(String, u64)> {
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for symbol in self.symbols.iter().filter(|symbol| symbol.region == Region::Ram) {
            *totals.entry(owner_of(&symbol.name)).or_default() += symbol.size;
        }
        let covered: u64 = totals.values().sum();
        if self.ram_sections > covered {
            totals.insert("[unattributed: alignment, linker-placed areas]".into(), self.ram_sections - covered);
        }
        sorted(totals)
    }
}

fn sorted(totals: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut rows: Vec<(String, u64)> = totals.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows
}

/// The crate a demangled path belongs to: the first `name::` in it, after any `<`, `&`,
/// `mut ` or `dyn ` of a trait-impl path (`<homemx_tls::client::TlsClient as Drop>::drop` is
/// homemx_tls's). Unmangled names (`memcpy`, linker symbols) are `[C and linker]`.
pub fn crate_of(name: &str) -> String {
    let mut rest = name.trim_start_matches(['<', '&', '*', '[', '(', ' ']);
    for prefix in ["mut ", "const ", "dyn "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    match rest.find("::") {
        Some(end) if rest[..end].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && end > 0 => rest[..end].to_string(),
        _ => "[C and linker]".to_string(),
    }
}

/// The owner of a static: the embassy task whose pool it is (embassy-executor's task macro
/// puts each task's `POOL` inside the task function), else the module that declares it.
pub fn owner_of(name: &str) -> String {
    let path = name.trim_start_matches('<');
    if let Some(task_path) = path.strip_suffix("::POOL") {
        let task = task_path.trim_end_matches("::{{closure}}");
        return format!("task {}", task.trim_start_matches("__").replace("::__", "::").trim_end_matches("_task"));
    }
    match path.rfind("::") {
        Some(end) => path[..end].to_string(),
        None => format!("[{name}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crates_of_paths_impls_and_c_symbols() {
        assert_eq!(crate_of("homemx::mx::session"), "homemx");
        assert_eq!(crate_of("<homemx_tls::client::TlsClient as core::ops::drop::Drop>::drop"), "homemx_tls");
        assert_eq!(crate_of("<&mut rustls::conn::Foo as core::fmt::Debug>::fmt"), "rustls");
        assert_eq!(crate_of("memcpy"), "[C and linker]");
        assert_eq!(crate_of("__aeabi_memcpy"), "[C and linker]");
    }

    #[test]
    fn owners_of_task_pools_and_statics() {
        assert_eq!(owner_of("homemx::mx::mx_session::POOL"), "task homemx::mx::mx_session");
        assert_eq!(owner_of("homemx::mx::__mx_session_task::POOL"), "task homemx::mx::mx_session");
        assert_eq!(owner_of("homemx::heap::HEAP"), "homemx::heap");
        assert_eq!(owner_of("_stack_start"), "[_stack_start]");
    }
}
