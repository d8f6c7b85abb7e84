//! The QEMU board's flash file: 16 MiB of erased NOR (`0xFF`) backing the mps2 PSRAM, with
//! a first entropy seed from the host's `/dev/urandom` written where the board looks for it,
//! like a factory programming step.

use std::io::Read;
use std::path::Path;

use crate::Result;

#[path = "../../bsp/qemu-mps2/src/entropy/seed_record.rs"]
#[allow(dead_code)]
mod seed_record;

/// Size of the file QEMU maps as the mps2 PSRAM.
pub const FLASH_FILE_SIZE: usize = 16 * 1024 * 1024;

/// Creates a fresh, erased flash file with a random entropy seed (generation 0).
pub fn create(path: &Path) -> Result<()> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    let mut image = vec![0xffu8; FLASH_FILE_SIZE];
    let record = seed_record::SeedRecord { generation: 0, seed }.encode();
    image[..record.len()].copy_from_slice(&record);
    std::fs::write(path, image)?;
    Ok(())
}

/// Creates the flash file unless it exists already (so the device keeps its state).
pub fn create_if_missing(path: &Path) -> Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    create(path)?;
    Ok(true)
}

/// Every valid entropy seed record in a flash file, as (generation, seed), in slot order.
pub fn seed_records(path: &Path) -> Result<Vec<(u32, [u8; 32])>> {
    let bytes = std::fs::read(path)?;
    let mut records = Vec::new();
    for slot in [0usize, 4096] {
        let record: &[u8; seed_record::RECORD_SIZE] = bytes[slot..slot + seed_record::RECORD_SIZE].try_into()?;
        if let Some(record) = seed_record::SeedRecord::decode(record) {
            records.push((record.generation, record.seed));
        }
    }
    Ok(records)
}

/// The generation of the newest entropy seed record in a flash file (boots since creation).
pub fn seed_generation(path: &Path) -> Result<Option<u32>> {
    Ok(seed_records(path)?.into_iter().map(|(generation, _)| generation).max())
}
