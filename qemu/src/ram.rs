//! Looking for secrets in a dump of the guest's SRAM: any piece of a password or passphrase,
//! and the data key, found by the SHA-256 fingerprint a `key-fingerprint` test build logs at
//! each unlock (the firmware never shows the key itself). Each find is named by the firmware
//! symbol (a static, a task's future) it lies in, or as the stack.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::machine::Machine;
use crate::Result;

/// Where the mps2-an386 SRAM starts.
pub const SRAM_START: u32 = 0x2000_0000;
/// Its size.
pub const SRAM_SIZE: u32 = 4 * 1024 * 1024;
/// A piece of a secret this long found in RAM counts as the secret found (the tail of a
/// frame, half a password).
pub const PIECE_LENGTH: usize = 12;
/// The log line of a `key-fingerprint` build that carries the data key's SHA-256.
pub const FINGERPRINT_MARKER: &str = "test: data key fingerprint ";

/// One secret found in RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Find {
    /// Which secret.
    pub secret: String,
    /// Guest address of the first byte of the match.
    pub address: u32,
    /// Bytes matched from there.
    pub length: usize,
    /// The firmware symbol the match lies in (`None`: stack or unnamed RAM).
    pub symbol: Option<String>,
}

impl std::fmt::Display for Find {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = self.symbol.as_deref().unwrap_or("the stack or unnamed RAM");
        write!(formatter, "{} at {:#010x} ({} bytes) in {}", self.secret, self.address, self.length, place)
    }
}

/// Dumps all SRAM of the running machine into `file` and returns it.
pub fn dump_sram(machine: &Machine, file: &Path) -> Result<Vec<u8>> {
    machine.monitor()?.save_physical_memory(SRAM_START as u64, SRAM_SIZE as u64, file)?;
    Ok(std::fs::read(file)?)
}

/// The data key's fingerprint from the newest fingerprint line in `lines`.
pub fn key_fingerprint(lines: &[String]) -> Option<[u8; 32]> {
    let line = lines.iter().rev().find(|line| line.contains(FINGERPRINT_MARKER))?;
    let hex = line.split(FINGERPRINT_MARKER).nth(1)?.trim();
    let bytes: Vec<u8> = (0..64).step_by(2).map(|index| u8::from_str_radix(hex.get(index..index + 2)?, 16).ok()).collect::<Option<_>>()?;
    bytes.try_into().ok()
}

/// Every place in `ram` (dumped from `SRAM_START`) holding a piece of one of `secrets`
/// (name, bytes) or the key whose SHA-256 is `key_fingerprint`, named with the symbols of
/// the firmware `elf`.
pub fn find_secrets(ram: &[u8], secrets: &[(&str, &[u8])], key_fingerprint: Option<&[u8; 32]>, elf: &Path) -> Vec<Find> {
    let symbols = Symbols::read(elf);
    let mut pieces: HashMap<&[u8], usize> = HashMap::new();
    for (index, (_, bytes)) in secrets.iter().enumerate() {
        let length = PIECE_LENGTH.min(bytes.len());
        for piece in bytes.windows(length) {
            pieces.insert(piece, index);
        }
    }
    let mut finds = Vec::new();
    // Matches of one secret closer than a piece apart are one find.
    let mut open: HashMap<usize, (usize, usize)> = HashMap::new();
    let shortest = secrets.iter().map(|(_, bytes)| PIECE_LENGTH.min(bytes.len())).min().unwrap_or(PIECE_LENGTH);
    for offset in 0..ram.len() {
        for length in [PIECE_LENGTH, shortest] {
            let Some(window) = ram.get(offset..offset + length) else { continue };
            let Some(&index) = pieces.get(window) else { continue };
            let entry = open.entry(index).or_insert((offset, offset + length));
            if offset > entry.1 {
                finds.push(find(secrets[index].0, entry.0, entry.1, &symbols));
                *entry = (offset, offset + length);
            } else {
                entry.1 = entry.1.max(offset + length);
            }
            break;
        }
    }
    for (index, (start, end)) in open {
        finds.push(find(secrets[index].0, start, end, &symbols));
    }
    if let Some(fingerprint) = key_fingerprint {
        for (offset, window) in ram.windows(32).enumerate() {
            // A key is random: a window with many repeated bytes cannot be it (and hashing
            // every window of zeros would cost minutes in a debug build).
            if window[..8].iter().all(|&byte| byte == window[0]) {
                continue;
            }
            if Sha256::digest(window).as_slice() == fingerprint {
                finds.push(find("the data key", offset, offset + 32, &symbols));
            }
        }
    }
    finds.sort_by_key(|find| find.address);
    finds
}

fn find(secret: &str, start: usize, end: usize, symbols: &Symbols) -> Find {
    let address = SRAM_START + start as u32;
    Find { secret: secret.to_string(), address, length: end - start, symbol: symbols.containing(address) }
}

/// The firmware's data symbols with their sizes (`llvm-nm`); empty when the tool is missing.
struct Symbols(Vec<(u32, u32, String)>);

impl Symbols {
    fn read(elf: &Path) -> Self {
        let output = std::process::Command::new("llvm-nm").args(["--print-size", "--demangle", "--defined-only"]).arg(elf).output();
        let mut symbols = Vec::new();
        if let Ok(output) = output {
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let mut fields = line.splitn(4, ' ');
                let (Some(address), Some(size), Some(_kind), Some(name)) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
                    continue;
                };
                if let (Ok(address), Ok(size)) = (u32::from_str_radix(address, 16), u32::from_str_radix(size, 16)) {
                    symbols.push((address, size, name.to_string()));
                }
            }
        }
        Symbols(symbols)
    }

    fn containing(&self, address: u32) -> Option<String> {
        self.0.iter().find(|(start, size, _)| (*start..start + size).contains(&address)).map(|(_, _, name)| name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pieces_and_the_key_by_its_fingerprint_and_nothing_else() {
        let key: [u8; 32] = std::array::from_fn(|index| (index as u8).wrapping_mul(37).wrapping_add(11));
        let fingerprint: [u8; 32] = Sha256::digest(key).into();
        let mut ram = vec![0u8; 4096];
        ram[100..100 + 19].copy_from_slice(b"very-secret-passwor");
        ram[1000..1032].copy_from_slice(&key);
        ram[2000..2012].copy_from_slice(b"ret-password");
        let finds = find_secrets(&ram, &[("password", b"very-secret-password")], Some(&fingerprint), Path::new("/nonexistent"));
        let summary: Vec<(&str, u32, usize)> = finds.iter().map(|find| (find.secret.as_str(), find.address - SRAM_START, find.length)).collect();
        assert_eq!(summary, vec![("password", 100, 19), ("the data key", 1000, 32), ("password", 2000, 12)]);
        assert!(find_secrets(&vec![0u8; 4096], &[("password", b"very-secret-password")], Some(&fingerprint), Path::new("/x")).is_empty());
    }

    #[test]
    fn reads_the_fingerprint_line() {
        let hex: String = (0..32).map(|byte| format!("{byte:02x}")).collect();
        let lines = vec!["x".to_string(), format!("0.5 INFO test: data key fingerprint {hex}")];
        assert_eq!(key_fingerprint(&lines), Some(std::array::from_fn(|index| index as u8)));
    }
}
