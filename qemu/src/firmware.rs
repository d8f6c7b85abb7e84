//! Building the firmware image for a board with whichever toolchain this machine has.
//!
//! Each board has its target: `thumbv7em-none-eabihf` (QEMU's Cortex-M4) and
//! `thumbv8m.main-none-eabihf` (the STM32H573I-DK's Cortex-M33). Where the rustup toolchain has
//! the board's target standard library (a normal developer laptop after `rustup target add`,
//! which `host-tools/setup.sh` does for both), it is used as it is. Otherwise (Debian's
//! `rustc-web`, whose target std is not prebuilt) the build uses `/usr/bin/cargo` with
//! `RUSTC_BOOTSTRAP=1 -Zbuild-std=core,alloc,compiler_builtins` and the
//! `compiler-builtins-mem` feature. `HOMEMX_TOOLCHAIN=rustup|debian` overrides the choice.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{repository_root, Result};

/// The boards the firmware builds for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    /// QEMU's mps2-an386.
    QemuMps2,
    /// ST STM32H573I-DK Discovery kit (compiled, not run here).
    Stm32h573iDk,
}

impl Board {
    /// The firmware feature that selects the board.
    pub fn feature(self) -> &'static str {
        match self {
            Board::QemuMps2 => "board-qemu",
            Board::Stm32h573iDk => "board-stm32h573i-dk",
        }
    }

    /// Short name used in paths and reports.
    pub fn name(self) -> &'static str {
        match self {
            Board::QemuMps2 => "qemu-mps2-an386",
            Board::Stm32h573iDk => "stm32h573i-dk",
        }
    }

    /// The board's target triple.
    pub fn target(self) -> &'static str {
        match self {
            Board::QemuMps2 => "thumbv7em-none-eabihf",
            Board::Stm32h573iDk => "thumbv8m.main-none-eabihf",
        }
    }
}

/// One firmware variant to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareBuild {
    /// The board.
    pub board: Board,
    /// Whether the reset handler wipes RAM (always, except for the RAM-wipe negative control).
    pub ram_wipe: bool,
    /// Extra firmware features of test builds (e.g. `spool-exercise`).
    pub test_features: &'static [&'static str],
}

/// Which compiler set-up builds the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup's toolchain with the prebuilt target standard library.
    Rustup,
    /// Debian's rustc with `-Zbuild-std`.
    Debian,
}

fn rustup_has_target(target: &str) -> bool {
    let Ok(output) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    Path::new(&sysroot).join("lib/rustlib").join(target).join("lib").is_dir()
}

/// The toolchain this machine builds the QEMU board's firmware with.
pub fn detect_toolchain() -> Toolchain {
    detect_toolchain_for(Board::QemuMps2)
}

/// The toolchain this machine builds `board`'s firmware with.
pub fn detect_toolchain_for(board: Board) -> Toolchain {
    match std::env::var("HOMEMX_TOOLCHAIN").as_deref() {
        Ok("debian") => Toolchain::Debian,
        Ok("rustup") => Toolchain::Rustup,
        _ if rustup_has_target(board.target()) => Toolchain::Rustup,
        _ => Toolchain::Debian,
    }
}

impl FirmwareBuild {
    /// The product image for the QEMU board.
    pub const QEMU: FirmwareBuild = FirmwareBuild { board: Board::QemuMps2, ram_wipe: true, test_features: &[] };

    /// The RAM-wipe test's negative control: the QEMU image without the wipe at reset.
    pub const QEMU_NO_RAM_WIPE: FirmwareBuild = FirmwareBuild { ram_wipe: false, ..Self::QEMU };

    /// Test image: the QEMU image that logs a SHA-256 fingerprint of the data key at each
    /// unlock (never the key), so the provisioning test can look for copies of the key in RAM.
    pub const QEMU_KEY_FINGERPRINT: FirmwareBuild = FirmwareBuild { test_features: &["key-fingerprint"], ..Self::QEMU };

    /// Test image: the QEMU board's spool exercised in a loop on its flash, nothing else (the
    /// spool power-cut test, the bench's flash figures).
    pub const QEMU_SPOOL_EXERCISE: FirmwareBuild = FirmwareBuild { test_features: &["spool-exercise"], ..Self::QEMU };

    /// The test-only images the end-to-end tests boot: `cargo xtask test` builds them with the
    /// product images, before the tests start, so that no test links an image while others run.
    pub const TEST_IMAGES: [FirmwareBuild; 2] = [Self::QEMU_KEY_FINGERPRINT, Self::QEMU_SPOOL_EXERCISE];

    /// The name of this variant (its target directory).
    pub fn variant_name(&self) -> String {
        let mut name = format!("{}{}", self.board.name(), if self.ram_wipe { "" } else { "-no-ram-wipe" });
        for feature in self.test_features {
            name.push('-');
            name.push_str(feature);
        }
        name
    }

    /// The cargo target directory of this variant: only its final image lands here, so that
    /// variants built one after another (or by tests at once) never overwrite each other's ELF.
    pub fn target_directory(&self) -> PathBuf {
        repository_root().join("firmware/app/target").join(self.variant_name())
    }

    /// The cargo build directory every variant shares (cargo's `build.build-dir`): the
    /// intermediate artifacts. The dependencies are the same in every variant, so they are
    /// built and stored once instead of once per variant (four variants with debug info
    /// filled a CI machine's disk).
    pub fn shared_build_directory() -> PathBuf {
        repository_root().join("firmware/app/target/build")
    }

    /// Path of the built ELF image.
    pub fn elf_path(&self) -> PathBuf {
        self.target_directory().join(self.board.target()).join("release/homemx")
    }

