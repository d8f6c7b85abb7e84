//! The stack's place in an image: every board links through flip-link, which puts the stack at
//! the start of RAM, below the statics, so that a stack overflow runs off the RAM's start and
//! faults rather than overwriting the statics. `cargo xtask build` checks it here, from the
//! ELF's symbols (`_stack_end`, `_stack_start`, cortex-m-rt's names) and RAM sections, and fails
//! an image whose stack is not below all its statics. Reads only the ELF file.

use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind};

use homemx_qemu::Result;

/// Where an image's stack lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackLayout {
    /// The lowest address the stack may reach (cortex-m-rt's `_stack_end`).
    pub bottom: u64,
    /// The initial stack pointer (`_stack_start`): the stack grows down from here.
    pub top: u64,
    /// The lowest address of any static (`.data`, `.bss`, `.uninit`).
    pub statics_start: u64,
}

impl StackLayout {
    /// Bytes the stack may grow to.
    pub fn stack_bytes(&self) -> u64 {
        self.top - self.bottom
    }
}

/// Reads the layout of `elf` and checks it is flipped: the stack ends at the RAM's start
/// (`ram_origin`), and it starts at or below the lowest static.
pub fn check(elf: &Path, ram_origin: u64) -> Result<StackLayout> {
    let bytes = std::fs::read(elf)?;
    let file = object::File::parse(bytes.as_slice())?;
    let symbol = |name: &str| -> Result<u64> {
        file.symbols().find(|symbol| symbol.name() == Ok(name)).map(|symbol| symbol.address()).ok_or_else(|| format!("{}: no symbol {name}", elf.display()).into())
    };
    let statics_start = file
        .sections()
        .filter(|section| matches!(section.kind(), SectionKind::Data | SectionKind::UninitializedData) && section.size() > 0 && section.address() >= ram_origin)
        .map(|section| section.address())
        .min()
        .ok_or_else(|| format!("{}: no static RAM section", elf.display()))?;
    let layout = StackLayout { bottom: symbol("_stack_end")?, top: symbol("_stack_start")?, statics_start };
    verdict(&layout, ram_origin).map_err(|problem| format!("{}: {problem}", elf.display()))?;
    Ok(layout)
}

/// Whether `layout` puts the stack below every static, from the RAM's start up.
fn verdict(layout: &StackLayout, ram_origin: u64) -> std::result::Result<(), String> {
    if layout.bottom != ram_origin || layout.top > layout.statics_start || layout.top <= layout.bottom {
        return Err(format!(
            "the stack ({:#x}..{:#x}) is not below the statics (from {:#x}) from the RAM's start ({ram_origin:#x}): an overflow would \
             overwrite them; the image must be linked with flip-link (firmware/app/.cargo/config.toml, host-tools/setup.sh installs it)",
            layout.bottom, layout.top, layout.statics_start
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_layout_passes() {
        let layout = StackLayout { bottom: 0x2000_0000, top: 0x2037_2700, statics_start: 0x2037_2700 };
        assert_eq!(verdict(&layout, 0x2000_0000), Ok(()));
        assert_eq!(layout.stack_bytes(), 0x37_2700);
    }

    #[test]
    fn cortex_m_rt_s_own_layout_is_refused() {
        // Without flip-link: statics from the RAM's start, the stack from its end down to them.
        let layout = StackLayout { bottom: 0x2008_c000, top: 0x2040_0000, statics_start: 0x2000_0000 };
        assert!(verdict(&layout, 0x2000_0000).unwrap_err().contains("flip-link"));
    }

    #[test]
    fn a_stack_that_does_not_reach_the_ram_start_is_refused() {
        let layout = StackLayout { bottom: 0x2000_1000, top: 0x2037_2700, statics_start: 0x2037_2700 };
        assert!(verdict(&layout, 0x2000_0000).is_err());
    }
}