    /// The cargo command that builds this variant.
    pub fn command(&self, toolchain: Toolchain) -> Command {
        let mut features = vec![self.board.feature()];
        if self.ram_wipe {
            features.push("ram-wipe");
        }
        features.extend_from_slice(self.test_features);
        let mut command = match toolchain {
            Toolchain::Rustup => Command::new("cargo"),
            Toolchain::Debian => {
                let mut command = Command::new("/usr/bin/cargo");
                let path = std::env::var("PATH").unwrap_or_default();
                command.env("PATH", format!("/usr/bin:{path}"));
                command.env("RUSTC", "/usr/bin/rustc");
                command.env("RUSTDOC", "/usr/bin/rustdoc");
                command.env("RUSTC_BOOTSTRAP", "1");
                command
            }
        };
        command
            .current_dir(repository_root().join("firmware/app"))
            .args(["build", "--release", "--target", self.board.target(), "--no-default-features", "--features", &features.join(",")])
            .env("CARGO_TARGET_DIR", self.target_directory())
            .env("CARGO_BUILD_BUILD_DIR", Self::shared_build_directory())
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO");
        if toolchain == Toolchain::Debian {
            command.args([
                "-Zbuild-std=core,alloc,compiler_builtins",
                "-Zbuild-std-features=compiler-builtins-mem",
            ]);
        }
        command
    }

    /// Builds the image (incrementally) and returns the ELF's path.
    pub fn build(&self) -> Result<PathBuf> {
        let toolchain = detect_toolchain_for(self.board);
        let status = self.command(toolchain).status()?;
        if !status.success() {
            return Err(format!("firmware build {} with {toolchain:?} toolchain failed ({status})", self.variant_name()).into());
        }
        Ok(self.elf_path())
    }
}

/// The address of the symbol `name` in the image `elf` (linker symbols such as `_stack_end`
/// included).
pub fn symbol_address(elf: &Path, name: &str) -> Result<u32> {
    use object::{Object, ObjectSymbol};
    let bytes = std::fs::read(elf)?;
    let file = object::File::parse(&*bytes).map_err(|error| format!("{}: {error}", elf.display()))?;
    let symbol = file.symbols().find(|symbol| symbol.name() == Ok(name)).ok_or_else(|| format!("{} has no symbol {name}", elf.display()))?;
    Ok(symbol.address() as u32)
}

/// The address of the one Rust function in `elf` whose (legacy-mangled) symbol holds `fragment`,
/// e.g. `15homemx_services5store8identity11write_chain28_$u7b$$u7b$closure$u7d$$u7d$17h` for
/// the poll function of the async `write_chain` (a breakpoint target that has no plain name).
pub fn function_address_containing(elf: &Path, fragment: &str) -> Result<u32> {
    use object::{Object, ObjectSymbol};
    let bytes = std::fs::read(elf)?;
    let file = object::File::parse(&*bytes).map_err(|error| format!("{}: {error}", elf.display()))?;
    let found: Vec<u32> = file
        .symbols()
        .filter(|symbol| symbol.name().is_ok_and(|name| name.starts_with("_ZN") && name.contains(fragment)))
        .map(|symbol| symbol.address() as u32)
        .collect();
    match found[..] {
        [address] => Ok(address),
        _ => Err(format!("{}: {} functions match {fragment}, not one", elf.display(), found.len()).into()),
    }
}

/// Flash and RAM use of an image, from its ELF section headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageSize {
    /// `.vector_table` + `.text` + `.rodata` (+ `.data`'s load image): bytes in flash.
    pub flash: u64,
    /// `.data` + `.bss` + `.uninit`: static RAM.
    pub static_ram: u64,
}

/// Reads the section sizes of an ELF image.
pub fn image_size(elf: &Path) -> Result<ImageSize> {
    let bytes = std::fs::read(elf)?;
    let sections = elf_sections(&bytes)?;
    let mut size = ImageSize::default();
    for (name, length) in sections {
        match name.as_str() {
            ".vector_table" | ".text" | ".rodata" => size.flash += length,
            ".data" => {
                size.flash += length;
                size.static_ram += length;
            }
            ".bss" | ".uninit" => size.static_ram += length,
            _ => {}
        }
    }
    Ok(size)
}

/// (name, size) of every section of a 32-bit little-endian ELF file.
fn elf_sections(bytes: &[u8]) -> Result<Vec<(String, u64)>> {
    let read_u16 = |offset: usize| -> Result<u16> {
        Ok(u16::from_le_bytes(bytes.get(offset..offset + 2).ok_or("truncated ELF")?.try_into()?))
    };
    let read_u32 = |offset: usize| -> Result<u32> {
        Ok(u32::from_le_bytes(bytes.get(offset..offset + 4).ok_or("truncated ELF")?.try_into()?))
    };
    if bytes.get(..5) != Some(b"\x7fELF\x01") {
        return Err("not a 32-bit ELF file".into());
    }
    let section_table = read_u32(0x20)? as usize;
    let entry_size = read_u16(0x2e)? as usize;
    let count = read_u16(0x30)? as usize;
    let names_index = read_u16(0x32)? as usize;
    let names_offset = read_u32(section_table + names_index * entry_size + 0x10)? as usize;
    let mut sections = Vec::new();
    for index in 0..count {
        let header = section_table + index * entry_size;
        let name_offset = names_offset + read_u32(header)? as usize;
        let name_end = bytes[name_offset..].iter().position(|&byte| byte == 0).ok_or("bad section name")?;
        let name = String::from_utf8_lossy(&bytes[name_offset..name_offset + name_end]).into_owned();
        sections.push((name, read_u32(header + 0x14)? as u64));
    }
    Ok(sections)
}
